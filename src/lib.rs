//! thintools: userspace tools for Linux device-mapper thin-provisioning metadata.
//!
//! The crate is layered; dependencies point down only:
//!
//! ```text
//! src/bin       thin mains: each calls commands::tool_main
//! commands      arguments (clap), output, exit codes, anyhow: one file per tool
//! thin          the thin metadata model, the IR and one engine per tool
//! pdata         generic persistent data: block I/O, checksums, btrees, space maps
//! ```
//!
//! [`progress`] is a leaf utility every layer may use. Nothing in `pdata`
//! names `thin` or `commands`; nothing in `thin` names `commands`, clap or an
//! exit code (the `layers` integration test fails when a lower layer names a
//! higher one).
//! `unsafe` code lives in [`pdata::sys`] only.

#![deny(unsafe_code)]

pub mod commands;
pub mod pdata;
pub mod progress;
pub mod thin;
