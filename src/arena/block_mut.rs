//! [`BlockMut`]: the writer's exclusive view of a freshly allocated block.

use super::Inner;
use crate::block::{self, Handle};
use crate::heap::LiveWord;
use crate::layout::WORD;
use std::ops::{Deref, DerefMut};
/// An exclusive, freshly allocated (zeroed) block. Derefs to its bytes.
///
/// While it lives the block is *pending*: `read`, `get` and `free` of its handle get
/// [`Error::Busy`](crate::Error::Busy), so nothing else sees the bytes while they are written. Dropping it publishes
/// the block.
#[must_use = "dropping a BlockMut publishes the block, and without its handle nothing can reach or free it"]
pub struct BlockMut<'a> {
    pub(super) inner: &'a Inner,
    pub(super) hdr: u64,
    pub(super) len: u64,
    /// The header word as stored while the block is PENDING (check code included).
    pub(super) word: u64,
}

impl BlockMut<'_> {
    /// The block's handle (usable by others once this `BlockMut` is dropped).
    #[inline]
    pub fn handle(&self) -> Handle {
        self.inner
            .handle(self.hdr + WORD, block::live_generation(self.word))
    }

    /// Offset of the block's first byte from the start of the arena.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.hdr + WORD
    }

    /// Publishes the block and returns its handle.
    #[inline]
    pub fn into_handle(self) -> Handle {
        self.handle()
    }
}

impl Deref for BlockMut<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: PENDING: no one else reads or writes these bytes.
        unsafe { self.inner.mem.slice(self.hdr + WORD, self.len) }
    }
}

impl DerefMut for BlockMut<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: PENDING: exclusive, and `&mut self` makes this the only live borrow of the bytes.
        unsafe { self.inner.mem.slice_mut(self.hdr + WORD, self.len) }
    }
}

impl BlockMut<'_> {
    /// Publishes the block as FOREIGN (a block of the allocator interfaces, which handles never
    /// reach) instead of PUBLISHED, and returns its data offset.
    pub(crate) fn publish_foreign(self) -> u64 {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: as in `drop`: the header of a block allocated inside the heap.
        let w = unsafe { LiveWord::at_unchecked(&this.inner.mem, this.hdr) };
        w.publish_foreign(this.word);
        this.hdr + WORD
    }
}

impl Drop for BlockMut<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `hdr` is the header of a block allocated inside the heap: 8-aligned, and
        // `hdr + 8 <= hdr + span <= capacity`, the backing's length.
        let w = unsafe { LiveWord::at_unchecked(&self.inner.mem, self.hdr) };
        // `word` is the PENDING word the allocation stored. Release: the bytes written through
        // this BlockMut happen before any `read`, `get` or `free` that observes PUBLISHED
        // (`heap::state`).
        w.publish(self.word);
    }
}

impl std::fmt::Debug for BlockMut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockMut")
            .field("handle", &self.handle())
            .field("len", &self.len)
            .finish()
    }
}
