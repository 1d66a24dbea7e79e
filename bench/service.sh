#!/usr/bin/env bash
# Kura through `kura serve` (loopback, TLS on) against Kura on a local repository, two-copy
# placement against a single copy, and the service's throughput with 1, 4 and 16 clients.
#
#   bash bench/service.sh [DATA_DIR]
#
# DATA_DIR         directory for the local-vs-service comparison (default:
#                  `rustc --print sysroot`); copied to a scratch directory first.
# KURA_BIN         kura binary (default: a release build of this checkout).
# BENCH_OUT        output directory (default: bench/out/service, gitignored).
# BENCH_CLIENT_MIB data per client in the concurrency runs (default 64): random,
#                  different for every client, 16 files each.
# BENCH_CLIENTS    client counts to run (default "1 4 16").
# BENCH_RUNS       rounds of part 1 (default 3): each round backs up to a new local
#                  repository and new service users, the three in turn, so the machine's
#                  drift falls on all of them; the median round counts.
#
# Part 1 backs DATA_DIR up to a local repository, to the service with its default
# placement (two copies on the demo directory sites) and to a second service configured
# with one directory site (one copy), then restores each (verified with diff -r), and
# prints service/local and two-copy/one-copy ratios, then times `kura admin verify` over what
# the default service stored (objects verified per second). Part 2 gives
# every client its own user and data, starts all their backups at once, then all
# their restores, and prints aggregate MB/s (total bytes / wall time until the last
# one finished), and the service's peak resident memory over each run (goal: under 512 MiB
# whatever the clients send). restic's rest-server is not packaged for Debian, so there is no
# restic comparison here; bench/run.sh compares the engines on local repositories.

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd -P)
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
trap 'rc=$?; printf "[bench] error: command failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

case "${1:-}" in -h|--help) sed -n '2,28s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;; esac
[[ $# -le 1 ]] || die "expected at most one argument (DATA_DIR)"
if [[ $# -eq 1 ]]; then DATA_DIR=$1; else DATA_DIR=$(rustc --print sysroot); fi
[[ -d $DATA_DIR ]] || die "data directory '$DATA_DIR' does not exist"
DATA_DIR=$(cd "$DATA_DIR" && pwd -P)
CLIENT_MIB=${BENCH_CLIENT_MIB:-64}
RUNS=${BENCH_RUNS:-3}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive number"
read -r -a CLIENTS <<<"${BENCH_CLIENTS:-1 4 16}"
OUT=${BENCH_OUT:-$SCRIPT_DIR/out/service}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
case "$OUT/" in "$DATA_DIR"/*) die "BENCH_OUT must not be inside DATA_DIR" ;; esac

resolve_kura
rm -rf -- "${OUT:?}"/*
mkdir -p "$OUT/logs" "$OUT/state" "$OUT/restore"
unset KURA_REPO KURA_PASSWORD_FILE KURA_RECOVERY_CODE KURA_RECOVERY_CODE_FILE KURA_THREADS \
      KURA_USER KURA_USER_PASSWORD_FILE KURA_CLIENT_CERT KURA_CLIENT_KEY KURA_PIECE_KIB \
      KURA_INSECURE_FAST_KDF
export KURA_PASSWORD="bench passphrase"
: >"$OUT/kura-config.toml"
export KURA_CONFIG=$OUT/kura-config.toml

now() { date +%s.%N; }
# Waits for the given clients (not the service); any failure fails the run.
wait_all() { local p; for p in "$@"; do wait "$p" || die "a client failed; see $OUT/logs"; done; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mbps() { awk -v bytes="$1" -v s="$2" 'BEGIN { printf "%.1f", bytes / 1e6 / s }'; }

# ---------------------------------------------------------------- the services
SERVE_PIDS=()
trap 'kill "${SERVE_PIDS[@]}" 2>/dev/null || true' EXIT
declare -A URLS=()
# Starts `kura serve` named $1 with the rest as extra arguments.
start_service() {
    local name=$1; shift
    "$KURA_BIN" serve --listen 127.0.0.1:0 --data-dir "$OUT/$name" "$@" \
        >"$OUT/logs/$name.out" 2>"$OUT/logs/$name.err" &
    SERVE_PIDS+=($!)
    for _ in $(seq 100); do
        grep -q '^listening on' "$OUT/logs/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    URLS[$name]=$(sed -n 's/^listening on //p' "$OUT/logs/$name.out")
    [[ -n ${URLS[$name]} ]] || die "kura serve did not start; see $OUT/logs/$name.err"
    log "$name at ${URLS[$name]}"
}
start_service service
URL=${URLS[service]}
SERVICE_PID=${SERVE_PIDS[0]}
# The service's peak resident memory (VmHWM) in MiB since the last reset_peak.
peak_mib() { awk '/^VmHWM:/ { printf "%d", $2 / 1024 }' "/proc/$SERVICE_PID/status"; }
reset_peak() { echo 5 >"/proc/$SERVICE_PID/clear_refs"; }
printf '[[sites]]\nid = "only"\nregion = "here"\nurl = "file://%s/one-site"\nsecret = "bench site secret"\n' \
    "$OUT" >"$OUT/one-site.toml"
start_service single --server-config "$OUT/one-site.toml"
printf 'bench user password\n' >"$OUT/user.pw"
# Adds user $1 with a paid contract to the service $2 (default: service).
add_user() {
    local data=$OUT/${2:-service}
    "$KURA_BIN" admin --data-dir "$data" user add "$1" --login-password-file "$OUT/user.pw" >/dev/null
    "$KURA_BIN" admin --data-dir "$data" contract set "$1" --until 2099-12-31 --paid yes >/dev/null
}

# Runs kura for client $1 ("local-N" on local repository N, "single-N" on the one-site
# service, or a user on the default service) with the rest as arguments.
client() {
    local who=$1; shift
    local url=$URL service=service
    if [[ $who == single-* ]]; then url=${URLS[single]}; service=single; fi
    if [[ $who == local-* ]]; then
        "$KURA_BIN" --repo "$OUT/$who-repo" --state-dir "$OUT/state/$who" "$@"
    else
        KURA_USER=$who KURA_USER_PASSWORD="bench user password" \
        KURA_SERVER_FINGERPRINT=$(cat "$OUT/$service/tls/fingerprint") \
            "$KURA_BIN" --repo "$url" --state-dir "$OUT/state/$who" "$@"
    fi
}

# ------------------------------------------------- part 1: same data, local vs service
log "copying $DATA_DIR"
mkdir -p "$OUT/data"
cp -a -- "$DATA_DIR/." "$OUT/data/"
DATA_MIB=$(du -sb "$OUT/data" | awk '{ printf "%.0f", $1 / 1048576 }')
declare -A T=()
# The median of the numbers given.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for run in $(seq "$RUNS"); do
    add_user "same-$run"
    add_user "single-$run" single
    for kind in local same single; do
        who=$kind-$run
        client "$who" init >"$OUT/logs/$who-init.log" 2>&1
        sync
        t0=$(now)
        client "$who" backup "$OUT/data" >"$OUT/logs/$who-backup.log" 2>&1
        T[$kind:backup:$run]=$(secs "$t0" "$(now)")
        sync
        t0=$(now)
        client "$who" restore latest --target "$OUT/restore/$who" >"$OUT/logs/$who-restore.log" 2>&1
        T[$kind:restore:$run]=$(secs "$t0" "$(now)")
        diff -r "$OUT/data" "$OUT/restore/$who$OUT/data" >/dev/null || die "$who: restore differs"
        rm -rf -- "$OUT/restore/$who"
        log "$who: backup ${T[$kind:backup:$run]} s, restore ${T[$kind:restore:$run]} s (verified)"
    done
done
for kind in local same single; do
    for step in backup restore; do
        runs=()
        for run in $(seq "$RUNS"); do runs+=("${T[$kind:$step:$run]}"); done
        T[$kind:$step]=$(median "${runs[@]}")
        T[$kind:$step:all]=${runs[*]}
    done
done
# The median over rounds of the ratio of $1 to $2 at step $3, each round's pair taken together.
paired() {
    local run rs=()
    for run in $(seq "$RUNS"); do rs+=("$(ratio "${T[$1:$3:$run]}" "${T[$2:$3:$run]}")"); done
    median "${rs[@]}"
}

# ------------------------------------------------- part 1b: integrity check of what part 1 stored
# `kura admin verify` reads both copies of every object on the default service's demo sites
# (directories on this disk, just written: the page cache is warm) and compares them.
sync
for _ in 1 2 3; do
    if "$KURA_BIN" admin --data-dir "$OUT/service" --json verify >"$OUT/verify.json" 2>"$OUT/logs/verify.err"; then
        break
    fi
    grep -q 'in progress' "$OUT/logs/verify.err" || die "verify failed; see $OUT/logs/verify.err"
    sleep 2
done
read -r V_OBJECTS V_COPIES V_BYTES V_SECS < <(python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print(v["objects"], v["copies"], v["bytes"], v["seconds"])' "$OUT/verify.json")
[[ $V_OBJECTS -gt 0 ]] || die "verify checked no objects"
log "verify: $V_OBJECTS objects, $V_COPIES copies, $V_BYTES bytes in $V_SECS s"

# ------------------------------------------------- part 2: concurrent clients
MAX=0
for n in "${CLIENTS[@]}"; do (( n > MAX )) && MAX=$n; done
log "generating $MAX x $CLIENT_MIB MiB of client data"
for i in $(seq "$MAX"); do
    mkdir -p "$OUT/clients/$i"
    for f in $(seq 16); do
        head -c $(( CLIENT_MIB * 1048576 / 16 )) /dev/urandom >"$OUT/clients/$i/f$f"
    done
done
PER_CLIENT=$(( CLIENT_MIB * 1048576 ))
declare -A C=()
for n in "${CLIENTS[@]}"; do
    for i in $(seq "$n"); do
        add_user "c$n-$i"
        client "c$n-$i" init >"$OUT/logs/c$n-$i-init.log" 2>&1
    done
    sync
    reset_peak
    t0=$(now)
    pids=()
    for i in $(seq "$n"); do
        client "c$n-$i" backup "$OUT/clients/$i" >"$OUT/logs/c$n-$i-backup.log" 2>&1 &
        pids+=($!)
    done
    wait_all "${pids[@]}"
    C[$n:backup]=$(secs "$t0" "$(now)")
    sync
    t0=$(now)
    pids=()
    for i in $(seq "$n"); do
        client "c$n-$i" restore latest --target "$OUT/restore/c$n-$i" >"$OUT/logs/c$n-$i-restore.log" 2>&1 &
        pids+=($!)
    done
    wait_all "${pids[@]}"
    C[$n:restore]=$(secs "$t0" "$(now)")
    C[$n:rss]=$(peak_mib)
    for i in $(seq "$n"); do
        diff -r "$OUT/clients/$i" "$OUT/restore/c$n-$i$OUT/clients/$i" >/dev/null || die "client $i of $n: restore differs"
        rm -rf -- "$OUT/restore/c$n-$i"
    done
    log "$n clients: backup ${C[$n:backup]} s, restore ${C[$n:restore]} s (all verified), service peak ${C[$n:rss]} MiB"
done

# ---------------------------------------------------------------- results
{
    echo "# Kura through the service ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $("$KURA_BIN" --version))"
    echo
    echo "Same data ($DATA_DIR, $DATA_MIB MiB), local repository vs \`kura serve\` on loopback with TLS; $RUNS rounds, medians (each round's seconds in brackets; the ratio is the median of the rounds' ratios):"
    echo
    echo "| step | local s | service s | service/local |"
    echo "|---|---:|---:|---:|"
    for step in backup restore; do
        echo "| $step | ${T[local:$step]} [${T[local:$step:all]}] | ${T[same:$step]} [${T[same:$step:all]}] | $(paired same local "$step") |"
    done
    echo
    echo "Placement: the default service (two copies, each sealed per site and read back) against a service with one site (one copy), same data, same rounds:"
    echo
    echo "| step | one copy s | two copies s | two/one |"
    echo "|---|---:|---:|---:|"
    for step in backup restore; do
        echo "| $step | ${T[single:$step]} [${T[single:$step:all]}] | ${T[same:$step]} [${T[same:$step:all]}] | $(paired same single "$step") |"
    done
    echo
    echo "Integrity check (\`kura admin verify\`) of everything part 1 stored on the default service, both copies read, opened and compared (warm page cache):"
    echo
    echo "| objects | copies | bytes | s | objects/s | MB/s |"
    echo "|---:|---:|---:|---:|---:|---:|"
    echo "| $V_OBJECTS | $V_COPIES | $V_BYTES | $(printf '%.2f' "$V_SECS") | $(ratio "$V_OBJECTS" "$V_SECS") | $(mbps "$V_BYTES" "$V_SECS") |"
    echo
    echo "Concurrent clients, each with its own user and $CLIENT_MIB MiB of random data (aggregate MB/s = all bytes / time until the last finished):"
    echo
    echo "| clients | backup s | backup MB/s | restore s | restore MB/s | service peak RSS MiB |"
    echo "|---:|---:|---:|---:|---:|---:|"
    for n in "${CLIENTS[@]}"; do
        bytes=$(( n * PER_CLIENT ))
        echo "| $n | ${C[$n:backup]} | $(mbps "$bytes" "${C[$n:backup]}") | ${C[$n:restore]} | $(mbps "$bytes" "${C[$n:restore]}") | ${C[$n:rss]} |"
    done
    echo
    echo "restic with rest-server: not measured (rest-server is not packaged for Debian)."
} | tee "$OUT/results.md"
