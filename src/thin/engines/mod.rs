//! One engine per tool.

pub mod send_recv;
