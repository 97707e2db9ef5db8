//! [`FreeLists::take_batch`]: a batch of one class's segments for a thread's cache in two shared
//! read-modify-writes (one detach, one relist of what is left), where `pop` costs one per segment.

use super::*;

impl FreeLists {
    /// Takes up to `max` (at least 1) segments of class `c` at once, for a thread's cache: detaches
    /// the whole stack with one CAS of its head to empty, keeps its first `max` nodes (a chain
    /// through their FREE headers, the last one's link cut to 0) and lists the rest again
    /// ([`FreeLists::relist`]). Returns the first node and how many the chain holds; `None` when
    /// the class is empty. Two shared read-modify-writes for up to `max` segments, where `pop`
    /// costs one per segment.
    ///
    /// While the rest is off the list the class looks empty to others (as during a coalescing
    /// pass, whose retries cover it). A damaged node is `Error::Corrupt`; what was detached stays
    /// off the lists (leaked until a repair), as with `take_all`. Allocates nothing.
    pub(crate) fn take_batch(
        &self,
        b: &Backing,
        c: usize,
        max: u64,
    ) -> Result<Option<(u64, u64)>, Error> {
        debug_assert!(max >= 1);
        let head = self.head(b, c);
        let h = loop {
            let h = self.detach(b, c);
            if head_off(h) != 0 {
                break h;
            }
            if self.confirm_empty(head, c, h).is_none() {
                return Ok(None);
            }
        };
        // Every node was pushed before the detach, after the reservation of the heap it lies in
        // (see `pop`): one read of the bump offset bounds them all.
        let limit = b.word(OFF_BUMP).load(Ordering::Relaxed);
        let mut budget = limit.saturating_sub(self.data_start) / 16;
        let first = head_off(h);
        let (mut off, mut n) = (first, 0u64);
        let mut last = (first, 0u32);
        while off != 0 && n < max {
            let (generation, next) = self.detached_node(b, c, off, limit, &mut budget)?;
            n += 1;
            last = (off, generation);
            off = next;
        }
        if off != 0 {
            self.entries(b).relink(last.0, last.1, 0);
            self.relist(b, c, off, limit, budget)?;
        }
        Ok(Some((first, n)))
    }

    /// Lists again the chain `rest` of class `c` (detached by the caller, ending in a 0 link)
    /// without walking it: one CAS of the still empty head to `rest`. If segments were pushed
    /// meanwhile, they are detached in turn, walked (only they: what was pushed in the caller's
    /// window) and put in front of `rest`, and the CAS is tried again. Lock-free: a CAS fails only
    /// because another thread's succeeded.
    fn relist(
        &self,
        b: &Backing,
        c: usize,
        rest: u64,
        limit: u64,
        mut budget: u64,
    ) -> Result<(), Error> {
        let head = self.head(b, c);
        let mut rest = rest;
        let mut h = head.load(Ordering::Relaxed);
        loop {
            if head_off(h) == 0 {
                // Release: publishes the links of the segments we put in front (and, through
                // our Acquire detaches, every push of the nodes we list again) to the next
                // popper's Acquire; Acquire: as `push`'s, for the bit's clear.
                match head.compare_exchange_weak(
                    h,
                    pack_head(rest, head_tag(h) + 1),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => {
                        h = now;
                        continue;
                    }
                }
            }
            let pushed = self.detach(b, c);
            let mut off = head_off(pushed);
            if off == 0 {
                h = pushed;
                continue;
            }
            let limit = limit.max(b.word(OFF_BUMP).load(Ordering::Relaxed));
            let front = off;
            loop {
                let (generation, next) = self.detached_node(b, c, off, limit, &mut budget)?;
                if next == 0 {
                    self.entries(b).relink(off, generation, rest);
                    break;
                }
                off = next;
            }
            rest = front;
            h = head.load(Ordering::Relaxed);
        }
        self.nonempty.set(c);
        Ok(())
    }
}
