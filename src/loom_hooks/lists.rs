//! [`Lists`]: one arena's free lists over a small heap [`Backing`] with nothing else around them,
//! so a loom model can drive the exact push/pop shapes it wants (the ABA shape needs a thread to
//! stop between reading a node's link and its CAS, which the public API cannot arrange on
//! purpose).

use crate::backing::Backing;
use crate::block::{self, HeaderWord};
use crate::format::{HEADER_SIZE, OFF_BUMP};
use crate::freelist::{class_of, FreeLists, ListWalk, Optimistic, Pessimistic, Policy};
use crate::heap::reads::ReadSlots;
use crate::heap::{Entries, MapGeom};
use crate::sync::{AtomicU64, Ordering};

mod slots;

/// Bytes of every segment a [`Lists`] hands out: one exact size class.
pub const SEGMENT: u64 = 32;

/// Free lists over a heap backing holding the header and `n` segments of [`SEGMENT`] bytes.
pub struct Lists {
    b: Backing,
    fl: FreeLists,
    /// End of the heap: `HEADER_SIZE` plus every segment's span.
    limit: u64,
    /// Offset and span of each segment, in heap order.
    segs: Vec<(u64, u64)>,
    /// The start map, when the model has one ([`Lists::with_start_map`]).
    maps: Option<MapGeom>,
    /// One thread's check slot (the check-slot protocol, `arena/check.rs`).
    slot: AtomicU64,
    /// One thread's read slots (the read-slot protocol, `heap/reads.rs`).
    reads: ReadSlots,
    /// Pop slots (the pop-slot protocol, `crate::freelist`): each pop takes the next one, round
    /// robin, so the pops of a model (fewer than this many at once) never share one.
    pops: [AtomicU64; POP_SLOTS],
    /// The next pop slot (a std atomic on purpose: outside the model, it only spreads pops over
    /// slots and is no synchronization loom should explore).
    #[allow(clippy::disallowed_types)]
    next_pop: std::sync::atomic::AtomicUsize,
}

/// Pop slots of a model's [`Lists`].
const POP_SLOTS: usize = 8;

impl std::fmt::Debug for Lists {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lists")
            .field("limit", &self.limit)
            .field("segs", &self.segs)
            .finish_non_exhaustive()
    }
}

impl Lists {
    /// A header and `n` segments, none listed. Every segment starts as a LIVE header (owned by
    /// whoever the model says).
    ///
    /// # Panics
    /// If the backing cannot be allocated.
    pub fn new(n: u64) -> Lists {
        Lists::with_spans(&vec![SEGMENT; n as usize])
    }

    /// A header and one segment per entry of `spans` (bytes, multiples of 8, at least 16), laid
    /// out next to each other in that order, none listed, each a LIVE header.
    ///
    /// # Panics
    /// If the backing cannot be allocated.
    pub fn with_spans(spans: &[u64]) -> Lists {
        let (segs, end) = Lists::lay_out(spans);
        Lists::build(end, segs, None)
    }

    /// As [`Lists::with_spans`], with a start map after the heap recording every segment's
    /// start (each is a LIVE header to begin with), which pushes, pops and merges keep, and one
    /// check slot: for the check-slot models.
    ///
    /// # Panics
    /// If the backing cannot be allocated.
    pub fn with_start_map(spans: &[u64]) -> Lists {
        let (segs, end) = Lists::lay_out(spans);
        let capacity = end.div_ceil(4096) * 4096 + 4096;
        let maps = MapGeom::for_capacity(capacity);
        assert!(maps.heap_end() >= end);
        Lists::build(end, segs, Some((capacity, maps)))
    }

    /// Each segment's `(offset, span)` after the header, and the end of the last.
    fn lay_out(spans: &[u64]) -> (Vec<(u64, u64)>, u64) {
        let mut segs = Vec::new();
        let mut end = HEADER_SIZE;
        for &span in spans {
            assert!(span >= 16 && span % 8 == 0, "span {span}");
            segs.push((end, span));
            end += span;
        }
        (segs, end)
    }

    fn build(limit: u64, segs: Vec<(u64, u64)>, maps: Option<(u64, MapGeom)>) -> Lists {
        let len = maps.map_or(limit, |(c, _)| c);
        let maps = maps.map(|(_, m)| m);
        let b = Backing::heap(len).expect("a small heap backing");
        b.word(OFF_BUMP).store(limit, Ordering::Relaxed);
        for &(off, span) in &segs {
            Entries::new(&b, maps.as_ref()).restore_live(off, span - 8, 1, false);
        }
        let fl = FreeLists::load(&b, HEADER_SIZE, maps);
        Lists {
            b,
            fl,
            limit,
            segs,
            maps,
            slot: AtomicU64::new(0),
            reads: ReadSlots::default(),
            pops: std::array::from_fn(|_| AtomicU64::new(0)),
            #[allow(clippy::disallowed_types)]
            next_pop: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The pop slot for the next pop.
    fn pop_slot(&self) -> &AtomicU64 {
        let i = self
            .next_pop
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.pops[i % POP_SLOTS]
    }

    /// Whether a pop holds `off` in its pop slot (the pass's side of the pop-slot protocol).
    fn popping(&self, off: u64) -> bool {
        // SeqCst: the pass's side, as `ReadSlots::popping`.
        self.pops.iter().any(|s| s.load(Ordering::SeqCst) == off)
    }

    /// Every node header word the pops so far read, in order.
    ///
    /// # Panics
    /// If a thread panicked while it recorded one.
    pub fn node_words_read(&self) -> Vec<u64> {
        self.fl.node_words.lock().unwrap().clone()
    }

    /// Offset of segment `i`.
    pub fn segment(&self, i: u64) -> u64 {
        self.segs[i as usize].0
    }

    /// Span of segment `i`.
    pub fn span(&self, i: u64) -> u64 {
        self.segs[i as usize].1
    }

    /// Lists segment `i` (which the caller owns) with its own span and the generation
    /// `generation`.
    pub fn push_segment(&self, i: u64, generation: u32) {
        let (off, span) = self.segs[i as usize];
        self.fl.push(&self.b, off, span, generation);
    }

    /// Pops the head of the class that segments of `span` bytes are listed in: `(offset, span)`.
    ///
    /// # Panics
    /// If the list is found corrupt.
    pub fn pop_class_of(&self, span: u64) -> Option<(u64, u64)> {
        self.fl
            .pop(&self.b, class_of(span), self.limit, self.pop_slot())
            .expect("list is consistent")
            .map(|s| (s.off, s.span))
    }

    /// One coalescing pass over every list, as an allocation that found the arena exhausted runs
    /// it (without the durability step: the backing is a heap buffer). Returns how many segments
    /// were merged into a neighbour.
    ///
    /// # Panics
    /// If a list is found corrupt.
    pub fn coalesce(&self) -> u64 {
        self.fl
            .coalesce(
                &self.b,
                self.limit,
                || 2,
                |_, _| Ok(()),
                |o| self.popping(o),
            )
            .expect("lists are consistent")
            .0
    }

    /// Every listed segment of every class, as `(offset, span)` (only when no other thread runs).
    ///
    /// # Panics
    /// If a list loops or links to something that is not a free segment.
    pub fn listed_all(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for c in 0..crate::format::CLASSES {
            match self.fl.nodes(&self.b, c, self.limit, 64) {
                ListWalk::Ok(nodes) => {
                    for off in nodes {
                        let span = self.b.word(off + 8).load(Ordering::Relaxed);
                        assert_eq!(
                            class_of(span),
                            c,
                            "segment {off} of {span} bytes in class {c}"
                        );
                        out.push((off, span));
                    }
                }
                ListWalk::Cycle(nodes) => panic!("list {c} loops: {nodes:?}"),
                ListWalk::Bad { nodes, offset } => {
                    panic!("list {c} links to {offset}, not a free segment, after {nodes:?}")
                }
            }
        }
        out
    }

    /// The bump offset (the end of the reserved heap), as an allocation reads it.
    pub fn bump(&self) -> u64 {
        self.b.word(OFF_BUMP).load(Ordering::Relaxed)
    }

    /// Sets the bump offset: what reserving (`end > bump`) or an exclusive pass does to it.
    pub fn set_bump(&self, end: u64) {
        self.b.word(OFF_BUMP).store(end, Ordering::Relaxed);
    }

    /// Pops the head of the segments' class with a `limit` the caller read earlier.
    ///
    /// # Errors
    /// What `pop` reports (`Error::Corrupt` when the list is found corrupt).
    pub fn pop_within(&self, limit: u64) -> Result<Option<u64>, crate::Error> {
        Ok(self
            .fl
            .pop(&self.b, class_of(SEGMENT), limit, self.pop_slot())?
            .map(|s| s.off))
    }

    /// Lists segment `off`, which the caller owns, with the generation `generation`.
    pub fn push(&self, off: u64, generation: u32) {
        self.fl.push(&self.b, off, SEGMENT, generation);
    }

    /// Pops the head of the segments' class: `(offset, generation)`.
    ///
    /// # Panics
    /// If the list is found corrupt.
    pub fn pop(&self) -> Option<(u64, u32)> {
        self.fl
            .pop(&self.b, class_of(SEGMENT), self.limit, self.pop_slot())
            .expect("list is consistent")
            .map(|s| {
                assert_eq!(s.span, SEGMENT, "span word of {} changed", s.off);
                (s.off, s.generation)
            })
    }

    /// Takes up to `max` segments of the segments' class at once, as a thread's empty cache does
    /// (`FreeLists::take_batch`): the chain's offsets, first to last, read through the links the
    /// take left (the last one 0).
    ///
    /// # Panics
    /// If the list is found corrupt, or the chain is longer than `max` or not free.
    pub fn take_batch(&self, max: u64) -> Vec<u64> {
        let Some((first, n)) = self
            .fl
            .take_batch(&self.b, class_of(SEGMENT), max)
            .expect("list is consistent")
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut off = first;
        while off != 0 {
            assert!(out.len() < max as usize, "batch longer than {max}: {out:?}");
            let HeaderWord::Free { next, .. } =
                block::decode(self.b.word(off).load(Ordering::Relaxed))
            else {
                panic!("batch node {off} is not free");
            };
            out.push(off);
            off = next;
        }
        assert_eq!(out.len() as u64, n, "batch count");
        out
    }

    /// Takes a segment of at least `need` bytes the way an allocation does, with the Optimistic
    /// (`pessimistic == false`) or Pessimistic policy.
    ///
    /// # Panics
    /// If the list is found corrupt.
    pub fn take(&self, need: u64, pessimistic: bool) -> Option<(u64, u32)> {
        let seg = if pessimistic {
            self.take_with::<Pessimistic>(need)
        } else {
            self.take_with::<Optimistic>(need)
        };
        seg.map(|s| (s.off, s.generation))
    }

    fn take_with<P: Policy>(&self, need: u64) -> Option<crate::freelist::Segment> {
        self.fl
            .take::<P>(&self.b, need, self.limit, self.pop_slot(), |_| true)
            .expect("list is consistent")
    }

    /// Marks a popped segment as a live block (what an allocation's commit does), so a thread
    /// that still holds a stale view of it reads a LIVE header.
    pub fn make_live(&self, off: u64, free_gen: u32) {
        Entries::new(&self.b, self.maps.as_ref()).make_live(
            off,
            SEGMENT - 8,
            block::next_gen(free_gen),
        );
    }

    /// The generation the next free of a block made live from `free_gen` gets.
    pub fn next_free_gen(free_gen: u32) -> u32 {
        block::next_gen(block::next_gen(free_gen))
    }

    /// The listed segments, head first (only when no other thread runs).
    ///
    /// # Panics
    /// If the list loops or links to something that is not a free segment.
    pub fn listed(&self) -> Vec<u64> {
        match self.fl.nodes(&self.b, class_of(SEGMENT), self.limit, 64) {
            ListWalk::Ok(nodes) => {
                for &off in &nodes {
                    assert!(
                        matches!(
                            block::decode(self.b.word(off).load(Ordering::Relaxed)),
                            HeaderWord::Free { .. }
                        ),
                        "listed node {off} is not free"
                    );
                    assert_eq!(
                        self.b.word(off + 8).load(Ordering::Relaxed),
                        SEGMENT,
                        "listed node {off} lost its span"
                    );
                }
                nodes
            }
            ListWalk::Cycle(nodes) => panic!("list loops: {nodes:?}"),
            ListWalk::Bad { nodes, offset } => {
                panic!("list links to {offset}, not a free segment, after {nodes:?}")
            }
        }
    }
}
