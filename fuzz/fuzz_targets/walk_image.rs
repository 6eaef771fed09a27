//! Fuzz whole-image walking: the input is a small metadata image (a
//! fixture with mutations); walk every tree the superblock names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thintools::pdata::btree::walk::Walker;
use thintools::pdata::io::MemDevice;
use thintools::thin::model::open::{choose_superblock, read_details, read_top_level, SnapshotChoice};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4096 || data.len() > (1 << 22) {
        return;
    }
    let dev = MemDevice::from_bytes(data.to_vec());
    let Ok(chosen) = choose_superblock(&dev, SnapshotChoice::Live) else { return };
    let mut walker = Walker::new(&dev);
    let _ = read_details(&mut walker, chosen.sb.details_root);
    if let Ok(top) = read_top_level(&mut walker, chosen.sb.mapping_root) {
        let roots: Vec<u64> = top.values().copied().collect();
        walker.walk(&roots, 8, |_, n| n.len(), |_, _| {});
        let g = walker.graph();
        let _ = g.subtree_totals();
        for r in roots {
            let _ = g.leaves_of(r, |_, _| {});
        }
    }
});
