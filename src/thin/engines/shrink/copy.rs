//! The pool's data device: opened for writing (exclusively when it is a block
//! device, so an active pool refuses it), and the copies of the plan's moves
//! through one large buffer, made durable with fdatasync.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::thin::engines::shrink::plan::Move;

/// The most bytes one read or write moves.
const COPY_BUFFER: u64 = 64 << 20;

/// What went wrong with the data device.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The path does not exist.
    #[error("Couldn't find data device '{0}'")]
    Missing(PathBuf),
    /// Not a regular file or block device.
    #[error("Not a block device or regular file '{0}'.")]
    WrongType(PathBuf),
    /// open(2) or stat failed (EBUSY: the device is in use, e.g. by an active pool).
    #[error("{path}: {source}")]
    Open {
        /// The data device.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The device does not hold every mapped block.
    #[error(
        "data device '{path}' holds {have} blocks of {block_bytes} bytes, \
         but data block {block} is mapped"
    )]
    TooSmall {
        /// The data device.
        path: PathBuf,
        /// Whole blocks it holds.
        have: u64,
        /// The highest mapped block.
        block: u64,
        /// Bytes per data block.
        block_bytes: u64,
    },
    /// Reading a block to move failed.
    #[error("reading data block {block} from '{path}': {source}")]
    Read {
        /// The data device.
        path: PathBuf,
        /// The first block of the failed read.
        block: u64,
        /// The OS error.
        source: io::Error,
    },
    /// Writing a moved block failed.
    #[error("writing data block {block} to '{path}': {source}")]
    Write {
        /// The data device.
        path: PathBuf,
        /// The first block of the failed write.
        block: u64,
        /// The OS error.
        source: io::Error,
    },
    /// fdatasync failed: the copies may not be durable.
    #[error("flushing '{path}': {source}")]
    Sync {
        /// The data device.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// An open data device.
pub struct DataDevice {
    file: File,
    path: PathBuf,
    bytes: u64,
}

impl DataDevice {
    /// Opens `path` for reading and writing.
    ///
    /// # Errors
    /// Missing, wrong type, or refused by the OS (in use).
    pub fn open(path: &Path) -> Result<DataDevice, DataError> {
        let os = |source| DataError::Open {
            path: path.to_path_buf(),
            source,
        };
        let md = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DataError::Missing(path.to_path_buf()))
            }
            Err(e) => return Err(os(e)),
        };
        let ft = md.file_type();
        let block_dev = ft.is_block_device();
        if !ft.is_file() && !block_dev {
            return Err(DataError::WrongType(path.to_path_buf()));
        }
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        if block_dev {
            opts.custom_flags(libc::O_EXCL);
        }
        let mut file = opts.open(path).map_err(os)?;
        let bytes = if block_dev {
            file.seek(SeekFrom::End(0)).map_err(os)?
        } else {
            md.len()
        };
        Ok(DataDevice {
            file,
            path: path.to_path_buf(),
            bytes,
        })
    }

    /// Checks that every block below `end` lies inside the device.
    ///
    /// # Errors
    /// [`DataError::TooSmall`] naming the highest block.
    pub fn check_holds(&self, end: u64, block_bytes: u64) -> Result<(), DataError> {
        let have = self.bytes / block_bytes;
        if end > have {
            return Err(DataError::TooSmall {
                path: self.path.clone(),
                have,
                block: end - 1,
                block_bytes,
            });
        }
        Ok(())
    }

    /// Copies every move (source to destination), then fdatasyncs. Calls
    /// `progress` with the blocks copied so far after each chunk.
    ///
    /// # Errors
    /// The first read, write or flush that failed, naming the block.
    pub fn copy(
        &self,
        moves: &[Move],
        block_bytes: u64,
        mut progress: impl FnMut(u64),
    ) -> Result<(), DataError> {
        let per_chunk = (COPY_BUFFER / block_bytes).max(1);
        let largest = moves.iter().map(|m| m.len).max().unwrap_or(0);
        let buf_blocks = per_chunk.min(largest);
        // Bounded by COPY_BUFFER or one data block (at most 1 GiB).
        let buf_len = usize::try_from(buf_blocks * block_bytes)
            .map_err(|_| self.read_error(0, io::ErrorKind::OutOfMemory.into()))?;
        let mut buf = vec![0u8; buf_len];
        let mut done = 0u64;
        for m in moves {
            let mut at = 0;
            while at < m.len {
                let n = per_chunk.min(m.len - at);
                let (src, dst) = (m.src + at, m.dst + at);
                let Some(chunk) = usize::try_from(n * block_bytes)
                    .ok()
                    .and_then(|len| buf.get_mut(..len))
                else {
                    return Err(self.read_error(src, io::ErrorKind::OutOfMemory.into()));
                };
                self.file
                    .read_exact_at(chunk, src * block_bytes)
                    .map_err(|e| self.read_error(src, e))?;
                self.file
                    .write_all_at(chunk, dst * block_bytes)
                    .map_err(|source| DataError::Write {
                        path: self.path.clone(),
                        block: dst,
                        source,
                    })?;
                at += n;
                done += n;
                progress(done);
            }
        }
        self.file.sync_data().map_err(|source| DataError::Sync {
            path: self.path.clone(),
            source,
        })
    }

    fn read_error(&self, block: u64, source: io::Error) -> DataError {
        DataError::Read {
            path: self.path.clone(),
            block,
            source,
        }
    }
}
