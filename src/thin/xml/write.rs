//! XML writer (in progress)
