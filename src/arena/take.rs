//! Taking from the free lists: before fresh memory (`reuse_before_growth`), when the heap is used
//! up (`take_listed`, with its coalescing rounds), and the carve of a listed segment
//! (`alloc_from_freelist`), with the start-map check of what it hands out (`vouch_free`) and a
//! sparse arena's disk under what it writes. The bump paths that call them are in `alloc.rs`.

use super::Inner;
use crate::error::Error;
use crate::format::Freelist;
use crate::freelist::{Optimistic, Pessimistic, Prepared, Unlisted};
use crate::heap::ChunkCell;
use crate::layout::{align_up, WORD};
use crate::sync::Ordering;

/// How many times an allocation that found the arena exhausted waits for or runs a coalescing
/// pass and tries the free lists again before it answers `Full`.
const COALESCE_ROUNDS: u32 = 3;

/// Listed segments a take in a sparse arena on a full disk passes over (their pages could not be
/// reserved) before the allocation is `NoSpace` (`Inner::alloc_from_freelist`).
const REFUSALS: usize = 4;

/// A remainder below this many bytes stays with the carved block as a filler where frees absorb
/// fillers (`Inner::absorb_fillers`).
pub(super) const SLACK: u64 = 128;

impl Inner {
    /// The free lists before fresh memory, for a request the thread's chunk cannot hold: a take
    /// when a class that may fit the span is marked non-empty (no pass), and when that finds
    /// nothing, one coalescing pass if the threads have freed an eighth of the heap reserved (and
    /// a chunk) since the last pass and its rate limit allows (`merge_due`; never waiting for
    /// another thread's pass), then a take again. An arena that never frees (a memtable) pays
    /// one scan of the non-empty hint per chunk and never a pass. `None`: reserve fresh memory.
    /// (Without free lists nothing is listed and passes are off: `None` at once.)
    ///
    /// A sparse arena whose disk cannot hold what a carve from the segment found would write
    /// (`Error::NoSpace`: the segment went back as it was) reserves fresh memory instead: a fresh
    /// LARGE block needs the disk under its first and last pages only, a reused segment under
    /// every page the carve zeroes.
    pub(super) fn reuse_before_growth(
        &self,
        cell: &ChunkCell,
        len: u64,
        span: u64,
        align: u64,
    ) -> Result<Option<(u64, u64)>, Error> {
        let take = || match self.take_listed(cell, len, span, align, false) {
            Err(Error::NoSpace) => Ok(None),
            r => r,
        };
        if self.lists.may_fit(span) {
            if let Some(r) = take()? {
                return Ok(Some(r));
            }
        }
        if !self.coalesce_on || !self.merge_due() {
            return Ok(None);
        }
        // Acquire: as in `take_listed`.
        let mut seen = self.passes.load(Ordering::Acquire);
        if self.coalesce(cell, &mut seen, false)? {
            return take();
        }
        Ok(None)
    }

    /// The exhausted heap's fallback: a take from the free lists, and with `passes` a few rounds
    /// of coalescing passes between takes. `None` when nothing fits.
    pub(super) fn take_listed(
        &self,
        cell: &ChunkCell,
        len: u64,
        span: u64,
        align: u64,
        passes: bool,
    ) -> Result<Option<(u64, u64)>, Error> {
        if self.geom.freelist == Freelist::None {
            return Ok(None);
        }
        // Acquire: pairs with the Release increment that ends a pass, so a pass that ended before
        // this load listed its segments before our take.
        let mut seen = self.passes.load(Ordering::Acquire);
        let mut r = self.alloc_from_freelist(cell, len, span, align)?;
        // While a pass runs the lists look empty to everyone else, so a retry can miss what a
        // pass had detached; a few rounds, each after one pass (waited for, or run), give it a
        // fair chance.
        let mut rounds = 0;
        while r.is_none()
            && passes
            && self.coalesce_on
            && rounds < COALESCE_ROUNDS
            && self.coalesce(cell, &mut seen, true)?
        {
            r = self.alloc_from_freelist(cell, len, span, align)?;
            rounds += 1;
        }
        if r.is_some() {
            cell.counters().on_freelist_take();
        }
        Ok(r)
    }

    /// Checks a free segment about to be carved against the start map: it must start where the
    /// map records an entry, and no other entry may start inside it. Damaged metadata (a span word,
    /// a list or cache link) is `Error::Corrupt` for this allocation, and nothing overlapping a
    /// live block is handed out; the segment is left off the lists.
    pub(super) fn vouch_free(&self, off: u64, span: u64) -> Result<(), Error> {
        self.vouch_carved(off, span, span)
    }

    /// [`Inner::vouch_free`] of the first `used` bytes of a segment of `span` bytes: what a carve
    /// writes or hands out (the block, a filler in front, the remainder's header and span word).
    /// The rest stays free, as the remainder, and is checked when it is carved in turn, so
    /// nothing overlapping a live block is ever handed out or written; and a carve from a long
    /// merged run costs the map words of what it takes, not of the whole run.
    fn vouch_carved(&self, off: u64, span: u64, used: u64) -> Result<(), Error> {
        if off.checked_add(span).is_none_or(|e| e > self.heap_end()) || span < 16 {
            return Err(Error::Corrupt {
                offset: off,
                word: span,
            });
        }
        self.start_map()
            .sole_start(off, used.min(span))
            .map_err(|at| Error::Corrupt {
                offset: at,
                word: span,
            })
    }

    /// Takes a segment from the free lists and carves the block out of it.
    pub(super) fn alloc_from_freelist(
        &self,
        cell: &ChunkCell,
        len: u64,
        span: u64,
        align: u64,
    ) -> Result<Option<(u64, u64)>, Error> {
        // Room in front of the block for its alignment: none, or a filler of at least 16 bytes
        // (so the segment's span word stays intact until the commit below).
        let front_of = |off: u64| {
            let front = align_up(off + WORD, align).map_or(u64::MAX, |d| d - WORD - off);
            if front != 0 && front < 16 {
                front + align
            } else {
                front
            }
        };
        let limit = self.bump();
        let slot = cell.reads().pop_slot();
        // A sparse arena on a full disk: the segments whose pages could not be reserved (below).
        let mut refused = [0u64; REFUSALS];
        let mut n_refused = 0;
        let (seg, front, used) = loop {
            let fits = |s: &crate::freelist::Segment| {
                !refused[..n_refused].contains(&s.off)
                    && front_of(s.off)
                        .checked_add(span)
                        .is_some_and(|n| n <= s.span)
            };
            let seg = match (self.geom.freelist, n_refused) {
                (Freelist::None, _) => None,
                (Freelist::Optimistic, 0) => self
                    .lists
                    .take::<Optimistic>(&self.mem, span, limit, slot, fits)?,
                (Freelist::Pessimistic, _) | (Freelist::Optimistic, _) => self
                    .lists
                    .take::<Pessimistic>(&self.mem, span, limit, slot, fits)?,
            };
            let Some(seg) = seg else {
                return match n_refused {
                    0 => Ok(None),
                    _ => Err(Error::NoSpace),
                };
            };
            // Up to the remainder's header and span word: what the carve below writes.
            let front = front_of(seg.off);
            let used = (seg.off + front + span + 16).min(seg.off + seg.span) - seg.off;
            // A sparse arena's disk under what the carve writes, before anything is written. On
            // a full disk the segment goes back as it was, and the next take looks for the best
            // fit other than the segments refused so far (a block freed on pages the disk already
            // backs, where the first take may have found the largest segment, over a hole); after
            // `REFUSALS` of them, `NoSpace`.
            match self.heap().reserve_for_carve(seg.off, seg.off + used) {
                Ok(()) => break (seg, front, used),
                Err(e) => {
                    self.lists
                        .push(&self.mem, seg.off, seg.span, seg.generation);
                    if n_refused == REFUSALS || !matches!(e, Error::NoSpace) {
                        return Err(e);
                    }
                    refused[n_refused] = seg.off;
                    n_refused += 1;
                }
            }
        };
        let hdr = seg.off + front;
        let rest = seg.span - front - span;
        let rem = hdr + span;
        self.vouch_carved(seg.off, seg.span, used)?;
        // The segment's header (and its span word) still describe the whole segment, so a crash
        // before the commit below leaves it free. Write everything inside it first.
        let mut listed = None;
        let behind = rest > 0 && rest < SLACK.min(span) && self.absorb_fillers;
        if behind {
            // A small remainder stays with the block as a filler, which its free absorbs
            // again: listed, it would only be carved into smaller pieces.
            self.heap()
                .entries()
                .add_filler(rem, rest, crate::heap::Start::Shared);
            self.add_discarded(rest);
        } else if rest > 0 {
            match self
                .lists
                .prepare(&self.mem, &self.geom, rem, rest, Unlisted::Filler)
            {
                Prepared::List(g) => listed = Some(g),
                Prepared::Discard(n) => self.add_discarded(n),
            }
        }
        // Always a fresh generation, never `next_gen(seg.generation)`: the offset may have carried a
        // higher generation before (a chunk's rewinds advance its own), and a stale handle to
        // that block must not name this one. Fresh generations come from one counter, so every
        // live generation is issued once per cycle of the counter (`2^32 - 1` generations).
        let generation = self.fresh_gen();
        // SAFETY: the segment is ours since the pop; `front_of` makes a filler in front at least
        // 16 bytes, and the remainder past the block is written above.
        let word = unsafe {
            self.heap()
                .carve(seg.off, hdr, span, len, generation, behind)
        };
        if let Some(g) = listed {
            self.lists.push(&self.mem, rem, rest, g);
        }
        Ok(Some((hdr, word)))
    }
}
