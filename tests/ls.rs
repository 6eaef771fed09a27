//! Tests for thin_ls: byte identity with 1.3.3 on the corpus, counts derived
//! from the fixture scenarios, layout, fields and bad input.

use crate::util::corpus::assert_corpus_identical;
use crate::util::fixtures::{fixture_image, fixture_info};
use crate::util::run;
use crate::util::scenario::snap_chain_model;

const COUNTS: &str = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,HIGHEST_BLOCK";

/// Rows of numbers (no header) as vectors.
fn rows(out: &str) -> Vec<Vec<u64>> {
    out.lines()
        .map(|l| l.split_whitespace().map(|w| w.parse().unwrap()).collect())
        .collect()
}

#[test]
fn corpus_outputs_are_byte_identical_to_upstream() {
    assert_corpus_identical("thin_ls", true);
}

#[test]
fn snap_chain_counts_follow_what_each_device_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(img) = fixture_image("d-snap-chain", tmp.path()) else {
        return;
    };
    let model = snap_chain_model();
    let r = run(
        "thin_ls",
        &["--no-headers", "-o", COUNTS, img.to_str().unwrap()],
    );
    r.expect_code(0);
    assert_eq!(r.stderr(), "Scanning data mappings\n");
    let got = rows(&r.stdout());
    let want: Vec<Vec<u64>> = model
        .devs
        .keys()
        .map(|&d| {
            let (mapped, excl, highest) = model.counts(d);
            vec![d, mapped, excl, mapped - excl, highest]
        })
        .collect();
    assert_eq!(got, want, "{}", r.describe());
}

#[test]
fn held_snapshot_counts_everything_as_shared() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(img) = fixture_image("f-held-metasnap", tmp.path()) else {
        return;
    };
    let img = img.to_str().unwrap();
    // Live: dev 0 rewrote blocks 0..8 and dev 1 blocks 32..36 after the
    // snapshot; dev 2 (16 blocks) shares nothing.
    let r = run("thin_ls", &["--no-headers", "-o", COUNTS, img]);
    r.expect_code(0);
    assert_eq!(
        rows(&r.stdout()),
        [
            vec![0, 48, 12, 36, 47],
            vec![1, 48, 12, 36, 47],
            vec![2, 16, 16, 0, 15]
        ]
    );
    // In the snapshot dev 1 had just been taken from dev 0: one shared root.
    let r = run("thin_ls", &["--no-headers", "-m", "-o", COUNTS, img]);
    r.expect_code(0);
    assert_eq!(
        rows(&r.stdout()),
        [vec![0, 48, 0, 48, 47], vec![1, 48, 0, 48, 47]]
    );
    // cAdvisor's call: two whitespace-separated numbers per line, nothing else.
    let r = run(
        "thin_ls",
        &["--no-headers", "-m", "-o", "DEV,EXCLUSIVE_BYTES", img],
    );
    r.expect_code(0);
    assert_eq!(r.stdout(), "0 0 \n1 0 \n");
    assert_eq!(r.stderr(), "Scanning data mappings\n");
}

#[test]
fn every_field_is_derived_from_the_block_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(img) = fixture_image("f-held-metasnap", tmp.path()) else {
        return;
    };
    let img = img.to_str().unwrap();
    let all = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,HIGHEST_BLOCK,MAPPED_SECTORS,EXCLUSIVE_SECTORS,SHARED_SECTORS,HIGHEST_SECTOR,MAPPED_BYTES,EXCLUSIVE_BYTES,SHARED_BYTES,HIGHEST_BYTE,TRANSACTION,CREATE_TIME,SNAP_TIME";
    let r = run("thin_ls", &["-o", all, img]);
    r.expect_code(0);
    let out = r.stdout();
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert_eq!(header.split_whitespace().collect::<Vec<_>>().join(","), all);
    let bs = 512u64; // sectors per block in this fixture
    for row in rows(&lines.collect::<Vec<_>>().join("\n")) {
        let [_, m, e, s, h, ms, es, ss, hs, mb, eb, sb, hb, ..] = row[..] else {
            panic!("short row {row:?}");
        };
        assert_eq!([ms, es, ss, hs], [m * bs, e * bs, s * bs, (h + 1) * bs - 1]);
        assert_eq!(
            [mb, eb, sb, hb],
            [ms * 512, es * 512, ss * 512, (h + 1) * bs * 512 - 1]
        );
    }
    // Times and transaction ids of the three devices (dev 2 created at tid 1).
    let r = run(
        "thin_ls",
        &["-o", "DEV,TRANSACTION,CREATE_TIME,SNAP_TIME", img],
    );
    assert_eq!(
        r.stdout(),
        "DEV TRANSACTION CREATE_TIME SNAP_TIME \n  0           0           0         1 \n  1           0           1         1 \n  2           1           1         1 \n"
    );
    assert_eq!(r.stderr(), "", "no scanning without counting fields");
    // Pretty sizes: 48 blocks of 256 KiB = 12 MiB, 36 blocks = 9216 KiB shown
    // as 9MiB (above 8192 of a unit moves up), 16 blocks = 4096 KiB, and the
    // last byte of 16 blocks 4095KiB (rounded down).
    let r = run(
        "thin_ls",
        &["-o", "DEV,MAPPED,EXCLUSIVE,SHARED,HIGHEST_MAPPED", img],
    );
    assert_eq!(
        r.stdout(),
        "DEV  MAPPED EXCLUSIVE SHARED HIGHEST_MAPPED \n  0   12MiB   3072KiB   9MiB          12MiB \n  1   12MiB   3072KiB   9MiB          12MiB \n  2 4096KiB   4096KiB     0b        4095KiB \n"
    );
    // Default fields.
    let r = run("thin_ls", &[img]);
    assert_eq!(
        r.stdout(),
        "DEV  MAPPED CREATE_TIME SNAP_TIME \n  0   12MiB           0         1 \n  1   12MiB           1         1 \n  2 4096KiB           1         1 \n"
    );
}

#[test]
fn an_empty_pool_prints_the_header_only() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(img) = fixture_image("a-empty-pool", tmp.path()) else {
        return;
    };
    let img = img.to_str().unwrap();
    let r = run("thin_ls", &[img]);
    r.expect_code(0);
    assert_eq!(r.stdout(), "DEV MAPPED CREATE_TIME SNAP_TIME \n");
    let r = run(
        "thin_ls",
        &["--no-headers", "-o", "DEV,EXCLUSIVE_BYTES", img],
    );
    r.expect_code(0);
    assert_eq!(r.stdout(), "");
}

#[test]
fn bad_fields_and_options_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("none").to_string_lossy().into_owned();
    let r = run("thin_ls", &["-o", "DEV,NOPE,MAPPED", &img]);
    r.expect_code(2);
    assert_eq!(
        r.stderr(),
        "error: invalid value 'NOPE' for '--format <FIELDS>': Unknown field\n\nFor more information, try '--help'.\n"
    );
    let r = run("thin_ls", &["-o", "DEV", "-o", "MAPPED", &img]);
    r.expect_code(2);
    assert!(r.stderr().contains("cannot be used multiple times"));
    let r = run("thin_ls", &["--bogus", &img]);
    r.expect_code(2);
    assert!(r.stderr().contains("unexpected argument '--bogus' found"));
}

#[test]
fn missing_snapshots_and_bad_inputs_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    if let Some(img) = fixture_image("d-snap-chain", tmp.path()) {
        let img = img.to_str().unwrap();
        let r = run("thin_ls", &["-m", img]);
        r.expect_code(1);
        assert_eq!(r.stderr(), "no current metadata snap\n");
        assert_eq!(r.stdout(), "");
    }
    let zero = tmp.path().join("zero.img");
    std::fs::write(&zero, vec![0u8; 4096]).unwrap();
    let r = run("thin_ls", &[zero.to_str().unwrap()]);
    r.expect_code(1);
    assert!(r.stderr().starts_with("bad checksum in superblock\n"));
}

#[test]
fn a_damaged_mapping_tree_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(img) = fixture_image("b-full-thin", tmp.path()) else {
        return;
    };
    // Find dev 1's root and flip a byte in it.
    let root = {
        let dev = thintools::pdata::io::open_metadata(
            &img,
            thintools::pdata::io::Access::ReadOnly,
            thintools::pdata::io::Sharing::Exclusive,
        )
        .unwrap();
        let sb = thintools::thin::model::superblock::read_live_superblock(&dev).unwrap();
        thintools::thin::model::open::device_roots(&dev, sb.mapping_root).unwrap()[&1]
    };
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[usize::try_from(root).unwrap() * 4096 + 100] ^= 0xff;
    std::fs::write(&img, &bytes).unwrap();
    let img = img.to_str().unwrap();
    let r = run("thin_ls", &["-o", "DEV,MAPPED_BLOCKS", img]);
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        "Scanning data mappings\nmetadata contains errors\n"
    );
    assert_eq!(r.stdout(), "");
    // Without counting fields the mapping trees are not read.
    let r = run("thin_ls", &["-o", "DEV,SNAP_TIME", img]);
    r.expect_code(0);
}

#[test]
fn an_explicit_snapshot_is_read_even_when_the_live_superblock_is_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(img) = fixture_image("f-held-metasnap", tmp.path()) else {
        return;
    };
    let held = fixture_info("f-held-metasnap")["held_root"].clone();
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[100] ^= 0xff; // live superblock checksum now wrong
    std::fs::write(&img, &bytes).unwrap();
    let img = img.to_str().unwrap();
    let r = run("thin_ls", &["-m", img]);
    r.expect_code(1);
    assert_eq!(r.stderr(), "bad checksum in superblock\n");
    // Data counters are then sized from the highest mapped block.
    let m = format!("--metadata-snap={held}");
    let r = run("thin_ls", &["--no-headers", &m, "-o", COUNTS, img]);
    r.expect_code(0);
    assert_eq!(
        rows(&r.stdout()),
        [vec![0, 48, 0, 48, 47], vec![1, 48, 0, 48, 47]]
    );
    let r = run("thin_delta", &[&m, "--thin1", "0", "--thin2", "1", img]);
    r.expect_code(0);
    assert!(r.stdout().contains("<same begin=\"0\" length=\"48\"/>"));
}

/// Both ways of counting data references give the same counts on every
/// kernel-written fixture (the default one-pass owner table and the
/// two-bit rescan used when the table would not fit in memory).
#[test]
fn owner_table_and_rescan_counting_agree_on_every_fixture() {
    use thintools::pdata::io::{open_metadata, Access, Sharing};
    use thintools::thin::engines::ls::{count_devices_with, Counting};
    let tmp = tempfile::tempdir().unwrap();
    let dir = crate::util::fixtures_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut checked = 0;
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('j') || !e.path().join("meta.img.zst").is_file() {
            continue; // j is a 17 GiB sparse image
        }
        let img = fixture_image(&name, tmp.path()).unwrap();
        let dev = open_metadata(&img, Access::ReadOnly, Sharing::Exclusive).unwrap();
        let sb = thintools::thin::model::superblock::read_live_superblock(&dev).unwrap();
        let roots: Vec<u64> = thintools::thin::model::open::device_roots(&dev, sb.mapping_root)
            .unwrap()
            .into_values()
            .collect();
        let n = sb.data_sm_root.nr_blocks;
        let a = count_devices_with(&dev, &roots, n, Counting::Owners).unwrap();
        let b = count_devices_with(&dev, &roots, n, Counting::Rescan).unwrap();
        assert_eq!(a, b, "{name}");
        checked += 1;
        std::fs::remove_file(&img).unwrap();
    }
    assert!(checked >= 10 || checked == 0, "only {checked} fixtures");
}
