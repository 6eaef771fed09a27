//! The packer's side of the record format: the
//! number-list encoder, literals, shifted runs, and the choice of encoding for
//! each kind of block. Every encoding here decodes, through `vm`, to exactly
//! the bytes it was given, whatever they hold.

use crate::pdata::block::BLOCK_SIZE;
use crate::pdata::btree::node::{INTERNAL_NODE, LEAF_NODE, NODE_HEADER_SIZE};
use crate::pdata::checksum::BlockKind;
use crate::thin::engines::pack::vm::Tag;

/// Longest run one Const8/Count8 can describe.
const MAX_RUN: usize = 4095;

fn tag(out: &mut Vec<u8>, t: Tag, nibble: u8) {
    debug_assert!(nibble < 16);
    out.push((t as u8) << 4 | nibble);
}

/// The low four bits of `n`: the whole of it for the counts below 16 that a
/// tag's nibble holds.
fn nibble(n: u64) -> u8 {
    n.to_le_bytes()[0] & 0xf
}

/// Appends `n` in the smallest of the widths 1, 2, 4, 8, returning the width.
fn push_width(out: &mut Vec<u8>, n: u64) -> u8 {
    let width: u8 = if n <= 0xff {
        1
    } else if n <= 0xffff {
        2
    } else if n <= 0xffff_ffff {
        4
    } else {
        8
    };
    out.extend_from_slice(&n.to_le_bytes()[..usize::from(width)]);
    width
}

/// A tag followed by a variable-width operand.
fn tag_with_operand(out: &mut Vec<u8>, t: Tag, n: u64) {
    let at = out.len();
    out.push(0);
    let width = push_width(out, n);
    out[at] = (t as u8) << 4 | width;
}

/// A 12-bit count as `nibble` plus one byte after the tag.
fn long_count(out: &mut Vec<u8>, t: Tag, n: usize) {
    debug_assert!(n <= MAX_RUN);
    let n = u16::try_from(n).unwrap_or(0x0fff);
    let [lo, hi] = n.to_le_bytes();
    tag(out, t, hi & 0xf);
    out.push(lo);
}

fn count_prefix(out: &mut Vec<u8>, k: usize) {
    if k == 1 {
    } else if k < 16 {
        tag(out, Tag::Count, nibble(k as u64));
    } else {
        long_count(out, Tag::Count8, k);
    }
}

/// Encodes a list of numbers: the first as a value, then each stretch as a
/// repeat of the current value or as a count of equal steps up or down.
pub fn numbers(out: &mut Vec<u8>, ns: &[u64]) {
    let Some((&first, mut rest)) = ns.split_first() else {
        return;
    };
    tag_with_operand(out, Tag::Set, first);
    let mut base = first;
    while let Some(&n) = rest.first() {
        if n == base {
            let k = rest
                .iter()
                .take(MAX_RUN)
                .take_while(|&&x| x == base)
                .count();
            if k < 16 {
                tag(out, Tag::Const, nibble(k as u64));
            } else {
                long_count(out, Tag::Const8, k);
            }
            rest = &rest[k..];
            continue;
        }
        let (delta, up) = if n > base {
            (n - base, true)
        } else {
            (base - n, false)
        };
        let mut k = 0;
        let mut cur = base;
        for &x in rest.iter().take(MAX_RUN) {
            let next = if up {
                cur.wrapping_add(delta)
            } else {
                cur.wrapping_sub(delta)
            };
            if x != next {
                break;
            }
            cur = next;
            k += 1;
        }
        count_prefix(out, k);
        let (small, wide) = if up {
            (Tag::Pos, Tag::PosW)
        } else {
            (Tag::Neg, Tag::NegW)
        };
        if delta < 16 {
            tag(out, small, nibble(delta));
        } else {
            tag_with_operand(out, wide, delta);
        }
        base = cur;
        rest = &rest[k..];
    }
}

/// Encodes bytes to be copied verbatim.
pub fn literal(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    if bytes.len() < 16 {
        tag(out, Tag::Lit, nibble(bytes.len() as u64));
    } else {
        tag_with_operand(out, Tag::LitW, bytes.len() as u64);
    }
    out.extend_from_slice(bytes);
}

/// Encodes numbers as a shifted run (high 40 bits and low 24 bits as two lists).
pub fn shifted_run(out: &mut Vec<u8>, ns: &[u64]) {
    for part in ns.chunks(MAX_RUN) {
        long_count(out, Tag::ShiftedRun, part.len());
        let high: Vec<u64> = part.iter().map(|v| v >> 24).collect();
        let low: Vec<u64> = part.iter().map(|v| v & 0xff_ffff).collect();
        numbers(out, &high);
        numbers(out, &low);
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64s(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

/// Encodes one block of the given kind. Btree nodes whose header does not
/// describe a layout that fits the block are stored as one literal.
pub fn block(out: &mut Vec<u8>, block: &[u8; BLOCK_SIZE], kind: BlockKind) {
    if kind == BlockKind::Node && node(out, block) {
        return;
    }
    literal(out, block);
}

/// Node encoding: header literal, keys, values, tail literal. Returns false
/// (writing nothing) when the header is not a usable internal node or leaf.
fn node(out: &mut Vec<u8>, block: &[u8; BLOCK_SIZE]) -> bool {
    let flags = le_u32(block, 4);
    let max = le_u32(block, 20) as usize;
    let value_size = le_u32(block, 24) as usize;
    let keys_end = NODE_HEADER_SIZE + max * 8;
    let Some(values_end) = value_size
        .checked_mul(max)
        .and_then(|v| v.checked_add(keys_end))
        .filter(|&e| e <= BLOCK_SIZE)
    else {
        return false;
    };
    let internal = match flags {
        INTERNAL_NODE if value_size == 8 => true,
        LEAF_NODE => false,
        _ => return false,
    };
    literal(out, &block[..NODE_HEADER_SIZE]);
    numbers(out, &le_u64s(&block[NODE_HEADER_SIZE..keys_end]));
    let values = &block[keys_end..values_end];
    if internal {
        numbers(out, &le_u64s(values));
    } else if value_size == 8 {
        shifted_run(out, &le_u64s(values));
    } else {
        literal(out, values);
    }
    literal(out, &block[values_end..]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thin::engines::pack::vm::Vm;
    use proptest::prelude::*;

    fn decode(prog: &[u8], size: usize) -> Vec<u8> {
        let mut vm = Vm::new(prog);
        let mut out = Vec::new();
        vm.decode(size, &mut out).expect("decodes");
        assert!(vm.input().is_empty(), "whole program consumed");
        out
    }

    fn as_bytes(ns: &[u64]) -> Vec<u8> {
        ns.iter().flat_map(|n| n.to_le_bytes()).collect()
    }

    #[test]
    fn spec_examples_encode_to_the_spec_bytes() {
        let mut out = Vec::new();
        numbers(&mut out, &[0, 1, 2, 3, 4]);
        assert_eq!(out, [0x01, 0x00, 0x74, 0x11]);
        out.clear();
        numbers(&mut out, &[5; 10]);
        assert_eq!(out, [0x01, 0x05, 0x59]);
    }

    #[test]
    fn long_runs_are_split() {
        let ns: Vec<u64> = (0..10_000).collect();
        let mut out = Vec::new();
        numbers(&mut out, &ns);
        assert_eq!(decode(&out, ns.len() * 8), as_bytes(&ns));
        let zeros = vec![9u64; 9000];
        out.clear();
        numbers(&mut out, &zeros);
        assert_eq!(decode(&out, zeros.len() * 8), as_bytes(&zeros));
    }

    proptest! {
        #[test]
        fn number_lists_round_trip(ns in proptest::collection::vec(
            prop_oneof![0u64..20, any::<u64>(), Just(u64::MAX)], 1..600)) {
            let mut out = Vec::new();
            numbers(&mut out, &ns);
            prop_assert_eq!(decode(&out, ns.len() * 8), as_bytes(&ns));
        }

        #[test]
        fn shifted_runs_round_trip(ns in proptest::collection::vec(any::<u64>(), 1..600)) {
            let mut out = Vec::new();
            shifted_run(&mut out, &ns);
            prop_assert_eq!(decode(&out, ns.len() * 8), as_bytes(&ns));
        }

        #[test]
        fn any_node_block_round_trips(
            flags in 0u32..4, max in 0u32..600, vs in prop_oneof![Just(8u32), Just(24), Just(4), any::<u32>()],
            fill in any::<u64>()) {
            let mut b = [0u8; BLOCK_SIZE];
            let mut x = fill;
            for c in b.chunks_exact_mut(8) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                c.copy_from_slice(&(x >> (x % 61)).to_le_bytes());
            }
            b[4..8].copy_from_slice(&flags.to_le_bytes());
            b[20..24].copy_from_slice(&max.to_le_bytes());
            b[24..28].copy_from_slice(&vs.to_le_bytes());
            let mut out = Vec::new();
            block(&mut out, &b, BlockKind::Node);
            prop_assert_eq!(decode(&out, BLOCK_SIZE), b.to_vec());
        }
    }
}
