//! Where the test inputs live and how they are unpacked: the kernel-written
//! fixtures in `fixtures/` (zstd-compressed, see fixtures/README.md) and the
//! shared reference folders beside the repository (the corpus of upstream
//! outputs, upstream's packs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's `fixtures/` directory.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every kernel-written fixture of the repository (the folders holding a
/// `meta.img.zst`), sorted by name.
pub fn fixture_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("meta.img.zst").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Decompresses the zstd file `src` into `dst` (overwriting it) and returns `dst`.
pub fn unzstd(src: &Path, dst: &Path) -> PathBuf {
    let status = Command::new("zstd")
        .args(["-q", "-d", "-f", "-o"])
        .arg(dst)
        .arg(src)
        .status()
        .expect("run zstd");
    assert!(status.success(), "zstd -d {}", src.display());
    dst.to_path_buf()
}

/// Decompresses the zstd file `src` into memory.
pub fn unzstd_bytes(src: &Path) -> Vec<u8> {
    let out = Command::new("zstd")
        .args(["-q", "-d", "-c"])
        .arg(src)
        .output()
        .expect("run zstd");
    assert!(out.status.success(), "zstd -d {}", src.display());
    out.stdout
}

/// Decompresses `fixtures/<name>` (zstd) into `dir` and returns the path.
pub fn unpack_fixture(name: &str, dir: &Path) -> PathBuf {
    let src = fixtures_dir().join(name);
    let dst = unzstd(
        &src,
        &dir.join(name.trim_end_matches(".zst").replace('/', "_")),
    );
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

/// A kernel-written fixture's metadata image unpacked into `tmp`, or None
/// (with a note) while the fixture is not in the repository.
pub fn fixture_image(name: &str, tmp: &Path) -> Option<PathBuf> {
    let rel = format!("{name}/meta.img.zst");
    if !fixtures_dir().join(&rel).is_file() {
        eprintln!("fixture {name} absent: skipping");
        return None;
    }
    Some(unpack_fixture(&rel, tmp))
}

/// `key=value` facts of a fixture's `info` file.
pub fn fixture_info(name: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(fixtures_dir().join(name).join("info")).unwrap();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Decompresses a zstd file given by absolute path into `dir`, naming the
/// result after the file's folder (`<folder>.img`).
pub fn unpack_abs(src: &Path, dir: &Path) -> PathBuf {
    let stem = src
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    unzstd(src, &dir.join(format!("{stem}.img")))
}

/// A shared reference folder (`../shared/<name>` beside the repository, or
/// beside a worktree's parent), when present.
pub fn shared(name: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        root.join("../shared").join(name),
        root.join("../../shared").join(name),
    ]
    .into_iter()
    .find(|p| p.is_dir())
}

/// The shared reference corpus (`corpus-sample`), when present.
/// `THINTOOLS_CORPUS` overrides the location (worktrees outside the CI layout).
pub fn corpus_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("THINTOOLS_CORPUS") {
        let p = PathBuf::from(p);
        return p.is_dir().then_some(p);
    }
    shared("corpus-sample")
}
