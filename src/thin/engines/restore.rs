//! thin_restore's engine: thin_dump XML in, fresh binary metadata out.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::pdata::io::{open_output, OpenError};
use crate::pdata::write_behind::WriteBehind;
use crate::progress::{CountingReader, Log, Progress, Unit};
use crate::thin::ir::channel::run_pipelined;
use crate::thin::ir::metadata_writer::{ThinWriter, WriteSummary};
use crate::thin::ir::xml::read::read_xml;
use crate::thin::ir::{IrError, Overrides};

/// What to restore, and where.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The XML dump (a file, FIFO or /proc/<pid>/fd/<n>).
    pub input: PathBuf,
    /// The metadata device or file to write (must exist).
    pub output: PathBuf,
    /// Superblock values replacing or raising the dump's.
    pub overrides: Overrides,
}

/// Why a restore failed, worded as thin_restore prints it.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The input or output path is missing, of the wrong kind or too small.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The input exists but could not be opened.
    #[error("{path}: {err}")]
    Input {
        /// The path given.
        path: String,
        /// What the OS said.
        err: io::Error,
    },
    /// The XML broke a rule, or the metadata could not be written.
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// Opens the XML input: regular files, block devices, FIFOs and pipes are
/// accepted; directories and sockets are not.
///
/// # Errors
/// Worded as the tools print them.
pub fn open_xml_input(path: &Path) -> Result<File, RestoreError> {
    let shown = path.display().to_string();
    let md = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(OpenError::InputMissing(shown).into());
        }
        Err(e) => return Err(OpenError::Stat(e).into()),
    };
    let ft = md.file_type();
    if ft.is_dir() || ft.is_socket() {
        return Err(OpenError::WrongType(shown).into());
    }
    File::open(path).map_err(|err| RestoreError::Input { path: shown, err })
}

/// Restores `opts.input` onto `opts.output`. The writer's warnings
/// (duplicate devices, mapped-block counts that differ) go to `log`, also
/// when the restore then fails. The bytes of XML read are counted on
/// `progress`. Returns what was written.
///
/// # Errors
/// Any failure opening, reading or writing, worded for the user.
pub fn restore(
    opts: &RestoreOptions,
    log: &Log,
    progress: &Progress,
) -> Result<Option<WriteSummary>, RestoreError> {
    let input = open_xml_input(&opts.input)?;
    let out = open_output(&opts.output)?;
    // Only a regular file's size says how much XML there is.
    let total = input
        .metadata()
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len());
    let counter = progress.counter("Restoring", total, Unit::Bytes);
    // Three threads: the XML parser, the tree builder and the output writes.
    let res = std::thread::scope(|scope| {
        let behind = WriteBehind::spawn(scope, &out);
        let mut writer = ThinWriter::new(&behind, opts.overrides);
        let res = run_pipelined(
            |v| read_xml(CountingReader::new(input, &counter), v),
            &mut writer,
        );
        progress.finish();
        for w in writer.take_warnings() {
            log.warn(w);
        }
        res.map(|()| writer.summary().cloned())
    });
    Ok(res?)
}
