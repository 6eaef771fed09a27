//! From a path a user types (`/dev/mapper/NAME`, `/dev/dm-N`, an LVM link
//! such as `/dev/VG/LV`) to the live thin behind it: its device id, its pool,
//! the pool's metadata and data devices, data block size, external origin,
//! size, read-only state and the pool's status (held metadata root, mode).
//! Everything comes from device-mapper ioctls and sysfs; no tool output is
//! parsed.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::pdata::sys::{dm_ioctl, dm_message, dm_table_status, DmCmd, DmTarget, DM_READONLY_FLAG};

/// Failures resolving a device, each naming it and saying what it is.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// stat failed.
    #[error("{path}: {cause}")]
    Stat {
        /// The path.
        path: String,
        /// The OS error.
        cause: std::io::Error,
    },
    /// Not a block device.
    #[error("{0}: not a block device")]
    NotBlock(String),
    /// A block device that device-mapper does not own.
    #[error("{0}: not a device-mapper device")]
    NotDm(String),
    /// A dm device of another kind.
    #[error("{path}: a {kind} device, not a thin")]
    NotThin {
        /// The path.
        path: String,
        /// Its target type(s).
        kind: String,
    },
    /// A dm device that is not a pool.
    #[error("{path}: a {kind} device, not a thin-pool")]
    NotPool {
        /// The path.
        path: String,
        /// Its target type.
        kind: String,
    },
    /// No active table.
    #[error("{0}: has no active table")]
    NoTable(String),
    /// The pool named by the thin's table is not a thin-pool.
    #[error("{path}: its pool {pool} is a {kind} device, not a thin-pool")]
    PoolNotPool {
        /// The thin.
        path: String,
        /// The pool device.
        pool: String,
        /// What it is.
        kind: String,
    },
    /// A table or status line we do not understand.
    #[error("{dev}: unexpected {what} '{text}'")]
    Parse {
        /// The device.
        dev: String,
        /// "table" or "status".
        what: &'static str,
        /// The text.
        text: String,
    },
    /// A device-mapper ioctl failed.
    #[error("{dev}: device-mapper {what}: {cause}")]
    Ioctl {
        /// The device.
        dev: String,
        /// Which request.
        what: &'static str,
        /// The OS error.
        cause: std::io::Error,
    },
}

/// A block device number.
pub type DevNum = (u32, u32);

/// Splits a `dev_t`.
#[must_use]
pub fn split_dev(rdev: u64) -> DevNum {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (
        u32::try_from(major).unwrap_or(u32::MAX),
        u32::try_from(minor).unwrap_or(u32::MAX),
    )
}

/// A block device: its number and its node under /dev (from sysfs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockDev {
    /// Major and minor.
    pub num: DevNum,
    /// `/dev/<DEVNAME>`.
    pub path: PathBuf,
}

impl BlockDev {
    fn from_num(num: DevNum) -> BlockDev {
        let uevent = std::fs::read_to_string(format!("/sys/dev/block/{}:{}/uevent", num.0, num.1))
            .unwrap_or_default();
        let path = uevent
            .lines()
            .find_map(|l| l.strip_prefix("DEVNAME="))
            .map_or_else(
                || PathBuf::from(format!("/dev/block/{}:{}", num.0, num.1)),
                |n| Path::new("/dev").join(n),
            );
        BlockDev { num, path }
    }
}

/// A pool's mode, from its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// Serving reads and writes.
    ReadWrite,
    /// Metadata read-only (after an error).
    ReadOnly,
    /// Out of data space.
    OutOfDataSpace,
    /// Failed.
    Fail,
}

/// A pool's status line, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    /// Transaction id.
    pub transaction_id: u64,
    /// Root of the held metadata snapshot, if one is held.
    pub held_root: Option<u64>,
    /// Mode.
    pub mode: PoolMode,
    /// The metadata is flagged as needing a check.
    pub needs_check: bool,
}

/// A thin-pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// dm name.
    pub name: String,
    /// The pool device.
    pub dev: BlockDev,
    /// Metadata device.
    pub metadata: BlockDev,
    /// Data device.
    pub data: BlockDev,
    /// Data block size in sectors.
    pub block_sectors: u64,
}

/// A live thin device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thin {
    /// The path resolved.
    pub path: PathBuf,
    /// dm name.
    pub name: String,
    /// The device.
    pub dev: BlockDev,
    /// Thin device id in the pool.
    pub thin_id: u64,
    /// Size in bytes (the table's length).
    pub size_bytes: u64,
    /// Active read-only.
    pub read_only: bool,
    /// How many openers the device has.
    pub open_count: i32,
    /// External origin, if any.
    pub origin: Option<BlockDev>,
    /// Its pool.
    pub pool: Pool,
}

fn dm_name(num: DevNum) -> Option<String> {
    std::fs::read_to_string(format!("/sys/dev/block/{}:{}/dm/name", num.0, num.1))
        .ok()
        .map(|s| s.trim().to_string())
}

fn targets(num: DevNum, shown: &str, table: bool) -> Result<Vec<DmTarget>, ResolveError> {
    dm_table_status(num, table).map_err(|cause| ResolveError::Ioctl {
        dev: shown.to_string(),
        what: if table { "table" } else { "status" },
        cause,
    })
}

/// Parses `major:minor`.
#[must_use]
pub fn parse_devnum(s: &str) -> Option<DevNum> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The device number of the block device at `path` (symlinks followed).
///
/// # Errors
/// stat failure or not a block device.
pub fn block_dev_of(path: &Path) -> Result<DevNum, ResolveError> {
    let shown = path.display().to_string();
    let m = std::fs::metadata(path).map_err(|cause| ResolveError::Stat {
        path: shown.clone(),
        cause,
    })?;
    if !m.file_type().is_block_device() {
        return Err(ResolveError::NotBlock(shown));
    }
    Ok(split_dev(m.rdev()))
}

/// The single target of a dm device, with its kind.
fn single_target(num: DevNum, shown: &str) -> Result<DmTarget, ResolveError> {
    let mut t = targets(num, shown, true)?;
    match t.len() {
        0 => Err(ResolveError::NoTable(shown.to_string())),
        1 => Ok(t.remove(0)),
        _ => Err(ResolveError::NotThin {
            path: shown.to_string(),
            kind: format!(
                "multi-target ({})",
                t.iter()
                    .map(|x| x.kind.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Resolves `path` to a live thin device.
///
/// # Errors
/// A [`ResolveError`] naming the device and what it is instead.
pub fn resolve_thin(path: &Path) -> Result<Thin, ResolveError> {
    let shown = path.display().to_string();
    let num = block_dev_of(path)?;
    let Some(name) = dm_name(num) else {
        return Err(ResolveError::NotDm(shown));
    };
    let t = single_target(num, &shown)?;
    if t.kind != "thin" {
        return Err(ResolveError::NotThin {
            path: shown,
            kind: t.kind,
        });
    }
    let Some(table) = parse_thin_table(&t.params) else {
        return Err(ResolveError::Parse {
            dev: shown,
            what: "table",
            text: t.params,
        });
    };
    let (pool_num, thin_id) = (table.pool, table.thin_id);
    let origin = table.origin.map(BlockDev::from_num);
    let status = dm_ioctl(DmCmd::DevStatus, num, 0, &[]).map_err(|cause| ResolveError::Ioctl {
        dev: shown.clone(),
        what: "status",
        cause,
    })?;
    let pool = resolve_pool(pool_num, &shown)?;
    Ok(Thin {
        path: path.to_path_buf(),
        name,
        dev: BlockDev::from_num(num),
        thin_id,
        size_bytes: t.length * 512,
        read_only: status.flags & DM_READONLY_FLAG != 0,
        open_count: status.open_count,
        origin,
        pool,
    })
}

/// Resolves `path` to a live thin-pool device.
///
/// # Errors
/// A [`ResolveError`] naming the device and what it is instead.
pub fn resolve_pool_path(path: &Path) -> Result<Pool, ResolveError> {
    let shown = path.display().to_string();
    let num = block_dev_of(path)?;
    if dm_name(num).is_none() {
        return Err(ResolveError::NotDm(shown));
    }
    let t = single_target(num, &shown)?;
    if t.kind != "thin-pool" {
        return Err(ResolveError::NotPool {
            path: shown,
            kind: t.kind,
        });
    }
    resolve_pool(num, &shown)
}

fn resolve_pool(num: DevNum, thin: &str) -> Result<Pool, ResolveError> {
    let dev = BlockDev::from_num(num);
    let shown = dev.path.display().to_string();
    let name = dm_name(num).unwrap_or_else(|| shown.clone());
    let t = single_target(num, &shown)?;
    if t.kind != "thin-pool" {
        return Err(ResolveError::PoolNotPool {
            path: thin.to_string(),
            pool: name,
            kind: t.kind,
        });
    }
    let Some(PoolTable {
        metadata: meta,
        data,
        block_sectors,
    }) = parse_pool_table(&t.params)
    else {
        return Err(ResolveError::Parse {
            dev: name,
            what: "table",
            text: t.params,
        });
    };
    Ok(Pool {
        name,
        dev,
        metadata: BlockDev::from_num(meta),
        data: BlockDev::from_num(data),
        block_sectors,
    })
}

/// Reads and decodes the pool's status line.
///
/// # Errors
/// The ioctl failure or a line we do not understand.
pub fn pool_status(pool: &Pool) -> Result<PoolStatus, ResolveError> {
    let t = targets(pool.dev.num, &pool.name, false)?;
    let text = t.first().map(|t| t.params.clone()).unwrap_or_default();
    parse_pool_status(&text).ok_or_else(|| ResolveError::Parse {
        dev: pool.name.clone(),
        what: "status",
        text: text.clone(),
    })
}

/// A thin target's table parameters: `<pool dev> <dev id> [<external origin dev>]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThinTable {
    /// The pool device.
    pub pool: DevNum,
    /// The thin device id.
    pub thin_id: u64,
    /// The external origin.
    pub origin: Option<DevNum>,
}

/// Parses a thin target's table parameters (devices as `major:minor`, as the
/// kernel reports them); None for anything else.
#[must_use]
pub fn parse_thin_table(params: &str) -> Option<ThinTable> {
    let f: Vec<&str> = params.split_whitespace().collect();
    if f.len() < 2 || f.len() > 3 {
        return None;
    }
    Some(ThinTable {
        pool: parse_devnum(f[0])?,
        thin_id: f[1].parse().ok()?,
        origin: match f.get(2) {
            Some(s) => Some(parse_devnum(s)?),
            None => None,
        },
    })
}

/// A thin-pool target's table parameters (the part tools need):
/// `<metadata dev> <data dev> <block size> <low water mark> [features]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolTable {
    /// Metadata device.
    pub metadata: DevNum,
    /// Data device.
    pub data: DevNum,
    /// Data block size in sectors.
    pub block_sectors: u64,
}

/// Parses a thin-pool target's table parameters; None for anything else
/// (including a zero block size).
#[must_use]
pub fn parse_pool_table(params: &str) -> Option<PoolTable> {
    let f: Vec<&str> = params.split_whitespace().collect();
    let block_sectors = f.get(2)?.parse::<u64>().ok().filter(|&b| b > 0)?;
    Some(PoolTable {
        metadata: parse_devnum(f.first()?)?,
        data: parse_devnum(f.get(1)?)?,
        block_sectors,
    })
}

/// Parses a thin-pool target's status line: `<transaction id>
/// <used>/<total metadata blocks> <used>/<total data blocks> <held root|->
/// <rw|ro|out_of_data_space> <discard mode> <queue mode> <needs_check|-> ...`,
/// or `Fail` / `Error`; None for anything else.
#[must_use]
pub fn parse_pool_status(text: &str) -> Option<PoolStatus> {
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.first() == Some(&"Fail") || f.first() == Some(&"Error") {
        return Some(PoolStatus {
            transaction_id: 0,
            held_root: None,
            mode: PoolMode::Fail,
            needs_check: false,
        });
    }
    let transaction_id = f.first()?.parse().ok()?;
    let held_root = match *f.get(3)? {
        "-" => None,
        s => Some(s.parse().ok()?),
    };
    let mode = match *f.get(4)? {
        "rw" => PoolMode::ReadWrite,
        "ro" => PoolMode::ReadOnly,
        "out_of_data_space" => PoolMode::OutOfDataSpace,
        _ => return None,
    };
    Some(PoolStatus {
        transaction_id,
        held_root,
        mode,
        needs_check: f.get(7) == Some(&"needs_check"),
    })
}

/// Sends `msg` to the pool (sector 0), e.g. `reserve_metadata_snap`.
///
/// # Errors
/// The ioctl failure (the kernel logs its reason).
pub fn pool_message(pool: &Pool, msg: &str) -> Result<(), ResolveError> {
    dm_message(pool.dev.num, msg).map_err(|cause| ResolveError::Ioctl {
        dev: pool.name.clone(),
        what: "message",
        cause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_numbers_split_like_the_kernel() {
        // makedev(253, 3) and makedev(259, 300000)
        assert_eq!(split_dev((253 << 8) | 3), (253, 3));
        let (ma, mi) = (259u64, 300_000u64);
        let rdev = ((ma & 0xfff) << 8) | ((ma & !0xfff) << 32) | (mi & 0xff) | ((mi & !0xff) << 12);
        assert_eq!(split_dev(rdev), (259, 300_000));
        assert_eq!(parse_devnum("253:16"), Some((253, 16)));
        assert_eq!(parse_devnum("253"), None);
    }

    #[test]
    fn a_regular_file_is_not_a_block_device() {
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(matches!(
            resolve_thin(f.path()),
            Err(ResolveError::NotBlock(_))
        ));
    }
}
