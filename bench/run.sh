#!/usr/bin/env bash
# Kura vs restic, BorgBackup 1 and 2 (and rustic when installed) on the same data, in the
# same run, with a `tar | zstd` pass as the ceiling.
#
#   bash bench/run.sh [DATA_DIR]
#
# DATA_DIR      directory to back up (default: `rustc --print sysroot`).
#               It is copied to a scratch directory first and never modified.
# KURA_BIN      kura binary to use (default: `cargo build --release -p kura`
#               in the repo root, then target/release/kura).
# BENCH_OUT     output directory (default: bench/out, gitignored).
# BENCH_TOOLS   tools to run, in this order within each phase (default: "kura restic
#               borg borg2 tar", plus rustic when it is on PATH; known: kura restic
#               rustic borg borg2 tar). "tar" is no backup tool: `tar | zstd -3 -T2`
#               into one file and back, the floor any of them could reach.
# BENCH_SMALL=1 use a small generated data set (~50 MiB, ~2000 files)
#               instead of DATA_DIR: a smoke test that runs in well under a minute.
# BENCH_KEEP_RESTORE=1  keep the restored trees (default: deleted once verified).
#
# Steps per tool: init, initial backup, unchanged re-backup, re-backup after
# changing ~1% of the files, full restore of the latest snapshot (verified
# against the data). Each step is measured with /usr/bin/time -v (wall time,
# peak RSS, CPU time); repository size with du -sb. See bench/README.md.

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd -P)

# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
trap 'rc=$?; printf "[bench] error: command failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

usage() { sed -n '2,20s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

case "${1:-}" in -h|--help) usage; exit 0 ;; esac
[[ $# -le 1 ]] || { usage >&2; die "expected at most one argument (DATA_DIR)"; }

# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------
ALL_TOOLS=(kura restic rustic borg borg2 tar)
DEFAULT_TOOLS="kura restic borg borg2 tar"
if command -v rustic >/dev/null; then DEFAULT_TOOLS="kura restic rustic borg borg2 tar"; fi
read -r -a TOOLS <<<"${BENCH_TOOLS:-$DEFAULT_TOOLS}"
[[ ${#TOOLS[@]} -gt 0 ]] || die "BENCH_TOOLS is empty"
declare -A SELECTED=()
for t in "${TOOLS[@]}"; do
    case "$t" in kura|restic|rustic|borg|borg2|tar) ;; *) die "BENCH_TOOLS: unknown tool '$t' (known: ${ALL_TOOLS[*]})" ;; esac
    [[ -z ${SELECTED[$t]:-} ]] || die "BENCH_TOOLS: '$t' listed twice"
    SELECTED[$t]=1
done
want() { [[ -n ${SELECTED[$1]:-} ]]; }

BENCH_SMALL=${BENCH_SMALL:-0}
if [[ $BENCH_SMALL == 1 ]]; then
    [[ $# -eq 0 ]] || die "BENCH_SMALL=1 generates its own data set; do not pass DATA_DIR"
    DATA_DIR=""
else
    if [[ $# -eq 1 ]]; then
        DATA_DIR=$1
    else
        command -v rustc >/dev/null || die "rustc not found: pass DATA_DIR or set BENCH_SMALL=1"
        DATA_DIR=$(rustc --print sysroot)
    fi
    [[ -d $DATA_DIR ]] || die "data directory '$DATA_DIR' does not exist"
    DATA_DIR=$(cd "$DATA_DIR" && pwd -P)
fi

BENCH_OUT=${BENCH_OUT:-$SCRIPT_DIR/out}
mkdir -p "$BENCH_OUT"
BENCH_OUT=$(cd "$BENCH_OUT" && pwd -P)
if [[ -n $DATA_DIR ]]; then
    case "$BENCH_OUT/" in
        "$DATA_DIR"/*) die "BENCH_OUT ($BENCH_OUT) must not be inside DATA_DIR ($DATA_DIR)" ;;
    esac
    case "$DATA_DIR/" in
        "$BENCH_OUT"/*) die "DATA_DIR ($DATA_DIR) must not be inside BENCH_OUT ($BENCH_OUT)" ;;
    esac
fi

SCRATCH=$BENCH_OUT/data        # the copy that every tool backs up
REPOS=$BENCH_OUT/repo          # one repository per tool
CACHES=$BENCH_OUT/cache        # per-tool client caches / state
RESTORES=$BENCH_OUT/restore    # per-tool restore targets
LOGS=$BENCH_OUT/logs           # tool output and /usr/bin/time reports
RESULTS_MD=$BENCH_OUT/results.md
RESULTS_TSV=$BENCH_OUT/results.tsv

PASSWORD=kura-bench-password

# --------------------------------------------------------------------------
# Dependencies (Debian packages), installed only when missing
# --------------------------------------------------------------------------
install_deps() {
    local need=()
    [[ -x /usr/bin/time ]] || need+=(time)
    if want restic && ! command -v restic >/dev/null; then need+=(restic); fi
    if want borg && ! command -v borg >/dev/null; then need+=(borgbackup); fi
    if want borg2 && ! command -v borg2 >/dev/null; then need+=(borgbackup2); fi
    if want tar && ! command -v zstd >/dev/null; then need+=(zstd); fi
    if want rustic && ! command -v rustic >/dev/null; then
        die "rustic is not installed: cargo install rustic-rs --locked (about 12 minutes on 2 cores)"
    fi
    command -v perl >/dev/null || need+=(perl)
    command -v diff >/dev/null || need+=(diffutils)
    if [[ ${#need[@]} -eq 0 ]]; then return 0; fi
    command -v apt-get >/dev/null || die "missing: ${need[*]} (and no apt-get to install them)"
    [[ $(id -u) -eq 0 ]] || die "missing Debian packages: ${need[*]} (run as root to install them)"
    log "installing Debian packages: ${need[*]}"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >&2
}

# --------------------------------------------------------------------------
# Small deterministic data set (BENCH_SMALL=1)
#   2000 files of 64 B .. 128 KiB (log-uniform sizes): text-like (compressible),
#   random (incompressible) and mixed; plus 4 files of 4 MiB (text, random,
#   mixed, and an exact copy of the random one to exercise dedup); one empty
#   file and one empty directory. All mtimes are fixed at 2024-01-01.
# --------------------------------------------------------------------------
generate_small() {
    local dir=$1
    mkdir -p "$dir"
    (umask 022 && perl - "$dir" <<'PERL'
use strict; use warnings;
my $root = shift;
srand(20240101);
my @words = map { join '', map { chr(97 + int rand 26) } 1 .. (2 + int rand 9) } 1 .. 600;
my @levels = qw(TRACE DEBUG INFO WARN ERROR);
sub text {
    my $n = shift; my $s = '';
    while (length($s) < $n) {
        $s .= sprintf("2024-01-01T%02d:%02d:%02d %-5s %s: ", int rand 24, int rand 60, int rand 60,
                      $levels[int rand 5], $words[int rand 600]);
        $s .= join(' ', map { $words[int rand 600] } 1 .. (3 + int rand 12)) . "\n";
    }
    return substr($s, 0, $n);
}
sub rnd { my $n = shift; substr(pack('L*', map { int rand 4294967296 } 1 .. int(($n + 3) / 4)), 0, $n) }
sub mixed {
    my $n = shift; my $s = '';
    while (length($s) < $n) {
        my $k = int rand 3; my $b = 256 + int rand 8192;
        $s .= $k == 0 ? rnd($b) : $k == 1 ? ("\0" x $b) : text($b);
    }
    return substr($s, 0, $n);
}
sub put { my ($p, $data) = @_; open(my $fh, '>:raw', "$root/$p") or die "$p: $!"; print $fh $data; close($fh) or die "$p: $!"; }
my ($lo, $hi) = (log(64), log(131072));
for my $i (0 .. 1999) {
    my $d = sprintf('d%02d/s%d', int(($i % 100) / 5), $i % 5);
    my ($top) = split m{/}, $d;
    mkdir "$root/$top";
    mkdir "$root/$d";
    my $size = int(exp($lo + rand() * ($hi - $lo)));
    my $kind = $i % 4;
    if    ($kind <= 1) { put(sprintf('%s/f%04d.txt', $d, $i), text($size)) }
    elsif ($kind == 2) { put(sprintf('%s/f%04d.bin', $d, $i), rnd($size)) }
    else               { put(sprintf('%s/f%04d.dat', $d, $i), mixed($size)) }
}
mkdir "$root/big";
my $r = rnd(4 << 20);
put('big/log-4m.txt', text(4 << 20));
put('big/random-4m.bin', $r);
put('big/random-4m-copy.bin', $r);
put('big/mixed-4m.dat', mixed(4 << 20));
put('d00/s0/empty', '');
mkdir "$root/emptydir";
PERL
    )
    find "$dir" -exec touch -h -d @1704067200 {} +
}

# --------------------------------------------------------------------------
# Deterministic ~1% modification: every 100th regular file (C-locale sorted
# relative paths, indexes 0, 100, 200, ...) gets 4 KiB of pseudo-random bytes
# (seeded by its index) appended, and its mtime set to now.
# --------------------------------------------------------------------------
modify_one_percent() {
    (cd "$SCRATCH" && find . -type f -print0 | LC_ALL=C sort -z) | perl -e '
        use strict; use warnings;
        $/ = "\0"; my $i = 0; my @mod; my $root = shift;
        while (my $p = <STDIN>) {
            chomp $p;
            if ($i % 100 == 0) {
                srand($i + 1);
                open(my $fh, ">>:raw", "$root/$p") or die "$p: $!";
                print $fh pack("L*", map { int rand 4294967296 } 1 .. 1024);
                close($fh) or die "$p: $!";
                push @mod, "$root/$p";
            }
            $i++;
        }
        utime(undef, undef, @mod) == @mod or die "utime: $!";
        print scalar(@mod), " ", $i, "\n";
    ' "$SCRATCH"
}

# --------------------------------------------------------------------------
# Tool commands. Sets CMD (array) and CWD for tool $1, step $2.
# Steps: init backup1 backup2 backup3 restore
# --------------------------------------------------------------------------
borg_archive() { case "$1" in backup1) echo bench-1-initial ;; backup2) echo bench-2-unchanged ;; backup3) echo bench-3-changed ;; esac; }

tool_cmd() {
    local tool=$1 step=$2 repo=$REPOS/$1 target=$RESTORES/$1
    CWD=$BENCH_OUT
    case "$tool:$step" in
        kura:init)      CMD=("$KURA_BIN" --repo "$repo" init) ;;
        kura:backup*)   CMD=("$KURA_BIN" --repo "$repo" backup "$SCRATCH") ;;
        kura:restore)   CMD=("$KURA_BIN" --repo "$repo" restore latest --target "$target") ;;
        restic:init)    CMD=(restic -r "$repo" --cache-dir "$CACHES/restic" init --repository-version 2) ;;
        restic:backup*) CMD=(restic -r "$repo" --cache-dir "$CACHES/restic" --compression auto backup "$SCRATCH") ;;
        restic:restore) CMD=(restic -r "$repo" --cache-dir "$CACHES/restic" restore latest --target "$target") ;;
        borg:init)      CMD=(borg init --encryption=repokey-blake2 "$repo") ;;
        borg:backup*)   CMD=(borg create --compression zstd,3 "$repo::$(borg_archive "$step")" "$SCRATCH") ;;
        borg:restore)   CMD=(borg extract "$repo::$(borg_archive backup3)"); CWD=$target ;;
        rustic:init)    CMD=(rustic -r "$repo" --cache-dir "$CACHES/rustic" init --set-compression 3) ;;
        rustic:backup*) CMD=(rustic -r "$repo" --cache-dir "$CACHES/rustic" backup "$SCRATCH") ;;
        rustic:restore) CMD=(rustic -r "$repo" --cache-dir "$CACHES/rustic" restore latest "$target") ;;
        borg2:init)     CMD=("${BORG2[@]}" -r "$repo" rcreate --encryption=repokey-blake2-chacha20-poly1305) ;;
        borg2:backup*)  CMD=("${BORG2[@]}" -r "$repo" create --compression zstd,3 "$(borg_archive "$step")" "$SCRATCH") ;;
        borg2:restore)  CMD=("${BORG2[@]}" -r "$repo" extract "$(borg_archive backup3)"); CWD=$target ;;
        # The ceiling: every byte read, compressed at the same level, and written once (no
        # chunking, no hashing, no encryption); each backup is a whole new archive.
        tar:init)       CMD=(mkdir -p "$repo") ;;
        tar:backup*)    CMD=(sh -c 'tar -C / -cf - "$1" | zstd -3 -T2 -q -o "$2"' tar "${SCRATCH#/}" "$repo/$step.tar.zst") ;;
        tar:restore)    CMD=(sh -c 'zstd -d -T2 -q -c "$1" | tar -xf -' tar "$repo/backup3.tar.zst"); CWD=$target ;;
        *) die "internal: no command for $tool $step" ;;
    esac
}

declare -A R=()        # R[tool:step:metric]
declare -A CMDLINE=()  # CMDLINE[tool:step] for the report

run_timed() {
    local tool=$1 step=$2
    tool_cmd "$tool" "$step"
    local logf=$LOGS/$tool-$step.log timef=$LOGS/$tool-$step.time
    CMDLINE[$tool:$step]="(cd $CWD && $(shell_words "${CMD[@]}"))"
    sync   # flush earlier writes (other tools' repos, restores) outside the timed region
    log "$tool: $step"
    if ! (cd "$CWD" && /usr/bin/time -v -o "$timef" "${CMD[@]}" >"$logf" 2>&1 </dev/null); then
        printf '[bench] --- last lines of %s ---\n' "$logf" >&2
        tail -n 20 "$logf" >&2 || true
        die "$tool $step failed: $(printf '%q ' "${CMD[@]}") (log: $logf)"
    fi
    local wall rss cpu
    wall=$(awk -F': ' '/Elapsed \(wall clock\) time/ { n = split($NF, a, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + a[i]; printf "%.2f", s }' "$timef")
    rss=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $NF / 1024 }' "$timef")
    cpu=$(awk -F': ' '/User time \(seconds\)/ { u = $NF } /System time \(seconds\)/ { s = $NF } END { printf "%.2f", u + s }' "$timef")
    [[ -n $wall && -n $rss && -n $cpu ]] || die "could not parse $timef"
    R[$tool:$step:wall]=$wall
    R[$tool:$step:rss]=$rss
    R[$tool:$step:cpu]=$cpu
    printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$step" "$wall" "$rss" "$cpu" >>"$RESULTS_TSV"
    log "$tool: $step: ${wall} s wall, ${cpu} s CPU, ${rss} MiB peak RSS"
}

shell_words() {
    local out=() w
    for w in "$@"; do
        if [[ $w =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then out+=("$w"); else out+=("$(printf '%q' "$w")"); fi
    done
    printf '%s' "${out[*]}"
}

# Percentage of CPU time not idle over 2 seconds (whole machine).
cpu_busy_pct() {
    local a b
    a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
    sleep 2
    b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); busy = y[1] - x[1]; t = busy + y[2] - x[2];
        printf "%.0f", (t > 0 ? 100 * busy / t : 0) }'
}

mib_of() { du -sb "$1" | awk '{ printf "%.1f", $1 / 1048576 }'; }

# --------------------------------------------------------------------------
# Restore verification: content (diff -r, fatal) and metadata (type, mode,
# mtime to the second; reported, not fatal).
# --------------------------------------------------------------------------
manifest() { (cd "$1" && find . -printf '%y %m %T@ %P\n' | sed 's/^\([^ ]* [^ ]* [0-9]*\)\.[0-9]*/\1/' | LC_ALL=C sort); }

RESTORE_FAILED=()
verify_restore() {
    local tool=$1 restored=$RESTORES/$1/${SCRATCH#/}
    if [[ ! -d $restored ]]; then
        log "$tool: restore MISMATCH: $restored does not exist (contents of $RESTORES/$tool:"
        find "$RESTORES/$tool" -maxdepth 6 -type d 2>&1 | head -n 20 >&2 || true
        R[$tool:verify]=MISSING; RESTORE_FAILED+=("$tool"); return 0
    fi
    if diff -r --no-dereference "$SCRATCH" "$restored" >"$LOGS/$tool-verify.diff" 2>&1; then
        R[$tool:verify]=ok
    else
        log "$tool: restore MISMATCH (content), see $LOGS/$tool-verify.diff:"
        head -n 10 "$LOGS/$tool-verify.diff" >&2
        R[$tool:verify]=MISMATCH; RESTORE_FAILED+=("$tool"); return 0
    fi
    if ! diff <(manifest "$SCRATCH") <(manifest "$restored") >"$LOGS/$tool-verify-meta.diff"; then
        local n; n=$(grep -c '^<' "$LOGS/$tool-verify-meta.diff" || true)
        log "$tool: content ok, but metadata (mode/mtime) differs for $n entries, see $LOGS/$tool-verify-meta.diff"
        R[$tool:verify]="ok (metadata differs: $n)"
    else
        R[$tool:verify]=ok
    fi
    log "$tool: restore verified: ${R[$tool:verify]}"
}

tool_version() {
    case "$1" in
        kura)   "$KURA_BIN" --version 2>&1 | head -n 1 ;;
        restic) restic version 2>&1 | head -n 1 ;;
        borg)   borg --version 2>&1 | head -n 1 ;;
        rustic) rustic --version 2>&1 | head -n 1 ;;
        borg2)  borg2 --version 2>&1 | head -n 1 ;;
        tar)    printf '%s, %s' "$(tar --version | head -n 1)" "$(zstd --version)" ;;
    esac
}

# --------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}

render_table() {
    local cols=() t
    for t in "${ALL_TOOLS[@]}"; do if want "$t"; then cols+=("$t"); fi; done
    local ratios=()
    for t in restic rustic borg borg2 tar; do if want kura && want "$t"; then ratios+=("$t"); fi; done
    {
        local h="step\tmetric"
        for t in "${cols[@]}"; do h+="\t$t"; done
        for t in "${ratios[@]}"; do h+="\tkura/$t"; done
        printf '%b\n' "$h"
        local row step label metric mlabel key v line
        for row in "init:Init" "backup1:Initial backup" "backup2:Unchanged re-backup" \
                   "backup3:Re-backup after 1% change" "restore:Full restore"; do
            step=${row%%:*}; label=${row#*:}
            for metric in wall rss cpu; do
                [[ $step == init && $metric != wall ]] && continue
                case $metric in wall) mlabel="wall s" ;; rss) mlabel="peak RSS MiB" ;; cpu) mlabel="CPU s (user+sys)" ;; esac
                line="$label\t$mlabel"
                for t in "${cols[@]}"; do line+="\t${R[$t:$step:$metric]:--}"; done
                for t in "${ratios[@]}"; do line+="\t$(ratio "${R[kura:$step:$metric]:-}" "${R[$t:$step:$metric]:-}")"; done
                printf '%b\n' "$line"
            done
        done
        for row in "repo1:Repo size after initial backup" "repo3:Repo size after last backup" \
                   "cache:Client cache/state size"; do
            key=${row%%:*}; label=${row#*:}
            line="$label\tMiB"
            for t in "${cols[@]}"; do line+="\t${R[$t:$key]:--}"; done
            for t in "${ratios[@]}"; do line+="\t$(ratio "${R[kura:$key]:-}" "${R[$t:$key]:-}")"; done
            printf '%b\n' "$line"
        done
        line="Restore verified\t"
        for t in "${cols[@]}"; do line+="\t${R[$t:verify]:--}"; done
        for t in "${ratios[@]}"; do line+="\t"; done
        printf '%b\n' "$line"
    } | awk -F'\t' '
        { for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } if (NF > nf) nf = NF; n = NR }
        END {
            for (r = 1; r <= n; r++) {
                line = "|"
                for (i = 1; i <= nf; i++) line = line sprintf(i <= 2 ? " %-*s |" : " %*s |", w[i], c[r, i])
                print line
                if (r == 1) {
                    line = "|"
                    for (i = 1; i <= nf; i++) { d = ""; for (k = 0; k < w[i]; k++) d = d "-"; line = line " " (i <= 2 ? d : substr(d, 2) ":") " |" }
                    print line
                }
            }
        }'
}

# ==========================================================================
# Main
# ==========================================================================
install_deps
if want kura; then resolve_kura; fi

log "output directory: $BENCH_OUT"
rm -rf -- "$SCRATCH" "$REPOS" "$CACHES" "$RESTORES" "$LOGS"
rm -f -- "$RESULTS_MD" "$RESULTS_TSV"
mkdir -p "$REPOS" "$RESTORES" "$LOGS"
for t in "${TOOLS[@]}"; do mkdir -p "$CACHES/$t"; done
printf 'tool\tstep\twall_s\tpeak_rss_mib\tcpu_s\n' >"$RESULTS_TSV"

# Passwords and per-tool caches/state, all under BENCH_OUT. Clear variables
# that could point a tool elsewhere or change its settings.
unset RUSTIC_REPOSITORY RUSTIC_PASSWORD_FILE RUSTIC_PASSWORD_COMMAND RUSTIC_CACHE_DIR \
      RESTIC_REPOSITORY RESTIC_REPOSITORY_FILE RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND \
      RESTIC_COMPRESSION RESTIC_PACK_SIZE RESTIC_CACHE_DIR RESTIC_KEY_HINT RESTIC_READ_CONCURRENCY \
      BORG_REPO BORG_PASSCOMMAND BORG_PASSPHRASE_FD BORG_KEYS_DIR BORG_SECURITY_DIR BORG_CONFIG_DIR \
      BORG_FILES_CACHE_TTL BORG_FILES_CACHE_SUFFIX BORG_KEY_FILE \
      KURA_REPO KURA_PASSWORD_FILE KURA_RECOVERY_CODE KURA_RECOVERY_CODE_FILE KURA_THREADS \
      KURA_INSECURE_FAST_KDF KURA_CONFIG
export RESTIC_PASSWORD=$PASSWORD
export BORG_PASSPHRASE=$PASSWORD BORG_DISPLAY_PASSPHRASE=no
export BORG_BASE_DIR=$CACHES/borg BORG_CACHE_DIR=$CACHES/borg/cache
# borg 2 reads the same variables: it gets its own directories.
BORG2=(env "BORG_BASE_DIR=$CACHES/borg2" "BORG_CACHE_DIR=$CACHES/borg2/cache" borg2)
export RUSTIC_PASSWORD=$PASSWORD
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export KURA_PASSWORD=$PASSWORD KURA_STATE_DIR=$CACHES/kura
# An empty config file, so a user's ~/.config/kura/config.toml (excludes, threads) cannot apply.
: >"$BENCH_OUT/kura-config.toml"
export KURA_CONFIG=$BENCH_OUT/kura-config.toml

declare -A VERSION=()
for t in "${TOOLS[@]}"; do VERSION[$t]=$(tool_version "$t"); log "$t: ${VERSION[$t]}"; done

# Data set: a private copy, so that the 1% modification never touches DATA_DIR.
if [[ $BENCH_SMALL == 1 ]]; then
    DATA_DESC="generated (BENCH_SMALL=1)"
    log "generating small data set in $SCRATCH"
    generate_small "$SCRATCH"
else
    DATA_DESC=$DATA_DIR
    log "copying $DATA_DIR to $SCRATCH"
    mkdir -p "$SCRATCH"
    cp -a -- "$DATA_DIR/." "$SCRATCH/"
fi
sync
FILE_COUNT=$(find "$SCRATCH" -type f | wc -l)
DIR_COUNT=$(find "$SCRATCH" -type d | wc -l)
DATA_BYTES=$(find "$SCRATCH" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }')
DATA_MIB=$(awk -v b="$DATA_BYTES" 'BEGIN { printf "%.1f", b / 1048576 }')
log "data set: $FILE_COUNT files, $DIR_COUNT directories, $DATA_MIB MiB"

# Warm the page cache once, before the first tool runs (tar reads every file;
# piping through cat stops GNU tar from skipping the reads for /dev/null).
log "warming the page cache"
tar -C "$SCRATCH" -cf - . | cat >/dev/null

# Other work on the machine skews every timing: measure and report it.
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
BUSY_START=$(cpu_busy_pct)
if awk -v b="$BUSY_START" 'BEGIN { exit !(b + 0 > 20) }'; then
    log "warning: the CPUs are ${BUSY_START}% busy with other work before the first tool; timings will be skewed"
fi

for t in "${TOOLS[@]}"; do run_timed "$t" init; done
for t in "${TOOLS[@]}"; do run_timed "$t" backup1; R[$t:repo1]=$(mib_of "$REPOS/$t"); done
for t in "${TOOLS[@]}"; do run_timed "$t" backup2; done

log "modifying ~1% of the files"
MOD_OUT=$(modify_one_percent)
read -r MODIFIED TOTAL <<<"$MOD_OUT"
log "appended 4 KiB to $MODIFIED of $TOTAL files"
sync

for t in "${TOOLS[@]}"; do run_timed "$t" backup3; done
for t in "${TOOLS[@]}"; do
    R[$t:repo3]=$(mib_of "$REPOS/$t")
    R[$t:cache]=$(mib_of "$CACHES/$t")
done

# Snapshot listings, for the record (not timed).
for t in "${TOOLS[@]}"; do
    case $t in
        kura)   "$KURA_BIN" --repo "$REPOS/kura" snapshots --json >"$LOGS/kura-snapshots.json" 2>"$LOGS/kura-snapshots.err" </dev/null \
                    || die "kura snapshots --json failed, see $LOGS/kura-snapshots.err" ;;
        restic) restic -r "$REPOS/restic" --cache-dir "$CACHES/restic" snapshots >"$LOGS/restic-snapshots.txt" 2>&1 </dev/null \
                    || die "restic snapshots failed, see $LOGS/restic-snapshots.txt" ;;
        rustic) rustic -r "$REPOS/rustic" --cache-dir "$CACHES/rustic" snapshots >"$LOGS/rustic-snapshots.txt" 2>&1 </dev/null \
                    || die "rustic snapshots failed, see $LOGS/rustic-snapshots.txt" ;;
        borg2)  borg2 -r "$REPOS/borg2" rlist >"$LOGS/borg2-snapshots.txt" 2>&1 </dev/null \
                    || die "borg2 rlist failed, see $LOGS/borg2-snapshots.txt" ;;
        tar)    ls -l "$REPOS/tar" >"$LOGS/tar-snapshots.txt" ;;
        borg)   borg list "$REPOS/borg" >"$LOGS/borg-snapshots.txt" 2>&1 </dev/null \
                    || die "borg list failed, see $LOGS/borg-snapshots.txt" ;;
    esac
done

# Restored trees stay until every tool has restored: on ext4 without a journal, creating
# files just after deleting as many costs far more system time (the allocator skips the
# recently deleted inodes), which would fall on whichever tool came after a deletion.
for t in "${TOOLS[@]}"; do
    rm -rf -- "${RESTORES:?}/$t"
    mkdir -p "$RESTORES/$t"
    run_timed "$t" restore
    verify_restore "$t"
done
for t in "${TOOLS[@]}"; do
    if [[ ${BENCH_KEEP_RESTORE:-0} != 1 && ${R[$t:verify]} == ok* ]]; then rm -rf -- "${RESTORES:?}/$t"; fi
done

# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
TABLE=$(render_table)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
MEM=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null || true)
{
    echo "# Kura backup benchmark"
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- Machine: $(nproc) CPUs (${CPU_MODEL:-unknown CPU}), ${MEM:-unknown} memory, $(uname -sr)"
    echo "- Other load: CPUs ${BUSY_START}% busy just before the first tool; load average (1/5/15 min) $LOAD_START then, $LOAD_END at the end"
    echo "- Data set: $DATA_DESC — $FILE_COUNT files, $DIR_COUNT directories, $DATA_MIB MiB ($DATA_BYTES bytes)"
    echo "- Change step: 4 KiB appended to $MODIFIED of $TOTAL files (every 100th in sorted order), mtime set to now"
    for t in "${ALL_TOOLS[@]}"; do if want "$t"; then echo "- $t: ${VERSION[$t]}"; fi; done
    echo
    echo "$TABLE"
    echo
    echo "Wall and CPU times from \`/usr/bin/time -v\` (CPU = user + system); peak RSS = \"Maximum resident set size\";"
    echo "sizes from \`du -sb\` (MiB = 2^20 bytes). Ratios are Kura's value divided by the other tool's (below 1 = Kura smaller/faster)."
    echo "Page cache warmed once before the first tool; \`sync\` before every timed step. Tool order within each phase: ${TOOLS[*]}."
    echo
    echo "## Commands"
    echo
    for t in "${ALL_TOOLS[@]}"; do
        want "$t" || continue
        for s in init backup1 backup2 backup3 restore; do echo "- $t $s: \`${CMDLINE[$t:$s]}\`"; done
    done
} >"$RESULTS_MD"

echo
echo "Data set: $DATA_DESC — $FILE_COUNT files, $DATA_MIB MiB; $(nproc) CPUs, ${MEM:-?}"
echo
echo "$TABLE"
echo
log "results written to $RESULTS_MD and $RESULTS_TSV; logs in $LOGS"

if [[ ${#RESTORE_FAILED[@]} -gt 0 ]]; then
    die "restore did not match the data for: ${RESTORE_FAILED[*]}"
fi
