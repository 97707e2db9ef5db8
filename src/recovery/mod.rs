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

pub(crate) mod cut;
mod repair;
pub(crate) mod step;
mod walk;

pub(crate) use repair::repair;
pub(crate) use walk::{check, verify, walk};

use crate::block::LiveState;
use crate::error::Error;
use crate::layout::block_span;

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
    /// What recovery could not vouch for and turned into free space: heap regions whose blocks
    /// were allocated after the last flush and whose metadata a power cut left partly written,
    /// and LIVE headers the start map does not record. Never a block live at the last flush
    /// (docs/recovery.md).
    pub dropped: Vec<Dropped>,
    /// Recovery only: of the live blocks, those the last flush's map vouched for (live at that
    /// flush, not freed since). The rest were allocated after it and walked whole.
    pub flushed_blocks: u64,
}

/// A heap region recovery dropped (see [`Report::dropped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dropped {
    /// Offset of its first byte (a header word).
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
}

impl Report {
    /// No problems found and nothing dropped.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.dropped.is_empty()
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
    /// A published LARGE block's tail word (its exact length, after its bytes) is not its own.
    BadTail {
        /// Offset of the block's header.
        offset: u64,
        /// The tail word.
        word: u64,
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
    /// An entry of the heap walk that the start map does not record.
    StartMissing {
        /// Offset of its header.
        offset: u64,
    },
    /// A start the start map records where the heap walk finds no entry.
    StartExtra {
        /// Offset of the bit.
        offset: u64,
    },
    /// The header says its last writer closed it cleanly, but the header page and reserved area
    /// do not match the checksum that close sealed: damage (a crash never leaves this), not a
    /// crash. Which word was hit cannot be told, so a root or a reserved byte may have changed;
    /// the open did not trust the header and recovered the layout from the heap and its maps.
    HeaderChecksum {
        /// The checksum the header holds.
        expected: u64,
        /// The checksum of what the header and reserved area hold now.
        found: u64,
    },
    /// A root slot whose value does not match its check word (or whose check word is damaged):
    /// the value may not be the one last stored. Reported until `set_root` stores the slot again.
    Root {
        /// The slot.
        slot: usize,
        /// Its value now.
        value: u64,
    },
    /// A meta slot (the layout as of a flush) that is neither valid nor never written.
    MetaSlot {
        /// The slot, 0 or 1.
        slot: u64,
    },
    /// A header word parena keeps zero (spare, padding, a meta slot's unused words) is not.
    HeaderSpare {
        /// Offset of the word.
        offset: u64,
        /// The word.
        word: u64,
    },
}

impl Problem {
    /// The problem a fault of the header page is.
    pub(crate) fn of_header(f: crate::format::HeaderFault) -> Problem {
        match f {
            crate::format::HeaderFault::MetaSlot { slot } => Problem::MetaSlot { slot },
            crate::format::HeaderFault::Spare { offset, word } => {
                Problem::HeaderSpare { offset, word }
            }
            crate::format::HeaderFault::Root { slot, value } => Problem::Root { slot, value },
        }
    }

    pub(crate) fn into_error(self) -> Error {
        match self {
            Problem::BadHeader { offset, word } => Error::Corrupt { offset, word },
            Problem::Overrun { offset, span, .. } => Error::Corrupt { offset, word: span },
            Problem::BadFreeSpan { offset, span } => Error::Corrupt {
                offset: offset + 8,
                word: span,
            },
            Problem::BadTail { offset, word } => Error::Corrupt { offset, word },
            Problem::HeaderChecksum { expected, .. } => Error::Corrupt {
                offset: crate::format::OFF_STATE_CHECKSUM,
                word: expected,
            },
            Problem::MetaSlot { slot } => Error::Corrupt {
                offset: crate::format::OFF_META + 256 * slot,
                word: 0,
            },
            Problem::HeaderSpare { offset, word } => Error::Corrupt { offset, word },
            Problem::Root { slot, value } => Error::Corrupt {
                offset: crate::format::OFF_ROOTS + crate::format::ROOT_SLOT_BYTES * slot as u64,
                word: value,
            },
            Problem::ListBadNode { offset, .. }
            | Problem::ListedTwice { offset }
            | Problem::StartMissing { offset }
            | Problem::StartExtra { offset } => Error::Corrupt { offset, word: 0 },
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
pub(crate) enum Region {
    Live {
        off: u64,
        len: u64,
        generation: u32,
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

impl Region {
    fn span(&self) -> u64 {
        match *self {
            Region::Live { len, .. } => block_span(len).expect("checked by the walk"),
            Region::Free { span, .. } | Region::Pad { span, .. } | Region::Gap { span, .. } => span,
        }
    }
}

/// The `free_histogram` entry for a segment of `span` bytes.
pub(super) fn histogram_bucket(span: u64) -> usize {
    ((63 - span.max(16).leading_zeros()) as usize - 4).min(31)
}
