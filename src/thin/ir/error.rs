//! The errors of the IR layer: what a sink refuses or fails at
//! ([`IrError`]), what the binary metadata writer refuses ([`WriterError`],
//! naming the block or key) and what the XML reader refuses ([`XmlError`],
//! with the byte offset at which the problem was seen).
//!
//! Every message is the one the tools print; offsets and block numbers that
//! are not part of the printed wording are kept as fields for callers.

use std::io;

use crate::pdata::block::BlockNr;
use crate::pdata::btree::build::WriteError;
use crate::pdata::btree::node::NodeError;

/// A failure while events travel from a source to a sink.
#[derive(Debug, thiserror::Error)]
pub enum IrError {
    /// A text sink could not write its output.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The binary metadata writer refused an event or could not write.
    #[error(transparent)]
    Writer(#[from] WriterError),
    /// The XML input broke a rule.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// A mapping leaf could not be read again or is not a mapping leaf.
    #[error(transparent)]
    Leaf(#[from] NodeError),
    /// The sink thread ended before the source was done.
    #[error("sink stopped")]
    SinkStopped,
    /// The sink thread panicked.
    #[error("writer thread panicked")]
    SinkPanicked,
    /// The emitter lost track of a rendered chunk (a bug).
    #[error("internal error: chunk without output")]
    ChunkMissing,
}

impl IrError {
    /// True when the output was a pipe whose reader went away.
    #[must_use]
    pub fn is_broken_pipe(&self) -> bool {
        let io = match self {
            IrError::Io(e) | IrError::Writer(WriterError::Output(WriteError::Io(e))) => e,
            _ => return false,
        };
        io.kind() == io::ErrorKind::BrokenPipe
    }
}

/// What the binary metadata writer refuses, or could not do.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// Allocating, writing or reading back a metadata block failed.
    #[error(transparent)]
    Output(#[from] WriteError),
    /// An event other than the superblock came first, or a def or device
    /// began inside another.
    #[error("missing superblock")]
    MissingSuperblock,
    /// A second superblock.
    #[error("duplicated superblock")]
    DuplicatedSuperblock,
    /// The input ended inside the document.
    #[error("incomplete source metadata")]
    Incomplete,
    /// A mapping's time does not fit the 24 bits of a mapping value.
    #[error("mapping time out of range")]
    TimeOutOfRange {
        /// The time given.
        time: u32,
    },
    /// A mapping's data block lies beyond the data device or the largest
    /// block a mapping value can hold.
    #[error("block out of bounds")]
    DataOutOfBounds {
        /// The first data block of the offending run.
        data_begin: u64,
    },
    /// Mappings of one def or device are not in ascending thin-block order.
    #[error("keys out of order")]
    KeysOutOfOrder {
        /// The first thin block of the offending run or shared leaf.
        thin_begin: u64,
    },
    /// A mapping outside any def or device.
    #[error("Mapping tags must appear within a <def> or <device> tag.")]
    MappingOutside,
    /// A ref outside a device.
    #[error("<ref> tags may only occur within <device> sections.")]
    RefOutside,
    /// A ref to a def not seen before.
    #[error("Couldn't find sub tree '{0}'.")]
    UnknownDef(u64),
    /// A shared leaf written earlier no longer parses.
    #[error("re-reading shared leaf: {0}")]
    SharedLeaf(NodeError),
    /// A node of a replaced tree no longer parses.
    #[error("re-reading node: {0}")]
    ReleasedNode(NodeError),
    /// A leaf entry names a data block beyond the data space map.
    #[error("block out of bounds")]
    CountOutOfRange {
        /// The data block.
        block: BlockNr,
    },
}

/// An XML input rule broken at byte offset `at` (just past the offending
/// tag). Message and cause are [`XmlErrorKind`]'s; offsets printed by the
/// tools are part of the kind's wording.
#[derive(Debug)]
pub struct XmlError {
    /// Byte offset just past the tag where the problem was seen.
    pub at: u64,
    /// What was wrong.
    pub kind: XmlErrorKind,
}

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for XmlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

/// The XML input rules.
#[derive(Debug, thiserror::Error)]
pub enum XmlErrorKind {
    /// Malformed markup or a read failure.
    #[error(transparent)]
    Lex(#[from] LexError),
    /// The input ended before `</superblock>`, or holds binary data.
    #[error("incomplete source metadata")]
    Incomplete,
    /// Something other than markup before the first element: the input is
    /// not thin_dump XML (binary metadata, a text file...).
    #[error("not XML: found \"{found}\" at byte {at} where <superblock> should begin")]
    NotXml {
        /// Offset of the first byte that is not markup.
        at: u64,
        /// Its first bytes, escaped.
        found: String,
    },
    /// A declaration after the start, a comment, a DOCTYPE...
    #[error("unsupported element at byte {0}")]
    Unsupported(u64),
    /// An end tag of an unknown element.
    #[error("unknown end tag at byte {0}")]
    UnknownEnd(u64),
    /// An end tag that does not close the open element.
    #[error("parse error at byte {at}: mismatched end tag </{name}>")]
    MismatchedEnd {
        /// Offset just past the tag.
        at: u64,
        /// The tag's name.
        name: String,
    },
    /// A start tag of an unknown element.
    #[error("unknown start tag at byte {0}")]
    UnknownStart(u64),
    /// An empty element of an unknown kind.
    #[error("unknown empty element at byte {0}")]
    UnknownEmpty(u64),
    /// An attribute the tag does not have.
    #[error("unknown attribute '{attr}' in tag '{tag}'")]
    UnknownAttribute {
        /// The attribute.
        attr: String,
        /// The tag.
        tag: &'static str,
    },
    /// An attribute given twice.
    #[error("duplicate attribute '{attr}' in tag '{tag}'")]
    DuplicateAttribute {
        /// The attribute.
        attr: &'static str,
        /// The tag.
        tag: &'static str,
    },
    /// A required attribute is absent.
    #[error("missing attribute '{attr}' for tag '{tag}'")]
    MissingAttribute {
        /// The attribute.
        attr: &'static str,
        /// The tag.
        tag: &'static str,
    },
    /// An attribute value is not a number of the right size.
    #[error("invalid value for '{attr}' in tag '{tag}': {err}")]
    InvalidNumber {
        /// The attribute.
        attr: &'static str,
        /// The tag.
        tag: &'static str,
        /// The parser's complaint.
        err: std::num::ParseIntError,
    },
    /// A ref outside a device.
    #[error("<ref> tags may only occur within <device> sections.")]
    RefOutside,
    /// A ref to a name not defined before.
    #[error("Couldn't find sub tree '{0}'.")]
    UnknownDef(String),
    /// A def or device outside the superblock.
    #[error("missing superblock")]
    MissingSuperblock,
    /// A mapping outside any def or device.
    #[error("Mapping tags must appear within a <def> or <device> tag.")]
    MappingOutside,
    /// A second superblock.
    #[error("duplicated superblock")]
    DuplicatedSuperblock,
    /// A data block size the kernel does not accept.
    #[error("invalid data block size")]
    InvalidDataBlockSize(u32),
}

/// Lexical errors (malformed XML).
#[derive(Debug, thiserror::Error)]
pub enum LexError {
    /// Malformed markup at an offset.
    #[error("parse error at byte {pos}: {detail}")]
    Syntax {
        /// Offset of the problem.
        pos: u64,
        /// What was wrong.
        detail: &'static str,
    },
    /// Reading the input failed.
    #[error("reading input: {0}")]
    Io(#[from] io::Error),
}
