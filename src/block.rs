//! The per-block header word and [`Handle`].
//!
//! Every block, free segment and filler in the heap starts with one 8-byte header word. Its top two
//! bits say what follows:
//!
//! ```text
//!  63 62 61 60  58 57 56 55                     32 31 29 28                               0
//! +-----+--+-------+-----+------------------------+-----+----------------------------------+
//! | 0 1 |F |readers|state|   generation (odd)     |check|     length in bytes (29 bits)    |  LIVE
//! +-----+--+-------+-----+------------------------+-----+----------------------------------+
//!  63 62 61                          41 40 38 37                                          0
//! +-----+------------------------------+-----+---------------------------------------------+
//! | 1 0 | generation (even, low 21 bits)|check| next free segment, 8-byte units (0 = end)   |  FREE
//! +-----+------------------------------+-----+---------------------------------------------+
//!  63 62 61 59 58                                                                         0
//! +-----+-----+----------------------------------------------------------------------------+
//! | 1 1 |check|                 span in 8-byte units                                       |  PAD
//! +-----+-----+----------------------------------------------------------------------------+
//! all 64 bits zero: GAP, nothing was ever allocated from here to the next chunk boundary
//! ```
//!
//! `check` is a 3-bit code over every other bit of the word except a LIVE word's `state` and
//! `readers` (which pins and publishes change): the top three bits of `covered * K` for a constant
//! `K` none of whose 3-bit windows is `000` or `111`, so any single flipped bit of the covered bits or
//! of the code makes the word invalid (`decode` gives `Bad`), and a random word passes with
//! probability 1/8. A flipped kind bit changes which bits are covered and is caught by the code with
//! probability 7/8, and otherwise by the heap walk against the start map.
//!
//! A FREE segment keeps its span (bytes, header included) in the word after the header; the
//! lock-free list reads only header words of nodes it does not own, so it never reads memory a
//! user may be writing. A LIVE block's span is `8 + round_up(len, 8)`.
//!
//! `F` (bit 61) marks a block of the allocator interfaces (`FOREIGN`): handles never reach it.
//!
//! LIVE states: `PUBLISHED` (readable and freeable), `PENDING` (a [`crate::BlockMut`] is out),
//! `RESERVED` (being initialised by the allocator, never handed out: recovery reclaims it), `DYING`
//! (a free is in progress, or waits for readers to drain).

use crate::backing::Backing;
use crate::format::{MAX_CAPACITY, OFF_GEN_SEED};
use crate::sync::Ordering;

/// Bits of the generation field.
pub(crate) const GEN_BITS: u32 = 24;
/// Mask of a generation.
pub(crate) const GEN_MASK: u64 = (1 << GEN_BITS) - 1;

pub(crate) const KIND_SHIFT: u32 = 62;
pub(crate) const KIND_LIVE: u64 = 1;
pub(crate) const KIND_FREE: u64 = 2;
pub(crate) const KIND_PAD: u64 = 3;

const LEN_BITS: u32 = 29;
const LEN_MASK: u64 = (1 << LEN_BITS) - 1;
/// The 3-bit check code of a LIVE word: bits 29..32.
const LIVE_CHECK_SHIFT: u32 = 29;
const LIVE_GEN_SHIFT: u32 = 32;
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

/// Largest length one block can hold: the header keeps it in 29 bits (512 MiB - 1).
pub const MAX_BLOCK_LEN: u64 = LEN_MASK;

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

/// The 3-bit check code of a word's covered bits.
#[inline]
const fn check_of(w: u64) -> u64 {
    covered(w).wrapping_mul(CHECK_K) >> 61
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
// The largest arena (`format::MAX_CAPACITY`) is what a free header's `next` link can address.
const _: () = assert!(MAX_CAPACITY == (NEXT_MASK + 1) * 8);

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

#[inline]
pub(crate) const fn live(len: u64, generation: u32, state: LiveState, readers: u64) -> u64 {
    debug_assert!(len <= LEN_MASK && readers <= MAX_READERS && (generation as u64) <= GEN_MASK);
    // The covered bits first, so the code is one multiply with no masking (the hot path).
    let covered = (KIND_LIVE << KIND_SHIFT) | ((generation as u64) << LIVE_GEN_SHIFT) | len;
    covered
        | ((covered.wrapping_mul(CHECK_K) >> 61) << LIVE_CHECK_SHIFT)
        | (readers << READERS_SHIFT)
        | ((state as u64) << STATE_SHIFT)
}

/// The generation of a LIVE word.
#[inline]
pub(crate) const fn live_generation(w: u64) -> u32 {
    ((w >> LIVE_GEN_SHIFT) & GEN_MASK) as u32
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
    debug_assert!(next % 8 == 0 && next / 8 <= NEXT_MASK && (generation as u64) <= GEN_MASK);
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
            HeaderWord::Live {
                len: w & LEN_MASK,
                generation: ((w >> LIVE_GEN_SHIFT) & GEN_MASK) as u32,
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

/// One reader in the readers field of a LIVE word.
pub(crate) const READER_ONE: u64 = 1 << READERS_SHIFT;

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
        Header(self.0 + READER_ONE)
    }

    /// The same word with one reader fewer. The caller holds one of its pins.
    #[inline]
    pub(crate) const fn without_reader(self) -> Header {
        debug_assert!((self.0 >> READERS_SHIFT) & MAX_READERS > 0);
        Header(self.0 - READER_ONE)
    }

    /// The same word with its readers field set to `readers` (at most [`MAX_READERS`]).
    #[inline]
    pub(crate) const fn with_readers(self, readers: u64) -> Header {
        debug_assert!(readers <= MAX_READERS);
        Header((self.0 & !(MAX_READERS << READERS_SHIFT)) | (readers << READERS_SHIFT))
    }

    /// The same word in another state.
    #[inline]
    pub(crate) const fn with_state(self, state: LiveState) -> Header {
        Header((self.0 & !(STATE_MASK << STATE_SHIFT)) | ((state as u64) << STATE_SHIFT))
    }

    /// The same word holding another length (its check code recomputed).
    #[inline]
    pub(crate) const fn with_len(self, len: u64) -> Header {
        debug_assert!(len <= LEN_MASK);
        Header(sealed(
            (self.0 & !LEN_MASK & !(CHECK_BITS << LIVE_CHECK_SHIFT)) | len,
        ))
    }
}

/// Next generation after `g` with the given parity (odd = live, even = free), skipping 0.
#[inline]
pub(crate) const fn next_gen(g: u32, odd: bool) -> u32 {
    let mut n = (g as u64 + 1) & GEN_MASK;
    if (n & 1 == 1) != odd {
        n = (n + 1) & GEN_MASK;
    }
    if n == 0 {
        n = 2;
    }
    n as u32
}

/// A reference to one block: its data offset and its generation, packed in 8 bytes.
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
pub struct Handle(u64);

const HANDLE_OFF_BITS: u32 = 40;
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

    /// The generation the handle was issued with (odd).
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
pub(crate) fn fresh_gen(b: &Backing, odd: bool) -> u32 {
    gen_of_seed(b.word(OFF_GEN_SEED).fetch_add(1, Ordering::Relaxed), odd)
}

/// Takes `n` consecutive values of the generation counter for one thread to hand out alone;
/// returns the first.
pub(crate) fn fresh_gen_batch(b: &Backing, n: u64) -> u64 {
    b.word(OFF_GEN_SEED).fetch_add(n, Ordering::Relaxed)
}

/// The generation (with the given parity) that counter value `s` stands for.
pub(crate) fn gen_of_seed(s: u64, odd: bool) -> u32 {
    let g = ((s << 1) | u64::from(odd)) & GEN_MASK;
    if g == 0 {
        2
    } else {
        g as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_round_trip() {
        for &len in &[1u64, 7, 8, 4096, MAX_BLOCK_LEN] {
            for &generation in &[1u32, 3, GEN_MASK as u32] {
                for state in [
                    LiveState::Published,
                    LiveState::Pending,
                    LiveState::Reserved,
                    LiveState::Dying,
                ] {
                    for readers in [0, 1, MAX_READERS] {
                        let w = live(len, generation, state, readers);
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
            decode(w + READER_ONE),
            HeaderWord::Live {
                len: 5,
                generation: 1,
                state: LiveState::Published,
                readers: 1
            }
        );
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
            live(40, 0x00ab_cdef, LiveState::Pending, 3),
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
        let state_readers = (STATE_MASK << STATE_SHIFT) | (MAX_READERS << READERS_SHIFT);
        for w in words {
            assert!(check_ok(w), "{w:#x}");
            for i in 0..KIND_SHIFT {
                let bit = 1u64 << i;
                if w >> KIND_SHIFT == KIND_LIVE && bit & state_readers != 0 {
                    continue;
                }
                assert_eq!(decode(w ^ bit), HeaderWord::Bad, "{w:#x} bit {i}");
            }
        }
    }

    #[test]
    fn generations() {
        assert_eq!(next_gen(0, true), 1);
        assert_eq!(next_gen(1, false), 2);
        assert_eq!(next_gen(2, true), 3);
        assert_eq!(next_gen(1, true), 3);
        assert_eq!(next_gen(GEN_MASK as u32, false), 2);
        assert_eq!(next_gen(GEN_MASK as u32 - 1, true), GEN_MASK as u32);
        assert_eq!(next_gen(GEN_MASK as u32, true), 1);
    }

    #[test]
    fn handle_packing() {
        let h = Handle::new(4104, 77);
        assert_eq!(h.offset(), 4104);
        assert_eq!(h.generation(), 77);
        assert_eq!(Handle::from_u64(h.to_u64()), h);
        let far = Handle::new(5 << 30, 1);
        assert_eq!(far.offset(), 5 << 30);
        assert!(Handle::NULL.is_null());
    }
}
