//! Tests for restore.
