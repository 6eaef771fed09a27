//! lvm2 driving our tools (real kernel and Debian's lvm2 in the guest; runs
//! only with THINTOOLS_VM_TESTS=1). lvm.conf points
//! `global/thin_check_executable`, `thin_dump_executable` and
//! `thin_repair_executable` at our binaries through a logging wrapper
//! (guest-lib.sh: `lvm_setup`), so each step asserts both what lvm2 did and
//! which of our tools it ran, with which arguments and exit status.
//! docs/compatibility.md lists the calls.

use std::fs;
use std::path::Path;

use crate::util::image::patch_block;
use crate::util::vm::{self, Guest, GuestRun};
use thintools::pdata::checksum::BlockKind;

/// Boot 1: a volume group on one disk, a thin pool with 64 KiB blocks, a
/// thin `t1` with 8 MiB written, its snapshot `s1`, then more writes to
/// `t1` (some overwriting shared blocks, some new); the hashes of both and
/// the table of the pool's metadata LV come back; everything deactivated.
const CREATE: &str = r#"
. /job/lib.sh
lvm_setup
show pvcreate -y "$DISK_pv"
show vgcreate vg "$DISK_pv"
show lvcreate -y --type thin-pool -L 64m --poolmetadatasize 4m -c 64k -n pool vg
show lvcreate -y -V 32m -T vg/pool -n t1
chunks 1 1 0 2048 | qdd of=/dev/vg/t1 bs=4096 iflag=fullblock conv=notrunc,fsync
show lvcreate -y -s vg/t1 -n s1
chunks 1 2 100 200 | qdd of=/dev/vg/t1 bs=4096 seek=100 iflag=fullblock conv=notrunc,fsync
chunks 1 2 5000 300 | qdd of=/dev/vg/t1 bs=4096 seek=5000 iflag=fullblock conv=notrunc,fsync
show lvchange -ay -Ky vg/s1
sha256sum /dev/vg/t1 /dev/vg/s1 | cut -d' ' -f1 > "$OUT/hash-created"
dmsetup table vg-pool_tmeta > "$OUT/tmeta.table"
show vgchange -an vg
cp "$LVM_TOOL_LOG" "$OUT/tools-created.log"
"#;

/// Boot 2, after the host set NEEDS_CHECK in the pool's superblock:
/// activation (our thin_check clears the flag), `lvconvert --repair` (our
/// thin_repair and thin_dump), `lvextend --poolmetadatasize` and a
/// re-activation, then a damaged mapping-tree root: activation refused, and
/// our thin_check on a read-only copy of the metadata LV's table says why.
/// `== step` lines in the tool log separate the steps.
const DRIVE: &str = r#"
. /job/lib.sh
lvm_setup
step() { echo "== $1" >> "$LVM_TOOL_LOG"; }
hashes() { lvchange -ay -Ky vg/s1; sha256sum /dev/vg/t1 /dev/vg/s1 | cut -d' ' -f1 > "$OUT/hash-$1"; }
step activate
show vgchange -ay vg
dmsetup status vg-pool-tpool > "$OUT/status-activated"
hashes activated
show vgchange -an vg
step repair
show lvconvert -y --repair vg/pool
show vgchange -ay vg
hashes repaired
step extend
show lvextend -y --poolmetadatasize +4m vg/pool
show vgchange -an vg
show vgchange -ay vg
lvs --noheadings -o lv_metadata_size --units k --nosuffix vg/pool | tr -d ' ' > "$OUT/metadata-size"
hashes extended
dmsetup table vg-pool_tmeta > "$OUT/tmeta-extended.table"
show vgchange -an vg
step damage
start=$(awk 'NR == 1 { print $5 }' "$OUT/tmeta-extended.table")
root=$(dd if="$DISK_pv" bs=1 skip=$((start * 512 + 320)) count=8 2>/dev/null | od -An -t u8 | tr -d ' ')
echo "$root" > "$OUT/mapping-root"
printf 'Z' | dd of="$DISK_pv" bs=1 seek=$((start * 512 + root * 4096 + 100)) conv=notrunc 2>/dev/null
rc=0
vgchange -ay vg > "$OUT/refused.out" 2>&1 || rc=$?
echo $rc > "$OUT/refused.rc"
cat "$OUT/refused.out"
dmsetup create tmeta-copy --readonly < "$OUT/tmeta-extended.table"
rc=0
thin_check /dev/mapper/tmeta-copy > "$OUT/check.out" 2>&1 || rc=$?
echo $rc > "$OUT/check.rc"
dmsetup remove tmeta-copy
cp "$LVM_TOOL_LOG" "$OUT/tools-drive.log"
"#;

fn boot(script: &str, pv: &Path, work: &Path) -> GuestRun {
    let run = Guest::new(script)
        .disk("pv", pv)
        .tool("thin_check")
        .tool("thin_dump")
        .tool("thin_repair")
        .timeout(300)
        .run(work);
    run.expect_ok();
    run
}

/// The lines of the wrapper's log between `== step` and the next step.
fn step_log<'a>(log: &'a str, step: &str) -> Vec<&'a str> {
    log.lines()
        .skip_while(|l| *l != format!("== {step}"))
        .skip(1)
        .take_while(|l| !l.starts_with("== "))
        .collect()
}

const CHECK_CALL: &str = "thin_check -q --clear-needs-check-flag /dev/mapper/vg-pool_tmeta";

#[test]
fn lvm2_runs_our_check_repair_and_dump() {
    if !vm::vm_enabled() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let pv = work.path().join("pv.img");
    fs::File::create(&pv).unwrap().set_len(256 << 20).unwrap();

    let w1 = work.path().join("create");
    fs::create_dir_all(&w1).unwrap();
    let created = boot(CREATE, &pv, &w1);
    let log = created.read("tools-created.log");
    assert!(
        log.lines().any(|l| l == CHECK_CALL),
        "lvm2 did not run our thin_check at activation:\n{log}"
    );
    assert!(!log.contains("exit 1"), "{log}");
    let hashes = created.read("hash-created");
    assert_eq!(hashes.lines().count(), 2, "{hashes}");

    // Set NEEDS_CHECK in the pool's superblock: block 0 of the metadata LV,
    // which is one linear segment "0 <len> linear <pv> <start sector>".
    let table = created.read("tmeta.table");
    let fields: Vec<&str> = table.split_whitespace().collect();
    assert_eq!((fields.len(), fields[2]), (5, "linear"), "{table}");
    let start: u64 = fields[4].parse().unwrap();
    assert_eq!(start % 8, 0, "metadata LV not 4 KiB aligned: {table}");
    patch_block(&pv, start / 8, Some(BlockKind::Superblock), |b| {
        b[4] |= 1;
    });

    let w2 = work.path().join("drive");
    fs::create_dir_all(&w2).unwrap();
    let drove = boot(DRIVE, &pv, &w2);
    let log = drove.read("tools-drive.log");

    // Activation ran our thin_check, which cleared NEEDS_CHECK: the kernel
    // reports '-' where it would say needs_check.
    assert_eq!(
        step_log(&log, "activate"),
        [CHECK_CALL, "thin_check exit 0"]
    );
    let status = drove.read("status-activated");
    let st: Vec<&str> = status.split_whitespace().collect();
    assert_eq!(st.get(2), Some(&"thin-pool"), "{status}");
    assert_eq!(st.get(10), Some(&"-"), "needs_check not cleared: {status}");
    assert_eq!(drove.read("hash-activated"), hashes);

    // lvconvert --repair: our thin_repair into the spare, our thin_dump of
    // the result (lvm2 reads its first line), then the check of the swapped
    // metadata at activation; content intact.
    // lvm2 reads one line of thin_dump and closes the pipe: our thin_dump
    // then stops at the broken pipe with status 1 (upstream's with 64),
    // which lvm2 does not look at.
    let mut repair = step_log(&log, "repair");
    assert!(
        matches!(
            repair.get(3),
            Some(&"thin_dump exit 0" | &"thin_dump exit 1")
        ),
        "{log}"
    );
    repair.remove(3);
    assert_eq!(
        repair,
        [
            "thin_repair  -i /dev/mapper/vg-pool_tmeta -o /dev/mapper/vg-lvol0_pmspare",
            "thin_repair exit 0",
            "thin_dump /dev/mapper/vg-lvol0_pmspare",
            CHECK_CALL,
            "thin_check exit 0",
        ]
    );
    assert_eq!(drove.read("hash-repaired"), hashes);

    // lvextend --poolmetadatasize: the kernel grows the metadata online; the
    // next activation's check passes on the grown device.
    assert_eq!(step_log(&log, "extend"), [CHECK_CALL, "thin_check exit 0"]);
    assert_eq!(drove.read("metadata-size").trim(), "8192.00");
    assert_eq!(drove.read("hash-extended"), hashes);

    // A damaged mapping-tree root: lvm2 refuses the pool because our
    // thin_check failed; without -q it names the block.
    let refused = drove.read("refused.out");
    assert!(
        refused.contains("Check of pool vg/pool failed (status:1). Manual repair required!"),
        "{refused}"
    );
    assert_ne!(drove.read("refused.rc").trim(), "0");
    assert!(
        step_log(&log, "damage").contains(&"thin_check exit 1"),
        "{log}"
    );
    let root = drove.read("mapping-root");
    assert_eq!(drove.read("check.rc").trim(), "1");
    let check = drove.read("check.out");
    assert!(
        check.ends_with(&format!(
            "mapping top-level: node error: checksum error at block {}\n",
            root.trim()
        )),
        "{check}"
    );
}
