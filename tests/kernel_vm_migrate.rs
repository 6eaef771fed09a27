//! thin_migrate against the real kernel (harness: tests/util_vm.rs): a live
//! pool under writes, read-only snapshots copied to a file and to a thin of
//! a second pool while the origin keeps being written, an incremental copy
//! with `--delta-id` after more writes and discards, a copy killed with
//! SIGKILL and rerun, one stopped by SIGTERM, and each live refusal. Every
//! destination must hash like the snapshot read through the kernel, and no
//! metadata snapshot may stay reserved. Run with THINTOOLS_VM_TESTS=1.

use std::fs;

use crate::util::vm::{self as util_vm, Guest};

/// Pool 1 (`pool`, 64 KiB blocks) holds thin 1 (48 MiB), written by a
/// background writer for the whole run; snapshot 2 of it is activated
/// read-only and copied; then thin 1 gets more writes and discards, snapshot
/// 3 is copied as a delta over 2. Pool 2 (`pool2`, 128 KiB blocks) holds the
/// destination thin 10.
const SCRIPT: &str = r#"
. /job/lib.sh
pool_start 128 0
META=/dev/disk/meta2 DATA=/dev/disk/data2 POOL=pool2
show dmsetup create pool2 --table "0 $(blockdev --getsz /dev/disk/data2) thin-pool /dev/disk/meta2 /dev/disk/data2 256 0 0"
POOL=pool META=/dev/disk/meta DATA=/dev/disk/data
SZ=$((48 * 2048))
thin_new 1 48
thin_up 1
put 1 1 0 12288
show dmsetup message pool2 0 create_thin 10
show dmsetup create p2t10 --table "0 $SZ thin /dev/mapper/pool2 10"
show dmsetup message pool2 0 create_thin 11
show dmsetup create p2small --table "0 $((SZ - 2048)) thin /dev/mapper/pool2 11"

touch /tmp/writing
(
    i=0
    while [ -e /tmp/writing ]; do
        slot=$((i % 96))
        chunks 1 $((i + 10)) $((slot * 128)) 16 | dd of=/dev/mapper/thin1 bs=64K seek=$((slot * 8)) count=1 \
            iflag=fullblock oflag=direct conv=notrunc 2>/dev/null
        i=$((i + 1))
    done
    echo $i > /tmp/writer.count
) &
writer=$!

snap_new 2 1
show dmsetup create snap2 --readonly --table "0 $SZ thin /dev/mapper/pool 2"
sha256sum < /dev/mapper/snap2 | cut -d' ' -f1 > "$OUT/snap2.sha"

tool() {
    name=$1
    shift
    rc=0
    "$@" > "$OUT/$name.out" 2> "$OUT/$name.err" || rc=$?
    echo $rc > "$OUT/$name.rc"
}
held() { dmsetup status pool | awk '{ print $7 }'; }

tool full-file thin_migrate --source-dev /dev/mapper/snap2 --dest-file /tmp/f.img
sha256sum < /tmp/f.img | cut -d' ' -f1 > "$OUT/full-file.sha"
held > "$OUT/full-file.held"
tool full-dev thin_migrate --source-dev /dev/mapper/snap2 --dest-dev /dev/mapper/p2t10 --buffer-size-meg 4
sha256sum < /dev/mapper/p2t10 | cut -d' ' -f1 > "$OUT/full-dev.sha"
held > "$OUT/full-dev.held"
if kill -0 $writer 2>/dev/null; then echo yes; else echo no; fi > "$OUT/writer-running.txt"

# Refusals.
tool refuse-writable thin_migrate --source-dev /dev/mapper/thin1 --dest-file /tmp/never.img
tool refuse-same-pool thin_migrate --source-dev /dev/mapper/snap2 --dest-dev /dev/mapper/thin1
tool refuse-data thin_migrate --source-dev /dev/mapper/snap2 --dest-dev /dev/disk/data
tool refuse-small thin_migrate --source-dev /dev/mapper/snap2 --dest-dev /dev/mapper/p2small
tool refuse-linear thin_migrate --source-dev /dev/mapper/pool --dest-file /tmp/never.img
tool refuse-notdm thin_migrate --source-dev /dev/disk/meta2 --dest-file /tmp/never.img
show dmsetup create holder --table "0 $SZ linear /dev/mapper/p2t10 0"
tool refuse-busy thin_migrate --source-dev /dev/mapper/snap2 --dest-dev /dev/mapper/p2t10
show dmsetup remove holder
ls /tmp/never.img > "$OUT/never.ls" 2>&1 || true
held > "$OUT/refuse.held"

# More writes and discards on the origin, a new snapshot, a delta copy.
put_blocks 1 5 100 20
trim 1 $((200 * 65536)) $((40 * 65536))
trim 1 $((700 * 65536)) $((3 * 65536 + 4096))
snap_new 3 1
show dmsetup create snap3 --readonly --table "0 $SZ thin /dev/mapper/pool 3"
sha256sum < /dev/mapper/snap3 | cut -d' ' -f1 > "$OUT/snap3.sha"
tool delta-file thin_migrate --source-dev /dev/mapper/snap3 --delta-id 2 --dest-file /tmp/f.img
sha256sum < /tmp/f.img | cut -d' ' -f1 > "$OUT/delta-file.sha"
tool delta-dev thin_migrate --source-dev /dev/mapper/snap3 --delta-id 2 --dest-dev /dev/mapper/p2t10
sha256sum < /dev/mapper/p2t10 | cut -d' ' -f1 > "$OUT/delta-dev.sha"

# A held snapshot reserved by someone else is used and left reserved.
pool_msg reserve_metadata_snap
tool foreign thin_migrate --source-dev /dev/mapper/snap3 --dest-file /tmp/g.img
held > "$OUT/foreign.held"
sha256sum < /tmp/g.img | cut -d' ' -f1 > "$OUT/foreign.sha"
thin_new 4 8
show dmsetup create thin4 --readonly --table "0 16384 thin /dev/mapper/pool 4"
tool refuse-absent thin_migrate --source-dev /dev/mapper/thin4 --dest-file /tmp/never2.img
ls /tmp/never2.img > "$OUT/never2.ls" 2>&1 || true
show dmsetup remove thin4
pool_msg release_metadata_snap
rm -f /tmp/g.img

# SIGKILL once the reservation is made, then a rerun.
thin_migrate --source-dev /dev/mapper/snap3 --dest-file /tmp/k.img --buffer-size-meg 1 -q &
pid=$!
n=0
while [ "$(held)" = - ] && [ $n -lt 2000 ] && kill -0 $pid 2>/dev/null; do n=$((n + 1)); done
kill -9 $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
held > "$OUT/killed.held"
tool rerun thin_migrate --source-dev /dev/mapper/snap3 --dest-file /tmp/k.img
sha256sum < /tmp/k.img | cut -d' ' -f1 > "$OUT/rerun.sha"
held > "$OUT/rerun.held"
rm -f /tmp/k.img

# SIGTERM: the reservation is released on the way out.
thin_migrate --source-dev /dev/mapper/snap3 --dest-file /tmp/t.img --buffer-size-meg 1 -q &
pid=$!
n=0
while [ "$(held)" = - ] && [ $n -lt 2000 ] && kill -0 $pid 2>/dev/null; do n=$((n + 1)); done
kill -TERM $pid 2>/dev/null || true
rc=0; wait $pid || rc=$?
echo $rc > "$OUT/term.rc"
held > "$OUT/term.held"

rm /tmp/writing
wait $writer
cp /tmp/writer.count "$OUT/writer.count"
for d in snap2 snap3 thin1 p2t10 p2small; do show dmsetup remove $d; done
show dmsetup remove pool2
pool_stop
"#;

#[test]
fn live_thin_migrate_full_delta_refusals_and_signals() {
    if !util_vm::vm_enabled() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let mut disks = Vec::new();
    for (name, mib) in [("meta", 8), ("data", 256), ("meta2", 8), ("data2", 256)] {
        let p = work.path().join(format!("{name}.img"));
        fs::File::create(&p).unwrap().set_len(mib << 20).unwrap();
        disks.push((name, p));
    }
    let mut g = Guest::new(SCRIPT).tool("thin_migrate").timeout(900);
    for (name, p) in &disks {
        g = g.disk(name, p);
    }
    let run = g.run(work.path());
    run.expect_ok();
    let ctx = run.describe();
    let read = |n: &str| run.read(n).trim().to_string();
    let ok = |n: &str| run.expect_step_ok(n);
    eprintln!(
        "writer: {} writes; guest {:?} s",
        read("writer.count"),
        run.guest_seconds
    );

    // Full copies while the origin is written, to a file and to a thin of
    // another pool with another block size.
    for t in ["full-file", "full-dev"] {
        ok(t);
        assert_eq!(
            read(&format!("{t}.sha")),
            read("snap2.sha"),
            "{t} differs\n{ctx}"
        );
        assert_eq!(read(&format!("{t}.held")), "-", "{t} left a snapshot held");
    }
    assert_eq!(
        read("writer-running.txt"),
        "yes",
        "the writer stopped too early"
    );
    assert_ne!(
        read("snap2.sha"),
        read("snap3.sha"),
        "snapshots 2 and 3 are alike"
    );

    // Incremental copies after writes and discards.
    for t in ["delta-file", "delta-dev"] {
        ok(t);
        assert_eq!(
            read(&format!("{t}.sha")),
            read("snap3.sha"),
            "{t} differs\n{ctx}"
        );
    }

    // Refusals: exit 1, a message naming the problem.
    for (t, msg) in [
        ("refuse-writable", "is active read-write"),
        ("refuse-same-pool", "of the source's pool"),
        ("refuse-data", "the data device of the source's pool"),
        ("refuse-small", "is smaller than the source"),
        ("refuse-linear", "a thin-pool device, not a thin"),
        ("refuse-notdm", "not a device-mapper device"),
        ("refuse-busy", "in use"),
    ] {
        assert_eq!(
            read(&format!("{t}.rc")),
            "1",
            "{t}: {}",
            read(&format!("{t}.err"))
        );
        let err = read(&format!("{t}.err"));
        assert!(err.contains(msg), "{t}: want {msg:?}, got {err:?}");
    }
    assert!(
        read("never.ls").contains("No such file"),
        "a refused run created its file"
    );
    assert_eq!(read("refuse.held"), "-");

    // A snapshot held by someone else: used, said so, left held.
    ok("foreign");
    assert!(
        read("foreign.err").contains("already held"),
        "{}",
        read("foreign.err")
    );
    assert_ne!(
        read("foreign.held"),
        "-",
        "released a snapshot it did not reserve"
    );
    assert_eq!(read("foreign.sha"), read("snap3.sha"));
    // A thin created after the held snapshot is not in it.
    assert_eq!(read("refuse-absent.rc"), "1");
    assert!(
        read("refuse-absent.err").contains("thin device 4 is not in the metadata snapshot"),
        "{}",
        read("refuse-absent.err")
    );
    assert!(
        read("never2.ls").contains("No such file"),
        "the refused run created its file"
    );

    // SIGKILL leaves the reservation; the rerun releases it, says so, and
    // copies correctly.
    assert_ne!(
        read("killed.held"),
        "-",
        "the killed run had not reserved yet\n{ctx}"
    );
    ok("rerun");
    assert!(
        read("rerun.err").contains("left reserved by an interrupted run"),
        "{}",
        read("rerun.err")
    );
    assert_eq!(read("rerun.sha"), read("snap3.sha"));
    assert_eq!(read("rerun.held"), "-");

    // SIGTERM: died of the signal, nothing left held.
    assert_eq!(read("term.rc"), "143", "exit status after SIGTERM");
    assert_eq!(read("term.held"), "-", "SIGTERM left the snapshot held");
}

/// thin_merge on a live pool: thin 1 over an external origin (8 MiB of text
/// chunks) gets whole-block and partial-block writes; while it, or another
/// thin over the origin, is active the merge refuses; once they are down
/// `thin_merge --pool` merges it, and a new thin over the merged origin
/// reads exactly as thin 1 did.
const MERGE_SCRIPT: &str = r#"
. /job/lib.sh
pool_start 128 0
ORIG=/dev/disk/origin
chunks origin 0 0 2048 | qdd of=$ORIG bs=4096 iflag=fullblock conv=notrunc,fsync
sha256sum < $ORIG | cut -d' ' -f1 > "$OUT/pristine.sha"
thin_new 1 8 $ORIG
thin_up 1
put 1 1 100 50
put 1 1 1001 1
put 1 1 2000 3
sha256sum < /dev/mapper/thin1 | cut -d' ' -f1 > "$OUT/thin1.sha"
held() { dmsetup status pool | awk '{ print $7 }'; }
tool() {
    name=$1
    shift
    rc=0
    "$@" > "$OUT/$name.out" 2> "$OUT/$name.err" || rc=$?
    echo $rc > "$OUT/$name.rc"
}
tool refuse-active thin_merge --source-dev /dev/mapper/thin1 --origin $ORIG
thin_down 1
thin_new 2 8 $ORIG
thin_up 2
tool refuse-busy thin_merge --pool /dev/mapper/pool --thin-id 1 --origin $ORIG
thin_down 2
sha256sum < $ORIG | cut -d' ' -f1 > "$OUT/refused.sha"
held > "$OUT/refused.held"
tool dry thin_merge --pool /dev/mapper/pool --thin-id 1 --origin $ORIG --dry-run
tool merge thin_merge --pool /dev/mapper/pool --thin-id 1 --origin $ORIG
held > "$OUT/merge.held"
sha256sum < $ORIG | cut -d' ' -f1 > "$OUT/merged.sha"
thin_new 3 8 $ORIG
thin_up 3
sha256sum < /dev/mapper/thin3 | cut -d' ' -f1 > "$OUT/thin3.sha"
thin_down 3
pool_stop
"#;

#[test]
fn live_thin_merge_into_external_origin() {
    if !util_vm::vm_enabled() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let mut g = Guest::new(MERGE_SCRIPT).tool("thin_merge").timeout(600);
    for (name, mib) in [("meta", 8), ("data", 64), ("origin", 8)] {
        let p = work.path().join(format!("{name}.img"));
        fs::File::create(&p).unwrap().set_len(mib << 20).unwrap();
        g = g.disk(name, &p);
    }
    let run = g.run(work.path());
    run.expect_ok();
    let read = |n: &str| run.read(n).trim().to_string();
    assert_ne!(
        read("thin1.sha"),
        read("pristine.sha"),
        "thin 1 was not written"
    );
    for (t, msg) in [
        ("refuse-active", "is active and holds its origin"),
        (
            "refuse-busy",
            "an active thin still uses it as its external origin",
        ),
    ] {
        assert_eq!(
            read(&format!("{t}.rc")),
            "1",
            "{t}: {}",
            read(&format!("{t}.err"))
        );
        assert!(
            read(&format!("{t}.err")).contains(msg),
            "{t}: {}",
            read(&format!("{t}.err"))
        );
    }
    assert_eq!(
        read("refused.sha"),
        read("pristine.sha"),
        "a refused merge wrote"
    );
    assert_eq!(read("refused.held"), "-");
    assert_eq!(read("dry.rc"), "0", "{}", read("dry.err"));
    assert!(
        read("dry.out").starts_with("would write "),
        "{}",
        read("dry.out")
    );
    assert_eq!(read("merge.rc"), "0", "{}", read("merge.err"));
    assert_eq!(read("merge.held"), "-", "the merge left its snapshot held");
    assert_eq!(
        read("merged.sha"),
        read("thin1.sha"),
        "merged origin differs from thin 1"
    );
    assert_eq!(
        read("thin3.sha"),
        read("thin1.sha"),
        "a new thin over the merged origin differs"
    );
}
