#!/usr/bin/env bash
# Runs every cargo-fuzz target for N seconds (default 20). cargo-fuzz needs
# nightly features; RUSTC_BOOTSTRAP=1 enables them on the stable toolchain.
# Seeds: fuzz/seeds/<target>/ plus, for the image targets, the small fixtures.
# Targets: every one `cargo fuzz list` names (images, XML, the send/receive
# stream reader, live_names: LVM/dm names, lvs lines, dm tables and status).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
command -v cargo-fuzz >/dev/null || cargo install -q cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in walk_image check_image; do
    mkdir -p "fuzz/corpus/$target"
    for f in fixtures/*/meta.img.zst; do
        name=$(basename "$(dirname "$f")")
        out=fuzz/corpus/$target/$name
        zstd -q -d -f -o "$out" "$f"
        # The image targets only take images up to 4 MiB.
        [ "$(stat -c %s "$out")" -le 4194304 ] || rm -f "$out"
    done
done
cd fuzz
for t in $(cargo fuzz list); do
    mkdir -p "corpus/$t"
    [ -d "seeds/$t" ] && cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
    echo "== fuzz $t (${secs}s)"
    cargo fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=4194304 2>&1 | tail -2
done
