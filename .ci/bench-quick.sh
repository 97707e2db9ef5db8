#!/usr/bin/env bash
# Quick check for CI: every bench builds and runs each case once (criterion's `--test` mode) with
# shrunken sizes (`PARENA_BENCH_QUICK=1`). The full suite is `cargo bench -p parena-benches`
# (see docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PARENA_BENCH_QUICK=1 cargo bench -p parena-benches --benches -- --test "$@"
