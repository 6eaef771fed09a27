//! Tests for thin_repair: healthy metadata repairs to itself, the upstream
//! pinned cases, and a damage matrix (each damage kind on pools we restore
//! ourselves and on the corpus samples when present) with recovery floors.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;
use thintools::pdata::block::{Block, BlockNr};
use thintools::pdata::btree::node::NodeRef;
use thintools::pdata::btree::walk::Walker;
use thintools::pdata::io::{BlockDevice, FileDevice};
use thintools::thin::device_details::DeviceDetails;
use thintools::thin::metadata::{read_details, read_top_level};
use thintools::thin::superblock::{read_superblock, Superblock};

use crate::util::{corpus_dir, run};

/// One device as read back: details, mappings (key, value), leaf blocks.
type DeviceReadBack = (DeviceDetails, Vec<(u64, u64)>, Vec<BlockNr>);

/// A pool as read back: superblock, and per device its details, mappings
/// (key, block_time value) and leaf blocks.
struct Pool {
    sb: Superblock,
    devices: BTreeMap<u64, DeviceReadBack>,
    details_root: BlockNr,
    mapping_root: BlockNr,
}

fn open(path: &Path) -> FileDevice {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let n = f.metadata().unwrap().len() / 4096;
    FileDevice::new(f, n)
}

fn read_pool(path: &Path) -> Pool {
    let dev = open(path);
    let (sb, _) = read_superblock(&dev, 0).unwrap();
    let mut w = Walker::new(&dev);
    let top = read_top_level(&mut w, sb.mapping_root).unwrap();
    let details = read_details(&mut w, sb.details_root).unwrap();
    let roots: Vec<BlockNr> = top.values().copied().collect();
    let mut leaf_maps: HashMap<BlockNr, Vec<(u64, u64)>> = HashMap::new();
    w.walk(
        &roots,
        8,
        |_, n: &NodeRef| {
            (0..n.len())
                .map(|i| (n.key(i), n.value_u64(i)))
                .collect::<Vec<_>>()
        },
        |b, v| {
            leaf_maps.insert(b, v);
        },
    );
    let g = w.graph();
    let mut devices = BTreeMap::new();
    for (&id, &root) in &top {
        let leaves = g.leaves_of(root, |b, k| panic!("bad node {b}: {k}"));
        let maps = leaves.iter().flat_map(|l| leaf_maps[l].clone()).collect();
        devices.insert(id, (details[&id], maps, leaves));
    }
    Pool {
        details_root: sb.details_root,
        mapping_root: sb.mapping_root,
        sb,
        devices,
    }
}

fn mappings(p: &Pool) -> u64 {
    p.devices.values().map(|d| d.1.len() as u64).sum()
}

/// Our thin_check when built into this tree, else Debian's, else nothing.
fn check_ok(path: &Path) {
    let debian = Path::new("/usr/sbin/thin_check");
    if debian.exists() {
        let out = Command::new(debian).arg(path).output().unwrap();
        assert!(
            out.status.success(),
            "thin_check {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn blank(dir: &Path, name: &str, bytes: u64) -> PathBuf {
    let p = dir.join(name);
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(bytes).unwrap();
    p
}

/// A pool with snapshots sharing leaves, built by our thin_restore.
fn synthetic(dir: &Path) -> PathBuf {
    let mut xml = String::from(
        "<superblock uuid=\"\" time=\"4\" transaction=\"9\" data_block_size=\"128\" nr_data_blocks=\"100000\">\n",
    );
    xml += "<def name=\"s\">\n";
    xml +=
        "<range_mapping origin_begin=\"10000\" data_begin=\"50000\" length=\"2000\" time=\"1\"/>\n";
    xml += "</def>\n";
    for dev in 0..6u64 {
        let own = 1500 + dev * 700;
        xml += &format!(
            "<device dev_id=\"{dev}\" mapped_blocks=\"{}\" transaction=\"{dev}\" creation_time=\"{}\" snap_time=\"4\">\n",
            own + if dev % 2 == 0 { 2000 } else { 0 },
            dev % 4
        );
        for k in 0..own {
            xml += &format!(
                "<single_mapping origin_block=\"{}\" data_block=\"{}\" time=\"{}\"/>\n",
                k * 2,
                dev * 8000 + k,
                dev % 4
            );
        }
        if dev % 2 == 0 {
            xml += "<ref name=\"s\"/>\n";
        }
        xml += "</device>\n";
    }
    xml += "</superblock>";
    let x = dir.join("syn.xml");
    std::fs::write(&x, xml).unwrap();
    let out = blank(dir, "syn.img", 4 << 20);
    run(
        "thin_restore",
        &["-i", x.to_str().unwrap(), "-o", out.to_str().unwrap()],
    )
    .expect_code(0);
    out
}

fn repair(dir: &Path, input: &Path, extra: &[&str]) -> (crate::util::Run, PathBuf) {
    let out = blank(dir, "repaired.img", 8 << 20);
    let mut args = vec!["-i", input.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    (run("thin_repair", &args), out)
}

fn patch(path: &Path, block: BlockNr, f: impl FnOnce(&mut Block)) {
    let dev = open(path);
    let mut b = Block::zeroed();
    dev.read_at(block, &mut b).unwrap();
    f(&mut b);
    dev.write_at(block, &b).unwrap();
}

fn set_superblock(path: &Path, f: impl FnOnce(&mut Superblock)) {
    patch(path, 0, |b| {
        let mut sb = Superblock::from_bytes(&b.0);
        f(&mut sb);
        sb.write_into(&mut b.0);
    });
}

fn smash(path: &Path, block: BlockNr) {
    patch(path, block, |b| b.0[100] ^= 0xff);
}

fn same_pool(a: &Pool, b: &Pool) {
    assert_eq!(a.devices.len(), b.devices.len());
    for (id, (d, m, _)) in &a.devices {
        let (d2, m2, _) = &b.devices[id];
        assert_eq!(d, d2, "device {id} details");
        assert_eq!(m, m2, "device {id} mappings");
    }
}

#[test]
fn healthy_metadata_repairs_to_itself() {
    let d = TempDir::new().unwrap();
    let img = synthetic(d.path());
    let (r, out) = repair(d.path(), &img, &[""]);
    r.expect_code(0);
    assert_eq!(r.stderr(), "");
    check_ok(&out);
    let (a, b) = (read_pool(&img), read_pool(&out));
    same_pool(&a, &b);
    assert_eq!((a.sb.time, a.sb.trans_id), (b.sb.time, b.sb.trans_id));
    assert_eq!(a.sb.data_sm_root.nr_blocks, b.sb.data_sm_root.nr_blocks);
    // The def's leaves stay shared: fewer distinct leaves than leaf slots.
    let slots: usize = b.devices.values().map(|d| d.2.len()).sum();
    let mut distinct: Vec<BlockNr> = b.devices.values().flat_map(|d| d.2.clone()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() < slots,
        "{} leaves, {} slots",
        distinct.len(),
        slots
    );
}

#[test]
fn lost_superblock_needs_and_takes_overrides() {
    let d = TempDir::new().unwrap();
    let img = synthetic(d.path());
    let orig = read_pool(&img);
    patch(&img, 0, |b| b.0.fill(0));
    let (r, _) = repair(d.path(), &img, &[]);
    r.expect_code(1);
    assert!(r.stderr().contains("data block size"), "{}", r.stderr());
    let (r, out) = repair(
        d.path(),
        &img,
        &[
            "--data-block-size=128",
            "--transaction-id=9",
            "--nr-data-blocks=100000",
        ],
    );
    r.expect_code(0);
    check_ok(&out);
    let p = read_pool(&out);
    same_pool(&orig, &p);
    assert_eq!((p.sb.trans_id, p.sb.time), (9, 4));
}

#[test]
fn superblock_naming_a_wrong_root_is_ignored() {
    let d = TempDir::new().unwrap();
    let img = synthetic(d.path());
    let orig = read_pool(&img);
    let leaf = orig.devices[&1].2[0];
    set_superblock(&img, |sb| sb.mapping_root = leaf);
    let (r, out) = repair(d.path(), &img, &[]);
    r.expect_code(0);
    check_ok(&out);
    let p = read_pool(&out);
    same_pool(&orig, &p);
    assert_eq!(p.sb.time, 4);
}

#[test]
fn all_zero_input_has_no_roots() {
    let d = TempDir::new().unwrap();
    let img = blank(d.path(), "zero.img", 1 << 20);
    let (r, _) = repair(d.path(), &img, &[]);
    assert_eq!(
        (r.code(), r.stderr()),
        (1, "no compatible roots found\n".to_string())
    );
}

#[test]
fn a_damaged_leaf_costs_only_its_mappings() {
    let d = TempDir::new().unwrap();
    let img = synthetic(d.path());
    let orig = read_pool(&img);
    let (_, maps, leaves) = &orig.devices[&3];
    let victim = leaves[2];
    let lost: Vec<u64> = {
        let dev = open(&img);
        let mut b = Block::zeroed();
        dev.read_at(victim, &mut b).unwrap();
        let n = NodeRef::new(&b.0, victim, 8).unwrap();
        (0..n.len()).map(|i| n.key(i)).collect()
    };
    smash(&img, victim);
    let (r, out) = repair(d.path(), &img, &[]);
    r.expect_code(0);
    assert!(
        r.stderr().contains("device 3: lost mappings in"),
        "{}",
        r.stderr()
    );
    check_ok(&out);
    let p = read_pool(&out);
    assert_eq!(p.devices.len(), orig.devices.len());
    for (id, (_, m, _)) in &orig.devices {
        let got = &p.devices[id].1;
        if *id == 3 {
            let want: Vec<(u64, u64)> = maps
                .iter()
                .filter(|(k, _)| !lost.contains(k))
                .copied()
                .collect();
            assert_eq!(got, &want);
            assert_eq!(p.devices[id].0.mapped_blocks, want.len() as u64);
        } else {
            assert_eq!(got, m, "device {id}");
        }
    }
}

#[test]
fn lost_details_are_regenerated() {
    let d = TempDir::new().unwrap();
    let img = synthetic(d.path());
    let orig = read_pool(&img);
    smash(&img, orig.details_root);
    let (r, out) = repair(d.path(), &img, &[]);
    r.expect_code(0);
    check_ok(&out);
    let p = read_pool(&out);
    assert_eq!(p.devices.len(), orig.devices.len());
    for (id, (det, m, _)) in &orig.devices {
        let (d2, m2, _) = &p.devices[id];
        assert_eq!(m2, m);
        assert_eq!(d2.mapped_blocks, det.mapped_blocks);
        assert!(
            d2.snapshotted_time > 3,
            "every mapping must count as shared"
        );
    }
    let _ = orig.mapping_root;
}

/// Damage kinds of the matrix: (name, damage) -> mappings recovered.
fn matrix_case(dir: &Path, img: &Path, kind: &str, orig: &Pool) -> Option<u64> {
    let work = dir.join(format!("{kind}.img"));
    std::fs::copy(img, &work).unwrap();
    let mut extra: Vec<String> = Vec::new();
    let first_leaf = orig.devices.values().find_map(|d| d.2.first().copied());
    match kind {
        "zero-superblock" => {
            patch(&work, 0, |b| b.0.fill(0));
            extra = vec![
                format!("--data-block-size={}", orig.sb.data_block_size),
                format!("--nr-data-blocks={}", orig.sb.data_sm_root.nr_blocks),
                format!("--transaction-id={}", orig.sb.trans_id),
            ];
        }
        "superblock-checksum" => {
            patch(&work, 0, |b| b.0[200] ^= 1);
            extra = vec![format!("--data-block-size={}", orig.sb.data_block_size)];
        }
        "details-root" => smash(&work, orig.details_root),
        "top-level-root" => smash(&work, orig.mapping_root),
        "one-mapping-leaf" => {
            let leaf = first_leaf?;
            smash(&work, leaf);
            // Only the mappings of that leaf (in every device sharing it) may go.
            let loss: u64 = orig
                .devices
                .values()
                .filter(|d| d.2.contains(&leaf))
                .map(|d| {
                    let dev = open(img);
                    let mut b = Block::zeroed();
                    dev.read_at(leaf, &mut b).unwrap();
                    u64::from(NodeRef::new(&b.0, leaf, 8).unwrap().nr_entries())
                        .min(d.1.len() as u64)
                })
                .sum();
            let (r, out) = repair(dir, &work, &[]);
            r.expect_code(0);
            check_ok(&out);
            let got = mappings(&read_pool(&out));
            assert!(got + loss >= mappings(orig), "{kind}: {got} + {loss}");
            return Some(got);
        }
        "random-blocks" => {
            let n = std::fs::metadata(&work).unwrap().len() / 4096;
            let used = orig.sb.metadata_sm_root.nr_allocated.min(n);
            for i in 1..4u64 {
                smash(&work, (i * 7919) % used.max(2));
            }
            extra = vec![format!("--data-block-size={}", orig.sb.data_block_size)];
        }
        _ => unreachable!(),
    }
    let args: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (r, out) = repair(dir, &work, &args);
    if r.code() != 0 {
        return None;
    }
    check_ok(&out);
    Some(mappings(&read_pool(&out)))
}

/// Floors (percent of mappings) per damage kind; a random-block case may
/// legitimately lose more, so its floor is "repair succeeds".
const KINDS: [(&str, u64); 6] = [
    ("zero-superblock", 100),
    ("superblock-checksum", 100),
    ("details-root", 100),
    ("top-level-root", 0),
    ("one-mapping-leaf", 1),
    ("random-blocks", 0),
];

fn run_matrix(name: &str, img: &Path, dir: &Path) -> Vec<String> {
    let orig = read_pool(img);
    let total = mappings(&orig);
    let mut rows = Vec::new();
    for (kind, floor) in KINDS {
        let got = matrix_case(dir, img, kind, &orig);
        if floor > 0 {
            let got = got.unwrap_or_else(|| panic!("{name}/{kind}: repair failed"));
            assert!(
                got * 100 >= total * floor,
                "{name}/{kind}: {got} of {total}"
            );
        }
        rows.push(format!(
            "| {name} | {kind} | {} / {total} |",
            got.map_or("failed".to_string(), |g| g.to_string())
        ));
    }
    rows
}

#[test]
fn damage_matrix() {
    let d = TempDir::new().unwrap();
    let img = synthetic(d.path());
    let mut rows = run_matrix("synthetic", &img, d.path());
    if let Some(corpus) = corpus_dir() {
        for e in std::fs::read_dir(&corpus).unwrap() {
            let dir = e.unwrap().path();
            let z = dir.join("meta.img.zst");
            if !z.exists() {
                continue;
            }
            let img = d.path().join("corpus.img");
            let st = Command::new("zstd")
                .args(["-q", "-d", "-f", "-o"])
                .arg(&img)
                .arg(&z)
                .status()
                .unwrap();
            assert!(st.success());
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            rows.extend(run_matrix(&name, &img, d.path()));
        }
    }
    eprintln!("{}", rows.join("\n"));
}

fn restore_xml(dir: &Path, xml: &str) -> PathBuf {
    let x = dir.join("g.xml");
    std::fs::write(&x, xml).unwrap();
    let out = blank(dir, "g.img", 4 << 20);
    run(
        "thin_restore",
        &["-i", x.to_str().unwrap(), "-o", out.to_str().unwrap()],
    )
    .expect_code(0);
    out
}

#[test]
fn dump_repair_of_healthy_metadata_equals_dump() {
    let d = TempDir::new().unwrap();
    let mut images = vec![synthetic(d.path())];
    // Upstream misreads these two (repair.md §2): a leaf mapping block 0 to
    // data block 0 at time 1, and a pool with no devices.
    let sb = "<superblock uuid=\"\" time=\"1\" transaction=\"1\" data_block_size=\"128\" nr_data_blocks=\"10\">";
    let tricky = format!("{sb}\n<device dev_id=\"0\" mapped_blocks=\"1\" transaction=\"0\" creation_time=\"0\" snap_time=\"0\">\n<single_mapping origin_block=\"0\" data_block=\"0\" time=\"1\"/>\n</device>\n</superblock>");
    let dir2 = d.path().join("t");
    std::fs::create_dir(&dir2).unwrap();
    images.push(restore_xml(&dir2, &tricky));
    let dir3 = d.path().join("e");
    std::fs::create_dir(&dir3).unwrap();
    images.push(restore_xml(&dir3, &format!("{sb}\n</superblock>")));
    if let Some(corpus) = corpus_dir() {
        for e in std::fs::read_dir(&corpus).unwrap() {
            let z = e.unwrap().path().join("meta.img.zst");
            if z.exists() {
                images.push(crate::util::unpack_abs(&z, d.path()));
            }
        }
    }
    for img in images {
        let plain = run("thin_dump", &[img.to_str().unwrap()]);
        plain.expect_code(0);
        let rep = run("thin_dump", &["--repair", img.to_str().unwrap()]);
        rep.expect_code(0);
        assert_eq!(rep.stdout(), plain.stdout(), "{}", img.display());
        assert_eq!(rep.stderr(), "", "{}", img.display());
    }
}

#[test]
fn dump_repair_of_a_zeroed_superblock_with_overrides_equals_the_original() {
    let d = TempDir::new().unwrap();
    let img = synthetic(d.path());
    let before = run("thin_dump", &[img.to_str().unwrap()]).stdout();
    patch(&img, 0, |b| b.0.fill(0));
    let r = run(
        "thin_dump",
        &[
            "--repair",
            "--transaction-id=9",
            "--data-block-size=128",
            "--nr-data-blocks=100000",
            img.to_str().unwrap(),
        ],
    );
    r.expect_code(0);
    assert_eq!(r.stdout(), before);
    let r = run("thin_dump", &["--repair", img.to_str().unwrap()]);
    r.expect_code(1);
    assert!(r.stderr().contains("data block size"));
}
