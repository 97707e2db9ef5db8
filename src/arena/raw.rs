//! Access to the inside of blocks for structures embedded in the arena.
//!
//! A storage engine keeps its structures *in* the arena: a skiplist node holds atomic `next`
//! links and immutable key bytes, a log segment is written by many threads at disjoint ranges.
//! The block API ([`Arena::alloc`], [`Arena::read`], [`Arena::get`], [`Arena::get_mut`]) hands out
//! whole blocks, either exclusively or immutably, which such structures cannot use once the block
//! is shared. These methods hand out one word or one range inside a block instead:
//!
//! | method | checks the handle | gives |
//! | --- | --- | --- |
//! | [`Arena::atomic_u64`] | yes | an atomic word inside a live block |
//! | [`Arena::atomic_u64_at`] | no (arena bounds only) | an atomic word at an arena offset |
//! | [`Arena::get_range`] | yes | shared bytes of part of a live block |
//! | [`Arena::get_range_mut`] | yes | exclusive bytes of part of a live block |
//! | [`Arena::bytes_at`] | no (arena bounds only) | shared bytes at an arena offset |
//!
//! The unchecked variants are for hot paths (a skiplist search touches a dozen nodes per lookup)
//! over blocks whose owner knows they are live: they check only that the range lies inside the
//! arena's heap, so a wrong offset can give wrong bytes but never bytes outside the arena.
//!
//! All of them are `unsafe`: what makes the access sound (nobody frees the block meanwhile, no
//! non-atomic access races with the atomic one) is a property of the caller's structure. The
//! atomics are `std`'s, so this module is not built under `cfg(parena_loom)`, whose atomics are a
//! side table.

use super::check::Live;
use super::Arena;
use crate::block::Handle;
use crate::error::{Error, Region};
use crate::layout::WORD;
use crate::sync::StdAtomicU64;

impl Arena {
    /// The arena offset of bytes `at..at + len` of the live block `h`, checked.
    fn block_range(&self, h: Handle, at: u64, len: u64) -> Result<u64, Error> {
        let Live {
            hdr,
            word,
            len: block_len,
            ..
        } = self.checked(h)?;
        // Every caller of the raw API keeps the block from being freed (its `unsafe` contract), so
        // a LARGE block's tail word stays its own while it is read.
        let block_len = self.inner.exact_len(hdr, word, block_len)?;
        match at.checked_add(len) {
            Some(end) if end <= block_len => Ok(hdr + WORD + at),
            _ => Err(Error::OutOfBounds {
                offset: at,
                len,
                limit: block_len,
                region: Region::Block,
            }),
        }
    }

    /// Checks that `offset..offset + len` lies inside the heap (`data_start..heap_end`, the heap before the maps).
    #[inline]
    fn heap_range(&self, offset: u64, len: u64) -> Result<(), Error> {
        let inner = &*self.inner;
        let heap_end = inner.heap_end();
        match offset.checked_add(len) {
            Some(end) if offset >= inner.geom.data_start && end <= heap_end => Ok(()),
            _ => Err(Error::OutOfBounds {
                offset,
                len,
                limit: heap_end,
                region: Region::Heap,
            }),
        }
    }

    /// The 8 bytes at `at` inside block `h`, as an atomic word.
    ///
    /// This is how a structure keeps atomics (skiplist links, counters, a log's tail) inside its
    /// blocks: allocate, initialise through the [`crate::BlockMut`], publish (drop it), and from
    /// then on touch the word only through this method.
    ///
    /// # Errors
    /// As [`Arena::read`] for the handle ([`Error::Stale`], [`Error::Busy`],
    /// [`Error::OutOfBounds`]), and [`Error::OutOfBounds`] when `at` is not a multiple of 8 or
    /// `at + 8` is past the block's end.
    ///
    /// # Safety
    /// While the returned reference lives:
    /// - the block must not be freed (by any thread, through any clone of the arena);
    /// - the 8 bytes must not be accessed other than atomically by any thread: no `&[u8]` or
    ///   `&mut [u8]` covering them ([`Arena::get`], [`Arena::get_mut`], [`Arena::get_range`],
    ///   [`Arena::bytes_at`], ...) may live, and no [`Arena::read`] of them may run, at the same time
    ///   as a store through any atomic reference to them;
    /// - if the arena is read-only, only loads may be made through it (the memory may be mapped
    ///   read-only, where a store faults).
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// let arena = parena::Options::new().capacity(1 << 16).heap()?;
    /// let h = arena.alloc(16)?.into_handle();
    /// // SAFETY: `h` is freed by no one while `counter` lives, and its bytes 8..16 are only ever
    /// // accessed through this atomic.
    /// let counter = unsafe { arena.atomic_u64(h, 8)? };
    /// counter.fetch_add(3, Ordering::Relaxed);
    /// assert_eq!(counter.load(Ordering::Relaxed), 3);
    /// // SAFETY: as above.
    /// assert!(unsafe { arena.atomic_u64(h, 12) }.is_err()); // not 8-aligned
    /// # Ok::<(), parena::Error>(())
    /// ```
    pub unsafe fn atomic_u64(&self, h: Handle, at: usize) -> Result<&StdAtomicU64, Error> {
        let at = at as u64;
        if at % WORD != 0 {
            return Err(Error::OutOfBounds {
                offset: at,
                len: WORD,
                limit: WORD,
                region: Region::Alignment,
            });
        }
        let off = self.block_range(h, at, WORD)?;
        Ok(self.inner.mem.word(off))
    }

    /// The 8 bytes at arena offset `offset`, as an atomic word, without checking which block they
    /// belong to: the fast path for words of blocks the caller knows are live (a node reached
    /// through links of a structure that never frees linked nodes). `offset` is typically
    /// `arena.offset_of(handle) + at` ([`Arena::offset_of`]).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] when `offset` is not a multiple of 8 or the word is not inside the
    /// heap (`data_start..heap_end`, the heap before the maps).
    ///
    /// # Safety
    /// The word must lie inside a live (published) block that is not freed while the reference
    /// lives, and the access rules of [`Arena::atomic_u64`] apply to it. The generation is not
    /// checked: an offset into a block that was freed gives whatever the memory now holds.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// let arena = parena::Options::new().capacity(1 << 16).heap()?;
    /// let h = arena.alloc(8)?.into_handle();
    /// // SAFETY: `h` is live and its 8 bytes are only accessed atomically.
    /// let w = unsafe { arena.atomic_u64_at(arena.offset_of(h))? };
    /// w.store(42, Ordering::Release);
    /// // SAFETY: the same word, through the checked door.
    /// assert_eq!(unsafe { arena.atomic_u64(h, 0)? }.load(Ordering::Acquire), 42);
    /// # Ok::<(), parena::Error>(())
    /// ```
    #[inline]
    pub unsafe fn atomic_u64_at(&self, offset: u64) -> Result<&StdAtomicU64, Error> {
        if offset % WORD != 0 {
            return Err(Error::OutOfBounds {
                offset,
                len: WORD,
                limit: WORD,
                region: Region::Alignment,
            });
        }
        self.heap_range(offset, WORD)?;
        Ok(self.inner.mem.word(offset))
    }

    /// Bytes `at..at + len` of block `h`, without copying: part of a block whose other parts other
    /// threads use (a log segment whose written records are read while later ones are appended).
    ///
    /// # Errors
    /// As [`Arena::read`]: the handle is checked and the range must lie inside the block.
    ///
    /// # Safety
    /// While the returned slice lives, the block must not be freed, and no thread may write the
    /// range (through [`Arena::get_mut`], [`Arena::get_range_mut`], an atomic, or otherwise).
    ///
    /// ```
    /// let arena = parena::Options::new().capacity(1 << 16).heap()?;
    /// let h = arena.alloc_copy(b"key:value")?;
    /// // SAFETY: nothing frees or writes `h` while `v` lives.
    /// let v = unsafe { arena.get_range(h, 4, 5)? };
    /// assert_eq!(v, b"value");
    /// # Ok::<(), parena::Error>(())
    /// ```
    pub unsafe fn get_range(&self, h: Handle, at: usize, len: usize) -> Result<&[u8], Error> {
        let off = self.block_range(h, at as u64, len as u64)?;
        // SAFETY: inside a live, published block (checked); the caller keeps it from being freed
        // or written while the slice lives.
        Ok(unsafe { self.inner.mem.slice(off, len as u64) })
    }

    /// Bytes `at..at + len` of block `h`, writable, without copying: what threads appending to
    /// one shared block (a log segment) write their disjoint parts through.
    ///
    /// # Errors
    /// As [`Arena::get_range`], and [`Error::ReadOnly`].
    ///
    /// # Safety
    /// While the returned slice lives, the block must not be freed and no other reference to, or
    /// access of, the range may exist or happen (no overlapping `get_range_mut`, `get_range`,
    /// `get`, `get_mut`, `read`, atomic); other parts of the block may be used meanwhile.
    ///
    /// ```
    /// let arena = parena::Options::new().capacity(1 << 16).heap()?;
    /// let h = arena.alloc(8)?.into_handle();
    /// // SAFETY: the two ranges are disjoint and nothing else touches or frees `h` meanwhile.
    /// let (a, b) = unsafe { (arena.get_range_mut(h, 0, 4)?, arena.get_range_mut(h, 4, 4)?) };
    /// a.copy_from_slice(b"left");
    /// b.copy_from_slice(b"rght");
    /// let mut buf = [0u8; 8];
    /// arena.read(h, 0, &mut buf)?;
    /// assert_eq!(&buf, b"leftrght");
    /// # Ok::<(), parena::Error>(())
    /// ```
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get_range_mut(
        &self,
        h: Handle,
        at: usize,
        len: usize,
    ) -> Result<&mut [u8], Error> {
        if self.inner.read_only {
            return Err(Error::ReadOnly);
        }
        let off = self.block_range(h, at as u64, len as u64)?;
        // SAFETY: inside a live, published block of a writable arena (checked); exclusivity of the
        // range is the caller's contract.
        Ok(unsafe { self.inner.mem.slice_mut(off, len as u64) })
    }

    /// `len` bytes at arena offset `offset`, without checking which block they belong to: the fast
    /// path for immutable bytes of blocks the caller knows are live (the key of a skiplist node
    /// reached through links).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] when the range is not inside the heap (`data_start..heap_end`, the heap before the maps).
    ///
    /// # Safety
    /// The range must lie inside one live (published) block that is not freed while the slice
    /// lives, and no thread may write the range meanwhile. The generation is not checked.
    ///
    /// ```
    /// let arena = parena::Options::new().capacity(1 << 16).heap()?;
    /// let h = arena.alloc_copy(b"immutable key")?;
    /// // SAFETY: `h` is live, never written again and not freed while `k` lives.
    /// let k = unsafe { arena.bytes_at(arena.offset_of(h), 9)? };
    /// assert_eq!(k, b"immutable");
    /// # Ok::<(), parena::Error>(())
    /// ```
    #[inline]
    pub unsafe fn bytes_at(&self, offset: u64, len: usize) -> Result<&[u8], Error> {
        self.heap_range(offset, len as u64)?;
        // SAFETY: inside the heap (checked); the caller promises the range is one live block's
        // bytes that nobody writes or frees while the slice lives.
        Ok(unsafe { self.inner.mem.slice(offset, len as u64) })
    }
}

#[cfg(test)]
mod tests {
    use crate::sync::StdOrdering as Ordering;
    use crate::{Error, Options};

    #[test]
    fn checked_access_refuses_stale_and_out_of_range() {
        let arena = Options::new().capacity(1 << 16).heap().unwrap();
        let h = arena.alloc(24).unwrap().into_handle();
        // SAFETY: `h` is live for each call; results are dropped before the free.
        unsafe {
            assert!(arena.atomic_u64(h, 16).is_ok());
        }
        // SAFETY: as above.
        let past = unsafe { arena.atomic_u64(h, 24) };
        assert!(matches!(past, Err(Error::OutOfBounds { .. })));
        // SAFETY: as above.
        let range = unsafe { arena.get_range(h, 20, 5) };
        assert!(matches!(range, Err(Error::OutOfBounds { .. })));
        arena.free(h).unwrap();
        // SAFETY: the handle is stale; the call must refuse it.
        let stale = unsafe { arena.atomic_u64(h, 0) };
        assert!(matches!(stale, Err(Error::Stale { .. })));
        // SAFETY: as above.
        let stale = unsafe { arena.get_range_mut(h, 0, 8) };
        assert!(matches!(stale, Err(Error::Stale { .. })));
    }

    #[test]
    fn busy_block_is_refused() {
        let arena = Options::new().capacity(1 << 16).heap().unwrap();
        let b = arena.alloc(8).unwrap();
        let h = b.handle();
        // SAFETY: the call must refuse a pending block.
        let busy = unsafe { arena.atomic_u64(h, 0) };
        assert!(matches!(busy, Err(Error::Busy { .. })));
        drop(b);
        // SAFETY: live and only accessed atomically.
        let w = unsafe { arena.atomic_u64(h, 0) }.unwrap();
        w.store(7, Ordering::Relaxed);
        let mut buf = [0u8; 8];
        arena.read(h, 0, &mut buf).unwrap();
        assert_eq!(u64::from_ne_bytes(buf), 7);
    }

    #[test]
    fn unchecked_access_stays_inside_the_heap() {
        let arena = Options::new().capacity(1 << 16).heap().unwrap();
        // SAFETY: every call here must be refused before touching memory.
        unsafe {
            assert!(arena.atomic_u64_at(0).is_err());
        }
        // SAFETY: as above.
        unsafe {
            assert!(arena.atomic_u64_at(arena.capacity()).is_err());
        }
        // SAFETY: as above.
        unsafe {
            assert!(arena.bytes_at(arena.capacity() - 4, 8).is_err());
        }
        // SAFETY: as above.
        unsafe {
            assert!(arena.bytes_at(u64::MAX - 2, 8).is_err());
        }
        // SAFETY: as above.
        unsafe {
            assert!(arena.atomic_u64_at(arena.capacity() - 12).is_err());
        }
    }
}
