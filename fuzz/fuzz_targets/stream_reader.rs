//! Fuzz the send/receive stream reader (formats 1.0, 1.1 and 2) under every
//! `--accept-stream-format` choice. Format 2 inputs are also fed with their
//! record checksums recomputed, so that mutations reach the checks behind
//! them (ranges, header fields, compressed payloads, counts, digest).
#![no_main]

use libfuzzer_sys::fuzz_target;
use thintools::thin::engines::send_recv::stream::reader::StreamReader;
use thintools::thin::engines::send_recv::stream::{v2, Accept, Event, Format};

fn drain(data: &[u8], accept: Accept) {
    let mut r = StreamReader::new(data, accept);
    let mut events = 0u64;
    loop {
        match r.next_event() {
            Ok(Some(Event::Data { bytes, .. })) => {
                assert!(bytes.len() as u64 <= v2::MAX_DATA);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
        events += 1;
        // Every event consumes input or ends the stream: no endless loop.
        assert!(events <= 2 * data.len() as u64 + 4);
    }
    assert!(r.position() <= data.len() as u64);
}

/// Rewrites the checksum of every format 2 record whose header is complete.
fn fix_checksums(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut at = 0usize;
    while at + v2::RECORD_HEADER_SIZE <= out.len() && out[at..at + 8] == v2::MAGIC {
        let plen = u32::from_le_bytes(out[at + 32..at + 36].try_into().unwrap()) as usize;
        let end = at + v2::RECORD_HEADER_SIZE + plen;
        if end > out.len() {
            break;
        }
        let mut c = crc32c::crc32c(&out[at..at + v2::CSUM_COVERS]);
        c = crc32c::crc32c_append(c, &out[at + v2::RECORD_HEADER_SIZE..end]);
        out[at + 36..at + 40].copy_from_slice(&c.to_le_bytes());
        at = end;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    for accept in [
        Accept::Auto,
        Accept::Only(Format::V1_0),
        Accept::Only(Format::V1_1),
        Accept::Only(Format::V2),
    ] {
        drain(data, accept);
    }
    if data.starts_with(&v2::MAGIC) {
        drain(&fix_checksums(data), Accept::Auto);
    }
});
