//! scripts/examples/replicate.sh in the real kernel (runs only with
//! THINTOOLS_VM_TESTS=1): a thin in one plain-dm pool replicated into a thin
//! of a second pool, five cycles while a background writer keeps writing and
//! discarding, one of them interrupted half way (the script SIGKILLed while
//! the receiver had half the stream) and finished by a rerun. After every
//! cycle the replica's snapshot hashes equal to the source's and no metadata
//! snapshot is reserved on the source pool.

use std::fs;
use std::path::Path;

use crate::util::vm::{self, Guest};

const SCRIPT: &str = r#"
. /job/lib.sh
POOL=src
pool_start 128 0
thin_new 1 24
thin_up 1
dmsetup create dst --table "0 $(blockdev --getsz /dev/disk/data2) thin-pool /dev/disk/meta2 /dev/disk/data2 128 0 0"
dmsetup message dst 0 create_thin 7
dmsetup create replica --table "0 49152 thin /dev/mapper/dst 7"
put 1 0 0 2048
# A writer that rewrites and discards parts of the source all along.
touch /tmp/writing
(
    i=1
    while [ -e /tmp/writing ]; do
        rand 384; put 1 "$i" $((R * 16)) 16 > /dev/null
        if [ $((i % 5)) = 0 ]; then
            rand 24; blkdiscard -o $((R * 1048576)) -l 1048576 /dev/mapper/thin1 2>/dev/null || true
        fi
        i=$((i + 1))
        sleep 0.3
    done
    echo "$i" > "$OUT/writes"
) &
writer=$!

# A thin_recv that takes only the first 128 KiB of its stream, then kills the
# replication script (as a crash would) and fails like a broken connection.
mkdir -p /tmp/crash
cat > /tmp/crash/thin_recv <<'EOF'
#!/bin/sh
head -c 131072 | /opt/bin/thin_recv "$@"
kill -KILL "$(cat /tmp/repl.pid)"
exit 1
EOF
chmod 755 /tmp/crash/thin_recv
ln -s /opt/bin/thin_send /tmp/crash/thin_send

repl() { /job/replicate.sh --state-dir /tmp/repl --keep 2 --tools "$1" /dev/mapper/thin1 /dev/mapper/replica; }
record() {
    sha256sum /dev/mapper/thin1_repl_$1 /dev/mapper/replica_repl_$1 | cut -d' ' -f1 > "$OUT/hash.$1"
    dmsetup status src | awk '{ print $7 }' > "$OUT/held.$1"
    ls /dev/mapper > "$OUT/devices.$1"
}
for n in 1 2 3 4 5; do
    sleep 2
    if [ $n = 3 ]; then
        rc=0
        sh -c 'echo $$ > /tmp/repl.pid; exec /job/replicate.sh --state-dir /tmp/repl --keep 2 --tools /tmp/crash /dev/mapper/thin1 /dev/mapper/replica' || rc=$?
        echo "$rc" > "$OUT/crash.rc"
        sleep 1
        dmsetup status src | awk '{ print $7 }' > "$OUT/held.crash"
        [ -b /dev/mapper/replica_repl_3 ] && echo yes > "$OUT/replica-snap-after-crash" || echo no > "$OUT/replica-snap-after-crash"
        grep pending /tmp/repl/replica.thin-state > "$OUT/pending.crash" || true
    fi
    repl /opt/bin 2>&1 | tee "$OUT/repl.$n.err"
    record $n
done
rm /tmp/writing
wait $writer
cat /tmp/repl/done > "$OUT/done"
"#;

#[test]
fn five_replication_cycles_under_writes_with_a_crash() {
    if !vm::vm_enabled() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let img = |name: &str, size: u64| {
        let p = work.path().join(name);
        fs::File::create(&p).unwrap().set_len(size).unwrap();
        p
    };
    let (meta, data) = (img("meta.img", 16 << 20), img("data.img", 256 << 20));
    let (meta2, data2) = (img("meta2.img", 16 << 20), img("data2.img", 256 << 20));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/examples/replicate.sh");
    let run = Guest::new(SCRIPT)
        .disk("meta", &meta)
        .disk("data", &data)
        .disk("meta2", &meta2)
        .disk("data2", &data2)
        .tool("thin_send")
        .tool("thin_recv")
        .file(&script, "/job/replicate.sh")
        .timeout(600)
        .run(work.path());
    run.expect_ok();

    for n in 1..=5u32 {
        let h = run.read(&format!("hash.{n}"));
        let h: Vec<&str> = h.lines().collect();
        assert_eq!(h.len(), 2, "cycle {n}: {h:?}\n{}", run.describe());
        assert_eq!(
            h[0],
            h[1],
            "cycle {n}: replica snapshot differs from the source snapshot\n{}",
            run.read(&format!("repl.{n}.err"))
        );
        assert_eq!(run.read(&format!("held.{n}")).trim(), "-", "cycle {n}");
        // --keep 2: this cycle's and the previous one's snapshots remain.
        let devs = run.read(&format!("devices.{n}"));
        for old in 1..n.saturating_sub(1) {
            assert!(
                !devs.contains(&format!("thin1_repl_{old}\n")),
                "cycle {n}: {devs}"
            );
            assert!(
                !devs.contains(&format!("replica_repl_{old}\n")),
                "cycle {n}: {devs}"
            );
        }
    }
    // Each cycle saw different data: the writer was running.
    let hashes: std::collections::BTreeSet<String> =
        (1..=5).map(|n| run.read(&format!("hash.{n}"))).collect();
    assert_eq!(hashes.len(), 5, "the source did not change between cycles");
    // The interrupted cycle: the script was killed, the receiver kept what it
    // had applied as pending, nothing was left reserved, and the rerun
    // finished cycle 3.
    assert_ne!(run.read("crash.rc").trim(), "0");
    assert_eq!(run.read("held.crash").trim(), "-");
    assert_eq!(run.read("replica-snap-after-crash").trim(), "no");
    assert!(run.read("pending.crash").starts_with("pending "));
    assert_eq!(run.read("done").trim(), "5");
    let writes: u64 = run.read("writes").trim().parse().unwrap();
    assert!(writes > 10, "writer made only {writes} writes");
}

/// The same cycle with LVM names: a thin LV of one volume group replicated
/// into a thin LV of another, three cycles with writes and a discard in
/// between; snapshots made and dropped through lvm2.
const LVM_SCRIPT: &str = r#"
. /job/lib.sh
lvm_setup
pvcreate -q -y /dev/disk/pv1 /dev/disk/pv2
vgcreate -q vg /dev/disk/pv1
vgcreate -q vg2 /dev/disk/pv2
lvcreate -q -y --type thin-pool -L 96m -c 64k -n pool vg
lvcreate -q -y --type thin-pool -L 96m -c 64k -n pool vg2
lvcreate -q -y -V 16m -T vg/pool -n src
lvcreate -q -y -V 16m -T vg2/pool -n replica
chunks 1 1 0 2048 | qdd of=/dev/vg/src bs=4096 iflag=fullblock conv=notrunc,fsync
for n in 1 2 3; do
    /job/replicate.sh --state-dir /tmp/repl --keep 2 vg/src vg2/replica 2>&1
    sha256sum /dev/vg/src_repl_$n /dev/vg2/replica_repl_$n | cut -d' ' -f1 > "$OUT/hash.$n"
    dmsetup status vg-pool-tpool | awk '{ print $7 }' > "$OUT/held.$n"
    lvs --noheadings -o lv_name vg vg2 | tr -d ' ' | sort > "$OUT/lvs.$n"
    chunks 1 $((n + 1)) $((n * 300)) 200 | qdd of=/dev/vg/src bs=4096 seek=$((n * 300)) iflag=fullblock conv=notrunc,fsync
    blkdiscard -o $((n * 2 * 1048576 + 4194304)) -l 1048576 /dev/vg/src
done
"#;

#[test]
fn replication_cycles_with_lvm_names() {
    if !vm::vm_enabled() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let img = |name: &str| {
        let p = work.path().join(name);
        fs::File::create(&p).unwrap().set_len(160 << 20).unwrap();
        p
    };
    let (pv1, pv2) = (img("pv1.img"), img("pv2.img"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/examples/replicate.sh");
    let run = Guest::new(LVM_SCRIPT)
        .disk("pv1", &pv1)
        .disk("pv2", &pv2)
        .tool("thin_send")
        .tool("thin_recv")
        .tool("thin_check")
        .file(&script, "/job/replicate.sh")
        .timeout(600)
        .run(work.path());
    run.expect_ok();
    let mut seen = std::collections::BTreeSet::new();
    for n in 1..=3u32 {
        let h = run.read(&format!("hash.{n}"));
        let h: Vec<&str> = h.lines().collect();
        assert_eq!(h.len(), 2, "cycle {n}\n{}", run.describe());
        assert_eq!(h[0], h[1], "cycle {n}: replica differs\n{}", run.describe());
        seen.insert(h[0].to_string());
        assert_eq!(run.read(&format!("held.{n}")).trim(), "-", "cycle {n}");
    }
    assert_eq!(seen.len(), 3, "the source did not change between cycles");
    // --keep 2: after cycle 3, snapshots 2 and 3 remain on each side.
    assert_eq!(
        run.read("lvs.3"),
        "pool\npool\nreplica\nreplica_repl_2\nreplica_repl_3\nsrc\nsrc_repl_2\nsrc_repl_3\n"
    );
}
