//! thin_shrink on kernel-written fixtures: after a shrink, every thin read
//! through the new metadata from the shrunk data file (cut to the new size)
//! hashes as the kernel read it; refusals change nothing; shared blocks are
//! moved once; and the kernel activates a shrunk pool.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::vm::{self, parse_dump, Dump, Fixture};
use crate::util::{run, sha256_file, Run};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A fixture unpacked into a scratch directory, with its XML dump.
struct Pool {
    fx: Fixture,
    dir: tempfile::TempDir,
    meta: PathBuf,
    data: PathBuf,
    xml: PathBuf,
}

impl Pool {
    fn new(name: &str) -> Pool {
        let fx = Fixture::load(name);
        let dir = tempfile::tempdir().unwrap();
        let meta = fx.unpack("meta", dir.path());
        let data = fx.unpack("data", dir.path());
        let xml = dir.path().join("in.xml");
        let d = run("thin_dump", &["-o", p(&xml), p(&meta)]);
        d.expect_code(0);
        Pool {
            fx,
            dir,
            meta,
            data,
            xml,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn bs_bytes(&self) -> u64 {
        self.fx.block_size() * 512
    }

    fn used(&self) -> u64 {
        self.fx.num("data_blocks_used")
    }

    /// XML shrink of this pool to `n` blocks.
    fn shrink_xml(&self, n: u64, out: &Path, extra: &[&str]) -> Run {
        let nr = n.to_string();
        let mut args = vec![
            "-i",
            p(&self.xml),
            "-o",
            p(out),
            "--data",
            p(&self.data),
            "--nr-blocks",
            &nr,
        ];
        args.extend_from_slice(extra);
        run("thin_shrink", &args)
    }
}

/// Every (device, virtual block) → data block of a dump.
fn mappings(d: &Dump) -> BTreeMap<(u32, u64), u64> {
    d.devices
        .iter()
        .flat_map(|(&id, dev)| dev.mappings.iter().map(move |(&v, &(db, _))| ((id, v), db)))
        .collect()
}

/// Rebuilds every thin without an external origin from `dump` and `data`
/// (unmapped blocks read as zeros) and compares with `content.sha256`.
/// Returns how many thins were compared.
fn check_content(fx: &Fixture, dump: &Dump, data: &Path) -> usize {
    let bs = usize::try_from(dump.data_block_size * 512).unwrap();
    let mut file = fs::File::open(data).unwrap();
    let mut checked = 0;
    for t in fx.thins.iter().filter(|t| t.origin.is_none()) {
        let (size, want) = &fx.content[&t.id];
        let maps = &dump.devices[&t.id].mappings;
        let mut sum = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = sum.stdin.take().unwrap();
        let mut buf = vec![0u8; bs];
        for vb in 0..size.div_ceil(bs as u64) {
            match maps.get(&vb) {
                Some(&(db, _)) => {
                    file.seek(SeekFrom::Start(db * bs as u64)).unwrap();
                    file.read_exact(&mut buf).unwrap_or_else(|e| {
                        panic!("{}: thin {} block {vb} -> data {db}: {e}", fx.name, t.id)
                    });
                }
                None => buf.fill(0),
            }
            let keep = usize::try_from((size - vb * bs as u64).min(bs as u64)).unwrap();
            stdin.write_all(&buf[..keep]).unwrap();
        }
        drop(stdin);
        let out = sum.wait_with_output().unwrap();
        let got = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            got.split_whitespace().next(),
            Some(want.as_str()),
            "{}: thin {} differs from the kernel's content",
            fx.name,
            t.id
        );
        checked += 1;
    }
    checked
}

/// Cuts `data` to `n` blocks, so that any mapping at or above `n` fails to read.
fn cut(data: &Path, n: u64, bs_bytes: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(data)
        .unwrap()
        .set_len(n * bs_bytes)
        .unwrap();
}

/// The shrunk dump: the new size, nothing mapped at or above it, the same
/// devices and virtual blocks, and two mappings share a data block after
/// exactly when they shared one before (a shared block moved once).
fn check_remapped(before: &Dump, after: &Dump, n: u64) {
    assert_eq!(after.nr_data_blocks, n);
    let (b, a) = (mappings(before), mappings(after));
    assert_eq!(
        b.keys().collect::<Vec<_>>(),
        a.keys().collect::<Vec<_>>(),
        "the same virtual blocks are mapped"
    );
    let mut relabel: BTreeMap<u64, u64> = BTreeMap::new();
    for (k, &old) in &b {
        let new = a[k];
        assert!(new < n, "{k:?} maps data block {new}, not below {n}");
        if old < n {
            assert_eq!(new, old, "{k:?}: a block below the new size moved");
        }
        let prev = *relabel.entry(old).or_insert(new);
        assert_eq!(prev, new, "data block {old} went to two places");
    }
    let targets: BTreeSet<u64> = relabel.values().copied().collect();
    assert_eq!(
        targets.len(),
        relabel.len(),
        "two blocks moved to one place"
    );
    for (d, dev) in &before.devices {
        let ad = &after.devices[d];
        assert_eq!(
            (
                dev.mapped_blocks,
                dev.transaction,
                dev.creation_time,
                dev.snap_time
            ),
            (
                ad.mapped_blocks,
                ad.transaction,
                ad.creation_time,
                ad.snap_time
            )
        );
    }
    assert_eq!(
        (before.time, before.transaction),
        (after.time, after.transaction)
    );
}

fn dump_of(xml: &Path) -> Dump {
    parse_dump(&fs::read_to_string(xml).unwrap())
}

/// Rewrites the number of attribute `name` on `line` with `f`.
fn map_attr(line: &str, name: &str, f: impl Fn(u64) -> u64) -> String {
    let key = format!(" {name}=\"");
    let Some(at) = line.find(&key) else {
        return line.to_string();
    };
    let start = at + key.len();
    let end = start + line[start..].find('"').unwrap();
    let v: u64 = line[start..end].parse().unwrap();
    format!("{}{}{}", &line[..start], f(v), &line[end..])
}

impl Pool {
    /// Moves the whole pool `s` blocks up: every data block `b` to `b + s`
    /// (data file and XML), the data size grown by `s`; the metadata image
    /// is restored from the shifted XML. Every mapped block then lies at or
    /// above the old size, with the kernel's content and sharing.
    fn shift(&mut self, s: u64) {
        let xml: Vec<String> = fs::read_to_string(&self.xml)
            .unwrap()
            .split('\n')
            .map(|l| {
                let l = map_attr(l, "nr_data_blocks", |v| v + s);
                let l = map_attr(&l, "data_begin", |v| v + s);
                map_attr(&l, "data_block", |v| v + s)
            })
            .collect();
        fs::write(&self.xml, xml.join("\n")).unwrap();
        let old = fs::read(&self.data).unwrap();
        let mut f = fs::File::create(&self.data).unwrap();
        f.seek(SeekFrom::Start(s * self.bs_bytes())).unwrap();
        f.write_all(&old).unwrap();
        drop(f);
        run("thin_restore", &["-i", p(&self.xml), "-o", p(&self.meta)]).expect_code(0);
    }
}

/// Every block shared by several devices (a snapshot chain's shared leaves
/// and defs) lies above the new size; XML and binary shrinks move each once.
#[test]
fn everything_moves_and_shared_blocks_move_once() {
    let mut pool = Pool::new("d-snap-chain");
    pool.shift(1024);
    let before = dump_of(&pool.xml);
    let n = pool.used();
    let shared = {
        let mut count: BTreeMap<u64, usize> = BTreeMap::new();
        for d in mappings(&before).values() {
            *count.entry(*d).or_default() += 1;
        }
        count.values().filter(|&&c| c > 1).count()
    };
    assert!(shared > 100, "{shared} shared blocks");
    let data_before = fs::read(&pool.data).unwrap();
    for binary in [false, true] {
        fs::write(&pool.data, &data_before).unwrap();
        let (input, out) = if binary {
            let o = pool.path("out.img");
            fs::write(&o, vec![0u8; 4 << 20]).unwrap();
            (pool.meta.clone(), o)
        } else {
            (pool.xml.clone(), pool.path("out.xml"))
        };
        let nr = n.to_string();
        let mut args = vec![
            "-v",
            "-i",
            p(&input),
            "-o",
            p(&out),
            "--data",
            p(&pool.data),
        ];
        args.extend(["--nr-blocks", &nr]);
        if binary {
            args.push("--binary");
        }
        let r = run("thin_shrink", &args);
        r.expect_code(0);
        assert_eq!(
            r.stderr(),
            format!(
                "moved 364 of 364 mapped data blocks in 2 copies; data size 2048 -> {n} blocks\n"
            ),
        );
        let after = if binary {
            run("thin_check", &[p(&out)]).expect_code(0);
            let d = run("thin_dump", &[p(&out)]);
            d.expect_code(0);
            parse_dump(&d.stdout())
        } else {
            dump_of(&out)
        };
        check_remapped(&before, &after, n);
        let cut_data = pool.path("cut.img");
        fs::copy(&pool.data, &cut_data).unwrap();
        cut(&cut_data, n, pool.bs_bytes());
        assert_eq!(check_content(&pool.fx, &after, &cut_data), 13);
    }
}

/// Shrinking to exactly the used count fills every free block below it; the
/// content of every thin survives, read from the data file cut to that size.
#[test]
fn shrink_to_the_used_count_keeps_every_thin() {
    let mut checked = 0;
    for name in [
        "b-full-thin",
        "c-many-thins",
        "d-snap-chain",
        "e1-discard-passdown",
        "f-held-metasnap",
        "h-deleted-thins",
        "k-grown-pool",
    ] {
        let pool = Pool::new(name);
        let n = pool.used();
        let out = pool.path("out.xml");
        pool.shrink_xml(n, &out, &[]).expect_code(0);
        let (before, after) = (dump_of(&pool.xml), dump_of(&out));
        check_remapped(&before, &after, n);
        cut(&pool.data, n, pool.bs_bytes());
        checked += check_content(&pool.fx, &after, &pool.data);
        // thin_restore takes the result and thin_check passes it.
        let meta = pool.path("restored.img");
        fs::copy(&pool.meta, &meta).unwrap();
        run("thin_restore", &["-i", p(&out), "-o", p(&meta)]).expect_code(0);
        run("thin_check", &[p(&meta)]).expect_code(0);
    }
    assert!(checked >= 30, "only {checked} thins compared");
}

/// `--binary`: binary metadata in and out on a pool with deleted thins and
/// reused blocks; every thin hashes as before.
#[test]
fn binary_shrink_of_a_pool_with_deleted_thins() {
    let pool = Pool::new("h-deleted-thins");
    let n = pool.used();
    let out = pool.path("out.img");
    fs::write(&out, vec![0u8; 4 << 20]).unwrap();
    let nr = n.to_string();
    let r = run(
        "thin_shrink",
        &[
            "--binary",
            "-v",
            "-i",
            p(&pool.meta),
            "-o",
            p(&out),
            "--data",
            p(&pool.data),
            "--nr-blocks",
            &nr,
        ],
    );
    r.expect_code(0);
    let before = dump_of(&pool.xml);
    let moved = mappings(&before)
        .values()
        .filter(|&&d| d >= n)
        .collect::<BTreeSet<_>>()
        .len();
    assert!(moved > 0, "the test must move something");
    let e = r.stderr();
    assert!(
        e.starts_with(&format!(
            "moved {moved} of {} mapped data blocks in ",
            pool.used()
        )) && e.ends_with(&format!(
            " copies; data size {} -> {n} blocks\n",
            before.nr_data_blocks
        )),
        "{}",
        r.describe()
    );
    run("thin_check", &[p(&out)]).expect_code(0);
    let d = run("thin_dump", &[p(&out)]);
    d.expect_code(0);
    let after = parse_dump(&d.stdout());
    check_remapped(&before, &after, n);
    cut(&pool.data, n, pool.bs_bytes());
    assert!(check_content(&pool.fx, &after, &pool.data) >= 4);
}

/// One block more than fits: refused with the counts, no output created, the
/// data file untouched; in binary mode the output device is untouched too.
#[test]
fn a_shrink_that_does_not_fit_changes_nothing() {
    let pool = Pool::new("d-snap-chain");
    let n = pool.used() - 1;
    let data_sum = sha256_file(&pool.data);
    let out = pool.path("out.xml");
    let r = pool.shrink_xml(n, &out, &[]);
    r.expect_code(1);
    let to_move = mappings(&dump_of(&pool.xml))
        .values()
        .filter(|&&d| d >= n)
        .collect::<BTreeSet<_>>()
        .len();
    assert_eq!(
        r.stderr(),
        format!(
            "Insufficient free space: {to_move} mapped data blocks lie at or above block {n} \
             but only {} blocks below it are free (364 of the pool's blocks are mapped); \
             nothing was changed\n",
            to_move - 1
        )
    );
    assert!(!out.exists(), "no output on refusal");
    assert_eq!(sha256_file(&pool.data), data_sum);

    let bin_out = pool.path("out.img");
    fs::write(&bin_out, vec![7u8; 1 << 20]).unwrap();
    let out_sum = sha256_file(&bin_out);
    let nr = n.to_string();
    let r = run(
        "thin_shrink",
        &[
            "--binary",
            "-i",
            p(&pool.meta),
            "-o",
            p(&bin_out),
            "--data",
            p(&pool.data),
            "--nr-blocks",
            &nr,
        ],
    );
    r.expect_code(1);
    assert!(
        r.stderr().starts_with("Insufficient free space: "),
        "{}",
        r.describe()
    );
    assert_eq!(sha256_file(&bin_out), out_sum);
    assert_eq!(sha256_file(&pool.data), data_sum);
}

/// Nothing at or above the new size: the data file is untouched and the
/// output differs from the input only in the data size. Growing is refused.
#[test]
fn nothing_to_move_rewrites_only_the_size() {
    let pool = Pool::new("h-deleted-thins");
    let before = dump_of(&pool.xml);
    let highest = *mappings(&before).values().max().unwrap();
    let data_sum = sha256_file(&pool.data);
    for n in [highest + 1, before.nr_data_blocks] {
        let out = pool.path("out.xml");
        pool.shrink_xml(n, &out, &[]).expect_code(0);
        let want = fs::read_to_string(&pool.xml).unwrap().replacen(
            &format!("nr_data_blocks=\"{}\"", before.nr_data_blocks),
            &format!("nr_data_blocks=\"{n}\""),
            1,
        );
        assert_eq!(fs::read_to_string(&out).unwrap(), want);
        assert_eq!(sha256_file(&pool.data), data_sum);
    }
    let out = pool.path("grow.xml");
    let r = pool.shrink_xml(before.nr_data_blocks + 1, &out, &[]);
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        format!(
            "--nr-blocks {} is larger than the pool's {} data blocks: nothing to shrink\n",
            before.nr_data_blocks + 1,
            before.nr_data_blocks
        )
    );
    assert!(!out.exists());
}

/// A pool whose every mapped block lies above the new size, one of them
/// shared by two devices: each block is copied once into the lowest free
/// blocks, both devices map the shared block's new place.
#[test]
fn everything_to_move_and_a_shared_block_moved_once() {
    let dir = tempfile::tempdir().unwrap();
    let bs = 64 * 1024;
    let xml = dir.path().join("in.xml");
    fs::write(
        &xml,
        "<superblock uuid=\"\" time=\"1\" transaction=\"3\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"16\">\n\
         \x20 <def name=\"900\">\n\
         \x20   <single_mapping origin_block=\"0\" data_block=\"12\" time=\"0\"/>\n\
         \x20 </def>\n\
         \x20 <device dev_id=\"1\" mapped_blocks=\"4\" transaction=\"0\" creation_time=\"0\" snap_time=\"1\">\n\
         \x20   <ref name=\"900\"/>\n\
         \x20   <range_mapping origin_begin=\"1\" data_begin=\"8\" length=\"3\" time=\"1\"/>\n\
         \x20 </device>\n\
         \x20 <device dev_id=\"2\" mapped_blocks=\"2\" transaction=\"1\" creation_time=\"1\" snap_time=\"1\">\n\
         \x20   <ref name=\"900\"/>\n\
         \x20   <single_mapping origin_block=\"5\" data_block=\"15\" time=\"1\"/>\n\
         \x20 </device>\n\
         </superblock>",
    )
    .unwrap();
    let data = dir.path().join("data.img");
    let mut bytes = Vec::new();
    for b in 0..16u8 {
        bytes.extend(vec![b; bs]);
    }
    fs::write(&data, &bytes).unwrap();
    let out = dir.path().join("out.xml");
    let r = run(
        "thin_shrink",
        &[
            "-v",
            "-i",
            p(&xml),
            "-o",
            p(&out),
            "--data",
            p(&data),
            "--nr-blocks",
            "5",
        ],
    );
    r.expect_code(0);
    assert_eq!(
        r.stderr(),
        "moved 5 of 5 mapped data blocks in 3 copies; data size 16 -> 5 blocks\n"
    );
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        "<superblock uuid=\"\" time=\"1\" transaction=\"3\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"5\">\n\
         \x20 <def name=\"900\">\n\
         \x20   <single_mapping origin_block=\"0\" data_block=\"3\" time=\"0\"/>\n\
         \x20 </def>\n\
         \x20 <device dev_id=\"1\" mapped_blocks=\"4\" transaction=\"0\" creation_time=\"0\" snap_time=\"1\">\n\
         \x20   <ref name=\"900\"/>\n\
         \x20   <range_mapping origin_begin=\"1\" data_begin=\"0\" length=\"3\" time=\"1\"/>\n\
         \x20 </device>\n\
         \x20 <device dev_id=\"2\" mapped_blocks=\"2\" transaction=\"1\" creation_time=\"1\" snap_time=\"1\">\n\
         \x20   <ref name=\"900\"/>\n\
         \x20   <single_mapping origin_block=\"5\" data_block=\"4\" time=\"1\"/>\n\
         \x20 </device>\n\
         </superblock>"
    );
    let got = fs::read(&data).unwrap();
    let block = |i: usize| got[i * bs..(i + 1) * bs].to_vec();
    for (dst, src) in [(0, 8u8), (1, 9), (2, 10), (3, 12), (4, 15)] {
        assert_eq!(
            block(dst),
            vec![src; bs],
            "block {dst} holds old block {src}"
        );
    }
    // The blocks moved away keep their old content (nothing is zeroed).
    assert_eq!(block(12), vec![12u8; bs]);

    // --no-copy writes the same metadata and leaves the data alone.
    fs::write(&data, &bytes).unwrap();
    let out2 = dir.path().join("out2.xml");
    run(
        "thin_shrink",
        &[
            "--no-copy",
            "-i",
            p(&xml),
            "-o",
            p(&out2),
            "--data",
            p(&data),
            "--nr-blocks",
            "5",
        ],
    )
    .expect_code(0);
    assert_eq!(fs::read(&out2).unwrap(), fs::read(&out).unwrap());
    assert_eq!(fs::read(&data).unwrap(), bytes);

    // Four blocks cannot hold five.
    let r = run(
        "thin_shrink",
        &[
            "-i",
            p(&xml),
            "-o",
            p(&out2),
            "--data",
            p(&data),
            "--nr-blocks",
            "4",
        ],
    );
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        "Insufficient free space: 5 mapped data blocks lie at or above block 4 but only 4 \
         blocks below it are free (5 of the pool's blocks are mapped); nothing was changed\n"
    );
}

/// Rerunning a finished shrink on its own output moves nothing and writes
/// the same document; rerunning the original command (as after a crash
/// before the new metadata was written) gives the same result again.
#[test]
fn a_rerun_gives_the_same_result() {
    let pool = Pool::new("e1-discard-passdown");
    let n = pool.used() + 2;
    let (out1, out2, out3) = (pool.path("1.xml"), pool.path("2.xml"), pool.path("3.xml"));
    pool.shrink_xml(n, &out1, &[]).expect_code(0);
    let data_sum = sha256_file(&pool.data);
    pool.shrink_xml(n, &out2, &[]).expect_code(0);
    assert_eq!(fs::read(&out1).unwrap(), fs::read(&out2).unwrap());
    assert_eq!(sha256_file(&pool.data), data_sum);
    let nr = n.to_string();
    let r = run(
        "thin_shrink",
        &[
            "-v",
            "-i",
            p(&out1),
            "-o",
            p(&out3),
            "--data",
            p(&pool.data),
            "--nr-blocks",
            &nr,
        ],
    );
    r.expect_code(0);
    assert!(r.stderr().starts_with("moved 0 of "), "{}", r.describe());
    assert_eq!(fs::read(&out1).unwrap(), fs::read(&out3).unwrap());
    assert_eq!(sha256_file(&pool.data), data_sum);
    cut(&pool.data, n, pool.bs_bytes());
    assert!(check_content(&pool.fx, &dump_of(&out1), &pool.data) > 0);
}

/// Input, output and data device must be three different files.
#[test]
fn the_same_file_twice_is_refused() {
    let pool = Pool::new("b-full-thin");
    let sum = sha256_file(&pool.xml);
    let r = pool.shrink_xml(pool.used(), &pool.xml, &[]);
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        format!(
            "--input and --output are the same file ('{}')\n",
            pool.xml.display()
        )
    );
    assert_eq!(sha256_file(&pool.xml), sum);
    let r = pool.shrink_xml(pool.used(), &pool.data, &[]);
    r.expect_code(1);
    assert!(r
        .stderr()
        .starts_with("--output and --data are the same file"));
    let missing = pool.path("no-data");
    let nr = pool.used().to_string();
    let out = pool.path("o.xml");
    let r = run(
        "thin_shrink",
        &[
            "-i",
            p(&pool.xml),
            "-o",
            p(&out),
            "--data",
            p(&missing),
            "--nr-blocks",
            &nr,
        ],
    );
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        format!("Couldn't find data device '{}'\n", missing.display())
    );
    assert!(!out.exists());
}

/// A data file that does not hold every mapped block is refused before
/// anything is copied.
#[test]
fn a_short_data_device_is_refused() {
    let pool = Pool::new("b-full-thin");
    cut(&pool.data, 100, pool.bs_bytes());
    let sum = sha256_file(&pool.data);
    let out = pool.path("o.xml");
    let r = pool.shrink_xml(pool.used(), &out, &[]);
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        format!(
            "data device '{}' holds 100 blocks of 131072 bytes, but data block 191 is mapped\n",
            pool.data.display()
        )
    );
    assert_eq!(sha256_file(&pool.data), sum);
    assert!(!out.exists());
}

/// The kernel activates the shrunk pool on a data device cut to the new
/// size, and every thin reads back as before the shrink. The snapshot chain
/// is first moved up by its whole size, so that every block (the shared
/// ones too) is moved by the shrink.
#[test]
fn kernel_activates_a_shrunk_pool() {
    if !vm::vm_enabled() {
        return;
    }
    let mut pool = Pool::new("d-snap-chain");
    pool.shift(1024);
    let n = pool.used();
    let meta = pool.path("shrunk.img");
    fs::write(&meta, vec![0u8; 4 << 20]).unwrap();
    let nr = n.to_string();
    run(
        "thin_shrink",
        &[
            "--binary",
            "-i",
            p(&pool.meta),
            "-o",
            p(&meta),
            "--data",
            p(&pool.data),
            "--nr-blocks",
            &nr,
        ],
    )
    .expect_code(0);
    cut(&pool.data, n, pool.bs_bytes());
    let res = vm::PoolBoot::new(&meta, &pool.data, pool.fx.block_size())
        .thins(&pool.fx.thins)
        .features(&pool.fx.features())
        .run(pool.dir.path());
    assert_eq!(
        res.hashes, pool.fx.content,
        "thin content through the kernel"
    );
    let status = res.run.read("status-active.txt");
    assert!(
        status.contains(&format!(" {n}/{n} ")),
        "pool of {n} blocks, all used: {status}"
    );
    run("thin_check", &[p(&meta)]).expect_code(0);
}
