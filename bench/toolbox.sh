#!/usr/bin/env bash
# The everyday toolbox against restic, in one run on the same data: `find` over 20
# snapshots, and reading a large file through `mount` (FUSE) against `kura restore` of it.
#
#   bash bench/toolbox.sh              # builds kura --release unless KURA_BIN is set
#   BENCH_RUNS=7 bash bench/toolbox.sh
#
# Needs restic and fuse3 (apt-get install restic fuse3) and /dev/fuse. Both repositories are
# made here from the same data: 2 large files (LARGE_MIB each, pseudo-random, so neither
# tool can compress them away) and SMALL_FILES small ones; 20 snapshots, every 100th small
# file changed between two. Each timing is the median of BENCH_RUNS runs, the tools taken in
# turn (kura, restic, kura, ...). Every read through a mount is a first read: each run mounts
# afresh (no page cache of the mount, no blob cache in the process) and times only the read;
# the repositories' files stay in the page cache for both alike. Both open their repository
# with their default key derivation (Kura Argon2id 64 MiB, restic scrypt), which every
# command pays once. Results: a table on stdout and in $BENCH_OUT/toolbox.md.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO_ROOT/bench/lib.sh"

OUT=${BENCH_OUT:-$REPO_ROOT/bench/out}/toolbox
RUNS=${BENCH_RUNS:-5}
LARGE_MIB=${LARGE_MIB:-256}
SMALL_FILES=${SMALL_FILES:-3000}
SNAPSHOTS=20
command -v restic >/dev/null || die "restic is not installed (apt-get install restic)"
command -v fusermount3 >/dev/null || die "fusermount3 is not installed (apt-get install fuse3)"
[[ -e /dev/fuse ]] || die "no /dev/fuse here"
resolve_kura

rm -rf "$OUT"
mkdir -p "$OUT"/{data,kmnt,rmnt,restore}
export KURA_PASSWORD=bench-pass RESTIC_PASSWORD=bench-pass
export KURA_STATE_DIR=$OUT/kura-state
KREPO=$OUT/kura-repo RREPO=$OUT/restic-repo
kura() { "$KURA_BIN" --repo "$KREPO" "$@"; }
restic_() { restic -q -r "$RREPO" --cache-dir "$OUT/restic-cache" "$@"; }

log "making the data: 2 x $LARGE_MIB MiB and $SMALL_FILES small files"
D=$OUT/data
for i in 1 2; do
    head -c $((LARGE_MIB << 20)) /dev/urandom >"$D/large-$i.dat"
done
mkdir -p "$D/small"
for ((i = 0; i < SMALL_FILES; i++)); do
    sub=$D/small/d$((i % 50))
    [[ -d $sub ]] || mkdir -p "$sub"
    printf 'file %d %s\n' "$i" "$(head -c 600 /dev/urandom | base64 -w0)" >"$sub/f$i.txt"
done

log "init, then $SNAPSHOTS snapshots each"
kura init >/dev/null
restic_ init --repository-version 2 >/dev/null
for ((s = 1; s <= SNAPSHOTS; s++)); do
    if ((s > 1)); then
        for ((i = s; i < SMALL_FILES; i += 100)); do
            echo "change $s" >>"$D/small/d$((i % 50))/f$i.txt"
        done
    fi
    kura backup "$D" >/dev/null
    restic_ --compression auto backup "$D" >/dev/null
done

# median of the numbers on stdin
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# seconds one command takes
seconds() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

log "find '*.dat' over $SNAPSHOTS snapshots, $RUNS runs each"
kf=() rf=()
for ((r = 0; r < RUNS; r++)); do
    kf+=("$(seconds kura find '*.dat')")
    rf+=("$(seconds restic_ find '*.dat')")
done
KFIND=$(printf '%s\n' "${kf[@]}" | median)
RFIND=$(printf '%s\n' "${rf[@]}" | median)

# Mounts with `$1` at `$2` in the background; waits for the top directories.
mount_with() {
    local tool=$1 at=$2
    case $tool in
        kura) "$KURA_BIN" --repo "$KREPO" mount "$at" >"$OUT/$tool-mount.log" 2>&1 & ;;
        restic) restic -r "$RREPO" --cache-dir "$OUT/restic-cache" mount "$at" >"$OUT/$tool-mount.log" 2>&1 & ;;
    esac
    for _ in $(seq 1 600); do
        [[ -e $at/snapshots/latest ]] && return 0
        sleep 0.1
    done
    die "$tool mount did not come up (see $OUT/$tool-mount.log)"
}
# The file in a mount of `$1` at `$2`.
large_in() { find "$2/snapshots/latest/" -name large-1.dat | head -1; }
# Mounts with `$1` at `$2`, times one read of the large file, checks it, unmounts.
first_read() {
    local tool=$1 at=$2 file t
    mount_with "$tool" "$at"
    file=$(large_in "$tool" "$at")
    [[ -n $file ]] || die "large-1.dat not found in the $tool mount"
    t=$(seconds dd if="$file" of=/dev/null bs=1M status=none)
    cmp "$file" "$D/large-1.dat" || die "$tool mount read large-1.dat wrong"
    fusermount3 -u "$at"
    wait
    echo "$t"
}
log "reading $LARGE_MIB MiB through each mount, and kura restore of it, $RUNS runs each"
km=() rm_=() kr=()
for ((r = 0; r < RUNS; r++)); do
    km+=("$(first_read kura "$OUT/kmnt")")
    rm_+=("$(first_read restic "$OUT/rmnt")")
    rm -rf "$OUT/restore" && mkdir -p "$OUT/restore"
    kr+=("$(seconds kura restore "latest:$D/large-1.dat" --target "$OUT/restore")")
done
KMOUNT=$(printf '%s\n' "${km[@]}" | median)
RMOUNT=$(printf '%s\n' "${rm_[@]}" | median)
KRESTORE=$(printf '%s\n' "${kr[@]}" | median)
cmp "$(find "$OUT/restore" -name large-1.dat | head -1)" "$D/large-1.dat" || die "restore differs"

mibs() { echo "$LARGE_MIB / $1" | bc -l | xargs printf '%.0f'; }
ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
{
    echo "| measure | kura | restic $(restic version | awk '{print $2}') | kura / restic |"
    echo "| --- | --- | --- | --- |"
    printf '| find over %d snapshots (s, lower is better) | %.2f | %.2f | %s |\n' \
        "$SNAPSHOTS" "$KFIND" "$RFIND" "$(ratio "$KFIND" "$RFIND")"
    printf '| read %d MiB through mount (MiB/s, higher is better) | %s | %s | %s |\n' \
        "$LARGE_MIB" "$(mibs "$KMOUNT")" "$(mibs "$RMOUNT")" "$(ratio "$RMOUNT" "$KMOUNT")"
    printf '| kura restore of that file (MiB/s) | %s | | mount / restore: %s |\n' \
        "$(mibs "$KRESTORE")" "$(ratio "$KRESTORE" "$KMOUNT")"
    echo
    echo "Medians of $RUNS runs; $(nproc) CPUs; data: 2 x $LARGE_MIB MiB + $SMALL_FILES small files, $SNAPSHOTS snapshots."
} | tee "$OUT/toolbox.md"
