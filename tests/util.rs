//! Test helpers: running the built binaries, temporary images, fixtures.
#![allow(dead_code)]

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

/// The repository's `fixtures/` directory.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Decompresses `fixtures/<name>` (zstd) into `dir` and returns the path.
pub fn unpack_fixture(name: &str, dir: &Path) -> PathBuf {
    let src = fixtures_dir().join(name);
    let dst = dir.join(name.trim_end_matches(".zst").replace('/', "_"));
    let status = Command::new("zstd")
        .args(["-q", "-d", "-f", "-o"])
        .arg(&dst)
        .arg(&src)
        .status()
        .expect("run zstd");
    assert!(status.success(), "zstd -d {}", src.display());
    // Images shipped without their all-zero tail carry their full length in
    // a sibling `<image>.size` file (fixtures/README.md).
    let size_file = src.with_extension("size");
    if let Ok(text) = std::fs::read_to_string(&size_file) {
        let len: u64 = text.trim().parse().expect("fixture .size file");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&dst)
            .and_then(|f| f.set_len(len))
            .expect("extend unpacked fixture");
    }
    dst
}

/// The shared reference corpus beside the repository, when present.
/// `THINTOOLS_CORPUS` overrides the location (worktrees outside the CI layout).
pub fn corpus_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("THINTOOLS_CORPUS") {
        let p = PathBuf::from(p);
        return p.is_dir().then_some(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus-sample");
    p.is_dir().then_some(p)
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

/// Decompresses a zstd file given by absolute path into `dir`.
pub fn unpack_abs(src: &Path, dir: &Path) -> PathBuf {
    let stem = src
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dst = dir.join(format!("{stem}.img"));
    let status = Command::new("zstd")
        .args(["-q", "-d", "-f", "-o"])
        .arg(&dst)
        .arg(src)
        .status()
        .expect("run zstd");
    assert!(status.success(), "zstd -d {}", src.display());
    dst
}
