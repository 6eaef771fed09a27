//! One engine per tool.

pub mod copy;
pub mod merge;
pub mod migrate;
