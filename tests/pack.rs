//! thin_metadata_pack / thin_metadata_unpack: lossless round trips, reading
//! packs written by thin-provisioning-tools, the overwrite prompt and every
//! error with its message.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thintools::pdata::checksum::{write_checksum, BlockKind};

use crate::util::fixtures::{shared, unzstd};
use crate::util::{bin, corpus_dir, fixtures_dir, run, sha256_file, unpack_fixture, Run};

/// Runs a tool with `input` on stdin.
fn run_stdin(tool: &str, args: &[&str], input: &str) -> Run {
    let mut child = Command::new(bin(tool))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    Run {
        cmdline: format!("{tool} {} <<< {input:?}", args.join(" ")),
        out: child.wait_with_output().expect("wait"),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A 300-block image mixing every checksummed kind (btree nodes with real
/// layouts, bitmaps, index blocks, cache/era superblocks) with unrecognised
/// blocks, which must come back as zeros.
fn synthetic_image() -> (Vec<u8>, Vec<u8>) {
    const B: usize = 4096;
    let mut img = vec![0u8; 300 * B];
    let mut want = img.clone();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for nr in 0..300usize {
        let blk = &mut img[nr * B..(nr + 1) * B];
        let kind = match nr % 9 {
            0 if nr == 0 => Some(BlockKind::Superblock),
            1..=3 => Some(BlockKind::Node),
            4 => Some(BlockKind::Bitmap),
            5 => Some(BlockKind::Index),
            6 => Some(
                [
                    BlockKind::CacheSuperblock,
                    BlockKind::EraSuperblock,
                    BlockKind::Array,
                ][nr % 3],
            ),
            7 => None,
            _ => continue,
        };
        for w in blk.chunks_exact_mut(8) {
            w.copy_from_slice(&(rnd() >> (rnd() % 64)).to_le_bytes());
        }
        if kind == Some(BlockKind::Node) {
            // Leaf with 8-byte values, internal node, leaf with 24-byte values.
            let (flags, max, vs): (u32, u32, u32) = match nr % 9 {
                1 => (2, 252, 8),
                2 => (1, 252, 8),
                _ => (2, 126, 24),
            };
            let nr_entries = u32::try_from(nr % 100).unwrap();
            blk[4..8].copy_from_slice(&flags.to_le_bytes());
            blk[8..16].copy_from_slice(&(nr as u64).to_le_bytes());
            blk[16..20].copy_from_slice(&nr_entries.to_le_bytes());
            blk[20..24].copy_from_slice(&max.to_le_bytes());
            blk[24..28].copy_from_slice(&vs.to_le_bytes());
            for k in 0..max as usize {
                let key = (nr * 1000 + k * 3) as u64;
                blk[32 + k * 8..40 + k * 8].copy_from_slice(&key.to_le_bytes());
            }
        }
        if let Some(kind) = kind {
            let arr: &mut [u8; B] = blk.try_into().unwrap();
            write_checksum(arr, kind);
            want[nr * B..(nr + 1) * B].copy_from_slice(blk);
        }
    }
    (img, want)
}

fn round_trip(dir: &Path, input: &Path) -> PathBuf {
    let pack = dir.join(format!(
        "{}.pack",
        input.file_name().unwrap().to_str().unwrap()
    ));
    let out = dir.join(format!(
        "{}.out",
        input.file_name().unwrap().to_str().unwrap()
    ));
    let packed = run("thin_metadata_pack", &["-i", s(input), "-o", s(&pack)]);
    packed.expect_code(0);
    // Off a terminal the progress bar prints nothing.
    assert_eq!(packed.stderr(), "");
    let r = run("thin_metadata_unpack", &["-i", s(&pack), "-o", s(&out)]);
    r.expect_code(0);
    assert_eq!(r.stdout(), "");
    assert_eq!(r.stderr(), "");
    out
}

#[test]
fn round_trip_keeps_recognised_blocks_and_zeroes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (img, want) = synthetic_image();
    let input = dir.path().join("synthetic.img");
    std::fs::write(&input, &img).unwrap();
    let before = sha256_file(&input);
    let out = round_trip(dir.path(), &input);
    assert_eq!(sha256_file(&input), before, "pack changed its input");
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), want.len());
    for (nr, (g, w)) in got.chunks(4096).zip(want.chunks(4096)).enumerate() {
        assert!(g == w, "block {nr} differs after the round trip");
    }
}

/// Kernel-written images: unused blocks are zero, so the round trip is exact.
#[test]
fn fixture_images_round_trip_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let fixture = entry.unwrap().path();
        let name = fixture.file_name().unwrap().to_str().unwrap().to_string();
        // j-huge-metadata is a 17 GiB sparse image: too slow for a unit run.
        if !fixture.join("meta.img.zst").exists() || fixture.join("meta.img.size").exists() {
            continue;
        }
        let img = unpack_fixture(&format!("{name}/meta.img.zst"), dir.path());
        let out = round_trip(dir.path(), &img);
        assert_eq!(sha256_file(&out), sha256_file(&img), "{name}");
        std::fs::remove_file(&out).unwrap();
        n += 1;
    }
    assert!(n >= 10, "fixtures missing");
}

/// The shared corpus too, when present.
#[test]
fn kernel_images_round_trip_byte_identical() {
    let Some(corpus) = corpus_dir() else {
        eprintln!("skipped: no corpus");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let sample = entry.unwrap().path();
        let zst = sample.join("meta.img.zst");
        if !zst.exists() {
            continue;
        }
        let name = sample.file_name().unwrap().to_str().unwrap().to_string();
        let img = dir.path().join(format!("{name}.img"));
        unzstd(&zst, &img);
        let out = round_trip(dir.path(), &img);
        assert_eq!(sha256_file(&out), sha256_file(&img), "{name}");
    }
}

/// Packs written by thin-provisioning-tools (chunks in random order) unpack
/// to exactly what its own unpacker produces.
#[test]
fn upstream_packs_unpack_identically() {
    let Some(packs) = shared("upstream-packs").or_else(|| {
        corpus_dir().and_then(|c| {
            let p = c.join("../upstream-packs");
            p.is_dir().then_some(p)
        })
    }) else {
        eprintln!("skipped: no upstream packs");
        return;
    };
    let list = std::fs::read_to_string(packs.join("UNPACKED.sha256")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for line in list.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (sha, size, name) = (f[0], f[1], f[2]);
        let out = dir.path().join(format!("{name}.img"));
        let pack = packs.join(format!("{name}.pack"));
        run("thin_metadata_unpack", &["-i", s(&pack), "-o", s(&out)]).expect_code(0);
        assert_eq!(
            std::fs::metadata(&out).unwrap().len().to_string(),
            size,
            "{name}"
        );
        assert_eq!(sha256_file(&out), sha, "{name}");
        // Our pack of the same image unpacks to the same bytes.
        let again = round_trip(dir.path(), &out);
        assert_eq!(sha256_file(&again), sha, "{name} after our round trip");
        n += 1;
    }
    assert!(n >= 10);
}

fn superblock_file(path: &Path, blocks: usize) {
    let mut b = vec![0u8; blocks * 4096];
    let first: &mut [u8; 4096] = (&mut b[..4096]).try_into().unwrap();
    write_checksum(first, BlockKind::Superblock);
    std::fs::write(path, &b).unwrap();
}

#[test]
fn overwriting_metadata_asks_first() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = synthetic_image();
    let input = dir.path().join("in.img");
    std::fs::write(&input, &img).unwrap();
    let pack = dir.path().join("p.pack");
    run("thin_metadata_pack", &["-i", s(&input), "-o", s(&pack)]).expect_code(0);

    let prompt = "The destination appears to already contain metadata, are you sure? [y/n]: ";
    for (tool, args) in [
        ("thin_metadata_unpack", ["-i", s(&pack), "-o"]),
        ("thin_metadata_pack", ["-i", s(&input), "-o"]),
    ] {
        let out = dir.path().join("existing");
        for answer in ["n\n", "", "maybe\n"] {
            superblock_file(&out, 20);
            let before = sha256_file(&out);
            let mut a = args.to_vec();
            a.push(s(&out));
            let r = run_stdin(tool, &a, answer);
            r.expect_code(1);
            assert_eq!(
                r.stderr(),
                format!("{prompt}Output file not overwritten\n"),
                "{}",
                r.describe()
            );
            assert_eq!(sha256_file(&out), before, "{tool} wrote after refusal");
        }
        for answer in ["y\n", "YES\n"] {
            superblock_file(&out, 20);
            let mut a = args.to_vec();
            a.push(s(&out));
            let r = run_stdin(tool, &a, answer);
            r.expect_code(0);
            assert_eq!(r.stderr(), prompt, "{}", r.describe());
        }
        superblock_file(&out, 20);
        let mut a = args.to_vec();
        a.extend([s(&out), "-f"]);
        let r = run_stdin(tool, &a, "");
        r.expect_code(0);
        assert_eq!(r.stderr(), "", "-f must not ask\n{}", r.describe());
        // An existing file without metadata is overwritten without asking,
        // and the result is whole (no trace of the old, longer contents).
        std::fs::write(&out, vec![0x11u8; 3_000_000]).unwrap();
        let mut a = args.to_vec();
        a.push(s(&out));
        run_stdin(tool, &a, "").expect_code(0);
        if tool == "thin_metadata_pack" {
            assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&pack).unwrap());
        }
    }
    // Unpack sized the output exactly, even over a larger old file.
    let out = dir.path().join("existing");
    std::fs::write(&out, vec![0x11u8; 3_000_000]).unwrap();
    run("thin_metadata_unpack", &["-i", s(&pack), "-o", s(&out)]).expect_code(0);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), img.len() as u64);
}

#[test]
fn unpack_rejects_bad_pack_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let mut header = Vec::new();
    for w in [0xa537_a0aa_6309_ef77u64, 3, 4096, 10] {
        header.extend_from_slice(&w.to_le_bytes());
    }
    let mut v2 = header.clone();
    v2[8] = 2;
    let mut bs = header.clone();
    bs[16..24].copy_from_slice(&512u64.to_le_bytes());
    let mut trunc = header.clone();
    trunc.extend_from_slice(&100u64.to_le_bytes());
    trunc.extend_from_slice(&[0x78, 0x9c]);
    let mut badz = header.clone();
    badz.extend_from_slice(&4u64.to_le_bytes());
    badz.extend_from_slice(&[1, 2, 3, 4]);
    let cases: &[(&str, &[u8], &str)] = &[
        ("short", b"abc", "Not a pack file\n"),
        ("magic", &[0u8; 64], "Not a pack file\n"),
        ("v2", &v2, "unsupported pack file version (2).\n"),
        ("bs", &bs, "block size is not 4096\n"),
        (
            "trunc",
            &trunc,
            "corrupt pack file: truncated chunk at offset 32\n",
        ),
    ];
    for (name, bytes, msg) in cases {
        std::fs::write(p(name), bytes).unwrap();
        let out = p(&format!("{name}.out"));
        let r = run("thin_metadata_unpack", &["-i", s(&p(name)), "-o", s(&out)]);
        r.expect_code(1);
        assert_eq!(r.stderr(), *msg, "{}", r.describe());
        assert!(
            !out.exists() || *name == "trunc",
            "{name}: output created before the header was checked"
        );
    }
    std::fs::write(p("badz"), &badz).unwrap();
    let r = run(
        "thin_metadata_unpack",
        &["-i", s(&p("badz")), "-o", s(&p("badz.out"))],
    );
    r.expect_code(1);
    assert!(
        r.stderr()
            .starts_with("corrupt pack file: chunk at offset 32: "),
        "{}",
        r.describe()
    );

    let r = run(
        "thin_metadata_unpack",
        &["-i", s(&p("nope")), "-o", s(&p("x"))],
    );
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        format!("Couldn't find input file '{}'\n", s(&p("nope")))
    );
    let r = run(
        "thin_metadata_unpack",
        &["-i", s(dir.path()), "-o", s(&p("x"))],
    );
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        format!("Not a block device or regular file '{}'.\n", s(dir.path()))
    );
}

#[test]
fn pack_applies_the_binary_input_checks() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("tiny"), [0u8; 4095]).unwrap();
    std::fs::write(
        p("xml"),
        format!("  <superblock uuid=\"\">{}", " ".repeat(5000)),
    )
    .unwrap();
    // No valid superblock is needed: an all-zero image packs (to nothing).
    std::fs::write(p("zero"), vec![0u8; 8192]).unwrap();
    let cases = [
        (
            "tiny",
            1,
            "Metadata device/file too small.  Is this binary metadata?\n".to_string(),
        ),
        (
            "xml",
            1,
            "This looks like XML.  This tool only supports the binary metadata format.\n"
                .to_string(),
        ),
        (
            "missing",
            1,
            format!("Couldn't find input file '{}'\n", s(&p("missing"))),
        ),
        ("zero", 0, String::new()),
    ];
    for (name, code, msg) in cases {
        let out = p(&format!("{name}.pack"));
        let r = run("thin_metadata_pack", &["-i", s(&p(name)), "-o", s(&out)]);
        r.expect_code(code);
        assert_eq!(r.stderr(), msg, "{}", r.describe());
    }
    let r = run(
        "thin_metadata_unpack",
        &["-i", s(&p("zero.pack")), "-o", s(&p("zero.out"))],
    );
    r.expect_code(0);
    assert_eq!(std::fs::read(p("zero.out")).unwrap(), vec![0u8; 8192]);
    // Never create a regular file under /dev.
    let r = run(
        "thin_metadata_unpack",
        &["-i", s(&p("zero.pack")), "-o", "/dev/thintools-no-such-lv"],
    );
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        "Couldn't find output file '/dev/thintools-no-such-lv'\n"
    );
    assert!(!Path::new("/dev/thintools-no-such-lv").exists());
    // Packing a file onto itself is refused before anything is truncated.
    let zero = s(&p("zero")).to_string();
    let r = run("thin_metadata_pack", &["-f", "-i", &zero, "-o", &zero]);
    r.expect_code(1);
    assert_eq!(r.stderr(), "input and output are the same file\n");
    assert_eq!(std::fs::metadata(p("zero")).unwrap().len(), 8192);
    // A flag given twice is accepted; a single-valued option twice is not.
    let out = s(&p("twice.pack")).to_string();
    run(
        "thin_metadata_pack",
        &["-f", "-i", s(&p("zero")), "-o", &out, "-f"],
    )
    .expect_code(0);
    let r = run(
        "thin_metadata_pack",
        &["-i", s(&p("zero")), "-i", s(&p("zero")), "-o", &out],
    );
    r.expect_code(2);
    assert!(r
        .stderr()
        .contains("the argument '--input <DEV>' cannot be used multiple times"));
    let r = run("thin_metadata_pack", &["-i", s(&p("zero"))]);
    r.expect_code(2);
    assert!(r
        .stderr()
        .contains("the following required arguments were not provided:"));
}

/// Detaches a loop device when dropped.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn attach(file: &Path) -> Option<Loop> {
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(file)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| Loop(String::from_utf8_lossy(&out.stdout).trim().to_string()))
}

/// Unpacking onto a block device zeroes every block the pack does not hold
/// (old contents must not survive) and leaves what lies past the image alone.
/// Skips where loop devices are not available.
#[test]
fn unpack_to_a_block_device_zeroes_absent_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (img, want) = synthetic_image();
    let input = dir.path().join("in.img");
    std::fs::write(&input, &img).unwrap();
    let pack = dir.path().join("p.pack");
    run("thin_metadata_pack", &["-i", s(&input), "-o", s(&pack)]).expect_code(0);
    let backing = dir.path().join("backing");
    std::fs::write(&backing, vec![0xeeu8; img.len() + 64 * 4096]).unwrap();
    let Some(lo) = attach(&backing) else {
        eprintln!("skipped: no loop device");
        return;
    };
    let r = run("thin_metadata_unpack", &["-i", s(&pack), "-o", &lo.0]);
    drop(lo);
    r.expect_code(0);
    let got = std::fs::read(&backing).unwrap();
    assert!(got[..img.len()] == want[..], "image area");
    assert!(
        got[img.len()..].iter().all(|&b| b == 0xee),
        "past the image"
    );

    // A device smaller than the image is refused before anything is written.
    let small = dir.path().join("small");
    std::fs::write(&small, vec![0xeeu8; 64 * 4096]).unwrap();
    let Some(lo) = attach(&small) else { return };
    let r = run("thin_metadata_unpack", &["-i", s(&pack), "-o", &lo.0]);
    drop(lo);
    r.expect_code(1);
    assert_eq!(r.stderr(), "Output file too small.\n");
    assert!(std::fs::read(&small).unwrap().iter().all(|&b| b == 0xee));
}

/// Data extents of a sparse file, as (start, end) byte offsets.
fn data_extents(f: &std::fs::File) -> Vec<(u64, u64)> {
    use std::os::fd::AsRawFd;
    let len = f.metadata().unwrap().len();
    let mut out = Vec::new();
    let mut pos: u64 = 0;
    while pos < len {
        let at = libc::off_t::try_from(pos).unwrap();
        // SAFETY: lseek on an fd we own, integer arguments only.
        let data = unsafe { libc::lseek(f.as_raw_fd(), at, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) };
        assert!(hole >= data);
        out.push((data as u64, hole as u64));
        pos = hole as u64;
    }
    out
}

/// j-huge-metadata: the kernel's largest metadata device (4,161,600 blocks,
/// 17 GiB, almost all holes). Packing skips the holes and the round trip is
/// exact; the comparison reads only where either file holds data (holes read
/// as zeros on both sides).
#[test]
fn the_largest_metadata_device_round_trips() {
    use std::os::unix::fs::FileExt;
    if !fixtures_dir().join("j-huge-metadata/meta.img.zst").exists() {
        eprintln!("skipped: fixture j missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = unpack_fixture("j-huge-metadata/meta.img.zst", dir.path());
    let out = round_trip(dir.path(), &img);
    let (a, b) = (
        std::fs::File::open(&img).unwrap(),
        std::fs::File::open(&out).unwrap(),
    );
    assert!(a.metadata().unwrap().len() > 4_161_600 * 4096);
    assert_eq!(b.metadata().unwrap().len(), a.metadata().unwrap().len());
    let mut extents = data_extents(&a);
    extents.extend(data_extents(&b));
    assert!(
        extents.iter().map(|(s, e)| e - s).sum::<u64>() < 1 << 30,
        "not sparse"
    );
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    for (start, end) in extents {
        let mut pos = start;
        while pos < end {
            let n = usize::try_from((end - pos).min(1 << 20)).unwrap();
            a.read_exact_at(&mut x[..n], pos).unwrap();
            b.read_exact_at(&mut y[..n], pos).unwrap();
            assert!(x[..n] == y[..n], "bytes {pos}..{} differ", pos + n as u64);
            pos += n as u64;
        }
    }
}
