//! Tests for delta.
