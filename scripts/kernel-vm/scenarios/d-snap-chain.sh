#!/bin/sh
# d: origin 0 and a chain of 11 snapshots, each of the previous one, with
# random writes to each new snapshot and every other step to the origin too;
# then a branch (12 = snapshot of 4). Exercises sharing and mapping times.
#@ meta_mib=4
#@ data_mib=64
#@ dump_mib=224
#@ timeout=240
. /job/lib.sh
note "d-snap-chain: 64 KiB blocks, chain of 11 snapshots plus a branch"
pool_start 128 0
thin_new 0 16
thin_up 0
put 0 0 0 4096
SEED=2024
prev=0
g=1
while [ $g -le 11 ]; do
    snap_new $g $prev
    thin_up $g
    k=0
    while [ $k -lt 3 ]; do
        rand 48; len=$((R + 1)); rand $((4096 - len)); put $g $g $R $len
        k=$((k + 1))
    done
    if [ $((g % 2)) = 0 ]; then rand 4000; put 0 $g $R 40; fi
    if [ $prev != 0 ]; then thin_down $prev; fi
    prev=$g
    g=$((g + 1))
done
snap_new 12 4
thin_up 12
put 12 12 200 64
pool_msg set_transaction_id 0 11
pool_status
finish
