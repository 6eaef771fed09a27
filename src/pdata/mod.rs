//! Generic persistent data: the layers below the thin metadata model.

pub mod block;
pub mod btree;
pub mod checksum;
pub mod io;
pub mod space_map;
pub mod sys;
pub mod writer;
