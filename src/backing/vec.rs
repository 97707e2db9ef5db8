//! The aligned heap buffer.

use crate::error::Error;
use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// A zeroed, page-aligned allocation of the global allocator.
pub(super) struct HeapBuf {
    /// From `alloc_zeroed` with `layout`; freed in `Drop`.
    ptr: NonNull<u8>,
    layout: Layout,
}

impl HeapBuf {
    pub(super) fn new(len: u64) -> Result<HeapBuf, Error> {
        let size = usize::try_from(len).map_err(|_| Error::Size {
            field: "capacity",
            value: len,
        })?;
        let layout = Layout::from_size_align(size, 4096).map_err(|_| Error::Size {
            field: "capacity",
            value: len,
        })?;
        if size == 0 {
            return Err(Error::Size {
                field: "capacity",
                value: len,
            });
        }
        // SAFETY: `layout` has a non-zero size (checked above).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or(Error::NoMemory { requested: len })?;
        Ok(HeapBuf { ptr, layout })
    }

    pub(super) fn base(&self) -> NonNull<u8> {
        self.ptr
    }
}

impl Drop for HeapBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed(self.layout)` and is freed only here.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}
