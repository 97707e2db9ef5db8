//! Chunk reservation: one global bump offset that hands out whole chunks, which threads then bump
//! privately through their chunk cells (`heap::cell`); large blocks; giving a chunk's tail back.
//!
//! ## Algorithm
//!
//! The heap `data_start..heap_end` is cut into chunks of `2^chunk_shift` bytes at fixed
//! boundaries (`data_start + k * chunk`). The file header's `bump` word is always a chunk boundary
//! or `heap_end`; it only grows while the arena is shared (a CAS reserves whole chunks), and it is only lowered by
//! exclusive passes (`compact`, recovery).
//!
//! A thread that allocates a small block takes a chunk with one CAS on `bump` and then bumps inside
//! it with no atomic read-modify-write at all: a [`ChunkCell`] (`cur`, `end`) belongs to exactly one
//! thread at a time, which stores to it with `Relaxed` stores so that an exclusive pass (close,
//! `compact`) can read it after the threads' `Arena` clones are gone. Large blocks take whole
//! chunks straight from `bump`.
//!
//! Invariant Z: in every chunk a cell owns, `cur..end` is all zeros. A fresh chunk is zero (the
//! heap at or past `high_water` was never written, and older memory is zeroed when it is taken);
//! the owner writes only below `cur`; a rewind zeroes what it gives back. So the fast path never
//! zeroes, and a zero header word always means "nothing allocated from here to the next chunk
//! boundary", which is how a heap walk steps over the unused tail of a chunk, including the tail of a
//! chunk whose thread died in a crash.
//!
//! ## Orderings
//!
//! | word | op | ordering | why |
//! | --- | --- | --- | --- |
//! | `bump` | CAS | Relaxed | disjointness comes from the RMW order alone; no data is published |
//! | cell cursor (`heap::cell`, invariant C) | load/store | Relaxed | one writer; exclusive passes see it through the `Arc` drop / `&mut` hand-over |

use crate::backing::Backing;
use crate::block::{self, LiveState};
use crate::format::{Geometry, OFF_BUMP, OFF_HIGH_WATER};
use crate::freelist::{add_discarded, FreeLists, Unlisted};
use crate::heap::ChunkCell;
use crate::heap::{MapGeom, StartMap};
use crate::layout::{align_up, WORD};
use crate::sync::Ordering;

/// The arena's heap as chunk reservation sees it: the memory, its geometry and end, and the
/// free lists tails go back to. Borrowed from the arena's core for one call.
#[derive(Clone, Copy)]
pub(crate) struct Chunks<'a> {
    pub mem: &'a Backing,
    pub geom: &'a Geometry,
    /// End of the heap (the start map's first byte): every chunk lies below it. Fixed while open.
    pub heap_end: u64,
    /// The start map, whose owner words a chunk's owner toggles.
    pub maps: &'a MapGeom,
    pub lists: &'a FreeLists,
}

impl<'a> Chunks<'a> {
    /// The arena's start map.
    #[inline]
    fn start_map(&self) -> StartMap<'a> {
        StartMap::new(self.mem, self.maps)
    }

    /// Bumps inside the cell's chunk with any alignment; `None` when it does not fit.
    pub(crate) fn bump_in_cell(
        &self,
        cell: &ChunkCell,
        len: u64,
        span: u64,
        align: u64,
    ) -> Option<(u64, u32)> {
        let (cur, end) = cell.cursor();
        if cur == 0 {
            return None;
        }
        let hdr = align_up(cur + WORD, align)? - WORD;
        if hdr.checked_add(span)? > end {
            return None;
        }
        if hdr > cur {
            self.mem
                .word(cur)
                .store(block::pad(hdr - cur), Ordering::Relaxed);
            self.start_map().owner_toggle(cur);
            add_discarded(self.mem, hdr - cur);
        }
        let generation = cell.generation();
        // The start bit before the header (docs/metadata.md): a header is never LIVE without it.
        self.start_map().owner_toggle(hdr);
        self.mem.word(hdr).store(
            block::live(len, generation, LiveState::Pending, 0),
            Ordering::Relaxed,
        );
        cell.bumped(hdr + span);
        Some((hdr, generation))
    }

    /// Reserves whole chunks covering `want` bytes from the global bump offset, zeroing any part
    /// that was written before; the last chunk of the heap may be shorter, as long as it holds
    /// `need` bytes. `None` when the main memory cannot hold them.
    ///
    /// Chunks start on the fixed grid `data_start + k * chunk`: the heap walk steps over an unused
    /// tail to the next grid line. The bump offset is off the grid only when the capacity was
    /// grown from a value that was not on it; the bytes from there to the next line stay a gap.
    pub(crate) fn reserve(&self, need: u64, want: u64) -> Option<(u64, u64)> {
        let chunk = self.geom.chunk();
        let n = align_up(want, chunk)?;
        let bump = self.mem.word(OFF_BUMP);
        let mut cur = bump.load(Ordering::Relaxed);
        let (start, end) = loop {
            let start = self.geom.chunk_line_from(cur)?;
            if start >= self.heap_end {
                return None;
            }
            let end = start.checked_add(n)?.min(self.heap_end);
            if end - start < need {
                return None;
            }
            // Relaxed: the RMW order on `bump` alone makes reservations disjoint; see module docs.
            match bump.compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) if self.start_map().first_start_in(start, end).is_some() => {
                    // No entry starts past the bump offset unless the bump word is damaged (or
                    // was tampered with) and lies below blocks: those chunks are left as they
                    // are, blocks and all, and the reservation goes on above them.
                    cur = end;
                }
                Ok(_) => break (start, end),
                Err(now) => cur = now,
            }
        };
        let hw = self.mem.word(OFF_HIGH_WATER).load(Ordering::Relaxed);
        if cur < hw {
            let z_end = end.min(hw);
            // Chunk starts first (and the gap before the first one): if we crash part-way, every
            // chunk of the range reads as unused.
            self.mem.word(cur).store(0, Ordering::Relaxed);
            let mut c = start;
            while c < z_end {
                self.mem.word(c).store(0, Ordering::Relaxed);
                c += chunk;
            }
            // SAFETY: `cur..end` was reserved by our CAS: no other thread touches it.
            unsafe { self.mem.zero(cur, z_end - cur) };
        }
        Some((start, end))
    }

    /// A block larger than a quarter chunk: whole chunks straight from the bump offset.
    pub(crate) fn alloc_large(&self, len: u64, span: u64, align: u64) -> Option<(u64, u32)> {
        let slack = if align > WORD { align } else { 0 };
        let (start, end) = self.reserve(span + slack, span + slack)?;
        let hdr = align_up(start + WORD, align)? - WORD;
        if hdr > start {
            self.mem
                .word(start)
                .store(block::pad(hdr - start), Ordering::Relaxed);
            self.start_map().owner_toggle(start);
            add_discarded(self.mem, hdr - start);
        }
        let generation = block::fresh_gen(self.mem);
        // The chunks are ours alone since the reservation: their owner-map words too.
        self.start_map().owner_toggle(hdr);
        self.mem.word(hdr).store(
            block::live(len, generation, LiveState::Pending, 0),
            Ordering::Relaxed,
        );
        let tail = hdr + span;
        self.give_back_zeroed(tail, end - tail);
        Some((hdr, generation))
    }

    /// Gives back `off..off + len`, which is zero and ends at a chunk boundary (or the heap's end):
    /// listed when worth it, otherwise left as a gap that walks skip.
    pub(crate) fn give_back_zeroed(&self, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        let unlisted = self
            .lists
            .give_back(self.mem, self.geom, off, len, Unlisted::Gap);
        add_discarded(self.mem, unlisted);
    }

    /// Gives up the cell's chunk: its unused tail goes back (listed, or a gap). (Not the async
    /// layer's retiring of a registry entry.)
    pub(crate) fn return_chunk(&self, cell: &ChunkCell) {
        if let Some((cur, end)) = cell.retire() {
            self.give_back_zeroed(cur, end - cur);
        }
    }
}
