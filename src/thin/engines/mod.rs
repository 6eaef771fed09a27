//! One engine per tool.

pub mod copy;
pub mod migrate;
