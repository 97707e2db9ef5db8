//! Errors. Each failed check has its own variant carrying the facts, never a string; the
//! messages are in `display`.

mod display;

use std::io;
use std::path::PathBuf;

/// What an [`Error::OutOfBounds`] bound applies to: the region the offset was checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Region {
    /// The arena's heap (`data_start..heap_end`, before the start and flush maps): `offset` and
    /// `len` are arena offsets, `limit` is the end of the heap.
    Heap,
    /// The whole arena (`0..capacity`): `limit` is the capacity.
    Arena,
    /// One block's bytes: `offset` and `len` are relative to the block, `limit` is its length.
    Block,
    /// The persisted root slots: `offset` is the slot number, `limit` the number of slots.
    RootSlots,
    /// An atomic word's alignment: `offset` is not a multiple of `limit`.
    Alignment,
    /// Where a handle may point: `offset` is the handle's offset, `limit` the end of the allocated
    /// heap. A handle outside it is stale (from before a `clear`), from another arena, or forged.
    Handle,
}

/// Everything that can go wrong in parena.
///
/// Open paths report one variant per header check; handle paths report why a handle was refused;
/// the allocation path reports [`Error::Full`] with the numbers.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The arena has no room for the request: the main memory is used up and no free segment
    /// (after merging neighbours, when `Options::coalesce` is on) holds it.
    Full {
        /// Bytes asked for.
        requested: u64,
        /// Bytes of main memory not yet reserved by any thread (`capacity - bump`), counted
        /// before block headers and alignment. Space on the free lists and in other threads'
        /// chunks is not included, and a request of exactly `available` bytes does not fit
        /// (it needs a header too): a hint of how far the arena is from full, not a promise.
        available: u64,
    },
    /// A size of zero was asked for.
    ZeroSize,
    /// The size asked for cannot be a block (larger than [`crate::MAX_BLOCK_LEN`], or overflows).
    TooLarge {
        /// Bytes asked for.
        requested: u64,
        /// The largest block length parena supports.
        max: u64,
    },
    /// The alignment asked for is above [`crate::MAX_ALIGN`].
    BadAlign {
        /// Alignment asked for.
        align: usize,
    },
    /// The handle names a block that is no longer (or never was) the live block it was issued for.
    Stale {
        /// Generation carried by the handle.
        expected: u32,
        /// Generation found in the block header (0 when there is no live block header there).
        found: u32,
    },
    /// The handle names a block that the allocator interfaces (`Allocator` for `&Arena`,
    /// `GlobalArena`) handed out as a pointer: handles never reach those, and only the
    /// interface's own deallocation frees them.
    Foreign {
        /// Offset the handle names.
        offset: u64,
    },
    /// The block was already freed.
    DoubleFree {
        /// Offset the handle names.
        offset: u64,
    },
    /// The block is still being written through its [`crate::BlockMut`]; or a read nested more
    /// than four deep on one thread (its read slots are all held); or a free by a thread that
    /// already keeps the most blocks it freed while reads held them (docs/metadata.md, 4.1).
    Busy {
        /// Offset the handle names.
        offset: u64,
    },
    /// An offset or range lies outside the region it must be in ([`Region`] says which, and what
    /// `offset`, `len` and `limit` count), or is not aligned as it must be.
    OutOfBounds {
        /// Offset given.
        offset: u64,
        /// Length of the access.
        len: u64,
        /// End of the valid region (or the alignment, for [`Region::Alignment`]).
        limit: u64,
        /// The region the bound applies to.
        region: Region,
    },
    /// The capacity asked for cannot hold an arena: below the smallest one (the header, the
    /// reserved area, the start and flush maps and one chunk of heap) or above the largest.
    Capacity {
        /// Bytes asked for (as passed to `Options::capacity`, before rounding up to 4096).
        requested: u64,
        /// The smallest capacity with these options.
        min: u64,
        /// The largest capacity with these options: 32 GiB for a fixed arena, its
        /// `max_capacity` for a growable one.
        max: u64,
    },
    /// `Options::max_capacity` cannot bound this arena: below its capacity or above the largest
    /// arena.
    MaxCapacity {
        /// Bytes asked for (as passed to `Options::max_capacity`, before rounding up to 4096).
        requested: u64,
        /// The least it may be: the arena's capacity.
        min: u64,
        /// The largest maximum (1 TiB).
        max: u64,
    },
    /// An open asked for another `Options::max_capacity` than the arena file was created with
    /// (it fixes where the maps lie, so it never changes).
    MaxCapacityMismatch {
        /// What the options asked for.
        expected: u64,
        /// What the file records (0: the file is not growable).
        found: u64,
    },
    /// `Options::offset` is not a multiple of 4096, or too large for an arena to follow it.
    Offset {
        /// Offset asked for.
        offset: u64,
        /// The alignment it needs.
        align: u64,
    },
    /// `Options::chunk_size` is not a power of two between `min` and `max`.
    ChunkSize {
        /// Bytes asked for.
        requested: u64,
        /// Smallest chunk.
        min: u64,
        /// Largest chunk.
        max: u64,
    },
    /// The system could not provide the memory (or address space) for an arena of this size.
    NoMemory {
        /// Bytes asked for.
        requested: u64,
    },
    /// Opening or creating the arena file failed.
    Open {
        /// The path as given.
        path: PathBuf,
        /// What the system said.
        error: io::Error,
    },
    /// The arena was opened read-only.
    ReadOnly,
    /// A file arena opened by an ancestor process, used in a child of `fork()`: the file, its
    /// lock and every operation in flight in it belong to the process that opened it, so the
    /// child's copy changes nothing (docs/design.md, "Fork"). Open the file again in the child
    /// once the parent has closed it, or use an anonymous or heap arena.
    Forked,
    /// Another writer (in this process or another) holds the file, or a writer holds it and a reader
    /// asked for it.
    Locked,
    /// `create_new` was asked for and the file exists.
    Exists,
    /// The file is too short to hold an arena header, or shorter than the header says.
    Truncated {
        /// Bytes the header needs.
        expected: u64,
        /// Bytes in the file.
        found: u64,
    },
    /// The file does not start with parena's magic bytes: it is not an arena.
    Magic {
        /// The first bytes found.
        found: [u8; 8],
    },
    /// The file's format version is not one this build reads.
    Version {
        /// Version this build writes.
        expected: u32,
        /// Version found.
        found: u32,
    },
    /// The user's `magic_version` differs from the one the arena was created with.
    MagicVersion {
        /// Asked for in `Options`.
        expected: u16,
        /// Found in the file.
        found: u16,
    },
    /// The checksum over the header's unchanging fields does not match.
    Checksum {
        /// Stored in the header.
        expected: u64,
        /// Computed from the header.
        found: u64,
    },
    /// The freelist kind differs from the one asked for, or is not a known kind.
    FreelistKind {
        /// Asked for (or 255 when the stored byte is unknown).
        expected: u8,
        /// Found in the file.
        found: u8,
    },
    /// A size in the header is impossible: capacity, data start, chunk size or reserved length.
    Size {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The bump offset lies outside `data_start..=capacity` or is unaligned.
    Bump {
        /// Bump offset found.
        bump: u64,
        /// Capacity of the arena.
        capacity: u64,
    },
    /// The clean/dirty state word holds neither marker.
    State {
        /// Value found.
        found: u64,
    },
    /// The `reserved` length differs from the one the arena was created with.
    Reserved {
        /// Asked for in `Options`.
        expected: u32,
        /// Found in the file.
        found: u32,
    },
    /// Reopening a fixed arena with a capacity smaller than the space already allocated.
    Shrink {
        /// Capacity asked for.
        requested: u64,
        /// Bytes already allocated (the bump offset).
        allocated: u64,
    },
    /// The heap holds a block header that cannot be right (found by a walk or a freelist pop).
    Corrupt {
        /// Offset of the bad word.
        offset: u64,
        /// The word.
        word: u64,
    },
    /// The operation needs the only handle on the arena, and other clones exist.
    Shared,
    /// The storage device is full, or the file may not grow (preallocation or growth failed with
    /// ENOSPC, EDQUOT or EFBIG: a full disk, a quota, a file-size limit).
    NoSpace,
    /// Options that conflict with an arena this process already holds open at that path.
    Conflict {
        /// Which option.
        option: &'static str,
    },
    /// An option asked for on an arena it cannot apply to: a map setting (`Options::populate`,
    /// `huge_pages`, `lock_memory`, `remove_on_drop`) on a backing that has no map (a heap buffer),
    /// `Options::offset` on a heap or anonymous arena, `remove_on_drop` on a file arena at an
    /// offset (it would remove the whole enclosing file), or `lock_memory` on a growable
    /// anonymous or file arena below its maximum (it would lock the whole reservation).
    Unsupported {
        /// Which option.
        option: &'static str,
        /// The backing it was asked for.
        backing: crate::kinds::BackingKind,
    },
    /// The operating system refused a map setting: an `mlock` limit (`RLIMIT_MEMLOCK`) for
    /// `lock_memory`, transparent huge pages switched off for `huge_pages`, a kernel older than
    /// 5.14 (no `MADV_POPULATE_*`) for `populate`. The arena is not opened.
    Refused {
        /// Which option.
        option: &'static str,
        /// What the system call (or the kernel setting) said.
        error: io::Error,
    },
    /// A system call failed.
    Io(io::Error),
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) | Error::Open { error: e, .. } => Some(e),
            Error::Refused { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        // ENOSPC and EDQUOT: the device cannot hold the arena; EFBIG: the file may not grow that
        // far (`RLIMIT_FSIZE`, or the file system's largest file).
        match e.raw_os_error() {
            Some(28) | Some(122) | Some(27) => Error::NoSpace,
            _ => Error::Io(e),
        }
    }
}

impl Error {
    /// The error of a failed map or allocation of `requested` bytes: [`Error::NoMemory`] when the
    /// system is out of memory (`ENOMEM`), else as `From<io::Error>`.
    pub(crate) fn of_map(e: io::Error, requested: u64) -> Error {
        if e.raw_os_error() == Some(12) || e.kind() == io::ErrorKind::OutOfMemory {
            Error::NoMemory { requested }
        } else {
            Error::from(e)
        }
    }

    /// The error of a failed open of `path`: [`Error::Open`] naming it (ENOSPC and EDQUOT stay
    /// [`Error::NoSpace`]).
    pub(crate) fn of_open(e: io::Error, path: &std::path::Path) -> Error {
        match Error::from(e) {
            Error::Io(error) => Error::Open {
                path: path.to_path_buf(),
                error,
            },
            other => other,
        }
    }
}
