//! `GlobalArena`'s front cache (docs/design.md, "`GlobalArena`'s front cache"): a freed small block
//! comes back to the next allocation of its class without the arena; blocks move between threads;
//! an exiting thread, `trim()` and a full arena give them back; a thread keeps lists for two
//! `GlobalArena`s; a dropped `GlobalArena` stays mapped while a thread caches its blocks.
//!
//! Each test calls a `GlobalArena` of its own through `GlobalAlloc`, as a program's global
//! allocator would be called.

use parena::testkit::owns_ptr;
use parena::{Freelist, GlobalArena};
use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// Allocates `size` bytes from `g` (never null: the system allocator backs a full arena).
fn alloc(g: &GlobalArena, size: usize) -> *mut u8 {
    // SAFETY: a non-zero size.
    let p = unsafe { g.alloc(layout(size)) };
    assert!(!p.is_null());
    p
}

/// Frees what [`alloc`] returned for `size`.
fn free(g: &GlobalArena, p: *mut u8, size: usize) {
    // SAFETY: `p` came from `g.alloc` with `layout(size)` and is not used after this.
    unsafe { g.dealloc(p, layout(size)) };
}

fn owned(g: &GlobalArena, p: *mut u8) -> bool {
    g.arena().is_some_and(|a| owns_ptr(a, p))
}

#[test]
fn a_freed_small_block_serves_the_next_allocation_of_its_class_without_the_arena() {
    let g = GlobalArena::new(64 << 20, Freelist::Pessimistic);
    let p = alloc(&g, 8);
    let before = g.arena().unwrap().stats();
    free(&g, p, 8);
    // 5 bytes: the same class as 8 (a span of 16).
    let q = alloc(&g, 5);
    assert_eq!(q, p, "the freed block came back");
    let after = g.arena().unwrap().stats();
    assert_eq!(
        (after.allocations, after.frees, after.net_blocks),
        (before.allocations, before.frees, before.net_blocks),
        "the pair did not reach the arena"
    );
    free(&g, q, 5);
    g.trim();
    assert_eq!(g.front_hits(), 1);
    let trimmed = g.arena().unwrap().stats();
    assert_eq!(
        trimmed.frees,
        before.frees + 1,
        "trim freed the cached block"
    );
    assert_eq!(trimmed.net_blocks, before.net_blocks - 1);
}

#[test]
fn alloc_zeroed_of_a_cached_block_is_zero() {
    let g = GlobalArena::new(64 << 20, Freelist::Pessimistic);
    let p = alloc(&g, 64);
    // SAFETY: `p` holds 64 bytes, ours.
    unsafe { p.write_bytes(0xFF, 64) };
    free(&g, p, 64);
    // SAFETY: a non-zero size.
    let q = unsafe { g.alloc_zeroed(layout(64)) };
    assert_eq!(q, p, "the cached block came back");
    // SAFETY: `q` holds 64 bytes, ours.
    assert!(unsafe { std::slice::from_raw_parts(q, 64) }
        .iter()
        .all(|&b| b == 0));
    free(&g, q, 64);
}

#[test]
fn a_thread_exit_and_trim_give_every_cached_block_back() {
    let g = GlobalArena::new(64 << 20, Freelist::Pessimistic);
    free(&g, alloc(&g, 8), 8); // creates the arena
    g.trim();
    let before = g.arena().unwrap().stats();
    let n = if cfg!(miri) { 300 } else { 5_000 };
    let raw = Box::into_raw(Box::new(g));
    let shared = Shared(raw);
    // `spawn` and `join`, not a scope: a scope may end before the thread's thread-locals are
    // destroyed, and `join` waits for that.
    std::thread::spawn(move || {
        let shared = shared;
        // SAFETY: the arena outlives the thread (dropped after the join).
        let g = unsafe { &*shared.0 };
        let ps: Vec<_> = (0..n)
            .map(|i| (alloc(g, 8 + i % 200), 8 + i % 200))
            .collect();
        for (p, size) in ps {
            free(g, p, size);
        }
    })
    .join()
    .unwrap();
    // SAFETY: `raw` came from `Box::into_raw`; the thread is gone.
    let g = unsafe { Box::from_raw(raw) };
    // The thread's own lists went back when it exited; what it moved to the stash goes back now.
    g.trim();
    let after = g.arena().unwrap().stats();
    assert_eq!(after.net_blocks, before.net_blocks, "{before:?}\n{after:?}");
    assert_eq!(after.net_bytes, before.net_bytes);
}

/// A block handed to another thread.
struct Block(*mut u64);
// SAFETY: the block's memory is plain bytes; the receiving thread owns it from the send on.
unsafe impl Send for Block {}

#[test]
fn blocks_freed_on_another_thread_serve_this_one_and_are_never_handed_out_twice() {
    let g = GlobalArena::new(256 << 20, Freelist::Pessimistic);
    // A consumer's local list moves to the stash once it holds 16 KiB (292 blocks of 56 bytes):
    // Miri's smaller run still frees past that.
    let rounds = if cfg!(miri) { 4 } else { 200 };
    let batch = if cfg!(miri) { 150 } else { 2_000 };
    let (tx, rx) = mpsc::channel::<Vec<(Block, u64)>>();
    std::thread::scope(|s| {
        s.spawn(|| {
            // The consumer: checks each block's stamp, then frees it.
            for blocks in rx {
                for (Block(p), stamp) in blocks {
                    // SAFETY: the producer handed the 48-byte block over; ours until freed.
                    let words = unsafe { std::slice::from_raw_parts(p, 6) };
                    let seen = [words[0], words[5]];
                    assert_eq!(seen, [stamp, !stamp], "block {p:?} was written by another");
                    free(&g, p.cast(), 48);
                }
            }
        });
        let mut stamp = 0u64;
        let mut live = std::collections::HashSet::new();
        for _ in 0..rounds {
            let mut blocks = Vec::with_capacity(batch);
            for _ in 0..batch {
                stamp += 1;
                let p = alloc(&g, 48).cast::<u64>();
                // SAFETY: `p` holds 48 bytes (six words), ours.
                let words = unsafe { std::slice::from_raw_parts_mut(p, 6) };
                words[0] = stamp;
                words[5] = !stamp;
                blocks.push((Block(p), stamp));
            }
            live.clear();
            assert!(
                blocks.iter().all(|(b, _)| live.insert(b.0)),
                "a block handed out twice in one batch"
            );
            tx.send(blocks).unwrap();
        }
        drop(tx);
    });
    g.trim();
    assert!(
        g.front_hits() > 0,
        "the producer reused none of the consumer's frees"
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "fills a 1 MiB arena 16 bytes at a time, then merges it: minutes under Miri; the \
              coalescing tests cover the merge"
)]
fn a_full_arena_takes_the_cached_blocks_back_before_the_system_allocator() {
    let g = GlobalArena::new(1 << 20, Freelist::Pessimistic);
    // Fill the arena with 16-byte blocks, then free them all: they sit in the front cache, live
    // to the arena.
    let mut small = Vec::new();
    loop {
        let p = alloc(&g, 16);
        if !owned(&g, p) {
            free(&g, p, 16);
            break;
        }
        small.push(p);
    }
    let fallbacks = g.fallbacks();
    for p in small {
        free(&g, p, 16);
    }
    // Blocks of another class: the arena serves them from what the front cache gave back.
    let big: Vec<_> = (0..1000).map(|_| alloc(&g, 400)).collect();
    assert!(big.iter().all(|&p| owned(&g, p)));
    assert_eq!(g.fallbacks(), fallbacks, "no request went to the system");
    for p in big {
        free(&g, p, 400);
    }
}

#[test]
fn a_thread_caches_blocks_of_two_global_arenas_and_no_more() {
    let gs: Vec<_> = (0..3)
        .map(|_| GlobalArena::new(16 << 20, Freelist::Pessimistic))
        .collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            // The first two arenas this thread asks get its lists.
            for g in &gs[..2] {
                let a = alloc(g, 32);
                free(g, a, 32);
                assert_eq!(alloc(g, 32), a, "the cached block came back");
                free(g, a, 32);
            }
            // The third frees into its arena.
            let g3 = &gs[2];
            let b = alloc(g3, 32);
            assert!(owned(g3, b));
            let frees = g3.arena().unwrap().stats().frees;
            free(g3, b, 32);
            assert_eq!(
                g3.arena().unwrap().stats().frees,
                frees + 1,
                "its arena freed it"
            );
            let c = alloc(g3, 32);
            assert!(owned(g3, c), "no other arena's cached block");
            free(g3, c, 32);
            // Each arena's cached block is its own.
            for g in &gs[..2] {
                let a = alloc(g, 32);
                assert!(owned(g, a));
                free(g, a, 32);
            }
        });
    });
}

/// A `GlobalArena` pointer to hand to a thread.
struct Shared(*const GlobalArena);
// SAFETY: `GlobalArena` is `Sync`; the test keeps it alive while the thread uses it.
unsafe impl Send for Shared {}

#[test]
fn a_dropped_global_arena_stays_mapped_while_a_thread_caches_its_blocks() {
    let (go, wait) = mpsc::channel::<()>();
    let (cached, ready) = mpsc::channel::<()>();
    let raw = Box::into_raw(Box::new(GlobalArena::new(16 << 20, Freelist::Pessimistic)));
    let shared = Shared(raw);
    let t = std::thread::spawn(move || {
        let shared = shared;
        // SAFETY: the arena is dropped only after `cached` is sent, and `g` is not used after.
        let g = unsafe { &*shared.0 };
        let ps: Vec<_> = (0..64).map(|_| alloc(g, 24)).collect();
        for p in ps {
            free(g, p, 24);
        }
        cached.send(()).unwrap();
        // The arena is dropped while this thread's lists hold its blocks; the thread's exit gives
        // them back to the arena, which its lists kept mapped.
        wait.recv().unwrap();
    });
    ready.recv().unwrap();
    // SAFETY: `raw` came from `Box::into_raw`; the thread no longer uses it.
    drop(unsafe { Box::from_raw(raw) });
    go.send(()).unwrap();
    t.join().unwrap();
}

#[test]
fn the_stash_keeps_a_bounded_number_of_bytes() {
    let g = GlobalArena::new(64 << 20, Freelist::Pessimistic);
    // Under Miri: past two local lists (512 blocks of 32 bytes each), not the stash's bound.
    let n = if cfg!(miri) { 1_100 } else { 400_000 };
    let ps: Vec<_> = (0..n).map(|_| alloc(&g, 24)).collect();
    let frees = g.arena().unwrap().stats().frees;
    for p in ps {
        free(&g, p, 24);
    }
    let freed = g.arena().unwrap().stats().frees - frees;
    // A block of 24 data bytes spans 32: the stash holds at most 8 MiB of them, the thread's
    // local list at most 16 KiB, and a chain (at most 16 KiB) may pass the bound.
    let kept = (8 << 20) / 32 + 2 * (16 << 10) / 32;
    assert!(
        freed >= (n as u64).saturating_sub(kept),
        "{freed} of {n} reached the arena"
    );
}
