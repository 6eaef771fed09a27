//! thin_dump XML: the writer (`write`) and the reader used by thin_restore (`read`).

pub mod lexer;
pub mod read;
pub mod write;
