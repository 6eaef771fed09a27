//! thin_trim: discards the data blocks a pool does not use.
//!
//! The metadata is checked in full first; then every maximal run of data
//! blocks whose count in the on-disk data space map is 0 is discarded on the
//! data device: BLKDISCARD on a block device, a punched hole in a regular
//! file. The metadata is opened read-only and never written.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::pdata::block::Block;
use crate::pdata::io::{open_metadata, Access, BlockDevice, OpenError, Sharing};
use crate::pdata::space_map::disk::{bitmap_words, entries_in_bitmap};
use crate::pdata::space_map::read::{read_space_map, SmKind, TreeEntries};
use crate::pdata::space_map::ENTRIES_PER_BITMAP;
use crate::pdata::sys;
use crate::progress::Verbosity;
use crate::thin::engines::check::{check, CheckOptions, Depth, Repair, Strictness, Summary};
use crate::thin::model::superblock::{read_live_superblock, Superblock};

/// What to trim.
#[derive(Clone, Debug)]
pub struct TrimOptions {
    /// The pool's data device or file.
    pub data_dev: PathBuf,
    /// The pool's metadata device or file (opened read-only).
    pub metadata_dev: PathBuf,
    /// How much of the pre-check's findings is shown on stderr.
    pub precheck_verbosity: Verbosity,
}

/// What was discarded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrimReport {
    /// Maximal runs of free data blocks discarded.
    pub runs: u64,
    /// Data blocks discarded in all.
    pub blocks: u64,
}

/// Why trimming stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrimError {
    /// The pre-check found damage.
    #[error("metadata contains errors (run thin_check for details).\nperhaps you need to run thin_repair.")]
    MetadataErrors,
    /// The data device is smaller than the pool's data space.
    #[error("unexpected data device size, wanted {0} bytes")]
    DataDeviceSize(u64),
    /// Opening an input failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A discard failed.
    #[error("discarding bytes {offset}..{end} of the data device: {source}")]
    Discard {
        /// First byte.
        offset: u64,
        /// End byte (exclusive).
        end: u64,
        /// The OS error.
        source: io::Error,
    },
}

/// Checks the metadata in full, then discards every free data block.
///
/// # Errors
/// A [`TrimError`]: damaged metadata, a short data device, an input that
/// cannot be opened, or a discard the device refused.
pub fn trim(opts: &TrimOptions) -> Result<TrimReport, TrimError> {
    let meta = open_metadata(&opts.metadata_dev, Access::ReadOnly, Sharing::Exclusive)?;
    let data = open_data(&opts.data_dev)?;
    precheck(&meta, opts.precheck_verbosity)?;
    let sb = read_live_superblock(&meta).map_err(|_| TrimError::MetadataErrors)?;
    let block_bytes = u64::from(sb.data_block_size) * 512;
    let wanted = sb
        .data_sm_root
        .nr_blocks
        .checked_mul(block_bytes)
        .ok_or(TrimError::MetadataErrors)?;
    if data.size < wanted {
        return Err(TrimError::DataDeviceSize(wanted));
    }
    let mut discarder = Discarder::new(&data, block_bytes);
    for_each_free_run(&meta, &sb, &mut |begin, end| discarder.discard(begin, end))?;
    Ok(discarder.report)
}

/// The full check of thin_check, with nothing on stdout; its findings go to
/// stderr at `verbosity`.
fn precheck(meta: &dyn BlockDevice, verbosity: Verbosity) -> Result<(), TrimError> {
    let opts = CheckOptions {
        depth: Depth::Full,
        repair: Repair::None,
        strictness: Strictness::Strict,
        verbosity,
        snapshot: None,
        override_mapping_root: None,
        override_details_root: None,
        summary: Summary::Suppress,
    };
    if check(meta, &opts).failed() {
        Err(TrimError::MetadataErrors)
    } else {
        Ok(())
    }
}

/// An open data device: its size and how to discard on it.
struct DataDev {
    file: File,
    size: u64,
    kind: DataKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DataKind {
    Regular,
    BlockDev,
}

fn open_data(path: &Path) -> Result<DataDev, OpenError> {
    let shown = path.display().to_string();
    let kind = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => DataKind::Regular,
        Ok(m) if m.file_type().is_block_device() => DataKind::BlockDev,
        Ok(_) => return Err(OpenError::WrongType(shown)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(OpenError::InputMissing(shown))
        }
        Err(e) => return Err(OpenError::Stat(e)),
    };
    let mut opts = OpenOptions::new();
    opts.read(true).write(true);
    if kind == DataKind::BlockDev {
        opts.custom_flags(libc::O_EXCL);
    }
    let os = |source| OpenError::Os {
        path: shown.clone(),
        source,
    };
    let file = opts.open(path).map_err(os)?;
    let size = {
        let mut f = &file;
        io::Seek::seek(&mut f, io::SeekFrom::End(0)).map_err(os)?
    };
    Ok(DataDev { file, size, kind })
}

/// Calls `f(begin, end)` for every maximal run of data blocks with count 0.
fn for_each_free_run(
    meta: &dyn BlockDevice,
    sb: &Superblock,
    f: &mut dyn FnMut(u64, u64) -> Result<(), TrimError>,
) -> Result<(), TrimError> {
    let root = sb.data_sm_root;
    // Only the bitmaps matter: a count of 3 or more is never free, so no
    // ref-count tree entry needs to be kept.
    let keep_none = |_: u64, _: u32| false;
    let sm = read_space_map(
        meta,
        SmKind::Data,
        root,
        sb.metadata_sm_root.nr_blocks,
        TreeEntries::Differing(&keep_none),
    )
    .map_err(|_| TrimError::MetadataErrors)?;
    let mut runs = RunJoiner::default();
    for (i, bitmap) in sm.bitmaps.iter().enumerate() {
        let base = i as u64 * ENTRIES_PER_BITMAP;
        let n = entries_in_bitmap(root.nr_blocks, i as u64);
        free_runs_in_bitmap(bitmap, n, |b, e| runs.push(base + b, base + e, f))?;
    }
    runs.finish(f)
}

/// Merges runs that touch across bitmap boundaries.
#[derive(Default)]
struct RunJoiner {
    open: Option<(u64, u64)>,
}

impl RunJoiner {
    fn push(
        &mut self,
        b: u64,
        e: u64,
        f: &mut dyn FnMut(u64, u64) -> Result<(), TrimError>,
    ) -> Result<(), TrimError> {
        match self.open {
            Some((ob, oe)) if oe == b => self.open = Some((ob, e)),
            Some((ob, oe)) => {
                f(ob, oe)?;
                self.open = Some((b, e));
            }
            None => self.open = Some((b, e)),
        }
        Ok(())
    }

    fn finish(self, f: &mut dyn FnMut(u64, u64) -> Result<(), TrimError>) -> Result<(), TrimError> {
        match self.open {
            Some((b, e)) => f(b, e),
            None => Ok(()),
        }
    }
}

/// Calls `f(begin, end)` for every maximal run of zero entries among the
/// first `n` entries of a bitmap (indices relative to the bitmap).
fn free_runs_in_bitmap<F>(bitmap: &Block, n: u64, mut f: F) -> Result<(), TrimError>
where
    F: FnMut(u64, u64) -> Result<(), TrimError>,
{
    let mut start: Option<u64> = None;
    let mut i = 0u64;
    for word in bitmap_words(&bitmap.0) {
        if i >= n {
            break;
        }
        let w = word.get();
        for k in 0..32u64 {
            if i + k >= n {
                break;
            }
            let free = (w >> (2 * k)) & 3 == 0;
            match (free, start) {
                (true, None) => start = Some(i + k),
                (false, Some(s)) => {
                    f(s, i + k)?;
                    start = None;
                }
                _ => {}
            }
        }
        i += 32;
    }
    if let Some(s) = start {
        f(s, n)?;
    }
    Ok(())
}

/// Discards byte ranges of the data device.
struct Discarder<'a> {
    data: &'a DataDev,
    block_bytes: u64,
    report: TrimReport,
}

impl<'a> Discarder<'a> {
    fn new(data: &'a DataDev, block_bytes: u64) -> Self {
        Discarder {
            data,
            block_bytes,
            report: TrimReport::default(),
        }
    }

    fn discard(&mut self, begin: u64, end: u64) -> Result<(), TrimError> {
        let offset = begin * self.block_bytes;
        let len = (end - begin) * self.block_bytes;
        let r = match self.data.kind {
            DataKind::BlockDev => sys::blk_discard(&self.data.file, offset, len),
            DataKind::Regular => sys::punch_hole(&self.data.file, offset, len),
        };
        r.map_err(|source| TrimError::Discard {
            offset,
            end: offset + len,
            source,
        })?;
        self.report.runs += 1;
        self.report.blocks += end - begin;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::space_map::disk::bitmap_set;

    fn runs(counts: &[(usize, u32)], n: u64) -> Vec<(u64, u64)> {
        let mut b = Block::zeroed();
        // Everything allocated except what `counts` sets.
        for i in 0..ENTRIES_PER_BITMAP as usize {
            bitmap_set(&mut b.0, i, 1);
        }
        for &(i, c) in counts {
            bitmap_set(&mut b.0, i, c);
        }
        let mut out = Vec::new();
        free_runs_in_bitmap(&b, n, |s, e| {
            out.push((s, e));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn free_runs_are_maximal_and_stop_at_the_map_size() {
        assert_eq!(runs(&[], 16320), vec![]);
        assert_eq!(
            runs(
                &[(0, 0), (1, 0), (5, 0), (31, 0), (32, 0), (33, 0), (40, 3)],
                16320
            ),
            vec![(0, 2), (5, 6), (31, 34)]
        );
        // Entries past nr_blocks are ignored, a run reaching the end is closed.
        assert_eq!(runs(&[(98, 0), (99, 0), (100, 0)], 100), vec![(98, 100)]);
        assert_eq!(runs(&[(16319, 0)], 16320), vec![(16319, 16320)]);
    }

    #[test]
    fn runs_join_across_bitmaps() {
        let mut got = Vec::new();
        let mut f = |b, e| {
            got.push((b, e));
            Ok(())
        };
        let mut j = RunJoiner::default();
        j.push(10, 16320, &mut f).unwrap();
        j.push(16320, 16400, &mut f).unwrap();
        j.push(16500, 16501, &mut f).unwrap();
        j.finish(&mut f).unwrap();
        assert_eq!(got, vec![(10, 16400), (16500, 16501)]);
    }
}
