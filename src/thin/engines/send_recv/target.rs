//! The receiver's target: a block device, or a regular file (created when
//! missing, sized to the volume by format 2 streams).
//!
//! Zero and unmap ranges become hole punching on a file and `BLKZEROOUT` /
//! `BLKDISCARD` on a block device; where the device or file system cannot do
//! that, zeros are written instead and a notice says so once.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use crate::pdata::sys;

/// Discards go to the device in pieces of at most this many bytes, as
/// thin-send-recv does, so that a long discard can be interrupted.
const DISCARD_PIECE: u64 = 1 << 30;
/// Size of the buffer of zeros written where nothing better works.
const ZEROS: usize = 1 << 20;

/// What the target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// A regular file.
    File,
    /// A block device.
    BlockDevice,
}

/// A target that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Opening, sizing or creating it failed.
    #[error("{path}: {cause}")]
    Open {
        /// The target.
        path: PathBuf,
        /// The error.
        cause: io::Error,
    },
    /// Neither a regular file nor a block device.
    #[error("{0}: not a regular file or block device")]
    Kind(PathBuf),
    /// A block device smaller than the volume.
    #[error("{path}: the device has {size} bytes, the volume {volume} bytes")]
    TooSmall {
        /// The target.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The stream's volume size.
        volume: u64,
    },
    /// An operation that reaches past the end of a block device.
    #[error("{path}: range {offset}+{len} reaches past the device end at {size}")]
    OutOfRange {
        /// The target.
        path: PathBuf,
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Device size.
        size: u64,
    },
    /// A write, discard, zeroing or sync that failed.
    #[error("{path}: {what} at {offset}+{len}: {cause}")]
    Io {
        /// The target.
        path: PathBuf,
        /// The operation.
        what: &'static str,
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
        /// The error.
        cause: io::Error,
    },
}

/// An open target.
pub struct Target {
    file: File,
    kind: TargetKind,
    path: PathBuf,
    size: u64,
    zeros: Vec<u8>,
    notices: Vec<String>,
    discard_unsupported: bool,
    zeroout_unsupported: bool,
    punch_unsupported: bool,
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::ENOSYS)
    )
}

impl Target {
    /// Opens `path` for writing; a missing path is created as a regular file.
    ///
    /// # Errors
    /// The open failure, or a path that is neither a file nor a block device.
    pub fn open(path: &Path) -> Result<Target, TargetError> {
        let open_err = |cause| TargetError::Open {
            path: path.to_owned(),
            cause,
        };
        let kind = match std::fs::metadata(path) {
            Ok(m) if m.file_type().is_block_device() => TargetKind::BlockDevice,
            Ok(m) if m.file_type().is_file() => TargetKind::File,
            Ok(_) => return Err(TargetError::Kind(path.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => TargetKind::File,
            Err(e) => return Err(open_err(e)),
        };
        let mut opts = OpenOptions::new();
        opts.write(true);
        if kind == TargetKind::File {
            opts.create(true);
        }
        let mut file = opts.open(path).map_err(open_err)?;
        let size = file.seek(SeekFrom::End(0)).map_err(open_err)?;
        Ok(Target {
            file,
            kind,
            path: path.to_owned(),
            size,
            zeros: Vec::new(),
            notices: Vec::new(),
            discard_unsupported: false,
            zeroout_unsupported: false,
            punch_unsupported: false,
        })
    }

    /// What the target is.
    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Notices about fallbacks taken (each once).
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    /// Makes the target fit a volume of `volume` bytes: a file is set to
    /// exactly that size, a block device must be at least that large.
    ///
    /// # Errors
    /// A device that is too small, or the resize failing.
    pub fn fit(&mut self, volume: u64) -> Result<(), TargetError> {
        match self.kind {
            TargetKind::BlockDevice if self.size < volume => Err(TargetError::TooSmall {
                path: self.path.clone(),
                size: self.size,
                volume,
            }),
            TargetKind::BlockDevice => Ok(()),
            TargetKind::File => {
                if self.size != volume {
                    self.file
                        .set_len(volume)
                        .map_err(|cause| TargetError::Open {
                            path: self.path.clone(),
                            cause,
                        })?;
                    self.size = volume;
                }
                Ok(())
            }
        }
    }

    fn io_err(&self, what: &'static str, offset: u64, len: u64, cause: io::Error) -> TargetError {
        TargetError::Io {
            path: self.path.clone(),
            what,
            offset,
            len,
            cause,
        }
    }

    fn check_range(&mut self, offset: u64, len: u64) -> Result<(), TargetError> {
        let end = offset.saturating_add(len);
        match self.kind {
            TargetKind::BlockDevice if end > self.size => Err(TargetError::OutOfRange {
                path: self.path.clone(),
                offset,
                len,
                size: self.size,
            }),
            TargetKind::BlockDevice => Ok(()),
            TargetKind::File => {
                self.size = self.size.max(end);
                Ok(())
            }
        }
    }

    /// Writes `bytes` at `offset`.
    ///
    /// # Errors
    /// A range past a device's end, or the write failing.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), TargetError> {
        let len = bytes.len() as u64;
        self.check_range(offset, len)?;
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| self.io_err("write", offset, len, e))
    }

    fn write_zeros(&mut self, offset: u64, len: u64) -> Result<(), TargetError> {
        if self.zeros.is_empty() {
            self.zeros = vec![0; ZEROS];
        }
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZEROS as u64);
            let at = offset + done;
            self.file
                .write_all_at(&self.zeros[..n as usize], at)
                .map_err(|e| TargetError::Io {
                    path: self.path.clone(),
                    what: "write zeros",
                    offset: at,
                    len: n,
                    cause: e,
                })?;
            done += n;
        }
        Ok(())
    }

    fn notice(&mut self, msg: String) {
        self.notices.push(msg);
    }

    /// Makes the range read as zeros (a ZERO record).
    ///
    /// # Errors
    /// A range past a device's end, or every way of zeroing failing.
    pub fn zero(&mut self, offset: u64, len: u64) -> Result<(), TargetError> {
        if len == 0 {
            return Ok(());
        }
        self.check_range(offset, len)?;
        match self.kind {
            TargetKind::File => self.punch_or_write(offset, len),
            TargetKind::BlockDevice => self.zeroout_or_write(offset, len),
        }
    }

    fn punch_or_write(&mut self, offset: u64, len: u64) -> Result<(), TargetError> {
        if !self.punch_unsupported {
            match sys::punch_hole(&self.file, offset, len) {
                Ok(()) => return Ok(()),
                Err(e) if unsupported(&e) => {
                    self.punch_unsupported = true;
                    let p = self.path.display().to_string();
                    self.notice(format!(
                        "{p}: the file system cannot punch holes ({e}); writing zeros instead"
                    ));
                }
                Err(e) => return Err(self.io_err("punch hole", offset, len, e)),
            }
        }
        self.write_zeros(offset, len)
    }

    fn zeroout_or_write(&mut self, offset: u64, len: u64) -> Result<(), TargetError> {
        if !self.zeroout_unsupported {
            match sys::blk_zeroout(&self.file, offset, len) {
                Ok(()) => return Ok(()),
                Err(e) if unsupported(&e) => {
                    self.zeroout_unsupported = true;
                    let p = self.path.display().to_string();
                    self.notice(format!(
                        "{p}: BLKZEROOUT is not supported ({e}); writing zeros instead"
                    ));
                }
                Err(e) => return Err(self.io_err("BLKZEROOUT", offset, len, e)),
            }
        }
        self.write_zeros(offset, len)
    }

    /// Unmaps the range (an UNMAP record; an empty one does nothing): a hole in a file, a discard on a
    /// block device, zeros where neither works.
    ///
    /// # Errors
    /// A range past a device's end, or the discard and the fallback failing.
    pub fn unmap(&mut self, offset: u64, len: u64) -> Result<(), TargetError> {
        if len == 0 {
            return Ok(());
        }
        self.check_range(offset, len)?;
        if self.kind == TargetKind::File {
            return self.punch_or_write(offset, len);
        }
        let mut done = 0;
        while done < len {
            let n = (len - done).min(DISCARD_PIECE);
            let at = offset + done;
            if self.discard_unsupported {
                self.zeroout_or_write(at, n)?;
            } else {
                match sys::blk_discard(&self.file, at, n) {
                    Ok(()) => {}
                    Err(e) if unsupported(&e) => {
                        self.discard_unsupported = true;
                        let p = self.path.display().to_string();
                        self.notice(format!(
                            "{p}: the device does not support discard ({e}); zeroing unmapped ranges instead"
                        ));
                        self.zeroout_or_write(at, n)?;
                    }
                    Err(e) => return Err(self.io_err("BLKDISCARD", at, n, e)),
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Makes everything written so far durable (fdatasync).
    ///
    /// # Errors
    /// The sync failing (a late write error shows here).
    pub fn sync(&mut self) -> Result<(), TargetError> {
        let size = self.size;
        self.file
            .sync_data()
            .map_err(|e| self.io_err("fdatasync", 0, size, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn file_target_is_created_sized_and_zeroed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        let mut t = Target::open(&p).unwrap();
        assert_eq!((t.kind(), t.size()), (TargetKind::File, 0));
        t.fit(3 * 4096).unwrap();
        t.write(0, &[0xaa; 3 * 4096]).unwrap();
        t.zero(4096, 4096).unwrap();
        t.unmap(8192, 4096).unwrap();
        t.unmap(0, 0).unwrap();
        t.sync().unwrap();
        let f = File::open(&p).unwrap();
        let mut back = vec![0u8; 3 * 4096];
        f.read_exact_at(&mut back, 0).unwrap();
        assert!(back[..4096].iter().all(|&b| b == 0xaa));
        assert!(back[4096..].iter().all(|&b| b == 0));
        assert_eq!(f.metadata().unwrap().len(), 3 * 4096);
        assert!(t.take_notices().is_empty());
        // A directory is not a target.
        let e = Target::open(dir.path()).err().unwrap();
        assert!(
            e.to_string()
                .ends_with(": not a regular file or block device"),
            "{e}"
        );
    }
}
