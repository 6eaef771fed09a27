//! The copy engine shared by thin_migrate, thin_merge and the send/receive
//! tools: a [`plan::Plan`] of sorted extents made from the metadata, and
//! [`exec::execute`] which carries it out with large aligned buffers.

pub mod exec;
pub mod plan;
pub mod source;
