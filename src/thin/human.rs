//! human (in progress)
