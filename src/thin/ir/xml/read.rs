//! The XML source: reads thin_dump XML as a stream and drives a
//! [`MetadataVisitor`] (the binary writer for thin_restore).
//!
//! Input rules are checked in document order and the first one broken ends
//! the read; its error carries the byte offset just past the offending tag
//! (the offset some messages print too). One `<superblock>` holds `<def>`s
//! and `<device>`s; mappings appear only inside a def or device, refs only
//! inside a device and only to a def defined earlier.
//! `<def>` and `<ref>` names are arbitrary strings; each distinct name gets a
//! number in order of first definition, which is what the visitor sees.

use std::collections::HashMap;
use std::io::Read;

use crate::thin::ir::error::{XmlError, XmlErrorKind as Kind};
use crate::thin::ir::xml::lexer::{Attr, Lexer, MappingTag, TokenKind};
use crate::thin::ir::{DeviceInfo, IrError, Map, MetadataVisitor, SuperblockInfo};
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
/// The first input rule broken ([`IrError::Xml`]) or a sink failure.
pub fn read_xml<R: Read>(input: R, sink: &mut dyn MetadataVisitor) -> Result<(), IrError> {
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

/// The mapping of a tag read by [`Lexer::canonical_mapping`] (None when its
/// time does not fit).
fn canonical_values(tag: MappingTag, v: [u64; 4]) -> Option<Map> {
    Some(match tag {
        MappingTag::Single => Map {
            thin_begin: v[0],
            data_begin: v[1],
            time: u32::try_from(v[2]).ok()?,
            len: 1,
        },
        MappingTag::Range => Map {
            thin_begin: v[0],
            data_begin: v[1],
            len: v[2],
            time: u32::try_from(v[3]).ok()?,
        },
    })
}

/// Parses a decimal value: a fast path for plain digits, the standard
/// parser (and its error texts) for everything else.
fn parse_number<T: Unsigned>(raw: &[u8], attr: &'static str, tag: &'static str) -> Result<T, Kind> {
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
        .map_err(|err| Kind::InvalidNumber { attr, tag, err })
}

impl<R: Read> XmlSource<R> {
    /// `kind`, at the lexer's current offset.
    /// The input ended, or turned binary, before its first element: name what
    /// was found instead, when anything was.
    fn not_xml(&self) -> IrError {
        match self.lex.stray_text() {
            Some((at, found)) => self.fail(Kind::NotXml {
                at,
                found: found.to_string(),
            }),
            None => self.fail(Kind::Incomplete),
        }
    }

    fn fail(&self, kind: impl Into<Kind>) -> IrError {
        IrError::Xml(XmlError {
            at: self.lex.position(),
            kind: kind.into(),
        })
    }

    /// Collects the attributes of the current tag by name; `required` is the
    /// number of leading names that must be present.
    fn attributes<const N: usize>(
        &mut self,
        tag: &'static str,
        names: [&'static str; N],
        required: usize,
    ) -> Result<Values<N>, IrError> {
        let mut out: Values<N> = [None; N];
        if let Err(e) = self.lex.attributes(&mut self.attrs) {
            return Err(self.fail(e));
        }
        for a in &self.attrs {
            let key = self.lex.bytes(a.name);
            let Some(i) = names.iter().position(|n| n.as_bytes() == key) else {
                let attr = text(key);
                return Err(self.fail(Kind::UnknownAttribute { attr, tag }));
            };
            if out[i].is_some() {
                let attr = names[i];
                return Err(self.fail(Kind::DuplicateAttribute { attr, tag }));
            }
            out[i] = Some(a.value);
        }
        if let Some(i) = (0..required).find(|&i| out[i].is_none()) {
            let attr = names[i];
            return Err(self.fail(Kind::MissingAttribute { attr, tag }));
        }
        Ok(out)
    }

    fn number<T: Unsigned>(
        &self,
        v: Option<(usize, usize)>,
        attr: &'static str,
        tag: &'static str,
    ) -> Result<T, IrError> {
        parse_number(v.map_or(&b""[..], |r| self.lex.bytes(r)), attr, tag).map_err(|k| self.fail(k))
    }

    fn optional<T: Unsigned>(
        &self,
        v: Option<(usize, usize)>,
        attr: &'static str,
        tag: &'static str,
    ) -> Result<Option<T>, IrError> {
        v.map(|_| self.number(v, attr, tag)).transpose()
    }

    fn run(&mut self, sink: &mut dyn MetadataVisitor) -> Result<(), IrError> {
        loop {
            if matches!(self.place, Place::Def | Place::Device) {
                if let Some((tag, v)) = self.lex.canonical_mapping() {
                    match canonical_values(tag, v) {
                        Some(m) => {
                            sink.map(&m)?;
                        }
                        // The tag is consumed as `next_token` would have:
                        // the general path words the error.
                        None => self.empty(self.lex.position(), sink)?,
                    }
                    continue;
                }
            }
            let kind = self.lex.next_token().map_err(|e| self.fail(e))?;
            let pos = self.lex.position();
            match kind {
                TokenKind::Eof | TokenKind::Binary if self.place == Place::Start => {
                    return Err(self.not_xml());
                }
                TokenKind::Eof => {
                    if self.place != Place::Done {
                        return Err(self.fail(Kind::Incomplete));
                    }
                    sink.eof()?;
                    return Ok(());
                }
                TokenKind::Binary => return Err(self.fail(Kind::Incomplete)),
                TokenKind::Decl if self.place == Place::Start => {}
                TokenKind::Decl | TokenKind::Unsupported => {
                    return Err(self.fail(Kind::Unsupported(pos)));
                }
                TokenKind::Start => self.start(pos, sink)?,
                TokenKind::Empty => self.empty(pos, sink)?,
                TokenKind::End => self.end(pos, sink)?,
            }
        }
    }

    fn end(&mut self, pos: u64, sink: &mut dyn MetadataVisitor) -> Result<(), IrError> {
        let name = self.lex.name();
        if !matches!(name, b"superblock" | b"def" | b"device") {
            return Err(self.fail(Kind::UnknownEnd(pos)));
        }
        if self.place.open_element() != Some(name) {
            let name = text(name);
            return Err(self.fail(Kind::MismatchedEnd { at: pos, name }));
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

    fn start(&mut self, pos: u64, sink: &mut dyn MetadataVisitor) -> Result<(), IrError> {
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
            _ => Err(self.fail(Kind::UnknownStart(pos))),
        }
    }

    fn empty(&mut self, pos: u64, sink: &mut dyn MetadataVisitor) -> Result<(), IrError> {
        if let Some(m) = self.canonical_map() {
            sink.map(&m)?;
            return Ok(());
        }
        match self.lex.name() {
            b"single_mapping" => {
                let m = self.single_mapping()?;
                sink.map(&m)?;
            }
            b"range_mapping" => {
                let m = self.range_mapping()?;
                sink.map(&m)?;
            }
            b"ref" => {
                if self.place != Place::Device {
                    return Err(self.fail(Kind::RefOutside));
                }
                let [name] = self.attributes("ref", ["name"], 1)?;
                let name = name.map_or(&b""[..], |r| self.lex.bytes(r));
                let Some(&id) = self.names.get(name) else {
                    return Err(self.fail(Kind::UnknownDef(text(name))));
                };
                sink.ref_shared(id)?;
            }
            b"device" => {
                self.device(sink)?;
                sink.device_end()?;
            }
            _ => return Err(self.fail(Kind::UnknownEmpty(pos))),
        }
        Ok(())
    }

    /// The fast path: a mapping inside a def or device whose attributes are
    /// written exactly as thin_dump writes them. None sends the tag down the
    /// general path, which gives the exact error for anything wrong.
    fn canonical_map(&self) -> Option<Map> {
        if !matches!(self.place, Place::Def | Place::Device) {
            return None;
        }
        let mut v = [0u64; 4];
        match self.lex.name() {
            b"single_mapping" => {
                let names: [&[u8]; 3] = [b"origin_block", b"data_block", b"time"];
                if !self.lex.canonical_numbers(&names, &mut v) {
                    return None;
                }
                Some(Map {
                    thin_begin: v[0],
                    data_begin: v[1],
                    time: u32::try_from(v[2]).ok()?,
                    len: 1,
                })
            }
            b"range_mapping" => {
                let names: [&[u8]; 4] = [b"origin_begin", b"data_begin", b"length", b"time"];
                if !self.lex.canonical_numbers(&names, &mut v) {
                    return None;
                }
                Some(Map {
                    thin_begin: v[0],
                    data_begin: v[1],
                    len: v[2],
                    time: u32::try_from(v[3]).ok()?,
                })
            }
            _ => None,
        }
    }

    fn single_mapping(&mut self) -> Result<Map, IrError> {
        self.need_mapping_place()?;
        let tag = "single_mapping";
        let v = self.attributes(tag, ["origin_block", "data_block", "time"], 3)?;
        Ok(Map {
            thin_begin: self.number(v[0], "origin_block", tag)?,
            data_begin: self.number(v[1], "data_block", tag)?,
            time: self.number(v[2], "time", tag)?,
            len: 1,
        })
    }

    fn range_mapping(&mut self) -> Result<Map, IrError> {
        self.need_mapping_place()?;
        let tag = "range_mapping";
        let names = ["origin_begin", "data_begin", "length", "time"];
        let v = self.attributes(tag, names, 4)?;
        Ok(Map {
            thin_begin: self.number(v[0], "origin_begin", tag)?,
            data_begin: self.number(v[1], "data_begin", tag)?,
            len: self.number(v[2], "length", tag)?,
            time: self.number(v[3], "time", tag)?,
        })
    }

    fn need_superblock(&self) -> Result<(), IrError> {
        if self.place != Place::Superblock {
            return Err(self.fail(Kind::MissingSuperblock));
        }
        Ok(())
    }

    fn need_mapping_place(&self) -> Result<(), IrError> {
        if !matches!(self.place, Place::Def | Place::Device) {
            return Err(self.fail(Kind::MappingOutside));
        }
        Ok(())
    }

    fn superblock(&mut self, sink: &mut dyn MetadataVisitor) -> Result<(), IrError> {
        if self.seen_superblock {
            return Err(self.fail(Kind::DuplicatedSuperblock));
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
            return Err(self.fail(Kind::InvalidDataBlockSize(sb.data_block_size)));
        }
        self.seen_superblock = true;
        sink.superblock_begin(&sb)?;
        self.place = Place::Superblock;
        Ok(())
    }

    fn device(&mut self, sink: &mut dyn MetadataVisitor) -> Result<(), IrError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thin::ir::Visit;

    /// Accepts every event.
    struct Null;

    impl MetadataVisitor for Null {
        fn superblock_begin(&mut self, _: &SuperblockInfo) -> Result<Visit, IrError> {
            Ok(Visit::Continue)
        }
        fn superblock_end(&mut self) -> Result<Visit, IrError> {
            Ok(Visit::Continue)
        }
        fn def_begin(&mut self, _: u64) -> Result<Visit, IrError> {
            Ok(Visit::Continue)
        }
        fn def_end(&mut self) -> Result<Visit, IrError> {
            Ok(Visit::Continue)
        }
        fn device_begin(&mut self, _: &DeviceInfo) -> Result<Visit, IrError> {
            Ok(Visit::Continue)
        }
        fn device_end(&mut self) -> Result<Visit, IrError> {
            Ok(Visit::Continue)
        }
        fn map(&mut self, _: &Map) -> Result<Visit, IrError> {
            Ok(Visit::Continue)
        }
        fn ref_shared(&mut self, _: u64) -> Result<Visit, IrError> {
            Ok(Visit::Continue)
        }
        fn eof(&mut self) -> Result<Visit, IrError> {
            Ok(Visit::Continue)
        }
    }

    const SB: &str = r#"<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="100">"#;

    fn xml_error(doc: &str) -> XmlError {
        match read_xml(doc.as_bytes(), &mut Null) {
            Err(IrError::Xml(e)) => e,
            other => panic!("not an XML error: {other:?}"),
        }
    }

    /// Every rule broken is reported with the offset just past its tag, also
    /// when the message itself names no offset.
    #[test]
    fn errors_carry_the_offset_past_the_offending_tag() {
        let doc = format!("{SB}\n<device dev_id=\"1\"/>");
        let e = xml_error(&doc);
        assert_eq!(e.at, doc.len() as u64);
        assert_eq!(
            e.to_string(),
            "missing attribute 'mapped_blocks' for tag 'device'"
        );

        let doc = format!("{SB}\n<bogus/>");
        let e = xml_error(&doc);
        assert_eq!(e.at, doc.len() as u64);
        assert!(matches!(e.kind, Kind::UnknownEmpty(at) if at == doc.len() as u64));

        let doc = format!("{SB}\n<ref name=\"x\"/>");
        let e = xml_error(&doc);
        assert_eq!(e.at, doc.len() as u64);
        assert!(matches!(e.kind, Kind::RefOutside));
    }

    /// A canonical mapping line whose time does not fit 32 bits takes the
    /// general path and is refused with the parser's wording.
    #[test]
    fn a_time_beyond_32_bits_is_refused() {
        let dev = r#"<device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0">"#;
        let doc = format!(
            "{SB}\n{dev}\n<single_mapping origin_block=\"0\" data_block=\"0\" time=\"4294967296\"/>"
        );
        let e = xml_error(&doc);
        assert_eq!(
            e.to_string(),
            "invalid value for 'time' in tag 'single_mapping': number too large to fit in target type"
        );
    }
}
