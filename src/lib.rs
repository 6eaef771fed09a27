//! thintools: userspace tools for Linux device-mapper thin-provisioning metadata.
//!
//! `pdata` is the generic persistent-data layer (block I/O, checksums, btrees,
//! space maps); `thin` is the thin-pool metadata model and the logic of each
//! tool; `cli` and `exit` hold what every binary shares.

pub mod cli;
pub mod commands;
pub mod exit;
pub mod pdata;
pub mod progress;
pub mod thin;
