//! Coalescing passes while the arena is shared: one at a time, rate-limited by activity.

use super::Inner;
use crate::cells::for_each_thread_cell;
use crate::error::Error;
use crate::heap::ChunkCell;
use crate::reentry::{in_step, Step};
use crate::sync::{spin_hint, yield_now, AtomicU64, Ordering};
impl Inner {
    /// Merges physically adjacent listed free segments, for an allocation that found the main
    /// memory and the free lists exhausted. Returns whether the free lists are worth another try:
    /// a pass ended (this thread's, or another's it waited for) after `seen` passes, the count the
    /// caller read before its last try; `seen` is brought up to date.
    ///
    /// The calling thread's caches of freed blocks (every lane), and those of the cells exited
    /// threads abandoned, go to the shared lists first.
    /// One pass runs at a time; a thread that arrives during one waits for it to end instead of
    /// running its own (with `wait`; without, it returns `false` at once). So an allocation that
    /// finds the arena exhausted may wait for another thread (the pass always ends: it waits for
    /// nothing itself); allocations that find memory never do (the pass before growth does not
    /// wait: its caller reserves fresh memory instead). A pass costs about one cache miss per
    /// listed segment, so after a pass that detached `n` segments the next one waits until the
    /// threads have allocated or freed `n` blocks since: the cost stays a constant share of the
    /// work (plus the sort's `log n`), and requests refused in between get `Full`. See
    /// `FreeLists::coalesce` and docs/design.md.
    #[cold]
    #[inline(never)]
    pub(super) fn coalesce(
        &self,
        cell: &ChunkCell,
        seen: &mut u64,
        wait: bool,
    ) -> Result<bool, Error> {
        // Invariant A (`reentry.rs`): a call that re-entered parena from inside a step of this
        // thread (a pass, a walk of its cells) neither runs a pass nor waits for one: the pass it
        // would wait for may be its own.
        if in_step() {
            return Ok(false);
        }
        let _step = Step::enter();
        // Acquire: as the load in `alloc_slow`.
        let ended = self.passes.load(Ordering::Acquire);
        if ended != *seen {
            *seen = ended;
            return Ok(true);
        }
        // The rate limit first: a refused allocation between passes costs a few loads, and
        // leaves this thread's caches of freed blocks alone.
        if ended > 0 && !self.pass_due() {
            return Ok(false);
        }
        if self.thread_cache {
            self.drain_cache(cell)?;
            let mut drained = Ok(());
            for_each_thread_cell(self.uid, |c| {
                if let Err(e) = self.drain_cache(c) {
                    drained = Err(e);
                }
            });
            // And the caches of cells whose threads have exited, which no thread owns until one
            // adopts the cell: otherwise their blocks would wait for a new thread.
            self.cells.for_each_abandoned(|c| {
                if let Err(e) = self.drain_cache(c) {
                    drained = Err(e);
                }
            });
            drained?;
        }
        if self.lists.none_listed() {
            return Ok(false);
        }
        if !self.claim_pass() {
            if !wait {
                return Ok(false);
            }
            let me = crate::fork::epoch();
            // Acquire: pairs with the Release store ending the pass: the segments it listed again
            // are pushed before our retry. Only a pass of a thread of this process is waited for
            // (the flag holds this process's fork epoch); one of an ancestor's thread never ends
            // and is taken over by the next `claim_pass`.
            wait_while_held(&self.coalescing, me);
            // Relaxed: the count was raised before the flag's Release store our load read.
            *seen = self.passes.load(Ordering::Relaxed);
            return Ok(true);
        }
        let _pass = PassGuard(&self.coalescing);
        // A pass may have ended between our load and our CAS (Relaxed: ordered by the CAS's
        // Acquire, as above).
        let ended = self.passes.load(Ordering::Relaxed);
        if ended != *seen {
            *seen = ended;
            return Ok(true);
        }
        let activity = self.activity();
        let freed = self.freed_bytes();
        if ended > 0 && !self.pass_due() {
            return Ok(false);
        }
        let (merged, detached) = self.lists.coalesce(
            &self.mem,
            self.bump(),
            || self.fresh_gen(),
            |off, len| self.mem.flush(off, len),
            // `checking`'s, `reading`'s and `popping`'s SeqCst loads: the pass's side of the
            // check-slot protocol (`CheckSlot`); a read slot holds its header position as a check
            // slot does, and a pop slot the node a pop may be reading (`crate::freelist`).
            |off| self.slot_holds(off),
        )?;
        self.activity_at_pass.store(activity, Ordering::Relaxed);
        self.freed_at_pass.store(freed, Ordering::Relaxed);
        self.pass_cost.store(detached, Ordering::Relaxed);
        cell.counters().on_coalesced(merged);
        // Release: the pushes of this pass happen before a later `alloc_slow`'s take that reads
        // the new count (its Acquire load), which therefore need not wait for another pass.
        *seen = self.passes.fetch_add(1, Ordering::Release) + 1;
        // Even a pass that merged nothing is worth a retry: the caller's last try may have met
        // the lists while an earlier pass had them detached.
        Ok(true)
    }

    /// Whether a cell's check, read or pop slot holds the header position `off` (`SeqCst` loads):
    /// the side of the check-slot protocol (`CheckSlot`) of whatever merges an entry start away,
    /// a pass or a free absorbing a filler. A read slot holds its header position as a check slot
    /// does, and a pop slot the node a pop may be reading (`crate::freelist`).
    pub(super) fn slot_holds(&self, off: u64) -> bool {
        self.cells.fold(false, |any, c| {
            any || c.reads().checking() == off || c.reads().reading(off) || c.reads().popping(off)
        })
    }

    /// Takes the pass flag for the calling thread: `true` when this thread now runs the one pass,
    /// `false` when a thread of this process runs one. The flag holds 0 when no pass runs, else
    /// the fork epoch of the process whose thread runs it (`crate::fork`): an epoch other than
    /// ours was set before a fork by a thread this process does not have, whose pass never ends
    /// here, so it is taken over (what that pass had detached stays off the lists in this
    /// process: a leak, never a segment listed twice).
    fn claim_pass(&self) -> bool {
        let me = crate::fork::epoch();
        loop {
            // Relaxed: the CAS below orders the pass.
            let held = self.coalescing.load(Ordering::Relaxed);
            if held == me {
                return false;
            }
            // Acquire: pairs with the Release store that ended the previous pass (`PassGuard`),
            // so this pass starts after it.
            if self
                .coalescing
                .compare_exchange(held, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
        }
    }

    /// Allocations and frees of every thread so far: how much the lists may have changed.
    pub(super) fn activity(&self) -> u64 {
        self.cells
            .fold(0u64, |n, c| n.wrapping_add(c.counters().activity()))
    }

    /// Whether a pass before growth (`reuse_before_growth`) may be worth its walk: the threads
    /// have freed at least an eighth of the heap reserved so far, and at least a chunk, since the
    /// last pass (only a free gives a pass something to merge; an arena that never frees never
    /// runs one), and the rate limit of every pass (`pass_due`) allows it. A pass walks and sorts
    /// every listed segment, so its cost is paid at most once per eighth of the heap freed.
    pub(super) fn merge_due(&self) -> bool {
        let reserved = self.bump().saturating_sub(self.geom.data_start);
        self.freed_bytes()
            .wrapping_sub(self.freed_at_pass.load(Ordering::Relaxed))
            >= (reserved / 8).max(self.geom.chunk())
            && self.pass_due()
    }

    /// The bytes of every block freed so far, all threads.
    fn freed_bytes(&self) -> u64 {
        self.cells
            .fold(0u64, |n, c| n.wrapping_add(c.counters().freed_bytes()))
    }

    /// Whether the threads have done as much since the last pass as that pass detached (the
    /// rate limit of `coalesce`).
    pub(super) fn pass_due(&self) -> bool {
        self.activity()
            .wrapping_sub(self.activity_at_pass.load(Ordering::Relaxed))
            >= self.pass_cost.load(Ordering::Relaxed)
    }
}

/// Waits, spinning a little and then yielding, until `flag` (a one-at-a-time flag holding the
/// fork epoch of its holder's process) no longer holds `me`. Acquire: pairs with the Release
/// store that clears it, so what the holder did happens before the caller's next step.
pub(super) fn wait_while_held(flag: &AtomicU64, me: u64) {
    let mut rounds = 0u32;
    while flag.load(Ordering::Acquire) == me {
        rounds += 1;
        if rounds > 64 {
            yield_now();
        } else {
            spin_hint();
        }
    }
}

/// Ends a coalescing pass when dropped (also when the pass returns early or unwinds), so threads
/// waiting for it never wait forever.
struct PassGuard<'a>(&'a AtomicU64);

impl Drop for PassGuard<'_> {
    fn drop(&mut self) {
        // Release: the pass's pushes happen before the waiters' retries and the next pass; pairs
        // with the Acquire load of the waiters and the Acquire CAS that starts a pass.
        self.0.store(0, Ordering::Release);
    }
}
