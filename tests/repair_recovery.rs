//! Repair recovers at least what upstream 1.3.3 recovers, one damage class
//! at a time, on damaged copies of the kernel-written fixtures.

use thintools::pdata::checksum::BlockKind;

use crate::repair::repair_with;
use crate::util::image::Image;

/// Node header: number of entries, then the capacity.
const NR_ENTRIES: usize = 16;
const MAX_ENTRIES: usize = 20;
const KEYS: usize = 32;

fn fixture(name: &str) -> Image {
    Image::load_zst(&crate::util::fixtures_dir().join(name).join("meta.img.zst"))
}

fn u32_at(img: &Image, nr: u64, off: usize) -> u32 {
    u32::from_le_bytes(img.block(nr)[off..off + 4].try_into().unwrap())
}

/// Appends (key, value bytes) to the leaf at `nr` and fixes its checksum.
fn append_entry(img: &mut Image, nr: u64, key: u64, value: &[u8]) {
    let n = u32_at(img, nr, NR_ENTRIES) as usize;
    let max = u32_at(img, nr, MAX_ENTRIES) as usize;
    assert!(n < max, "leaf {nr} is full");
    let b = img.block_mut(nr);
    b[KEYS + 8 * n..KEYS + 8 * n + 8].copy_from_slice(&key.to_le_bytes());
    let v = KEYS + 8 * max + value.len() * n;
    b[v..v + value.len()].copy_from_slice(value);
    b[NR_ENTRIES..NR_ENTRIES + 4].copy_from_slice(&(u32::try_from(n + 1).unwrap()).to_le_bytes());
    thintools::pdata::checksum::write_checksum(b, BlockKind::Node);
}

/// Values of one `<device .../>` line, by attribute.
fn device_attr(line: &str, a: &str) -> u64 {
    let k = format!(" {a}=\"");
    let s = &line[line.find(&k).unwrap() + k.len()..];
    s[..s.find('"').unwrap()].parse().unwrap()
}

/// The kernel's snapshot of a thin not written since: the snapshot's
/// top-level entry names exactly its origin's mapping root. With the
/// superblock lost, both devices come back with their own details, and the
/// pool's time is at least every device's snapshot time.
#[test]
fn lost_superblock_devices_sharing_a_mapping_root_all_come_back() {
    let mut img = fixture("b-full-thin");
    let top = img.mapping_root();
    let details = img.details_root();
    assert_eq!(
        u32_at(&img, top, NR_ENTRIES),
        1,
        "one thin, one top-level leaf"
    );
    let origin_id = img.u64_at(top, KEYS);
    let snap_id = origin_id + 1;
    let origin_root = img.u64_at(top, KEYS + 8 * u32_at(&img, top, MAX_ENTRIES) as usize);
    let dmax = u32_at(&img, details, MAX_ENTRIES) as usize;
    let mapped = img.u64_at(details, KEYS + 8 * dmax);
    // The snapshot taken at time 1: the origin's snap_time becomes 1.
    let origin = KEYS + 8 * dmax + 20;
    img.block_mut(details)[origin..origin + 4].copy_from_slice(&1u32.to_le_bytes());
    append_entry(&mut img, top, snap_id, &origin_root.to_le_bytes());
    let mut snap = Vec::new();
    snap.extend_from_slice(&mapped.to_le_bytes());
    snap.extend_from_slice(&1u64.to_le_bytes());
    snap.extend_from_slice(&1u32.to_le_bytes());
    snap.extend_from_slice(&1u32.to_le_bytes());
    append_entry(&mut img, details, snap_id, &snap);
    img.zero(0);

    let r = repair_with(&img, |o| o.data_block_size = Some(256));
    let xml = r.xml();
    let devices: Vec<[u64; 4]> = xml
        .lines()
        .filter(|l| l.trim_start().starts_with("<device "))
        .map(|l| {
            [
                device_attr(l, "dev_id"),
                device_attr(l, "mapped_blocks"),
                device_attr(l, "transaction"),
                device_attr(l, "snap_time"),
            ]
        })
        .collect();
    assert_eq!(
        devices,
        vec![[origin_id, mapped, 0, 1], [snap_id, mapped, 1, 1]],
        "{:#?}",
        r.log
    );
    let sb = xml.lines().next().unwrap();
    assert!(device_attr(sb, "time") >= 1, "{sb}");
}

/// Flags of a node header, and the flag of an internal node.
const FLAGS: usize = 4;
const INTERNAL: u32 = 1;
const BLOCKNR: usize = 8;

/// The value of entry `i` of the node at `nr` (8-byte values).
fn value(img: &Image, nr: u64, i: usize) -> u64 {
    img.u64_at(nr, KEYS + 8 * u32_at(img, nr, MAX_ENTRIES) as usize + 8 * i)
}

/// The `i`-th leaf under the mapping root of the first device, going down
/// the `i`-th child at every internal level.
fn some_mapping_leaf(img: &Image, i: usize) -> u64 {
    let mut nr = value(img, img.mapping_root(), 0);
    while u32_at(img, nr, FLAGS) == INTERNAL {
        nr = value(img, nr, i.min(u32_at(img, nr, NR_ENTRIES) as usize - 1));
    }
    nr
}

/// A leaf whose block-number field is wrong but whose checksum, keys and
/// entries are sound: its mappings are used, and the repair says so.
#[test]
fn a_node_whose_only_damage_is_its_block_number_keeps_its_mappings() {
    let img0 = fixture("i-three-level-tree");
    let want = crate::repair::repair(&img0);
    let mut img = Image {
        bytes: img0.bytes.clone(),
    };
    let leaf = some_mapping_leaf(&img, 1);
    img.patch_u64(leaf, BLOCKNR, leaf + 1000, BlockKind::Node);
    let r = crate::repair::repair(&img);
    crate::repair::assert_same(r.xml(), want.xml(), "i-three-level-tree", &r.log);
    assert!(
        r.log.contains(&format!(
            "block {leaf}: leaf with a wrong block number field; its entries are used"
        )),
        "{:#?}",
        r.log
    );
}

/// Removes entry `i` of the leaf at `nr` (8-byte values) and fixes its checksum.
fn remove_entry(img: &mut Image, nr: u64, i: usize) {
    let n = u32_at(img, nr, NR_ENTRIES) as usize;
    let max = u32_at(img, nr, MAX_ENTRIES) as usize;
    let b = img.block_mut(nr);
    for (start, width) in [(KEYS, 8), (KEYS + 8 * max, 8)] {
        b.copy_within(
            start + width * (i + 1)..start + width * n,
            start + width * i,
        );
        b[start + width * (n - 1)..start + width * n].fill(0);
    }
    b[NR_ENTRIES..NR_ENTRIES + 4].copy_from_slice(&(u32::try_from(n - 1).unwrap()).to_le_bytes());
    thintools::pdata::checksum::write_checksum(b, BlockKind::Node);
}

/// A device whose top-level entry is gone while its details and its mapping
/// tree are intact gets its tree back, whole.
#[test]
fn a_device_missing_from_the_top_level_tree_adopts_its_subtree() {
    for (name, entry) in [
        ("b-full-thin", 0),
        ("c-many-thins", 17),
        ("d-snap-chain", 3),
    ] {
        let img0 = fixture(name);
        let want = crate::repair::repair(&img0);
        let mut img = Image {
            bytes: img0.bytes.clone(),
        };
        let top = img.mapping_root();
        assert_eq!(u32_at(&img, top, FLAGS), 2, "{name}: one top-level leaf");
        // The first device from `entry` on that has mappings.
        let entry = (entry..u32_at(&img, top, NR_ENTRIES) as usize)
            .find(|&i| u32_at(&img, value(&img, top, i), NR_ENTRIES) > 0)
            .unwrap();
        let id = img.u64_at(top, KEYS + 8 * entry);
        let root = value(&img, top, entry);
        remove_entry(&mut img, top, entry);
        let r = crate::repair::repair(&img);
        crate::repair::assert_same(r.xml(), want.xml(), name, &r.log);
        // Found as an orphan, or named by an older top-level tree that
        // still holds the same, unchanged tree.
        let orphan = format!("device {id}: mapping tree recovered from unreferenced root {root}");
        let older = format!("device {id}: mapping tree taken whole from the older top-level tree");
        assert!(
            r.log.iter().any(|l| *l == orphan || l.starts_with(&older)),
            "{name}: {:#?}",
            r.log
        );
    }
}

/// Mapping leaves (flag 2, 8-byte values) of `img` with a valid checksum:
/// (block, keys, data blocks).
fn mapping_leaves_on_disk(img: &Image) -> Vec<(u64, Vec<u64>, Vec<u64>)> {
    const LEAF: u32 = 2;
    const VALUE_SIZE: usize = 24;
    (1..img.nr_blocks())
        .filter(|&b| thintools::pdata::checksum::classify(img.block(b)) == Some(BlockKind::Node))
        .filter(|&b| u32_at(img, b, FLAGS) == LEAF && u32_at(img, b, VALUE_SIZE) == 8)
        .map(|b| {
            let n = u32_at(img, b, NR_ENTRIES) as usize;
            let keys = (0..n).map(|i| img.u64_at(b, KEYS + 8 * i)).collect();
            let data = (0..n).map(|i| value(img, b, i) >> 24).collect();
            (b, keys, data)
        })
        .collect()
}

/// The warnings about devices in a repair's log (its `-v` lines left out).
fn device_warnings(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| l.starts_with("device ") && !l.starts_with("device candidates"))
        .cloned()
        .collect()
}

/// Device `id`'s mappings in a dump: virtual block → data block.
fn device_mappings(xml: &str, id: u64) -> std::collections::BTreeMap<u64, u64> {
    crate::repair_matrix::mappings_of(xml)
        .0
        .remove(&id)
        .unwrap_or_default()
}

/// A leaf that fails its checksum while the metadata still holds its
/// copy-on-write predecessor: the predecessor fills the range, named with
/// the device, the range and the warning that it may be older than the last
/// commit, and the mappings to data blocks another thin took over since are
/// dropped and counted. Fixture l: dev 1 wrote 0..31 then discarded 0..15;
/// thin 2 then took data 0..7 at its blocks 16..23 and data 8..11 at 8..11.
#[test]
fn a_damaged_leaf_is_filled_from_its_older_copy_less_the_reused_blocks() {
    let img0 = fixture("l-reused-blocks");
    let healthy = crate::repair::repair(&img0);
    let dev2_blocks: std::collections::BTreeSet<u64> =
        device_mappings(healthy.xml(), 2).into_values().collect();
    let top = img0.mapping_root();
    assert_eq!(
        img0.u64_at(top, KEYS),
        1,
        "dev 1 first in the top-level leaf"
    );
    let current = value(&img0, top, 0);
    // The predecessor: the leaf of dev 1 from before the discard, 0..31.
    let leaves = mapping_leaves_on_disk(&img0);
    let (older, keys, data) = leaves
        .iter()
        .find(|(b, k, _)| *b != current && k.first() == Some(&0) && k.len() == 32)
        .expect("the predecessor of dev 1's leaf is on disk")
        .clone();
    let older_top = leaves
        .iter()
        .find(|(b, k, _)| k.first() == Some(&1) && value(&img0, *b, 0) == older)
        .expect("an older top-level leaf names it")
        .0;
    let want: std::collections::BTreeMap<u64, u64> = keys
        .iter()
        .zip(&data)
        .filter(|(_, d)| !dev2_blocks.contains(d))
        .map(|(&k, &d)| (k, d))
        .collect();
    let dropped = keys.len() - want.len();
    assert_eq!((want.len(), dropped), (20, 12), "{want:?}");

    let mut img = Image {
        bytes: img0.bytes.clone(),
    };
    img.corrupt(current);
    let r = crate::repair::repair(&img);
    assert_eq!(device_mappings(r.xml(), 1), want, "{:#?}", r.log);
    assert_eq!(
        device_mappings(r.xml(), 2),
        device_mappings(healthy.xml(), 2),
        "thin 2 keeps its blocks"
    );
    assert_eq!(
        device_warnings(&r.log),
        vec![
            format!(
                "device 1: lost mappings in [0..) (block {current} unreadable: checksum error)"
            ),
            format!(
                "device 1: mappings in [0..32) taken from an older copy of its tree (20 mappings \
                 in 1 leaves of the older top-level tree at block {older_top}): they may be older \
                 than the pool's last commit; dropped 12 whose data blocks the surviving trees \
                 use elsewhere (reused)"
            ),
            "device 1: mapped_blocks is 16 but 20 mappings were recovered".to_string(),
        ]
    );

    // Without the predecessor, the range is named as lost and nothing is
    // rolled back.
    img.corrupt(older);
    let r = crate::repair::repair(&img);
    assert!(device_mappings(r.xml(), 1).is_empty(), "{:#?}", r.log);
    assert_eq!(
        device_warnings(&r.log),
        vec![
            format!(
                "device 1: lost mappings in [0..) (block {current} unreadable: checksum error)"
            ),
            "device 1: kept with no mappings".to_string(),
            "device 1: mapped_blocks is 16 but 0 mappings were recovered".to_string(),
        ]
    );
}

/// With no older top-level tree left, an older internal node of the
/// device's own tree (it still keeps the device's current leaves as
/// children) gives back the lost leaf's predecessor; what comes back is in
/// the original pool, and named as possibly older.
#[test]
fn a_damaged_leaf_is_filled_from_an_older_internal_node_of_its_tree() {
    let img0 = fixture("i-three-level-tree");
    let healthy = device_mappings(crate::repair::repair(&img0).xml(), 0);
    let mut img = Image {
        bytes: img0.bytes.clone(),
    };
    let top = img.mapping_root();
    // Every older top-level leaf (one entry for device 0, naming an
    // internal node) is damaged too.
    let older_tops: Vec<u64> = mapping_leaves_on_disk(&img)
        .into_iter()
        .filter(|(b, k, _)| *b != top && k.as_slice() == [0])
        .filter(|(b, _, _)| u32_at(&img, value(&img, *b, 0), FLAGS) == INTERNAL)
        .map(|(b, _, _)| b)
        .collect();
    assert!(
        !older_tops.is_empty(),
        "the kernel left older top-level leaves"
    );
    for &b in &older_tops {
        img.corrupt(b);
    }
    let leaf = some_mapping_leaf(&img, 40);
    let lost = u32_at(&img, leaf, NR_ENTRIES) as usize;
    img.corrupt(leaf);
    let r = crate::repair::repair(&img);
    let got = device_mappings(r.xml(), 0);
    let extra: Vec<_> = got
        .iter()
        .filter(|(v, d)| healthy.get(v) != Some(d))
        .collect();
    assert!(extra.is_empty(), "not in the pool: {extra:?}");
    assert!(
        got.len() > healthy.len() - lost,
        "{} of {}",
        got.len(),
        healthy.len()
    );
    assert!(
        device_warnings(&r.log).iter().any(|l| l
            .contains("leaves under the older internal node at block")
            && l.ends_with("they may be older than the pool's last commit")),
        "{:#?}",
        device_warnings(&r.log)
    );
}
