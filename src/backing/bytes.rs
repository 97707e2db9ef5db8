//! The byte accessors: the atomic word at an offset, raw pointers, byte slices, zeroing and
//! copying, each bounds-checked against the backing's usable length.
//!
//! Every pointer is derived from the backing's base with `add`. Under `cfg(parena_loom)` the words
//! live in a side table of loom atomics, which [`Backing::zero`] and [`Backing::write`] keep in
//! step with the bytes.

use super::{Backing, Store};
use crate::sync::AtomicU64;

impl Backing {
    /// The atomic word at byte offset `off`.
    ///
    /// Every word that more than one thread may touch at once (header fields, block headers, free
    /// links) is accessed only through here, so those bytes are only ever accessed atomically while
    /// shared. Non-atomic accesses to the same bytes happen only while a thread owns them
    /// exclusively (a block it allocated), ordered by the allocation protocol.
    #[inline]
    pub(crate) fn word(&self, off: u64) -> &AtomicU64 {
        assert!(
            off % 8 == 0 && off.checked_add(8).is_some_and(|e| e <= self.len()),
            "word offset {off} outside the {}-byte backing",
            self.len()
        );
        // SAFETY: `off` is a multiple of 8 and `off + 8 <= len` (checked above).
        unsafe { self.word_unchecked(off) }
    }

    /// [`Backing::word`] without its bounds check, for the allocation fast path, whose offsets
    /// are proven in bounds by the chunk cell (`cur + span <= end <= capacity`) or by the block
    /// having been allocated.
    ///
    /// # Safety
    /// `off` must be a multiple of 8 and `off + 8 <= len`; the access rules of `word` apply.
    #[inline]
    pub(crate) unsafe fn word_unchecked(&self, off: u64) -> &AtomicU64 {
        debug_assert!(
            off % 8 == 0 && off.checked_add(8).is_some_and(|e| e <= self.len()),
            "word offset {off} outside the {}-byte backing",
            self.len()
        );
        #[cfg(not(parena_loom))]
        {
            // SAFETY: `off + 8 <= len` by the caller's contract.
            let p = unsafe { self.ptr_unchecked(off) }.cast::<u64>();
            // SAFETY: `p` is in bounds and 8-aligned by the caller's contract (the base is
            // page-aligned), and valid for the lifetime of `&self`. Shared words are only accessed
            // atomically (see `word`), which is what `from_ptr` requires.
            unsafe { AtomicU64::from_ptr(p) }
        }
        #[cfg(parena_loom)]
        {
            &self.words[(off / 8) as usize]
        }
    }

    /// A raw pointer to byte `off`, derived from the base pointer.
    ///
    /// # Panics
    /// If `off` is past the end of the backing.
    #[inline]
    pub(crate) fn ptr(&self, off: u64) -> *mut u8 {
        assert!(
            off <= self.len(),
            "offset {off} past the {}-byte backing",
            self.len()
        );
        // SAFETY: `off <= len` (checked above).
        unsafe { self.ptr_unchecked(off) }
    }

    /// [`Backing::ptr`] without its check.
    ///
    /// # Safety
    /// `off <= len`.
    #[inline]
    unsafe fn ptr_unchecked(&self, off: u64) -> *mut u8 {
        debug_assert!(
            off <= self.len(),
            "offset {off} past the {}-byte backing",
            self.len()
        );
        // SAFETY: `off <= len` (the caller's contract), the region is one allocation of `len`
        // bytes and `len` fits in `usize` (it was mapped or allocated), so the result is in bounds
        // or one past the end.
        unsafe { self.base.as_ptr().add(off as usize) }
    }

    /// A pointer to byte `off`, after checking the bounds half of the byte accessors' contract, so
    /// that their `unsafe` covers aliasing only: `off..off + len` lies inside the backing, and a range to be written lies in
    /// a writable one. Offsets derived from a file (a forged header or block word) can reach the
    /// accessors, so this is a real check, not a debug assertion: a compare and a branch beside a
    /// copy or a fill of the range.
    ///
    /// # Panics
    /// If the range is outside the backing, or `write` and the backing is read-only.
    #[inline]
    #[track_caller]
    fn range_ptr(&self, off: u64, len: u64, write: bool) -> *mut u8 {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.len()),
            "range {off}..+{len} outside the {}-byte backing",
            self.len()
        );
        assert!(!(write && self.read_only), "write to a read-only backing");
        // SAFETY: `off <= off + len <= len` (checked above).
        unsafe { self.ptr_unchecked(off) }
    }

    /// The bytes `off..off + len`.
    ///
    /// # Safety
    /// No thread may write the range while the slice lives.
    ///
    /// # Panics
    /// If the range is outside the backing.
    #[inline]
    pub(crate) unsafe fn slice(&self, off: u64, len: u64) -> &[u8] {
        let p = self.range_ptr(off, len, false);
        // SAFETY: in bounds (checked by `range_ptr`); free of writers by the caller's contract.
        unsafe { std::slice::from_raw_parts(p, len as usize) }
    }

    /// The bytes `off..off + len`, exclusively.
    ///
    /// # Safety
    /// No one else may access the range while the slice lives.
    ///
    /// # Panics
    /// If the range is outside the backing, or the backing is read-only.
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub(crate) unsafe fn slice_mut(&self, off: u64, len: u64) -> &mut [u8] {
        let p = self.range_ptr(off, len, true);
        // SAFETY: in bounds and writable (checked by `range_ptr`); exclusive by the caller's
        // contract.
        unsafe { std::slice::from_raw_parts_mut(p, len as usize) }
    }

    /// Sets `off..off + len` to zero (both views under loom).
    ///
    /// # Safety
    /// The range must be owned by the caller: no other thread accesses it (atomically or not)
    /// during the call.
    ///
    /// # Panics
    /// If the range is outside the backing, or the backing is read-only.
    #[inline]
    pub(crate) unsafe fn zero(&self, off: u64, len: u64) {
        let p = self.range_ptr(off, len, true);
        // SAFETY: in bounds and writable (checked by `range_ptr`); exclusive by the caller's
        // contract.
        unsafe { std::ptr::write_bytes(p, 0, len as usize) };
        #[cfg(parena_loom)]
        for w in (off / 8)..((off + len).div_ceil(8)) {
            self.words[w as usize].store(0, crate::sync::Ordering::Relaxed);
        }
    }

    /// [`Backing::zero`] of a range that may lie over a sparse file's holes (a LARGE block's data
    /// pages that were never written): only the file's data inside it is zeroed. A hole reads zero
    /// already, and a write into one needs a disk block, which a full disk does not have (the write
    /// would be a `SIGBUS`). Other backings, and a file system that cannot tell its holes, zero
    /// the whole range.
    ///
    /// # Safety
    /// As for [`Backing::zero`].
    pub(crate) unsafe fn zero_data(&self, off: u64, len: u64) {
        if let Store::File(f) = &self.store {
            // SAFETY: each run lies inside `off..off + len`, the caller's alone.
            if f.for_each_data_run(off, len, |a, b| unsafe { self.zero(a, b - a) }) {
                return;
            }
        }
        // SAFETY: the caller's contract.
        unsafe { self.zero(off, len) }
    }

    /// Copies `src` to `off` (also into the word view under loom).
    ///
    /// # Safety
    /// As for [`Backing::zero`].
    ///
    /// # Panics
    /// As for [`Backing::zero`].
    pub(crate) unsafe fn write(&self, off: u64, src: &[u8]) {
        let p = self.range_ptr(off, src.len() as u64, true);
        // SAFETY: in bounds and writable (checked by `range_ptr`); exclusive by the caller's
        // contract, and `src` is not in the region (it is borrowed while the region is owned by
        // the caller).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) };
        #[cfg(parena_loom)]
        self.load_words();
    }
}
