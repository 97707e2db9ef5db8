//! The lock-free, size-ordered free list, written once and generic over a [`Policy`].
//!
//! ## Algorithm
//!
//! Free segments are indexed by size class (256 classes: exact 8-byte classes for spans up to
//! 512 bytes, then eight classes per power of two). Each class is a Treiber stack (R. K. Treiber,
//! *Systems Programming: Coping with Parallelism*, IBM RJ 5118, 1986) whose head is one `u64` in
//! the arena header: a 38-bit offset (in 8-byte units) and a 26-bit version tag bumped by every
//! successful CAS. The tag is what makes a pop safe against ABA: a thread that read head `A` and
//! `A.next` cannot install a stale `A.next` after `A` was popped and pushed back, because the tag
//! moved on. A node's link is kept in its own header word (`block::free`), so a thread that reads
//! the link of a node another thread has just popped and handed out reads a header word (always
//! accessed atomically), never user data.
//!
//! Within an exact class every segment has the same size, so the stack order *is* the size order.
//! A policy picks which class to pop: `Optimistic` the largest non-empty class, `Pessimistic` the
//! smallest class whose every segment holds the request. A coarse class's segments differ by up to
//! an eighth; the class holding the request is tried last and its head is pushed back when too
//! small. The cost of an operation is independent of how many segments are listed.
//!
//! A popper that finds its node no longer free (popped and reused meanwhile) confirms with a CAS
//! of the head to itself: failure hands it the new head, success proves the list corrupt. A node
//! past the caller's bump offset is checked against a fresh read of it before being called
//! corrupt (it may lie in chunks reserved after the caller looked).
//!
//! A stack has no logically deleted nodes, so there is nothing to help: a CAS fails only because
//! another thread's CAS on the same head succeeded, which is lock-free progress. No thread ever
//! waits for another.
//!
//! A per-arena bitmap (process memory, rebuilt from the heads at open) says which classes may be
//! non-empty. It is a hint: a bit is set after a push and cleared only when a pop saw the class
//! empty, and re-set if the class turned out non-empty after the clear (checked with a CAS of the
//! head to itself, so that either the pop or the racing push sees the other and the bit stays set
//! while the class holds a segment).
//!
//! `take_all` detaches a whole class with one CAS of its head to empty (tag bumped), for the
//! coalescing pass (`coalesce`), which chains the detached segments through their own headers
//! (no allocation: invariant A in `bump.rs`), sorts the chain, merges physically adjacent
//! segments and lists them again;
//! see docs/design.md, "Coalescing while shared".
//!
//! ## Orderings
//!
//! | op | ordering | pairs with |
//! | --- | --- | --- |
//! | push: CAS head | AcqRel | Release: pop's Acquire load/CAS (publishes the node's header and span); Acquire: the CAS of an emptied head to itself in pop, so the bit that pop cleared is seen and set again |
//! | pop: load head | Acquire | push's Release CAS: the node's header is visible before it is read |
//! | pop: load node header | Acquire | the CAS that freed the block (so its span word is visible) |
//! | pop: CAS head | Acquire | push's Release CAS of the node we now own |
//! | pop: CAS head to itself (node was reused) | AcqRel | the reusing pop's Acquire CAS: if that pop read our write, our read of the node happened before its reuse, a contradiction; so success means the list is corrupt |
//! | pop: CAS an empty head to itself after clearing its bit | AcqRel | Release: the push CAS that follows it sees the clear; Acquire: the push it fails on |
//! | take_all: CAS head to empty | Acquire | every push in the head's history (the later pops and pushes are RMWs that continue their release sequences), and a popper's CAS of the head to itself |
//! | pop: re-read bump offset | Relaxed | ordered after the reservation by the Acquire head load (the reservation happens before the push) |
//! | bitmap | Relaxed | a hint; correctness rests on the heads |

pub(crate) mod policy;

pub(crate) use policy::{Optimistic, Pessimistic, Policy};

use crate::backing::Backing;
use crate::block::{self, Word};
use crate::error::Error;
use crate::format::{CLASSES, OFF_BUMP, OFF_HEADS};
use crate::sync::{AtomicU64, Ordering};

const HEAD_OFF_BITS: u32 = 38;
const HEAD_OFF_MASK: u64 = (1 << HEAD_OFF_BITS) - 1;
const HEAD_TAG_MASK: u64 = (1 << (64 - HEAD_OFF_BITS)) - 1;

/// Packs a head word: offset (bytes, a multiple of 8) and version tag.
#[inline]
pub(crate) const fn pack_head(off: u64, tag: u64) -> u64 {
    ((tag & HEAD_TAG_MASK) << HEAD_OFF_BITS) | (off / 8)
}

/// The offset a head word points at (0 = empty).
#[inline]
pub(crate) const fn head_off(h: u64) -> u64 {
    (h & HEAD_OFF_MASK) * 8
}

/// The version tag of a head word.
#[inline]
pub(crate) const fn head_tag(h: u64) -> u64 {
    h >> HEAD_OFF_BITS
}

/// Largest span with its own exact class.
const EXACT_MAX: u64 = 512;
const EXACT_CLASSES: usize = (EXACT_MAX / 8 - 1) as usize; // spans 16..=512 -> 0..=62

/// The class a segment of `span` bytes is listed in.
#[inline]
pub(crate) fn class_of(span: u64) -> usize {
    debug_assert!(span >= 16 && span % 8 == 0, "span {span}");
    if span <= EXACT_MAX {
        return (span / 8 - 2) as usize;
    }
    let k = 63 - span.leading_zeros() as usize; // floor(log2), >= 9
    let sub = ((span >> (k - 3)) & 7) as usize;
    (EXACT_CLASSES + (k - 9) * 8 + sub).min(CLASSES - 1)
}

/// The smallest span listed in class `c`.
#[inline]
pub(crate) fn class_min(c: usize) -> u64 {
    if c < EXACT_CLASSES {
        return (c as u64 + 2) * 8;
    }
    let i = c - EXACT_CLASSES;
    let k = 9 + i / 8;
    let sub = (i % 8) as u64;
    let m = (8 + sub) << (k - 3);
    if c == EXACT_CLASSES {
        EXACT_MAX + 8
    } else {
        m
    }
}

/// The smallest class every segment of which holds `span` bytes.
#[inline]
pub(crate) fn class_up(span: u64) -> usize {
    let c = class_of(span);
    if c < EXACT_CLASSES || class_min(c) >= span {
        c
    } else {
        (c + 1).min(CLASSES - 1)
    }
}

/// Which classes may be non-empty.
pub(crate) struct Bitmap([AtomicU64; CLASSES / 64]);

impl Bitmap {
    pub(crate) fn new() -> Bitmap {
        Bitmap(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    #[inline]
    pub(crate) fn get(&self, c: usize) -> bool {
        self.0[c / 64].load(Ordering::Relaxed) & (1 << (c % 64)) != 0
    }

    #[inline]
    fn set(&self, c: usize) {
        if !self.get(c) {
            self.0[c / 64].fetch_or(1 << (c % 64), Ordering::Relaxed);
        }
    }

    #[inline]
    fn clear(&self, c: usize) {
        self.0[c / 64].fetch_and(!(1 << (c % 64)), Ordering::Relaxed);
    }

    /// The first set class at or after `c`.
    pub(crate) fn first_from(&self, c: usize) -> Option<usize> {
        let mut i = c;
        while i < CLASSES {
            let w = self.0[i / 64].load(Ordering::Relaxed) >> (i % 64);
            if w != 0 {
                return Some(i + w.trailing_zeros() as usize);
            }
            i = (i / 64 + 1) * 64;
        }
        None
    }
}

/// A segment taken off a list: the caller owns `off..off + span`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub off: u64,
    pub span: u64,
    /// Generation in the segment's header (even).
    pub gen: u32,
}

/// The free lists of one arena: heads in the header, a bitmap in process memory.
pub(crate) struct FreeLists {
    nonempty: Bitmap,
    /// Offsets of list nodes must lie in `data_start..limit`.
    data_start: u64,
}

impl FreeLists {
    /// Reads the heads of an arena just opened (O(classes), not O(heap)).
    pub(crate) fn load(b: &Backing, data_start: u64) -> FreeLists {
        let fl = FreeLists {
            nonempty: Bitmap::new(),
            data_start,
        };
        for c in 0..CLASSES {
            if head_off(fl.head(b, c).load(Ordering::Relaxed)) != 0 {
                fl.nonempty.set(c);
            }
        }
        fl
    }

    #[inline]
    fn head<'b>(&self, b: &'b Backing, c: usize) -> &'b AtomicU64 {
        b.word(OFF_HEADS + 8 * c as u64)
    }

    /// Empties every list (exclusive passes rebuild them from a heap walk).
    pub(crate) fn clear_all(&self, b: &Backing) {
        for c in 0..CLASSES {
            let h = self.head(b, c);
            h.store(
                pack_head(0, head_tag(h.load(Ordering::Relaxed)) + 1),
                Ordering::Relaxed,
            );
            self.nonempty.clear(c);
        }
    }

    /// Lists the segment `off..off + span` (which the caller owns) with generation `gen` (even).
    pub(crate) fn push(&self, b: &Backing, off: u64, span: u64, gen: u32) {
        debug_assert!(span >= 16 && span % 8 == 0 && off % 8 == 0 && gen % 2 == 0);
        let c = class_of(span);
        // The span lives in the word after the header; the node is ours until the CAS below.
        b.word(off + 8).store(span, Ordering::Relaxed);
        let head = self.head(b, c);
        let mut h = head.load(Ordering::Relaxed);
        loop {
            b.word(off)
                .store(block::free(gen, head_off(h)), Ordering::Relaxed);
            // Release: publishes the node's header and span word; pairs with the Acquire load and
            // CAS in `pop`. Acquire: pairs with the AcqRel CAS of an emptied head to itself in
            // `pop`, so a clear of this class's bit made before it is seen below (and undone).
            match head.compare_exchange_weak(
                h,
                pack_head(off, head_tag(h) + 1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => h = now,
            }
        }
        self.nonempty.set(c);
    }

    /// Takes the head of class `c`, if any. `limit` bounds valid node offsets: the bump offset,
    /// read by the caller before the call.
    pub(crate) fn pop(&self, b: &Backing, c: usize, limit: u64) -> Result<Option<Segment>, Error> {
        let head = self.head(b, c);
        let mut limit = limit;
        // Whether `off..end` lies in the reserved heap. The caller's `limit` may predate the node:
        // a segment pushed since can lie in chunks reserved since (a retired chunk's tail, a large
        // block's tail). Every reservation happens before the push of any segment inside it (the
        // pusher reserved it, or got it through an Acquire pop or an Acquire free of a block in
        // it), and our Acquire load of the head happens after that push, so one re-read of the
        // bump offset sees the reservation. Only a node outside even that is corrupt.
        let mut in_heap = |off: u64, end: u64| {
            if off >= self.data_start && end <= limit {
                return true;
            }
            limit = b.word(OFF_BUMP).load(Ordering::Relaxed);
            off >= self.data_start && end <= limit
        };
        // Acquire: pairs with the Release CAS in `push` that installed this head.
        let mut h = head.load(Ordering::Acquire);
        loop {
            let off = head_off(h);
            if off == 0 {
                self.nonempty.clear(c);
                // A push may have landed between our load and the clear: keep its bit. A plain
                // re-load could return the stale empty head although the push's bit update came
                // before our clear (the store-buffering shape: each thread writes one word, then
                // reads the other's), and the class would stay hidden from `take` with a segment
                // in it. A CAS of the head to itself reads the latest head. If it still finds `h`,
                // any push comes after it in the head's order, and that push's AcqRel CAS reads
                // our Release write, so the push's check of the bit sees our clear and sets it.
                // AcqRel: Release for that argument; Acquire pairs with the push we continue with.
                match head.compare_exchange(h, h, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Ok(None),
                    Err(now) => {
                        self.nonempty.set(c);
                        h = now;
                        continue;
                    }
                }
            }
            if !in_heap(off, off + 16) {
                return Err(Error::Corrupt {
                    offset: OFF_HEADS + 8 * c as u64,
                    word: h,
                });
            }
            // Acquire: pairs with the Release CAS that freed or pushed this node.
            let w = b.word(off).load(Ordering::Acquire);
            let (gen, next) = match block::decode(w) {
                Word::Free { gen, next } => (gen, next),
                _ => {
                    // Another thread popped the node and reused it: the head has moved on. If it
                    // has not, the list itself is wrong. A plain re-load cannot tell: it may
                    // return the same stale `h` even though we saw the reuse (the reuse's header
                    // stores are Relaxed, so seeing them orders nothing). A CAS of `h` to itself
                    // reads the latest head. If it succeeds, the popper that reused the node
                    // cannot have read `h` after it (that pop would then have read our Release
                    // write and so happen after our load of the node's header, which saw the
                    // pop's later store): `h` really is the head, and the list is corrupt.
                    // AcqRel: the Release half is what the argument above needs; the Acquire half
                    // pairs with the push of the head we continue with on failure.
                    match head.compare_exchange(h, h, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => {
                            return Err(Error::Corrupt {
                                offset: off,
                                word: w,
                            })
                        }
                        Err(now) => h = now,
                    }
                    continue;
                }
            };
            // Acquire: the node becomes ours; pairs with the Release CAS in `push`.
            match head.compare_exchange_weak(
                h,
                pack_head(next, head_tag(h) + 1),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let span = b.word(off + 8).load(Ordering::Relaxed);
                    if span < 16
                        || span % 8 != 0
                        || !off.checked_add(span).is_some_and(|e| in_heap(off, e))
                    {
                        return Err(Error::Corrupt {
                            offset: off + 8,
                            word: span,
                        });
                    }
                    return Ok(Some(Segment { off, span, gen }));
                }
                Err(now) => h = now,
            }
        }
    }

    /// Takes a segment of at least `need` bytes for which `fits` holds, visiting classes in
    /// `P`'s order.
    pub(crate) fn take<P: Policy>(
        &self,
        b: &Backing,
        need: u64,
        limit: u64,
        fits: impl Fn(&Segment) -> bool,
    ) -> Result<Option<Segment>, Error> {
        let mut prev = None;
        while let Some(c) = P::next(&self.nonempty, need, prev) {
            if let Some(seg) = self.pop(b, c, limit)? {
                if seg.span >= need && fits(&seg) {
                    return Ok(Some(seg));
                }
                // A coarse class holds segments a little smaller than its neighbours (and an
                // aligned request needs room for padding in front): no fit, back it goes.
                self.push(b, seg.off, seg.span, seg.gen);
            }
            prev = Some(c);
        }
        Ok(None)
    }

    /// Detaches the whole stack of class `c` with one CAS of its head to empty and splices its
    /// nodes in front of the chain `chain` (linked through the nodes' FREE headers, 0 = empty).
    /// Returns the new chain head and how many nodes were detached. The nodes are the caller's from
    /// then on, as after a pop.
    ///
    /// Detaching all nodes at once is ABA-safe without the per-node argument `pop` needs: nothing
    /// is installed but the empty head, and the tag moves on, so a popper that read the old head
    /// fails its CAS whatever it read from the old nodes since. `limit` bounds node offsets as in
    /// `pop`. A damaged chain is reported as `Error::Corrupt` and `chain` is left as it was; the
    /// class's nodes stay off the lists (leaked until the next repair), like the node a failing
    /// `pop` reports. Allocates nothing (invariant A, `bump.rs`).
    pub(crate) fn take_all(
        &self,
        b: &Backing,
        c: usize,
        limit: u64,
        chain: u64,
    ) -> Result<(u64, u64), Error> {
        let head = self.head(b, c);
        let mut h = head.load(Ordering::Relaxed);
        loop {
            if head_off(h) == 0 {
                return Ok((chain, 0));
            }
            // Acquire: pairs with the Release CAS of every `push` in the head's history (each
            // later pop and push is a read-modify-write, so they all continue those release
            // sequences): every listed node's header and span word are visible to the walk below.
            // It also pairs with a popper's AcqRel CAS of the head to itself that we read from:
            // that popper's read of a node then happens before our rewrites of the node. No
            // Release half: the empty head publishes nothing.
            match head.compare_exchange_weak(
                h,
                pack_head(0, head_tag(h) + 1),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => h = now,
            }
        }
        // Every node was pushed before our CAS, and every reservation of heap holding a node
        // happened before its push (see `pop`), so one read of the bump offset now bounds them
        // all; the caller's `limit` may predate some.
        let limit = limit.max(b.word(OFF_BUMP).load(Ordering::Relaxed));
        // More nodes than 16-byte segments fit below `limit`: the chain loops.
        let mut budget = limit.saturating_sub(self.data_start) / 16;
        let mut n = 0u64;
        let mut off = head_off(h);
        let mut last = None;
        while off != 0 {
            if off % 8 != 0 || off < self.data_start || off + 16 > limit || budget == 0 {
                return Err(Error::Corrupt {
                    offset: OFF_HEADS + 8 * c as u64,
                    word: off,
                });
            }
            budget -= 1;
            // Relaxed: made visible by the Acquire CAS above; the node is ours.
            let w = b.word(off).load(Ordering::Relaxed);
            let Word::Free { gen, next } = block::decode(w) else {
                return Err(Error::Corrupt {
                    offset: off,
                    word: w,
                });
            };
            let span = b.word(off + 8).load(Ordering::Relaxed);
            if span < 16 || span % 8 != 0 || off.checked_add(span).is_none_or(|e| e > limit) {
                return Err(Error::Corrupt {
                    offset: off + 8,
                    word: span,
                });
            }
            n += 1;
            last = Some((off, gen));
            off = next;
        }
        if let Some((off, gen)) = last {
            set_next(b, off, gen, chain);
        }
        Ok((head_off(h), n))
    }

    /// Merges the listed segments that touch: detaches every class that may be non-empty into one
    /// chain, sorts the chain by offset, joins each run `a.off + a.span == b.off` into its first
    /// segment and lists everything again. Returns how many segments were merged into a neighbour,
    /// and how many were detached (the pass's cost is about that many cache misses times the sort's
    /// `log n`).
    ///
    /// The pass allocates nothing (invariant A, `bump.rs`): the detached segments are linked
    /// through their own FREE headers (the `next` field, which nothing reads while they are off
    /// the lists), and sorted there with a bottom-up merge sort over a fixed array of 64 runs.
    /// Rewriting `next` leaves every header FREE with its span, so a heap walk is unaffected.
    ///
    /// A merge only stores the run's new span in the span word of its first segment, whose FREE
    /// header stays as it is; the headers of the others become bytes inside it. A heap walk after a
    /// crash at any point reads either the old span (and then the next segment's intact header)
    /// or the new one. `durable(off, len)` is called after the span stores and before anything is
    /// listed again: it must make the bytes `off..off + len` (which hold every new span) durable,
    /// so that no later carve that zeroes a merged header can reach the disk before the span that
    /// covers it. If it fails, the old spans are put back, the segments are listed unmerged and
    /// its error is returned. A damaged list (`Error::Corrupt`) is reported the same way, after
    /// the segments detached intact are listed again unmerged.
    ///
    /// Segments that other threads pop or push meanwhile are not seen; each segment detached is
    /// owned by this pass alone until it is pushed again.
    pub(crate) fn coalesce(
        &self,
        b: &Backing,
        limit: u64,
        mut fresh_gen: impl FnMut() -> u32,
        durable: impl FnOnce(u64, u64) -> Result<(), Error>,
    ) -> Result<(u64, u64), Error> {
        let mut chain = 0u64;
        let mut detached = 0u64;
        let mut failed = None;
        let mut c = 0;
        while let Some(k) = self.nonempty.first_from(c) {
            match self.take_all(b, k, limit, chain) {
                Ok((h, n)) => {
                    chain = h;
                    detached += n;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            c = k + 1;
        }
        let chain = sort_chain(b, chain);
        let span_of = |off: u64| b.word(off + 8).load(Ordering::Relaxed);
        if failed.is_none() {
            // Listed segments never overlap; if these do, a list is damaged: merge nothing.
            let mut off = chain;
            while off != 0 {
                let next = next_of(b, off).1;
                if next != 0 && off + span_of(off) > next {
                    failed = Some(Error::Corrupt {
                        offset: next,
                        word: span_of(off),
                    });
                    break;
                }
                off = next;
            }
        }
        let mut merged = 0u64;
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        if failed.is_none() {
            // Runs: the first segment and the total span so far.
            let mut run: Option<(u64, u64, u64)> = None; // (first, total, segments)
            let mut off = chain;
            loop {
                let seg = (off != 0).then(|| (off, span_of(off)));
                match (run, seg) {
                    (Some((first, total, n)), Some((o, s))) if first + total == o => {
                        run = Some((first, total + s, n + 1));
                    }
                    (prev, seg) => {
                        if let Some((first, total, n)) = prev {
                            if n > 1 {
                                // The commit of the merge: the first segment's header stays FREE,
                                // so a walk reads the whole run as one segment from here on.
                                b.word(first + 8).store(total, Ordering::Relaxed);
                                merged += n - 1;
                                lo = lo.min(first);
                                hi = hi.max(first + 16);
                            }
                        }
                        run = seg.map(|(o, s)| (o, s, 1));
                    }
                }
                if off == 0 {
                    break;
                }
                off = next_of(b, off).1;
            }
        }
        if merged > 0 {
            if let Err(e) = durable(lo, hi - lo) {
                // Put the old spans back: a segment whose span now reaches past the next one in
                // the sorted chain was a run's first, and its old span ended at that next one.
                let mut off = chain;
                while off != 0 {
                    let next = next_of(b, off).1;
                    if next != 0 && off + span_of(off) > next {
                        b.word(off + 8).store(next - off, Ordering::Relaxed);
                    }
                    off = next;
                }
                merged = 0;
                failed = Some(e);
            }
        }
        // List everything again: a merged run once (with a fresh generation), the segments inside
        // it not at all, every other segment as it was.
        let mut off = chain;
        while off != 0 {
            let (gen, mut next) = next_of(b, off);
            let span = span_of(off);
            if merged > 0 && next != 0 && off + span > next {
                while next != 0 && next < off + span {
                    next = next_of(b, next).1;
                }
                self.push(b, off, span, fresh_gen());
            } else {
                self.push(b, off, span, gen);
            }
            off = next;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok((merged, detached)),
        }
    }

    /// Whether no class is marked non-empty.
    pub(crate) fn none_listed(&self) -> bool {
        self.nonempty.first_from(0).is_none()
    }

    /// Walks list `c` without changing it (exclusive callers only): node offsets in order, up to
    /// `max` nodes; `Err` with the offending offset if a node is not a free header.
    pub(crate) fn nodes(&self, b: &Backing, c: usize, limit: u64, max: usize) -> ListWalk {
        let mut out = Vec::new();
        let mut off = head_off(self.head(b, c).load(Ordering::Acquire));
        while off != 0 {
            if out.len() >= max {
                return ListWalk::Cycle(out);
            }
            if off < self.data_start || off + 16 > limit || off % 8 != 0 {
                return ListWalk::Bad {
                    nodes: out,
                    offset: off,
                };
            }
            // Acquire: pairs with the Release CAS in `push` that listed the node.
            match block::decode(b.word(off).load(Ordering::Acquire)) {
                Word::Free { next, .. } => {
                    out.push(off);
                    off = next;
                }
                _ => {
                    return ListWalk::Bad {
                        nodes: out,
                        offset: off,
                    }
                }
            }
        }
        ListWalk::Ok(out)
    }
}

/// `(generation, next)` of a detached node's FREE header (a chain of the coalescing pass).
fn next_of(b: &Backing, off: u64) -> (u32, u64) {
    match block::decode(b.word(off).load(Ordering::Relaxed)) {
        Word::Free { gen, next } => (gen, next),
        // `take_all` checked every node, and the pass owns them: not reached. Ending the chain
        // here (leaking the rest until a repair) is the answer that cannot panic.
        _ => (0, 0),
    }
}

/// Points a detached node's FREE header at `next`, keeping its generation.
fn set_next(b: &Backing, off: u64, gen: u32, next: u64) {
    b.word(off).store(block::free(gen, next), Ordering::Relaxed);
}

/// Merges two chains sorted by offset into one.
fn merge_chains(b: &Backing, mut x: u64, mut y: u64) -> u64 {
    let mut head = 0u64;
    let mut tail: Option<(u64, u32)> = None;
    while x != 0 || y != 0 {
        let take_x = y == 0 || (x != 0 && x < y);
        let off = if take_x { x } else { y };
        let (gen, next) = next_of(b, off);
        if take_x {
            x = next;
        } else {
            y = next;
        }
        match tail {
            Some((t, tg)) => set_next(b, t, tg, off),
            None => head = off,
        }
        tail = Some((off, gen));
    }
    if let Some((t, tg)) = tail {
        set_next(b, t, tg, 0);
    }
    head
}

/// Sorts a chain of detached nodes by offset in place: a bottom-up merge sort whose pending runs
/// (of 2^i nodes in slot i) live in a fixed array, so it allocates nothing.
fn sort_chain(b: &Backing, mut chain: u64) -> u64 {
    let mut runs = [0u64; 64];
    while chain != 0 {
        let (gen, next) = next_of(b, chain);
        set_next(b, chain, gen, 0);
        let mut carry = chain;
        chain = next;
        for slot in runs.iter_mut() {
            if *slot == 0 {
                *slot = carry;
                carry = 0;
                break;
            }
            carry = merge_chains(b, *slot, carry);
            *slot = 0;
        }
        if carry != 0 {
            // More than 2^64 nodes: impossible; keep them rather than lose them.
            runs[63] = merge_chains(b, runs[63], carry);
        }
    }
    runs.iter().fold(0, |acc, &r| merge_chains(b, r, acc))
}

/// What walking one list found.
pub(crate) enum ListWalk {
    Ok(Vec<u64>),
    /// More nodes than there are free segments: the list loops.
    Cycle(Vec<u64>),
    /// A link points outside the heap or at something that is not a free segment.
    Bad {
        nodes: Vec<u64>,
        offset: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_monotonic_and_cover() {
        let mut last = 0;
        let mut span = 16;
        while span < (1u64 << 36) {
            let c = class_of(span);
            assert!(c >= last, "class of {span} went down");
            assert!(
                class_min(c) <= span,
                "span {span} below its class min {}",
                class_min(c)
            );
            let up = class_up(span);
            if up < CLASSES - 1 {
                assert!(
                    class_min(up) >= span,
                    "class_up({span}) = {up} holds smaller spans"
                );
            }
            if c + 1 < CLASSES {
                assert!(
                    class_min(c + 1) > span,
                    "span {span} belongs above class {c}"
                );
            }
            last = c;
            span += if span < 4096 { 8 } else { span / 64 / 8 * 8 };
        }
        assert_eq!(class_of(16), 0);
        assert_eq!(class_of(512), 62);
        assert_eq!(class_of(520), 63);
        assert_eq!(class_of(1 << 40), CLASSES - 1);
    }

    #[test]
    fn head_packing() {
        let h = pack_head(4096 * 1000, 77);
        assert_eq!(head_off(h), 4096 * 1000);
        assert_eq!(head_tag(h), 77);
        let wrapped = pack_head(8, HEAD_TAG_MASK + 1);
        assert_eq!(head_tag(wrapped), 0);
        assert_eq!(head_off(pack_head(0, 5)), 0);
    }

    #[test]
    fn bitmap_search() {
        let b = Bitmap::new();
        assert_eq!(b.first_from(0), None);
        b.set(70);
        b.set(200);
        assert_eq!(b.first_from(0), Some(70));
        assert_eq!(b.first_from(71), Some(200));
        assert_eq!(b.first_from(201), None);
        b.clear(70);
        assert_eq!(b.first_from(0), Some(200));
    }
}
