//! Tests for repair.
