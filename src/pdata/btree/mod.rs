//! Btrees: node views (`node`), the one walker (`walk`) and the builder (`build`).

pub mod build;
pub mod node;
pub mod walk;
