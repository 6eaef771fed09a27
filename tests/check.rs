//! Tests for check.
