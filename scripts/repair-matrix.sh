#!/usr/bin/env bash
# Prints docs/repair.md's damage matrix: every kernel-written fixture damaged
# each way, repaired by ours (thin_dump --repair, in-process) and by the
# reference thin_dump --repair of upstream 1.3.3 beside it. The reference is
# ../shared/reference/pdata_tools-1.3.3, or the multi-call binary named by
# THINTOOLS_REFERENCE; without it the table has ours only (and says so).
# The same run fails if ours is below the reference in any cell
# (tests/repair_matrix.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -q --test tests repair_matrix::repair_matrix_ours_at_least_the_reference \
    -- --nocapture --exact 2>/dev/null | grep -E '^(\||reference)'
