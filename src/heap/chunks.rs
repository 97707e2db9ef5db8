//! Chunks and the entries bumped in them: one global bump offset that hands out whole chunks,
//! which threads then bump privately through their chunk cells (`heap::cell`); large blocks; a chunk's
//! last block rewound or resized in place.
//!
//! ## Algorithm
//!
//! The heap `data_start..heap_end` is cut into chunks of `2^chunk_shift` bytes at fixed
//! boundaries (`data_start + k * chunk`). The file header's `bump` word is always a chunk boundary
//! or `heap_end`; it only grows while the arena is shared (a CAS reserves whole chunks), and it is
//! only lowered by exclusive passes (`compact`, recovery).
//!
//! A thread that allocates a small block takes a chunk with one CAS on `bump` and then bumps inside
//! it with no atomic read-modify-write at all: a chunk cell (`cur`, `end`) belongs to exactly one
//! thread at a time, which stores to it with `Relaxed` stores so that an exclusive pass (close,
//! `compact`) can read it after the threads' `Arena` clones are gone. Large blocks take whole
//! chunks straight from `bump`. The verbs here write the entries; the cell's cursor moves after
//! them, through the cell's own methods (invariant C, `heap::cell`), called only from here.
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
//! | block header, owner-map word | load/store | Relaxed | one writer (the chunk's owner); published by the Release of the block's publish |
//! | block header (resize) | CAS | Release | the bytes written under the old length happen before a reader that sees the new one |

use super::cell::{ChunkCell, LastBlock};
use super::disk::Writes;
use super::entry::{add_discarded, Entries};
use super::mapgeom::MapGeom;
use super::startmap::StartMap;
use crate::backing::Backing;
use crate::block::{self, BlockHeader, HeaderWord, LiveState};
use crate::error::Error;
use crate::format::{Geometry, OFF_BUMP, OFF_HIGH_WATER};
use crate::layout::{align_up, WORD};
use crate::sync::{AtomicU64, Ordering};

/// The arena's heap: the memory, its geometry and end, and the start map. Borrowed from the
/// arena's core for one call; its verbs are the only writers of block-header words and start-map
/// bits while the arena is shared (docs/design.md, "The heap layer").
#[derive(Clone, Copy)]
pub(crate) struct Heap<'a> {
    pub mem: &'a Backing,
    pub geom: &'a Geometry,
    /// End of the heap: every chunk lies below it. Fixed while open in a fixed layout; a growable
    /// arena's growth step raises it (`Release`) after the new range is usable and its map words
    /// are zero. Borrowed, not copied: only the chunk reservation loads it (`Acquire`), so building
    /// a `Heap` on the allocation fast path costs no load.
    pub heap_end: &'a AtomicU64,
    /// The start map, whose owner words a chunk's owner toggles.
    pub maps: &'a MapGeom,
    /// A sparse file arena (`Options::preallocate(false)`): the chunk reservation reserves the
    /// disk under what it hands out ([`Heap::reserve`]), and a carve from the free lists under
    /// what it writes (`heap/disk.rs`).
    pub sparse: bool,
}

/// A LARGE block started: its header's offset and word, and the unused tail `(off, len)` of its
/// chunks ([`Heap::start_large`]).
pub(crate) type LargeStart = (u64, u64, (u64, u64));

/// The header of a LARGE block aligned to `align` in chunks starting at `start`.
pub(super) fn large_header(start: u64, align: u64) -> Option<u64> {
    Some(align_up(start + WORD, align)? - WORD)
}

impl<'a> Heap<'a> {
    /// The arena's start map.
    #[inline]
    pub(super) fn start_map(&self) -> StartMap<'a> {
        StartMap::new(self.mem, self.maps)
    }

    /// The entry verbs over this heap and its start map.
    #[inline]
    pub(crate) fn entries(&self) -> Entries<'a> {
        Entries::new(self.mem, Some(self.maps))
    }

    /// The allocation fast path's bump: a LIVE, PENDING entry of `len` bytes (a small block, never
    /// LARGE) with `generation` at `hdr`, the cursor of the caller's chunk. The start bit first
    /// (the chunk's owner-map word is the caller's alone), then the header: a header is never LIVE
    /// without its bit. By invariant Z the block's bytes are zero already. Returns the header
    /// word. The caller then moves its cursor past the block.
    ///
    /// # Safety
    /// `hdr` is the cursor of a chunk the caller owns, 8-aligned, and the block fits in the chunk
    /// (`hdr + 8 <= hdr + span <= end <= heap_end`), so its header and owner-map words lie inside
    /// the backing.
    #[inline(always)]
    unsafe fn start_live_unchecked(&self, hdr: u64, len: u64, generation: u32) -> u64 {
        // SAFETY: `hdr < end <= heap_end = maps.base` (contract).
        unsafe { self.start_map().owner_toggle_unchecked(hdr) };
        // SAFETY: `hdr` is 8-aligned and `hdr + 8 <= heap_end`, inside the backing (contract).
        let w = unsafe { self.mem.word_unchecked(hdr) };
        // A chunk holds at most 1 MiB, so a block bumped in one is never LARGE.
        let word = block::live_small(len, generation, LiveState::Pending, 0);
        w.store(word, Ordering::Relaxed);
        word
    }

    /// A LIVE, PENDING entry of `len` bytes with `generation` at `hdr`, with a filler over
    /// `from..hdr` in front when `hdr > from` (its header, then its start bit, its bytes counted
    /// as discarded), in a chunk (or chunks) the caller owns: the start bit first, then the
    /// header. Returns the header word.
    fn start_live(&self, from: u64, hdr: u64, len: u64, generation: u32) -> u64 {
        if hdr > from {
            self.mem
                .word(from)
                .store(block::pad(hdr - from), Ordering::Relaxed);
            self.start_map().owner_toggle(from);
            add_discarded(self.mem, hdr - from);
        }
        // The start bit before the header (docs/metadata.md): a header is never LIVE without it.
        self.start_map().owner_toggle(hdr);
        let word = block::live(len, generation, LiveState::Pending, 0);
        self.mem.word(hdr).store(word, Ordering::Relaxed);
        word
    }

    /// Bumps a block of `len` bytes spanning `span`, with any alignment, in the caller's chunk
    /// `cur..end` (`cur == 0`: none), a filler in front when the alignment asks for one. Returns
    /// the header's offset and word; the caller's cursor then goes to `hdr + span`. `None` when
    /// it does not fit.
    fn bump_entry(
        &self,
        (cur, end): (u64, u64),
        len: u64,
        span: u64,
        align: u64,
        generation: u32,
    ) -> Option<(u64, u64)> {
        if cur == 0 {
            return None;
        }
        let hdr = align_up(cur + WORD, align)? - WORD;
        if hdr.checked_add(span)? > end {
            return None;
        }
        Some((hdr, self.start_live(cur, hdr, len, generation)))
    }

    /// The allocation fast path: a small block of `len` bytes spanning `span` at `cur`, the
    /// cursor of the calling thread's `cell`, with the chunk's generation
    /// ([`Heap::start_live_unchecked`]); then the cursor goes past it. Returns the PENDING header
    /// word stored.
    ///
    /// # Safety
    /// `cell` is the calling thread's, `(cur, end) = cell.cursor()` with `cur != 0` and
    /// `span <= end - cur`: so `cur` is 8-aligned (chunk starts and spans are) and
    /// `cur + 8 <= cur + span <= end <= heap_end`.
    #[inline(always)]
    pub(crate) unsafe fn bump_small(&self, cell: &ChunkCell, cur: u64, len: u64, span: u64) -> u64 {
        // SAFETY: the contract is `start_live_unchecked`'s.
        let word = unsafe { self.start_live_unchecked(cur, len, cell.generation()) };
        cell.bumped(cur + span);
        word
    }

    /// Bumps a block of `len` bytes spanning `span`, with any alignment, in the calling thread's
    /// `cell` ([`Heap::bump_entry`]), and moves the cursor past it. The header's offset and word;
    /// `None` when it does not fit in the cell's chunk.
    pub(crate) fn bump_in_cell(
        &self,
        cell: &ChunkCell,
        len: u64,
        span: u64,
        align: u64,
    ) -> Option<(u64, u64)> {
        let (hdr, word) = self.bump_entry(cell.cursor(), len, span, align, cell.generation())?;
        cell.bumped(hdr + span);
        Some((hdr, word))
    }

    /// Gives the calling thread's `cell` a fresh chunk of at least `need` and about `want` bytes
    /// ([`Heap::reserve`]), whose blocks get a fresh generation. The cell holds none (retired
    /// first). `false` when the main memory cannot hold it.
    ///
    /// # Errors
    /// [`Error::NoSpace`] (or [`Error::Io`]) when a sparse file arena cannot reserve the chunk's
    /// disk: the cell still holds none, and nothing else changed.
    pub(crate) fn refill(&self, cell: &ChunkCell, need: u64, want: u64) -> Result<bool, Error> {
        Ok(match self.reserve(need, want, Writes::Chunk)? {
            Some((start, end)) => {
                cell.take_chunk(start, end, block::fresh_gen(self.mem).into());
                true
            }
            None => false,
        })
    }

    /// Retires the calling thread's `cell`'s chunk: its unused tail `(cur, end)`, zero by
    /// invariant Z, for the caller to give back (listed or a gap: the free lists are a layer
    /// above); `None` when the cell holds no chunk.
    pub(crate) fn retire(&self, cell: &ChunkCell) -> Option<(u64, u64)> {
        cell.retire()
    }

    /// Reserves whole chunks covering `want` bytes from the global bump offset, zeroing any part
    /// that was written before; the last chunk of the heap may be shorter, as long as it holds
    /// `need` bytes. `None` when the main memory cannot hold them.
    ///
    /// Chunks start on the fixed grid `data_start + k * chunk`: the heap walk steps over an unused
    /// tail to the next grid line. The bump offset is off the grid only when the capacity was
    /// grown from a value that was not on it; the bytes from there to the next line stay a gap.
    ///
    /// In a sparse file arena the disk under what the caller will write (`writes`) is reserved
    /// before the bump offset moves over it ([`Heap::reserve_disk`]): a failure returns with the
    /// bump offset where it was, so no chunk is handed out, or lost, without its disk.
    fn reserve(&self, need: u64, want: u64, writes: Writes) -> Result<Option<(u64, u64)>, Error> {
        let chunk = self.geom.chunk();
        let Some(n) = align_up(want, chunk) else {
            return Ok(None);
        };
        // Acquire: pairs with a growth step's Release, so the chunks below the end it read are
        // usable and their map words zero (docs/metadata.md, 12.2).
        let heap_end = self.heap_end.load(Ordering::Acquire);
        let bump = self.mem.word(OFF_BUMP);
        let mut cur = bump.load(Ordering::Relaxed);
        let (start, end) = loop {
            let Some(start) = self.geom.chunk_line_from(cur).filter(|&s| s < heap_end) else {
                return Ok(None);
            };
            let Some(end) = start.checked_add(n).map(|e| e.min(heap_end)) else {
                return Ok(None);
            };
            if end - start < need {
                return Ok(None);
            }
            if self.sparse {
                // Before the CAS: the reservation changes no byte, so it may cover a range
                // another thread takes first (that thread reserves it again).
                self.reserve_disk(cur, start, end, writes)?;
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
        let hw = self.high_water();
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
        Ok(Some((start, end)))
    }

    /// The high-water mark: the heap at or past it was never written.
    pub(super) fn high_water(&self) -> u64 {
        self.mem.word(OFF_HIGH_WATER).load(Ordering::Relaxed)
    }

    /// A block larger than a quarter chunk: whole chunks straight from the bump offset, a filler
    /// in front for its alignment, its generation fresh. Returns the header's offset and word,
    /// and the reserved chunks' unused tail `(off, len)` (zero, ending at a chunk boundary or the
    /// heap's end) for the caller to give back. A LARGE block's tail word is the caller's next
    /// store ([`Heap::set_large_tail`]).
    ///
    /// # Errors
    /// As [`Heap::refill`]: a sparse file arena that cannot reserve the block's disk.
    pub(crate) fn start_large(
        &self,
        len: u64,
        span: u64,
        align: u64,
    ) -> Result<Option<LargeStart>, Error> {
        let slack = if align > WORD { align } else { 0 };
        let writes = Writes::Large { span, align };
        let Some((start, end)) = self.reserve(span + slack, span + slack, writes)? else {
            return Ok(None);
        };
        let Some(hdr) = large_header(start, align) else {
            return Ok(None);
        };
        // The chunks are ours alone since the reservation: their owner-map words too.
        let word = self.start_live(start, hdr, len, block::fresh_gen(self.mem));
        let tail = hdr + span;
        Ok(Some((hdr, word, (tail, end - tail))))
    }

    /// A LARGE block's tail word, the span's last: its exact length, after its header (`word`)
    /// and before the block is published (the Release of the publish orders it).
    pub(crate) fn set_large_tail(&self, hdr: u64, span: u64, len: u64, word: u64) {
        self.mem.word(hdr + span - WORD).store(
            block::large_tail(len, block::live_generation(word)),
            Ordering::Relaxed,
        );
    }

    /// Rewinds `last`, the last block of the caller's chunk, spanning `span`: the entry goes away,
    /// its start bit first (the owner-map word is the caller's), then its bytes zeroed and its
    /// header stored 0 last (data first, header last: everything from the block's start to the
    /// chunk's end reads zero, invariant Z); then the cursor moves back over it
    /// (`LastBlock::rewind`), and the chunk's next blocks get a fresh generation: not the next one
    /// after the cell's, whose chain would run into generations the counter hands out later (a
    /// block at this offset could then get a generation a stale handle still carries).
    ///
    /// # Safety
    /// The block is DYING with no readers, and `last` came through the gate of invariant C
    /// (`ChunkCell::last_block`): the block is the caller's alone.
    pub(crate) unsafe fn rewind(&self, last: LastBlock<'_>, span: u64) {
        let hdr = last.hdr();
        self.start_map().owner_toggle(hdr);
        // SAFETY: the block is the caller's alone (contract).
        unsafe { self.mem.zero(hdr + WORD, span - WORD) };
        self.mem.word(hdr).store(0, Ordering::Relaxed);
        last.rewind(block::fresh_gen(self.mem).into());
    }

    /// Resizes `last`, the last block of the caller's chunk, spanning `old_span`, in place to
    /// `len` bytes spanning `new_span` (at most `last.room()`): a cut-off tail zeroed first
    /// (invariant Z: what goes back behind the cursor reads zero; a grow's new bytes are zero
    /// already), then the new length committed ([`Heap::set_len`]), then the cursor moved to the
    /// block's new end (`LastBlock::resize`).
    ///
    /// # Safety
    /// The block is PUBLISHED, `last` came through the gate of invariant C
    /// (`ChunkCell::last_block`), and the caller holds the block exclusively.
    pub(crate) unsafe fn resize_last(
        &self,
        last: LastBlock<'_>,
        old_span: u64,
        new_span: u64,
        len: u64,
    ) {
        let hdr = last.hdr();
        if new_span < old_span {
            // SAFETY: the tail is part of the block, which the caller holds exclusively.
            unsafe { self.mem.zero(hdr + new_span, old_span - new_span) };
        }
        self.set_len(hdr, len, false);
        last.resize(new_span);
    }

    /// Stores a new length in a PUBLISHED block's header, keeping its generation, state and
    /// readers field, and setting the [`block::FILLER_BEHIND`] hint when `behind` (a shrink left
    /// its tail as a filler): one CAS, so a crash leaves the old length or the new one. A shrink's
    /// cut-off tail is walkable free space (or zero) before this commit, and is handed to anyone
    /// only after it.
    pub(crate) fn set_len(&self, hdr: u64, len: u64, behind: bool) {
        let w = self.mem.word(hdr);
        let mut cur = w.load(Ordering::Relaxed);
        loop {
            debug_assert!(matches!(
                block::decode(cur),
                HeaderWord::Live {
                    state: LiveState::Published,
                    ..
                }
            ));
            // Release: the bytes written under the old length happen before any reader that sees
            // the new one (pairs with the Acquire loads in `read`/`free`).
            let mut new = BlockHeader(cur).with_len(len);
            if behind {
                new = new.with_filler_behind();
            }
            match w.compare_exchange_weak(cur, new.0, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }
}
