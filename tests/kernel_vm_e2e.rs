//! End-to-end tests that boot the real kernel (harness: tests/util/vm.rs,
//! scripts/kernel-vm/): our thin_delta and thin_ls on the held metadata
//! snapshot of a live pool under writes, and the kernel's acceptance of
//! metadata rebuilt by our thin_repair. They run only with THINTOOLS_VM_TESTS=1.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::kernel_vm::reactivate_and_check;
use crate::util;
use crate::util::vm::{self, parse_dump, Guest, Mappings};

/// Debian's thin-provisioning-tools 0.9.0 (installed by scripts/setup.sh).
const DEBIAN_CHECK: &str = "/usr/sbin/thin_check";

/// Runs one of our tools on the host.
fn run_ours(tool: &str, args: &[&std::ffi::OsStr]) -> util::Run {
    let out = std::process::Command::new(util::bin(tool))
        .args(args)
        .output()
        .expect("spawn tool");
    util::Run {
        cmdline: format!(
            "{tool} {}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        out,
    }
}

/// The guest side of `live_delta_and_ls_on_metadata_snapshot` (pool blocks
/// of 128 sectors = 64 KiB):
/// - dev 3 is written by a background writer from before the snapshot
///   until after the tools ran (256 KiB direct writes round its first 16 MiB);
/// - dev 1 (32 MiB) gets virtual blocks 0..399; dev 2 is its snapshot;
/// - between the snapshot and the reservation (transaction 7): dev 1
///   rewrites 10..14 and 60 and provisions 420..423 and 480; dev 2 rewrites
///   40..41 and 60 and provisions 450..451 and 480;
/// - after the reservation (transaction 8), writes that the snapshot must
///   not show: dev 1 block 100..101, dev 2 blocks 300 and 500;
/// - then thin_delta -m (plain and --verbose), thin_ls -m and thin_dump -m
///   run on the live metadata device, and the reservation is released.
const DELTA_SCRIPT: &str = r#"
. /job/lib.sh
pool_start 128 0
thin_new 3 16
thin_up 3
touch /tmp/writing
(
    i=0
    while [ -e /tmp/writing ]; do
        slot=$((i % 64))
        chunks 3 $i $((slot * 64)) 64 | dd of=/dev/mapper/thin3 bs=256K seek=$slot count=1 \
            iflag=fullblock oflag=direct conv=notrunc 2>/dev/null
        i=$((i + 1))
    done
    echo $i > /tmp/writer.count
) &
writer=$!

thin_new 1 32
thin_up 1
qdd if=/dev/zero of=/dev/mapper/thin1 bs=1M count=25 oflag=direct conv=notrunc
snap_new 2 1
thin_up 2
note "origin filled and snapshot taken at $(elapsed) s"

put_blocks 1 2 10 5
put_blocks 1 2 60 1
put_blocks 1 2 420 4
put_blocks 1 2 480 1
put_blocks 2 2 40 2
put_blocks 2 2 60 1
put_blocks 2 2 450 2
put_blocks 2 2 480 1
pool_msg set_transaction_id 0 7
pool_msg reserve_metadata_snap
dmsetup status pool > "$OUT/status-reserved.txt"

put_blocks 1 3 100 2
put_blocks 2 3 300 1
put_blocks 2 3 500 1
pool_msg set_transaction_id 7 8
note "reserved and changed at $(elapsed) s"

tool() {
    name=$1
    shift
    rc=0
    "$@" > "$OUT/$name.out" 2> "$OUT/$name.err" || rc=$?
    echo $rc > "$OUT/$name.rc"
}
tool delta thin_delta -m --thin1 1 --thin2 2 "$META"
tool delta-verbose thin_delta -m --verbose --thin1 1 --thin2 2 "$META"
tool ls thin_ls -m -o DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS "$META"
tool dump thin_dump -m "$META"
if kill -0 $writer 2>/dev/null; then echo yes; else echo no; fi > "$OUT/writer-running.txt"
note "tools done at $(elapsed) s"

pool_msg release_metadata_snap
dmsetup status pool > "$OUT/status-released.txt"
rm /tmp/writing
wait $writer
cp /tmp/writer.count "$OUT/writer.count"
for d in $(dmsetup ls | awk '$1 ~ /^thin/ { print $1 }'); do show dmsetup remove "$d"; done
pool_stop
note "pool down at $(elapsed) s"
"#;

/// One thin_delta element: (kind, begin, length).
type Delta = (&'static str, u64, u64);

/// The deltas (kind, begin, length) between two mappings, classified block
/// by block and coalesced by kind (thin_delta reaches the same result
/// through runs; this is an independent formulation for the host side).
fn block_deltas(left: &Mappings, right: &Mappings) -> Vec<Delta> {
    let mut keys: Vec<u64> = left.keys().chain(right.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out: Vec<Delta> = Vec::new();
    for b in keys {
        let kind = match (left.get(&b), right.get(&b)) {
            (Some(l), Some(r)) if l.0 == r.0 => "same",
            (Some(_), Some(_)) => "different",
            (Some(_), None) => "left_only",
            _ => "right_only",
        };
        match out.last_mut() {
            Some(last) if last.0 == kind && last.1 + last.2 == b => last.2 += 1,
            _ => out.push((kind, b, 1)),
        }
    }
    out
}

fn status_fields(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

#[test]
fn live_delta_and_ls_on_metadata_snapshot() {
    if !vm::vm_enabled() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let meta = work.path().join("meta.img");
    let data = work.path().join("data.img");
    fs::File::create(&meta).unwrap().set_len(8 << 20).unwrap();
    fs::File::create(&data).unwrap().set_len(128 << 20).unwrap();

    let started = std::time::Instant::now();
    let run = Guest::new(DELTA_SCRIPT)
        .disk("meta", &meta)
        .disk("data", &data)
        .tool("thin_delta")
        .tool("thin_ls")
        .tool("thin_dump")
        .timeout(300)
        .run(work.path());
    run.expect_ok();
    let ctx = run.describe();
    eprintln!(
        "{}\nwriter: {} writes; guest {:?} s, wall {:.1} s",
        run.notes().join("\n"),
        run.read("writer.count").trim(),
        run.guest_seconds,
        started.elapsed().as_secs_f64()
    );

    // The tools ran on a held snapshot of a pool under writes.
    let reserved = status_fields(&run.read("status-reserved.txt"));
    assert_eq!(reserved[3], "7", "transaction at the reservation\n{ctx}");
    assert!(
        reserved[6].parse::<u64>().is_ok(),
        "held root: {reserved:?}"
    );
    assert_eq!(
        status_fields(&run.read("status-released.txt"))[6],
        "-",
        "released"
    );
    assert_eq!(
        run.read("writer-running.txt").trim(),
        "yes",
        "the background writer had stopped before the tools ran"
    );
    for t in ["delta", "delta-verbose", "ls", "dump"] {
        assert_eq!(
            run.read(&format!("{t}.rc")).trim(),
            "0",
            "{t} failed in the guest:\n{}",
            run.read(&format!("{t}.err"))
        );
    }

    // The blocks written between the snapshot and the reservation, and
    // nothing written after it.
    let expected: Vec<Delta> = vec![
        ("same", 0, 10),
        ("different", 10, 5),
        ("same", 15, 25),
        ("different", 40, 2),
        ("same", 42, 18),
        ("different", 60, 1),
        ("same", 61, 339),
        ("left_only", 420, 4),
        ("right_only", 450, 2),
        ("different", 480, 1),
    ];
    let head = "<superblock uuid=\"\" time=\"1\" transaction=\"7\" data_block_size=\"128\" nr_data_blocks=\"0\">\n  <diff left=\"1\" right=\"2\">\n";
    let tail = "  </diff>\n</superblock>";
    let mut want = String::from(head);
    for (kind, begin, len) in &expected {
        want.push_str(&format!(
            "    <{kind} begin=\"{begin}\" length=\"{len}\"/>\n"
        ));
    }
    want.push_str(tail);
    let delta = run.read("delta.out");
    assert_eq!(delta.trim_end_matches('\n'), want, "thin_delta -m output");

    // The snapshot's mappings (thin_dump -m) agree with the written set,
    // and --verbose names their data blocks.
    let d = parse_dump(&run.read("dump.out"));
    assert_eq!(d.transaction, 7);
    assert_eq!(d.devices.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    let (m1, m2) = (&d.devices[&1].mappings, &d.devices[&2].mappings);
    assert_eq!(block_deltas(m1, m2), expected, "deltas of thin_dump -m");
    let mut want_v = String::from(head);
    for (kind, begin, len) in &expected {
        let range = match *kind {
            "different" => format!(
                "left_data_begin=\"{}\" right_data_begin=\"{}\"",
                m1[begin].0, m2[begin].0
            ),
            "right_only" => format!("data_begin=\"{}\"", m2[begin].0),
            _ => format!("data_begin=\"{}\"", m1[begin].0),
        };
        want_v.push_str(&format!(
            "    <{kind}>\n      <range begin=\"{begin}\" {range} length=\"{len}\"/>\n    </{kind}>\n"
        ));
    }
    want_v.push_str(tail);
    let verbose = run.read("delta-verbose.out");
    assert_eq!(
        verbose.trim_end_matches('\n'),
        want_v,
        "thin_delta -m --verbose output"
    );

    // thin_ls -m: exclusive = different + one-sided blocks, shared = same.
    let ls = run.read("ls.out");
    let lines: Vec<&str> = ls.lines().collect();
    assert!(
        lines.iter().all(|l| l.ends_with(' ')),
        "thin_ls lines:\n{ls}"
    );
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["DEV", "MAPPED_BLOCKS", "EXCLUSIVE_BLOCKS", "SHARED_BLOCKS"]
    );
    let rows: BTreeMap<u32, [u64; 3]> = lines[1..]
        .iter()
        .map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .map(|v| v.parse().expect("thin_ls number"))
                .collect();
            assert_eq!(f.len(), 4, "thin_ls row {l:?}");
            (f[0] as u32, [f[1], f[2], f[3]])
        })
        .collect();
    let count = |kinds: &[&str]| -> u64 {
        expected
            .iter()
            .filter(|e| kinds.contains(&e.0))
            .map(|e| e.2)
            .sum()
    };
    assert_eq!(count(&["same"]), 392);
    assert_eq!(
        rows[&1],
        [405, count(&["different", "left_only"]), count(&["same"])],
        "thin_ls dev 1\n{ls}"
    );
    assert_eq!(
        rows[&2],
        [403, count(&["different", "right_only"]), count(&["same"])],
        "thin_ls dev 2\n{ls}"
    );
    let n3 = d.devices[&3].mappings.len() as u64;
    assert!(n3 > 0, "the writer had provisioned blocks of dev 3");
    assert_eq!(rows[&3], [n3, n3, 0], "thin_ls dev 3 (writer)\n{ls}");
    assert_eq!(rows.len(), 3, "{ls}");
    for (id, dev) in &d.devices {
        assert_eq!(rows[id][0], dev.mappings.len() as u64, "dev {id}");
    }

    // After the clean shutdown, the live trees carry the later writes.
    run_ours("thin_check", &[meta.as_os_str()]).expect_code(0);
    let live = run_ours("thin_dump", &[meta.as_os_str()]);
    live.expect_code(0);
    let f = parse_dump(&live.stdout());
    assert_eq!(f.transaction, 8);
    let (l1, l2) = (&f.devices[&1].mappings, &f.devices[&2].mappings);
    let changed: Vec<u64> = block_deltas(l1, l2)
        .iter()
        .filter(|e| e.0 != "same")
        .flat_map(|e| e.1..e.1 + e.2)
        .collect();
    let mut want_changed: Vec<u64> = expected
        .iter()
        .filter(|e| e.0 != "same")
        .flat_map(|e| e.1..e.1 + e.2)
        .chain([100, 101, 300, 500])
        .collect();
    want_changed.sort_unstable();
    assert_eq!(changed, want_changed, "live deltas after the reservation");
}

/// Kernel acceptance of metadata rebuilt by our thin_repair: the
/// fixture's superblock is zeroed (our thin_check fails on it), thin_repair
/// rebuilds the pool from the scan with the values the superblock held
/// given as overrides, the result reads like the original, and then
/// [`reactivate_and_check`] boots the kernel on it (every thin's content as
/// recorded, more writes and a snapshot, clean shutdown, our thin_check);
/// finally Debian's thin_check must accept it too.
#[test]
fn repaired_pool_reactivates_d_snap_chain() {
    if !vm::vm_enabled() {
        return;
    }
    assert!(
        Path::new(DEBIAN_CHECK).exists(),
        "{DEBIAN_CHECK} is missing: install thin-provisioning-tools (scripts/setup.sh)"
    );
    let work = tempfile::tempdir().expect("tempdir");
    let fx = vm::Fixture::load("d-snap-chain");
    let orig = fx.unpack("meta", work.path());
    let size = fs::metadata(&orig).unwrap().len();

    let damaged = work.path().join("damaged.img");
    fs::copy(&orig, &damaged).unwrap();
    {
        let mut f = fs::OpenOptions::new().write(true).open(&damaged).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(&[0u8; 4096]).unwrap();
    }
    let check = run_ours("thin_check", &[damaged.as_os_str()]);
    check.expect_code(1);
    assert!(
        check.stderr().contains("superblock"),
        "{}",
        check.describe()
    );

    let repaired = work.path().join("repaired.img");
    fs::File::create(&repaired).unwrap().set_len(size).unwrap();
    let (bs, tid, nr) = (
        fx.block_size().to_string(),
        fx.num("transaction_id").to_string(),
        fx.num("data_blocks").to_string(),
    );
    let args: Vec<&std::ffi::OsStr> = vec![
        "-i".as_ref(),
        damaged.as_os_str(),
        "-o".as_ref(),
        repaired.as_os_str(),
        "--data-block-size".as_ref(),
        bs.as_ref(),
        "--transaction-id".as_ref(),
        tid.as_ref(),
        "--nr-data-blocks".as_ref(),
        nr.as_ref(),
    ];
    run_ours("thin_repair", &args).expect_code(0);

    let before = run_ours("thin_dump", &[orig.as_os_str()]);
    before.expect_code(0);
    let after = run_ours("thin_dump", &[repaired.as_os_str()]);
    after.expect_code(0);
    assert_eq!(
        parse_dump(&after.stdout()),
        parse_dump(&before.stdout()),
        "the repaired metadata reads like the original"
    );

    let started = std::time::Instant::now();
    reactivate_and_check(&fx, &repaired, work.path());
    eprintln!(
        "wall {:.1} s (including any wait for another VM test)",
        started.elapsed().as_secs_f64()
    );

    let deb = std::process::Command::new(DEBIAN_CHECK)
        .arg(&repaired)
        .output()
        .expect("spawn Debian thin_check");
    assert!(
        deb.status.success(),
        "Debian's thin_check rejects the repaired pool after use:\n{}{}",
        String::from_utf8_lossy(&deb.stdout),
        String::from_utf8_lossy(&deb.stderr)
    );
}
