//! Growth's figures (docs/metadata.md, 12.5; issue 27): what a growth step costs, what an
//! allocation that triggers one costs, and whether other threads' allocations stop while a thread
//! grows. Not a criterion group: each figure is a median of many single timings, and the with- and
//! without-growth runs of (c) alternate, so the machine's load falls on both alike.
//!
//! - (a) `step`: `Arena::grow` by one 1 MiB step on a fresh growable arena (64 MiB maximum), heap
//!   and file backings; median and max of `PARENA_GROW_STEPS` steps (default 48).
//! - (b) `alloc`: allocations of 200 B on a heap and a file arena of 1 MiB that grows by itself
//!   (64 MiB maximum), each timed; the ones after which the capacity changed triggered a step.
//!   Medians of both kinds, and of `grow` steps of the same size for comparison.
//! - (c) `others`: a thread allocates 200 B blocks, timing each, on a file arena; in every other
//!   round a second thread grows the arena in 1 MiB steps meanwhile. Median per round, then the
//!   median over `PARENA_GROW_ROUNDS` rounds (default 6) of each kind, and their ratio.
//!
//! - (d) `wide`: a sparse file arena of 1 TiB maximum (a wide arena, docs/metadata.md 12.3):
//!   `Arena::grow` by 8 GiB steps (median of 6), and 32 B allocations timed in batches on it
//!   against a narrow arena of the same backing (medians of alternating batches).
//! - (e) `sparse`: `PARENA_SPARSE_ALLOCS` (default 200,000) allocations of 200 B on a fresh
//!   64 MiB file arena, sparse (`preallocate(false)`: each chunk's disk reserved as the allocator
//!   takes it) or preallocated, alternating, `PARENA_SPARSE_ROUNDS` rounds of each (default 3);
//!   the median over the rounds of the mean time per allocation, and of the median time of an
//!   allocation that takes a fresh chunk (where the reservation runs), of each kind.
//!
//! Run: `cargo bench -p parena-benches --bench grow`.

// Not the library: std's atomics are fine here (see clippy.toml).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use parena::{Arena, Options};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

const MIB: u64 = 1 << 20;

/// The header page and the start and flush maps of a 64 MiB maximum, in front of the heap.
const MAPS: u64 = 4202496;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A fresh growable arena of `cap` bytes of heap (64 MiB maximum; the maps sized for it lie in
/// front of the heap, 4 MiB), on the heap or in the file `file`.
fn arena(file: Option<&std::path::Path>, cap: u64) -> Arena {
    let o = Options::new().capacity(MAPS + cap).max_capacity(64 * MIB);
    match file {
        None => o.heap().unwrap(),
        // SAFETY: the file is in a private temporary directory, new for this arena; nothing else
        // maps or changes it.
        Some(p) => unsafe { o.map_file(p) }.unwrap(),
    }
}

fn backings(dir: &std::path::Path) -> [(&'static str, Option<std::path::PathBuf>); 2] {
    [("heap", None), ("file", Some(dir.join("a")))]
}

/// (a): the step alone.
fn step(dir: &std::path::Path) {
    let n = env_or("PARENA_GROW_STEPS", 48);
    for (name, path) in backings(dir) {
        if let Some(p) = &path {
            let _ = std::fs::remove_file(p);
        }
        let a = arena(path.as_deref(), MIB);
        let mut t: Vec<f64> = (0..n)
            .map(|_| {
                let c = a.capacity();
                let s = Instant::now();
                a.grow(c + MIB).unwrap();
                s.elapsed().as_nanos() as f64
            })
            .collect();
        let max = t.iter().copied().fold(0.0, f64::max);
        println!(
            "step {name}: grow by 1 MiB, median {:.1} us, max {:.1} us ({n} steps)",
            median(&mut t) / 1e3,
            max / 1e3
        );
    }
}

/// (b): allocations that trigger a step against ordinary ones.
fn alloc(dir: &std::path::Path) {
    for (name, path) in backings(dir) {
        if let Some(p) = &path {
            let _ = std::fs::remove_file(p);
        }
        let a = arena(path.as_deref(), MIB);
        let (mut plain, mut grew) = (Vec::new(), Vec::new());
        while a.capacity() < 48 * MIB {
            let c = a.capacity();
            let s = Instant::now();
            let b = a.alloc(200).unwrap();
            let ns = s.elapsed().as_nanos() as f64;
            drop(b);
            if a.capacity() > c {
                grew.push(ns);
            } else {
                plain.push(ns);
            }
        }
        let steps = grew.len();
        let max = grew.iter().copied().fold(0.0, f64::max);
        println!(
            "alloc {name}: 200 B, ordinary median {:.0} ns ({} allocations); triggering a step \
             median {:.1} us, max {:.1} us ({steps} steps, to {} MiB)",
            median(&mut plain),
            plain.len(),
            median(&mut grew) / 1e3,
            max / 1e3,
            a.capacity() / MIB
        );
    }
}

/// (c): another thread's allocations while a thread grows, against without.
fn others(dir: &std::path::Path) {
    let rounds = env_or("PARENA_GROW_ROUNDS", 6);
    let n = 60_000;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for r in 0..2 * rounds {
        let growing = r % 2 == 0;
        let p = dir.join("others");
        let _ = std::fs::remove_file(&p);
        let a = arena(Some(&p), MIB);
        let done = AtomicBool::new(false);
        let (m, steps) = std::thread::scope(|s| {
            let grower = s.spawn(|| {
                let mut steps = 0;
                while growing && !done.load(Ordering::Relaxed) && a.capacity() < 60 * MIB {
                    a.grow(a.capacity() + MIB).unwrap();
                    steps += 1;
                }
                steps
            });
            let mut t: Vec<f64> = (0..n)
                .map(|_| {
                    let s = Instant::now();
                    let b = a.alloc(200).unwrap();
                    let ns = s.elapsed().as_nanos() as f64;
                    drop(b);
                    ns
                })
                .collect();
            done.store(true, Ordering::Relaxed);
            (median(&mut t), grower.join().unwrap())
        });
        println!(
            "others round {r}: {} median {m:.0} ns ({steps} steps meanwhile)",
            if growing { "growing" } else { "still" }
        );
        if growing {
            with.push(m);
        } else {
            without.push(m);
        }
    }
    let (w, wo) = (median(&mut with), median(&mut without));
    println!(
        "others: 200 B allocation median {w:.0} ns while a thread grows, {wo:.0} ns without \
         (ratio {:.2}, {rounds} rounds each)",
        w / wo
    );
}

/// (e): the per-chunk disk reservation of a sparse file arena against a preallocated one: the
/// mean time per allocation of the whole loop, and the median of the allocations that took a
/// fresh chunk (the block at a chunk's start), where the reservation's `fallocate` runs.
fn sparse(dir: &std::path::Path) {
    let n = env_or("PARENA_SPARSE_ALLOCS", 200_000);
    let rounds = env_or("PARENA_SPARSE_ROUNDS", 3);
    // A fixed 64 MiB arena: the header page, then the heap in 64 KiB chunks.
    const DATA_START: u64 = 4096;
    const CHUNK: u64 = 64 << 10;
    let (mut means, mut refills) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for round in 0..rounds * 2 {
        let preallocate = round % 2 == 1;
        let p = dir.join(format!("sparse{round}"));
        let o = Options::new().capacity(64 * MIB).preallocate(preallocate);
        // SAFETY: the file is in a private temporary directory, new for this arena; nothing else
        // maps or changes it.
        let a = unsafe { o.map_file(&p) }.unwrap();
        let mut taking = Vec::new();
        let all = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            let b = a.alloc(200).unwrap();
            let took = t.elapsed().as_nanos() as f64;
            if (b.offset() - 8 - DATA_START) % CHUNK == 0 {
                taking.push(took);
            }
            drop(std::hint::black_box(b));
        }
        let k = usize::from(preallocate);
        means[k].push(all.elapsed().as_nanos() as f64 / n as f64);
        refills[k].push(median(&mut taking) / 1000.0);
        drop(a);
        std::fs::remove_file(&p).unwrap();
    }
    let m = means.each_mut().map(|v| median(v));
    let r = refills.each_mut().map(|v| median(v));
    println!(
        "sparse: {n} allocations of 200 B, {rounds} rounds each, medians of the rounds: mean per \
         allocation {:.1} ns sparse, {:.1} ns preallocated (ratio {:.2}; rounds {:.1?} and \
         {:.1?}); an allocation that takes a chunk {:.2} µs sparse, {:.2} µs preallocated \
         (rounds {:.2?} and {:.2?})",
        m[0],
        m[1],
        m[0] / m[1],
        means[0],
        means[1],
        r[0],
        r[1],
        refills[0],
        refills[1]
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if run("step") {
        step(dir.path());
    }
    if run("alloc") {
        alloc(dir.path());
    }
    if run("others") {
        others(dir.path());
    }
    if run("wide") {
        wide(dir.path());
    }
    if run("sparse") {
        sparse(dir.path());
    }
}

/// (d): a wide arena's growth step and allocations.
fn wide(dir: &std::path::Path) {
    const GIB: u64 = 1 << 30;
    let o = Options::new()
        .capacity(65 * GIB)
        .max_capacity(1 << 40)
        .preallocate(false);
    // SAFETY: as in `arena`: a new file in a private temporary directory.
    let w = unsafe { o.map_file(dir.join("wide")) }.unwrap();
    let mut t: Vec<f64> = (0..6)
        .map(|_| {
            let c = w.capacity();
            let s = Instant::now();
            w.grow(c + 8 * GIB).unwrap();
            s.elapsed().as_nanos() as f64
        })
        .collect();
    println!(
        "wide: an 8 GiB step of a sparse 1 TiB-maximum file arena: median {:.1} µs",
        median(&mut t) / 1e3
    );
    // SAFETY: as above.
    let narrow = unsafe {
        Options::new()
            .capacity(256 * MIB)
            .map_file(dir.join("narrow"))
    }
    .unwrap();
    let batch = 20_000;
    let (mut tw, mut tn) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        for (a, out) in [(&w, &mut tw), (&narrow, &mut tn)] {
            let s = Instant::now();
            for _ in 0..batch {
                let _ = std::hint::black_box(a.alloc(32).unwrap().into_handle());
            }
            out.push(s.elapsed().as_nanos() as f64 / batch as f64);
        }
    }
    let (mw, mn) = (median(&mut tw), median(&mut tn));
    println!(
        "wide: 32 B allocation median {mw:.1} ns in the wide arena (unit {} B), {mn:.1} ns in a \
         narrow one (ratio {:.2})",
        w.offset_unit(),
        mw / mn
    );
}
