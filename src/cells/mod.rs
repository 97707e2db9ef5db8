//! Per-thread chunk cells and the thread-local that finds them: each thread keeps, per open arena
//! and lane, one [`ChunkCell`] (its current chunk, its cache of freed blocks, its counters); the
//! arena's [`CellRegistry`] (`registry`) holds every cell it handed out so that exclusive passes
//! reach them all; the thread-local slots are in `local`.
//! How chunks are reserved and bumped is in `heap::chunks`.
//!
//! ## Allocator paths (invariant A)
//!
//! The steps here that hold something exclusive (this thread's slot list) or walk the registry run
//! under a [`Step`](crate::reentry::Step); the invariant and the guard are in `reentry`.
//!
//! ## The chunk cursor (invariant C)
//!
//! A cell's cursor `cur` is where its thread bumps next. It moves in five ways, and each is one
//! method here; the cursor's fields are private to this module, so nothing else writes them:
//!
//! | move | method | called by |
//! | --- | --- | --- |
//! | take a chunk | [`ChunkCell::take_chunk`] | the allocation slow path |
//! | bump (a block, or a pad and a block) | [`ChunkCell::bumped`] | the fast path, `Inner::bump_in_cell` |
//! | rewind over the last block | [`LastBlock::rewind`] | `Inner::release` (a free) |
//! | in-place resize of the last block | [`LastBlock::resize`] | `Arena::resize_in_place` (`Allocator::grow`/`shrink`, `GlobalArena::realloc`) |
//! | retire the chunk | [`ChunkCell::retire`] | `Inner::return_chunk` |
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
//! before the cursor moves (invariant Z, `heap/chunks.rs`), so a walk reads it as an unused chunk tail.
//!
//! ## Orderings
//!
//! | word | op | ordering | why |
//! | --- | --- | --- | --- |
//! | cell `cur`/`end`/`start`/`last_rewind`/`generation` | load/store | Relaxed | one writer; exclusive passes see them through the `Arc` drop / `&mut` hand-over |
//! | cell `abandoned` | store / CAS | Release / Acquire | hands a cell (and its chunk state) from a departing thread to the next owner |

use crate::freelist::EXACT_CLASSES;
use crate::sync::{Arc, AtomicBool, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

mod local;
mod registry;

pub use local::LANES;
pub(crate) use local::{for_each_thread_cell, with_cell};
pub(crate) use registry::CellRegistry;

/// Size classes with a per-thread cache: the exact classes (`freelist::exact_class`).
const CACHE_CLASSES: usize = EXACT_CLASSES;
/// Most blocks one class of one thread's cache keeps; more go to the shared free lists.
pub(crate) const CACHE_DEPTH: u64 = 64;
const CACHE_OFF_MASK: u64 = (1 << 48) - 1;

/// A cache head word: the first cached block's header offset and how many are cached.
#[inline]
pub(crate) const fn cache_head(off: u64, count: u64) -> u64 {
    (count << 48) | off
}

/// `(offset, count)` of a cache head word.
#[inline]
pub(crate) const fn cache_parts(w: u64) -> (u64, u64) {
    (w & CACHE_OFF_MASK, w >> 48)
}

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
    /// Set when no thread owns the cell; a thread that needs a cell may adopt it.
    pub abandoned: AtomicBool,
    /// A batch of the arena's generation counter this thread hands out alone (for blocks taken
    /// from its cache): the next value and the end of the batch. Owner-only, `Relaxed`.
    pub gen_next: AtomicU64,
    pub gen_end: AtomicU64,
    /// Per exact size class: a stack of blocks this thread freed, linked through their FREE
    /// headers (`block::free`, `next`) and kept off the shared lists, so a thread that frees and
    /// allocates the same sizes touches no shared atomic. Each is a walkable FREE segment, so a
    /// crash leaves them as free space for recovery. Owner-only, `Relaxed` like `cur`.
    pub cache: [AtomicU64; CACHE_CLASSES],
    pub counters: Counters,
    /// The header position a handle check of this thread is reading (0: none), so a coalescing
    /// pass leaves it a header position until the check is done (docs/metadata.md, section 4).
    /// Swapped in and loaded with `SeqCst`; cleared with `Release`.
    pub check: AtomicU64,
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
    pub(crate) fn bumped(&self, to: u64) {
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
    pub(crate) fn take_chunk(&self, start: u64, end: u64, generation: u64) {
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
    pub(crate) fn retire(&self) -> Option<(u64, u64)> {
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
    pub(crate) fn rewind(self, generation: u64) {
        let c = self.cell;
        c.cur.store(self.hdr, Ordering::Relaxed);
        c.last_rewind.store(self.hdr, Ordering::Relaxed);
        c.generation.store(generation, Ordering::Relaxed);
    }

    /// In-place resize: the block now spans `span` bytes (at most [`LastBlock::room`]); the
    /// caller has zeroed a cut-off tail and committed the new length in the header. The cursor
    /// goes to the block's new end.
    pub(crate) fn resize(self, span: u64) {
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
            check: AtomicU64::new(0),
            last_rewind: AtomicU64::new(0),
        }
    }
}

/// Per-thread counters, summed by `Arena::stats`. Each is written by one thread at a time with a
/// `Relaxed` load and store (no read-modify-write on the hot path).
#[derive(Default)]
pub(crate) struct Counters {
    pub allocs: AtomicU64,
    pub alloc_bytes: AtomicU64,
    pub from_freelist: AtomicU64,
    pub from_cache: AtomicU64,
    pub frees: AtomicU64,
    pub free_bytes: AtomicU64,
    pub failures: AtomicU64,
    pub rewinds: AtomicU64,
    /// Free segments this thread's coalescing passes merged into a neighbour.
    pub coalesced: AtomicU64,
}

/// Adds `n` to a counter only its owner thread writes.
#[inline]
pub(crate) fn bump_counter(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

pub(crate) type Cell = Arc<CachePadded<ChunkCell>>;
