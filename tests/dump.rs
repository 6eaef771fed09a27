//! thin_dump: byte-identity with upstream 1.3.3 on kernel-written metadata,
//! content round trips against the kernel's hashes, and the option contract
//! (-o opened late, -m, overrides, --format, --dev-id, --skip-mappings).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thintools::pdata::block::BLOCK_SIZE;
use thintools::pdata::checksum::BlockKind;

use crate::util::fixtures::unzstd;
use crate::util::image::{le_u64, patch_block, read_block};
use crate::util::man;
use crate::util::{corpus_dir, fixtures_dir, run, unpack_fixture, Run};

const SAMPLES: &[&str] = &[
    "b-full-thin",
    "d-snap-chain",
    "e3-discard-ignore",
    "f-held-metasnap",
];

/// Unpacks a corpus sample's metadata (and data) image into `dir`.
fn corpus_sample(name: &str, dir: &Path, with_data: bool) -> Option<(PathBuf, PathBuf)> {
    let src = corpus_dir()?.join(name);
    let meta = dir.join(format!("{name}.meta"));
    unzstd(&src.join("meta.img.zst"), &meta);
    let data = dir.join(format!("{name}.data"));
    if with_data {
        unzstd(&src.join("data.img.zst"), &data);
    }
    Some((meta, data))
}

fn dump(args: &[&str]) -> Run {
    run("thin_dump", args)
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// Every thin_dump command of every sample's expected/COMMANDS gives
/// upstream 1.3.3's stdout byte for byte, nothing on stderr, exit 0.
#[test]
fn corpus_outputs_are_byte_identical_to_upstream() {
    let Some(corpus) = corpus_dir() else {
        eprintln!("corpus absent: skipped");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for name in SAMPLES {
        let (meta, _) = corpus_sample(name, tmp.path(), false).unwrap();
        let expected = corpus.join(name).join("expected");
        let commands = fs::read_to_string(expected.join("COMMANDS")).unwrap();
        for line in commands.lines().filter(|l| !l.starts_with('#')) {
            let Some((label, cmd)) = line.split_once('\t') else {
                continue;
            };
            let mut words = cmd.split_whitespace();
            if words.next() != Some("thin_dump") {
                continue;
            }
            let args: Vec<&str> = words
                .map(|w| if w == "META" { p(&meta) } else { w })
                .collect();
            let r = dump(&args);
            r.expect_code(0);
            let want = fs::read(expected.join(format!("{label}.stdout"))).unwrap();
            assert!(
                r.out.stdout == want,
                "{name} {label}: output differs\n{}",
                r.describe()
            );
            assert_eq!(r.stderr(), "", "{name} {label}");
            compared += 1;
        }
    }
    assert_eq!(compared, 16, "every thin_dump line of the four samples");
}

/// A dump parsed back: superblock line, defs and devices.
#[derive(Default)]
struct Parsed {
    superblock: String,
    block_sectors: u64,
    defs: BTreeMap<String, Vec<Item>>,
    devices: Vec<(String, u64, Vec<Item>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    /// origin, data, length, time
    Run(u64, u64, u64, u64),
    Ref(String),
}

fn attr(line: &str, name: &str) -> String {
    let key = format!(" {name}=\"");
    let start = line
        .find(&key)
        .unwrap_or_else(|| panic!("{name} in {line}"))
        + key.len();
    let len = line[start..].find('"').unwrap();
    line[start..start + len].to_string()
}

fn num(line: &str, name: &str) -> u64 {
    attr(line, name).parse().unwrap()
}

/// Parses our own XML layout strictly (one element per line, 2-space steps).
fn parse(xml: &str) -> Parsed {
    let mut out = Parsed::default();
    let mut cur: Option<(bool, String, u64, Vec<Item>)> = None;
    for line in xml.split('\n') {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        if t.starts_with("<superblock ") {
            assert_eq!(indent, 0);
            out.superblock = line.to_string();
            out.block_sectors = num(t, "data_block_size");
        } else if t.starts_with("<def ") {
            assert_eq!(indent, 2);
            cur = Some((true, attr(t, "name"), 0, Vec::new()));
        } else if t.starts_with("<device ") {
            assert_eq!(indent, 2);
            cur = Some((false, line.to_string(), num(t, "dev_id"), Vec::new()));
        } else if t.starts_with("<single_mapping ") || t.starts_with("<range_mapping ") {
            assert_eq!(indent, 4);
            let item = if t.starts_with("<single") {
                Item::Run(
                    num(t, "origin_block"),
                    num(t, "data_block"),
                    1,
                    num(t, "time"),
                )
            } else {
                let len = num(t, "length");
                assert!(len >= 2, "{t}");
                Item::Run(
                    num(t, "origin_begin"),
                    num(t, "data_begin"),
                    len,
                    num(t, "time"),
                )
            };
            cur.as_mut().unwrap().3.push(item);
        } else if t.starts_with("<ref ") {
            assert_eq!(indent, 4);
            cur.as_mut().unwrap().3.push(Item::Ref(attr(t, "name")));
        } else if t == "</def>" || t == "</device>" {
            let (is_def, name, id, items) = cur.take().unwrap();
            if is_def {
                out.defs.insert(name, items);
            } else {
                out.devices.push((name, id, items));
            }
        } else {
            assert!(
                t == "</superblock>" || t.is_empty(),
                "unexpected line {line:?}"
            );
        }
    }
    out
}

/// Each device's mappings one by one, refs resolved.
fn expand(parsed: &Parsed) -> BTreeMap<u64, Vec<(u64, u64, u64)>> {
    let mut out = BTreeMap::new();
    for (_, id, items) in &parsed.devices {
        let mut maps = Vec::new();
        for item in items {
            let runs: Vec<Item> = match item {
                Item::Ref(n) => parsed.defs[n].clone(),
                r => vec![r.clone()],
            };
            for r in runs {
                let Item::Run(o, d, len, t) = r else {
                    panic!("ref inside a def")
                };
                maps.extend((0..len).map(|i| (o + i, d + i, t)));
            }
        }
        out.insert(*id, maps);
    }
    out
}

/// Thins larger than this are not rebuilt (fixture i's 6.6 GB thin would
/// take minutes to hash); their dumps are still checked by the other tests.
const MAX_HASHED_BYTES: u64 = 512 << 20;

/// Devices of `thins.reg` (`dev_id size external_origin`) with an external
/// origin.
fn external_origins(dir: &Path) -> Vec<u64> {
    let Ok(text) = fs::read_to_string(dir.join("thins.reg")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[2] != "-").then(|| f[0].parse().ok())?
        })
        .collect()
}

/// Rebuilds every thin of `content.sha256` from `xml` and `data` (blocks not
/// mapped read from `origin` for the devices in `with_origin`, zeros past its
/// end or without one) and compares with the hashes of what the kernel read
/// back.
fn check_content(
    xml: &str,
    data: &Path,
    content: &Path,
    origin: Option<(&Path, &[u64])>,
    what: &str,
) -> usize {
    let parsed = parse(xml);
    let maps = expand(&parsed);
    let bs = usize::try_from(parsed.block_sectors * 512).unwrap();
    let mut data = fs::File::open(data).unwrap();
    let mut origin_file = origin.map(|(p, ids)| (fs::read(p).unwrap(), ids));
    let mut checked = 0;
    for line in fs::read_to_string(content).unwrap().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with('#') || f.len() < 3 {
            continue;
        }
        let id: u64 = f[0].parse().unwrap();
        let size: u64 = f[1].parse().unwrap();
        let ext = origin_file
            .as_mut()
            .filter(|(_, ids)| ids.contains(&id))
            .map(|(bytes, _)| &*bytes);
        let listed_external = f.len() > 3 && f[3] != "-";
        if size > MAX_HASHED_BYTES || (listed_external && ext.is_none()) {
            eprintln!("{what}: thin {id} not rebuilt");
            continue;
        }
        let by_block: BTreeMap<u64, u64> = maps[&id].iter().map(|&(o, d, _)| (o, d)).collect();
        let mut sum = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = sum.stdin.take().unwrap();
        let mut buf = vec![0u8; bs];
        for vb in 0..size.div_ceil(bs as u64) {
            let off = vb * bs as u64;
            match by_block.get(&vb) {
                Some(&db) => {
                    data.seek(SeekFrom::Start(db * bs as u64)).unwrap();
                    data.read_exact(&mut buf).unwrap();
                }
                None => {
                    buf.fill(0);
                    if let Some(o) = ext {
                        let start = usize::try_from(off).unwrap().min(o.len());
                        let end = (start + bs).min(o.len());
                        buf[..end - start].copy_from_slice(&o[start..end]);
                    }
                }
            }
            let keep = usize::try_from((size - off).min(bs as u64)).unwrap();
            stdin.write_all(&buf[..keep]).unwrap();
        }
        drop(stdin);
        let out = sum.wait_with_output().unwrap();
        let got = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            got.split_whitespace().next(),
            Some(f[2]),
            "{what}: thin {id} differs from the kernel's content"
        );
        checked += 1;
    }
    checked
}

/// The dump plus the data device reproduces every thin as the kernel read it.
#[test]
fn corpus_dumps_rebuild_every_thin_with_the_kernels_hash() {
    let Some(corpus) = corpus_dir() else {
        eprintln!("corpus absent: skipped");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for name in SAMPLES {
        let (meta, data) = corpus_sample(name, tmp.path(), true).unwrap();
        let r = dump(&[p(&meta)]);
        r.expect_code(0);
        let n = check_content(
            &r.stdout(),
            &data,
            &corpus.join(name).join("content.sha256"),
            None,
            name,
        );
        assert!(n > 0, "{name}: no thin checked");
    }
}

/// Same on the project's own kernel-written fixtures
/// (fixtures/<name>/{meta,data}.img.zst + content.sha256).
#[test]
fn fixture_dumps_rebuild_every_thin_with_the_kernels_hash() {
    let Ok(entries) = fs::read_dir(fixtures_dir()) else {
        eprintln!("no fixtures directory: skipped");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for e in entries.flatten() {
        let dir = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let content = dir.join("content.sha256");
        if !(dir.join("meta.img.zst").exists()
            && dir.join("data.img.zst").exists()
            && content.exists())
        {
            continue;
        }
        let meta = unpack_fixture(&format!("{name}/meta.img.zst"), tmp.path());
        let data = unpack_fixture(&format!("{name}/data.img.zst"), tmp.path());
        let with_origin = external_origins(&dir);
        let origin = (!with_origin.is_empty() && dir.join("origin.img.zst").exists())
            .then(|| unpack_fixture(&format!("{name}/origin.img.zst"), tmp.path()));
        let r = dump(&[p(&meta)]);
        r.expect_code(0);
        let n = check_content(
            &r.stdout(),
            &data,
            &content,
            origin.as_deref().map(|o| (o, &with_origin[..])),
            &name,
        );
        checked += n;
        fs::remove_file(&data).unwrap();
    }
    if fixtures_dir().join("b-full-thin").is_dir() {
        assert!(checked >= 20, "only {checked} thins rebuilt");
    }
}

/// `--expand-shared` writes the same mappings as the def/ref dump with every
/// ref inlined, with maximal runs and no def or ref.
#[test]
fn expand_shared_equals_the_def_ref_dump_inlined() {
    let tmp = tempfile::tempdir().unwrap();
    let mut with_refs = 0;
    let cases = SAMPLES
        .iter()
        .map(|s| (*s, None))
        .chain([("f-held-metasnap", Some("-m"))]);
    for (name, extra) in cases {
        let Some((meta, _)) = corpus_sample(name, tmp.path(), false) else {
            eprintln!("corpus absent: skipped");
            return;
        };
        let args: Vec<&str> = extra.into_iter().chain([p(&meta)]).collect();
        let shared = dump(&args);
        let expanded = dump(&[&["--expand-shared"][..], &args].concat());
        shared.expect_code(0);
        expanded.expect_code(0);
        let (a, b) = (parse(&shared.stdout()), parse(&expanded.stdout()));
        if !a.defs.is_empty() {
            with_refs += 1;
        }
        assert!(b.defs.is_empty() && !expanded.stdout().contains("<ref "));
        assert_eq!(a.superblock, b.superblock);
        let heads = |p: &Parsed| p.devices.iter().map(|d| d.0.clone()).collect::<Vec<_>>();
        assert_eq!(heads(&a), heads(&b));
        assert_eq!(expand(&a), expand(&b), "{name}");
        for (_, _, items) in &b.devices {
            for w in items.windows(2) {
                let (Item::Run(o, d, l, t), Item::Run(o2, d2, _, t2)) = (&w[0], &w[1]) else {
                    unreachable!()
                };
                assert!(
                    !(o + l == *o2 && d + l == *d2 && t == t2),
                    "{name}: runs not maximal: {w:?}"
                );
            }
        }
    }
    assert!(with_refs >= 2, "samples with sharing were compared");
}

fn f_sample(dir: &Path) -> Option<PathBuf> {
    corpus_sample("f-held-metasnap", dir, false).map(|(m, _)| m)
}

fn expected(name: &str, file: &str) -> Vec<u8> {
    fs::read(corpus_dir().unwrap().join(name).join("expected").join(file)).unwrap()
}

#[test]
fn output_file_is_written_and_only_after_the_superblock_was_read() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(meta) = f_sample(tmp.path()) else {
        return;
    };
    let out = tmp.path().join("out.xml");
    fs::write(&out, "old contents that are longer than nothing").unwrap();
    let r = dump(&["-o", p(&out), p(&meta)]);
    r.expect_code(0);
    assert_eq!(r.out.stdout, b"");
    // Off a terminal the progress bar prints nothing.
    assert_eq!(r.out.stderr, b"");
    assert_eq!(
        fs::read(&out).unwrap(),
        expected("f-held-metasnap", "thin_dump.stdout")
    );

    // A bad superblock: the output is neither created nor truncated.
    let zero = tmp.path().join("zero.meta");
    fs::write(&zero, vec![0u8; 64 * BLOCK_SIZE]).unwrap();
    let missing = tmp.path().join("never.xml");
    let r = dump(&["-o", p(&missing), p(&zero)]);
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        "bad checksum in superblock\n(block 0 is all zeroes: this metadata was never formatted)\n"
    );
    assert!(!missing.exists());
    let r = dump(&["-o", p(&out), p(&zero)]);
    r.expect_code(1);
    assert_eq!(
        fs::read(&out).unwrap(),
        expected("f-held-metasnap", "thin_dump.stdout")
    );

    // Never a new regular file under /dev.
    let r = dump(&["-o", "/dev/thintools-no-such-lv", p(&meta)]);
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        "Couldn't find output file '/dev/thintools-no-such-lv'\n"
    );
    assert!(!Path::new("/dev/thintools-no-such-lv").exists());
    // An existing character device is written in place.
    dump(&["-o", "/dev/null", p(&meta)]).expect_code(0);
}

/// lvm2 reads the first line and closes the pipe: exit 1, nothing on stderr.
#[test]
fn a_closed_pipe_ends_the_dump_silently_with_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(meta) = f_sample(tmp.path()) else {
        return;
    };
    let mut child = Command::new(crate::util::bin("thin_dump"))
        .arg(&meta)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");

    // The same through a shell pipeline reading one line.
    let script = format!(
        "{} {} | head -c 10 >/dev/null; exit ${{PIPESTATUS[0]}}",
        crate::util::bin("thin_dump").display(),
        meta.display()
    );
    let mut big = Command::new("bash");
    big.args(["-c", &script]);
    // The f sample's dump is small enough to fit in the pipe, so this one may
    // exit 0 or 1; it must never print anything.
    let out = big.output().unwrap();
    assert!(matches!(out.status.code(), Some(0 | 1)));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn metadata_snap_options() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(meta) = f_sample(tmp.path()) else {
        return;
    };
    let want = expected("f-held-metasnap", "thin_dump-m.stdout");
    for arg in [
        "-m",
        "-m36",
        "-m=36",
        "--metadata-snap=36",
        "--metadata-snap",
    ] {
        let r = dump(&[arg, p(&meta)]);
        r.expect_code(0);
        assert_eq!(r.out.stdout, want, "{arg}");
        assert_eq!(r.stderr(), "", "{arg}");
    }
    // `-m 36` is the flag then a second positional.
    dump(&["-m", "36", p(&meta)]).expect_code(2);

    let r = dump(&["-m=5", p(&meta)]);
    r.expect_code(1);
    assert_eq!(r.stderr(), "metadata snap: bad checksum in superblock\n");

    let (b, _) = corpus_sample("b-full-thin", tmp.path(), false).unwrap();
    let r = dump(&["-m", p(&b)]);
    r.expect_code(1);
    assert_eq!(r.stderr(), "no current metadata snap\n");

    // A valid snapshot that is not the held one: warning, then the dump.
    let other = tmp.path().join("unheld.meta");
    fs::copy(&meta, &other).unwrap();
    patch_block(&other, 0, Some(BlockKind::Superblock), |b| {
        b[56..64].copy_from_slice(&0u64.to_le_bytes()); // held_root
    });
    let r = dump(&["-m=36", p(&other)]);
    r.expect_code(0);
    assert_eq!(
        r.stderr(),
        "block 36 is not the held metadata snapshot (held root is 0)\n"
    );
    assert_eq!(r.out.stdout, want);
    let r = dump(&["-q", "-m=36", p(&other)]);
    assert_eq!(r.stderr(), "");
}

/// A damaged leaf in a dumped tree is fatal and named; a dump that does not
/// include that tree is unaffected.
#[test]
fn a_damaged_leaf_is_fatal_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((meta, _)) = corpus_sample("e3-discard-ignore", tmp.path(), false) else {
        return;
    };
    // Def 29 of this sample is a leaf shared by devices 0 and 1 (a def used by two refs).
    patch_block(&meta, 29, None, |b| b[2000] ^= 0x55);
    let r = dump(&[p(&meta)]);
    r.expect_code(1);
    assert_eq!(r.stderr(), "checksum failed for node 29\n");
    let r = dump(&["-q", p(&meta)]);
    r.expect_code(1);
    assert_eq!(r.stderr(), "");
    let r = dump(&["--dev-id", "2", p(&meta)]);
    r.expect_code(0);
    assert!(r.stdout().contains("<device dev_id=\"2\""));
}

/// Devices are paired by id; an id in one tree only is warned about and skipped.
#[test]
fn devices_are_paired_by_id() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(meta) = f_sample(tmp.path()) else {
        return;
    };
    let sb = read_block(&meta, 0);
    let details_root = le_u64(&sb, 328);
    // The details tree of this small pool is one leaf with ids 0, 1, 2:
    // renumber device 2 as 5.
    patch_block(&meta, details_root, Some(BlockKind::Node), |b| {
        assert_eq!(le_u64(b, 4) & 0xffff_ffff, 2, "a leaf");
        assert_eq!(le_u64(b, 16) & 0xffff_ffff, 3, "three devices");
        assert_eq!(le_u64(b, 32 + 16), 2);
        b[48..56].copy_from_slice(&5u64.to_le_bytes());
    });
    let r = dump(&[p(&meta)]);
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        "device 2 has no device details\ndevice 5 has no mapping tree\n"
    );
    let out = r.stdout();
    assert!(out.contains("dev_id=\"0\"") && out.contains("dev_id=\"1\""));
    assert!(!out.contains("dev_id=\"2\"") && !out.contains("dev_id=\"5\""));
    assert!(out.ends_with("</superblock>"));
    // Only the selected ids are paired.
    dump(&["--dev-id", "1", p(&meta)]).expect_code(0);
}

#[test]
fn dev_id_selection() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(meta) = f_sample(tmp.path()) else {
        return;
    };
    let want = expected("f-held-metasnap", "thin_dump-dev-id-1.stdout");
    let r = dump(&["--dev-id", "1", "--dev-id=1", p(&meta)]);
    r.expect_code(0);
    assert_eq!(r.out.stdout, want);
    // Unknown ids are skipped silently.
    let r = dump(&["--dev-id", "99", p(&meta)]);
    r.expect_code(0);
    assert_eq!(r.stderr(), "");
    let out = r.stdout();
    assert!(out.starts_with("<superblock ") && out.ends_with(">\n</superblock>"));
    assert_eq!(out.lines().count(), 2);
    // Two devices are planned together: the same dump as without a filter.
    let all = dump(&[p(&meta)]);
    let r = dump(&["--dev-id", "2", "--dev-id", "0", "--dev-id", "1", p(&meta)]);
    assert_eq!(r.out.stdout, all.out.stdout);
}

#[test]
fn superblock_overrides_and_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(meta) = f_sample(tmp.path()) else {
        return;
    };
    let first = |r: &Run| r.stdout().lines().next().unwrap_or("").to_string();
    let r = dump(&[
        "--transaction-id",
        "100",
        "--nr-data-blocks=99999",
        "--data-block-size",
        "256",
        p(&meta),
    ]);
    r.expect_code(0);
    assert_eq!(
        first(&r),
        r#"<superblock uuid="" time="1" transaction="100" version="2" data_block_size="256" nr_data_blocks="99999">"#
    );
    // Overrides only raise the transaction id and the data size.
    let r = dump(&["--transaction-id", "1", "--nr-data-blocks", "+5", p(&meta)]);
    assert_eq!(
        first(&r),
        r#"<superblock uuid="" time="1" transaction="2" version="2" data_block_size="2048" nr_data_blocks="128">"#
    );
    // Applied in -m mode too.
    let r = dump(&["-m", "--nr-data-blocks", "7", p(&meta)]);
    assert!(
        first(&r).ends_with(r#"nr_data_blocks="7">"#),
        "{}",
        r.describe()
    );

    for bad in ["100", "0", "2097280", "x"] {
        let r = dump(&["--data-block-size", bad, p(&meta)]);
        r.expect_code(2);
        assert!(r.stderr().starts_with("error: "), "{}", r.describe());
    }
    let r = dump(&["--data-block-size", "100", p(&meta)]);
    assert!(r.stderr().contains("invalid data block size"));
    dump(&["-f", "yaml", p(&meta)]).expect_code(2);
    dump(&["--repair", "-m", p(&meta)]).expect_code(2);
    dump(&[]).expect_code(2);
    dump(&["-q", "-q", "-vv", "--skip-mappings", p(&meta)]).expect_code(0);
}

#[test]
fn human_readable_and_skip_mappings_forms() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(meta) = f_sample(tmp.path()) else {
        return;
    };
    let r = dump(&["--format=human_readable", p(&meta)]);
    assert_eq!(
        r.out.stdout,
        expected("f-held-metasnap", "thin_dump-human.stdout")
    );
    let r = dump(&["-f", "human_readable", "-m", p(&meta)]);
    r.expect_code(0);
    assert!(r
        .stdout()
        .starts_with("begin superblock: \"\", 1, 1, 0, 2, 2048, 0\ndef: 27\n"));
    let r = dump(&["--skip-mappings", "--dev-id", "2", p(&meta)]);
    r.expect_code(0);
    assert_eq!(r.stdout().lines().count(), 4);
}

/// Help, man page and options cannot drift (STYLE.md 22).
#[test]
fn every_long_option_is_in_the_man_page() {
    let help = dump(&["--help"]);
    help.expect_code(0);
    let man =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("man/thin_dump.8")).unwrap();
    let mut seen = 0;
    for flag in man::long_flags("thin_dump").unwrap() {
        let name = flag.trim_start_matches("--");
        let roff = format!("\\-\\-{}", name.replace('-', "\\-"));
        assert!(man.contains(&roff), "--{name} is not in man/thin_dump.8");
        assert!(help.stdout().contains(&flag), "{flag} is not in --help");
        seen += 1;
    }
    assert!(seen >= 14, "{}", help.stdout());
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "EXIT STATUS",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        assert!(man.contains(&format!(".SH {section}")), "{section}");
    }
    assert!(man.contains("reserve_metadata_snap") && man.contains("release_metadata_snap"));
}

/// Differential test: Debian's thin_dump 0.9.0 writes no def/ref, always
/// `flags="0"` and a final newline; otherwise our `--expand-shared` output
/// must be the same bytes on every kernel-written fixture.
#[test]
fn expand_shared_matches_debian_0_9_0_on_the_fixtures() {
    let debian = Path::new("/usr/sbin/thin_dump");
    let Ok(entries) = fs::read_dir(fixtures_dir()) else {
        return;
    };
    if !debian.exists() {
        eprintln!("Debian thin_dump absent: skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.path().join("meta.img.zst").exists() {
            continue;
        }
        let meta = unpack_fixture(&format!("{name}/meta.img.zst"), tmp.path());
        let ours = dump(&["--expand-shared", p(&meta)]);
        ours.expect_code(0);
        let theirs = Command::new(debian).arg(&meta).output().unwrap();
        assert!(theirs.status.success(), "{name}: Debian thin_dump failed");
        let want = String::from_utf8_lossy(&theirs.stdout).replacen(" flags=\"0\"", "", 1);
        assert_eq!(format!("{}\n", ours.stdout()), want, "{name}");
        fs::remove_file(&meta).unwrap();
        compared += 1;
    }
    eprintln!("{compared} fixtures compared");
}
