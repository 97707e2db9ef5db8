//! parena as an allocator: the pointer calls both allocator interfaces build on, and
//! `allocator_api2::alloc::Allocator` for `&Arena` and `Arena` (cargo feature `allocator-api2`).
//! [`GlobalArena`](crate::GlobalArena), the `GlobalAlloc`, is in `src/global/`.
//!
//! Blocks handed out this way are ordinary parena blocks (8-byte header, generation, free lists);
//! the pointer is the block's data. `deallocate` reads the header to rebuild the handle, so a
//! pointer that did not come from this arena is a contract violation of the caller (as with any
//! allocator), not something parena can check. `grow` and `shrink` resize in place when the block
//! is the last one of the calling thread's chunk, and `shrink` always does (the cut-off tail
//! becomes free space); otherwise they move.

use crate::arena::Arena;
use crate::layout::MAX_ALIGN;
use crate::reentry::audit_op;
use std::alloc::Layout;
use std::ptr::NonNull;

/// Why an allocation through the allocator interfaces failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NoMemory;

impl Arena {
    /// Allocates for `layout` and returns the data pointer (zeroed). Zero-sized layouts get a
    /// dangling, aligned pointer.
    pub(crate) fn allocate_ptr(&self, layout: Layout) -> Result<NonNull<[u8]>, NoMemory> {
        audit_op!();
        if layout.size() == 0 {
            let dangling = NonNull::new(std::ptr::without_provenance_mut::<u8>(layout.align()))
                .ok_or(NoMemory)?;
            return Ok(NonNull::slice_from_raw_parts(dangling, 0));
        }
        if layout.align() > MAX_ALIGN {
            return Err(NoMemory);
        }
        let b = self.alloc_layout(layout).map_err(|_| NoMemory)?;
        // Published as FOREIGN: the caller owns the bytes through the pointer from here on, and
        // no handle reaches them (every handle operation refuses the block).
        let off = b.publish_foreign();
        let p = NonNull::new(self.data_ptr(off)).ok_or(NoMemory)?;
        Ok(NonNull::slice_from_raw_parts(p, layout.size()))
    }

    /// Frees a block `allocate_ptr` returned.
    ///
    /// # Safety
    /// `p` came from `allocate_ptr` on this arena with `layout`, and is not used afterwards.
    pub(crate) unsafe fn deallocate_ptr(&self, p: NonNull<u8>, layout: Layout) {
        audit_op!();
        if layout.size() == 0 {
            return;
        }
        let freed = self
            .handle_at(self.offset_of_ptr(p))
            .map(|h| self.free_as(h, crate::arena::Mode::Foreign));
        debug_assert!(
            matches!(freed, Some(Ok(()))),
            "deallocate of a pointer parena did not hand out: {freed:?}"
        );
    }
}

#[cfg(feature = "allocator-api2")]
mod api2 {
    use super::*;
    use allocator_api2::alloc::{AllocError, Allocator};

    impl Arena {
        /// `grow` and `shrink`: in place when possible, else allocate, copy, free.
        ///
        /// # Safety
        /// `ptr` came from this arena with layout `old`, the caller holds it exclusively, and
        /// does not use it after a successful call unless the same pointer is returned.
        unsafe fn resize(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            let in_place = new.align() <= old.align() && {
                // SAFETY: forwarded caller contract: `ptr` is ours, holds `old.size()` bytes,
                // exclusively.
                unsafe { self.resize_in_place(ptr, old.size(), new.size()) }
            };
            if in_place {
                return Ok(NonNull::slice_from_raw_parts(ptr, new.size()));
            }
            let fresh = self.allocate(new)?;
            let keep = old.size().min(new.size());
            if !self.disk_for_copy(fresh.cast(), new.size(), keep) {
                // A sparse file arena whose disk cannot hold the copy: the old block stays.
                // SAFETY: `fresh` was allocated just above with `new`, and nothing else has it.
                unsafe { self.deallocate(fresh.cast(), new) };
                return Err(AllocError);
            }
            // SAFETY: both blocks are valid for `keep` bytes and are distinct blocks.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.cast::<u8>().as_ptr(), keep)
            };
            // SAFETY: forwarded caller contract; the bytes were copied out.
            unsafe { self.deallocate(ptr, old) };
            Ok(fresh)
        }
    }

    // SAFETY: blocks stay valid until deallocated or until the last clone of the arena is dropped
    // (the `Arc` keeps the memory), and clones share one arena; `grow`/`shrink` keep the bytes up
    // to the smaller size and only hand back memory the caller owned. allocator-api2's blanket
    // impl makes `&Arena` an allocator too.
    unsafe impl Allocator for Arena {
        fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            self.allocate_ptr(layout).map_err(|_| AllocError)
        }

        unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
            // SAFETY: forwarded caller contract (allocated here with `layout`, not used after).
            unsafe { self.deallocate_ptr(ptr, layout) }
        }

        unsafe fn grow(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded caller contract.
            unsafe { self.resize(ptr, old, new) }
        }

        unsafe fn grow_zeroed(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded caller contract. (Named through the trait: `Arena::grow` is the
            // arena's own growth, which method syntax would pick for `Arena`.)
            let grown = unsafe { Allocator::grow(self, ptr, old, new) }?;
            // A moved block was zeroed by `allocate`; one grown in place may keep bytes past the
            // old length from before an earlier in-place shrink (same span), so clear them.
            if grown.cast::<u8>() == ptr {
                // SAFETY: the block now holds `new.size()` bytes and `old.size() <= new.size()`
                // (the `grow` contract), so the offset stays inside it.
                let tail = unsafe { ptr.as_ptr().add(old.size()) };
                // SAFETY: `tail..tail + (new - old)` is inside the block, exclusively the caller's.
                unsafe { tail.write_bytes(0, new.size() - old.size()) };
            }
            Ok(grown)
        }

        unsafe fn shrink(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded caller contract.
            unsafe { self.resize(ptr, old, new) }
        }
    }
}
