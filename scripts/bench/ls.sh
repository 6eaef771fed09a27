#!/usr/bin/env bash
# thin_ls cost benchmark: `thin_ls -o DEV,EXCLUSIVE_BLOCKS` (the counting
# that needs every mapping tree walked and data sharing worked out) against
# our own thin_check on the same generated image, warm cache; the target is
# at most 1.5 times thin_check's time. Reports hyperfine medians and, because
# wall time on a loaded 2-core machine mostly measures waiting, the CPU time
# (user + system) of each from perf stat.
#
#   scripts/bench/ls.sh [med|large]...   (images from scripts/bench/run.sh in $BENCH_DIR)
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH_DIR=${BENCH_DIR:-/tmp/bench}
RUNS=${RUNS:-5}
cargo build --release --bins -q
ours=target/release
for size in "${@:-med}"; do
    meta=$BENCH_DIR/$size.meta
    [ -s "$meta" ] || { echo "$meta missing: make it with scripts/bench/run.sh $size" >&2; exit 1; }
    echo "## $size"
    hyperfine -N -w 1 -r "$RUNS" -i \
        "$ours/thin_check $meta" \
        "$ours/thin_ls -o DEV,EXCLUSIVE_BLOCKS $meta" 2>/dev/null | grep -E 'Benchmark|Time'
    for cmd in "$ours/thin_check $meta" "$ours/thin_ls -o DEV,EXCLUSIVE_BLOCKS $meta"; do
        # shellcheck disable=SC2086
        cpu=$(perf stat -x, -r "$RUNS" -e task-clock $cmd 2>&1 >/dev/null | awk -F, '/task-clock/ {printf "%.0f", $1}')
        echo "CPU ${cpu} ms: $cmd"
    done
done
