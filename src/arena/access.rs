//! Access through a handle: `free`, `read`, `read_with`, reader pins, `get`, `contains`, `len_of`
//! (each starts with the handle check in `check.rs`).

use super::check::{CheckSlot, Live, Mode};
use super::{Arena, Inner};
use crate::block::{self, BlockHeader, Handle, HeaderWord, LiveState};
use crate::cells::with_cell;
use crate::error::Error;
use crate::heap::LiveWord;
use crate::layout::WORD;
use crate::sync::{spin_hint, yield_now};

/// How many times `read` re-checks a block whose reader count is full before it answers `Busy`.
const SATURATED_ROUNDS: u32 = 1 << 16;

impl Arena {
    /// Frees the block `h` names.
    ///
    /// # Errors
    /// [`Error::Stale`] when `h` no longer names a live block; [`Error::DoubleFree`] when the
    /// block was already freed; [`Error::Busy`] while its [`BlockMut`](crate::BlockMut) is alive;
    /// [`Error::OutOfBounds`] for an offset outside the heap; [`Error::ReadOnly`]. Nothing
    /// changes when an error is returned.
    pub fn free(&self, h: Handle) -> Result<(), Error> {
        crate::reentry::audit_op!();
        self.free_as(h, Mode::Free)
    }

    /// `free` for a handle API call (`Mode::Free`) or for the allocator interfaces' own
    /// deallocation (`Mode::Foreign`).
    pub(crate) fn free_as(&self, h: Handle, mode: Mode) -> Result<(), Error> {
        let inner = &*self.inner;
        if inner.write_gate {
            inner.writable()?;
        }
        with_cell(inner.uid, self.lane(), &inner.cells, |cell| {
            let _slot = CheckSlot::hold(cell, h);
            let Live {
                hdr,
                word: mut cur,
                mut len,
                mut readers,
            } = inner.live(h, mode)?;
            let w = LiveWord::at(&inner.mem, hdr);
            loop {
                match w.try_mark_dying(cur) {
                    Ok(_) => {
                        if readers == 0 {
                            inner.release(cell, hdr, len, h.generation());
                        }
                        // Otherwise the last reader to leave releases the block.
                        return Ok(());
                    }
                    Err(now) => {
                        cur = now;
                        inner.still_start(hdr, h)?;
                        (len, readers) = inner.check_live(hdr, cur, h, mode)?;
                    }
                }
            }
        })
    }

    /// Copies bytes `offset..offset + buf.len()` of block `h` into `buf`.
    ///
    /// The block is pinned while it is copied, so a concurrent `free` waits for the copy to finish
    /// before the bytes can be reused: the copy never sees another block's bytes.
    ///
    /// # Errors
    /// As [`Arena::free`] for the handle, and [`Error::OutOfBounds`] when the range is not inside
    /// the block.
    pub fn read(&self, h: Handle, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.read_with(h, |bytes| {
            let end = (offset as u64).checked_add(buf.len() as u64);
            match end {
                Some(e) if e <= bytes.len() as u64 => {
                    buf.copy_from_slice(&bytes[offset..offset + buf.len()]);
                    Ok(())
                }
                _ => Err(Error::OutOfBounds {
                    offset: offset as u64,
                    len: buf.len() as u64,
                    limit: bytes.len() as u64,
                    region: crate::error::Region::Block,
                }),
            }
        })?
    }

    /// Runs `f` on the bytes of block `h`, pinned: a concurrent `free` of the block waits for
    /// `f` to return before its bytes can be reused, so `f` never sees another block's bytes.
    ///
    /// One header check and one pin for the whole block, where [`Arena::len_of`] followed by
    /// [`Arena::read`] takes two of each. Keep `f` short: a block has room for 7 pins at a
    /// time (more readers wait for one to leave), and a pin held long delays the reuse of a freed
    /// block.
    ///
    /// # Errors
    /// As [`Arena::free`] for the handle.
    ///
    /// ```
    /// let arena = parena::Options::new().capacity(1 << 16).heap()?;
    /// let h = arena.alloc_copy(b"hello")?;
    /// let mut out = Vec::new();
    /// arena.read_with(h, |bytes| out.extend_from_slice(bytes))?;
    /// assert_eq!(out, b"hello");
    /// arena.free(h)?;
    /// assert!(arena.read_with(h, |bytes| bytes.len()).is_err());
    /// # Ok::<(), parena::Error>(())
    /// ```
    #[inline]
    pub fn read_with<R>(&self, h: Handle, f: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        let pin = self.pin(h)?;
        // SAFETY: the block is live and published (checked by `pin`), and pinned until `pin`
        // drops (after `f` returns or unwinds): no `BlockMut` exists for it, `free` leaves its
        // bytes alone while a pin is held, and a read-only arena never frees or writes.
        let bytes = unsafe { self.inner.mem.slice(pin.hdr + WORD, pin.len) };
        Ok(f(bytes))
    }

    /// Pins the live block `h` (on a read-only arena, only checks it).
    ///
    /// The common case is inlined into the caller: a small PUBLISHED block with room for one more
    /// reader, pinned by the first CAS. Everything else (a read-only arena, a LARGE block, a full
    /// reader count, a CAS that lost to another change of the header word, every error) goes
    /// round [`Arena::pin_slow`], which starts over. A `Result<ReadPin, Error>` returned from a
    /// call through the stack cost a store-forwarding stall per read (docs/performance.md).
    #[inline(always)]
    fn pin(&self, h: Handle) -> Result<ReadPin<'_>, Error> {
        let inner = &*self.inner;
        if !inner.read_only {
            let fast = if inner.coalesce_on {
                with_cell(inner.uid, self.lane(), &inner.cells, |cell| {
                    let _slot = CheckSlot::hold(cell, h);
                    self.pin_once(h)
                })
            } else {
                self.pin_once(h)
            };
            if let Some((hdr, len)) = fast {
                return Ok(ReadPin {
                    arena: self,
                    hdr,
                    len,
                    generation: Some(h.generation()),
                });
            }
        }
        self.pin_slow(h)
    }

    /// One try at [`Arena::pin`]'s common case, with the check slot held when coalescing passes
    /// can run: the handle check, then one CAS adding a reader. The pinned block's header offset
    /// and length (a small block's: exact), or `None` for anything else (the caller then starts
    /// over in [`Arena::pin_slow`]).
    #[inline(always)]
    fn pin_once(&self, h: Handle) -> Option<(u64, u64)> {
        let inner = &*self.inner;
        let Ok(Live {
            hdr,
            word,
            len,
            readers,
        }) = inner.live(h, Mode::Read)
        else {
            return None;
        };
        if readers == block::MAX_READERS || block::is_large(word) {
            return None;
        }
        LiveWord::at(&inner.mem, hdr)
            .try_pin(word)
            .ok()
            .map(|_| (hdr, len))
    }

    /// [`Arena::pin`] from the start, for every case its inlined try leaves.
    #[cold]
    #[inline(never)]
    fn pin_slow(&self, h: Handle) -> Result<ReadPin<'_>, Error> {
        let inner = &*self.inner;
        if inner.read_only {
            // Nothing can free, merge or write a block of a read-only arena: the shared file lock
            // keeps every writer out, and this process refuses writes. No pin and no check slot
            // needed.
            let Live { hdr, word, len, .. } = inner.live(h, Mode::Read)?;
            let len = inner.exact_len(hdr, word, len)?;
            return Ok(ReadPin {
                arena: self,
                hdr,
                len,
                generation: None,
            });
        }
        if !inner.coalesce_on {
            // No coalescing pass can run: nothing merges a start away while the arena is shared,
            // so no check slot is needed (see `CheckSlot`).
            return self.pin_held(h);
        }
        with_cell(inner.uid, self.lane(), &inner.cells, |cell| {
            let _slot = CheckSlot::hold(cell, h);
            self.pin_held(h)
        })
    }

    /// [`Arena::pin`] of a writable arena, with the calling thread's check slot held (when
    /// coalescing passes can run).
    fn pin_held(&self, h: Handle) -> Result<ReadPin<'_>, Error> {
        let inner = &*self.inner;
        let Live {
            hdr,
            word: mut cur,
            mut len,
            mut readers,
        } = inner.live(h, Mode::Read)?;
        let w = LiveWord::at(&inner.mem, hdr);
        let mut saturated = 0u32;
        loop {
            if readers == block::MAX_READERS {
                // Wait for a reader to leave; readers leave after one copy, so this is short.
                // A count that never moves (a damaged header in a file trusted as clean, or
                // readers of a crashed process) is not waited on forever.
                saturated += 1;
                if saturated > SATURATED_ROUNDS {
                    return Err(Error::Busy { offset: h.offset() });
                }
                if saturated > 64 {
                    yield_now();
                } else {
                    spin_hint();
                }
                crate::hook::full_readers_wait(h.offset());
                inner.still_start(hdr, h)?;
                cur = inner.header_acquire(hdr);
                (len, readers) = inner.check_live(hdr, cur, h, Mode::Read)?;
                continue;
            }
            match w.try_pin(cur) {
                Ok(_) => {
                    let mut pin = ReadPin {
                        arena: self,
                        hdr,
                        len,
                        generation: Some(h.generation()),
                    };
                    // A LARGE block's exact length is in its tail word, read under the pin
                    // (the block cannot be released meanwhile); a bad tail unpins on return.
                    pin.len = inner.exact_len(hdr, cur, len)?;
                    return Ok(pin);
                }
                Err(now) => {
                    cur = now;
                    inner.still_start(hdr, h)?;
                    (len, readers) = inner.check_live(hdr, cur, h, Mode::Read)?;
                }
            }
        }
    }

    /// The bytes of block `h`, without copying.
    ///
    /// # Errors
    /// As [`Arena::read`].
    ///
    /// # Safety
    /// While the returned slice lives, the caller must make sure the block is not freed (by any
    /// thread, through any clone of the arena) and not written through [`Arena::get_mut`].
    ///
    /// ```
    /// let arena = parena::Options::new().capacity(1 << 16).heap()?;
    /// let h = arena.alloc_copy(b"abc")?;
    /// // SAFETY: nothing frees or writes `h` while `bytes` lives.
    /// let bytes = unsafe { arena.get(h)? };
    /// assert_eq!(bytes, b"abc");
    /// # Ok::<(), parena::Error>(())
    /// ```
    pub unsafe fn get(&self, h: Handle) -> Result<&[u8], Error> {
        let inner = &*self.inner;
        let Live { hdr, word, len, .. } = self.checked(h)?;
        // The caller keeps the block from being freed, so its tail word stays its own.
        let len = inner.exact_len(hdr, word, len)?;
        // SAFETY: the block is live and published; the caller keeps it from being freed or written.
        Ok(unsafe { inner.mem.slice(hdr + WORD, len) })
    }

    /// The bytes of block `h`, mutably, without copying.
    ///
    /// # Errors
    /// As [`Arena::read`], and [`Error::ReadOnly`].
    ///
    /// # Safety
    /// While the returned slice lives, the caller must make sure no other reference to the block's
    /// bytes exists or is created (no `get`, `get_mut`, `read`) and the block is not freed.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get_mut(&self, h: Handle) -> Result<&mut [u8], Error> {
        let inner = &*self.inner;
        if inner.read_only {
            return Err(Error::ReadOnly);
        }
        let Live { hdr, word, len, .. } = self.checked(h)?;
        // The caller keeps the block from being freed, so its tail word stays its own.
        let len = inner.exact_len(hdr, word, len)?;
        // SAFETY: live and published; exclusivity is the caller's contract.
        Ok(unsafe { inner.mem.slice_mut(hdr + WORD, len) })
    }

    /// Whether `h` names a live, published block.
    pub fn contains(&self, h: Handle) -> bool {
        self.checked(h).is_ok()
    }

    /// The length of block `h`.
    ///
    /// # Errors
    /// As [`Arena::read`].
    pub fn len_of(&self, h: Handle) -> Result<usize, Error> {
        let l = self.checked(h)?;
        if block::is_large(l.word) {
            // The exact length is in the block's tail word: read it under a pin, so the block
            // cannot be freed and its bytes reused while the word is read.
            return self.read_with(h, <[u8]>::len);
        }
        Ok(l.len as usize)
    }
}

impl Inner {
    /// Leaves a block pinned by `read`; the last reader of a block freed meanwhile releases it.
    ///
    /// Inlined: one CAS removing the reader, when the block is not waiting on its last reader to
    /// be released. Anything else goes round [`Inner::unpin_slow`].
    #[inline(always)]
    pub(super) fn unpin(&self, hdr: u64, generation: u32, lane: usize) {
        let w = LiveWord::at(&self.mem, hdr);
        let cur = w.load_relaxed();
        if !BlockHeader(cur).is_dying_with_last_reader() && w.try_unpin(cur).is_ok() {
            return;
        }
        self.unpin_slow(hdr, generation, lane);
    }

    /// [`Inner::unpin`] from the start: the CAS until it lands, then the release of a block freed
    /// while pinned, by its last reader.
    #[cold]
    #[inline(never)]
    fn unpin_slow(&self, hdr: u64, generation: u32, lane: usize) {
        let w = LiveWord::at(&self.mem, hdr);
        let mut cur = w.load_relaxed();
        // Release: our copy happens before the block's reuse; pairs with the Acquire CAS in
        // `free` (or with the Acquire when we are the one to release it): `heap::state`.
        while let Err(now) = w.try_unpin(cur) {
            cur = now;
        }
        if let HeaderWord::Live {
            len,
            state: LiveState::Dying,
            readers: 1,
            ..
        } = block::decode(cur)
        {
            with_cell(self.uid, lane, &self.cells, |cell| {
                self.release(cell, hdr, len, generation)
            });
        }
    }
}

/// A reader's pin on a block, from `Arena::pin`; unpins on drop (also when the reader unwinds).
struct ReadPin<'a> {
    arena: &'a Arena,
    hdr: u64,
    len: u64,
    /// The block's generation; `None` when nothing was pinned (a read-only arena).
    generation: Option<u32>,
}

impl Drop for ReadPin<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(generation) = self.generation {
            self.arena
                .inner
                .unpin(self.hdr, generation, self.arena.lane());
        }
    }
}
