//! The per-block header word and [`Handle`].
//!
//! Every block, free segment and filler in the heap starts with one 8-byte header word. Its top two
//! bits say what follows:
//!
//! ```text
//!  63 62 61 60  58 57 56 55                              24 23 21 20                      0
//! +-----+--+-------+-----+----------------------------------+-----+------------------------+
//! | 0 1 |F |readers|state|   generation (32 bits, nonzero)  |check| length in bytes (21)   |  LIVE
//! +-----+--+-------+-----+----------------------------------+-----+------------------------+
//!  63 62 61                          41 40 38 37                                          0
//! +-----+------------------------------+-----+---------------------------------------------+
//! | 1 0 | generation (low 21 bits)     |check| next free segment, 8-byte units (0 = end)   |  FREE
//! +-----+------------------------------+-----+---------------------------------------------+
//!  63 62 61 59 58                                                                         0
//! +-----+-----+----------------------------------------------------------------------------+
//! | 1 1 |check|                 span in 8-byte units                                       |  PAD
//! +-----+-----+----------------------------------------------------------------------------+
//! all 64 bits zero: GAP, nothing was ever allocated from here to the next chunk boundary
//! ```
//!
//! `check` is a 3-bit code over every other bit of the word: the top three bits of `covered * K`
//! (`covered`: the word without its code and, in a LIVE word, without `state` and `readers`) for a
//! constant `K` none of whose 3-bit windows is `000` or `111`, XORed in a LIVE word with a linear
//! code of `state` and `readers` ([`sr_code`]), so a publish or a pin updates the code without the
//! multiply. Any single flipped bit below the kind bits makes the word invalid (`decode` gives
//! `Bad`), and a random word passes with probability 1/8. A flipped kind bit changes which bits are
//! covered and is caught by the code with probability 7/8, and otherwise by the heap walk against
//! the start map.
//!
//! A FREE segment keeps its span (bytes, header included) in the word after the header; the
//! lock-free list reads only header words of nodes it does not own, so it never reads memory a
//! user may be writing. A LIVE block's span is `8 + round_up(len, 8)` below 1 MiB; from 1 MiB a
//! block is LARGE: the length field holds its span in 4 KiB units, and its exact length is in its
//! span's last word (the tail: [`large_tail`]).
//!
//! `F` (bit 61) marks a block of the allocator interfaces (`FOREIGN`): handles never reach it.
//!
//! LIVE states: `PUBLISHED` (readable and freeable), `PENDING` (a [`crate::BlockMut`] is out),
//! `RESERVED` (being initialised by the allocator, never handed out: recovery reclaims it), `DYING`
//! (a free is in progress, or waits for readers to drain).

use crate::backing::Backing;
use crate::format::{MAX_CAPACITY, OFF_GEN_SEED};
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

const LEN_BITS: u32 = 21;
const LEN_MASK: u64 = (1 << LEN_BITS) - 1;
/// The 3-bit check code of a LIVE word: bits 21..24.
const LIVE_CHECK_SHIFT: u32 = 21;
const LIVE_GEN_SHIFT: u32 = 24;
const STATE_SHIFT: u32 = 56;
const STATE_MASK: u64 = 0b11;
const READERS_SHIFT: u32 = 58;
/// The most readers one block can have pinned at once; more wait for one to leave.
pub(crate) const MAX_READERS: u64 = 0b111;
/// Set in the LIVE word of a block the allocator interfaces (`Allocator`, `GlobalArena`) handed
/// out: every handle operation refuses it; only their own deallocation frees it. The state-word
/// helpers (`Header`) and the reader count leave it as it is.
pub(crate) const FOREIGN: u64 = 1 << 61;

/// Whether a LIVE word belongs to a block of the allocator interfaces.
#[inline]
pub(crate) const fn is_foreign(w: u64) -> bool {
    w >> KIND_SHIFT == KIND_LIVE && w & FOREIGN != 0
}

const NEXT_BITS: u32 = 38;
const NEXT_MASK: u64 = (1 << NEXT_BITS) - 1;
/// A FREE word's check code: bits 38..41; its generation: bits 41..62 (21 bits).
const FREE_CHECK_SHIFT: u32 = 38;
const FREE_GEN_SHIFT: u32 = 41;
/// Bits of a FREE word's generation (only compared with a handle's to tell a double free).
pub(crate) const FREE_GEN_MASK: u64 = (1 << 21) - 1;
/// A PAD word's check code: bits 59..62; its span in 8-byte units: bits 0..59.
const PAD_CHECK_SHIFT: u32 = 59;
const PAD_MASK: u64 = (1 << PAD_CHECK_SHIFT) - 1;
const CHECK_BITS: u64 = 0b111;

/// In a LIVE word's 21-bit length field: the block is LARGE. Lengths below this (1 MiB) are kept
/// exactly in the field; a LARGE block keeps its span in 4 KiB units in the other 20 bits and its
/// exact length in its last word (the *tail*, after the user bytes: see [`large_tail`]).
const LARGE: u64 = 1 << 20;
pub use crate::layout::MAX_BLOCK_LEN;
pub(crate) use crate::layout::{large_span, LARGE_MIN, LARGE_UNIT};
/// The fewest span units a LARGE word can hold (the span of a `LARGE_MIN`-byte block).
const LARGE_MIN_UNITS: u64 = (LARGE_MIN + 16).div_ceil(LARGE_UNIT);
const _: () = assert!(LARGE_MIN == LARGE);
const _: () = assert!(MAX_BLOCK_LEN == (LARGE - 1) * LARGE_UNIT - 16);

/// The value of a LIVE word's length field for a block of `len` bytes.
#[inline]
const fn len_field(len: u64) -> u64 {
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

/// The bits of a word its check code covers: everything but the code itself and, in a LIVE word,
/// the state and reader count (which every pin and publish changes).
#[inline]
const fn covered(w: u64) -> u64 {
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
const CHECK_K: u64 = 0xB6DB_6DB6_DB6D_B6DB;

/// The 3-bit check code of a word: of its covered bits, and in a LIVE word also of its state and
/// readers ([`sr_code`], XORed in, so a pin or a publish updates the code without the multiply).
#[inline]
const fn check_of(w: u64) -> u64 {
    let c = covered(w).wrapping_mul(CHECK_K) >> 61;
    if w >> KIND_SHIFT == KIND_LIVE {
        c ^ sr_code((w >> STATE_SHIFT) & SR_MASK)
    } else {
        c
    }
}

/// The state and readers of a LIVE word, bits 56..61, as one 5-bit field `sr` (state in its low
/// two bits, readers above).
const SR_MASK: u64 = 0b11111;
const _: () = assert!(READERS_SHIFT == STATE_SHIFT + 2);

/// The part of a LIVE word's check code that covers `sr`: a linear map from 5 bits to 3 whose
/// columns are all nonzero (bit `i` maps to bit `i mod 3`), so flipping any one state or reader
/// bit changes it, while the multiplicative part is unchanged; and a change of `sr` from `x` to
/// `y` changes the code by `sr_code(x ^ y)`.
#[inline]
const fn sr_code(sr: u64) -> u64 {
    (sr ^ (sr >> 3)) & CHECK_BITS
}

/// `w`, a LIVE word, with its state and readers set to `sr` and its check code kept right.
#[inline]
const fn with_sr(w: u64, sr: u64) -> u64 {
    let d = ((w >> STATE_SHIFT) & SR_MASK) ^ sr;
    w ^ (d << STATE_SHIFT) ^ (sr_code(d) << LIVE_CHECK_SHIFT)
}

/// The shift of a word's check field, by kind.
#[inline]
const fn check_shift(w: u64) -> u32 {
    match w >> KIND_SHIFT {
        KIND_LIVE => LIVE_CHECK_SHIFT,
        KIND_FREE => FREE_CHECK_SHIFT,
        _ => PAD_CHECK_SHIFT,
    }
}

/// `w` (check field clear) with its check code set.
#[inline]
const fn sealed(w: u64) -> u64 {
    w | (check_of(w) << check_shift(w))
}

/// Whether a nonzero word's check code matches its covered bits.
#[inline]
pub(crate) const fn check_ok(w: u64) -> bool {
    (w >> check_shift(w)) & CHECK_BITS == check_of(w)
}
// A free header's `next` link can address the largest arena (`format::MAX_CAPACITY`).
const _: () = assert!(MAX_CAPACITY <= (NEXT_MASK + 1) * 8);
// Every data offset of the largest arena fits a handle's offset field.
const _: () = assert!(MAX_CAPACITY <= (HANDLE_OFF_MASK + 1) * 8);
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

/// A decoded header word.
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
const fn live_field(field: u64, generation: u32, state: LiveState, readers: u64) -> u64 {
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

/// A LIVE header word in its stored (encoded) form, for the read-modify-write steps of the
/// block-state protocol: each step is a method here instead of arithmetic on the bits at the call
/// site. `decode` reads one; `live` builds one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header(pub(crate) u64);

impl Header {
    /// The same word with one more reader (pinned once more). The caller checked that the
    /// readers field is below [`MAX_READERS`].
    #[inline]
    pub(crate) const fn with_reader(self) -> Header {
        debug_assert!((self.0 >> READERS_SHIFT) & MAX_READERS < MAX_READERS);
        Header(with_sr(self.0, ((self.0 >> STATE_SHIFT) & SR_MASK) + 4))
    }

    /// The same word with one reader fewer. The caller holds one of its pins.
    #[inline]
    pub(crate) const fn without_reader(self) -> Header {
        debug_assert!((self.0 >> READERS_SHIFT) & MAX_READERS > 0);
        Header(with_sr(self.0, ((self.0 >> STATE_SHIFT) & SR_MASK) - 4))
    }

    /// The same word with its readers field set to `readers` (at most [`MAX_READERS`]).
    #[cfg(any(test, feature = "testkit"))]
    #[inline]
    pub(crate) const fn with_readers(self, readers: u64) -> Header {
        debug_assert!(readers <= MAX_READERS);
        Header(with_sr(
            self.0,
            ((self.0 >> STATE_SHIFT) & STATE_MASK) | (readers << 2),
        ))
    }

    /// A PENDING word with no readers (what an allocation stores), PUBLISHED: one XOR with a
    /// constant, the check code included.
    #[inline]
    pub(crate) const fn published_from_pending(self) -> Header {
        const D: u64 = LiveState::Pending as u64 ^ LiveState::Published as u64;
        debug_assert!((self.0 >> STATE_SHIFT) & SR_MASK == LiveState::Pending as u64);
        Header(self.0 ^ (D << STATE_SHIFT) ^ (sr_code(D) << LIVE_CHECK_SHIFT))
    }

    /// The same word in another state.
    #[inline]
    pub(crate) const fn with_state(self, state: LiveState) -> Header {
        Header(with_sr(
            self.0,
            ((self.0 >> STATE_SHIFT) & (MAX_READERS << 2)) | state as u64,
        ))
    }

    /// The same word holding another length below [`LARGE_MIN`] (its check code recomputed).
    #[inline]
    pub(crate) const fn with_len(self, len: u64) -> Header {
        debug_assert!(len < LARGE_MIN && !is_large(self.0));
        Header(sealed(
            (self.0 & !LEN_MASK & !(CHECK_BITS << LIVE_CHECK_SHIFT)) | len,
        ))
    }
}

/// The generation after `g`, skipping 0. A free stores `next_gen` of the block's generation (its
/// low 21 bits) in the FREE word, so a second free of the same handle is told apart
/// ([`crate::Error::DoubleFree`]) from a stale one.
#[inline]
pub(crate) const fn next_gen(g: u32) -> u32 {
    match g.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

/// A reference to one block: its data offset and its generation, packed in 8 bytes (the offset in
/// 8-byte units in the low 32 bits, the 32-bit generation in the high 32 bits).
///
/// `Copy`, `bytemuck::Pod` and stable across reopen, so it can be stored inside the arena (or
/// anywhere else) and used after a restart. Every access checks the generation against the block's
/// header, so a handle to a block that was freed (and perhaps reused) is refused with
/// [`crate::Error::Stale`] instead of reading another block's bytes.
///
/// ```
/// use parena::{Handle, Options};
/// let arena = Options::new().capacity(1 << 20).heap()?;
/// let h = arena.alloc(16)?.handle();
/// assert_eq!(Handle::from_u64(h.to_u64()), h);
/// assert!(h.offset() > 0);
/// # Ok::<(), parena::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(transparent)]
#[must_use = "a block's handle is the only way to reach or free it: dropping it leaks the block"]
pub struct Handle(u64);

const HANDLE_OFF_BITS: u32 = 32;
const HANDLE_OFF_MASK: u64 = (1 << HANDLE_OFF_BITS) - 1;

impl Handle {
    /// The null handle: it names no block (`to_u64() == 0`).
    pub const NULL: Handle = Handle(0);

    #[inline]
    pub(crate) const fn new(data_offset: u64, generation: u32) -> Handle {
        debug_assert!(data_offset % 8 == 0 && data_offset / 8 <= HANDLE_OFF_MASK);
        Handle(((generation as u64) << HANDLE_OFF_BITS) | (data_offset / 8))
    }

    /// Offset of the block's first data byte from the start of the arena. Never 0 for a real block,
    /// so 0 can mean "null" inside user structures.
    #[inline]
    pub const fn offset(self) -> u64 {
        (self.0 & HANDLE_OFF_MASK) * 8
    }

    /// The generation the handle was issued with.
    #[inline]
    pub const fn generation(self) -> u32 {
        ((self.0 >> HANDLE_OFF_BITS) & GEN_MASK) as u32
    }

    /// The packed form, for storing the handle as a plain `u64`.
    #[inline]
    pub const fn to_u64(self) -> u64 {
        self.0
    }

    /// Rebuilds a handle from [`Handle::to_u64`]. Any value is accepted; a value that does not name a
    /// live block is refused when used.
    #[inline]
    pub const fn from_u64(v: u64) -> Handle {
        Handle(v)
    }

    /// Whether this is [`Handle::NULL`].
    #[inline]
    pub const fn is_null(self) -> bool {
        self.0 == 0
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Handle(offset {}, generation {})",
            self.offset(),
            self.generation()
        )
    }
}

// ---- Generations: minted from the header's counter (`OFF_GEN_SEED`), used by allocation,
// release and recovery alike.

/// A generation for a header at a position whose history is unknown.
pub(crate) fn fresh_gen(b: &Backing) -> u32 {
    gen_of_seed(b.word(OFF_GEN_SEED).fetch_add(1, Ordering::Relaxed))
}

/// Takes `n` consecutive values of the generation counter for one thread to hand out alone;
/// returns the first.
pub(crate) fn fresh_gen_batch(b: &Backing, n: u64) -> u64 {
    b.word(OFF_GEN_SEED).fetch_add(n, Ordering::Relaxed)
}

/// The generation that counter value `s` stands for: `s mod (2^32 - 1)`, plus one. Consecutive
/// counter values give every nonzero 32-bit generation once per cycle of `2^32 - 1`, so a value
/// comes back only after all the others were minted.
pub(crate) fn gen_of_seed(s: u64) -> u32 {
    (s % GEN_MASK) as u32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

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
                        if state == LiveState::Pending && readers == 0 {
                            assert_eq!(
                                Header(w).published_from_pending().0,
                                live(exact, generation, LiveState::Published, 0)
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
                            decode(Header(w).with_state(LiveState::Dying).0),
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
            decode(Header(w).with_reader().0),
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
        for &next in &[0u64, 8, 4096, MAX_CAPACITY - 8] {
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
            free(0x1f_fffe, MAX_CAPACITY - 8),
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

    /// Every state and reader change keeps the check code right, and reaches the same word as
    /// building it anew.
    #[test]
    fn state_and_reader_changes_keep_the_code() {
        let states = [
            LiveState::Published,
            LiveState::Pending,
            LiveState::Reserved,
            LiveState::Dying,
        ];
        for len in [8, LARGE_MIN + 3] {
            for s in states {
                for r in 0..=MAX_READERS {
                    let w = live(len, 0x8765_4321, s, r);
                    assert!(check_ok(w));
                    for t in states {
                        assert_eq!(Header(w).with_state(t).0, live(len, 0x8765_4321, t, r));
                    }
                    for q in 0..=MAX_READERS {
                        assert_eq!(Header(w).with_readers(q).0, live(len, 0x8765_4321, s, q));
                    }
                    if r < MAX_READERS {
                        let up = Header(w).with_reader();
                        assert_eq!(up.0, live(len, 0x8765_4321, s, r + 1));
                        assert_eq!(up.without_reader().0, w);
                    }
                }
            }
        }
        let f = live_foreign(40, 9, LiveState::Published, 0);
        assert!(is_foreign(Header(f).with_reader().0) && check_ok(Header(f).with_reader().0));
    }

    #[test]
    fn generations() {
        assert_eq!(next_gen(0), 1);
        assert_eq!(next_gen(1), 2);
        assert_eq!(next_gen(GEN_MASK as u32 - 1), GEN_MASK as u32);
        assert_eq!(next_gen(GEN_MASK as u32), 1);
        assert_eq!(gen_of_seed(0), 1);
        assert_eq!(gen_of_seed(2), 3);
        assert_eq!(gen_of_seed(GEN_MASK - 1), GEN_MASK as u32);
        assert_eq!(gen_of_seed(GEN_MASK), 1);
        assert_eq!(gen_of_seed(u64::MAX), (u64::MAX % GEN_MASK) as u32 + 1);
        // A whole cycle around a boundary of the counter's low 32 bits: no generation twice.
        let mut seen = std::collections::HashSet::new();
        for s in (1u64 << 32) - 5..(1 << 32) + 5 {
            assert!(seen.insert(gen_of_seed(s)), "counter {s}");
        }
    }

    #[test]
    fn handle_packing() {
        let h = Handle::new(4104, 77);
        assert_eq!(h.offset(), 4104);
        assert_eq!(h.generation(), 77);
        assert_eq!(Handle::from_u64(h.to_u64()), h);
        let far = Handle::new(MAX_CAPACITY - 8, u32::MAX);
        assert_eq!(far.offset(), MAX_CAPACITY - 8);
        assert_eq!(far.generation(), u32::MAX);
        assert_eq!(Handle::from_u64(far.to_u64()), far);
        assert!(Handle::NULL.is_null());
    }
}
