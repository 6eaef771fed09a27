//! The thin-pool metadata model and each tool's logic.

pub mod check;
pub mod delta;
pub mod device_details;
pub mod dump;
pub mod emit;
pub mod engines;
pub mod human;
pub mod input;
pub mod ir;
pub mod ir_channel;
pub mod ls;
pub mod mapping;
pub mod metadata;
pub mod metadata_size;
pub mod pack;
pub mod repair;
pub mod restore;
pub mod rmap;
pub mod shared_runs;
pub mod superblock;
pub mod trim;
pub mod writer;
pub mod xml;
