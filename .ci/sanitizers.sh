#!/usr/bin/env bash
# The stress and concurrency tests under ThreadSanitizer and AddressSanitizer (nightly,
# -Zbuild-std so that std is instrumented too). Bounded: only the multi-thread tests run, each
# sanitizer's test binary under a time limit (SANITIZER_TIMEOUT, default 600 s).
# Usage: .ci/sanitizers.sh [thread|address]...   (default: both)
# Prints clearly when it skips and why.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
limit="${SANITIZER_TIMEOUT:-600}"
host="$(rustc -vV | sed -n 's/^host: //p')"
# The multi-thread tests (test-name filters of the `all` binary).
filters=(stress_ two_threads_never_overlap thread_cache_reuses memtable_ wal_replays_every)

if [ "$host" != "x86_64-unknown-linux-gnu" ]; then
    echo "sanitizers: SKIPPED: set up for x86_64-unknown-linux-gnu only (host is $host)"
    exit 0
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "sanitizers: SKIPPED: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep '^rust-src' >/dev/null; then
    echo "sanitizers: rust-src is missing (needed by -Zbuild-std); trying to add it"
    if ! rustup component add --toolchain nightly rust-src; then
        echo "sanitizers: SKIPPED: rust-src is not available"
        exit 0
    fi
fi

sans=("$@")
[ ${#sans[@]} -eq 0 ] && sans=(thread address)
for san in "${sans[@]}"; do
    s0=$(date +%s)
    echo "sanitizers: $san"
    # Each sanitizer gets its own target directory: the flags differ, so nothing is shared.
    export CARGO_TARGET_DIR="${SANITIZER_TARGET_DIR:-target/sanitizers}/$san"
    export RUSTFLAGS="-Zsanitizer=$san"
    export RUSTDOCFLAGS="-Zsanitizer=$san"
    case "$san" in
        # Report every race, then fail; keep going after the first so one run shows them all.
        thread) export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=0 second_deadlock_stack=1}" ;;
        address) export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" ;;
        *) echo "sanitizers: unknown sanitizer $san"; exit 2 ;;
    esac
    bin=$(cargo +nightly test -Zbuild-std --target "$host" --test all --no-run 2>&1 \
        | tee /dev/stderr | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -n 1)
    if [ -z "$bin" ]; then
        echo "sanitizers: $san FAILED: the test binary was not built"
        exit 1
    fi
    # The binary itself runs under the time limit, so a hang is killed, not left behind.
    timeout -k 10 "$limit" "$bin" "${filters[@]}"
    echo "sanitizers: $san done in $(( $(date +%s) - s0 )) s"
done
echo "sanitizers: done in $(( $(date +%s) - start )) s"
