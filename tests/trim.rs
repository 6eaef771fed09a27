//! thin_trim: discards exactly the data blocks no device maps (the oracle is
//! upstream's own thin_dump of each kernel-written image), never touches the
//! metadata, and refuses damaged metadata or a short data device.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use thintools::pdata::io::{BlockDevice, MemDevice};
use thintools::thin::superblock::read_live_superblock;

use crate::util::{corpus_dir, run, sha256_file};

const PATTERN: u8 = 0xa5;

fn shared(name: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        root.join("../shared").join(name),
        root.join("../../shared").join(name),
    ]
    .into_iter()
    .find(|p| p.is_dir())
}

fn corpus() -> Option<PathBuf> {
    corpus_dir().or_else(|| shared("corpus-sample"))
}

fn attr(line: &str, name: &str) -> Option<u64> {
    let key = format!(" {name}=\"");
    let at = line.find(&key)? + key.len();
    line[at..].split('"').next()?.parse().ok()
}

/// Data block size, nr_data_blocks and every mapped data block, from a dump.
fn dump_facts(xml: &str) -> (u64, u64, HashSet<u64>) {
    let mut used = HashSet::new();
    let first = xml.lines().next().unwrap();
    let bs = attr(first, "data_block_size").unwrap();
    let nr = attr(first, "nr_data_blocks").unwrap();
    for line in xml.lines() {
        if let Some(b) = attr(line, "data_block") {
            used.insert(b);
        }
        if let (Some(b), Some(len)) = (attr(line, "data_begin"), attr(line, "length")) {
            used.extend(b..b + len);
        }
    }
    (bs, nr, used)
}

fn unzstd(src: &Path, dst: &Path) {
    let st = Command::new("zstd")
        .args(["-q", "-d", "-f", "-o"])
        .arg(dst)
        .arg(src)
        .status()
        .unwrap();
    assert!(st.success());
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn only_unmapped_data_blocks_are_discarded() {
    let Some(corpus) = corpus() else {
        eprintln!("skipped: no corpus");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut samples = 0;
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let sample = entry.unwrap().path();
        let Ok(xml) = std::fs::read_to_string(sample.join("expected/thin_dump.stdout")) else {
            continue;
        };
        let (bs, nr, used) = dump_facts(&xml);
        let block_bytes = usize::try_from(bs * 512).unwrap();
        let meta = dir.path().join("meta");
        let data = dir.path().join("data");
        unzstd(&sample.join("meta.img.zst"), &meta);
        // Every data block holds a pattern, so a wrong discard shows.
        let size = usize::try_from(nr).unwrap() * block_bytes + 4096;
        std::fs::write(&data, vec![PATTERN; size]).unwrap();
        let meta_hash = sha256_file(&meta);
        let before = std::fs::metadata(&data).unwrap().blocks();

        let r = run(
            "thin_trim",
            &["--metadata-dev", s(&meta), "--data-dev", s(&data)],
        );
        r.expect_code(0);
        assert_eq!(r.stdout(), "", "{}", r.describe());
        assert_eq!(r.stderr(), "", "{}", r.describe());
        assert_eq!(
            sha256_file(&meta),
            meta_hash,
            "thin_trim changed the metadata"
        );

        let got = std::fs::read(&data).unwrap();
        assert_eq!(got.len(), size, "size kept");
        let mut free = 0u64;
        let pattern = vec![PATTERN; block_bytes];
        let zeros = vec![0u8; block_bytes];
        for b in 0..nr {
            let i = usize::try_from(b).unwrap() * block_bytes;
            let blk = &got[i..i + block_bytes];
            if used.contains(&b) {
                assert!(blk == &pattern[..], "{sample:?}: mapped block {b} changed");
            } else {
                free += 1;
                assert!(
                    blk == &zeros[..],
                    "{sample:?}: free block {b} not discarded"
                );
            }
        }
        assert!(
            got[size - 4096..].iter().all(|&x| x == PATTERN),
            "bytes past the pool"
        );
        let after = std::fs::metadata(&data).unwrap().blocks();
        if free > 0 {
            assert!(after < before, "{sample:?}: no hole was punched");
        }
        samples += 1;
    }
    assert!(samples > 0);
}

/// Sets up one kernel image and a patterned data file of the right size.
fn setup(dir: &Path) -> Option<(PathBuf, PathBuf, u64)> {
    let sample = corpus()?.join("b-full-thin");
    let xml = std::fs::read_to_string(sample.join("expected/thin_dump.stdout")).ok()?;
    let (bs, nr, _) = dump_facts(&xml);
    let meta = dir.join("meta");
    let data = dir.join("data");
    unzstd(&sample.join("meta.img.zst"), &meta);
    std::fs::write(
        &data,
        vec![PATTERN; usize::try_from(nr * bs * 512).unwrap()],
    )
    .unwrap();
    Some((meta, data, nr * bs * 512))
}

#[test]
fn a_short_data_device_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Some((meta, data, wanted)) = setup(dir.path()) else {
        eprintln!("skipped: no corpus");
        return;
    };
    let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    f.set_len(wanted - 512).unwrap();
    let hash = sha256_file(&data);
    let r = run(
        "thin_trim",
        &["--metadata-dev", s(&meta), "--data-dev", s(&data)],
    );
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        format!("unexpected data device size, wanted {wanted} bytes\n")
    );
    assert_eq!(sha256_file(&data), hash);
    let r = run(
        "thin_trim",
        &[
            "--metadata-dev",
            s(&meta),
            "--data-dev",
            s(&dir.path().join("nope")),
        ],
    );
    r.expect_code(1);
    assert!(
        r.stderr().starts_with("Couldn't find input file"),
        "{}",
        r.describe()
    );
}

/// The full check runs first: damage in the mapping trees (which discarding
/// does not read) or in the data space map stops thin_trim before any discard.
#[test]
fn damaged_metadata_stops_before_any_discard() {
    let dir = tempfile::tempdir().unwrap();
    let Some((meta, data, _)) = setup(dir.path()) else {
        eprintln!("skipped: no corpus");
        return;
    };
    let pristine = std::fs::read(&meta).unwrap();
    let dev = MemDevice::from_bytes(pristine.clone());
    let sb = read_live_superblock(&dev).unwrap();
    for (what, block) in [
        ("mapping tree root", sb.mapping_root),
        ("data space-map index root", sb.data_sm_root.bitmap_root),
    ] {
        assert!(dev.nr_blocks() > block);
        let mut bytes = pristine.clone();
        bytes[usize::try_from(block).unwrap() * 4096 + 100] ^= 0xff;
        std::fs::write(&meta, &bytes).unwrap();
        let hash = sha256_file(&data);
        let want = "metadata contains errors (run thin_check for details).\nperhaps you need to run thin_repair.\n";
        let r = run(
            "thin_trim",
            &["--metadata-dev", s(&meta), "--data-dev", s(&data)],
        );
        r.expect_code(1);
        assert_eq!(r.stderr(), want, "{what}\n{}", r.describe());
        assert_eq!(r.stdout(), "");
        let r = run(
            "thin_trim",
            &["-q", "--metadata-dev", s(&meta), "--data-dev", s(&data)],
        );
        r.expect_code(1);
        assert_eq!(r.stderr(), "", "-q is silent");
        assert_eq!(sha256_file(&data), hash, "{what}: nothing may be discarded");
    }
}

/// Detaches a loop device when dropped.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// On a block device the free runs go out as BLKDISCARD (a loop device
/// punches them into its backing file). Skips where loop devices are not
/// available (no root, no loop driver).
#[test]
fn block_devices_get_blkdiscard() {
    let dir = tempfile::tempdir().unwrap();
    let Some((meta, data, size)) = setup(dir.path()) else {
        eprintln!("skipped: no corpus");
        return;
    };
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&data)
        .output();
    let Some(dev) = out
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    else {
        eprintln!("skipped: no loop device");
        return;
    };
    let lo = Loop(dev);
    let r = run(
        "thin_trim",
        &["--metadata-dev", s(&meta), "--data-dev", &lo.0],
    );
    drop(lo);
    r.expect_code(0);
    // b-full-thin: one 96 MiB thin fully written over 128 KiB blocks.
    let got = std::fs::read(&data).unwrap();
    assert_eq!(got.len() as u64, size);
    let block = 128 * 1024;
    let mapped = 96 * 1024 * 1024 / block;
    let sample = corpus()
        .unwrap()
        .join("b-full-thin/expected/thin_dump.stdout");
    let (_, _, used) = dump_facts(&std::fs::read_to_string(sample).unwrap());
    assert_eq!(used.len(), mapped);
    for (b, blk) in got.chunks(block).enumerate() {
        let want = if used.contains(&(b as u64)) {
            PATTERN
        } else {
            0
        };
        assert!(blk.iter().all(|&x| x == want), "data block {b}");
    }
}
