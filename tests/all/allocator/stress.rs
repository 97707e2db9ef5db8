//! Churn stress: 8 threads allocate and free random 16–1024-byte blocks on a 64 KiB arena for about
//! two seconds per policy, each writing its own pattern into its blocks and re-checking it.
//!
//! The two seconds are how long the workload runs, not something measured. What is checked: every
//! block keeps its pattern, no two live blocks overlap, the run ends (a watchdog fails the test if
//! it has not after 30 s: a livelocked list would never return), and after `compact()` the heap is
//! consistent with `discarded` below 10 % of the capacity.
//!
//! Each thread keeps at most its share of the heap allocated, so a `Full` comes from fragmentation:
//! free segments are merged only by `compact()`, so under this churn the lists end up holding
//! many pieces too small for the larger requests (worst with `Optimistic`, which splits the
//! largest segment first). A `Full` makes the thread free one of its blocks; it is not a failure.

use parena::{Arena, Error, Freelist, Handle, Options};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const THREADS: usize = 8;
const CAPACITY: u64 = 64 << 10;
const RUN: Duration = Duration::from_secs(2);
const WATCHDOG: Duration = Duration::from_secs(30);
/// Bytes one thread keeps allocated at most: its share of the heap, less a margin for headers,
/// chunk tails and fragmentation.
const BUDGET: usize = (CAPACITY as usize - 4096) / THREADS * 6 / 10;

/// A block one thread owns: handle, length, pattern seed.
type Owned = (Handle, usize, u64);

fn byte(seed: u64, i: usize) -> u8 {
    let hi = (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8;
    (hi ^ (i as u8).wrapping_mul(13)) | 1
}

fn check(arena: &Arena, &(h, len, seed): &Owned) {
    let mut buf = vec![0u8; len];
    arena
        .read(h, 0, &mut buf)
        .unwrap_or_else(|e| panic!("read {h:?}: {e:?}"));
    for (i, &b) in buf.iter().enumerate() {
        assert_eq!(b, byte(seed, i), "block {h:?} (len {len}) byte {i} changed");
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// One thread's churn until `until`; returns the blocks it still owns and how many operations it
/// did.
fn churn(
    arena: &Arena,
    mailbox: &Mutex<Vec<Owned>>,
    t: usize,
    until: Instant,
) -> (Vec<Owned>, u64) {
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ ((t as u64 + 1) << 32));
    let mut mine: Vec<Owned> = Vec::new();
    let mut seq = (t as u64) << 48;
    let mut ops = 0u64;
    let mut held = 0usize;
    while Instant::now() < until {
        ops += 1;
        let r = rng.below(100);
        // Allocate while under this thread's share of the heap, so that a `Full` comes from
        // fragmentation, not from the threads asking for more than the arena holds.
        if r < 55 && held < BUDGET {
            let len = 16 + rng.below(1024 - 16 + 1) as usize;
            match arena.alloc(len) {
                Ok(mut b) => {
                    assert!(b.iter().all(|&x| x == 0), "fresh block not zeroed");
                    seq += 1;
                    for (i, x) in b.iter_mut().enumerate() {
                        *x = byte(seq, i);
                    }
                    mine.push((b.into_handle(), len, seq));
                    held += len;
                }
                Err(Error::Full { .. }) => {
                    // Make room: give back a block of ours, if any.
                    if !mine.is_empty() {
                        let o = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                        held -= o.1;
                        check(arena, &o);
                        arena.free(o.0).unwrap();
                    }
                }
                Err(e) => panic!("alloc({len}): {e:?}"),
            }
        } else if r < 90 {
            if !mine.is_empty() {
                let o = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                held -= o.1;
                check(arena, &o);
                if r < 85 {
                    arena.free(o.0).unwrap();
                    assert!(arena.free(o.0).is_err(), "second free of {:?}", o.0);
                } else {
                    // Hand it to another thread to free.
                    mailbox.lock().unwrap().push(o);
                }
            }
        } else if r < 95 {
            let o = mailbox.lock().unwrap().pop();
            if let Some(o) = o {
                check(arena, &o);
                arena.free(o.0).unwrap();
            }
        } else {
            for o in &mine {
                check(arena, o);
            }
        }
    }
    for o in &mine {
        check(arena, o);
    }
    (mine, ops)
}

/// Asserts no two blocks overlap (headers included).
fn assert_disjoint(blocks: &[Owned]) {
    let mut spans: Vec<(u64, u64)> = blocks
        .iter()
        .map(|&(h, len, _)| (h.offset() - 8, h.offset() + (len as u64).div_ceil(8) * 8))
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "blocks {:?} and {:?} overlap", w[0], w[1]);
    }
}

fn stress(policy: Freelist, thread_cache: bool) {
    let mut arena = Options::new()
        .capacity(CAPACITY)
        .freelist(policy)
        .thread_cache(thread_cache)
        .heap()
        .unwrap();
    let mailbox = Arc::new(Mutex::new(Vec::new()));
    let start = Arc::new(Barrier::new(THREADS));
    let until = Instant::now() + RUN;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (a, mb, start) = (arena.clone(), mailbox.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                churn(&a, &mb, t, until)
            })
        })
        .collect();
    let mut live = Vec::new();
    let mut ops = 0;
    for w in workers {
        let (mine, n) = w.join().unwrap();
        live.extend(mine);
        ops += n;
    }
    live.extend(mailbox.lock().unwrap().drain(..));
    assert!(ops > 0);
    assert_disjoint(&live);
    for o in &live {
        check(&arena, o);
    }
    let s = arena.stats();
    assert!(s.frees > 0 && s.allocations > 0, "{s:?}");
    if policy != Freelist::None {
        assert!(
            s.from_freelist > 0,
            "the run never took space from the shared lists: {s:?}"
        );
    }

    let r = arena.compact().unwrap();
    assert!(r.is_clean(), "compact: {:?}", r.problems);
    assert_eq!(r.live_blocks, live.len() as u64, "{r:?}");
    let discarded = arena.stats().discarded;
    eprintln!(
        "stress {policy:?} (thread cache {thread_cache}): {ops} operations, {} allocations \
         ({} from the lists, {} from caches), {} failed Full; after compact {} live blocks, \
         {discarded} bytes discarded",
        s.allocations, s.from_freelist, s.from_cache, s.failures, r.live_blocks
    );
    assert_eq!(discarded, r.leaked_bytes, "{r:?}");
    if policy != Freelist::None {
        // With `Freelist::None` every hole between live blocks is discarded by definition; the
        // check for it is the one after everything is freed, below.
        assert!(
            discarded < CAPACITY / 10,
            "{discarded} bytes discarded after compact: {r:?}"
        );
    }
    let v = arena.verify().unwrap();
    assert!(v.is_clean(), "verify: {:?}", v.problems);
    for o in &live {
        check(&arena, o);
    }

    for o in &live {
        arena.free(o.0).unwrap();
    }
    let r = arena.compact().unwrap();
    assert!(r.is_clean(), "compact: {:?}", r.problems);
    let s = arena.stats();
    assert_eq!((s.allocated, s.discarded), (0, 0), "{s:?} {r:?}");
}

/// Runs `stress(policy, thread_cache)` on its own thread and fails if it has not finished within
/// the watchdog.
fn with_watchdog(policy: Freelist, thread_cache: bool) {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        stress(policy, thread_cache);
        let _ = tx.send(());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(()) => t.join().unwrap(),
        // The sender was dropped without a message: the run panicked; surface its panic.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{policy:?} churn did not finish within {WATCHDOG:?}: a thread is stuck")
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "a 2 s, 8-thread workload")]
fn stress_none() {
    with_watchdog(Freelist::None, true);
}

#[test]
#[cfg_attr(miri, ignore = "a 2 s, 8-thread workload")]
fn stress_optimistic() {
    with_watchdog(Freelist::Optimistic, true);
}

#[test]
#[cfg_attr(miri, ignore = "a 2 s, 8-thread workload")]
fn stress_pessimistic() {
    with_watchdog(Freelist::Pessimistic, true);
}

// Without the per-thread caches every free goes to the shared lists: the most contention on them.
#[test]
#[cfg_attr(miri, ignore = "a 2 s, 8-thread workload")]
fn stress_optimistic_shared_lists_only() {
    with_watchdog(Freelist::Optimistic, false);
}

#[test]
#[cfg_attr(miri, ignore = "a 2 s, 8-thread workload")]
fn stress_pessimistic_shared_lists_only() {
    with_watchdog(Freelist::Pessimistic, false);
}
