//! [`Arena`]: the public API over the unsafe core.
//!
//! The core (`Inner`) works in byte offsets from the arena's base; every pointer comes from
//! [`Backing`]. The public layer checks every argument and hands out only what the block-state
//! protocol (see `block`) makes exclusive ([`BlockMut`]) or immutable (`read` pins the block).
//!
//! ## Orderings of the block-state protocol
//!
//! | op | ordering | pairs with |
//! | --- | --- | --- |
//! | alloc: store PENDING header | Relaxed | the handle reaches other threads only through the user's own synchronisation |
//! | `BlockMut` drop: store PUBLISHED | Release | Acquire CAS in `free` / `read`: the writes made through the `BlockMut` happen before any read or reuse |
//! | free: CAS to DYING | AcqRel | Release of the publish and of readers leaving; Acquire for the reuse that follows |
//! | read: pin CAS | Acquire | the publish (see above) |
//! | read: unpin CAS | Release | the Acquire CAS in `free` (or the last reader's own release): the copy happens before reuse |
//! | roots | Acquire / Release | user data published through a root |

mod access;
mod alloc;
mod block_mut;
mod build;
mod cache;
mod check;
mod coalesce;
mod grow;
mod lifecycle;
mod meta;
mod open;
#[cfg(not(parena_loom))]
mod raw;
mod release;
mod resize;
mod take;
mod writable;

pub use crate::cells::LANES;
pub use block_mut::BlockMut;
#[cfg(all(feature = "async", not(parena_loom)))]
pub(crate) use build::capacity_error;
pub(crate) use check::Mode;
pub use lifecycle::LiveBlock;
pub use meta::{HeaderInfo, Stats};
pub(crate) use open::read_reserved;

use crate::backing::{Backing, BackingKind};
use crate::block::Handle;
use crate::cells::CellRegistry;
use crate::error::Error;
use crate::format::Freelist;
use crate::format::{Geometry, OFF_BUMP};
use crate::freelist::FreeLists;
use crate::heap::{Heap, MapGeom, StartMap};
use crate::recovery::Report;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};
use std::path::Path;
/// A persistent, lock-free arena: one region of memory (heap buffer, anonymous map or file map)
/// that many threads allocate from at once.
///
/// Cloning is cheap and shares the arena; the arena closes (final flush, clean mark, unlock) when
/// the last clone is dropped.
///
/// # File maps
/// A file-backed arena maps the file into memory. Its bytes are the file's bytes: if another
/// process, or code outside parena, modifies or truncates the file while it is mapped, the arena's
/// reads may see those changes (or fault), which no type can rule out; that is why
/// [`Options::map_file`](crate::Options::map_file) is `unsafe`. parena's own lock keeps other parena writers out.
///
/// ```
/// use parena::Options;
/// let arena = Options::new().capacity(1 << 20).heap()?;
/// let mut block = arena.alloc(5)?;
/// block.copy_from_slice(b"hello");
/// let h = block.handle();
/// drop(block);
/// let mut buf = [0u8; 5];
/// arena.read(h, 0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// arena.free(h)?;
/// assert!(arena.read(h, 0, &mut buf).is_err());
/// # Ok::<(), parena::Error>(())
/// ```
#[derive(Clone)]
pub struct Arena {
    pub(crate) inner: Arc<Inner>,
    /// The allocation lane this clone bumps from (`< LANES`); see [`Arena::with_lane`].
    pub(crate) lane: u8,
}

/// The core of an open arena, shared by its clones. Its fields are private to `arena`; the rest
/// of the crate goes through methods.
pub(crate) struct Inner {
    /// The memory: the one door to raw pointers and to the atomics in the mapped bytes.
    mem: Backing,
    /// The fixed geometry read from (or written to) the header.
    geom: Geometry,
    /// Total bytes. Always `> data_start`, a multiple of 4096. Fixed while open unless the
    /// arena is growable (`Geometry::max_capacity`); then it only grows, stored by a growth step
    /// (`arena/grow.rs`) before `heap_end`'s `Release`.
    capacity: AtomicU64,
    /// Where the start map and the flush maps lie. In a growable arena they never move, and its
    /// `heap_end()` is the end as of the open: the moving end is `heap_end` below.
    maps: MapGeom,
    /// End of the heap: every block, segment and chunk lies below it. `maps.base` in a fixed
    /// layout; the capacity in a growable one, stored (`Release`) by a growth step after the new
    /// range is usable and its map words are zero, and loaded (`Acquire`) by the chunk
    /// reservation and the bounds checks (docs/metadata.md, 12.2).
    heap_end: AtomicU64,
    /// While a growth step runs: the fork epoch of the process whose thread runs it; 0 when none
    /// (one step at a time, `arena/grow.rs`).
    growing: AtomicU64,
    /// A growth step reserves the file's new blocks (`Options::preallocate`); without it the
    /// chunk reservation reserves each chunk's (the heap layer's `sparse`; a no-op but for a file).
    preallocate: bool,
    /// Serialises the flush protocol (one flush map and meta slot written at a time).
    flush_lock: Mutex<()>,
    /// Process-unique id of this open arena (never reused), keys the per-thread cells.
    uid: u64,
    /// The fork epoch (`crate::fork`) of the process that opened the arena: another one in
    /// `fork::epoch()` means this is a child's copy of the arena (see `Inner::forked_file`).
    fork_epoch: u64,
    /// Opened read-only, or closed (the close protocol ran).
    read_only: bool,
    /// `read_only`, or a file map: every write asks [`Inner::writable`] (one test on the fast
    /// path, as `read_only` alone was).
    write_gate: bool,
    /// `write_gate`, or a wide arena (its blocks' data aligned to its offset unit): an
    /// allocation takes its gated path, which asks [`Inner::writable`] and raises the alignment
    /// to the unit. One test on the allocation fast path for both.
    alloc_gate: bool,
    /// Freed blocks are zeroed (`Options::zero_on_free`).
    zero_on_free: bool,
    /// The offset unit of the arena's handles as a shift (`Geometry::unit_shift`): 3 (8 bytes)
    /// unless the arena is wide, whose every block's data is aligned to the unit
    /// (docs/metadata.md, 12.3).
    unit_shift: u32,
    /// Per-thread caches of freed blocks are on (never with `Freelist::None`).
    thread_cache: bool,
    /// The shared free lists, one per size class.
    lists: FreeLists,
    /// Every chunk cell handed out for this arena.
    cells: CellRegistry,
    /// Coalescing passes can run (`Options::coalesce`, and a policy that lists free space): the
    /// only thing that merges an entry start away while the arena is shared (`CheckSlot`).
    coalesce_on: bool,
    /// A free absorbs the fillers behind its block, and a carve leaves a remainder below
    /// [`SLACK`] as a filler (memory arenas with passes on: docs/metadata.md, section 14).
    absorb_fillers: bool,
    /// While a thread runs a coalescing pass (`Inner::coalesce`; one pass at a time): the fork
    /// epoch of its process (`crate::fork`); 0 when none runs.
    coalescing: AtomicU64,
    /// Coalescing passes completed since open.
    passes: AtomicU64,
    /// The arena's activity (allocations and frees of all threads) when the last pass ended.
    activity_at_pass: AtomicU64,
    /// The bytes all threads had freed when the last pass ended (`Inner::merge_due`).
    freed_at_pass: AtomicU64,
    /// Segments the last pass detached: the next pass waits for that much activity.
    pass_cost: AtomicU64,
    /// The last writer closed the arena cleanly.
    was_clean: bool,
    /// Opened read-only while dirty: recovery runs at the next writable open.
    recovery_pending: bool,
    /// What recovery did at open, when it ran.
    recovery: Option<Report>,
    /// Damage the open found in the header (a CLEAN state over words that fail their checksum):
    /// reported by the recovery report and by every `verify()` of this open.
    header_damage: Vec<crate::recovery::Problem>,
    /// What a layer above the arena attached (`crate::hook`). Must stay declared after `mem`:
    /// fields drop in order, so it is dropped after the close protocol and after the file is
    /// unlocked.
    pub(crate) hook: crate::hook::HookSlot,
}

impl Arena {
    /// Whether the open trusted the header as a clean close left it: the state word said CLEAN and
    /// the header page and reserved area matched their checksum (always `true` for a new arena).
    /// `false` after a crash, and after damage (then the recovery report and `verify()` say so).
    /// [`HeaderInfo::clean`] is this same fact.
    pub fn was_clean(&self) -> bool {
        self.inner.was_clean
    }

    /// A read-only open of an arena that was not closed cleanly: recovery will run at the next
    /// writable open.
    pub fn recovery_pending(&self) -> bool {
        self.inner.recovery_pending
    }

    /// What recovery did at open, when it ran.
    pub fn recovery_report(&self) -> Option<&Report> {
        self.inner.recovery.as_ref()
    }

    /// The random id written at create; the same after every reopen.
    pub fn id(&self) -> u64 {
        self.inner.geom.arena_id
    }

    /// A clone of this arena whose allocations bump from lane `lane` (`0..LANES`).
    ///
    /// Every thread bumps small blocks out of a private chunk, one chunk per lane. A structure
    /// that allocates two kinds of block, such as skiplist nodes and their values, can give each
    /// kind a lane: the nodes a search walks then sit next to each other instead of being spread
    /// out by the values allocated between them, and a search touches fewer cache lines and pages.
    /// Lanes change where blocks go, nothing else: a block allocated through one clone is read
    /// and freed through any clone, and blocks a clone frees refill its own lane's per-thread cache.
    /// `Arena::clone` keeps the lane; a new arena starts in lane 0.
    ///
    /// # Panics
    /// If `lane >= LANES`.
    ///
    /// ```
    /// let arena = parena::Options::new().capacity(1 << 20).heap()?;
    /// let values = arena.with_lane(1);
    /// let a = arena.alloc(24)?.into_handle();
    /// let v = values.alloc_copy(b"a value")?;
    /// let b = arena.alloc(24)?.into_handle();
    /// // `a` and `b` are neighbours: the value went to lane 1's chunk.
    /// assert_eq!(b.offset() - a.offset(), 32);
    /// assert_eq!(arena.len_of(v)?, 7);
    /// arena.free(v)?; // through any clone
    /// # Ok::<(), parena::Error>(())
    /// ```
    pub fn with_lane(&self, lane: usize) -> Arena {
        assert!(lane < LANES, "lane {lane} out of 0..{LANES}");
        Arena {
            inner: self.inner.clone(),
            lane: lane as u8,
        }
    }

    /// The allocation lane of this clone; see [`Arena::with_lane`].
    #[inline]
    pub fn lane(&self) -> usize {
        usize::from(self.lane)
    }

    /// Whether two `Arena`s are clones of one open arena.
    pub fn same_arena(a: &Arena, b: &Arena) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }

    /// Which memory holds the arena.
    pub fn backing(&self) -> BackingKind {
        self.inner.mem.kind()
    }

    /// Total bytes, header included.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity()
    }

    /// Offset from the start of the arena of the first data byte of the block `h` names, in
    /// every arena: [`Handle::offset`] decodes only the handles of arenas of at most 32 GiB,
    /// while a growable arena whose maximum is above 32 GiB counts its offsets in a coarser unit
    /// ([`Arena::offset_unit`]). Decoding checks nothing: use it for the unchecked raw accessors
    /// ([`Arena::atomic_u64_at`], [`Arena::bytes_at`]) over blocks known to be live.
    ///
    /// ```
    /// let arena = parena::Options::new().capacity(1 << 20).heap()?;
    /// let b = arena.alloc(16)?;
    /// let at = b.offset();
    /// let h = b.into_handle();
    /// assert_eq!(arena.offset_of(h), at);
    /// assert_eq!(arena.offset_of(h), h.offset()); // a narrow arena: the two agree
    /// # Ok::<(), parena::Error>(())
    /// ```
    #[inline]
    pub fn offset_of(&self, h: Handle) -> u64 {
        self.inner.offset_of(h)
    }

    /// The unit a handle counts its offset in, which is also every block's least alignment: 8
    /// bytes, or in a growable arena whose maximum is above 32 GiB the smallest power of two
    /// that lets 32 bits reach the maximum (16 bytes up to 64 GiB, … 256 bytes up to 1 TiB).
    pub fn offset_unit(&self) -> u64 {
        self.inner.unit()
    }

    /// The freelist policy.
    pub fn freelist(&self) -> Freelist {
        self.inner.geom.freelist
    }

    /// Whether the arena was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// The file behind a file arena (canonical path).
    pub fn path(&self) -> Option<&Path> {
        self.inner.mem.path()
    }

    /// The core, when this is the only clone: what exclusive passes (`verify`, `compact`,
    /// `reserved_mut`, `write_image`, `close`) need so that no other thread touches the heap.
    pub(super) fn exclusive(&mut self) -> Result<&mut Inner, Error> {
        // A layer above may hold another way to reach the core (`open_async`'s registry keeps a
        // `Weak`, which makes `get_mut` fail and could mint a clone during the borrow): let it
        // give that up first when this is the only clone (see `crate::hook`).
        self.inner
            .hook
            .detach(|| Arc::strong_count(&self.inner) == 1);
        let inner = Arc::get_mut(&mut self.inner).ok_or(Error::Shared)?;
        if inner.forked_file() {
            return Err(Error::Forked);
        }
        // No other clone, so no read runs: the blocks freed while a read held them go back now,
        // before any pass looks at the heap.
        inner.release_all_deferred();
        Ok(inner)
    }
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("backing", &self.backing())
            .field("capacity", &self.inner.capacity())
            .field("bump", &self.inner.bump())
            .field("freelist", &self.inner.geom.freelist)
            .field("read_only", &self.inner.read_only)
            .finish()
    }
}

impl Inner {
    /// The arena's fixed geometry.
    #[cfg(all(feature = "async", not(parena_loom)))]
    #[inline]
    pub(crate) fn geom(&self) -> &Geometry {
        &self.geom
    }

    /// Process-unique id of this open arena.
    #[cfg(all(feature = "async", not(parena_loom)))]
    #[inline]
    pub(crate) fn uid(&self) -> u64 {
        self.uid
    }

    /// The data offset `h` names in this arena (its offset field in the arena's unit).
    #[inline]
    pub(crate) fn offset_of(&self, h: Handle) -> u64 {
        h.offset_in(self.unit_shift)
    }

    /// The handle of the block whose data starts at `data_offset` with `generation`.
    #[inline]
    pub(crate) fn handle(&self, data_offset: u64, generation: u32) -> Handle {
        Handle::in_unit(data_offset, generation, self.unit_shift)
    }

    /// The least alignment of a block's data: the offset unit (8 bytes unless the arena is wide).
    #[inline]
    pub(super) fn unit(&self) -> u64 {
        1 << self.unit_shift
    }

    /// The arena's start map and flush maps.
    #[inline]
    pub(super) fn start_map(&self) -> StartMap<'_> {
        StartMap::new(&self.mem, &self.maps)
    }

    /// This arena's heap: the verbs that write its entries and start map (`heap`).
    #[inline]
    pub(super) fn heap(&self) -> Heap<'_> {
        Heap {
            mem: &self.mem,
            geom: &self.geom,
            heap_end: &self.heap_end,
            maps: &self.maps,
            sparse: !self.preallocate,
        }
    }

    /// End of the heap now (`Acquire`: pairs with a growth step's `Release`, so the range below
    /// it is usable and its map words are zero for the caller).
    #[inline]
    pub(super) fn heap_end(&self) -> u64 {
        self.heap_end.load(Ordering::Acquire)
    }

    /// Total bytes now (see the field).
    #[inline]
    pub(super) fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Acquire)
    }

    #[inline]
    pub(super) fn bump(&self) -> u64 {
        self.mem.word(OFF_BUMP).load(Ordering::Relaxed)
    }

    pub(super) fn check_range(&self, offset: u64, len: u64) -> Result<(), Error> {
        let heap_end = self.heap_end();
        match offset.checked_add(len) {
            Some(e) if e <= heap_end => Ok(()),
            _ => Err(Error::OutOfBounds {
                offset,
                len,
                limit: heap_end,
                region: crate::error::Region::Heap,
            }),
        }
    }

    /// Whether this is a file arena that a process forked after the open holds: its shared map,
    /// its file lock and everything in flight in it belong to the process that opened it, so
    /// this copy refuses to change it ([`Error::Forked`]) and its drop leaves the file alone.
    /// An anonymous or heap arena is copied by the fork and stays the child's to use.
    #[inline]
    pub(super) fn forked_file(&self) -> bool {
        self.mem.kind() == BackingKind::File
            && !self.read_only
            && self.fork_epoch != crate::fork::epoch()
    }

    /// `Ok` when this process may change the arena: [`Error::ReadOnly`] for a read-only or
    /// closed arena, [`Error::Forked`] for a file arena opened by an ancestor process.
    #[inline]
    pub(super) fn writable(&self) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        if self.forked_file() {
            return Err(Error::Forked);
        }
        Ok(())
    }

    /// A new generation for a header at a position with no history we can trust.
    pub(super) fn fresh_gen(&self) -> u32 {
        crate::block::fresh_gen(&self.mem)
    }

    pub(super) fn add_discarded(&self, n: u64) {
        crate::heap::add_discarded(&self.mem, n);
    }
}
