//! Create, open and validate: from options or a file to an open [`Arena`].

use super::build::{capacity_error, requested_capacity};
use super::{Arena, Inner};
use crate::backing::{Backing, BackingKind, OpenedFile};
use crate::block::NARROW_UNIT_SHIFT;
use crate::cells::CellRegistry;
use crate::error::Error;
use crate::format::Freelist;
use crate::format::{
    self, Geometry, RawHeader, DATA_ALIGN, HEADER_SIZE, MAX_CAPACITY, MAX_GROWABLE_CAPACITY,
    STATE_DIRTY,
};
use crate::freelist::FreeLists;
use crate::heap::MapGeom;
use crate::layout::align_up;
use crate::options::Options;
use crate::recovery::{self, Problem, Report};
use crate::sync::{Arc, AtomicU64, Mutex, Ordering, StdAtomicU64, StdOrdering};
use std::path::Path;
/// The next arena uid (process-wide; never reused).
static NEXT_UID: StdAtomicU64 = StdAtomicU64::new(1);

fn new_uid() -> u64 {
    NEXT_UID.fetch_add(1, StdOrdering::Relaxed)
}

/// A random arena id (not cryptographic): hashed time, process id, address and a counter.
pub(super) fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(new_uid());
    // (Miri runs isolated from the clock and the process table; `RandomState`'s keys still
    // differ per run.)
    #[cfg(not(miri))]
    h.write_u32(std::process::id());
    #[cfg(not(miri))]
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish() | 1
}

impl Arena {
    pub(super) fn create_in_memory(o: &Options, anon: bool) -> Result<Arena, Error> {
        if o.read_only {
            return Err(Error::ReadOnly);
        }
        let capacity = requested_capacity(o)?;
        let g = Geometry::from_options(o, capacity)?;
        let b = match (anon, g.growable()) {
            (true, false) => Backing::anon(capacity)?,
            (false, false) => Backing::heap(capacity)?,
            (true, true) => Backing::anon_growable(capacity, g.max_capacity)?,
            (false, true) => Backing::heap_growable(capacity, g.max_capacity)?,
        };
        let mut raw = RawHeader::new(&g, capacity);
        raw.state = STATE_DIRTY;
        raw.open_count = 1;
        // SAFETY: the backing was just created; nothing else can see it.
        unsafe { b.write(0, bytemuck::bytes_of(&raw)) };
        Ok(Arena::from_parts(b, g, capacity, o, true, false, None))
    }

    /// A heap arena on a simulated disk, for power-loss tests.
    #[cfg(feature = "testkit")]
    pub(super) fn create_simulated(
        o: &Options,
    ) -> Result<(Arena, Arc<crate::backing::SimDisk>), Error> {
        let capacity = requested_capacity(o)?;
        let g = Geometry::from_options(o, capacity)?;
        let (b, disk) = if g.growable() {
            Backing::sim_growable(capacity, g.max_capacity)?
        } else {
            Backing::sim(capacity)?
        };
        let mut raw = RawHeader::new(&g, capacity);
        raw.state = STATE_DIRTY;
        raw.open_count = 1;
        // SAFETY: the backing was just created; nothing else can see it.
        unsafe { b.write(0, bytemuck::bytes_of(&raw)) };
        // As a file create would: the header is durable before the arena is used.
        b.flush(0, HEADER_SIZE)?;
        Ok((
            Arena::from_parts(b, g, capacity, o, true, false, None),
            disk,
        ))
    }

    pub(super) fn from_parts(
        b: Backing,
        g: Geometry,
        capacity: u64,
        o: &Options,
        was_clean: bool,
        recovery_pending: bool,
        recovery: Option<Report>,
    ) -> Arena {
        let maps = MapGeom::of(&g, capacity);
        let lists = FreeLists::load(&b, g.data_start, Some(maps));
        crate::fork::watch();
        let absorb_fillers = o.coalesce
            && g.freelist != Freelist::None
            && !b.read_only()
            && b.kind() != BackingKind::File;
        Arena {
            lane: 0,
            inner: Arc::new(Inner {
                read_only: b.read_only(),
                write_gate: b.read_only() || b.kind() == BackingKind::File,
                alloc_gate: b.read_only()
                    || b.kind() == BackingKind::File
                    || g.unit_shift() != NARROW_UNIT_SHIFT,
                mem: b,
                geom: g,
                capacity: AtomicU64::new(capacity),
                maps,
                heap_end: AtomicU64::new(maps.heap_end()),
                growing: AtomicU64::new(0),
                preallocate: o.preallocate,
                flush_lock: Mutex::new(()),
                uid: new_uid(),
                fork_epoch: crate::fork::epoch(),
                zero_on_free: o.zero_on_free,
                unit_shift: g.unit_shift(),
                // A wide arena's blocks all take the aligned path, which no cache serves: a
                // cache there would only hold freed blocks back from the lists.
                thread_cache: o.thread_cache
                    && g.freelist != Freelist::None
                    && g.unit_shift() == NARROW_UNIT_SHIFT,
                lists,
                cells: CellRegistry::default(),
                coalesce_on: o.coalesce && g.freelist != Freelist::None,
                absorb_fillers,
                coalescing: AtomicU64::new(0),
                passes: AtomicU64::new(0),
                activity_at_pass: AtomicU64::new(0),
                freed_at_pass: AtomicU64::new(0),
                pass_cost: AtomicU64::new(0),
                was_clean,
                recovery_pending,
                recovery,
                header_damage: Vec::new(),
                hook: Default::default(),
            }),
        }
    }

    pub(crate) fn open_file(o: &Options, path: &Path) -> Result<Arena, Error> {
        // Aligned, and far enough from the end of the file's offset range that the largest arena
        // after it still has addresses (every file operation adds the offset).
        if o.offset % DATA_ALIGN != 0 || o.offset.checked_add(MAX_GROWABLE_CAPACITY).is_none() {
            return Err(Error::Offset {
                offset: o.offset,
                align: DATA_ALIGN,
            });
        }
        if o.offset != 0 && o.map.remove_on_drop {
            // It would remove the whole file, not just the arena inside it.
            return Err(Error::Unsupported {
                option: "remove_on_drop",
                backing: BackingKind::File,
            });
        }
        let f = if o.map_copy {
            // A copy reads the file and writes only its private map: an existing arena, locked
            // shared.
            OpenedFile::open(path, true, false, false, o.offset)?
        } else {
            OpenedFile::open(path, o.read_only, o.create, o.create_new, o.offset)?
        };
        if f.fresh {
            return Arena::create_file(o, f);
        }
        let file_len = f.len()?;
        let mut buf = vec![0u8; HEADER_SIZE as usize];
        let n = f.read_prefix(&mut buf)?;
        if n < 8 || buf[..8] != format::MAGIC {
            let mut found = [0u8; 8];
            found[..n.min(8)].copy_from_slice(&buf[..n.min(8)]);
            return Err(Error::Magic { found });
        }
        if (n as u64) < HEADER_SIZE {
            return Err(Error::Truncated {
                expected: HEADER_SIZE,
                found: file_len,
            });
        }
        let raw = RawHeader::parse(&buf);
        let v = raw.validate(file_len, &read_reserved(&f, &raw, file_len)?)?;
        let g = v.geometry;
        if g.magic_version != o.magic_version {
            return Err(Error::MagicVersion {
                expected: o.magic_version,
                found: g.magic_version,
            });
        }
        if let Some(k) = o.freelist {
            if k != g.freelist {
                return Err(Error::FreelistKind {
                    expected: k as u8,
                    found: g.freelist as u8,
                });
            }
        }
        if let Some(r) = o.reserved {
            if r != g.reserved_len {
                return Err(Error::Reserved {
                    expected: r,
                    found: g.reserved_len,
                });
            }
        }
        if let Some(m) = o.max_capacity {
            let asked = align_up(m, DATA_ALIGN).unwrap_or(m);
            if asked != g.max_capacity {
                return Err(Error::MaxCapacityMismatch {
                    expected: asked,
                    found: g.max_capacity,
                });
            }
        }
        // A dirty growable arena opens at the larger of the header's capacity and its newest meta
        // slot's: a power cut in a growth step's flush can leave the slot's without the header's
        // (docs/metadata.md, 12.6, gap 3). The file holds both (a step syncs the length first).
        let mut v = v;
        if g.growable() && !v.clean {
            if let Some(m) = raw.newest_meta() {
                if m.capacity > v.capacity && m.capacity <= g.max_capacity {
                    if m.capacity > file_len {
                        return Err(Error::Truncated {
                            expected: m.capacity,
                            found: file_len,
                        });
                    }
                    v.capacity = m.capacity;
                }
            }
        }
        let mut capacity = v.capacity;
        if let Some(want) = o.capacity {
            let want = align_up(want, DATA_ALIGN).ok_or_else(|| capacity_error(o, want))?;
            // A growable arena's `capacity` is where it starts: one that grew past it opens at
            // its grown capacity, so the options it was created with keep opening it.
            if want < raw.bump && !g.growable() {
                return Err(Error::Shrink {
                    requested: want,
                    allocated: raw.bump,
                });
            }
            if want > capacity {
                if o.read_only || o.map_copy {
                    return Err(Error::ReadOnly);
                }
                if g.growable() && want > g.max_capacity {
                    return Err(Error::MaxCapacity {
                        requested: g.max_capacity,
                        min: want,
                        max: MAX_GROWABLE_CAPACITY,
                    });
                }
                if !g.growable() && want > MAX_CAPACITY {
                    return Err(capacity_error(o, o.capacity.unwrap_or(want)));
                }
                capacity = want;
            }
        }
        if capacity > v.capacity && !g.growable() {
            // The maps move to the end of the grown arena and must not overlap the old ones (which
            // a cut during the growth still needs): a smaller growth grows to the first capacity
            // that leaves them in place (never less than asked; capacities are "at least").
            while format::heap_end(capacity, 0) < v.capacity {
                capacity += DATA_ALIGN;
            }
            if capacity > MAX_CAPACITY {
                return Err(capacity_error(o, capacity));
            }
        }
        // Everything above only read. A dirty arena is planned (still read-only) before anything
        // is written, so a heap that cannot be recovered leaves the file untouched.
        // A CLEAN state whose checksum fails is damage, not a crash: the header's words are not
        // trusted (recovery rebuilds the layout), and the open reports it.
        let damage: Vec<Problem> = v
            .damaged
            .map(|d| Problem::HeaderChecksum {
                expected: d.expected,
                found: d.found,
            })
            .into_iter()
            .collect();
        // What else the header shows, for the recovery report (a dirty file's meta slot may be
        // one a power cut tore in a flush: not damage).
        let faults: Vec<Problem> = raw
            .faults()
            .into_iter()
            .filter(|f| v.clean || !matches!(f, format::HeaderFault::MetaSlot { .. }))
            .map(Problem::of_header)
            .collect();
        let arena = if !v.clean && !o.read_only {
            let probe = Backing::file(f.dup_read_only()?, v.capacity)?;
            let plan = recovery::cut::plan(&probe, &g, v.capacity)?;
            drop(probe);
            Arena::open_writable(o, f, g, v.capacity, capacity, Some(plan))?
        } else if o.read_only {
            let b = Backing::file(f, v.capacity)?;
            Arena::from_parts(b, g, v.capacity, o, v.clean, !v.clean, None)
        } else {
            Arena::open_writable(o, f, g, v.capacity, capacity, None)?
        };
        Ok(arena.with_header_damage(damage, faults))
    }

    /// Records the header damage the open found (`damage`: a failed seal, kept for every
    /// `verify()`; `faults`: what the header's own checks found, which `verify()` checks again)
    /// in the recovery report, and settles root stores a crash left in flight.
    ///
    /// A recovery also repairs the words parena keeps zero: they hold nothing, so the report
    /// lists each one it found set and the arena verifies clean from then on. A root whose value
    /// fails its check word is reported and kept (only its owner knows the right value):
    /// `verify()` lists it until `set_root` stores the slot again.
    fn with_header_damage(mut self, damage: Vec<Problem>, faults: Vec<Problem>) -> Arena {
        let inner = Arc::get_mut(&mut self.inner).expect("a fresh arena has one clone");
        if !inner.read_only {
            inner.settle_roots();
        }
        if inner.recovery.is_some() && !inner.read_only {
            for f in &faults {
                if let Problem::HeaderSpare { offset, .. } = *f {
                    inner.mem.word(offset).store(0, Ordering::Relaxed);
                }
            }
        }
        if let Some(r) = inner.recovery.as_mut() {
            r.problems
                .splice(0..0, damage.iter().chain(&faults).cloned());
        }
        inner.header_damage = damage;
        self
    }

    pub(super) fn create_file(o: &Options, f: OpenedFile) -> Result<Arena, Error> {
        let checked = requested_capacity(o).and_then(|c| Ok((c, Geometry::from_options(o, c)?)));
        let (capacity, g) = match checked {
            Ok(x) => x,
            Err(e) => {
                // Options that can make no arena: a file this open created goes again (with the
                // lock still held), so no empty file is left for a later open to format.
                f.remove_if_created();
                return Err(e);
            }
        };
        // Written DIRTY and open once, as the open that follows would mark it: one durable write
        // of the header instead of a clean header, then the mark.
        let mut raw = RawHeader::new(&g, capacity);
        raw.state = STATE_DIRTY;
        raw.open_count = 1;
        raw.file_id = f.identity()?;
        let before = f.file.metadata()?.len();
        if let Err(e) = f.format(capacity, o.preallocate, bytemuck::bytes_of(&raw)) {
            // The file held no arena (it was created, or ended at or before the arena's offset):
            // give it back its old length, or remove it if this open created it. Bytes before the
            // offset were never written.
            let _ = f.file.set_len(before);
            f.remove_if_created();
            return Err(e);
        }
        let b = if g.growable() {
            Backing::file_growable(f, capacity, g.max_capacity)?
        } else {
            Backing::file(f, capacity)?
        };
        Ok(Arena::from_parts(b, g, capacity, o, true, false, None))
    }
}

/// The reserved area of the arena file `f` (`file_len` bytes) whose header is `raw`, for the
/// seal's check; empty when the file is too short to hold it (validation then refuses the file).
pub(crate) fn read_reserved(
    f: &OpenedFile,
    raw: &RawHeader,
    file_len: u64,
) -> Result<Vec<u8>, Error> {
    let end = HEADER_SIZE + u64::from(raw.reserved_len);
    if raw.reserved_len == 0 || end > file_len {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; end as usize];
    let n = f.read_prefix(&mut buf)?;
    buf.truncate(n);
    Ok(buf.split_off(HEADER_SIZE as usize))
}
