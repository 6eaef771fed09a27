#!/bin/bash
# Regenerates kernel-written fixtures: runs each scenario of
# scripts/kernel-vm/scenarios/ in the VM against fresh sparse disks, hashes
# every thin's content on the host and writes fixtures/<name>/.
# Usage: make-fixtures.sh [NAME...]   (default: every scenario)
#
# Scenario headers ("#@ key=value" lines, read here on the host):
#   meta_mib, data_mib   sizes of the fresh metadata and data disks
#   dump_mib             size of the disk receiving the thins' content (0: none)
#   extra                space separated NAME:MIB disks (filled by prep_NAME if
#                        the scenario defines a "#@ prep_NAME=<shell>" line)
#   data_opt             "nodiscard" for a data disk without discard support
#   timeout              seconds (default 300)
#   trim_images          images (meta, data) shipped without their all-zero
#                        tail: <image>.img.zst holds the part up to the end of
#                        the last allocated extent, <image>.img.size the full
#                        length (tests/util.rs unpack_fixture extends it)
# Tests never run this; the fixtures are committed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
FIX=$REPO/fixtures

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for s in "$HERE"/scenarios/*.sh; do names+=("$(basename "$s" .sh)"); done
fi

for name in "${names[@]}"; do
    scen=$HERE/scenarios/$name.sh
    [ -f "$scen" ] || { echo "no scenario $scen" >&2; exit 1; }
    meta_mib=4 data_mib=64 dump_mib=0 extra= data_opt= timeout=300 trim_images=
    eval "$(sed -n 's/^#@ \([a-z_]*\)=\(.*\)$/\1=\2/p' "$scen" | grep -v '^prep_')"
    work=$(mktemp -d /tmp/kernel-vm-fixture.XXXXXX)
    echo "=== $name (work dir $work)" >&2
    truncate -s "${meta_mib}M" "$work/meta.img"
    truncate -s "${data_mib}M" "$work/data.img"
    disks=(--disk "meta=$work/meta.img" --disk "data=$work/data.img${data_opt:+,$data_opt}")
    for e in $extra; do
        en=${e%%:*} emib=${e#*:}
        truncate -s "${emib}M" "$work/$en.img"
        prep=$(sed -n "s/^#@ prep_$en=//p" "$scen")
        if [ -n "$prep" ]; then (cd "$work" && IMG="$work/$en.img" bash -c "$prep"); fi
        disks+=(--disk "$en=$work/$en.img")
    done
    if [ "$dump_mib" -gt 0 ]; then
        truncate -s "${dump_mib}M" "$work/dump.img"
        disks+=(--disk "dump=$work/dump.img")
    fi
    rc=0
    "$HERE/run.sh" --quiet --timeout "$timeout" --out "$work/out" "${disks[@]}" "$scen" || rc=$?
    if [ $rc != 0 ]; then
        echo "scenario $name failed (status $rc); console: $work/out/console.log" >&2
        tail -n 40 "$work/out/console.log" >&2
        exit 1
    fi
    guest_time=$(sed -n 's/^THINTOOLS-VM-END rc=[0-9]* uptime=\([0-9.]*\).*/\1/p' "$work/out/console.log" | tr -d '\r')

    dst=$FIX/$name
    rm -rf "$dst"
    mkdir -p "$dst"
    for im in meta data; do
        if [[ " $trim_images " == *" $im "* ]]; then
            full=$(stat -c %s "$work/$im.img")
            end=$(python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
end, pos = 0, 0
while pos < size:
    try:
        d = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        break
    pos = os.lseek(fd, d, os.SEEK_HOLE)
    end = pos
print((end + 4095) // 4096 * 4096)' "$work/$im.img")
            head -c "$end" "$work/$im.img" | zstd -q -19 --long=27 -o "$dst/$im.img.zst"
            echo "$full" > "$dst/$im.img.size"
        else
            zstd -q -19 --long=27 "$work/$im.img" -o "$dst/$im.img.zst"
        fi
    done
    for e in $extra; do
        en=${e%%:*}
        zstd -q -19 --long=27 "$work/$en.img" -o "$dst/$en.img.zst"
    done
    cp "$scen" "$dst/scenario.sh"
    cp "$work/out/thins.reg" "$dst/thins.reg"
    cp "$work/out/status-"*.txt "$dst/" 2>/dev/null || true
    {
        cat "$work/out/info"
        echo "guest_seconds=$guest_time"
    } > "$dst/info"
    {
        echo "# dev_id size_bytes sha256 [external origin] (each thin read back through dm-thin after a clean shutdown and re-activation)"
        if [ -f "$work/out/dump.idx" ]; then
            while read -r id off size origin; do
                sum=$(dd if="$work/dump.img" bs=1M skip=$((off / 1048576)) count=$(((size + 1048575) / 1048576)) status=none |
                    head -c "$size" | sha256sum | cut -d' ' -f1)
                if [ "$origin" = - ]; then echo "$id $size $sum"; else echo "$id $size $sum $origin"; fi
            done < "$work/out/dump.idx"
        fi
    } > "$dst/content.sha256"
    echo "=== $name: guest ${guest_time}s, $(du -cb "$dst"/*.zst | tail -n1 | cut -f1) bytes compressed" >&2
    rm -rf "$work"
done
