//! Fuzz what the live tools parse from outside: volume names on the command
//! line (LVM or dm path), `lvs` output lines, and device-mapper thin and
//! thin-pool table parameters and pool status lines. No input may panic;
//! whatever parses must print back to text that parses to the same value.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use libfuzzer_sys::fuzz_target;
use thintools::thin::live::lvm::{classify, parse_lvs_line, VolumeName};
use thintools::thin::live::resolve::{
    parse_devnum, parse_pool_status, parse_pool_table, parse_thin_table, PoolMode,
};

fn names(data: &[u8]) {
    match classify(OsStr::from_bytes(data)) {
        VolumeName::Lvm(n) => {
            assert_eq!(n.as_bytes(), data);
            assert!(n.contains('/') && !n.starts_with("/dev/mapper/"));
        }
        VolumeName::Path(p) => assert_eq!(p.as_os_str().as_bytes(), data),
    }
}

fn lvs(text: &str) {
    if let Some(i) = parse_lvs_line("x", text) {
        assert!(!i.vg.is_empty() && !i.lv.is_empty() && i.attr.len() >= 5);
        let again = format!(
            "{}|{}|{}|{}|{}|{}",
            i.vg,
            i.lv,
            i.pool.clone().unwrap_or_default(),
            i.dm_path.display(),
            i.thin_id.map(|t| t.to_string()).unwrap_or_default(),
            i.attr
        );
        if !again.contains(char::is_whitespace) {
            assert_eq!(parse_lvs_line("x", &again), Some(i));
        }
    }
}

fn tables(text: &str) {
    let _ = parse_devnum(text);
    if let Some(t) = parse_thin_table(text) {
        let mut again = format!("{}:{} {}", t.pool.0, t.pool.1, t.thin_id);
        if let Some(o) = t.origin {
            again.push_str(&format!(" {}:{}", o.0, o.1));
        }
        assert_eq!(parse_thin_table(&again), Some(t));
    }
    if let Some(p) = parse_pool_table(text) {
        assert!(p.block_sectors > 0);
        let again = format!(
            "{}:{} {}:{} {} 0 0",
            p.metadata.0, p.metadata.1, p.data.0, p.data.1, p.block_sectors
        );
        assert_eq!(parse_pool_table(&again), Some(p));
    }
    if let Some(s) = parse_pool_status(text) {
        if s.mode != PoolMode::Fail {
            let mode = match s.mode {
                PoolMode::ReadWrite => "rw",
                PoolMode::ReadOnly => "ro",
                _ => "out_of_data_space",
            };
            let held = s.held_root.map_or_else(|| "-".to_owned(), |r| r.to_string());
            let check = if s.needs_check { "needs_check" } else { "-" };
            let again = format!(
                "{} 1/2 3/4 {held} {mode} discard_passdown queue_if_no_space {check} 5",
                s.transaction_id
            );
            assert_eq!(parse_pool_status(&again), Some(s));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    names(data);
    let text = String::from_utf8_lossy(data);
    lvs(&text);
    tables(&text);
});
