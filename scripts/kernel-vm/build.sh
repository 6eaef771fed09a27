#!/bin/bash
# Builds the kernel VM assets from Debian packages into a cache directory:
#   $CACHE/vmlinuz       the kernel (Debian linux-image-*-amd64)
#   $CACHE/vmlinux       the same kernel uncompressed, when it has a PVH entry
#                        note: qemu boots it directly, which saves the ~15 s
#                        that decompressing the bzImage takes under TCG
#   $CACHE/initrd.gz     base initramfs: busybox, dmsetup + libraries,
#                        dm-thin modules, /init (see init.sh)
#   $CACHE/kernel-version, $CACHE/packages.txt   provenance
#   $CACHE/stamp         key of the inputs; a rebuild happens when it changes
# Usage: build.sh [CACHE_DIR]   (default: $THINTOOLS_VM_CACHE or <repo>/.vm-cache)
# Needs: apt-get (download only, no install), dpkg-deb, cpio, gzip.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${1:-${THINTOOLS_VM_CACHE:-$REPO/.vm-cache}}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

# Modules to load, in dependency order after resolution (kernel-vm.md).
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
virtio_blk crc32c_generic libcrc32c dm-mod dm-bufio dm-persistent-data dm-bio-prison
dm-thin-pool dm-snapshot dm-flakey dm-delay dm-zero loop"
PACKAGES="busybox-static dmsetup libdevmapper1.02.1 libselinux1 libpcre2-8-0 libudev1 libc6"
# lvm2 (the lvm multi-call binary) and the libraries it links, so that guest
# scripts can use LVM-managed thin pools the way people do (guest-lib.sh:
# lvm_setup). Its configuration is written by lvm_setup, not taken from the
# package.
PACKAGES="$PACKAGES lvm2 libdevmapper-event1.02.1 libaio1 libblkid1 libedit2 libbsd0 libmd0
libtinfo6 libsystemd0 libcap2 libgcrypt20 libgpg-error0 liblz4-1 liblzma5 libzstd1"

key=$(cat "$HERE/build.sh" "$HERE/init.sh" | sha256sum | cut -d' ' -f1)
if [ -f "$CACHE/stamp" ] && [ "$(cat "$CACHE/stamp")" = "$key" ] &&
    [ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/initrd.gz" ]; then
    exit 0
fi

# Serialise concurrent builders (parallel tests).
exec 9>"$CACHE/.lock"
flock 9
if [ -f "$CACHE/stamp" ] && [ "$(cat "$CACHE/stamp")" = "$key" ] &&
    [ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/initrd.gz" ]; then
    exit 0
fi

echo "kernel-vm: building VM assets in $CACHE" >&2
work=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
debs=$CACHE/debs
mkdir -p "$debs"

download() {   # download PKG... into $debs (reusing files already there)
    (cd "$debs" && apt-get download "$@" 2>"$work/apt.err") && return 0
    echo "kernel-vm: apt-get download failed, running apt-get update once" >&2
    cat "$work/apt.err" >&2
    apt-get update -qq >&2
    (cd "$debs" && apt-get download "$@")
}

# The meta package names the versioned image package in its Depends.
rm -f "$debs"/linux-image-amd64_*.deb
download linux-image-amd64
meta_deb=$(ls "$debs"/linux-image-amd64_*.deb | head -n1)
image_pkg=$(dpkg-deb -f "$meta_deb" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n1)
[ -n "$image_pkg" ] || { echo "kernel-vm: no versioned image in $meta_deb" >&2; exit 1; }
kver=${image_pkg#linux-image-}

for p in $image_pkg $PACKAGES; do
    if ! ls "$debs/${p}_"*.deb >/dev/null 2>&1; then download "$p"; fi
done

root=$work/root
mkdir -p "$root"
: > "$work/packages.txt"
for p in $image_pkg $PACKAGES; do
    deb=$(ls "$debs/${p}_"*.deb | sort -V | tail -n1)
    dpkg-deb -x "$deb" "$root"
    echo "$(basename "$deb")" >> "$work/packages.txt"
done

# ---- initramfs tree -------------------------------------------------------
ird=$work/initrd
mkdir -p "$ird"/{bin,sbin,dev,proc,sys,tmp,run,out,etc,lib/modules,lib64,usr/lib,opt/bin}
cp "$root/bin/busybox" "$ird/bin/busybox"
cp "$root/sbin/dmsetup" "$ird/sbin/dmsetup"
cp "$root/sbin/lvm" "$ird/sbin/lvm"
for c in lvs vgs pvs lvcreate lvremove lvchange lvconvert lvextend lvrename lvresize \
    lvdisplay vgcreate vgremove vgchange vgdisplay vgextend pvcreate pvremove pvdisplay; do
    ln -sf lvm "$ird/sbin/$c"
done
mkdir -p "$ird/etc/lvm" "$ird/run/lock/lvm"
# Shared libraries of dmsetup: everything the downloaded library packages ship.
for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu; do
    [ -d "$root/$d" ] || continue
    mkdir -p "$ird/lib/x86_64-linux-gnu"
    find "$root/$d" -maxdepth 1 \( -name '*.so' -o -name '*.so.*' \) \( -type f -o -type l \) \
        -exec cp -a {} "$ird/lib/x86_64-linux-gnu/" \;
done
ln -sf /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$ird/lib64/ld-linux-x86-64.so.2"
[ -e "$ird/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" ] || { echo "kernel-vm: no ld.so in libc6" >&2; exit 1; }

# Modules: resolve depends= from each .ko's .modinfo, load dependencies first.
moddir=$root/lib/modules/$kver
modfile() {   # name -> path of its .ko (dashes and underscores are equivalent)
    local a=${1//-/_} b=${1//_/-} f
    f=$(find "$moddir" \( -name "$a.ko*" -o -name "$b.ko*" \) | head -n1)
    [ -n "$f" ] || { echo "kernel-vm: module $1 not found in $kver" >&2; return 1; }
    echo "$f"
}
unpack_ko() {   # path -> uncompressed .ko on stdout
    case $1 in
    *.ko) cat "$1" ;;
    *.ko.xz) xz -dc "$1" ;;
    *.ko.zst) zstd -dc "$1" ;;
    *.ko.gz) gzip -dc "$1" ;;
    esac
}
order=()
declare -A seen=()
visit() {
    local n=${1//-/_} f deps d
    [ -n "${seen[$n]:-}" ] && return 0
    seen[$n]=1
    f=$(modfile "$n")
    unpack_ko "$f" > "$work/$n.ko"
    deps=$(tr '\0' '\n' < "$work/$n.ko" | sed -n 's/^depends=//p' | head -n1)
    for d in ${deps//,/ }; do visit "$d"; done
    order+=("$n")
}
for m in $MODULES; do visit "$m"; done
for n in "${order[@]}"; do cp "$work/$n.ko" "$ird/lib/modules/$n.ko"; done
printf '%s\n' "${order[@]}" > "$ird/etc/modules-order"

cp "$HERE/init.sh" "$ird/init"
chmod 755 "$ird/init"
echo "$kver" > "$ird/etc/kernel-version"

(cd "$ird" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -6 > "$work/initrd.gz"
cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
# Uncompressed ELF kernel from the bzImage payload (xz, zstd or gzip).
extract_vmlinux() {
    local img=$1 magic tool off
    for magic in 'fd377a585a00:xz' '28b52ffd:zstd' '1f8b0800:gzip'; do
        tool=${magic#*:}
        command -v "$tool" >/dev/null || continue
        for off in $(od -A d -v -t x1 "$img" | awk '{ $1 = ""; printf "%s", $0 }' | tr -d ' ' |
            grep -ob "${magic%%:*}" | cut -d: -f1 | head -n 3); do
            [ $((off % 2)) = 0 ] || continue
            tail -c +$((off / 2 + 1)) "$img" | "$tool" -dc 2>/dev/null > "$work/vmlinux" || true
            if [ "$(head -c 4 "$work/vmlinux" | od -A n -t x1 | tr -d ' ')" = 7f454c46 ]; then
                return 0
            fi
        done
    done
    rm -f "$work/vmlinux"
    return 1
}
rm -f "$CACHE/vmlinux"
if extract_vmlinux "$work/vmlinuz"; then
    # PVH entry: an ELF note of type 18 (XEN_ELFNOTE_PHYS32_ENTRY) named "Xen"
    # (qemu refuses an uncompressed kernel without it; needs readelf, binutils)
    if command -v readelf >/dev/null && readelf -n "$work/vmlinux" | grep -q '(0x00000012)'; then
        mv -f "$work/vmlinux" "$CACHE/vmlinux"
    fi
fi

mv -f "$work/vmlinuz" "$CACHE/vmlinuz"
mv -f "$work/initrd.gz" "$CACHE/initrd.gz"
mv -f "$work/packages.txt" "$CACHE/packages.txt"
echo "$kver" > "$CACHE/kernel-version"
echo "$key" > "$CACHE/stamp"
echo "kernel-vm: kernel $kver, initrd $(du -h "$CACHE/initrd.gz" | cut -f1), modules: ${order[*]}" >&2
