#!/bin/sh
# k: a pool grown while live. Data and metadata sit on dm-linear devices over
# the disks; both start at part of their disk. After writes the data linear
# is grown to the whole disk and the pool table reloaded (more data blocks),
# more writes follow; then the metadata linear is grown to the whole disk
# (past the first space map bitmap's 16320 blocks) and the pool reloaded.
# The final pool uses the whole of both disks, so meta.img/data.img are the
# pool's devices as the kernel last saw them.
#@ meta_mib=80
#@ data_mib=64
#@ dump_mib=48
#@ timeout=240
. /job/lib.sh
note "k-grown-pool: 64 KiB blocks, data 32 -> 64 MiB, metadata 32 -> 80 MiB"
show dmsetup create datal --table "0 65536 linear /dev/disk/data 0"
show dmsetup create metal --table "0 65536 linear /dev/disk/meta 0"
DATA=/dev/mapper/datal
META=/dev/mapper/metal
pool_start 128 16
thin_new 0 40
thin_up 0
put 0 1 0 7680
pool_status | tee "$OUT/status-before-grow.txt"
show dmsetup reload datal --table "0 $(blockdev --getsz /dev/disk/data) linear /dev/disk/data 0"
show dmsetup suspend datal
show dmsetup resume datal
pool_reload
pool_status | tee "$OUT/status-data-grown.txt"
put 0 2 7680 2560
thin_new 1 8
thin_up 1
put 1 2 0 1024
show dmsetup reload metal --table "0 $(blockdev --getsz /dev/disk/meta) linear /dev/disk/meta 0"
show dmsetup suspend metal
show dmsetup resume metal
pool_reload
pool_status | tee "$OUT/status-meta-grown.txt"
put 1 3 1024 512
pool_msg set_transaction_id 0 3
finish
show dmsetup remove datal
show dmsetup remove metal
