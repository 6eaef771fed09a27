//! The pack file: a header, then zlib-compressed chunks
//! of records `(block number, encoded block)`.
//!
//! ```text
//! offset size field
//!      0    8 magic      0xa537a0aa6309ef77
//!      8    8 version    3
//!     16    8 block_size 4096
//!     24    8 nr_blocks  size of the packed device in blocks
//!     32    . chunks     LE u64 len, then len bytes of one zlib stream
//! ```
//!
//! Packing reads the device in segments on every core (rayon), each segment
//! yielding chunks of up to [`RECORDS_PER_CHUNK`] records; chunks are written
//! in device order. Unpacking inflates chunks in parallel and applies them in
//! file order, so a block stored twice takes its last value.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use rayon::prelude::*;

use crate::pdata::block::{Block, BlockNr, BLOCK_SIZE, BLOCK_SIZE_U64};
use crate::pdata::checksum;
use crate::pdata::io::{BlockDevice, OpenError};
use crate::thin::engines::pack::encode;
use crate::thin::engines::pack::vm::{Vm, VmError};

/// First word of every pack file.
pub const PACK_MAGIC: u64 = 0xa537_a0aa_6309_ef77;
/// The only version written and read.
pub const PACK_VERSION: u64 = 3;
/// Size of the header.
pub const HEADER_SIZE: usize = 32;
/// Records per chunk written by the packer.
pub const RECORDS_PER_CHUNK: usize = 1024;
/// Blocks read by one packing task.
const SEGMENT_BLOCKS: u64 = 4096;
/// Blocks per read inside a segment.
const READ_RUN: usize = 256;
/// Decoded records one unpacking task may hold before it must stream.
const MAX_BUFFERED_RECORDS: usize = 8192;

/// Errors of the pack format, worded as the tools print them.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Bad magic or a file shorter than the header.
    #[error("Not a pack file")]
    NotAPack,
    /// A version other than 3.
    #[error("unsupported pack file version ({0}).")]
    Version(u64),
    /// A block size other than 4096.
    #[error("block size is not 4096")]
    BlockSize,
    /// A chunk header claims more bytes than the file holds.
    #[error("corrupt pack file: truncated chunk at offset {0}")]
    TruncatedChunk(u64),
    /// A chunk stream that is not valid zlib, or ends inside a record.
    #[error("corrupt pack file: chunk at offset {offset}: {reason}")]
    BadChunk {
        /// File offset of the chunk's length word.
        offset: u64,
        /// What went wrong.
        reason: String,
    },
    /// A record that does not decode to a recognised 4 KiB block.
    #[error("corrupt pack file: bad record for block {0}")]
    BadRecord(u64),
    /// Reading or writing failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: io::Error,
    },
    /// Opening the input or output failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The output is the input file itself.
    #[error("input and output are the same file")]
    SameFile,
    /// The user declined to overwrite an output holding metadata.
    #[error("Output file not overwritten")]
    NotOverwritten,
    /// The header's block count does not fit in 64 bits of bytes.
    #[error("pack file describes {0} blocks, too many")]
    TooManyBlocks(u64),
    /// One step on a file failed (the step names the file).
    #[error("{context}")]
    Step {
        /// The step and the file, e.g. `truncating out.pack`.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Finishing the output failed.
    #[error("{context}")]
    Finish {
        /// `writing <output>`.
        context: String,
        /// What failed.
        #[source]
        source: Box<PackError>,
    },
    /// An OS error, shown as it is.
    #[error(transparent)]
    Os(#[from] io::Error),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> PackError {
    let context = context.into();
    move |source| PackError::Io { context, source }
}

/// The decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Blocks of the packed device.
    pub nr_blocks: u64,
}

impl Header {
    /// Encodes the header.
    #[must_use]
    pub fn to_bytes(self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        let words = [PACK_MAGIC, PACK_VERSION, BLOCK_SIZE_U64, self.nr_blocks];
        for (dst, w) in out.chunks_exact_mut(8).zip(words) {
            dst.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Decodes and checks a header.
    ///
    /// # Errors
    /// `NotAPack`, `Version` or `BlockSize`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Header, PackError> {
        if bytes.len() < HEADER_SIZE {
            return Err(PackError::NotAPack);
        }
        let word =
            |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        if word(0) != PACK_MAGIC {
            return Err(PackError::NotAPack);
        }
        if word(1) != PACK_VERSION {
            return Err(PackError::Version(word(1)));
        }
        if word(2) != BLOCK_SIZE_U64 {
            return Err(PackError::BlockSize);
        }
        Ok(Header { nr_blocks: word(3) })
    }

    /// Reads the header at the start of `file`.
    ///
    /// # Errors
    /// As [`Header::from_bytes`], or a read error.
    pub fn read(file: &File) -> Result<Header, PackError> {
        let mut b = [0u8; HEADER_SIZE];
        let mut got = 0;
        while got < HEADER_SIZE {
            match file.read_at(&mut b[got..], got as u64) {
                Ok(0) => return Err(PackError::NotAPack),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("reading pack header")(e)),
            }
        }
        Header::from_bytes(&b)
    }
}

/// What packing stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackStats {
    /// Blocks with a recognised checksum (stored).
    pub stored: u64,
    /// Chunks written.
    pub chunks: u64,
}

/// Packs every block of `dev` with a recognised checksum into `out`. Only
/// blocks inside `ranges` (ascending block ranges) are read: the caller knows
/// the rest reads as zeros (holes of a sparse file), which is never stored.
///
/// # Errors
/// A read error (naming the block) or a write error.
pub fn pack(
    dev: &dyn BlockDevice,
    ranges: &[Range<u64>],
    out: &mut dyn Write,
) -> Result<PackStats, PackError> {
    let nr_blocks = dev.nr_blocks();
    out.write_all(&Header { nr_blocks }.to_bytes())
        .map_err(io_err("writing pack file"))?;
    let segments: Vec<Range<u64>> = ranges
        .iter()
        .flat_map(|r| {
            let end = r.end.min(nr_blocks);
            (r.start..end)
                .step_by(usize::try_from(SEGMENT_BLOCKS).unwrap_or(4096))
                .map(move |s| s..(s + SEGMENT_BLOCKS).min(end))
        })
        .collect();
    let window = rayon::current_num_threads().max(1) * 2;
    let mut stats = PackStats::default();
    for group in segments.chunks(window) {
        let packed: Vec<Result<Segment, PackError>> = group
            .par_iter()
            .map(|s| pack_segment(dev, s.clone()))
            .collect();
        for seg in packed {
            let seg = seg?;
            stats.stored += seg.stored;
            for c in seg.chunks {
                out.write_all(&(c.len() as u64).to_le_bytes())
                    .and_then(|()| out.write_all(&c))
                    .map_err(io_err("writing pack file"))?;
                stats.chunks += 1;
            }
        }
    }
    out.flush().map_err(io_err("writing pack file"))?;
    Ok(stats)
}

/// The compressed chunks of one segment.
struct Segment {
    chunks: Vec<Vec<u8>>,
    stored: u64,
}

/// Reads, encodes and compresses one segment of the device.
fn pack_segment(dev: &dyn BlockDevice, seg: Range<u64>) -> Result<Segment, PackError> {
    let (first, end) = (seg.start, seg.end);
    let mut bufs = Block::zeroed_vec(READ_RUN);
    let mut chunks = Vec::new();
    let mut records = Vec::with_capacity(RECORDS_PER_CHUNK * 512);
    let mut in_chunk = 0;
    let mut stored = 0;
    let mut at = first;
    while at < end {
        let n = usize::try_from((end - at).min(READ_RUN as u64)).unwrap_or(READ_RUN);
        dev.read_run(at, &mut bufs[..n])
            .map_err(io_err(format!("reading block {at}")))?;
        for (i, b) in bufs[..n].iter().enumerate() {
            let Some(kind) = checksum::classify(&b.0) else {
                continue;
            };
            records.extend_from_slice(&(at + i as u64).to_le_bytes());
            encode::block(&mut records, &b.0, kind);
            in_chunk += 1;
            stored += 1;
            if in_chunk == RECORDS_PER_CHUNK {
                chunks.push(compress(&records)?);
                records.clear();
                in_chunk = 0;
            }
        }
        at += n as u64;
    }
    if in_chunk > 0 {
        chunks.push(compress(&records)?);
    }
    Ok(Segment { chunks, stored })
}

fn compress(records: &[u8]) -> Result<Vec<u8>, PackError> {
    let mut z = ZlibEncoder::new(
        Vec::with_capacity(records.len() / 4),
        Compression::default(),
    );
    z.write_all(records)
        .and_then(|()| z.finish())
        .map_err(io_err("compressing"))
}

/// Location of one chunk's compressed bytes in the pack file.
#[derive(Clone, Copy, Debug)]
struct ChunkLoc {
    /// Offset of the length word (for messages).
    offset: u64,
    /// Compressed length.
    len: u64,
}

/// Lists the chunks after the header, checking each lies inside the file.
fn scan_chunks(file: &File, file_len: u64) -> Result<Vec<ChunkLoc>, PackError> {
    let mut chunks = Vec::new();
    let mut pos = HEADER_SIZE as u64;
    while pos < file_len {
        let mut w = [0u8; 8];
        if file_len - pos < 8 {
            return Err(PackError::TruncatedChunk(pos));
        }
        file.read_exact_at(&mut w, pos)
            .map_err(io_err("reading pack file"))?;
        let len = u64::from_le_bytes(w);
        if len > file_len - pos - 8 {
            return Err(PackError::TruncatedChunk(pos));
        }
        chunks.push(ChunkLoc { offset: pos, len });
        pos += 8 + len;
    }
    Ok(chunks)
}

/// Where unpacked blocks go.
pub trait BlockSink {
    /// Receives block `nr` (already checked to be a recognised block).
    ///
    /// # Errors
    /// A write error.
    fn put(&mut self, nr: BlockNr, block: &Block) -> Result<(), PackError>;
}

/// Decodes every record of one chunk, handing each to `f`.
fn decode_chunk(
    file: &File,
    loc: ChunkLoc,
    nr_blocks: u64,
    f: &mut dyn FnMut(BlockNr, &Block) -> Result<(), PackError>,
) -> Result<(), PackError> {
    let len = usize::try_from(loc.len).map_err(|_| PackError::TruncatedChunk(loc.offset))?;
    let mut compressed = vec![0u8; len];
    file.read_exact_at(&mut compressed, loc.offset + 8)
        .map_err(io_err("reading pack file"))?;
    let bad = |reason: String| PackError::BadChunk {
        offset: loc.offset,
        reason,
    };
    let mut vm = Vm::new(BufReader::with_capacity(
        64 * 1024,
        ZlibDecoder::new(&compressed[..]),
    ));
    let mut bytes = Vec::with_capacity(BLOCK_SIZE);
    let mut block = Block::zeroed();
    loop {
        let mut nr = [0u8; 8];
        match read_full(vm.input(), &mut nr) {
            Ok(0) => return Ok(()),
            Ok(8) => {}
            Ok(_) => return Err(bad("record truncated".into())),
            Err(e) => return Err(bad(e.to_string())),
        }
        let nr = u64::from_le_bytes(nr);
        match vm.decode(BLOCK_SIZE, &mut bytes) {
            Ok(()) => {}
            Err(VmError::Io(e)) => return Err(bad(e.to_string())),
            Err(_) => return Err(PackError::BadRecord(nr)),
        }
        block.0.copy_from_slice(&bytes);
        if nr >= nr_blocks || checksum::classify(&block.0).is_none() {
            return Err(PackError::BadRecord(nr));
        }
        f(nr, &block)?;
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

enum Decoded {
    Blocks(Vec<(BlockNr, Box<Block>)>),
    /// More records than one task may buffer: decode again, streaming.
    TooMany,
}

/// Unpacks every chunk of `file` (whose header was read already) into `sink`,
/// in file order.
///
/// # Errors
/// A [`PackError`] for a corrupt file or a failed write.
pub fn unpack(file: &File, header: Header, sink: &mut dyn BlockSink) -> Result<(), PackError> {
    let file_len = file.metadata().map_err(io_err("reading pack file"))?.len();
    let chunks = scan_chunks(file, file_len)?;
    let window = rayon::current_num_threads().max(1) * 2;
    for group in chunks.chunks(window) {
        let decoded: Vec<Result<Decoded, PackError>> = group
            .par_iter()
            .map(|&loc| buffer_chunk(file, loc, header.nr_blocks))
            .collect();
        for (loc, d) in group.iter().zip(decoded) {
            match d? {
                Decoded::Blocks(blocks) => {
                    for (nr, b) in blocks {
                        sink.put(nr, &b)?;
                    }
                }
                Decoded::TooMany => {
                    decode_chunk(file, *loc, header.nr_blocks, &mut |nr, b| sink.put(nr, b))?;
                }
            }
        }
    }
    Ok(())
}

fn buffer_chunk(file: &File, loc: ChunkLoc, nr_blocks: u64) -> Result<Decoded, PackError> {
    let mut blocks = Vec::new();
    let mut too_many = false;
    let r = decode_chunk(file, loc, nr_blocks, &mut |nr, b| {
        if blocks.len() == MAX_BUFFERED_RECORDS {
            too_many = true;
            // Stop decoding; the caller streams this chunk instead.
            return Err(PackError::BadRecord(u64::MAX));
        }
        blocks.push((nr, Box::new(b.clone())));
        Ok(())
    });
    match r {
        Ok(()) => Ok(Decoded::Blocks(blocks)),
        Err(_) if too_many => Ok(Decoded::TooMany),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::checksum::{write_checksum, BlockKind};
    use crate::pdata::io::MemDevice;

    struct MemSink(MemDevice);
    impl BlockSink for MemSink {
        fn put(&mut self, nr: BlockNr, block: &Block) -> Result<(), PackError> {
            self.0.write_at(nr, block).map_err(io_err("test"))
        }
    }

    fn packed_file(dev: &MemDevice) -> File {
        let mut f = tempfile::tempfile().unwrap();
        let all = Range {
            start: 0,
            end: dev.nr_blocks(),
        };
        pack(dev, &[all], &mut f).unwrap();
        f
    }

    #[test]
    fn header_errors_are_worded_as_the_spec() {
        let mut h = Header { nr_blocks: 7 }.to_bytes();
        assert_eq!(Header::from_bytes(&h).unwrap().nr_blocks, 7);
        h[8] = 2;
        assert_eq!(
            Header::from_bytes(&h).unwrap_err().to_string(),
            "unsupported pack file version (2)."
        );
        h[8] = 3;
        h[17] = 0x20;
        assert_eq!(
            Header::from_bytes(&h).unwrap_err().to_string(),
            "block size is not 4096"
        );
        h[0] ^= 1;
        assert_eq!(
            Header::from_bytes(&h).unwrap_err().to_string(),
            "Not a pack file"
        );
        assert_eq!(
            Header::from_bytes(&h[..31]).unwrap_err().to_string(),
            "Not a pack file"
        );
    }

    #[test]
    fn unknown_blocks_are_dropped_and_known_ones_survive() {
        let dev = MemDevice::new(9000);
        let mut b = Block::zeroed();
        for nr in [0u64, 5, 4097, 8999] {
            b.0.fill(u8::try_from(nr % 251).unwrap());
            b.0[8..16].copy_from_slice(&nr.to_le_bytes());
            write_checksum(&mut b.0, BlockKind::Bitmap);
            dev.write_at(nr, &b).unwrap();
        }
        b.0.fill(0x55);
        dev.write_at(6, &b).unwrap();
        let f = packed_file(&dev);
        let h = Header::read(&f).unwrap();
        assert_eq!(h.nr_blocks, 9000);
        let mut sink = MemSink(MemDevice::new(9000));
        unpack(&f, h, &mut sink).unwrap();
        let mut want = dev.to_bytes();
        want[6 * BLOCK_SIZE..7 * BLOCK_SIZE].fill(0);
        assert!(sink.0.to_bytes() == want);
    }

    #[test]
    fn duplicate_records_take_the_last_value() {
        let mk = |v: u8| {
            let mut b = Block::zeroed();
            b.0.fill(v);
            write_checksum(&mut b.0, BlockKind::Index);
            b
        };
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&Header { nr_blocks: 4 }.to_bytes()).unwrap();
        for v in [1u8, 2, 3] {
            let mut rec = 2u64.to_le_bytes().to_vec();
            encode::block(&mut rec, &mk(v).0, BlockKind::Index);
            let c = compress(&rec).unwrap();
            f.write_all(&(c.len() as u64).to_le_bytes()).unwrap();
            f.write_all(&c).unwrap();
        }
        let mut sink = MemSink(MemDevice::new(4));
        unpack(&f, Header { nr_blocks: 4 }, &mut sink).unwrap();
        let mut got = Block::zeroed();
        sink.0.read_at(2, &mut got).unwrap();
        assert!(got.0 == mk(3).0);
    }

    #[test]
    fn a_record_beyond_the_device_or_unrecognised_is_rejected() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&Header { nr_blocks: 4 }.to_bytes()).unwrap();
        let mut rec = 4u64.to_le_bytes().to_vec();
        let mut b = Block::zeroed();
        write_checksum(&mut b.0, BlockKind::Node);
        encode::block(&mut rec, &b.0, BlockKind::Node);
        let c = compress(&rec).unwrap();
        f.write_all(&(c.len() as u64).to_le_bytes()).unwrap();
        f.write_all(&c).unwrap();
        let mut sink = MemSink(MemDevice::new(4));
        let e = unpack(&f, Header { nr_blocks: 4 }, &mut sink).unwrap_err();
        assert_eq!(e.to_string(), "corrupt pack file: bad record for block 4");

        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&Header { nr_blocks: 4 }.to_bytes()).unwrap();
        let mut rec = 1u64.to_le_bytes().to_vec();
        encode::literal(&mut rec, &[7u8; BLOCK_SIZE]);
        let c = compress(&rec).unwrap();
        f.write_all(&(c.len() as u64).to_le_bytes()).unwrap();
        f.write_all(&c).unwrap();
        let e = unpack(&f, Header { nr_blocks: 4 }, &mut sink).unwrap_err();
        assert_eq!(e.to_string(), "corrupt pack file: bad record for block 1");
        // A chunk length pointing past the end of the file.
        f.write_all(&1000u64.to_le_bytes()).unwrap();
        let e = unpack(&f, Header { nr_blocks: 4 }, &mut sink).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("corrupt pack file: truncated chunk at offset"));
    }
}
