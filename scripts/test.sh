#!/usr/bin/env bash
# The test command: installs dependencies, then runs every test (unit,
# integration on the kernel-written fixtures, and the tests that boot the
# real kernel under qemu, which run only with THINTOOLS_VM_TESTS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export THINTOOLS_VM_TESTS=1
cargo test "$@"
