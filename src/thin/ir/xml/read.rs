//! The XML source: reads thin_dump XML (formats.md §2) as a stream and drives
//! a [`MetadataVisitor`] (the binary writer for thin_restore).
//!
//! Input rules and messages are formats.md §2's, checked in document order.
//! Byte offsets in messages are the offset just past the offending tag.
//! `<def>` and `<ref>` names are arbitrary strings; each distinct name gets a
//! number in order of first definition, which is what the visitor sees.

use std::collections::HashMap;
use std::io::Read;

use anyhow::{anyhow, bail, Result};

use crate::thin::ir::xml::lexer::{Attr, Lexer, TokenKind};
use crate::thin::ir::{DeviceInfo, Map, MetadataVisitor, SuperblockInfo};
use crate::thin::model::superblock::valid_data_block_size;

/// Where in the document the reader is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Before `<superblock>`.
    Start,
    /// Inside `<superblock>`, outside any def or device.
    Superblock,
    /// Inside a `<def>`.
    Def,
    /// Inside a `<device>`.
    Device,
    /// After `</superblock>`.
    Done,
}

impl Place {
    /// The element that must be closed next.
    fn open_element(self) -> Option<&'static [u8]> {
        match self {
            Place::Superblock => Some(b"superblock"),
            Place::Def => Some(b"def"),
            Place::Device => Some(b"device"),
            Place::Start | Place::Done => None,
        }
    }
}

/// Reads one XML document from `input` into `sink`.
///
/// # Errors
/// The first input rule broken (formats.md §2 wording) or a sink failure.
pub fn read_xml<R: Read>(input: R, sink: &mut dyn MetadataVisitor) -> Result<()> {
    let mut src = XmlSource {
        lex: Lexer::new(input),
        attrs: Vec::with_capacity(16),
        names: HashMap::new(),
        place: Place::Start,
        seen_superblock: false,
    };
    src.run(sink)
}

struct XmlSource<R> {
    lex: Lexer<R>,
    attrs: Vec<Attr>,
    names: HashMap<Vec<u8>, u64>,
    place: Place,
    seen_superblock: bool,
}

/// Where each attribute of a tag's table lies (None when absent).
type Values<const N: usize> = [Option<(usize, usize)>; N];

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Unsigned integer types the reader parses.
trait Unsigned: std::str::FromStr<Err = std::num::ParseIntError> + Copy {
    fn from_u64(v: u64) -> Option<Self>;
}

impl Unsigned for u64 {
    fn from_u64(v: u64) -> Option<Self> {
        Some(v)
    }
}

impl Unsigned for u32 {
    fn from_u64(v: u64) -> Option<Self> {
        u32::try_from(v).ok()
    }
}

/// Parses a decimal value: a fast path for plain digits, the standard
/// parser (and its error texts) for everything else.
fn parse_number<T: Unsigned>(raw: &[u8], attr: &str, tag: &str) -> Result<T> {
    if !raw.is_empty() && raw.len() <= 18 && raw.iter().all(u8::is_ascii_digit) {
        let v = raw
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        if let Some(v) = T::from_u64(v) {
            return Ok(v);
        }
    }
    let s = std::str::from_utf8(raw).unwrap_or("\u{1}");
    s.parse::<T>()
        .map_err(|e| anyhow!("invalid value for '{attr}' in tag '{tag}': {e}"))
}

impl<R: Read> XmlSource<R> {
    /// Collects the attributes of the current tag by name; `required` is the
    /// number of leading names that must be present.
    fn attributes<const N: usize>(
        &mut self,
        tag: &str,
        names: [&str; N],
        required: usize,
    ) -> Result<Values<N>> {
        let mut out: Values<N> = [None; N];
        self.lex.attributes(&mut self.attrs)?;
        for a in &self.attrs {
            let key = self.lex.bytes(a.name);
            let Some(i) = names.iter().position(|n| n.as_bytes() == key) else {
                bail!("unknown attribute '{}' in tag '{tag}'", text(key));
            };
            if out[i].is_some() {
                bail!("duplicate attribute '{}' in tag '{tag}'", names[i]);
            }
            out[i] = Some(a.value);
        }
        if let Some(i) = (0..required).find(|&i| out[i].is_none()) {
            bail!("missing attribute '{}' for tag '{tag}'", names[i]);
        }
        Ok(out)
    }

    fn number<T: Unsigned>(&self, v: Option<(usize, usize)>, attr: &str, tag: &str) -> Result<T> {
        parse_number(v.map_or(&b""[..], |r| self.lex.bytes(r)), attr, tag)
    }

    fn optional<T: Unsigned>(
        &self,
        v: Option<(usize, usize)>,
        attr: &str,
        tag: &str,
    ) -> Result<Option<T>> {
        v.map(|_| self.number(v, attr, tag)).transpose()
    }

    fn run(&mut self, sink: &mut dyn MetadataVisitor) -> Result<()> {
        loop {
            let kind = self.lex.next_token()?;
            let pos = self.lex.position();
            match kind {
                TokenKind::Eof => {
                    if self.place != Place::Done {
                        bail!("incomplete source metadata");
                    }
                    sink.eof()?;
                    return Ok(());
                }
                TokenKind::Binary => bail!("incomplete source metadata"),
                TokenKind::Decl if self.place == Place::Start => {}
                TokenKind::Decl | TokenKind::Unsupported => {
                    bail!("unsupported element at byte {pos}");
                }
                TokenKind::Start => self.start(pos, sink)?,
                TokenKind::Empty => self.empty(pos, sink)?,
                TokenKind::End => self.end(pos, sink)?,
            }
        }
    }

    fn end(&mut self, pos: u64, sink: &mut dyn MetadataVisitor) -> Result<()> {
        let name = self.lex.name();
        if !matches!(name, b"superblock" | b"def" | b"device") {
            bail!("unknown end tag at byte {pos}");
        }
        if self.place.open_element() != Some(name) {
            bail!(
                "parse error at byte {pos}: mismatched end tag </{}>",
                text(name)
            );
        }
        match self.place {
            Place::Superblock => {
                sink.superblock_end()?;
                self.place = Place::Done;
            }
            Place::Def => {
                sink.def_end()?;
                self.place = Place::Superblock;
            }
            _ => {
                sink.device_end()?;
                self.place = Place::Superblock;
            }
        }
        Ok(())
    }

    fn start(&mut self, pos: u64, sink: &mut dyn MetadataVisitor) -> Result<()> {
        match self.lex.name() {
            b"superblock" => self.superblock(sink),
            b"def" => {
                self.need_superblock()?;
                let [name] = self.attributes("def", ["name"], 1)?;
                let name = name.map_or(&b""[..], |r| self.lex.bytes(r)).to_vec();
                let next = self.names.len() as u64;
                let id = *self.names.entry(name).or_insert(next);
                sink.def_begin(id)?;
                self.place = Place::Def;
                Ok(())
            }
            b"device" => {
                self.device(sink)?;
                self.place = Place::Device;
                Ok(())
            }
            _ => bail!("unknown start tag at byte {pos}"),
        }
    }

    fn empty(&mut self, pos: u64, sink: &mut dyn MetadataVisitor) -> Result<()> {
        let mut v = [0u64; 4];
        match self.lex.name() {
            b"single_mapping"
                if matches!(self.place, Place::Def | Place::Device)
                    && self
                        .lex
                        .canonical_numbers(&[b"origin_block", b"data_block", b"time"], &mut v)
                    && v[2] <= u64::from(u32::MAX) =>
            {
                let m = Map {
                    thin_begin: v[0],
                    data_begin: v[1],
                    time: u32::try_from(v[2]).unwrap_or(u32::MAX),
                    len: 1,
                };
                sink.map(&m)?;
                Ok(())
            }
            b"range_mapping"
                if matches!(self.place, Place::Def | Place::Device)
                    && self.lex.canonical_numbers(
                        &[b"origin_begin", b"data_begin", b"length", b"time"],
                        &mut v,
                    )
                    && v[3] <= u64::from(u32::MAX) =>
            {
                let m = Map {
                    thin_begin: v[0],
                    data_begin: v[1],
                    len: v[2],
                    time: u32::try_from(v[3]).unwrap_or(u32::MAX),
                };
                sink.map(&m)?;
                Ok(())
            }
            b"single_mapping" => {
                self.need_mapping_place()?;
                let tag = "single_mapping";
                let v = self.attributes(tag, ["origin_block", "data_block", "time"], 3)?;
                let m = Map {
                    thin_begin: self.number(v[0], "origin_block", tag)?,
                    data_begin: self.number(v[1], "data_block", tag)?,
                    time: self.number(v[2], "time", tag)?,
                    len: 1,
                };
                sink.map(&m)?;
                Ok(())
            }
            b"range_mapping" => {
                self.need_mapping_place()?;
                let tag = "range_mapping";
                let names = ["origin_begin", "data_begin", "length", "time"];
                let v = self.attributes(tag, names, 4)?;
                let m = Map {
                    thin_begin: self.number(v[0], "origin_begin", tag)?,
                    data_begin: self.number(v[1], "data_begin", tag)?,
                    len: self.number(v[2], "length", tag)?,
                    time: self.number(v[3], "time", tag)?,
                };
                sink.map(&m)?;
                Ok(())
            }
            b"ref" => {
                if self.place != Place::Device {
                    bail!("<ref> tags may only occur within <device> sections.");
                }
                let [name] = self.attributes("ref", ["name"], 1)?;
                let name = name.map_or(&b""[..], |r| self.lex.bytes(r));
                let Some(&id) = self.names.get(name) else {
                    bail!("Couldn't find sub tree '{}'.", text(name));
                };
                sink.ref_shared(id)?;
                Ok(())
            }
            b"device" => {
                self.device(sink)?;
                sink.device_end()?;
                Ok(())
            }
            _ => bail!("unknown empty element at byte {pos}"),
        }
    }

    fn need_superblock(&self) -> Result<()> {
        if self.place != Place::Superblock {
            bail!("missing superblock");
        }
        Ok(())
    }

    fn need_mapping_place(&self) -> Result<()> {
        if !matches!(self.place, Place::Def | Place::Device) {
            bail!("Mapping tags must appear within a <def> or <device> tag.");
        }
        Ok(())
    }

    fn superblock(&mut self, sink: &mut dyn MetadataVisitor) -> Result<()> {
        if self.seen_superblock {
            bail!("duplicated superblock");
        }
        let tag = "superblock";
        let names = [
            "uuid",
            "time",
            "transaction",
            "data_block_size",
            "nr_data_blocks",
            "flags",
            "version",
            "metadata_snap",
        ];
        let v = self.attributes(tag, names, 5)?;
        let sb = SuperblockInfo {
            uuid: text(v[0].map_or(&b""[..], |r| self.lex.bytes(r))),
            time: self.number(v[1], "time", tag)?,
            transaction: self.number(v[2], "transaction", tag)?,
            data_block_size: self.number(v[3], "data_block_size", tag)?,
            nr_data_blocks: self.number(v[4], "nr_data_blocks", tag)?,
            flags: self.optional(v[5], "flags", tag)?.unwrap_or(0),
            version: self.optional(v[6], "version", tag)?.unwrap_or(2),
            metadata_snap: self.optional(v[7], "metadata_snap", tag)?,
        };
        if !valid_data_block_size(u64::from(sb.data_block_size)) {
            bail!("invalid data block size");
        }
        self.seen_superblock = true;
        sink.superblock_begin(&sb)?;
        self.place = Place::Superblock;
        Ok(())
    }

    fn device(&mut self, sink: &mut dyn MetadataVisitor) -> Result<()> {
        self.need_superblock()?;
        let tag = "device";
        let names = [
            "dev_id",
            "mapped_blocks",
            "transaction",
            "creation_time",
            "snap_time",
        ];
        let v = self.attributes(tag, names, 5)?;
        let dev = DeviceInfo {
            dev_id: u64::from(self.number::<u32>(v[0], "dev_id", tag)?),
            mapped_blocks: self.number(v[1], "mapped_blocks", tag)?,
            transaction: self.number(v[2], "transaction", tag)?,
            creation_time: self.number(v[3], "creation_time", tag)?,
            snap_time: self.number(v[4], "snap_time", tag)?,
        };
        sink.device_begin(&dev)?;
        Ok(())
    }
}
