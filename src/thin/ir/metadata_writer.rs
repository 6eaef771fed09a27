//! The thin-metadata writer: a sink of the IR that writes fresh metadata.
//!
//! Used by thin_restore (XML source) and thin_repair (salvage source). It
//! streams: mappings go straight into leaves, data reference counts are kept
//! per data block (four bits each, for the blocks actually used), and only the
//! device table, one summary per `<def>` and the metadata counts grow.
//!
//! Layout and order: block 0 is zeroed and flushed first; the
//! trees are written as they are built, then the top-level and details trees,
//! the data space map, the metadata space map; the superblock is written last.
//!
//! Sharing: a `<def>` is packed into leaves once; each `<ref>` reuses those
//! leaves (one more reference each), except that when the device's own
//! mappings just before the ref would form an underfull leaf, the def's first
//! leaf is copied into them instead. Def leaves nobody references and trees of
//! devices replaced by a later definition are released at the end (their data
//! counts are given back).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::build::{BtreeBuilder, LeafPacker, NodeStore, ValueRun, WrittenNode};
use crate::pdata::btree::node::NodeRef;
use crate::pdata::io::BlockDevice;
use crate::pdata::space_map::allocator::BlockAllocator;
use crate::pdata::space_map::sparse_counts::CountMap;
use crate::pdata::space_map::write::{write_data_sm, write_metadata_sm};
use crate::thin::ir::error::WriterError;
use crate::thin::ir::{DeviceInfo, IrError, Map, MetadataVisitor, SuperblockInfo, Visit};
use crate::thin::model::device_details::DeviceDetails;
use crate::thin::model::mapping::{BlockTime, DATA_BLOCK_LIMIT, TIME_BITS, TIME_LIMIT};
use crate::thin::model::superblock::Superblock;

type Result<T, E = WriterError> = std::result::Result<T, E>;

/// Re-exported where the writer's users have always found it.
pub use crate::thin::ir::Overrides;

/// What the writer produced (for `-v` and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Devices written.
    pub nr_devices: u64,
    /// Mappings written (each shared leaf counted once per device).
    pub nr_mappings: u64,
    /// Metadata blocks in use.
    pub metadata_blocks_used: u64,
}

/// A `<def>` already packed into leaves.
struct Def {
    leaves: Vec<WrittenNode>,
    nr_mappings: u64,
}

/// One device in the table.
struct DeviceEntry {
    root: BlockNr,
    details: DeviceDetails,
}

/// What is being built right now.
enum Current {
    Nothing,
    Def {
        name: u64,
        packer: LeafPacker,
        leaves: Vec<WrittenNode>,
        nr: u64,
        last_key: Option<u64>,
    },
    Device {
        info: DeviceInfo,
        builder: BtreeBuilder,
        nr: u64,
        last_key: Option<u64>,
        /// The last leaf of the latest ref, shared only if enough of the
        /// device's own mappings follow it (else it is copied into them).
        deferred: Option<WrittenNode>,
        /// Own mappings after `deferred` (key, value).
        tail: Vec<(u64, u64)>,
    },
}

/// Everything live between `superblock_begin` and the end.
struct Active<'d> {
    w: BlockAllocator<'d>,
    sb: SuperblockInfo,
    data: CountMap,
    defs: HashMap<u64, Def>,
    def_leaves: Vec<BlockNr>,
    devices: BTreeMap<u64, DeviceEntry>,
    dropped: Vec<BlockNr>,
    cur: Current,
    nr_mappings: u64,
}

/// The binary metadata writer.
pub struct ThinWriter<'d> {
    out: &'d dyn BlockDevice,
    overrides: Overrides,
    active: Option<Active<'d>>,
    warnings: Vec<String>,
    summary: Option<WriteSummary>,
}

fn leaf_value(m: &Map, i: u64) -> Result<[u8; 8]> {
    let bt = BlockTime {
        block: m.data_begin + i,
        time: m.time,
    };
    bt.pack()
        .map(u64::to_le_bytes)
        .ok_or(WriterError::DataOutOfBounds {
            data_begin: m.data_begin,
        })
}

/// The leaf entries of `m` as one run (its first and last values checked).
fn value_run(m: &Map) -> Result<ValueRun> {
    let first = u64::from_le_bytes(leaf_value(m, 0)?);
    leaf_value(m, m.len - 1)?;
    Ok(ValueRun {
        key: m.thin_begin,
        value: first,
        value_step: 1 << TIME_BITS,
        n: m.len,
    })
}

impl<'d> ThinWriter<'d> {
    /// A writer to `out`; nothing is written before `superblock_begin`.
    #[must_use]
    pub fn new(out: &'d dyn BlockDevice, overrides: Overrides) -> Self {
        ThinWriter {
            out,
            overrides,
            active: None,
            warnings: Vec::new(),
            summary: None,
        }
    }

    /// Warnings so far (duplicate devices, mapped_blocks differences); drained.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The summary, once the superblock has been written.
    #[must_use]
    pub fn summary(&self) -> Option<&WriteSummary> {
        self.summary.as_ref()
    }

    fn active(&mut self) -> Result<&mut Active<'d>> {
        self.active.as_mut().ok_or(WriterError::MissingSuperblock)
    }

    fn finish(&mut self) -> Result<()> {
        let Some(a) = self.active.take() else {
            return Err(WriterError::MissingSuperblock);
        };
        if !matches!(a.cur, Current::Nothing) {
            return Err(WriterError::Incomplete);
        }
        self.summary = Some(a.finish()?);
        Ok(())
    }
}

impl<'d> Active<'d> {
    fn check_map(&self, m: &Map, last_key: Option<u64>) -> Result<()> {
        if u64::from(m.time) >= TIME_LIMIT {
            return Err(WriterError::TimeOutOfRange { time: m.time });
        }
        let data_end = m.data_begin.checked_add(m.len);
        if data_end.is_none_or(|e| e > self.sb.nr_data_blocks || e > DATA_BLOCK_LIMIT) {
            return Err(WriterError::DataOutOfBounds {
                data_begin: m.data_begin,
            });
        }
        if m.thin_begin.checked_add(m.len).is_none() || last_key.is_some_and(|k| m.thin_begin <= k)
        {
            return Err(WriterError::KeysOutOfOrder {
                thin_begin: m.thin_begin,
            });
        }
        Ok(())
    }

    fn map(&mut self, m: &Map) -> Result<()> {
        if m.len == 0 {
            return Ok(());
        }
        let last = match &self.cur {
            Current::Def { last_key, .. } | Current::Device { last_key, .. } => *last_key,
            Current::Nothing => return Err(WriterError::MappingOutside),
        };
        self.check_map(m, last)?;
        self.data
            .inc_range(m.data_begin, m.len)
            .map_err(|_| WriterError::DataOutOfBounds {
                data_begin: m.data_begin,
            })?;
        let w = &mut self.w;
        match &mut self.cur {
            Current::Def {
                packer,
                leaves,
                nr,
                last_key,
                ..
            } => {
                let run = value_run(m)?;
                let mut done = 0;
                while done < m.len {
                    let (took, leaf) = packer.push_run(w, run.skip(done))?;
                    leaves.extend(leaf);
                    done += took;
                }
                *nr += m.len;
                *last_key = Some(m.thin_begin + m.len - 1);
            }
            Current::Device {
                builder,
                nr,
                last_key,
                deferred,
                tail,
                ..
            } => {
                if deferred.is_none() {
                    builder.push_run(w, value_run(m)?)?;
                    *nr += m.len;
                    *last_key = Some(m.thin_begin + m.len - 1);
                    self.nr_mappings += m.len;
                    return Ok(());
                }
                for i in 0..m.len {
                    let v = u64::from_le_bytes(leaf_value(m, i)?);
                    if deferred.is_some() {
                        tail.push((m.thin_begin + i, v));
                        if tail.len() >= builder.leaf_max_entries() / 2 {
                            if let Some(d) = deferred.take() {
                                builder.push_leaf(w, &d)?;
                            }
                            for &(k, v) in tail.iter() {
                                builder.push_value(w, k, &v.to_le_bytes())?;
                            }
                            tail.clear();
                        }
                    } else {
                        builder.push_value(w, m.thin_begin + i, &v.to_le_bytes())?;
                    }
                }
                *nr += m.len;
                *last_key = Some(m.thin_begin + m.len - 1);
            }
            Current::Nothing => {}
        }
        self.nr_mappings += m.len;
        Ok(())
    }

    /// Copies a written leaf's entries into the device's own leaves (a new
    /// leaf: its data blocks get one more reference).
    fn copy_leaf(
        w: &mut BlockAllocator<'d>,
        data: &mut CountMap,
        builder: &mut BtreeBuilder,
        leaf: BlockNr,
    ) -> Result<()> {
        let mut blk = Block::zeroed();
        w.read_back(leaf, &mut blk)?;
        let node = NodeRef::parse(&blk.0, leaf, 8).map_err(WriterError::SharedLeaf)?;
        for i in 0..node.len() {
            let v = node.value_u64(i);
            let block = BlockTime::unpack(v).block;
            data.inc(block)
                .map_err(|_| WriterError::CountOutOfRange { block })?;
            builder.push_value(w, node.key(i), &v.to_le_bytes())?;
        }
        Ok(())
    }

    /// Decides the deferred leaf of the last ref: shared when nothing of the
    /// device follows it, copied together with a short tail otherwise.
    fn settle_deferred(&mut self) -> Result<()> {
        let Current::Device {
            builder,
            deferred,
            tail,
            ..
        } = &mut self.cur
        else {
            return Ok(());
        };
        let Some(d) = deferred.take() else {
            return Ok(());
        };
        if tail.is_empty() {
            builder.push_leaf(&mut self.w, &d)?;
        } else {
            Self::copy_leaf(&mut self.w, &mut self.data, builder, d.block)?;
            for &(k, v) in tail.iter() {
                builder.push_value(&mut self.w, k, &v.to_le_bytes())?;
            }
            tail.clear();
        }
        Ok(())
    }

    fn ref_shared(&mut self, name: u64) -> Result<()> {
        if !matches!(self.cur, Current::Device { .. }) {
            return Err(WriterError::RefOutside);
        }
        let Some(def) = self.defs.get(&name) else {
            return Err(WriterError::UnknownDef(name));
        };
        let (Some(first), Some(last)) = (def.leaves.first().copied(), def.leaves.last().copied())
        else {
            return Ok(());
        };
        let leaves = def.leaves.clone();
        let nr_mappings = def.nr_mappings;
        if let Current::Device { last_key, .. } = &self.cur {
            if last_key.is_some_and(|k| first.first_key <= k) {
                return Err(WriterError::KeysOutOfOrder {
                    thin_begin: first.first_key,
                });
            }
        }
        self.settle_deferred()?;
        let Current::Device {
            builder,
            nr,
            last_key,
            deferred,
            ..
        } = &mut self.cur
        else {
            return Ok(());
        };
        let half = builder.leaf_max_entries() / 2;
        let pending = builder.pending();
        let small_def = nr_mappings < half as u64;
        let mut rest = &leaves[..];
        if small_def || (pending > 0 && pending < half) {
            // A short run of the device's own before the def, or a def too
            // small for a leaf of its own: copy the first leaf instead.
            Self::copy_leaf(&mut self.w, &mut self.data, builder, first.block)?;
            rest = &leaves[1..];
        }
        if let Some((l, shared)) = rest.split_last() {
            for s in shared {
                builder.push_leaf(&mut self.w, s)?;
            }
            *deferred = Some(*l);
        }
        *nr += nr_mappings;
        self.nr_mappings += nr_mappings;
        *last_key = Some(last.last_key);
        Ok(())
    }

    /// Gives back the references held by an unreferenced mapping-tree node.
    fn release(&mut self, root: BlockNr, done: &mut HashSet<BlockNr>) -> Result<()> {
        let mut stack = vec![root];
        let mut blk = Block::zeroed();
        while let Some(b) = stack.pop() {
            if self.w.count(b) != 0 || !done.insert(b) {
                continue;
            }
            self.w.read_back(b, &mut blk)?;
            let node = NodeRef::parse(&blk.0, b, 8).map_err(WriterError::ReleasedNode)?;
            for i in 0..node.len() {
                let v = node.value_u64(i);
                if node.is_leaf() {
                    self.data.dec(BlockTime::unpack(v).block);
                } else {
                    self.w.dec_ref(v);
                    stack.push(v);
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<WriteSummary> {
        self.w.flush()?;
        // The top-level tree's references to the device roots count before
        // anything unreferenced is released: a device made of one shared
        // leaf has that leaf as its root.
        for d in self.devices.values() {
            self.w.inc_ref(d.root);
        }
        let mut done = HashSet::new();
        for r in std::mem::take(&mut self.dropped) {
            self.release(r, &mut done)?;
        }
        for b in std::mem::take(&mut self.def_leaves) {
            self.release(b, &mut done)?;
        }
        let mut top = BtreeBuilder::new(8);
        let mut details = BtreeBuilder::new(24);
        for (&id, d) in &self.devices {
            top.push_value(&mut self.w, id, &d.root.to_le_bytes())?;
            details.push_value(&mut self.w, id, &d.details.to_bytes())?;
        }
        let mapping_root = top.finish(&mut self.w)?;
        let details_root = details.finish(&mut self.w)?;
        let data_sm = write_data_sm(&mut self.w, &self.data)?;
        for r in [
            mapping_root,
            details_root,
            data_sm.bitmap_root,
            data_sm.ref_count_root,
        ] {
            self.w.inc_ref(r);
        }
        let meta_sm = write_metadata_sm(&mut self.w)?;
        let mut sb = Superblock::fresh(self.sb.time, self.sb.transaction, self.sb.data_block_size);
        sb.data_sm_root = data_sm;
        sb.metadata_sm_root = meta_sm;
        sb.mapping_root = mapping_root;
        sb.details_root = details_root;
        sb.metadata_nr_blocks = meta_sm.nr_blocks;
        let block = sb.to_block();
        self.w.commit(&block)?;
        Ok(WriteSummary {
            nr_devices: self.devices.len() as u64,
            nr_mappings: self.nr_mappings,
            metadata_blocks_used: meta_sm.nr_allocated,
        })
    }
}

impl MetadataVisitor for ThinWriter<'_> {
    fn superblock_begin(&mut self, sb: &SuperblockInfo) -> Result<Visit, IrError> {
        if self.active.is_some() {
            return Err(WriterError::DuplicatedSuperblock.into());
        }
        let mut sb = sb.clone();
        self.overrides.apply(&mut sb);
        let w = BlockAllocator::new(self.out).map_err(WriterError::from)?;
        self.active = Some(Active {
            w,
            data: CountMap::new(sb.nr_data_blocks),
            sb,
            defs: HashMap::new(),
            def_leaves: Vec::new(),
            devices: BTreeMap::new(),
            dropped: Vec::new(),
            cur: Current::Nothing,
            nr_mappings: 0,
        });
        Ok(Visit::Continue)
    }

    fn superblock_end(&mut self) -> Result<Visit, IrError> {
        self.finish()?;
        Ok(Visit::Continue)
    }

    fn def_begin(&mut self, name: u64) -> Result<Visit, IrError> {
        let a = self.active()?;
        if !matches!(a.cur, Current::Nothing) {
            return Err(WriterError::MissingSuperblock.into());
        }
        a.cur = Current::Def {
            name,
            packer: LeafPacker::new(8),
            leaves: Vec::new(),
            nr: 0,
            last_key: None,
        };
        Ok(Visit::Continue)
    }

    fn def_end(&mut self) -> Result<Visit, IrError> {
        let a = self.active()?;
        let Current::Def {
            name,
            mut packer,
            mut leaves,
            nr,
            ..
        } = std::mem::replace(&mut a.cur, Current::Nothing)
        else {
            return Err(WriterError::MissingSuperblock.into());
        };
        leaves.extend(packer.flush(&mut a.w).map_err(WriterError::from)?);
        a.def_leaves.extend(leaves.iter().map(|l| l.block));
        a.defs.insert(
            name,
            Def {
                leaves,
                nr_mappings: nr,
            },
        );
        Ok(Visit::Continue)
    }

    fn device_begin(&mut self, dev: &DeviceInfo) -> Result<Visit, IrError> {
        let a = self.active()?;
        if !matches!(a.cur, Current::Nothing) {
            return Err(WriterError::MissingSuperblock.into());
        }
        let dup = a.devices.contains_key(&dev.dev_id);
        a.cur = Current::Device {
            info: *dev,
            builder: BtreeBuilder::new(8),
            nr: 0,
            last_key: None,
            deferred: None,
            tail: Vec::new(),
        };
        if dup {
            self.warnings.push(format!(
                "duplicate device id {}: later definition wins",
                dev.dev_id
            ));
        }
        Ok(Visit::Continue)
    }

    fn device_end(&mut self) -> Result<Visit, IrError> {
        let a = self.active()?;
        a.settle_deferred()?;
        let Current::Device {
            info,
            mut builder,
            nr,
            ..
        } = std::mem::replace(&mut a.cur, Current::Nothing)
        else {
            return Err(WriterError::MissingSuperblock.into());
        };
        let root = builder.finish(&mut a.w).map_err(WriterError::from)?;
        let details = DeviceDetails {
            mapped_blocks: info.mapped_blocks,
            transaction_id: info.transaction,
            creation_time: info.creation_time,
            snapshotted_time: info.snap_time,
        };
        if let Some(old) = a.devices.insert(info.dev_id, DeviceEntry { root, details }) {
            a.dropped.push(old.root);
        }
        if info.mapped_blocks != nr {
            self.warnings.push(format!(
                "device {}: mapped_blocks is {} but {} mappings were restored",
                info.dev_id, info.mapped_blocks, nr
            ));
        }
        Ok(Visit::Continue)
    }

    fn map(&mut self, m: &Map) -> Result<Visit, IrError> {
        self.active()?.map(m)?;
        Ok(Visit::Continue)
    }

    fn ref_shared(&mut self, name: u64) -> Result<Visit, IrError> {
        self.active()?.ref_shared(name)?;
        Ok(Visit::Continue)
    }

    fn eof(&mut self) -> Result<Visit, IrError> {
        if self.active.is_some() {
            return Err(WriterError::Incomplete.into());
        }
        Ok(Visit::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::io::MemDevice;

    fn writer_with_device(dev: &MemDevice) -> ThinWriter<'_> {
        let mut w = ThinWriter::new(dev, Overrides::default());
        let sb = SuperblockInfo {
            data_block_size: 128,
            nr_data_blocks: 10,
            ..SuperblockInfo::default()
        };
        w.superblock_begin(&sb).unwrap();
        w.device_begin(&DeviceInfo::default()).unwrap();
        w
    }

    fn writer_error(r: Result<Visit, IrError>) -> WriterError {
        match r {
            Err(IrError::Writer(e)) => e,
            other => panic!("not a writer error: {other:?}"),
        }
    }

    /// Refused mappings name the data block or thin block at fault.
    #[test]
    fn refusals_name_the_block() {
        let dev = MemDevice::new(64);
        let mut w = writer_with_device(&dev);
        let beyond = Map {
            thin_begin: 0,
            data_begin: 9,
            time: 0,
            len: 2,
        };
        let e = writer_error(w.map(&beyond));
        assert!(matches!(e, WriterError::DataOutOfBounds { data_begin: 9 }));
        assert_eq!(e.to_string(), "block out of bounds");

        let mut w = writer_with_device(&dev);
        let first = Map {
            thin_begin: 5,
            data_begin: 0,
            time: 0,
            len: 1,
        };
        w.map(&first).unwrap();
        let e = writer_error(w.map(&Map {
            thin_begin: 5,
            ..first
        }));
        assert!(matches!(e, WriterError::KeysOutOfOrder { thin_begin: 5 }));
        assert_eq!(e.to_string(), "keys out of order");
    }

    #[test]
    fn a_ref_to_an_unknown_def_is_refused() {
        let dev = MemDevice::new(64);
        let mut w = writer_with_device(&dev);
        let e = writer_error(w.ref_shared(7));
        assert_eq!(e.to_string(), "Couldn't find sub tree '7'.");
    }
}
