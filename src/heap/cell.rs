//! [`ChunkCell`]: one thread's state in one arena and lane, with every field private. Its current
//! chunk and cursor, its cache of freed blocks, its batch of generations, its counters, its check
//! slot and its abandoned flag each change only through a method here, named for the step it is,
//! with the field's invariant stated on the field and asserted at entry. (Which thread holds which
//! cell, and the registry that hands cells over, are `crate::cells`.)
//!
//! ## The chunk cursor (invariant C)
//!
//! A cell's cursor `cur` is where its thread bumps next. It moves in five ways, and each is one
//! method here; the cursor's fields are private to this module, and the methods are `pub(super)`:
//! only the heap layer's verbs (`heap::chunks`) move the cursor, right after their stores.
//!
//! | move | method | called by |
//! | --- | --- | --- |
//! | take a chunk | [`ChunkCell::take_chunk`] | `Heap::refill` (the allocation slow path) |
//! | bump (a block, or a pad and a block) | [`ChunkCell::bumped`] | `Heap::bump_small` (the fast path), `Heap::bump_in_cell` |
//! | rewind over the last block | [`LastBlock::rewind`] | `Heap::rewind` (`Inner::release`, a free) |
//! | in-place resize of the last block | [`LastBlock::resize`] | `Heap::resize_last` (`Arena::resize_in_place` (`Allocator::grow`/`shrink`, `GlobalArena::realloc`)) |
//! | retire the chunk | [`ChunkCell::retire`] | `Heap::retire` (`Inner::return_chunk`) |
//!
//! **Invariant C.** Of the positions in `cur..end` at which an entry (a block, a pad, a free
//! segment) has started since the cell took its chunk, the only one there can be is `cur` itself,
//! and then `last_rewind == cur`.
//!
//! *Why.* A handle check tests the start map, then reads the header word (docs/metadata.md,
//! section 4). In between, the position must not become bytes of a block someone writes: the
//! check's atomic access would race with those writes, and a word the owner wrote that reads as the
//! old header would pass the check and be pinned. Below `cur` every start stays a start (a free
//! keeps its start; a merge of the coalescing pass is the one case that removes one, and the check
//! slots cover it). Invariant C is the same promise for the positions the cursor has moved back
//! over: no move of the cursor ever leaves a former start inside bytes someone is given.
//!
//! *Each move keeps it.*
//! - **Take a chunk**: a chunk `reserve` hands out has had no entry since the arena was last
//!   shared (only an exclusive pass, with no check running, lowers the bump offset below blocks);
//!   `last_rewind` is cleared.
//! - **Bump**: entries start at `hdr >= cur` (a pad fills `cur..hdr`) and the cursor goes past the
//!   last one. By C nothing above the old `cur` had started, so nothing at or above the new one
//!   has. No check: the fast path stays two loads and one store, with no read-modify-write.
//! - **Rewind** and **in-place resize** move the cursor without starting an entry at it, so both go
//!   through one gate, [`ChunkCell::last_block`]: the block must end at `cur`, and `cur` must not
//!   be a former start (`cur != last_rewind`). Then, by C, nothing at or above `cur` ever started,
//!   and the block's own bytes never did either (they lay above the cursor when it was bumped).
//!   A rewind sets `cur` to the block's start and records it in `last_rewind`: C holds with the
//!   one former start at the cursor. A resize sets `cur` to the block's new end: a grow covers only
//!   positions that never started, a shrink uncovers only the block's interior.
//!   With the cursor on a former start the gate refuses: moving it back (a second rewind in a row,
//!   or a shrink) would leave that start above the cursor, where the next, longer block covers it;
//!   a grow would cover it at once. The free then lists the block, a grow moves the block, and a
//!   shrink lists the cut-off tail, all with the cursor where it is.
//! - **Retire**: the tail `cur..end` becomes free space that starts at `cur` (or a gap), and the
//!   cell holds no chunk.
//!
//! So no cursor move turns a start into user bytes, and the check slots have only merges to cover.
//!
//! *Crash order.* The cursor lives in memory only; what a crash can leave is decided by the
//! persistent stores each caller makes before it moves the cursor (docs/design.md, "Crash
//! consistency"): a bump writes the start bit, then the header; a rewind clears the start bit,
//! zeroes the block, then stores header 0; a resize zeroes a cut-off tail, then commits the new
//! length with one CAS of the header. In every case what lies from the new `cur` to `end` is zero
//! before the cursor moves (invariant Z, `bump.rs`), so a walk reads it as an unused chunk tail.
//!
//! ## Orderings
//!
//! Every field is written by the cell's owner thread alone, except `abandoned` (the hand-over) and
//! `reads` (the check and read slots, which frees and coalescing passes load: `heap::reads` has
//! their orderings).
//!
//! | word | op | ordering | why |
//! | --- | --- | --- | --- |
//! | `cur`/`end`/`start`/`last_rewind`/`generation`, `gen_next`/`gen_end`, `cache`, the counters | load/store | Relaxed | one writer; exclusive passes see them through the `Arc` drop / `&mut` hand-over, `stats` and the pass's rate limit read counts that may lag |
//! | `abandoned` | store / CAS | Release / Acquire | hands a cell (and all of the above) from a departing thread to the next owner |

use super::cache::CacheTop;
use super::counters::Counters;
use super::reads::ReadSlots;
use crate::backing::Backing;
use crate::block;
use crate::layout::EXACT_CLASSES;
use crate::sync::{AtomicBool, AtomicU64, Ordering};

/// Size classes with a per-thread cache: the exact classes (`freelist::exact_class`).
const CACHE_CLASSES: usize = EXACT_CLASSES;
/// How many generations a cell takes from the arena's counter at a time (`batch_gen`).
const GEN_BATCH: u64 = 256;

/// One thread's current chunk in one arena, its cache of freed blocks, and its counters.
pub(crate) struct ChunkCell {
    /// Next unallocated byte of the chunk; 0 when the cell holds no chunk.
    /// Always within `start..=end`. Moved only by the methods of invariant C (module docs).
    cur: AtomicU64,
    /// End of the chunk (a chunk boundary or the capacity); 0 when none.
    end: AtomicU64,
    /// Start of the chunk; rewinds never go below it.
    start: AtomicU64,
    /// Generation given to blocks bumped in this chunk. Changes on every rewind, so a
    /// handle to a rewound block never matches the block that reuses its offset.
    generation: AtomicU64,
    /// Set when no thread owns the cell; a thread that needs a cell may adopt it. Set only by the
    /// owner ([`ChunkCell::abandon`]), cleared only by the adopter's CAS
    /// ([`ChunkCell::try_adopt`]): at most one thread owns the cell at a time.
    abandoned: AtomicBool,
    /// A batch of the arena's generation counter this thread hands out alone (for blocks taken
    /// from its cache): the next value and the end of the batch, `gen_next <= gen_end` (equal:
    /// the batch is used up). Owner-only, `Relaxed`.
    gen_next: AtomicU64,
    gen_end: AtomicU64,
    /// Per exact size class: a stack of blocks this thread freed, linked through their FREE
    /// headers (`block::free`, `next`) and kept off the shared lists, so a thread that frees and
    /// allocates the same sizes touches no shared atomic. Each is a walkable FREE segment, so a
    /// crash leaves them as free space for recovery. A head word packs the first block's header
    /// offset and the count ([`CacheTop`]), the count at most the cache's depth; 0 is empty.
    /// Owner-only, `Relaxed` like `cur`.
    cache: [AtomicU64; CACHE_CLASSES],
    counters: Counters,
    /// The check slot, the read slots and the deferred list: what other threads must know of this
    /// thread's handle checks and reads (`heap::reads`).
    reads: ReadSlots,
    /// Where this cell last rewound its chunk's cursor to (0: not since it took the chunk): the
    /// former start that invariant C allows at the cursor. While the cursor is there, it moves
    /// only by a bump (module docs). Owner-only, `Relaxed`.
    last_rewind: AtomicU64,
}

impl ChunkCell {
    /// `(cur, end)` of the cell's chunk; `cur == 0` when it holds none. Owner only.
    #[inline]
    pub(crate) fn cursor(&self) -> (u64, u64) {
        (
            self.cur.load(Ordering::Relaxed),
            self.end.load(Ordering::Relaxed),
        )
    }

    /// The generation of the blocks bumped in the current chunk. Owner only.
    #[inline]
    pub(crate) fn generation(&self) -> u32 {
        self.generation.load(Ordering::Relaxed) as u32
    }

    /// Bump: the caller has written entries from the cursor up to `to` (start bits first, then
    /// headers), all inside the chunk; the cursor goes to `to`. Keeps invariant C with no check
    /// (module docs). Owner only.
    #[inline]
    pub(super) fn bumped(&self, to: u64) {
        debug_assert!(
            {
                let (cur, end) = self.cursor();
                cur != 0 && cur < to && to <= end
            },
            "bump to {to} outside the cell's chunk {:?}",
            self.cursor()
        );
        self.cur.store(to, Ordering::Relaxed);
    }

    /// Take a chunk: `start..end`, freshly reserved (zero), whose blocks get `generation`. The
    /// cell holds none (it was retired). Owner only.
    pub(super) fn take_chunk(&self, start: u64, end: u64, generation: u64) {
        debug_assert!(
            self.cur.load(Ordering::Relaxed) == 0 && start != 0 && start < end,
            "chunk {start}..{end} taken by a cell that holds one"
        );
        self.start.store(start, Ordering::Relaxed);
        self.cur.store(start, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
        self.generation.store(generation, Ordering::Relaxed);
        self.last_rewind.store(0, Ordering::Relaxed);
    }

    /// Retire the chunk: returns its unused tail `(cur, end)`, which the caller gives back as
    /// free space starting at `cur`; `None` when the cell holds no chunk. Owner only.
    pub(super) fn retire(&self) -> Option<(u64, u64)> {
        let (cur, end) = self.cursor();
        self.cur.store(0, Ordering::Relaxed);
        self.end.store(0, Ordering::Relaxed);
        self.start.store(0, Ordering::Relaxed);
        (cur != 0).then_some((cur, end))
    }

    /// The gate of every cursor move other than a bump (invariant C): the block at `hdr` spanning
    /// `span` bytes, if it is the last one bumped in this cell's chunk and the cursor after it is
    /// not a former start. Only then may the cursor move back over it (a rewind) or move to a new
    /// end of it (an in-place resize). Owner only.
    #[inline]
    pub(crate) fn last_block(&self, hdr: u64, span: u64) -> Option<LastBlock<'_>> {
        let (cur, end) = self.cursor();
        let last = cur != 0 && cur == hdr + span && hdr >= self.start.load(Ordering::Relaxed);
        (last && self.last_rewind.load(Ordering::Relaxed) != cur).then_some(LastBlock {
            cell: self,
            hdr,
            end,
        })
    }

    /// Gives the cell up: the next thread that needs a cell may adopt it. Owner only, as its last
    /// touch of the cell.
    pub(crate) fn abandon(&self) {
        debug_assert!(
            !self.abandoned.load(Ordering::Relaxed),
            "a cell abandoned twice"
        );
        // Release: publishes this thread's last stores to the cell to whoever adopts it (the
        // Acquire CAS in `try_adopt`).
        self.abandoned.store(true, Ordering::Release);
    }

    /// Adopts the cell if it is abandoned: `true` when the calling thread is now its one owner.
    pub(crate) fn try_adopt(&self) -> bool {
        // Acquire: pairs with the Release store in `abandon`, so the previous owner's stores to
        // the cell are visible to the new owner.
        self.abandoned
            .compare_exchange(true, false, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// A fresh generation from this cell's batch of the arena's generation counter (in `mem`'s
    /// file header): every value is handed out once, like `block::fresh_gen`, but the shared
    /// counter is touched once per batch. Owner only.
    pub(crate) fn batch_gen(&self, mem: &Backing) -> u32 {
        let mut next = self.gen_next.load(Ordering::Relaxed);
        let end = self.gen_end.load(Ordering::Relaxed);
        debug_assert!(next <= end, "generation batch {next}..{end} overrun");
        if next == end {
            next = block::fresh_gen_batch(mem, GEN_BATCH);
            self.gen_end.store(next + GEN_BATCH, Ordering::Relaxed);
        }
        self.gen_next.store(next + 1, Ordering::Relaxed);
        block::gen_of_seed(next)
    }

    /// The head of the cache of exact class `class`: one `Relaxed` load (the fast path tests it
    /// with [`CacheTop::is_empty`] before anything else). Owner only.
    #[inline]
    pub(crate) fn cache_top(&self, class: usize) -> CacheTop {
        CacheTop::from_word(self.cache[class].load(Ordering::Relaxed))
    }

    /// The block at `hdr` went on top of class `class`'s cache, whose head was `top` (which
    /// [`CacheTop::has_room`]); the caller has made it a FREE segment linked to `top.first()`.
    /// Owner only.
    #[inline]
    pub(crate) fn cache_pushed(&self, class: usize, top: CacheTop, hdr: u64) {
        self.debug_assert_top(class, top);
        debug_assert!(
            top.has_room() && hdr != 0,
            "cache push of {hdr} onto {top:?}"
        );
        self.cache[class].store(top.pushed(hdr).word(), Ordering::Relaxed);
    }

    /// Class `class`'s top block, `top.first()`, was taken; `next` is the block its FREE header
    /// linked to. Owner only.
    #[inline]
    pub(crate) fn cache_popped(&self, class: usize, top: CacheTop, next: u64) {
        self.debug_assert_top(class, top);
        debug_assert!(!top.is_empty(), "cache pop of an empty class {class}");
        self.cache[class].store(top.popped(next).word(), Ordering::Relaxed);
    }

    /// The empty class `class` now holds the chain of `count` blocks (1 to the cache's depth)
    /// starting at `first`, which the caller took from the shared list (`FreeLists::take_batch`):
    /// FREE segments of the class's span, linked through their headers, the last link 0. Returns
    /// the new head. Owner only.
    #[inline]
    pub(crate) fn cache_filled(&self, class: usize, first: u64, count: u64) -> CacheTop {
        self.debug_assert_top(class, CacheTop::from_word(0));
        let top = CacheTop::filled(first, count);
        self.cache[class].store(top.word(), Ordering::Relaxed);
        top
    }

    /// Empties class `class`'s cache and returns what it held, for the caller to list (or to
    /// drop: a damaged link leaves the blocks leaked until a repair). Owner only.
    #[inline]
    pub(crate) fn take_cache(&self, class: usize) -> CacheTop {
        let top = self.cache_top(class);
        self.cache[class].store(0, Ordering::Relaxed);
        top
    }

    /// Empties every class of the cache, one at a time as the iterator goes ([`take_cache`]).
    /// Owner only.
    ///
    /// [`take_cache`]: ChunkCell::take_cache
    pub(crate) fn take_caches(&self) -> impl Iterator<Item = CacheTop> + '_ {
        (0..CACHE_CLASSES).map(|class| self.take_cache(class))
    }

    /// The cache is owner-only: the head a caller read is still the head.
    #[inline]
    fn debug_assert_top(&self, class: usize, top: CacheTop) {
        debug_assert_eq!(
            self.cache[class].load(Ordering::Relaxed),
            top.word(),
            "cache class {class} changed under its owner"
        );
    }

    /// The cell's counters: its owner counts its events there, `stats` and the coalescing pass
    /// read them.
    #[inline]
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The cell's check slot, read slots and deferred list (`heap::reads`).
    #[inline]
    pub(crate) fn reads(&self) -> &ReadSlots {
        &self.reads
    }
}

/// The last block of a cell's chunk, with the cursor after it free to move (from
/// [`ChunkCell::last_block`]). Consumed by the one move it makes.
pub(crate) struct LastBlock<'a> {
    cell: &'a ChunkCell,
    /// The block's header offset.
    hdr: u64,
    /// The chunk's end.
    end: u64,
}

impl LastBlock<'_> {
    /// The block's header offset.
    #[inline]
    pub(super) fn hdr(&self) -> u64 {
        self.hdr
    }

    /// The most bytes the block can span in place: up to the chunk's end.
    #[inline]
    pub(crate) fn room(&self) -> u64 {
        self.end - self.hdr
    }

    /// Rewind: the caller has cleared the block's start bit, zeroed its bytes, then stored 0 in
    /// its header (so everything from the block's start to `end` is zero: invariant Z). The cursor
    /// goes back to the block's start, which `last_rewind` records as the former start at the
    /// cursor, and the chunk's next blocks get `generation`, a fresh one: a handle to the rewound
    /// block never matches the block that reuses its offset.
    pub(super) fn rewind(self, generation: u64) {
        let c = self.cell;
        c.cur.store(self.hdr, Ordering::Relaxed);
        c.last_rewind.store(self.hdr, Ordering::Relaxed);
        c.generation.store(generation, Ordering::Relaxed);
        c.counters.on_rewind();
    }

    /// In-place resize: the block now spans `span` bytes (at most [`LastBlock::room`]); the
    /// caller has zeroed a cut-off tail and committed the new length in the header. The cursor
    /// goes to the block's new end.
    pub(super) fn resize(self, span: u64) {
        debug_assert!(
            span >= 16 && span <= self.room(),
            "resize to {span} bytes past the chunk"
        );
        self.cell.cur.store(self.hdr + span, Ordering::Relaxed);
    }
}

impl Default for ChunkCell {
    fn default() -> Self {
        ChunkCell {
            cur: AtomicU64::new(0),
            end: AtomicU64::new(0),
            start: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            abandoned: AtomicBool::new(false),
            gen_next: AtomicU64::new(0),
            gen_end: AtomicU64::new(0),
            cache: std::array::from_fn(|_| AtomicU64::new(0)),
            counters: Counters::default(),
            reads: ReadSlots::default(),
            last_rewind: AtomicU64::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_class_is_a_stack_of_its_owner() {
        let c = ChunkCell::default();
        let class = EXACT_CLASSES - 1;
        assert!(c.cache_top(class).is_empty());
        c.cache_pushed(class, c.cache_top(class), 4096);
        c.cache_pushed(class, c.cache_top(class), 8192);
        let top = c.cache_top(class);
        assert_eq!((top.first(), top.count()), (8192, 2));
        // The caller read 4096 from the popped block's FREE header.
        c.cache_popped(class, top, 4096);
        let top = c.cache_top(class);
        assert_eq!((top.first(), top.count()), (4096, 1));
        assert!(c.cache_top(0).is_empty(), "other classes untouched");
        let taken: Vec<u64> = c.take_caches().map(CacheTop::first).collect();
        assert_eq!(taken.len(), EXACT_CLASSES);
        assert_eq!(taken[class], 4096);
        assert!((0..EXACT_CLASSES).all(|k| c.cache_top(k).is_empty()));
    }

    #[test]
    fn an_abandoned_cell_is_adopted_once() {
        let c = ChunkCell::default();
        assert!(!c.try_adopt(), "a cell in use is not adoptable");
        c.abandon();
        assert!(c.try_adopt());
        assert!(!c.try_adopt(), "adopted twice");
    }

    #[test]
    fn the_generation_batch_hands_out_each_counter_value_once() {
        let mem = Backing::heap(1 << 16).unwrap();
        let (a, b) = (ChunkCell::default(), ChunkCell::default());
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..GEN_BATCH + 1 {
            assert!(seen.insert(a.batch_gen(&mem)));
            assert!(seen.insert(b.batch_gen(&mem)));
        }
        // Two batches each (the second one barely begun), taken from one counter.
        assert_eq!(block::fresh_gen_batch(&mem, 0), 4 * GEN_BATCH);
        let all: Vec<u32> = (0..4 * GEN_BATCH).map(block::gen_of_seed).collect();
        assert!(seen.iter().all(|g| all.contains(g)));
    }
}
