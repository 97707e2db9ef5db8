#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a bounded time (FUZZ_SECONDS, default
# 60) from its seed corpus. Needs a nightly toolchain; installs cargo-fuzz when it is missing.
# Prints clearly when it skips and why. A crash fails the script and leaves the input in
# fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-ops open_bytes freelist forge}"
start=$(date +%s)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: SKIPPED: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz is missing; installing it from crates.io"
    if ! cargo install cargo-fuzz --locked; then
        echo "fuzz: SKIPPED: cargo-fuzz could not be installed"
        exit 0
    fi
fi

# The drivers' smoke tests first (random inputs, stable, no libFuzzer): a wrong oracle shows here
# in seconds.
cargo test --lib --release

# Optimised, with debug assertions (cargo-fuzz's default) and AddressSanitizer.
cargo +nightly fuzz build
echo "fuzz: build took $(( $(date +%s) - start )) s"

for t in $targets; do
    mkdir -p "work/$t" "artifacts/$t"
    max_len=4096
    echo "fuzz: $t for ${secs}s"
    # The first directory collects new inputs (ignored by git); corpus/$t holds the seeds.
    set +e
    cargo +nightly fuzz run "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len="$max_len" -timeout=30 -rss_limit_mb=2048 \
        -print_final_stats=1 >"work/$t.log" 2>&1
    rc=$?
    set -e
    # A panic's message is on the line after "panicked at".
    grep -E -A1 '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|==[0-9]+==|thread .* panicked|SUMMARY)' \
        "work/$t.log" || true
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "work/$t.log"
        echo "fuzz: $t FAILED (exit $rc): inputs in fuzz/artifacts/$t/ (replay: cargo +nightly fuzz run $t <file>)"
        exit 1
    fi
done
echo "fuzz: done in $(( $(date +%s) - start )) s"
