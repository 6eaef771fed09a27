//! Tests for ls.
