//! Reads a stream of any format into [`Event`]s.
//!
//! Buffers are allocated once, [`v2::MAX_DATA`] bytes each; a 1.x DATA
//! record of any length is handed out in pieces of at most that size. Every
//! error names the stream offset of the record it concerns.

use std::io::{self, Read};

use sha2::{Digest, Sha256};
use zerocopy::{FromBytes, IntoBytes};

use super::linbit::{self, Header, MAGIC_1_0, MAGIC_1_1, MAGIC_ANCIENT};
use super::v2::{self, EndPayload, HeaderPayload, RecordHeader};
use super::{
    Accept, Counts, Event, Format, Identity, StreamError, StreamErrorKind as K, StreamHeader,
};

/// The most the buffers grow to (and the size of the pieces of 1.x DATA
/// records).
const BUF: usize = v2::MAX_DATA as usize;
/// The buffers' first size: enough for every header and small records.
const START_BUF: usize = 64 << 10;

/// Grows `v` to hold `n` bytes (`n` is at most [`BUF`], checked by callers).
fn room(v: &mut Vec<u8>, n: usize) -> &mut [u8] {
    debug_assert!(n <= BUF);
    if v.len() < n {
        v.resize(n.min(BUF), 0);
    }
    &mut v[..n]
}

enum State {
    /// Nothing read yet.
    Start,
    /// A 1.0 stream whose first header is read but not yet handed out.
    Queued(Header),
    /// Inside a stream.
    Open,
    /// The end was reached (or the input was empty).
    Done,
}

/// A 1.x DATA record being handed out in pieces.
struct Pending {
    start: u64,
    offset: u64,
    total: u64,
    done: u64,
}

/// A stream being read.
pub struct StreamReader<R> {
    input: R,
    accept: Accept,
    state: State,
    format: Option<Format>,
    header: Option<StreamHeader>,
    pos: u64,
    record_start: u64,
    counts: Counts,
    pending: Option<Pending>,
    prev_end: u64,
    buf: Vec<u8>,
    raw: Vec<u8>,
    hasher: Sha256,
    empty: bool,
}

fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: Read> StreamReader<R> {
    /// A reader of `input` taking the formats `accept` allows.
    pub fn new(input: R, accept: Accept) -> Self {
        StreamReader {
            input,
            accept,
            state: State::Start,
            format: None,
            header: None,
            pos: 0,
            record_start: 0,
            counts: Counts::default(),
            pending: None,
            prev_end: 0,
            buf: vec![0; START_BUF],
            raw: vec![0; START_BUF],
            hasher: Sha256::new(),
            empty: false,
        }
    }

    /// The format, once the first record was read.
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// Format 2's header, once read.
    pub fn header(&self) -> Option<&StreamHeader> {
        self.header.as_ref()
    }

    /// True when the input was empty (and that was accepted).
    pub fn was_empty(&self) -> bool {
        self.empty
    }

    /// Bytes of the stream read so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Records read so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn err(&self, kind: K) -> StreamError {
        StreamError {
            offset: self.record_start,
            kind,
        }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` at EOF before the first.
    fn exact(
        &mut self,
        what: &'static str,
        which: Buffer,
        len: usize,
    ) -> Result<bool, StreamError> {
        let buf = match which {
            Buffer::Data => room(&mut self.buf, len),
            Buffer::Raw => room(&mut self.raw, len),
        };
        let got = fill(&mut self.input, buf).map_err(|e| StreamError {
            offset: self.pos,
            kind: K::Io(e),
        })?;
        self.pos += got as u64;
        if got == len {
            return Ok(true);
        }
        if got == 0 && what == "record header" {
            return Ok(false);
        }
        Err(self.err(K::Truncated {
            what,
            expected: len as u64,
            got: got as u64,
        }))
    }

    /// Checks that nothing follows the end record.
    fn expect_eof(&mut self) -> Result<(), StreamError> {
        let mut one = [0u8; 1];
        let got = fill(&mut self.input, &mut one).map_err(|e| StreamError {
            offset: self.pos,
            kind: K::Io(e),
        })?;
        if got != 0 {
            return Err(StreamError {
                offset: self.pos,
                kind: K::TrailingData,
            });
        }
        Ok(())
    }

    /// The next event; `Ok(None)` once the stream ended (after [`Event::End`],
    /// or at once for an accepted empty input).
    ///
    /// # Errors
    /// Anything wrong with the stream, with its offset.
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, StreamError> {
        loop {
            if let Some(p) = self.pending.take() {
                return self.data_piece(p).map(Some);
            }
            let ev = match std::mem::replace(&mut self.state, State::Open) {
                State::Done => {
                    self.state = State::Done;
                    return Ok(None);
                }
                State::Start => self.first()?,
                State::Queued(h) => self.linbit_dispatch(h)?,
                State::Open => match self.format {
                    Some(Format::V2) => self.v2_next()?,
                    _ => self.linbit_next()?,
                },
            };
            if ev.is_some() {
                return Ok(self.finish_event(ev));
            }
        }
    }

    /// Turns the internal event into the borrowed one handed out.
    fn finish_event(&self, ev: Option<Ev>) -> Option<Event<'_>> {
        ev.map(|e| match e {
            Ev::Begin => Event::Begin {
                format: self.format.unwrap_or(Format::V1_1),
                header: self.header,
            },
            Ev::Data { offset, len } => Event::Data {
                offset,
                bytes: &self.buf[..len],
            },
            Ev::Zero { offset, len } => Event::Zero { offset, len },
            Ev::Unmap { offset, len } => Event::Unmap { offset, len },
            Ev::End => Event::End,
        })
    }

    fn first(&mut self) -> Result<Option<Ev>, StreamError> {
        let got = fill(&mut self.input, &mut self.buf[..8]).map_err(|e| StreamError {
            offset: 0,
            kind: K::Io(e),
        })?;
        self.pos = got as u64;
        if got == 0 {
            self.state = State::Done;
            return match self.accept {
                Accept::Only(f @ (Format::V1_1 | Format::V2)) => Err(self.err(K::EmptyRefused(f))),
                _ => {
                    self.empty = true;
                    Ok(None)
                }
            };
        }
        if got < 8 {
            return Err(self.err(K::Truncated {
                what: "record header",
                expected: linbit::HEADER_SIZE as u64,
                got: got as u64,
            }));
        }
        let mut m = [0u8; 8];
        m.copy_from_slice(&self.buf[..8]);
        let magic = magic_value(m);
        let format = match magic {
            MAGIC_1_1 => Format::V1_1,
            MAGIC_1_0 => Format::V1_0,
            MAGIC_ANCIENT => return Err(self.err(K::AncientMagic(magic))),
            _ if m == v2::MAGIC => Format::V2,
            _ => return Err(self.err(K::UnknownMagic(magic))),
        };
        if !self.accept.takes(format) {
            return Err(self.err(K::NotAccepted(format)));
        }
        self.format = Some(format);
        if format == Format::V2 {
            return self.v2_record(true);
        }
        let h = self.linbit_header_rest()?;
        if format == Format::V1_0 {
            self.state = State::Queued(h);
            return Ok(Some(Ev::Begin));
        }
        self.linbit_dispatch(h)
    }

    /// Reads the 20 bytes of a 1.x header after its magic (already in `buf`).
    fn linbit_header_rest(&mut self) -> Result<Header, StreamError> {
        let got = fill(&mut self.input, &mut self.buf[8..linbit::HEADER_SIZE]).map_err(|e| {
            StreamError {
                offset: self.pos,
                kind: K::Io(e),
            }
        })?;
        self.pos += got as u64;
        if got < linbit::HEADER_SIZE - 8 {
            return Err(self.err(K::Truncated {
                what: "record header",
                expected: linbit::HEADER_SIZE as u64,
                got: 8 + got as u64,
            }));
        }
        Ok(Header::read_from_bytes(&self.buf[..linbit::HEADER_SIZE]).expect("28 bytes"))
    }

    fn linbit_next(&mut self) -> Result<Option<Ev>, StreamError> {
        self.record_start = self.pos;
        if !self.exact("record header", Buffer::Data, linbit::HEADER_SIZE)? {
            if self.format == Some(Format::V1_0) {
                self.state = State::Done;
                return Ok(Some(Ev::End));
            }
            return Err(self.err(K::MissingEnd));
        }
        let h = Header::read_from_bytes(&self.buf[..linbit::HEADER_SIZE]).expect("28 bytes");
        self.linbit_dispatch(h)
    }

    fn linbit_dispatch(&mut self, h: Header) -> Result<Option<Ev>, StreamError> {
        let expected = if self.format == Some(Format::V1_0) {
            MAGIC_1_0
        } else {
            MAGIC_1_1
        };
        if h.magic.get() != expected {
            return Err(self.err(K::MagicChanged {
                expected,
                found: h.magic.get(),
            }));
        }
        let first = self.counts.records == 0;
        self.counts.records += 1;
        let (cmd, offset, len) = (h.cmd.get(), h.offset.get(), h.length.get());
        let v1_1 = self.format == Some(Format::V1_1);
        if v1_1 && first && cmd != linbit::CMD_BEGIN {
            return Err(self.err(K::NoBegin(cmd)));
        }
        match cmd {
            linbit::CMD_BEGIN if v1_1 => {
                if !first {
                    return Err(self.err(K::BeginRepeated));
                }
                if offset != 0 || len != 0 {
                    return Err(self.err(K::BadBegin { offset, len }));
                }
                Ok(Some(Ev::Begin))
            }
            linbit::CMD_END if v1_1 => self.linbit_end(offset, len).map(Some),
            linbit::CMD_DATA | linbit::CMD_UNMAP => {
                if offset.checked_add(len).is_none() {
                    return Err(self.err(K::BadRange {
                        offset,
                        len,
                        why: "overflows 64 bits",
                    }));
                }
                if cmd == linbit::CMD_UNMAP {
                    self.counts.unmap += 1;
                    return Ok(Some(Ev::Unmap { offset, len }));
                }
                self.counts.data += 1;
                if len > 0 {
                    self.pending = Some(Pending {
                        start: self.record_start,
                        offset,
                        total: len,
                        done: 0,
                    });
                }
                Ok(None)
            }
            _ if v1_1 && cmd & linbit::CMD_OPTIONAL != 0 => {
                self.skip(len)?;
                Ok(None)
            }
            _ => Err(self.err(K::UnknownCmd { cmd, len })),
        }
    }

    fn skip(&mut self, mut len: u64) -> Result<(), StreamError> {
        while len > 0 {
            let n = usize::try_from(len.min(BUF as u64)).unwrap_or(BUF);
            self.exact("optional record payload", Buffer::Raw, n)?;
            len -= n as u64;
        }
        Ok(())
    }

    fn linbit_end(&mut self, offset: u64, len: u64) -> Result<Ev, StreamError> {
        if offset != 0 || len != linbit::END_STATS_SIZE as u64 {
            return Err(self.err(K::BadEnd {
                offset,
                len,
                want: linbit::END_STATS_SIZE as u64,
            }));
        }
        self.exact("end record stats", Buffer::Raw, linbit::END_STATS_SIZE)?;
        let s = linbit::EndStats::read_from_bytes(&self.raw[..linbit::END_STATS_SIZE])
            .expect("24 bytes");
        let found = [s.n_chunks.get(), s.n_data.get(), 0, s.n_unmap.get()];
        let c = self.counts;
        let counted = [c.records, c.data, 0, c.unmap];
        if found != counted {
            return Err(self.err(K::CountMismatch { found, counted }));
        }
        self.expect_eof()?;
        self.state = State::Done;
        Ok(Ev::End)
    }

    fn data_piece(&mut self, mut p: Pending) -> Result<Event<'_>, StreamError> {
        let left = p.total - p.done;
        let n = usize::try_from(left.min(BUF as u64)).unwrap_or(BUF);
        let got = fill(&mut self.input, room(&mut self.buf, n)).map_err(|e| StreamError {
            offset: self.pos,
            kind: K::Io(e),
        })?;
        self.pos += got as u64;
        if got < n {
            return Err(StreamError {
                offset: p.start,
                kind: K::Truncated {
                    what: "data payload",
                    expected: p.total,
                    got: p.done + got as u64,
                },
            });
        }
        let offset = p.offset + p.done;
        p.done += n as u64;
        if p.done < p.total {
            self.pending = Some(p);
        }
        Ok(Event::Data {
            offset,
            bytes: &self.buf[..n],
        })
    }

    fn v2_next(&mut self) -> Result<Option<Ev>, StreamError> {
        self.record_start = self.pos;
        let got = fill(&mut self.input, &mut self.buf[..8]).map_err(|e| StreamError {
            offset: self.pos,
            kind: K::Io(e),
        })?;
        self.pos += got as u64;
        match got {
            0 => Err(self.err(K::MissingEnd)),
            8 => self.v2_record(false),
            _ => Err(self.err(K::Truncated {
                what: "record header",
                expected: v2::RECORD_HEADER_SIZE as u64,
                got: got as u64,
            })),
        }
    }

    /// Reads the rest of a format 2 record whose first 8 bytes are in `buf`.
    fn v2_record(&mut self, first: bool) -> Result<Option<Ev>, StreamError> {
        const N: usize = v2::RECORD_HEADER_SIZE;
        let got = fill(&mut self.input, &mut self.buf[8..N]).map_err(|e| StreamError {
            offset: self.pos,
            kind: K::Io(e),
        })?;
        self.pos += got as u64;
        if got < N - 8 {
            return Err(self.err(K::Truncated {
                what: "record header",
                expected: N as u64,
                got: 8 + got as u64,
            }));
        }
        let h = RecordHeader::read_from_bytes(&self.buf[..N]).expect("40 bytes");
        if h.magic != v2::MAGIC {
            return Err(self.err(K::MagicChanged {
                expected: magic_value(v2::MAGIC),
                found: magic_value(h.magic),
            }));
        }
        let (kind, flags) = (h.kind.get(), h.flags.get());
        let (offset, len, payload) = (h.offset.get(), h.length.get(), h.payload_len.get());
        self.check_shape(kind, flags, offset, len, payload, first)?;
        let plen = payload as usize;
        self.exact("record payload", Buffer::Raw, plen)?;
        let computed = v2::record_csum(&h, &self.raw[..plen]);
        if computed != h.csum.get() {
            return Err(self.err(K::RecordChecksum {
                found: h.csum.get(),
                computed,
            }));
        }
        self.counts.records += 1;
        if kind == v2::KIND_END {
            return self.v2_end().map(Some);
        }
        self.hasher.update(h.as_bytes());
        self.hasher.update(&self.raw[..plen]);
        match kind {
            v2::KIND_HEADER => self.v2_header().map(Some),
            v2::KIND_DATA => {
                self.check_range(offset, len)?;
                self.counts.data += 1;
                let n = len as usize;
                room(&mut self.buf, n);
                if flags & v2::FLAG_ZSTD == 0 {
                    self.buf[..n].copy_from_slice(&self.raw[..n]);
                } else {
                    self.decompress(plen, n)?;
                }
                Ok(Some(Ev::Data { offset, len: n }))
            }
            v2::KIND_ZERO => {
                self.check_range(offset, len)?;
                self.counts.zero += 1;
                Ok(Some(Ev::Zero { offset, len }))
            }
            _ => {
                self.check_range(offset, len)?;
                self.counts.unmap += 1;
                Ok(Some(Ev::Unmap { offset, len }))
            }
        }
    }

    /// Checks a record header's fields against its kind, before its payload
    /// is read (so the payload length is known to fit the buffers).
    fn check_shape(
        &self,
        kind: u32,
        flags: u32,
        offset: u64,
        len: u64,
        payload: u32,
        first: bool,
    ) -> Result<(), StreamError> {
        let payload_u = u64::from(payload);
        let bad = |why| {
            Err(self.err(K::BadPayload {
                payload: payload_u,
                len,
                why,
            }))
        };
        if !(v2::KIND_HEADER..=v2::KIND_END).contains(&kind) {
            return Err(self.err(K::UnknownCmd { cmd: kind, len }));
        }
        if first != (kind == v2::KIND_HEADER) {
            return Err(self.err(if first {
                K::NoBegin(kind)
            } else {
                K::BeginRepeated
            }));
        }
        if kind != v2::KIND_DATA && flags != 0 || flags & !v2::FLAG_ZSTD != 0 {
            return bad("unknown record flags");
        }
        match kind {
            v2::KIND_HEADER | v2::KIND_END => {
                if offset != 0 || len != 0 {
                    return Err(self.err(K::BadEnd {
                        offset,
                        len,
                        want: 0,
                    }));
                }
                if payload as usize != v2::HEADER_PAYLOAD_SIZE {
                    return bad("header and end records carry 64 bytes");
                }
            }
            v2::KIND_DATA => {
                if len == 0 || len > v2::MAX_DATA {
                    return bad("a data record covers 1 byte to 4 MiB");
                }
                if flags & v2::FLAG_ZSTD == 0 && payload_u != len {
                    return bad("an uncompressed payload is as long as its range");
                }
                if flags & v2::FLAG_ZSTD != 0 && payload_u > len {
                    return bad("a compressed payload is shorter than its range");
                }
            }
            _ => {
                if payload != 0 || len == 0 {
                    return bad("zero and unmap records have no payload and a non-empty range");
                }
            }
        }
        Ok(())
    }

    fn check_range(&mut self, offset: u64, len: u64) -> Result<(), StreamError> {
        let h = self.header.expect("format 2 header read first");
        let why = match offset.checked_add(len) {
            None => Some("overflows 64 bits"),
            Some(end) if end > h.volume_size => Some("reaches beyond the volume size"),
            Some(_) if offset < self.prev_end => Some("overlaps or precedes the previous record"),
            Some(_) if offset < h.resume_from => Some("lies below the resume offset"),
            Some(_) => None,
        };
        if let Some(why) = why {
            return Err(self.err(K::BadRange { offset, len, why }));
        }
        self.prev_end = offset + len;
        Ok(())
    }

    fn decompress(&mut self, plen: usize, n: usize) -> Result<(), StreamError> {
        let r = zstd::bulk::decompress_to_buffer(&self.raw[..plen], &mut self.buf[..n]);
        match r {
            Ok(got) if got == n => Ok(()),
            Ok(got) => Err(self.err(K::Decompress {
                len: n as u64,
                why: format!("got {got} bytes"),
            })),
            Err(e) => Err(self.err(K::Decompress {
                len: n as u64,
                why: e.to_string(),
            })),
        }
    }

    fn v2_header(&mut self) -> Result<Ev, StreamError> {
        let p =
            HeaderPayload::read_from_bytes(&self.raw[..v2::HEADER_PAYLOAD_SIZE]).expect("64 bytes");
        let flags = p.flags.get();
        if p.version.get() != v2::HEADER_VERSION {
            return Err(self.err(K::BadHeader("unknown header version")));
        }
        if flags & !(v2::HFLAG_INCREMENTAL | v2::HFLAG_RESUMED) != 0 {
            return Err(self.err(K::BadHeader("unknown header flags")));
        }
        let base = Identity(p.base);
        let incremental = flags & v2::HFLAG_INCREMENTAL != 0;
        if incremental == base.is_none() {
            return Err(self.err(K::BadHeader(
                "the incremental flag and the base identity disagree",
            )));
        }
        let resume_from = p.resume_from.get();
        if flags & v2::HFLAG_RESUMED == 0 && resume_from != 0 {
            return Err(self.err(K::BadHeader("a resume offset without the resumed flag")));
        }
        if p.granularity.get() == 0 || u64::from(p.max_data.get()) > v2::MAX_DATA {
            return Err(self.err(K::BadHeader("granularity 0 or data records above 4 MiB")));
        }
        if resume_from > p.volume_size.get() {
            return Err(self.err(K::BadHeader("resume offset beyond the volume size")));
        }
        self.header = Some(StreamHeader {
            volume_size: p.volume_size.get(),
            granularity: p.granularity.get(),
            source: Identity(p.source),
            base: (!base.is_none()).then_some(base),
            resume_from,
        });
        self.prev_end = resume_from;
        Ok(Ev::Begin)
    }

    fn v2_end(&mut self) -> Result<Ev, StreamError> {
        let p = EndPayload::read_from_bytes(&self.raw[..v2::END_PAYLOAD_SIZE]).expect("64 bytes");
        let found = [
            p.n_records.get(),
            p.n_data.get(),
            p.n_zero.get(),
            p.n_unmap.get(),
        ];
        let c = self.counts;
        let counted = [c.records, c.data, c.zero, c.unmap];
        if found != counted {
            return Err(self.err(K::CountMismatch { found, counted }));
        }
        let digest: [u8; 32] = self.hasher.clone().finalize().into();
        if digest != p.digest {
            return Err(self.err(K::DigestMismatch {
                found: hex(&p.digest),
                computed: hex(&digest),
            }));
        }
        self.expect_eof()?;
        self.state = State::Done;
        Ok(Ev::End)
    }
}

/// A magic's 8 bytes read as one big-endian number (as formats 1.x store it).
fn magic_value(bytes: [u8; 8]) -> u64 {
    zerocopy::byteorder::big_endian::U64::from_bytes(bytes).get()
}

/// Lower-case hex of `bytes`.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[derive(Clone, Copy)]
enum Buffer {
    Data,
    Raw,
}

/// An event before it borrows the reader's buffer.
enum Ev {
    Begin,
    Data { offset: u64, len: usize },
    Zero { offset: u64, len: u64 },
    Unmap { offset: u64, len: u64 },
    End,
}
