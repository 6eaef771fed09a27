//! Tests for rmap.
