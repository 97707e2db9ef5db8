//! The entry stepper: given a position in the heap, decode the block-header word there and return
//! the entry it starts (LIVE, FREE, PAD, or a zero run to the next chunk line), or why it cannot be
//! stepped over. The heap walk behind `check`, `verify` and the repair ([`super::walk`]), the dirty
//! open's plan ([`super::cut`]: its fixed blocks and its gaps) and salvage
//! (`src/salvage/plan.rs`) all step with [`step`]; what each accepts besides the decoding is its
//! [`Rule`], and what it does with an entry or a refusal (report a problem, drop a region, lose a
//! block) stays with the caller.
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
//!   holds a start the start map records after its first word (a zeroed page over entries, not an
//!   unused tail). Deliberate: the walk runs on a heap the plan and the repair have made
//!   consistent, or refuses the file; the plan must keep walkable a crash between setting a start
//!   bit and writing the LIVE header (the bit set, the word still zero), since that block was
//!   never handed out. Salvage refused a zero run with a recorded start at its first word too: a
//!   **bug**. In the image of a process crash at that point, it reported the run unwalkable and
//!   resumed at the next recorded start without reaching it, so the next block allocated since the
//!   last flush (another thread's, which recovery keeps) was lost as `LostReason::OneRecord`
//!   (`salvage::tests::a_crash_between_a_start_bit_and_its_header_loses_no_block`). Salvage now
//!   has the plan's rule and reports such a run as `LostReason::NoHeader` (docs/recovery.md,
//!   "Salvage", has the cases).
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
//! - **Memory order.** The walk loaded each header word with Acquire (it pairs with the Release
//!   stores that published the headers); the plan and salvage loaded it Relaxed, on a heap no other
//!   thread writes. The stepper loads it with Acquire for all: no caller sees another value.
//!
//! The other differences are what each caller's guarantee needs (docs/recovery.md).

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

#[cfg(test)]
mod tests {
    use super::{step, AnyEntry, Entry, Rule, Stuck};
    use crate::backing::Backing;
    use crate::block::{self, LiveState, LARGE_MIN};
    use crate::format::{Freelist, Geometry};
    use crate::layout::large_span;
    use crate::sync::Ordering;

    const DS: u64 = 4096;

    fn geometry() -> Geometry {
        Geometry {
            magic_version: 0,
            freelist: Freelist::Optimistic,
            chunk_shift: 12,
            reserved_len: 0,
            min_segment: 32,
            data_start: DS,
            arena_id: 1,
            max_capacity: 0,
        }
    }

    fn set(b: &Backing, off: u64, w: u64) {
        b.word(off).store(w, Ordering::Relaxed);
    }

    struct Refuse;

    impl Rule for Refuse {
        fn gap(&self, _: u64, _: u64) -> bool {
            false
        }

        fn entry(&self, _: u64, _: u64) -> bool {
            false
        }
    }

    #[test]
    fn steps_over_each_kind_of_entry() {
        let (b, g) = (Backing::heap(4 * DS).unwrap(), geometry());
        set(&b, DS, block::live(20, 5, LiveState::Published, 0));
        set(&b, DS + 32, block::pad(16));
        set(&b, DS + 48, block::free(3, 0));
        set(&b, DS + 56, 48);
        let s = step(&b, &g, DS, 4 * DS, &AnyEntry).unwrap();
        assert_eq!(s.span, 32);
        assert!(matches!(s.entry, Entry::Live(l) if l.exact == Ok(20) && l.generation == 5));
        let s = step(&b, &g, DS + 32, 4 * DS, &AnyEntry).unwrap();
        assert!(matches!(s.entry, Entry::Pad) && s.span == 16);
        let s = step(&b, &g, DS + 48, 4 * DS, &AnyEntry).unwrap();
        assert!(matches!(s.entry, Entry::Free { generation: 3 }) && s.span == 48);
        // A zero run ends at the next chunk line, or at the limit.
        let s = step(&b, &g, DS + 96, 4 * DS, &AnyEntry).unwrap();
        assert!(matches!(s.entry, Entry::Gap) && s.span == DS - 96);
        let s = step(&b, &g, DS + 96, DS + 200, &AnyEntry).unwrap();
        assert_eq!(s.span, 104);
    }

    #[test]
    fn says_why_a_word_cannot_be_stepped() {
        let (b, g) = (Backing::heap(4 * DS).unwrap(), geometry());
        let stuck = |w: u64, at: u64, limit: u64| {
            set(&b, at, w);
            step(&b, &g, at, limit, &AnyEntry).unwrap_err()
        };
        let zero_gen = block::live(20, 0, LiveState::Published, 0);
        assert_eq!(
            stuck(zero_gen, DS, 2 * DS),
            Stuck::BadHeader { word: zero_gen }
        );
        assert_eq!(
            stuck(block::pad_of_nothing(), DS, 2 * DS),
            Stuck::BadHeader {
                word: block::pad_of_nothing()
            }
        );
        let live = block::live(100, 9, LiveState::Published, 0);
        assert_eq!(stuck(live, DS, DS + 64), Stuck::Overrun { span: 112 });
        // A FREE header needs its span word inside the limit, and a possible span.
        assert_eq!(
            stuck(block::free(1, 0), DS + 56, DS + 64),
            Stuck::Overrun { span: 16 }
        );
        set(&b, DS + 8, 12);
        assert_eq!(
            stuck(block::free(1, 0), DS, DS + 64),
            Stuck::BadFreeSpan { span: 12 }
        );
        // The caller's rule is asked last, about entries and zero runs alike.
        set(&b, DS, live);
        assert_eq!(
            step(&b, &g, DS, 2 * DS, &Refuse).unwrap_err(),
            Stuck::Refused { word: live }
        );
        assert_eq!(
            step(&b, &g, DS + 2048, 2 * DS, &Refuse).unwrap_err(),
            Stuck::Refused { word: 0 }
        );
    }

    #[test]
    fn reports_a_large_blocks_tail_without_refusing_it() {
        let span = large_span(LARGE_MIN);
        let (b, g) = (Backing::heap(DS + span + DS).unwrap(), geometry());
        set(&b, DS, block::live(LARGE_MIN, 7, LiveState::Published, 0));
        let tail = DS + span - 8;
        set(&b, tail, block::large_tail(LARGE_MIN, 7));
        let s = step(&b, &g, DS, DS + span, &AnyEntry).unwrap();
        assert!(matches!(s.entry, Entry::Live(l) if l.exact == Ok(LARGE_MIN)) && s.span == span);
        set(&b, tail, 5);
        let s = step(&b, &g, DS, DS + span, &AnyEntry).unwrap();
        assert!(matches!(s.entry, Entry::Live(l) if l.exact == Err(5)) && s.span == span);
    }
}
