//! Fuzz the node parser: any 4 KiB block, any location, each leaf value size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thintools::pdata::btree::node::{NodePosition, NodeRef};

fuzz_target!(|data: &[u8]| {
    let mut block = [0u8; 4096];
    let n = data.len().min(4096);
    block[..n].copy_from_slice(&data[..n]);
    for vs in [4u32, 8, 16, 24] {
        // Parse without the checksum so the fuzzer reaches the header rules.
        if let Ok(node) = NodeRef::parse(&block, 0, vs) {
            let _ = node.non_fatal_issue(NodePosition::NonRoot);
            for i in 0..node.len() {
                let _ = node.key(i);
            }
            let _ = node.values_u64().len();
            let _ = node.value_bytes().len();
        }
        let _ = NodeRef::new(&block, 0, vs);
    }
});
