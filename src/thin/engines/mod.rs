//! One engine per tool. Each takes an options struct and returns a typed
//! result or a typed error; the command layer turns those into output and an
//! exit code.

pub mod check;
pub mod copy;
pub mod delta;
pub mod dump;
pub mod ls;
pub mod merge;
pub mod metadata_size;
pub mod migrate;
pub mod pack;
pub mod repair;
pub mod restore;
pub mod rmap;
pub mod send_recv;
pub mod shrink;
pub mod trim;
