//! thin_send / thin_recv between two live plain-dm pools (real kernel under
//! qemu; harness tests/util/vm.rs; runs only with THINTOOLS_VM_TESTS=1):
//! full and incremental streams in formats 1.1 and 2 between snapshots of a
//! thin written and discarded between them, a stream cut half way and
//! resumed, damaged and truncated streams, a wrong base, and a sender
//! killed with SIGKILL (then rerun) or stopped by caught signals while it holds the
//! metadata snapshot. Every replica must hash like its source snapshot, and
//! no metadata snapshot may stay reserved.

use std::fs;

use crate::util::vm::{self as util_vm, Guest};

/// Pool `pool` (64 KiB blocks) holds thin 1 and its read-only snapshots 2,
/// 3 and 4 (writes and discards on thin 1 between them); pool `pool2` (64
/// KiB blocks) holds the replicas: thin 10 (format 1.1, full then
/// incremental), 11 (format 2 with a state file), 12 (format 2 cut and
/// resumed), 13 (after the SIGKILLed sender).
const TWO_POOLS: &str = r#"
. /job/lib.sh
pool_start 128 0
show dmsetup create pool2 --table "0 $(blockdev --getsz /dev/disk/data2) thin-pool /dev/disk/meta2 /dev/disk/data2 128 0 0"
SZ=$((32 * 2048))
thin_new 1 32
thin_up 1
put 1 1 0 1024
put 1 1 4096 512
snapshot() {
    snap_new "$1" 1
    show dmsetup create "snap$1" --readonly --table "0 $SZ thin /dev/mapper/pool $1"
    sha256sum < "/dev/mapper/snap$1" | cut -d' ' -f1 > "$OUT/snap$1.sha"
}
replica() {
    show dmsetup message pool2 0 create_thin "$1"
    show dmsetup create "r$1" --table "0 $SZ thin /dev/mapper/pool2 $1"
}
hash() { sha256sum < "/dev/mapper/$1" | cut -d' ' -f1 > "$OUT/$2.sha"; }
# wait_bounded PID: waits for PID, at most ~60 s (then kills it and says so)
wait_bounded() {
    n=0
    while kill -0 "$1" 2>/dev/null && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
    if kill -0 "$1" 2>/dev/null; then note "pid $1 did not end"; kill -9 "$1"; fi
    wait "$1"
}
held() { echo "$(dmsetup status pool | awk '{ print $7 }')$(dmsetup status pool2 | awk '{ print $7 }')"; }
# step NAME COMMAND...: runs a shell pipeline, recording status, stderr and
# both pools' held roots ("--": none).
step() {
    name=$1
    shift
    rc=0
    t0=$(elapsed)
    sh -c "$*" 2> "$OUT/$name.err" || rc=$?
    note "$name: status $rc, from $t0 s to $(elapsed) s"
    echo $rc > "$OUT/$name.rc"
    held > "$OUT/$name.held"
}
snapshot 2
replica 10
replica 11
replica 12
replica 13

# Full sends of snapshot 2: format 1.1 (the default) to a fresh thin, and
# format 2 with a state file.
step full "thin_send /dev/mapper/snap2 | thin_recv /dev/mapper/r10"
hash r10 full
step full2 "thin_send --format 2 /dev/mapper/snap2 | thin_recv --state /tmp/r11.state /dev/mapper/r11"
hash r11 full2

# Writes (new blocks, overwrites of shared ones) and discards (whole and
# partial blocks) on thin 1, snapshot 3, incremental sends 2 -> 3.
put 1 2 100 200
put 1 2 6000 64
trim 1 $((16 * 65536)) $((8 * 65536))
trim 1 $((70 * 65536 + 4096)) $((2 * 65536))
snapshot 3
step incr "thin_send /dev/mapper/snap2 /dev/mapper/snap3 | thin_recv /dev/mapper/r10"
hash r10 incr
put 1 3 3000 100
trim 1 0 $((4 * 65536))
snapshot 4
# An incremental 3 -> 4 onto replica 11, which holds 2: refused.
step wrongbase "thin_send --format 2 /dev/dm-$(dmsetup info -c --noheadings -o minor snap3) /dev/mapper/snap4 | thin_recv --state /tmp/r11.state /dev/mapper/r11"
hash r11 wrongbase
step incr2 "thin_send --format 2 /dev/mapper/snap2 /dev/mapper/snap3 | thin_recv --state /tmp/r11.state /dev/mapper/r11"
hash r11 incr2
step incr2b "thin_send --format 2 /dev/mapper/snap3 /dev/mapper/snap4 | thin_recv --state /tmp/r11.state /dev/mapper/r11"
hash r11 incr2b
step incr1b "thin_send /dev/mapper/snap3 /dev/mapper/snap4 | thin_recv /dev/mapper/r10"
hash r10 incr1b

# Damaged streams (format 2): one flipped byte, a cut; never applied as
# complete.
step stream "thin_send --format 2 /dev/mapper/snap4 > /tmp/s4"
wc -c < /tmp/s4 > "$OUT/stream.size"
cp /tmp/s4 /tmp/flip
printf '\377' | dd of=/tmp/flip bs=1 seek=300000 conv=notrunc 2>/dev/null
step flipped "thin_recv --state /tmp/rf.state /tmp/rf.img < /tmp/flip"
head -c 2500000 /tmp/s4 > /tmp/cut
step cut "thin_recv --state /tmp/rc.state /tmp/rc.img < /tmp/cut"

# A stream killed half way (the pipe closed under the sender), then resumed
# with the token the receiver printed.
step killed "thin_send --format 2 /dev/mapper/snap4 | head -c 3000000 | thin_recv --state /tmp/r12.state /dev/mapper/r12"
token=$(sed -n 's/.*thin_send --resume \([^ ]*\).*/\1/p' "$OUT/killed.err" | head -n 1)
echo "$token" > "$OUT/token"
step resumed "thin_send --format 2 --resume $token /dev/mapper/snap4 | thin_recv --state /tmp/r12.state /dev/mapper/r12"
hash r12 resumed

# SIGKILL while the sender holds the metadata snapshot (blocked on a pipe
# nobody reads): the reservation stays; the next run releases it.
mkfifo /tmp/fifo
sleep 600 < /tmp/fifo &
reader=$!
thin_send /dev/mapper/snap4 > /tmp/fifo 2>/dev/null &
pid=$!
n=0
while [ "$(held)" = -- ] && [ $n -lt 3000 ]; do n=$((n + 1)); done
kill -9 $pid
wait_bounded $pid 2>/dev/null || true
held > "$OUT/sigkill.held"
note "SIGKILL done at $(elapsed) s"
kill $reader
wait $reader 2>/dev/null || true
step rerun "thin_send /dev/mapper/snap4 | thin_recv /dev/mapper/r13"
hash r13 rerun

# Caught signals while blocked the same way (SIGTERM, and some more of
# LINBIT's list; SIGSEGV is caught once): released on the way out, then
# the process dies of the signal.
signalled() {
    sleep 600 < /tmp/fifo &
    reader=$!
    thin_send /dev/mapper/snap4 > /tmp/fifo 2> "$OUT/sig$1.err" &
    pid=$!
    n=0
    while [ "$(held)" = -- ] && [ $n -lt 3000 ]; do n=$((n + 1)); done
    held > "$OUT/sig$1.before"
    kill -"$1" $pid
    rc=0
    wait_bounded $pid || rc=$?
    echo $rc > "$OUT/sig$1.rc"
    held > "$OUT/sig$1.held"
    kill $reader
    wait $reader 2>/dev/null || true
    note "SIG$1 done at $(elapsed) s"
}
for sig in TERM HUP USR1 SEGV; do signalled $sig; done

for d in snap2 snap3 snap4 thin1 r10 r11 r12 r13; do dmsetup remove $d; done
show dmsetup remove pool2
pool_stop
"#;

#[test]
fn send_recv_between_live_pools() {
    if !util_vm::vm_enabled() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let mut g = Guest::new(TWO_POOLS)
        .tool("thin_send")
        .tool("thin_recv")
        .timeout(600);
    for (name, mib) in [("meta", 8), ("data", 128), ("meta2", 8), ("data2", 192)] {
        let p = work.path().join(format!("{name}.img"));
        fs::File::create(&p).unwrap().set_len(mib << 20).unwrap();
        g = g.disk(name, &p);
    }
    let run = g.run(work.path());
    for l in run.console.lines().filter(|l| l.starts_with("### ")) {
        eprintln!("{l}");
    }
    run.expect_ok();
    let ctx = run.describe();
    let read = |n: &str| run.read(n).trim().to_string();
    let ok = |n: &str| {
        run.expect_step_ok(n);
        assert_eq!(
            read(&format!("{n}.held")),
            "--",
            "{n} left a metadata snapshot held"
        );
    };
    let failed = |n: &str, msg: &str| {
        let err = read(&format!("{n}.err"));
        assert_ne!(read(&format!("{n}.rc")), "0", "{n} succeeded: {err}");
        assert!(err.contains(msg), "{n}: want {msg:?} in {err:?}");
        assert_eq!(
            read(&format!("{n}.held")),
            "--",
            "{n} left a metadata snapshot held"
        );
    };
    let same = |replica: &str, snap: &str| {
        assert_eq!(
            read(&format!("{replica}.sha")),
            read(&format!("{snap}.sha")),
            "{replica} differs from {snap}\n{ctx}"
        );
    };
    let shas: std::collections::BTreeSet<String> = ["snap2", "snap3", "snap4"]
        .iter()
        .map(|s| read(&format!("{s}.sha")))
        .collect();
    assert_eq!(shas.len(), 3, "the snapshots are not all different");

    for (step, snap) in [
        ("full", "snap2"),
        ("full2", "snap2"),
        ("incr", "snap3"),
        ("incr2", "snap3"),
        ("incr2b", "snap4"),
        ("incr1b", "snap4"),
        ("resumed", "snap4"),
        ("rerun", "snap4"),
    ] {
        ok(step);
        same(step, snap);
    }

    failed("wrongbase", "refusing to apply it");
    same("wrongbase", "snap2");

    ok("stream");
    let size: u64 = read("stream.size").parse().unwrap();
    assert!(
        size > 3_000_000,
        "stream of {size} bytes is too short for the cuts"
    );
    failed("flipped", "stream offset ");
    failed("cut", "stream offset ");
    let cut = read("cut.err");
    assert!(cut.contains("thin_send --resume "), "{cut}");

    let killed = read("killed.err");
    assert_ne!(read("killed.rc"), "0", "{killed}");
    assert!(!read("token").is_empty(), "no resume token in {killed:?}");

    let rerun = read("rerun.err");
    assert_ne!(
        read("sigkill.held"),
        "--",
        "the killed sender held no snapshot\n{ctx}"
    );
    assert!(
        rerun.contains("left reserved by an interrupted run"),
        "{rerun}"
    );

    for (sig, status) in [("TERM", 143), ("HUP", 129), ("USR1", 138), ("SEGV", 139)] {
        let n = format!("sig{sig}");
        assert_ne!(
            read(&format!("{n}.before")),
            "--",
            "the sender held no snapshot when sent SIG{sig}"
        );
        assert_eq!(
            read(&format!("{n}.rc")),
            status.to_string(),
            "SIG{sig}: {}",
            read(&format!("{n}.err"))
        );
        assert_eq!(
            read(&format!("{n}.held")),
            "--",
            "SIG{sig} left the snapshot held"
        );
    }
}
