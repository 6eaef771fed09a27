//! Fuzz superblock decoding and validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thintools::thin::model::superblock::Superblock;

fuzz_target!(|data: &[u8]| {
    let mut block = [0u8; 4096];
    let n = data.len().min(4096);
    block[..n].copy_from_slice(&data[..n]);
    let sb = Superblock::from_bytes(&block);
    let _ = sb.validate(0);
    let _ = sb.data_sm_root.nr_bitmaps();
    let again = Superblock::from_bytes(&sb.to_block().0);
    assert_eq!(again.trans_id, sb.trans_id);
});
