//! The command layer: argument parsing, messages and exit codes of each tool.

pub mod merge;
pub mod migrate;
