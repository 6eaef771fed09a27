//! Tests for cli_contract.
