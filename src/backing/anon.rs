//! The anonymous memory map.

use crate::error::Error;
use memmap2::{MmapMut, MmapOptions};
use std::ptr::NonNull;

/// A private anonymous map; the kernel hands it out zeroed, page by page on first touch.
pub(super) struct AnonMap {
    map: MmapMut,
    /// `map`'s first byte, taken once.
    base: NonNull<u8>,
}

impl AnonMap {
    pub(super) fn new(len: u64) -> Result<AnonMap, Error> {
        let size = usize::try_from(len).map_err(|_| Error::Size {
            field: "capacity",
            value: len,
        })?;
        let mut map = MmapOptions::new().len(size).map_anon()?;
        let base = NonNull::new(map.as_mut_ptr()).expect("a map is never at address 0");
        Ok(AnonMap { map, base })
    }

    pub(super) fn base(&self) -> NonNull<u8> {
        debug_assert_eq!(self.base.as_ptr().cast_const(), self.map.as_ptr());
        self.base
    }
}
