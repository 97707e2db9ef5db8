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
//!   the end of the walk); a zero word (a chunk's never-used tail) holds no recorded start up to
//!   the next chunk boundary. Where a step fails, the walk resumes at the next recorded start and
//!   the region in between is reported;
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

use crate::arena::Arena;
use crate::backing::{Backing, OpenedFile};
use crate::block::{self, Handle, HeaderWord, LiveState, GEN_MASK};
use crate::error::Error;
use crate::format::{
    self, Geometry, Meta, RawHeader, HEADER_SIZE, OFF_BUMP, OFF_DISCARDED, OFF_HIGH_WATER,
    OFF_OPEN_COUNT, OFF_STATE, STATE_DIRTY,
};
use crate::freelist::{FreeLists, Unlisted};
use crate::layout::block_span;
use crate::livemap::{self, MapGeom};
use crate::options::Options;
use crate::sync::Ordering;
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
/// As for [`Options::map_file`]: both files are mapped, so no other process (or code outside
/// this call) may modify or truncate either of them while `salvage` runs.
pub unsafe fn salvage(
    damaged: impl AsRef<Path>,
    fresh: impl AsRef<Path>,
) -> Result<SalvageReport, Error> {
    let fresh = fresh.as_ref();
    let src = Source::open(damaged.as_ref())?;
    let plan = src.plan();
    let f = OpenedFile::open(fresh, false, false, true, 0)?;
    match write_fresh(&src, &plan, f, fresh) {
        Ok(r) => Ok(r),
        Err(e) => {
            // The file was created by this call (`create_new`): nothing of the user's is lost.
            let _ = std::fs::remove_file(fresh);
            Err(e)
        }
    }
}

/// The damaged file, mapped read-only, with the header facts salvage trusts.
struct Source {
    mem: Backing,
    raw: RawHeader,
    g: Geometry,
    capacity: u64,
    maps: MapGeom,
    /// Where the walk ends.
    limit: u64,
    meta: Option<Meta>,
    header_clean: bool,
    header_repaired: Vec<&'static str>,
}

impl Source {
    fn open(path: &Path) -> Result<Source, Error> {
        let f = OpenedFile::open(path, true, false, false, 0)?;
        let file_len = f.len()?;
        let mut buf = vec![0u8; HEADER_SIZE as usize];
        let n = f.read_prefix(&mut buf)?;
        // Bytes past a short file read as zero: validation then reports the magic it found.
        let raw = RawHeader::parse(&buf);
        if (n as u64) < HEADER_SIZE && raw.magic == format::MAGIC {
            return Err(Error::Truncated {
                expected: HEADER_SIZE,
                found: file_len,
            });
        }
        let newest = |capacity: Option<u64>| {
            (0..2u64)
                .filter_map(|slot| {
                    let mut w = [0u64; 8];
                    w.copy_from_slice(&raw.meta[slot as usize][..8]);
                    Meta::decode(&w, slot)
                })
                .filter(|m| capacity.is_none_or(|c| m.capacity == c))
                .max_by_key(|m| m.epoch)
        };
        // Validate as an open does; a failure in a mutable word (capacity, bump offset, state) is
        // patched from the newest meta slot and the header validated again, so only the
        // unchanging fields (which the header checksum covers) can refuse the file.
        let reserved = crate::arena::read_reserved(&f, &raw, file_len)?;
        let mut patched = raw;
        let mut repaired = Vec::new();
        let v = loop {
            match patched.validate(file_len, &reserved) {
                Ok(v) => {
                    // A capacity that validates but that no valid meta slot names (a growth
                    // names the new capacity in a slot before the header) is a damaged word.
                    let named = newest(Some(v.capacity)).is_some() || newest(None).is_none();
                    if named || repaired.contains(&"capacity") {
                        break v;
                    }
                    patched.capacity = newest(None).map_or(v.capacity, |m| m.capacity);
                    repaired.push("capacity");
                }
                Err(
                    e @ (Error::Size {
                        field: "capacity", ..
                    }
                    | Error::Truncated { .. }),
                ) => match newest(None)
                    .filter(|m| m.capacity != patched.capacity && !repaired.contains(&"capacity"))
                {
                    Some(m) => {
                        patched.capacity = m.capacity;
                        repaired.push("capacity");
                    }
                    None => return Err(e),
                },
                Err(Error::Bump { .. }) if !repaired.contains(&"bump") => {
                    patched.bump = newest(Some(patched.capacity))
                        .map_or(patched.data_start, |m| m.bump)
                        .clamp(patched.data_start, format::heap_end(patched.capacity))
                        / 8
                        * 8;
                    repaired.push("bump");
                }
                Err(Error::State { .. }) if !repaired.contains(&"state") => {
                    patched.state = STATE_DIRTY;
                    repaired.push("state");
                }
                Err(e) => return Err(e),
            }
        };
        let capacity = v.capacity;
        let g = v.geometry;
        let maps = MapGeom::for_capacity(capacity);
        let meta = newest(Some(capacity));
        let heap_end = maps.heap_end();
        let header_bump = (!repaired.contains(&"bump")).then_some(patched.bump);
        let meta_bump = meta.map(|m| m.bump.clamp(g.data_start, heap_end) / 8 * 8);
        let limit = match (header_bump, meta_bump) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => heap_end,
        };
        let mem = Backing::file(f, capacity)?;
        Ok(Source {
            mem,
            raw: patched,
            g,
            capacity,
            maps,
            limit,
            meta,
            header_clean: v.clean && repaired.is_empty(),
            header_repaired: repaired,
        })
    }

    fn word(&self, off: u64) -> u64 {
        self.mem.word(off).load(Ordering::Relaxed)
    }

    /// The next chunk boundary after `p`, or the end of the walk.
    fn boundary(&self, p: u64) -> u64 {
        let chunk = self.g.chunk();
        (self.g.data_start + ((p - self.g.data_start) / chunk + 1) * chunk).min(self.limit)
    }

    /// Decides what to save: one walk of the heap against the start map and the flush map.
    fn plan(&self) -> Plan {
        let d = self.g.data_start;
        let starts = livemap::starts_in(&self.mem, &self.maps, d, self.maps.heap_end());
        // The flush's bump offset ends the extent of its last start, as in recovery.
        let flush_bump = self
            .meta
            .map_or(d, |m| m.bump.clamp(d, self.maps.heap_end()));
        let flushed = self.meta.map_or_else(Vec::new, |m| {
            livemap::flushed_starts_in(&self.mem, &self.maps, m.map, d, flush_bump)
        });
        let map = Starts(&starts);
        let mut plan = Plan::default();
        let mut seen_gens = Vec::new();
        let mut p = d;
        let mut reached = true;
        while p < self.limit {
            let w = self.word(p);
            let Some(span) = self.step(&map, p, w) else {
                let resume = map.first_in(p + 8, self.limit).unwrap_or(self.limit);
                plan.lost.push(Lost {
                    offset: p,
                    len: resume - p,
                    reason: LostReason::Unwalkable { word: w },
                });
                p = resume;
                reached = false;
                continue;
            };
            match block::decode(w) {
                HeaderWord::Live {
                    len,
                    generation,
                    state,
                    ..
                } => {
                    seen_gens.push(generation);
                    // A LARGE block's exact length is in its tail word (its span's last word).
                    let (len, tail) = if len >= block::LARGE_MIN {
                        let t = block::tail_word(&self.mem, p, len);
                        (block::large_len(t, generation, len), t)
                    } else {
                        (Some(len), 0)
                    };
                    if matches!(state, LiveState::Reserved | LiveState::Dying) {
                        plan.lost.push(Lost {
                            offset: p,
                            len: span,
                            reason: LostReason::NotLive { word: w },
                        });
                    } else if let Some(len) = len {
                        let by_flush_map = flushed.binary_search(&p).is_ok_and(|i| {
                            let extent = flushed.get(i + 1).copied().unwrap_or(flush_bump);
                            p + span <= extent
                        });
                        if reached || by_flush_map {
                            plan.saved.push(SavedBlock {
                                handle: Handle::new(p + 8, generation),
                                len,
                                foreign: block::is_foreign(w),
                                pending: state == LiveState::Pending,
                                by_walk: reached,
                                by_flush_map,
                            });
                        } else {
                            plan.lost.push(Lost {
                                offset: p,
                                len: span,
                                reason: LostReason::OneRecord { word: w },
                            });
                        }
                    } else {
                        plan.lost.push(Lost {
                            offset: p,
                            len: span,
                            reason: LostReason::BadTail { word: tail },
                        });
                    }
                }
                HeaderWord::Free { generation, .. } => seen_gens.push(generation),
                _ => {}
            }
            p += span;
            reached = true;
        }
        for &s in starts.iter().filter(|&&s| s >= self.limit) {
            let w = self.word(s);
            if let HeaderWord::Live {
                len, generation, ..
            } = block::decode(w)
            {
                seen_gens.push(generation);
                let end = block_span(len).map_or(s + 8, |span| s.saturating_add(span));
                plan.lost.push(Lost {
                    offset: s,
                    len: end.min(self.maps.heap_end()) - s,
                    reason: LostReason::BeyondBump { word: w },
                });
            }
        }
        plan.lost.sort_by_key(|l| l.offset);
        plan.gen_seed = self.next_seed(&seen_gens);
        plan
    }

    /// The span of the entry at `p` (header word `w`) when stepping over it agrees with the start
    /// map; `None` when it does not.
    fn step(&self, map: &Starts<'_>, p: u64, w: u64) -> Option<u64> {
        let here = map.has(p);
        let span = match block::decode(w) {
            HeaderWord::Gap => {
                // A never-used chunk tail: no entry starts in it.
                let next = self.boundary(p);
                return (map.first_in(p, next).is_none()).then_some(next - p);
            }
            HeaderWord::Live {
                len, generation, ..
            } if here && len > 0 && generation != 0 => block_span(len)?,
            HeaderWord::Free { .. } if here && p + 16 <= self.limit => {
                let span = self.word(p + 8);
                if span < 16 || span % 8 != 0 {
                    return None;
                }
                span
            }
            HeaderWord::Pad { span } if here && span > 0 && span % 8 == 0 => span,
            _ => return None,
        };
        let end = p.checked_add(span).filter(|&e| e <= self.limit)?;
        if map.first_in(p + 8, end).is_some() {
            return None;
        }
        // The next step can begin where this one ends: a recorded start, a never-used chunk tail,
        // or the end of the walk.
        let lands = end == self.limit
            || map.has(end)
            || (self.word(end) == 0 && map.first_in(end, self.boundary(end)).is_none());
        lands.then_some(span)
    }

    /// A generation counter at or past the damaged file's (header and meta slots) and past every
    /// generation in `seen` (the counter's value `s` stands for generation
    /// `s mod (2^32 - 1) + 1`, so the counter is moved past each within its current cycle).
    fn next_seed(&self, seen: &[u32]) -> u64 {
        let mut seed = [Some(self.raw.gen_seed), self.meta.map(|m| m.gen_seed)]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        for &g in seen.iter().filter(|&&g| g != 0) {
            let at = seed / GEN_MASK * GEN_MASK + u64::from(g) - 1;
            if at >= seed {
                seed = at.saturating_add(1);
            }
        }
        seed
    }
}

/// The start map's starts, sorted.
struct Starts<'a>(&'a [u64]);

impl Starts<'_> {
    fn has(&self, off: u64) -> bool {
        self.0.binary_search(&off).is_ok()
    }

    /// The first start in `from..to`.
    fn first_in(&self, from: u64, to: u64) -> Option<u64> {
        let i = self.0.partition_point(|&s| s < from);
        self.0.get(i).copied().filter(|&s| s < to)
    }
}

/// What to copy.
#[derive(Debug, Default)]
struct Plan {
    saved: Vec<SavedBlock>,
    lost: Vec<Lost>,
    gen_seed: u64,
}

/// Writes the fresh file, opens it through recovery, checks it and closes it clean.
fn write_fresh(
    src: &Source,
    plan: &Plan,
    f: OpenedFile,
    path: &Path,
) -> Result<SalvageReport, Error> {
    let g = src.g;
    let capacity = src.capacity;
    let maps = src.maps;
    let d = g.data_start;
    let chunk = g.chunk();
    let last_end = plan
        .saved
        .last()
        .map_or(d, |s| s.handle.offset() - 8 + span_of(s));
    let bump = (d + (last_end - d).div_ceil(chunk) * chunk).min(maps.heap_end());
    let mut raw = RawHeader::new(&g, capacity);
    raw.roots = src.raw.roots;
    raw.gen_seed = plan.gen_seed;
    raw.state = STATE_DIRTY;
    raw.open_count = 1;
    raw.bump = bump;
    raw.high_water = bump;
    f.format(capacity, false, bytemuck::bytes_of(&raw))?;
    let b = Backing::file(f, capacity)?;
    let reserved = u64::from(g.reserved_len);
    // SAFETY: the damaged file's map is private and nothing writes it.
    let from = unsafe { src.mem.slice(HEADER_SIZE, reserved) };
    // SAFETY: the fresh file was created by this call and is mapped only here.
    unsafe { b.write(HEADER_SIZE, from) };
    let lists = FreeLists::load(&b, d, Some(maps));
    let mut discarded = 0;
    let mut at = d;
    for s in &plan.saved {
        let off = s.handle.offset() - 8;
        let span = span_of(s);
        if off > at {
            discarded += lists.give_back(&b, &g, at, off - at, Unlisted::Segment);
        }
        // SAFETY: the damaged map is private and unwritten.
        let data = unsafe { src.mem.slice(off + 8, span - 8) };
        // SAFETY: as above, and the fresh map is this call's alone.
        unsafe { b.write(off + 8, data) };
        let w = src.word(off);
        let word = if block::is_foreign(w) {
            block::live_foreign(s.len, s.handle.generation(), LiveState::Published, 0)
        } else {
            block::live(s.len, s.handle.generation(), LiveState::Published, 0)
        };
        b.word(off).store(word, Ordering::Relaxed);
        livemap::owner_toggle(&b, &maps, off);
        at = off + span;
    }
    if bump > at {
        discarded += lists.give_back(&b, &g, at, bump - at, Unlisted::Segment);
    }
    b.word(OFF_DISCARDED).store(discarded, Ordering::Relaxed);
    b.word(OFF_HIGH_WATER).store(bump, Ordering::Relaxed);
    b.word(OFF_BUMP).store(bump, Ordering::Relaxed);
    debug_assert_eq!(b.word(OFF_STATE).load(Ordering::Relaxed), STATE_DIRTY);
    debug_assert_eq!(b.word(OFF_OPEN_COUNT).load(Ordering::Relaxed), 1);
    livemap::flush_layout(&b, &maps, d, capacity)?;
    drop(b);

    // The ordinary recovering open checks what was written: nothing dropped, every block live.
    let o = Options::new().magic_version(g.magic_version);
    let mut arena = Arena::open_file(&o, path)?;
    let recovered = arena
        .recovery_report()
        .cloned()
        .ok_or(Error::Corrupt { offset: 0, word: 0 })?;
    let verified = arena.verify()?;
    let expected = plan.saved.len() as u64;
    for r in [&recovered, &verified] {
        if !r.is_clean() || r.live_blocks != expected {
            let offset = r
                .problems
                .first()
                .map(|p| p.clone().into_error())
                .and_then(|e| match e {
                    Error::Corrupt { offset, .. } => Some(offset),
                    _ => None,
                })
                .or(r.dropped.first().map(|x| x.offset))
                .unwrap_or(0);
            return Err(Error::Corrupt {
                offset,
                word: r.live_blocks,
            });
        }
    }
    arena.close()?;
    Ok(SalvageReport {
        header_clean: src.header_clean,
        header_repaired: src.header_repaired.clone(),
        capacity,
        bump: src.limit,
        meta_epoch: src.meta.map(|m| m.epoch),
        saved_bytes: plan.saved.iter().map(|s| s.len).sum(),
        saved: plan.saved.clone(),
        lost: plan.lost.clone(),
        roots_copied: true,
        reserved_copied: reserved,
        gen_seed: plan.gen_seed,
    })
}

fn span_of(s: &SavedBlock) -> u64 {
    block_span(s.len).expect("a saved block's span was checked by the walk")
}
