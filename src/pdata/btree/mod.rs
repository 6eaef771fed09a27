//! Btrees: node views (`node`), the one walker (`walk`) and the builder (`build`).

pub mod build;
pub mod node;
mod node_map;
pub mod walk;
