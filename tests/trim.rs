//! thin_trim: discards exactly the data blocks no device maps (the oracle is
//! upstream's own thin_dump of each kernel-written image), never touches the
//! metadata, and refuses damaged metadata or a short data device.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use thintools::pdata::io::{BlockDevice, MemDevice};
use thintools::thin::model::superblock::read_live_superblock;

use crate::util::fixtures::unzstd;
use crate::util::{corpus_dir, fixtures_dir, run, sha256_file, unpack_fixture};

const PATTERN: u8 = 0xa5;

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

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// With the shared corpus (skips without it), the oracle is upstream 1.3.3's
/// own dump of each image: every block it maps keeps its bytes, every other
/// block is discarded.
#[test]
fn corpus_blocks_unmapped_in_upstream_dump_are_discarded() {
    let Some(corpus) = corpus_dir() else {
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

/// The `key=value` facts of a fixture (fixtures/README.md): what the kernel
/// reported, e.g. `data_blocks_used` from the pool's status line.
fn fixture_info(name: &str) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(fixtures_dir().join(name).join("info"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn info_u64(info: &std::collections::HashMap<String, String>, key: &str) -> u64 {
    info[key].parse().unwrap()
}

/// A kernel-written fixture's metadata, and a data file of exactly the pool's
/// size whose every block holds [`PATTERN`]: (metadata, data, block bytes,
/// data blocks, data blocks the kernel reported used).
fn setup(dir: &Path, name: &str) -> (PathBuf, PathBuf, u64, u64, u64) {
    let info = fixture_info(name);
    let block_bytes = info_u64(&info, "data_block_size") * 512;
    let nr = info_u64(&info, "data_blocks");
    let meta = unpack_fixture(&format!("{name}/meta.img.zst"), dir);
    let data = dir.join(format!("{name}.data"));
    std::fs::write(
        &data,
        vec![PATTERN; usize::try_from(nr * block_bytes).unwrap()],
    )
    .unwrap();
    (
        meta,
        data,
        block_bytes,
        nr,
        info_u64(&info, "data_blocks_used"),
    )
}

/// Counts blocks still holding the pattern and blocks now zero.
fn kept_and_zeroed(data: &Path, block_bytes: u64) -> (u64, u64) {
    let got = std::fs::read(data).unwrap();
    let bb = usize::try_from(block_bytes).unwrap();
    let (pattern, zeros) = (vec![PATTERN; bb], vec![0u8; bb]);
    let mut kept = 0;
    let mut zeroed = 0;
    for blk in got.chunks(bb) {
        if blk == &pattern[..] {
            kept += 1;
        } else if blk == &zeros[..] {
            zeroed += 1;
        } else {
            panic!("a data block was partly discarded");
        }
    }
    (kept, zeroed)
}

/// On every small fixture, exactly the blocks the kernel counted as free are
/// discarded (punched), the used ones keep their bytes, the metadata is
/// untouched and nothing is printed.
#[test]
fn fixtures_lose_exactly_their_free_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for name in [
        "a-empty-pool",
        "b-full-thin",
        "c-many-thins",
        "d-snap-chain",
        "e1-discard-passdown",
        "e2-discard-no-passdown",
        "e3-discard-ignore",
        "f-held-metasnap",
        "g-external-origin",
        "h-deleted-thins",
        "k-grown-pool",
    ] {
        if !fixtures_dir().join(name).join("info").exists() {
            continue;
        }
        let (meta, data, block_bytes, nr, used) = setup(dir.path(), name);
        let meta_hash = sha256_file(&meta);
        let before = std::fs::metadata(&data).unwrap().blocks();
        let r = run(
            "thin_trim",
            &["--metadata-dev", s(&meta), "--data-dev", s(&data)],
        );
        r.expect_code(0);
        assert_eq!(r.stdout(), "", "{}", r.describe());
        assert_eq!(r.stderr(), "", "{}", r.describe());
        assert_eq!(sha256_file(&meta), meta_hash, "{name}: metadata changed");
        assert_eq!(
            kept_and_zeroed(&data, block_bytes),
            (used, nr - used),
            "{name}"
        );
        if used < nr {
            assert!(
                std::fs::metadata(&data).unwrap().blocks() < before,
                "{name}: no hole"
            );
        }
        std::fs::remove_file(&data).unwrap();
        n += 1;
    }
    assert!(n >= 10, "fixtures missing");
}

#[test]
fn a_short_data_device_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, data, block_bytes, nr, _) = setup(dir.path(), "b-full-thin");
    let wanted = block_bytes * nr;
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
    let (meta, data, ..) = setup(dir.path(), "b-full-thin");
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
    let (meta, data, block_bytes, nr, used) = setup(dir.path(), "d-snap-chain");
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
    assert_eq!(kept_and_zeroed(&data, block_bytes), (used, nr - used));
}
