//! The XML source: reads thin_dump XML (formats.md §2) as a stream and drives
//! a [`MetadataVisitor`] (the binary writer for thin_restore).
//!
//! Input rules and messages are formats.md §2's, checked in document order.
//! Byte offsets in messages are the offset just past the offending tag.
//! `<def>` and `<ref>` names are arbitrary strings; each distinct name gets a
//! number in order of first definition, which is what the visitor sees.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufRead;

use anyhow::{anyhow, bail, Result};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::thin::ir::{DeviceInfo, Map, MetadataVisitor, SuperblockInfo};
use crate::thin::superblock::valid_data_block_size;

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

/// Reads one XML document from `input` into `sink`.
///
/// # Errors
/// The first input rule broken (formats.md §2 wording) or a sink failure.
pub fn read_xml<R: BufRead>(input: R, sink: &mut dyn MetadataVisitor) -> Result<()> {
    let mut src = XmlSource {
        reader: Reader::from_reader(input),
        names: HashMap::new(),
        place: Place::Start,
        seen_superblock: false,
    };
    src.reader.config_mut().check_end_names = true;
    src.run(sink)
}

struct XmlSource<R> {
    reader: Reader<R>,
    names: HashMap<Vec<u8>, u64>,
    place: Place,
    seen_superblock: bool,
}

/// Values of a tag's attributes, in the order of its attribute table.
type Values<'a, const N: usize> = [Option<Cow<'a, [u8]>>; N];

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Collects the attributes of `e` by name; `required` is the number of
/// leading names that must be present.
fn attributes<'a, const N: usize>(
    e: &'a BytesStart<'a>,
    tag: &str,
    names: [&str; N],
    required: usize,
    pos: u64,
) -> Result<Values<'a, N>> {
    let mut out: Values<'a, N> = std::array::from_fn(|_| None);
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(|err| anyhow!("parse error at byte {pos}: {err}"))?;
        let key = a.key.as_ref();
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

/// Parses a decimal attribute value.
fn number<T: std::str::FromStr<Err = std::num::ParseIntError>>(
    v: Option<&Cow<[u8]>>,
    attr: &str,
    tag: &str,
) -> Result<T> {
    let raw = v.map_or(&b""[..], |c| c.as_ref());
    let s = std::str::from_utf8(raw).unwrap_or("\u{1}");
    s.parse::<T>()
        .map_err(|e| anyhow!("invalid value for '{attr}' in tag '{tag}': {e}"))
}

fn optional<T: std::str::FromStr<Err = std::num::ParseIntError> + Default>(
    v: Option<&Cow<[u8]>>,
    attr: &str,
    tag: &str,
) -> Result<Option<T>> {
    v.map(|_| number(v, attr, tag)).transpose()
}

impl<R: BufRead> XmlSource<R> {
    fn run(&mut self, sink: &mut dyn MetadataVisitor) -> Result<()> {
        let mut buf = Vec::with_capacity(4096);
        loop {
            buf.clear();
            let ev = match self.reader.read_event_into(&mut buf) {
                Ok(ev) => ev,
                Err(e) => {
                    let pos = self.reader.error_position();
                    bail!("parse error at byte {pos}: {e}");
                }
            };
            let pos = self.reader.buffer_position();
            match ev {
                Event::Eof => {
                    if self.place != Place::Done {
                        bail!("incomplete source metadata");
                    }
                    sink.eof()?;
                    return Ok(());
                }
                Event::Text(t) => {
                    if t.contains(&0) {
                        // Binary data fed as XML.
                        bail!("incomplete source metadata");
                    }
                }
                Event::Comment(_) => {}
                Event::Decl(_) if self.place == Place::Start => {}
                Event::Decl(_) | Event::PI(_) | Event::DocType(_) | Event::CData(_) => {
                    bail!("unsupported element at byte {pos}");
                }
                Event::Start(e) => self.start(&e, pos, sink)?,
                Event::Empty(e) => self.empty(&e, pos, sink)?,
                Event::End(e) => {
                    match e.name().as_ref() {
                        b"superblock" => {
                            sink.superblock_end()?;
                            self.place = Place::Done;
                        }
                        b"def" => {
                            sink.def_end()?;
                            self.place = Place::Superblock;
                        }
                        b"device" => {
                            sink.device_end()?;
                            self.place = Place::Superblock;
                        }
                        _ => bail!("unknown end tag at byte {pos}"),
                    };
                }
            }
        }
    }

    fn start(&mut self, e: &BytesStart, pos: u64, sink: &mut dyn MetadataVisitor) -> Result<()> {
        match e.name().as_ref() {
            b"superblock" => self.superblock(e, pos, sink),
            b"def" => {
                self.need_superblock()?;
                let [name] = attributes(e, "def", ["name"], 1, pos)?;
                let name = name.unwrap_or_default().into_owned();
                let next = self.names.len() as u64;
                let id = *self.names.entry(name).or_insert(next);
                sink.def_begin(id)?;
                self.place = Place::Def;
                Ok(())
            }
            b"device" => {
                self.device(e, pos, sink)?;
                self.place = Place::Device;
                Ok(())
            }
            name if name.contains(&0) => bail!("incomplete source metadata"),
            _ => bail!("unknown start tag at byte {pos}"),
        }
    }

    fn empty(&mut self, e: &BytesStart, pos: u64, sink: &mut dyn MetadataVisitor) -> Result<()> {
        match e.name().as_ref() {
            b"single_mapping" => {
                self.need_mapping_place()?;
                let tag = "single_mapping";
                let v = attributes(e, tag, ["origin_block", "data_block", "time"], 3, pos)?;
                let m = Map {
                    thin_begin: number(v[0].as_ref(), "origin_block", tag)?,
                    data_begin: number(v[1].as_ref(), "data_block", tag)?,
                    time: number(v[2].as_ref(), "time", tag)?,
                    len: 1,
                };
                sink.map(&m)?;
                Ok(())
            }
            b"range_mapping" => {
                self.need_mapping_place()?;
                let tag = "range_mapping";
                let names = ["origin_begin", "data_begin", "length", "time"];
                let v = attributes(e, tag, names, 4, pos)?;
                let m = Map {
                    thin_begin: number(v[0].as_ref(), "origin_begin", tag)?,
                    data_begin: number(v[1].as_ref(), "data_begin", tag)?,
                    len: number(v[2].as_ref(), "length", tag)?,
                    time: number(v[3].as_ref(), "time", tag)?,
                };
                sink.map(&m)?;
                Ok(())
            }
            b"ref" => {
                if self.place != Place::Device {
                    bail!("<ref> tags may only occur within <device> sections.");
                }
                let [name] = attributes(e, "ref", ["name"], 1, pos)?;
                let name = name.unwrap_or_default();
                let Some(&id) = self.names.get(name.as_ref()) else {
                    bail!("Couldn't find sub tree '{}'.", text(&name));
                };
                sink.ref_shared(id)?;
                Ok(())
            }
            b"device" => {
                self.device(e, pos, sink)?;
                sink.device_end()?;
                Ok(())
            }
            name if name.contains(&0) => bail!("incomplete source metadata"),
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

    fn superblock(
        &mut self,
        e: &BytesStart,
        pos: u64,
        sink: &mut dyn MetadataVisitor,
    ) -> Result<()> {
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
        let v = attributes(e, tag, names, 5, pos)?;
        let sb = SuperblockInfo {
            uuid: text(v[0].as_deref().unwrap_or_default()),
            time: number(v[1].as_ref(), "time", tag)?,
            transaction: number(v[2].as_ref(), "transaction", tag)?,
            data_block_size: number(v[3].as_ref(), "data_block_size", tag)?,
            nr_data_blocks: number(v[4].as_ref(), "nr_data_blocks", tag)?,
            flags: optional(v[5].as_ref(), "flags", tag)?.unwrap_or(0),
            version: optional(v[6].as_ref(), "version", tag)?.unwrap_or(2),
            metadata_snap: optional(v[7].as_ref(), "metadata_snap", tag)?,
        };
        if !valid_data_block_size(u64::from(sb.data_block_size)) {
            bail!("invalid data block size");
        }
        self.seen_superblock = true;
        sink.superblock_begin(&sb)?;
        self.place = Place::Superblock;
        Ok(())
    }

    fn device(&mut self, e: &BytesStart, pos: u64, sink: &mut dyn MetadataVisitor) -> Result<()> {
        self.need_superblock()?;
        let tag = "device";
        let names = [
            "dev_id",
            "mapped_blocks",
            "transaction",
            "creation_time",
            "snap_time",
        ];
        let v = attributes(e, tag, names, 5, pos)?;
        let dev = DeviceInfo {
            dev_id: u64::from(number::<u32>(v[0].as_ref(), "dev_id", tag)?),
            mapped_blocks: number(v[1].as_ref(), "mapped_blocks", tag)?,
            transaction: number(v[2].as_ref(), "transaction", tag)?,
            creation_time: number(v[3].as_ref(), "creation_time", tag)?,
            snap_time: number(v[4].as_ref(), "snap_time", tag)?,
        };
        sink.device_begin(&dev)?;
        Ok(())
    }
}
