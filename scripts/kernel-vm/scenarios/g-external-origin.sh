#!/bin/sh
# g: thin 0 with an external origin (disk "origin", 8 MiB of text chunks,
# shipped as origin.img.zst) and a table size of 12 MiB, i.e. larger than
# the origin (reads past its end are zeros); some writes, then snapshot 1
# of 0 (same origin) with more writes. Content captured with the pool
# re-activated read-write (CAPTURE_RW: 6.1 read_only pools fail reads past
# a short external origin); the metadata device is checked unchanged.
#@ meta_mib=4
#@ data_mib=16
#@ dump_mib=32
#@ extra=origin:8
#@ prep_origin=awk 'BEGIN { for (i = 0; i < 2048; i++) printf "%-4095s\n", "external origin chunk " i }' > "$IMG"
#@ timeout=180
. /job/lib.sh
CAPTURE_RW=1
note "g-external-origin: 64 KiB blocks, thin 0 over external origin"
pool_start 128 0
thin_new 0 12 /dev/disk/origin
thin_up 0
put 0 1 16 32
put 0 1 1500 8
put 0 1 2100 100
snap_new 1 0
thin_up 1
put 1 2 20 4
put 1 2 2500 16
pool_msg set_transaction_id 0 1
finish
