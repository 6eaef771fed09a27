#!/bin/sh
# j: a 17 GiB (sparse) metadata device, more than the 4,161,600 blocks the
# format can address: the kernel warns and uses only the first 15.87 GiB.
# One thin with a few writes. The image is shipped without its all-zero
# tail (meta.img.size gives the full length; util.rs restores it).
#@ meta_mib=17408
#@ data_mib=16
#@ dump_mib=8
#@ trim_images=meta
#@ timeout=300
. /job/lib.sh
note "j-huge-metadata: 17 GiB metadata device, 64 KiB blocks"
pool_start 128 0
dmesg | grep -i 'larger than' | sed 's/^\[[^]]*\] //' | tee "$OUT/status-kernel-warning.txt"
thin_new 0 8
thin_up 0
put 0 1 0 512
put 0 1 1024 100
pool_msg set_transaction_id 0 1
finish
