//! The read-modify-write steps on a LIVE block header word (state and length changes).

use super::check::{sealed, sr_code, with_sr, SR_MASK};
use super::header_word::{
    is_large, LiveState, CHECK_BITS, FILLER_BEHIND, FOREIGN, LARGE_MIN, LEN_MASK, LIVE_CHECK_SHIFT,
    MAX_READERS, STATE_MASK, STATE_SHIFT,
};

/// A LIVE block header word in its stored (encoded) form, for the read-modify-write steps of the
/// block-state protocol: each step is a method here instead of arithmetic on the bits at the call
/// site. `decode` reads one; `live` builds one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockHeader(pub(crate) u64);

impl BlockHeader {
    /// The same word with its readers field set to `readers` (at most [`MAX_READERS`]).
    #[cfg(any(test, feature = "testkit"))]
    #[inline]
    pub(crate) const fn with_readers(self, readers: u64) -> BlockHeader {
        debug_assert!(readers <= MAX_READERS);
        BlockHeader(with_sr(
            self.0,
            ((self.0 >> STATE_SHIFT) & STATE_MASK) | (readers << 2),
        ))
    }

    /// A PENDING word (what an allocation stores), PUBLISHED: one XOR with a constant, the check
    /// code included. The readers field (a carve's [`FILLER_BEHIND`] hint) is kept.
    #[inline]
    pub(crate) const fn published_from_pending(self) -> BlockHeader {
        const D: u64 = LiveState::Pending as u64 ^ LiveState::Published as u64;
        debug_assert!((self.0 >> STATE_SHIFT) & STATE_MASK == LiveState::Pending as u64);
        BlockHeader(self.0 ^ (D << STATE_SHIFT) ^ (sr_code(D) << LIVE_CHECK_SHIFT))
    }

    /// [`BlockHeader::published_from_pending`] for a block of the allocator interfaces: FOREIGN
    /// set too (the check code recomputed), the readers field kept.
    #[inline]
    pub(crate) const fn foreign_published_from_pending(self) -> BlockHeader {
        let w = self.published_from_pending().0;
        BlockHeader(sealed((w & !(CHECK_BITS << LIVE_CHECK_SHIFT)) | FOREIGN))
    }

    /// The same word in another state.
    #[inline]
    pub(crate) const fn with_state(self, state: LiveState) -> BlockHeader {
        BlockHeader(with_sr(
            self.0,
            ((self.0 >> STATE_SHIFT) & (MAX_READERS << 2)) | state as u64,
        ))
    }

    /// The same word with the [`FILLER_BEHIND`] hint set.
    #[inline]
    pub(crate) const fn with_filler_behind(self) -> BlockHeader {
        BlockHeader(with_sr(
            self.0,
            ((self.0 >> STATE_SHIFT) & SR_MASK) | (FILLER_BEHIND << 2),
        ))
    }

    /// The same word holding another length below [`LARGE_MIN`] (its check code recomputed).
    #[inline]
    pub(crate) const fn with_len(self, len: u64) -> BlockHeader {
        debug_assert!(len < LARGE_MIN && !is_large(self.0));
        BlockHeader(sealed(
            (self.0 & !LEN_MASK & !(CHECK_BITS << LIVE_CHECK_SHIFT)) | len,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::check::check_ok;
    use crate::block::header_word::*;

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
                        assert_eq!(BlockHeader(w).with_state(t).0, live(len, 0x8765_4321, t, r));
                    }
                    for q in 0..=MAX_READERS {
                        assert_eq!(
                            BlockHeader(w).with_readers(q).0,
                            live(len, 0x8765_4321, s, q)
                        );
                    }
                }
            }
        }
        for len in [40, LARGE_MIN + 3] {
            for r in 0..=MAX_READERS {
                let pending = live(len, 9, LiveState::Pending, r);
                assert_eq!(
                    BlockHeader(pending).foreign_published_from_pending().0,
                    live_foreign(len, 9, LiveState::Published, r)
                );
                let hinted =
                    BlockHeader(live(len, 9, LiveState::Published, 0)).with_filler_behind();
                assert_eq!(hinted.0, live(len, 9, LiveState::Published, FILLER_BEHIND));
                assert!(filler_behind(hinted.0) && check_ok(hinted.0));
            }
        }
        let f = live_foreign(40, 9, LiveState::Published, 0);
        let d = BlockHeader(f).with_state(LiveState::Dying).0;
        assert!(is_foreign(d) && check_ok(d));
    }
}
