//! Coalescing while shared: an arena whose main memory is used up serves a request from free
//! segments that lie next to each other, without `&mut` access (`compact()`), and the heap stays
//! walkable and recoverable.

use crate::util::{check, fill, power_cut, Rng};
use parena::{Arena, Error, Freelist, Handle, Options};
use std::path::Path;

/// Allocates 48-byte blocks until the arena is full; returns their handles.
fn fill_small(arena: &Arena) -> Vec<Handle> {
    let mut hs = Vec::new();
    loop {
        match arena.alloc(48) {
            Ok(b) => hs.push(b.into_handle()),
            Err(Error::Full { .. }) => return hs,
            Err(e) => panic!("fill: {e}"),
        }
    }
}

/// Frees `hs` on another thread, which hands its cached blocks to the shared lists (`flush`)
/// before it exits: the calling thread finds every freed block listed, none in its own caches.
fn free_on_other_thread(arena: &Arena, hs: Vec<Handle>) {
    std::thread::scope(|s| {
        s.spawn(|| {
            for h in hs {
                arena.free(h).unwrap();
            }
            arena.flush().unwrap();
        });
    });
}

/// A stale handle to a block whose space was merged and reused is refused with a typed error.
fn assert_refused(arena: &Arena, h: Handle) {
    let mut buf = [0u8; 8];
    let e = arena.read(h, 0, &mut buf).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Stale { .. } | Error::DoubleFree { .. } | Error::OutOfBounds { .. }
        ),
        "read of stale {h:?}: {e:?}"
    );
    let e = arena.free(h).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Stale { .. } | Error::DoubleFree { .. } | Error::OutOfBounds { .. }
        ),
        "free of stale {h:?}: {e:?}"
    );
}

/// The heart of it, on any arena: full of 48-byte blocks, all freed, then requests far larger
/// than any freed block must be served (only coalescing can do it: the main memory is used up).
/// Returns the large blocks with their pattern bytes.
fn large_from_small(arena: &Arena, policy: Freelist) -> Vec<(Handle, usize, u8)> {
    let hs = fill_small(arena);
    assert!(hs.len() > 1000, "{} blocks", hs.len());
    assert_eq!(arena.stats().remaining, 0);
    let stale = hs.clone();
    free_on_other_thread(arena, hs);
    let before = arena.stats();
    assert_eq!(before.coalesced, 0);
    let mut big = Vec::new();
    for (i, len) in [4096usize, 65536, 4096, 20000, 1000, 30000]
        .into_iter()
        .enumerate()
    {
        let byte = 0x10 + i as u8;
        let h = fill(arena, len, byte); // asserts the block came zeroed
        big.push((h, len, byte));
    }
    let after = arena.stats();
    assert!(
        after.coalesced > 1000,
        "{policy:?}: coalesced {}",
        after.coalesced
    );
    assert_eq!(after.remaining, 0, "served without new main memory");
    for &(h, len, byte) in &big {
        check(arena, h, len, byte);
    }
    // Every old handle is refused, whether its header is now inside a large block, a merged free
    // segment or (still) its own free segment.
    for &h in stale.iter().step_by(7) {
        assert_refused(arena, h);
    }
    big
}

#[test]
#[cfg_attr(
    miri,
    ignore = "fills four 256 KiB arenas block by block: tens of minutes under Miri; the smaller tests below cover the same path"
)]
fn large_blocks_from_merged_small_ones() {
    for policy in [Freelist::Optimistic, Freelist::Pessimistic] {
        for cache in [true, false] {
            let mut arena = Options::new()
                .capacity(256 << 10)
                .freelist(policy)
                .thread_cache(cache)
                .heap()
                .unwrap();
            let big = large_from_small(&arena, policy);
            let r = arena.verify().unwrap();
            assert!(r.is_clean(), "{policy:?}: {:?}", r.problems);
            assert_eq!(r.live_blocks, big.len() as u64, "{r:?}");
            // What is left free is in few, large segments.
            assert!(r.free_segments < 64, "{r:?}");
        }
    }
}

/// The calling thread's own cached blocks (every lane) are merged too: they are handed to the
/// shared lists by the pass.
#[test]
fn own_cached_blocks_are_merged() {
    let mut arena = Options::new()
        .capacity(4096 + 16 * 8192)
        .chunk_size(8192)
        .heap()
        .unwrap();
    let lane1 = arena.with_lane(1);
    let mut hs = fill_small(&arena);
    // Sixty blocks next to each other, freed through lane 1: they fill its cache (64 per class)
    // and stay there, off the shared lists.
    hs.sort_unstable_by_key(|h| h.offset());
    let start = (0..hs.len() - 60)
        .find(|&i| (i..i + 59).all(|j| hs[j + 1].offset() - hs[j].offset() == 56))
        .expect("sixty neighbours");
    for &h in &hs[start..start + 60] {
        lane1.free(h).unwrap();
    }
    let s = arena.stats();
    assert_eq!((s.frees, s.remaining), (60, 0));
    // Only a merge of the cached blocks (60 * 56 bytes, next to each other) holds 2 KiB.
    let h = fill(&arena, 2048, 7);
    check(&arena, h, 2048, 7);
    assert!(arena.stats().coalesced >= 36, "{:?}", arena.stats());
    drop(lane1);
    let r = arena.verify().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

/// Nothing listed, or nothing adjacent: the request is refused with `Full` and nothing changes.
#[test]
fn nothing_to_merge_is_still_full() {
    let mut arena = Options::new()
        .capacity(64 << 10)
        .thread_cache(false)
        .heap()
        .unwrap();
    let hs = fill_small(&arena);
    assert!(matches!(arena.alloc(4096), Err(Error::Full { .. })));
    // Free every other block: plenty of free bytes, no two free neighbours.
    for &h in hs.iter().step_by(2) {
        arena.free(h).unwrap();
    }
    for _ in 0..3 {
        assert!(matches!(arena.alloc(100), Err(Error::Full { .. })));
    }
    let s = arena.stats();
    assert_eq!(s.coalesced, 0);
    let r = arena.verify().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

fn open(path: &Path) -> Result<Arena, Error> {
    // SAFETY: a private file in a private temporary directory, mapped by this test only.
    unsafe { Options::new().capacity(256 << 10).map_file(path) }
}

#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn file_arena_after_coalescing_reopens_clean_and_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coalesce.parena");
    let dirty = dir.path().join("dirty.parena");
    let dirty_carved = dir.path().join("dirty-carved.parena");
    let arena = open(&path).unwrap();
    let big = large_from_small(&arena, Freelist::default());
    // A copy of the file while the arena is open is what a kill at this instant leaves: the
    // header says dirty, the heap holds merged segments with the old headers inside them.
    std::fs::copy(&path, &dirty).unwrap();
    // Carve most of what is left: blocks whose data covers old headers, which carving zeroes.
    let mut more = Vec::new();
    while let Ok(mut b) = arena.alloc(3000) {
        b.fill(0x77);
        more.push(b.into_handle());
    }
    assert!(!more.is_empty());
    std::fs::copy(&path, &dirty_carved).unwrap();
    arena.close().unwrap();

    let mut a = open(&path).unwrap();
    assert!(a.was_clean());
    for &(h, len, byte) in &big {
        check(&a, h, len, byte);
    }
    for &h in &more {
        check(&a, h, 3000, 0x77);
    }
    let r = a.verify().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    assert_eq!(r.live_blocks, (big.len() + more.len()) as u64);
    drop(a);

    for (file, carved) in [(&dirty, false), (&dirty_carved, true)] {
        let mut a = open(file).unwrap();
        assert!(!a.was_clean(), "{file:?}");
        let rep = a.recovery_report().expect("recovery ran").clone();
        assert!(rep.is_clean(), "{:?}", rep.problems);
        for &(h, len, byte) in &big {
            check(&a, h, len, byte);
        }
        if carved {
            for &h in &more {
                check(&a, h, 3000, 0x77);
            }
        }
        let r = a.verify().unwrap();
        assert!(r.is_clean(), "{:?}", r.problems);
        let expect = big.len() + if carved { more.len() } else { 0 };
        assert_eq!(r.live_blocks, expect as u64, "{file:?}: {r:?}");
        // The recovered arena serves from the merged space again without touching the blocks.
        while let Ok(mut b) = a.alloc(1000) {
            b.fill(0x55);
        }
        for &(h, len, byte) in &big {
            check(&a, h, len, byte);
        }
    }
}

/// Power loss after a flush: merging and carving that follow the flush must never make the
/// recovered heap hide a block the flush acknowledged (the open succeeds with every acknowledged
/// block intact, or refuses the image with a typed error).
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn power_loss_after_coalescing_keeps_flushed_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (mut opened, mut refused) = (0, 0);
    for seed in 1..=if cfg!(miri) { 2 } else { 60 } {
        let mut rng = Rng(seed);
        let (arena, disk) = Options::new()
            .capacity(128 << 10)
            .thread_cache(false)
            .simulated_disk()
            .unwrap();
        let hs = fill_small(&arena);
        // Keep a few blocks, in runs of one to three; free the others.
        let mut kept = Vec::new();
        let mut i = 0;
        while i < hs.len() {
            let gap = 20 + rng.below(60) as usize;
            for &h in hs.iter().skip(i).take(gap) {
                arena.free(h).unwrap();
            }
            i += gap;
            let keep = 1 + rng.below(3) as usize;
            for (j, &h) in hs.iter().enumerate().skip(i).take(keep) {
                // SAFETY: `h` is live and not read or freed by anyone while this slice lives.
                let bytes = unsafe { arena.get_mut(h) }.unwrap();
                bytes.fill(j as u8 | 1);
                kept.push((h, j as u8 | 1));
            }
            i += keep;
        }
        arena.flush().unwrap();
        // Merge and carve over the old headers, never flushed. The new blocks stay zero, as
        // carving leaves them: an old header inside one reads as a zero word.
        while arena.alloc(1 + rng.below(2500) as usize).is_ok() {}
        assert!(arena.stats().coalesced > 0, "seed {seed}");
        let keep_one_in = 2 + rng.below(2);
        let path = dir.path().join(format!("pl{seed}"));
        match power_cut(arena, &disk, keep_one_in, &mut rng, &path) {
            Ok(mut a) => {
                opened += 1;
                for &(h, byte) in &kept {
                    check(&a, h, 48, byte);
                }
                let r = a.verify().unwrap();
                assert!(r.is_clean(), "seed {seed}: {:?}", r.problems);
                // A block the walk missed would be inside free space: fill all of it.
                while let Ok(mut b) = a.alloc(1 + rng.below(500) as usize) {
                    b.fill(0xaa);
                }
                for &(h, byte) in &kept {
                    check(&a, h, 48, byte);
                }
            }
            Err(Error::Corrupt { .. }) => refused += 1,
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
    assert!(opened > 0, "opened {opened}, refused {refused}");
}

/// Threads churn random sizes on a small arena: coalescing happens, no two live blocks overlap,
/// every block keeps its pattern, and the heap verifies clean at the end.
#[test]
fn churn_with_coalescing_keeps_blocks_apart() {
    const THREADS: u64 = 3;
    // Under Miri a smaller heap and smaller large blocks: it still runs full and merges.
    let (ops, capacity, large) = if cfg!(miri) {
        (60, 32 << 10, 1500)
    } else {
        (40_000, 256 << 10, 6000)
    };
    for policy in [Freelist::Optimistic, Freelist::Pessimistic] {
        let mut arena = Options::new()
            .capacity(capacity)
            .chunk_size(4096)
            .freelist(policy)
            .heap()
            .unwrap();
        let kept: Vec<Vec<(Handle, usize, u8)>> = std::thread::scope(|s| {
            let ts: Vec<_> = (0..THREADS)
                .map(|t| {
                    let arena = &arena;
                    s.spawn(move || {
                        let mut rng = Rng(0xc0a1 + t * 7919);
                        let mut mine: Vec<(Handle, usize, u8)> = Vec::new();
                        for i in 0..ops {
                            let len = if rng.below(8) == 0 {
                                512 + rng.below(large) as usize
                            } else {
                                8 + rng.below(200) as usize
                            };
                            match arena.alloc(len) {
                                Ok(mut b) => {
                                    assert!(b.iter().all(|&x| x == 0), "block not zeroed");
                                    let byte = (t as u8) << 6 | (i as u8 & 0x3f) | 1;
                                    b.fill(byte);
                                    mine.push((b.into_handle(), len, byte));
                                }
                                Err(Error::Full { .. }) => {}
                                Err(e) => panic!("alloc: {e}"),
                            }
                            let busy = mine.len() > 150;
                            if !mine.is_empty() && (busy || rng.below(2) == 0) {
                                let k = rng.below(mine.len() as u64) as usize;
                                let (h, len, byte) = mine.swap_remove(k);
                                check(arena, h, len, byte);
                                arena.free(h).unwrap();
                            }
                        }
                        mine
                    })
                })
                .collect();
            ts.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let mut spans: Vec<(u64, u64)> = Vec::new();
        for &(h, len, byte) in kept.iter().flatten() {
            check(&arena, h, len, byte);
            spans.push((h.offset(), h.offset() + len as u64));
        }
        spans.sort_unstable();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "{policy:?}: blocks overlap: {w:?}");
        }
        let s = arena.stats();
        assert!(s.coalesced > 0, "{policy:?}: {s:?}");
        assert!(
            s.failures > 0,
            "{policy:?}: the arena never ran full: {s:?}"
        );
        let r = arena.verify().unwrap();
        assert!(r.is_clean(), "{policy:?}: {:?}", r.problems);
        assert_eq!(r.live_blocks, spans.len() as u64);
    }
}

/// The order a merge must keep with a file's write-back: a run of free blocks is merged and a
/// block carved from it, which zeroes the old header of the run's second segment. If that zero
/// reaches the disk and the first segment's new span does not, the heap walk reads the zero as
/// "nothing up to the next chunk boundary" and would hide the live blocks behind the run. The
/// pass makes the new spans durable before anything is carved from them.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn power_loss_between_a_merge_and_a_carve() {
    let dir = tempfile::tempdir().unwrap();
    let (arena, disk) = Options::new()
        .capacity(4096 + 16 * 8192)
        .chunk_size(8192)
        .thread_cache(false)
        .simulated_disk()
        .unwrap();
    // 40-byte blocks (48-byte spans): one of them straddles the middle of each chunk as needed.
    let mut hs = Vec::new();
    while let Ok(b) = arena.alloc(40) {
        hs.push(b.into_handle());
    }
    hs.sort_unstable_by_key(|h| h.offset());
    // A run whose first header (and span word) is on one page and the second header on the next,
    // in the first half of a chunk, followed by live blocks up to the chunk's end.
    let first = (1..hs.len() - 60)
        .find(|&i| {
            let a = hs[i].offset() - 8;
            a / 4096 == (a + 8) / 4096
                && a / 4096 != (a + 48) / 4096
                && (a - 4096) % 8192 < 4096
                && (i..i + 40).all(|j| hs[j + 1].offset() - hs[j].offset() == 48)
        })
        .expect("a run across a page boundary");
    for &h in &hs[first..first + 20] {
        arena.free(h).unwrap();
    }
    let kept: Vec<(Handle, u8)> = hs
        .iter()
        .enumerate()
        .filter(|&(i, _)| !(first..first + 20).contains(&i))
        .map(|(i, &h)| (h, i as u8 | 1))
        .collect();
    for &(h, byte) in &kept {
        // SAFETY: `h` is live and nothing else reads or frees it while this slice lives.
        unsafe { arena.get_mut(h) }.unwrap().fill(byte);
    }
    arena.flush().unwrap();
    // Only the merged run holds this; the block's zeroed data covers the second old header.
    let big = arena.alloc(20 * 48 - 8).unwrap().into_handle();
    assert_eq!(big.offset(), hs[first].offset());
    assert!(arena.stats().coalesced >= 19);
    // The power goes; the OS had written back the page of the second header only.
    let second = hs[first].offset() - 8 + 48;
    let img = disk.crash_image(&arena, |p| p == second / 4096 * 4096);
    drop(arena);
    let path = dir.path().join("torn");
    std::fs::write(&path, &img).unwrap();
    // SAFETY: a private file in a private directory.
    match unsafe { Options::new().map_file(&path) } {
        Ok(mut a) => {
            let r = a.verify().unwrap();
            assert!(r.is_clean(), "{:?}", r.problems);
            assert_eq!(r.live_blocks, kept.len() as u64, "a block is hidden: {r:?}");
            while let Ok(mut b) = a.alloc(32) {
                b.fill(0xaa);
            }
            for &(h, byte) in &kept {
                check(&a, h, 40, byte);
            }
        }
        Err(e) => panic!("refused: {e}"),
    }
}

#[test]
fn coalescing_off_answers_full_at_once() {
    // `Options::coalesce(false)`: the same exhausted arena refuses the large request, merges
    // nothing, and `compact()` (exclusive) still merges and serves it.
    let mut arena = Options::new()
        .capacity(if cfg!(miri) { 64 << 10 } else { 1 << 20 })
        .coalesce(false)
        .heap()
        .unwrap();
    let hs = fill_small(&arena);
    free_on_other_thread(&arena, hs);
    assert!(matches!(arena.alloc(4096), Err(Error::Full { .. })));
    assert_eq!(arena.stats().coalesced, 0);
    assert!(arena.compact().unwrap().merged_segments > 500);
    let h = fill(&arena, 4096, 7);
    check(&arena, h, 4096, 7);
}
