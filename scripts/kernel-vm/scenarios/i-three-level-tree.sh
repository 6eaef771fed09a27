#!/bin/sh
# i: a mapping tree of three levels: thin 0 of 6600 MiB (105,600 blocks of
# 64 KiB) provisioned in full. First a text chunk at the start of every
# 1000th block (these take the lowest data blocks), then the whole device
# written with zeros by four concurrent writers, so that allocation order
# interleaves and the mappings form many runs, then the text chunks again
# (generation 2; the zeros overwrote them). The data image is shipped
# without its all-zero tail (data.img.size gives the full length).
#@ meta_mib=32
#@ data_mib=6656
#@ dump_mib=6600
#@ trim_images=data
#@ timeout=1200
. /job/lib.sh
note "i-three-level-tree: 64 KiB blocks, 105,600 mapped blocks"
pool_start 128 0
thin_new 0 6600
thin_up 0
marks() {   # marks GEN: a text chunk at the start of every 1000th block
    b=0
    while [ $b -lt 105600 ]; do
        chunks 0 $1 $((b * 16)) 1 | qdd of=/dev/mapper/thin0 bs=4096 seek=$((b * 16)) conv=notrunc
        b=$((b + 1000))
    done
    sync
    note "text chunks (gen $1) written at $(elapsed) s"
}
marks 1
# quarter q covers MiB [q * 1650, (q + 1) * 1650); 256 KiB writes
for q in 0 1 2 3; do
    (
        dd if=/dev/zero of=/dev/mapper/thin0 bs=256K seek=$((q * 6600)) count=6600 oflag=direct conv=notrunc 2>/tmp/w$q.err ||
            { echo "writer $q failed"; cat /tmp/w$q.err; }
    ) &
done
wait
note "zeros written at $(elapsed) s"
marks 2
pool_status
finish
