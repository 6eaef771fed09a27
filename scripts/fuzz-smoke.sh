#!/usr/bin/env bash
# Runs every cargo-fuzz target for N seconds (default 20). cargo-fuzz needs
# nightly features; RUSTC_BOOTSTRAP=1 enables them on the stable toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
command -v cargo-fuzz >/dev/null || cargo install -q cargo-fuzz --locked
cd fuzz
export RUSTC_BOOTSTRAP=1
mkdir -p corpus/walk_image
for f in ../fixtures/*/meta.img.zst; do
    [ -e "$f" ] || continue
    size=$(zstd -lv "$f" 2>/dev/null | awk '/Decompressed Size/ {print $3; exit}' | tr -d ',')
    name=$(basename "$(dirname "$f")")
    # Seed only small images (the target skips inputs over 4 MiB).
    zstd -q -d -f -o "corpus/walk_image/$name" "$f" 2>/dev/null || true
    if [ "$(stat -c %s "corpus/walk_image/$name")" -gt 4194304 ]; then rm -f "corpus/walk_image/$name"; fi
    : "$size"
done
for t in $(cargo fuzz list); do
    echo "== fuzz $t (${secs}s)"
    cargo fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=4194304 2>&1 | tail -3
done
