//! The `--format human_readable` sink of thin_dump.
//! Not accepted by thin_restore; meant for people.

use std::io::Write;

use crate::thin::ir::text::{give_back_fragment, leaf_fragment, push_num, LineBuf};
use crate::thin::ir::{
    ChunkSink, DeviceInfo, IrError, Map, MetadataVisitor, SuperblockInfo, Visit,
};

/// Writes the IR in the human-readable format.
pub struct HumanWriter<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write> HumanWriter<W> {
    /// A writer over `out`.
    pub fn new(out: W) -> Self {
        HumanWriter {
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

/// Renders one run: `    (<first>..<last>) -> (<first>..<last>), <time>`.
pub fn render_map(out: &mut Vec<u8>, m: &Map) {
    let last = m.len.saturating_sub(1);
    let mut l = LineBuf::open(out);
    l.lit(b"    (");
    l.num(m.thin_begin);
    l.lit(b"..");
    l.num(m.thin_begin.saturating_add(last));
    l.lit(b") -> (");
    l.num(m.data_begin);
    l.lit(b"..");
    l.num(m.data_begin.saturating_add(last));
    l.lit(b"), ");
    l.num(u64::from(m.time));
    l.lit(b"\n");
    l.close();
}

fn push_field<I: itoa::Integer>(out: &mut Vec<u8>, label: &[u8], v: I) {
    out.extend_from_slice(label);
    push_num(out, v);
    out.push(b'\n');
}

impl<W: Write> MetadataVisitor for HumanWriter<W> {
    fn superblock_begin(&mut self, sb: &SuperblockInfo) -> Result<Visit, IrError> {
        let l = &mut self.line;
        l.extend_from_slice(b"begin superblock: \"");
        l.extend_from_slice(sb.uuid.as_bytes());
        l.extend_from_slice(b"\"");
        for v in [
            sb.time.into(),
            sb.transaction,
            sb.flags.into(),
            sb.version.into(),
            sb.data_block_size.into(),
            sb.nr_data_blocks,
        ] {
            l.extend_from_slice(b", ");
            push_num(l, v);
        }
        l.push(b'\n');
        self.put_line()
    }

    fn superblock_end(&mut self) -> Result<Visit, IrError> {
        self.line.extend_from_slice(b"end superblock\n");
        self.put_line()
    }

    fn def_begin(&mut self, name: u64) -> Result<Visit, IrError> {
        push_field(&mut self.line, b"def: ", name);
        self.put_line()
    }

    fn def_end(&mut self) -> Result<Visit, IrError> {
        self.line.push(b'\n');
        self.put_line()
    }

    fn device_begin(&mut self, d: &DeviceInfo) -> Result<Visit, IrError> {
        let l = &mut self.line;
        push_field(l, b"device: ", d.dev_id);
        push_field(l, b"mapped_blocks: ", d.mapped_blocks);
        push_field(l, b"transaction: ", d.transaction);
        push_field(l, b"creation time: ", d.creation_time);
        push_field(l, b"snap time: ", d.snap_time);
        self.put_line()
    }

    fn device_end(&mut self) -> Result<Visit, IrError> {
        self.line.push(b'\n');
        self.put_line()
    }

    fn map(&mut self, m: &Map) -> Result<Visit, IrError> {
        render_map(&mut self.line, m);
        self.put_line()
    }

    fn ref_shared(&mut self, name: u64) -> Result<Visit, IrError> {
        push_field(&mut self.line, b"    ref: ", name);
        self.put_line()
    }

    fn eof(&mut self) -> Result<Visit, IrError> {
        self.out.flush()?;
        Ok(Visit::Continue)
    }
}

impl<W: Write + Send> ChunkSink for HumanWriter<W> {
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
    fn formats_md_example() {
        let mut w = HumanWriter::new(Vec::new());
        let sb = SuperblockInfo {
            time: 1,
            transaction: 1,
            version: 2,
            data_block_size: 2048,
            ..SuperblockInfo::default()
        };
        w.superblock_begin(&sb).unwrap();
        w.def_begin(27).unwrap();
        w.map(&Map {
            thin_begin: 0,
            data_begin: 0,
            time: 0,
            len: 32,
        })
        .unwrap();
        w.def_end().unwrap();
        w.device_begin(&DeviceInfo {
            dev_id: 0,
            mapped_blocks: 32,
            transaction: 0,
            creation_time: 0,
            snap_time: 1,
        })
        .unwrap();
        w.ref_shared(27).unwrap();
        w.device_end().unwrap();
        w.superblock_end().unwrap();
        let want = "begin superblock: \"\", 1, 1, 0, 2, 2048, 0\ndef: 27\n    (0..31) -> (0..31), 0\n\n\
                    device: 0\nmapped_blocks: 32\ntransaction: 0\ncreation time: 0\nsnap time: 1\n    ref: 27\n\n\
                    end superblock\n";
        assert_eq!(String::from_utf8(w.into_inner()).unwrap(), want);
    }
}
