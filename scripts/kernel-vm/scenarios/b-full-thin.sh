#!/bin/sh
# b: one 24 MiB thin (dev 1) written end to end with patterned data, 128 KiB blocks.
#@ meta_mib=4
#@ data_mib=32
#@ dump_mib=32
#@ timeout=180
. /job/lib.sh
note "b-full-thin: 128 KiB blocks, dev 1 fully written"
pool_start 256 0
thin_new 1 24
thin_up 1
put 1 1 0 6144
pool_msg set_transaction_id 0 1
finish
