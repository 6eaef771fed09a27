//! Tests for trim.
