#!/bin/sh
# f: a metadata snapshot reserved and still held at shutdown. After the
# reservation: overwrites of dev 0, writes to the snapshot 1, a new thin 2
# and a transaction id change. 256 KiB blocks.
#@ meta_mib=4
#@ data_mib=48
#@ dump_mib=48
#@ timeout=180
. /job/lib.sh
note "f-held-metasnap: 256 KiB blocks, metadata snapshot held at shutdown"
pool_start 512 0
thin_new 0 16
thin_up 0
put 0 1 0 3072
snap_new 1 0
pool_msg set_transaction_id 0 1
pool_msg reserve_metadata_snap
pool_status | tee "$OUT/status-reserved.txt"
put 0 2 0 512
thin_up 1
put 1 2 2048 256
thin_new 2 8
thin_up 2
put 2 2 0 1024
pool_msg set_transaction_id 1 2
pool_status | tee "$OUT/status-held.txt"
finish
