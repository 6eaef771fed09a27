#!/usr/bin/env bash
# Benchmarks thintools side by side with upstream thin-provisioning-tools
# 1.3.3 on generated pools, warm page cache, and prints one table with the
# ratios (ours / upstream).
#
#   scripts/bench/run.sh [IMAGE]...      default: med
#
# IMAGE (the pool shapes; examples/gen_pool_xml.rs documents the options):
#   small         2 thins x 50 k mappings, 3 snapshots each (a quick check of the script)
#   med           4 thins x 1 M mappings, 3 snapshots each: 16 M mappings, ~295 MB of metadata
#   large         8 thins x 4 M mappings, 3 snapshots each: 134 M mappings, ~2.4 GB
#   large-shared  large, with rewrites in clusters and the snapshots' unchanged
#                 leaves shared between devices, as the kernel's copy-on-write leaves them
#   xlarge        2 x large (16 thins), to see how time and memory grow
#
# Each image is made once into $BENCH_DIR (default /tmp/bench): <image>.xml by
# our generator, <image>.meta by our thin_restore; both are remade when the
# generator's arguments change. Then every tool in $TOOLS (default: check dump
# ls delta restore) runs $RUNS times (default 5) after one warm-up, ours and
# upstream's alternating (paired), each under /usr/bin/time, and the table
# shows the medians: wall seconds / CPU (user + system) seconds / peak RSS.
# The reference is $REF (default ../shared/reference/pdata_tools-1.3.3); when
# it is absent only our figures are shown. SEED=N replaces every image's seed
# (fresh images of the same shape). The table is also written to
# $BENCH_DIR/results.md.
#
# Example: RUNS=3 TOOLS="check dump" scripts/bench/run.sh med large
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH_DIR=${BENCH_DIR:-/tmp/bench}
RUNS=${RUNS:-5}
TOOLS=${TOOLS:-check dump ls delta restore}
REF=${REF:-../shared/reference/pdata_tools-1.3.3}
mkdir -p "$BENCH_DIR"

# PROFILE=dev measures a debug build (only to try the script quickly).
PROFILE=${PROFILE:-release}
cargo build --profile "$PROFILE" --bins --example gen_pool_xml -q
if [ "$PROFILE" = dev ]; then ours=$PWD/target/debug; else ours=$PWD/target/$PROFILE; fi
gen=$ours/examples/gen_pool_xml

# The multi-call reference picks the tool by argv[0]: one link per tool.
ref_dir=""
if [ -x "$REF" ]; then
    ref_dir=$BENCH_DIR/reference
    mkdir -p "$ref_dir"
    for t in thin_check thin_dump thin_ls thin_delta thin_restore; do
        ln -sf "$(realpath "$REF")" "$ref_dir/$t"
    done
else
    echo "reference $REF absent: measuring thintools only" >&2
fi

gen_args() {
    local base="--snaps 3 --overwrite 0.05"
    local args
    case $1 in
    small) args="--thins 2 --mappings 50000 $base --seed 1" ;;
    med) args="--thins 4 --mappings 1000000 $base --seed 2" ;;
    large) args="--thins 8 --mappings 4000000 $base --seed 3" ;;
    large-shared) args="--thins 8 --mappings 4000000 $base --cluster 256 --share 1024 --seed 3" ;;
    xlarge) args="--thins 16 --mappings 4000000 $base --seed 4" ;;
    *) echo "unknown image $1 (small, med, large, large-shared, xlarge)" >&2; exit 2 ;;
    esac
    if [ -n "${SEED:-}" ]; then
        args="${args% --seed *} --seed $SEED"
    fi
    echo "$args"
}

# make_image NAME: <name>.xml and <name>.meta in $BENCH_DIR, unless current.
make_image() {
    local name=$1 args xml meta
    args=$(gen_args "$name")
    xml=$BENCH_DIR/$name.xml
    meta=$BENCH_DIR/$name.meta
    if [ -s "$xml" ] && [ -s "$meta" ] && [ "$(cat "$BENCH_DIR/$name.args" 2>/dev/null)" = "$args" ]; then
        return
    fi
    echo "making $name: gen_pool_xml $args" >&2
    rm -f "$BENCH_DIR/$name.args"
    # shellcheck disable=SC2086
    "$gen" $args > "$xml"
    rm -f "$meta"
    truncate -s "$(meta_size "$xml")" "$meta"
    "$ours/thin_restore" -q -i "$xml" -o "$meta"
    "$ours/thin_check" -q "$meta"
    echo "$args" > "$BENCH_DIR/$name.args"
}

# A metadata device comfortably larger than the restored metadata: twice the
# XML, at least 64 MiB (sparse).
meta_size() {
    local bytes
    bytes=$(stat -c %s "$1")
    bytes=$((bytes * 2))
    [ "$bytes" -ge $((64 << 20)) ] || bytes=$((64 << 20))
    echo "$bytes"
}

# The command line of tool $1 on image $2, run from directory $3.
cmdline() {
    local tool=$1 name=$2 dir=$3 meta=$BENCH_DIR/$2.meta
    case $tool in
    check) echo "$dir/thin_check $meta" ;;
    dump) echo "$dir/thin_dump $meta" ;;
    ls) echo "$dir/thin_ls -o DEV,EXCLUSIVE_BLOCKS $meta" ;;
    delta) echo "$dir/thin_delta --thin1 0 --thin2 1 $meta" ;;
    restore) echo "$dir/thin_restore -i $BENCH_DIR/$name.xml -o $BENCH_DIR/$name.scratch" ;;
    *) echo "unknown tool $tool (check, dump, ls, delta, restore)" >&2; exit 2 ;;
    esac
}

# measure CMD...: one run under /usr/bin/time, output discarded; prints
# "wall cpu rss_kb", or "fail" when the command fails. Dirty pages left by
# the previous run (a restore writes gigabytes and flushes them) are
# written back first, so that no run pays for the one before it.
measure() {
    local t
    sync
    t=$(mktemp)
    if /usr/bin/time -f "%e %U %S %M" -o "$t" "$@" >/dev/null 2>&1; then
        awk '{ printf "%s %.2f %s\n", $1, $2 + $3, $4 }' "$t"
    else
        echo fail
    fi
    rm -f "$t"
}

# median FILE: "wall / CPU / RSS" medians of the lines of measure(), or "fail".
median() {
    if grep -q fail "$1"; then
        echo fail
        return
    fi
    local col out=()
    for col in 1 2 3; do
        out+=("$(cut -d' ' -f"$col" "$1" | sort -g | awk '{ v[NR] = $1 }
            END { if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2; print m }')")
    done
    printf "%.3f s / %.2f s / %.0f MB\n" "${out[0]}" "${out[1]}" "$(echo "${out[2]}" | awk '{ print $1 / 1024 }')"
}

# ratio A B: A / B to two decimals, or "-".
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}

table=$BENCH_DIR/results.md
{
    echo "| tool | image | ours: wall / CPU / RSS | 1.3.3: wall / CPU / RSS | ratio wall / CPU / RSS |"
    echo "|---|---|---|---|---|"
} > "$table"

for name in "${@:-med}"; do
    make_image "$name"
    for tool in $TOOLS; do
        scratch=$BENCH_DIR/$name.scratch
        if [ "$tool" = restore ]; then
            rm -f "$scratch"
            truncate -s "$(meta_size "$BENCH_DIR/$name.xml")" "$scratch"
        fi
        read -r -a mine <<< "$(cmdline "$tool" "$name" "$ours")"
        theirs=()
        [ -z "$ref_dir" ] || read -r -a theirs <<< "$(cmdline "$tool" "$name" "$ref_dir")"
        : > "$BENCH_DIR/ours.runs"
        : > "$BENCH_DIR/ref.runs"
        measure "${mine[@]}" > /dev/null
        [ -z "$ref_dir" ] || measure "${theirs[@]}" > /dev/null
        for _ in $(seq "$RUNS"); do
            measure "${mine[@]}" >> "$BENCH_DIR/ours.runs"
            [ -z "$ref_dir" ] || measure "${theirs[@]}" >> "$BENCH_DIR/ref.runs"
        done
        a=$(median "$BENCH_DIR/ours.runs")
        b="-"
        r="-"
        if [ -n "$ref_dir" ]; then
            b=$(median "$BENCH_DIR/ref.runs")
            if [ "$a" != fail ] && [ "$b" != fail ]; then
                # Fields: 1 wall, 4 CPU, 7 RSS.
                read -r -a x <<< "$a"
                read -r -a y <<< "$b"
                r="$(ratio "${x[0]}" "${y[0]}") / $(ratio "${x[3]}" "${y[3]}") / $(ratio "${x[6]}" "${y[6]}")"
            fi
        fi
        label="thin_$tool"
        [ "$tool" != dump ] || label="thin_dump > /dev/null"
        [ "$tool" != ls ] || label="thin_ls -o DEV,EXCLUSIVE_BLOCKS"
        [ "$tool" != delta ] || label="thin_delta --thin1 0 --thin2 1"
        echo "| $label | $name | $a | $b | $r |" | tee -a "$table" >&2
        rm -f "$scratch"
    done
done
echo
cat "$table"
