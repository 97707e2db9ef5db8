//! The anonymous memory map.

use super::{setting, MapSettings};
use crate::error::Error;
use memmap2::{Advice, MmapMut, MmapOptions, UncheckedAdvice};
use std::ptr::NonNull;

/// A private anonymous map; the kernel hands it out zeroed, page by page on first touch.
pub(super) struct AnonMap {
    map: MmapMut,
    /// `map`'s first byte, taken once.
    base: NonNull<u8>,
}

impl AnonMap {
    pub(super) fn new(len: u64) -> Result<AnonMap, Error> {
        AnonMap::map(len, "capacity", false)
    }

    /// An anonymous map of `max` bytes that reserves no swap (`MAP_NORESERVE`): address space
    /// for a backing that grows in place; a page costs memory only once touched.
    pub(super) fn reserve(max: u64) -> Result<AnonMap, Error> {
        AnonMap::map(max, "max_capacity", true)
    }

    /// A map of `len` bytes (`field` names the option that asked for them, for the error).
    fn map(len: u64, field: &'static str, no_reserve: bool) -> Result<AnonMap, Error> {
        let size = usize::try_from(len).map_err(|_| Error::Size { field, value: len })?;
        let mut o = MmapOptions::new();
        o.len(size);
        if no_reserve {
            o.no_reserve_swap();
        }
        let mut map = o.map_anon().map_err(|e| Error::of_map(e, len))?;
        let base = NonNull::new(map.as_mut_ptr()).expect("a map is never at address 0");
        Ok(AnonMap { map, base })
    }

    /// See [`super::Backing::apply`]. `remove_on_drop` has nothing to remove here.
    /// `populate` covers the first `len` bytes (the arena's, in a reservation that can grow).
    pub(super) fn apply(&self, s: MapSettings, len: u64) -> Result<(), Error> {
        if s.populate {
            // Write-populate: the kernel allocates the (zeroed) pages now, not on first touch.
            setting("populate", || {
                self.map
                    .advise_range(Advice::PopulateWrite, 0, len as usize)
            })?;
        }
        if s.huge_pages {
            setting("huge_pages", || self.map.advise(Advice::HugePage))?;
        }
        if s.lock_memory {
            setting("lock_memory", || self.map.lock())?;
        }
        Ok(())
    }

    /// Gives the pages of `off..off + len` (page-aligned, inside the map) back to the kernel
    /// (`MADV_DONTNEED`): in a private anonymous map they read zero from then on and take no
    /// memory until touched again. A refusal by the kernel leaves the bytes as they were, which
    /// only keeps the memory: ignored.
    ///
    /// # Safety
    /// No other thread accesses the range during the call, and no reference into it is live.
    pub(super) unsafe fn discard(&self, off: u64, len: u64) {
        // SAFETY: the caller's contract: nothing reads or writes the range meanwhile, and the
        // zero pages it reads afterwards are what the caller asked for.
        let _ = unsafe {
            self.map
                .unchecked_advise_range(UncheckedAdvice::DontNeed, off as usize, len as usize)
        };
    }

    pub(super) fn base(&self) -> NonNull<u8> {
        debug_assert_eq!(self.base.as_ptr().cast_const(), self.map.as_ptr());
        self.base
    }
}
