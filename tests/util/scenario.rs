//! What dm-thin did in a fixture's scenario, replayed on a model of the
//! pool's mappings: the oracle for thin_delta's and thin_ls's outputs.

use std::collections::BTreeMap;

/// thin block → (data identity, mapping time)
pub type DevMap = BTreeMap<u64, (u64, u32)>;

/// A model of what dm-thin did to each device's mappings in a scenario: per
/// device, thin block → data identity. Identities are equal exactly when the
/// kernel maps both blocks to the same data block.
#[derive(Default)]
pub struct PoolModel {
    time: u32,
    next_id: u64,
    /// dev → (snapshotted_time, block → (identity, mapping time))
    pub devs: BTreeMap<u64, (u32, DevMap)>,
}

impl PoolModel {
    pub fn create_thin(&mut self, id: u64) {
        self.devs.insert(id, (self.time, BTreeMap::new()));
    }

    /// create_snap: time advances, both devices get the new snapshot time.
    pub fn create_snap(&mut self, id: u64, origin: u64) {
        self.time += 1;
        let o = self.devs.get_mut(&origin).unwrap();
        o.0 = self.time;
        let map = o.1.clone();
        self.devs.insert(id, (self.time, map));
    }

    /// A write of whole or partial blocks `first..=last`: unmapped blocks get
    /// a new data block, shared ones (mapping time before the device's
    /// snapshot time) are copied to a new one, others are written in place.
    pub fn write_blocks(&mut self, dev: u64, first: u64, last: u64) {
        let time = self.time;
        let (snap_time, map) = self.devs.get_mut(&dev).unwrap();
        for b in first..=last {
            let fresh = match map.get(&b) {
                None => true,
                Some(&(_, t)) => t < *snap_time,
            };
            if fresh {
                self.next_id += 1;
                map.insert(b, (self.next_id, time));
            }
        }
    }

    /// `put DEV GEN OFF4K COUNT4K` with `chunks_per_block` 4 KiB chunks per block.
    pub fn put(&mut self, dev: u64, off4k: u64, count4k: u64, chunks_per_block: u64) {
        self.write_blocks(
            dev,
            off4k / chunks_per_block,
            (off4k + count4k - 1) / chunks_per_block,
        );
    }

    /// The simple delta elements thin_delta must print for `left` vs `right`.
    pub fn expected_delta(&self, left: u64, right: u64) -> Vec<String> {
        let l = &self.devs[&left].1;
        let r = &self.devs[&right].1;
        let mut keys: Vec<u64> = l.keys().chain(r.keys()).copied().collect();
        keys.sort_unstable();
        keys.dedup();
        let mut out: Vec<(&str, u64, u64)> = Vec::new();
        for k in keys {
            let kind = match (l.get(&k), r.get(&k)) {
                (Some(a), Some(b)) if a.0 == b.0 => "same",
                (Some(_), Some(_)) => "different",
                (Some(_), None) => "left_only",
                _ => "right_only",
            };
            match out.last_mut() {
                Some(last) if last.0 == kind && last.1 + last.2 == k => last.2 += 1,
                _ => out.push((kind, k, 1)),
            }
        }
        out.iter()
            .map(|(kind, b, n)| format!("    <{kind} begin=\"{b}\" length=\"{n}\"/>"))
            .collect()
    }

    /// (mapped, exclusive, highest) of a device: a mapping is exclusive when
    /// no other device maps to its data block.
    pub fn counts(&self, dev: u64) -> (u64, u64, u64) {
        let mut users: BTreeMap<u64, u32> = BTreeMap::new();
        for (_, map) in self.devs.values() {
            for &(id, _) in map.values() {
                *users.entry(id).or_default() += 1;
            }
        }
        let map = &self.devs[&dev].1;
        let excl = map.values().filter(|(id, _)| users[id] == 1).count() as u64;
        (
            map.len() as u64,
            excl,
            map.keys().last().copied().unwrap_or(0),
        )
    }
}

/// The d-snap-chain scenario (fixtures/d-snap-chain/scenario.sh) replayed on
/// the model, with the guest library's random number generator.
pub fn snap_chain_model() -> PoolModel {
    let mut seed: u64 = 2024;
    let mut rand = |n: u64| {
        seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
        (seed / 65_536) % n
    };
    let cpb = 128 / 8; // 64 KiB blocks
    let mut m = PoolModel::default();
    m.create_thin(0);
    m.put(0, 0, 4096, cpb);
    let mut prev = 0;
    for g in 1..=11u64 {
        m.create_snap(g, prev);
        for _ in 0..3 {
            let len = rand(48) + 1;
            let off = rand(4096 - len);
            m.put(g, off, len, cpb);
        }
        if g % 2 == 0 {
            let off = rand(4000);
            m.put(0, off, 40, cpb);
        }
        prev = g;
    }
    m.create_snap(12, 4);
    m.put(12, 200, 64, cpb);
    m
}
