#!/usr/bin/env bash
# Installs what building and testing thintools needs on a Debian machine:
# zstd (fixtures), qemu-system-x86 and cpio (kernel tests), Debian's
# thin-provisioning-tools 0.9.0 (a second reference), hyperfine (benchmarks).
# Idempotent; needs root (or sudo) for apt-get. A Rust toolchain (rustup,
# cargo) must already be installed.
set -euo pipefail
need=()
for p in zstd qemu-system-x86 cpio thin-provisioning-tools hyperfine; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }
