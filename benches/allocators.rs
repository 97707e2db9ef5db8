//! The classic allocator benchmarks on `GlobalArena` (issues 17 and 26), beside the system
//! allocator and `mimalloc`, with 1 and 2 threads. Every contender is called the same way, through
//! `GlobalAlloc` (this binary's global allocator is a 1 GiB `GlobalArena` with best fit, the policy
//! `GlobalArena::new` recommends; `std::alloc::System` and
//! `mimalloc::MiMalloc` are called directly), so the numbers compare the allocators and nothing
//! else. The contenders of one case run one after the other in the same process.
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
//! - `prodcons`: xmalloc's shape, 2 threads: one thread allocates blocks of 16–256 bytes in
//!   batches of 256 and hands each batch to the other, which frees them (every free is a
//!   cross-thread free). Time per block (allocate + free), wall time.
//!
//! With 2 threads the time is aggregate wall time per pair or operation.
//!
//! Before the groups, the `footprint` case (not a timing): a 4 GiB `GlobalArena` of its own
//! (called directly, not this binary's global allocator) serves 200 MiB of random 16–4096 B
//! blocks, which are then freed in random order, ten times; the arena's high-water mark (its heap
//! bytes reserved, `Stats::allocated`) is printed against the 200 MiB, with where its allocations
//! came from (`from_bump`, `from_cache`, `from_freelist`). After each group the global arena's
//! counters are printed the same way.
//!
//! `PARENA_BENCH_QUICK=1` shrinks the batches and the footprint case (used by
//! `.ci/bench-quick.sh`); `PARENA_BENCH_SKIP_FOOTPRINT=1` leaves the footprint case out. The
//! global arena is not reset between cases: run one case per process (a criterion filter such
//! as `threadtest/.*/2`) to measure each on an arena that starts empty, as docs/performance.md does.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parena::{Freelist, GlobalArena};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::mpsc::sync_channel;
use std::sync::Barrier;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: GlobalArena = GlobalArena::new(1 << 30, Freelist::Pessimistic);

/// The footprint case's arena: its own, so its high-water mark counts only that case.
static FOOTPRINT: GlobalArena = GlobalArena::new(4 << 30, Freelist::Pessimistic);

static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Mimalloc,
}

/// Every contender, in the order each case runs them.
const ALL: [Alloc; 3] = [Alloc::Parena, Alloc::System, Alloc::Mimalloc];

impl Alloc {
    fn name(self) -> &'static str {
        match self {
            Alloc::Parena => "GlobalArena",
            Alloc::System => "system",
            Alloc::Mimalloc => "mimalloc",
        }
    }

    #[inline]
    fn get(self) -> &'static (dyn GlobalAlloc + Sync) {
        match self {
            Alloc::Parena => &GLOBAL,
            Alloc::System => &System,
            Alloc::Mimalloc => &MIMALLOC,
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

/// Blocks per batch the producer hands over in `prodcons`.
const PRODCONS_BATCH: usize = 256;
/// Batches in flight between the two threads of `prodcons`.
const PRODCONS_RING: usize = 8;

/// One thread allocates `blocks` blocks of 16–256 bytes, in batches handed to a second thread that
/// frees them (addresses travel as `usize`). The batch buffers go round a ring, so handing them over allocates nothing. Returns
/// the wall time.
fn prodcons(a: Alloc, blocks: u64) -> Duration {
    let g = a.get();
    let (full_tx, full_rx) = sync_channel::<Vec<(usize, Layout)>>(PRODCONS_RING);
    let (empty_tx, empty_rx) = sync_channel::<Vec<(usize, Layout)>>(PRODCONS_RING);
    for _ in 0..PRODCONS_RING {
        empty_tx
            .send(Vec::with_capacity(PRODCONS_BATCH))
            .expect("ring");
    }
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            for mut batch in full_rx {
                for (p, l) in batch.drain(..) {
                    // SAFETY: allocated by the same allocator with `l`, handed over once.
                    unsafe { g.dealloc(p as *mut u8, l) };
                }
                // The producer may be done and gone: a closed ring is fine.
                let _ = empty_tx.send(batch);
            }
        });
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let mut left = blocks;
        while left > 0 {
            let mut batch = empty_rx.recv().expect("ring");
            let n = left.min(PRODCONS_BATCH as u64);
            for _ in 0..n {
                let l = Layout::from_size_align(16 + (rng.next() as usize) % 241, 8).unwrap();
                // SAFETY: a non-zero-sized layout.
                let p = unsafe { g.alloc(l) };
                assert!(!p.is_null());
                // SAFETY: the block holds at least 16 bytes.
                unsafe { p.write(1) };
                // As an address: a raw pointer is not `Send`.
                batch.push((p as usize, l));
            }
            left -= n;
            full_tx.send(batch).expect("ring");
        }
        drop(full_tx);
    });
    start.elapsed()
}

/// The footprint case: 200 MiB (20 MiB in quick mode) of random 16–4096 B blocks allocated, then
/// freed in random order, ten times, on an arena of its own; prints the arena's high-water mark.
fn footprint() {
    let target: usize = if quick() { 20 << 20 } else { 200 << 20 };
    let mut rng = Rng(0xA076_1D64_78BD_642F);
    // Room for every block from the start: a small first allocation through this binary's global
    // allocator would bind this thread's front cache to it.
    let mut blocks: Vec<(*mut u8, Layout)> = Vec::with_capacity(target / 1024);
    for _ in 0..10 {
        let mut total = 0;
        while total < target {
            let l = Layout::from_size_align(16 + (rng.next() as usize) % 4081, 8).unwrap();
            // SAFETY: a non-zero-sized layout.
            let p = unsafe { FOOTPRINT.alloc(l) };
            assert!(!p.is_null());
            // SAFETY: the block holds at least 16 bytes.
            unsafe { p.write(1) };
            blocks.push((p, l));
            total += l.size();
        }
        for i in (1..blocks.len()).rev() {
            blocks.swap(i, (rng.next() as usize) % (i + 1));
        }
        for (p, l) in blocks.drain(..) {
            // SAFETY: allocated by `FOOTPRINT` with `l`, freed once.
            unsafe { FOOTPRINT.dealloc(p, l) };
        }
    }
    FOOTPRINT.trim();
    let s = FOOTPRINT.arena().expect("footprint arena").stats();
    println!(
        "footprint: {} MiB of blocks, 10 rounds: high-water {:.1} MiB ({:.2}x); {} fallbacks, \
         {} served by the front cache",
        target >> 20,
        s.allocated as f64 / (1 << 20) as f64,
        s.allocated as f64 / target as f64,
        FOOTPRINT.fallbacks(),
        FOOTPRINT.front_hits()
    );
    print_sources("footprint", &s);
}

/// Where an arena's allocations came from so far.
fn print_sources(case: &str, s: &parena::Stats) {
    println!(
        "{case}: {} allocations: from_bump {}, from_cache {}, from_freelist {}; allocated {:.1} MiB",
        s.allocations,
        s.from_bump,
        s.from_cache,
        s.from_freelist,
        s.allocated as f64 / (1 << 20) as f64
    );
}

/// The global arena's counters after a group.
fn print_global(group: &str) {
    if let Some(a) = GLOBAL.arena() {
        print_sources(&format!("GlobalArena after {group}"), &a.stats());
    }
}

fn benches(c: &mut Criterion) {
    if std::env::var_os("PARENA_BENCH_SKIP_FOOTPRINT").is_none() {
        // On a thread of its own: a thread's front cache belongs to the first `GlobalArena` it
        // asks (docs/design.md), and this one's is `FOOTPRINT`'s.
        std::thread::spawn(footprint).join().expect("footprint");
    }
    let mut g = c.benchmark_group("threadtest");
    g.throughput(Throughput::Elements(batch() as u64));
    for threads in [1usize, 2] {
        for a in ALL {
            g.bench_with_input(BenchmarkId::new(a.name(), threads), &threads, |b, &t| {
                b.iter_custom(|rounds| on_threads(t, rounds, threadtest, a) / t as u32)
            });
        }
    }
    g.finish();
    print_global("threadtest");
    let mut g = c.benchmark_group("larson");
    g.throughput(Throughput::Elements(1));
    for threads in [1usize, 2] {
        for a in ALL {
            g.bench_with_input(BenchmarkId::new(a.name(), threads), &threads, |b, &t| {
                b.iter_custom(|ops| on_threads(t, ops, larson, a) / t as u32)
            });
        }
    }
    g.finish();
    print_global("larson");
    let mut g = c.benchmark_group("prodcons");
    g.throughput(Throughput::Elements(1));
    for a in ALL {
        g.bench_function(BenchmarkId::new(a.name(), 2), |b| {
            b.iter_custom(|blocks| prodcons(a, blocks))
        });
    }
    g.finish();
    print_global("prodcons");
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
