//! Round trips of every format, the spec's byte-exact examples, and damaged
//! streams (every truncation, every flipped byte of a small stream).

use sha2::{Digest, Sha256};

use super::reader::{hex, StreamReader};
use super::writer::{Compression, StreamWriter};
use super::*;

/// What a reader handed out, with DATA pieces joined per offset.
#[derive(Debug, PartialEq, Eq)]
enum Op {
    Begin(Format),
    Data(u64, Vec<u8>),
    Zero(u64, u64),
    Unmap(u64, u64),
    End,
}

fn read_all(bytes: &[u8], accept: Accept) -> Result<Vec<Op>, StreamError> {
    let mut r = StreamReader::new(bytes, accept);
    let mut out = Vec::new();
    while let Some(ev) = r.next_event()? {
        if let Event::Data { offset, bytes } = &ev {
            if let Some(Op::Data(o, v)) = out.last_mut() {
                if *o + v.len() as u64 == *offset {
                    v.extend_from_slice(bytes);
                    continue;
                }
            }
        }
        out.push(match ev {
            Event::Begin { format, .. } => Op::Begin(format),
            Event::Data { offset, bytes } => Op::Data(offset, bytes.to_vec()),
            Event::Zero { offset, len } => Op::Zero(offset, len),
            Event::Unmap { offset, len } => Op::Unmap(offset, len),
            Event::End => Op::End,
        });
    }
    Ok(out)
}

fn sha256_hex(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

fn linbit_example(format: Format) -> Vec<u8> {
    let mut w = StreamWriter::new(Vec::new(), format, None, Compression::None).unwrap();
    w.data_record(0, 65536).unwrap();
    w.payload(&[0; 65536]).unwrap();
    w.unmap(65536, 65536).unwrap();
    w.finish().unwrap().0
}

#[test]
fn empty_1_1_stream_is_the_spec_bytes() {
    let w = StreamWriter::new(Vec::new(), Format::V1_1, None, Compression::None).unwrap();
    let (bytes, counts) = w.finish().unwrap();
    assert_eq!(bytes.len(), 80);
    assert_eq!(counts.records, 2);
    assert_eq!(
        sha256_hex(&bytes),
        "46709cef45d5105627e5afda32dee1b8885309dfdc4f83c6c493ca7b13d6ec83"
    );
    assert_eq!(
        read_all(&bytes, Accept::Auto).unwrap(),
        [Op::Begin(Format::V1_1), Op::End]
    );
    let e = read_all(&bytes, Accept::Only(Format::V1_0)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "stream offset 0: stream format 1.1 is not accepted here"
    );
}

#[test]
fn worked_1_1_example_is_the_spec_bytes_and_reads_back() {
    let bytes = linbit_example(Format::V1_1);
    assert_eq!(bytes.len(), 65672);
    assert_eq!(
        sha256_hex(&bytes),
        "993a616296e40df2a1022e517525d14eb0c6f4998e2c57f429f49a3d7a3d09e7"
    );
    assert_eq!(
        read_all(&bytes, Accept::Auto).unwrap(),
        [
            Op::Begin(Format::V1_1),
            Op::Data(0, vec![0; 65536]),
            Op::Unmap(65536, 65536),
            Op::End
        ]
    );
}

#[test]
fn format_1_0_round_trip_and_undetectable_cut_at_a_record_boundary() {
    let bytes = linbit_example(Format::V1_0);
    assert_eq!(bytes.len(), 28 + 65536 + 28);
    let want = [
        Op::Begin(Format::V1_0),
        Op::Data(0, vec![0; 65536]),
        Op::Unmap(65536, 65536),
        Op::End,
    ];
    assert_eq!(read_all(&bytes, Accept::Auto).unwrap(), want);
    assert_eq!(read_all(&bytes, Accept::Only(Format::V1_0)).unwrap(), want);
    assert!(read_all(&bytes, Accept::Only(Format::V1_1)).is_err());
    // 1.0 has no end record: a cut at a record boundary reads as complete.
    assert_eq!(
        read_all(&bytes[..28 + 65536], Accept::Auto).unwrap().len(),
        3
    );
    let e = read_all(&bytes[..28 + 100], Accept::Auto).unwrap_err();
    assert_eq!(
        e.to_string(),
        "stream offset 0: truncated input: data payload needs 65536 bytes, got 100"
    );
}

#[test]
fn empty_input_accepted_by_auto_and_1_0_only() {
    assert_eq!(read_all(&[], Accept::Auto).unwrap(), []);
    assert_eq!(read_all(&[], Accept::Only(Format::V1_0)).unwrap(), []);
    let e = read_all(&[], Accept::Only(Format::V1_1)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "stream offset 0: empty input, but only format 1.1 is accepted"
    );
    assert!(read_all(&[], Accept::Only(Format::V2)).is_err());
}

/// The damaged streams LINBIT's own test 04 rejects, on the worked example.
#[test]
fn upstream_damage_cases_are_refused() {
    let good = linbit_example(Format::V1_1);
    let n = good.len();
    for cut in [27, 28, n - 512, n - 52, n - 24, n - 1] {
        assert!(read_all(&good[..cut], Accept::Auto).is_err(), "cut {cut}");
    }
    let mut zeroed = good.clone();
    zeroed[n - 24..].fill(0);
    assert!(read_all(&zeroed, Accept::Auto).is_err());
    for tail in [&b"dreck\n"[..], &[0u8; 32][..]] {
        let mut t = good.clone();
        t.extend_from_slice(tail);
        let e = read_all(&t, Accept::Auto).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("stream offset {n}: trailing data after the end record")
        );
    }
    // A record with an unknown mandatory cmd, and an optional one that the
    // end record does not count, inserted after BEGIN.
    let rec = |cmd: u32, len: u64| {
        let mut v = linbit::Header::new(linbit::MAGIC_1_1, 0, len, cmd)
            .as_bytes()
            .to_vec();
        v.resize(28 + len as usize, 0);
        v
    };
    for (ins, msg) in [
        (rec(0x1000_0000, 0), "stream offset 28: unknown record cmd 0x10000000 (length 0)"),
        (
            rec(0x8000_0000, 1),
            "stream offset 65649: end record counts records/data/zero/unmap [4, 1, 0, 1], the stream had [5, 1, 0, 1]",
        ),
    ] {
        let mut t = good[..28].to_vec();
        t.extend_from_slice(&ins);
        t.extend_from_slice(&good[28..]);
        assert_eq!(read_all(&t, Accept::Auto).unwrap_err().to_string(), msg);
    }
}

use zerocopy::IntoBytes;

#[test]
fn counted_optional_record_is_skipped() {
    let mut t = linbit::Header::new(linbit::MAGIC_1_1, 0, 0, 2)
        .as_bytes()
        .to_vec();
    t.extend_from_slice(linbit::Header::new(linbit::MAGIC_1_1, 0, 527, 0x8000_0333).as_bytes());
    t.extend_from_slice(&[0; 527]);
    t.extend_from_slice(linbit::Header::new(linbit::MAGIC_1_1, 0, 24, 3).as_bytes());
    for v in [3u64, 0, 0] {
        t.extend_from_slice(zerocopy::byteorder::big_endian::U64::new(v).as_bytes());
    }
    assert_eq!(
        read_all(&t, Accept::Only(Format::V1_1)).unwrap(),
        [Op::Begin(Format::V1_1), Op::End]
    );
}

#[test]
fn ancient_and_unknown_magic_are_refused() {
    let a = linbit::Header::new(linbit::MAGIC_ANCIENT, 0, 0, 0);
    let e = read_all(a.as_bytes(), Accept::Auto).unwrap_err();
    assert!(e.to_string().contains("before 1.0.1"), "{e}");
    let e = read_all(b"not a stream at all, no", Accept::Auto).unwrap_err();
    assert_eq!(
        e.to_string(),
        "stream offset 0: unknown magic 0x6e6f742061207374"
    );
}

fn v2_header(base: Option<Identity>, resume_from: u64) -> StreamHeader {
    StreamHeader {
        volume_size: 1 << 20,
        granularity: 65536,
        source: Identity([7; 16]),
        base,
        resume_from,
    }
}

fn v2_sample(compression: Compression) -> Vec<u8> {
    let h = v2_header(Some(Identity([3; 16])), 0);
    let mut w = StreamWriter::new(Vec::new(), Format::V2, Some(&h), compression).unwrap();
    let text: Vec<u8> = (0..65536u32)
        .map(|i| b"thintools "[i as usize % 10])
        .collect();
    w.data(0, &text).unwrap();
    w.zero(65536, 65536).unwrap();
    w.unmap(131072, 131072).unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    w.data(262144, &noise).unwrap();
    w.finish().unwrap().0
}

#[test]
fn v2_round_trip_raw_and_compressed() {
    let raw = v2_sample(Compression::None);
    let packed = v2_sample(Compression::Zstd(3));
    assert!(
        packed.len() < raw.len() / 4,
        "{} vs {}",
        packed.len(),
        raw.len()
    );
    let a = read_all(&raw, Accept::Auto).unwrap();
    let b = read_all(&packed, Accept::Only(Format::V2)).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 6);
    assert_eq!(a[2], Op::Zero(65536, 65536));
    assert_eq!(a[3], Op::Unmap(131072, 131072));
    let mut r = StreamReader::new(&raw[..], Accept::Auto);
    while r.next_event().unwrap().is_some() {}
    assert_eq!(r.header(), Some(&v2_header(Some(Identity([3; 16])), 0)));
    let c = r.counts();
    assert_eq!((c.records, c.data, c.zero, c.unmap), (6, 2, 1, 1));
}

/// A small stream of every record kind, for the exhaustive damage tests.
fn v2_small(compression: Compression) -> Vec<u8> {
    let h = v2_header(Some(Identity([3; 16])), 0);
    let mut w = StreamWriter::new(Vec::new(), Format::V2, Some(&h), compression).unwrap();
    let text: Vec<u8> = (0..2048u32)
        .map(|i| b"thintools "[i as usize % 10])
        .collect();
    w.data(0, &text).unwrap();
    w.zero(4096, 4096).unwrap();
    w.unmap(8192, 8192).unwrap();
    w.data(16384, &[7; 100]).unwrap();
    w.finish().unwrap().0
}

#[test]
fn v2_every_truncation_is_detected() {
    for compression in [Compression::None, Compression::Zstd(3)] {
        let s = v2_small(compression);
        for cut in 0..s.len() {
            let r = read_all(&s[..cut], Accept::Auto);
            if cut == 0 {
                assert_eq!(r.unwrap(), []);
            } else {
                let e = r.unwrap_err();
                assert!(e.offset <= cut as u64, "cut {cut}: {e}");
            }
        }
    }
}

#[test]
fn v2_every_flipped_byte_is_detected_at_its_record() {
    let s = v2_small(Compression::Zstd(3));
    // Record starts, from the lengths in the headers.
    let mut starts = Vec::new();
    let mut at = 0;
    while at < s.len() {
        starts.push(at);
        let plen = u32::from_le_bytes(s[at + 32..at + 36].try_into().unwrap()) as usize;
        at += v2::RECORD_HEADER_SIZE + plen;
    }
    for i in 0..s.len() {
        let mut t = s.clone();
        t[i] ^= 0x10;
        let e = read_all(&t, Accept::Auto).unwrap_err();
        let rec = *starts.iter().rev().find(|&&st| st <= i).unwrap() as u64;
        assert!(
            e.offset == rec || (i < 8 && e.offset == 0),
            "byte {i} (record at {rec}): {e}"
        );
    }
}

#[test]
fn v2_flip_message_names_the_record_offset() {
    let s = v2_sample(Compression::None);
    let mut t = s.clone();
    let data_payload = 2 * v2::RECORD_HEADER_SIZE + v2::HEADER_PAYLOAD_SIZE + 100;
    t[data_payload] ^= 1;
    let e = read_all(&t, Accept::Auto).unwrap_err();
    assert_eq!(e.offset, 104);
    assert!(
        e.to_string()
            .starts_with("stream offset 104: record checksum 0x"),
        "{e}"
    );
}

#[test]
fn v2_ranges_outside_the_volume_or_backwards_are_refused() {
    let h = v2_header(None, 0);
    let mut w = StreamWriter::new(Vec::new(), Format::V2, Some(&h), Compression::None).unwrap();
    w.zero(65536, 65536).unwrap();
    w.zero(0, 4096).unwrap();
    let s = w.finish().unwrap().0;
    let e = read_all(&s, Accept::Auto).unwrap_err();
    assert_eq!(
        e.to_string(),
        "stream offset 144: record range 0+4096 overlaps or precedes the previous record"
    );
    let mut w = StreamWriter::new(Vec::new(), Format::V2, Some(&h), Compression::None).unwrap();
    w.unmap(1 << 20, 1).unwrap();
    let e = read_all(&w.finish().unwrap().0, Accept::Auto).unwrap_err();
    assert!(
        e.to_string().ends_with("reaches beyond the volume size"),
        "{e}"
    );
}

/// The worked example of docs/stream-format.md, byte for byte.
#[test]
fn v2_docs_example_is_the_documented_bytes() {
    let mut source = [0u8; 16];
    for (i, b) in source.iter_mut().enumerate() {
        *b = 0x10 + i as u8;
    }
    let h = StreamHeader {
        volume_size: 131_072,
        granularity: 65536,
        source: Identity(source),
        base: None,
        resume_from: 0,
    };
    let mut w = StreamWriter::new(Vec::new(), Format::V2, Some(&h), Compression::None).unwrap();
    w.data(0, b"thintools stream").unwrap();
    w.zero(16, 65520).unwrap();
    w.unmap(65536, 65536).unwrap();
    let bytes = w.finish().unwrap().0;
    assert_eq!(bytes.len(), 344);
    assert_eq!(
        sha256_hex(&bytes),
        "47e256d119d5e8dbe0924e0e92b2275576c1afe23f33dd798a5f5475ca2c0b8d"
    );
    assert_eq!(&bytes[0x8c..0x90], &[0xa3, 0xd3, 0x10, 0xc7]);
    assert_eq!(read_all(&bytes, Accept::Auto).unwrap().len(), 5);
}

#[test]
fn v2_truncation_messages_name_the_record() {
    let s = v2_sample(Compression::None);
    let e = read_all(&s[..104 + 3], Accept::Auto).unwrap_err();
    assert_eq!(
        e.to_string(),
        "stream offset 104: truncated input: record header needs 40 bytes, got 3"
    );
    let e = read_all(&s[..104 + 40 + 10], Accept::Auto).unwrap_err();
    assert_eq!(
        e.to_string(),
        "stream offset 104: truncated input: record payload needs 65536 bytes, got 10"
    );
    let e = read_all(&s[..104], Accept::Auto).unwrap_err();
    assert_eq!(
        e.to_string(),
        "stream offset 104: input ends without an end record"
    );
}
