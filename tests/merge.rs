//! thin_merge offline on the external-origin fixture (g): merging a thin
//! into a copy of its origin makes the origin hash like the thin did
//! through the kernel; `--base-id` writes only the difference; rerunning
//! changes nothing; `--dry-run` writes nothing; each refusal says why.

use std::fs;
use std::path::Path;

use crate::util::vm::Fixture;
use crate::util::{run, sha256_file, Run};

fn merge(meta: &Path, data: &Path, origin: &Path, extra: &[&str]) -> Run {
    let (m, d, o) = (
        meta.display().to_string(),
        data.display().to_string(),
        origin.display().to_string(),
    );
    let mut args = vec!["--metadata-dev", &m, "--data-dev", &d, "--origin", &o];
    args.extend_from_slice(extra);
    run("thin_merge", &args)
}

#[test]
fn merging_a_thin_into_its_origin_makes_the_origin_read_as_the_thin() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixture::load("g-external-origin");
    let meta = fx.unpack("meta", dir.path());
    let data = fx.unpack("data", dir.path());
    let pristine = fx.unpack("origin", dir.path());
    let origin = dir.path().join("merged.img");
    let (size0, hash0) = fx.content[&0].clone();
    let (_, hash1) = fx.content[&1].clone();
    let size = size0.to_string();

    // The 8 MiB origin is smaller than the 12 MiB thin.
    fs::copy(&pristine, &origin).unwrap();
    let before = sha256_file(&origin);
    let r = merge(&meta, &data, &origin, &["--thin-id", "0", "--size", &size]);
    r.expect_code(1);
    assert!(
        r.stderr().contains("is smaller than thin 0") && r.stderr().contains("--grow"),
        "{}",
        r.describe()
    );
    assert_eq!(sha256_file(&origin), before, "a refused merge wrote");

    // A dry run says what it would write and writes nothing.
    let r = merge(
        &meta,
        &data,
        &origin,
        &["--thin-id", "0", "--size", &size, "--grow", "--dry-run"],
    );
    r.expect_code(0);
    assert!(
        r.stdout().starts_with("would write ") && r.stdout().contains(" blocks ("),
        "{}",
        r.describe()
    );
    assert_eq!(sha256_file(&origin), before, "a dry run wrote");
    assert_eq!(fs::metadata(&origin).unwrap().len(), 8 << 20);

    merge(
        &meta,
        &data,
        &origin,
        &["--thin-id", "0", "--size", &size, "--grow", "-q"],
    )
    .expect_code(0);
    assert_eq!(sha256_file(&origin), hash0, "origin after merging thin 0");
    // Rerunning (as after an interruption) leaves the same result.
    merge(&meta, &data, &origin, &["--thin-id", "0", "-q"]).expect_code(0);
    assert_eq!(
        sha256_file(&origin),
        hash0,
        "origin after merging thin 0 twice"
    );

    // Thin 1 (a snapshot of 0 with more writes) as a delta over thin 0.
    let r = merge(
        &meta,
        &data,
        &origin,
        &["--thin-id", "1", "--base-id", "0", "--dry-run"],
    );
    let full = merge(&meta, &data, &origin, &["--thin-id", "1", "--dry-run"]);
    let blocks = |r: &Run| -> u64 {
        r.stdout()
            .split_whitespace()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    assert!(
        blocks(&r) < blocks(&full),
        "delta {} vs full {}",
        r.stdout(),
        full.stdout()
    );
    merge(
        &meta,
        &data,
        &origin,
        &["--thin-id", "1", "--base-id", "0", "-q"],
    )
    .expect_code(0);
    assert_eq!(
        sha256_file(&origin),
        hash1,
        "origin after merging thin 1 over 0"
    );

    // Thin 1 merged straight into a fresh origin copy gives the same.
    fs::copy(&pristine, &origin).unwrap();
    merge(
        &meta,
        &data,
        &origin,
        &["--thin-id", "1", "--size", &size, "--grow"],
    )
    .expect_code(0);
    assert_eq!(sha256_file(&origin), hash1);
}

#[test]
fn thin_merge_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixture::load("g-external-origin");
    let meta = fx.unpack("meta", dir.path());
    let data = fx.unpack("data", dir.path());
    let origin = fx.unpack("origin", dir.path());
    let data_hash = sha256_file(&data);
    let origin_hash = sha256_file(&origin);
    for (extra, msg) in [
        (
            vec!["--thin-id", "7"],
            "thin device 7 is not in the metadata",
        ),
        (
            vec!["--thin-id", "0", "--base-id", "9"],
            "thin device 9 is not in the metadata",
        ),
    ] {
        let r = merge(&meta, &data, &origin, &extra);
        r.expect_code(1);
        assert!(r.stderr().contains(msg), "want {msg:?}: {}", r.describe());
    }
    let r = merge(&meta, &data, &data, &["--thin-id", "0"]);
    r.expect_code(1);
    assert!(
        r.stderr().contains("is the pool's data device"),
        "{}",
        r.describe()
    );
    assert_eq!(sha256_file(&data), data_hash);
    assert_eq!(sha256_file(&origin), origin_hash);
    let r = run("thin_merge", &["--thin-id", "0"]);
    r.expect_code(2);
}
