//! Fuzz the whole of thin_check (with leak repair) on mutated images: any
//! input must end in a verdict, never a panic, hang or huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thintools::pdata::io::MemDevice;
use thintools::thin::engines::check::{check, CheckOptions, Depth, Repair, Summary};
use thintools::thin::engines::check::report::{Strictness, Verbosity};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4096 || data.len() > (1 << 22) {
        return;
    }
    let dev = MemDevice::from_bytes(data.to_vec());
    let opts = CheckOptions {
        depth: Depth::Full,
        repair: Repair::AutoRepair,
        strictness: Strictness::Strict,
        verbosity: Verbosity::Quiet,
        snapshot: None,
        override_mapping_root: None,
        override_details_root: None,
        summary: Summary::Suppress,
    };
    let _ = check(&dev, &opts);
});
