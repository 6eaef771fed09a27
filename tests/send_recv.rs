//! thin_send / thin_recv on kernel-written fixtures: round trips of every
//! format against the content hashes the kernel produced, chains of
//! incremental streams, damaged and truncated streams, wrong bases, resuming,
//! and interoperation with LINBIT's thin-send-recv 1.1.3 (through stub
//! `lvs`/`dmsetup`/`thin_dump` scripts, which is how it can run without LVM).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::{bin, sha256_file, unpack_fixture};

/// Unpacked metadata and data images of a fixture, and its content hashes.
struct Pool {
    meta: PathBuf,
    data: PathBuf,
    hashes: Vec<(u64, u64, String)>,
}

fn pool(name: &str, dir: &Path) -> Pool {
    let meta = unpack_fixture(&format!("{name}/meta.img.zst"), dir);
    let data = unpack_fixture(&format!("{name}/data.img.zst"), dir);
    let text = fs::read_to_string(
        crate::util::fixtures_dir()
            .join(name)
            .join("content.sha256"),
    )
    .unwrap();
    let hashes = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (
                w[0].parse().unwrap(),
                w[1].parse().unwrap(),
                w[2].to_owned(),
            )
        })
        .collect();
    Pool { meta, data, hashes }
}

impl Pool {
    fn size(&self, id: u64) -> u64 {
        self.hashes.iter().find(|h| h.0 == id).unwrap().1
    }
    fn hash(&self, id: u64) -> &str {
        &self.hashes.iter().find(|h| h.0 == id).unwrap().2
    }
    /// thin_send's offline arguments for `id` (and `base`).
    fn send_args(&self, id: u64, base: Option<u64>, extra: &[&str]) -> Vec<String> {
        let mut a = vec![
            "--metadata-dev".to_owned(),
            self.meta.display().to_string(),
            "--data-dev".to_owned(),
            self.data.display().to_string(),
            "--thin-id".to_owned(),
            id.to_string(),
            "--size".to_owned(),
            self.size(id).to_string(),
        ];
        if let Some(b) = base {
            a.extend(["--base-id".to_owned(), b.to_string()]);
        }
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a
    }
}

/// Runs thin_send, returning the stream.
fn send(args: &[String]) -> Vec<u8> {
    let out = Command::new(bin("thin_send")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "thin_send {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs thin_recv with `stream` on stdin: (exit code, stderr).
fn recv(stream: &[u8], args: &[&str]) -> (i32, String) {
    let mut child = Command::new(bin("thin_recv"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The receiver may stop reading early (a refused stream): ignore EPIPE.
    let _ = stdin.write_all(stream);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn recv_ok(stream: &[u8], args: &[&str]) {
    let (code, err) = recv(stream, args);
    assert_eq!(code, 0, "thin_recv {args:?}: {err}");
}

/// The hash of the first `size` bytes of `path` (a 1.x stream does not size
/// the file, so it may be shorter: the rest reads as zeros).
fn hash_sized(path: &Path, size: u64) -> String {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    if f.metadata().unwrap().len() < size {
        f.set_len(size).unwrap();
    }
    sha256_file(path)
}

#[test]
fn full_send_round_trips_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool("b-full-thin", dir.path());
    for (format, extra) in [
        ("1.0", &[][..]),
        ("1.1", &[][..]),
        ("2", &[][..]),
        ("2", &["--compress"][..]),
        ("2", &["--compress=9"][..]),
    ] {
        let mut e = vec!["--format", format];
        e.extend_from_slice(extra);
        let stream = send(&p.send_args(1, None, &e));
        let t = dir.path().join(format!("t-{format}-{}", extra.len()));
        recv_ok(&stream, &[t.to_str().unwrap()]);
        assert_eq!(
            hash_sized(&t, p.size(1)),
            p.hash(1),
            "format {format} {extra:?}"
        );
        if extra.is_empty() && format == "2" {
            // Zero chunks travel as zero records: the stream is not longer
            // than the volume plus record headers.
            assert!(
                stream.len() as u64 <= p.size(1) + 40 * 64,
                "{}",
                stream.len()
            );
        }
    }
}

#[test]
fn full_format_2_stream_overwrites_a_non_empty_target() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool("d-snap-chain", dir.path());
    let t = dir.path().join("target");
    fs::write(&t, vec![0x5a; 20 << 20]).unwrap();
    recv_ok(
        &send(&p.send_args(5, None, &["--format", "2"])),
        &[t.to_str().unwrap()],
    );
    assert_eq!(fs::metadata(&t).unwrap().len(), p.size(5));
    assert_eq!(sha256_file(&t), p.hash(5));
}

/// A chain of incremental streams along the snapshot chain of d-snap-chain,
/// each result equal to the kernel's content of that snapshot.
#[test]
fn incremental_chain_equals_every_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool("d-snap-chain", dir.path());
    for format in ["1.1", "2"] {
        let t = dir.path().join(format!("chain-{format}"));
        let ts = t.to_str().unwrap();
        recv_ok(&send(&p.send_args(0, None, &["--format", format])), &[ts]);
        assert_eq!(hash_sized(&t, p.size(0)), p.hash(0));
        for id in 1..=4 {
            let stream = send(&p.send_args(
                id,
                Some(id - 1),
                &["--format", format, "--compress"][..if format == "2" { 3 } else { 2 }],
            ));
            recv_ok(&stream, &[ts]);
            assert_eq!(
                hash_sized(&t, p.size(id)),
                p.hash(id),
                "format {format}, snapshot {id}"
            );
        }
    }
}

#[test]
fn wrong_base_is_refused_and_target_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool("d-snap-chain", dir.path());
    let t = dir.path().join("t");
    let ts = t.to_str().unwrap();
    recv_ok(&send(&p.send_args(1, None, &["--format", "2"])), &[ts]);
    let stream = send(&p.send_args(3, Some(2), &["--format", "2"]));
    let (code, err) = recv(&stream, &[ts]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("the stream is incremental against ")
            && err.contains(", but the target holds "),
        "{err}"
    );
    assert_eq!(sha256_file(&t), p.hash(1));
    // Without a state to check against (a block device without --state is
    // the same case), an incremental stream is refused too.
    let other = dir.path().join("other");
    let state = dir.path().join("none.state");
    fs::write(&other, b"").unwrap();
    let (code, err) = recv(
        &stream,
        &[other.to_str().unwrap(), "--state", state.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("but the target holds an unknown volume"),
        "{err}"
    );
    // --ignore-base applies it anyway.
    recv_ok(&stream, &[ts, "--ignore-base"]);
}

fn state_token(state: &Path) -> String {
    let text = fs::read_to_string(state).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("pending "))
        .expect(&text);
    let w: Vec<&str> = line.split_whitespace().collect();
    format!("{}:{}:{}", w[1], w[2], w[3])
}

#[test]
fn flipped_byte_and_truncation_are_refused_with_the_offset_and_resume_completes() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool("d-snap-chain", dir.path());
    let t = dir.path().join("t");
    let ts = t.to_str().unwrap();
    let state = dir.path().join("t.thin-state");
    recv_ok(&send(&p.send_args(3, None, &["--format", "2"])), &[ts]);
    let good = send(&p.send_args(4, Some(3), &["--format", "2"]));
    assert!(good.len() > 100_000, "{}", good.len());

    // A flipped byte in the middle: refused, naming a record offset at or
    // below the byte, and the target is not recorded as holding snapshot 4.
    let mut bad = good.clone();
    let at = good.len() / 2;
    bad[at] ^= 0x40;
    let (code, err) = recv(&bad, &[ts]);
    assert_eq!(code, 1, "{err}");
    let off: usize = err
        .strip_prefix("stream offset ")
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        off <= at && at - off <= (1 << 20) + 40,
        "byte {at}, reported {off}: {err}"
    );
    assert!(
        err.contains("\nthe target is incomplete; resume with: thin_send --resume "),
        "{err}"
    );
    let token = state_token(&state);
    assert!(err.contains(&token), "{err}");

    // Resuming from the token the receiver stored completes the transfer.
    let rest = send(&p.send_args(4, Some(3), &["--format", "2", "--resume", &token]));
    assert!(rest.len() < good.len());
    recv_ok(&rest, &[ts]);
    assert_eq!(sha256_file(&t), p.hash(4));
    assert!(!fs::read_to_string(&state).unwrap().contains("pending"));

    // A truncated stream: refused with the offset; resume again.
    recv_ok(&send(&p.send_args(3, None, &["--format", "2"])), &[ts]);
    let cut = good.len() * 2 / 3;
    let (code, err) = recv(&good[..cut], &[ts]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("stream offset ") && err.contains("truncated input"),
        "{err}"
    );
    let token = state_token(&state);
    let rest = send(&p.send_args(4, Some(3), &["--format", "2", "--resume", &token]));
    recv_ok(&rest, &[ts]);
    assert_eq!(sha256_file(&t), p.hash(4));

    // A resume stream for the wrong token is refused by the sender.
    let r = Command::new(bin("thin_send"))
        .args(p.send_args(5, Some(4), &["--format", "2", "--resume", &token]))
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).starts_with("--resume: the token is for source "));
}

#[test]
fn resumed_stream_on_a_target_without_that_unfinished_stream_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool("d-snap-chain", dir.path());
    let t = dir.path().join("t");
    let ts = t.to_str().unwrap();
    recv_ok(&send(&p.send_args(1, None, &["--format", "2"])), &[ts]);
    let (code, err) = recv(&send(&p.send_args(1, None, &["--format", "2"])), &[ts]);
    assert_eq!(code, 0, "{err}");
    let state = dir.path().join("t.thin-state");
    let holds = fs::read_to_string(&state).unwrap();
    let source = holds
        .lines()
        .nth(1)
        .unwrap()
        .strip_prefix("holds ")
        .unwrap()
        .to_owned();
    let stream = send(&p.send_args(
        1,
        None,
        &["--format", "2", "--resume", &format!("{source}:none:65536")],
    ));
    let (code, err) = recv(&stream, &[ts]);
    assert_eq!(code, 1);
    assert!(
        err.ends_with("but the target has no unfinished stream\n"),
        "{err}"
    );
}

#[test]
fn empty_input_and_format_choice() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t");
    let ts = t.to_str().unwrap();
    let (code, err) = recv(b"", &[ts]);
    assert_eq!((code, err.as_str()), (0, "empty input: nothing applied\n"));
    let (code, err) = recv(b"", &[ts, "--accept-stream-format=1.1"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "stream offset 0: empty input, but only format 1.1 is accepted\n"
    );
    let (code, err) = recv(b"", &[ts, "--accept-stream-format", "made-up"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown stream format specifier \"made-up\""),
        "{err}"
    );
    let r = crate::util::run("thin_send_recv", &["x"]);
    r.expect_code(2);
    assert!(r.stderr().contains("use --send or --receive"));
    let r = crate::util::run("thin_send", &["-v"]);
    r.expect_code(0);
    assert_eq!(r.stdout(), format!("{}\n", env!("CARGO_PKG_VERSION")));
}

/// LINBIT's binary, beside the repository as CI lays it out.
fn reference() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/thin_send_recv-1.1.3");
    p.is_file().then_some(p)
}

/// Stub `lvs`, `dmsetup` and `thin_dump` for the reference: `lvs` reports
/// one thin LV whose VG is a path from /dev to `vgdir` (the receiver opens
/// /dev/VG/LV) and whose dm path is `dm_path`; `dmsetup` does nothing;
/// `thin_dump` dumps `meta` with our thin_dump (no held snapshot in it).
fn stubs(dir: &Path, vgdir: &Path, lv: &str, dm_path: &Path, thin_id: u64, meta: &Path) -> PathBuf {
    let stub = dir.join("stubs");
    fs::create_dir_all(&stub).unwrap();
    let vg = format!("..{}", vgdir.display());
    let lvs = format!(
        "#!/bin/sh\ncase \"$*\" in\n*vg_name*) echo \"  {vg} {lv} pool {} {thin_id} Vwi-a-tz--\";;\n*) echo \"  {}/pool\";;\nesac\n",
        dm_path.display(),
        dir.display()
    );
    let dump = format!(
        "#!/bin/sh\nexec {} --dev-id {thin_id} {}\n",
        bin("thin_dump").display(),
        meta.display()
    );
    for (name, body) in [
        ("lvs", lvs.as_str()),
        ("dmsetup", "#!/bin/sh\nexit 0\n"),
        ("thin_dump", &dump),
    ] {
        let p = stub.join(name);
        fs::write(&p, body).unwrap();
        Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    }
    stub
}

#[test]
fn interop_with_reference_thin_send_recv() {
    let Some(reference) = reference() else {
        eprintln!("skipped: ../shared/reference/thin_send_recv-1.1.3 is not present");
        return;
    };
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let p = pool("d-snap-chain", dir.path());
    // Our 1.1 stream into the reference receiver (a full send has no UNMAP,
    // which the reference could only apply to a block device).
    let target = dir.path().join("lv");
    fs::write(&target, b"").unwrap();
    let stub = stubs(dir.path(), dir.path(), "lv", &target, 5, &p.meta);
    let path = format!(
        "{}:{}",
        stub.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ours = send(&p.send_args(5, None, &["--format", "1.1"]));
    let mut child = Command::new(&reference)
        .args(["-r", "vg/lv"])
        .env("PATH", &path)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&ours).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "reference thin_recv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(hash_sized(&target, p.size(5)), p.hash(5));

    // The reference's full send of that volume (read from the file we just
    // made, as it reads a thin LV) into our receiver.
    let out = Command::new(&reference)
        .args(["-s", "vg/lv"])
        .env("PATH", &path)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reference thin_send: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout[..8],
        [0x24, 0xc4, 0xf0, 0x2a, 0xae, 0x2e, 0x4f, 0xa9]
    );
    let back = dir.path().join("back");
    recv_ok(&out.stdout, &[back.to_str().unwrap()]);
    assert_eq!(hash_sized(&back, p.size(5)), p.hash(5));
    // And our reading of their stream equals our own stream byte for byte
    // (same records, in the same order).
    assert_eq!(out.stdout, ours);
}

/// A block-device target (a loop device over a file, when this machine lets
/// us make one): DATA writes, ZERO as BLKZEROOUT, UNMAP as BLKDISCARD, with a
/// state file given explicitly.
#[test]
fn block_device_target_through_a_loop_device() {
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let p = pool("d-snap-chain", dir.path());
    let backing = dir.path().join("loop.img");
    fs::File::create(&backing)
        .unwrap()
        .set_len(p.size(1))
        .unwrap();
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&backing)
        .output();
    let dev = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => {
            eprintln!("skipped: no loop device could be set up (needs root and losetup)");
            return;
        }
    };
    let state = dir.path().join("loop.state");
    let st = state.to_str().unwrap();
    let result = std::panic::catch_unwind(|| {
        recv_ok(
            &send(&p.send_args(1, None, &["--format", "2"])),
            &[&dev, "--state", st],
        );
        assert_eq!(sha256_file(Path::new(&dev)), p.hash(1));
        for id in 2..=3 {
            let s = send(&p.send_args(id, Some(id - 1), &["--format", "2", "--compress"]));
            recv_ok(&s, &[&dev, "--state", st]);
            assert_eq!(sha256_file(Path::new(&dev)), p.hash(id), "snapshot {id}");
        }
        // Without --state a block device has no record of its base.
        let s = send(&p.send_args(4, Some(3), &["--format", "2"]));
        let (code, err) = recv(&s, &[&dev]);
        assert_eq!(code, 1);
        assert!(err.contains("there is no --state file"), "{err}");
        // The 1.1 stream of the same step applies (UNMAP as BLKDISCARD).
        recv_ok(
            &send(&p.send_args(4, Some(3), &["--format", "1.1"])),
            &[&dev],
        );
        assert_eq!(sha256_file(Path::new(&dev)), p.hash(4));
    });
    let _ = Command::new("losetup").args(["-d", &dev]).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn man_pages_name_every_option() {
    for tool in ["thin_send", "thin_recv", "thin_send_recv"] {
        let missing = crate::util::man::missing_from_page(tool).unwrap();
        assert!(missing.is_empty(), "man/{tool}.8 lacks {missing:?}");
    }
}

/// Our incremental 1.1 streams (with UNMAP records) applied by the reference
/// thin_recv to a loop device (its `/dev/VG/LV` is `/dev/./loopN`), each
/// result equal to the kernel's content of that snapshot.
#[test]
fn reference_thin_recv_applies_our_incremental_streams_to_a_block_device() {
    let Some(reference) = reference() else {
        eprintln!("skipped: ../shared/reference/thin_send_recv-1.1.3 is not present");
        return;
    };
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let p = pool("d-snap-chain", dir.path());
    let backing = dir.path().join("loop.img");
    fs::File::create(&backing)
        .unwrap()
        .set_len(p.size(0))
        .unwrap();
    let dev = match Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&backing)
        .output()
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => {
            eprintln!("skipped: no loop device could be set up (needs root and losetup)");
            return;
        }
    };
    let name = dev.trim_start_matches("/dev/").to_owned();
    let stub = dir.path().join("stubs");
    fs::create_dir_all(&stub).unwrap();
    let lvs = format!("#!/bin/sh\necho \"  . {name} pool {dev} 1 Vwi-a-tz--\"\n");
    fs::write(stub.join("lvs"), lvs).unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(stub.join("lvs"))
        .status()
        .unwrap();
    let path = format!(
        "{}:{}",
        stub.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let result = std::panic::catch_unwind(|| {
        for id in 0..=4u64 {
            let base = id.checked_sub(1);
            let stream = send(&p.send_args(id, base, &["--format", "1.1"]));
            let mut child = Command::new(&reference)
                .args(["-r", "vg/lv"])
                .env("PATH", &path)
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(&stream).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "reference thin_recv, snapshot {id}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(sha256_file(Path::new(&dev)), p.hash(id), "snapshot {id}");
        }
    });
    let _ = Command::new("losetup").args(["-d", &dev]).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// The reference thin_send's incremental streams (through a stub `thin_delta`
/// running ours) applied by our thin_recv: the chain 0 → 1 → 2 → 3 ends equal
/// to each snapshot.
#[test]
fn our_thin_recv_applies_reference_incremental_streams() {
    let Some(reference) = reference() else {
        eprintln!("skipped: ../shared/reference/thin_send_recv-1.1.3 is not present");
        return;
    };
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let p = pool("d-snap-chain", dir.path());
    // Each snapshot's content as a file, for the reference to read as its LV.
    for id in 0..=3u64 {
        let f = dir.path().join(format!("snap{id}"));
        recv_ok(
            &send(&p.send_args(id, None, &["--format", "2"])),
            &[f.to_str().unwrap()],
        );
    }
    let stub = dir.path().join("stubs");
    fs::create_dir_all(&stub).unwrap();
    let d = dir.path().display();
    let lvs = format!(
        "#!/bin/sh\nfor last; do :; done\ncase \"$*\" in\n*vg_name*) n=${{last#vg/snap}}; echo \"  vg snap$n pool {d}/snap$n $n Vri-a-tz-k\";;\n*) echo \"  {d}/pool\";;\nesac\n"
    );
    let delta = format!(
        "#!/bin/sh\nexec {} --snap1 \"$3\" --snap2 \"$5\" {}\n",
        bin("thin_delta").display(),
        p.meta.display()
    );
    for (name, body) in [
        ("lvs", lvs.as_str()),
        ("dmsetup", "#!/bin/sh\nexit 0\n"),
        ("lvchange", "#!/bin/sh\nexit 0\n"),
        ("thin_delta", &delta),
    ] {
        fs::write(stub.join(name), body).unwrap();
        Command::new("chmod")
            .arg("+x")
            .arg(stub.join(name))
            .status()
            .unwrap();
    }
    let path = format!(
        "{}:{}",
        stub.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let target = dir.path().join("target");
    fs::copy(dir.path().join("snap0"), &target).unwrap();
    for id in 1..=3u64 {
        let out = Command::new(&reference)
            .args(["-s", &format!("vg/snap{}", id - 1), &format!("vg/snap{id}")])
            .env("PATH", &path)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "reference thin_send {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        recv_ok(
            &out.stdout,
            &[target.to_str().unwrap(), "--accept-stream-format=1.1"],
        );
        assert_eq!(sha256_file(&target), p.hash(id), "snapshot {id}");
    }
}

/// Live names without a kernel: usage errors, dm paths that are not thin
/// devices, and LVM names through a stub `lvs` (a linear LV, a failing
/// lvs). Nothing is created and nothing written to stdout.
#[test]
fn live_names_are_resolved_or_refused() {
    let r = crate::util::run("thin_send", &["a", "b", "c"]);
    r.expect_code(2);
    assert!(
        r.stderr()
            .contains("one or two positional arguments expected"),
        "{}",
        r.stderr()
    );
    let r = crate::util::run("thin_send", &["--thin-id", "3", "vg/lv"]);
    r.expect_code(2);
    assert!(
        r.stderr().contains("go with --metadata-dev"),
        "{}",
        r.stderr()
    );

    let missing = "/dev/mapper/thintools-test-no-such-device";
    let r = crate::util::run("thin_send", &[missing]);
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        format!("{missing}: No such file or directory (os error 2)\n")
    );
    assert!(r.stdout().is_empty());
    let r = crate::util::run("thin_recv", &[missing]);
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        format!("{missing}: No such file or directory (os error 2)\n")
    );
    assert!(!Path::new(missing).exists());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    fs::write(&file, b"x").unwrap();
    let r = crate::util::run("thin_send", &[file.to_str().unwrap()]);
    r.expect_code(1);
    assert_eq!(
        r.stderr(),
        format!("{}: not a block device\n", file.display())
    );

    // A stub lvs: "vg/lin" is a linear LV, anything else fails.
    let stub = dir.path().join("lvs");
    fs::write(
        &stub,
        "#!/bin/sh\n[ \"$1\" = --version ] && exit 0\n\
         case \"$*\" in *vg/lin) echo '  vg|lin||/dev/mapper/vg-lin||-wi-a-----';; *) exit 5;; esac\n",
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&stub).status().unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |tool: &str, args: &[&str]| {
        let out = Command::new(bin(tool))
            .args(args)
            .env("PATH", &path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.stdout,
        )
    };
    let (code, err, out) = run("thin_send", &["vg/lin"]);
    assert_eq!(
        (code, err.as_str()),
        (
            Some(1),
            "vg/lin: not a thin volume (lvs reports no thin pool)\n"
        )
    );
    assert!(out.is_empty());
    let (code, err, _) = run("thin_send", &["vg/base", "/dev/vg/lin"]);
    assert_eq!(
        (code, err.as_str()),
        (Some(1), "vg/base: lvs failed with exit status 5\n")
    );
    let (code, err, _) = run("thin_recv", &["vg/other"]);
    assert_eq!(
        (code, err.as_str()),
        (Some(1), "vg/other: lvs failed with exit status 5\n")
    );
    assert!(!Path::new("vg").exists());
}
