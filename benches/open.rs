//! Create and clean reopen of a file arena: parena at 1 GiB and 1 MiB (open time must not depend
//! on the capacity) beside `rarena-allocator` at 1 GiB, on the default temp dir's file system.
//!
//! Only the open call is timed (`iter_custom`); removing the file before a create and closing the
//! arena after it are not. Before the criterion groups run, one probe of each case prints the
//! resident memory (`VmRSS` from `/proc/self/status`) before and after the open.
//!
//! `PARENA_BENCH_QUICK=1` shrinks the large arenas to 64 MiB (used by `.ci/bench-quick.sh`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn big() -> u64 {
    if std::env::var_os("PARENA_BENCH_QUICK").is_some() {
        64 * MIB
    } else {
        1024 * MIB
    }
}

/// Resident set size of this process in bytes (0 where `/proc` is missing).
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn parena_open(path: &Path, cap: u64, create: bool) -> parena::Arena {
    // SAFETY: the file is in a temp dir private to this process and nothing else maps it.
    unsafe {
        parena::Options::new()
            .capacity(cap)
            .create_new(create)
            .map_file(path)
    }
    .expect("parena open")
}

fn rarena_open(path: &Path, cap: u64, create: bool) -> rarena_allocator::sync::Arena {
    let o = rarena_allocator::Options::new()
        .with_capacity(cap as u32)
        .with_read(true)
        .with_write(true);
    let o = if create {
        o.with_create_new(true)
    } else {
        o.with_create(true)
    };
    // SAFETY: the file is in a temp dir private to this process and nothing else maps it.
    unsafe { o.map_mut::<rarena_allocator::sync::Arena, _>(path) }.expect("rarena open")
}

/// One contender: a name, a capacity, and an open function returning something to drop.
type Open = fn(&Path, u64, bool) -> Box<dyn Send>;

fn contenders() -> Vec<(&'static str, u64, Open)> {
    vec![
        ("parena", big(), |p, c, k| Box::new(parena_open(p, c, k))),
        ("parena-1MiB", MIB, |p, c, k| Box::new(parena_open(p, c, k))),
        ("rarena", big(), |p, c, k| Box::new(rarena_open(p, c, k))),
    ]
}

fn label(cap: u64) -> String {
    format!("{}MiB", cap / MIB)
}

/// Times one open; `create` removes the file first (untimed).
fn timed_open(open: Open, path: &Path, cap: u64, create: bool) -> (Duration, u64) {
    if create {
        let _ = std::fs::remove_file(path);
    }
    let r0 = rss();
    let t0 = Instant::now();
    let a = open(path, cap, create);
    let dt = t0.elapsed();
    let grew = rss().saturating_sub(r0);
    drop(a);
    (dt, grew)
}

fn bench_open(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, cap, open) in contenders() {
        let path = dir.path().join(format!("{name}.arena"));
        let (t, r) = timed_open(open, &path, cap, true);
        println!(
            "  probe: {name} {} create: {:.3} ms, resident +{} KiB",
            label(cap),
            t.as_secs_f64() * 1e3,
            r / 1024
        );
        let (t, r) = timed_open(open, &path, cap, false);
        println!(
            "  probe: {name} {} clean reopen: {:.3} ms, resident +{} KiB",
            label(cap),
            t.as_secs_f64() * 1e3,
            r / 1024
        );
        let _ = std::fs::remove_file(&path);
    }
    for (group, create) in [("open/create", true), ("open/reopen", false)] {
        let mut g = c.benchmark_group(group);
        for (name, cap, open) in contenders() {
            let path = dir.path().join(format!("{name}.arena"));
            if !create {
                drop(open(&path, cap, true));
            }
            g.bench_function(BenchmarkId::new(name, label(cap)), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| timed_open(open, &path, cap, create).0)
                        .sum()
                })
            });
            let _ = std::fs::remove_file(&path);
        }
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_open
}
criterion_main!(benches);
