//! The hooks of [`Lists`] for the slot protocols: a handle check and a read that hold their
//! slots, a coalescing pass and an absorbing free that consult them, and the carves that turn a
//! node into a filler or into user bytes (the models of docs/metadata.md, sections 4 and 13.1).

use super::Lists;
use crate::heap::{Start, StartMap};
use crate::sync::Ordering;

impl Lists {
    /// A handle check of header position `off`, as `Arena`'s: the slot swapped in, the start map
    /// tested, then the header word read twice (as a pin's load and CAS would); the slot
    /// cleared. Returns the two words read, or `None` when the map says no entry starts there.
    ///
    /// # Panics
    /// Without a start map.
    pub fn check(&self, off: u64) -> Option<(u64, u64)> {
        let maps = self.maps.as_ref().expect("a start map");
        self.slot.swap(off, Ordering::SeqCst);
        crate::sync::sc_order();
        let seen = StartMap::new(&self.b, maps).is_start_checked(off).then(|| {
            let first = self.b.word(off).load(Ordering::Acquire);
            crate::sync::yield_now();
            (first, self.b.word(off).load(Ordering::Acquire))
        });
        self.slot.store(0, Ordering::Release);
        seen
    }

    /// A read of the block whose header is at `off`, as `Arena::read_with`'s: a read slot held,
    /// the start map tested, then the header word read twice (the second time as the read's
    /// copy of the bytes would); the slot cleared. Returns the two words read, or `None` when the
    /// map says no entry starts there.
    ///
    /// # Panics
    /// Without a start map.
    pub fn read(&self, off: u64) -> Option<(u64, u64)> {
        let maps = self.maps.as_ref().expect("a start map");
        let slot = self.reads.hold(off + 8).expect("a free read slot");
        let seen = StartMap::new(&self.b, maps).is_start_checked(off).then(|| {
            let first = self.b.word(off).load(Ordering::SeqCst);
            crate::sync::yield_now();
            (first, self.b.word(off).load(Ordering::SeqCst))
        });
        slot.clear();
        seen
    }

    /// A coalescing pass that consults the check slot and the read slots (`held`), as
    /// `Arena`'s does.
    ///
    /// # Panics
    /// If a list is found corrupt.
    pub fn coalesce_checked(&self) -> u64 {
        self.fl
            .coalesce(&self.b, self.limit, || 2, |_, _| Ok(()), |o| self.held(o))
            .expect("lists are consistent")
            .0
    }

    /// Whether the check slot, a read slot or a pop slot holds header position `o` (`SeqCst`
    /// loads: the side of the check-slot protocol of a pass or an absorbing free, as `Arena`'s).
    fn held(&self, o: u64) -> bool {
        self.slot.load(Ordering::SeqCst) == o || self.reads.reading(o) || self.popping(o)
    }

    /// Makes segment `i` (which the caller owns) a filler, its start kept: what a carve leaves in
    /// front of a block it aligns, over the header of the segment it took.
    pub fn make_filler(&self, i: u64) {
        let (off, span) = self.segs[i as usize];
        self.fl.entries(&self.b).add_filler(off, span, Start::Kept);
        crate::heap::add_discarded(&self.b, span);
    }

    /// A carve of segment `i`, popped by the caller, that aligns its block: the filler it leaves
    /// in front over the segment's header, stored as an arena's carve commits it
    /// (`Entries::front_filler`, `Release`). The block behind the filler is not modelled.
    pub fn carve_front_filler(&self, i: u64) {
        let (off, span) = self.segs[i as usize];
        self.fl.entries(&self.b).front_filler(off, span);
        crate::heap::add_discarded(&self.b, span);
    }

    /// Frees segment `i` (a LIVE block the caller owns) as an arena's free does: the fillers
    /// behind it absorbed, consulting the slots (`FreeLists::absorb_fillers`), then listed.
    /// Returns the span listed.
    pub fn free_absorbing(&self, i: u64) -> u64 {
        let (off, span) = self.segs[i as usize];
        let total = self
            .fl
            .absorb_fillers(&self.b, (off, span, 2), self.limit, |o| self.held(o));
        self.fl.push(&self.b, off, total, 2);
        total
    }

    /// A carve of a merged segment of `span` bytes by its new owner, who writes `pattern` (user
    /// bytes) over every word strictly inside it. Returns whether it got one.
    ///
    /// # Panics
    /// If the list is found corrupt.
    pub fn carve_and_write(&self, span: u64, pattern: u64) -> bool {
        match self.pop_class_of(span) {
            Some((off, got)) if got == span => {
                for w in (off + 8..off + span).step_by(8) {
                    self.b.word(w).store(pattern, Ordering::Relaxed);
                }
                true
            }
            Some((off, got)) => {
                self.fl.push(&self.b, off, got, 2);
                false
            }
            None => false,
        }
    }
}
