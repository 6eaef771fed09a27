#!/bin/sh
# h: thins deleted while others live on. Devs 0..5 written; snapshots 6 of 0
# and 7 of 6; then delete 0 (an origin whose snapshots live), 3, 7 (a leaf
# snapshot) and 5; then new thin 8 and more writes, which reuse freed blocks.
#@ meta_mib=4
#@ data_mib=48
#@ dump_mib=32
#@ timeout=240
. /job/lib.sh
note "h-deleted-thins: 64 KiB blocks"
pool_start 128 0
for i in 0 1 2 3 4 5; do
    thin_new $i 4
    thin_up $i
    put $i 1 0 $((256 + i * 64))
done
snap_new 6 0
thin_up 6
put 6 2 10 20
snap_new 7 6
thin_up 7
put 7 3 30 20
for i in 0 3 7 5; do thin_del $i; done
pool_status
thin_new 8 4
thin_up 8
put 8 4 0 512
put 6 4 500 100
pool_msg set_transaction_id 0 9
finish
