#!/usr/bin/env bash
# Builds the tools and runs thin_check and thin_dump on a kernel-written
# fixture shipped in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bins
fixture=${1:-fixtures/d-snap-chain}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
zstd -q -d -o "$tmp/meta.img" "$fixture/meta.img.zst"
echo "== thin_check $fixture"
target/release/thin_check "$tmp/meta.img"
echo "== thin_dump $fixture"
target/release/thin_dump "$tmp/meta.img"
echo
