//! The block header word's codec: its fields, `encode` (`live`, `free`, `pad`) and [`decode`],
//! and a LARGE block's tail word (the diagram is in the `block` module's docs).

use super::check::{check_ok, live_check_ok, sealed, sr_code, CHECK_K};
use crate::backing::Backing;
use crate::format::MAX_GROWABLE_CAPACITY;
use crate::sync::Ordering;

/// Bits of a LIVE word's generation (and of a handle's): every nonzero value is a generation, so
/// one position is handed the same generation again only after `2^32 - 1` generations were minted.
pub(crate) const GEN_BITS: u32 = 32;
/// Mask of a generation.
pub(crate) const GEN_MASK: u64 = (1 << GEN_BITS) - 1;

pub(crate) const KIND_SHIFT: u32 = 62;
pub(crate) const KIND_LIVE: u64 = 1;
pub(crate) const KIND_FREE: u64 = 2;
pub(crate) const KIND_PAD: u64 = 3;

pub(super) const LEN_BITS: u32 = 21;
pub(super) const LEN_MASK: u64 = (1 << LEN_BITS) - 1;
/// The 3-bit check code of a LIVE word: bits 21..24.
pub(super) const LIVE_CHECK_SHIFT: u32 = 21;
pub(super) const LIVE_GEN_SHIFT: u32 = 24;
pub(super) const STATE_SHIFT: u32 = 56;
pub(super) const STATE_MASK: u64 = 0b11;
pub(super) const READERS_SHIFT: u32 = 58;
/// The most readers one block can have pinned at once; more wait for one to leave.
pub(crate) const MAX_READERS: u64 = 0b111;
/// The value of a LIVE word's readers field that marks a block a carve left a filler behind
/// (`FILLER_BEHIND`): this build never counts readers in the word (reads hold read slots), so the
/// field's lowest bit is free for this hint. The block's free loads the word behind it only when
/// the hint is set (docs/metadata.md, 13.1), and acts on what it reads there, never on the hint
/// alone: a hint that is wrong costs one load, and a missing one leaves a filler discarded.
/// Recovery clears the field.
pub(crate) const FILLER_BEHIND: u64 = 1;

/// Whether LIVE word `w` carries the [`FILLER_BEHIND`] hint.
#[inline]
pub(crate) const fn filler_behind(w: u64) -> bool {
    (w >> READERS_SHIFT) & FILLER_BEHIND != 0
}

/// Set in the LIVE word of a block the allocator interfaces (`Allocator`, `GlobalArena`) handed
/// out: every handle operation refuses it; only their own deallocation frees it. The state-word
/// helpers (`BlockHeader`) and the reader count leave it as it is.
pub(crate) const FOREIGN: u64 = 1 << 61;

/// Whether a LIVE word belongs to a block of the allocator interfaces.
#[inline]
pub(crate) const fn is_foreign(w: u64) -> bool {
    w >> KIND_SHIFT == KIND_LIVE && w & FOREIGN != 0
}

pub(super) const NEXT_BITS: u32 = 38;
pub(super) const NEXT_MASK: u64 = (1 << NEXT_BITS) - 1;
/// A FREE word's check code: bits 38..41; its generation: bits 41..62 (21 bits).
pub(super) const FREE_CHECK_SHIFT: u32 = 38;
pub(super) const FREE_GEN_SHIFT: u32 = 41;
/// Bits of a FREE word's generation (only compared with a handle's to tell a double free).
pub(crate) const FREE_GEN_MASK: u64 = (1 << 21) - 1;
/// A PAD word's check code: bits 59..62; its span in 8-byte units: bits 0..59.
pub(super) const PAD_CHECK_SHIFT: u32 = 59;
pub(super) const PAD_MASK: u64 = (1 << PAD_CHECK_SHIFT) - 1;
pub(super) const CHECK_BITS: u64 = 0b111;

/// In a LIVE word's 21-bit length field: the block is LARGE. Lengths below this (1 MiB) are kept
/// exactly in the field; a LARGE block keeps its span in 4 KiB units in the other 20 bits and its
/// exact length in its last word (the *tail*, after the user bytes: see [`large_tail`]).
pub(super) const LARGE: u64 = 1 << 20;
pub use crate::layout::MAX_BLOCK_LEN;
pub(crate) use crate::layout::{large_span, LARGE_MIN, LARGE_UNIT};
/// The fewest span units a LARGE word can hold (the span of a `LARGE_MIN`-byte block).
pub(super) const LARGE_MIN_UNITS: u64 = (LARGE_MIN + 16).div_ceil(LARGE_UNIT);
const _: () = assert!(LARGE_MIN == LARGE);
const _: () = assert!(MAX_BLOCK_LEN == (LARGE - 1) * LARGE_UNIT - 16);

/// The value of a LIVE word's length field for a block of `len` bytes.
#[inline]
pub(super) const fn len_field(len: u64) -> u64 {
    if len < LARGE_MIN {
        len
    } else {
        LARGE | (large_span(len) / LARGE_UNIT)
    }
}

/// Whether a LIVE word is a LARGE block's (its exact length is in its tail word).
#[inline]
pub(crate) const fn is_large(w: u64) -> bool {
    w & LARGE != 0
}

/// The tail word of a LARGE block of `len` bytes with generation `generation`: the length in the
/// low 32 bits, its complement mixed with the generation in the high 32. Any single flipped bit,
/// and a tail left by an earlier block at the same place (another generation), fails
/// [`large_len`].
#[inline]
pub(crate) const fn large_tail(len: u64, generation: u32) -> u64 {
    debug_assert!(len >= LARGE_MIN && len <= MAX_BLOCK_LEN);
    len | (((!(len as u32) ^ generation) as u64) << 32)
}

/// The exact length a LARGE block's tail word `t` records, if it is the tail of a block with this
/// generation and span (`cap`, the length [`decode`] reports, is the span less 16).
#[inline]
pub(crate) const fn large_len(t: u64, generation: u32, cap: u64) -> Option<u64> {
    let len = t & 0xffff_ffff;
    if (t >> 32) as u32 == !(len as u32) ^ generation
        && len >= LARGE_MIN
        && large_span(len) == cap + 16
    {
        Some(len)
    } else {
        None
    }
}

/// The tail word of the LARGE block whose header is at `hdr` and whose length field says `cap`
/// (the span's last word, `hdr + cap + 8`: 8-aligned, since a LARGE span is a multiple of 4 KiB).
/// The caller checked that the word is LARGE and its span lies inside `b`, and keeps the block
/// from being released while this reads.
#[inline]
pub(crate) fn tail_word(b: &Backing, hdr: u64, cap: u64) -> u64 {
    debug_assert!(cap >= LARGE_MIN && (hdr + cap) % 8 == 0);
    b.word(hdr + cap + 8).load(Ordering::Relaxed)
}
// A free header's `next` link can address the largest arena (`format::MAX_GROWABLE_CAPACITY`).
const _: () = assert!(MAX_GROWABLE_CAPACITY <= (NEXT_MASK + 1) * 8);
// The LIVE word's fields tile its 64 bits.
const _: () = assert!(LEN_BITS + 3 + GEN_BITS + 2 + 3 + 1 + 2 == 64);
const _: () = assert!(LIVE_GEN_SHIFT + GEN_BITS == STATE_SHIFT);

/// The state of a LIVE block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LiveState {
    Published = 0,
    Pending = 1,
    Reserved = 2,
    Dying = 3,
}

/// A decoded block header word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderWord {
    Gap,
    Live {
        /// The block's length; for a LARGE block ([`is_large`]) the most it can hold, its span
        /// less 16: the exact length is in its tail word ([`large_len`]).
        len: u64,
        generation: u32,
        state: LiveState,
        readers: u64,
    },
    Free {
        generation: u32,
        next: u64,
    },
    Pad {
        span: u64,
    },
    /// Kind bits say GAP but other bits are set: never written by parena.
    Bad,
}

/// A LIVE word for a block of `len` bytes (`1..=MAX_BLOCK_LEN`). A LARGE block (`len >=
/// LARGE_MIN`) also needs its tail word ([`large_tail`]) written before it is published.
#[inline]
pub(crate) const fn live(len: u64, generation: u32, state: LiveState, readers: u64) -> u64 {
    debug_assert!(len <= MAX_BLOCK_LEN);
    live_field(len_field(len), generation, state, readers)
}

/// A LIVE word whose length field is `field`.
#[inline]
pub(super) const fn live_field(field: u64, generation: u32, state: LiveState, readers: u64) -> u64 {
    debug_assert!(field <= LEN_MASK && readers <= MAX_READERS);
    // The covered bits first, so the code is one multiply with no masking (the hot path).
    let covered = (KIND_LIVE << KIND_SHIFT) | ((generation as u64) << LIVE_GEN_SHIFT) | field;
    let sr = (state as u64) | (readers << 2);
    covered
        | (((covered.wrapping_mul(CHECK_K) >> 61) ^ sr_code(sr)) << LIVE_CHECK_SHIFT)
        | (sr << STATE_SHIFT)
}

/// The generation of a LIVE word.
#[inline]
pub(crate) const fn live_generation(w: u64) -> u32 {
    ((w >> LIVE_GEN_SHIFT) & GEN_MASK) as u32
}

/// [`live`] for a block shorter than [`LARGE_MIN`] (the allocation fast path: no test of the
/// length).
#[inline]
pub(crate) const fn live_small(len: u64, generation: u32, state: LiveState, readers: u64) -> u64 {
    debug_assert!(len > 0 && len < LARGE_MIN);
    live_field(len, generation, state, readers)
}

/// [`live`] for a block of the allocator interfaces (FOREIGN set, covered by the check code).
#[inline]
pub(crate) const fn live_foreign(len: u64, generation: u32, state: LiveState, readers: u64) -> u64 {
    let w = live(len, generation, state, readers);
    sealed((w & !(CHECK_BITS << LIVE_CHECK_SHIFT)) | FOREIGN)
}

/// The fast accept of a handle check: `Some((len, readers))` when `w` is a LIVE word parena wrote
/// (its check code right) for a small block (not LARGE) of `generation`, PUBLISHED, FOREIGN exactly
/// when `foreign`: exactly the words [`decode`] reads as `Live { state: Published, .. }` with that
/// generation, a length below [`LARGE_MIN`] and that FOREIGN bit. `None` for every other word: the
/// caller then decodes it in full, for a LARGE block or for the error.
#[inline(always)]
pub(crate) const fn published_small(w: u64, generation: u32, foreign: bool) -> Option<(u64, u64)> {
    const FIXED: u64 = (0b11 << KIND_SHIFT)
        | FOREIGN
        | (STATE_MASK << STATE_SHIFT)
        | LARGE
        | (GEN_MASK << LIVE_GEN_SHIFT);
    // PUBLISHED is state 0: its bits are zero in the wanted word.
    let want = (KIND_LIVE << KIND_SHIFT)
        | ((generation as u64) << LIVE_GEN_SHIFT)
        | if foreign { FOREIGN } else { 0 };
    let len = w & LEN_MASK;
    if w & FIXED == want && len != 0 && live_check_ok(w) {
        Some((len, (w >> READERS_SHIFT) & MAX_READERS))
    } else {
        None
    }
}

/// A FREE header; `next` is a byte offset (multiple of 8) or 0.
#[inline]
pub(crate) const fn free(generation: u32, next: u64) -> u64 {
    debug_assert!(next % 8 == 0 && next / 8 <= NEXT_MASK);
    sealed(
        (KIND_FREE << KIND_SHIFT)
            | (((generation as u64) & FREE_GEN_MASK) << FREE_GEN_SHIFT)
            | (next / 8),
    )
}

/// A PAD word with span 0, sealed: a word parena never writes (damage), for tests of the
/// walkers' refusals.
#[cfg(test)]
pub(crate) const fn pad_of_nothing() -> u64 {
    sealed(KIND_PAD << KIND_SHIFT)
}

/// A PAD filler covering `span` bytes (a multiple of 8, at least 8).
#[inline]
pub(crate) const fn pad(span: u64) -> u64 {
    debug_assert!(span % 8 == 0 && span >= 8 && span / 8 <= PAD_MASK);
    sealed((KIND_PAD << KIND_SHIFT) | (span / 8))
}

#[inline]
pub(crate) const fn decode(w: u64) -> HeaderWord {
    if w != 0 && !check_ok(w) {
        // Not a word parena wrote: damage, or bytes that only look like a header.
        return HeaderWord::Bad;
    }
    match w >> KIND_SHIFT {
        KIND_LIVE => {
            let state = match (w >> STATE_SHIFT) & STATE_MASK {
                0 => LiveState::Published,
                1 => LiveState::Pending,
                2 => LiveState::Reserved,
                _ => LiveState::Dying,
            };
            let field = w & LEN_MASK;
            let len = if field & LARGE == 0 {
                field
            } else if field & !LARGE >= LARGE_MIN_UNITS {
                // The span less header and tail: the most the block can hold; the exact length
                // is in the tail word.
                (field & !LARGE) * LARGE_UNIT - 16
            } else {
                return HeaderWord::Bad;
            };
            HeaderWord::Live {
                len,
                generation: live_generation(w),
                state,
                readers: (w >> READERS_SHIFT) & MAX_READERS,
            }
        }
        KIND_FREE => HeaderWord::Free {
            generation: ((w >> FREE_GEN_SHIFT) & FREE_GEN_MASK) as u32,
            next: (w & NEXT_MASK) * 8,
        },
        // Any word may be decoded (a stale handle can name bytes inside another block after a
        // merge): a span that does not fit in 64 bits is not one parena wrote.
        KIND_PAD => match (w & PAD_MASK).checked_mul(8) {
            Some(span) => HeaderWord::Pad { span },
            None => HeaderWord::Bad,
        },
        _ if w == 0 => HeaderWord::Gap,
        _ => HeaderWord::Bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockHeader;

    #[test]
    fn live_round_trip() {
        for &exact in &[
            1u64,
            7,
            8,
            4096,
            LARGE_MIN - 1,
            LARGE_MIN,
            LARGE_MIN + 5,
            MAX_BLOCK_LEN,
        ] {
            let len = if exact < LARGE_MIN {
                exact
            } else {
                large_span(exact) - 16
            };
            for &generation in &[1u32, 2, 3, 1 << 24, GEN_MASK as u32] {
                for state in [
                    LiveState::Published,
                    LiveState::Pending,
                    LiveState::Reserved,
                    LiveState::Dying,
                ] {
                    for readers in [0, 1, MAX_READERS] {
                        let w = live(exact, generation, state, readers);
                        if exact < LARGE_MIN {
                            assert_eq!(w, live_small(exact, generation, state, readers));
                        }
                        if state == LiveState::Pending {
                            assert_eq!(
                                BlockHeader(w).published_from_pending().0,
                                live(exact, generation, LiveState::Published, readers)
                            );
                        }
                        assert_eq!(is_large(w), exact >= LARGE_MIN);
                        assert_eq!(
                            crate::layout::block_span(len),
                            crate::layout::block_span(exact)
                        );
                        assert_ne!(w, 0);
                        assert_eq!(
                            decode(w),
                            HeaderWord::Live {
                                len,
                                generation,
                                state,
                                readers
                            }
                        );
                        assert_eq!(
                            decode(BlockHeader(w).with_state(LiveState::Dying).0),
                            HeaderWord::Live {
                                len,
                                generation,
                                state: LiveState::Dying,
                                readers
                            }
                        );
                    }
                }
            }
        }
        let w = live(5, 1, LiveState::Published, 0);
        assert_eq!(
            decode(BlockHeader(w).with_readers(1).0),
            HeaderWord::Live {
                len: 5,
                generation: 1,
                state: LiveState::Published,
                readers: 1
            }
        );
    }

    #[test]
    fn large_tails() {
        for &len in &[
            LARGE_MIN,
            LARGE_MIN + 1,
            LARGE_MIN + 4079,
            5 << 20,
            MAX_BLOCK_LEN,
        ] {
            let cap = large_span(len) - 16;
            let t = large_tail(len, 0xdead_beef);
            assert_eq!(large_len(t, 0xdead_beef, cap), Some(len));
            assert_eq!(
                large_len(t, 0xdead_beee, cap),
                None,
                "another generation's tail"
            );
            assert_eq!(
                large_len(t, 0xdead_beef, cap + LARGE_UNIT),
                None,
                "another span"
            );
            for i in 0..64 {
                assert_eq!(large_len(t ^ (1 << i), 0xdead_beef, cap), None, "bit {i}");
            }
        }
        // A LARGE word whose span is below the smallest LARGE block's is not one parena wrote.
        let w = sealed((KIND_LIVE << KIND_SHIFT) | (1 << LIVE_GEN_SHIFT) | LARGE | 1);
        assert_eq!(decode(w), HeaderWord::Bad);
    }

    #[test]
    fn free_and_pad_round_trip() {
        for &next in &[0u64, 8, 4096, MAX_GROWABLE_CAPACITY - 8] {
            for &generation in &[0u32, 2, FREE_GEN_MASK as u32 - 1] {
                assert_eq!(
                    decode(free(generation, next)),
                    HeaderWord::Free { generation, next }
                );
                assert_ne!(free(generation, next), 0);
            }
        }
        for &span in &[8u64, 16, 1 << 40] {
            assert_eq!(decode(pad(span)), HeaderWord::Pad { span });
        }
        assert_eq!(decode(0), HeaderWord::Gap);
        assert_eq!(decode(1), HeaderWord::Bad);
        assert_eq!(decode(u64::MAX), HeaderWord::Bad);
        assert_eq!(
            decode(pad(PAD_MASK / 8 * 8)),
            HeaderWord::Pad {
                span: PAD_MASK / 8 * 8
            }
        );
    }
}
