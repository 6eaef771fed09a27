//! Emitting a repaired pool through the IR: each device's leaves are read
//! again and their mappings sent as runs.

use anyhow::Context;

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::NodeRef;
use crate::pdata::io::BlockDevice;
use crate::thin::ir::{Map, MetadataVisitor, Visit};
use crate::thin::mapping::BlockTime;
use crate::thin::repair::RepairedPool;

/// Sends `pool` to `out`, reading mapping leaves from `dev`.
///
/// # Errors
/// A leaf that no longer reads as a valid mapping leaf, or a sink failure.
pub fn emit_pool(
    dev: &dyn BlockDevice,
    pool: &RepairedPool,
    out: &mut dyn MetadataVisitor,
) -> anyhow::Result<()> {
    if out.superblock_begin(&pool.sb)? == Visit::Stop {
        return Ok(());
    }
    let mut buf = Block::zeroed();
    for d in &pool.devices {
        if out.device_begin(&d.info)? == Visit::Stop {
            return Ok(());
        }
        let mut run: Option<Map> = None;
        for &leaf in &d.leaves {
            for_each_mapping(dev, leaf, &mut buf, &mut |m| {
                match run.as_mut() {
                    Some(r)
                        if r.time == m.time
                            && r.thin_begin + r.len == m.thin_begin
                            && r.data_begin + r.len == m.data_begin =>
                    {
                        r.len += 1;
                    }
                    _ => {
                        if let Some(r) = run.replace(m) {
                            out.map(&r)?;
                        }
                    }
                }
                Ok(())
            })?;
        }
        if let Some(r) = run {
            out.map(&r)?;
        }
        if out.device_end()? == Visit::Stop {
            return Ok(());
        }
    }
    out.superblock_end()?;
    out.eof()?;
    Ok(())
}

fn for_each_mapping(
    dev: &dyn BlockDevice,
    leaf: BlockNr,
    buf: &mut Block,
    f: &mut dyn FnMut(Map) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    dev.read_at(leaf, buf)
        .with_context(|| format!("reading mapping leaf {leaf}"))?;
    let node = NodeRef::parse(&buf.0, leaf, 8).map_err(anyhow::Error::new)?;
    for (k, v) in node.keys().iter().zip(node.values_u64()) {
        let bt = BlockTime::unpack(v.get());
        f(Map {
            thin_begin: k.get(),
            data_begin: bt.block,
            time: bt.time,
            len: 1,
        })?;
    }
    Ok(())
}

/// Writes `pool` as fresh binary metadata on `out` through the metadata writer.
///
/// # Errors
/// Always, until the metadata writer is available on this branch.
pub fn write_metadata(
    _input: &dyn BlockDevice,
    _pool: &RepairedPool,
    _out: &dyn BlockDevice,
) -> anyhow::Result<()> {
    anyhow::bail!("thin_repair: the metadata writer is not available in this build")
}
