//! Damaging metadata images for tests, one 4 KiB block at a time: in a file
//! the tools then run on ([`read_block`], [`patch_block`]), or in memory for
//! the in-process engines ([`Image`]). A patch either re-checksums the block
//! as a given kind (a well-formed block with other contents) or leaves the
//! old checksum (a "checksum failed" block).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use thintools::pdata::block::BLOCK_SIZE;
use thintools::pdata::checksum::{write_checksum, BlockKind};

/// Byte offset of the superblock's `data_mapping_root`.
const SB_MAPPING_ROOT: usize = 320;
/// Byte offset of the superblock's `device_details_root`.
const SB_DETAILS_ROOT: usize = 328;

fn offset(nr: u64) -> u64 {
    nr.checked_mul(BLOCK_SIZE as u64).expect("block offset")
}

/// Block `nr` of the image file at `path`.
pub fn read_block(path: &Path, nr: u64) -> [u8; BLOCK_SIZE] {
    let file = std::fs::File::open(path).unwrap();
    let mut b = [0u8; BLOCK_SIZE];
    file.read_exact_at(&mut b, offset(nr))
        .unwrap_or_else(|e| panic!("{}: block {nr}: {e}", path.display()));
    b
}

/// Rewrites block `nr` of the file at `path` through `f`, then re-checksums
/// it as `kind` (`None` keeps the old checksum).
pub fn patch_block(
    path: &Path,
    nr: u64,
    kind: Option<BlockKind>,
    f: impl FnOnce(&mut [u8; BLOCK_SIZE]),
) {
    let mut b = read_block(path, nr);
    f(&mut b);
    if let Some(k) = kind {
        write_checksum(&mut b, k);
    }
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&b, offset(nr)).unwrap();
}

/// The little-endian u64 at `off` in `b`.
pub fn le_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// An image in memory, to damage and hand to an engine.
pub struct Image {
    pub bytes: Vec<u8>,
}

impl Image {
    /// Loads a zstd-compressed image (a fixture's or a corpus sample's).
    pub fn load_zst(path: &Path) -> Image {
        Image {
            bytes: super::fixtures::unzstd_bytes(path),
        }
    }

    pub fn block_mut(&mut self, nr: u64) -> &mut [u8; BLOCK_SIZE] {
        let off = usize::try_from(offset(nr)).unwrap();
        (&mut self.bytes[off..off + BLOCK_SIZE]).try_into().unwrap()
    }

    pub fn block(&self, nr: u64) -> &[u8; BLOCK_SIZE] {
        let off = usize::try_from(offset(nr)).unwrap();
        (&self.bytes[off..off + BLOCK_SIZE]).try_into().unwrap()
    }

    pub fn nr_blocks(&self) -> u64 {
        (self.bytes.len() / BLOCK_SIZE) as u64
    }

    /// Zeroes a block.
    pub fn zero(&mut self, nr: u64) {
        self.block_mut(nr).fill(0);
    }

    /// Flips a byte so the checksum fails.
    pub fn corrupt(&mut self, nr: u64) {
        self.block_mut(nr)[100] ^= 0x5a;
    }

    /// Rewrites block `nr` through `f`, then re-checksums it as `kind`
    /// (`None` keeps the old checksum), like [`patch_block`] on a file.
    pub fn patch(
        &mut self,
        nr: u64,
        kind: Option<BlockKind>,
        f: impl FnOnce(&mut [u8; BLOCK_SIZE]),
    ) {
        let b = self.block_mut(nr);
        f(b);
        if let Some(k) = kind {
            write_checksum(b, k);
        }
    }

    /// Patches a little-endian u64 in a block and fixes its checksum.
    pub fn patch_u64(&mut self, nr: u64, off: usize, v: u64, kind: BlockKind) {
        self.patch(nr, Some(kind), |b| {
            b[off..off + 8].copy_from_slice(&v.to_le_bytes());
        });
    }

    pub fn u64_at(&self, nr: u64, off: usize) -> u64 {
        le_u64(self.block(nr), off)
    }

    pub fn mapping_root(&self) -> u64 {
        self.u64_at(0, SB_MAPPING_ROOT)
    }

    pub fn details_root(&self) -> u64 {
        self.u64_at(0, SB_DETAILS_ROOT)
    }
}
