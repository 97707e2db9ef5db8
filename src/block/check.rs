//! The 3-bit check code of a block header word (the `block` module's docs say what it covers).

use super::header_word::{
    CHECK_BITS, FREE_CHECK_SHIFT, KIND_FREE, KIND_LIVE, KIND_SHIFT, LIVE_CHECK_SHIFT, MAX_READERS,
    PAD_CHECK_SHIFT, READERS_SHIFT, STATE_MASK, STATE_SHIFT,
};

/// The bits of a word its check code covers: everything but the code itself and, in a LIVE word,
/// the state and reader count (which every pin and publish changes).
#[inline]
pub(super) const fn covered(w: u64) -> u64 {
    match w >> KIND_SHIFT {
        KIND_LIVE => {
            w & !((CHECK_BITS << LIVE_CHECK_SHIFT)
                | (STATE_MASK << STATE_SHIFT)
                | (MAX_READERS << READERS_SHIFT))
        }
        KIND_FREE => w & !(CHECK_BITS << FREE_CHECK_SHIFT),
        _ => w & !(CHECK_BITS << PAD_CHECK_SHIFT),
    }
}

/// The multiplier of the check code. Every 3-bit window of it is neither `000` nor `111`, so
/// flipping any one bit `i` of the covered word adds or subtracts `K << i`, whose top three bits
/// (the code) are then 1..=6, and a carry or borrow cannot turn that into a change of 0 mod 8:
/// every single-bit flip changes the code. A random word passes with probability 1/8.
pub(super) const CHECK_K: u64 = 0xB6DB_6DB6_DB6D_B6DB;

/// The 3-bit check code of a word: of its covered bits, and in a LIVE word also of its state and
/// readers ([`sr_code`], XORed in, so a pin or a publish updates the code without the multiply).
#[inline]
pub(super) const fn check_of(w: u64) -> u64 {
    let c = covered(w).wrapping_mul(CHECK_K) >> 61;
    if w >> KIND_SHIFT == KIND_LIVE {
        c ^ sr_code((w >> STATE_SHIFT) & SR_MASK)
    } else {
        c
    }
}

/// The state and readers of a LIVE word, bits 56..61, as one 5-bit field `sr` (state in its low
/// two bits, readers above).
pub(super) const SR_MASK: u64 = 0b11111;
const _: () = assert!(READERS_SHIFT == STATE_SHIFT + 2);

/// The part of a LIVE word's check code that covers `sr`: a linear map from 5 bits to 3 whose
/// columns are all nonzero (bit `i` maps to bit `i mod 3`), so flipping any one state or reader
/// bit changes it, while the multiplicative part is unchanged; and a change of `sr` from `x` to
/// `y` changes the code by `sr_code(x ^ y)`.
#[inline]
pub(super) const fn sr_code(sr: u64) -> u64 {
    (sr ^ (sr >> 3)) & CHECK_BITS
}

/// `w`, a LIVE word, with its state and readers set to `sr` and its check code kept right.
#[inline]
pub(super) const fn with_sr(w: u64, sr: u64) -> u64 {
    let d = ((w >> STATE_SHIFT) & SR_MASK) ^ sr;
    w ^ (d << STATE_SHIFT) ^ (sr_code(d) << LIVE_CHECK_SHIFT)
}

/// The shift of a word's check field, by kind.
#[inline]
pub(super) const fn check_shift(w: u64) -> u32 {
    match w >> KIND_SHIFT {
        KIND_LIVE => LIVE_CHECK_SHIFT,
        KIND_FREE => FREE_CHECK_SHIFT,
        _ => PAD_CHECK_SHIFT,
    }
}

/// `w` (check field clear) with its check code set.
#[inline]
pub(super) const fn sealed(w: u64) -> u64 {
    w | (check_of(w) << check_shift(w))
}

/// [`check_ok`] of a word whose kind bits say LIVE (the handle check's fast accept: no dispatch
/// on the kind).
#[inline(always)]
pub(super) const fn live_check_ok(w: u64) -> bool {
    const COVERED: u64 = !((CHECK_BITS << LIVE_CHECK_SHIFT)
        | (STATE_MASK << STATE_SHIFT)
        | (MAX_READERS << READERS_SHIFT));
    let code = ((w & COVERED).wrapping_mul(CHECK_K) >> 61) ^ sr_code((w >> STATE_SHIFT) & SR_MASK);
    (w >> LIVE_CHECK_SHIFT) & CHECK_BITS == code
}

/// Whether a nonzero word's check code matches its covered bits.
#[inline]
pub(crate) const fn check_ok(w: u64) -> bool {
    (w >> check_shift(w)) & CHECK_BITS == check_of(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::header_word::*;
    use crate::format::MAX_GROWABLE_CAPACITY;

    /// Every single-bit flip of a word's covered bits (all but the kind bits, and a LIVE word's
    /// state and readers) and of its check code makes the word `Bad`.
    #[test]
    fn one_flipped_bit_fails_the_check_code() {
        let words = [
            live(1, 1, LiveState::Published, 0),
            live(40, 0xdead_beef, LiveState::Pending, 3),
            live(
                MAX_BLOCK_LEN,
                GEN_MASK as u32,
                LiveState::Dying,
                MAX_READERS,
            ),
            live_foreign(4096, 77, LiveState::Published, 0),
            free(2, 0),
            free(0x1f_fffe, MAX_GROWABLE_CAPACITY - 8),
            pad(8),
            pad(PAD_MASK / 8 * 8),
        ];
        for w in words {
            assert!(check_ok(w), "{w:#x}");
            for i in 0..KIND_SHIFT {
                let bit = 1u64 << i;
                assert_eq!(decode(w ^ bit), HeaderWord::Bad, "{w:#x} bit {i}");
            }
        }
    }

    /// The handle check's fast accept says yes exactly when the full decode finds a small,
    /// PUBLISHED LIVE word of the handle's generation, FOREIGN as asked, and then gives the same
    /// length and readers: over words of every kind, state, reader count and length class, each
    /// with every single bit flipped, and pseudo-random words.
    #[test]
    fn the_fast_accept_agrees_with_decode() {
        let agree = |w: u64, generation: u32| {
            for foreign in [false, true] {
                let full = match decode(w) {
                    HeaderWord::Live {
                        len,
                        generation: g,
                        state: LiveState::Published,
                        readers,
                    } if g == generation && is_foreign(w) == foreign && !is_large(w) => {
                        Some((len, readers))
                    }
                    _ => None,
                };
                assert_eq!(
                    published_small(w, generation, foreign),
                    full,
                    "{w:#x} gen {generation} foreign {foreign}"
                );
            }
        };
        let mut words = vec![0, free(7, 64), pad(16)];
        for state in [
            LiveState::Published,
            LiveState::Pending,
            LiveState::Reserved,
            LiveState::Dying,
        ] {
            for readers in 0..=MAX_READERS {
                for len in [1, 32, LARGE_MIN - 1, LARGE_MIN, MAX_BLOCK_LEN] {
                    words.push(live(len, 0x1234_5678, state, readers));
                    words.push(live_foreign(len, 0x1234_5678, state, readers));
                }
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            words.push(x);
        }
        // Under Miri (thousands of times slower) a sample of the words: every 251st.
        let stride = if cfg!(miri) { 251 } else { 1 };
        for &w in words.iter().step_by(stride) {
            for g in [0x1234_5678, 0x1234_5679, live_generation(w)] {
                agree(w, g);
                for i in 0..64 {
                    agree(w ^ (1 << i), g);
                }
            }
        }
    }
}
