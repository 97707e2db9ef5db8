//! Bump allocation with a write of the bytes: parena (heap, anonymous map, file map) beside
//! `rarena-allocator`, `bumpalo`, the system allocator and the floor (a bare shared
//! `AtomicUsize::fetch_add` bump over a preallocated buffer), 32 B / 64 B / 1 KiB blocks, 1 and 2
//! threads. One iteration is one allocation; with 2 threads the time is aggregate wall time per
//! allocation.
//!
//! Every case is timed with `iter_custom`. The `iters` allocations are cut into batches of at most
//! 16 MiB of blocks; each contender's state (arena, `Bump`, floor buffer) is made once per case and
//! emptied between batches, untimed: parena frees every block and `compact`s (the bump offset goes
//! back to the data start), `rarena-allocator` is `clear`ed, `bumpalo` is `reset`, the floor's
//! counter is set to 0, boxes are dropped. So no arena fills mid-measurement, and every contender
//! runs on memory it has touched before: the numbers are the allocators' steady-state cost, not
//! the kernel's first-touch page faults. Each allocation's result (handle, offset, pointer or box)
//! is pushed into a vector allocated before the timed region, for every contender alike. With 2
//! threads each thread does half of the batch after a barrier; the time runs from the barrier to
//! the last join.
//!
//! The file map lives in a temp dir on `/dev/shm` when there is one, so that closing it does not
//! write back to a disk; the mapping code path is the same as on a disk file system.
//!
//! `read/32B/1t`: reading one 32 B block, copied into a buffer on the stack: parena's
//! `read_with` and `read` (both check the handle's header and pin the block for the copy) beside
//! `rarena-allocator`'s `get_bytes` at a kept offset (no check) and the floor (a copy out of a
//! plain buffer at a kept offset). 4,096 blocks are allocated and written untimed; one iteration
//! reads the next of them in allocation order, so the blocks stay in cache and the time is the
//! read path itself, not memory latency.
//!
//! `PARENA_BENCH_QUICK=1` shrinks batches (used with `-- --test` by `.ci/bench-quick.sh`).

// Not the library: std's atomics, `Arc` and `Mutex` are fine here (see clippy.toml).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_utils::CachePadded;
use rarena_allocator::{Allocator as _, Buffer as _};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

const SIZES: [usize; 3] = [32, 64, 1024];
const FILL: u8 = 0xA5;

fn quick() -> bool {
    std::env::var_os("PARENA_BENCH_QUICK").is_some()
}

/// Block bytes one batch covers at most (all threads together).
fn batch_bytes() -> usize {
    if quick() {
        1 << 20
    } else {
        16 << 20
    }
}

/// Capacity for an arena that must hold `n` blocks of `len` bytes from `threads` threads, with
/// room for per-block headers, chunk tails and the arena header. A multiple of 1 MiB.
fn capacity_for(n: u64, len: usize, threads: usize) -> usize {
    let span = len.div_ceil(8) * 8 + 8;
    let bytes = n as usize * span;
    let slack = bytes / 8 + threads * (256 << 10) + (2 << 20);
    (bytes + slack).div_ceil(1 << 20) << 20
}

/// One allocator under test. Its state is made once per case and reused across batches, so
/// every contender runs on memory it has touched before (the steady state).
trait Contender: Sync {
    /// What one thread keeps of its allocations (a handle, offset or box per block), in a vector
    /// allocated before the timed region.
    type Kept: Send;
    /// Allocates `k` blocks of `len` bytes, writes every byte, and keeps each result.
    fn work(&self, len: usize, k: u64, kept: &mut Vec<Self::Kept>);
    /// Gives everything back (untimed) so the next batch starts from an empty allocator.
    fn reset(&mut self, kept: Vec<Vec<Self::Kept>>);
}

/// Runs `iters` allocations in batches of at most `per_batch` (all threads together) and returns
/// the timed wall time. With several threads each does its share after a barrier; the time runs
/// from the barrier to the last join.
fn run<C: Contender>(
    c: &mut C,
    iters: u64,
    threads: usize,
    per_batch: u64,
    len: usize,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(per_batch);
        left -= n;
        let share = n.div_ceil(threads as u64);
        let mut kept: Vec<Vec<C::Kept>> = (0..threads)
            .map(|_| Vec::with_capacity(share as usize))
            .collect();
        if threads == 1 {
            let t0 = Instant::now();
            c.work(len, n, &mut kept[0]);
            total += t0.elapsed();
        } else {
            let barrier = Barrier::new(threads + 1);
            let shared = &*c;
            total += std::thread::scope(|s| {
                let hs: Vec<_> = kept
                    .iter_mut()
                    .enumerate()
                    .map(|(i, kept)| {
                        let k = share.min(n.saturating_sub(i as u64 * share));
                        let barrier = &barrier;
                        s.spawn(move || {
                            barrier.wait();
                            shared.work(len, k, kept);
                        })
                    })
                    .collect();
                barrier.wait();
                let t0 = Instant::now();
                for h in hs {
                    h.join().expect("worker");
                }
                t0.elapsed()
            });
        }
        c.reset(kept);
    }
    total
}

/// parena: free every block, then `compact` lowers the bump offset back to the data start.
struct Parena(parena::Arena);

impl Contender for Parena {
    type Kept = parena::Handle;
    #[inline]
    fn work(&self, len: usize, k: u64, kept: &mut Vec<parena::Handle>) {
        for _ in 0..k {
            let mut b = self.0.alloc(len).expect("arena sized for a batch");
            b.fill(FILL);
            kept.push(b.into_handle());
        }
    }
    fn reset(&mut self, kept: Vec<Vec<parena::Handle>>) {
        for v in kept {
            for h in v.into_iter().rev() {
                self.0.free(h).expect("live handle");
            }
        }
        self.0.compact().expect("no other clone is in use");
        assert_eq!(self.0.stats().allocated, 0, "compact gave everything back");
    }
}

/// A temp dir for the file-map cases, on tmpfs when there is one.
fn file_dir() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        if let Ok(d) = tempfile::tempdir_in("/dev/shm") {
            return d;
        }
    }
    tempfile::tempdir().expect("temp dir")
}

fn new_file_arena(path: &PathBuf, cap: usize) -> parena::Arena {
    let _ = std::fs::remove_file(path);
    // SAFETY: the file is in a temp dir private to this process and nothing else maps it.
    unsafe {
        parena::Options::new()
            .capacity(cap as u64)
            .create_new(true)
            .map_file(path)
    }
    .expect("create file arena")
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

/// `rarena-allocator`: blocks are detached (kept by offset); `clear` empties the arena.
struct Rarena(rarena_allocator::sync::Arena);

impl Contender for Rarena {
    type Kept = u32;
    #[inline]
    fn work(&self, len: usize, k: u64, kept: &mut Vec<u32>) {
        for _ in 0..k {
            let mut m = self
                .0
                .alloc_bytes(len as u32)
                .expect("arena sized for a batch");
            rarena_block(&mut m).fill(FILL);
            kept.push(m.offset() as u32);
            // SAFETY: the block is not used after the arena is cleared or dropped: only its
            // offset escapes, and nothing reads through it.
            unsafe { m.detach() };
        }
    }
    fn reset(&mut self, kept: Vec<Vec<u32>>) {
        drop(kept);
        // SAFETY: no reference into the arena's memory is alive (the blocks were detached and
        // only their offsets kept, now dropped).
        unsafe { self.0.clear() }.expect("writable arena");
    }
}

/// The system allocator: `Box<[u8]>`, dropped untimed.
struct System;

impl Contender for System {
    type Kept = Box<[u8]>;
    #[inline]
    fn work(&self, len: usize, k: u64, kept: &mut Vec<Box<[u8]>>) {
        for _ in 0..k {
            kept.push(vec![FILL; len].into_boxed_slice());
        }
    }
    fn reset(&mut self, kept: Vec<Vec<Box<[u8]>>>) {
        drop(kept);
    }
}

/// The floor: one shared counter bumped with `fetch_add` over a buffer, reset to 0 per batch.
struct Floor {
    /// Start of `cap` bytes from `alloc_zeroed` (4096-aligned, so the allocator writes the
    /// zeros: the pages are resident from the start), freed in `Drop`.
    base: NonNull<u8>,
    cap: usize,
    next: CachePadded<AtomicUsize>,
}

// SAFETY: `Floor` only hands out disjoint ranges of its buffer (each `fetch_add` result is owned by
// the one thread that got it), so sharing it between threads is sound.
unsafe impl Sync for Floor {}

impl Floor {
    fn new(cap: usize) -> Floor {
        let layout = std::alloc::Layout::from_size_align(cap, 4096).expect("layout");
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        Floor {
            base: NonNull::new(raw).expect("allocation failed"),
            cap,
            next: CachePadded::new(AtomicUsize::new(0)),
        }
    }
}

impl Contender for Floor {
    type Kept = usize;
    #[inline]
    fn work(&self, len: usize, k: u64, kept: &mut Vec<usize>) {
        let span = len.div_ceil(8) * 8;
        for _ in 0..k {
            let off = self.next.fetch_add(span, Ordering::Relaxed);
            assert!(off + span <= self.cap, "floor buffer sized for a batch");
            // SAFETY: `off + span <= cap`, so the result stays inside the allocation.
            let p = unsafe { self.base.as_ptr().add(off) };
            // SAFETY: `off..off + span` was handed to this thread alone by the `fetch_add` and
            // lies inside the buffer; no other reference to these bytes exists.
            let s = unsafe { std::slice::from_raw_parts_mut(p, len) };
            s.fill(FILL);
            kept.push(off);
        }
    }
    fn reset(&mut self, kept: Vec<Vec<usize>>) {
        drop(kept);
        self.next.store(0, Ordering::Relaxed);
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.cap, 4096).expect("layout");
        // SAFETY: `base` came from `alloc_zeroed(layout)` and is freed only here.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), layout) };
    }
}

fn case<C: Contender>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    param: &str,
    (threads, per_batch, len): (usize, u64, usize),
    mut c: C,
) {
    g.bench_function(BenchmarkId::new(name, param), |b| {
        b.iter_custom(|iters| run(&mut c, iters, threads, per_batch, len))
    });
}

fn bench_alloc(c: &mut Criterion) {
    let dir = file_dir();
    let path = dir.path().join("alloc.parena");
    for threads in [1usize, 2] {
        for len in SIZES {
            let mut g = c.benchmark_group(format!("alloc/{len}B/{threads}t"));
            g.throughput(Throughput::Elements(1));
            let per_batch = (batch_bytes() / (len + 8)) as u64;
            let cap = capacity_for(per_batch, len, threads);
            let param = format!("{len}B/{threads}t");
            let shape = (threads, per_batch, len);
            let heap = parena::Options::new().capacity(cap as u64).heap();
            case(
                &mut g,
                "parena-heap",
                &param,
                shape,
                Parena(heap.expect("heap")),
            );
            let anon = parena::Options::new().capacity(cap as u64).map_anon();
            case(
                &mut g,
                "parena-anon",
                &param,
                shape,
                Parena(anon.expect("anon")),
            );
            case(
                &mut g,
                "parena-file",
                &param,
                shape,
                Parena(new_file_arena(&path, cap)),
            );
            let r = rarena_allocator::Options::new()
                .with_capacity(cap as u32)
                .alloc::<rarena_allocator::sync::Arena>()
                .expect("rarena arena");
            case(&mut g, "rarena", &param, shape, Rarena(r));
            if threads == 1 {
                let mut bump = bumpalo::Bump::with_capacity(cap);
                g.bench_function(BenchmarkId::new("bumpalo", &param), |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        let mut left = iters;
                        while left > 0 {
                            let n = left.min(per_batch);
                            left -= n;
                            let mut kept: Vec<usize> = Vec::with_capacity(n as usize);
                            let t0 = Instant::now();
                            for _ in 0..n {
                                let s = bump.alloc_slice_fill_copy(len, FILL);
                                kept.push(s.as_ptr() as usize);
                            }
                            total += t0.elapsed();
                            drop(kept);
                            bump.reset();
                        }
                        total
                    })
                });
            }
            case(&mut g, "system-box", &param, shape, System);
            case(&mut g, "floor-fetch_add", &param, shape, Floor::new(cap));
            g.finish();
        }
    }
}

/// Blocks the read cases cycle through (a power of two): 4,096 × 40 B stays in the L2 cache.
const READ_BLOCKS: usize = 4096;

/// The bytes block `i` holds in the read cases.
fn read_pattern(i: usize) -> [u8; 32] {
    [i as u8; 32]
}

/// Times `iters` reads through `read`, which copies block `i % READ_BLOCKS` into the buffer.
fn time_reads(iters: u64, mut read: impl FnMut(usize, &mut [u8; 32])) -> Duration {
    let mut buf = [0u8; 32];
    let t0 = Instant::now();
    for i in 0..iters as usize {
        read(i & (READ_BLOCKS - 1), &mut buf);
        std::hint::black_box(&buf);
    }
    t0.elapsed()
}

fn bench_read(c: &mut Criterion) {
    const LEN: usize = 32;
    let cap = capacity_for(READ_BLOCKS as u64, LEN, 1);
    let mut g = c.benchmark_group("read/32B/1t");
    g.throughput(Throughput::Elements(1));
    let param = "32B/1t";

    let arena = parena::Options::new()
        .capacity(cap as u64)
        .heap()
        .expect("heap");
    let handles: Vec<parena::Handle> = (0..READ_BLOCKS)
        .map(|i| arena.alloc_copy(&read_pattern(i)).expect("room"))
        .collect();
    for (i, h) in handles.iter().enumerate() {
        let mut buf = [0u8; LEN];
        arena.read(*h, 0, &mut buf).expect("live handle");
        assert_eq!(buf, read_pattern(i), "parena block {i}");
    }
    g.bench_function(BenchmarkId::new("parena-heap-read_with", param), |b| {
        b.iter_custom(|iters| {
            time_reads(iters, |i, buf| {
                arena
                    .read_with(handles[i], |bytes| buf.copy_from_slice(&bytes[..LEN]))
                    .expect("live handle")
            })
        })
    });
    g.bench_function(BenchmarkId::new("parena-heap-read", param), |b| {
        b.iter_custom(|iters| {
            time_reads(iters, |i, buf| {
                arena.read(handles[i], 0, buf).expect("live handle")
            })
        })
    });

    let r = rarena_allocator::Options::new()
        .with_capacity(cap as u32)
        .alloc::<rarena_allocator::sync::Arena>()
        .expect("rarena arena");
    let offsets: Vec<usize> = (0..READ_BLOCKS)
        .map(|i| {
            let mut m = r.alloc_bytes(LEN as u32).expect("room");
            rarena_block(&mut m)[..LEN].copy_from_slice(&read_pattern(i));
            let off = m.offset();
            // SAFETY: the block stays allocated until `r` is dropped, after the last read; only
            // its offset escapes.
            unsafe { m.detach() };
            off
        })
        .collect();
    // Every offset in `offsets` is the start of a 32 B block allocated above and held until `r`
    // drops (detached, never freed): what `get_bytes` asks of its caller.
    let rarena_get = |off: usize| -> &[u8] {
        // SAFETY: `off..off + LEN` is one of those blocks, inside the arena (see above).
        unsafe { r.get_bytes(off, LEN) }
    };
    for (i, off) in offsets.iter().enumerate() {
        assert_eq!(rarena_get(*off), &read_pattern(i), "rarena block {i}");
    }
    g.bench_function(BenchmarkId::new("rarena-get_bytes", param), |b| {
        b.iter_custom(|iters| {
            time_reads(iters, |i, buf| buf.copy_from_slice(rarena_get(offsets[i])))
        })
    });

    let span = LEN.div_ceil(8) * 8 + 8;
    let mut plain = vec![0u8; READ_BLOCKS * span];
    for i in 0..READ_BLOCKS {
        plain[i * span..i * span + LEN].copy_from_slice(&read_pattern(i));
    }
    let plain_offsets: Vec<usize> = (0..READ_BLOCKS).map(|i| i * span).collect();
    g.bench_function(BenchmarkId::new("floor-slice", param), |b| {
        b.iter_custom(|iters| {
            time_reads(iters, |i, buf| {
                let off = plain_offsets[i];
                buf.copy_from_slice(&plain[off..off + LEN])
            })
        })
    });
    g.finish();
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
    targets = bench_alloc, bench_read
}
criterion_main!(benches);
