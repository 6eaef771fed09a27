//! The thin-pool metadata layer, in three kinds of module:
//!
//! - [`model`]: the on-disk format (superblock, device details, mapping
//!   values) and opening metadata for reading;
//! - [`ir`]: the intermediate representation shared by dump, restore and
//!   repair, with its sources and sinks (XML, human-readable text, the binary
//!   metadata writer, the def/ref sharing planner, the two-thread channel);
//! - [`engines`]: one engine per tool. An engine takes an options struct and
//!   returns a typed result; it knows nothing of argument parsing or exit
//!   codes, which belong to the command layer.

pub mod engines;
pub mod ir;
pub mod live;
pub mod model;
