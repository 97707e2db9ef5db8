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
//! accessed atomically), never user data (the pop slot below covers the one exception, a merge).
//!
//! Within an exact class every segment has the same size, so the stack order *is* the size order.
//! A policy picks which class to pop (`policy.rs`): both try the request's own coarse class first
//! (a coarse class's segments differ by up to an eighth, so its head may hold the request; one too
//! small is pushed back), then `Optimistic` the class whose every segment holds the request and
//! then the largest non-empty class, `Pessimistic` the smallest class whose every segment holds the
//! request. The cost of an operation is independent of how many segments are listed.
//!
//! A node's header word stays a header word while it is popped, carved or freed again; only a
//! coalescing pass turns one into bytes inside a merged segment, which a carve then zeroes and a
//! user writes. So a popper announces the node it is about to read in its *pop slot* (a word of its
//! thread's cell, `SeqCst`) and confirms that the head still names it before the read; the pass,
//! after detaching, loads every pop slot (`SeqCst`) and keeps an announced node a header (the
//! store-buffering shape of the check slot, docs/design.md "Coalescing while shared"). Either the
//! popper's confirming load comes after the detach and sees the head moved, or the pass sees the
//! announcement: no node is read while bytes are written over it.
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
//! (no allocation: invariant A in `reentry.rs`), sorts the chain, merges physically adjacent
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
//! | pop: swap the node into the pop slot; re-load the head | SeqCst, then `sc_order`; SeqCst | the pop-slot protocol: one total order with the pass's detach CAS, `sc_order` and SeqCst slot loads (`ReadSlots::popping`); the re-load's Acquire half pairs with the push of a head the pop goes on with |
//! | pop: clear the pop slot | Release | a pass whose slot load sees the clear sees the pop's read of the node done |
//! | bitmap | Relaxed | a hint; correctness rests on the heads |

mod batch;
mod class;
mod give_back;
mod merge;
pub(crate) mod policy;
mod sort;
mod walk;

pub(crate) use class::{
    class_min, class_of, class_up, exact_class, head_off, head_tag, pack_head, Bitmap,
};
pub(crate) use give_back::{Prepared, Unlisted};
pub(crate) use policy::{Optimistic, Pessimistic, Policy};
pub(crate) use walk::ListWalk;

use crate::backing::Backing;
use crate::block::{self, HeaderWord};
use crate::error::Error;
use crate::format::{CLASSES, OFF_BUMP, OFF_HEADS};
use crate::heap::{Entries, MapGeom, Start};
use crate::sync::{sc_order, AtomicU64, Ordering};

/// A segment taken off a list: the caller owns `off..off + span`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub off: u64,
    pub span: u64,
    /// Generation in the segment's header (its low 21 bits are kept).
    pub generation: u32,
}

/// The free lists of one arena: heads in the header, a bitmap in process memory.
pub(crate) struct FreeLists {
    nonempty: Bitmap,
    /// Offsets of list nodes must lie in `data_start..limit`.
    data_start: u64,
    /// The arena's start map, which giving back and merging keep up to date (`None` only for
    /// the loom models' bare heaps).
    pub(crate) maps: Option<MapGeom>,
    /// Every node header word a pop read (the loom models assert that none is a user's bytes).
    /// A std mutex on purpose: a record kept outside the model, not a synchronization loom should
    /// explore (it would only multiply the interleavings).
    #[cfg(parena_loom)]
    #[allow(clippy::disallowed_types)]
    pub(crate) node_words: std::sync::Mutex<Vec<u64>>,
}

impl FreeLists {
    /// The heap's entry verbs, with this arena's start map (none for the loom models' bare
    /// heaps).
    #[inline]
    pub(crate) fn entries<'b>(&'b self, b: &'b Backing) -> Entries<'b> {
        Entries::new(b, self.maps.as_ref())
    }

    /// Reads the heads of an arena just opened (O(classes), not O(heap)).
    pub(crate) fn load(b: &Backing, data_start: u64, maps: Option<MapGeom>) -> FreeLists {
        let fl = FreeLists {
            nonempty: Bitmap::new(),
            data_start,
            maps,
            #[cfg(parena_loom)]
            #[allow(clippy::disallowed_types)]
            node_words: std::sync::Mutex::new(Vec::new()),
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

    /// Lists the segment `off..off + span` (which the caller owns) with generation `generation`.
    pub(crate) fn push(&self, b: &Backing, off: u64, span: u64, generation: u32) {
        debug_assert!(span >= 16 && span % 8 == 0 && off % 8 == 0);
        let c = class_of(span);
        let head = self.head(b, c);
        let h = head.load(Ordering::Relaxed);
        // The span lives in the word after the header; the node is ours until the CAS below. The
        // entry starts where the block or segment did.
        self.entries(b)
            .add_free(off, span, generation, head_off(h), Start::Kept);
        self.splice(head, c, b, (off, off, generation), h);
    }

    /// Lists the chain `first..=last` of class `c` in one CAS: FREE segments of the class that
    /// the caller owns, linked through their headers from `first` to `last` (whose generation is
    /// `last_gen`; its link is set here). A thread's full cache goes to the list this way.
    pub(crate) fn push_chain(&self, b: &Backing, c: usize, first: u64, last: u64, last_gen: u32) {
        let head = self.head(b, c);
        let h = head.load(Ordering::Relaxed);
        self.entries(b).relink(last, last_gen, head_off(h));
        self.splice(head, c, b, (first, last, last_gen), h);
    }

    /// The CAS loop of a push: the chain `(first, last, last_gen)`, whose last link already names
    /// the head `h` read, goes on top of class `c`; on a failed CAS the last link is pointed at
    /// the new head and the CAS tried again. Then the class's bit is set.
    fn splice(&self, head: &AtomicU64, c: usize, b: &Backing, chain: (u64, u64, u32), mut h: u64) {
        let (first, last, last_gen) = chain;
        loop {
            // Release: publishes the nodes' headers and span words; pairs with the Acquire load
            // and CAS in `pop`. Acquire: pairs with the AcqRel CAS of an emptied head to itself in
            // `pop`, so a clear of this class's bit made before it is seen below (and undone).
            match head.compare_exchange_weak(
                h,
                pack_head(first, head_tag(h) + 1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => {
                    h = now;
                    self.entries(b).relink(last, last_gen, head_off(h));
                }
            }
        }
        self.nonempty.set(c);
    }

    /// Takes the head of class `c`, if any. `limit` bounds valid node offsets: the bump offset,
    /// read by the caller before the call. `slot` is the calling thread's pop slot (module docs):
    /// it holds each node's offset while the pop may read the node, and 0 when the pop returns.
    pub(crate) fn pop(
        &self,
        b: &Backing,
        c: usize,
        limit: u64,
        slot: &AtomicU64,
    ) -> Result<Option<Segment>, Error> {
        let _clear = ClearSlot(slot);
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
                match self.confirm_empty(head, c, h) {
                    None => return Ok(None),
                    Some(now) => {
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
            // Announce the node, then confirm it is still the head: SeqCst swap, `sc_order`,
            // SeqCst load, against the pass's detach CAS, `sc_order` and SeqCst slot loads
            // (module docs). If the head moved, the node may be inside a merged segment by now:
            // go on with the new head without reading it. (SeqCst includes the Acquire that pairs
            // with the push of the head we continue with.)
            slot.swap(off, Ordering::SeqCst);
            sc_order();
            let now = head.load(Ordering::SeqCst);
            if now != h {
                h = now;
                continue;
            }
            // Acquire: pairs with the Release CAS that freed or pushed this node.
            let w = b.word(off).load(Ordering::Acquire);
            #[cfg(parena_loom)]
            self.node_words.lock().unwrap().push(w);
            let (generation, next) = match block::decode(w) {
                HeaderWord::Free { generation, next } => (generation, next),
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
                    return Ok(Some(Segment {
                        off,
                        span,
                        generation,
                    }));
                }
                Err(now) => h = now,
            }
        }
    }

    /// Class `c` was seen empty at head word `h`: clears its bit in the non-empty hint, then
    /// confirms. Returns `None` when the class is still empty, else the head found (bit set again).
    fn confirm_empty(&self, head: &AtomicU64, c: usize, h: u64) -> Option<u64> {
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
            Ok(_) => None,
            Err(now) => {
                self.nonempty.set(c);
                Some(now)
            }
        }
    }

    /// Whether class `c` may hold a segment (the non-empty hint: one `Relaxed` load). A memtable
    /// that never frees finds it clear, so its bump path pays this load and nothing more.
    #[inline]
    pub(crate) fn may_hold(&self, c: usize) -> bool {
        self.nonempty.get(c)
    }

    /// Whether a class that may hold a segment of `span` bytes or more is marked non-empty (a
    /// scan of the hint's four words): the gate of the take before a chunk refill, so an arena
    /// whose lists hold only smaller segments (a memtable's retired chunk tails) refills at once.
    #[inline]
    pub(crate) fn may_fit(&self, span: u64) -> bool {
        self.nonempty.first_from(class_of(span)).is_some()
    }

    /// Takes a segment of at least `need` bytes for which `fits` holds, visiting classes in
    /// `P`'s order.
    pub(crate) fn take<P: Policy>(
        &self,
        b: &Backing,
        need: u64,
        limit: u64,
        slot: &AtomicU64,
        fits: impl Fn(&Segment) -> bool,
    ) -> Result<Option<Segment>, Error> {
        let mut prev = None;
        while let Some(c) = P::next(&self.nonempty, need, prev) {
            if let Some(seg) = self.pop(b, c, limit, slot)? {
                if seg.span >= need && fits(&seg) {
                    return Ok(Some(seg));
                }
                // A coarse class holds segments a little smaller than its neighbours (and an
                // aligned request needs room for padding in front): no fit, back it goes.
                self.push(b, seg.off, seg.span, seg.generation);
            }
            prev = Some(c);
        }
        Ok(None)
    }

    /// Whether no class is marked non-empty.
    pub(crate) fn none_listed(&self) -> bool {
        self.nonempty.first_from(0).is_none()
    }
}

/// Clears a pop slot when the pop returns, on every path (`Release`: a pass that loads the
/// cleared slot sees the pop's reads of the node done).
struct ClearSlot<'a>(&'a AtomicU64);

impl Drop for ClearSlot<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}
