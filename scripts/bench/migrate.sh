#!/usr/bin/env bash
# Benchmarks thin_migrate's offline copy against dd of the same bytes, warm
# page cache, with hyperfine (medians) and /usr/bin/time -v (peak RSS).
#
#   scripts/bench/migrate.sh [GIB]       default: 4
#
# Input (in $BENCH_DIR, default /tmp/bench-migrate): a pool of 64 KiB blocks
# whose thin 0 maps all GIB GiB of data.img (random bytes) in runs of 1 to 64
# blocks placed in shuffled order, so reads are scattered; thin 1 is a
# snapshot of it with 1 % of its blocks remapped to blocks past thin 0's
# (the incremental case). dd copies data.img with the same block size as one
# of thin_migrate's two buffers; both flush the destination at the end.
# Destinations go to $DEST_DIR (default /dev/shm), so that the figures are
# those of the copy path rather than of the disk behind the file system.
set -euo pipefail
cd "$(dirname "$0")/../.."
GIB=${1:-4}
BENCH_DIR=${BENCH_DIR:-/tmp/bench-migrate}
RUNS=${RUNS:-5}
DEST_DIR=${DEST_DIR:-/dev/shm}
mkdir -p "$BENCH_DIR"
cargo build --release --bins -q
ours=$PWD/target/release
cd "$BENCH_DIR"
blocks=$((GIB * 16384))
extra=$((blocks / 100))
if [ ! -e data.img ] || [ "$(stat -c %s data.img)" -ne $(((blocks + extra) * 65536)) ]; then
    head -c $(((blocks + extra) * 65536)) /dev/urandom > data.img
fi
python3 - "$blocks" "$extra" > pool.xml <<'PY'
import random, sys
blocks, extra = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(7)
runs, pos = [], 0
while pos < blocks:
    n = min(rng.randint(1, 64), blocks - pos)
    runs.append((pos, n))
    pos += n
order = runs[:]
rng.shuffle(order)
data, m = 0, {}
for (b, n) in order:
    m[b] = (data, n)
    data += n
print(f'<superblock uuid="" time="1" transaction="1" version="2" data_block_size="128" nr_data_blocks="{blocks + extra}">')
print(f'  <device dev_id="0" mapped_blocks="{blocks}" transaction="0" creation_time="0" snap_time="1">')
for b in sorted(m):
    d, n = m[b]
    print(f'    <range_mapping origin_begin="{b}" data_begin="{d}" length="{n}" time="0"/>')
print('  </device>')
changed = set(rng.sample(range(blocks), extra))
print(f'  <device dev_id="1" mapped_blocks="{blocks}" transaction="0" creation_time="0" snap_time="1">')
nxt = blocks
for b in sorted(m):
    d, n = m[b]
    for k in range(n):
        if b + k in changed:
            print(f'    <single_mapping origin_block="{b + k}" data_block="{nxt}" time="1"/>')
            nxt += 1
        else:
            print(f'    <single_mapping origin_block="{b + k}" data_block="{d + k}" time="0"/>')
print('  </device>')
print('</superblock>')
PY
truncate -s 256M meta.img
"$ours/thin_restore" -q -i pool.xml -o meta.img
size=$((blocks * 65536))
cat data.img > /dev/null
hyperfine -w 1 -r "$RUNS" --export-markdown full.md \
    -p "rm -f $DEST_DIR/out.img" \
    -n "thin_migrate full" "$ours/thin_migrate -q --metadata-dev meta.img --data-dev data.img --thin-id 0 --size $size --dest-file $DEST_DIR/out.img" \
    -n "dd same bytes" "dd if=data.img of=$DEST_DIR/out.img bs=32M count=$((size / 33554432)) conv=fdatasync status=none"
"$ours/thin_migrate" -q --metadata-dev meta.img --data-dev data.img --thin-id 0 --size $size --dest-file $DEST_DIR/base.img
hyperfine -w 1 -r "$RUNS" --export-markdown delta.md \
    -p "cp --reflink=auto $DEST_DIR/base.img $DEST_DIR/out.img" \
    -n "thin_migrate --delta-id (1 % changed)" "$ours/thin_migrate -q --metadata-dev meta.img --data-dev data.img --thin-id 1 --delta-id 0 --size $size --dest-file $DEST_DIR/out.img"
rm -f $DEST_DIR/out.img
rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk '/Maximum resident/ {printf "%.0f MB", $6 / 1024}'; }
echo "peak RSS full copy: $(rss "$ours/thin_migrate" -q --metadata-dev meta.img --data-dev data.img --thin-id 0 --size $size --dest-file $DEST_DIR/out.img)"
rm -f $DEST_DIR/out.img
echo "peak RSS 1 GiB slice: $(rss "$ours/thin_migrate" -q --metadata-dev meta.img --data-dev data.img --thin-id 0 --size 1g --dest-file $DEST_DIR/out.img)"
# The incremental result equals a full copy of thin 1; its report gives the bytes read.
cp $DEST_DIR/base.img $DEST_DIR/out.img
"$ours/thin_migrate" --metadata-dev meta.img --data-dev data.img --thin-id 1 --delta-id 0 --size $size --dest-file $DEST_DIR/out.img
"$ours/thin_migrate" -q --metadata-dev meta.img --data-dev data.img --thin-id 1 --size $size --dest-file $DEST_DIR/full1.img
cmp $DEST_DIR/out.img $DEST_DIR/full1.img && echo "incremental result equals the full copy of thin 1"
rm -f $DEST_DIR/out.img $DEST_DIR/base.img $DEST_DIR/full1.img
cat full.md delta.md
