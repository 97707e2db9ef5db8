//! parena as an allocator (issue 9): a hashbrown workload on parena beside the same on the system
//! allocator, and alloc+free churn with and without per-thread caches.
//!
//! `PARENA_BENCH_QUICK=1` shrinks the workloads (used by `.ci/bench-quick.sh`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parena::{Arena, Freelist, Options};
use std::hint::black_box;
use std::time::Duration;

fn quick() -> bool {
    std::env::var_os("PARENA_BENCH_QUICK").is_some()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// 100,000 inserts and removes of `u64 -> [u8; 24]` with growth, on any allocator.
macro_rules! map_workload {
    ($map:expr, $n:expr) => {{
        let mut m = $map;
        let mut rng = Rng(7);
        for i in 0..$n {
            let k = rng.next() % ($n / 2);
            if i % 3 == 0 {
                m.remove(&k);
            } else {
                m.insert(k, [i as u8; 24]);
            }
        }
        black_box(m.len())
    }};
}

fn hashbrown(c: &mut Criterion) {
    let n: u64 = if quick() { 5_000 } else { 100_000 };
    let mut g = c.benchmark_group("hashbrown");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10)
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 4 }));
    g.bench_function("system", |b| {
        b.iter(|| map_workload!(hashbrown::HashMap::<u64, [u8; 24]>::new(), n))
    });
    for cache in [true, false] {
        let name = if cache { "parena" } else { "parena-no-cache" };
        // One arena for every iteration, as the process heap is for the system allocator: each
        // map is dropped at the end of its iteration and its memory is reused by the next. The
        // free lists do not merge neighbours while the arena is shared, so between iterations
        // (untimed) `compact()` merges the freed tables back into one free run, as an engine
        // would between batches; without it, splitting big segments for smaller tables
        // fragments the arena until a 2 MiB table no longer fits (docs/performance.md).
        let mut arena = Options::new()
            .capacity(256 << 20)
            .freelist(Freelist::Pessimistic)
            .thread_cache(cache)
            .heap()
            .unwrap();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = std::time::Instant::now();
                    map_workload!(
                        hashbrown::HashMap::<u64, [u8; 24], hashbrown::DefaultHashBuilder, &Arena>::with_hasher_in(
                            Default::default(),
                            &arena
                        ),
                        n
                    );
                    total += t.elapsed();
                    arena.compact().unwrap();
                }
                total
            })
        });
    }
    g.finish();
}

/// A thread that frees and reallocates blocks of the sizes it uses (16–512 B): each iteration
/// frees one random live block and allocates one of a random size (an allocation refused with
/// `Full` leaves its slot empty; refusals are printed).
fn churn_cache(c: &mut Criterion) {
    let live = if quick() { 1_000 } else { 100_000 };
    let mut g = c.benchmark_group("churn-cache");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20)
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 3 }));
    for cache in [true, false] {
        let arena = Options::new()
            .capacity(64 << 20)
            .freelist(Freelist::Pessimistic)
            .thread_cache(cache)
            .heap()
            .unwrap();
        let mut rng = Rng(99);
        let mut slots: Vec<Option<parena::Handle>> = (0..live)
            .map(|_| {
                arena
                    .alloc(16 + (rng.next() % 497) as usize)
                    .ok()
                    .map(|b| b.into_handle())
            })
            .collect();
        let mut refused = 0u64;
        let mut pairs = 0u64;
        g.bench_function(
            BenchmarkId::new("parena", if cache { "cache" } else { "no-cache" }),
            |b| {
                b.iter(|| {
                    let i = (rng.next() % live as u64) as usize;
                    if let Some(h) = slots[i].take() {
                        arena.free(h).unwrap();
                    }
                    pairs += 1;
                    match arena.alloc(16 + (rng.next() % 497) as usize) {
                        Ok(mut blk) => {
                            blk[..8].copy_from_slice(&(i as u64).to_le_bytes());
                            slots[i] = Some(blk.into_handle());
                        }
                        Err(_) => refused += 1,
                    }
                })
            },
        );
        let s = arena.stats();
        println!(
            "note: churn-cache parena cache={cache}: {refused} of {pairs} allocations refused; cache hit rate {:.1} %",
            100.0 * s.cache_hit_rate()
        );
    }
    let mut rng = Rng(99);
    let mut boxes: Vec<Box<[u8]>> = (0..live)
        .map(|_| vec![0u8; 16 + (rng.next() % 497) as usize].into_boxed_slice())
        .collect();
    g.bench_function(BenchmarkId::new("system", "Box"), |b| {
        b.iter(|| {
            let i = (rng.next() % live as u64) as usize;
            let mut v = vec![0u8; 16 + (rng.next() % 497) as usize].into_boxed_slice();
            v[..8].copy_from_slice(&(i as u64).to_le_bytes());
            boxes[i] = v;
        })
    });
    g.finish();
}

criterion_group!(benches, hashbrown, churn_cache);
criterion_main!(benches);
