//! XML reader (in progress)
