//! thin_migrate offline: every thin of every kernel-written fixture,
//! extracted from the metadata and data images, equals the content the
//! kernel served (fixtures/*/content.sha256); incremental copies along each
//! fixture's thins end equal to the newer thin; and each refusal says why
//! and writes nothing.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::vm::Fixture;
use crate::util::{run, sha256_file};

const FIXTURES: &[&str] = &[
    "b-full-thin",
    "c-many-thins",
    "d-snap-chain",
    "e1-discard-passdown",
    "e2-discard-no-passdown",
    "e3-discard-ignore",
    "f-held-metasnap",
    "g-external-origin",
    "h-deleted-thins",
    "j-huge-metadata",
    "k-grown-pool",
];

struct Unpacked {
    fx: Fixture,
    meta: PathBuf,
    data: PathBuf,
    origin: Option<PathBuf>,
}

fn unpack(name: &str, dir: &Path) -> Unpacked {
    let fx = Fixture::load(name);
    let meta = fx.unpack("meta", dir);
    let data = fx.unpack("data", dir);
    let origin = fx
        .extra_images()
        .iter()
        .find(|i| i.as_str() == "origin")
        .map(|i| fx.unpack(i, dir));
    Unpacked {
        fx,
        meta,
        data,
        origin,
    }
}

fn offline_args(u: &Unpacked, id: u32, size: u64, dest: &Path) -> Vec<String> {
    let mut v = vec![
        "--metadata-dev".to_string(),
        u.meta.display().to_string(),
        "--data-dev".into(),
        u.data.display().to_string(),
        "--thin-id".into(),
        id.to_string(),
        "--size".into(),
        size.to_string(),
        "--dest-file".into(),
        dest.display().to_string(),
        "-q".into(),
    ];
    if let Some(o) = &u.origin {
        v.push("--origin".into());
        v.push(o.display().to_string());
    }
    v
}

fn migrate(args: &[String]) -> crate::util::Run {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run("thin_migrate", &refs)
}

fn extract_all(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let u = unpack(name, dir.path());
    assert!(!u.fx.content.is_empty(), "{name}: no thins");
    let out = dir.path().join("out");
    for (&id, (size, hash)) in &u.fx.content {
        let _ = fs::remove_file(&out);
        // Small buffers on every other thin: many buffer hand-overs.
        let mut args = offline_args(&u, id, *size, &out);
        if id % 2 == 1 {
            args.extend(["--buffer-size-meg".to_string(), "1".to_string()]);
        }
        let r = migrate(&args);
        r.expect_code(0);
        assert!(r.stderr().is_empty(), "-q printed: {}", r.describe());
        assert_eq!(fs::metadata(&out).unwrap().len(), *size, "{name} thin {id}");
        assert_eq!(
            &sha256_file(&out),
            hash,
            "{name} thin {id}: content differs"
        );
    }
}

#[test]
fn offline_extraction_of_every_fixture_thin_equals_the_kernel_content() {
    for name in FIXTURES {
        extract_all(name);
    }
}

/// A fresh destination file stays sparse: the unprovisioned blocks of a
/// thin without an origin, and the all-zero pieces of provisioned ones, are
/// not written (fixture e2: thin 0 has discarded ranges).
#[test]
fn offline_extraction_to_a_new_file_stays_sparse() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let u = unpack("e2-discard-no-passdown", dir.path());
    let out = dir.path().join("out");
    let (size, hash) = u.fx.content[&0].clone();
    let mut args = offline_args(&u, 0, size, &out);
    args.retain(|a| a != "-q");
    let r = migrate(&args);
    r.expect_code(0);
    assert_eq!(sha256_file(&out), hash);
    let allocated = fs::metadata(&out).unwrap().blocks() * 512;
    let written: u64 = r
        .stderr()
        .split(", ")
        .find_map(|p| p.strip_suffix(" written"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no written count: {}", r.describe()));
    assert!(written < size, "everything was written: {}", r.describe());
    assert!(
        allocated <= written + 65536,
        "{allocated} bytes allocated for {written} written"
    );
}

/// Each thin copied incrementally onto a copy of the previous one (same
/// size) ends equal to itself, and the copy writes no more than the delta.
#[test]
fn offline_delta_copies_along_each_fixture_equal_the_newer_thin() {
    for name in [
        "d-snap-chain",
        "e1-discard-passdown",
        "e2-discard-no-passdown",
        "e3-discard-ignore",
        "g-external-origin",
        "h-deleted-thins",
        "k-grown-pool",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let u = unpack(name, dir.path());
        let out = dir.path().join("out");
        let ids: Vec<(u32, u64, String)> =
            u.fx.content
                .iter()
                .map(|(&id, (s, h))| (id, *s, h.clone()))
                .collect();
        for pair in ids
            .windows(2)
            .chain([[ids[ids.len() - 1].clone(), ids[0].clone()].as_slice()])
        {
            let (a, b) = (&pair[0], &pair[1]);
            if a.1 != b.1 || a.0 == b.0 {
                continue;
            }
            let _ = fs::remove_file(&out);
            migrate(&offline_args(&u, a.0, a.1, &out)).expect_code(0);
            let mut args = offline_args(&u, b.0, b.1, &out);
            args.extend(["--delta-id".to_string(), a.0.to_string()]);
            migrate(&args).expect_code(0);
            assert_eq!(
                sha256_file(&out),
                b.2,
                "{name}: thin {} applied as a delta over thin {}",
                b.0,
                a.0
            );
        }
    }
}

#[test]
fn offline_refusals_name_the_problem_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let u = unpack("d-snap-chain", dir.path());
    let out = dir.path().join("out");
    let data_hash = sha256_file(&u.data);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            offline_args(&u, 3, 16 << 20, &u.data),
            "is the source's data device",
        ),
        (
            offline_args(&u, 3, 16 << 20, &u.meta),
            "is the source's metadata device",
        ),
        (
            offline_args(&u, 77, 16 << 20, &out),
            "thin device 77 is not in the metadata",
        ),
        (
            {
                let mut a = offline_args(&u, 3, 16 << 20, &out);
                a.extend(["--delta-id".into(), "2".into()]);
                a
            },
            "--delta-id needs a destination that already holds thin 2",
        ),
        (
            {
                let mut a = offline_args(&u, 3, 16 << 20, &out);
                a.extend(["--delta-id".into(), "99".into()]);
                a
            },
            "thin device 99 is not in the metadata",
        ),
    ];
    for (args, msg) in cases {
        let r = migrate(&args.into_iter().filter(|a| a != "-q").collect::<Vec<_>>());
        r.expect_code(1);
        assert!(r.stderr().contains(msg), "want {msg:?}: {}", r.describe());
        assert!(!out.exists(), "{} created the destination", r.cmdline);
    }
    assert_eq!(sha256_file(&u.data), data_hash, "the data image changed");
    let r = run("thin_migrate", &["--dest-file", "x"]);
    r.expect_code(2);
    assert!(
        r.stderr().contains("You must specify a source"),
        "{}",
        r.describe()
    );
    let meta = u.meta.display().to_string();
    let data = u.data.display().to_string();
    let r = run(
        "thin_migrate",
        &[
            "--metadata-dev",
            &meta,
            "--data-dev",
            &data,
            "--thin-id",
            "1",
        ],
    );
    r.expect_code(2);
    assert!(
        r.stderr().contains("You must specify a dest"),
        "{}",
        r.describe()
    );
    let r = run(
        "thin_migrate",
        &[
            "--metadata-dev",
            &meta,
            "--data-dev",
            &data,
            "--thin-id",
            "1",
            "--dest-dev",
            &out.display().to_string(),
        ],
    );
    r.expect_code(1);
    assert!(
        r.stderr().contains("No such file") || r.stderr().contains("not a block device"),
        "{}",
        r.describe()
    );
}

/// An existing file that holds other data is overwritten exactly: its
/// unmapped runs become holes, so it equals the thin.
#[test]
fn offline_copy_onto_a_used_file_equals_the_thin() {
    let dir = tempfile::tempdir().unwrap();
    let u = unpack("e2-discard-no-passdown", dir.path());
    let out = dir.path().join("out");
    fs::write(&out, vec![0x5au8; 9 << 20]).unwrap();
    let (size, hash) = u.fx.content[&0].clone();
    migrate(&offline_args(&u, 0, size, &out)).expect_code(0);
    assert_eq!(fs::metadata(&out).unwrap().len(), size);
    assert_eq!(sha256_file(&out), hash);
}
