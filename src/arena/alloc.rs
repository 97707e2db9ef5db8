//! The allocation engine: the public `alloc*` calls, the per-thread fast path, the slow path
//! (chunk refill, large blocks, free lists, coalescing rounds) and the per-thread cache take.

use super::{Arena, BlockMut, Inner};
use crate::block::{self, Handle, MAX_BLOCK_LEN};
use crate::cells::with_cell;
use crate::error::Error;
use crate::freelist::exact_class;
use crate::heap::ChunkCell;
use crate::layout::{block_span, MAX_ALIGN, WORD};
use crate::reentry::audit_op;
use std::alloc::Layout;

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
    pub(super) fn alloc_aligned(&self, len: u64, mut align: u64) -> Result<BlockMut<'_>, Error> {
        audit_op!();
        let inner = &*self.inner;
        if len == 0 {
            return Err(Error::ZeroSize);
        }
        // One flag for everything an arena other than a writable narrow heap or anonymous map
        // asks, so that the common arena's fast path tests nothing more.
        if len >= block::LARGE_MIN || inner.alloc_gate {
            // A wide arena's handles count in its offset unit: every block's data is aligned to
            // it (docs/metadata.md, 12.3). 8 bytes elsewhere, which every caller already asks.
            align = align.max(inner.unit());
            if len >= block::LARGE_MIN {
                return self.alloc_large_len(len, align);
            }
            if inner.write_gate {
                inner.writable()?;
            }
        }
        let span = len.div_ceil(WORD) * WORD + WORD;
        // `move`: the closure holds copies, so nothing is spilled to the stack for its sake
        // on the fast path.
        let (hdr, word) = with_cell(inner.uid, self.lane(), &inner.cells, move |cell| {
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
            }
            // The rest of the thread's chunk, then (in `alloc_slow`) the class's freed blocks on
            // the shared list before a new chunk: reuse before growth at chunk granularity, so
            // the bump path pays nothing for it (docs/design.md, "Reuse before growth").
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
        if align == WORD {
            if let Some(class) = exact_class(span).filter(|_| self.thread_cache) {
                // Reuse before growth: the class's freed blocks on the shared list come before a
                // new chunk. A memtable that never frees finds the class's hint clear.
                if self.lists.may_hold(class) {
                    if let Some(top) = self.fill_cache(cell, class)? {
                        return self.alloc_from_cache(cell, len, span, class, top);
                    }
                }
            }
        }
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
}
