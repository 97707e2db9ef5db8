//! The three main memories behind one [`Backing`]: an aligned heap buffer, an anonymous map and a
//! file map.
//!
//! This module is the one door to raw memory. A `Backing` owns one base pointer, taken once from
//! the allocation or the map; every pointer parena uses is derived from it with `add`, never cast
//! from an integer. Atomics that live inside the arena's bytes (header words, block headers,
//! free-list links) are reached only through [`Backing::word`].
//!
//! Under `cfg(parena_loom)` loom's atomics cannot be laid over plain bytes, so `word` maps offsets
//! to a side table of loom atomics instead; [`Backing::zero`] clears both views.

mod anon;
mod bytes;
mod file;
mod lock;
mod settings;
#[cfg(feature = "testkit")]
mod sim;
mod vec;

pub(crate) use file::OpenedFile;
use settings::setting;
pub(crate) use settings::MapSettings;
#[cfg(feature = "testkit")]
pub use sim::SimDisk;

use crate::error::Error;
#[cfg(parena_loom)]
use crate::sync::AtomicU64;
use crate::sync::{StdAtomicU64, StdOrdering};
use std::ptr::NonNull;

pub use crate::kinds::BackingKind;

enum Store {
    Heap(#[allow(dead_code)] vec::HeapBuf),
    Anon(#[allow(dead_code)] anon::AnonMap),
    /// A heap arena that can grow in place: an anonymous reservation of its largest capacity
    /// (an aligned `Vec` cannot grow without moving).
    HeapReserve(#[allow(dead_code)] anon::AnonMap),
    File(file::FileMap),
    /// A heap buffer whose flushes copy pages into a simulated disk (feature `testkit`).
    #[cfg(feature = "testkit")]
    Sim(#[allow(dead_code)] vec::HeapBuf, crate::sync::Arc<SimDisk>),
}

/// One contiguous region of `len` bytes, 4096-aligned, that starts with the arena header; a
/// growable one has address space for `reserved` bytes and grows `len` in place up to it.
pub(crate) struct Backing {
    /// Base of the region: valid for reads (and writes unless `read_only`) of `len` bytes for as
    /// long as `store` lives; 4096-aligned. It never moves, also when `len` grows.
    base: NonNull<u8>,
    /// Bytes usable now. Grows only (`Backing::grow`), stored before the arena publishes the new
    /// end of its heap with `Release`, so a thread holding an offset below that end (it got it
    /// through an `Acquire` of the end, or from a thread that did) loads a length that covers it
    /// with a `Relaxed` load; a forged offset may load either length, and both are mapped
    /// (docs/metadata.md, 12.6, gap 4). A std atomic: no loom model grows a backing.
    len: StdAtomicU64,
    /// Bytes of address space held: `len` can grow up to this. Equal to the first `len` for a
    /// backing that cannot grow.
    reserved: u64,
    read_only: bool,
    store: Store,
    /// See [`Backing::map_disk_mark`]. A std atomic: a hint, no part of a modelled protocol.
    map_disk_mark: StdAtomicU64,
    #[cfg(parena_loom)]
    words: Box<[AtomicU64]>,
}

/// The page: what a disk reservation is widened to.
const PAGE: u64 = 4096;

// SAFETY: `Backing` owns its region (through `store`) like a `Box<[u8]>` would; the raw base pointer
// is only an address into it. Concurrent access to the bytes is governed by the arena's protocols
// (atomics for shared words, exclusive ownership for block data), not by thread affinity.
unsafe impl Send for Backing {}
// SAFETY: shared access hands out either atomics (`word`) or ranges the caller proves exclusive
// or immutable (`slice`, `slice_mut`, `zero`, which are `unsafe fn`s).
unsafe impl Sync for Backing {}

impl Backing {
    fn from_parts(base: NonNull<u8>, len: u64, read_only: bool, store: Store) -> Backing {
        Backing::reserving(base, len, len, read_only, store)
    }

    /// A backing whose first `len` bytes are usable, with address space for `reserved`.
    fn reserving(
        base: NonNull<u8>,
        len: u64,
        reserved: u64,
        read_only: bool,
        store: Store,
    ) -> Backing {
        debug_assert!(
            base.as_ptr() as usize % 4096 == 0,
            "backing base must be page-aligned"
        );
        debug_assert!(len <= reserved);
        Backing {
            base,
            len: StdAtomicU64::new(len),
            reserved,
            read_only,
            store,
            map_disk_mark: StdAtomicU64::new(0),
            #[cfg(parena_loom)]
            words: (0..reserved / 8).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Bytes usable now (see the field).
    #[inline]
    pub(crate) fn len(&self) -> u64 {
        self.len.load(StdOrdering::Relaxed)
    }

    /// A zeroed heap backing of `len` bytes that can grow in place up to `max` bytes: an
    /// anonymous map of `max` bytes that reserves no swap, whose pages the kernel provides
    /// (zeroed) on first touch.
    pub(crate) fn heap_growable(len: u64, max: u64) -> Result<Backing, Error> {
        let map = anon::AnonMap::reserve(max)?;
        let base = map.base();
        Ok(Backing::reserving(
            base,
            len,
            max,
            false,
            Store::HeapReserve(map),
        ))
    }

    /// A zeroed anonymous map of `len` bytes that can grow in place up to `max` bytes.
    pub(crate) fn anon_growable(len: u64, max: u64) -> Result<Backing, Error> {
        let map = anon::AnonMap::reserve(max)?;
        let base = map.base();
        Ok(Backing::reserving(base, len, max, false, Store::Anon(map)))
    }

    /// A heap backing on a simulated disk that can grow in place up to `max` bytes.
    #[cfg(feature = "testkit")]
    pub(crate) fn sim_growable(
        len: u64,
        max: u64,
    ) -> Result<(Backing, crate::sync::Arc<SimDisk>), Error> {
        let buf = vec::HeapBuf::new(max)?;
        let base = buf.base();
        let disk = crate::sync::Arc::new(SimDisk::new(max));
        Ok((
            Backing::reserving(base, len, max, false, Store::Sim(buf, disk.clone())),
            disk,
        ))
    }

    /// Maps an opened, locked, writable file whose first `len` bytes hold the arena, with address
    /// space for `max` bytes: one shared map of `max` bytes over the shorter file. Its pages past
    /// the file's end are never touched (every access is bounded by `len`, at most the file's
    /// length); [`Backing::grow`] extends the file, which makes them valid where they are, so the
    /// base never moves.
    pub(crate) fn file_growable(opened: OpenedFile, len: u64, max: u64) -> Result<Backing, Error> {
        debug_assert!(!opened.read_only, "a read-only open never grows");
        let map = file::FileMap::new(opened, max)?;
        let base = map.base();
        let b = Backing::reserving(base, len, max, false, Store::File(map));
        #[cfg(parena_loom)]
        b.load_words();
        Ok(b)
    }

    /// Bytes of address space held: the most [`Backing::grow`] can reach (the length itself for
    /// a backing that cannot grow, such as a private copy of a file).
    pub(crate) fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Grows the usable region to `new_len` bytes (at most [`Backing::reserved`]); the new bytes
    /// read zero. A file is extended first (with `preallocate` its blocks reserved) and the new
    /// length made durable (`fsync`), so nothing can name the new bytes before the file holds
    /// them (docs/metadata.md, 12.2, step 1). Only one thread grows a backing at a time (the
    /// arena's growth flag).
    ///
    /// # Errors
    /// [`Error::NoSpace`] when the file cannot be extended (a full disk, a quota, a file-size
    /// limit): the length is unchanged and the backing as usable as before (the file may be
    /// longer than `len`, which nothing reads). [`Error::Io`] for another failure.
    pub(crate) fn grow(&self, new_len: u64, preallocate: bool) -> Result<(), Error> {
        assert!(
            new_len <= self.reserved,
            "growth to {new_len} past the {}-byte reservation",
            self.reserved
        );
        if new_len <= self.len() {
            // A step a fork interrupted in another process grew it already.
            return Ok(());
        }
        if let Store::File(f) = &self.store {
            f.extend(new_len, preallocate)?;
        }
        // Release: keeps this store ahead of the growth step's later stores (the `Release` of
        // `heap_end` that publishes the range). Readers load the length `Relaxed`: what orders
        // them is `heap_end`'s `Release` / `Acquire` pair (docs/metadata.md 12.6, gap 4).
        self.len.store(new_len, StdOrdering::Release);
        Ok(())
    }

    /// Makes sure the disk blocks under `off..off + len` (widened to whole pages, within the
    /// usable length) exist before parena writes there: `fallocate` of the range for a writable
    /// file map; nothing for the other backings. A sparse file arena's chunk reservation calls it
    /// before it hands the chunk out (docs/metadata.md, 12.2, "Sparse arenas"); it changes no byte.
    ///
    /// # Errors
    /// [`Error::NoSpace`] when the disk cannot hold the blocks (a full disk, a quota); the bytes
    /// are unchanged (some of the range's blocks may be reserved, which nothing reads).
    /// [`Error::Io`] for another failure.
    pub(crate) fn reserve_disk(&self, off: u64, len: u64) -> Result<(), Error> {
        match &self.store {
            Store::File(f) if !self.read_only && len > 0 => {
                let from = off / PAGE * PAGE;
                let to = off.saturating_add(len).div_ceil(PAGE) * PAGE;
                let to = to.min(self.len());
                if from < to {
                    f.reserve(from, to - from)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Where a sparse arena's maps have their disk reserved up to: the heap offset below which
    /// every page of the four maps' words is reserved (a hint the chunk reservation keeps, so a
    /// map's pages are reserved once per 4 MiB of heap, not once per chunk).
    pub(crate) fn map_disk_mark(&self) -> &StdAtomicU64 {
        &self.map_disk_mark
    }

    /// A zeroed, 4096-aligned heap buffer of `len` bytes.
    pub(crate) fn heap(len: u64) -> Result<Backing, Error> {
        let buf = vec::HeapBuf::new(len)?;
        let base = buf.base();
        Ok(Backing::from_parts(base, len, false, Store::Heap(buf)))
    }

    /// A zeroed heap buffer whose flushes are recorded by a simulated disk.
    #[cfg(feature = "testkit")]
    pub(crate) fn sim(len: u64) -> Result<(Backing, crate::sync::Arc<SimDisk>), Error> {
        let buf = vec::HeapBuf::new(len)?;
        let base = buf.base();
        let disk = crate::sync::Arc::new(SimDisk::new(len));
        Ok((
            Backing::from_parts(base, len, false, Store::Sim(buf, disk.clone())),
            disk,
        ))
    }

    /// A zeroed anonymous map of `len` bytes.
    pub(crate) fn anon(len: u64) -> Result<Backing, Error> {
        let map = anon::AnonMap::new(len)?;
        let base = map.base();
        Ok(Backing::from_parts(base, len, false, Store::Anon(map)))
    }

    /// Maps `len` bytes of an opened, locked file: shared and writable, or, for a read-only
    /// descriptor, private and read-only to the arena.
    pub(crate) fn file(opened: OpenedFile, len: u64) -> Result<Backing, Error> {
        let read_only = opened.read_only;
        Backing::map_file(opened, len, read_only)
    }

    /// Maps `len` bytes of an opened file privately and writably (copy-on-write): the arena may
    /// change them, nothing reaches the file. `opened` is a read-only descriptor.
    pub(crate) fn file_copy(opened: OpenedFile, len: u64) -> Result<Backing, Error> {
        debug_assert!(
            opened.read_only,
            "a copy is mapped from a read-only descriptor"
        );
        Backing::map_file(opened, len, false)
    }

    fn map_file(opened: OpenedFile, len: u64, read_only: bool) -> Result<Backing, Error> {
        let map = file::FileMap::new(opened, len)?;
        let base = map.base();
        let b = Backing::from_parts(base, len, read_only, Store::File(map));
        #[cfg(parena_loom)]
        b.load_words();
        Ok(b)
    }

    #[cfg(parena_loom)]
    fn load_words(&self) {
        for (i, w) in self
            .words
            .iter()
            .enumerate()
            .take((self.len() / 8) as usize)
        {
            let mut bytes = [0u8; 8];
            // SAFETY: `i * 8 + 8 <= len`; the backing was just created and nothing else uses it.
            unsafe { std::ptr::copy_nonoverlapping(self.ptr(i as u64 * 8), bytes.as_mut_ptr(), 8) };
            w.store(u64::from_le_bytes(bytes), crate::sync::Ordering::Relaxed);
        }
    }

    /// Applies `s` to the map: faults pages in, asks for huge pages, locks the map in RAM, marks
    /// the file for removal when the backing is dropped, in that order.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when a setting is on for a heap buffer (they are for maps);
    /// [`Error::Refused`] when the OS refuses one (an `mlock` limit, huge pages switched off, a
    /// kernel without `MADV_POPULATE_*`).
    pub(crate) fn apply(&self, s: MapSettings) -> Result<(), Error> {
        match &self.store {
            // A map that reserves room to grow holds more than its arena: `populate` faults in
            // the arena's part only, and `lock_memory` (which `mlock`s a whole map) is refused
            // until the arena has grown to its maximum.
            Store::Anon(_) | Store::File(_) if s.lock_memory && self.len() < self.reserved => {
                Err(Error::Unsupported {
                    option: "lock_memory",
                    backing: self.kind(),
                })
            }
            Store::Anon(m) => m.apply(s, self.len()),
            Store::File(m) => m.apply(s, self.len()),
            // A heap buffer (the simulated disk's included).
            _ => match s.first_on() {
                Some(option) => Err(Error::Unsupported {
                    option,
                    backing: self.kind(),
                }),
                None => Ok(()),
            },
        }
    }

    pub(crate) fn kind(&self) -> BackingKind {
        match self.store {
            Store::Heap(_) | Store::HeapReserve(_) => BackingKind::Heap,
            #[cfg(feature = "testkit")]
            Store::Sim(..) => BackingKind::Heap,
            Store::Anon(_) => BackingKind::Anon,
            Store::File(_) => BackingKind::File,
        }
    }

    pub(crate) fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether [`Backing::flush`] makes anything durable: a writable file map, or the simulated
    /// disk.
    pub(crate) fn durable(&self) -> bool {
        match &self.store {
            Store::File(_) => !self.read_only,
            #[cfg(feature = "testkit")]
            Store::Sim(..) => true,
            _ => false,
        }
    }

    /// Gives the whole pages inside `off..off + len` back to the kernel where that is the same as
    /// zeroing them: an anonymous map (`MADV_DONTNEED`), whose pages then read zero and take no
    /// memory until touched again. Nothing for other backings (a file's pages hold its data, a
    /// heap buffer's belong to the process's allocator) and under Miri and loom.
    ///
    /// # Safety
    /// As for [`Backing::zero`]: the range is the caller's alone during the call, and it wants
    /// the bytes zero (or as they were) afterwards.
    pub(crate) unsafe fn discard(&self, off: u64, len: u64) {
        let from = off.div_ceil(PAGE) * PAGE;
        let to = (off.saturating_add(len) / PAGE * PAGE).min(self.len());
        if from >= to || cfg!(any(miri, parena_loom)) {
            return;
        }
        if let Store::Anon(m) | Store::HeapReserve(m) = &self.store {
            // SAFETY: inside the map (`to <= len`), page-aligned; the caller's contract.
            unsafe { m.discard(from, to - from) };
        }
    }

    /// Makes `off..off + len` durable (waits). A no-op for memory backings.
    pub(crate) fn flush(&self, off: u64, len: u64) -> Result<(), Error> {
        match &self.store {
            Store::File(f) if !self.read_only => f.flush(off, len),
            #[cfg(feature = "testkit")]
            Store::Sim(_, disk) => {
                disk.persist(self, off, len);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Starts write-back of `off..off + len` without waiting.
    pub(crate) fn flush_async(&self, off: u64, len: u64) -> Result<(), Error> {
        match &self.store {
            Store::File(f) if !self.read_only => f.flush_async(off, len),
            _ => Ok(()),
        }
    }

    /// The path behind a file backing.
    pub(crate) fn path(&self) -> Option<&std::path::Path> {
        match &self.store {
            Store::File(f) => Some(f.path()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
