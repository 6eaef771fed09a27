//! thin_send / thin_recv on LVM-managed pools (real kernel and Debian's
//! lvm2 in the guest; runs only with THINTOOLS_VM_TESTS=1): LINBIT's
//! command lines (`thin_send vg/snap1 vg/snap2 | thin_recv vg/replica`)
//! with read-only thin snapshots that skip activation, writes and discards
//! between them; and interop both ways with the reference thin_send_recv
//! 1.1.3 (formats 1.0 and 1.1), whose thin_send runs our thin_delta and
//! thin_dump. Every replica must hash like its source snapshot, and no
//! metadata snapshot may stay reserved.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::vm::{self as util_vm, Guest};

/// One VG with two thin pools (64 KiB blocks): `pool` holds `vol` and its
/// read-only snapshots `s1` and `s2` (inactive: thin snapshots skip
/// activation), with writes and discards between them; `pool2` holds the
/// replicas. Each snapshot's hash is the hash of `vol` when it was taken.
const SETUP: &str = r#"
. /job/lib.sh
lvm_setup
# The reference's host-wide lock file lives in /var/run.
mkdir -p /var/run
lvm() { "$@" > /dev/null 2> /tmp/lvm.err || { cat /tmp/lvm.err; return 1; }; }
lvm pvcreate -y "$DISK_pv"
lvm vgcreate vg "$DISK_pv"
lvm lvcreate -y --type thin-pool -L 64m --poolmetadatasize 4m -c 64k -n pool vg
lvm lvcreate -y --type thin-pool -L 128m --poolmetadatasize 4m -c 64k -n pool2 vg
lvm lvcreate -y -V 24m -T vg/pool -n vol
held() { dmsetup status vg-pool-tpool | awk '{ print $7 }'; }
snap() {
    lvm lvcreate -y -s vg/vol -n "$1"
    lvm lvchange -pr vg/"$1"
    sha256sum < /dev/vg/vol | cut -d' ' -f1 > "$OUT/$1.sha"
}
replica() { lvm lvcreate -y -V 24m -T vg/pool2 -n "$1"; }
hash() { sha256sum < /dev/vg/"$1" | cut -d' ' -f1 > "$OUT/$2.sha"; }
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
chunks 1 1 0 1024 | qdd of=/dev/vg/vol bs=4096 iflag=fullblock conv=notrunc,fsync
chunks 1 1 4000 300 | qdd of=/dev/vg/vol bs=4096 seek=4000 iflag=fullblock conv=notrunc,fsync
snap s1
chunks 1 2 100 100 | qdd of=/dev/vg/vol bs=4096 seek=100 iflag=fullblock conv=notrunc,fsync
chunks 1 2 5000 40 | qdd of=/dev/vg/vol bs=4096 seek=5000 iflag=fullblock conv=notrunc,fsync
blkdiscard -o $((40 * 65536)) -l $((10 * 65536)) /dev/vg/vol
snap s2
note "set up at $(elapsed) s"
"#;

/// Our tools with LVM names: a full send of `s1`, the incremental `s1` ->
/// `s2` into the same replica, a format 2 full send by `/dev/VG/LV` name, a
/// full send of the (active, writable) origin.
const OURS: &str = r#"
replica r
step full "thin_send vg/s1 | thin_recv vg/r"
hash r full
lvs --noheadings -o lv_attr vg/s1 | tr -d ' ' > "$OUT/s1.attr"
step incr "thin_send vg/s1 vg/s2 | thin_recv vg/r"
hash r incr
replica r2
step full2 "thin_send --format 2 /dev/vg/s2 | thin_recv --state /tmp/r2.state /dev/vg/r2"
hash r2 full2
# The origin itself, active and writable (nobody writes it now; LINBIT's
# test 00).
replica r0
step origin "thin_send vg/vol | thin_recv vg/r0"
hash r0 origin
note "done at $(elapsed) s"
lvm vgchange -an vg
"#;

/// The reference (`$REF`) and ours, both ways: our 1.1 and 1.0 streams into
/// its receiver, its (1.1) streams into ours.
const WITH_REFERENCE: &str = r#"
replica ref11
replica ref10
replica ours
step ref-recv-11 "thin_send vg/s1 | $REF --receive vg/ref11"
step ref-recv-11i "thin_send vg/s1 vg/s2 | $REF --receive vg/ref11"
hash ref11 ref-recv-11i
step ref-recv-10 "thin_send --format 1.0 /dev/vg/s1 | $REF --receive --accept-stream-format=1.0 vg/ref10"
step ref-recv-10i "thin_send --format 1.0 /dev/vg/s1 /dev/vg/s2 | $REF --receive --accept-stream-format=1.0 vg/ref10"
hash ref10 ref-recv-10i
# Its full send needs an active LV; its incremental one activates SNAP2.
lvm lvchange -ay -Ky vg/s1
step ref-send "$REF --send vg/s1 | thin_recv --accept-stream-format=1.1 vg/ours"
step ref-send-i "$REF --send vg/s1 vg/s2 | thin_recv vg/ours"
hash ours ref-send-i
note "done at $(elapsed) s"
lvm vgchange -an vg
"#;

fn reference() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/thin_send_recv-1.1.3");
    p.exists().then_some(p)
}

/// Boots `script` after [`SETUP`] with our tools (and `extra` binaries),
/// and returns the run.
fn boot(script: &str, extra: Option<&Path>, work: &Path) -> util_vm::GuestRun {
    let pv = work.join("pv.img");
    fs::File::create(&pv).unwrap().set_len(256 << 20).unwrap();
    let mut g = Guest::new(format!("{SETUP}{script}"))
        .disk("pv", &pv)
        .tool("thin_send")
        .tool("thin_recv")
        .tool("thin_delta")
        .tool("thin_dump")
        .timeout(600);
    if let Some(r) = extra {
        g = g.bin(r).env("REF", "/opt/bin/thin_send_recv-1.1.3");
    }
    let run = g.run(work);
    run.expect_ok();
    for l in run.console.lines().filter(|l| l.starts_with("### ")) {
        eprintln!("{l}");
    }
    run
}

/// Checks that `step` succeeded, left nothing held, and (with a snapshot)
/// that its replica hashes like it.
fn check(run: &util_vm::GuestRun, step: &str, snap: Option<&str>) {
    let read = |n: &str| run.read(n).trim().to_string();
    let ctx = run.describe();
    run.expect_step_ok(step);
    assert_eq!(
        read(&format!("{step}.held")),
        "-",
        "{step} left a metadata snapshot held"
    );
    if let Some(snap) = snap {
        assert_eq!(
            read(&format!("{step}.sha")),
            read(&format!("{snap}.sha")),
            "{step}: replica differs from {snap}\n{ctx}"
        );
    }
}

#[test]
fn send_recv_with_lvm_names() {
    if !util_vm::vm_enabled() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let run = boot(OURS, None, work.path());
    assert_ne!(
        run.read("s1.sha"),
        run.read("s2.sha"),
        "the snapshots are alike"
    );
    check(&run, "full", Some("s1"));
    // thin_send activated the snapshot for the run and deactivated it again.
    let attr = run.read("s1.attr");
    assert_eq!(attr.as_bytes().get(4), Some(&b'-'), "{attr}");
    check(&run, "incr", Some("s2"));
    check(&run, "full2", Some("s2"));
    check(&run, "origin", Some("s2"));
}

#[test]
fn send_recv_interop_with_the_reference_on_lvm() {
    if !util_vm::vm_enabled() {
        return;
    }
    let Some(reference) = reference() else {
        eprintln!("skipped: ../shared/reference/thin_send_recv-1.1.3 is not present");
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let run = boot(WITH_REFERENCE, Some(&reference), work.path());
    for step in ["ref-recv-11", "ref-recv-10", "ref-send"] {
        check(&run, step, None);
    }
    for step in ["ref-recv-11i", "ref-recv-10i", "ref-send-i"] {
        check(&run, step, Some("s2"));
    }
}
