//! A thread's cache of freed blocks on the allocation side: take a block from it (checked
//! against the start map), fill an empty class from the shared list in one batch, and spill a
//! full one back to the list.

use super::Inner;
use crate::block::{self, HeaderWord};
use crate::error::Error;
use crate::freelist::exact_class;
use crate::heap::{CacheTop, ChunkCell, CACHE_DEPTH};
use crate::layout::WORD;
use crate::sync::Ordering;

impl Inner {
    /// Fills the calling thread's empty cache of exact class `class` from the shared list: up to
    /// the cache's depth in one batch (`FreeLists::take_batch`). `None` when the list was empty.
    #[cold]
    #[inline(never)]
    pub(super) fn fill_cache(
        &self,
        cell: &ChunkCell,
        class: usize,
    ) -> Result<Option<CacheTop>, Error> {
        let Some((first, n)) = self.lists.take_batch(&self.mem, class, CACHE_DEPTH)? else {
            return Ok(None);
        };
        Ok(Some(cell.cache_filled(class, first, n)))
    }

    /// Takes a block of exactly `span` bytes from the calling thread's cache (`class` is the
    /// span's exact class, `top` the class's head, not empty).
    pub(super) fn alloc_from_cache(
        &self,
        cell: &ChunkCell,
        len: u64,
        span: u64,
        class: usize,
        top: CacheTop,
    ) -> Result<(u64, u64), Error> {
        let hdr = top.first();
        let w = if self.cached_in_heap(hdr, span) {
            self.mem.word(hdr).load(Ordering::Relaxed)
        } else {
            0
        };
        // A block that came from the shared lists was written by another thread, and a damaged
        // list may link a segment of another span: its span word must be the class's.
        let spanned = w != 0 && self.mem.word(hdr + WORD).load(Ordering::Relaxed) == span;
        let (HeaderWord::Free { next, .. }, true) = (block::decode(w), spanned) else {
            // Only a damaged heap gets here: the cache is dropped (its blocks leak until a
            // repair) and the allocation fails; no panic on an allocator path (invariant A).
            cell.take_cache(class);
            return Err(Error::Corrupt {
                offset: hdr,
                word: w,
            });
        };
        if let Err(e) = self.vouch_free(hdr, span) {
            cell.take_cache(class);
            return Err(e);
        }
        cell.cache_popped(class, top, next);
        // A fresh generation from the arena's counter (through this thread's batch of it, so no
        // shared atomic here). Not the chunk's generation: that is also the one its bump blocks
        // carry (a block freed into this cache and taken back would get the generation its stale
        // handle still has), it is 0 before the cell's first chunk, and a `next_gen` chain runs
        // into generations the counter hands out later.
        let generation = cell.batch_gen(&self.mem);
        // Commit as RESERVED (same span: exact class), then zero, then hand out.
        // SAFETY: the block came off this thread's own cache: no one else references it.
        let pending = unsafe { self.heap().take_cached(hdr, span, len, generation) };
        cell.counters().on_alloc(len);
        cell.counters().on_cache_take();
        Ok((hdr, pending))
    }

    /// The cached block at `off`: its generation, its link and its span. A cached block is an
    /// exact-class FREE segment inside the heap; anything else (a damaged heap) is
    /// `Error::Corrupt`, never a bounds panic.
    pub(super) fn cached_block(&self, off: u64) -> Result<(u32, u64, u64), Error> {
        let (w, span) = if self.cached_in_heap(off, 16) {
            (
                self.mem.word(off).load(Ordering::Relaxed),
                self.mem.word(off + WORD).load(Ordering::Relaxed),
            )
        } else {
            (0, 0)
        };
        let HeaderWord::Free { generation, next } = block::decode(w) else {
            return Err(Error::Corrupt {
                offset: off,
                word: w,
            });
        };
        if span < 16
            || span % WORD != 0
            || exact_class(span).is_none()
            || !self.cached_in_heap(off, span)
        {
            return Err(Error::Corrupt {
                offset: off + WORD,
                word: span,
            });
        }
        Ok((generation, next, span))
    }

    /// A free found class `class` of the cell's cache full: the whole cache goes to the shared
    /// list in one splice (`FreeLists::push_chain`: one walk of its blocks to the last, one CAS),
    /// not one push per free past the cache. A damaged cache is left off the lists (leaked until
    /// a repair), as `drain_cache` leaves it. Returns the class's head, now empty.
    pub(super) fn spill_cache(&self, cell: &ChunkCell, class: usize) -> CacheTop {
        let top = cell.take_cache(class);
        let mut off = top.first();
        let mut last = None;
        while off != 0 {
            let Ok((generation, next, _)) = self.cached_block(off) else {
                return cell.cache_top(class);
            };
            last = Some((off, generation));
            off = next;
        }
        if let Some((last, generation)) = last {
            self.lists
                .push_chain(&self.mem, class, top.first(), last, generation);
        }
        cell.cache_top(class)
    }
}
