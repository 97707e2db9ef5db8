//! The heap walk, `verify()`, and the repair pass behind recovery and `compact()`.
//!
//! ## The clean/dirty protocol
//!
//! A writable open stores `STATE_DIRTY` in the header and makes it durable before anything else
//! changes. A clean close returns every chunk tail, flushes the heap, then stores the checksum of
//! the header's mutable words and `STATE_CLEAN`, and flushes the header. An open that finds
//! `STATE_CLEAN` with a matching checksum trusts the header: O(1) in the capacity. Anything else
//! is a dirty open: the heap is walked (read-only) first; if the walk cannot get from the data
//! start to the bump offset, the open fails with [`Error::Corrupt`] and the file is untouched.
//! Otherwise [`repair`] rebuilds the free lists from the walk.
//!
//! ## What a crash can leave, and what the walk does with it
//!
//! - A zero word: nothing was allocated from there to the next chunk boundary (a chunk's unused
//!   tail, or space reserved by an allocation whose header was never written). Reclaimed.
//! - A LIVE header in state RESERVED: an allocation from the free lists that had not returned.
//!   It was never handed out. Reclaimed.
//! - A LIVE header in state DYING: a `free` that had started. Reclaimed.
//! - A LIVE header PENDING or PUBLISHED: a block handed out. Kept, whatever it holds; its reader
//!   count is reset.
//! - A FREE segment or PAD filler, listed or not: reclaimed, merged with its free neighbours.
//!
//! Leaks are therefore bounded by the operations in flight: at most one block per thread that was
//! between writing a PENDING header and returning from `alloc`.

use crate::backing::Backing;
use crate::block::{self, LiveState, Word};
use crate::error::Error;
use crate::format::Freelist;
use crate::format::{Geometry, CLASSES, OFF_BUMP, OFF_DISCARDED, OFF_HIGH_WATER};
use crate::freelist::{class_of, FreeLists, ListWalk, Unlisted};
use crate::layout::block_span;
use crate::sync::Ordering;
use std::collections::HashMap;

/// What a heap walk found. Returned by [`crate::Arena::verify`], [`crate::Arena::compact`] and
/// recovery ([`crate::Arena::recovery_report`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Live blocks (published or pending).
    pub live_blocks: u64,
    /// Bytes those blocks hold (as requested).
    pub live_bytes: u64,
    /// Of the live blocks, those still pending (their `BlockMut` is out, or was at a crash).
    pub pending_blocks: u64,
    /// Free segments on the walk.
    pub free_segments: u64,
    /// Bytes in them.
    pub free_bytes: u64,
    /// Free segments reachable from the free lists.
    pub listed_segments: u64,
    /// Bytes in them.
    pub listed_bytes: u64,
    /// Bytes free but on no list: fillers, unlisted segments (leaked until the next repair).
    pub leaked_bytes: u64,
    /// Bytes in chunk tails never allocated (a thread's current chunk, or a crash's leftovers).
    pub gap_bytes: u64,
    /// Bytes a repair turned from leftovers (reserved, dying, fillers, gaps) into free space.
    pub reclaimed_bytes: u64,
    /// Free segments a repair merged into their neighbours.
    pub merged_segments: u64,
    /// The bump offset after the pass.
    pub bump: u64,
    /// Bytes listed in each free-list size class (index = class; filled by `verify()` only).
    pub listed_bytes_by_class: Vec<u64>,
    /// Free segments by size: entry `i` counts spans in `2^(i+4)..2^(i+5)` bytes (the last entry
    /// counts everything larger).
    pub free_histogram: [u64; 32],
    /// Everything that is not as it should be.
    pub problems: Vec<Problem>,
}

impl Report {
    /// No problems found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One inconsistency found by a walk.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A header word parena never writes.
    BadHeader {
        /// Offset of the word.
        offset: u64,
        /// The word.
        word: u64,
    },
    /// A block or segment runs past the bump offset.
    Overrun {
        /// Offset of its header.
        offset: u64,
        /// Its span.
        span: u64,
        /// The bump offset.
        limit: u64,
    },
    /// A free segment's span word is impossible.
    BadFreeSpan {
        /// Offset of the segment.
        offset: u64,
        /// The span word.
        span: u64,
    },
    /// A list links to something that is not a free segment on the walk.
    ListBadNode {
        /// Size class of the list.
        class: usize,
        /// Offset linked to.
        offset: u64,
    },
    /// A list loops.
    ListCycle {
        /// Size class of the list.
        class: usize,
    },
    /// A segment is listed in a class that does not match its span.
    ListWrongClass {
        /// Size class of the list.
        class: usize,
        /// Offset of the segment.
        offset: u64,
        /// Its span.
        span: u64,
    },
    /// A segment is on two lists, or twice on one.
    ListedTwice {
        /// Offset of the segment.
        offset: u64,
    },
}

impl Problem {
    fn into_error(self) -> Error {
        match self {
            Problem::BadHeader { offset, word } => Error::Corrupt { offset, word },
            Problem::Overrun { offset, span, .. } => Error::Corrupt { offset, word: span },
            Problem::BadFreeSpan { offset, span } => Error::Corrupt {
                offset: offset + 8,
                word: span,
            },
            Problem::ListBadNode { offset, .. } | Problem::ListedTwice { offset } => {
                Error::Corrupt { offset, word: 0 }
            }
            Problem::ListCycle { class } | Problem::ListWrongClass { class, .. } => {
                Error::Corrupt {
                    offset: crate::format::OFF_HEADS + 8 * class as u64,
                    word: 0,
                }
            }
        }
    }
}

/// One step of the walk.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Entry {
    Live {
        off: u64,
        len: u64,
        gen: u32,
        state: LiveState,
        readers: u64,
    },
    Free {
        off: u64,
        span: u64,
    },
    Pad {
        off: u64,
        span: u64,
    },
    Gap {
        off: u64,
        span: u64,
    },
}

impl Entry {
    fn span(&self) -> u64 {
        match *self {
            Entry::Live { len, .. } => block_span(len).expect("checked by the walk"),
            Entry::Free { span, .. } | Entry::Pad { span, .. } | Entry::Gap { span, .. } => span,
        }
    }
}

/// Walks the heap from the data start to `bump`, calling `f` for each entry before reading the
/// next, so `f` may rewrite everything up to the end of the entry it was given.
pub(crate) fn walk(
    b: &Backing,
    g: &Geometry,
    bump: u64,
    mut f: impl FnMut(Entry),
) -> Result<(), Problem> {
    let chunk = g.chunk();
    let mut p = g.data_start;
    while p < bump {
        // Acquire: pairs with the Release stores and CASes that published each header (walks run
        // with the heap held still, after those threads handed the arena over).
        let w = b.word(p).load(Ordering::Acquire);
        let e = match block::decode(w) {
            Word::Gap => {
                let next = g.data_start + ((p - g.data_start) / chunk + 1) * chunk;
                Entry::Gap {
                    off: p,
                    span: next.min(bump) - p,
                }
            }
            Word::Live {
                len,
                gen,
                state,
                readers,
            } => {
                if len == 0 {
                    return Err(Problem::BadHeader { offset: p, word: w });
                }
                Entry::Live {
                    off: p,
                    len,
                    gen,
                    state,
                    readers,
                }
            }
            Word::Free { .. } => {
                if p + 16 > bump {
                    return Err(Problem::Overrun {
                        offset: p,
                        span: 16,
                        limit: bump,
                    });
                }
                let span = b.word(p + 8).load(Ordering::Relaxed);
                if span < 16 || span % 8 != 0 {
                    return Err(Problem::BadFreeSpan { offset: p, span });
                }
                Entry::Free { off: p, span }
            }
            Word::Pad { span } => {
                if span == 0 {
                    return Err(Problem::BadHeader { offset: p, word: w });
                }
                Entry::Pad { off: p, span }
            }
            Word::Bad => return Err(Problem::BadHeader { offset: p, word: w }),
        };
        let span = e.span();
        if p.checked_add(span).is_none_or(|end| end > bump) {
            return Err(Problem::Overrun {
                offset: p,
                span,
                limit: bump,
            });
        }
        f(e);
        p += span;
    }
    Ok(())
}

/// A read-only walk: `Err` with the first word that stops it.
pub(crate) fn check(b: &Backing, g: &Geometry, bump: u64) -> Result<(), Error> {
    walk(b, g, bump, |_| {}).map_err(Problem::into_error)
}

/// Walks the heap and the lists without writing.
pub(crate) fn verify(b: &Backing, g: &Geometry, lists: &FreeLists, bump: u64) -> Report {
    let mut r = Report {
        bump,
        listed_bytes_by_class: vec![0; CLASSES],
        ..Report::default()
    };
    let mut free: HashMap<u64, u64> = HashMap::new();
    let walked = walk(b, g, bump, |e| match e {
        Entry::Live { len, state, .. } => {
            r.live_blocks += 1;
            r.live_bytes += len;
            if state == LiveState::Pending {
                r.pending_blocks += 1;
            }
        }
        Entry::Free { off, span, .. } => {
            r.free_segments += 1;
            r.free_bytes += span;
            r.free_histogram[histogram_bucket(span)] += 1;
            free.insert(off, span);
        }
        Entry::Pad { span, .. } => r.leaked_bytes += span,
        Entry::Gap { span, .. } => r.gap_bytes += span,
    });
    if let Err(p) = walked {
        r.problems.push(p);
    }
    let mut seen: HashMap<u64, ()> = HashMap::new();
    for c in 0..CLASSES {
        let nodes = match lists.nodes(b, c, bump, free.len() + 1) {
            ListWalk::Ok(n) => n,
            ListWalk::Cycle(n) => {
                r.problems.push(Problem::ListCycle { class: c });
                n
            }
            ListWalk::Bad { nodes, offset } => {
                r.problems.push(Problem::ListBadNode { class: c, offset });
                nodes
            }
        };
        for off in nodes {
            match free.get(&off) {
                None => r.problems.push(Problem::ListBadNode {
                    class: c,
                    offset: off,
                }),
                Some(&span) => {
                    if class_of(span) != c {
                        r.problems.push(Problem::ListWrongClass {
                            class: c,
                            offset: off,
                            span,
                        });
                    }
                    if seen.insert(off, ()).is_some() {
                        r.problems.push(Problem::ListedTwice { offset: off });
                    } else {
                        r.listed_segments += 1;
                        r.listed_bytes += span;
                        r.listed_bytes_by_class[c] += span;
                    }
                }
            }
        }
    }
    r.leaked_bytes += r.free_bytes - r.listed_bytes.min(r.free_bytes);
    r
}

/// The `free_histogram` entry for a segment of `span` bytes.
fn histogram_bucket(span: u64) -> usize {
    ((63 - span.max(16).leading_zeros()) as usize - 4).min(31)
}

/// Rebuilds the free lists from a walk, merging every run of free space (free segments, fillers,
/// gaps, and with `recovering` also RESERVED and DYING blocks) into one segment, and moves the bump
/// offset back over free space at the end. Exclusive callers only, after [`check`] passed.
pub(crate) fn repair(
    b: &Backing,
    g: &Geometry,
    capacity: u64,
    lists: &FreeLists,
    recovering: bool,
) -> Result<Report, Error> {
    let bump0 = b.word(OFF_BUMP).load(Ordering::Relaxed);
    let mut r = Report::default();
    lists.clear_all(b);
    let mut discarded = 0u64;
    // The run of free space being gathered: start, end, pieces in it.
    let mut run: Option<(u64, u64, u64)> = None;
    let put = |start: u64, end: u64, r: &mut Report, discarded: &mut u64| {
        let span = end - start;
        *discarded += lists.give_back(b, g, start, span, Unlisted::Segment);
        if span >= 16 {
            r.free_segments += 1;
            r.free_bytes += span;
            r.free_histogram[histogram_bucket(span)] += 1;
        }
    };
    let walked = walk(b, g, bump0, |e| {
        let off = match e {
            Entry::Live { off, .. }
            | Entry::Free { off, .. }
            | Entry::Pad { off, .. }
            | Entry::Gap { off, .. } => off,
        };
        let span = e.span();
        let freeable = match e {
            Entry::Live { state, .. } => {
                recovering && matches!(state, LiveState::Reserved | LiveState::Dying)
            }
            _ => true,
        };
        if freeable {
            match e {
                Entry::Free { .. } => {}
                _ => r.reclaimed_bytes += span,
            }
            run = Some(match run {
                Some((s, _, n)) => (s, off + span, n + 1),
                None => (off, off + span, 1),
            });
            return;
        }
        if let Some((s, end, n)) = run.take() {
            r.merged_segments += n - 1;
            put(s, end, &mut r, &mut discarded);
        }
        if let Entry::Live {
            len,
            gen,
            state,
            readers,
            ..
        } = e
        {
            r.live_blocks += 1;
            r.live_bytes += len;
            if recovering && (readers != 0 || state != LiveState::Published) {
                b.word(off).store(
                    block::live(len, gen, LiveState::Published, 0),
                    Ordering::Relaxed,
                );
            }
            if state == LiveState::Pending {
                r.pending_blocks += 1;
            }
        }
    });
    walked.map_err(Problem::into_error)?;
    let mut bump = bump0;
    if let Some((s, end, n)) = run.take() {
        r.merged_segments += n - 1;
        debug_assert_eq!(end, bump0);
        // Free space reaches the bump offset: give it back to the main memory, down to the next
        // chunk boundary.
        let chunk = g.chunk();
        let boundary = (g.data_start + (s - g.data_start).div_ceil(chunk) * chunk).min(bump0);
        if boundary > s {
            put(s, boundary, &mut r, &mut discarded);
        }
        let hw = b.word(OFF_HIGH_WATER);
        hw.store(hw.load(Ordering::Relaxed).max(bump0), Ordering::Relaxed);
        bump = boundary;
        b.word(OFF_BUMP).store(bump, Ordering::Relaxed);
    }
    if recovering {
        // After a power loss, pages past the durable bump offset may hold data written after the
        // last flush: never assume they read zero.
        b.word(OFF_HIGH_WATER).store(capacity, Ordering::Relaxed);
    }
    b.word(OFF_DISCARDED).store(discarded, Ordering::Relaxed);
    r.listed_segments = r.free_segments;
    r.listed_bytes = r.free_bytes;
    if g.freelist == Freelist::None {
        r.listed_segments = 0;
        r.listed_bytes = 0;
    }
    r.leaked_bytes = discarded;
    r.bump = bump;
    b.flush(g.data_start, bump0 - g.data_start)?;
    b.flush(0, g.data_start)?;
    Ok(r)
}
