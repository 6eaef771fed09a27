//! Text rendering shared by the XML and human-readable sinks: numbers and
//! lines written straight into byte buffers, and the pool of fragments that
//! rendered leaves are kept in until they are spliced into the output.

use std::sync::Mutex;

/// Appends `v` in decimal.
#[inline]
pub fn push_num<I: itoa::Integer>(out: &mut Vec<u8>, v: I) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

/// A line written in place at the end of an output vector: room for the
/// longest line is opened first, literals and digits are stored straight
/// into it, and the vector is cut back to the line's length at the end.
/// Mapping lines are the bulk of a dump; this keeps them free of calls and
/// of copies that reload freshly stored bytes.
pub struct LineBuf<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    len: usize,
}

/// Room opened per line: the longest (a range mapping with four 20-digit
/// numbers) is 139 bytes.
const LINE_MAX: usize = 160;

const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

impl<'a> LineBuf<'a> {
    #[inline(always)]
    pub fn open(out: &'a mut Vec<u8>) -> LineBuf<'a> {
        let start = out.len();
        out.resize(start + LINE_MAX, 0);
        LineBuf { out, start, len: 0 }
    }

    #[inline(always)]
    fn room(&mut self) -> &mut [u8] {
        &mut self.out[self.start..]
    }

    #[inline(always)]
    pub fn lit<const N: usize>(&mut self, s: &[u8; N]) {
        let at = self.len;
        self.room()[at..at + N].copy_from_slice(s);
        self.len += N;
    }

    /// Appends `v` in decimal, two digits at a time from the right.
    #[inline(always)]
    pub fn num(&mut self, v: u64) {
        let n = v.checked_ilog10().map_or(1, |d| d as usize + 1);
        let at = self.len;
        let room = &mut self.room()[at..at + n];
        let mut p = n;
        let mut v = v;
        while v >= 100 {
            // The remainder is below 100: the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            let r = (v % 100) as usize * 2;
            v /= 100;
            p -= 2;
            room[p..p + 2].copy_from_slice(&DIGIT_PAIRS[r..r + 2]);
        }
        // v < 100 here: the casts cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        if v >= 10 {
            let r = v as usize * 2;
            room[..2].copy_from_slice(&DIGIT_PAIRS[r..r + 2]);
        } else {
            room[0] = b'0' + v as u8;
        }
        self.len += n;
    }

    /// Cuts the output back to the end of the line.
    #[inline(always)]
    pub fn close(self) {
        self.out.truncate(self.start + self.len);
    }
}

/// Fragments kept for reuse. Recycling them keeps the allocator from
/// returning their pages to the kernel after each window and faulting fresh
/// zeroed pages in for the next one.
static FRAGMENTS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// Most fragments kept (two windows of chunks are in flight at a time).
const FRAGMENTS_KEPT: usize = 24;

/// An empty fragment, reused when one is available.
pub fn take_fragment(capacity: usize) -> Vec<u8> {
    let reused = FRAGMENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .pop();
    reused.unwrap_or_else(|| Vec::with_capacity(capacity))
}

/// Returns a written fragment for reuse.
pub fn give_back_fragment(mut frag: Vec<u8>) {
    frag.clear();
    let mut pool = FRAGMENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if pool.len() < FRAGMENTS_KEPT {
        pool.push(frag);
    }
}

/// Initial fragment capacity per leaf.
const FRAGMENT_BYTES_PER_LEAF: usize = 8 * 1024;

/// A pooled fragment sized for rendering `nr_leaves` leaves (both the XML and
/// the human-readable sink use it).
pub fn leaf_fragment(nr_leaves: usize) -> Vec<u8> {
    // Typical dumps need 20-30 bytes per mapping; growth handles the rest.
    take_fragment(nr_leaves.saturating_mul(FRAGMENT_BYTES_PER_LEAF))
}
