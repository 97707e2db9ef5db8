//! The messages of [`Error`]: each variant's facts in words, sizes named in their unit.

use super::{Error, Region};
use std::fmt;

/// The name of a size for messages: `33 GiB (35433480192 bytes)` when it is a whole number of
/// KiB, MiB or GiB, else the bytes.
fn size(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match UNITS.iter().find(|(u, _)| n >= *u && n % u == 0) {
        Some((u, name)) => format!("{} {name} ({n} bytes)", n / u),
        None => format!("{n} bytes"),
    }
}

/// The name of a freelist kind as stored in the header (`Freelist as u8`), for messages.
fn freelist_name(v: u8) -> String {
    crate::kinds::Freelist::from_u8(v).map_or_else(
        || format!("(unknown kind {v})"),
        |k| format!("{k:?}").to_lowercase(),
    )
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Full {
                requested,
                available,
            } => {
                write!(
                    f,
                    "arena full: {requested} bytes requested, {available} available"
                )
            }
            Error::ZeroSize => f.write_str("a block of zero bytes was requested"),
            Error::TooLarge { requested, max } => {
                write!(
                    f,
                    "{requested} bytes requested, a block holds at most {max}"
                )
            }
            Error::BadAlign { align } => write!(f, "alignment {align} is above the page size"),
            Error::Stale { expected: 0, .. } => f.write_str(
                "the handle does not name a block: it carries generation 0, which no block ever \
                 has (a zero, forged or corrupted handle)",
            ),
            Error::Stale { expected, found: 0 } => write!(
                f,
                "stale handle: no live block starts at its offset (the handle carries generation \
                 {expected}; its block was freed, or the handle is forged or from another arena)"
            ),
            Error::Stale { expected, found } => write!(
                f,
                "stale handle: it carries generation {expected}, the block at its offset has \
                 generation {found} (the block it named was freed and the space reused)"
            ),
            Error::DoubleFree { offset } => write!(f, "block at {offset} was already freed"),
            Error::Foreign { offset } => write!(
                f,
                "block at {offset} belongs to an allocator interface; only its deallocation frees it"
            ),
            Error::Busy { offset } => write!(
                f,
                "block at {offset} is busy: being written, read too deeply nested, or freed while too many freed blocks wait for their readers"
            ),
            Error::OutOfBounds {
                offset,
                len,
                limit,
                region,
            } => {
                let end = offset.saturating_add(*len);
                match region {
                    Region::Heap => write!(
                        f,
                        "bytes {offset}..{end} are outside the heap, which ends at offset {limit}"
                    ),
                    Region::Arena => write!(
                        f,
                        "bytes {offset}..{end} are outside the arena, whose capacity is {limit}"
                    ),
                    Region::Block => write!(
                        f,
                        "bytes {offset}..{end} of the block are past its end: it holds {limit} bytes"
                    ),
                    Region::RootSlots => write!(
                        f,
                        "root slot {offset} does not exist: the slots are 0..{limit}"
                    ),
                    Region::Alignment => write!(
                        f,
                        "offset {offset} is not a multiple of {limit}, as a {len}-byte atomic word \
                         needs"
                    ),
                    Region::Handle => write!(
                        f,
                        "the handle's offset {offset} is not in the allocated heap, which ends at \
                         {limit}: the handle is stale (from before a clear), from another arena, \
                         or forged"
                    ),
                }
            }
            Error::ReadOnly => f.write_str("the arena is read-only"),
            Error::Forked => f.write_str(
                "this file arena was opened by the parent process; a forked child may not change it",
            ),
            Error::Locked => f.write_str("the arena file is locked by another writer"),
            Error::Exists => f.write_str("the arena file already exists"),
            Error::Truncated { expected, found } => {
                write!(f, "file holds {found} bytes, the arena needs {expected}")
            }
            Error::Magic { found } => write!(f, "not a parena arena (starts with {found:02x?})"),
            Error::Version { expected, found } => {
                write!(f, "format version {found}, this build reads {expected}")
            }
            Error::MagicVersion { expected, found } => {
                write!(f, "user magic version {found}, expected {expected}")
            }
            Error::Checksum { expected, found } => {
                write!(
                    f,
                    "header checksum {found:#x} does not match stored {expected:#x}"
                )
            }
            Error::FreelistKind {
                expected: 255,
                found,
            } => {
                write!(
                    f,
                    "the header names freelist kind {found}, which this build does not know"
                )
            }
            Error::FreelistKind { expected, found } => {
                let (found, expected) = (freelist_name(*found), freelist_name(*expected));
                write!(
                    f,
                    "the arena was created with freelist {found}, {expected} was asked for"
                )
            }
            Error::Size { field, value } => {
                write!(f, "header field {field} = {value} is impossible")
            }
            Error::Bump { bump, capacity } => {
                write!(
                    f,
                    "bump offset {bump} is outside the heap (capacity {capacity})"
                )
            }
            Error::State { found } => write!(f, "clean/dirty word {found:#x} is not valid"),
            Error::Reserved { expected, found } => {
                write!(f, "reserved area is {found} bytes, expected {expected}")
            }
            Error::Shrink {
                requested,
                allocated,
            } => write!(
                f,
                "capacity {requested} is below the {allocated} bytes already allocated"
            ),
            Error::Corrupt { offset, word } => {
                write!(f, "corrupt block header {word:#018x} at offset {offset}")
            }
            Error::Shared => f.write_str("the operation needs the only clone of the arena"),
            Error::NoSpace => f.write_str("no space left on the device"),
            Error::Conflict { option } => {
                write!(
                    f,
                    "option {option} conflicts with the arena already open at this path"
                )
            }
            Error::Unsupported {
                option: "lock_memory",
                backing: crate::kinds::BackingKind::Anon | crate::kinds::BackingKind::File,
            } => write!(
                f,
                "option lock_memory cannot apply to a growable arena below its maximum (it would \
                 lock the whole reservation)"
            ),
            Error::Unsupported { option, backing } => match backing {
                crate::kinds::BackingKind::File => write!(
                    f,
                    "option {option} cannot apply to a file arena at an offset inside a larger file"
                ),
                _ if *option == "offset" => {
                    write!(
                        f,
                        "option offset is for file arenas; a {backing:?} arena has no file"
                    )
                }
                _ => write!(
                    f,
                    "option {option} needs a map; a {backing:?} arena has none"
                ),
            },
            Error::Refused { option, error } => {
                write!(f, "the system refused option {option}: {error}")
            }
            Error::Capacity { requested, max, .. } if requested > max => write!(
                f,
                "capacity {} is above the maximum arena size, {}",
                size(*requested),
                size(*max)
            ),
            Error::Capacity { requested, min, .. } => write!(
                f,
                "capacity {} is below the smallest arena with these options, {} (the header, \
                 the reserved area, the start and flush maps and one chunk of heap)",
                size(*requested),
                size(*min)
            ),
            Error::MaxCapacity { requested, max, .. } if requested > max => write!(
                f,
                "max_capacity {} is above the maximum arena size, {}",
                size(*requested),
                size(*max)
            ),
            Error::MaxCapacity { requested, min, .. } => write!(
                f,
                "max_capacity {} is below the arena's capacity, {}",
                size(*requested),
                size(*min)
            ),
            Error::MaxCapacityMismatch { expected, found: 0 } => write!(
                f,
                "max_capacity {} asked for, but the arena was created without one (it cannot \
                 grow while open)",
                size(*expected)
            ),
            Error::MaxCapacityMismatch { expected, found } => write!(
                f,
                "max_capacity {} asked for, but the arena was created with {}",
                size(*expected),
                size(*found)
            ),
            Error::Offset { offset, align } if offset % align != 0 => write!(
                f,
                "arena offset {offset} in the file is not a multiple of {align}"
            ),
            Error::Offset { offset, .. } => write!(
                f,
                "arena offset {offset} in the file leaves no room for an arena after it"
            ),
            Error::ChunkSize {
                requested,
                min,
                max,
            } => write!(
                f,
                "chunk size {requested} is not a power of two from {min} to {max}"
            ),
            Error::NoMemory { requested } => write!(
                f,
                "the system could not provide {} of memory for the arena (not enough memory, \
                 or an overcommit or address-space limit)",
                size(*requested)
            ),
            Error::Open { path, error } => {
                write!(f, "cannot open {}: {error}", path.display())
            }
            Error::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

#[cfg(test)]
mod display_tests {
    use super::Error;

    #[test]
    fn freelist_kinds_are_named() {
        let e = Error::FreelistKind {
            expected: 2,
            found: 1,
        };
        assert_eq!(
            e.to_string(),
            "the arena was created with freelist optimistic, pessimistic was asked for"
        );
        let e = Error::FreelistKind {
            expected: 255,
            found: 9,
        };
        assert!(
            e.to_string()
                .contains("kind 9, which this build does not know"),
            "{e}"
        );
    }
}
