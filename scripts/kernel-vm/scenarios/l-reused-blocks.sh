#!/bin/sh
# l: data blocks freed by a discard and reused by another thin, while the
# metadata still holds the copy-on-write predecessor of the discarding thin's
# leaf. Dev 1 (4 MiB) writes blocks 0..31 (data 0..31), then discards blocks
# 0..15 (passed down: data 0..15 freed, dev 1's leaf copied on write; the old
# leaf, still mapping 0..31, stays on disk). Thin 2 (8 MiB) writes blocks
# 32..127, taking data 32..127 up to the end of the 128-block data device,
# then blocks 16..23 and 8..11: the allocator wraps around and takes the
# freed data 0..11, at other virtual blocks (16..23 for data 0..7) and at the
# virtual blocks dev 1 had (8..11). 64 KiB blocks.
#@ meta_mib=4
#@ data_mib=8
#@ dump_mib=16
#@ timeout=180
. /job/lib.sh
note "l-reused-blocks: 64 KiB blocks, discard passdown, freed blocks reused"
pool_start 128 0
thin_new 1 4
thin_up 1
put_blocks 1 1 0 32
pool_status
trim 1 0 $((16 * 65536))
pool_msg set_transaction_id 0 1
pool_status
thin_new 2 8
thin_up 2
put_blocks 2 2 32 96
pool_status
put_blocks 2 3 16 8
put_blocks 2 4 8 4
pool_msg set_transaction_id 1 2
finish
