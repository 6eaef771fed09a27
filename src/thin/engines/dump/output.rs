//! Where thin_dump writes: stdout, or the `-o` file, which is opened only
//! once the input superblock has been read (a bad input leaves an existing
//! output untouched).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::pdata::io::OpenError;
use crate::thin::engines::dump::DumpError;

/// Buffer size of the output writer. Rendered fragments at least this large
/// bypass the buffer.
const OUT_BUFFER: usize = 256 * 1024;

/// The product's destination.
pub type Output = BufWriter<Box<dyn Write + Send>>;

/// A buffered stdout.
#[must_use]
pub fn stdout() -> Output {
    BufWriter::with_capacity(OUT_BUFFER, Box::new(io::stdout()))
}

/// Opens `path` for the dump: an existing file is truncated, an existing
/// block device, character device or FIFO is written in place, a missing
/// path is created, except under `/dev`, where a missing path means an
/// inactive device and must not become a regular file.
///
/// # Errors
/// `Couldn't find output file '<path>'` under /dev, or the OS error.
pub fn open_file(path: &Path) -> Result<Output, DumpError> {
    let shown = path.display().to_string();
    let os = |err: io::Error| DumpError::Output {
        path: shown.clone(),
        err,
    };
    let file: File = match std::fs::metadata(path) {
        Ok(m) => {
            let mut o = OpenOptions::new();
            o.write(true);
            if m.is_file() {
                o.truncate(true);
            }
            o.open(path).map_err(os)?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if under_dev(path) {
                return Err(OpenError::OutputMissing(shown).into());
            }
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(os)?
        }
        Err(e) => return Err(os(e)),
    };
    Ok(BufWriter::with_capacity(OUT_BUFFER, Box::new(file)))
}

/// True when `path` (made absolute, its existing parent resolved) lies under /dev.
fn under_dev(path: &Path) -> bool {
    let abs: PathBuf = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(d) => d.join(path),
            Err(_) => path.to_path_buf(),
        }
    };
    let resolved = match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => match parent.canonicalize() {
            Ok(p) => p.join(name),
            Err(_) => abs.clone(),
        },
        _ => abs.clone(),
    };
    resolved.starts_with("/dev") || abs.starts_with("/dev")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_paths_are_recognised() {
        assert!(under_dev(Path::new("/dev/vg/lv_tmeta")));
        assert!(under_dev(Path::new("/dev/../dev/mapper/x")));
        assert!(!under_dev(Path::new("/tmp/dev/x")));
        assert!(!under_dev(Path::new("/devices")));
    }
}
