//! `thin_send` / `thin_recv`: a thin volume (or the difference between two
//! snapshots) as a byte stream, and that stream applied to a block device or
//! a file. Formats in [`stream`]; the receiver's side in [`apply`] and
//! [`state`]; the sender's in [`send`] and [`plan`]; live volumes (LVM names,
//! dm paths) in [`live`].

pub mod apply;
pub mod live;
pub mod plan;
pub mod send;
pub mod state;
pub mod stream;
pub mod target;
