//! Small pools written into memory by the metadata writer, and the node
//! surgery the unit tests of the repair steps damage them with.

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::NodeRef;
use crate::pdata::checksum::{write_checksum, BlockKind};
use crate::pdata::io::{BlockDevice, MemDevice};
use crate::progress::{Log, Verbosity};
use crate::thin::engines::repair::RepairOptions;
use crate::thin::ir::metadata_writer::{Overrides, ThinWriter};
use crate::thin::ir::{DeviceInfo, Map, MetadataVisitor, SuperblockInfo};
use crate::thin::model::superblock::{read_superblock, Superblock};

/// Metadata blocks of every test image.
pub const BLOCKS: usize = 256;
/// Blocks the writer never reaches in a test image (free for copies).
pub const FREE: std::ops::Range<BlockNr> = 240..256;
/// Superblock values of every test image.
pub const TIME: u32 = 2;
/// Transaction id of every test image.
pub const TRANSACTION: u64 = 5;

/// A pool holding `devices` (id, number of mappings): device `id` maps thin
/// blocks `0..n` to consecutive data blocks at time 1, was created at
/// transaction `id` and time 1.
pub fn pool(devices: &[(u64, u64)]) -> MemDevice {
    let dev = MemDevice::new(BLOCKS);
    let sb = SuperblockInfo {
        uuid: String::new(),
        time: TIME,
        transaction: TRANSACTION,
        flags: 0,
        version: 2,
        data_block_size: 128,
        nr_data_blocks: 10_000,
        metadata_snap: None,
    };
    let mut w = ThinWriter::new(&dev, Overrides::default());
    w.superblock_begin(&sb).unwrap();
    let mut data = 0;
    for &(id, n) in devices {
        w.device_begin(&DeviceInfo {
            dev_id: id,
            mapped_blocks: n,
            transaction: id,
            creation_time: 1,
            snap_time: 1,
        })
        .unwrap();
        if n > 0 {
            w.map(&Map {
                thin_begin: 0,
                data_begin: data,
                time: 1,
                len: n,
            })
            .unwrap();
        }
        data += n;
        w.device_end().unwrap();
    }
    w.superblock_end().unwrap();
    w.eof().unwrap();
    drop(w);
    for nr in FREE {
        assert!(read(&dev, nr).is_zero(), "block {nr} is used");
    }
    dev
}

/// Options with no overrides and messages captured at `-v`.
pub fn options() -> RepairOptions {
    RepairOptions {
        log: Log::capture(Verbosity::Info),
        ..RepairOptions::new(Verbosity::Info)
    }
}

/// The superblock at block 0.
pub fn superblock(dev: &MemDevice) -> Superblock {
    read_superblock(dev, 0).unwrap().0
}

/// Block `nr`.
pub fn read(dev: &MemDevice, nr: BlockNr) -> Box<Block> {
    let mut b = Block::zeroed();
    dev.read_at(nr, &mut b).unwrap();
    b
}

/// Breaks block `nr`'s checksum.
pub fn corrupt(dev: &MemDevice, nr: BlockNr) {
    let mut b = read(dev, nr);
    b.0[100] ^= 0x5a;
    dev.write_at(nr, &b).unwrap();
}

/// Zeroes block `nr`.
pub fn zero(dev: &MemDevice, nr: BlockNr) {
    dev.write_at(nr, &Block::zeroed()).unwrap();
}

/// The (key, value) entries of the node with 8-byte values at `nr`.
pub fn entries(dev: &MemDevice, nr: BlockNr) -> Vec<(u64, u64)> {
    let b = read(dev, nr);
    let n = NodeRef::new(&b.0, nr, 8).unwrap();
    n.keys()
        .iter()
        .zip(n.values_u64())
        .map(|(k, v)| (k.get(), v.get()))
        .collect()
}

/// Copies the node at `from` to `to`, with every value `old` replaced by `new`.
pub fn copy_node(dev: &MemDevice, from: BlockNr, to: BlockNr, old: u64, new: u64) {
    let mut b = read(dev, from);
    b.0[8..16].copy_from_slice(&to.to_le_bytes());
    let n = u32::from_le_bytes(b.0[16..20].try_into().unwrap()) as usize;
    let max = u32::from_le_bytes(b.0[20..24].try_into().unwrap()) as usize;
    for i in 0..n {
        let o = 32 + 8 * max + 8 * i;
        if u64::from_le_bytes(b.0[o..o + 8].try_into().unwrap()) == old {
            b.0[o..o + 8].copy_from_slice(&new.to_le_bytes());
        }
    }
    write_checksum(&mut b.0, BlockKind::Node);
    dev.write_at(to, &b).unwrap();
}
