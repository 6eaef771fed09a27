//! Tests that boot the real kernel (Debian's linux-image under qemu, TCG) and
//! run our tools against a live dm-thin pool. Harness: tests/util/vm.rs and
//! scripts/kernel-vm/. They run only with THINTOOLS_VM_TESTS=1 (scripts/test.sh
//! and CI set it) and are skipped, saying so, without it; with the switch and
//! without qemu they fail with instructions.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use crate::util;
use crate::util::vm::{self, parse_dump, Guest};

/// Our tool, or the same-named tool in `$THINTOOLS_VM_TOOL_DIR` (used to
/// check the harness itself against another implementation).
fn tool_path(name: &str) -> PathBuf {
    match std::env::var_os("THINTOOLS_VM_TOOL_DIR") {
        Some(dir) => PathBuf::from(dir).join(name),
        None => util::bin(name),
    }
}

/// Runs `tool_path(name) <image>` on the host.
fn run_tool(name: &str, image: &std::path::Path) -> util::Run {
    let out = std::process::Command::new(tool_path(name))
        .arg(image)
        .output()
        .expect("spawn tool");
    util::Run {
        cmdline: format!("{name} {}", image.display()),
        out,
    }
}

/// The guest side of `live_pool_metadata_snapshot`. State at the
/// reservation (transaction 5): dev 1 maps virtual blocks 0..127, dev 3 is
/// its snapshot (same blocks), dev 2 maps 16..47, dev 4 is being written by
/// a background writer. After the reservation: dev 1 rewrites 0..15, dev 2
/// is deleted, dev 5 is created, transaction 6. Then thin_dump -m and
/// thin_check -m run on the live metadata device while the writer runs.
const LIVE_SCRIPT: &str = r#"
. /job/lib.sh
pool_start 128 0
thin_new 1 16
thin_up 1
put 1 1 0 2048
thin_new 2 8
thin_up 2
put 2 1 256 512
snap_new 3 1
thin_new 4 64
thin_up 4
pool_msg set_transaction_id 0 5
note "pool set up at $(elapsed) s"

# background writer: 256 KiB direct writes to dev 4 until told to stop,
# going round its first 64 MiB (256 slots) again after the first pass
touch /tmp/writing
(
    i=0
    while [ -e /tmp/writing ]; do
        slot=$((i % 256))
        chunks 4 $i $((slot * 64)) 64 | dd of=/dev/mapper/thin4 bs=256K seek=$slot count=1 \
            iflag=fullblock oflag=direct conv=notrunc 2>/dev/null
        i=$((i + 1))
    done
    echo $i > /tmp/writer.count
) &
writer=$!
sleep 1

pool_msg reserve_metadata_snap
dmsetup status pool > "$OUT/status-reserved.txt"
put 1 2 0 256
thin_del 2
thin_new 5 8
pool_msg set_transaction_id 5 6

note "reserved and changed at $(elapsed) s"
rc=0
thin_dump -m "$META" > "$OUT/dump-m.xml" 2> "$OUT/dump-m.err" || rc=$?
echo $rc > "$OUT/dump-m.rc"
rc=0
thin_check -m "$META" > "$OUT/check-m.out" 2>&1 || rc=$?
echo $rc > "$OUT/check-m.rc"
if kill -0 $writer 2>/dev/null; then echo yes; else echo no; fi > "$OUT/writer-running.txt"

note "tools done at $(elapsed) s"
pool_msg release_metadata_snap
dmsetup status pool > "$OUT/status-released.txt"
rm /tmp/writing
wait $writer
cp /tmp/writer.count "$OUT/writer.count"
dmsetup status thin4 > "$OUT/status-thin4.txt"
for d in $(dmsetup ls | awk '$1 ~ /^thin/ { print $1 }'); do show dmsetup remove "$d"; done
pool_stop
note "pool down at $(elapsed) s"
"#;

fn keys(m: &vm::Mappings) -> BTreeSet<u64> {
    m.keys().copied().collect()
}

#[test]
fn live_pool_metadata_snapshot() {
    if !vm::vm_enabled() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let meta = work.path().join("meta.img");
    let data = work.path().join("data.img");
    fs::File::create(&meta).unwrap().set_len(8 << 20).unwrap();
    fs::File::create(&data).unwrap().set_len(128 << 20).unwrap();

    let run = Guest::new(LIVE_SCRIPT)
        .disk("meta", &meta)
        .disk("data", &data)
        .bin(&tool_path("thin_dump"))
        .bin(&tool_path("thin_check"))
        .timeout(300)
        .run(work.path());
    run.expect_ok();
    let ctx = run.describe();
    eprintln!(
        "{}\nwriter: {}",
        run.notes().join("\n"),
        run.read("writer.count").trim()
    );

    // The snapshot was held while the tools ran, and released afterwards.
    let reserved: Vec<String> = run
        .read("status-reserved.txt")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(reserved[3], "5", "{ctx}");
    assert!(
        reserved[6].parse::<u64>().is_ok(),
        "held root: {reserved:?}"
    );
    let released: Vec<String> = run
        .read("status-released.txt")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(released[6], "-", "{released:?}");
    assert_eq!(
        run.read("writer-running.txt").trim(),
        "yes",
        "the background writer had finished before the tools ran: the pool was not under writes"
    );

    // thin_check -m on the live device.
    assert_eq!(
        run.read("check-m.rc").trim(),
        "0",
        "thin_check -m failed:\n{}",
        run.read("check-m.out")
    );

    // thin_dump -m shows the pool as it was at the reservation.
    assert_eq!(
        run.read("dump-m.rc").trim(),
        "0",
        "thin_dump -m failed:\n{}",
        run.read("dump-m.err")
    );
    let d = parse_dump(&run.read("dump-m.xml"));
    assert_eq!(d.transaction, 5, "transaction of the snapshot");
    assert_eq!(d.data_block_size, 128);
    assert_eq!(
        d.devices.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3, 4],
        "devices of the snapshot (2 deleted and 5 created after it)"
    );
    let dev = |id: u32| &d.devices[&id];
    for (id, dd) in &d.devices {
        assert_eq!(
            dd.mapped_blocks,
            dd.mappings.len() as u64,
            "dev {id} mapped_blocks"
        );
    }
    assert_eq!(keys(&dev(1).mappings), (0..128).collect());
    assert_eq!(
        dev(3).mappings,
        dev(1).mappings,
        "the snapshot shares every block of its origin at the reservation"
    );
    assert_eq!(keys(&dev(2).mappings), (16..48).collect());
    assert_eq!(d.time, 1, "superblock time after one create_snap");
    assert_eq!((dev(1).snap_time, dev(3).snap_time), (1, 1));
    // dev 4: whatever the writer had provisioned, in order, within its range.
    let writes: u64 = run.read("writer.count").trim().parse().unwrap();
    let written = writes.min(256);
    let k4 = keys(&dev(4).mappings);
    assert!(k4.len() as u64 <= written * 4, "dev 4 maps {}", k4.len());
    assert!(k4.iter().all(|&b| b < written * 4));
    // No data block is used by two devices except the shared 1/3.
    let mut owners = std::collections::BTreeMap::new();
    for id in [1u32, 2, 4] {
        for (db, _) in dev(id).mappings.values() {
            assert!(
                owners.insert(*db, id).is_none(),
                "data block {db} mapped twice"
            );
        }
    }

    // After a clean shutdown: the live state, offline.
    let check = run_tool("thin_check", &meta);
    check.expect_code(0);
    let dump = run_tool("thin_dump", &meta);
    dump.expect_code(0);
    let f = parse_dump(&dump.stdout());
    assert_eq!(f.transaction, 6);
    assert_eq!(
        f.devices.keys().copied().collect::<Vec<_>>(),
        vec![1, 3, 4, 5]
    );
    let (f1, f3) = (&f.devices[&1].mappings, &f.devices[&3].mappings);
    assert_eq!(f3, &dev(3).mappings, "the snapshot kept its blocks");
    for b in 0..128u64 {
        let shared = f1[&b].0 == f3[&b].0;
        assert_eq!(
            shared,
            b >= 16,
            "dev 1 block {b}: rewritten blocks 0..15 only"
        );
    }
    let thin4: Vec<String> = run
        .read("status-thin4.txt")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mapped_sectors: u64 = thin4[3].parse().unwrap();
    assert_eq!(f.devices[&4].mappings.len() as u64, mapped_sectors / 128);
    assert_eq!(mapped_sectors / 128, written * 4);
}

/// Boots the kernel on `meta` (a metadata image for fixture `fx`'s pool)
/// with the fixture's data image: every thin must read back as recorded in
/// `content.sha256`; then a write to the first thin, a new snapshot of it
/// and a write to the snapshot; after the clean shutdown thin_check must
/// pass and thin_dump must show the new state. This is the end-to-end check
/// for metadata our tools write (e.g. thin_restore of the fixture's dump).
pub fn reactivate_and_check(fx: &vm::Fixture, meta: &std::path::Path, work: &std::path::Path) {
    let first = fx.thins.first().expect("fixture with thins").id;
    let new_id = fx.thins.iter().map(|t| t.id).max().unwrap() + 1;
    let after = format!(
        "put {first} 77 0 64\nsnap_new {new_id} {first}\nthin_up {new_id}\nput {new_id} 78 64 64\n"
    );
    let res = vm::PoolBoot::from_fixture(fx, meta, work)
        .then(&after)
        .run(work);
    eprintln!("{}: guest time {:?} s", fx.name, res.run.guest_seconds);
    assert_eq!(
        res.hashes, fx.content,
        "{}: thin content read through the kernel differs from content.sha256",
        fx.name
    );
    run_tool("thin_check", meta).expect_code(0);
    let dump = run_tool("thin_dump", meta);
    dump.expect_code(0);
    let d = parse_dump(&dump.stdout());
    let mut ids: Vec<u32> = fx.thins.iter().map(|t| t.id).collect();
    ids.push(new_id);
    assert_eq!(d.devices.keys().copied().collect::<Vec<_>>(), ids);
    let (orig, snap) = (&d.devices[&first].mappings, &d.devices[&new_id].mappings);
    // The written 256 KiB are mapped in both; the snapshot's own write broke
    // sharing for its blocks only.
    let bs_chunks = fx.block_size() / 8;
    for b in 0..64u64.div_ceil(bs_chunks) {
        assert!(orig.contains_key(&b), "dev {first} block {b} mapped");
    }
    for b in (64 / bs_chunks)..(128u64).div_ceil(bs_chunks) {
        assert_ne!(
            orig.get(&b).map(|m| m.0),
            Some(snap[&b].0),
            "block {b} of the snapshot is its own"
        );
    }
}

#[test]
fn fixture_pool_reactivates_d_snap_chain() {
    if !vm::vm_enabled() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let fx = vm::Fixture::load("d-snap-chain");
    let meta = fx.unpack("meta", work.path());
    reactivate_and_check(&fx, &meta, work.path());
}

/// The acceptance flow for our writer: our thin_dump of the fixture's
/// kernel-written metadata, our thin_restore into a fresh zeroed metadata
/// image of the same size, then [`reactivate_and_check`] on the result.
fn restored_pool_reactivates(name: &str) {
    if !vm::vm_enabled() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let fx = vm::Fixture::load(name);
    let orig = fx.unpack("meta", work.path());
    let dump = run_tool("thin_dump", &orig);
    dump.expect_code(0);
    let xml = work.path().join("dump.xml");
    fs::write(&xml, dump.out.stdout).unwrap();
    let meta = work.path().join("restored.img");
    fs::File::create(&meta)
        .unwrap()
        .set_len(fs::metadata(&orig).unwrap().len())
        .unwrap();
    let out = std::process::Command::new(tool_path("thin_restore"))
        .arg("-i")
        .arg(&xml)
        .arg("-o")
        .arg(&meta)
        .output()
        .expect("spawn thin_restore");
    util::Run {
        cmdline: format!("thin_restore -i {} -o {}", xml.display(), meta.display()),
        out,
    }
    .expect_code(0);
    reactivate_and_check(&fx, &meta, work.path());
}

#[test]
fn restored_pool_reactivates_d_snap_chain() {
    restored_pool_reactivates("d-snap-chain");
}

#[test]
fn restored_pool_reactivates_f_held_metasnap() {
    restored_pool_reactivates("f-held-metasnap");
}

#[test]
fn restored_pool_reactivates_g_external_origin() {
    restored_pool_reactivates("g-external-origin");
}

#[test]
fn restored_pool_reactivates_h_deleted_thins() {
    restored_pool_reactivates("h-deleted-thins");
}

#[test]
fn restored_pool_reactivates_k_grown_pool() {
    restored_pool_reactivates("k-grown-pool");
}

/// Every committed fixture's `info` and `thins.reg` agree with its metadata
/// as our thin_dump reads it (no VM needed): transaction id, block size,
/// data blocks, device ids, mapped blocks in use; with a held root,
/// `thin_dump -m` shows the devices at the reservation.
#[test]
fn fixture_info_matches_metadata() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut names: Vec<String> = fs::read_dir(util::fixtures_dir())
        .expect("fixtures/")
        .flatten()
        .filter(|e| e.path().join("info").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 12, "fixtures: {names:?}");
    for name in names {
        let fx = vm::Fixture::load(&name);
        let meta = fx.unpack("meta", work.path());
        assert_eq!(
            fs::metadata(&meta).unwrap().len(),
            fx.num("metadata_bytes"),
            "{name}: unpacked metadata size"
        );
        let r = run_tool("thin_dump", &meta);
        r.expect_code(0);
        let d = parse_dump(&r.stdout());
        assert_eq!(
            d.transaction,
            fx.num("transaction_id"),
            "{name}: transaction"
        );
        assert_eq!(d.data_block_size, fx.block_size(), "{name}: block size");
        assert_eq!(
            d.nr_data_blocks,
            fx.num("data_blocks"),
            "{name}: data blocks"
        );
        let ids: Vec<u32> = d.devices.keys().copied().collect();
        let mut reg: Vec<u32> = fx.thins.iter().map(|t| t.id).collect();
        reg.sort_unstable();
        assert_eq!(ids, reg, "{name}: devices");
        let want: Vec<String> = reg.iter().map(u32::to_string).collect();
        assert_eq!(fx.info["devices"], want.join(" "), "{name}: info devices");
        let used: BTreeSet<u64> = d
            .devices
            .values()
            .flat_map(|dev| dev.mappings.values().map(|m| m.0))
            .collect();
        if fx.info["held_root"] == "-" {
            assert_eq!(
                used.len() as u64,
                fx.num("data_blocks_used"),
                "{name}: data blocks in use"
            );
        } else {
            // The held snapshot keeps blocks the live trees no longer map.
            assert!(used.len() as u64 <= fx.num("data_blocks_used"), "{name}");
            let out = std::process::Command::new(tool_path("thin_dump"))
                .arg("-m")
                .arg(&meta)
                .output()
                .expect("spawn thin_dump -m");
            assert!(out.status.success(), "{name}: thin_dump -m");
            let snap = parse_dump(&String::from_utf8_lossy(&out.stdout));
            assert!(
                snap.transaction < d.transaction,
                "{name}: snapshot is older"
            );
            assert!(
                snap.devices.len() < d.devices.len(),
                "{name}: fewer devices"
            );
        }
    }
}
