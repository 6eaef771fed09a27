#!/bin/sh
# a: a pool with no thins whose transaction id was set (set_transaction_id 0 -> 7).
#@ meta_mib=4
#@ data_mib=16
#@ timeout=120
. /job/lib.sh
note "a-empty-pool: 64 KiB blocks, no thins, transaction id 7"
pool_start 128 16
pool_msg set_transaction_id 0 7
finish
