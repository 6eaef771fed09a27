#!/bin/sh
# e2: discards on a pool with no_discard_passdown.
# Dev 0 (8 MiB) is written in full and snapshotted (1); dev 0 then rewrites
# blocks 16..31 and 60..69 (now its own, no longer shared). Discards on dev 0:
# whole blocks 16..31 (freed), 32 KiB inside block 40 (no block unmapped),
# blocks 59.5..70.5 (60..69 freed, 59 and 70 partly discarded and kept),
# blocks 100..103 (unmapped from 0, still held by the snapshot); on dev 1:
# blocks 0..7. Then new writes that take freed blocks again. 64 KiB blocks.
#@ meta_mib=4
#@ data_mib=32
#@ dump_mib=16
#@ timeout=180
. /job/lib.sh
note "e2-discard-no-passdown: 64 KiB blocks, features: no_discard_passdown"
pool_start 128 0 no_discard_passdown
thin_new 0 8
thin_up 0
put 0 1 0 2048
snap_new 1 0
thin_up 1
put 1 2 0 64
put_blocks 0 2 16 16
put_blocks 0 2 60 10
pool_status | tee "$OUT/status-before-discard.txt"
trim 0 1048576 1048576
trim 0 $((40 * 65536 + 16384)) 32768
trim 0 $((59 * 65536 + 32768)) $((11 * 65536))
trim 0 $((100 * 65536)) 262144
trim 1 0 524288
pool_status | tee "$OUT/status-after-discard.txt"
put 0 3 300 32
put 0 3 1000 16
pool_msg set_transaction_id 0 3
finish
