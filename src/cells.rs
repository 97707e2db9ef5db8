//! Per-thread chunk cells and the thread-local that finds them: each thread keeps, per open arena
//! and lane, one [`ChunkCell`] (its current chunk, its cache of freed blocks, its counters); the
//! arena's [`CellRegistry`] holds every cell it handed out so that exclusive passes reach them all.
//! How chunks are reserved and bumped is in `bump`.
//!
//! ## Allocator paths (invariant A)
//!
//! The steps here that hold something exclusive (this thread's slot list) or walk the registry run
//! under a [`Step`]; the invariant and the guard are in `reentry`.
//!
//! ## The chunk cursor (invariant C)
//!
//! A cell's cursor `cur` is where its thread bumps next. It moves in five ways, and each is one
//! method here; the cursor's fields are private to this module, so nothing else writes them:
//!
//! | move | method | called by |
//! | --- | --- | --- |
//! | take a chunk | [`ChunkCell::take_chunk`] | the allocation slow path |
//! | bump (a block, or a pad and a block) | [`ChunkCell::bumped`] | the fast path, `Chunks::bump_in_cell` |
//! | rewind over the last block | [`LastBlock::rewind`] | `Inner::release` (a free) |
//! | in-place resize of the last block | [`LastBlock::resize`] | `Arena::resize_in_place` (`Allocator::grow`/`shrink`, `GlobalArena::realloc`) |
//! | retire the chunk | [`ChunkCell::retire`] | `Chunks::return_chunk` |
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
//! | word | op | ordering | why |
//! | --- | --- | --- | --- |
//! | cell `cur`/`end`/`start`/`last_rewind`/`generation` | load/store | Relaxed | one writer; exclusive passes see them through the `Arc` drop / `&mut` hand-over |
//! | cell `abandoned` | store / CAS | Release / Acquire | hands a cell (and its chunk state) from a departing thread to the next owner |

use crate::freelist::EXACT_CLASSES;
use crate::reentry::{audit_exempt, Step};
use crate::sync::{Arc, AtomicBool, AtomicPtr, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;
use std::cell::RefCell;
use std::ptr::NonNull;

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

/// The cells an arena has handed out, so that close and `compact` can reach every chunk.
///
/// A lock-free list, newest first: a cell is pushed once (a CAS on `head`) and stays until the
/// registry is dropped, so a walk needs no lock and sees every cell pushed before it started. No
/// lock means nothing a thread can hold while it is stopped forever: a child of `fork()` (which
/// has none of its parent's other threads) registers, walks and adopts cells as usual
/// (`crate::fork`).
#[derive(Default)]
pub(crate) struct CellRegistry {
    /// The newest node, or null. Each node is a `Box` leaked by `acquire` and freed by `drop`.
    head: AtomicPtr<Node>,
}

/// One registered cell and the node pushed before it; both fixed once the node is published.
struct Node {
    cell: Cell,
    next: *mut Node,
}

impl CellRegistry {
    /// A cell for the calling thread: an abandoned one if there is one, else a new one.
    #[cold]
    #[inline(never)]
    fn acquire(&self) -> Cell {
        let _step = Step::enter();
        for c in self.iter() {
            // Acquire: pairs with the Release store in `abandon`, so the previous owner's stores to
            // the cell are visible to the new owner.
            if c.abandoned
                .compare_exchange(true, false, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return c.clone();
            }
        }
        let c: Cell = Arc::new(CachePadded::new(ChunkCell::default()));
        let node = Box::into_raw(Box::new(Node {
            cell: c.clone(),
            next: std::ptr::null_mut(),
        }));
        // Relaxed: the CAS below publishes the node.
        let mut next = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: `node` came from `Box::into_raw` above and is not published yet: this thread
            // is its only user.
            unsafe { (*node).next = next };
            // Release: publishes the node's fields; pairs with the Acquire load in `iter`.
            match self
                .head
                .compare_exchange_weak(next, node, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return c,
                Err(now) => next = now,
            }
        }
    }

    /// The registered cells, newest first.
    fn iter(&self) -> impl Iterator<Item = &Cell> + '_ {
        // Acquire: pairs with the Release CAS that published the newest node; older nodes were
        // published before it.
        let mut at = self.head.load(Ordering::Acquire);
        std::iter::from_fn(move || {
            // SAFETY: a non-null `at` is a published node (the head, or a published node's
            // `next`): its fields are fixed and visible (see above), and nodes are freed only
            // by `drop`, which `&self` rules out while this iterator lives.
            let node = unsafe { at.as_ref() }?;
            at = node.next;
            Some(&node.cell)
        })
    }

    /// Every cell, for exclusive passes and stats.
    pub(crate) fn all(&self) -> Vec<Cell> {
        let _step = Step::enter();
        self.iter().cloned().collect()
    }

    /// Folds `f` over every cell, without copying the list.
    pub(crate) fn fold<T>(&self, init: T, f: impl FnMut(T, &Cell) -> T) -> T {
        let _step = Step::enter();
        self.iter().fold(init, f)
    }
}

impl Drop for CellRegistry {
    fn drop(&mut self) {
        // Acquire: as in `iter` (`&mut self` already orders it; loom's atomics have no `get_mut`).
        let mut at = self.head.load(Ordering::Acquire);
        while !at.is_null() {
            // SAFETY: every node came from `Box::into_raw` in `acquire` and is in the list once;
            // `&mut self` means no walk is running, and the node is freed here only.
            let node = unsafe { Box::from_raw(at) };
            at = node.next;
        }
    }
}

// SAFETY: the raw pointers are the list's own nodes (see `CellRegistry`), each holding an
// `Arc<CachePadded<ChunkCell>>`, which is `Send + Sync`; the list is changed only by CAS.
unsafe impl Send for Node {}
// SAFETY: as above: a node is read-only once published.
unsafe impl Sync for Node {}

fn abandon(c: &Cell) {
    // Release: publishes this thread's last stores to the cell to whoever adopts it (Acquire CAS in
    // `CellRegistry::acquire`).
    c.abandoned.store(true, Ordering::Release);
}

/// Slots per thread: a thread that uses more arenas at once than this hands cells back and forth.
const SLOTS: usize = 8;

/// Allocation lanes per thread and arena (see [`crate::Arena::with_lane`]): each lane has its own
/// chunk cell, so the blocks a thread allocates in one lane sit next to each other whatever it
/// allocates in the others.
pub const LANES: usize = 4;

struct Slot {
    arena: u64,
    /// This thread's cell for each lane, taken on the lane's first use.
    cells: [Option<Cell>; LANES],
}

impl Slot {
    fn abandon(&mut self) {
        for c in self.cells.iter_mut().filter_map(Option::take) {
            abandon(&c);
        }
    }
}

struct ThreadCells {
    slots: RefCell<Vec<Slot>>,
}

impl Drop for ThreadCells {
    fn drop(&mut self) {
        // The fast path must not hand out cells this thread is giving up.
        // (Under loom the thread-locals are destroyed in any order; a `FAST` already gone needs no
        // clearing.)
        let _ = FAST.try_with(Fast::clear);
        for mut s in self.slots.get_mut().drain(..) {
            s.abandon();
        }
    }
}

crate::sync::parena_thread_local! {
    static CELLS: ThreadCells = ThreadCells { slots: RefCell::new(Vec::new()) };
}

/// The cells of the calling thread's first slot, for the fast path: one thread-local load and a
/// compare, where `CELLS` needs a lazy-initialisation check, a `RefCell` borrow and a `Vec` index.
///
/// Invariant F: `arena` is 0 (no arena has uid 0) or equals `slots[0].arena` of this thread's
/// `CELLS`, and then `cells[l]` points to the cell in `slots[0].cells[l]` (null when `None`).
/// Everything that changes `slots[0]` (`with_cell_slow`, the drop of `CELLS`) restores it.
struct Fast {
    arena: std::cell::Cell<u64>,
    cells: [std::cell::Cell<*const ChunkCell>; LANES],
}

impl Fast {
    fn clear(&self) {
        self.arena.set(0);
        for c in &self.cells {
            c.set(std::ptr::null());
        }
    }

    /// Points at the cells of `slot`, which becomes this thread's first slot.
    fn set(&self, slot: &Slot) {
        self.arena.set(slot.arena);
        for (f, c) in self.cells.iter().zip(&slot.cells) {
            f.set(
                c.as_ref()
                    .map_or(std::ptr::null(), |c| &***c as *const ChunkCell),
            );
        }
    }
}

// No destructor, so it stays usable while other thread-locals (`CELLS` included) are destroyed.
crate::sync::parena_thread_local! {
    static FAST: Fast = const {
        Fast {
            arena: std::cell::Cell::new(0),
            cells: [const { std::cell::Cell::new(std::ptr::null()) }; LANES],
        }
    };
}

/// Runs `f` with the calling thread's cell for lane `lane` (`< LANES`) of the arena whose
/// process-unique id is `arena`.
///
/// `f` must not call `with_cell` again: the cell is this thread's only while no slot changes.
#[inline]
pub(crate) fn with_cell<R>(
    arena: u64,
    lane: usize,
    registry: &CellRegistry,
    f: impl FnOnce(&ChunkCell) -> R,
) -> R {
    // The thread-local lookup only finds the cell; `f` runs after it. Running `f` inside
    // `try_with` returned `R` through `Result<Option<R>, _>`, and the compiler copied it through
    // the stack with overlapping loads that defeat store forwarding: ~40 ns per allocation
    // (issue 7; see docs/performance.md).
    let hit = FAST
        .try_with(|fast| {
            if fast.arena.get() == arena {
                NonNull::new(fast.cells[lane].get().cast_mut())
            } else {
                None
            }
        })
        .ok()
        .flatten();
    match hit {
        Some(cell) => {
            // SAFETY: by invariant F the pointer is the cell in this thread's first slot for
            // `arena`, taken from a live `Arc<ChunkCell>`. `registry` (borrowed for this whole
            // call) holds an `Arc` of every cell it ever handed out and never drops one, and this
            // slot's cell came from `registry` (slots are keyed by the arena's never-reused uid),
            // so the cell outlives `f`. Only shared references to it exist (its fields are
            // atomics), and this thread owns it: it is abandoned only by this thread, in
            // `with_cell_slow` or at thread exit, neither of which can run during `f`.
            f(unsafe { cell.as_ref() })
        }
        None => with_cell_slow(arena, lane, registry, f),
    }
}

#[cold]
#[inline(never)]
fn with_cell_slow<R>(
    arena: u64,
    lane: usize,
    registry: &CellRegistry,
    f: impl FnOnce(&ChunkCell) -> R,
) -> R {
    let step = Step::enter();
    let cell = CELLS.try_with(|t| {
        // The registration of a new cell (slot list growth, `CellRegistry::acquire`) is the one
        // allocation invariant A allows.
        audit_exempt!();
        // Borrowed already only if this thread re-entered parena from inside a walk of its slots
        // (`for_each_thread_cell`): treated like a thread whose thread-locals are gone, below.
        let mut slots = t.slots.try_borrow_mut().ok()?;
        match slots.iter().position(|s| s.arena == arena) {
            Some(i) => {
                let s = slots.remove(i);
                slots.insert(0, s);
            }
            None => {
                if slots.len() == SLOTS {
                    if let Some(mut old) = slots.pop() {
                        // Never the first slot (SLOTS > 1), so invariant F still holds.
                        old.abandon();
                    }
                }
                slots.insert(
                    0,
                    Slot {
                        arena,
                        cells: Default::default(),
                    },
                );
            }
        }
        let c = slots[0].cells[lane]
            .get_or_insert_with(|| registry.acquire())
            .clone();
        // Invariant F: the first slot changed.
        // (If `FAST` is gone, which only loom's thread-locals allow, the fast path is never
        // taken again on this thread.)
        let _ = FAST.try_with(|fast| fast.set(&slots[0]));
        Some(c)
    });
    drop(step);
    match cell {
        Ok(Some(c)) => f(&c),
        // The thread is exiting and its thread-locals are gone (or its slot list is borrowed by a
        // walk this call re-entered): borrow a cell for this one call.
        Ok(None) | Err(_) => {
            let c = {
                audit_exempt!();
                registry.acquire()
            };
            let r = f(&c);
            abandon(&c);
            r
        }
    }
}

/// Runs `f` on each cell the calling thread holds in the arena `arena` (one per lane it used).
///
/// `f` runs while the thread's slot list is borrowed, under a [`Step`]: it must not call
/// `with_cell` (a re-entrant allocation through `GlobalArena` is sent to the system allocator).
pub(crate) fn for_each_thread_cell(arena: u64, mut f: impl FnMut(&ChunkCell)) {
    let _step = Step::enter();
    let _ = CELLS.try_with(|t| {
        // `try_borrow`: a walk that re-enters itself finds the list borrowed and skips it.
        if let Ok(slots) = t.slots.try_borrow() {
            for c in slots
                .iter()
                .filter(|s| s.arena == arena)
                .flat_map(|s| s.cells.iter().flatten())
            {
                f(c);
            }
        }
    });
}
