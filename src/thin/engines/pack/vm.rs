//! The decoder VM of pack records.
//!
//! An instruction is one byte `tag << 4 | nibble`; operands follow in little
//! endian. Every instruction appends 64-bit numbers (`base`, as 8 LE bytes) or
//! literal bytes to the output. A record is decoded by running instructions
//! until 4096 bytes were produced.
//!
//! Bounds: each instruction consumes at least one input byte, the output of a
//! record is capped at 4096 bytes and a shifted run's side buffer at
//! `8 * 4095` bytes plus one instruction's worth, so a hostile record can
//! neither allocate without limit nor loop forever. Count prefixes are applied
//! iteratively (no recursion) and shifted runs may not nest.

use std::io::{self, BufRead};

/// The instruction tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    /// Read a number of width `nibble` into base; emit base `count` times.
    Set = 0,
    /// `count` times: base += nibble; emit.
    Pos = 1,
    /// Read a delta of width `nibble`; `count` times: base += delta; emit.
    PosW = 2,
    /// `count` times: base -= nibble; emit.
    Neg = 3,
    /// Read a delta of width `nibble`; `count` times: base -= delta; emit.
    NegW = 4,
    /// Emit base `nibble` times.
    Const = 5,
    /// Emit base `nibble << 8 | next byte` times.
    Const8 = 6,
    /// The next instruction runs `nibble` times.
    Count = 7,
    /// The next instruction runs `nibble << 8 | next byte` times.
    Count8 = 8,
    /// Copy the next `nibble` bytes.
    Lit = 9,
    /// Read a length of width `nibble`; copy that many bytes.
    LitW = 10,
    /// Interleave two number lists: `(H[i] << 24) | (L[i] & 0xffffff)`.
    ShiftedRun = 11,
}

impl Tag {
    fn from_nibble(t: u8) -> Option<Tag> {
        Some(match t {
            0 => Tag::Set,
            1 => Tag::Pos,
            2 => Tag::PosW,
            3 => Tag::Neg,
            4 => Tag::NegW,
            5 => Tag::Const,
            6 => Tag::Const8,
            7 => Tag::Count,
            8 => Tag::Count8,
            9 => Tag::Lit,
            10 => Tag::LitW,
            11 => Tag::ShiftedRun,
            _ => return None,
        })
    }
}

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The input ended inside the record.
    #[error("record truncated")]
    Truncated,
    /// A tag of 12..=15.
    #[error("bad instruction tag {0}")]
    BadTag(u8),
    /// An operand width other than 1, 2, 4 or 8.
    #[error("bad operand width {0}")]
    BadWidth(u8),
    /// Const, Const8, Lit, LitW or ShiftedRun after a count prefix.
    #[error("count prefix before {0:?}")]
    BadPrefix(Tag),
    /// A shifted run inside a shifted run.
    #[error("nested shifted run")]
    NestedShiftedRun,
    /// More than the record's size was produced.
    #[error("record decodes to more than {0} bytes")]
    Overrun(usize),
    /// Reading the input failed (e.g. a zlib error).
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Where decoded bytes go: keeps at most `cap` bytes, counts all of them.
struct Sink<'a> {
    buf: &'a mut Vec<u8>,
    produced: usize,
    cap: usize,
}

impl Sink<'_> {
    fn bytes(&mut self, b: &[u8]) {
        let room = self.cap.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&b[..b.len().min(room)]);
        self.produced += b.len();
    }
    fn number(&mut self, n: u64) {
        self.bytes(&n.to_le_bytes());
    }
}

/// The decoder: a byte source plus the VM's `base` register.
pub struct Vm<R> {
    input: R,
    base: u64,
}

fn read_u8<R: BufRead>(r: &mut R) -> Result<u8, VmError> {
    let mut b = [0u8; 1];
    read_exact(r, &mut b)?;
    Ok(b[0])
}

fn read_exact<R: BufRead>(r: &mut R, out: &mut [u8]) -> Result<(), VmError> {
    r.read_exact(out).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            VmError::Truncated
        } else {
            VmError::Io(e)
        }
    })
}

fn read_width<R: BufRead>(r: &mut R, width: u8) -> Result<u64, VmError> {
    let n = match width {
        1 | 2 | 4 | 8 => usize::from(width),
        _ => return Err(VmError::BadWidth(width)),
    };
    let mut b = [0u8; 8];
    read_exact(r, &mut b[..n])?;
    Ok(u64::from_le_bytes(b))
}

/// Largest side buffer of a shifted run (4095 numbers).
const MAX_SHIFTED: usize = 4095;

impl<R: BufRead> Vm<R> {
    /// A VM reading instructions from `input`.
    pub fn new(input: R) -> Self {
        Vm { input, base: 0 }
    }

    /// The byte source (to read what follows a record).
    pub fn input(&mut self) -> &mut R {
        &mut self.input
    }

    /// Decodes one record of exactly `size` bytes into `out` (cleared first),
    /// with a fresh `base`.
    ///
    /// # Errors
    /// A [`VmError`] when the record is malformed or the input ends.
    pub fn decode(&mut self, size: usize, out: &mut Vec<u8>) -> Result<(), VmError> {
        self.base = 0;
        out.clear();
        let mut sink = Sink {
            buf: out,
            produced: 0,
            cap: size,
        };
        while sink.produced < size {
            self.step(&mut sink, Nesting::Top)?;
            if sink.produced > size {
                return Err(VmError::Overrun(size));
            }
        }
        Ok(())
    }

    /// Runs instructions until `n` numbers went into a side buffer.
    fn side_list(&mut self, n: usize) -> Result<Vec<u64>, VmError> {
        let mut buf = Vec::with_capacity(n * 8);
        let mut sink = Sink {
            buf: &mut buf,
            produced: 0,
            cap: n * 8,
        };
        while sink.produced < n * 8 {
            self.step(&mut sink, Nesting::InShiftedRun)?;
        }
        Ok(buf
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect())
    }

    /// Executes one instruction, with any count prefixes before it.
    fn step(&mut self, sink: &mut Sink<'_>, nesting: Nesting) -> Result<(), VmError> {
        let mut count: usize = 1;
        let (tag, nibble) = loop {
            let byte = read_u8(&mut self.input)?;
            let nibble = byte & 0xf;
            let tag = Tag::from_nibble(byte >> 4).ok_or(VmError::BadTag(byte >> 4))?;
            match tag {
                Tag::Count => count = usize::from(nibble),
                Tag::Count8 => count = self.long_count(nibble)?,
                _ => break (tag, nibble),
            }
        };
        match tag {
            Tag::Set => {
                self.base = read_width(&mut self.input, nibble)?;
                self.repeat(sink, count, 0, Step::Add);
            }
            Tag::Pos => self.repeat(sink, count, u64::from(nibble), Step::Add),
            Tag::PosW => {
                let d = read_width(&mut self.input, nibble)?;
                self.repeat(sink, count, d, Step::Add);
            }
            Tag::Neg => self.repeat(sink, count, u64::from(nibble), Step::Sub),
            Tag::NegW => {
                let d = read_width(&mut self.input, nibble)?;
                self.repeat(sink, count, d, Step::Sub);
            }
            _ if count != 1 => return Err(VmError::BadPrefix(tag)),
            Tag::Const => self.repeat(sink, usize::from(nibble), 0, Step::Add),
            Tag::Const8 => {
                let n = self.long_count(nibble)?;
                self.repeat(sink, n, 0, Step::Add);
            }
            Tag::Lit => self.literal(sink, usize::from(nibble))?,
            Tag::LitW => {
                let len = read_width(&mut self.input, nibble)?;
                let len = usize::try_from(len).map_err(|_| VmError::Truncated)?;
                self.literal(sink, len)?;
            }
            Tag::ShiftedRun => {
                if nesting == Nesting::InShiftedRun {
                    return Err(VmError::NestedShiftedRun);
                }
                let n = self.long_count(nibble)?.min(MAX_SHIFTED);
                let high = self.side_list(n)?;
                let low = self.side_list(n)?;
                for (h, l) in high.iter().zip(&low) {
                    sink.number((h << 24) | (l & 0xff_ffff));
                }
            }
            Tag::Count | Tag::Count8 => unreachable!("count prefixes are consumed above"),
        }
        Ok(())
    }

    fn long_count(&mut self, nibble: u8) -> Result<usize, VmError> {
        let low = read_u8(&mut self.input)?;
        Ok(usize::from(nibble) << 8 | usize::from(low))
    }

    fn repeat(&mut self, sink: &mut Sink<'_>, count: usize, delta: u64, step: Step) {
        for _ in 0..count {
            self.base = match step {
                Step::Add => self.base.wrapping_add(delta),
                Step::Sub => self.base.wrapping_sub(delta),
            };
            sink.number(self.base);
        }
    }

    /// Copies `len` input bytes; a literal longer than what the sink can take
    /// is still consumed, in pieces, so nothing is allocated by its length.
    fn literal(&mut self, sink: &mut Sink<'_>, len: usize) -> Result<(), VmError> {
        let mut left = len;
        let mut piece = [0u8; 512];
        while left > 0 {
            let n = left.min(piece.len());
            read_exact(&mut self.input, &mut piece[..n])?;
            sink.bytes(&piece[..n]);
            left -= n;
            if sink.produced > sink.cap + 8 * 4096 {
                // Far past anything a valid record produces: stop reading.
                return Err(VmError::Overrun(sink.cap));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Nesting {
    Top,
    InShiftedRun,
}

#[derive(Clone, Copy)]
enum Step {
    Add,
    Sub,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any byte string decodes or fails cleanly, within the output bound.
        #[test]
        fn arbitrary_programs_never_panic(prog in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut vm = Vm::new(&prog[..]);
            let mut out = Vec::new();
            if vm.decode(4096, &mut out).is_ok() {
                prop_assert_eq!(out.len(), 4096);
            }
            prop_assert!(out.len() <= 4096);
        }
    }

    fn numbers(bytes: &[u8], n: usize) -> Result<Vec<u64>, VmError> {
        let mut vm = Vm::new(bytes);
        let mut out = Vec::new();
        vm.decode(n * 8, &mut out)?;
        Ok(out
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }

    #[test]
    fn spec_examples_decode() {
        assert_eq!(
            numbers(&[0x01, 0x00, 0x74, 0x11], 5).unwrap(),
            [0, 1, 2, 3, 4]
        );
        assert_eq!(numbers(&[0x01, 0x05, 0x59], 10).unwrap(), [5; 10]);
    }

    #[test]
    fn every_tag_does_what_the_table_says() {
        // Set16 1000; Neg 3; NegW1 100 x2 (Count 2); Count8 0x003 PosW2 0x0101.
        let prog = [
            0x02, 0xe8, 0x03, 0x33, 0x72, 0x41, 100, 0x80, 3, 0x22, 0x01, 0x01,
        ];
        assert_eq!(
            numbers(&prog, 7).unwrap(),
            [1000, 997, 897, 797, 1054, 1311, 1568]
        );
        // Const8 with n = 0x010: sixteen copies after Set.
        assert_eq!(numbers(&[0x01, 7, 0x60, 16], 17).unwrap(), [7; 17]);
        // Arithmetic wraps.
        assert_eq!(numbers(&[0x01, 0, 0x31], 2).unwrap(), [0, u64::MAX]);
    }

    #[test]
    fn literals_and_shifted_runs() {
        let mut vm = Vm::new(&[0x93, b'a', b'b', b'c', 0xa1, 2, b'd', b'e'][..]);
        let mut out = Vec::new();
        vm.decode(5, &mut out).unwrap();
        assert_eq!(out, b"abcde");
        // Two values: H = [1, 2], L = [5, 6] -> (1<<24)|5, (2<<24)|6.
        let prog = [0xb0, 2, 0x01, 1, 0x11, 0x01, 5, 0x11];
        assert_eq!(numbers(&prog, 2).unwrap(), [(1 << 24) | 5, (2 << 24) | 6]);
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        assert!(matches!(numbers(&[0xc0], 1), Err(VmError::BadTag(12))));
        assert!(matches!(
            numbers(&[0x03, 0, 0, 0], 1),
            Err(VmError::BadWidth(3))
        ));
        assert!(matches!(numbers(&[0x01], 1), Err(VmError::Truncated)));
        assert!(matches!(
            numbers(&[0x72, 0x53], 1),
            Err(VmError::BadPrefix(Tag::Const))
        ));
        assert!(matches!(
            numbers(&[0x01, 0, 0x52], 2),
            Err(VmError::Overrun(16))
        ));
        assert!(matches!(
            numbers(&[0xb0, 1, 0xb0, 1], 1),
            Err(VmError::NestedShiftedRun)
        ));
        // A literal claiming 2^64-1 bytes ends with the input, allocating nothing.
        let mut huge = vec![0xa8];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(numbers(&huge, 1).is_err());
    }
}
