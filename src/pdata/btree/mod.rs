//! Btrees: node views (`node`), the one walker (`walk`), the two-tree diff
//! that skips shared subtrees (`diff`) and the builder (`build`).

pub mod build;
pub mod diff;
pub mod node;
mod node_map;
pub mod walk;
