//! A metadata-snapshot session on a live pool: while it lasts, the pool
//! holds a metadata snapshot whose trees the tools may read.
//!
//! If the pool holds none, one is reserved (`reserve_metadata_snap`) and
//! released when the session ends — on success, on every error path (the
//! session releases on drop) and, because the commands catch SIGINT,
//! SIGTERM, SIGHUP and SIGPIPE and unwind before re-raising them, on those
//! signals too. A snapshot the pool already held is used and left alone.
//!
//! Our own reservations of one pool are serialised by an exclusive lock on
//! `/run/thintools/metasnap-<pool>.lock`. Before reserving, the file is
//! written `reserving <pid>`, afterwards `reserved <pid> <root>`, and it is
//! emptied after the release. A run that finds the file non-empty while it
//! holds the lock knows that the run which wrote it died without releasing
//! (only SIGKILL or a crash can do that): if the pool still holds that root
//! (or a reservation was in progress), it releases it and says so.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use crate::thin::live::resolve::{pool_message, pool_status, Pool, PoolMode, ResolveError};

/// Directory of the lock files.
pub const LOCK_DIR: &str = "/run/thintools";

/// Failures of a session.
#[derive(Debug, thiserror::Error)]
pub enum SnapError {
    /// The lock file.
    #[error("lock file {path}: {cause}")]
    Lock {
        /// Its path.
        path: String,
        /// The OS error.
        cause: io::Error,
    },
    /// Status or message.
    #[error(transparent)]
    Dm(#[from] ResolveError),
    /// The pool cannot take a reservation.
    #[error("pool {pool} is in {mode} mode: cannot reserve a metadata snapshot")]
    PoolMode {
        /// Pool name.
        pool: String,
        /// Its mode.
        mode: &'static str,
    },
    /// Reserved, but the status shows no held root.
    #[error("pool {0}: reserve_metadata_snap succeeded but the status shows no held root")]
    NoRoot(String),
}

/// A held metadata snapshot.
pub struct Session {
    pool: Pool,
    root: u64,
    ours: bool,
    lock: Option<(File, PathBuf)>,
}

fn lock_err(path: &std::path::Path) -> impl Fn(io::Error) -> SnapError + '_ {
    move |cause| SnapError::Lock {
        path: path.display().to_string(),
        cause,
    }
}

fn mode_name(m: PoolMode) -> &'static str {
    match m {
        PoolMode::ReadWrite => "read-write",
        PoolMode::ReadOnly => "read-only",
        PoolMode::OutOfDataSpace => "out-of-data-space",
        PoolMode::Fail => "failed",
    }
}

fn write_state(f: &mut File, text: &str) -> io::Result<()> {
    f.set_len(0)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(text.as_bytes())?;
    f.sync_data()
}

/// Takes the pool's lock file (waiting, with a note, while another run holds
/// it): the file, its path and the state the previous run left in it.
fn take_lock(
    pool: &Pool,
    note: &mut dyn FnMut(String),
) -> Result<(File, PathBuf, String), SnapError> {
    let path = PathBuf::from(LOCK_DIR).join(format!("metasnap-{}.lock", pool.name));
    std::fs::create_dir_all(LOCK_DIR).map_err(lock_err(&path))?;
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(lock_err(&path))?;
    if file.try_lock().is_err() {
        note(format!(
            "waiting for another run holding {} (pool {})",
            path.display(),
            pool.name
        ));
        file.lock().map_err(lock_err(&path))?;
    }
    let mut state = String::new();
    file.read_to_string(&mut state).map_err(lock_err(&path))?;
    Ok((file, path, state))
}

/// Releases a reservation that an interrupted run of ours left behind: the
/// lock file says "reserving PID" (killed before it learnt the root) or
/// "reserved PID ROOT" with the root the pool still holds. Returns the held
/// root that remains, if any.
fn release_stale(
    pool: &Pool,
    state: &str,
    held: Option<u64>,
    note: &mut dyn FnMut(String),
) -> Result<Option<u64>, SnapError> {
    let Some(root) = held else {
        return Ok(None);
    };
    let f: Vec<&str> = state.split_whitespace().collect();
    let ours = match f.first().copied() {
        Some("reserving") => true,
        Some("reserved") => f.get(2) == Some(&root.to_string().as_str()),
        _ => false,
    };
    if !ours {
        return Ok(Some(root));
    }
    pool_message(pool, "release_metadata_snap")?;
    note(format!(
        "released the metadata snapshot (root {root}) of pool {} left reserved by an interrupted run (pid {})",
        pool.name,
        f.get(1).unwrap_or(&"?")
    ));
    Ok(None)
}

impl Session {
    /// Starts a session on `pool`; `note` receives what the user should be
    /// told (waiting for the lock, a stale reservation released, a held
    /// snapshot used).
    ///
    /// # Errors
    /// A [`SnapError`]; nothing is left reserved then.
    pub fn open(pool: &Pool, note: &mut dyn FnMut(String)) -> Result<Session, SnapError> {
        let (mut file, path, state) = take_lock(pool, note)?;
        let status = pool_status(pool)?;
        let held = release_stale(pool, &state, status.held_root, note)?;
        if !state.is_empty() {
            write_state(&mut file, "").map_err(lock_err(&path))?;
        }
        if let Some(root) = held {
            note(format!(
                "using the metadata snapshot already held by pool {} (root {root}); it stays reserved",
                pool.name
            ));
            return Ok(Session {
                pool: pool.clone(),
                root,
                ours: false,
                lock: Some((file, path)),
            });
        }
        if matches!(status.mode, PoolMode::ReadOnly | PoolMode::Fail) {
            return Err(SnapError::PoolMode {
                pool: pool.name.clone(),
                mode: mode_name(status.mode),
            });
        }
        let pid = std::process::id();
        write_state(&mut file, &format!("reserving {pid}\n")).map_err(lock_err(&path))?;
        if let Err(e) = pool_message(pool, "reserve_metadata_snap") {
            let _ = write_state(&mut file, "");
            return Err(e.into());
        }
        let mut session = Session {
            pool: pool.clone(),
            root: 0,
            ours: true,
            lock: Some((file, path.clone())),
        };
        // From here on, dropping `session` releases the reservation.
        let root = pool_status(pool)?
            .held_root
            .ok_or_else(|| SnapError::NoRoot(pool.name.clone()))?;
        session.root = root;
        if let Some((f, _)) = session.lock.as_mut() {
            write_state(f, &format!("reserved {pid} {root}\n")).map_err(lock_err(&path))?;
        }
        Ok(session)
    }

    /// Root block of the held snapshot.
    #[must_use]
    pub fn root(&self) -> u64 {
        self.root
    }

    /// True when this session reserved the snapshot (and will release it).
    #[must_use]
    pub fn reserved_by_us(&self) -> bool {
        self.ours
    }

    /// The pool.
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Ends the session, releasing a snapshot we reserved.
    ///
    /// # Errors
    /// The release failure (the lock file then keeps the state, so the next
    /// run releases it).
    pub fn release(mut self) -> Result<(), SnapError> {
        self.end()
    }

    fn end(&mut self) -> Result<(), SnapError> {
        let Some((mut file, path)) = self.lock.take() else {
            return Ok(());
        };
        if self.ours {
            pool_message(&self.pool, "release_metadata_snap")?;
            write_state(&mut file, "").map_err(lock_err(&path))?;
        }
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.end();
    }
}
