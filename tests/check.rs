//! thin_check: kernel-written metadata passes; each kind of damage gives its
//! documented message and exit code; leak repair and
//! NEEDS_CHECK clearing write exactly what they must; read-only runs never
//! change the input.

use std::path::{Path, PathBuf};

use tempfile::TempDir;
use thintools::pdata::btree::node::NodeRef;
use thintools::pdata::checksum::BlockKind;
use thintools::pdata::space_map::disk::{bitmap_get, bitmap_set, IndexEntry};
use thintools::pdata::space_map::ENTRIES_PER_BITMAP;
use thintools::thin::model::superblock::Superblock;

use crate::util::image::{patch_block, read_block};
use crate::util::man;
use crate::util::{corpus_dir, run, sha256_file, unpack_fixture, Run};

const TITLES: &str = "Checking thin metadata\ndevice details tree\nmapping tree\n";
const BS: usize = 4096;

/// A writable copy of a fixture's metadata, patched block by block.
struct Img {
    path: PathBuf,
    _dir: TempDir,
}

impl Img {
    fn fixture(name: &str) -> Img {
        let dir = TempDir::new().unwrap();
        let path = unpack_fixture(&format!("{name}/meta.img.zst"), dir.path());
        let mut perm = std::fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&path, perm).unwrap();
        Img { path, _dir: dir }
    }

    fn p(&self) -> &str {
        self.path.to_str().unwrap()
    }

    fn block(&self, nr: u64) -> [u8; BS] {
        read_block(&self.path, nr)
    }

    /// Rewrites block `nr` through `f`, then re-checksums it as `kind`
    /// (`None` leaves the old checksum: "bad checksum" damage).
    fn patch(&self, nr: u64, kind: Option<BlockKind>, f: impl FnOnce(&mut [u8; BS])) {
        patch_block(&self.path, nr, kind, f);
    }

    fn sb(&self) -> Superblock {
        Superblock::from_bytes(&self.block(0))
    }

    /// Changes the live superblock's fields (read-modify-write, re-checksummed).
    fn patch_sb(&self, f: impl FnOnce(&mut Superblock)) {
        let mut sb = self.sb();
        f(&mut sb);
        self.patch(0, None, |b| sb.write_into(b));
    }

    fn check(&self, args: &[&str]) -> Run {
        let mut a: Vec<&str> = args.to_vec();
        a.push(self.p());
        run("thin_check", &a)
    }

    fn hash(&self) -> String {
        sha256_file(&self.path)
    }

    /// (key, value) pairs of a u64-valued leaf at `nr`.
    fn leaf_u64(&self, nr: u64) -> Vec<(u64, u64)> {
        let b = self.block(nr);
        let n = NodeRef::new(&b, nr, 8).unwrap();
        n.keys()
            .iter()
            .zip(n.values_u64())
            .map(|(k, v)| (k.get(), v.get()))
            .collect()
    }

    /// The first leaf under `root` (value size `vs`).
    fn first_leaf(&self, root: u64, vs: u32) -> u64 {
        let mut nr = root;
        loop {
            let b = self.block(nr);
            let n = NodeRef::new(&b, nr, vs).unwrap();
            if n.is_leaf() {
                return nr;
            }
            nr = n.value_u64(0);
        }
    }

    /// Device id → bottom-level root (the top-level tree is one leaf here).
    fn devices(&self) -> Vec<(u64, u64)> {
        self.leaf_u64(self.first_leaf(self.sb().mapping_root, 8))
    }

    /// Device id → mapped_blocks from the details tree (one leaf here).
    fn details(&self) -> Vec<(u64, u64)> {
        let nr = self.first_leaf(self.sb().details_root, 24);
        let b = self.block(nr);
        let n = NodeRef::new(&b, nr, 24).unwrap();
        n.keys()
            .iter()
            .zip(n.value_bytes().chunks_exact(24))
            .map(|(k, v)| (k.get(), u64::from_le_bytes(v[..8].try_into().unwrap())))
            .collect()
    }

    /// Location of the data space map's first index entry (the index tree is
    /// one leaf in the fixtures) and its value.
    fn data_index(&self) -> (u64, usize, IndexEntry) {
        let leaf = self.first_leaf(self.sb().data_sm_root.bitmap_root, 16);
        let b = self.block(leaf);
        let max = u32::from_le_bytes(b[20..24].try_into().unwrap()) as usize;
        let off = 32 + 8 * max;
        (leaf, off, IndexEntry::from_bytes(&b[off..off + 16]))
    }

    /// The metadata index block and its first entry.
    fn meta_index(&self) -> (u64, usize, IndexEntry) {
        let at = self.sb().metadata_sm_root.bitmap_root;
        let b = self.block(at);
        (at, 16, IndexEntry::from_bytes(&b[16..32]))
    }

    /// First block with count `count` in bitmap `bm` (below `limit`).
    fn find_count(&self, bm: u64, count: u32, limit: u64) -> u64 {
        let b = self.block(bm);
        (0..limit.min(ENTRIES_PER_BITMAP))
            .find(|&i| bitmap_get(&b, i as usize) == count)
            .expect("a block with that count")
    }

    /// Makes block `block` of the map at index entry (`at`, `off`, `e`) a leak
    /// the way a kernel would have recorded an allocation: bitmap entry 1,
    /// nr_free - 1 and nr_allocated + 1, every checksum valid.
    fn leak(&self, which: Which, block: u64) {
        let (at, off, e) = match which {
            Which::Data => self.data_index(),
            Which::Metadata => self.meta_index(),
        };
        self.patch(e.blocknr, Some(BlockKind::Bitmap), |b| {
            bitmap_set(b, block as usize, 1);
        });
        let kind = match which {
            Which::Data => BlockKind::Node,
            Which::Metadata => BlockKind::Index,
        };
        self.patch(at, Some(kind), |b| {
            let mut ne = e;
            ne.nr_free -= 1;
            b[off..off + 16].copy_from_slice(&ne.to_bytes());
        });
        self.patch_sb(|sb| match which {
            Which::Data => sb.data_sm_root.nr_allocated += 1,
            Which::Metadata => sb.metadata_sm_root.nr_allocated += 1,
        });
    }
}

#[derive(Clone, Copy)]
enum Which {
    Data,
    Metadata,
}

fn assert_run(r: &Run, code: i32, stderr: &str) {
    assert_eq!(r.code(), code, "{}", r.describe());
    assert_eq!(r.stderr(), stderr, "{}", r.describe());
}

fn summary(img: &Img) -> String {
    let sb = img.sb();
    let m = sb.metadata_sm_root;
    format!(
        "TRANSACTION_ID={}\nMETADATA_FREE_BLOCKS={}\n",
        sb.trans_id,
        m.nr_blocks - m.nr_allocated
    )
}

const FIXTURES: &[&str] = &[
    "a-empty-pool",
    "b-full-thin",
    "d-snap-chain",
    "e1-discard-passdown",
    "e2-discard-no-passdown",
    "e3-discard-ignore",
    "f-held-metasnap",
    "g-external-origin",
];

// ---------------------------------------------------------------- healthy input

#[test]
fn kernel_fixtures_pass_silently_and_stay_byte_identical() {
    for name in FIXTURES {
        let img = Img::fixture(name);
        let before = img.hash();
        let r = img.check(&[]);
        assert_run(&r, 0, TITLES);
        assert_eq!(r.stdout(), summary(&img), "{name}");
        let info = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/{name}/info")),
        )
        .unwrap();
        assert!(
            info.contains(&format!("transaction_id={}\n", img.sb().trans_id)),
            "{name}"
        );
        assert_run(
            &img.check(&["--skip-mappings"]),
            0,
            "Checking thin metadata\ndevice details tree\n",
        );
        assert_run(&img.check(&["--super-block-only"]), 0, "");
        let q = img.check(&["-q"]);
        assert_eq!(
            (q.code(), q.stdout(), q.stderr()),
            (0, String::new(), String::new())
        );
        assert_eq!(img.hash(), before, "{name} changed by a read-only check");
    }
}

#[test]
fn every_corpus_sample_gives_upstreams_stdout() {
    let Some(corpus) = corpus_dir() else {
        eprintln!("corpus-sample absent: skipped");
        return;
    };
    let dir = TempDir::new().unwrap();
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let sample = entry.unwrap().path();
        let expected = sample.join("expected");
        if !expected.join("thin_check.stdout").exists() {
            continue;
        }
        let name = sample.file_name().unwrap().to_str().unwrap().to_string();
        let meta = dir.path().join(format!("{name}.img"));
        let st = std::process::Command::new("zstd")
            .args(["-q", "-d", "-f", "-o"])
            .arg(&meta)
            .arg(sample.join("meta.img.zst"))
            .status()
            .unwrap();
        assert!(st.success());
        for (file, args) in [
            ("thin_check", vec![]),
            ("thin_check-skip-mappings", vec!["--skip-mappings"]),
            ("thin_check-super-block-only", vec!["--super-block-only"]),
            ("thin_check-m", vec!["-m"]),
        ] {
            let want = expected.join(format!("{file}.stdout"));
            if !want.exists() {
                continue;
            }
            let mut a = args.clone();
            a.push(meta.to_str().unwrap());
            let r = run("thin_check", &a);
            assert_eq!(r.code(), 0, "{name} {file}\n{}", r.describe());
            assert_eq!(
                r.stdout(),
                std::fs::read_to_string(&want).unwrap(),
                "{name} {file}"
            );
            let err = std::fs::read_to_string(expected.join(format!("{file}.stderr"))).unwrap();
            assert_eq!(r.stderr(), err, "{name} {file}");
        }
    }
}

#[test]
fn held_metadata_snapshot_is_checked_offline_and_with_m() {
    let img = Img::fixture("f-held-metasnap");
    assert_ne!(img.sb().held_root, 0);
    assert_run(&img.check(&["-m"]), 0, TITLES);
    let held = img.sb().held_root.to_string();
    assert_run(&img.check(&[&format!("-m={held}")]), 0, TITLES);
    assert_run(&img.check(&[&format!("-m{held}")]), 0, TITLES);
    // Damage a node only the snapshot reaches: the offline check must see it.
    let snap = Superblock::from_bytes(&img.block(img.sb().held_root));
    let live_ids = img.devices();
    let snap_top = img.leaf_u64(img.first_leaf(snap.mapping_root, 8));
    let (id, root) = *snap_top
        .iter()
        .find(|p| !live_ids.contains(p))
        .expect("a device root only the snapshot names");
    img.patch(root, None, |b| b[100] ^= 1);
    let r = img.check(&[]);
    assert_eq!(r.code(), 1, "{}", r.describe());
    assert!(
        r.stderr()
            .contains(&format!("Thin device {id} is missing root with")),
        "{}",
        r.describe()
    );
    let r = img.check(&["-m"]);
    assert_eq!(r.code(), 1, "{}", r.describe());
    assert!(
        r.stderr().contains("Check of mappings failed"),
        "{}",
        r.describe()
    );
}

#[test]
fn m_without_a_held_snapshot_fails_before_stdout() {
    let img = Img::fixture("b-full-thin");
    let r = img.check(&["-m"]);
    assert_run(&r, 1, "no current metadata snap\n");
    assert_eq!(r.stdout(), "");
    let r = img.check(&["-m=5"]);
    assert_eq!(r.code(), 1);
    assert_eq!(r.stdout(), "");
    assert!(r.stderr().contains("metadata snap: "), "{}", r.describe());
}

// ---------------------------------------------------------------- superblock

#[test]
fn superblock_damage_is_fatal_with_its_message() {
    type Patch = fn(&mut Superblock);
    let cases: [(Patch, &str); 7] = [
        (|sb| sb.blocknr = 7, "superblock: blocknr is 7, expected 0"),
        (|sb| sb.magic = 42, "superblock: bad magic 42, expected 27022010"),
        (|sb| sb.version = 3, "superblock: unsupported metadata version 3"),
        (
            |sb| sb.incompat_flags = 0x4,
            "superblock: unsupported incompatible features 0x4",
        ),
        (
            |sb| sb.compat_ro_flags = 0x10,
            "superblock: unsupported read-only-compatible features 0x10",
        ),
        (|sb| sb.data_block_size = 100, "superblock: invalid data block size 100"),
        (
            |sb| sb.metadata_sm_root.nr_blocks = 5_000_000,
            "metadata space map: 5000000 blocks exceed the device (1024 blocks)\nmetadata space map: 5000000 blocks exceed the maximum of 4161600",
        ),
    ];
    for (patch, msg) in cases {
        let img = Img::fixture("b-full-thin");
        img.patch_sb(patch);
        let r = img.check(&[]);
        assert_run(&r, 1, &format!("{msg}\n"));
        assert_eq!(r.stdout(), "", "{msg}");
    }
}

#[test]
fn superblock_checksum_and_all_zero_block_0() {
    let img = Img::fixture("b-full-thin");
    img.patch(0, None, |b| b[1000] ^= 0xff);
    assert_run(&img.check(&[]), 1, "bad checksum in superblock\n");
    img.patch(0, None, |b| b.fill(0));
    assert_run(
        &img.check(&[]),
        1,
        "bad checksum in superblock\n(block 0 is all zeroes: this metadata was never formatted)\n",
    );
}

#[test]
fn superblock_warnings_keep_exit_status_0() {
    let img = Img::fixture("b-full-thin");
    img.patch_sb(|sb| {
        sb.metadata_block_size = 16;
        sb.compat_flags = 0x2;
    });
    let r = img.check(&[]);
    assert_run(
        &r,
        0,
        &format!(
            "superblock: metadata_block_size is 16, expected 8\nsuperblock: compat_flags 0x2 set\n{TITLES}"
        ),
    );
}

// ---------------------------------------------------------------- trees

#[test]
fn damaged_shared_leaf_reports_each_device() {
    let img = Img::fixture("d-snap-chain");
    let devs = img.devices();
    let details = img.details();
    // The leaf most devices share (every root is internal in d-snap-chain).
    let children: Vec<u64> = devs
        .iter()
        .flat_map(|&(_, r)| img.leaf_u64(r))
        .map(|p| p.1)
        .collect();
    let leaf = *children
        .iter()
        .max_by_key(|&&c| children.iter().filter(|&&x| x == c).count())
        .unwrap();
    let lost = img.leaf_u64(leaf).len() as u64;
    let mut lines = String::new();
    for &(id, root) in &devs {
        if img.leaf_u64(root).iter().any(|&(_, child)| child == leaf) {
            let expected = details.iter().find(|d| d.0 == id).unwrap().1;
            lines.push_str(&format!(
                "Thin device {id} has 1 errors and is missing {lost} mappings, while expected {expected}\n"
            ));
        }
    }
    assert!(lines.lines().count() > 1, "the leaf is shared");
    img.patch(leaf, None, |b| b[200] ^= 1);
    let before = img.hash();
    assert_run(
        &img.check(&[]),
        1,
        &format!(
            "{TITLES}1 nodes in data mapping tree contain errors\n0 io errors, 1 checksum errors\n\
             {lines}Check of mappings failed\n"
        ),
    );
    assert_eq!(img.hash(), before);
    // Repair options never write when a fatal error was found.
    assert_eq!(img.check(&["--auto-repair"]).code(), 1);
    assert_eq!(img.check(&["--clear-needs-check-flag"]).code(), 1);
    assert_eq!(img.hash(), before);
}

#[test]
fn damaged_root_leaf_is_a_missing_root() {
    let img = Img::fixture("b-full-thin");
    let (id, root) = img.devices()[0];
    let n = img.leaf_u64(root).len();
    img.patch(root, None, |b| b[64] ^= 1);
    assert_run(
        &img.check(&[]),
        1,
        &format!(
            "{TITLES}1 nodes in data mapping tree contain errors\n0 io errors, 1 checksum errors\n\
             Thin device {id} is missing root with {n} mappings\nCheck of mappings failed\n"
        ),
    );
}

#[test]
fn node_blocknr_and_key_order_in_the_device_trees() {
    let img = Img::fixture("d-snap-chain");
    let details = img.first_leaf(img.sb().details_root, 24);
    img.patch(details, Some(BlockKind::Node), |b| b[8] ^= 0x40);
    assert_run(
        &img.check(&[]),
        1,
        &format!(
            "Checking thin metadata\ndevice details tree\ndevice details tree: node error: blocknr mismatch at block {details}\n"
        ),
    );
    let img = Img::fixture("d-snap-chain");
    let top = img.first_leaf(img.sb().mapping_root, 8);
    img.patch(top, Some(BlockKind::Node), |b| {
        // Swap keys 0 and 1.
        let (k0, k1) = (b[32..40].to_vec(), b[40..48].to_vec());
        b[32..40].copy_from_slice(&k1);
        b[40..48].copy_from_slice(&k0);
    });
    assert_run(
        &img.check(&[]),
        1,
        &format!(
            "Checking thin metadata\ndevice details tree\nmapping top-level: node error: keys out of order at block {top}\n"
        ),
    );
}

#[test]
fn details_count_and_id_mismatches() {
    let img = Img::fixture("b-full-thin");
    let details = img.first_leaf(img.sb().details_root, 24);
    let (id, _) = img.devices()[0];
    let v = 32 + 8 * 126;
    let mut want = 0u64;
    img.patch(details, Some(BlockKind::Node), |b| {
        let m = u64::from_le_bytes(b[v..v + 8].try_into().unwrap());
        want = m;
        b[v..v + 8].copy_from_slice(&(m + 5).to_le_bytes());
    });
    assert_run(
        &img.check(&[]),
        1,
        &format!(
            "{TITLES}Thin device {id} has unexpected number of mappings, expected {}, actual {want}\nCheck of mappings failed\n",
            want + 5
        ),
    );
    img.patch(details, Some(BlockKind::Node), |b| {
        b[32..40].copy_from_slice(&99u64.to_le_bytes());
    });
    assert_run(
        &img.check(&[]),
        1,
        "Checking thin metadata\ndevice details tree\nInconsistency between the details tree and the mapping tree\n",
    );
}

// ---------------------------------------------------------------- space maps

#[test]
fn leaks_fail_without_repair_and_leave_the_input_alone() {
    let img = Img::fixture("b-full-thin");
    let nr_data = img.sb().data_sm_root.nr_blocks;
    let free_data = img.find_count(img.data_index().2.blocknr, 0, nr_data);
    img.leak(Which::Data, free_data);
    let free_meta = img.find_count(img.meta_index().2.blocknr, 0, 1024);
    img.leak(Which::Metadata, free_meta);
    let before = img.hash();
    let r = img.check(&[]);
    assert_run(
        &r,
        1,
        &format!(
            "{TITLES}1 data blocks have leaked\n1 metadata blocks have leaked\n\
             data space map contains leaks\nperhaps you wanted to run with --auto-repair\n"
        ),
    );
    assert_eq!(r.stdout(), summary(&img));
    assert_run(
        &img.check(&["--ignore-non-fatal-errors"]),
        0,
        &format!("{TITLES}1 data blocks have leaked\n1 metadata blocks have leaked\n"),
    );
    let r = img.check(&["-vv"]);
    assert!(r.stderr().contains(&format!(
        "data count difference for block {free_data}: 0, 1\n"
    )));
    assert_eq!(img.hash(), before);
}

#[test]
fn auto_repair_fixes_leaks_and_their_statistics() {
    for which in [Which::Data, Which::Metadata] {
        let img = Img::fixture("b-full-thin");
        let orig = img.sb();
        let (_, _, entry) = match which {
            Which::Data => img.data_index(),
            Which::Metadata => img.meta_index(),
        };
        let limit = match which {
            Which::Data => orig.data_sm_root.nr_blocks,
            Which::Metadata => orig.metadata_sm_root.nr_blocks,
        };
        let free = img.find_count(entry.blocknr, 0, limit);
        img.leak(which, free);
        let (word, kind) = match which {
            Which::Data => ("data", "data"),
            Which::Metadata => ("metadata", "metadata"),
        };
        let r = img.check(&["--auto-repair"]);
        assert_run(
            &r,
            0,
            &format!("{TITLES}1 {kind} blocks have leaked\nRepairing {word} leaks.\n"),
        );
        // Fixed on disk: the bitmap entry, nr_free, nr_allocated.
        let sb = img.sb();
        assert_eq!(sb.data_sm_root, orig.data_sm_root);
        assert_eq!(sb.metadata_sm_root, orig.metadata_sm_root);
        let (_, _, e) = match which {
            Which::Data => img.data_index(),
            Which::Metadata => img.meta_index(),
        };
        assert_eq!(e.nr_free, entry.nr_free);
        assert_eq!(bitmap_get(&img.block(e.blocknr), free as usize), 0);
        // The repaired image passes, and a second repair writes nothing.
        assert_run(&img.check(&[]), 0, TITLES);
        let h = img.hash();
        assert_run(&img.check(&["--auto-repair"]), 0, TITLES);
        assert_eq!(img.hash(), h);
    }
}

#[test]
fn clear_needs_check_flag_clears_only_when_asked_and_repairs_leaks() {
    let img = Img::fixture("b-full-thin");
    img.patch_sb(|sb| sb.flags |= 1);
    let before = img.hash();
    assert_run(&img.check(&[]), 0, TITLES);
    assert_run(
        &img.check(&["--skip-mappings"]),
        0,
        "Checking thin metadata\ndevice details tree\n",
    );
    assert_run(&img.check(&["--super-block-only"]), 0, "");
    assert_eq!(img.hash(), before, "NEEDS_CHECK is cleared only when asked");
    assert!(img.sb().needs_check());

    // Cleared by read-modify-write: every other byte of block 0 kept.
    let b0 = img.block(0);
    assert_run(
        &img.check(&["--super-block-only", "--clear-needs-check-flag"]),
        0,
        "Cleared needs_check flag\n",
    );
    let a0 = img.block(0);
    assert!(!img.sb().needs_check());
    assert_eq!(b0[8..], a0[8..]);
    assert_eq!(b0[5..8], a0[5..8]);

    // With a leak: repaired, then the flag cleared; lvm's -q form is silent.
    img.patch_sb(|sb| sb.flags |= 1);
    let free = img.find_count(
        img.data_index().2.blocknr,
        0,
        img.sb().data_sm_root.nr_blocks,
    );
    img.leak(Which::Data, free);
    let r = img.check(&["-q", "--clear-needs-check-flag"]);
    assert_eq!(
        (r.code(), r.stdout(), r.stderr()),
        (0, String::new(), String::new())
    );
    assert!(!img.sb().needs_check());
    assert_run(&img.check(&[]), 0, TITLES);

    // Not cleared when a fatal error is found.
    img.patch_sb(|sb| sb.flags |= 1);
    let (_, root) = img.devices()[0];
    img.patch(img.first_leaf(root, 8), None, |b| b[300] ^= 1);
    assert_eq!(img.check(&["--clear-needs-check-flag"]).code(), 1);
    assert!(img.sb().needs_check());
}

#[test]
fn bad_reference_counts_are_fatal_and_never_repaired() {
    let img = Img::fixture("b-full-thin");
    let bm = img.data_index().2.blocknr;
    let used = img.find_count(bm, 1, img.sb().data_sm_root.nr_blocks);
    img.patch(bm, Some(BlockKind::Bitmap), |b| {
        bitmap_set(b, used as usize, 2)
    });
    let before = img.hash();
    assert_run(
        &img.check(&[]),
        1,
        &format!("{TITLES}data space map: 1 data blocks have bad reference counts\n"),
    );
    assert_eq!(img.check(&["--auto-repair"]).code(), 1);
    assert_eq!(img.hash(), before);
}

#[test]
fn damaged_space_map_blocks() {
    let img = Img::fixture("b-full-thin");
    let bm = img.data_index().2.blocknr;
    img.patch(bm, None, |b| b[2000] ^= 1);
    assert_run(
        &img.check(&[]),
        1,
        &format!("{TITLES}data space map: checksum error at block {bm}, index entry 0\n"),
    );

    let img = Img::fixture("b-full-thin");
    let (at, _, _) = img.meta_index();
    img.patch(at, None, |b| b[2000] ^= 1);
    assert_run(
        &img.check(&[]),
        1,
        &format!("{TITLES}metadata space map: bad checksum in index block\n"),
    );

    let img = Img::fixture("b-full-thin");
    let bm = img.meta_index().2.blocknr;
    img.patch(bm, Some(BlockKind::Bitmap), |b| b[8] ^= 1);
    assert_run(
        &img.check(&[]),
        1,
        &format!(
            "{TITLES}metadata space map: bitmap at block {bm} has blocknr {}\n",
            bm ^ 1
        ),
    );

    let img = Img::fixture("b-full-thin");
    let bm = img.data_index().2.blocknr;
    img.patch(bm, Some(BlockKind::Node), |_| {});
    assert_run(
        &img.check(&[]),
        1,
        &format!("{TITLES}data space map: block {bm} of index entry 0 is not a bitmap\n"),
    );
}

#[test]
fn wrong_statistics_are_repairable_warnings() {
    let img = Img::fixture("b-full-thin");
    let (at, off, e) = img.data_index();
    img.patch(at, Some(BlockKind::Node), |b| {
        let mut ne = e;
        ne.nr_free += 3;
        b[off..off + 16].copy_from_slice(&ne.to_bytes());
    });
    img.patch_sb(|sb| sb.metadata_sm_root.nr_allocated += 2);
    let a = img.sb().metadata_sm_root.nr_allocated;
    let warn = format!(
        "data space map: index entry 0: nr_free is {}, counted {}\n\
         metadata space map: nr_allocated is {a}, counted {}\n",
        e.nr_free + 3,
        e.nr_free,
        a - 2
    );
    assert_run(&img.check(&[]), 0, &format!("{TITLES}{warn}"));
    assert_run(
        &img.check(&["--auto-repair"]),
        0,
        &format!("{TITLES}{warn}"),
    );
    assert_run(&img.check(&[]), 0, TITLES);
    assert_eq!(img.data_index().2, e);
}

// ---------------------------------------------------------------- command line

#[test]
fn option_conflicts_are_usage_errors() {
    let img = Img::fixture("a-empty-pool");
    for (a, b) in [
        ("--auto-repair", "--ignore-non-fatal-errors"),
        ("--auto-repair", "-m"),
        ("--auto-repair", "--super-block-only"),
        ("--auto-repair", "--skip-mappings"),
        ("--auto-repair", "--override-mapping-root=5"),
        ("--clear-needs-check-flag", "-m"),
        ("--clear-needs-check-flag", "--override-details-root=5"),
    ] {
        let r = img.check(&[a, b]);
        assert_eq!(r.code(), 2, "{}", r.describe());
        assert!(
            r.stderr().contains("cannot be used with"),
            "{}",
            r.describe()
        );
        assert!(r.stderr().contains("For more information, try '--help'."));
    }
    for ok in [
        vec!["--clear-needs-check-flag", "--skip-mappings"],
        vec!["--clear-needs-check-flag", "--super-block-only"],
        vec!["--clear-needs-check-flag", "--ignore-non-fatal-errors"],
        vec!["-q", "-q", "-v"],
    ] {
        assert_eq!(img.check(&ok).code(), 0, "{ok:?}");
    }
    let r = img.check(&["--override-mapping-root=1", "--override-mapping-root=2"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("cannot be used multiple times"),
        "{}",
        r.describe()
    );
    let r = run("thin_check", &[]);
    assert_eq!(r.code(), 2);
    assert!(r
        .stderr()
        .contains("the following required arguments were not provided:"));
    let r = img.check(&["--bogus"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("unexpected argument '--bogus' found"));
}

#[test]
fn input_checks() {
    let r = run("thin_check", &["/nonexistent/meta"]);
    assert_run(&r, 1, "Couldn't find input file '/nonexistent/meta'\n");
    let dir = TempDir::new().unwrap();
    let r = run("thin_check", &[dir.path().to_str().unwrap()]);
    assert_eq!(r.code(), 1);
    assert!(r.stderr().starts_with("Not a block device or regular file"));
    let xml = dir.path().join("x.xml");
    std::fs::write(&xml, format!("<superblock uuid=\"\">{}", " ".repeat(5000))).unwrap();
    let r = run("thin_check", &[xml.to_str().unwrap()]);
    assert_run(
        &r,
        1,
        "This looks like XML.  This tool only supports the binary metadata format.\n",
    );
}

#[test]
fn override_roots_are_used() {
    let img = Img::fixture("b-full-thin");
    let details = img.sb().details_root.to_string();
    let r = img.check(&["--override-mapping-root", &details]);
    assert_eq!(r.code(), 1, "{}", r.describe());
    assert!(
        r.stderr()
            .contains("mapping top-level: node error: value_size mismatch"),
        "{}",
        r.describe()
    );
    let root = img.sb().mapping_root.to_string();
    let r = img.check(&["--override-mapping-root", &root, "--skip-mappings"]);
    assert_eq!(r.code(), 0, "{}", r.describe());
}

#[test]
fn man_page_lists_every_long_option() {
    let man = man::page("thin_check").unwrap();
    let flags = man::long_flags("thin_check").unwrap();
    for flag in &flags {
        assert!(man.contains(flag.as_str()), "{flag} missing from man page");
    }
    // The options of the contract are among clap's (and so in the man page).
    for opt in [
        "quiet",
        "super-block-only",
        "skip-mappings",
        "ignore-non-fatal-errors",
        "clear-needs-check-flag",
        "auto-repair",
        "metadata-snap",
        "override-mapping-root",
        "override-details-root",
    ] {
        assert!(
            flags.contains(&format!("--{opt}")),
            "{opt} missing from thin_check's options"
        );
        assert!(
            man.contains(&format!("--{opt}")),
            "{opt} missing from man page"
        );
    }
}

#[test]
fn data_block_past_the_data_device_is_a_leaf_error() {
    let img = Img::fixture("b-full-thin");
    let (id, root) = img.devices()[0];
    let n = img.leaf_u64(root).len();
    let nr_data = img.sb().data_sm_root.nr_blocks;
    img.patch(root, Some(BlockKind::Node), |b| {
        let v = 32 + 8 * 252;
        b[v..v + 8].copy_from_slice(&(nr_data << 24).to_le_bytes());
    });
    assert_run(
        &img.check(&[]),
        1,
        &format!(
            "{TITLES}1 nodes in data mapping tree contain errors\n0 io errors, 0 checksum errors\n\
             Thin device {id} is missing root with {n} mappings\nCheck of mappings failed\n"
        ),
    );
}

#[test]
fn times_newer_than_the_superblock_are_warnings() {
    let img = Img::fixture("f-held-metasnap");
    let sb = img.sb();
    assert!(sb.time > 0);
    img.patch_sb(|sb| sb.time = 0);
    let r = img.check(&[]);
    assert_eq!(r.code(), 0, "{}", r.describe());
    let err = r.stderr();
    assert!(err.starts_with(TITLES), "{err}");
    assert!(
        err.contains("mappings have a time newer than the superblock time 0\n"),
        "{err}"
    );
    assert!(
        err.contains(": creation/snapshot time newer than the superblock time 0\n"),
        "{err}"
    );
}

#[test]
fn device_ids_beyond_24_bits_are_warnings() {
    let img = Img::fixture("b-full-thin");
    let big = 1u64 << 24;
    let top = img.first_leaf(img.sb().mapping_root, 8);
    let details = img.first_leaf(img.sb().details_root, 24);
    for nr in [top, details] {
        img.patch(nr, Some(BlockKind::Node), |b| {
            b[32..40].copy_from_slice(&big.to_le_bytes());
        });
    }
    assert_run(
        &img.check(&[]),
        0,
        &format!(
            "{TITLES}device {big}: id does not fit in 24 bits, the kernel cannot activate it\n"
        ),
    );
}

#[test]
fn ref_count_tree_entries_stale_valid_and_missing() {
    let img = Img::fixture("b-full-thin");
    let rc = img.sb().data_sm_root.ref_count_root;
    let bm = img.data_index().2.blocknr;
    let used = img.find_count(bm, 1, img.sb().data_sm_root.nr_blocks);
    let set_entry = |count: u32| {
        img.patch(rc, Some(BlockKind::Node), |b| {
            assert_eq!(
                u32::from_le_bytes(b[16..20].try_into().unwrap()),
                0,
                "empty tree"
            );
            let max = u32::from_le_bytes(b[20..24].try_into().unwrap()) as usize;
            b[16..20].copy_from_slice(&1u32.to_le_bytes());
            b[32..40].copy_from_slice(&used.to_le_bytes());
            b[32 + 8 * max..36 + 8 * max].copy_from_slice(&count.to_le_bytes());
        });
    };
    // A tree entry for a block whose bitmap says 1: a stale, repairable warning.
    set_entry(7);
    let warn =
        format!("data space map: ref count tree holds block {used} whose bitmap count is 1\n");
    assert_run(&img.check(&[]), 0, &format!("{TITLES}{warn}"));
    assert_run(
        &img.check(&["--auto-repair"]),
        0,
        &format!("{TITLES}{warn}"),
    );
    assert_run(&img.check(&[]), 0, TITLES);
    assert_eq!(
        u32::from_le_bytes(img.block(rc)[16..20].try_into().unwrap()),
        0
    );

    // Bitmap 3 with the true count in the tree: healthy.
    img.patch(bm, Some(BlockKind::Bitmap), |b| {
        bitmap_set(b, used as usize, 3)
    });
    set_entry(1);
    assert_run(&img.check(&[]), 0, TITLES);
    // Bitmap 3 with a wrong count in the tree, then with no entry: fatal.
    img.patch(rc, Some(BlockKind::Node), |b| {
        b[16..20].copy_from_slice(&0u32.to_le_bytes())
    });
    set_entry(4);
    let bad = format!("{TITLES}data space map: 1 data blocks have bad reference counts\n");
    assert_run(&img.check(&[]), 1, &bad);
    img.patch(rc, Some(BlockKind::Node), |b| {
        b[16..20].copy_from_slice(&0u32.to_le_bytes())
    });
    assert_run(&img.check(&[]), 1, &bad);
}

#[test]
fn superblock_only_passes_on_a_copy_of_the_superblock_block_alone() {
    let img = Img::fixture("b-full-thin");
    let dir = TempDir::new().unwrap();
    let one = dir.path().join("sb.img");
    std::fs::write(&one, img.block(0)).unwrap();
    let one = one.to_str().unwrap();
    let r = run("thin_check", &["--super-block-only", one]);
    assert_run(&r, 0, "");
    assert_eq!(r.stdout(), summary(&img));
    // The trees need the blocks the space map names.
    let r = run("thin_check", &["--skip-mappings", one]);
    assert_eq!(r.code(), 1, "{}", r.describe());
    assert!(
        r.stderr()
            .contains("metadata space map: 1024 blocks exceed the device (1 blocks)"),
        "{}",
        r.describe()
    );
}
