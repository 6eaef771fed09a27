#!/bin/busybox sh
# /init of the kernel VM harness initramfs (copied there by build.sh).
# Mounts the pseudo file systems, loads the dm-thin modules, names the disks
# by their virtio serial, runs /job/script.sh (added by run.sh as a second
# cpio archive), packs /out onto the disk named "out" as a tar, prints the
# end marker with the script's exit status and powers off.
/bin/busybox mkdir -p /bin /proc /sys /dev /tmp
/bin/busybox --install -s /bin
export PATH=/opt/bin:/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/console 2>&1
mkdir -p /dev/mapper /dev/disk /tmp /out
export DM_DISABLE_UDEV=1 HOME=/tmp TMPDIR=/tmp

while read -r m; do
    insmod "/lib/modules/$m.ko" 2>/tmp/insmod.err ||
        grep -q 'File exists' /tmp/insmod.err ||
        echo "init: insmod $m failed: $(cat /tmp/insmod.err)"
done < /etc/modules-order

[ -f /job/env ] && . /job/env
want=${NDISKS:-0}
i=0
while [ "$(ls -d /sys/block/vd* 2>/dev/null | wc -l)" -lt "$want" ] && [ $i -lt 100 ]; do
    sleep 0.1; i=$((i + 1))
done
n=0
for b in $(ls -d /sys/block/vd* 2>/dev/null | sort); do
    dev=/dev/${b##*/}
    s=$(cat "$b/serial" 2>/dev/null || true)
    if [ -n "$s" ]; then
        ln -sf "$dev" "/dev/disk/$s"
        export "DISK_$s=$dev"
    fi
    export "DISK$n=$dev"
    n=$((n + 1))
done
export NDISKS=$n OUT=/out

echo "THINTOOLS-VM-START kernel=$(uname -r) disks=$n uptime=$(cut -d" " -f1 /proc/uptime)"
rc=0
if [ -f /job/script.sh ]; then
    (cd /tmp && sh /job/script.sh) || rc=$?
else
    echo "init: no /job/script.sh"; rc=127
fi
dmesg > /out/dmesg.txt 2>/dev/null || true
if [ -e /dev/disk/out ]; then
    tar -cf /dev/disk/out -C /out . || echo "init: writing /out to the out disk failed"
fi
sync
echo "THINTOOLS-VM-END rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
