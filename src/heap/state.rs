//! The block-state steps on a LIVE block's header word while the arena is shared: publish
//! (PENDING to PUBLISHED, or to a FOREIGN block's PUBLISHED) and DYING (the first step of a
//! free). (Readers do not change the word: they hold a read slot of their cell, `heap::reads`.) Each is one store or one CAS, with its ordering
//! argued here once; the new word is computed by [`BlockHeader`], which keeps the check code right.
//!
//! None of these changes what a heap walk or a recovery sees of the entry: it stays a LIVE entry
//! of the same span and generation, so the crash order of the heap's other verbs is not involved.
//! (A crash leaves PENDING and DYING blocks as recovery expects them: docs/design.md,
//! "Crash consistency".)
//!
//! ## Orderings
//!
//! | step | op | ordering | why |
//! | --- | --- | --- | --- |
//! | publish | store | Release | the bytes written through the `BlockMut` happen before any `read`, `get` or `free` that sees PUBLISHED (their Acquire) |
//! | DYING | CAS | SeqCst | Acquire pairs with the publish, so every access through the `BlockMut` happens before the bytes' reuse; SeqCst puts it in one total order with readers' slot swaps and header loads and the freer's slot loads that follow it (the read-slot protocol, `heap::reads`) |

use crate::backing::Backing;
use crate::block::{BlockHeader, LiveState};
use crate::sync::{sc_order, AtomicU64, Ordering};

/// The header word of a LIVE block, for the block-state steps.
#[derive(Clone, Copy)]
pub(crate) struct LiveWord<'a>(&'a AtomicU64);

impl<'a> LiveWord<'a> {
    /// The header word at `hdr`.
    #[inline]
    pub(crate) fn at(mem: &'a Backing, hdr: u64) -> LiveWord<'a> {
        LiveWord(mem.word(hdr))
    }

    /// [`LiveWord::at`] without the bounds check, for the publish of a block just allocated.
    ///
    /// # Safety
    /// `hdr` is the header of a block allocated inside `mem`'s heap: 8-aligned, and
    /// `hdr + 8 <= hdr + span <= capacity`, the backing's length.
    #[inline]
    pub(crate) unsafe fn at_unchecked(mem: &'a Backing, hdr: u64) -> LiveWord<'a> {
        // SAFETY: the caller's contract is `word_unchecked`'s.
        LiveWord(unsafe { mem.word_unchecked(hdr) })
    }

    /// Publish: `pending`, the PENDING word the allocation stored, becomes PUBLISHED (one XOR
    /// with a constant, the check code included). Release (module docs).
    #[inline]
    pub(crate) fn publish(&self, pending: u64) {
        self.0.store(
            BlockHeader(pending).published_from_pending().0,
            Ordering::Release,
        );
    }

    /// Publish a block of the allocator interfaces: `pending`, the PENDING word the allocation
    /// stored, becomes PUBLISHED with the FOREIGN bit, which every handle operation refuses.
    /// Release, as [`LiveWord::publish`].
    #[inline]
    pub(crate) fn publish_foreign(&self, pending: u64) {
        self.0.store(
            BlockHeader(pending).foreign_published_from_pending().0,
            Ordering::Release,
        );
    }

    /// DYING: the block is being freed, if the word is still `cur`. `Err` with the word found
    /// otherwise. SeqCst (module docs).
    #[inline]
    pub(crate) fn try_mark_dying(&self, cur: u64) -> Result<u64, u64> {
        let r = self.0.compare_exchange_weak(
            cur,
            BlockHeader(cur).with_state(LiveState::Dying).0,
            Ordering::SeqCst,
            Ordering::Acquire,
        );
        sc_order();
        r
    }
}
