#!/bin/sh
# Asynchronous replication of one thin volume into a second pool with
# thin_send / thin_recv (docs/replication.md explains the cycle).
#
#   replicate.sh [options] SOURCE REPLICA
#
# SOURCE and REPLICA are LVM names (VG/LV) or device-mapper thin devices
# (/dev/mapper/NAME). REPLICA must exist and be at least as large as SOURCE.
# Each cycle N:
#   1. snapshots SOURCE as SOURCE_repl_N (lvcreate -s, or suspend +
#      create_snap + resume through the pool's messages);
#   2. sends it with thin_send --format 2: in full the first time, later the
#      difference from SOURCE_repl_<N-1>, into thin_recv REPLICA (or
#      `ssh HOST thin_recv ...` with --ssh); an interrupted transfer is
#      resumed with the token thin_recv stored, a refused one redone;
#   3. snapshots REPLICA as REPLICA_repl_N, the replica's frozen copy of
#      SOURCE_repl_N;
#   4. records N as done, then drops the snapshots older than the last
#      --keep cycles on both sides (SOURCE_repl_N stays: it is the next base).
# A cycle that was interrupted (the script killed, the machine down) is
# finished by the next run: every step checks what exists first.
# thin_send never leaves a metadata snapshot reserved; the script checks it
# after each cycle.
#
# Options:
#   --cycles N     run N cycles (default 1), --interval S seconds apart (default 60)
#   --keep K       snapshots kept on each side (default 2, at least 1)
#   --state-dir D  where the cycle number, snapshot ids and thin_recv's state
#                  file are kept (default /var/lib/thintools-replicate/<source>)
#   --ssh HOST     run thin_recv (and the replica's snapshots) on HOST
#   --compress     compress the stream (zstd)
#   --tools DIR    directory of thin_send / thin_recv (default: from PATH)
#   --retries R    resumes or redos of one transfer before giving up (default 3)
# Needs: POSIX sh, dmsetup, lvm2 for LVM names. Exit status 0 when every cycle
# completed, 1 otherwise.
set -eu
self=$0

cycles=1 interval=60 keep=2 state_dir="" ssh_host="" compress="" tools="" retries=3 replica_step=""
usage() { sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
    --cycles) cycles=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --state-dir) state_dir=$2; shift 2 ;;
    --ssh) ssh_host=$2; shift 2 ;;
    --compress) compress=--compress; shift ;;
    --tools) tools=$2/; shift 2 ;;
    --retries) retries=$2; shift 2 ;;
    --replica-step) replica_step=1; shift ;;
    -h | --help) usage ;;
    -*) echo "replicate: unknown option $1" >&2; usage ;;
    *) break ;;
    esac
done
if [ -n "$replica_step" ]; then
    # the remote half of --ssh (see replica_snap): STEP N REPLICA
    [ $# -eq 3 ] || usage
    set -- "$3" "$3" "$1" "$2"
fi
[ $# -eq 2 ] || [ -n "$replica_step" ] || usage
SOURCE=$1 REPLICA=$2
[ "$keep" -ge 1 ] || { echo "replicate: --keep must be at least 1" >&2; exit 2; }
[ -n "$state_dir" ] || state_dir=/var/lib/thintools-replicate/$(echo "$SOURCE" | tr '/' '_')
mkdir -p "$state_dir"

log() { echo "replicate: $*" >&2; }
die() { log "$*"; exit 1; }
# remote CMD...: run on the replica's side (here, or on --ssh HOST)
remote() {
    if [ -n "$ssh_host" ]; then ssh "$ssh_host" "$*"; else sh -c "$*"; fi
}

# ---- volumes: LVM names or dm thin devices ------------------------------------
is_lvm() { case $1 in /dev/mapper/* | /dev/dm-*) return 1 ;; */*) return 0 ;; *) return 1 ;; esac; }
# snap_name VOLUME N: the name of cycle N's snapshot of VOLUME
snap_name() {
    if is_lvm "$1"; then echo "${1}_repl_$2"; else echo "/dev/mapper/$(basename "$1")_repl_$2"; fi
}
# The dm side keeps each snapshot's thin id in the state dir (ids.<side>.<N>).
# dm_table VOLUME: "<len> <pool major:minor> <thin id>"
dm_table() {
    dmsetup table "$(basename "$1")" | awk '$3 == "thin" { print $2, $4, $5; exit }'
}
# snap_exists VOLUME N
snap_exists() {
    s=$(snap_name "$1" "$2")
    if is_lvm "$1"; then lvs "$s" >/dev/null 2>&1; else [ -b "$s" ]; fi
}
# snap_create SIDE VOLUME N: a read-only snapshot of VOLUME (suspended around it)
snap_create() {
    side=$1 vol=$2 n=$3 s=$(snap_name "$2" "$3")
    if is_lvm "$vol"; then
        lvcreate -q -s -n "$(basename "$s")" "$vol" >/dev/null
        lvchange -q -pr "$s" >/dev/null
        lvchange -q -ay -K "$s" >/dev/null
        return
    fi
    set -- $(dm_table "$vol")
    len=$1 pooldev=$2 origin=$3
    pool=$(dmsetup info -c --noheadings -o name -j "${pooldev%:*}" -m "${pooldev#*:}")
    id=$(cat "$state_dir/next-id.$side" 2>/dev/null || echo $((origin + 1000)))
    dmsetup suspend "$(basename "$vol")"
    # the first id not in use (create_snap fails on a used one)
    while ! dmsetup message "$pool" 0 create_snap "$id" "$origin" 2>/dev/null; do
        id=$((id + 1))
        [ "$id" -lt $((origin + 1000000)) ] || { dmsetup resume "$(basename "$vol")"; die "no free thin id in $pool"; }
    done
    dmsetup resume "$(basename "$vol")"
    echo "$id" > "$state_dir/ids.$side.$n"
    echo $((id + 1)) > "$state_dir/next-id.$side"
    dmsetup create "$(basename "$s")" --readonly --table "0 $len thin /dev/mapper/$pool $id"
}
# snap_drop SIDE VOLUME N
snap_drop() {
    side=$1 vol=$2 n=$3 s=$(snap_name "$2" "$3")
    if is_lvm "$vol"; then
        if lvs "$s" >/dev/null 2>&1; then lvremove -q -y "$s" >/dev/null; fi
        return
    fi
    [ -f "$state_dir/ids.$side.$n" ] || return 0
    set -- $(dm_table "$vol")
    pool=$(dmsetup info -c --noheadings -o name -j "${2%:*}" -m "${2#*:}")
    if [ -b "$s" ]; then dmsetup remove "$(basename "$s")"; fi
    dmsetup message "$pool" 0 delete "$(cat "$state_dir/ids.$side.$n")"
    rm -f "$state_dir/ids.$side.$n"
}
# The replica side's snapshot functions, run there with --ssh.
replica_snap() { # create|exists|drop N
    if [ -z "$ssh_host" ]; then
        case $1 in
        create) snap_create replica "$REPLICA" "$2" ;;
        exists) snap_exists "$REPLICA" "$2" ;;
        drop) snap_drop replica "$REPLICA" "$2" ;;
        esac
    else
        # the script itself on the remote side, one step at a time
        ssh "$ssh_host" "sh -s -- --state-dir '$state_dir' --replica-step $1 $2 '$REPLICA'" < "$self"
    fi
}

# ---- one transfer, resumed or redone until it completes ------------------------------
recv_state=$state_dir/replica.thin-state
transfer() { # BASE_SNAPSHOT|"" SNAPSHOT
    base=$1 snap=$2 try=0 resume=""
    while :; do
        if [ -n "$resume" ]; then log "resuming with $resume"; fi
        # shellcheck disable=SC2086
        if "${tools}thin_send" --format 2 $compress ${resume:+--resume "$resume"} $base "$snap" |
            remote "${tools}thin_recv --state '$recv_state' '$REPLICA'"; then
            return 0
        fi
        try=$((try + 1))
        [ "$try" -le "$retries" ] || return 1
        # A pending line in thin_recv's state: resume from where it stopped;
        # none (refused before writing): send the whole stream again.
        resume=$(remote "awk '\$1 == \"pending\" { print \$2 \":\" \$3 \":\" \$4 }' '$recv_state' 2>/dev/null" || true)
        sleep 1
    done
}

# pool_of VOLUME: the dm name of the thin pool VOLUME lives in
pool_of() {
    v=$1
    if is_lvm "$v"; then v=$(lvs --noheadings -o lv_dm_path "$v" | tr -d ' '); fi
    set -- $(dm_table "$v")
    dmsetup info -c --noheadings -o name -j "${2%:*}" -m "${2#*:}"
}
# no_held_snapshot VOLUME: fail when its pool has a metadata snapshot reserved
no_held_snapshot() {
    p=$(pool_of "$1")
    held=$(dmsetup status "$p" | awk '{ print $7 }')
    [ "$held" = - ] || die "pool $p still has a metadata snapshot reserved (root $held)"
}

# ---- the cycle ---------------------------------------------------------------------
cycle() {
    last=$(cat "$state_dir/done" 2>/dev/null || echo 0)
    n=$((last + 1))
    log "cycle $n: $SOURCE -> $REPLICA"
    snap_exists "$SOURCE" "$n" || snap_create source "$SOURCE" "$n"
    base=""
    [ "$last" -eq 0 ] || base=$(snap_name "$SOURCE" "$last")
    if ! replica_snap exists "$n"; then
        transfer "$base" "$(snap_name "$SOURCE" "$n")" || die "cycle $n: the transfer failed"
        replica_snap create "$n"
    fi
    echo "$n" > "$state_dir/done.tmp"
    mv "$state_dir/done.tmp" "$state_dir/done"
    old=$((n - keep))
    while [ "$old" -ge 1 ] && { snap_exists "$SOURCE" "$old" || replica_snap exists "$old"; }; do
        snap_drop source "$SOURCE" "$old"
        replica_snap drop "$old"
        old=$((old - 1))
    done
    no_held_snapshot "$SOURCE"
    log "cycle $n done: $(snap_name "$REPLICA" "$n") equals $(snap_name "$SOURCE" "$n")"
}

# The remote half of --ssh: one snapshot step on the replica's side.
if [ -n "$replica_step" ]; then
    ssh_host=""
    replica_snap "$3" "$4"
    exit
fi

i=0
while [ "$i" -lt "$cycles" ]; do
    cycle
    i=$((i + 1))
    [ "$i" -ge "$cycles" ] || sleep "$interval"
done
