//! The thin_dump XML sink: the document thin_restore reads.
//!
//! One element per line, two spaces per level, no declaration and no newline
//! after the final `</superblock>`. Numbers go through `itoa` straight into
//! byte buffers; nothing is allocated per attribute or per mapping.

use std::io::Write;

use crate::thin::ir::text::{give_back_fragment, leaf_fragment, push_num, LineBuf};
use crate::thin::ir::{
    ChunkSink, DeviceInfo, IrError, Map, MetadataVisitor, SuperblockInfo, Visit,
};

/// Writes the IR as thin_dump XML to `W` (give it a large `BufWriter`).
pub struct XmlWriter<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write> XmlWriter<W> {
    /// A writer over `out`.
    pub fn new(out: W) -> Self {
        XmlWriter {
            out,
            line: Vec::with_capacity(256),
        }
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn put_line(&mut self) -> Result<Visit, IrError> {
        self.out.write_all(&self.line)?;
        self.line.clear();
        Ok(Visit::Continue)
    }
}

/// Appends ` name="v"`; `name_eq` is the leading space, name, `=` and quote.
#[inline]
fn push_attr<I: itoa::Integer>(out: &mut Vec<u8>, name_eq: &[u8], v: I) {
    out.extend_from_slice(name_eq);
    push_num(out, v);
    out.push(b'"');
}

/// Appends `s` with the five XML special characters escaped.
fn push_escaped(out: &mut Vec<u8>, s: &str) {
    for &c in s.as_bytes() {
        match c {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\'' => out.extend_from_slice(b"&apos;"),
            _ => out.push(c),
        }
    }
}

/// Renders one mapping run as its line (depth 2).
#[inline(always)]
pub fn render_map(out: &mut Vec<u8>, m: &Map) {
    let mut l = LineBuf::open(out);
    if m.len == 1 {
        l.lit(b"    <single_mapping origin_block=\"");
        l.num(m.thin_begin);
        l.lit(b"\" data_block=\"");
        l.num(m.data_begin);
        l.lit(b"\" time=\"");
        l.num(u64::from(m.time));
    } else {
        l.lit(b"    <range_mapping origin_begin=\"");
        l.num(m.thin_begin);
        l.lit(b"\" data_begin=\"");
        l.num(m.data_begin);
        l.lit(b"\" length=\"");
        l.num(m.len);
        l.lit(b"\" time=\"");
        l.num(u64::from(m.time));
    }
    l.lit(b"\"/>\n");
    l.close();
}

impl<W: Write> MetadataVisitor for XmlWriter<W> {
    fn superblock_begin(&mut self, sb: &SuperblockInfo) -> Result<Visit, IrError> {
        let l = &mut self.line;
        l.extend_from_slice(b"<superblock uuid=\"");
        push_escaped(l, &sb.uuid);
        push_attr(l, b"\" time=\"", sb.time);
        push_attr(l, b" transaction=\"", sb.transaction);
        if sb.flags != 0 {
            push_attr(l, b" flags=\"", sb.flags);
        }
        push_attr(l, b" version=\"", sb.version);
        push_attr(l, b" data_block_size=\"", sb.data_block_size);
        push_attr(l, b" nr_data_blocks=\"", sb.nr_data_blocks);
        l.extend_from_slice(b">\n");
        self.put_line()
    }

    fn superblock_end(&mut self) -> Result<Visit, IrError> {
        self.line.extend_from_slice(b"</superblock>");
        self.put_line()
    }

    fn def_begin(&mut self, name: u64) -> Result<Visit, IrError> {
        self.line.extend_from_slice(b"  <def name=\"");
        push_num(&mut self.line, name);
        self.line.extend_from_slice(b"\">\n");
        self.put_line()
    }

    fn def_end(&mut self) -> Result<Visit, IrError> {
        self.line.extend_from_slice(b"  </def>\n");
        self.put_line()
    }

    fn device_begin(&mut self, d: &DeviceInfo) -> Result<Visit, IrError> {
        let l = &mut self.line;
        l.extend_from_slice(b"  <device dev_id=\"");
        push_num(l, d.dev_id);
        push_attr(l, b"\" mapped_blocks=\"", d.mapped_blocks);
        push_attr(l, b" transaction=\"", d.transaction);
        push_attr(l, b" creation_time=\"", d.creation_time);
        push_attr(l, b" snap_time=\"", d.snap_time);
        l.extend_from_slice(b">\n");
        self.put_line()
    }

    fn device_end(&mut self) -> Result<Visit, IrError> {
        self.line.extend_from_slice(b"  </device>\n");
        self.put_line()
    }

    fn map(&mut self, m: &Map) -> Result<Visit, IrError> {
        render_map(&mut self.line, m);
        self.put_line()
    }

    fn ref_shared(&mut self, name: u64) -> Result<Visit, IrError> {
        self.line.extend_from_slice(b"    <ref name=\"");
        push_num(&mut self.line, name);
        self.line.extend_from_slice(b"\"/>\n");
        self.put_line()
    }

    fn eof(&mut self) -> Result<Visit, IrError> {
        self.out.flush()?;
        Ok(Visit::Continue)
    }
}

impl<W: Write + Send> ChunkSink for XmlWriter<W> {
    type Fragment = Vec<u8>;

    fn fragment(nr_leaves: usize) -> Vec<u8> {
        leaf_fragment(nr_leaves)
    }

    fn render(frag: &mut Vec<u8>, m: &Map) {
        render_map(frag, m);
    }

    fn splice(&mut self, frag: Vec<u8>) -> Result<Visit, IrError> {
        self.out.write_all(&frag)?;
        give_back_fragment(frag);
        Ok(Visit::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_md_plain_example() {
        let mut w = XmlWriter::new(Vec::new());
        let sb = SuperblockInfo {
            time: 1,
            transaction: 2,
            version: 2,
            data_block_size: 128,
            nr_data_blocks: 1000,
            ..SuperblockInfo::default()
        };
        w.superblock_begin(&sb).unwrap();
        let dev = |dev_id, mapped_blocks, transaction, creation_time| DeviceInfo {
            dev_id,
            mapped_blocks,
            transaction,
            creation_time,
            snap_time: 1,
        };
        w.device_begin(&dev(1, 3, 0, 0)).unwrap();
        let m = |thin_begin, data_begin, len, time| Map {
            thin_begin,
            data_begin,
            time,
            len,
        };
        w.map(&m(0, 10, 2, 0)).unwrap();
        let mut frag = Vec::new();
        <XmlWriter<Vec<u8>> as ChunkSink>::render(&mut frag, &m(5, 20, 1, 1));
        w.splice(frag).unwrap();
        w.device_end().unwrap();
        w.device_begin(&dev(2, 0, 1, 1)).unwrap();
        w.device_end().unwrap();
        w.superblock_end().unwrap();
        w.eof().unwrap();
        let want = r#"<superblock uuid="" time="1" transaction="2" version="2" data_block_size="128" nr_data_blocks="1000">
  <device dev_id="1" mapped_blocks="3" transaction="0" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="10" length="2" time="0"/>
    <single_mapping origin_block="5" data_block="20" time="1"/>
  </device>
  <device dev_id="2" mapped_blocks="0" transaction="1" creation_time="1" snap_time="1">
  </device>
</superblock>"#;
        assert_eq!(String::from_utf8(w.into_inner()).unwrap(), want);
    }

    #[test]
    fn line_numbers_match_itoa() {
        for v in [
            0u64,
            1,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            12_345,
            4_294_967_295,
            u64::MAX,
        ] {
            let mut out = b"x".to_vec();
            let mut l = LineBuf::open(&mut out);
            l.lit(b"<");
            l.num(v);
            l.lit(b">");
            l.close();
            assert_eq!(out, format!("x<{v}>").as_bytes());
        }
    }

    #[test]
    fn flags_appear_only_when_set() {
        let mut w = XmlWriter::new(Vec::new());
        let sb = SuperblockInfo {
            flags: 1,
            ..SuperblockInfo::default()
        };
        w.superblock_begin(&sb).unwrap();
        let s = String::from_utf8(w.into_inner()).unwrap();
        assert!(
            s.contains(r#" transaction="0" flags="1" version="0""#),
            "{s}"
        );
    }
}
