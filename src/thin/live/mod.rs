//! Live thin devices: resolving a path to the thin, its pool and devices,
//! holding a metadata snapshot of the pool while its thins are read, and
//! LVM names through lvm2's commands.

pub mod lvm;
pub mod resolve;
pub mod snapshot;
