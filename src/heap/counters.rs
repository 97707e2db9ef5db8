//! A chunk cell's [`Counters`]: one method per event its owner counts, and the sums `Arena::stats`
//! and the coalescing pass's rate limit read.

use crate::sync::{AtomicU64, Ordering};

/// A count only its owner thread writes: a `Relaxed` load and store, no read-modify-write on the
/// hot path. Wraps.
#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    #[inline]
    fn add(&self, n: u64) {
        let c = &self.0;
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    #[inline]
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A cell's counters, summed by `Arena::stats`. Each is written by the cell's owner alone, one
/// method per event (`on_*`); any thread reads them, and may see counts that lag the owner's.
#[derive(Default)]
pub(crate) struct Counters {
    allocs: Counter,
    alloc_bytes: Counter,
    from_freelist: Counter,
    from_cache: Counter,
    frees: Counter,
    free_bytes: Counter,
    failures: Counter,
    rewinds: Counter,
    /// Free segments this thread's coalescing passes merged into a neighbour.
    coalesced: Counter,
}

impl Counters {
    /// An allocation of `len` bytes (every path). Owner only.
    #[inline]
    pub(crate) fn on_alloc(&self, len: u64) {
        self.allocs.add(1);
        self.alloc_bytes.add(len);
    }

    /// An allocation taken from the cell's cache (besides `on_alloc`). Owner only.
    #[inline]
    pub(crate) fn on_cache_take(&self) {
        self.from_cache.add(1);
    }

    /// An allocation carved from the shared free lists (besides `on_alloc`). Owner only.
    #[inline]
    pub(crate) fn on_freelist_take(&self) {
        self.from_freelist.add(1);
    }

    /// An allocation that failed for want of room. Owner only.
    #[inline]
    pub(crate) fn on_failure(&self) {
        self.failures.add(1);
    }

    /// A free of a block holding `bytes` bytes. Owner only.
    #[inline]
    pub(crate) fn on_free(&self, bytes: u64) {
        self.frees.add(1);
        self.free_bytes.add(bytes);
    }

    /// A rewind of the cell's chunk (counted by the move itself, `LastBlock::rewind`). Owner only.
    #[inline]
    pub(super) fn on_rewind(&self) {
        self.rewinds.add(1);
    }

    /// `n` free segments the owner's coalescing pass merged into a neighbour. Owner only.
    #[inline]
    pub(crate) fn on_coalesced(&self, n: u64) {
        self.coalesced.add(n);
    }

    /// Allocations and frees so far (wrapping), for the coalescing pass's rate limit.
    pub(crate) fn activity(&self) -> u64 {
        self.allocs.get().wrapping_add(self.frees.get())
    }

    /// The bytes of the blocks freed so far (wrapping), for the gate of a pass before growth.
    pub(crate) fn freed_bytes(&self) -> u64 {
        self.free_bytes.get()
    }

    /// Every count so far, for `Arena::stats`.
    pub(crate) fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            allocs: self.allocs.get(),
            alloc_bytes: self.alloc_bytes.get(),
            from_freelist: self.from_freelist.get(),
            from_cache: self.from_cache.get(),
            frees: self.frees.get(),
            free_bytes: self.free_bytes.get(),
            failures: self.failures.get(),
            rewinds: self.rewinds.get(),
            coalesced: self.coalesced.get(),
        }
    }
}

/// A cell's counts at one moment ([`Counters::snapshot`]); [`CounterSnapshot::add`] sums cells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CounterSnapshot {
    /// Allocations, and their bytes.
    pub(crate) allocs: u64,
    pub(crate) alloc_bytes: u64,
    /// Allocations carved from the shared free lists.
    pub(crate) from_freelist: u64,
    /// Allocations taken from the cell's cache.
    pub(crate) from_cache: u64,
    /// Frees, and their bytes.
    pub(crate) frees: u64,
    pub(crate) free_bytes: u64,
    /// Allocations that failed for want of room.
    pub(crate) failures: u64,
    /// Frees that rewound the cell's chunk.
    pub(crate) rewinds: u64,
    /// Free segments the cell's coalescing passes merged into a neighbour.
    pub(crate) coalesced: u64,
}

impl CounterSnapshot {
    /// The counts of two cells together (wrapping, as the counters do).
    pub(crate) fn add(self, o: CounterSnapshot) -> CounterSnapshot {
        CounterSnapshot {
            allocs: self.allocs.wrapping_add(o.allocs),
            alloc_bytes: self.alloc_bytes.wrapping_add(o.alloc_bytes),
            from_freelist: self.from_freelist.wrapping_add(o.from_freelist),
            from_cache: self.from_cache.wrapping_add(o.from_cache),
            frees: self.frees.wrapping_add(o.frees),
            free_bytes: self.free_bytes.wrapping_add(o.free_bytes),
            failures: self.failures.wrapping_add(o.failures),
            rewinds: self.rewinds.wrapping_add(o.rewinds),
            coalesced: self.coalesced.wrapping_add(o.coalesced),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_counts_where_stats_reads_it() {
        let k = Counters::default();
        k.on_alloc(100);
        k.on_alloc(20);
        k.on_cache_take();
        k.on_freelist_take();
        k.on_failure();
        k.on_free(100);
        k.on_rewind();
        k.on_coalesced(3);
        let s = k.snapshot();
        let want = CounterSnapshot {
            allocs: 2,
            alloc_bytes: 120,
            from_freelist: 1,
            from_cache: 1,
            frees: 1,
            free_bytes: 100,
            failures: 1,
            rewinds: 1,
            coalesced: 3,
        };
        assert_eq!(s, want);
        assert_eq!(k.activity(), 3);
        let two = s.add(want);
        assert_eq!((two.allocs, two.alloc_bytes, two.coalesced), (4, 240, 6));
    }
}
