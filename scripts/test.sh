#!/usr/bin/env bash
# The test command: installs dependencies, then runs every test (unit,
# integration on the kernel-written fixtures, and the tests that boot the
# real kernel under qemu).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test "$@"
