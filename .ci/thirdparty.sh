#!/usr/bin/env bash
# Other crates' own test suites with parena's GlobalArena as their global allocator (issue 17).
#
# Each published package is fetched from crates.io with plain cargo (a scratch crate that depends
# on it, `cargo fetch`), copied out of ~/.cargo/registry/src to a temp dir, and given one line:
# `extern crate parena_tp;` (under `#[cfg(test)]` in lib.rs, and in each integration test file).
# `parena_tp` is a small generated crate whose only content is the `#[global_allocator]` static
# (`parena::GlobalArena::new(CAPACITY, Freelist::POLICY)`) plus an exit hook that appends the
# binary's peak RSS (VmHWM), `fallbacks()` and arena stats to a report file; the system-allocator
# run wraps `std::alloc::System` in the same allocator and hook. Each suite runs four times: on the
# system allocator, on a large arena (4 GiB, fallbacks near zero) with each free-list policy
# (`large`: Optimistic, `large-best`: Pessimistic, best fit) and on a 16 MiB arena (free lists,
# coalescing and the system fallback all run). Every `cargo test` runs
# under `timeout`; a hang or an abort fails the script.
#
# Usage: .ci/thirdparty.sh [crate-version ...]   (default: the four below)
# Env: PARENA_TP_TIMEOUT (seconds per suite run, default 600), PARENA_TP_DIR (keep the work dir).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
crates=("$@")
if [ ${#crates[@]} -eq 0 ]; then
    crates=(hashbrown-0.15.5 indexmap-2.14.2 regex-syntax-0.8.11 crossbeam-skiplist-0.1.3)
fi
limit="${PARENA_TP_TIMEOUT:-600}"
work="${PARENA_TP_DIR:-$(mktemp -d)}"
mkdir -p "$work"
export CARGO_TARGET_DIR="$work/target"
# Published packages are built as the root crate here, so their lints apply; a newer compiler's
# deny-by-default lints (crossbeam-skiplist 0.1.3 meets one) must not stop the build.
export RUSTFLAGS="${RUSTFLAGS:-} --cap-lints=warn"
echo "work dir: $work"

# 1. Fetch the packages with cargo.
mkdir -p "$work/fetch/src"
{
    echo '[package]'
    echo 'name = "parena-tp-fetch"'
    echo 'version = "0.0.0"'
    echo 'edition = "2021"'
    echo '[workspace]'
    echo '[dependencies]'
    for c in "${crates[@]}"; do echo "${c%-*} = \"=${c##*-}\""; done
} >"$work/fetch/Cargo.toml"
echo >"$work/fetch/src/lib.rs"
(cd "$work/fetch" && cargo fetch -q)

# 2. The allocator crate, one variant per run.
write_tp() { # $1 = capacity in bytes, 0 = the system allocator; $2 = the free-list policy
    mkdir -p "$work/tp/src"
    cat >"$work/tp/Cargo.toml" <<TOML
[package]
name = "parena_tp"
version = "0.0.0"
edition = "2021"
[dependencies]
parena = { path = "$root" }
TOML
    # Both variants wrap their allocator in the same `Tp` with the same exit hook, so the system
    # run is the baseline for wall time and for the process's peak RSS (VmHWM at exit).
    if [ "$1" = 0 ]; then
        ty='std::alloc::System'
        backend='std::alloc::System'
        stats='String::new()'
    else
        ty='parena::GlobalArena'
        backend="parena::GlobalArena::new($1, parena::Freelist::$2)"
        stats='{ let s = ARENA.arena().map(|a| a.stats()); format!(" fallbacks={} allocations={} from_freelist={} from_cache={} coalesced={} failures={}",
        ARENA.fallbacks(), s.map_or(0, |s| s.allocations), s.map_or(0, |s| s.from_freelist),
        s.map_or(0, |s| s.from_cache), s.map_or(0, |s| s.coalesced), s.map_or(0, |s| s.failures)) }'
    fi
    cat >"$work/tp/src/lib.rs" <<RS
//! The global allocator of a third-party test binary ($1 bytes of parena's GlobalArena; 0: the
//! system allocator), and an exit hook that records what the run used.
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering};

static ARENA: $ty = $backend;
static HOOKED: AtomicBool = AtomicBool::new(false);

extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

extern "C" fn report() {
    use std::io::Write;
    let Ok(path) = std::env::var("PARENA_TP_REPORT") else { return };
    let exe = std::env::current_exe().ok().and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned())).unwrap_or_default();
    let stats: String = $stats;
    let line = format!("{exe} peak_rss_kib={}{stats}\n", peak_rss_kib());
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).create(true).open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}

pub struct Tp;

unsafe impl GlobalAlloc for Tp {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if !HOOKED.swap(true, Ordering::Relaxed) {
            unsafe { atexit(report) };
        }
        unsafe { ARENA.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { ARENA.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        unsafe { ARENA.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Tp = Tp;
RS
}

# 3. Copy each package and add the line.
reg="$(ls -d "$HOME"/.cargo/registry/src/*/ | sed -n 1p)"
for c in "${crates[@]}"; do
    rm -rf "$work/$c"
    cp -r "$reg/$c" "$work/$c"
    chmod -R u+w "$work/$c"
    printf '\n[dev-dependencies.parena_tp]\npath = "%s"\n' "$work/tp" >>"$work/$c/Cargo.toml"
    grep -q '^\[workspace\]' "$work/$c/Cargo.toml" || printf '\n[workspace]\n' >>"$work/$c/Cargo.toml"
    printf '\n#[cfg(test)]\nextern crate parena_tp;\n' >>"$work/$c/src/lib.rs"
    for t in "$work/$c"/tests/*.rs; do
        [ -e "$t" ] && printf '\nextern crate parena_tp;\n' >>"$t"
    done
done

# 4. Run: system, large arena, 16 MiB arena.
summary="$work/summary.txt"
: >"$summary"
status=0
for run in system:0:- large:4294967296:Optimistic large-best:4294967296:Pessimistic \
    small:16777216:Optimistic; do
    name="${run%%:*}"
    spec="${run#*:}"
    write_tp "${spec%%:*}" "${spec#*:}"
    for c in "${crates[@]}"; do
        log="$work/$c.$name.log"
        report="$work/$c.$name.report"
        rm -f "$report"
        (cd "$work/$c" && cargo test -q --lib --tests --no-run >/dev/null 2>&1) || {
            echo "$c $name: build failed (see: cd $work/$c && cargo test --no-run)" | tee -a "$summary"
            status=1
            continue
        }
        t0=$(date +%s.%N)
        rc=0
        (cd "$work/$c" && PARENA_TP_REPORT="$report" timeout "$limit" cargo test -q --lib --tests >"$log" 2>&1) || rc=$?
        t1=$(date +%s.%N)
        passed=$(grep -o '[0-9]* passed' "$log" | awk '{s += $1} END {print s + 0}')
        failed=$(grep -o '[0-9]* failed' "$log" | awk '{s += $1} END {print s + 0}')
        fb=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^fallbacks=/) {split($i, a, "="); s += a[2]}} END {print s + 0}' "$report" 2>/dev/null || echo 0)
        coal=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^coalesced=/) {split($i, a, "="); s += a[2]}} END {print s + 0}' "$report" 2>/dev/null || echo 0)
        # The suite's peak: the largest peak RSS of its test binaries (each a process).
        rss=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^peak_rss_kib=/) {split($i, a, "="); if (a[2] > m) m = a[2]}} END {print m + 0}' "$report" 2>/dev/null || echo 0)
        line=$(printf '%-26s %-10s rc=%-3s passed=%-5s failed=%-3s fallbacks=%-8s coalesced=%-8s peak_rss=%-7s wall=%.1fs' \
            "$c" "$name" "$rc" "$passed" "$failed" "$fb" "$coal" "$((rss / 1024))MiB" "$(echo "$t1 - $t0" | bc)")
        echo "$line" | tee -a "$summary"
        if [ "$rc" != 0 ]; then
            status=1
            tail -20 "$log"
        fi
    done
done
echo "summary: $summary"
exit $status
