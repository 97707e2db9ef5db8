//! Salvage: copy every block of a damaged arena file that two independent records vouch for into a
//! new arena file, at the same offsets and with the same handles (docs/recovery.md, "Salvage").
//!
//! The damaged file is opened read-only and mapped privately; nothing is ever written to it. The
//! decision is made in one pass over the heap:
//!
//! - the **start map** (`A ^ B`, out of line, beside the heap) says where entries start;
//! - the **heap walk** steps from `data_start` header by header. A step must agree with the start
//!   map: a LIVE, FREE or PAD entry starts at a recorded start, holds no recorded start inside its
//!   span, and ends where the next step can begin (a recorded start, a never-used chunk tail, or
//!   the end of the walk); a zero word (a chunk's never-used tail) holds no recorded start after it
//!   up to the next chunk boundary (one at the zero word itself is reported, and stepped over).
//!   Where a step fails, the walk resumes at the next recorded start and the region in between is
//!   reported;
//! - the **flush map** of the newest valid meta slot records the starts of the last flush (for a
//!   cleanly closed file: the layout at the close).
//!
//! A block is saved when its header is LIVE (PUBLISHED or PENDING, nonzero generation), its step
//! agrees with the start map, and, besides the start map, either the walk reached it by stepping
//! over the entry before it (or it is the first entry of the heap) or the flush map records its
//! start with an extent that holds it. Saved blocks cannot overlap: none holds a recorded start.
//!
//! The new file is then written through the crate's own pieces (the header with the same
//! geometry and arena id, the blocks, free segments given back over everything else, the start
//! map and a flush), opened writable through the ordinary recovery path, checked (`verify`, and a
//! recovery report that dropped nothing), and closed clean.

mod copy;
mod plan;
mod source;

use crate::block::Handle;
use crate::error::Error;
use copy::write_fresh;
use source::Source;
use std::path::Path;

/// What [`salvage`] saved and what it could not vouch for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SalvageReport {
    /// The damaged file's header was clean: its state word said CLEAN and its mutable words
    /// matched their checksum (so the roots and the free-list heads were as the last close left
    /// them).
    pub header_clean: bool,
    /// Mutable header words that failed validation and were replaced (`"capacity"` from the
    /// newest meta slot, `"bump"` from the newest meta slot, `"state"`). Empty when the header
    /// validated.
    pub header_repaired: Vec<&'static str>,
    /// The arena's capacity (the fresh file has the same).
    pub capacity: u64,
    /// Where the walk of the damaged heap ended: the larger of the header's bump offset (when it
    /// validated) and the newest meta slot's; the end of the heap when neither is known.
    pub bump: u64,
    /// The epoch of the meta slot whose flush map was used, or `None` when no meta slot was valid
    /// for this capacity (then only the walk corroborates the start map).
    pub meta_epoch: Option<u64>,
    /// Every block copied, in offset order: the same handle works in the fresh file.
    pub saved: Vec<SavedBlock>,
    /// Bytes the saved blocks hold (their lengths).
    pub saved_bytes: u64,
    /// Heap regions of the damaged file that held, or may have held, data that was not copied.
    pub lost: Vec<Lost>,
    /// The 16 root slots were copied as they were.
    pub roots_copied: bool,
    /// Bytes of the reserved area copied as they were (its whole length).
    pub reserved_copied: u64,
    /// The fresh file's generation counter: past the damaged file's and past every generation
    /// seen in its heap.
    pub gen_seed: u64,
}

impl SalvageReport {
    /// Number of blocks saved.
    pub fn saved_blocks(&self) -> usize {
        self.saved.len()
    }

    /// Nothing was lost and the header was clean: the fresh file holds everything the damaged
    /// one did.
    pub fn is_complete(&self) -> bool {
        self.header_clean && self.header_repaired.is_empty() && self.lost.is_empty()
    }
}

/// One block [`salvage`] copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SavedBlock {
    /// Its handle, valid in both files.
    pub handle: Handle,
    /// Its length in bytes.
    pub len: u64,
    /// A block of the allocator interfaces (no handle reaches it); copied as one.
    pub foreign: bool,
    /// Its `BlockMut` was out (PENDING): copied as published, as recovery would.
    pub pending: bool,
    /// The heap walk reached it by stepping over the entry before it.
    pub by_walk: bool,
    /// The flush map of the newest valid meta slot records it.
    pub by_flush_map: bool,
}

/// A heap region of the damaged file that [`salvage`] did not copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lost {
    /// Offset of its first byte.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Why it was not copied.
    pub reason: LostReason,
}

/// Why a region was not copied (see [`Lost`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostReason {
    /// The heap walk could not step over it: `word` (at `offset`) is not a header parena writes
    /// there, or its span disagrees with the start map. The region runs to the next start the
    /// start map records.
    Unwalkable {
        /// The header word at the region's offset.
        word: u64,
    },
    /// A LIVE block header that only the start map vouches for: the walk did not reach it (it
    /// follows an unwalkable region) and the flush map does not record it (allocated after the
    /// last flush).
    OneRecord {
        /// Its header word.
        word: u64,
    },
    /// A zero word at a start the start map records, with no recorded start after it up to the
    /// next chunk boundary (the region's end): an allocation a crash cut short between setting
    /// its start bit and writing its header (nothing there was handed out), or a block whose
    /// header was destroyed. The walk steps over it as a never-used chunk tail.
    NoHeader,
    /// A LIVE header in state RESERVED or DYING: an allocation or a free in progress at a crash
    /// (recovery would reclaim it), or a damaged state field.
    NotLive {
        /// Its header word.
        word: u64,
    },
    /// A LIVE header at a start the start map records at or past the end of the walk (the bump
    /// offset).
    BeyondBump {
        /// Its header word.
        word: u64,
    },
    /// A LARGE block (1 MiB or more) whose tail word, which keeps its exact length after its
    /// bytes, is not its own: its length cannot be vouched for.
    BadTail {
        /// The tail word.
        word: u64,
    },
}

/// Copies every block of the damaged arena file `damaged` that two independent records vouch for
/// into a new arena file `fresh`, at the same offset and with the same header, so every saved
/// block's handle works in `fresh`; copies the roots and the reserved area; and reports what was
/// saved and what was not.
///
/// `damaged` is opened read-only (a shared lock; a writer holding it makes this fail with
/// [`Error::Locked`]) and never written. `fresh` must not exist: it is created with the damaged
/// file's geometry (capacity, reserved length, chunk size, minimum segment, free-list policy,
/// `magic_version`, arena id), everything not saved becomes free space, and it is closed clean
/// after a recovering open, `verify()` and a close have checked it. The vouching rule and what
/// salvage cannot do are in docs/recovery.md, "Salvage".
///
/// ```no_run
/// // After `map_file` refused the memtable file with `Error::Corrupt`:
/// // SAFETY: no other process changes either file while salvage runs.
/// let report = unsafe { parena::salvage("memtable.arena", "memtable.salvaged") }?;
/// println!("{} blocks saved, {} regions lost", report.saved_blocks(), report.lost.len());
/// for lost in &report.lost {
///     eprintln!("lost {} bytes at {}: {:?}", lost.len, lost.offset, lost.reason);
/// }
/// // Every saved handle (and every root) works in the new file, which opens clean.
/// // SAFETY: as above.
/// let arena = unsafe {
///     parena::Options::new().magic_version(0).map_file("memtable.salvaged") // your version
/// }?;
/// assert!(arena.was_clean());
/// # Ok::<(), parena::Error>(())
/// ```
///
/// # Errors
/// The damaged file's typed header error when its unchanging header is unusable
/// ([`Error::Magic`], [`Error::Truncated`], [`Error::Version`], [`Error::Checksum`],
/// [`Error::FreelistKind`], [`Error::Size`]); damaged mutable words (capacity, bump offset,
/// state) are replaced from the newest meta slot where possible and reported in
/// [`SalvageReport::header_repaired`]. [`Error::Exists`] when `fresh` exists (it is left
/// alone); [`Error::Locked`]; [`Error::Io`]. Should the fresh file fail its own check
/// ([`Error::Corrupt`]) it is removed.
///
/// # Safety
/// As for [`Options::map_file`](crate::Options::map_file): both files are mapped, so no other
/// process (or code outside this call) may modify or truncate either of them while `salvage`
/// runs.
pub unsafe fn salvage(
    damaged: impl AsRef<Path>,
    fresh: impl AsRef<Path>,
) -> Result<SalvageReport, Error> {
    let fresh = fresh.as_ref();
    let src = Source::open(damaged.as_ref())?;
    let plan = plan::plan(&src);
    let f = crate::backing::OpenedFile::open(fresh, false, false, true, 0)?;
    match write_fresh(&src, &plan, f, fresh) {
        Ok(r) => Ok(r),
        Err(e) => {
            // The file was created by this call (`create_new`): nothing of the user's is lost.
            let _ = std::fs::remove_file(fresh);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{salvage, Lost, LostReason};
    use crate::backing::{Backing, OpenedFile};
    use crate::heap::{MapGeom, StartMap};
    use crate::options::Options;

    /// The image of a process crash inside an allocation from a chunk, between setting the block's
    /// start bit and writing its header, with another thread's chunk above it: every block handed
    /// out is saved (recovery keeps them all), and the run from the bit is reported.
    #[test]
    #[cfg_attr(miri, ignore = "maps files")]
    fn a_crash_between_a_start_bit_and_its_header_loses_no_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        let o = Options::new()
            .capacity(1 << 20)
            .chunk_size(4096)
            .magic_version(3);
        // SAFETY: a private file in a private directory; nothing else maps it.
        let a = unsafe { o.map_file(&path) }.unwrap();
        a.flush().unwrap();
        // Allocated after the flush: only the start map and the walk vouch for them.
        let mine: Vec<_> = (0..3).map(|i| a.alloc_copy(&[i; 40]).unwrap()).collect();
        let theirs: Vec<_> = std::thread::scope(|s| {
            s.spawn(|| {
                (0..3)
                    .map(|i| a.alloc_copy(&[i; 40]).unwrap())
                    .collect::<Vec<_>>()
            })
            .join()
            .unwrap()
        });
        assert!(theirs[0].offset() > mine[2].offset());
        // The file as a process crash leaves it (the page cache at this moment).
        let img = std::fs::read(&path).unwrap();
        drop(a);
        let dirty = dir.path().join("dirty");
        std::fs::write(&dirty, &img).unwrap();
        // The crash: the next allocation of this thread had set its start bit only.
        let cut = mine[2].offset() - 8 + 48;
        {
            let f = OpenedFile::open(&dirty, false, false, false, 0).unwrap();
            let b = Backing::file(f, 1 << 20).unwrap();
            StartMap::new(&b, &MapGeom::for_capacity(1 << 20)).cut_after_start_bit(cut);
        }
        // SAFETY: as above, for both files.
        let r = unsafe { salvage(&dirty, dir.path().join("fresh")) }.unwrap();
        let saved: Vec<_> = r.saved.iter().map(|s| s.handle).collect();
        for h in mine.iter().chain(&theirs) {
            assert!(saved.contains(h), "{h:?} lost: {:?}", r.lost);
        }
        // The run from the bit to the chunk's end is reported, nothing else.
        let end = theirs[0].offset() - 8;
        assert_eq!(
            r.lost,
            [Lost {
                offset: cut,
                len: end - cut,
                reason: LostReason::NoHeader,
            }]
        );
    }
}
