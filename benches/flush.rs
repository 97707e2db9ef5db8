//! `flush()` of a file arena after N allocations of 32 B (N = 10,000 and 1,000,000), on the
//! default temp dir's file system (a disk, not tmpfs, so the flush has something to write back).
//!
//! - `flush/after_allocs/N`: a new 128 MiB file arena is created and N blocks of 32 B are
//!   allocated with `alloc_copy` (untimed); then one `flush()` is timed. Each iteration makes its
//!   own arena, so every timed flush finds exactly the N allocations dirty.
//! - `flush/nothing_dirty/N`: the same, then a first `flush()` (untimed) and a second one right
//!   after it (timed), with nothing written in between.
//!
//! Bytes written: before the groups, one probe per N prints what `write_bytes` of
//! `/proc/self/io` counted. Linux counts a page (or a larger folio, whole) there when the process
//! **dirties** it (for a shared mapping: the write fault on a clean page), not when `msync` writes
//! it back, so the count over `flush()` alone stays near 0; the count from just after the create
//! to the end of the first flush is the bytes dirtied since the last flush, i.e. what that flush
//! had to write. The
//! probe also prints the heap span the flush covers (`stats().allocated`, plus the header) and, as
//! a cross-check, the sectors the temp dir's block device wrote during each flush
//! (`/sys/dev/block/MAJ:MIN/stat`): device-wide, so it includes the file system's journal and
//! anything else writing to the device at the same moment.
//!
//! `PARENA_BENCH_QUICK=1` uses N = 1,000 and 10,000 and a 16 MiB arena (used by
//! `.ci/bench-quick.sh`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const LEN: usize = 32;

fn quick() -> bool {
    std::env::var_os("PARENA_BENCH_QUICK").is_some()
}

fn counts() -> [u64; 2] {
    if quick() {
        [1_000, 10_000]
    } else {
        [10_000, 1_000_000]
    }
}

/// Capacity for the largest N: 1,000,000 blocks of 40 B (32 B and the header word) are about
/// 40 MB.
fn capacity() -> u64 {
    if quick() {
        16 * MIB
    } else {
        128 * MIB
    }
}

/// `write_bytes` of `/proc/self/io` (`None` where it cannot be read).
fn write_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/io").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Sectors (512 B) written by the block device holding `path`, from
/// `/sys/dev/block/MAJ:MIN/stat` (`None` where that file is missing, e.g. an overlay file
/// system).
fn device_sectors_written(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    let s = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/stat")).ok()?;
    // Fields: reads, reads merged, sectors read, ms reading, writes, writes merged, sectors
    // written, ...
    s.split_whitespace().nth(6)?.parse().ok()
}

fn create(path: &Path) -> parena::Arena {
    let _ = std::fs::remove_file(path);
    // SAFETY: the file is in a temp dir private to this process and nothing else maps it.
    unsafe {
        parena::Options::new()
            .capacity(capacity())
            .create_new(true)
            .map_file(path)
    }
    .expect("create file arena")
}

/// N allocations of 32 B, each a copy of a block that carries its index.
fn allocate(arena: &parena::Arena, n: u64) {
    let mut block = [0x5Au8; LEN];
    for i in 0..n {
        block[..8].copy_from_slice(&i.to_le_bytes());
        let _ = arena.alloc_copy(&block).expect("capacity holds N blocks");
    }
}

/// Difference of two optional counters, printed as a number or `n/a`.
fn delta(before: Option<u64>, after: Option<u64>, unit: u64) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!("{} KiB", a.saturating_sub(b) * unit / 1024),
        _ => "n/a".to_string(),
    }
}

fn probe(dir: &Path, n: u64) {
    let path = dir.join("probe.arena");
    let arena = create(&path);
    let w0 = write_bytes();
    allocate(&arena, n);
    let w1 = write_bytes();
    let d1 = device_sectors_written(&path);
    let t0 = Instant::now();
    arena.flush().expect("flush");
    let first = t0.elapsed();
    let w2 = write_bytes();
    let d2 = device_sectors_written(&path);
    let t1 = Instant::now();
    arena.flush().expect("flush");
    let second = t1.elapsed();
    let w3 = write_bytes();
    let d3 = device_sectors_written(&path);
    let s = arena.stats();
    println!(
        "  probe: {n} x {LEN} B: heap span flushed {} KiB (+ {} KiB header); first flush \
         {:.3} ms, write_bytes: dirtied since the create {}, during the flush {}, device wrote {} \
         (device-wide); second flush {:.3} ms, write_bytes {}, device wrote {}",
        s.allocated / 1024,
        s.data_start / 1024,
        first.as_secs_f64() * 1e3,
        delta(w0, w2, 1),
        delta(w1, w2, 1),
        delta(d1, d2, 512),
        second.as_secs_f64() * 1e3,
        delta(w2, w3, 1),
        delta(d2, d3, 512),
    );
    drop(arena);
    let _ = std::fs::remove_file(&path);
}

/// One timed flush on a new arena holding `n` fresh allocations; `flushes_before` untimed flushes
/// run first.
fn timed_flush(path: &Path, n: u64, flushes_before: usize) -> Duration {
    let arena = create(path);
    allocate(&arena, n);
    for _ in 0..flushes_before {
        arena.flush().expect("flush");
    }
    let t0 = Instant::now();
    arena.flush().expect("flush");
    let dt = t0.elapsed();
    drop(arena);
    dt
}

fn bench_flush(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    for n in counts() {
        probe(dir.path(), n);
    }
    let path = dir.path().join("flush.arena");
    for (group, flushes_before) in [("flush/after_allocs", 0), ("flush/nothing_dirty", 1)] {
        let mut g = c.benchmark_group(group);
        // One iteration makes a new arena and N allocations: a sample is one flush (criterion's
        // default sampling would run 55 of them for 10 samples).
        g.sampling_mode(SamplingMode::Flat);
        for n in counts() {
            g.bench_function(BenchmarkId::from_parameter(n), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| timed_flush(&path, n, flushes_before))
                        .sum()
                })
            });
        }
        g.finish();
    }
    let _ = std::fs::remove_file(&path);
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_flush
}
criterion_main!(benches);
