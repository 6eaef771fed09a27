#!/bin/bash
# Installs the host packages the kernel VM harness needs (qemu, cpio, zstd,
# busybox for nothing but the guest, dpkg tools). Idempotent: does nothing
# when everything is already present. Usable by CI (runs as root there).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have qemu-system-x86_64 || need+=(qemu-system-x86)
have cpio || need+=(cpio)
have zstd || need+=(zstd)
have gzip || need+=(gzip)
have dpkg-deb || need+=(dpkg)
have timeout || need+=(coreutils)
have tar || need+=(tar)
have xz || need+=(xz-utils)
have readelf || need+=(binutils)
have flock || need+=(util-linux)

if [ ${#need[@]} -eq 0 ]; then
    echo "kernel-vm setup: all host packages present"
    exit 0
fi

SUDO=
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
echo "kernel-vm setup: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
