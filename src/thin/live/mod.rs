//! Live thin devices: resolving a path to the thin, its pool and devices,
//! and holding a metadata snapshot of the pool while its thins are read.

pub mod resolve;
pub mod snapshot;
