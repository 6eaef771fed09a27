//! Tests for metadata_size.
