//! The entry stepper: given a position in the heap, decode the block-header word there and return
//! the entry it starts (LIVE, FREE, PAD, or a zero run to the next chunk line), or why it cannot be
//! stepped over. The heap walk behind `check`, `verify` and the repair ([`super::walk`]), the dirty
//! open's plan ([`super::cut`]) and salvage (`src/salvage/plan.rs`) all step with [`step`]; what
//! each accepts besides the decoding is its [`Rule`], and what it does with an entry or a refusal
//! (report a problem, drop a region, lose a block) stays with the caller.
//!
//! ## What every caller checks (the stepper)
//!
//! - A zero word is a never-used chunk tail: it runs to the next line of the chunk grid, or to the
//!   limit of the step, whichever comes first.
//! - A LIVE word has a nonzero length and a nonzero generation (parena writes neither 0); its span
//!   is the block's (`block_span`).
//! - A FREE word has its span word inside the limit, a multiple of 8 and at least 16.
//! - A PAD word has a nonzero span.
//! - The entry ends at or before the limit.
//! - A LARGE block's exact length is read from its tail word; a tail that is not its own is
//!   reported with the entry ([`Live::exact`]), not refused: the span is the header's.
//!
//! ## How the three walkers differed before they shared the stepper
//!
//! - **Zero runs.** The heap walk steps over any zero run. The dirty open's plan refuses one that
//!   holds a start the live map records after its first word (a zeroed page over entries, not an
//!   unused tail); salvage refuses one that holds a recorded start anywhere, its first word
//!   included. Deliberate: the walk runs on a heap the repair has made consistent or refuses the
//!   file; the plan must keep a crash between setting a start bit and writing the LIVE header
//!   (the bit set, the word still zero) walkable, since that block was never handed out; salvage
//!   copies only what two records agree on, and a recorded start with no header is a disagreement
//!   (the region is reported lost; nothing in it was ever handed out).
//! - **Entries and the start map.** The walk and the plan step over LIVE, FREE and PAD entries
//!   whatever the start map says (the plan then sends a handed-out LIVE block the map does not
//!   vouch for to the repair as DYING). Salvage steps only over an entry at a recorded start, with
//!   no recorded start inside it, that ends where the next step can begin (a recorded start, a zero
//!   run without one, or the limit). Deliberate: salvage runs on a damaged file and the start map
//!   is its second record.
//! - **PAD spans.** Salvage also checked that a PAD span is a multiple of 8: every decoded PAD span
//!   is (the word counts 8-byte units), so the check was redundant and is gone.
//! - **LARGE tails.** The walk reports a PUBLISHED or PENDING LARGE block whose tail is not its
//!   own as a problem (`Problem::BadTail`); the plan stops the gap there (the region is dropped
//!   unless the flush map fixes the block); salvage steps over it and reports the block lost
//!   (`LostReason::BadTail`). RESERVED and DYING blocks are reclaimed by every caller whatever the
//!   tail says. Deliberate: each follows what its caller does with an untrusted length.
//! - **Order of the checks.** The walk reported a FREE header too close to the limit as an
//!   overrun of 16 bytes before reading its span word, then a bad span word, then an overrun of
//!   the span; the others only stopped. The stepper keeps the walk's order, so its problems are
//!   the same.
//!
//! No difference was a bug: each is what its caller's guarantee needs (docs/recovery.md).

use crate::backing::Backing;
use crate::block::{self, HeaderWord, LiveState};
use crate::format::Geometry;
use crate::layout::block_span;
use crate::sync::Ordering;

/// A LIVE entry's fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Live {
    /// The header word.
    pub word: u64,
    /// The length field: a small block's exact length, a LARGE block's capacity.
    pub len: u64,
    pub generation: u32,
    pub state: LiveState,
    pub readers: u64,
    /// The exact length: `Ok` for a small block and for a LARGE block whose tail word is its own;
    /// `Err(tail word)` otherwise.
    pub exact: Result<u64, u64>,
}

/// The entry that starts at a position.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Entry {
    Live(Live),
    Free {
        generation: u32,
    },
    Pad,
    /// A zero run: a never-used chunk tail.
    Gap,
}

/// One step: the entry and its span (the next step begins `span` bytes on).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Step {
    pub span: u64,
    pub entry: Entry,
}

/// Why the word at a position cannot be stepped over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stuck {
    /// A word parena does not write as a header.
    BadHeader { word: u64 },
    /// A FREE header whose span word is impossible.
    BadFreeSpan { span: u64 },
    /// The entry (or a FREE header's two words) runs past the limit.
    Overrun { span: u64 },
    /// The caller's [`Rule`] refused the entry that starts with `word`.
    Refused { word: u64 },
}

/// What a caller accepts besides the stepper's own checks.
pub(crate) trait Rule {
    /// Whether the zero run `at..end` may be stepped over as a never-used chunk tail.
    fn gap(&self, _at: u64, _end: u64) -> bool {
        true
    }

    /// Whether the entry `at..end` (not a zero run) may be stepped over.
    fn entry(&self, _at: u64, _end: u64) -> bool {
        true
    }
}

/// Accepts everything the stepper does.
pub(crate) struct AnyEntry;

impl Rule for AnyEntry {}

/// Steps over the entry at `at` (below `limit`), not past `limit`.
pub(crate) fn step(
    b: &Backing,
    g: &Geometry,
    at: u64,
    limit: u64,
    rule: &impl Rule,
) -> Result<Step, Stuck> {
    debug_assert!(at < limit);
    // Acquire: pairs with the Release stores and CASes that published each header (walks run
    // with the heap held still, after those threads handed the arena over).
    let word = b.word(at).load(Ordering::Acquire);
    let bad = Stuck::BadHeader { word };
    let (span, entry) = match block::decode(word) {
        HeaderWord::Gap => {
            let end = g.chunk_line_after(at).min(limit);
            if !rule.gap(at, end) {
                return Err(Stuck::Refused { word });
            }
            return Ok(Step {
                span: end - at,
                entry: Entry::Gap,
            });
        }
        HeaderWord::Live {
            len,
            generation,
            state,
            readers,
        } => {
            let span = block_span(len)
                .filter(|_| len > 0 && generation != 0)
                .ok_or(bad)?;
            let live = Live {
                word,
                len,
                generation,
                state,
                readers,
                exact: Ok(len),
            };
            (span, Entry::Live(live))
        }
        HeaderWord::Free { generation, .. } => {
            if limit - at < 16 {
                return Err(Stuck::Overrun { span: 16 });
            }
            let span = b.word(at + 8).load(Ordering::Relaxed);
            if span < 16 || span % 8 != 0 {
                return Err(Stuck::BadFreeSpan { span });
            }
            (span, Entry::Free { generation })
        }
        HeaderWord::Pad { span } if span > 0 => (span, Entry::Pad),
        HeaderWord::Pad { .. } | HeaderWord::Bad => return Err(bad),
    };
    let end = at
        .checked_add(span)
        .filter(|&e| e <= limit)
        .ok_or(Stuck::Overrun { span })?;
    if !rule.entry(at, end) {
        return Err(Stuck::Refused { word });
    }
    let entry = match entry {
        // A LARGE block's exact length is in its tail word (its span's last word), written before
        // its allocation returned.
        Entry::Live(mut l) if l.len >= block::LARGE_MIN => {
            let t = block::tail_word(b, at, l.len);
            l.exact = block::large_len(t, l.generation, l.len).ok_or(t);
            Entry::Live(l)
        }
        e => e,
    };
    Ok(Step { span, entry })
}
