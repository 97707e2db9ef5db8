//! The first-program view of the bump path: what a user's first loop sees, beside the peer in the
//! same process. Not a criterion group: each run makes a **fresh** arena (page faults and all),
//! allocates `N` blocks of 32 B in one loop and writes each block's 32 bytes, then drops the
//! arena; the contenders take turns (A B C A B C ...) for `ROUNDS` rounds and the medians are
//! compared. The criterion group `alloc` measures the steady state instead (memory touched
//! before, batches, results pushed into a vector); both views are in docs/performance.md.
//!
//! Contenders, each on a fresh buffer of the same capacity every run:
//! - `parena`: a heap arena, `alloc(32)`, the 32 bytes written through the `BlockMut`, dropped
//!   (published), its handle kept in a local (`black_box`).
//! - `rarena`: `rarena-allocator` 0.6 (`sync::Arena`), `alloc_bytes(32)`, the 32 bytes written,
//!   detached, its offset kept in a local.
//! - `floor`: a shared `AtomicUsize::fetch_add` over a buffer touched before the run (so it pays no
//!   page fault): the least any shared bump allocator can cost per block.
//!
//! With 2 threads each thread does half of the blocks on the same arena after a barrier; the time
//! is wall time per block, from the barrier to the last join. Prints ns per block (median, min,
//! max) and the ratios of the medians. `PARENA_FIRST_N` sets the blocks (default 4,194,304),
//! `PARENA_FIRST_ROUNDS` the rounds (default 5).
//!
//! Run: `cargo bench -p parena-benches --bench first_program`.

// Not the library: std's atomics and `Arc` are fine here (see clippy.toml).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use rarena_allocator::{Allocator as _, Buffer as _};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::Instant;

const LEN: usize = 32;
const FILL: u8 = 0xA5;

/// One contender's run: `(blocks, threads)` to ns per block.
type Run = fn(usize, usize) -> f64;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Capacity that holds `n` blocks of `LEN` bytes with their headers and chunk tails, in MiB.
fn capacity(n: usize) -> usize {
    let bytes = n * (LEN + 16) + (64 << 20);
    bytes.div_ceil(1 << 20) << 20
}

/// Runs `f(i)` for `i` in `0..n`, split over `threads` threads that start together; returns the
/// wall time in ns per block: from the first thread's start to the last thread's end, each read
/// by the worker itself (so a descheduled main thread cannot shorten or stretch it).
fn timed(n: usize, threads: usize, f: impl Fn(usize) + Sync) -> f64 {
    let barrier = Barrier::new(threads);
    let per = n / threads;
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in t * per..(t + 1) * per {
                        f(i);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect()
    });
    let start = spans.iter().map(|s| s.0).min().expect("a thread");
    let end = spans.iter().map(|s| s.1).max().expect("a thread");
    (end - start).as_nanos() as f64 / (per * threads) as f64
}

fn parena_run(n: usize, threads: usize) -> f64 {
    let arena = parena::Options::new()
        .capacity(capacity(n) as u64)
        .heap()
        .expect("heap arena");
    let t = timed(n, threads, |_| {
        let mut b = arena.alloc(LEN).expect("room");
        b.fill(FILL);
        let _kept = black_box(b.into_handle());
    });
    drop(arena);
    t
}

fn rarena_run(n: usize, threads: usize) -> f64 {
    let arena = rarena_allocator::Options::new()
        .with_capacity(capacity(n) as u32)
        .alloc::<rarena_allocator::sync::Arena>()
        .expect("rarena arena");
    let t = timed(n, threads, |_| {
        let mut m = arena.alloc_bytes(LEN as u32).expect("room");
        let p = m.as_mut_ptr();
        // SAFETY: `p..p + LEN` is the block the arena just handed out (in bounds, ours alone
        // while `m` lives).
        unsafe { std::ptr::write_bytes(p, FILL, LEN) };
        black_box(m.offset());
        // SAFETY: the block is not used after the arena is dropped: only its offset escapes.
        unsafe { m.detach() };
    });
    drop(arena);
    t
}

fn floor_run(n: usize, threads: usize) -> f64 {
    let cap = capacity(n);
    let mut buf = vec![0u8; cap];
    buf.fill(1); // touched before the run: the floor pays no page fault
    let base = buf.as_mut_ptr() as usize;
    let next = AtomicUsize::new(0);
    timed(n, threads, |_| {
        let off = next.fetch_add(LEN, Ordering::Relaxed);
        assert!(off + LEN <= cap);
        // SAFETY: `off..off + LEN` is inside `buf` and handed to this call alone by the
        // `fetch_add`.
        unsafe { std::ptr::write_bytes((base + off) as *mut u8, FILL, LEN) };
        black_box(off);
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once, small.
    let testing =
        std::env::args().any(|a| a == "--test") || std::env::var_os("PARENA_BENCH_QUICK").is_some();
    let n = env_or("PARENA_FIRST_N", if testing { 1 << 16 } else { 1 << 22 });
    let rounds = env_or("PARENA_FIRST_ROUNDS", if testing { 1 } else { 5 });
    println!("first_program: {n} blocks of {LEN} B written, fresh arena each run, {rounds} rounds, alternating");
    for threads in [1, 2] {
        let runs: [(&str, Run); 3] = [
            ("parena", parena_run),
            ("rarena", rarena_run),
            ("floor", floor_run),
        ];
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (k, (_, run)) in runs.iter().enumerate() {
                times[k].push(run(n, threads));
            }
        }
        let mut med = [0.0; 3];
        for (k, (name, _)) in runs.iter().enumerate() {
            let (lo, hi) = times[k]
                .iter()
                .fold((f64::MAX, 0.0f64), |(a, b), &t| (a.min(t), b.max(t)));
            med[k] = median(&mut times[k]);
            println!(
                "  {threads} thread(s) {name:>6}: median {:6.2} ns/block (min {lo:.2}, max {hi:.2})",
                med[k]
            );
        }
        println!(
            "  {threads} thread(s) parena / rarena {:.2}, parena / floor {:.2}",
            med[0] / med[1],
            med[0] / med[2]
        );
    }
}
