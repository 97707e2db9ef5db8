//! The classic allocator benchmarks on `GlobalArena` (issue 17), beside the system allocator, with
//! 1 and 2 threads. Both contenders are called the same way, through `GlobalAlloc` (this binary's
//! global allocator is a 1 GiB `GlobalArena`; `std::alloc::System` is called directly), so the
//! numbers compare the allocators and nothing else.
//!
//! - `threadtest`: each thread allocates a batch of 8-byte objects, writes one byte into each and
//!   frees them all, over and over (Ralloc's parameters are 10,000 rounds × 100,000 objects; here
//!   a batch is 100,000 objects, 1,000 in quick mode, and criterion picks the number of rounds).
//!   Time per allocate+free pair.
//! - `larson`: each thread owns 1,000 slots of blocks of 64–400 bytes (Ralloc's range); each
//!   operation frees a random slot's block and allocates a new one of random size in its place
//!   (in the original Larson the slots also move between threads; here they stay). Time per
//!   operation.
//!
//! With 2 threads the time is aggregate wall time per pair or operation. `PARENA_BENCH_QUICK=1`
//! shrinks the batches (used by `.ci/bench-quick.sh`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parena::{Freelist, GlobalArena};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Barrier;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: GlobalArena = GlobalArena::new(1 << 30, Freelist::Optimistic);

fn quick() -> bool {
    std::env::var_os("PARENA_BENCH_QUICK").is_some()
}

fn batch() -> usize {
    if quick() {
        1_000
    } else {
        100_000
    }
}

const LARSON_SLOTS: usize = 1_000;
const LARSON_MIN: usize = 64;
const LARSON_MAX: usize = 400;

/// A contender: the global arena or the system allocator, both through `GlobalAlloc`.
#[derive(Clone, Copy)]
enum Alloc {
    Parena,
    System,
}

impl Alloc {
    fn name(self) -> &'static str {
        match self {
            Alloc::Parena => "GlobalArena",
            Alloc::System => "system",
        }
    }

    #[inline]
    fn get(self) -> &'static dyn GlobalAlloc {
        match self {
            Alloc::Parena => &GLOBAL,
            Alloc::System => &System,
        }
    }
}

/// xorshift64*: every contender sees the same sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Runs `work(thread, iters)` on `threads` threads at once and returns the wall time.
fn on_threads(threads: usize, iters: u64, work: fn(Alloc, usize, u64), a: Alloc) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                work(a, t, iters);
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn threadtest(a: Alloc, _thread: usize, rounds: u64) {
    let g = a.get();
    let layout = Layout::new::<u64>();
    let mut ptrs = vec![std::ptr::null_mut::<u8>(); batch()];
    for _ in 0..rounds {
        for p in ptrs.iter_mut() {
            // SAFETY: a non-zero-sized layout.
            *p = unsafe { g.alloc(layout) };
            assert!(!p.is_null());
            // SAFETY: the block holds 8 bytes.
            unsafe { p.write(1) };
        }
        for &p in &ptrs {
            // SAFETY: allocated above by the same allocator with `layout`.
            unsafe { g.dealloc(p, layout) };
        }
    }
}

fn larson(a: Alloc, thread: usize, ops: u64) {
    let g = a.get();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (thread as u64 + 1));
    let size = |rng: &mut Rng| LARSON_MIN + (rng.next() as usize) % (LARSON_MAX - LARSON_MIN + 1);
    let mut slots: Vec<(*mut u8, Layout)> = (0..LARSON_SLOTS)
        .map(|_| {
            let l = Layout::from_size_align(size(&mut rng), 8).unwrap();
            // SAFETY: a non-zero-sized layout.
            (unsafe { g.alloc(l) }, l)
        })
        .collect();
    for _ in 0..ops {
        let i = (rng.next() as usize) % LARSON_SLOTS;
        let (p, l) = slots[i];
        // SAFETY: allocated by the same allocator with `l`.
        unsafe { g.dealloc(p, l) };
        let l = Layout::from_size_align(size(&mut rng), 8).unwrap();
        // SAFETY: a non-zero-sized layout.
        let p = unsafe { g.alloc(l) };
        assert!(!p.is_null());
        // SAFETY: the block holds at least 64 bytes.
        unsafe { p.write(1) };
        slots[i] = (p, l);
    }
    for (p, l) in slots {
        // SAFETY: as above.
        unsafe { g.dealloc(p, l) };
    }
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("threadtest");
    g.throughput(Throughput::Elements(batch() as u64));
    for threads in [1usize, 2] {
        for a in [Alloc::Parena, Alloc::System] {
            g.bench_with_input(BenchmarkId::new(a.name(), threads), &threads, |b, &t| {
                b.iter_custom(|rounds| on_threads(t, rounds, threadtest, a) / t as u32)
            });
        }
    }
    g.finish();
    let mut g = c.benchmark_group("larson");
    g.throughput(Throughput::Elements(1));
    for threads in [1usize, 2] {
        for a in [Alloc::Parena, Alloc::System] {
            g.bench_with_input(BenchmarkId::new(a.name(), threads), &threads, |b, &t| {
                b.iter_custom(|ops| on_threads(t, ops, larson, a) / t as u32)
            });
        }
    }
    g.finish();
    println!(
        "GlobalArena: {} fallbacks; {:?}",
        GLOBAL.fallbacks(),
        GLOBAL.arena().map(|a| a.stats())
    );
}

fn config() -> Criterion {
    let c = Criterion::default();
    if quick() {
        c.sample_size(10)
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300))
    } else {
        c
    }
}

criterion_group! {
    name = allocators;
    config = config();
    targets = benches
}
criterion_main!(allocators);
