#!/bin/bash
# Boots the harness kernel under qemu (TCG) with a guest script and disks.
#
# Usage: run.sh [options] SCRIPT
#   --disk NAME=IMAGE[,nodiscard]  attach IMAGE (raw) as a virtio disk with serial
#                         NAME; in the guest it is /dev/disk/NAME and $DISK_NAME,
#                         and $DISK0, $DISK1, ... in the order given. nodiscard:
#                         the disk does not support discard.
#   --out DIR             put console.log and the files the guest wrote to $OUT
#                         there (default: a new temporary directory, printed)
#   --out-mib N           size of the disk that carries $OUT back (default 64)
#   --bin PATH            run a host executable in the guest: /opt/bin/<name>,
#                         with its shared libraries (from ldd) and its own ld.so
#   --file SRC=DST        copy a host file into the guest at DST
#   --env NAME=VALUE      variable exported to the guest script
#   --timeout SECONDS     kill qemu after this long (default 300)
#   --mem MIB             guest memory (default 512)
#   --quiet               do not copy the console to stderr
# SCRIPT runs under busybox sh in the guest as /job/script.sh; the guest
# library (guest-lib.sh) is at /job/lib.sh. Exit status: the script's, or
# 124 when qemu was killed on the timeout, 125 when the guest ended without
# the end marker (panic, oops), 126 for a harness error.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
die() { echo "kernel-vm run: $*" >&2; exit 126; }

disks=() bins=() files=() envs=()
out= out_mib=64 timeout_s=300 mem=512 quiet=0
while [ $# -gt 0 ]; do
    case $1 in
    --disk) disks+=("$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    --out-mib) out_mib=$2; shift 2 ;;
    --bin) bins+=("$2"); shift 2 ;;
    --file) files+=("$2"); shift 2 ;;
    --env) envs+=("$2"); shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --quiet) quiet=1; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) break ;;
    esac
done
[ $# -eq 1 ] || die "expected one guest script (see --help)"
script=$1
[ -f "$script" ] || die "no such script: $script"
command -v qemu-system-x86_64 >/dev/null ||
    die "qemu-system-x86_64 not found: run scripts/kernel-vm/setup.sh (apt-get install qemu-system-x86)"

cache=${THINTOOLS_VM_CACHE:-$(cd "$HERE/../.." && pwd)/.vm-cache}
"$HERE/build.sh" "$cache" || die "building the VM assets failed"

if [ -z "$out" ]; then out=$(mktemp -d /tmp/kernel-vm-out.XXXXXX); echo "kernel-vm run: output in $out" >&2; fi
mkdir -p "$out"
work=$(mktemp -d /tmp/kernel-vm-run.XXXXXX)
trap 'rm -rf "$work"' EXIT

# ---- job archive: script, library, binaries, files -----------------------
job=$work/job
mkdir -p "$job/job" "$job/opt/bin" "$job/opt/thintools/bin" "$job/opt/thintools/lib"
cp "$script" "$job/job/script.sh"
cp "$HERE/guest-lib.sh" "$job/job/lib.sh"
for b in "${bins[@]+"${bins[@]}"}"; do
    [ -x "$b" ] || die "not an executable: $b"
    name=$(basename "$b")
    if ldd "$b" >/dev/null 2>&1; then
        cp -L "$b" "$job/opt/thintools/bin/$name"
        # debug info only slows the boot (the initramfs is unpacked in the guest)
        if command -v strip >/dev/null; then strip --strip-debug "$job/opt/thintools/bin/$name" 2>/dev/null || true; fi
        interp=
        while read -r line; do
            # "libx.so => /path (addr)", "/lib64/ld-linux-x86-64.so.2 (addr)"
            lib=$(echo "$line" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^\(\/[^ ]*\) (.*/\1/p')
            [ -n "$lib" ] || continue
            cp -L "$lib" "$job/opt/thintools/lib/"
            case $lib in */ld-linux*) interp=$(basename "$lib") ;; esac
        done < <(ldd "$b")
        [ -n "$interp" ] || die "no dynamic loader found for $b"
        printf '#!/bin/sh\nexec /opt/thintools/lib/%s --library-path /opt/thintools/lib --argv0 %s /opt/thintools/bin/%s "$@"\n' \
            "$interp" "$name" "$name" > "$job/opt/bin/$name"
        chmod 755 "$job/opt/bin/$name"
    else
        cp -L "$b" "$job/opt/bin/$name"   # static
    fi
done
for f in "${files[@]+"${files[@]}"}"; do
    src=${f%%=*} dst=${f#*=}
    [ -f "$src" ] || die "no such file: $src"
    mkdir -p "$job/$(dirname "$dst")"
    cp -L "$src" "$job/$dst"
done

# ---- disks ------------------------------------------------------------------
qargs=()
n=0
for d in "${disks[@]+"${disks[@]}"}"; do
    name=${d%%=*} rest=${d#*=}
    img=${rest%%,*} opt=
    [ "$img" != "$rest" ] && opt=${rest#*,}
    [ -f "$img" ] || die "no such disk image: $img"
    case $name in *[!A-Za-z0-9_]*) die "disk name must be [A-Za-z0-9_]: $name" ;; esac
    discard=unmap
    [ "$opt" = nodiscard ] && discard=ignore
    qargs+=(-drive "file=$img,format=raw,if=none,id=d$n,cache=unsafe,discard=$discard,detect-zeroes=$discard"
        -device "virtio-blk-pci,drive=d$n,serial=$name")
    n=$((n + 1))
done
outimg=$work/out.img
truncate -s "${out_mib}M" "$outimg"
qargs+=(-drive "file=$outimg,format=raw,if=none,id=d$n,cache=unsafe"
    -device "virtio-blk-pci,drive=d$n,serial=out")
n=$((n + 1))

{
    echo "NDISKS=$n"
    for e in "${envs[@]+"${envs[@]}"}"; do
        printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"
    done
} > "$job/job/env"
(cd "$job" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -1 > "$work/job.cpio.gz"
cat "$cache/initrd.gz" "$work/job.cpio.gz" > "$work/initrd.gz"

# ---- boot ---------------------------------------------------------------------
kernel=$cache/vmlinuz
[ -f "$cache/vmlinux" ] && [ "${THINTOOLS_VM_BZIMAGE:-0}" != 1 ] && kernel=$cache/vmlinux
log=$out/console.log
start=$(date +%s.%N)
set +e
if [ $quiet = 1 ]; then
    timeout -s KILL "$timeout_s" qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m "$mem" \
        -nodefaults -display none -no-reboot -serial stdio -monitor none \
        -kernel "$kernel" -initrd "$work/initrd.gz" \
        -append "console=ttyS0 quiet panic=-1 oops=panic no_timer_check rdinit=/init" \
        "${qargs[@]}" </dev/null >"$log" 2>&1
    qrc=$?
else
    timeout -s KILL "$timeout_s" qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m "$mem" \
        -nodefaults -display none -no-reboot -serial stdio -monitor none \
        -kernel "$kernel" -initrd "$work/initrd.gz" \
        -append "console=ttyS0 quiet panic=-1 oops=panic no_timer_check rdinit=/init" \
        "${qargs[@]}" </dev/null 2>&1 | tee "$log" >&2
    qrc=${PIPESTATUS[0]}
fi
set -e
end=$(date +%s.%N)
wall=$(awk -v s="$start" -v e="$end" 'BEGIN{printf "%.1f", e - s}')

tar -xf "$outimg" -C "$out" 2>/dev/null || true
marker=$(tr -d '\r' < "$log" | sed -n 's/^THINTOOLS-VM-END rc=\([0-9]*\) uptime=\([0-9.]*\).*/\1 \2/p' | tail -n1)
if [ -n "$marker" ]; then
    rc=${marker%% *}
    echo "kernel-vm run: guest exit status $rc, guest time ${marker#* } s, wall ${wall} s" >&2
    exit "$rc"
fi
if [ "$qrc" = 137 ]; then
    echo "kernel-vm run: TIMEOUT after ${timeout_s} s; console tail:" >&2
    tail -n 20 "$log" >&2
    exit 124
fi
echo "kernel-vm run: guest ended without the end marker (qemu status $qrc); console tail:" >&2
tail -n 30 "$log" >&2
exit 125
