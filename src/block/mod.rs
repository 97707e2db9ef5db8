//! The 8-byte block header word and [`Handle`].
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
//! code of `state` and `readers` ([`check::sr_code`]), so a publish or a pin updates the code
//! without the multiply. Any single flipped bit below the kind bits makes the word invalid
//! (`decode` gives `Bad`), and a random word passes with probability 1/8. A flipped kind bit
//! changes which bits are covered and is caught by the code with probability 7/8, and otherwise by
//! the heap walk against the start map.
//!
//! A FREE segment keeps its span (bytes, header included) in the word after the header; the
//! lock-free list reads only header words of nodes it does not own, so it never reads memory a
//! user may be writing. A LIVE block's span is `8 + round_up(len, 8)` below 1 MiB; from 1 MiB a
//! block is LARGE: the length field holds its span in 4 KiB units, and its exact length is in its
//! span's last word (the tail: [`large_tail`]).
//!
//! `F` (bit 61) marks a block of the allocator interfaces (`FOREIGN`): handles never reach it.
//!
//! `readers` (bits 58..61) is a count older builds kept of pinned readers; this build never raises
//! it (reads hold read slots) and recovery clears it. Its lowest bit is the `FILLER_BEHIND` hint
//! of a memory arena: the carve (or shrink) left a filler right behind the block, which its free
//! takes back (docs/metadata.md, 13.1).
//!
//! LIVE states: `PUBLISHED` (readable and freeable), `PENDING` (a [`crate::BlockMut`] is out),
//! `RESERVED` (being initialised by the allocator, never handed out: recovery reclaims it), `DYING`
//! (a free is in progress, or waits for readers to drain).
//!
//! Names: "header" here is always this 8-byte *block header* word, never the 4096-byte *file
//! header* (`crate::format`). Throughout the crate `hdr` is the byte offset of a block header word
//! from the start of the arena; the block's data starts at `hdr + 8`, and a handle names `hdr + 8`.

mod check;
mod handle;
mod header_word;
mod pin;

pub use handle::Handle;
pub(crate) use handle::NARROW_UNIT_SHIFT;
#[cfg(test)]
pub(crate) use header_word::pad_of_nothing;
pub use header_word::MAX_BLOCK_LEN;
#[cfg(any(test, feature = "testkit"))]
pub(crate) use header_word::MAX_READERS;
pub(crate) use header_word::{
    decode, filler_behind, free, is_foreign, is_large, large_len, large_tail, live, live_foreign,
    live_generation, live_small, pad, published_small, tail_word, HeaderWord, LiveState,
    FILLER_BEHIND, FREE_GEN_MASK, GEN_MASK, LARGE_MIN,
};
pub(crate) use pin::BlockHeader;

use crate::backing::Backing;
use crate::format::OFF_GEN_SEED;
use crate::sync::Ordering;

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
}
