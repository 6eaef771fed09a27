//! The command layer: arguments, wording and exit codes of each tool, over
//! the engines in `thin::engines`.

pub mod recv;
pub mod send;
pub mod send_recv;
