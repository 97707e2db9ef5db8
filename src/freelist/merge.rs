//! Coalescing of the shared lists: detach whole lists, merge physically adjacent segments, list
//! them again.

use super::{head_off, head_tag, pack_head, FreeLists, Segment};
use crate::backing::Backing;
use crate::block::{self, HeaderWord};
use crate::error::Error;
use crate::format::{OFF_BUMP, OFF_HEADS};
use crate::sync::Ordering;

impl FreeLists {
    /// Detaches the whole stack of class `c` with one CAS of its head to empty, and returns its
    /// segments (head first). The nodes are the caller's from then on, as after a pop.
    ///
    /// Detaching all nodes at once is ABA-safe without the per-node argument `pop` needs: nothing
    /// is installed but the empty head, and the tag moves on, so a popper that read the old head
    /// fails its CAS whatever it read from the old nodes since. `limit` bounds node offsets as in
    /// `pop`. A damaged chain is reported as `Error::Corrupt`; its nodes stay off the lists
    /// (leaked until the next repair), like the node a failing `pop` reports.
    pub(crate) fn take_all(
        &self,
        b: &Backing,
        c: usize,
        limit: u64,
    ) -> Result<Vec<Segment>, Error> {
        let head = self.head(b, c);
        let mut h = head.load(Ordering::Relaxed);
        loop {
            if head_off(h) == 0 {
                return Ok(Vec::new());
            }
            // Acquire: pairs with the Release CAS of every `push` in the head's history (each
            // later pop and push is a read-modify-write, so they all continue those release
            // sequences): every listed node's header and span word are visible to the walk below.
            // It also pairs with a popper's AcqRel CAS of the head to itself that we read from:
            // that popper's read of a node then happens before our rewrites of the node. No
            // Release half: the empty head publishes nothing.
            match head.compare_exchange_weak(
                h,
                pack_head(0, head_tag(h) + 1),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => h = now,
            }
        }
        // Every node was pushed before our CAS, and every reservation of heap holding a node
        // happened before its push (see `pop`), so one read of the bump offset now bounds them
        // all; the caller's `limit` may predate some.
        let limit = limit.max(b.word(OFF_BUMP).load(Ordering::Relaxed));
        // More nodes than 16-byte segments fit below `limit`: the chain loops.
        let mut budget = limit.saturating_sub(self.data_start) / 16;
        let mut out = Vec::new();
        let mut off = head_off(h);
        while off != 0 {
            if off % 8 != 0 || off < self.data_start || off + 16 > limit || budget == 0 {
                return Err(Error::Corrupt {
                    offset: OFF_HEADS + 8 * c as u64,
                    word: off,
                });
            }
            budget -= 1;
            // Relaxed: made visible by the Acquire CAS above; the node is ours.
            let w = b.word(off).load(Ordering::Relaxed);
            let HeaderWord::Free { generation, next } = block::decode(w) else {
                return Err(Error::Corrupt {
                    offset: off,
                    word: w,
                });
            };
            let span = b.word(off + 8).load(Ordering::Relaxed);
            if span < 16 || span % 8 != 0 || off.checked_add(span).is_none_or(|e| e > limit) {
                return Err(Error::Corrupt {
                    offset: off + 8,
                    word: span,
                });
            }
            out.push(Segment {
                off,
                span,
                generation,
            });
            off = next;
        }
        Ok(out)
    }

    /// Merges the listed segments that touch: detaches every class that may be non-empty, sorts
    /// the segments by offset, joins each run `a.off + a.span == b.off` into its first segment and
    /// lists everything again. Returns how many segments were merged into a neighbour, and how
    /// many were detached (the pass's cost is about that many cache misses plus a sort).
    ///
    /// A merge only stores the run's new span in the span word of its first segment, whose FREE
    /// header stays as it is; the headers of the others become bytes inside it. A heap walk after a
    /// crash at any point reads either the old span (and then the next segment's intact header)
    /// or the new one. `durable(off, len)` is called after the span stores and before anything is
    /// listed again: it must make the bytes `off..off + len` (which hold every new span) durable,
    /// so that no later carve that zeroes a merged header can reach the disk before the span that
    /// covers it. If it fails, the old spans are put back, the segments are listed unmerged and
    /// its error is returned. A damaged list (`Error::Corrupt`) is reported the same way, after
    /// the segments detached intact are listed again unmerged.
    ///
    /// Segments that other threads pop or push meanwhile are not seen; each segment detached is
    /// owned by this pass alone until it is pushed again.
    pub(crate) fn coalesce(
        &self,
        b: &Backing,
        limit: u64,
        mut fresh_gen: impl FnMut() -> u32,
        durable: impl FnOnce(u64, u64) -> Result<(), Error>,
    ) -> Result<(u64, u64), Error> {
        let mut segs = Vec::new();
        let mut failed = None;
        let mut c = 0;
        while let Some(k) = self.nonempty.first_from(c) {
            match self.take_all(b, k, limit) {
                Ok(mut s) => segs.append(&mut s),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            c = k + 1;
        }
        segs.sort_unstable_by_key(|s| s.off);
        if failed.is_none() {
            // Listed segments never overlap; if these do, a list is damaged: merge nothing.
            if let Some(w) = segs.windows(2).find(|w| w[0].off + w[0].span > w[1].off) {
                failed = Some(Error::Corrupt {
                    offset: w[1].off,
                    word: w[0].span,
                });
            }
        }
        // Runs: (index of the first segment, number of segments, total span).
        let mut runs: Vec<(usize, usize, u64)> = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            match runs.last_mut() {
                Some((first, n, span)) if segs[*first].off + *span == s.off => {
                    *n += 1;
                    *span += s.span;
                }
                _ => runs.push((i, 1, s.span)),
            }
        }
        let mut merged = 0u64;
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        for &(first, n, span) in &runs {
            if n > 1 && failed.is_none() {
                let off = segs[first].off;
                // The commit of the merge: the first segment's header stays FREE, so a walk reads
                // the whole run as one segment from here on.
                b.word(off + 8).store(span, Ordering::Relaxed);
                merged += n as u64 - 1;
                lo = lo.min(off);
                hi = hi.max(off + 16);
            }
        }
        if merged > 0 {
            if let Err(e) = durable(lo, hi - lo) {
                for &(first, n, _) in &runs {
                    if n > 1 {
                        let s = segs[first];
                        b.word(s.off + 8).store(s.span, Ordering::Relaxed);
                    }
                }
                merged = 0;
                failed = Some(e);
            }
        }
        for &(first, n, span) in &runs {
            if n > 1 && merged > 0 {
                self.push(b, segs[first].off, span, fresh_gen());
            } else {
                for s in &segs[first..first + n] {
                    self.push(b, s.off, s.span, s.generation);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok((merged, segs.len() as u64)),
        }
    }
}
