//! Tests for thin_rmap: byte identity with 1.3.3 on the corpus, answers
//! derived from the fixture scenarios, and region validation.

use crate::util::corpus::assert_corpus_identical;
use crate::util::fixtures::fixture_image;
use crate::util::run;

#[test]
fn corpus_outputs_are_byte_identical_to_upstream() {
    assert_corpus_identical("thin_rmap", true);
}

#[test]
fn a_fully_written_thin_maps_every_data_block_once() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(img) = fixture_image("b-full-thin", tmp.path()) else {
        return;
    };
    let img = img.to_str().unwrap();
    // 24 MiB in 128 KiB blocks: 192 thin blocks, each on its own data block.
    let r = run("thin_rmap", &["--region", "0..100000", img]);
    r.expect_code(0);
    let mut thin_blocks = Vec::new();
    let mut data_blocks = Vec::new();
    for line in r.stdout().lines() {
        let (data, thin) = line.split_once(" -> thin(1) ").expect(line);
        let range = |s: &str| {
            let (a, b) = s.split_once("..").unwrap();
            a.parse::<u64>().unwrap()..b.parse::<u64>().unwrap()
        };
        let d = range(data.strip_prefix("data ").unwrap());
        let t = range(thin);
        assert_eq!(d.end - d.start, t.end - t.start);
        data_blocks.extend(d);
        thin_blocks.extend(t);
    }
    thin_blocks.sort_unstable();
    assert_eq!(thin_blocks, (0..192).collect::<Vec<u64>>());
    data_blocks.sort_unstable();
    data_blocks.dedup();
    assert_eq!(data_blocks.len(), 192);
    // Split regions give the same blocks, cut at the region edges only.
    let r2 = run(
        "thin_rmap",
        &["--region", "0..7", "--region", "7..100000", img],
    );
    assert_eq!(r2.stdout(), r.stdout());
}

#[test]
fn blocks_rewritten_after_a_snapshot_map_back_to_their_device_only() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(img) = fixture_image("f-held-metasnap", tmp.path()) else {
        return;
    };
    let img = img.to_str().unwrap();
    // dev 0 rewrote thin blocks 0..8 after the snapshot: verbose delta names
    // their data blocks, and rmap must name dev 0 alone for them.
    let v = run(
        "thin_delta",
        &["--verbose", "--thin1", "0", "--thin2", "1", img],
    );
    let line = v
        .stdout()
        .lines()
        .find(|l| l.contains("<range begin=\"0\""))
        .unwrap()
        .to_string();
    let p = line.find("left_data_begin=\"").unwrap() + 17;
    let d: u64 = line[p..p + line[p..].find('"').unwrap()].parse().unwrap();
    let region = format!("{d}..{}", d + 8);
    let r = run("thin_rmap", &["--region", &region, img]);
    r.expect_code(0);
    assert_eq!(r.stdout(), format!("data {d}..{} -> thin(0) 0..8\n", d + 8));
}

#[test]
fn region_validation_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("none").to_string_lossy().into_owned();
    for (region, reason) in [
        ("5", "badly formed region"),
        ("1..2..3", "badly formed region"),
        ("9..9", "end <= begin"),
        ("9..3", "end <= begin"),
        ("x..3", "invalid digit found in string"),
        ("..3", "cannot parse integer from empty string"),
        ("3..", "cannot parse integer from empty string"),
    ] {
        let r = run("thin_rmap", &["--region", region, &img]);
        r.expect_code(2);
        assert_eq!(
            r.stderr(),
            format!(
                "error: invalid value '{region}' for '--region <BLOCK_RANGE>': {reason}\n\nFor more information, try '--help'.\n"
            )
        );
    }
    let r = run("thin_rmap", &[&img]);
    r.expect_code(2);
    assert!(r
        .stderr()
        .contains("the following required arguments were not provided:"));
    let r = run("thin_rmap", &["--region", "0..1", &img]);
    r.expect_code(1);
    assert_eq!(r.stderr(), format!("Couldn't find input file '{img}'\n"));
}
