//! Roots, the user-reserved area, [`Stats`] and [`HeaderInfo`].

use super::Arena;
use crate::error::Error;
use crate::format::Freelist;
use crate::format::{
    decode_root_check, root_check, settled_root_check, HEADER_SIZE, OFF_DISCARDED, OFF_ROOTS,
    ROOT_SLOTS, ROOT_SLOT_BYTES,
};
use crate::heap::CounterSnapshot;
use crate::sync::Ordering;

/// Counters and sizes of an arena at one moment.
///
/// Two kinds of number, named apart: **file-wide** (`capacity`, `data_start`, `heap_end`, `allocated`,
/// `remaining`, `discarded`), read from the header, the same for every process that opens the
/// file; and **this process since open** (everything else), counted by the threads of this
/// process on this `Arena` (and its clones) and starting at zero at every open. Counting the
/// blocks a file holds takes a walk of its heap, which a clean open does not make (it is O(1) in
/// the arena's size): [`Arena::live_blocks`], [`Arena::verify`] and `parena inspect FILE` count
/// them, and after a recovering open [`Arena::recovery_report`] has the count.
/// `net_blocks` and `net_bytes` are this process's allocations minus its frees, so after a reopen
/// they start at 0, and go below 0 when blocks that were in the file at open are freed.
///
/// ```
/// let arena = parena::Options::new().capacity(1 << 20).heap()?;
/// let h = arena.alloc(100)?.into_handle();
/// let s = arena.stats();
/// assert_eq!((s.allocations, s.net_blocks, s.net_bytes), (1, 1, 100));
/// arena.free(h)?;
/// assert_eq!(arena.stats().net_blocks, 0);
/// # Ok::<(), parena::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// File-wide: total bytes, header included.
    pub capacity: u64,
    /// File-wide: first heap byte.
    pub data_start: u64,
    /// File-wide: end of the heap. The live and flush maps (1/16 of the capacity, rounded up to
    /// a page) fill `heap_end..capacity`.
    pub heap_end: u64,
    /// File-wide: heap bytes reserved so far (`bump - data_start`).
    pub allocated: u64,
    /// File-wide: heap bytes never reserved (`heap_end - bump`).
    pub remaining: u64,
    /// This process since open: allocations minus frees. Not the number of blocks in the arena:
    /// blocks that were in the file at open are not counted, and freeing one counts -1 (see
    /// above).
    pub net_blocks: i64,
    /// This process since open: bytes allocated minus bytes freed (as requested).
    pub net_bytes: i64,
    /// File-wide: bytes in fillers and remainders too small to list, and chunk tails given up.
    pub discarded: u64,
    /// This process since open: successful allocations.
    pub allocations: u64,
    /// Of which served by bumping.
    pub from_bump: u64,
    /// Of which served from the free lists directly (spans above 512 bytes, or any span once
    /// the main memory is used up).
    pub from_freelist: u64,
    /// Of which served from a per-thread cache of freed blocks: the thread's own frees, and the
    /// batches of the shared lists an empty cache takes before the thread bumps (spans up to 512
    /// bytes).
    pub from_cache: u64,
    /// This process since open: frees.
    pub frees: u64,
    /// Frees that moved a bump offset back.
    pub rewinds: u64,
    /// Allocations refused with `Full`.
    pub failures: u64,
    /// Free segments merged into a physically adjacent one by coalescing passes (run when an
    /// allocation found the main memory and the free lists exhausted).
    pub coalesced: u64,
}

impl Arena {
    /// Root slot `i` (`0..ROOT_SLOTS`), persisted in the header: where a structure keeps its entry
    /// point (a head node's offset, a sequence number).
    ///
    /// # Panics
    /// If `i >= ROOT_SLOTS` (a slot number is a constant of the program; [`Arena::try_root`]
    /// returns an error instead).
    pub fn root(&self, i: usize) -> u64 {
        assert!(i < ROOT_SLOTS, "root slot {i} out of 0..{ROOT_SLOTS}");
        self.load_root(i)
    }

    /// Root slot `i`, or [`Error::OutOfBounds`] when `i >= ROOT_SLOTS`: [`Arena::root`] for a slot
    /// number that comes from data.
    ///
    /// ```
    /// let arena = parena::Options::new().capacity(1 << 20).heap()?;
    /// assert_eq!(arena.try_root(0)?, 0);
    /// assert!(arena.try_root(parena::ROOT_SLOTS).is_err());
    /// # Ok::<(), parena::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] for a slot past the last.
    pub fn try_root(&self, i: usize) -> Result<u64, Error> {
        root_slot(i)?;
        Ok(self.load_root(i))
    }

    fn load_root(&self, i: usize) -> u64 {
        // Acquire: pairs with the Release in `set_root`; what was published through the root is
        // visible.
        self.inner
            .mem
            .word(OFF_ROOTS + ROOT_SLOT_BYTES * i as u64)
            .load(Ordering::Acquire)
    }

    /// Sets root slot `i`.
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; [`Error::OutOfBounds`] if `i >= ROOT_SLOTS`.
    pub fn set_root(&self, i: usize, value: u64) -> Result<(), Error> {
        // SeqCst (at least the Release `root` pairs with): see `root_update`.
        self.root_update(i, |w| w.store(value, Ordering::SeqCst))
    }

    /// Compare-and-swap on root slot `i`; returns the previous value on failure.
    ///
    /// # Errors
    /// As [`Arena::set_root`]; `Ok(Err(found))` when the slot did not hold `current`.
    pub fn compare_exchange_root(
        &self,
        i: usize,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, Error> {
        // SeqCst (at least the AcqRel of publishing like `set_root` and observing like `root`):
        // see `root_update`.
        self.root_update(i, |w| {
            w.compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
        })
    }

    /// Runs `store` on root slot `i`'s value word inside the check-word protocol
    /// (docs/format.md, *Root slots*): raise the in-flight count `n`, store, then lower `n`, and
    /// when it reaches 0 write the CRC of the value read just before. Lock-free: each CAS fails
    /// only when another store changed the word. All SeqCst: the settle step reads two words
    /// (check, then value) and relies on one total order with every store's raise and value
    /// store to know that no store is in flight between its read of the value and its CAS.
    fn root_update<R>(
        &self,
        i: usize,
        store: impl FnOnce(&crate::sync::AtomicU64) -> R,
    ) -> Result<R, Error> {
        self.inner.writable()?;
        let off = root_slot(i)?;
        let (value, check) = (self.inner.mem.word(off), self.inner.mem.word(off + 8));
        // A damaged check word counts no store in flight: this store rewrites it.
        let parts = |c: u64| decode_root_check(c).unwrap_or((0, 0));
        let mut c = check.load(Ordering::SeqCst);
        loop {
            let (crc, n) = parts(c);
            match check.compare_exchange_weak(
                c,
                root_check(crc, n + 1),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        let r = store(value);
        let mut c = check.load(Ordering::SeqCst);
        loop {
            let v = value.load(Ordering::SeqCst);
            let (crc, n) = parts(c);
            let next = match n.saturating_sub(1) {
                0 => settled_root_check(i, v),
                n => root_check(crc, n),
            };
            match check.compare_exchange(c, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        Ok(r)
    }

    /// Length of the user-reserved area.
    pub fn reserved_len(&self) -> usize {
        self.inner.geom.reserved_len as usize
    }

    /// The user-reserved area. Writing it needs the only clone ([`Arena::reserved_mut`]), so
    /// nothing writes it while this borrow lives.
    pub fn reserved(&self) -> &[u8] {
        // SAFETY: written only through `reserved_mut`, which needs `&mut` on the only clone, so
        // never while `&self` is borrowed from any clone.
        unsafe {
            self.inner
                .mem
                .slice(HEADER_SIZE, self.inner.geom.reserved_len.into())
        }
    }

    /// The user-reserved area, writable.
    ///
    /// # Errors
    /// [`Error::Shared`] if other clones exist; [`Error::ReadOnly`].
    pub fn reserved_mut(&mut self) -> Result<&mut [u8], Error> {
        let inner = self.exclusive()?;
        if inner.read_only {
            return Err(Error::ReadOnly);
        }
        // SAFETY: `get_mut` proved this is the only clone and we hold it mutably.
        Ok(unsafe {
            inner
                .mem
                .slice_mut(HEADER_SIZE, inner.geom.reserved_len.into())
        })
    }

    /// Counters and sizes now.
    pub fn stats(&self) -> Stats {
        crate::reentry::audit_op!();
        let inner = &*self.inner;
        // The end first: the bump offset read after it is at most the end (a growth step raises
        // the end before any chunk past the old one is reserved).
        let heap_end = inner.heap_end();
        let capacity = inner.capacity();
        let bump = inner.bump();
        let mut s = Stats {
            capacity: capacity.max(heap_end),
            data_start: inner.geom.data_start,
            heap_end,
            allocated: bump - inner.geom.data_start,
            remaining: heap_end.saturating_sub(bump),
            discarded: inner.mem.word(OFF_DISCARDED).load(Ordering::Relaxed),
            ..Stats::default()
        };
        // A fold over the registry's lock-free list, not a copy of it: `stats` allocates nothing
        // (invariant A, `reentry.rs`), so it is safe on `GlobalArena::arena()`.
        let k = inner.cells.fold(CounterSnapshot::default(), |k, c| {
            k.add(c.counters().snapshot())
        });
        s.allocations = k.allocs;
        s.from_freelist = k.from_freelist;
        s.from_cache = k.from_cache;
        s.frees = k.frees;
        s.failures = k.failures;
        s.rewinds = k.rewinds;
        s.coalesced = k.coalesced;
        s.from_bump = s.allocations.saturating_sub(s.from_freelist + s.from_cache);
        s.net_blocks = s.allocations.wrapping_sub(s.frees) as i64;
        s.net_bytes = k.alloc_bytes.wrapping_sub(k.free_bytes) as i64;
        s
    }
}

/// The header of an open arena, as [`Arena::header`] reads it: for inspection and debugging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderInfo {
    /// Format version of the file.
    pub format_version: u32,
    /// The user's magic version.
    pub magic_version: u16,
    /// Freelist policy.
    pub freelist: Freelist,
    /// Per-thread chunk size in bytes.
    pub chunk_size: u64,
    /// Length of the user-reserved area.
    pub reserved_len: u32,
    /// Smallest listed free segment.
    pub min_segment: u32,
    /// File-wide: first heap byte.
    pub data_start: u64,
    /// Random id set at create.
    pub arena_id: u64,
    /// Total bytes.
    pub capacity: u64,
    /// The most the arena grows to: `Options::max_capacity` of a growable arena (format version
    /// 5, whose start and flush maps lie before `data_start`), the capacity of any other. (A
    /// read-only or `map_copy` open of a growable arena does not grow: see
    /// [`Arena::max_capacity`].)
    pub max_capacity: u64,
    /// The unit a handle counts its offset in, and every block's least alignment: 8 bytes, or
    /// 16 to 256 in a growable arena whose maximum is above 32 GiB ([`Arena::offset_unit`]).
    pub offset_unit: u64,
    /// The open trusted the header as a clean close sealed it: the same fact as
    /// [`Arena::was_clean`], fixed at open (a writable open then marks the file dirty on disk,
    /// which this does not follow). `false` after a crash and after damage to the sealed header
    /// (a CLEAN state word whose checksum fails; the recovery report and `verify()` name it).
    pub clean: bool,
    /// Writable opens so far.
    pub open_count: u64,
    /// End of the reserved heap.
    pub bump: u64,
    /// Heap at or past this offset was never written.
    pub high_water: u64,
    /// Bytes counted as discarded.
    pub discarded: u64,
    /// The persisted root slots.
    pub roots: [u64; ROOT_SLOTS],
}

impl Arena {
    /// The header's fields now.
    pub fn header(&self) -> HeaderInfo {
        let h = self.inner.header_snapshot();
        HeaderInfo {
            format_version: h.format_version,
            magic_version: h.magic_version,
            freelist: self.inner.geom.freelist,
            chunk_size: self.inner.geom.chunk(),
            reserved_len: h.reserved_len,
            min_segment: h.min_segment,
            data_start: h.data_start,
            arena_id: h.arena_id,
            capacity: h.capacity,
            max_capacity: if self.inner.geom.growable() {
                self.inner.geom.max_capacity
            } else {
                h.capacity
            },
            offset_unit: self.inner.unit(),
            clean: self.inner.was_clean,
            open_count: h.open_count,
            bump: h.bump,
            high_water: h.high_water,
            discarded: h.discarded,
            roots: h.roots.map(|[value, _]| value),
        }
    }
}

impl Stats {
    /// Share of allocations served by a per-thread cache (0 when there were none).
    pub fn cache_hit_rate(&self) -> f64 {
        if self.allocations == 0 {
            0.0
        } else {
            self.from_cache as f64 / self.allocations as f64
        }
    }
}

/// The header offset of root slot `i`, or [`Error::OutOfBounds`] past the last slot.
fn root_slot(i: usize) -> Result<u64, Error> {
    if i >= ROOT_SLOTS {
        return Err(Error::OutOfBounds {
            offset: i as u64,
            len: 1,
            limit: ROOT_SLOTS as u64,
            region: crate::error::Region::RootSlots,
        });
    }
    Ok(OFF_ROOTS + ROOT_SLOT_BYTES * i as u64)
}

impl super::Inner {
    /// Settles every root slot with a store in flight (a crash's leftover, or a fork's copy of a
    /// parent's store): its check word becomes the CRC of its value. Exclusive callers only (a
    /// writable open, the close), when no store of this process can be in flight.
    pub(super) fn settle_roots(&self) {
        for i in 0..ROOT_SLOTS {
            let off = OFF_ROOTS + ROOT_SLOT_BYTES * i as u64;
            let check = self.mem.word(off + 8);
            if let Some((_, n)) = decode_root_check(check.load(Ordering::Relaxed)) {
                if n > 0 {
                    let v = self.mem.word(off).load(Ordering::Relaxed);
                    check.store(settled_root_check(i, v), Ordering::Relaxed);
                }
            }
        }
    }
}
