#!/bin/sh
# c: 200 thins whose ids spread over the whole 24-bit range, the lowest (0)
# and the highest (16777215) included; every 8th one (and both extremes) gets
# a few chunks written. More devices than one btree leaf holds, so the device
# details tree and the top level of the mapping tree have two levels.
#@ meta_mib=8
#@ data_mib=32
#@ dump_mib=208
#@ timeout=600
. /job/lib.sh
note "c-many-thins: 64 KiB blocks, 200 thins, ids up to 16777215"
pool_start 128 0
i=0
ids=
while [ $i -lt 198 ]; do
    # ids 0, 84733, ... spread evenly, each one distinct
    ids="$ids $((i * 84733))"
    i=$((i + 1))
done
ids="$ids 16777214 16777215"
for id in $ids; do thin_new $id 1; done
k=0
for id in $ids; do
    if [ $((k % 8)) = 0 ] || [ $id -ge 16777214 ]; then
        thin_up $id
        put $id 1 $((k % 240)) $((1 + k % 17))
        thin_down $id
    fi
    k=$((k + 1))
done
pool_msg set_transaction_id 0 200
finish
