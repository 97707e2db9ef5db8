//! The allocation engine: the public `alloc*` calls, the per-thread fast path, the slow path
//! (chunk refill, large blocks, free lists, coalescing rounds) and the per-thread cache take.

use super::{Arena, BlockMut, Inner};
use crate::block::{self, Handle, MAX_BLOCK_LEN};
use crate::cells::with_cell;
use crate::error::Error;
use crate::format::Freelist;
use crate::freelist::{exact_class, Optimistic, Pessimistic, Prepared, Unlisted};
use crate::heap::ChunkCell;
use crate::layout::{align_up, block_span, MAX_ALIGN, WORD};
use crate::reentry::audit_op;
use crate::sync::Ordering;
use std::alloc::Layout;
/// How many times an allocation that found the arena exhausted waits for or runs a coalescing
/// pass and tries the free lists again before it answers `Full`.
const COALESCE_ROUNDS: u32 = 3;

impl Arena {
    /// Allocates `len` zeroed bytes, aligned to 8.
    ///
    /// # Errors
    /// [`Error::ZeroSize`], [`Error::TooLarge`], [`Error::ReadOnly`], or [`Error::Full`] when
    /// neither the main memory nor the free lists can hold it, even after merging neighbouring
    /// free segments (see [`Stats::coalesced`](crate::Stats::coalesced)). [`Error::Corrupt`] when a free list is found
    /// damaged; [`Error::Io`] when a file arena cannot make a merge durable (nothing is merged
    /// then). [`Error::NoSpace`] when a sparse file arena (`Options::preallocate(false)`) cannot
    /// reserve the disk under the fresh memory the block needs and no freed block fits: nothing
    /// changed, and the arena keeps working.
    ///
    /// ```
    /// let arena = parena::Options::new().capacity(1 << 16).heap()?;
    /// let b = arena.alloc(100)?;
    /// assert_eq!(b.len(), 100);
    /// assert!(b.iter().all(|&x| x == 0));
    /// assert!(arena.alloc(0).is_err());
    /// assert!(arena.alloc(usize::MAX).is_err());
    /// # Ok::<(), parena::Error>(())
    /// ```
    #[inline]
    pub fn alloc(&self, len: usize) -> Result<BlockMut<'_>, Error> {
        self.alloc_aligned(len as u64, WORD)
    }

    /// Allocates zeroed bytes for `layout`; any power-of-two alignment up to [`MAX_ALIGN`].
    ///
    /// # Errors
    /// As [`Arena::alloc`], and [`Error::BadAlign`] above [`MAX_ALIGN`].
    ///
    /// ```
    /// use std::alloc::Layout;
    /// let arena = parena::Options::new().capacity(1 << 20).heap()?;
    /// let b = arena.alloc_layout(Layout::from_size_align(10, 256).unwrap())?;
    /// assert_eq!(b.as_ptr() as usize % 256, 0);
    /// # Ok::<(), parena::Error>(())
    /// ```
    #[inline]
    pub fn alloc_layout(&self, layout: Layout) -> Result<BlockMut<'_>, Error> {
        if layout.align() > MAX_ALIGN {
            return Err(Error::BadAlign {
                align: layout.align(),
            });
        }
        self.alloc_aligned(layout.size() as u64, (layout.align() as u64).max(WORD))
    }

    /// Allocates a block holding a copy of `bytes` and returns its handle.
    ///
    /// # Errors
    /// As [`Arena::alloc`].
    pub fn alloc_copy(&self, bytes: &[u8]) -> Result<Handle, Error> {
        let mut b = self.alloc(bytes.len())?;
        b.copy_from_slice(bytes);
        Ok(b.into_handle())
    }

    #[inline]
    pub(super) fn alloc_aligned(&self, len: u64, align: u64) -> Result<BlockMut<'_>, Error> {
        audit_op!();
        let inner = &*self.inner;
        if len == 0 {
            return Err(Error::ZeroSize);
        }
        // A wide arena's handles count in its offset unit: every block's data is aligned to it
        // (docs/metadata.md, 12.3). 8 bytes elsewhere, which every caller already asks.
        let align = align.max(inner.unit());
        if len >= block::LARGE_MIN {
            return self.alloc_large_len(len, align);
        }
        if inner.write_gate {
            inner.writable()?;
        }
        let span = len.div_ceil(WORD) * WORD + WORD;
        let (hdr, word) = with_cell(inner.uid, self.lane(), &inner.cells, |cell| {
            inner.alloc_in(cell, len, span, align)
        })?;
        Ok(BlockMut {
            inner,
            hdr,
            len,
            word,
        })
    }
    /// [`Arena::alloc_aligned`] of a LARGE block (1 MiB or more): its span is rounded up to 4 KiB
    /// and its exact length goes in its tail word, the span's last, before the block is published
    /// (the Release of BlockMut's drop or `publish_foreign` orders it).
    #[cold]
    #[inline(never)]
    fn alloc_large_len(&self, len: u64, align: u64) -> Result<BlockMut<'_>, Error> {
        let inner = &*self.inner;
        let Some(span) = block_span(len).filter(|_| len <= MAX_BLOCK_LEN) else {
            return Err(Error::TooLarge {
                requested: len,
                max: MAX_BLOCK_LEN,
            });
        };
        inner.writable()?;
        let (hdr, word) = with_cell(inner.uid, self.lane(), &inner.cells, |cell| {
            inner.alloc_in(cell, len, span, align)
        })?;
        inner.heap().set_large_tail(hdr, span, len, word);
        Ok(BlockMut {
            inner,
            hdr,
            len,
            word,
        })
    }
}

/// Listed segments a take in a sparse arena on a full disk passes over (their pages could not be
/// reserved) before the allocation is `NoSpace` (`Inner::alloc_from_freelist`).
const REFUSALS: usize = 4;

impl Inner {
    /// The allocation fast path: bump inside the calling thread's chunk. Returns the header's
    /// offset and the PENDING header word stored there (so publishing is a change of state bits,
    /// with no check code to compute again).
    #[inline]
    pub(super) fn alloc_in(
        &self,
        cell: &ChunkCell,
        len: u64,
        span: u64,
        align: u64,
    ) -> Result<(u64, u64), Error> {
        if align == WORD {
            if let Some(class) = exact_class(span).filter(|_| self.thread_cache) {
                let top = cell.cache_top(class);
                if !top.is_empty() {
                    return self.alloc_from_cache(cell, len, span, class, top);
                }
                // Reuse before growth: the class's freed blocks on the shared list come before
                // fresh memory. A memtable that never frees finds the class's hint clear.
                if self.lists.may_hold(class) {
                    if let Some(top) = self.fill_cache(cell, class)? {
                        return self.alloc_from_cache(cell, len, span, class, top);
                    }
                }
            }
            let (cur, end) = cell.cursor();
            debug_assert!(cur <= end, "chunk cell cur {cur} past end {end}");
            if cur != 0 && span <= end - cur {
                // SAFETY: `cell` is this thread's, `(cur, end)` its cursor, `cur != 0` and
                // `span <= end - cur`.
                let word = unsafe { self.heap().bump_small(cell, cur, len, span) };
                cell.counters().on_alloc(len);
                return Ok((cur, word));
            }
        }
        self.alloc_slow(cell, len, span, align)
    }

    #[cold]
    #[inline(never)]
    pub(super) fn alloc_slow(
        &self,
        cell: &ChunkCell,
        len: u64,
        span: u64,
        align: u64,
    ) -> Result<(u64, u64), Error> {
        let slack = if align > WORD { align + WORD } else { 0 };
        let chunk = self.geom.chunk();
        // A sparse file arena whose disk cannot hold a fresh chunk: the allocation may still be
        // served from the free lists, else it is this error (docs/metadata.md, 12.2).
        let mut no_disk = None;
        // Reuse before growth: what the thread's chunk cannot hold comes from the free lists
        // before a new chunk (or a large block's chunks) is reserved (docs/design.md).
        let r = if span + slack <= chunk / 4 {
            match self.heap().bump_in_cell(cell, len, span, align) {
                Some(r) => Some(r),
                None => match self.reuse_before_growth(cell, len, span, align)? {
                    Some(r) => Some(r),
                    None => {
                        self.return_chunk(cell);
                        match self.heap().refill(cell, span + slack, chunk) {
                            Ok(true) => self.heap().bump_in_cell(cell, len, span, align),
                            Ok(false) => None,
                            Err(e) => {
                                no_disk = Some(e);
                                None
                            }
                        }
                    }
                },
            }
        } else {
            match self.reuse_before_growth(cell, len, span, align)? {
                Some(r) => Some(r),
                None => match self.heap().start_large(len, span, align) {
                    Ok(r) => r.map(|(hdr, word, (tail, n))| {
                        self.give_back_zeroed(tail, n);
                        (hdr, word)
                    }),
                    Err(e) => {
                        no_disk = Some(e);
                        None
                    }
                },
            }
        };
        // A growable arena below its maximum grows before it runs a merge pass: a step is a map
        // (and for a file an extension), a pass walks every listed segment (docs/metadata.md,
        // 12.2). The lists are still tried first, without a pass. A disk that cannot hold a chunk
        // cannot hold a step's either: no step then.
        let can_grow =
            no_disk.is_none() && self.geom.growable() && self.heap_end() < self.max_capacity();
        let r = match r {
            Some(r) => Some(r),
            None => self.take_listed(cell, len, span, align, !can_grow)?,
        };
        match r {
            Some(r) => {
                cell.counters().on_alloc(len);
                Ok(r)
            }
            None => {
                if let Some(e) = no_disk {
                    cell.counters().on_failure();
                    return Err(e);
                }
                // A growable arena grows by a step and tries again (docs/metadata.md, 12.2).
                let grown = self.grow_for(span + slack);
                if let Ok(true) = grown {
                    return self.alloc_slow(cell, len, span, align);
                }
                // No step (at the maximum, or the disk is full): the merge passes skipped above
                // run now, before the allocation gives up.
                if can_grow {
                    if let Some(r) = self.take_listed(cell, len, span, align, true)? {
                        cell.counters().on_alloc(len);
                        return Ok(r);
                    }
                }
                grown?;
                cell.counters().on_failure();
                Err(Error::Full {
                    requested: len,
                    available: self.heap_end().saturating_sub(self.bump()),
                })
            }
        }
    }

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
    fn reuse_before_growth(
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
    fn take_listed(
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
        let (seg, used) = loop {
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
            let rem = seg.off + front_of(seg.off) + span;
            let used = (rem + 16).min(seg.off + seg.span) - seg.off;
            // A sparse arena's disk under what the carve writes, before anything is written. On
            // a full disk the segment goes back as it was, and the next take looks for the best
            // fit other than the segments refused so far (a block freed on pages the disk already
            // backs, where the first take may have found the largest segment, over a hole); after
            // `REFUSALS` of them, `NoSpace`.
            match self.heap().reserve_for_carve(seg.off, seg.off + used) {
                Ok(()) => break (seg, used),
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
        let front = front_of(seg.off);
        let hdr = seg.off + front;
        let rest = seg.span - front - span;
        let rem = hdr + span;
        self.vouch_carved(seg.off, seg.span, used)?;
        // The segment's header (and its span word) still describe the whole segment, so a crash
        // before the commit below leaves it free. Write everything inside it first.
        let mut listed = None;
        if rest > 0 {
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
        let word = unsafe { self.heap().carve(seg.off, hdr, span, len, generation) };
        if let Some(g) = listed {
            self.lists.push(&self.mem, rem, rest, g);
        }
        Ok(Some((hdr, word)))
    }
}
