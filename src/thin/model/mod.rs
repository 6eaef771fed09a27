//! The on-disk thin metadata model: what the kernel's thin-pool target
//! writes, and opening it for reading.

pub mod device_details;
pub mod mapping;
pub mod open;
pub mod superblock;
