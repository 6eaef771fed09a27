//! thin_migrate's engine: copy one thin volume to a block device or a file,
//! whole or as the difference from an older thin the destination already
//! holds, from a live pool (through the thin device, with a metadata
//! snapshot) or offline (from the data device or image).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::thin::engines::copy::exec::{self, CopyError, Dest, DestKind, Options, Source, Stats};
use crate::thin::engines::copy::plan::{Gaps, Plan};
use crate::thin::engines::copy::source::{SourceError, SourceMetadata};
use crate::thin::live::resolve::{resolve_thin, ResolveError, Thin};
use crate::thin::live::snapshot::{Session, SnapError};
use crate::thin::model::open::SnapshotChoice;

/// Failures of a migration, each naming the device and what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Opening or inspecting a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// Not a block device or regular file.
    #[error("{0}: not a block device or regular file")]
    WrongType(String),
    /// A destination smaller than the source.
    #[error("destination {path} is smaller than the source ({dest} bytes < {need} bytes)")]
    DestTooSmall {
        /// The destination.
        path: String,
        /// Its size.
        dest: u64,
        /// The source's size.
        need: u64,
    },
    /// The destination is one of the source's devices.
    #[error("destination {dest} is {what}")]
    DestIsSource {
        /// The destination.
        dest: String,
        /// What it is ("the source's data device", ...).
        what: String,
    },
    /// A delta needs a destination that exists.
    #[error("--delta-id needs a destination that already holds thin {0}: {1} does not exist")]
    DeltaNoDest(u64, String),
    /// The source metadata.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The copy.
    #[error(transparent)]
    Copy(#[from] CopyError),
    /// A plan option the source cannot honour.
    #[error("{0}")]
    Invalid(String),
    /// Resolving the live source.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The metadata snapshot.
    #[error(transparent)]
    Snap(#[from] SnapError),
    /// A live source that is writable.
    #[error("{path} (thin {id} of pool {pool}) is active read-write: make it read-only first (e.g. lvchange -pr, or a table reload with --readonly), or pass --force to copy it anyway (the copy may then not be consistent)")]
    SourceWritable {
        /// The source.
        path: String,
        /// Its thin id.
        id: u64,
        /// Its pool.
        pool: String,
    },
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> MigrateError + '_ {
    move |source| MigrateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where the destination is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestSpec {
    /// An existing block device (opened with O_EXCL).
    Device(PathBuf),
    /// A regular file, created or extended to the volume size.
    File(PathBuf),
}

/// What to copy offline.
#[derive(Clone, Debug)]
pub struct OfflineSource {
    /// The pool's metadata device or image.
    pub metadata: PathBuf,
    /// The pool's data device or image.
    pub data: PathBuf,
    /// The thin to copy.
    pub thin: u64,
    /// The external origin, when the thin has one.
    pub origin: Option<PathBuf>,
    /// The volume size in bytes, when known.
    pub size: Option<u64>,
}

/// How to copy.
#[derive(Clone, Debug)]
pub struct CopyRequest {
    /// The destination.
    pub dest: DestSpec,
    /// The destination already holds this thin: write only the difference.
    pub delta_id: Option<u64>,
    /// Zero what the plan does not write (a destination that is not fresh).
    pub zero_dest: bool,
    /// Total copy buffer memory.
    pub buffer_bytes: usize,
    /// Show a progress bar on a terminal.
    pub progress: bool,
}

/// What a migration did.
#[derive(Clone, Debug)]
pub struct Report {
    /// Volume size copied.
    pub size_bytes: u64,
    /// Bytes the plan covered.
    pub planned_bytes: u64,
    /// The executor's figures.
    pub stats: Stats,
}

/// The identity of a file: (device, inode) for files, rdev for devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A block device.
    Dev(u64),
    /// A regular file.
    Inode(u64, u64),
}

/// The identity of `path`, when it exists.
///
/// # Errors
/// A stat failure other than "not found".
pub fn identity(path: &Path) -> Result<Option<Identity>, MigrateError> {
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_block_device() => Ok(Some(Identity::Dev(m.rdev()))),
        Ok(m) => Ok(Some(Identity::Inode(m.dev(), m.ino()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Size of an open file or block device in bytes.
fn file_size(f: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = f;
    let end = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    Ok(end)
}

/// Opens an input read-only: a block device with O_EXCL (an inactive pool's
/// device must not be in use) unless `shared`, and O_DIRECT.
fn open_input(path: &Path, shared: bool) -> Result<(File, u64), MigrateError> {
    let m = std::fs::metadata(path).map_err(io_err(path))?;
    let mut opts = File::options();
    opts.read(true);
    if m.file_type().is_block_device() {
        opts.custom_flags(libc::O_DIRECT | if shared { 0 } else { libc::O_EXCL });
    } else if !m.is_file() {
        return Err(MigrateError::WrongType(path.display().to_string()));
    }
    let f = opts.open(path).map_err(io_err(path))?;
    let size = file_size(&f).map_err(io_err(path))?;
    Ok((f, size))
}

/// An opened destination.
pub struct OpenedDest {
    /// The file.
    pub file: File,
    /// Block device or file.
    pub kind: DestKind,
    /// Created by us (reads as zeroes).
    pub created: bool,
}

/// Opens (or creates) the destination for a volume of `size` bytes:
/// a block device with O_EXCL and O_DIRECT, at least `size` long; a file
/// created or extended to `size`.
///
/// # Errors
/// A [`MigrateError`]; nothing has been written then.
pub fn open_dest(
    spec: &DestSpec,
    size: u64,
    delta: Option<u64>,
) -> Result<OpenedDest, MigrateError> {
    match spec {
        DestSpec::Device(p) => {
            let m = std::fs::metadata(p).map_err(io_err(p))?;
            if !m.file_type().is_block_device() {
                return Err(MigrateError::Invalid(format!(
                    "{}: not a block device (use --dest-file for a file)",
                    p.display()
                )));
            }
            let file = File::options()
                .read(true)
                .write(true)
                .custom_flags(libc::O_EXCL | libc::O_DIRECT)
                .open(p)
                .map_err(|e| {
                    if e.raw_os_error() == Some(libc::EBUSY) {
                        MigrateError::Invalid(format!(
                            "{}: the destination is in use (open elsewhere or mounted): {e}",
                            p.display()
                        ))
                    } else {
                        io_err(p)(e)
                    }
                })?;
            let have = file_size(&file).map_err(io_err(p))?;
            if have < size {
                return Err(MigrateError::DestTooSmall {
                    path: p.display().to_string(),
                    dest: have,
                    need: size,
                });
            }
            Ok(OpenedDest {
                file,
                kind: DestKind::Block,
                created: false,
            })
        }
        DestSpec::File(p) => {
            let exists = identity(p)?.is_some();
            if let Some(base) = delta {
                if !exists {
                    return Err(MigrateError::DeltaNoDest(base, p.display().to_string()));
                }
            }
            if exists && !std::fs::metadata(p).map_err(io_err(p))?.is_file() {
                return Err(MigrateError::Invalid(format!(
                    "{}: not a regular file (use --dest-dev for a block device)",
                    p.display()
                )));
            }
            let file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
                .map_err(io_err(p))?;
            let have = file_size(&file).map_err(io_err(p))?;
            if have != size {
                // Shrinking drops a tail the source does not have; growing
                // adds a hole.
                file.set_len(size).map_err(io_err(p))?;
            }
            Ok(OpenedDest {
                file,
                kind: DestKind::File,
                created: !exists,
            })
        }
    }
}

fn dest_path(spec: &DestSpec) -> &Path {
    match spec {
        DestSpec::Device(p) | DestSpec::File(p) => p,
    }
}

/// Refuses a destination that is one of `inputs` (`(path, what)` pairs).
///
/// # Errors
/// `DestIsSource`.
pub fn refuse_dest_among(dest: &Path, inputs: &[(&Path, &str)]) -> Result<(), MigrateError> {
    let Some(d) = identity(dest)? else {
        return Ok(());
    };
    for (p, what) in inputs {
        if identity(p)? == Some(d) {
            return Err(MigrateError::DestIsSource {
                dest: dest.display().to_string(),
                what: (*what).to_string(),
            });
        }
    }
    Ok(())
}

/// Chooses how a full plan treats unmapped runs.
fn gaps(req: &CopyRequest, created: bool, has_origin: bool) -> Gaps {
    if has_origin {
        Gaps::Origin
    } else if req.zero_dest || (!created && matches!(req.dest, DestSpec::File(_))) {
        // An existing file may hold anything: make its gaps holes, cheaply.
        Gaps::Zero
    } else {
        Gaps::Skip
    }
}

/// Copies a thin offline, from its metadata and data images or devices.
///
/// # Errors
/// A [`MigrateError`].
pub fn migrate_offline(
    src: &OfflineSource,
    req: &CopyRequest,
    stop: &(dyn Fn() -> Option<i32> + Sync),
) -> Result<Report, MigrateError> {
    let dest = dest_path(&req.dest);
    let mut inputs: Vec<(&Path, &str)> = vec![
        (&src.metadata, "the source's metadata device"),
        (&src.data, "the source's data device"),
    ];
    if let Some(o) = &src.origin {
        inputs.push((o, "the source's external origin"));
    }
    refuse_dest_among(dest, &inputs)?;
    let md = SourceMetadata::open(&src.metadata, SnapshotChoice::Live)?;
    md.root_of(src.thin)?;
    if let Some(base) = req.delta_id {
        md.root_of(base)?;
    }
    let (data, _) = open_input(&src.data, false)?;
    let origin = match &src.origin {
        Some(p) => Some(open_input(p, false)?),
        None => None,
    };
    let size = match src.size {
        Some(s) => s,
        None => md
            .mapped_end(src.thin)?
            .max(origin.as_ref().map_or(0, |o| o.1)),
    };
    let opened = open_dest(&req.dest, size, req.delta_id)?;
    let plan = match req.delta_id {
        Some(base) => md.delta_plan(base, src.thin, size, origin.is_some())?,
        None => md.full_plan(src.thin, size, gaps(req, opened.created, origin.is_some()))?,
    };
    let source = Source::Offline {
        data: &data,
        origin: origin.as_ref().map(|(f, s)| (f, *s)),
    };
    run_plan(&plan, &source, &opened, req, stop)
}

/// Carries out `plan` onto an opened destination.
///
/// # Errors
/// The copy's failure.
pub fn run_plan(
    plan: &Plan,
    source: &Source,
    dest: &OpenedDest,
    req: &CopyRequest,
    stop: &(dyn Fn() -> Option<i32> + Sync),
) -> Result<Report, MigrateError> {
    let reads_zero =
        req.delta_id.is_none() && !req.zero_dest && (dest.created || dest.kind == DestKind::Block);
    let d = Dest {
        file: &dest.file,
        kind: dest.kind,
        reads_zero,
    };
    let opts = Options {
        buffer_bytes: req.buffer_bytes,
        progress: req.progress,
        stop,
    };
    let stats = exec::execute(plan, source, &d, &opts)?;
    Ok(Report {
        size_bytes: plan.size_bytes,
        planned_bytes: plan.bytes_where(|_| true),
        stats,
    })
}

/// Refuses a destination that is the live source, a device of its pool, a
/// thin of the same pool, or its external origin.
fn refuse_dest_of_live(dest: &Path, thin: &Thin) -> Result<(), MigrateError> {
    let mut inputs: Vec<(&Path, &str)> = vec![
        (&thin.path, "the source"),
        (&thin.dev.path, "the source"),
        (&thin.pool.dev.path, "the source's pool"),
        (
            &thin.pool.metadata.path,
            "the metadata device of the source's pool",
        ),
        (&thin.pool.data.path, "the data device of the source's pool"),
    ];
    if let Some(o) = &thin.origin {
        inputs.push((&o.path, "the source's external origin"));
    }
    refuse_dest_among(dest, &inputs)?;
    if identity(dest)?.is_some_and(|i| matches!(i, Identity::Dev(_))) {
        if let Ok(other) = resolve_thin(dest) {
            if other.pool.dev.num == thin.pool.dev.num {
                return Err(MigrateError::DestIsSource {
                    dest: dest.display().to_string(),
                    what: format!(
                        "thin {} of the source's pool {}",
                        other.thin_id, thin.pool.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Copies a live thin device through the kernel, its mappings read from a
/// metadata snapshot of its pool (reserved for the copy and released after
/// it, unless the pool already held one).
///
/// # Errors
/// A [`MigrateError`]; a snapshot reserved here is released in every case.
pub fn migrate_live(
    source: &Path,
    force: bool,
    req: &CopyRequest,
    stop: &(dyn Fn() -> Option<i32> + Sync),
    note: &mut dyn FnMut(String),
) -> Result<Report, MigrateError> {
    let thin = resolve_thin(source)?;
    if !thin.read_only {
        if !force {
            return Err(MigrateError::SourceWritable {
                path: source.display().to_string(),
                id: thin.thin_id,
                pool: thin.pool.name.clone(),
            });
        }
        note(format!(
            "warning: {} is active read-write; the copy may not be consistent",
            source.display()
        ));
    }
    refuse_dest_of_live(dest_path(&req.dest), &thin)?;
    let size = thin.size_bytes;
    let session = Session::open(&thin.pool, note)?;
    let md = SourceMetadata::open(&thin.pool.metadata.path, SnapshotChoice::At(session.root()))?;
    if md.block_bytes() != thin.pool.block_sectors * 512 {
        return Err(MigrateError::Invalid(format!(
            "metadata of pool {} says {}-byte blocks, its table {}",
            thin.pool.name,
            md.block_bytes(),
            thin.pool.block_sectors * 512
        )));
    }
    md.root_of(thin.thin_id)?;
    if let Some(base) = req.delta_id {
        md.root_of(base)?;
    }
    let opened = open_dest(&req.dest, size, req.delta_id)?;
    let has_origin = thin.origin.is_some();
    let plan = match req.delta_id {
        Some(base) => md.delta_plan(base, thin.thin_id, size, has_origin)?,
        None => md.full_plan(thin.thin_id, size, gaps(req, opened.created, has_origin))?,
    };
    let (src, _) = open_input(&thin.dev.path, true)?;
    let report = run_plan(&plan, &Source::Thin(&src), &opened, req, stop);
    drop(md);
    let released = session.release();
    let report = report?;
    released?;
    Ok(report)
}
