//! Growth while the arena is shared (docs/metadata.md, section 12): a growable arena (one made
//! with `Options::max_capacity`) raises its capacity in steps, one at a time, while other threads
//! allocate, read and free.
//!
//! A step takes the arena from `c` to `c2`, in the order section 12.2 argues: the backing grows
//! (a file is extended and its new length synced; the map over it already spans `c2`), the four
//! maps' words covering `c..c2` already read zero (rule M: the open zeroed every word past the
//! capacity, and no bit is set past the file's length), the header's `capacity` word is stored, and then the
//! heap's end is published with `Release`. The next `flush()` writes a meta slot with `c2`.
//! Nothing a thread can reach moves: the base, the maps and every block stay where they are.
//!
//! ## Orderings
//!
//! | word | op | ordering | why |
//! | --- | --- | --- | --- |
//! | `growing` (the step flag) | CAS / store | Acquire / Release | one step at a time; a step starts after the previous one ended |
//! | `growing` (a waiter) | load | Acquire | pairs with the store that ends the step: its end is published before the waiter retries |
//! | `heap_end` | store | Release | the backing's length (and, for the maps, the open's zeroing) happen before a reservation that sees the new end |
//! | `heap_end` | load | Acquire | the chunk reservation and the bounds checks: the range below the end they read is usable |
//! | `capacity` | store / load | Relaxed / Acquire | stored before `heap_end`'s Release; read by a flush for its meta slot |

use super::coalesce::wait_while_held;
use super::{Arena, Inner};
use crate::error::Error;
use crate::format::{DATA_ALIGN, OFF_CAPACITY};
use crate::layout::align_up;
use crate::reentry::{in_step, Step};
use crate::sync::{AtomicU64, Ordering};

/// The least a step triggered by an allocation adds: 1 MiB, or an eighth of the capacity when
/// that is more (so the number of steps grows with the logarithm of the size).
const MIN_STEP: u64 = 1 << 20;

impl Arena {
    /// Grows the arena to at least `new_capacity` bytes (rounded up to 4096) while it stays in
    /// use: other threads keep allocating, reading and freeing, and every block, `&[u8]` and
    /// pointer into the arena stays valid (the base never moves). A file arena's file is extended
    /// (and its blocks reserved, with `Options::preallocate`) before anything names the new
    /// bytes; the next [`Arena::flush`] makes the new capacity durable. A capacity at or below
    /// the current one changes nothing.
    ///
    /// Allocations grow a growable arena by themselves when they find the heap used up; this
    /// call grows it ahead of need.
    ///
    /// # Errors
    /// [`Error::Full`] when `new_capacity` is past the arena's `max_capacity` (an arena made
    /// without [`Options::max_capacity`](crate::Options::max_capacity) cannot grow while open);
    /// [`Error::NoSpace`] when the file cannot be extended (a full disk, a quota, a file-size
    /// limit): nothing changed, and the arena keeps working at its capacity;
    /// [`Error::ReadOnly`], [`Error::Forked`].
    pub fn grow(&self, new_capacity: u64) -> Result<(), Error> {
        crate::reentry::audit_op!();
        let inner = &*self.inner;
        inner.writable()?;
        let full = || Error::Full {
            requested: new_capacity,
            available: inner.heap_end().saturating_sub(inner.bump()),
        };
        let want = align_up(new_capacity, DATA_ALIGN).ok_or_else(full)?;
        if want <= inner.capacity() {
            return Ok(());
        }
        if want > inner.max_capacity() {
            return Err(full());
        }
        inner.grow_to(want).map(|_| ())
    }

    /// The most this arena can grow to while open: `Options::max_capacity` for a growable arena,
    /// else its capacity.
    pub fn max_capacity(&self) -> u64 {
        self.inner.max_capacity()
    }
}

impl Inner {
    /// See [`Arena::max_capacity`]. A growable arena opened as a private copy (`map_copy`) or
    /// read-only holds no more address space than its capacity, and cannot grow either.
    pub(super) fn max_capacity(&self) -> u64 {
        if self.geom.growable() {
            self.geom.max_capacity.min(self.mem.reserved())
        } else {
            self.capacity()
        }
    }

    /// For an allocation that found the heap used up (the bump offset, the free lists): grows a
    /// growable arena by a step that holds `need` more bytes past the bump offset's next chunk
    /// line, or waits for the step another thread runs. Returns whether the heap now holds them
    /// (the caller tries again: each retry finds the end or the bump offset higher than the last,
    /// both bounded by `max_capacity`); `false` for an arena that cannot grow, when they would
    /// end past `max_capacity`, or when the call re-entered parena from inside a step of this
    /// thread (invariant A: it never waits for itself).
    ///
    /// # Errors
    /// [`Error::NoSpace`] when the file cannot be extended; nothing changed.
    #[cold]
    #[inline(never)]
    pub(super) fn grow_for(&self, need: u64) -> Result<bool, Error> {
        if !self.geom.growable() || in_step() {
            return Ok(false);
        }
        let end = self.heap_end();
        let max = self.max_capacity();
        // Where the next reservation starts, and the end it needs.
        let least = self
            .geom
            .chunk_line_from(self.bump().max(self.geom.data_start))
            .and_then(|line| line.checked_add(need));
        let Some(least) = least.filter(|&l| l <= max) else {
            return Ok(false);
        };
        if least <= end {
            // Another thread grew the heap since the allocation looked.
            return Ok(true);
        }
        let step = (end / 8).max(MIN_STEP);
        let target = least.max(end.saturating_add(step));
        let target = align_up(target, DATA_ALIGN).map_or(max, |t| t.min(max));
        self.grow_to(target)?;
        Ok(true)
    }

    /// Grows to at least `want` (a multiple of 4096, at most `max_capacity`): runs the step, or
    /// waits for the one another thread of this process runs and tries again.
    pub(super) fn grow_to(&self, want: u64) -> Result<(), Error> {
        debug_assert!(self.geom.growable() && want <= self.max_capacity());
        let _step = Step::enter();
        let me = crate::fork::epoch();
        loop {
            let end = self.heap_end();
            if end >= want {
                return Ok(());
            }
            // Relaxed: the CAS below orders the step.
            let held = self.growing.load(Ordering::Relaxed);
            if held == me {
                // A thread of this process runs a step: wait for it to end (the Acquire pairs
                // with the Release that ends it), then look again.
                wait_while_held(&self.growing, me);
                continue;
            }
            // A flag of another fork epoch was taken before a fork by a thread this process does
            // not have: its step never ends here, so it is taken over (as a coalescing pass is).
            // Acquire: this step starts after the previous one ended.
            if self
                .growing
                .compare_exchange(held, me, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let _flag = StepFlag(&self.growing);
            // Relaxed: only the holder of the flag stores the end.
            let end = self.heap_end.load(Ordering::Relaxed);
            if end >= want {
                return Ok(());
            }
            return self.grow_step(end, want, STORES);
        }
    }

    /// One growth step from `old` to `new` (docs/metadata.md, 12.2, steps 1 to 5). The caller
    /// holds the step flag. Runs the step's first `stores` stores of [`STORES`] (all of them but
    /// in the tests' [`Arena::grow_stopped_after`]).
    fn grow_step(&self, old: u64, new: u64, stores: u8) -> Result<(), Error> {
        // 1 and 2: the file is extended and its length synced (or the reservation's pages made
        // usable); a failure changes nothing the arena reads.
        if stores < 1 {
            return Ok(());
        }
        self.mem.grow(new, self.preallocate)?;
        // 3: the maps' words for the new range already read zero: no bit is ever set past the
        // file's length, and the open zeroed those past the capacity (docs/metadata.md, 12.2,
        // rule M). Reading them would fault in 1/16 of the step.
        if stores < 2 {
            return Ok(());
        }
        debug_assert!(self
            .start_map()
            .first_start_in(old, new.min(old + 4096))
            .is_none());
        // 4: the header names the new capacity (never more than the file holds: step 1 synced).
        if stores < 3 {
            return Ok(());
        }
        self.mem.word(OFF_CAPACITY).store(new, Ordering::Relaxed);
        if stores < STORES {
            return Ok(());
        }
        self.capacity.store(new, Ordering::Relaxed);
        // 5: publish. Release: the backing's length, the zeroed map words and the capacity happen
        // before any reservation that sees the new end (its Acquire load).
        self.heap_end.store(new, Ordering::Release);
        Ok(())
    }
}

/// The stores of one growth step (docs/metadata.md, 12.2): the backing grown (step 1, with
/// step 2), the new range's map words zeroed (3), the header's `capacity` word (4), and the
/// arena's own capacity and heap end published (5).
const STORES: u8 = 4;

#[cfg(feature = "testkit")]
impl Arena {
    /// Tests only: runs the first `stores` stores (0 to 4) of a growth step to `new_capacity`
    /// (docs/metadata.md, 12.2: the backing grown, the new range's map words zeroed, the
    /// header's `capacity` word, the heap end published) and stops there, as a `kill -9` after
    /// that store would. With fewer than 4 the arena is left mid-step: take its crash image and
    /// drop it; nothing else may use it.
    ///
    /// # Errors
    /// As [`Arena::grow`]; [`Error::Full`] also when `new_capacity` is not above the capacity.
    #[doc(hidden)]
    pub fn grow_stopped_after(&self, stores: u8, new_capacity: u64) -> Result<(), Error> {
        let inner = &*self.inner;
        inner.writable()?;
        let want = align_up(new_capacity, DATA_ALIGN).filter(|&w| {
            w > inner.capacity() && w <= inner.max_capacity() && inner.geom.growable()
        });
        let Some(want) = want else {
            return Err(Error::Full {
                requested: new_capacity,
                available: inner.heap_end().saturating_sub(inner.bump()),
            });
        };
        // One thread calls this, with no other step in flight (a test's single thread).
        // Acquire: as in `grow_to`.
        let me = crate::fork::epoch();
        inner
            .growing
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .map_err(|_| Error::Full {
                requested: new_capacity,
                available: 0,
            })?;
        let _flag = StepFlag(&inner.growing);
        inner.grow_step(inner.heap_end(), want, stores.min(STORES))
    }
}

/// Ends a growth step when dropped (also when it returns early or unwinds), so threads waiting
/// for it never wait forever.
struct StepFlag<'a>(&'a AtomicU64);

impl Drop for StepFlag<'_> {
    fn drop(&mut self) {
        // Release: the step's stores happen before the waiters' retries and the next step.
        self.0.store(0, Ordering::Release);
    }
}
