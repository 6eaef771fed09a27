# Guest library of the kernel VM harness (busybox sh). run.sh puts it at
# /job/lib.sh; scenario scripts start with ". /job/lib.sh".
#
# Disks are found by name: $META and $DATA default to /dev/disk/meta and
# /dev/disk/data; /dev/disk/dump (optional) receives the content of every
# thin at the end so that the host can hash it. Files written to $OUT come
# back to the host.
#
# Thin registry /tmp/thins.reg, one line per existing thin:
#   <dev id> <table size in sectors> <external origin device or ->
set -e

POOL=${POOL:-pool}
META=${META:-/dev/disk/meta}
DATA=${DATA:-/dev/disk/data}
DUMPDEV=${DUMPDEV:-/dev/disk/dump}
REG=/tmp/thins.reg
: > "$REG"
T_START=$(cut -d' ' -f1 /proc/uptime)

note() { echo "### $*"; }
show() { echo "+ $*"; "$@"; }
elapsed() { awk -v s="$T_START" -v e="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{printf "%.1f", e - s}'; }
# quiet dd: prints its messages only when it fails
qdd() {
    if ! dd "$@" 2>/tmp/qdd.err; then
        echo "dd $* failed:"; cat /tmp/qdd.err; return 1
    fi
}

# ---- pool -----------------------------------------------------------------------
# pool_line FEATURES: the thin-pool table for the current $META/$DATA
pool_line() {
    # shellcheck disable=SC2086
    set -- $1
    echo "0 $(blockdev --getsz "$DATA") thin-pool $META $DATA $BS $LWM $# $*"
}
# pool_start BLOCK_SECTORS LOW_WATER [FEATURE...]: create the pool device
pool_start() {
    BS=$1 LWM=$2
    shift 2
    FEATURES="$*"
    show dmsetup create "$POOL" --table "$(pool_line "$FEATURES")"
    pool_status
}
# pool_reload [FEATURE...]: load a new table (e.g. after growing $DATA), resume
pool_reload() {
    FEATURES="$*"
    show dmsetup reload "$POOL" --table "$(pool_line "$FEATURES")"
    show dmsetup suspend "$POOL"
    show dmsetup resume "$POOL"
    pool_status
}
pool_stop() { show dmsetup remove "$POOL"; }
pool_msg() { show dmsetup message "$POOL" 0 "$*"; }
pool_status() { echo "status: $(dmsetup status "$POOL")"; }

# ---- thins ------------------------------------------------------------------------
reg_field() { awk -v id="$1" -v f="$2" '$1 == id { print $f }' "$REG"; }
thin_active() { [ -b "/dev/mapper/thin$1" ]; }
# thin_new ID SIZE_MIB [EXTERNAL_ORIGIN]
thin_new() {
    pool_msg create_thin "$1"
    echo "$1 $(($2 * 2048)) ${3:--}" >> "$REG"
}
# snap_new ID ORIGIN_ID: internal snapshot (origin suspended around it when active)
snap_new() {
    if thin_active "$2"; then show dmsetup suspend "thin$2"; fi
    pool_msg create_snap "$1" "$2"
    if thin_active "$2"; then show dmsetup resume "thin$2"; fi
    echo "$1 $(reg_field "$2" 2) $(reg_field "$2" 3)" >> "$REG"
}
thin_up() {
    o=$(reg_field "$1" 3)
    [ "$o" = - ] && o=
    show dmsetup create "thin$1" --table "0 $(reg_field "$1" 2) thin /dev/mapper/$POOL $1${o:+ $o}"
}
thin_down() { show dmsetup remove "thin$1"; }
thin_del() {
    if thin_active "$1"; then thin_down "$1"; fi
    pool_msg delete "$1"
    sed -i "/^$1 /d" "$REG"
}

# ---- data ---------------------------------------------------------------------------
# chunks DEV GEN FIRST COUNT: COUNT 4 KiB chunks of text, each saying which
# device, 4 KiB index and generation it was written as (compresses well).
chunks() {
    awk -v d="$1" -v g="$2" -v f="$3" -v n="$4" 'BEGIN {
        for (c = f; c < f + n; c++)
            printf "%-4095s\n", "thintools dev " d " chunk " c " gen " g
    }'
}
# put DEV GEN FIRST_CHUNK COUNT: write chunks to thin DEV, then fsync
put() {
    echo "+ put dev $1 gen $2 chunks $3+$4"
    [ -b "/dev/mapper/thin$1" ] || { echo "put: thin$1 is not active"; return 1; }
    chunks "$1" "$2" "$3" "$4" | qdd of="/dev/mapper/thin$1" bs=4096 seek="$3" iflag=fullblock conv=notrunc,fsync
}
# put_blocks DEV GEN FIRST_BLOCK COUNT: whole pool blocks
put_blocks() { put "$1" "$2" $(($3 * BS / 8)) $(($4 * BS / 8)); }
# trim DEV OFFSET_BYTES LENGTH_BYTES: discard a range (failure is reported, not fatal)
trim() {
    if ! show blkdiscard -o "$2" -l "$3" "/dev/mapper/thin$1"; then echo "    (discard failed)"; fi
}
# Deterministic pseudo random numbers: rand N sets R in [0, N).
SEED=${SEED:-4242}
rand() { SEED=$(( (SEED * 1103515245 + 12345) % 2147483648 )); R=$(( (SEED / 65536) % $1 )); }

# ---- the end of a scenario ----------------------------------------------------------------
# finish: record tables and status, remove every device (clean shutdown),
# then re-activate the pool read_only (read-write with CAPTURE_RW=1, checking
# the metadata device is unchanged) and copy each thin to $DUMPDEV.
finish() {
    note "final state at $(elapsed) s"
    {
        dmsetup table | sort
        dmsetup status | sort
    } | tee "$OUT/status-final.txt"
    write_info
    for d in $(dmsetup ls | awk '$1 ~ /^thin/ { print $1 }'); do
        show dmsetup remove "$d"
    done
    pool_stop
    cp "$REG" "$OUT/thins.reg"
    dmesg | grep -iE 'device-mapper|thin|metadata|space map|btree|bufio' > "$OUT/dmesg-dm.txt" || true
    [ -e "$DUMPDEV" ] || { note "no dump disk: content not captured"; return 0; }
    if [ "${CAPTURE_RW:-0}" = 1 ]; then
        before=$(qdd if="$META" bs=1M | sha256sum)
        show dmsetup create "$POOL" --table "$(pool_line "$FEATURES")"
    else
        show dmsetup create "$POOL" --table "$(pool_line "$FEATURES read_only")"
    fi
    pool_status
    dump_thins
    pool_stop
    if [ "${CAPTURE_RW:-0}" = 1 ] && [ "$before" != "$(qdd if="$META" bs=1M | sha256sum)" ]; then
        echo "ERROR: the read-write re-activation changed the metadata device"; return 1
    fi
    note "done at $(elapsed) s"
}
# dump_thins: copy the content of every registered thin, as read through
# the pool, to $DUMPDEV at 1 MiB aligned offsets, and list them in
# $OUT/dump.idx as "<dev id> <offset> <size bytes> <origin>". Thins that
# were not active are activated for the copy and removed again.
dump_thins() {
    : > "$OUT/dump.idx"
    off=0
    while read -r id size origin; do
        was=1
        thin_active "$id" || { was=0; thin_up "$id"; }
        bytes=$((size * 512))
        qdd if="/dev/mapper/thin$id" of="$DUMPDEV" bs=1M seek=$((off / 1048576)) iflag=direct oflag=direct conv=notrunc
        echo "$id $off $bytes $origin" >> "$OUT/dump.idx"
        off=$((off + (bytes + 1048575) / 1048576 * 1048576))
        [ $was = 1 ] || thin_down "$id"
    done < "$REG"
}
# write_info: machine-readable facts about the pool, from its table and status
write_info() {
    st=$(dmsetup status "$POOL")
    # 0 <len> thin-pool <trans> <um>/<tm> <ud>/<td> <held> ...
    set -- $st
    {
        echo "kernel=$(uname -r)"
        echo "target=$(dmsetup targets | awk '$1 == "thin-pool" { print $2 }')"
        echo "data_block_size=$BS"
        echo "low_water_mark=$LWM"
        echo "features=$FEATURES"
        echo "transaction_id=$4"
        echo "metadata_blocks=${5#*/}"
        echo "data_blocks=${6#*/}"
        echo "data_blocks_used=${6%/*}"
        echo "held_root=$7"
        echo "metadata_bytes=$(blockdev --getsize64 "$META")"
        echo "data_bytes=$(blockdev --getsize64 "$DATA")"
        echo "devices=$(awk '{ print $1 }' "$REG" | sort -n | tr '\n' ' ' | sed 's/ $//')"
    } > "$OUT/info"
}

echo "guest: kernel $(uname -r), $(dmsetup version | tr '\n' ' ')"

# ---- lvm2 ---------------------------------------------------------------------------------
# lvm_setup [TOOL_DIR]: write /etc/lvm/lvm.conf for a guest without udev or
# dmeventd (lvm2 creates the /dev nodes itself, no monitoring, no metadata
# backups, no devices file). The pool tools lvm2 runs (thin_check, thin_dump,
# thin_repair, thin_restore) are taken from TOOL_DIR (default /opt/bin,
# where run.sh --bin puts executables) when they are there; a tool that is
# absent is configured as "" (lvm2 then skips it). Each call appends to
# $LVM_TOOL_LOG (default /tmp/lvm-tools.log) the command line lvm2 ran and its exit
# status ("thin_check exit 0"), through a wrapper, so that tests can see what lvm2 called.
LVM_TOOL_LOG=${LVM_TOOL_LOG:-/tmp/lvm-tools.log}
lvm_setup() {
    dir=${1:-/opt/bin}
    mkdir -p /etc/lvm /run/lock/lvm /run/lvm /tmp/lvm-wrap
    for t in thin_check thin_dump thin_repair; do
        eval "exe_$t="
        [ -x "$dir/$t" ] || continue
        printf '#!/bin/sh\necho "%s $*" >> %s\n%s "$@"\nrc=$?\necho "%s exit $rc" >> %s\nexit $rc\n' \
            "$t" "$LVM_TOOL_LOG" "$dir/$t" "$t" "$LVM_TOOL_LOG" > "/tmp/lvm-wrap/$t"
        chmod 755 "/tmp/lvm-wrap/$t"
        eval "exe_$t=/tmp/lvm-wrap/$t"
    done
    cat > /etc/lvm/lvm.conf <<CONF
config { checks = 1 }
devices {
    dir = "/dev"
    scan = [ "/dev" ]
    obtain_device_list_from_udev = 0
    external_device_info_source = "none"
    use_devicesfile = 0
    filter = [ "a|^/dev/vd|", "a|^/dev/mapper/|", "r|.*|" ]
}
activation {
    udev_sync = 0
    udev_rules = 0
    verify_udev_operations = 1
    monitoring = 0
    thin_pool_autoextend_threshold = 100
}
global {
    thin_check_executable = "$exe_thin_check"
    thin_dump_executable = "$exe_thin_dump"
    thin_repair_executable = "$exe_thin_repair"
    thin_check_options = [ "-q", "--clear-needs-check-flag" ]
}
backup { backup = 0 archive = 0 }
log { verbose = 0 level = 0 command_names = 0 }
CONF
    : > "$LVM_TOOL_LOG"
}
