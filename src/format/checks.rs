//! The file header's check words and the faults an open arena's `verify` finds in it: each root's
//! check word (its CRC and the stores in flight), and [`HeaderFault`].

use std::mem::offset_of;

use super::{Meta, RawHeader, META_SLOT_WORDS, OFF_META};

// Root check words.
//
// Each root's value word is followed, in the same 16-byte unit, by a check word:
//
//   bits  0..32  CRC-32 of (slot, value) as of the last settled store
//   bits 32..48  n: stores in flight (raised before the value is stored, lowered after)
//   bits 48..64  !n, so a flipped bit of n is seen
//
// n == 0: the value must match the CRC (a mismatch is damage). n > 0: a store was in flight (at
// a crash, either value is right); a writable open and a close settle the word. The protocol and
// its argument are in docs/format.md (*Root slots*).

/// Stores in flight, as the check word counts them.
const ROOT_N_SHIFT: u32 = 32;
const ROOT_N_MASK: u64 = 0xffff;

/// CRC-32 (IEEE, reflected) of the slot number and the value's little-endian bytes: any single
/// flipped bit (and any burst of up to 32) changes it.
pub(crate) fn root_crc(slot: usize, value: u64) -> u32 {
    let mut c = !0u32;
    for byte in std::iter::once(slot as u8).chain(value.to_le_bytes()) {
        c ^= u32::from(byte);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A root check word: `crc` with `n` stores in flight.
pub(crate) fn root_check(crc: u32, n: u64) -> u64 {
    let n = n & ROOT_N_MASK;
    u64::from(crc) | n << ROOT_N_SHIFT | (!n & ROOT_N_MASK) << (ROOT_N_SHIFT + 16)
}

/// `(crc, n)` of a root check word, or `None` when its two copies of `n` disagree (damage).
pub(crate) fn decode_root_check(w: u64) -> Option<(u32, u64)> {
    let n = (w >> ROOT_N_SHIFT) & ROOT_N_MASK;
    let not_n = (w >> (ROOT_N_SHIFT + 16)) & ROOT_N_MASK;
    (not_n == !n & ROOT_N_MASK).then_some((w as u32, n))
}

/// The settled check word of root `slot` holding `value`.
pub(crate) fn settled_root_check(slot: usize, value: u64) -> u64 {
    root_check(root_crc(slot, value), 0)
}

/// Whether root `slot` (value `value`, check word `check`) is damaged: a check word whose copies
/// of `n` disagree, or no store in flight and a value that does not match the CRC.
pub(crate) fn root_damaged(slot: usize, value: u64, check: u64) -> bool {
    match decode_root_check(check) {
        None => true,
        Some((crc, 0)) => crc != root_crc(slot, value),
        Some(_) => false,
    }
}

/// A word of the header page that fails a check an open arena can make at any time (`verify`):
/// each meta slot is valid or was never written, and the words parena keeps zero are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderFault {
    /// Meta slot `slot` is neither valid nor never written (all zero).
    MetaSlot { slot: u64 },
    /// A word parena keeps zero (spare, a meta slot's unused words, padding) is not.
    Spare { offset: u64, word: u64 },
    /// Root slot `slot`'s value does not match its check word, or the check word is damaged.
    Root { slot: usize, value: u64 },
}

impl RawHeader {
    /// Settles every root slot with a store in flight (see `Inner::settle_roots`), for an image
    /// written while no store runs.
    pub(crate) fn settle_roots(&mut self) {
        for (slot, r) in self.roots.iter_mut().enumerate() {
            if decode_root_check(r[1]).is_some_and(|(_, n)| n > 0) {
                r[1] = settled_root_check(slot, r[0]);
            }
        }
    }

    /// The faults [`HeaderFault`] describes. A meta slot torn by a power cut in a flush is one of
    /// them, so callers ask only of a header a clean close or a recovery left behind.
    pub(crate) fn faults(&self) -> Vec<HeaderFault> {
        let mut out = Vec::new();
        for (slot, words) in self.meta.iter().enumerate() {
            let mut w = [0u64; 8];
            w.copy_from_slice(&words[..8]);
            let never = words.iter().all(|&x| x == 0);
            if !never && Meta::decode(&w, slot as u64).is_none() {
                out.push(HeaderFault::MetaSlot { slot: slot as u64 });
            }
            for (i, &x) in words.iter().enumerate().skip(8) {
                if x != 0 {
                    out.push(HeaderFault::Spare {
                        offset: OFF_META + (slot * META_SLOT_WORDS + i) as u64 * 8,
                        word: x,
                    });
                }
            }
        }
        for (slot, &[value, check]) in self.roots.iter().enumerate() {
            if root_damaged(slot, value, check) {
                out.push(HeaderFault::Root { slot, value });
            }
        }
        let at = |base: usize, words: &[u64]| {
            let base = base as u64;
            words
                .iter()
                .enumerate()
                .map(move |(i, &x)| (base + 8 * i as u64, x))
                .collect::<Vec<_>>()
        };
        // Version 5 keeps `max_capacity` in the spare word (under the header checksum).
        let spare: &[u64] = if self.format_version == super::GROWABLE_FORMAT_VERSION {
            &[]
        } else {
            std::slice::from_ref(&self.max_capacity)
        };
        let zeros = at(offset_of!(RawHeader, max_capacity), spare)
            .into_iter()
            .chain(at(offset_of!(RawHeader, spare_roots), &self.spare_roots))
            .chain(at(offset_of!(RawHeader, padding), &self.padding));
        for (offset, word) in zeros {
            if word != 0 {
                out.push(HeaderFault::Spare { offset, word });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A settled root check word catches every flipped bit of the value and of itself; a word
    /// with a store in flight accepts any value.
    #[test]
    fn root_check_words_catch_every_flipped_bit() {
        for (slot, value) in [
            (0usize, 0u64),
            (5, 42),
            (15, u64::MAX),
            (3, 0x0123_4567_89ab_cdef),
        ] {
            let c = settled_root_check(slot, value);
            assert!(!root_damaged(slot, value, c));
            for bit in 0..64 {
                assert!(root_damaged(slot, value ^ 1 << bit, c), "value bit {bit}");
                assert!(root_damaged(slot, value, c ^ 1 << bit), "check bit {bit}");
            }
            let in_flight = root_check(root_crc(slot, value), 1);
            assert!(!root_damaged(slot, value ^ 1, in_flight));
            assert_eq!(
                decode_root_check(in_flight),
                Some((root_crc(slot, value), 1))
            );
        }
    }
}
