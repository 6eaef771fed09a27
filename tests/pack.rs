//! Tests for pack.
