//! Dirty reopen (recovery) of a file arena with 256 MiB allocated.
//!
//! How the dirty image is made: an arena is created, filled from 2 threads with random 16–1024 B
//! blocks until 256 MiB of its heap is allocated, and 10 % of the blocks are freed. Then, with the
//! arena still open and no thread touching it, the file is copied. The copy is read through the
//! page cache, which is the memory the mapping writes to, so it holds exactly the bytes a
//! `kill -9` at that instant would leave: the header says DIRTY (an open arena always does), the
//! threads' chunk tails were never formatted, the free lists are as the frees left them. That is a
//! real crash image, made without killing anything and without leaking the arena (a
//! `std::mem::forget` would keep the map and the file lock for the rest of the process). The
//! original arena is then closed cleanly and deleted.
//!
//! Each timed iteration copies the dirty image to a work file (untimed), opens it (timed: detects
//! the dirty state, walks the heap, rebuilds the free lists), checks that it recovered, and closes
//! it (untimed). Throughput is reported as allocated heap bytes recovered per second.
//!
//! `PARENA_BENCH_QUICK=1` shrinks the image to 8 MiB (used by `.ci/bench-quick.sh`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn allocated_target() -> u64 {
    if std::env::var_os("PARENA_BENCH_QUICK").is_some() {
        8 * MIB
    } else {
        256 * MIB
    }
}

fn open(path: &Path, cap: u64) -> parena::Arena {
    // SAFETY: the file is in a temp dir private to this process and nothing else maps it.
    unsafe { parena::Options::new().capacity(cap).map_file(path) }.expect("open arena")
}

/// Writes the dirty image to `image` and returns the heap bytes allocated in it.
fn make_dirty_image(dir: &Path, image: &Path, cap: u64) -> u64 {
    let live = dir.join("live.arena");
    let arena = open(&live, cap);
    let target = allocated_target();
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let arena = &arena;
            s.spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
                let mut handles = Vec::new();
                while arena.stats().allocated < target {
                    for _ in 0..1024 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let len = 16 + (x >> 40) as usize % 1009;
                        let mut b = arena.alloc(len).expect("capacity holds the target");
                        b[..8].copy_from_slice(&x.to_le_bytes());
                        handles.push(b.into_handle());
                    }
                }
                for h in handles.iter().step_by(10) {
                    arena.free(*h).expect("live handle");
                }
            });
        }
    });
    let allocated = arena.stats().allocated;
    // The copy while the arena is open is the crash image (see the module docs).
    std::fs::copy(&live, image).expect("copy image");
    drop(arena);
    let _ = std::fs::remove_file(&live);
    allocated
}

fn bench_recovery(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cap = allocated_target() + allocated_target() / 4 + 4 * MIB;
    let image = dir.path().join("dirty.arena");
    let work = dir.path().join("work.arena");
    let allocated = make_dirty_image(dir.path(), &image, cap);

    // One probe, printed: the recovery report and the rate.
    std::fs::copy(&image, &work).expect("copy");
    let t0 = Instant::now();
    let a = open(&work, cap);
    let dt = t0.elapsed();
    assert!(!a.was_clean(), "the image must be dirty");
    if let Some(r) = a.recovery_report() {
        println!(
            "  probe: recovered {} MiB allocated in {:.1} ms ({:.2} GiB/s): {} live blocks, \
             {} free segments, {} KiB reclaimed",
            allocated / MIB,
            dt.as_secs_f64() * 1e3,
            allocated as f64 / dt.as_secs_f64() / (1u64 << 30) as f64,
            r.live_blocks,
            r.free_segments,
            r.reclaimed_bytes / 1024
        );
    }
    drop(a);

    let mut g = c.benchmark_group("recovery");
    g.throughput(Throughput::Bytes(allocated));
    g.bench_function(
        BenchmarkId::new("parena", format!("{}MiB", allocated / MIB)),
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    std::fs::copy(&image, &work).expect("copy");
                    let t0 = Instant::now();
                    let a = open(&work, cap);
                    total += t0.elapsed();
                    assert!(!a.was_clean(), "recovered a dirty image");
                    drop(a);
                }
                total
            })
        },
    );
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_recovery
}
criterion_main!(benches);
