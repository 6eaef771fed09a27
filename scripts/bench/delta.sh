#!/usr/bin/env bash
# thin_delta cost benchmark: two snapshots of a 1 M-mapping device that differ
# in 1 % of their blocks, either scattered (--cluster 1) or in clusters of 64
# blocks. Images are restored with Debian's thin_restore (two separate trees)
# and then rewritten so that device 1 shares every unchanged subtree with
# device 0, as the kernel's copy-on-write leaves them (benches/delta_walk.rs
# --share). Prints metadata blocks read, wall and CPU time of our diff against
# the same diff reading each tree on its own, then times the CLI with
# hyperfine beside Debian's thin_delta 0.9.0.
#
#   scripts/bench/delta.sh            (inputs in $BENCH_DIR, default /tmp/bench-delta)
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH_DIR=${BENCH_DIR:-/tmp/bench-delta}
RUNS=${RUNS:-11}
mkdir -p "$BENCH_DIR"
cargo build --release --bins -q
cargo bench --bench delta_walk --no-run -q 2>/dev/null
bench=$(ls -t target/release/deps/delta_walk-* | grep -v '\.d$' | head -1)
for cluster in 1 64; do
    xml=$BENCH_DIR/c$cluster.xml
    meta=$BENCH_DIR/c$cluster.meta
    [ -s "$xml" ] || python3 scripts/bench/gen_delta_xml.py --mappings 1000000 --changed 0.01 \
        --cluster "$cluster" --seed 1 > "$xml"
    if [ ! -s "$meta" ]; then
        truncate -s 256M "$meta"
        /usr/sbin/thin_restore -i "$xml" -o "$meta"
    fi
    echo "## 1 M mappings, 1 % changed in clusters of $cluster"
    "$bench" "$meta" --share --runs "$RUNS"
    shared=${meta%.meta}.shared
    hyperfine -N -w 2 -r "$RUNS" \
        "target/release/thin_delta --thin1 0 --thin2 1 $shared" \
        "/usr/sbin/thin_delta --thin1 0 --thin2 1 $shared" 2>/dev/null | grep -E 'Time|thin_delta'
done
