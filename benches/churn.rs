//! Alloc+free churn (issue 3): random 16–1024 B blocks, ~100,000 live, each operation frees a
//! random live block and allocates a new one of random size in its slot, 1 and 2 threads (each
//! thread owns half of the slots), for each free-list policy; `rarena-allocator` (same policy) and
//! the system allocator (`Box<[u8]>`) in the same group. One iteration is one alloc+free pair;
//! with 2 threads the time is aggregate wall time per pair.
//!
//! Every contender returns zeroed memory (`vec![0; len]` for the system allocator) and the
//! benchmark writes an 8-byte stamp into each new block. Arenas hold 64 MiB. Before timing, each
//! arena is churned until its main memory is used up, so the timed pairs run from the free lists
//! (the steady state); the pre-churn stops after 30 s and says so (`rarena-allocator`'s sorted
//! list makes its pairs cost milliseconds). An allocation refused with `Full` leaves its slot
//! empty; the refusals are counted and printed after each case.
//!
//! `rarena-allocator` can hang with 2 threads in this workload, so its 2-thread cases run only with
//! `PARENA_BENCH_RARENA_MT=1`.
//!
//! A second group, `churn-segments`, measures parena's pair cost with ~100 and ~100,000 segments
//! on its free lists (an arena filled to the last chunk, then N random blocks freed; each
//! operation frees a random live block and allocates one of the same length).
//!
//! `PARENA_BENCH_QUICK=1` shrinks the live set (used by `.ci/bench-quick.sh`).

// Not the library: std's atomics, `Arc` and `Mutex` are fine here (see clippy.toml).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rarena_allocator::{Allocator as _, Buffer as _};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

fn quick() -> bool {
    std::env::var_os("PARENA_BENCH_QUICK").is_some()
}

fn live_blocks() -> usize {
    if quick() {
        2_000
    } else {
        100_000
    }
}

/// Arena capacity for the main churn: 64 MiB (the setting) for ~53 MB of live blocks.
fn churn_capacity() -> usize {
    if quick() {
        4 << 20
    } else {
        64 << 20
    }
}

const MIN_LEN: u64 = 16;
const MAX_LEN: u64 = 1024;

/// xorshift64*: a tiny deterministic generator, so every contender sees the same sequence.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    #[inline]
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    #[inline]
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
    #[inline]
    fn len(&mut self) -> usize {
        (MIN_LEN + (self.next() >> 32) % (MAX_LEN - MIN_LEN + 1)) as usize
    }
}

/// One allocator under churn. `alloc` returns `None` when the allocator is full.
trait Churn: Sync {
    type Slot: Send;
    fn alloc(&self, len: usize, stamp: u64) -> Option<Self::Slot>;
    fn free(&self, slot: Self::Slot);
    /// Bytes of main memory not yet handed out (0 once the free lists carry the load).
    fn remaining(&self) -> usize;
}

impl Churn for parena::Arena {
    type Slot = parena::Handle;
    #[inline]
    fn alloc(&self, len: usize, stamp: u64) -> Option<parena::Handle> {
        let mut b = self.alloc(len).ok()?;
        b[..8].copy_from_slice(&stamp.to_le_bytes());
        Some(b.into_handle())
    }
    #[inline]
    fn free(&self, h: parena::Handle) {
        self.free(h).expect("live handle");
    }
    fn remaining(&self) -> usize {
        self.stats().remaining as usize
    }
}

struct Rarena(rarena_allocator::sync::Arena);

impl Churn for Rarena {
    /// `(memory offset, memory size)` of a detached block.
    type Slot = (u32, u32);
    #[inline]
    fn alloc(&self, len: usize, stamp: u64) -> Option<(u32, u32)> {
        let mut b = self.0.alloc_bytes(len as u32).ok()?;
        rarena_block(&mut b)[..8].copy_from_slice(&stamp.to_le_bytes());
        let slot = (b.buffer_offset() as u32, b.buffer_capacity() as u32);
        // SAFETY: the block is deallocated explicitly with `free` (or dropped with the arena);
        // nothing refers to it after that.
        unsafe { b.detach() };
        Some(slot)
    }
    #[inline]
    fn free(&self, (off, size): (u32, u32)) {
        // SAFETY: `(off, size)` is the memory range of a block this arena handed out, freed once
        // (the slot is moved out of the live set before this call).
        unsafe { self.0.dealloc(off, size) };
    }
    fn remaining(&self) -> usize {
        self.0.remaining()
    }
}

/// The whole block a `rarena-allocator` allocation holds (its `DerefMut` covers only the bytes
/// already written through its `put_*` methods, so it cannot be used to write the block).
fn rarena_block<'b>(
    m: &'b mut rarena_allocator::BytesRefMut<'_, rarena_allocator::sync::Arena>,
) -> &'b mut [u8] {
    let cap = m.capacity();
    let p = m.as_mut_ptr();
    // SAFETY: `p..p + cap` is the block the arena just handed out (zeroed, in bounds); `m` stays
    // mutably borrowed while the slice lives, so nothing else reaches these bytes.
    unsafe { std::slice::from_raw_parts_mut(p, cap) }
}

struct System;

impl Churn for System {
    type Slot = Box<[u8]>;
    #[inline]
    fn alloc(&self, len: usize, stamp: u64) -> Option<Box<[u8]>> {
        let mut b = vec![0u8; len].into_boxed_slice();
        b[..8].copy_from_slice(&stamp.to_le_bytes());
        Some(b)
    }
    #[inline]
    fn free(&self, b: Box<[u8]>) {
        drop(b);
    }
    fn remaining(&self) -> usize {
        0
    }
}

/// One pair: frees a random slot's block and allocates a new one (random length, or the freed
/// block's length with `same_len`) into it. Returns `false` when the allocation failed.
#[inline]
fn pair<A: Churn>(
    a: &A,
    slots: &mut [(Option<A::Slot>, usize)],
    rng: &mut Rng,
    same: bool,
) -> bool {
    let i = rng.below(slots.len());
    let (old, old_len) = &mut slots[i];
    if let Some(s) = old.take() {
        a.free(s);
    }
    let len = if same { *old_len } else { rng.len() };
    *old_len = len;
    *old = a.alloc(len, i as u64);
    black_box(&*old);
    old.is_some()
}

/// An allocator with `live` blocks, churned until its main memory is used up.
struct Loaded<A: Churn> {
    a: A,
    slots: Vec<(Option<A::Slot>, usize)>,
    failures: AtomicU64,
    /// Pairs run in timed regions (warm-up included).
    pairs: u64,
}

fn load<A: Churn>(a: A, live: usize) -> Loaded<A> {
    let mut rng = Rng::new(7);
    let mut slots = Vec::with_capacity(live);
    for i in 0..live {
        let len = rng.len();
        slots.push((
            Some(a.alloc(len, i as u64).expect("initial fill fits")),
            len,
        ));
    }
    let t0 = Instant::now();
    let mut n = 0u64;
    while n < live as u64 / 2 || a.remaining() > (1 << 20) {
        for _ in 0..256 {
            pair(&a, &mut slots, &mut rng, false);
        }
        n += 256;
        if t0.elapsed() > Duration::from_secs(30) {
            println!("  note: churned {n} pairs in 30 s without using up main memory");
            break;
        }
    }
    Loaded {
        a,
        slots,
        failures: AtomicU64::new(0),
        pairs: 0,
    }
}

/// Runs `iters` pairs on `threads` threads, each on its own share of the slots.
fn churn<A: Churn>(
    l: &mut Loaded<A>,
    iters: u64,
    threads: usize,
    seed: &mut u64,
    same: bool,
) -> Duration {
    *seed += 1;
    l.pairs += iters;
    if threads == 1 {
        let mut rng = Rng::new(*seed);
        let mut fails = 0;
        let t0 = Instant::now();
        for _ in 0..iters {
            fails += u64::from(!pair(&l.a, &mut l.slots, &mut rng, same));
        }
        let e = t0.elapsed();
        l.failures.fetch_add(fails, Ordering::Relaxed);
        return e;
    }
    let barrier = Barrier::new(threads + 1);
    let per = l.slots.len().div_ceil(threads);
    let share = iters.div_ceil(threads as u64);
    let (a, failures) = (&l.a, &l.failures);
    std::thread::scope(|s| {
        let hs: Vec<_> = l
            .slots
            .chunks_mut(per)
            .enumerate()
            .map(|(t, part)| {
                let barrier = &barrier;
                let mut rng = Rng::new(*seed * 31 + t as u64);
                s.spawn(move || {
                    barrier.wait();
                    let mut fails = 0;
                    for _ in 0..share {
                        fails += u64::from(!pair(a, part, &mut rng, same));
                    }
                    failures.fetch_add(fails, Ordering::Relaxed);
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        for h in hs {
            h.join().expect("worker");
        }
        t0.elapsed()
    })
}

fn parena_arena(policy: parena::Freelist, cap: usize, coalesce: bool) -> parena::Arena {
    parena::Options::new()
        .capacity(cap as u64)
        .freelist(policy)
        .coalesce(coalesce)
        .heap()
        .expect("heap arena")
}

fn rarena_arena(policy: rarena_allocator::Freelist, cap: usize) -> Rarena {
    Rarena(
        rarena_allocator::Options::new()
            .with_capacity(cap as u32)
            .with_freelist(policy)
            .alloc::<rarena_allocator::sync::Arena>()
            .expect("rarena arena"),
    )
}

fn bench_one<A: Churn>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    param: &str,
    threads: usize,
    make: impl FnOnce() -> A,
) {
    let mut l = load(make(), live_blocks());
    let mut seed = 100;
    g.bench_function(BenchmarkId::new(name, param), |b| {
        b.iter_custom(|iters| churn(&mut l, iters, threads, &mut seed, false))
    });
    let f = l.failures.load(Ordering::Relaxed);
    println!(
        "  note: {name} {param}: {f} of {} allocations refused (Full), {:.1} %",
        l.pairs,
        100.0 * f as f64 / l.pairs.max(1) as f64
    );
}

fn bench_churn(c: &mut Criterion) {
    let cap = churn_capacity();
    let rarena_mt = std::env::var_os("PARENA_BENCH_RARENA_MT").is_some();
    for threads in [1usize, 2] {
        for (pname, pp, rp) in [
            (
                "optimistic",
                parena::Freelist::Optimistic,
                rarena_allocator::Freelist::Optimistic,
            ),
            (
                "pessimistic",
                parena::Freelist::Pessimistic,
                rarena_allocator::Freelist::Pessimistic,
            ),
        ] {
            let mut g = c.benchmark_group(format!("churn/{pname}/{threads}t"));
            g.throughput(Throughput::Elements(1));
            let param = format!("{pname}/{threads}t");
            bench_one(&mut g, "parena", &param, threads, || {
                parena_arena(pp, cap, true)
            });
            bench_one(&mut g, "parena-no-coalesce", &param, threads, || {
                parena_arena(pp, cap, false)
            });
            if threads == 1 || rarena_mt {
                bench_one(&mut g, "rarena", &param, threads, || rarena_arena(rp, cap));
            } else {
                println!(
                    "  note: rarena {param} skipped (it can hang with 2 threads); \
                     set PARENA_BENCH_RARENA_MT=1 to run it"
                );
            }
            bench_one(&mut g, "system-box", &param, threads, || System);
            g.finish();
        }
    }
}

/// An arena filled to its last chunk with random blocks, then `free` of them freed at random.
fn segmented(policy: parena::Freelist, cap: usize, free: usize) -> Loaded<parena::Arena> {
    let a = parena_arena(policy, cap, true);
    let mut rng = Rng::new(11);
    let mut slots = Vec::new();
    loop {
        let len = rng.len();
        match Churn::alloc(&a, len, slots.len() as u64) {
            Some(h) => slots.push((Some(h), len)),
            None => break,
        }
    }
    // Use up the chunk tails and the free lists too, so that the only listed segments are the
    // `free` ones made below (plus what the run splits off).
    while let Some(h) = Churn::alloc(&a, MIN_LEN as usize, slots.len() as u64) {
        slots.push((Some(h), MIN_LEN as usize));
    }
    assert!(
        slots.len() > free,
        "arena too small for {free} free segments"
    );
    let mut freed = 0;
    while freed < free {
        let i = rng.below(slots.len());
        if let Some(h) = slots[i].0.take() {
            Churn::free(&a, h);
            freed += 1;
        }
    }
    Loaded {
        a,
        slots,
        failures: AtomicU64::new(0),
        pairs: 0,
    }
}

fn listed_segments(a: &mut parena::Arena) -> u64 {
    a.verify().map(|r| r.listed_segments).unwrap_or(0)
}

fn bench_segments(c: &mut Criterion) {
    let (cap, counts): (usize, [usize; 2]) = if quick() {
        (4 << 20, [10, 1_000])
    } else {
        (128 << 20, [100, 100_000])
    };
    for (pname, pp) in [
        ("optimistic", parena::Freelist::Optimistic),
        ("pessimistic", parena::Freelist::Pessimistic),
    ] {
        let mut g = c.benchmark_group(format!("churn-segments/{pname}"));
        g.throughput(Throughput::Elements(1));
        for n in counts {
            let mut l = segmented(pp, cap, n);
            let before = listed_segments(&mut l.a);
            let mut seed = 200;
            g.bench_function(
                BenchmarkId::new("parena", format!("{pname}/{n}-free")),
                |b| b.iter_custom(|iters| churn(&mut l, iters, 1, &mut seed, true)),
            );
            let after = listed_segments(&mut l.a);
            println!(
                "  note: {pname} {n}-free: listed segments {before} before, {after} after; \
                 {} of {} allocations refused",
                l.failures.load(Ordering::Relaxed),
                l.pairs
            );
        }
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_churn, bench_segments
}
criterion_main!(benches);
