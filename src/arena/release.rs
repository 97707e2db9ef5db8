//! Release of freed blocks: rewind of the thread's own chunk, the per-thread cache (the local
//! free) and the shared free lists.

use super::Inner;
use crate::block;
use crate::error::Error;
use crate::format::Freelist;
use crate::freelist::{exact_class, Unlisted};
use crate::heap::{ChunkCell, Start};
use crate::layout::{block_span, WORD};
use crate::sync::{fence, Ordering};

/// The smallest span whose free gives its whole pages back to the kernel (anonymous maps only,
/// `Backing::discard`): the size from which a system allocator maps blocks of their own (glibc's
/// default threshold), below which the call and the page faults of the next use cost more than
/// the memory is worth.
pub(crate) const DISCARD_MIN: u64 = 128 << 10;

impl Inner {
    /// Hands every block in the cell's cache to the shared free lists.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when a cached block's header is not FREE (a damaged heap): the rest of
    /// that class's cache is left off the lists (leaked until a repair), the other classes are
    /// drained. Never panics (invariant A, `reentry.rs`).
    pub(super) fn drain_cache(&self, cell: &ChunkCell) -> Result<(), Error> {
        let mut result = Ok(());
        for top in cell.take_caches() {
            let mut off = top.first();
            while off != 0 {
                match self.cached_block(off) {
                    Ok((generation, next, span)) => {
                        self.lists.push(&self.mem, off, span, generation);
                        off = next;
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        result
    }

    /// Whether a cached block of `span` bytes at header offset `off` can lie in the heap (checked
    /// before its words are read, so a damaged cache link is an error, not a bounds panic).
    pub(super) fn cached_in_heap(&self, off: u64, span: u64) -> bool {
        off % WORD == 0
            && off >= self.geom.data_start
            && off.checked_add(span).is_some_and(|e| e <= self.heap_end())
    }

    /// Retires every thread's chunk. Needs exclusive access (no clone in use).
    pub(super) fn return_all_chunks(&mut self) {
        self.release_all_deferred();
        for c in self.cells.all() {
            // A damaged cache leaks its blocks until the next repair; the pass goes on.
            let _ = self.drain_cache(&c);
            self.return_chunk(&c);
        }
    }

    /// Releases every cell's deferred blocks (freed while a read held them). Needs exclusive
    /// access: no read can be running.
    pub(super) fn release_all_deferred(&mut self) {
        for c in self.cells.all() {
            self.release_deferred(&c, true);
        }
    }

    /// Gives up the cell's chunk: its unused tail goes back (listed, or a gap). (Not the async
    /// layer's retiring of a registry entry.)
    pub(super) fn return_chunk(&self, cell: &ChunkCell) {
        if let Some((cur, end)) = self.heap().retire(cell) {
            self.give_back_zeroed(cur, end - cur);
        }
    }

    /// Gives back `off..off + len`, which is zero and ends at a chunk boundary (or the heap's end):
    /// listed when worth it, otherwise left as a gap that walks skip.
    pub(super) fn give_back_zeroed(&self, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        let unlisted = self
            .lists
            .give_back(&self.mem, &self.geom, off, len, Unlisted::Gap);
        self.add_discarded(unlisted);
    }

    /// Gives back a block the caller has moved to DYING with no readers: rewinds the cell's bump
    /// when it is the last block of the cell's chunk, else lists it. `behind`: its header carried
    /// the [`block::FILLER_BEHIND`] hint, so the fillers behind it are worth a look.
    pub(super) fn release(
        &self,
        cell: &ChunkCell,
        hdr: u64,
        len: u64,
        generation: u32,
        behind: bool,
    ) {
        let Some(span) = block_span(len) else {
            // `check_live` vetted `len` before the block became DYING: not reached. Leaking the
            // block is the answer that cannot panic on an allocator path (invariant A).
            return;
        };
        // Release fence: the header stores below (FREE, a rewind's 0, a list push) are plain
        // stores after the DYING CAS, so they head no release sequence of their own. With the
        // fence, a thread whose Acquire load of this header sees the block gone (`read`, `len_of`
        // refusing the handle) also sees everything that happened before the free, such as the
        // user's swap that retired the handle. Pairs with the Acquire header loads in `read`,
        // `len_of`, `contains`, `get` and `free`.
        fence(Ordering::Release);
        // A LARGE block's length field is its capacity; the byte counters count its exact
        // length, which its tail word keeps (the block is DYING and ours: nothing else reads it).
        let bytes = if len >= block::LARGE_MIN {
            let t = block::tail_word(&self.mem, hdr, len);
            block::large_len(t, generation, len).unwrap_or(len)
        } else {
            len
        };
        cell.counters().on_free(bytes);
        // The cursor may move back over the block only through the gate of invariant C
        // (`heap/cell.rs`): never two rewinds in a row.
        if let Some(last) = cell.last_block(hdr, span) {
            // The block ends where this thread's chunk is bumped to: the entry goes away (its
            // start bit, its bytes, its header) and the bump moves back, keeping invariant Z,
            // with a fresh generation for the chunk's next blocks (`Heap::rewind`).
            // SAFETY: the block is DYING with no readers, the last of this thread's own chunk
            // (the gate of invariant C): ours alone.
            unsafe { self.heap().rewind(last, span) };
            return;
        }
        if self.zero_on_free {
            if len >= block::LARGE_MIN && !self.preallocate {
                // A sparse file's LARGE block keeps its data pages a hole until they are written
                // (docs/metadata.md, 12.2, "Sparse arenas"): only what was written is zeroed, so
                // a full disk is never written into.
                // SAFETY: as above.
                unsafe { self.mem.zero_data(hdr + WORD, span - WORD) };
            } else {
                // SAFETY: as above.
                unsafe { self.mem.zero(hdr + WORD, span - WORD) };
            }
        }
        if span >= DISCARD_MIN {
            // A large block's pages go back to the kernel before the block is listed (after,
            // another thread could carve it and lose its bytes to the discard): an anonymous
            // map's resident memory follows the live data, as a system allocator's does when it
            // unmaps a large block. The header and span word stay (their page is kept); a carve
            // zeroes what it takes, so reading zero pages there changes nothing.
            // SAFETY: as above: DYING, no readers, not listed: ours alone.
            unsafe { self.mem.discard(hdr + 2 * WORD, span - 2 * WORD) };
        }
        let free_gen = block::next_gen(generation);
        // The fillers behind the block come back with it (a carve leaves a small remainder as
        // one: `take.rs`, `SLACK`), so a freed block is whole again.
        let span = if behind && self.absorb_fillers && span < DISCARD_MIN {
            self.lists
                .absorb_fillers(&self.mem, (hdr, span, free_gen), self.bump(), |p| {
                    self.slot_holds(p)
                })
        } else {
            span
        };
        if let Some(class) = exact_class(span).filter(|_| self.thread_cache) {
            let mut top = cell.cache_top(class);
            if !top.has_room() {
                top = self.spill_cache(cell, class);
            }
            // A walk sees a whole free segment; the block's start is kept.
            self.heap()
                .entries()
                .add_free(hdr, span, free_gen, top.first(), Start::Kept);
            cell.cache_pushed(class, top, hdr);
            return;
        }
        match self.geom.freelist {
            Freelist::None => {
                self.heap()
                    .entries()
                    .add_free(hdr, span, free_gen, 0, Start::Kept);
                self.add_discarded(span);
            }
            _ => self.lists.push(&self.mem, hdr, span, free_gen),
        }
    }
}
