#!/usr/bin/env bash
# Benchmarks `thin_send | thin_recv` through a pipe on offline images, full
# and incremental (1 % changed), against dd of the same bytes through a pipe
# and, when it is present, against LINBIT's thin_send_recv on the same
# volume. Prints the medians of wall time, CPU time (both sides) and peak
# RSS (each side) over $RUNS runs, and the throughput relative to dd.
#
#   scripts/bench/send-recv.sh [GIB]        default: 2 (GiB of mapped data)
#
# Input, in $BENCH_DIR (default /tmp/bench-sr), made once and reused:
#   pool.xml   examples/gen_pool_xml.rs: one origin (thin 0) mapping GIB GiB
#              in runs (mean 64 blocks of 64 KiB) with holes between them,
#              and one snapshot (thin 1) taken before 1 % of the origin's
#              blocks were rewritten (clusters of 16 blocks); the two trees
#              share their unchanged leaves, as after copy-on-write
#   meta.img   thin_restore of pool.xml
#   data.img   the data device: random (non-zero) bytes on every used data
#              block, a sparse tail
# The full stream sends thin 0; the incremental stream sends thin 0 against
# base thin 1. Destinations go to $DEST_DIR (default /dev/shm/bench-sr), so
# that the figures are those of the send/receive path rather than of the
# disk behind the file system (this machine's disk writes ~200 MB/s);
# inputs are read from the warm page cache.
#
# The reference (REFERENCE, default ../shared/reference/thin_send_recv-1.1.3)
# needs LVM: it is run with stub lvs/dmsetup/thin_dump/thin_delta scripts
# (ours behind them), reading the volume from a file holding the thin's
# content (its "LV"), as tests/send_recv.rs does. It does not sync its
# target; `sync FILE` is timed with it.
set -euo pipefail
cd "$(dirname "$0")/../.."
GIB=${1:-2}
RUNS=${RUNS:-5}
BENCH_DIR=${BENCH_DIR:-/tmp/bench-sr}
DEST_DIR=${DEST_DIR:-/dev/shm/bench-sr}
REFERENCE=${REFERENCE:-$PWD/../shared/reference/thin_send_recv-1.1.3}
cargo build --release -q --example gen_pool_xml \
    --bin thin_send --bin thin_recv --bin thin_restore --bin thin_dump --bin thin_delta
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
mkdir -p "$BENCH_DIR" "$DEST_DIR"
trap 'rm -rf "$DEST_DIR"' EXIT
cd "$BENCH_DIR"

mappings=$((GIB * 16384))
shape="--thins 1 --mappings $mappings --snaps 1 --overwrite 0.01 --run 64 --cluster 16 --share 1024 --seed 3"
if [ ! -e meta.img ] || [ "$(cat shape 2>/dev/null)" != "$shape" ]; then
    rm -f meta.img data.img
    # shellcheck disable=SC2086
    "$bin/examples/gen_pool_xml" $shape > pool.xml
    nr=$(sed -n 's/.*nr_data_blocks="\([0-9]*\)".*/\1/p' pool.xml | head -1)
    used=$(((nr - 1) * 10 / 11 + 1))
    truncate -s 64M meta.img
    "$bin/thin_restore" -q -i pool.xml -o meta.img
    head -c $((used * 65536)) /dev/urandom > data.img
    truncate -s $((nr * 65536)) data.img
    echo "$shape" > shape
fi
cat data.img > /dev/null

send="$bin/thin_send -q --metadata-dev meta.img --data-dev data.img --thin-id 0"
# The volume ends with thin 0's last mapped block; the bytes sent are its
# mapped blocks (full) or those mapped differently from thin 1 (incremental).
"$bin/thin_delta" --snap1 1 --snap2 0 meta.img > delta.xml
full_bytes=$((mappings * 65536))
delta_bytes=$(($(sed -n 's/.*<\(different\|right_only\) begin="[0-9]*" length="\([0-9]*\)".*/\2/p' delta.xml |
    paste -sd+ | bc) * 65536))

tmp=$(mktemp -d)
trap 'rm -rf "$DEST_DIR" "$tmp"' EXIT
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# bench LABEL BYTES PREP SENDER RECEIVER: runs PREP, then SENDER | RECEIVER,
# each side under /usr/bin/time; prints one table row.
dd_wall=
bench() {
    local label=$1 bytes=$2 prep=$3 s=$4 r=$5 i t0 t1
    : > "$tmp/rows"
    for i in $(seq "$RUNS"); do
        eval "$prep"
        t0=$(date +%s.%N)
        eval "/usr/bin/time -f '%U %S %M' -o $tmp/s $s | /usr/bin/time -f '%U %S %M' -o $tmp/r $r"
        t1=$(date +%s.%N)
        read -r su ss sm < <(tail -1 "$tmp/s")
        read -r ru rs rm < <(tail -1 "$tmp/r")
        echo "$(echo "$t1 - $t0" | bc -l) $(echo "$su + $ss + $ru + $rs" | bc -l) $sm $rm" >> "$tmp/rows"
    done
    local wall cpu srss rrss
    wall=$(cut -d' ' -f1 "$tmp/rows" | median)
    cpu=$(cut -d' ' -f2 "$tmp/rows" | median)
    srss=$(cut -d' ' -f3 "$tmp/rows" | median)
    rrss=$(cut -d' ' -f4 "$tmp/rows" | median)
    [ -n "$dd_wall" ] || dd_wall=$wall
    printf '| %-38s | %8.1f | %6.3f | %7.0f | %6.2f | %5.0f / %5.0f | %5.0f %% |\n' "$label" \
        "$(echo "$bytes / 1048576" | bc -l)" "$wall" "$(echo "$bytes / 1048576 / $wall" | bc -l)" \
        "$cpu" "$(echo "$srss / 1024" | bc -l)" "$(echo "$rrss / 1024" | bc -l)" \
        "$(echo "100 * $dd_wall / $wall" | bc -l)"
}
header() {
    echo
    echo "$1"
    echo
    echo '| command                                | MiB sent | wall s |   MiB/s |  CPU s | RSS MB send / recv | vs dd |'
    echo '|----------------------------------------|---------:|-------:|--------:|-------:|-------------------:|------:|'
}

out=$DEST_DIR/out.img
ddpipe() { # BYTES: dd of the first BYTES of data.img through a pipe into $out
    echo "dd if=data.img bs=1M count=$(($1 / 1048576)) status=none" \
        "| dd of=$out bs=1M iflag=fullblock conv=fdatasync status=none"
}
header "full send of thin 0 ($GIB GiB mapped)"
bench "dd (same bytes, pipe)" "$full_bytes" "rm -f $out" "$(ddpipe "$full_bytes" | cut -d'|' -f1)" \
    "$(ddpipe "$full_bytes" | cut -d'|' -f2)"
bench "thin_send | thin_recv (format 1.1)" "$full_bytes" "rm -f $out $out.thin-state" \
    "$send" "$bin/thin_recv -q $out"
bench "thin_send --format 2 | thin_recv" "$full_bytes" "rm -f $out $out.thin-state" \
    "$send --format 2" "$bin/thin_recv -q $out"

want=$(sha256sum < "$out")

# The incremental stream applies to a copy of thin 1's content.
rm -f "$out" "$out.thin-state"
$bin/thin_send -q --metadata-dev meta.img --data-dev data.img --thin-id 1 --format 2 |
    "$bin/thin_recv" -q "$DEST_DIR/base.img"
dd_wall=
header "incremental send of thin 0 against thin 1 (1 % changed)"
bench "dd (same bytes, pipe)" "$delta_bytes" "rm -f $out" "$(ddpipe "$delta_bytes" | cut -d'|' -f1)" \
    "$(ddpipe "$delta_bytes" | cut -d'|' -f2)"
prep="cp --sparse=always $DEST_DIR/base.img $out; cp $DEST_DIR/base.img.thin-state $out.thin-state"
bench "thin_send --base-id 1 | thin_recv (1.1)" "$delta_bytes" "$prep" \
    "$send --base-id 1" "$bin/thin_recv -q $out"
bench "thin_send --base-id 1 --format 2 | recv" "$delta_bytes" "$prep" \
    "$send --base-id 1 --format 2" "$bin/thin_recv -q $out"
[ "$(sha256sum < "$out")" = "$want" ] && echo && echo "incremental result = full send of thin 0: ok"
rm -f "$DEST_DIR/base.img"*

if [ -x "$REFERENCE" ]; then
    # Stubs: lvs names a VG under /dev whose LV is $DEST_DIR/lv (the
    # receiver's target) and whose dm path is $DEST_DIR/snapN (the content
    # of thin N, the sender's input); thin_dump and thin_delta are ours.
    stub=$tmp/stubs
    mkdir -p "$stub"
    vg="..$DEST_DIR"
    cat > "$stub/lvs" <<EOF
#!/bin/sh
for last; do :; done
case "\$*" in
*vg_name*) case "\$last" in
    */lv) echo "  $vg lv pool $DEST_DIR/lv 9 Vwi-a-tz--";;
    *) n=\${last#*/snap}; echo "  $vg snap\$n pool $DEST_DIR/snap\$n \$n Vri-a-tz-k";;
    esac;;
*) echo "  $DEST_DIR/pool";;
esac
EOF
    printf '#!/bin/sh\nexit 0\n' > "$stub/dmsetup"
    printf '#!/bin/sh\nexit 0\n' > "$stub/lvchange"
    # Called as `thin_dump -m --dev-id ID META` and
    # `thin_delta -m --snap1 ID1 --snap2 ID2 META`.
    printf '#!/bin/sh\nexec %s --dev-id "$3" %s\n' "$bin/thin_dump" "$BENCH_DIR/meta.img" > "$stub/thin_dump"
    printf '#!/bin/sh\nexec %s --snap1 "$3" --snap2 "$5" %s\n' "$bin/thin_delta" "$BENCH_DIR/meta.img" \
        > "$stub/thin_delta"
    chmod +x "$stub"/*
    mv "$out" "$DEST_DIR/snap0"
    rm -f "$DEST_DIR"/*.thin-state
    ref="env PATH=$stub:$PATH $REFERENCE"
    lv=$DEST_DIR/lv
    header "reference thin_send_recv 1.1.3 (stubbed LVM), same volumes"
    dd_wall=
    bench "dd (same bytes, pipe)" "$full_bytes" "rm -f $out" "$(ddpipe "$full_bytes" | cut -d'|' -f1)" \
        "$(ddpipe "$full_bytes" | cut -d'|' -f2)"
    bench "reference full (+ sync of the target)" "$full_bytes" "rm -f $lv; touch $lv" \
        "$ref -s vg/snap0" "$ref -r vg/lv; sync $lv"
    dd_wall=
    bench "dd (same bytes, pipe)" "$delta_bytes" "rm -f $out" "$(ddpipe "$delta_bytes" | cut -d'|' -f1)" \
        "$(ddpipe "$delta_bytes" | cut -d'|' -f2)"
    bench "reference incremental (+ sync)" "$delta_bytes" \
        "rm -f $lv*; $bin/thin_send -q --metadata-dev meta.img --data-dev data.img --thin-id 1 | $bin/thin_recv -q $lv" \
        "$ref -s vg/snap1 vg/snap0" "$ref -r vg/lv; sync $lv"
    [ "$(sha256sum < "$lv")" = "$want" ] && echo && echo "reference incremental result = thin 0: ok"
else
    echo
    echo "reference thin_send_recv not found at $REFERENCE: skipped"
fi
