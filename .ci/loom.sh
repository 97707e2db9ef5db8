#!/usr/bin/env bash
# The loom models of the lock-free free lists (tests/loom.rs), with a bounded number of
# preemptions per interleaving (default 3). Override with LOOM_MAX_PREEMPTIONS=N; on 2 cores the
# models take about 5 s at 2 and 25 s at 3, plus the build.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
export RUSTFLAGS="${RUSTFLAGS:-} --cfg parena_loom"
# Its own target directory: other RUSTFLAGS would otherwise rebuild the release artifacts the
# quickstart and the benches share.
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-target/loom}"
start=$(date +%s)
cargo test --release --test loom -- --nocapture "$@"
echo "loom models: $(( $(date +%s) - start )) s (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS, build included)"
