#!/usr/bin/env bash
# The loom models of the lock-free free lists (tests/loom.rs), with a bounded number of
# preemptions per interleaving (default 3). Override with LOOM_MAX_PREEMPTIONS=N. Two models
# (`coalesce_races_pop_and_push`, whose pass relinks its chain through the segments' headers, and
# `handle_check_races_a_merge`, which adds a carve) are held at 2 unless LOOM_FULL=1: at 3 the
# first alone has 1.8 million interleavings (five minutes on 2 cores).
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
