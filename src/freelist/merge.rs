//! Coalescing of the shared lists: detach whole lists into one chain linked through the segments'
//! own headers, sort it in place, merge physically adjacent segments, list them again. Allocates
//! nothing (invariant A, `reentry.rs`).

use super::{head_off, head_tag, pack_head, FreeLists};
use crate::backing::Backing;
use crate::block::{self, HeaderWord};
use crate::error::Error;
use crate::format::{OFF_BUMP, OFF_HEADS};
use crate::heap::Entries;
use crate::sync::{sc_order, Ordering};

use super::sort::sort_chain;

impl FreeLists {
    /// Detaches the whole stack of class `c` with one CAS of its head to empty and splices its
    /// nodes in front of the chain `chain` (linked through the nodes' FREE headers, 0 = empty).
    /// Returns the new chain head and how many nodes were detached. The nodes are the caller's from
    /// then on, as after a pop.
    ///
    /// Detaching all nodes at once is ABA-safe without the per-node argument `pop` needs: nothing
    /// is installed but the empty head, and the tag moves on, so a popper that read the old head
    /// fails its CAS whatever it read from the old nodes since. `limit` bounds node offsets as in
    /// `pop`. A damaged chain is reported as `Error::Corrupt` and `chain` is left as it was; the
    /// class's nodes stay off the lists (leaked until the next repair), like the node a failing
    /// `pop` reports. Allocates nothing (invariant A, `reentry.rs`).
    pub(crate) fn take_all(
        &self,
        b: &Backing,
        c: usize,
        limit: u64,
        chain: u64,
    ) -> Result<(u64, u64), Error> {
        let h = self.detach(b, c);
        if head_off(h) == 0 {
            return Ok((chain, 0));
        }
        // Every node was pushed before our CAS, and every reservation of heap holding a node
        // happened before its push (see `pop`), so one read of the bump offset now bounds them
        // all; the caller's `limit` may predate some.
        let limit = limit.max(b.word(OFF_BUMP).load(Ordering::Relaxed));
        // More nodes than 16-byte segments fit below `limit`: the chain loops.
        let mut budget = limit.saturating_sub(self.data_start) / 16;
        let mut n = 0u64;
        let mut off = head_off(h);
        let mut last = None;
        while off != 0 {
            let (gen, next) = self.detached_node(b, c, off, limit, &mut budget)?;
            n += 1;
            last = Some((off, gen));
            off = next;
        }
        if let Some((off, gen)) = last {
            set_next(b, off, gen, chain);
        }
        Ok((head_off(h), n))
    }

    /// Detaches the whole stack of class `c` with one CAS of its head to empty (tag bumped) and
    /// returns the head word it replaced: its nodes are the caller's from then on, as after a pop.
    /// A head word with offset 0 means the class was empty and nothing changed.
    pub(super) fn detach(&self, b: &Backing, c: usize) -> u64 {
        let head = self.head(b, c);
        let mut h = head.load(Ordering::Relaxed);
        loop {
            if head_off(h) == 0 {
                return h;
            }
            // Acquire: pairs with the Release CAS of every `push` in the head's history (each
            // later pop and push is a read-modify-write, so they all continue those release
            // sequences): every listed node's header and span word are visible to the caller's
            // walk. It also pairs with a popper's AcqRel CAS of the head to itself that we read
            // from: that popper's read of a node then happens before our rewrites of the node. No
            // Release half: the empty head publishes nothing.
            match head.compare_exchange_weak(
                h,
                pack_head(0, head_tag(h) + 1),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return h,
                Err(now) => h = now,
            }
        }
    }

    /// Checks the node at `off` of a chain detached from class `c` (whose nodes the caller owns,
    /// made visible by the Acquire CAS that detached them): inside `data_start..limit`, a FREE
    /// header, a span word that fits; `budget` counts down the nodes a chain below `limit` can
    /// hold, so a loop ends as `Error::Corrupt` too. Returns the node's generation and link.
    pub(super) fn detached_node(
        &self,
        b: &Backing,
        c: usize,
        off: u64,
        limit: u64,
        budget: &mut u64,
    ) -> Result<(u32, u64), Error> {
        if off % 8 != 0 || off < self.data_start || off + 16 > limit || *budget == 0 {
            return Err(Error::Corrupt {
                offset: OFF_HEADS + 8 * c as u64,
                word: off,
            });
        }
        *budget -= 1;
        // Relaxed: made visible by the caller's Acquire CAS; the node is the caller's.
        let w = b.word(off).load(Ordering::Relaxed);
        let HeaderWord::Free {
            generation: gen,
            next,
        } = block::decode(w)
        else {
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
        Ok((gen, next))
    }

    /// Merges the listed segments that touch: detaches every class that may be non-empty into one
    /// chain, sorts the chain by offset, joins each run `a.off + a.span == b.off` into its first
    /// segment and lists everything again. Returns how many segments were merged into a neighbour,
    /// and how many were detached (the pass's cost is about that many cache misses times the sort's
    /// `log n`).
    ///
    /// The pass allocates nothing (invariant A, `reentry.rs`): the detached segments are linked
    /// through their own FREE headers (the `next` field, which nothing reads while they are off
    /// the lists), and sorted there with a bottom-up merge sort over a fixed array of 64 runs.
    /// Rewriting `next` leaves every header FREE with its span, so a heap walk is unaffected.
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
    ///
    /// Each absorbed segment's start goes out of the start map (`SeqCst`), and then `held(off)`
    /// asks whether a handle check holds `off` in its check slot (`SeqCst` loads; the protocol is
    /// on `CheckSlot` in `arena/check.rs`). A held start is put back and its segment stays a
    /// separate segment that takes the rest of the run, so the position a check is reading stays
    /// a header position.
    pub(crate) fn coalesce(
        &self,
        b: &Backing,
        limit: u64,
        mut fresh_gen: impl FnMut() -> u32,
        durable: impl FnOnce(u64, u64) -> Result<(), Error>,
        held: impl Fn(u64) -> bool,
    ) -> Result<(u64, u64), Error> {
        let mut chain = 0u64;
        let mut detached = 0u64;
        let mut failed = None;
        let mut c = 0;
        while let Some(k) = self.nonempty.first_from(c) {
            match self.take_all(b, k, limit, chain) {
                Ok((h, n)) => {
                    chain = h;
                    detached += n;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            c = k + 1;
        }
        let chain = sort_chain(b, chain, limit);
        let span_of = |off: u64| b.word(off + 8).load(Ordering::Relaxed);
        if failed.is_none() {
            // Listed segments never overlap; if these do, a list is damaged: merge nothing.
            let mut off = chain;
            while off != 0 {
                let next = next_of(b, off).1;
                if next != 0 && off + span_of(off) > next {
                    failed = Some(Error::Corrupt {
                        offset: next,
                        word: span_of(off),
                    });
                    break;
                }
                off = next;
            }
        }
        let mut merged = 0u64;
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        if failed.is_none() {
            // Runs: the first segment and the total span so far.
            let mut run: Option<(u64, u64, u64)> = None; // (first, total, segments)
            let mut off = chain;
            loop {
                let seg = (off != 0).then(|| (off, span_of(off)));
                match (run, seg) {
                    (Some((first, total, n)), Some((o, s))) if first + total == o => {
                        run = Some((first, total + s, n + 1));
                    }
                    (prev, seg) => {
                        if let Some((first, total, n)) = prev {
                            if n > 1 {
                                // The commit of the merge: the first segment's header stays FREE,
                                // so a walk reads the whole run as one segment from here on.
                                self.entries(b).set_span(first, total);
                                merged += n - 1;
                                lo = lo.min(first);
                                hi = hi.max(first + 16);
                            }
                        }
                        run = seg.map(|(o, s)| (o, s, 1));
                    }
                }
                if off == 0 {
                    break;
                }
                off = next_of(b, off).1;
            }
        }
        if merged > 0 {
            if let Err(e) = durable(lo, hi - lo) {
                // Put the old spans back: a segment whose span now reaches past the next one in
                // the sorted chain was a run's first, and its old span ended at that next one.
                let mut off = chain;
                while off != 0 {
                    let next = next_of(b, off).1;
                    if next != 0 && off + span_of(off) > next {
                        self.entries(b).set_span(off, next - off);
                    }
                    off = next;
                }
                merged = 0;
                failed = Some(e);
            }
        }
        // List everything again: a merged run once (with a fresh generation), the segments inside
        // it not at all, every other segment as it was.
        let mut off = chain;
        while off != 0 {
            let (gen, next) = next_of(b, off);
            let span = span_of(off);
            if merged > 0 && next != 0 && off + span > next {
                let end = off + span;
                // Absorbed: their headers become bytes inside the run, no longer entries.
                let mut m = next;
                while m != 0 && m < end {
                    self.entries(b).absorb_checked(m);
                    m = next_of(b, m).1;
                }
                let after = m;
                // The toggles before the slot loads (the store-buffering shape of `CheckSlot`).
                sc_order();
                // A start a handle check holds stays one: the run splits there.
                let mut first = off;
                let mut m = next;
                while m != 0 && m < end {
                    let following = next_of(b, m).1;
                    if held(m) {
                        self.entries(b).keep_held(m);
                        self.entries(b).set_span(first, m - first);
                        self.push(b, first, m - first, fresh_gen());
                        merged -= 1;
                        first = m;
                    }
                    m = following;
                }
                self.entries(b).set_span(first, end - first);
                self.push(b, first, end - first, fresh_gen());
                off = after;
                continue;
            }
            self.push(b, off, span, gen);
            off = next;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok((merged, detached)),
        }
    }
}

/// `(generation, next)` of a detached node's FREE header (a chain of the coalescing pass).
pub(super) fn next_of(b: &Backing, off: u64) -> (u32, u64) {
    match block::decode(b.word(off).load(Ordering::Relaxed)) {
        HeaderWord::Free {
            generation: gen,
            next,
        } => (gen, next),
        // `take_all` checked every node, and the pass owns them: not reached. Ending the chain
        // here (leaking the rest until a repair) is the answer that cannot panic.
        _ => (0, 0),
    }
}

/// Points a detached node's FREE header at `next`, keeping its generation (no list is involved:
/// the entry verbs carry no start map here).
pub(super) fn set_next(b: &Backing, off: u64, gen: u32, next: u64) {
    Entries::new(b, None).relink(off, gen, next);
}
