//! Live sources and targets: thin volumes of a running pool, named as LVM
//! volumes (`VG/LV`, `/dev/VG/LV`, through lvm2's `lvs`) or device-mapper
//! paths (`/dev/mapper/NAME`, `/dev/dm-N`, through dm ioctls).
//!
//! A live send holds a metadata snapshot of the source's pool for the whole
//! run ([`Session`]: reserved unless the pool held one, released on every
//! exit path, a reservation left by a killed run recovered), computes the
//! plan from that snapshot's binary metadata (the delta walk for two
//! volumes), and reads the data through the source thin device, so what is
//! sent is what a reader of the device sees. An inactive LV is activated for
//! the run (ignoring activation-skip, as thin snapshots carry it) and
//! deactivated afterwards.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::plan::{plan_offline, Holes, OfflineSource, Piece, Plan, PlanError};
use crate::thin::live::lvm::{self, classify, Activation, LvInfo, LvmError, VolumeName};
use crate::thin::live::resolve::{resolve_thin, ResolveError, Thin};
use crate::thin::live::snapshot::{Session, SnapError};
use crate::thin::model::open::SnapshotChoice;

/// Failures of a live send or receive, each naming the volume.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// lvm2.
    #[error(transparent)]
    Lvm(#[from] LvmError),
    /// Resolving a device.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The metadata snapshot.
    #[error(transparent)]
    Snap(#[from] SnapError),
    /// The plan.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// An LV that is not a thin volume.
    #[error("{0}: not a thin volume (lvs reports no thin pool)")]
    NotThin(String),
    /// The two volumes of an incremental send are in different pools.
    #[error("{base} and {volume} are not in the same thin pool ({base_pool} and {volume_pool})")]
    OtherPool {
        /// The base.
        base: String,
        /// Its pool.
        base_pool: String,
        /// The volume sent.
        volume: String,
        /// Its pool.
        volume_pool: String,
    },
    /// lvs and the kernel disagree.
    #[error("{name}: lvs says thin id {lvs}, the kernel's table of {dev} says {kernel}")]
    IdMismatch {
        /// The LV.
        name: String,
        /// Its dm device.
        dev: String,
        /// lvs's id.
        lvs: u64,
        /// The table's.
        kernel: u64,
    },
    /// A thin reading an external origin where it is unmapped.
    #[error(
        "{0}: a thin with an external origin cannot be sent (its unmapped blocks read the origin)"
    )]
    ExternalOrigin(String),
    /// The metadata's block size is not the pool table's.
    #[error("metadata of pool {pool} says {metadata}-byte blocks, its table {table}")]
    BlockSize {
        /// The pool.
        pool: String,
        /// From the metadata.
        metadata: u64,
        /// From the table.
        table: u64,
    },
    /// A device node that is missing or not a block device.
    #[error("{path}: {what}")]
    Device {
        /// The path.
        path: String,
        /// What is wrong.
        what: String,
    },
}

/// A volume resolved for sending: the thin (active), and the LV when the
/// name was an LVM one.
struct Resolved {
    thin: Thin,
    lv: Option<LvInfo>,
    activated: Option<Activation>,
}

/// A name resolved as far as the base of a delta needs: its thin id and
/// where its pool is.
struct BaseVolume {
    name: String,
    thin_id: u64,
    pool: PoolOf,
}

/// Which pool a volume is in, as its resolver names it.
#[derive(PartialEq, Eq)]
enum PoolOf {
    /// VG and thin pool LV.
    Lvm(String, String),
    /// Major and minor of the pool device.
    Dm((u32, u32), String),
}

impl PoolOf {
    fn shown(&self) -> String {
        match self {
            PoolOf::Lvm(vg, pool) => format!("{vg}/{pool}"),
            PoolOf::Dm(_, name) => name.clone(),
        }
    }
}

/// Classifies `arg`; an LVM-looking name is taken as a path when lvm2 is
/// not installed.
fn name_of(arg: &std::ffi::OsStr) -> VolumeName {
    match classify(arg) {
        VolumeName::Lvm(n) if !lvm::lvm_available() => VolumeName::Path(PathBuf::from(n)),
        v => v,
    }
}

fn thin_lv(name: &str) -> Result<LvInfo, LiveError> {
    let lv = lvm::lvs(name)?;
    if lv.pool.is_none() || lv.thin_id.is_none() {
        return Err(LiveError::NotThin(name.to_string()));
    }
    Ok(lv)
}

fn resolve_source(arg: &std::ffi::OsStr) -> Result<Resolved, LiveError> {
    let (thin, lv, activated) = match name_of(arg) {
        VolumeName::Path(p) => (resolve_thin(&p)?, None, None),
        VolumeName::Lvm(n) => {
            let lv = thin_lv(&n)?;
            let activated = Activation::ensure(&lv)?;
            let thin = resolve_thin(&lv.dm_path)?;
            let id = lv.thin_id.unwrap_or(thin.thin_id);
            if id != thin.thin_id {
                return Err(LiveError::IdMismatch {
                    name: n,
                    dev: lv.dm_path.display().to_string(),
                    lvs: id,
                    kernel: thin.thin_id,
                });
            }
            (thin, Some(lv), activated)
        }
    };
    if thin.origin.is_some() {
        return Err(LiveError::ExternalOrigin(
            arg.to_string_lossy().into_owned(),
        ));
    }
    Ok(Resolved {
        thin,
        lv,
        activated,
    })
}

fn resolve_base(arg: &std::ffi::OsStr) -> Result<BaseVolume, LiveError> {
    let name = arg.to_string_lossy().into_owned();
    match name_of(arg) {
        VolumeName::Path(p) => {
            let t = resolve_thin(&p)?;
            if t.origin.is_some() {
                return Err(LiveError::ExternalOrigin(name));
            }
            Ok(BaseVolume {
                name,
                thin_id: t.thin_id,
                pool: PoolOf::Dm(t.pool.dev.num, t.pool.name),
            })
        }
        VolumeName::Lvm(n) => {
            let lv = thin_lv(&n)?;
            Ok(BaseVolume {
                name,
                thin_id: lv.thin_id.unwrap_or_default(),
                pool: PoolOf::Lvm(lv.vg, lv.pool.unwrap_or_default()),
            })
        }
    }
}

fn pool_of(r: &Resolved) -> PoolOf {
    match &r.lv {
        Some(lv) => PoolOf::Lvm(lv.vg.clone(), lv.pool.clone().unwrap_or_default()),
        None => PoolOf::Dm(r.thin.pool.dev.num, r.thin.pool.name.clone()),
    }
}

/// A live send in progress: the plan, the source device to read it from, and
/// what must be undone at the end (the metadata snapshot, an activation).
/// Dropping it releases both; [`LiveSend::finish`] does so and reports
/// failures.
pub struct LiveSend {
    /// What to send; DATA pieces address the source device.
    pub plan: Plan,
    /// The source thin device, open read-only.
    pub data: File,
    // Dropped in this order: the snapshot is released before an LV we
    // activated is deactivated.
    session: Option<Session>,
    activated: Option<Activation>,
}

impl LiveSend {
    /// Resolves `volumes` (`[VOL]` or `[SNAP1, SNAP2]`), holds a metadata
    /// snapshot of the pool and plans the stream (`holes` as for an
    /// offline plan). `note` receives what the user should be told.
    ///
    /// # Errors
    /// A [`LiveError`]; nothing stays reserved or activated then.
    pub fn open(
        volumes: &[&std::ffi::OsStr],
        holes: Holes,
        note: &mut dyn FnMut(String),
    ) -> Result<LiveSend, LiveError> {
        let (base_arg, source_arg) = match volumes {
            [v] => (None, *v),
            [b, s] => (Some(*b), *s),
            _ => {
                return Err(LiveError::Device {
                    path: String::new(),
                    what: "one or two volumes expected".into(),
                })
            }
        };
        let base = base_arg.map(resolve_base).transpose()?;
        let mut src = resolve_source(source_arg)?;
        if let Some(b) = &base {
            let sp = pool_of(&src);
            if b.pool != sp {
                return Err(LiveError::OtherPool {
                    base: b.name.clone(),
                    base_pool: b.pool.shown(),
                    volume: source_arg.to_string_lossy().into_owned(),
                    volume_pool: sp.shown(),
                });
            }
        }
        let thin = &src.thin;
        let session = Session::open(&thin.pool, note)?;
        let plan = plan_live(
            thin,
            base.as_ref().map(|b| b.thin_id),
            session.root(),
            holes,
        )?;
        let data = File::open(&thin.dev.path).map_err(|e| LiveError::Device {
            path: thin.dev.path.display().to_string(),
            what: e.to_string(),
        })?;
        Ok(LiveSend {
            plan,
            data,
            session: Some(session),
            activated: src.activated.take(),
        })
    }

    /// Releases the metadata snapshot and deactivates what was activated.
    ///
    /// # Errors
    /// The release or deactivation failure.
    pub fn finish(self) -> Result<(), LiveError> {
        let LiveSend {
            data,
            session,
            activated,
            ..
        } = self;
        // Closed first: an open device cannot be deactivated.
        drop(data);
        let released = session.map_or(Ok(()), Session::release);
        let deactivated = activated.map_or(Ok(()), Activation::end);
        released?;
        deactivated?;
        Ok(())
    }
}

/// The plan of `thin` (or its delta from `base`) from the metadata
/// snapshot at `root`, with DATA pieces addressing the thin device.
fn plan_live(thin: &Thin, base: Option<u64>, root: u64, holes: Holes) -> Result<Plan, LiveError> {
    let src = OfflineSource {
        metadata: &thin.pool.metadata.path,
        snapshot: SnapshotChoice::At(root),
        thin_id: thin.thin_id,
        base_id: base,
        volume_size: Some(thin.size_bytes),
    };
    let mut plan = plan_offline(&src, holes)?;
    let table = thin.pool.block_sectors * 512;
    if u64::from(plan.granularity) != table {
        return Err(LiveError::BlockSize {
            pool: thin.pool.name.clone(),
            metadata: u64::from(plan.granularity),
            table,
        });
    }
    for p in &mut plan.pieces {
        if let Piece::Data { offset, data, .. } = p {
            *data = *offset;
        }
    }
    Ok(plan)
}

/// A receive target named on the command line, with an LV activated for the
/// run when it was inactive (deactivated on drop or by [`LiveTarget::finish`]).
pub struct LiveTarget {
    /// The path to open: a block device, or a regular file.
    pub path: PathBuf,
    activated: Option<Activation>,
}

impl LiveTarget {
    /// Resolves `arg`: an LVM name through lvs (any LV; activated when
    /// inactive), a device-mapper path that must exist as a block device,
    /// or any other path (a block device or a regular file, created when
    /// missing).
    ///
    /// # Errors
    /// lvm2 failing, or a dm path that is not a block device.
    pub fn open(arg: &std::ffi::OsStr) -> Result<LiveTarget, LiveError> {
        match name_of(arg) {
            VolumeName::Lvm(n) => {
                let lv = lvm::lvs(&n)?;
                let activated = Activation::ensure(&lv)?;
                Ok(LiveTarget {
                    path: lv.dm_path,
                    activated,
                })
            }
            VolumeName::Path(p) => {
                let s = p.to_string_lossy();
                if s.starts_with("/dev/mapper/") || s.starts_with("/dev/dm-") {
                    require_block_device(&p)?;
                }
                Ok(LiveTarget {
                    path: p,
                    activated: None,
                })
            }
        }
    }

    /// Deactivates an LV that was activated for the run.
    ///
    /// # Errors
    /// The deactivation failure.
    pub fn finish(mut self) -> Result<(), LiveError> {
        Ok(self.activated.take().map_or(Ok(()), Activation::end)?)
    }
}

fn require_block_device(p: &Path) -> Result<(), LiveError> {
    use std::os::unix::fs::FileTypeExt;
    let err = |what: String| LiveError::Device {
        path: p.display().to_string(),
        what,
    };
    match std::fs::metadata(p) {
        Ok(m) if m.file_type().is_block_device() => Ok(()),
        Ok(_) => Err(err("not a block device".into())),
        Err(e) => Err(err(e.to_string())),
    }
}
