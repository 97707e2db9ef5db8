//! [`Options`]: how an arena is created or opened.

use crate::backing::MapSettings;
#[cfg(doc)]
use crate::error::Error;
pub use crate::format::Freelist;

/// Builder for an [`Arena`](crate::Arena): sizes, freelist policy and file behaviour.
///
/// ```
/// use parena::{Freelist, Options};
/// let arena = Options::new()
///     .capacity(1 << 20)
///     .freelist(Freelist::Pessimistic)
///     .magic_version(3)
///     .reserved(64)
///     .heap()?;
/// assert_eq!(arena.reserved_len(), 64);
/// # Ok::<(), parena::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) capacity: Option<u64>,
    pub(crate) max_capacity: Option<u64>,
    pub(crate) freelist: Option<Freelist>,
    pub(crate) min_segment_size: u32,
    pub(crate) magic_version: u16,
    pub(crate) reserved: Option<u32>,
    pub(crate) read_only: bool,
    pub(crate) map_copy: bool,
    pub(crate) offset: u64,
    pub(crate) create_new: bool,
    pub(crate) create: bool,
    pub(crate) zero_on_free: bool,
    pub(crate) thread_cache: bool,
    pub(crate) coalesce: bool,
    pub(crate) chunk_size: Option<u32>,
    pub(crate) preallocate: bool,
    /// Applied to the map once the arena is open (see [`Options::populate`] and the next three).
    pub(crate) map: MapSettings,
}

/// Capacity used when none is given: 64 MiB.
pub const DEFAULT_CAPACITY: u64 = 64 << 20;

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

impl Options {
    /// Defaults: 64 MiB, [`Freelist::Optimistic`], 32-byte minimum segment, no reserved area,
    /// writable, create the file if it is missing, preallocate it.
    pub fn new() -> Options {
        Options {
            capacity: None,
            max_capacity: None,
            freelist: None,
            min_segment_size: 32,
            magic_version: 0,
            reserved: None,
            read_only: false,
            map_copy: false,
            offset: 0,
            create_new: false,
            create: true,
            zero_on_free: false,
            thread_cache: true,
            coalesce: true,
            chunk_size: None,
            preallocate: true,
            map: MapSettings::default(),
        }
    }

    /// Total size in bytes, header included (rounded up to 4096). On reopen of a file, a larger
    /// value grows the file; a smaller one is kept as is unless it is below what is allocated,
    /// which is refused with [`Error::Shrink`]. A growable arena ([`Options::max_capacity`])
    /// takes it as where it starts: one that has grown past it opens at its grown capacity.
    ///
    /// Without it, a new arena gets [`DEFAULT_CAPACITY`] and a reopened file keeps the capacity
    /// in its header: a reopen never grows a file to the default. The largest capacity is 32 GiB,
    /// or the maximum of a growable arena ([`Options::max_capacity`], up to 1 TiB).
    pub fn capacity(mut self, bytes: u64) -> Options {
        self.capacity = Some(bytes);
        self
    }

    /// Makes the arena growable while it is open, up to `bytes` (rounded up to 4096): the open
    /// reserves address space for `bytes` once, so the arena's base never moves and every block
    /// stays where it is, and puts the start and flush maps in front of the heap, sized for
    /// `bytes` (1/16 of it; in a file they stay a hole until used). The arena then grows in
    /// steps, on demand ([`Arena::grow`](crate::Arena::grow)) or when an allocation finds the
    /// heap used up; an allocation is [`Error::Full`] only at `bytes`. Recorded in the header
    /// (format version 5): a reopen takes the file's value, and one that names another is
    /// [`Error::MaxCapacityMismatch`].
    ///
    /// A maximum above 32 GiB makes a *wide* arena: its handles count offsets in a coarser unit
    /// (16 to 256 bytes, [`Arena::offset_unit`](crate::Arena::offset_unit)) and every block is
    /// aligned to it; [`Arena::offset_of`](crate::Arena::offset_of) decodes its handles.
    ///
    /// [`Error::MaxCapacity`] at create when `bytes` is below the capacity or above 1 TiB.
    pub fn max_capacity(mut self, bytes: u64) -> Options {
        self.max_capacity = Some(bytes);
        self
    }

    /// The freelist policy. Stored in the header; reopening with another one is refused.
    pub fn freelist(mut self, kind: Freelist) -> Options {
        self.freelist = Some(kind);
        self
    }

    /// Free remainders smaller than this (rounded up to 8, at least 16) are not listed but
    /// counted as discarded; `compact()` merges them back.
    pub fn min_segment_size(mut self, bytes: u32) -> Options {
        self.min_segment_size = bytes;
        self
    }

    /// The user's own format version, stored at create and checked on every open.
    pub fn magic_version(mut self, v: u16) -> Options {
        self.magic_version = v;
        self
    }

    /// Bytes of user-reserved area after the header ([`Arena::reserved`](crate::Arena::reserved)).
    pub fn reserved(mut self, bytes: u32) -> Options {
        self.reserved = Some(bytes);
        self
    }

    /// Open without writing: allocation and frees get [`Error::ReadOnly`]; a file is locked shared.
    pub fn read_only(mut self, yes: bool) -> Options {
        self.read_only = yes;
        self
    }

    /// Map the arena at byte `offset` of the file instead of at its start, for an engine that
    /// keeps the arena inside a larger file of its own (a superblock before it, say). The arena
    /// occupies `offset..offset + capacity`; bytes before `offset` are never read or written, and
    /// a new arena extends the file. `offset` must be a multiple of 4096 and the same at every
    /// open. Default 0. For `map_file` only.
    ///
    /// The lock is on the whole file: two arenas at different offsets of one file cannot both
    /// have a writer. `remove_on_drop` is refused (it would remove the whole file).
    ///
    /// # Errors (at open)
    /// [`Error::Offset`] for an offset that is not a multiple of 4096; [`Error::Unsupported`] for a
    /// heap or anonymous arena, or with `remove_on_drop`.
    pub fn offset(mut self, bytes: u64) -> Options {
        self.offset = bytes;
        self
    }

    /// Open an existing arena file as a private, copy-on-write map (`MAP_PRIVATE`): the arena is
    /// writable, but nothing it does reaches the file. For a scratch copy of a snapshot, a
    /// what-if run over real data, or a test. Default `false`.
    ///
    /// The file is opened for reading and locked shared (other readers may open it; a writer gets
    /// [`Error::Locked`] while the copy is open). The file must hold an arena: `create` and
    /// `create_new` do not apply. A dirty file is recovered in the copy's memory. `flush` makes
    /// nothing durable, a larger `capacity` is refused with [`Error::ReadOnly`] (the file cannot
    /// grow), and whatever the copy changed is gone when it closes.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("parena-doc-copy-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("db");
    /// // SAFETY: nothing else maps or modifies this file while an arena has it open.
    /// let h = unsafe { parena::Options::new().capacity(1 << 20).map_file(&path)? }.alloc_copy(b"kept")?;
    /// let copy = unsafe { parena::Options::new().map_copy(true).map_file(&path)? };
    /// copy.free(h)?;                       // only in the copy
    /// copy.alloc_copy(b"scratch")?;
    /// drop(copy);
    /// let arena = unsafe { parena::Options::new().map_file(&path)? };
    /// assert_eq!(arena.read_with(h, <[u8]>::to_vec)?, b"kept");
    /// # drop(arena);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_copy(mut self, yes: bool) -> Options {
        self.map_copy = yes;
        self
    }

    /// Fail with [`Error::Exists`] if the file exists.
    pub fn create_new(mut self, yes: bool) -> Options {
        self.create_new = yes;
        self
    }

    /// Create the file when it is missing (default `true`); with `false` a missing file is an
    /// [`Error::Open`] naming the path, whose `error` is of kind `NotFound`, and an existing empty file is not formatted either: it
    /// is refused as not an arena ([`Error::Magic`]) and left empty. (With `true`, an empty file
    /// is taken as a new arena, like a missing one.)
    pub fn create(mut self, yes: bool) -> Options {
        self.create = yes;
        self
    }

    /// Clear a block's bytes when it is freed, for data that must not linger.
    pub fn zero_on_free(mut self, yes: bool) -> Options {
        self.zero_on_free = yes;
        self
    }

    /// Keep each thread's freed blocks of up to 504 bytes in a small per-thread cache, reused by
    /// that thread's next allocations of the same size before anything else (default `true`).
    /// Cached blocks are free space in the heap: a crash leaves them to recovery, and `close`,
    /// `compact` and the thread's own `flush` hand them to the shared free lists.
    pub fn thread_cache(mut self, yes: bool) -> Options {
        self.thread_cache = yes;
        self
    }

    /// Merge physically adjacent free segments when an allocation finds the main memory and the
    /// free lists exhausted, then try again (default `true`). The merging pass runs on the
    /// allocating thread, one at a time per arena, and costs about one cache miss per listed
    /// segment; other allocations that find the arena exhausted meanwhile wait for it. `false`
    /// answers [`crate::Error::Full`] at once instead, and leaves merging to
    /// [`crate::Arena::compact`] and recovery (see docs/design.md, "Coalescing while shared").
    pub fn coalesce(mut self, yes: bool) -> Options {
        self.coalesce = yes;
        self
    }

    /// Size of the per-thread reservation chunks (a power of two from 512 B to 1 MiB). By default
    /// 64 KiB, smaller for small arenas so that every thread can have one.
    pub fn chunk_size(mut self, bytes: u32) -> Options {
        self.chunk_size = Some(bytes);
        self
    }

    /// Reserve the file's blocks on disk at create and grow (default `true`), so a full disk is an
    /// error then, not a `SIGBUS` on a later write. `false` leaves the file sparse.
    pub fn preallocate(mut self, yes: bool) -> Options {
        self.preallocate = yes;
        self
    }

    /// Fault every page of the map in at open (what `MAP_POPULATE` does), so the first touches of
    /// the arena take no page faults. An anonymous map gets its pages allocated; a file map reads
    /// the file into the page cache and maps it (without dirtying it). Default `false`.
    ///
    /// For `map_anon` and `map_file`; a heap arena gets [`Error::Unsupported`]. A kernel older
    /// than Linux 5.14 (no `MADV_POPULATE_READ`/`WRITE`) refuses it with [`Error::Refused`].
    ///
    /// ```
    /// let arena = parena::Options::new().capacity(1 << 20).populate(true).map_anon()?;
    /// # Ok::<(), parena::Error>(())
    /// ```
    pub fn populate(mut self, yes: bool) -> Options {
        self.map.populate = yes;
        self
    }

    /// Ask for transparent huge pages for the map (`madvise(MADV_HUGEPAGE)`): fewer TLB misses on
    /// a large arena. Advice, not a guarantee: the kernel backs the map with 2 MiB pages where it
    /// can. Default `false`.
    ///
    /// # Errors (at open)
    /// [`Error::Refused`] when the kernel has transparent huge pages switched off
    /// (`/sys/kernel/mm/transparent_hugepage/enabled` is `never`) or rejects the advice;
    /// [`Error::Unsupported`] for a heap arena.
    pub fn huge_pages(mut self, yes: bool) -> Options {
        self.map.huge_pages = yes;
        self
    }

    /// Lock the whole map in RAM (`mlock`) so the arena is never paged out; unlocked when the
    /// arena closes. Default `false`.
    ///
    /// # Errors (at open)
    /// [`Error::Refused`] when the map is larger than the process may lock (`RLIMIT_MEMLOCK`,
    /// often 8 MiB without `CAP_IPC_LOCK`); [`Error::Unsupported`] for a heap arena.
    pub fn lock_memory(mut self, yes: bool) -> Options {
        self.map.lock_memory = yes;
        self
    }

    /// Remove the arena's file when the arena closes (its last clone drops), after the clean
    /// close: for scratch arenas that should not outlive the process. A crash leaves the file.
    /// Default `false`. For `map_file`; [`Error::Unsupported`] for an anonymous map or a heap.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("parena-doc-rod-{}", std::process::id()));
    /// let opts = parena::Options::new().capacity(1 << 20).remove_on_drop(true);
    /// // SAFETY: nothing else maps or modifies this file while the arena is open.
    /// let arena = unsafe { opts.map_file(&path)? };
    /// assert!(path.exists());
    /// drop(arena);
    /// assert!(!path.exists());
    /// # Ok::<(), parena::Error>(())
    /// ```
    pub fn remove_on_drop(mut self, yes: bool) -> Options {
        self.map.remove_on_drop = yes;
        self
    }
}
