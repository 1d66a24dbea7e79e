# Shared by the benchmark scripts: messages, and the Kura binary to measure.
# Expects REPO_ROOT to be set by the sourcing script.

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# Sets KURA_BIN: the given binary, or a fresh release build of this checkout.
resolve_kura() {
    if [[ -n ${KURA_BIN:-} ]]; then
        [[ -x $KURA_BIN ]] || die "KURA_BIN=$KURA_BIN is not an executable file"
    else
        command -v cargo >/dev/null || die "cargo not found: set KURA_BIN or install Rust"
        log "building kura: cargo build --release -p kura"
        (cd "$REPO_ROOT" && cargo build --release -p kura)
        local target=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
        [[ $target == /* ]] || target=$REPO_ROOT/$target
        KURA_BIN=$target/release/kura
        [[ -x $KURA_BIN ]] || die "build finished but $KURA_BIN is missing"
    fi
    KURA_BIN=$(cd "$(dirname "$KURA_BIN")" && pwd -P)/$(basename "$KURA_BIN")
}
