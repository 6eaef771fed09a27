//! Writing fresh metadata: a sequential block allocator with a write buffer,
//! and the metadata reference counts of every block it hands out.
//!
//! Blocks are allocated only when their content is final, so every block is
//! written exactly once and in ascending order: the output is one long
//! sequential write. Block 0 (the superblock) is zeroed and flushed when the
//! writer is created and written last by [`BlockAllocator::commit`], so a
//! crash part-way never leaves a valid superblock over partial trees.

use crate::pdata::block::{Block, BlockNr, BLOCK_SIZE};
use crate::pdata::btree::build::{NodeStore, WriteError};
use crate::pdata::checksum::{self, BlockKind};
use crate::pdata::io::BlockDevice;
use crate::pdata::space_map::sparse_counts::CountMap;
use crate::pdata::space_map::MAX_METADATA_BLOCKS;
use crate::pdata::to_index;

/// Blocks buffered before one large write (1 MiB).
const BUFFER_BLOCKS: usize = 256;

/// Sequential allocator and writer of metadata blocks.
pub struct BlockAllocator<'d> {
    dev: &'d dyn BlockDevice,
    nr_blocks: u64,
    next: BlockNr,
    buf: Vec<Block>,
    buf_start: BlockNr,
    buf_len: usize,
    counts: CountMap,
}

impl<'d> BlockAllocator<'d> {
    /// Starts writing to `dev`: zeroes block 0 and flushes, so that no valid
    /// superblock survives over partial trees. The metadata space map covers
    /// `min(dev blocks, MAX_METADATA_BLOCKS)` blocks.
    ///
    /// # Errors
    /// Output I/O errors.
    pub fn new(dev: &'d dyn BlockDevice) -> Result<Self, WriteError> {
        let nr_blocks = dev.nr_blocks().min(MAX_METADATA_BLOCKS);
        dev.write_at(0, &Block::zeroed())?;
        dev.sync()?;
        let mut counts = CountMap::new(nr_blocks);
        counts.inc(0).map_err(|_| WriteError::OutOfSpace)?;
        Ok(BlockAllocator {
            dev,
            nr_blocks,
            next: 1,
            buf: Block::zeroed_vec(BUFFER_BLOCKS),
            buf_start: 1,
            buf_len: 0,
            counts,
        })
    }

    /// Blocks managed by the metadata space map.
    #[must_use]
    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    /// The next block to be allocated (= number of blocks handed out so far).
    #[must_use]
    pub fn next_block(&self) -> BlockNr {
        self.next
    }

    /// Metadata reference counts so far.
    #[must_use]
    pub fn counts(&self) -> &CountMap {
        &self.counts
    }

    /// Reference count of block `b`.
    #[must_use]
    pub fn count(&self, b: BlockNr) -> u32 {
        self.counts.get(b)
    }

    /// Drops one reference to `b`.
    pub fn dec_ref(&mut self, b: BlockNr) {
        self.counts.dec(b);
    }

    /// Writes the buffered blocks out.
    ///
    /// # Errors
    /// Output I/O errors.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        if self.buf_len > 0 {
            self.dev
                .write_run(self.buf_start, &self.buf[..self.buf_len])?;
            self.buf_start += self.buf_len as u64;
            self.buf_len = 0;
        }
        Ok(())
    }

    /// Reads back a block written earlier (from the buffer or the device).
    ///
    /// # Errors
    /// Output I/O errors.
    pub fn read_back(&self, b: BlockNr, out: &mut Block) -> Result<(), WriteError> {
        if b >= self.buf_start && b < self.buf_start + self.buf_len as u64 {
            let i = to_index(b - self.buf_start);
            out.0.copy_from_slice(&self.buf[i].0);
            return Ok(());
        }
        self.dev.read_at(b, out)?;
        Ok(())
    }

    /// Flushes everything, writes `superblock` (already checksummed, for
    /// block 0) and flushes again.
    ///
    /// # Errors
    /// Output I/O errors.
    pub fn commit(&mut self, superblock: &Block) -> Result<(), WriteError> {
        self.flush()?;
        self.dev.sync()?;
        self.dev.write_at(0, superblock)?;
        self.dev.sync()?;
        Ok(())
    }
}

impl NodeStore for BlockAllocator<'_> {
    fn append(&mut self, block: &mut Block, kind: BlockKind) -> Result<BlockNr, WriteError> {
        let loc = self.next;
        if loc >= self.nr_blocks {
            return Err(WriteError::OutOfSpace);
        }
        block.0[8..16].copy_from_slice(&loc.to_le_bytes());
        checksum::write_checksum(&mut block.0, kind);
        if self.buf_len == BUFFER_BLOCKS {
            self.flush()?;
        }
        self.buf[self.buf_len]
            .0
            .copy_from_slice(&block.0[..BLOCK_SIZE]);
        self.buf_len += 1;
        self.next += 1;
        Ok(loc)
    }

    fn inc_ref(&mut self, b: BlockNr) {
        // Only blocks handed out by this writer are ever referenced.
        let _ = self.counts.inc(b);
    }
}
