//! loom models of the lock-free free lists and the free/allocate protocol around them.
//!
//! Run with `.ci/loom.sh`, or by hand:
//! `RUSTFLAGS="--cfg parena_loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom`.
//!
//! Each model explores every interleaving of 2–3 threads (within the preemption bound) and checks
//! that no segment is lost, handed to two owners, or listed twice. Above each model is the guard it
//! proves, and how the model was seen to fail without it: the guard was removed by hand in a
//! scratch copy of the crate, loom (`LOOM_MAX_PREEMPTIONS=3`) reported a failing interleaving with
//! the symptom quoted, and the guard was restored (the models pass on the crate as it is).

// Not the library: std's atomics, `Arc` and `Mutex` are fine here (see clippy.toml).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]
#![cfg(parena_loom)]

use loom::thread;
use parena::loom_hooks::Lists;
use parena::{Arena, Error, Freelist, Handle, Options};
use std::collections::BTreeSet;

/// Explores `f` under loom and prints how many interleavings it ran. The preemption bound comes
/// from `LOOM_MAX_PREEMPTIONS` (default 2 here, so a plain `cargo test` stays bounded too).
fn model<F: Fn() + Sync + Send + 'static>(name: &str, f: F) {
    model_capped(name, u32::MAX, f);
}

/// [`model`] with the preemption bound held at `cap` at most, for a model whose every step is
/// several loom operations (`LOOM_FULL=1` lifts the cap).
fn model_capped<F: Fn() + Sync + Send + 'static>(name: &str, cap: u32, f: F) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let mut b = loom::model::Builder::new();
    let bound = b.preemption_bound.unwrap_or(2);
    let full = std::env::var_os("LOOM_FULL").is_some();
    b.preemption_bound = Some(if full { bound } else { bound.min(cap as usize) });
    b.max_branches = 100_000;
    let runs = Arc::new(AtomicU64::new(0));
    let counted = runs.clone();
    b.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        f();
    });
    eprintln!(
        "{name}: {} interleavings (preemption bound {:?})",
        runs.load(Ordering::Relaxed),
        b.preemption_bound
    );
}

const BLOCK: usize = 120;

/// A heap arena of eight 512-byte chunks filled with 120-byte blocks, so that any further
/// allocation must come from the free lists. Returns the arena and the blocks' handles.
///
/// The per-thread caches of freed blocks are off: these models are about the shared lists (a
/// cache is one thread's private stack, and would keep the freed blocks off the lists).
fn full_arena(policy: Freelist) -> (Arena, Vec<Handle>) {
    // One page of header, one of heap (eight 512-byte chunks), one of start and flush maps.
    let arena = Options::new()
        .capacity(3 * 4096)
        .chunk_size(512)
        .freelist(policy)
        .thread_cache(false)
        .heap()
        .unwrap();
    let mut hs = Vec::new();
    loop {
        match arena.alloc(BLOCK) {
            Ok(b) => hs.push(b.into_handle()),
            Err(Error::Full { .. }) => break,
            Err(e) => panic!("fill: {e}"),
        }
    }
    assert_eq!(hs.len(), 32, "4 blocks in each of 8 chunks");
    (arena, hs)
}

/// Checks, with every other thread gone, that the heap walk and the lists agree: every free
/// segment is listed once, nothing else is listed, and `live` blocks are live.
fn settle(mut arena: Arena, live: u64, free: u64) {
    let r = arena.verify().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    assert_eq!(r.live_blocks, live, "{r:?}");
    assert_eq!(r.free_segments, free, "{r:?}");
    assert_eq!(
        r.listed_segments, free,
        "a free segment is not listed: {r:?}"
    );
}

/// Two frees (of two blocks, one class) race with an allocation that can only be served from the
/// free list.
///
/// Guard: the CAS on the class head in `FreeLists::push`. Checked by hand: with that CAS replaced
/// by a load, compare and store, loom finds the interleaving where both pushes read the same head
/// and one freed block drops off its list ("a free segment is not listed", `listed_segments` 1 <
/// `free_segments` 2), for both policies.
fn two_frees_and_an_alloc(policy: Freelist) {
    model(&format!("two_frees_and_an_alloc({policy:?})"), move || {
        let (arena, hs) = full_arena(policy);
        let (x, y) = (hs[5], hs[18]);
        let frees: Vec<_> = [x, y]
            .into_iter()
            .map(|h| {
                let a = arena.clone();
                thread::spawn(move || a.free(h).unwrap())
            })
            .collect();
        let got = match arena.alloc(BLOCK) {
            Ok(mut b) => {
                assert!(b.iter().all(|&v| v == 0), "reused block not zeroed");
                b[0] = 0xAB;
                let h = b.into_handle();
                assert!(
                    h.offset() == x.offset() || h.offset() == y.offset(),
                    "allocation at {} is not one of the freed blocks",
                    h.offset()
                );
                Some(h)
            }
            Err(Error::Full { .. }) => None,
            Err(e) => panic!("alloc: {e}"),
        };
        for t in frees {
            t.join().unwrap();
        }
        let mut byte = [0u8];
        if let Some(h) = got {
            arena.read(h, 0, &mut byte).unwrap();
            assert_eq!(byte[0], 0xAB);
        }
        assert!(!arena.contains(x) && !arena.contains(y));
        let reused = u64::from(got.is_some());
        settle(arena, 30 + reused, 2 - reused);
    });
}

#[test]
fn two_frees_and_an_alloc_optimistic() {
    two_frees_and_an_alloc(Freelist::Optimistic);
}

#[test]
fn two_frees_and_an_alloc_pessimistic() {
    two_frees_and_an_alloc(Freelist::Pessimistic);
}

/// Two frees of the *same* handle race with an allocation: exactly one free succeeds, and the
/// block is listed (or reused) once.
///
/// Guard: the generation/state CAS on the block header in `Arena::free`. Checked by hand: with
/// that CAS replaced by a plain store, loom finds the interleaving where both frees return `Ok`
/// (`[Ok(()), Ok(())]`), so the block would be listed twice.
#[test]
fn double_free_race() {
    model("double_free_race", || {
        let (arena, hs) = full_arena(Freelist::Optimistic);
        let x = hs[9];
        let frees: Vec<_> = (0..2)
            .map(|_| {
                let a = arena.clone();
                thread::spawn(move || a.free(x))
            })
            .collect();
        let got = arena.alloc(BLOCK).ok().map(|b| b.into_handle());
        let results: Vec<Result<(), Error>> =
            frees.into_iter().map(|t| t.join().unwrap()).collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "{results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, Error::DoubleFree { .. } | Error::Stale { .. }),
                    "second free: {e:?}"
                );
            }
        }
        if let Some(h) = got {
            assert_eq!(h.offset(), x.offset());
        }
        let reused = u64::from(got.is_some());
        settle(arena, 31 + reused, 1 - reused);
    });
}

/// A pop races with a push (insert) of a segment of the same size.
///
/// Guards: the CAS on the head in `push` and in `pop`, and push's Release. Checked by hand: with
/// push's CAS replaced by a load, compare and store, loom finds the interleaving where the pop
/// takes `A` between the push's read of the head and its store, and `A` ends up both popped and
/// listed ("popped 4096"); with pop's CAS replaced the same way, the push lands between the pop's
/// check and its store, which overwrites it, and the list is wrong again ("popped 4096"); with
/// push's CAS weakened to Relaxed, the pop reads `B`'s header from before the push and reports
/// the list corrupt.
#[test]
fn pop_races_push() {
    model("pop_races_push", || {
        let l = loom::sync::Arc::new(Lists::new(2));
        let (a, b) = (l.segment(0), l.segment(1));
        l.push(a, 2);
        let pusher = {
            let l = l.clone();
            thread::spawn(move || l.push(b, 2))
        };
        let (got, _) = l.pop().expect("A was listed before the push started");
        pusher.join().unwrap();
        assert!(got == a || got == b);
        let listed = l.listed();
        let other = if got == a { b } else { a };
        assert_eq!(listed, vec![other], "popped {got}");
    });
}

/// Two policy-driven takes race with a push of a fitting segment: each segment has one owner.
///
/// Guard: as `pop_races_push`, through `take` (which also pushes back too-small segments).
/// Checked by hand: with push's CAS replaced by a load, compare and store, loom reports "a
/// segment lost or owned twice".
#[test]
fn takes_race_push() {
    for pessimistic in [false, true] {
        model(
            &format!("takes_race_push(pessimistic: {pessimistic})"),
            move || {
                let l = loom::sync::Arc::new(Lists::new(2));
                let (a, b) = (l.segment(0), l.segment(1));
                l.push(a, 2);
                let taker = {
                    let l = l.clone();
                    thread::spawn(move || l.take(parena::loom_hooks::SEGMENT, pessimistic))
                };
                l.push(b, 2);
                let mine = l.take(parena::loom_hooks::SEGMENT, pessimistic);
                let theirs = taker.join().unwrap();
                let mut owned: Vec<u64> =
                    [mine, theirs].into_iter().flatten().map(|s| s.0).collect();
                owned.extend(l.listed());
                owned.sort_unstable();
                assert_eq!(owned, vec![a, b], "a segment lost or owned twice");
            },
        );
    }
}

/// A batch for a thread's cache (`take_batch`: detach the stack, keep the first node, list the
/// rest again) races with a push and with a pop: each segment ends up in exactly one place — the
/// batch, the popper's hands or the list — and the batch holds one node.
///
/// Guard: `relist` installs the rest only on a head it has seen empty, and otherwise detaches what
/// was pushed meanwhile and puts it in front of the rest. Checked by hand: with `relist` storing
/// the rest over the head without a CAS, loom finds the push that lands in the window lost ("a
/// segment lost or owned twice").
#[test]
fn batch_races_push_and_pop() {
    model("batch_races_push_and_pop", || {
        let l = loom::sync::Arc::new(Lists::new(4));
        let (a, b, c, d) = (l.segment(0), l.segment(1), l.segment(2), l.segment(3));
        for s in [c, b, a] {
            l.push(s, 2);
        }
        let pusher = {
            let l = l.clone();
            thread::spawn(move || l.push(d, 2))
        };
        let popper = {
            let l = l.clone();
            thread::spawn(move || l.pop().map(|s| s.0))
        };
        let batch = l.take_batch(1);
        pusher.join().unwrap();
        let popped = popper.join().unwrap();
        assert!(batch.len() <= 1, "batch {batch:?}");
        let mut owned: Vec<u64> = batch.iter().copied().chain(popped).collect();
        owned.extend(l.listed());
        owned.sort_unstable();
        assert_eq!(owned, vec![a, b, c, d], "a segment lost or owned twice");
    });
}

/// The ABA shape: one thread reads head `A` and `A.next == B` and stops before its CAS; another
/// pops `A`, pops `B`, reuses `A` and pushes it back, so the head's offset is `A` again.
///
/// Guard: the version tag in the head word. Checked by hand: with `pack_head` dropping the tag
/// (every head word holds only the offset), loom finds the interleaving where the stalled CAS
/// succeeds and installs `B`, which the other thread owns, as the head ("a segment owned twice:
/// [B, A, B, C]").
///
/// This model also found a bug: a popper that meets a reused node used to re-load the head and
/// call the list corrupt when the load returned the same `h`; under loom's weak memory (as on
/// ARM) the load may return that stale `h` although the node's reuse was visible. `pop` now
/// confirms with a CAS of `h` to itself; with the old re-load, both ABA models report a spurious
/// `Error::Corrupt`.
#[test]
fn aba_pop_pop_push() {
    model("aba_pop_pop_push", || {
        let l = loom::sync::Arc::new(Lists::new(3));
        let (a, b, c) = (l.segment(0), l.segment(1), l.segment(2));
        for s in [c, b, a] {
            l.push(s, 2);
        }
        let stalled = {
            let l = l.clone();
            thread::spawn(move || l.pop().map(|s| s.0))
        };
        let (first, g1) = l.pop().unwrap();
        let (second, _) = l.pop().unwrap();
        // Reuse the first segment, free it again: the head goes back to the same offset.
        l.make_live(first, g1);
        l.push(first, Lists::next_free_gen(g1));
        let theirs = stalled
            .join()
            .unwrap()
            .expect("three segments, three pops at most");
        let mut owned = vec![second, theirs];
        owned.extend(l.listed());
        let set: BTreeSet<u64> = owned.iter().copied().collect();
        assert_eq!(owned.len(), set.len(), "a segment owned twice: {owned:?}");
        assert_eq!(set, BTreeSet::from([a, b, c]), "a segment lost: {owned:?}");
    });
}

/// The ABA shape across three threads: thread 1 stalls holding `A.next == B`; thread 2 pops `A`
/// and pushes it back after thread 3 has popped `B`.
///
/// Guard: the version tag, as `aba_pop_pop_push`. Checked by hand: with `pack_head` dropping the
/// tag, loom finds an interleaving where the stalled popper's check of the head is fooled by `A`'s
/// return and it reports the list corrupt (`Error::Corrupt` at `A`).
#[test]
fn aba_three_threads() {
    model("aba_three_threads", || {
        let l = loom::sync::Arc::new(Lists::new(3));
        let (a, b, c) = (l.segment(0), l.segment(1), l.segment(2));
        for s in [c, b, a] {
            l.push(s, 2);
        }
        let popper = |l: &loom::sync::Arc<Lists>| {
            let l = l.clone();
            thread::spawn(move || l.pop().map(|s| s.0))
        };
        let t1 = popper(&l);
        let t3 = popper(&l);
        let (first, g1) = l.pop().unwrap();
        l.make_live(first, g1);
        l.push(first, Lists::next_free_gen(g1));
        let mut owned: Vec<u64> = [t1.join().unwrap(), t3.join().unwrap()]
            .into_iter()
            .flatten()
            .collect();
        owned.extend(l.listed());
        let set: BTreeSet<u64> = owned.iter().copied().collect();
        assert_eq!(owned.len(), set.len(), "a segment owned twice: {owned:?}");
        assert_eq!(set, BTreeSet::from([a, b, c]), "a segment lost: {owned:?}");
    });
}

/// An allocation reads the bump offset, then pops; meanwhile another thread reserves the next part
/// of the heap and pushes a segment from it (a retired chunk's tail). The popped segment lies past
/// the limit the allocation read, and must not be taken for corruption.
///
/// Guard: `pop` re-reads the bump offset (ordered after the reservation by its Acquire load of the
/// head) before calling a node out of bounds. Checked by hand: with the check against the
/// caller's limit only (as `pop` was before this model found the bug), loom finds the interleaving
/// where the pop returns `Error::Corrupt` for `B`.
#[test]
fn pop_past_a_stale_limit() {
    model("pop_past_a_stale_limit", || {
        let l = loom::sync::Arc::new(Lists::new(2));
        let (a, b) = (l.segment(0), l.segment(1));
        l.set_bump(b);
        l.push(a, 2);
        let reserver = {
            let l = l.clone();
            thread::spawn(move || {
                l.set_bump(b + parena::loom_hooks::SEGMENT);
                l.push(b, 2);
            })
        };
        let limit = l.bump();
        let got = l
            .pop_within(limit)
            .expect("no corruption")
            .expect("A was listed");
        reserver.join().unwrap();
        let mut owned = vec![got];
        owned.extend(l.listed());
        owned.sort_unstable();
        assert_eq!(owned, vec![a, b]);
    });
}

/// Checks what a coalescing model ends with: the segments owned by threads and those listed
/// cover exactly the free bytes `lo..hi`, once each (no byte lost, none owned twice).
fn conserved(mut pieces: Vec<(u64, u64)>, lo: u64, hi: u64) {
    pieces.sort_unstable();
    let mut at = lo;
    for &(off, span) in &pieces {
        assert_eq!(off, at, "free bytes lost or owned twice: {pieces:?}");
        at = off + span;
    }
    assert_eq!(at, hi, "free bytes lost: {pieces:?}");
}

/// A coalescing pass races with a pop and a push of the same size class: three adjacent
/// segments `A B C`; `A` and `B` are listed, one thread pops, another lists `C`, and the main
/// thread runs a pass. Every free byte ends up owned once (popped, or listed in some class),
/// however the pass's detach, merge and re-push interleave with the others.
///
/// Guards: the detach is one CAS of the head (a push or pop between its read and its write must
/// make it fail), and it is Acquire (the pass reads the header and span words of nodes other
/// threads pushed). Checked by hand: with `take_all` detaching by a load and a separate store of
/// the empty head, loom finds `A` both popped and listed inside the merged `A B` ("free bytes
/// lost or owned twice: [(A, 32), (A, 64)]"; the ABA model fails the same way); with the detach
/// CAS Relaxed, the pass reads `C`'s header from before its push and reports the list corrupt
/// (`Corrupt` at `C`, word LIVE).
#[test]
fn coalesce_races_pop_and_push() {
    // Capped at 2 preemptions: the pass detaches, sorts and relinks its chain through the
    // segments' own header words (no allocation, invariant A), each step a loom operation, and at
    // 3 the model has 1.8 million interleavings (five minutes on 2 cores); at 2, 152,000.
    // `LOOM_FULL=1` runs it at the environment's bound.
    model_capped("coalesce_races_pop_and_push", 2, || {
        let l = loom::sync::Arc::new(Lists::new(3));
        let (a, c) = (l.segment(0), l.segment(2));
        let seg = parena::loom_hooks::SEGMENT;
        l.push_segment(1, 2);
        l.push_segment(0, 2);
        let popper = {
            let l = l.clone();
            thread::spawn(move || l.pop_class_of(seg))
        };
        let pusher = {
            let l = l.clone();
            thread::spawn(move || l.push_segment(2, 2))
        };
        l.coalesce();
        let popped = popper.join().unwrap();
        pusher.join().unwrap();
        let mut pieces = l.listed_all();
        pieces.extend(popped);
        conserved(pieces, a, c + seg);
    });
}

/// Bytes a carved block's owner writes: no header word parena writes looks like this.
const USER_BYTES: u64 = 0xa5a5_a5a5_a5a5_a5a5;

/// A handle check against a coalescing pass and a carve (docs/metadata.md, section 4). `A B` are
/// adjacent free segments; a checker (a stale handle to `B`) tests the start map at `B` and reads
/// `B`'s header word twice; the main thread runs a pass (which would merge `B` into `A`), then
/// takes the merged segment and writes user bytes over it. A check that saw `B` as a start must
/// never read those user bytes.
///
/// Guard: the check slot (the checker's `SeqCst` swap before its `SeqCst` map load; the pass's
/// `SeqCst` toggle before its `SeqCst` slot load, and the split at a held start). Checked by hand:
/// with the pass's `held` answering `false`, loom finds the interleaving where the checker sees
/// `B`'s bit, the pass merges `B` away, the carve writes, and the checker's second read returns
/// the user bytes ("user bytes read at a start the probe saw").
#[test]
fn handle_check_races_a_merge() {
    probe_races_a_merge("handle_check_races_a_merge", Lists::check);
}

/// The model of [`handle_check_races_a_merge`] and [`read_races_a_merge`]: `probe` (a handle
/// check or a read of header position `B`) on one thread, a pass and a carve on the other.
fn probe_races_a_merge(name: &'static str, probe: fn(&Lists, u64) -> Option<(u64, u64)>) {
    model_capped(name, 2, move || {
        let seg = parena::loom_hooks::SEGMENT;
        let l = loom::sync::Arc::new(Lists::with_start_map(&[seg, seg]));
        let b = l.segment(1);
        l.push_segment(1, 2);
        l.push_segment(0, 2);
        let prober = {
            let l = l.clone();
            thread::spawn(move || probe(&l, b))
        };
        l.coalesce_checked();
        l.carve_and_write(2 * seg, USER_BYTES);
        if let Some((first, second)) = prober.join().unwrap() {
            assert!(
                first != USER_BYTES && second != USER_BYTES,
                "{name}: user bytes read at a start the probe saw"
            );
        }
    });
}

/// A handle check of header position `B` (a stale handle) against a free that absorbs the filler
/// at `B` and a carve: `A B` are adjacent, `A` a LIVE block, `B` the filler a carve left in front
/// of an aligned block, over the header of the segment it took (so a stale handle still names
/// `B`). The free of `A` takes the filler back (docs/metadata.md, section 13.1), and the carve of
/// the whole segment writes user bytes over it. A check that saw `B` as a start must never read
/// those user bytes.
///
/// Guard: the free's `SeqCst` loads of the check slots after its `SeqCst` toggle of `B`'s start
/// (`FreeLists::absorb_fillers`, with the slot check `Inner::slot_holds`). Checked by hand: with
/// the model's `held` answering `false` to the free, loom finds the interleaving where the checker
/// sees `B`'s bit, the free absorbs `B`, the carve writes, and the checker's second read returns
/// the user bytes ("user bytes read at a start the probe saw").
#[test]
fn handle_check_races_a_filler_absorption() {
    probe_races_an_absorption("handle_check_races_a_filler_absorption", Lists::check);
}

/// [`handle_check_races_a_filler_absorption`] with a read (a read slot held over `B`) in the
/// checker's place. Guard: the free's `SeqCst` loads of the read slots. Checked by hand as above.
#[test]
fn read_races_a_filler_absorption() {
    probe_races_an_absorption("read_races_a_filler_absorption", Lists::read);
}

/// The model of [`handle_check_races_a_filler_absorption`] and [`read_races_a_filler_absorption`].
fn probe_races_an_absorption(name: &'static str, probe: fn(&Lists, u64) -> Option<(u64, u64)>) {
    model_capped(name, 2, move || {
        let seg = parena::loom_hooks::SEGMENT;
        let l = loom::sync::Arc::new(Lists::with_start_map(&[seg, seg]));
        let b = l.segment(1);
        l.make_filler(1);
        let prober = {
            let l = l.clone();
            thread::spawn(move || probe(&l, b))
        };
        let span = l.free_absorbing(0);
        assert!(
            l.carve_and_write(span, USER_BYTES),
            "{name}: the freed segment is carved whole"
        );
        if let Some((first, second)) = prober.join().unwrap() {
            assert!(
                first != USER_BYTES && second != USER_BYTES,
                "{name}: user bytes read at a start the probe saw"
            );
        }
    });
}

/// A pop against a carve that leaves a filler over the node it popped, a free that absorbs that
/// filler, and a carve of the whole segment: `A B` are adjacent, `A` a LIVE block, `B` the listed
/// head. The popper announces `B` and confirms the head; the other thread pops `B` first, carves
/// it with a filler in front (the filler's header over `B`'s), frees `A` (which takes the filler
/// back) and carves `A B` whole, writing user bytes over `B`. No pop may read those bytes where it
/// took a node header to be.
///
/// Guard: the carve's filler store is `Release` and the free's load of it `Acquire`
/// (`Entries::front_filler`, `FreeLists::absorb_fillers`), so the pop of `B` happens before the
/// free's `sc_order`, and the free's `SeqCst` loads of the pop slots keep an announced `B` a
/// header (docs/metadata.md, section 13.1). Checked by hand: with the model's `held` answering
/// `false` to the free, loom finds the interleaving where the popper reads the user bytes ("a pop
/// read user bytes"). With the `Release` store and the `Acquire` load made `Relaxed` (and `held`
/// kept), the model still passes, even at bound 3: loom's `SeqCst` fences are stronger than the
/// language's, so that pairing rests on the argument in section 13.1.
#[test]
fn pop_races_a_carve_and_a_filler_absorption() {
    model_capped("pop_races_a_carve_and_a_filler_absorption", 2, || {
        let seg = parena::loom_hooks::SEGMENT;
        let l = loom::sync::Arc::new(Lists::with_start_map(&[seg, seg]));
        l.push_segment(1, 2);
        let popper = {
            let l = l.clone();
            thread::spawn(move || l.pop_class_of(seg))
        };
        if l.pop_class_of(seg).is_some() {
            l.carve_front_filler(1);
            let span = l.free_absorbing(0);
            // The popper may take the freed segment first (it goes on to the new head).
            l.carve_and_write(span, USER_BYTES);
        }
        popper.join().unwrap();
        assert!(
            !l.node_words_read().contains(&USER_BYTES),
            "a pop read user bytes where it took a node header to be"
        );
    });
}

/// A pop against a coalescing pass and a carve: `A B` are adjacent free segments of one class, `B`
/// the head; the popper loads the head (`B`) and then `B`'s header word; the pass merges `B` into
/// `A`, and the carve writes user bytes over the merged segment. No pop may read those bytes
/// where it took a node header to be: a read racing the carve's writes (a data race where the
/// carve zeroes with plain writes, as an arena's does).
///
/// Guard: the popper announces `B` in its pop slot and confirms the head before it reads `B`'s
/// header; the pass loads every pop slot after its detach and keeps an announced node a header
/// (the pop-slot protocol, `src/freelist/mod.rs`). Checked by hand: with `Lists::popping` (the
/// model's side of the pass; `ReadSlots::popping` in an arena) answering `false`, loom finds the interleaving where the popper confirms `B`, the pass merges
/// `B` away, the carve writes, and the popper reads the user bytes ("a pop read user bytes").
#[test]
fn pop_races_a_merge() {
    model_capped("pop_races_a_merge", 2, || {
        let seg = parena::loom_hooks::SEGMENT;
        let l = loom::sync::Arc::new(Lists::with_start_map(&[seg, seg]));
        l.push_segment(0, 2);
        l.push_segment(1, 2);
        let popper = {
            let l = l.clone();
            thread::spawn(move || l.pop_class_of(seg))
        };
        l.coalesce_checked();
        l.carve_and_write(2 * seg, USER_BYTES);
        popper.join().unwrap();
        assert!(
            !l.node_words_read().contains(&USER_BYTES),
            "a pop read user bytes where it took a node header to be"
        );
    });
}

/// A read (a stale handle to `B`) against a coalescing pass and a carve, as
/// [`handle_check_races_a_merge`] with the read-slot protocol (docs/metadata.md, 4.1): the read
/// holds a read slot, tests the start map at `B` and reads `B`'s header twice; the pass would
/// merge `B` into `A`, and the carve writes user bytes over the merged segment. A read that saw
/// `B` as a start must never read those user bytes.
///
/// Guard: the pass's `SeqCst` loads of the read slots after its `SeqCst` toggle. Checked by hand:
/// with `ReadSlots::reading` answering `false`, loom finds the interleaving where the read sees
/// `B`'s bit, the pass merges `B` away, the carve writes, and the read's second load returns the
/// user bytes ("user bytes read at a start the probe saw").
#[test]
fn read_races_a_merge() {
    probe_races_a_merge("read_races_a_merge", Lists::read);
}

/// A read of `b` races its free and the reuse of its place: the freeing thread allocates a block
/// of `b`'s size at once and fills it. The reader (whose closure makes one more atomic step
/// before it copies, so loom can run the free and the reuse between its header load and its
/// copy) either is refused or copies exactly `b`'s bytes.
///
/// Guard: the free's `SeqCst` loads of every cell's read slots after its `SeqCst` DYING CAS,
/// which defer the release while the reader's slot holds `b`. Checked by hand: with
/// `Inner::being_read` answering `false`, loom finds the interleaving where the reader loads
/// `b`'s PUBLISHED header, the free releases `b`, the allocation takes its place and fills it,
/// and the reader copies the new owner's bytes ("the read saw another block's bytes").
#[test]
fn read_races_a_free_and_a_reuse() {
    model("read_races_a_free_and_a_reuse", || {
        let arena = Options::new()
            .capacity(3 * 4096)
            .chunk_size(512)
            .heap()
            .unwrap();
        let b = arena.alloc_copy(&[0xBB; 16]).unwrap();
        let step = loom::sync::Arc::new(loom::sync::atomic::AtomicU64::new(0));
        let reader = {
            let (a, step) = (arena.clone(), step.clone());
            thread::spawn(move || {
                a.read_with(b, |bytes| {
                    step.load(loom::sync::atomic::Ordering::Relaxed);
                    bytes.to_vec()
                })
            })
        };
        arena.free(b).unwrap();
        let n = {
            let mut n = arena.alloc(16).unwrap();
            n.fill(0xCC);
            n.handle()
        };
        match reader.join().unwrap() {
            Err(Error::Stale { .. }) => {}
            Ok(bytes) => assert_eq!(bytes, [0xBB; 16], "the read saw another block's bytes"),
            Err(e) => panic!("the read got {e:?}, not Stale"),
        }
        arena.free(n).unwrap();
    });
}

/// The ABA shape through a coalescing pass. Layout `F E D A B` (`D` live): `E` and `A` are in one
/// coarse class, listed `[A, E]`; `F` and `B` are 16-byte segments. A popper reads head `A` and
/// `A.next == E`, and stalls. The pass merges `F + E` (at `F`) and `A + B` (at `A`), both back in
/// the same class, and lists them so that the head's offset is `A` again, now over `[A, F]`:
/// `E`'s header is only bytes inside `F`'s segment.
///
/// Guard: the version tag (the pass's detach and its pushes move it on). Checked by hand: with
/// `pack_head` dropping the tag, loom finds the interleaving where the stalled CAS succeeds and
/// installs `E` as the head: `F`'s segment is lost from the lists and `E`, inside it, is listed
/// ("free bytes lost or owned twice: [(E, 520)]").
///
/// The detach's own tag bump is not what saves this shape: every later push also bumps the tag,
/// so the head cannot return to the stalled popper's exact word even if the detach kept it (with
/// the detach storing `pack_head(0, tag)` the model still passes).
#[test]
fn coalesce_aba() {
    model("coalesce_aba", || {
        // Spans: F 16, E 520, D 32 (live), A 520, B 16. 520 and 536 share class 63.
        let l = loom::sync::Arc::new(Lists::with_spans(&[16, 520, 32, 520, 16]));
        let (f, d, a) = (l.segment(0), l.segment(2), l.segment(3));
        let end = l.segment(4) + l.span(4);
        for i in [1, 3, 0, 4] {
            l.push_segment(i, 2);
        }
        let popper = {
            let l = l.clone();
            thread::spawn(move || l.pop_class_of(520))
        };
        let merged = l.coalesce();
        let popped = popper.join().unwrap();
        assert!(merged <= 2);
        let mut pieces = l.listed_all();
        pieces.extend(popped);
        let (low, high): (Vec<_>, Vec<_>) = pieces.into_iter().partition(|p| p.0 < d);
        conserved(low, f, d);
        conserved(high, a, end);
    });
}

/// Two allocations that only a merge can serve race on an exhausted arena: two neighbouring
/// 128-byte blocks are free, and each thread asks for 200 bytes. One pass merges them; the other
/// thread waits for that pass (or sees that one ended) and retries, so exactly one request is
/// served, from the merged space, and the heap and lists stay consistent. (`Pessimistic`: its
/// class search reads a few bitmap words where `Optimistic` reads one per class, which makes the
/// model about a hundred times longer.)
///
/// Guards: the count of passes an allocation reads before its first try (a pass that ended since
/// sends it back to the lists), the single-pass flag, and the bitmap protocol of `pop`: a pop that
/// found a class empty and cleared its bit confirms with a CAS of the head to itself. This model
/// found that one: with the plain re-load of the head after the clear (the code before coalescing
/// existed), loom finds a pop that met the class empty while the pass pushed the merged segment,
/// cleared the class's bit for good, and both threads' retries skipped the class ("nobody
/// served"). The Acquire half of push's CAS, which the same argument needs when the bit had been
/// set before the clear, is not exercised here: with push's CAS back to Release the model passes.
#[test]
fn exhausted_allocs_share_one_pass() {
    model("exhausted_allocs_share_one_pass", || {
        let (arena, hs) = full_arena(Freelist::Pessimistic);
        assert_eq!(hs[1].offset() - hs[0].offset(), 128);
        arena.free(hs[0]).unwrap();
        arena.free(hs[1]).unwrap();
        let t = {
            let arena = arena.clone();
            thread::spawn(move || arena.alloc(200).map(|b| b.into_handle()))
        };
        let mine = arena.alloc(200).map(|b| b.into_handle());
        let theirs = t.join().unwrap();
        let served: Vec<Handle> = [mine, theirs]
            .into_iter()
            .filter_map(|r| match r {
                Ok(h) => Some(h),
                Err(Error::Full { .. }) => None,
                Err(e) => panic!("alloc: {e}"),
            })
            .collect();
        assert_eq!(served.len(), 1, "nobody served, or both from 256 bytes");
        assert_eq!(
            served[0].offset(),
            hs[0].offset(),
            "not from the merged space"
        );
        assert!(arena.stats().coalesced >= 1);
        let mut arena = arena;
        let r = arena.verify().unwrap();
        assert!(r.is_clean(), "{:?}", r.problems);
        assert_eq!(r.live_blocks, 31, "{r:?}");
    });
}

/// A reader of a block `b` races its free and the reuse of its memory by the allocator block `v`
/// just before it in the same chunk: `v` grows in place (`grow`), or shrinks in place and a new
/// allocator block is bumped after it (`!grow`), and its owner writes, where `b`'s header was, the
/// exact header word `b` had. The reader either pinned `b` before the free (and reads `b`'s own
/// bytes) or is refused: it never pins the user's word and reads an allocator block's memory.
///
/// Guard: the cursor rule of `heap/cell.rs` (`ChunkCell::last_block`): no cursor move but a bump
/// leaves a position an entry started at, so the free's rewind leaves `b`'s header position a
/// header position, which no resize may cover. Seen failing without it (the crate before that
/// rule, where an in-place resize moved the cursor whenever the block was the chunk's last):
/// loom finds the interleaving where the reader tests `b`'s start and loads its header, the free
/// rewinds over `b`, `v` grows over its header (or shrinks and the next block covers it), the
/// owner writes the word, and the reader's CAS pins it ("the freed handle pinned bytes that are
/// not its block's: [0, 0, 0, 0, 0, 0, 0, 0]").
fn reader_races_a_free_and_a_resize(grow: bool) {
    use parena::loom_hooks::{allocate, deallocate, resize_in_place, write_user_word};
    let name = format!("reader_races_a_free_and_a_resize(grow: {grow})");
    model(&name, move || {
        let arena = Options::new()
            .capacity(3 * 4096)
            .chunk_size(512)
            .heap()
            .unwrap();
        let (v_len, v_span) = if grow { (8, 16) } else { (24, 32) };
        let v = allocate(&arena, v_len);
        let b = arena.alloc_copy(&[0xBB; 8]).unwrap();
        assert_eq!(b.offset(), v + v_span, "b follows v in the chunk");
        let reader = {
            let a = arena.clone();
            thread::spawn(move || a.read_with(b, <[u8]>::to_vec))
        };
        arena.free(b).unwrap();
        let word = parena::testkit::live_word(8, b.generation(), 0);
        // The owners' blocks after the reuse, `(data offset, length)`.
        let mut owned = Vec::new();
        if grow {
            if resize_in_place(&arena, v, 8, 72) {
                write_user_word(&arena, v + 8, word);
                owned.push((v, 72));
            } else {
                // `Allocator::grow` moves it.
                let w = allocate(&arena, 72);
                write_user_word(&arena, w + 8, word);
                deallocate(&arena, v, 8);
                owned.push((w, 72));
            }
        } else {
            assert!(
                resize_in_place(&arena, v, 24, 8),
                "a shrink is always in place"
            );
            let w = allocate(&arena, 24);
            write_user_word(&arena, w + 8, word);
            owned.extend([(v, 8), (w, 24)]);
        }
        match reader.join().unwrap() {
            Err(Error::Stale { .. }) => {}
            Ok(bytes) => assert_eq!(
                bytes, [0xBB; 8],
                "the freed handle pinned bytes that are not its block's: {bytes:?}"
            ),
            Err(e) => panic!("the freed handle got {e:?}, not Stale"),
        }
        for (off, len) in owned {
            deallocate(&arena, off, len);
        }
    });
}

#[test]
fn reader_races_a_free_and_an_in_place_grow() {
    reader_races_a_free_and_a_resize(true);
}

#[test]
fn reader_races_a_free_a_shrink_and_a_bump() {
    reader_races_a_free_and_a_resize(false);
}

/// An allocation that finds a growable arena's heap used up races an explicit growth: both want
/// a growth step, one runs it and the other waits, and the allocation lands in the new range
/// with its start bit (docs/metadata.md, 12.2: the step zeroes the new range's map words before
/// it publishes the end with Release; a reservation loads the end with Acquire).
///
/// Guard: the step flag (`Inner::grow_to`'s CAS). Checked by hand: with the CAS replaced by a
/// plain store (every caller runs its own step), loom (`LOOM_MAX_PREEMPTIONS=2`) finds the
/// interleaving where the explicit step zeroes the new range's map words after the allocation's
/// step published the end and the allocation set its start bit there: the read of the new block
/// is refused (`Stale { found: 0 }`).
#[test]
fn an_allocation_races_a_growth_step() {
    model_capped("an_allocation_races_a_growth_step", 2, || {
        // One page of header, one of maps (sized for 5 pages), one page of heap now and two at
        // most: eight 512-byte chunks, then sixteen.
        let arena = Options::new()
            .capacity(3 * 4096)
            .max_capacity(4 * 4096)
            .chunk_size(512)
            .thread_cache(false)
            .heap()
            .unwrap();
        let old_end = arena.capacity();
        // 128-byte spans, four to a chunk: these fill the heap exactly.
        let n = (old_end - arena.stats().data_start) / 128;
        let hs: Vec<Handle> = (0..n)
            .map(|_| arena.alloc(BLOCK).unwrap().into_handle())
            .collect();
        assert_eq!(arena.stats().remaining, 0);
        let t = {
            let arena = arena.clone();
            thread::spawn(move || arena.grow(4 * 4096))
        };
        let mut b = arena.alloc(BLOCK).unwrap();
        b.fill(0x5a);
        let h = b.into_handle();
        t.join().unwrap().unwrap();
        assert!(h.offset() >= old_end, "served below the old end");
        assert_eq!(arena.capacity(), 4 * 4096);
        let mut buf = [0u8; BLOCK];
        arena.read(h, 0, &mut buf).unwrap();
        assert!(buf.iter().all(|&x| x == 0x5a));
        let mut arena = arena;
        let r = arena.verify().unwrap();
        assert!(r.is_clean(), "{:?}", r.problems);
        assert_eq!(r.live_blocks, hs.len() as u64 + 1, "{r:?}");
    });
}

/// `GlobalArena`'s stash (`src/global/stash.rs`): chains pushed by two threads on two shards
/// while a third takes (its own shard first, then the others); every block is taken exactly once,
/// and a chain's blocks stay in order. The guard: the push's `Release` CAS and the take's
/// `Acquire` swap order the chain's links (stored `Relaxed` under loom) before the taker walks them
/// (the next model is the one seen to fail without it).
#[test]
fn front_stash_chains_race_a_take() {
    use parena::loom_hooks::StashModel;
    model("front_stash_chains_race_a_take", || {
        let s = std::sync::Arc::new(StashModel::new(4));
        let (a, b) = (s.clone(), s.clone());
        let t1 = thread::spawn(move || assert!(a.push_chain(0, &[0, 1])));
        let t2 = thread::spawn(move || assert!(b.push_chain(1, &[2, 3])));
        let mut takes = vec![s.take(1)];
        t1.join().unwrap();
        t2.join().unwrap();
        takes.extend(drain_stash(&s));
        stash_conserved(&takes, 4, &[&[0, 1], &[2, 3]]);
        assert_eq!(s.parked(), 0);
    });
}

/// The stash's ABA shape, on one shard: a push reads the head, another thread takes the whole
/// stack and pushes that same head block again, and the push's CAS then succeeds on the same head
/// value. The chain joins whatever list the head starts now, which is the list the stash holds:
/// nothing lost. Seen to fail with the push's CAS `Relaxed`: a take walked a link it could not yet
/// see ("block 0 taken 0 times: [[1]]").
#[test]
fn front_stash_push_races_a_take_and_a_push_again() {
    use parena::loom_hooks::StashModel;
    model("front_stash_push_races_a_take_and_a_push_again", || {
        let s = std::sync::Arc::new(StashModel::new(3));
        assert!(s.push_chain(0, &[0]));
        let a = s.clone();
        let t1 = thread::spawn(move || assert!(a.push_chain(0, &[1, 2])));
        let got = s.take(0);
        // Whatever the take got goes back as one chain, its head block first.
        assert!(s.push_chain(0, &got));
        t1.join().unwrap();
        stash_conserved(&drain_stash(&s), 3, &[&[1, 2]]);
    });
}

/// Every stack left in the stash, one take each.
fn drain_stash(s: &parena::loom_hooks::StashModel) -> Vec<Vec<usize>> {
    let mut takes = Vec::new();
    loop {
        let t = s.take(0);
        if t.is_empty() {
            return takes;
        }
        takes.push(t);
    }
}

/// Every block `0..n` appears once across `takes`, and a chain's consecutive blocks follow each
/// other in a take that has both.
fn stash_conserved(takes: &[Vec<usize>], n: usize, chains: &[&[usize]]) {
    let mut seen = vec![0; n];
    for t in takes {
        for &i in t {
            seen[i] += 1;
        }
        for w in chains.iter().flat_map(|c| c.windows(2)) {
            let pos = |b: usize| t.iter().position(|&x| x == b);
            if let (Some(i), Some(j)) = (pos(w[0]), pos(w[1])) {
                assert_eq!(j, i + 1, "a chain split: {t:?}");
            }
        }
    }
    for (i, &k) in seen.iter().enumerate() {
        assert_eq!(k, 1, "block {i} taken {k} times: {takes:?}");
    }
}
