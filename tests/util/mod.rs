//! Test helpers shared by every tool's tests.
//!
//! - this module: running the built binaries ([`run`], [`Run`]) and hashing files;
//! - [`fixtures`]: the kernel-written fixtures, the shared reference folders
//!   beside the repository and zstd unpacking;
//! - [`corpus`]: running the reference corpus's commands and comparing their
//!   output byte for byte with upstream's;
//! - [`image`]: damaging metadata images block by block, in a file or in memory;
//! - [`man`]: the manual pages against the long options clap defines;
//! - [`scenario`]: what the kernel did in a fixture's scenario, replayed on a model;
//! - [`vm`]: booting the real kernel under qemu (only with `THINTOOLS_VM_TESTS=1`).
#![allow(dead_code)]

pub mod corpus;
pub mod fixtures;
pub mod image;
pub mod man;
pub mod scenario;
pub mod vm;

pub use fixtures::{corpus_dir, fixtures_dir, unpack_abs, unpack_fixture};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Output of one tool run, printed in full when an assertion fails.
pub struct Run {
    /// Command line, for messages.
    pub cmdline: String,
    /// Raw output.
    pub out: Output,
}

impl Run {
    /// Exit code (-1 when killed by a signal).
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    /// stdout as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    /// stderr as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    /// Panics with the whole run unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "unexpected exit code\n{}",
            self.describe()
        );
        self
    }
    /// Everything about the run.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.cmdline,
            self.out.status,
            self.stdout(),
            self.stderr()
        )
    }
}

/// Path of a built binary of this crate.
pub fn bin(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_pdata_tools"))
        .parent()
        .unwrap()
        .to_path_buf();
    dir.join(name)
}

/// Runs one of our tools with `args`.
pub fn run(tool: &str, args: &[&str]) -> Run {
    let out = Command::new(bin(tool))
        .args(args)
        .output()
        .expect("spawn tool");
    Run {
        cmdline: format!("{tool} {}", args.join(" ")),
        out,
    }
}

/// SHA-256 of a file, as lowercase hex (uses sha256sum).
pub fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}
