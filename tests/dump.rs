//! Tests for dump.
