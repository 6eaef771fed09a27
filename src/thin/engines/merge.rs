//! thin_merge's engine: write a thin's provisioned blocks into its external
//! origin, so that the origin afterwards reads exactly as the thin did.
//!
//! A thin over an external origin reads its provisioned blocks from the
//! pool and every other block from the origin. Writing each provisioned
//! block's content at its offset in the origin therefore makes the origin
//! equal to the thin. The content written comes from the pool's data
//! device, which the merge does not change, and does not depend on the
//! origin; so a merge interrupted half way is completed by running it again
//! (every block is written with the same bytes, whichever were already
//! there).
//!
//! The origin is opened with O_EXCL: the kernel holds the origin of every
//! active thin that uses it, so the merge refuses while one is active.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::thin::engines::copy::exec::{self, Dest, DestKind, Options, Source};
use crate::thin::engines::copy::plan::{Action, Gaps, Plan};
use crate::thin::engines::copy::source::SourceMetadata;
use crate::thin::engines::migrate::{refuse_dest_among, MigrateError, Report};
use crate::thin::live::resolve::{resolve_pool_path, resolve_thin};
use crate::thin::live::snapshot::Session;
use crate::thin::model::open::SnapshotChoice;

/// Where the thin's provisioned blocks are read.
#[derive(Clone, Debug)]
pub enum MergeSource {
    /// An inactive pool's devices, or images.
    Offline {
        /// The pool's metadata device or image.
        metadata: PathBuf,
        /// The pool's data device or image.
        data: PathBuf,
    },
    /// A live pool: its metadata snapshot and its data device.
    Pool(PathBuf),
    /// A live thin device: names the pool, the id and the origin (which the
    /// active thin holds, so this is refused with the way to proceed).
    Thin(PathBuf),
}

/// What to merge.
#[derive(Clone, Debug)]
pub struct MergeRequest {
    /// Where the thin is read.
    pub source: MergeSource,
    /// The thin to merge.
    pub thin: u64,
    /// Its external origin (the merge target).
    pub origin: PathBuf,
    /// The origin already holds thin `base` merged: write only what differs.
    pub base: Option<u64>,
    /// The thin's size in bytes, when known (else the end of its last
    /// provisioned block, or the origin's size if larger).
    pub size: Option<u64>,
    /// Grow a regular-file origin to the thin's size when it is smaller.
    pub grow: bool,
    /// Only report what would be written.
    pub dry_run: bool,
    /// Total copy buffer memory.
    pub buffer_bytes: usize,
    /// Show a progress bar on a terminal.
    pub progress: bool,
}

/// What a merge did or would do.
#[derive(Clone, Debug)]
pub struct MergeReport {
    /// Blocks written (or to be written).
    pub blocks: u64,
    /// Bytes written (or to be written).
    pub bytes: u64,
    /// The copy's figures (`None` for a dry run).
    pub copy: Option<Report>,
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> MigrateError + '_ {
    move |source| MigrateError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn size_of(f: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = f;
    let end = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    Ok(end)
}

/// Merges thin `req.thin` into `req.origin`.
///
/// # Errors
/// A [`MigrateError`]; nothing is written when a check fails.
pub fn merge(
    req: &MergeRequest,
    stop: &(dyn Fn() -> Option<i32> + Sync),
    note: &mut dyn FnMut(String),
) -> Result<MergeReport, MigrateError> {
    match &req.source {
        MergeSource::Offline { metadata, data } => {
            refuse_dest_among(
                &req.origin,
                &[
                    (metadata, "the pool's metadata device"),
                    (data, "the pool's data device"),
                ],
            )?;
            let md = SourceMetadata::open(metadata, SnapshotChoice::Live)?;
            merge_from(req, &md, data, false, stop)
        }
        MergeSource::Thin(path) => {
            let thin = resolve_thin(path)?;
            let origin = thin.origin.as_ref().map_or_else(
                || "no external origin".to_string(),
                |o| o.path.display().to_string(),
            );
            Err(MigrateError::Invalid(format!(
                "{} (thin {} of pool {}, over {origin}) is active and holds its origin: deactivate it and every other thin over {}, then run thin_merge --pool {} --thin-id {} --origin {}",
                path.display(),
                thin.thin_id,
                thin.pool.name,
                req.origin.display(),
                thin.pool.dev.path.display(),
                thin.thin_id,
                req.origin.display()
            )))
        }
        MergeSource::Pool(path) => {
            let pool = resolve_pool_path(path)?;
            refuse_dest_among(
                &req.origin,
                &[
                    (&pool.dev.path, "the pool"),
                    (&pool.metadata.path, "the pool's metadata device"),
                    (&pool.data.path, "the pool's data device"),
                ],
            )?;
            let session = Session::open(&pool, note)?;
            let md = SourceMetadata::open(&pool.metadata.path, SnapshotChoice::At(session.root()))?;
            let r = merge_from(req, &md, &pool.data.path, true, stop);
            drop(md);
            let released = session.release();
            let r = r?;
            released?;
            Ok(r)
        }
    }
}

fn merge_from(
    req: &MergeRequest,
    md: &SourceMetadata,
    data_path: &Path,
    shared_data: bool,
    stop: &(dyn Fn() -> Option<i32> + Sync),
) -> Result<MergeReport, MigrateError> {
    md.root_of(req.thin)?;
    if let Some(b) = req.base {
        md.root_of(b)?;
    }
    let (origin, kind, origin_size) = open_origin(req)?;
    let size = match req.size {
        Some(s) => s,
        None => md.mapped_end(req.thin)?.max(origin_size),
    };
    let plan = match req.base {
        None => md.full_plan(req.thin, size, Gaps::Skip)?,
        Some(b) => md.delta_plan(b, req.thin, size, true)?,
    };
    if let Some(e) = plan.extents.iter().find(|e| e.action == Action::Origin) {
        return Err(MigrateError::Invalid(format!(
            "block {} is provisioned in thin {} but not in thin {}: the origin no longer holds its own content there, so --base-id cannot be used (merge without it)",
            e.begin,
            req.base.unwrap_or(0),
            req.thin
        )));
    }
    fit_origin(req, &plan, size, &origin, kind, origin_size)?;
    let bytes = plan.bytes_where(|a| matches!(a, Action::Mapped { .. }));
    let blocks = plan.extents.iter().map(|e| e.len).sum();
    if req.dry_run {
        return Ok(MergeReport {
            blocks,
            bytes,
            copy: None,
        });
    }
    let (data, _) = open_data(data_path, shared_data)?;
    let dest = Dest {
        file: &origin,
        kind,
        reads_zero: false,
    };
    let opts = Options {
        buffer_bytes: req.buffer_bytes,
        progress: req.progress,
        stop,
    };
    let stats = exec::execute(
        &plan,
        &Source::Offline {
            data: &data,
            origin: None,
        },
        &dest,
        &opts,
    )?;
    Ok(MergeReport {
        blocks,
        bytes,
        copy: Some(Report {
            size_bytes: plan.size_bytes,
            planned_bytes: bytes,
            stats,
        }),
    })
}

/// Opens the origin for the merge (exclusively when it is a block device, so
/// that an active thin over it makes the merge refuse): the file, its kind and
/// its size.
fn open_origin(req: &MergeRequest) -> Result<(File, DestKind, u64), MigrateError> {
    let om = std::fs::metadata(&req.origin).map_err(io_err(&req.origin))?;
    let kind = if om.file_type().is_block_device() {
        DestKind::Block
    } else if om.is_file() {
        DestKind::File
    } else {
        return Err(MigrateError::WrongType(req.origin.display().to_string()));
    };
    let mut opts = File::options();
    opts.read(true).write(!req.dry_run);
    if kind == DestKind::Block {
        opts.custom_flags(libc::O_EXCL | libc::O_DIRECT);
    }
    let origin = opts.open(&req.origin).map_err(|e| {
        if e.raw_os_error() == Some(libc::EBUSY) {
            MigrateError::Invalid(format!(
                "{}: the origin is in use (an active thin still uses it as its external origin, or it is mounted): deactivate every thin over it first",
                req.origin.display()
            ))
        } else {
            io_err(&req.origin)(e)
        }
    })?;
    let origin_size = size_of(&origin).map_err(io_err(&req.origin))?;
    Ok((origin, kind, origin_size))
}

/// Checks that the thin fits the origin, growing a regular file when asked.
fn fit_origin(
    req: &MergeRequest,
    plan: &Plan,
    size: u64,
    origin: &File,
    kind: DestKind,
    origin_size: u64,
) -> Result<(), MigrateError> {
    // Provisioned blocks past the thin's size are not part of it.
    let end_of_writes = plan
        .extents
        .last()
        .map_or(0, |e| plan.extent_bytes(e).0 + plan.extent_bytes(e).1);
    if end_of_writes > origin_size || size > origin_size {
        let need = end_of_writes.max(size);
        if !(req.grow && kind == DestKind::File) {
            let hint = if kind == DestKind::File {
                "pass --grow to extend it"
            } else {
                "a block device cannot be grown here"
            };
            return Err(MigrateError::Invalid(format!(
                "origin {} ({origin_size} bytes) is smaller than thin {} ({need} bytes): {hint}",
                req.origin.display(),
                req.thin
            )));
        }
        if !req.dry_run {
            origin.set_len(need).map_err(io_err(&req.origin))?;
        }
    }
    Ok(())
}

fn open_data(path: &Path, shared: bool) -> Result<(File, u64), MigrateError> {
    let m = std::fs::metadata(path).map_err(io_err(path))?;
    let mut opts = File::options();
    opts.read(true);
    if m.file_type().is_block_device() {
        opts.custom_flags(libc::O_DIRECT | if shared { 0 } else { libc::O_EXCL });
    }
    let f = opts.open(path).map_err(io_err(path))?;
    let s = size_of(&f).map_err(io_err(path))?;
    Ok((f, s))
}
