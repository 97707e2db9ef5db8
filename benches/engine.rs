//! The memtable of `examples/memtable.rs` against `crossbeam-skiplist`'s `SkipMap` and the `skl`
//! crate: inserts and point reads of 100,000 keys (16-byte keys, 16-100-byte values), on 1 and 2
//! threads, each case beside its peers in one group so the report reads as ratios.
//!
//! ```sh
//! cargo bench --bench engine
//! ```
//!
//! `skl` is timed once per case, with a time budget (see `report_once`).
//!
//! Every iteration does the whole job: an insert iteration fills a fresh, empty map with all
//! keys (the map is built and dropped outside the timing); a read iteration looks every key up
//! and copies its value out. The parena memtable uses a heap arena here, like its peers' heap
//! memory, so that no disk write-back is timed.

// Not the library: std's atomics, `Arc` and `Mutex` are fine here (see clippy.toml).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[allow(dead_code)]
#[path = "../examples/common/memtable.rs"]
mod memtable;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_skiplist::SkipMap;
use memtable::Memtable;
use parena::Options;
use skl::dynamic::unique::{sync::SkipMap as SklMap, Map as _};
use std::time::{Duration, Instant};

const KEYS: usize = 100_000;

/// splitmix64's finaliser.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The same keys (scrambled order) and values (16 to 100 bytes) for every map.
fn data() -> (Vec<[u8; 16]>, Vec<Vec<u8>>) {
    let keys = (0..KEYS as u64)
        .map(|i| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&mix(i).to_be_bytes());
            k[8..].copy_from_slice(&i.to_be_bytes());
            k
        })
        .collect();
    let values = (0..KEYS as u64)
        .map(|i| {
            let h = mix(i ^ 0x5555);
            (0..16 + (h % 85) as usize)
                .map(|j| (h >> (j % 8 * 8)) as u8)
                .collect()
        })
        .collect();
    (keys, values)
}

/// The three maps behind one interface.
trait Table: Sync {
    fn put(&self, k: &[u8; 16], v: &[u8]);
    /// Copies the value of `k` into `out`; false when absent.
    fn get_into(&self, k: &[u8; 16], out: &mut Vec<u8>) -> bool;
}

impl Table for Memtable {
    fn put(&self, k: &[u8; 16], v: &[u8]) {
        self.insert(k, v).expect("insert");
    }
    fn get_into(&self, k: &[u8; 16], out: &mut Vec<u8>) -> bool {
        Memtable::get_into(self, k, out).expect("get")
    }
}

impl Table for SkipMap<[u8; 16], Box<[u8]>> {
    fn put(&self, k: &[u8; 16], v: &[u8]) {
        self.insert(*k, Box::from(v));
    }
    fn get_into(&self, k: &[u8; 16], out: &mut Vec<u8>) -> bool {
        match self.get(k) {
            Some(e) => {
                out.clear();
                out.extend_from_slice(e.value());
                true
            }
            None => false,
        }
    }
}

impl Table for SklMap {
    fn put(&self, k: &[u8; 16], v: &[u8]) {
        self.insert(k, v).expect("insert");
    }
    fn get_into(&self, k: &[u8; 16], out: &mut Vec<u8>) -> bool {
        match self.get(&k[..]) {
            Some(e) => {
                out.clear();
                out.extend_from_slice(e.value());
                true
            }
            None => false,
        }
    }
}

fn parena_table() -> Memtable {
    let arena = Options::new()
        .capacity(64 << 20)
        .heap()
        .expect("heap arena");
    // SAFETY: a fresh arena that only this memtable uses.
    unsafe { Memtable::open_or_create(arena, 0) }.expect("memtable")
}

fn crossbeam_table() -> SkipMap<[u8; 16], Box<[u8]>> {
    SkipMap::new()
}

fn skl_table() -> SklMap {
    skl::dynamic::Builder::new()
        .with_capacity(64 << 20)
        .alloc::<SklMap>()
        .expect("skl map")
}

/// Runs `f(first, step)` on `threads` threads: thread `t` takes key indexes `t, t + step, ...`.
fn split(threads: usize, f: impl Fn(usize, usize) + Sync) {
    if threads == 1 {
        f(0, 1);
        return;
    }
    std::thread::scope(|s| {
        for t in 0..threads {
            let f = &f;
            s.spawn(move || f(t, threads));
        }
    });
}

fn fill<T: Table>(t: &T, threads: usize, keys: &[[u8; 16]], values: &[Vec<u8>]) {
    split(threads, |first, step| {
        for i in (first..KEYS).step_by(step) {
            t.put(&keys[i], &values[i]);
        }
    });
}

fn inserts(c: &mut Criterion) {
    let (keys, values) = data();
    let mut g = c.benchmark_group("memtable_insert_100k");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(KEYS as u64));
    for threads in [1usize, 2] {
        macro_rules! case {
            ($name:literal, $make:expr) => {
                g.bench_with_input(BenchmarkId::new($name, threads), &threads, |b, &threads| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let t = $make;
                            let start = Instant::now();
                            fill(&t, threads, &keys, &values);
                            total += start.elapsed();
                            drop(t);
                        }
                        total
                    })
                });
            };
        }
        case!("parena", parena_table());
        case!("crossbeam_skipmap", crossbeam_table());
    }
    g.finish();
    for threads in [1usize, 2] {
        let t = skl_table();
        let (done, d) = fill_within(&t, threads, &keys, &values, skl_budget());
        report_once("memtable_insert_100k", "skl", threads, done, d);
    }
}

/// How long `skl` gets for one pass (see `report_once`): 15 s, or `PARENA_SKL_BUDGET_SECS`
/// (`0` gives it one batch of keys, for quick runs of the other cases).
fn skl_budget() -> Duration {
    std::env::var("PARENA_SKL_BUDGET_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(15), Duration::from_secs)
}

/// Like `fill`, but every thread stops once `budget` has passed. Returns the keys inserted and
/// the time taken.
fn fill_within<T: Table>(
    t: &T,
    threads: usize,
    keys: &[[u8; 16]],
    values: &[Vec<u8>],
    budget: Duration,
) -> (usize, Duration) {
    let start = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    split(threads, |first, step| {
        let mut n = 0;
        for i in (first..KEYS).step_by(step) {
            t.put(&keys[i], &values[i]);
            n += 1;
            if n % 128 == 0 && start.elapsed() > budget {
                break;
            }
        }
        done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    });
    (
        done.load(std::sync::atomic::Ordering::Relaxed),
        start.elapsed(),
    )
}

/// `skl` 0.22's inserts restart their search from the head on the bottom level, so one fill of
/// 100,000 keys takes many minutes on a loaded 2-core machine, and criterion's ten samples plus a
/// warm-up would take hours. Its passes are therefore timed once, in the same run, with a time
/// budget: a pass that runs out of budget reports how many keys it did, which bounds the ratio
/// from below (the part not done would only have been slower).
fn report_once(group: &str, name: &str, threads: usize, done: usize, d: Duration) {
    println!(
        "{group}/{name}/{threads}\n                        one run: {done} of {KEYS} keys in {:.3} s ({:.2} us per key){}",
        d.as_secs_f64(),
        d.as_secs_f64() * 1e6 / done.max(1) as f64,
        if done < KEYS { ", stopped at the time budget" } else { "" }
    );
}

fn reads(c: &mut Criterion) {
    let (keys, values) = data();
    let mut g = c.benchmark_group("memtable_get_100k");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(KEYS as u64));
    let p = parena_table();
    fill(&p, 2, &keys, &values);
    let x = crossbeam_table();
    fill(&x, 2, &keys, &values);
    let s = skl_table();
    // One thread, so the keys it holds when the budget runs out are `keys[..held]`.
    let (held, _) = fill_within(&s, 1, &keys, &values, skl_budget());
    for threads in [1usize, 2] {
        macro_rules! case {
            ($name:literal, $t:expr) => {
                g.bench_with_input(BenchmarkId::new($name, threads), &threads, |b, &threads| {
                    b.iter(|| read_all(&$t, threads, &keys))
                });
            };
        }
        case!("parena", p);
        case!("crossbeam_skipmap", x);
        if held == KEYS {
            case!("skl", s);
        } else {
            // Reads of the keys it holds (a smaller list, which favours it), timed once.
            let start = Instant::now();
            read_all(&s, threads, &keys[..held]);
            report_once("memtable_get_100k", "skl", threads, held, start.elapsed());
        }
    }
    g.finish();
}

fn read_all<T: Table>(t: &T, threads: usize, keys: &[[u8; 16]]) {
    split(threads, |first, step| {
        let mut out = Vec::with_capacity(128);
        for i in (first..keys.len()).step_by(step) {
            assert!(t.get_into(&keys[i], &mut out));
            criterion::black_box(&out);
        }
    });
}

criterion_group!(benches, inserts, reads);
criterion_main!(benches);
