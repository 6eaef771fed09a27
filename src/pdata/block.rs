//! The unit of metadata I/O: a 4 KiB block, aligned to 4 KiB so that the same
//! buffer can be used for O_DIRECT reads of block devices.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of every metadata block in bytes (fixed by the format).
pub const BLOCK_SIZE: usize = 4096;

/// `BLOCK_SIZE` as a `u64`, for offset arithmetic.
pub const BLOCK_SIZE_U64: u64 = 4096;

/// A metadata block number (block `n` lives at byte offset `n * 4096`).
pub type BlockNr = u64;

/// One 4 KiB metadata block with 4 KiB alignment.
#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(4096))]
pub struct Block(pub [u8; BLOCK_SIZE]);

impl Block {
    /// An all-zero block on the heap.
    #[must_use]
    pub fn zeroed() -> Box<Block> {
        Box::new(Block([0; BLOCK_SIZE]))
    }

    /// A vector of `n` zeroed blocks (contiguous and aligned).
    #[must_use]
    pub fn zeroed_vec(n: usize) -> Vec<Block> {
        vec![Block([0; BLOCK_SIZE]); n]
    }

    /// True when every byte of the block is zero.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }
}

impl std::ops::Deref for Block {
    type Target = [u8; BLOCK_SIZE];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Block {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Consecutive blocks of a regular file mapped read-only into memory, so that
/// large batched reads need no copy out of the page cache. Unmapped on drop:
/// only one run per reading thread is mapped at a time, which keeps the
/// resident set small however large the metadata is.
pub struct MappedBlocks {
    ptr: std::ptr::NonNull<Block>,
    nr: usize,
}

impl MappedBlocks {
    /// Maps blocks `first..first + nr` of `file`.
    ///
    /// # Errors
    /// Offset overflow or the OS refusing the mapping.
    pub fn map(file: &std::fs::File, first: BlockNr, nr: usize) -> std::io::Result<Self> {
        use std::os::unix::io::AsRawFd;
        let overflow = || std::io::Error::other("mapping offset overflows");
        let len = nr.checked_mul(BLOCK_SIZE).ok_or_else(overflow)?;
        let off = first
            .checked_mul(BLOCK_SIZE_U64)
            .and_then(|o| libc::off_t::try_from(o).ok())
            .ok_or_else(overflow)?;
        if len == 0 {
            return Err(std::io::Error::other("empty mapping"));
        }
        // SAFETY: a fresh private read-only mapping of `len` bytes of an open
        // file at a page-aligned offset; no existing memory is affected. The
        // result is checked against MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                file.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p.cast::<Block>())
            .ok_or_else(|| std::io::Error::other("null mapping"))?;
        Ok(MappedBlocks { ptr, nr })
    }

    /// The mapped blocks.
    #[must_use]
    pub fn blocks(&self) -> &[Block] {
        // SAFETY: the mapping is `nr * 4096` readable bytes at a page-aligned
        // (hence 4096-aligned) address, valid until `self` is dropped; any
        // byte pattern is a valid `Block`. The callers read metadata files
        // that are not truncated or rewritten while a tool runs (the same
        // assumption every reader of the file makes).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.nr) }
    }
}

impl Drop for MappedBlocks {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `map` created; no reference into
        // it outlives `self` (`blocks` borrows `self`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.nr * BLOCK_SIZE);
        }
    }
}
