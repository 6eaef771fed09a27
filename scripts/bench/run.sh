#!/usr/bin/env bash
# Benchmarks thintools against Debian's thin-provisioning-tools (0.9.0, in
# /usr/sbin) on generated metadata, warm cache, with hyperfine (medians) and
# /usr/bin/time -v (peak RSS).
#
#   scripts/bench/run.sh [med|large]...     default: med
#
# Inputs live in $BENCH_DIR (default /tmp/bench): <size>.xml is made by the
# generator ($GEN, default ../shared/bench/gen_thin_xml.py) and <size>.meta by
# our thin_restore. Results go to $BENCH_DIR/results-<size>.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH_DIR=${BENCH_DIR:-/tmp/bench}
GEN=${GEN:-../shared/bench/gen_thin_xml.py}
RUNS=${RUNS:-5}
mkdir -p "$BENCH_DIR"
cargo build --release --bins -q
ours=target/release

gen_args() {
    case $1 in
    med) echo "--origins 4 --mappings 1000000 --snaps 3 --overwrite 0.05 --seed 2" ;;
    large) echo "--origins 8 --mappings 4000000 --snaps 3 --overwrite 0.05 --seed 3" ;;
    *) echo "unknown size $1" >&2; exit 2 ;;
    esac
}

rss() { # rss CMD... -> peak RSS in MB
    /usr/bin/time -v "$@" 2>&1 >/dev/null | awk '/Maximum resident/ {printf "%.0f", $6 / 1024}'
}

for size in "${@:-med}"; do
    xml=$BENCH_DIR/$size.xml
    meta=$BENCH_DIR/$size.meta
    # shellcheck disable=SC2046
    [ -s "$xml" ] || python3 "$GEN" $(gen_args "$size") > "$xml"
    if [ ! -s "$meta" ]; then
        truncate -s 4G "$meta"
        "$ours/thin_restore" -i "$xml" -o "$meta"
    fi
    out=$BENCH_DIR/results-$size.md
    : > "$out"
    hyperfine -N -w 1 -r "$RUNS" --export-markdown "$BENCH_DIR/check-$size.md" \
        -n "thintools thin_check" "$ours/thin_check $meta" \
        -n "0.9.0 thin_check" "/usr/sbin/thin_check $meta"
    hyperfine -w 1 -r "$RUNS" --export-markdown "$BENCH_DIR/dump-$size.md" \
        -n "thintools thin_dump" "$ours/thin_dump $meta > /dev/null" \
        -n "0.9.0 thin_dump" "/usr/sbin/thin_dump $meta > /dev/null"
    hyperfine -N -w 1 -r "$RUNS" --export-markdown "$BENCH_DIR/ls-$size.md" \
        -n "thintools thin_ls EXCLUSIVE_BLOCKS" "$ours/thin_ls -o DEV,EXCLUSIVE_BLOCKS $meta"
    scratch=$BENCH_DIR/$size.restore-scratch
    truncate -s 4G "$scratch"
    hyperfine -N -w 0 -r 3 --export-markdown "$BENCH_DIR/restore-$size.md" \
        -n "thintools thin_restore" "$ours/thin_restore -i $xml -o $scratch"
    {
        cat "$BENCH_DIR"/{check,dump,ls,restore}-"$size".md
        echo
        echo "peak RSS (MB): thin_check $(rss "$ours/thin_check" "$meta"), thin_dump $(rss "$ours/thin_dump" "$meta"), thin_restore $(rss "$ours/thin_restore" -i "$xml" -o "$scratch")"
    } > "$out"
    rm -f "$scratch"
    cat "$out"
done
