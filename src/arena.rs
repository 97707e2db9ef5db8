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

use crate::backing::{Backing, BackingKind, OpenedFile};
use crate::block::{self, Handle, LiveState, Word, MAX_BLOCK_LEN};
use crate::bump::audit_op;
pub use crate::bump::LANES;
use crate::bump::{
    bump_counter, cache_head, cache_parts, for_each_thread_cell, in_step, with_cell, ChunkCell,
    Registry, Step, CACHE_DEPTH,
};
use crate::error::Error;
use crate::format::{
    self, Geometry, RawHeader, DATA_ALIGN, HEADER_SIZE, MAX_CHUNK_SHIFT, MIN_CHUNK_SHIFT, OFF_BUMP,
    OFF_CAPACITY, OFF_DISCARDED, OFF_HIGH_WATER, OFF_OPEN_COUNT, OFF_ROOTS, OFF_STATE,
    OFF_STATE_CHECKSUM, ROOT_SLOTS, STATE_CLEAN, STATE_DIRTY,
};
use crate::freelist::{FreeLists, Optimistic, Pessimistic};
use crate::layout::{align_up, block_span, MAX_ALIGN, WORD};
use crate::options::{Freelist, Options, DEFAULT_CAPACITY};
use crate::recovery::{self, Report};
use crate::sync::{fence, spin_hint, yield_now, Arc, AtomicBool, AtomicU64, Ordering};
use std::alloc::Layout;
use std::ops::{Deref, DerefMut};
use std::path::Path;

/// How many times `read` re-checks a block whose reader count is full before it answers `Busy`.
const SATURATED_ROUNDS: u32 = 1 << 16;

/// How many times an allocation that found the arena exhausted waits for or runs a coalescing
/// pass and tries the free lists again before it answers `Full`.
const COALESCE_ROUNDS: u32 = 3;

/// Largest span a per-thread cache keeps (its exact size classes).
const CACHE_MAX_SPAN: u64 = 512;

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
/// [`Options::map_file`] is `unsafe`. parena's own lock keeps other parena writers out.
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

pub(crate) struct Inner {
    pub(crate) b: Backing,
    pub(crate) g: Geometry,
    /// Total bytes; fixed while open. Always `> data_start`, a multiple of 4096.
    pub(crate) capacity: u64,
    /// Process-unique id of this open arena (never reused), keys the per-thread cells.
    pub(crate) uid: u64,
    pub(crate) read_only: bool,
    zero_on_free: bool,
    /// Per-thread caches of freed blocks are on (never with `Freelist::None`).
    thread_cache: bool,
    pub(crate) lists: FreeLists,
    pub(crate) cells: Registry,
    /// Coalescing passes are on (`Options::coalesce`).
    coalesce_on: bool,
    /// Set while a thread runs a coalescing pass (`Inner::coalesce`); one pass at a time.
    coalescing: AtomicBool,
    /// Coalescing passes completed since open.
    passes: AtomicU64,
    /// The arena's activity (allocations and frees of all threads) when the last pass ended.
    activity_at_pass: AtomicU64,
    /// Segments the last pass detached: the next pass waits for that much activity.
    pass_cost: AtomicU64,
    was_clean: bool,
    recovery_pending: bool,
    recovery: Option<Report>,
    /// Async registry entry and flush epochs. Must stay declared after `b`: fields drop in order,
    /// so it is dropped after the close protocol and after the file is unlocked; see `aio`.
    #[cfg(all(feature = "async", not(parena_loom)))]
    pub(crate) aio: crate::aio::AioState,
}

/// Counters and sizes of an arena at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Total bytes, header included.
    pub capacity: u64,
    /// First heap byte.
    pub data_start: u64,
    /// Heap bytes reserved so far (`bump - data_start`).
    pub allocated: u64,
    /// Heap bytes never reserved (`capacity - bump`).
    pub remaining: u64,
    /// Blocks allocated and not freed, by this process since open.
    pub live_blocks: u64,
    /// Bytes in those blocks (as requested).
    pub live_bytes: u64,
    /// Bytes in fillers and remainders too small to list, and chunk tails given up.
    pub discarded: u64,
    /// Successful allocations since open.
    pub allocations: u64,
    /// Of which served by bumping.
    pub from_bump: u64,
    /// Of which served from the free lists.
    pub from_freelist: u64,
    /// Of which served from a per-thread cache of freed blocks.
    pub from_cache: u64,
    /// Frees since open.
    pub frees: u64,
    /// Frees that moved a bump offset back.
    pub rewinds: u64,
    /// Allocations refused with `Full`.
    pub failures: u64,
    /// Free segments merged into a physically adjacent one by coalescing passes (run when an
    /// allocation found the main memory and the free lists exhausted).
    pub coalesced: u64,
}

static NEXT_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn new_uid() -> u64 {
    NEXT_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A random arena id (not cryptographic): hashed time, process id, address and a counter.
fn random_id() -> u64 {
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

impl Geometry {
    fn from_options(o: &Options, capacity: u64) -> Result<Geometry, Error> {
        let reserved = o.reserved.unwrap_or(0);
        let data_start = Geometry::data_start_for(reserved);
        if capacity < data_start + (1 << MIN_CHUNK_SHIFT) || capacity > block::MAX_CAPACITY {
            return Err(Error::Size {
                field: "capacity",
                value: capacity,
            });
        }
        let heap = capacity - data_start;
        let chunk_shift = match o.chunk_size {
            Some(c) => {
                let c = u64::from(c);
                if !c.is_power_of_two()
                    || !(1 << MIN_CHUNK_SHIFT..=1 << MAX_CHUNK_SHIFT).contains(&c)
                {
                    return Err(Error::Size {
                        field: "chunk_size",
                        value: c,
                    });
                }
                c.trailing_zeros() as u8
            }
            None => {
                let per_thread = (heap / 64).max(1);
                (63 - per_thread.leading_zeros() as u8).clamp(MIN_CHUNK_SHIFT, 16)
            }
        };
        let min_segment = o.min_segment_size.clamp(16, 1 << 20).div_ceil(8) * 8;
        Ok(Geometry {
            magic_version: o.magic_version,
            freelist: o.freelist.unwrap_or_default(),
            chunk_shift,
            reserved_len: reserved,
            min_segment,
            data_start,
            arena_id: random_id(),
        })
    }
}

fn requested_capacity(o: &Options) -> Result<u64, Error> {
    let c = o.capacity.unwrap_or(DEFAULT_CAPACITY);
    align_up(c, DATA_ALIGN).ok_or(Error::Size {
        field: "capacity",
        value: c,
    })
}

impl Arena {
    pub(crate) fn create_in_memory(o: &Options, anon: bool) -> Result<Arena, Error> {
        if o.read_only {
            return Err(Error::ReadOnly);
        }
        let capacity = requested_capacity(o)?;
        let g = Geometry::from_options(o, capacity)?;
        let b = if anon {
            Backing::anon(capacity)?
        } else {
            Backing::heap(capacity)?
        };
        let mut raw = RawHeader::new(&g, capacity);
        raw.state = STATE_DIRTY;
        raw.open_count = 1;
        // SAFETY: the backing was just created; nothing else can see it.
        unsafe { b.write(0, bytemuck::bytes_of(&raw)) };
        Ok(Arena::from_parts(b, g, capacity, o, true, false, None))
    }

    /// A heap arena on a simulated disk, for power-loss tests.
    pub(crate) fn create_simulated(
        o: &Options,
    ) -> Result<(Arena, Arc<crate::backing::SimDisk>), Error> {
        let capacity = requested_capacity(o)?;
        let g = Geometry::from_options(o, capacity)?;
        let (b, disk) = Backing::sim(capacity)?;
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

    fn from_parts(
        b: Backing,
        g: Geometry,
        capacity: u64,
        o: &Options,
        was_clean: bool,
        recovery_pending: bool,
        recovery: Option<Report>,
    ) -> Arena {
        let lists = FreeLists::load(&b, g.data_start);
        Arena {
            lane: 0,
            inner: Arc::new(Inner {
                read_only: b.read_only(),
                b,
                g,
                capacity,
                uid: new_uid(),
                zero_on_free: o.zero_on_free,
                thread_cache: o.thread_cache && g.freelist != Freelist::None,
                lists,
                cells: Registry::default(),
                coalesce_on: o.coalesce,
                coalescing: AtomicBool::new(false),
                passes: AtomicU64::new(0),
                activity_at_pass: AtomicU64::new(0),
                pass_cost: AtomicU64::new(0),
                was_clean,
                recovery_pending,
                recovery,
                #[cfg(all(feature = "async", not(parena_loom)))]
                aio: Default::default(),
            }),
        }
    }

    pub(crate) fn open_file(o: &Options, path: &Path) -> Result<Arena, Error> {
        let f = OpenedFile::open(path, o.read_only, o.create, o.create_new)?;
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
        let v = raw.validate(file_len)?;
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
        let mut capacity = v.capacity;
        if let Some(want) = o.capacity {
            let want = align_up(want, DATA_ALIGN).ok_or(Error::Size {
                field: "capacity",
                value: want,
            })?;
            if want < raw.bump {
                return Err(Error::Shrink {
                    requested: want,
                    allocated: raw.bump,
                });
            }
            if want > capacity {
                if o.read_only {
                    return Err(Error::ReadOnly);
                }
                if want > block::MAX_CAPACITY {
                    return Err(Error::Size {
                        field: "capacity",
                        value: want,
                    });
                }
                capacity = want;
            }
        }
        // Everything above only read. A dirty arena is walked (still read-only) before anything
        // is written, so a heap that cannot be recovered leaves the file untouched.
        if !v.clean && !o.read_only {
            let probe = Backing::file(f.dup_read_only()?, v.capacity)?;
            recovery::check(&probe, &g, raw.bump)?;
            drop(probe);
            return Arena::open_writable(o, f, g, v.capacity, capacity, false);
        }
        if o.read_only {
            let b = Backing::file(f, v.capacity)?;
            return Ok(Arena::from_parts(
                b, g, v.capacity, o, v.clean, !v.clean, None,
            ));
        }
        Arena::open_writable(o, f, g, v.capacity, capacity, true)
    }

    fn open_writable(
        o: &Options,
        f: OpenedFile,
        g: Geometry,
        old_capacity: u64,
        capacity: u64,
        clean: bool,
    ) -> Result<Arena, Error> {
        if capacity > old_capacity || f.len()? < capacity {
            f.resize(capacity, o.preallocate)?;
        }
        let b = Backing::file(f, capacity)?;
        // Mark dirty (and the new capacity) and make that durable before the first change.
        b.word(OFF_STATE).store(STATE_DIRTY, Ordering::Relaxed);
        b.word(OFF_CAPACITY).store(capacity, Ordering::Relaxed);
        b.word(OFF_OPEN_COUNT).fetch_add(1, Ordering::Relaxed);
        b.flush(0, HEADER_SIZE)?;
        let report = if clean {
            None
        } else {
            let lists = FreeLists::load(&b, g.data_start);
            Some(recovery::repair(&b, &g, capacity, &lists, true)?)
        };
        Ok(Arena::from_parts(b, g, capacity, o, clean, false, report))
    }

    fn create_file(o: &Options, f: OpenedFile) -> Result<Arena, Error> {
        let capacity = requested_capacity(o)?;
        let g = Geometry::from_options(o, capacity)?;
        // Written DIRTY and open once, as the open that follows would mark it: one durable write
        // of the header instead of a clean header, then the mark.
        let mut raw = RawHeader::new(&g, capacity);
        raw.state = STATE_DIRTY;
        raw.open_count = 1;
        if let Err(e) = f.format(capacity, o.preallocate, bytemuck::bytes_of(&raw)) {
            // The file held nothing (it was created or empty): give it back as it was.
            let _ = f.file.set_len(0);
            return Err(e);
        }
        let b = Backing::file(f, capacity)?;
        Ok(Arena::from_parts(b, g, capacity, o, true, false, None))
    }

    /// Allocates `len` zeroed bytes, aligned to 8.
    ///
    /// # Errors
    /// [`Error::ZeroSize`], [`Error::TooLarge`], [`Error::ReadOnly`], or [`Error::Full`] when
    /// neither the main memory nor the free lists can hold it, even after merging neighbouring
    /// free segments (see [`Stats::coalesced`]). [`Error::Corrupt`] when a free list is found
    /// damaged; [`Error::Io`] when a file arena cannot make a merge durable (nothing is merged
    /// then).
    ///
    /// ```
    /// let arena = parena::Options::new().capacity(1 << 16).heap()?;
    /// let b = arena.alloc(100)?;
    /// assert_eq!(b.len(), 100);
    /// assert!(b.iter().all(|&x| x == 0));
    /// assert!(arena.alloc(0).is_err());
    /// assert!(arena.alloc(usize::MAX).is_err());
    /// # Ok::<(), parena::Error>(())
    /// ```
    #[inline]
    pub fn alloc(&self, len: usize) -> Result<BlockMut<'_>, Error> {
        self.alloc_aligned(len as u64, WORD)
    }

    /// Allocates zeroed bytes for `layout`; any power-of-two alignment up to [`MAX_ALIGN`].
    ///
    /// # Errors
    /// As [`Arena::alloc`], and [`Error::BadAlign`] above [`MAX_ALIGN`].
    ///
    /// ```
    /// use std::alloc::Layout;
    /// let arena = parena::Options::new().capacity(1 << 20).heap()?;
    /// let b = arena.alloc_layout(Layout::from_size_align(10, 256).unwrap())?;
    /// assert_eq!(b.as_ptr() as usize % 256, 0);
    /// # Ok::<(), parena::Error>(())
    /// ```
    #[inline]
    pub fn alloc_layout(&self, layout: Layout) -> Result<BlockMut<'_>, Error> {
        if layout.align() > MAX_ALIGN {
            return Err(Error::BadAlign {
                align: layout.align(),
            });
        }
        self.alloc_aligned(layout.size() as u64, (layout.align() as u64).max(WORD))
    }

    /// Allocates a block holding a copy of `bytes` and returns its handle.
    ///
    /// # Errors
    /// As [`Arena::alloc`].
    pub fn alloc_copy(&self, bytes: &[u8]) -> Result<Handle, Error> {
        let mut b = self.alloc(bytes.len())?;
        b.copy_from_slice(bytes);
        Ok(b.into_handle())
    }

    #[inline]
    fn alloc_aligned(&self, len: u64, align: u64) -> Result<BlockMut<'_>, Error> {
        audit_op!();
        let inner = &*self.inner;
        if len == 0 {
            return Err(Error::ZeroSize);
        }
        if len > MAX_BLOCK_LEN {
            return Err(Error::TooLarge {
                requested: len,
                max: MAX_BLOCK_LEN,
            });
        }
        if inner.read_only {
            return Err(Error::ReadOnly);
        }
        let span = len.div_ceil(WORD) * WORD + WORD;
        let (hdr, gen) = with_cell(inner.uid, self.lane(), &inner.cells, |cell| {
            inner.alloc_in(cell, len, span, align)
        })?;
        Ok(BlockMut {
            inner,
            hdr,
            len,
            gen,
        })
    }

    /// Frees the block `h` names.
    ///
    /// # Errors
    /// [`Error::Stale`] when `h` no longer names a live block; [`Error::DoubleFree`] when the
    /// block was already freed; [`Error::Busy`] while its [`BlockMut`] is alive;
    /// [`Error::OutOfBounds`] for an offset outside the heap; [`Error::ReadOnly`]. Nothing
    /// changes when an error is returned.
    pub fn free(&self, h: Handle) -> Result<(), Error> {
        audit_op!();
        let inner = &*self.inner;
        if inner.read_only {
            return Err(Error::ReadOnly);
        }
        let hdr = inner.locate(h)?;
        let w = inner.b.word(hdr);
        // Acquire: pairs with the Release publish in BlockMut's drop (the CAS below repeats it).
        let mut cur = w.load(Ordering::Acquire);
        loop {
            let (len, readers) = inner.check_live(hdr, cur, h, true)?;
            let dying = block::with_state(cur, LiveState::Dying);
            // AcqRel: Acquire pairs with the Release publish (BlockMut drop) and with readers'
            // Release unpin, so every earlier access to the bytes happens before their reuse.
            match w.compare_exchange_weak(cur, dying, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if readers == 0 {
                        with_cell(inner.uid, self.lane(), &inner.cells, |cell| {
                            inner.release(cell, hdr, len, h.generation());
                        });
                    }
                    // Otherwise the last reader to leave releases the block.
                    return Ok(());
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Copies bytes `offset..offset + buf.len()` of block `h` into `buf`.
    ///
    /// The block is pinned while it is copied, so a concurrent `free` waits for the copy to finish
    /// before the bytes can be reused: the copy never sees another block's bytes.
    ///
    /// # Errors
    /// As [`Arena::free`] for the handle, and [`Error::OutOfBounds`] when the range is not inside
    /// the block.
    pub fn read(&self, h: Handle, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.read_with(h, |bytes| {
            let end = (offset as u64).checked_add(buf.len() as u64);
            match end {
                Some(e) if e <= bytes.len() as u64 => {
                    buf.copy_from_slice(&bytes[offset..offset + buf.len()]);
                    Ok(())
                }
                _ => Err(Error::OutOfBounds {
                    offset: offset as u64,
                    len: buf.len() as u64,
                    limit: bytes.len() as u64,
                }),
            }
        })?
    }

    /// Runs `f` on the bytes of block `h`, pinned: a concurrent `free` of the block waits for
    /// `f` to return before its bytes can be reused, so `f` never sees another block's bytes.
    ///
    /// One header check and one pin for the whole block, where [`Arena::len_of`] followed by
    /// [`Arena::read`] takes two of each. Keep `f` short: a block has room for 15 pins at a
    /// time, and a pin held long delays the reuse of a freed block.
    ///
    /// # Errors
    /// As [`Arena::free`] for the handle.
    ///
    /// ```
    /// let arena = parena::Options::new().capacity(1 << 16).heap()?;
    /// let h = arena.alloc_copy(b"hello")?;
    /// let mut out = Vec::new();
    /// arena.read_with(h, |bytes| out.extend_from_slice(bytes))?;
    /// assert_eq!(out, b"hello");
    /// arena.free(h)?;
    /// assert!(arena.read_with(h, |bytes| bytes.len()).is_err());
    /// # Ok::<(), parena::Error>(())
    /// ```
    #[inline]
    pub fn read_with<R>(&self, h: Handle, f: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        let pin = self.pin(h)?;
        // SAFETY: the block is live and published (checked by `pin`), and pinned until `pin`
        // drops (after `f` returns or unwinds): no `BlockMut` exists for it, `free` leaves its
        // bytes alone while a pin is held, and a read-only arena never frees or writes.
        let bytes = unsafe { self.inner.b.slice(pin.hdr + WORD, pin.len) };
        Ok(f(bytes))
    }

    /// Pins the live block `h` (on a read-only arena, only checks it).
    fn pin(&self, h: Handle) -> Result<ReadPin<'_>, Error> {
        let inner = &*self.inner;
        let hdr = inner.locate(h)?;
        let w = inner.b.word(hdr);
        let mut cur = w.load(Ordering::Acquire);
        let mut saturated = 0u32;
        loop {
            let (len, readers) = inner.check_live(hdr, cur, h, false)?;
            if inner.read_only {
                // Nothing can free or write a block of a read-only arena: the shared file lock
                // keeps every writer out, and this process refuses writes. No pin needed (and the
                // map is not writable).
                return Ok(ReadPin {
                    arena: self,
                    hdr,
                    len,
                    gen: None,
                });
            }
            if readers == block::MAX_READERS {
                // Wait for a reader to leave; readers leave after one copy, so this is short.
                // A count that never moves (a damaged header in a file trusted as clean, or
                // readers of a crashed process) is not waited on forever.
                saturated += 1;
                if saturated > SATURATED_ROUNDS {
                    return Err(Error::Busy { offset: h.offset() });
                }
                if saturated > 64 {
                    std::thread::yield_now();
                } else {
                    crate::sync::spin_hint();
                }
                // Acquire: as the first load (pairs with the Release publish).
                cur = w.load(Ordering::Acquire);
                continue;
            }
            // Acquire: pairs with the Release publish in BlockMut's drop.
            match w.compare_exchange_weak(
                cur,
                cur + block::READER_ONE,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Ok(ReadPin {
                        arena: self,
                        hdr,
                        len,
                        gen: Some(h.generation()),
                    })
                }
                Err(now) => cur = now,
            }
        }
    }

    /// The bytes of block `h`, without copying.
    ///
    /// # Errors
    /// As [`Arena::read`].
    ///
    /// # Safety
    /// While the returned slice lives, the caller must make sure the block is not freed (by any
    /// thread, through any clone of the arena) and not written through [`Arena::get_mut`].
    ///
    /// ```
    /// let arena = parena::Options::new().capacity(1 << 16).heap()?;
    /// let h = arena.alloc_copy(b"abc")?;
    /// // SAFETY: nothing frees or writes `h` while `bytes` lives.
    /// let bytes = unsafe { arena.get(h)? };
    /// assert_eq!(bytes, b"abc");
    /// # Ok::<(), parena::Error>(())
    /// ```
    pub unsafe fn get(&self, h: Handle) -> Result<&[u8], Error> {
        let inner = &*self.inner;
        let hdr = inner.locate(h)?;
        // Acquire: pairs with the Release publish in BlockMut's drop.
        let cur = inner.b.word(hdr).load(Ordering::Acquire);
        let (len, _) = inner.check_live(hdr, cur, h, false)?;
        // SAFETY: the block is live and published; the caller keeps it from being freed or written.
        Ok(unsafe { inner.b.slice(hdr + WORD, len) })
    }

    /// The bytes of block `h`, mutably, without copying.
    ///
    /// # Errors
    /// As [`Arena::read`], and [`Error::ReadOnly`].
    ///
    /// # Safety
    /// While the returned slice lives, the caller must make sure no other reference to the block's
    /// bytes exists or is created (no `get`, `get_mut`, `read`) and the block is not freed.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get_mut(&self, h: Handle) -> Result<&mut [u8], Error> {
        let inner = &*self.inner;
        if inner.read_only {
            return Err(Error::ReadOnly);
        }
        let hdr = inner.locate(h)?;
        // Acquire: pairs with the Release publish in BlockMut's drop.
        let cur = inner.b.word(hdr).load(Ordering::Acquire);
        let (len, _) = inner.check_live(hdr, cur, h, false)?;
        // SAFETY: live and published; exclusivity is the caller's contract.
        Ok(unsafe { inner.b.slice_mut(hdr + WORD, len) })
    }

    /// Whether `h` names a live, published block.
    pub fn contains(&self, h: Handle) -> bool {
        let inner = &*self.inner;
        inner
            .locate(h)
            .and_then(|hdr| {
                inner.check_live(hdr, inner.b.word(hdr).load(Ordering::Acquire), h, false)
            })
            .is_ok()
    }

    /// The length of block `h`.
    ///
    /// # Errors
    /// As [`Arena::read`].
    pub fn len_of(&self, h: Handle) -> Result<usize, Error> {
        let inner = &*self.inner;
        let hdr = inner.locate(h)?;
        let cur = inner.b.word(hdr).load(Ordering::Acquire);
        inner
            .check_live(hdr, cur, h, false)
            .map(|(len, _)| len as usize)
    }

    /// Root slot `i` (`0..ROOT_SLOTS`), persisted in the header: where a structure keeps its entry
    /// point (a head node's offset, a sequence number).
    ///
    /// # Panics
    /// If `i >= ROOT_SLOTS`.
    pub fn root(&self, i: usize) -> u64 {
        assert!(i < ROOT_SLOTS, "root slot {i} out of 0..{ROOT_SLOTS}");
        // Acquire: pairs with the Release in `set_root`; what was published through the root is
        // visible.
        self.inner
            .b
            .word(OFF_ROOTS + 8 * i as u64)
            .load(Ordering::Acquire)
    }

    /// Sets root slot `i`.
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; [`Error::OutOfBounds`] if `i >= ROOT_SLOTS`.
    pub fn set_root(&self, i: usize, value: u64) -> Result<(), Error> {
        self.root_word(i)?.store(value, Ordering::Release);
        Ok(())
    }

    /// Compare-and-swap on root slot `i`; returns the previous value on failure.
    ///
    /// # Errors
    /// As [`Arena::set_root`]; `Ok(Err(found))` when the slot did not hold `current`.
    pub fn compare_exchange_root(
        &self,
        i: usize,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, Error> {
        // AcqRel: publishes like `set_root` and observes like `root`.
        Ok(self
            .root_word(i)?
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire))
    }

    fn root_word(&self, i: usize) -> Result<&crate::sync::AtomicU64, Error> {
        if self.inner.read_only {
            return Err(Error::ReadOnly);
        }
        if i >= ROOT_SLOTS {
            return Err(Error::OutOfBounds {
                offset: i as u64,
                len: 1,
                limit: ROOT_SLOTS as u64,
            });
        }
        Ok(self.inner.b.word(OFF_ROOTS + 8 * i as u64))
    }

    /// Length of the user-reserved area.
    pub fn reserved_len(&self) -> usize {
        self.inner.g.reserved_len as usize
    }

    /// The user-reserved area. Writing it needs the only clone ([`Arena::reserved_mut`]), so
    /// nothing writes it while this borrow lives.
    pub fn reserved(&self) -> &[u8] {
        // SAFETY: in bounds (header size + reserved_len <= data_start < capacity); written only
        // through `reserved_mut`, which needs `&mut` on the only clone, so never while `&self` is
        // borrowed from any clone.
        unsafe {
            self.inner
                .b
                .slice(HEADER_SIZE, self.inner.g.reserved_len.into())
        }
    }

    /// The user-reserved area, writable.
    ///
    /// # Errors
    /// [`Error::Shared`] if other clones exist; [`Error::ReadOnly`].
    pub fn reserved_mut(&mut self) -> Result<&mut [u8], Error> {
        let inner = self.exclusive()?;
        if inner.read_only {
            return Err(Error::ReadOnly);
        }
        // SAFETY: in bounds; `get_mut` proved this is the only clone and we hold it mutably.
        Ok(unsafe { inner.b.slice_mut(HEADER_SIZE, inner.g.reserved_len.into()) })
    }

    /// Makes everything written so far durable: the heap, then the header. A no-op for heap and
    /// anonymous arenas.
    ///
    /// # Errors
    /// [`Error::Io`] from `msync`.
    pub fn flush(&self) -> Result<(), Error> {
        audit_op!();
        let inner = &*self.inner;
        if inner.thread_cache && !inner.read_only {
            // The calling thread's cached blocks go to the shared lists, so what is flushed
            // lists them.
            let mut drained = Ok(());
            for_each_thread_cell(inner.uid, |cell| {
                if let Err(e) = inner.drain_cache(cell) {
                    drained = Err(e);
                }
            });
            drained?;
        }
        let bump = inner.bump();
        inner
            .b
            .flush(inner.g.data_start, bump - inner.g.data_start)?;
        inner.b.flush(0, inner.g.data_start)
    }

    /// Makes bytes `offset..offset + len` of the arena durable (not the header; see
    /// [`Arena::flush_header`]).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] outside the arena; [`Error::Io`].
    pub fn flush_range(&self, offset: u64, len: u64) -> Result<(), Error> {
        self.inner.check_range(offset, len)?;
        self.inner.b.flush(offset, len)
    }

    /// Makes the header (bump offset, free lists, roots) and the reserved area durable.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn flush_header(&self) -> Result<(), Error> {
        self.inner.b.flush(0, self.inner.g.data_start)
    }

    /// Starts write-back of the whole arena and returns without waiting (`MS_ASYNC`).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn flush_background(&self) -> Result<(), Error> {
        self.inner.b.flush_async(0, self.inner.bump())
    }

    /// Starts write-back of `offset..offset + len` without waiting.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`]; [`Error::Io`].
    pub fn flush_range_background(&self, offset: u64, len: u64) -> Result<(), Error> {
        self.inner.check_range(offset, len)?;
        self.inner.b.flush_async(offset, len)
    }

    /// Counters and sizes now.
    pub fn stats(&self) -> Stats {
        audit_op!();
        let inner = &*self.inner;
        let bump = inner.bump();
        let mut s = Stats {
            capacity: inner.capacity,
            data_start: inner.g.data_start,
            allocated: bump - inner.g.data_start,
            remaining: inner.capacity - bump,
            discarded: inner.b.word(OFF_DISCARDED).load(Ordering::Relaxed),
            ..Stats::default()
        };
        let mut freed_bytes = 0u64;
        let mut alloc_bytes = 0u64;
        // A fold under the registry's lock, not a copy of the list: `stats` allocates nothing
        // (invariant A, `bump.rs`), so it is safe on `GlobalArena::arena()`.
        inner.cells.fold((), |(), c| {
            let k = &c.counters;
            s.allocations += k.allocs.load(Ordering::Relaxed);
            alloc_bytes += k.alloc_bytes.load(Ordering::Relaxed);
            s.from_freelist += k.from_freelist.load(Ordering::Relaxed);
            s.from_cache += k.from_cache.load(Ordering::Relaxed);
            s.frees += k.frees.load(Ordering::Relaxed);
            freed_bytes += k.free_bytes.load(Ordering::Relaxed);
            s.failures += k.failures.load(Ordering::Relaxed);
            s.rewinds += k.rewinds.load(Ordering::Relaxed);
            s.coalesced += k.coalesced.load(Ordering::Relaxed);
        });
        s.from_bump = s.allocations.saturating_sub(s.from_freelist + s.from_cache);
        s.live_blocks = s.allocations.saturating_sub(s.frees);
        s.live_bytes = alloc_bytes.saturating_sub(freed_bytes);
        s
    }

    /// Walks the heap and the free lists and reports what it found, without changing anything.
    ///
    /// # Errors
    /// [`Error::Shared`] if other clones exist (the walk needs the heap to hold still).
    pub fn verify(&mut self) -> Result<Report, Error> {
        let inner = self.exclusive()?;
        Ok(recovery::verify(
            &inner.b,
            &inner.g,
            &inner.lists,
            inner.bump(),
        ))
    }

    /// Merges adjacent free space, returns the unused tails of every thread's chunk, rebuilds the
    /// free lists and moves the bump offset back over free space at the end of the heap.
    ///
    /// # Errors
    /// [`Error::Shared`] if other clones exist; [`Error::ReadOnly`]; [`Error::Corrupt`] when the
    /// heap cannot be walked (then nothing was changed).
    pub fn compact(&mut self) -> Result<Report, Error> {
        let inner = self.exclusive()?;
        if inner.read_only {
            return Err(Error::ReadOnly);
        }
        recovery::check(&inner.b, &inner.g, inner.bump())?;
        inner.retire_all();
        recovery::repair(&inner.b, &inner.g, inner.capacity, &inner.lists, false)
    }

    /// Whether the last writer closed the arena cleanly (always `true` for a new arena).
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
        self.inner.g.arena_id
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
        self.inner.b.kind()
    }

    /// Total bytes, header included.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// The freelist policy.
    pub fn freelist(&self) -> Freelist {
        self.inner.g.freelist
    }

    /// Whether the arena was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// The file behind a file arena (canonical path).
    pub fn path(&self) -> Option<&Path> {
        self.inner.b.path()
    }

    /// Writes the whole arena as an image that opens as a clean file arena.
    ///
    /// # Errors
    /// [`Error::Shared`] if other clones exist; [`Error::Io`] from `out`.
    pub fn write_image(&mut self, mut out: impl std::io::Write) -> Result<(), Error> {
        let inner = self.exclusive()?;
        if !inner.read_only {
            inner.retire_all();
        }
        let mut header = inner.header_snapshot();
        header.state = STATE_CLEAN;
        header.state_checksum = header.compute_state_checksum();
        out.write_all(bytemuck::bytes_of(&header))?;
        // SAFETY: in bounds; `get_mut` proved no other clone can write while we copy.
        let rest = unsafe { inner.b.slice(HEADER_SIZE, inner.capacity - HEADER_SIZE) };
        out.write_all(rest)?;
        Ok(())
    }

    /// Closes the arena now, reporting errors that `drop` would have to ignore.
    ///
    /// # Errors
    /// [`Error::Shared`] (and nothing happens) if other clones exist; [`Error::Io`] from the
    /// final flush.
    pub fn close(mut self) -> Result<(), Error> {
        let inner = self.exclusive()?;
        inner.close()
    }
}

/// The header of an open arena, as [`Arena::header`] reads it: for inspection and debugging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderInfo {
    /// Format version of the file.
    pub format_version: u32,
    /// The user's magic version.
    pub magic_version: u16,
    /// Freelist policy.
    pub freelist: Freelist,
    /// Per-thread chunk size in bytes.
    pub chunk_size: u64,
    /// Length of the user-reserved area.
    pub reserved_len: u32,
    /// Smallest listed free segment.
    pub min_segment: u32,
    /// First heap byte.
    pub data_start: u64,
    /// Random id set at create.
    pub arena_id: u64,
    /// Total bytes.
    pub capacity: u64,
    /// The state word says clean (only ever true for an arena opened read-only after a clean
    /// close: a writable open marks the arena dirty).
    pub clean: bool,
    /// Writable opens so far.
    pub open_count: u64,
    /// End of the reserved heap.
    pub bump: u64,
    /// Heap at or past this offset was never written.
    pub high_water: u64,
    /// Bytes counted as discarded.
    pub discarded: u64,
    /// The persisted root slots.
    pub roots: [u64; ROOT_SLOTS],
}

impl Arena {
    /// The header's fields now.
    pub fn header(&self) -> HeaderInfo {
        let h = self.inner.header_snapshot();
        HeaderInfo {
            format_version: h.format_version,
            magic_version: h.magic_version,
            freelist: self.inner.g.freelist,
            chunk_size: self.inner.g.chunk(),
            reserved_len: h.reserved_len,
            min_segment: h.min_segment,
            data_start: h.data_start,
            arena_id: h.arena_id,
            capacity: h.capacity,
            clean: h.state == STATE_CLEAN,
            open_count: h.open_count,
            bump: h.bump,
            high_water: h.high_water,
            discarded: h.discarded,
            roots: h.roots,
        }
    }

    /// The core, when this is the only clone: what exclusive passes (`verify`, `compact`,
    /// `reserved_mut`, `write_image`, `close`) need so that no other thread touches the heap.
    pub(crate) fn exclusive(&mut self) -> Result<&mut Inner, Error> {
        // An arena shared by `open_async` is also reachable through the registry's `Weak`, which
        // makes `get_mut` fail and could mint a clone during the borrow. When this is the only
        // clone, take it out of the registry first (see `aio::detach`).
        #[cfg(all(feature = "async", not(parena_loom)))]
        crate::aio::detach(&self.inner);
        Arc::get_mut(&mut self.inner).ok_or(Error::Shared)
    }
}

impl Stats {
    /// Share of allocations served by a per-thread cache (0 when there were none).
    pub fn cache_hit_rate(&self) -> f64 {
        if self.allocations == 0 {
            0.0
        } else {
            self.from_cache as f64 / self.allocations as f64
        }
    }
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("backing", &self.backing())
            .field("capacity", &self.inner.capacity)
            .field("bump", &self.inner.bump())
            .field("freelist", &self.inner.g.freelist)
            .field("read_only", &self.inner.read_only)
            .finish()
    }
}

impl Inner {
    #[inline]
    pub(crate) fn bump(&self) -> u64 {
        self.b.word(OFF_BUMP).load(Ordering::Relaxed)
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<(), Error> {
        match offset.checked_add(len) {
            Some(e) if e <= self.capacity => Ok(()),
            _ => Err(Error::OutOfBounds {
                offset,
                len,
                limit: self.capacity,
            }),
        }
    }

    /// The header offset a handle names, if it can be a block header at all.
    #[inline]
    pub(crate) fn locate(&self, h: Handle) -> Result<u64, Error> {
        let data = h.offset();
        let bump = self.bump();
        if data < self.g.data_start + WORD || data + WORD > bump {
            return Err(Error::OutOfBounds {
                offset: data,
                len: 0,
                limit: bump,
            });
        }
        Ok(data - WORD)
    }

    /// Checks that header word `w` at `hdr` is the live block `h` names; returns its length and
    /// readers. `freeing` selects the error for a block already being freed.
    #[inline]
    pub(crate) fn check_live(
        &self,
        hdr: u64,
        w: u64,
        h: Handle,
        freeing: bool,
    ) -> Result<(u64, u64), Error> {
        match block::decode(w) {
            Word::Live {
                len,
                gen,
                state,
                readers,
            } if gen == h.generation() => {
                let span_ok = block_span(len)
                    .and_then(|s| hdr.checked_add(s))
                    .is_some_and(|e| e <= self.bump());
                if !span_ok || len == 0 {
                    return Err(Error::Corrupt {
                        offset: hdr,
                        word: w,
                    });
                }
                match state {
                    LiveState::Published => Ok((len, readers)),
                    LiveState::Pending | LiveState::Reserved => {
                        Err(Error::Busy { offset: hdr + WORD })
                    }
                    LiveState::Dying if freeing => Err(Error::DoubleFree { offset: hdr + WORD }),
                    LiveState::Dying => Err(Error::Stale {
                        expected: h.generation(),
                        found: gen,
                    }),
                }
            }
            Word::Live { gen, .. } => Err(Error::Stale {
                expected: h.generation(),
                found: gen,
            }),
            Word::Free { gen, .. } if freeing && gen == block::next_gen(h.generation(), false) => {
                Err(Error::DoubleFree { offset: hdr + WORD })
            }
            Word::Free { gen, .. } => Err(Error::Stale {
                expected: h.generation(),
                found: gen,
            }),
            _ => Err(Error::Stale {
                expected: h.generation(),
                found: 0,
            }),
        }
    }

    /// Leaves a block pinned by `read`; the last reader of a block freed meanwhile releases it.
    fn unpin(&self, hdr: u64, gen: u32, lane: usize) {
        let w = self.b.word(hdr);
        let mut cur = w.load(Ordering::Relaxed);
        loop {
            // Release: our copy happens before the block's reuse; pairs with the Acquire CAS in
            // `free` (or with the Acquire below when we are the one to release it).
            match w.compare_exchange_weak(
                cur,
                cur - block::READER_ONE,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if let Word::Live {
            len,
            state: LiveState::Dying,
            readers: 1,
            ..
        } = block::decode(cur)
        {
            with_cell(self.uid, lane, &self.cells, |cell| {
                self.release(cell, hdr, len, gen)
            });
        }
    }

    /// A new generation for a header at a position with no history we can trust.
    pub(crate) fn fresh_gen(&self, odd: bool) -> u32 {
        recovery::fresh_gen(&self.b, odd)
    }

    pub(crate) fn add_discarded(&self, n: u64) {
        if n > 0 {
            self.b.word(OFF_DISCARDED).fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The allocation fast path: bump inside the calling thread's chunk.
    #[inline]
    fn alloc_in(
        &self,
        cell: &ChunkCell,
        len: u64,
        span: u64,
        align: u64,
    ) -> Result<(u64, u32), Error> {
        if align == WORD {
            if self.thread_cache && span <= CACHE_MAX_SPAN {
                let head = cell.cache[(span / WORD - 2) as usize].load(Ordering::Relaxed);
                if head != 0 {
                    return self.alloc_from_cache(cell, len, span, head);
                }
            }
            let cur = cell.cur.load(Ordering::Relaxed);
            let end = cell.end.load(Ordering::Relaxed);
            debug_assert!(cur <= end, "chunk cell cur {cur} past end {end}");
            if cur != 0 && span <= end - cur {
                let gen = cell.gen.load(Ordering::Relaxed) as u32;
                // Invariant Z: `cur..end` is zero, so the block needs no zeroing.
                // SAFETY: `cur` is 8-aligned (chunk starts and spans are) and
                // `cur + 8 <= cur + span <= end <= capacity`, the backing's length.
                let w = unsafe { self.b.word_unchecked(cur) };
                w.store(
                    block::live(len, gen, LiveState::Pending, 0),
                    Ordering::Relaxed,
                );
                cell.cur.store(cur + span, Ordering::Relaxed);
                bump_counter(&cell.counters.allocs, 1);
                bump_counter(&cell.counters.alloc_bytes, len);
                return Ok((cur, gen));
            }
        }
        self.alloc_slow(cell, len, span, align)
    }

    #[cold]
    #[inline(never)]
    fn alloc_slow(
        &self,
        cell: &ChunkCell,
        len: u64,
        span: u64,
        align: u64,
    ) -> Result<(u64, u32), Error> {
        let slack = if align > WORD { align + WORD } else { 0 };
        let chunk = self.g.chunk();
        let r = if span + slack <= chunk / 4 {
            match self.bump_in_cell(cell, len, span, align) {
                Some(r) => Some(r),
                None => {
                    self.retire(cell);
                    match self.reserve(chunk) {
                        Some((start, end)) => {
                            cell.start.store(start, Ordering::Relaxed);
                            cell.cur.store(start, Ordering::Relaxed);
                            cell.end.store(end, Ordering::Relaxed);
                            cell.gen
                                .store(self.fresh_gen(true).into(), Ordering::Relaxed);
                            self.bump_in_cell(cell, len, span, align)
                        }
                        None => None,
                    }
                }
            }
        } else {
            self.alloc_large(len, span, align)
        };
        let r = match r {
            Some(r) => Some(r),
            None => match self.g.freelist {
                Freelist::None => None,
                Freelist::Optimistic | Freelist::Pessimistic => {
                    // Acquire: pairs with the Release increment that ends a pass, so a pass
                    // that ended before this load listed its segments before our take.
                    let mut seen = self.passes.load(Ordering::Acquire);
                    let mut r = self.alloc_from_freelist(len, span, align)?;
                    // While a pass runs the lists look empty to everyone else, so a retry can
                    // miss what a pass had detached; a few rounds, each after one pass (waited
                    // for, or run), give it a fair chance.
                    let mut rounds = 0;
                    while r.is_none()
                        && self.coalesce_on
                        && rounds < COALESCE_ROUNDS
                        && self.coalesce(cell, &mut seen)?
                    {
                        r = self.alloc_from_freelist(len, span, align)?;
                        rounds += 1;
                    }
                    if r.is_some() {
                        bump_counter(&cell.counters.from_freelist, 1);
                    }
                    r
                }
            },
        };
        match r {
            Some(r) => {
                bump_counter(&cell.counters.allocs, 1);
                bump_counter(&cell.counters.alloc_bytes, len);
                Ok(r)
            }
            None => {
                bump_counter(&cell.counters.failures, 1);
                Err(Error::Full {
                    requested: len,
                    available: self.capacity - self.bump(),
                })
            }
        }
    }

    /// Merges physically adjacent listed free segments, for an allocation that found the main
    /// memory and the free lists exhausted. Returns whether the free lists are worth another try:
    /// a pass ended (this thread's, or another's it waited for) after `seen` passes, the count the
    /// caller read before its last try; `seen` is brought up to date.
    ///
    /// The calling thread's caches of freed blocks (every lane) go to the shared lists first.
    /// One pass runs at a time; a thread that arrives during one waits for it to end instead of
    /// running its own. So an allocation that finds the arena exhausted may wait for another
    /// thread (the pass always ends: it waits for nothing itself); allocations that find memory
    /// never do. A pass costs about one cache miss per listed segment, so after a pass that
    /// detached `n` segments the next one waits until the threads have allocated or freed `n`
    /// blocks since: the cost stays a constant share of the work (plus the sort's `log n`), and
    /// requests refused in between get `Full`. See `FreeLists::coalesce` and docs/design.md.
    #[cold]
    #[inline(never)]
    fn coalesce(&self, cell: &ChunkCell, seen: &mut u64) -> Result<bool, Error> {
        // Invariant A (`bump.rs`): a call that re-entered parena from inside a step of this thread
        // (a pass, a walk of its cells) neither runs a pass nor waits for one: the pass it would
        // wait for may be its own.
        if in_step() {
            return Ok(false);
        }
        let _step = Step::enter();
        // Acquire: as the load in `alloc_slow`.
        let ended = self.passes.load(Ordering::Acquire);
        if ended != *seen {
            *seen = ended;
            return Ok(true);
        }
        // The rate limit first: a refused allocation between passes costs a few loads, and
        // leaves this thread's caches of freed blocks alone.
        if ended > 0 && !self.pass_due() {
            return Ok(false);
        }
        if self.thread_cache {
            self.drain_cache(cell)?;
            let mut drained = Ok(());
            for_each_thread_cell(self.uid, |c| {
                if let Err(e) = self.drain_cache(c) {
                    drained = Err(e);
                }
            });
            drained?;
        }
        if self.lists.none_listed() {
            return Ok(false);
        }
        // Acquire: pairs with the Release store that ended the previous pass (`PassGuard`), so
        // this pass starts after it.
        if self
            .coalescing
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            let mut rounds = 0u32;
            // Acquire: pairs with the Release store ending the pass: the segments it listed again
            // are pushed before our retry.
            while self.coalescing.load(Ordering::Acquire) {
                rounds += 1;
                if rounds > 64 {
                    yield_now();
                } else {
                    spin_hint();
                }
            }
            // Relaxed: the count was raised before the flag's Release store our load read.
            *seen = self.passes.load(Ordering::Relaxed);
            return Ok(true);
        }
        let _pass = PassGuard(&self.coalescing);
        // A pass may have ended between our load and our CAS (Relaxed: ordered by the CAS's
        // Acquire, as above).
        let ended = self.passes.load(Ordering::Relaxed);
        if ended != *seen {
            *seen = ended;
            return Ok(true);
        }
        let activity = self.activity();
        if ended > 0 && !self.pass_due() {
            return Ok(false);
        }
        let (merged, detached) = self.lists.coalesce(
            &self.b,
            self.bump(),
            || self.fresh_gen(false),
            |off, len| self.b.flush(off, len),
        )?;
        self.activity_at_pass.store(activity, Ordering::Relaxed);
        self.pass_cost.store(detached, Ordering::Relaxed);
        bump_counter(&cell.counters.coalesced, merged);
        // Release: the pushes of this pass happen before a later `alloc_slow`'s take that reads
        // the new count (its Acquire load), which therefore need not wait for another pass.
        *seen = self.passes.fetch_add(1, Ordering::Release) + 1;
        // Even a pass that merged nothing is worth a retry: the caller's last try may have met
        // the lists while an earlier pass had them detached.
        Ok(true)
    }

    /// Allocations and frees of every thread so far: how much the lists may have changed.
    fn activity(&self) -> u64 {
        self.cells.fold(0u64, |n, c| {
            n.wrapping_add(c.counters.allocs.load(Ordering::Relaxed))
                .wrapping_add(c.counters.frees.load(Ordering::Relaxed))
        })
    }

    /// Whether the threads have done as much since the last pass as that pass detached (the
    /// rate limit of `coalesce`).
    fn pass_due(&self) -> bool {
        self.activity()
            .wrapping_sub(self.activity_at_pass.load(Ordering::Relaxed))
            >= self.pass_cost.load(Ordering::Relaxed)
    }

    /// Bumps inside the cell's chunk with any alignment; `None` when it does not fit.
    fn bump_in_cell(
        &self,
        cell: &ChunkCell,
        len: u64,
        span: u64,
        align: u64,
    ) -> Option<(u64, u32)> {
        let cur = cell.cur.load(Ordering::Relaxed);
        let end = cell.end.load(Ordering::Relaxed);
        if cur == 0 {
            return None;
        }
        let hdr = align_up(cur + WORD, align)? - WORD;
        if hdr.checked_add(span)? > end {
            return None;
        }
        if hdr > cur {
            self.b
                .word(cur)
                .store(block::pad(hdr - cur), Ordering::Relaxed);
            self.add_discarded(hdr - cur);
        }
        let gen = cell.gen.load(Ordering::Relaxed) as u32;
        self.b.word(hdr).store(
            block::live(len, gen, LiveState::Pending, 0),
            Ordering::Relaxed,
        );
        cell.cur.store(hdr + span, Ordering::Relaxed);
        Some((hdr, gen))
    }

    /// Reserves whole chunks covering at least `bytes` from the global bump offset, zeroing any
    /// part that was written before. `None` when the main memory cannot hold them.
    ///
    /// Chunks start on the fixed grid `data_start + k * chunk`: the heap walk steps over an unused
    /// tail to the next grid line. The bump offset is off the grid only when the capacity was
    /// grown from a value that was not on it; the bytes from there to the next line stay a gap.
    fn reserve(&self, bytes: u64) -> Option<(u64, u64)> {
        let chunk = self.g.chunk();
        let n = align_up(bytes, chunk)?;
        let bump = self.b.word(OFF_BUMP);
        let mut cur = bump.load(Ordering::Relaxed);
        let (start, end) = loop {
            let start = self.g.data_start + align_up(cur - self.g.data_start, chunk)?;
            if start >= self.capacity {
                return None;
            }
            let end = start.checked_add(n)?.min(self.capacity);
            if end - start < bytes {
                return None;
            }
            // Relaxed: the RMW order on `bump` alone makes reservations disjoint; see module docs.
            match bump.compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break (start, end),
                Err(now) => cur = now,
            }
        };
        let hw = self.b.word(OFF_HIGH_WATER).load(Ordering::Relaxed);
        if cur < hw {
            let z_end = end.min(hw);
            // Chunk starts first (and the gap before the first one): if we crash part-way, every
            // chunk of the range reads as unused.
            self.b.word(cur).store(0, Ordering::Relaxed);
            let mut c = start;
            while c < z_end {
                self.b.word(c).store(0, Ordering::Relaxed);
                c += chunk;
            }
            // SAFETY: `cur..end` was reserved by our CAS: no other thread touches it.
            unsafe { self.b.zero(cur, z_end - cur) };
        }
        Some((start, end))
    }

    /// A block larger than a quarter chunk: whole chunks straight from the bump offset.
    fn alloc_large(&self, len: u64, span: u64, align: u64) -> Option<(u64, u32)> {
        let slack = if align > WORD { align } else { 0 };
        let (start, end) = self.reserve(span + slack)?;
        let hdr = align_up(start + WORD, align)? - WORD;
        if hdr > start {
            self.b
                .word(start)
                .store(block::pad(hdr - start), Ordering::Relaxed);
            self.add_discarded(hdr - start);
        }
        let gen = self.fresh_gen(true);
        self.b.word(hdr).store(
            block::live(len, gen, LiveState::Pending, 0),
            Ordering::Relaxed,
        );
        let tail = hdr + span;
        self.give_back_zeroed(tail, end - tail);
        Some((hdr, gen))
    }

    /// Gives back `off..off + len`, which is zero and ends at a chunk boundary (or the capacity):
    /// listed when worth it, otherwise left as a gap that walks skip.
    fn give_back_zeroed(&self, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        if self.g.freelist != Freelist::None && len >= u64::from(self.g.min_segment) {
            let gen = self.fresh_gen(false);
            self.lists.push(&self.b, off, len, gen);
        } else {
            self.add_discarded(len);
        }
    }

    /// Gives up the cell's chunk: its unused tail goes back (listed, or a gap).
    fn retire(&self, cell: &ChunkCell) {
        let cur = cell.cur.load(Ordering::Relaxed);
        let end = cell.end.load(Ordering::Relaxed);
        if cur != 0 {
            self.give_back_zeroed(cur, end - cur);
        }
        cell.cur.store(0, Ordering::Relaxed);
        cell.end.store(0, Ordering::Relaxed);
        cell.start.store(0, Ordering::Relaxed);
    }

    /// Takes a block of exactly `span` bytes from the calling thread's cache (`head` is the
    /// class's non-empty head word).
    fn alloc_from_cache(
        &self,
        cell: &ChunkCell,
        len: u64,
        span: u64,
        head: u64,
    ) -> Result<(u64, u32), Error> {
        let (hdr, count) = cache_parts(head);
        let slot = &cell.cache[(span / WORD - 2) as usize];
        let w = self.b.word(hdr).load(Ordering::Relaxed);
        let Word::Free { next, .. } = block::decode(w) else {
            // Only a damaged heap gets here: the cache is dropped (its blocks leak until a
            // repair) and the allocation fails; no panic on an allocator path (invariant A).
            slot.store(0, Ordering::Relaxed);
            return Err(Error::Corrupt {
                offset: hdr,
                word: w,
            });
        };
        slot.store(cache_head(next, count - 1), Ordering::Relaxed);
        // A fresh generation from the arena's counter (through this thread's batch of it, so no
        // shared atomic here). Not the chunk's generation: that is also the one its bump blocks
        // carry (a block freed into this cache and taken back would get the generation its stale
        // handle still has), it is 0 before the cell's first chunk, and a `next_gen` chain runs
        // into generations the counter hands out later.
        let gen = self.cell_gen(cell);
        // Commit as RESERVED (same span: exact class), then zero, then hand out: a crash in
        // between leaves a block recovery reclaims.
        self.b.word(hdr).store(
            block::live(len, gen, LiveState::Reserved, 0),
            Ordering::Relaxed,
        );
        // SAFETY: the block came off this thread's own cache: no one else references it.
        unsafe { self.b.zero(hdr + WORD, span - WORD) };
        self.b.word(hdr).store(
            block::live(len, gen, LiveState::Pending, 0),
            Ordering::Relaxed,
        );
        bump_counter(&cell.counters.allocs, 1);
        bump_counter(&cell.counters.alloc_bytes, len);
        bump_counter(&cell.counters.from_cache, 1);
        Ok((hdr, gen))
    }

    /// A fresh odd generation from the calling thread's batch of the arena's counter: every
    /// value is handed out once, like `fresh_gen`, but the shared counter is touched once per
    /// batch.
    fn cell_gen(&self, cell: &ChunkCell) -> u32 {
        const BATCH: u64 = 256;
        let mut next = cell.gen_next.load(Ordering::Relaxed);
        if next == cell.gen_end.load(Ordering::Relaxed) {
            next = recovery::fresh_gen_batch(&self.b, BATCH);
            cell.gen_end.store(next + BATCH, Ordering::Relaxed);
        }
        cell.gen_next.store(next + 1, Ordering::Relaxed);
        recovery::gen_of_seed(next, true)
    }

    /// Hands every block in the cell's cache to the shared free lists.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when a cached block's header is not FREE (a damaged heap): the rest of
    /// that class's cache is left off the lists (leaked until a repair), the other classes are
    /// drained. Never panics (invariant A).
    pub(crate) fn drain_cache(&self, cell: &ChunkCell) -> Result<(), Error> {
        let mut result = Ok(());
        for slot in &cell.cache {
            let (mut off, _) = cache_parts(slot.load(Ordering::Relaxed));
            slot.store(0, Ordering::Relaxed);
            while off != 0 {
                let w = self.b.word(off).load(Ordering::Relaxed);
                let Word::Free { gen, next } = block::decode(w) else {
                    result = Err(Error::Corrupt {
                        offset: off,
                        word: w,
                    });
                    break;
                };
                let span = self.b.word(off + WORD).load(Ordering::Relaxed);
                self.lists.push(&self.b, off, span, gen);
                off = next;
            }
        }
        result
    }

    /// Retires every thread's chunk. Needs exclusive access (no clone in use).
    pub(crate) fn retire_all(&mut self) {
        for c in self.cells.all() {
            // A damaged cache leaks its blocks until the next repair; close goes on.
            let _ = self.drain_cache(&c);
            self.retire(&c);
        }
    }

    /// Takes a segment from the free lists and carves the block out of it.
    fn alloc_from_freelist(
        &self,
        len: u64,
        span: u64,
        align: u64,
    ) -> Result<Option<(u64, u32)>, Error> {
        // Room in front of the block for its alignment: none, or a filler of at least 16 bytes
        // (so the segment's span word stays intact until the commit below).
        let front_of = |off: u64| {
            let front = align_up(off + WORD, align).map_or(u64::MAX, |d| d - WORD - off);
            if front != 0 && front < 16 {
                front + align
            } else {
                front
            }
        };
        let fits = |s: &crate::freelist::Segment| {
            front_of(s.off)
                .checked_add(span)
                .is_some_and(|n| n <= s.span)
        };
        let limit = self.bump();
        let seg = match self.g.freelist {
            Freelist::None => None,
            Freelist::Optimistic => self.lists.take::<Optimistic>(&self.b, span, limit, fits)?,
            Freelist::Pessimistic => self.lists.take::<Pessimistic>(&self.b, span, limit, fits)?,
        };
        let Some(seg) = seg else { return Ok(None) };
        let front = front_of(seg.off);
        let hdr = seg.off + front;
        let rest = seg.span - front - span;
        let rem = hdr + span;
        // The segment's header (and its span word) still describe the whole segment, so a crash
        // before the commit below leaves it free. Write everything inside it first.
        let mut listed = None;
        if rest >= 16 && rest >= u64::from(self.g.min_segment) {
            let g = self.fresh_gen(false);
            self.b.word(rem + WORD).store(rest, Ordering::Relaxed);
            self.b.word(rem).store(block::free(g, 0), Ordering::Relaxed);
            listed = Some(g);
        } else if rest > 0 {
            self.b.word(rem).store(block::pad(rest), Ordering::Relaxed);
            self.add_discarded(rest);
        }
        // Always a fresh generation, never `next_gen(seg.gen)`: the offset may have carried a
        // higher generation before (a chunk's rewinds advance its own), and a stale handle to
        // that block must not name this one. Fresh generations come from one counter, so every
        // live generation is issued once (until the 23-bit counter wraps).
        let gen = self.fresh_gen(true);
        let reserved = block::live(len, gen, LiveState::Reserved, 0);
        if front > 0 {
            self.b.word(hdr).store(reserved, Ordering::Relaxed);
            // Commit: the walk now sees the pad, the block and the remainder.
            self.b
                .word(seg.off)
                .store(block::pad(front), Ordering::Relaxed);
            self.add_discarded(front);
        } else {
            // Commit: the walk now sees the block and the remainder.
            self.b.word(hdr).store(reserved, Ordering::Relaxed);
        }
        // SAFETY: the segment is ours since the pop; the data range lies inside it.
        unsafe { self.b.zero(hdr + WORD, span - WORD) };
        self.b.word(hdr).store(
            block::live(len, gen, LiveState::Pending, 0),
            Ordering::Relaxed,
        );
        if let Some(g) = listed {
            self.lists.push(&self.b, rem, rest, g);
        }
        Ok(Some((hdr, gen)))
    }

    /// Gives back a block the caller has moved to DYING with no readers: rewinds the cell's bump
    /// when it is the last block of the cell's chunk, else lists it.
    pub(crate) fn release(&self, cell: &ChunkCell, hdr: u64, len: u64, gen: u32) {
        let Some(span) = block_span(len) else {
            // `check_live` vetted `len` before the block became DYING: not reached. Leaking the
            // block is the answer that cannot panic on an allocator path (invariant A).
            return;
        };
        // Release fence: the header stores below (FREE, a rewind's 0, a list push) are plain
        // stores after the DYING CAS, so they head no release sequence of their own. With the
        // fence, a thread whose Acquire load of this header sees the block gone (`read`, `len_of`
        // refusing the handle) also sees everything that happened before the free, such as the
        // user's swap that retired the handle. Pairs with the Acquire header loads in `read`,
        // `len_of`, `contains`, `get` and `free`.
        fence(Ordering::Release);
        bump_counter(&cell.counters.frees, 1);
        bump_counter(&cell.counters.free_bytes, len);
        let cur = cell.cur.load(Ordering::Relaxed);
        if cur != 0 && cur == hdr + span && hdr >= cell.start.load(Ordering::Relaxed) {
            // The block ends where this thread's chunk is bumped to: move the bump back, keeping
            // invariant Z (everything from `cur` on is zero). Data first, header last.
            // SAFETY: the block is DYING with no readers: ours alone.
            unsafe { self.b.zero(hdr + WORD, span - WORD) };
            self.b.word(hdr).store(0, Ordering::Relaxed);
            cell.cur.store(hdr, Ordering::Relaxed);
            // A fresh generation, not the next one after the cell's: the chain of a chunk's
            // rewinds would run into generations the counter hands out later, and a block at this
            // offset could then get a generation a stale handle still carries.
            cell.gen
                .store(self.fresh_gen(true).into(), Ordering::Relaxed);
            bump_counter(&cell.counters.rewinds, 1);
            return;
        }
        if self.zero_on_free {
            // SAFETY: as above.
            unsafe { self.b.zero(hdr + WORD, span - WORD) };
        }
        let free_gen = block::next_gen(gen, false);
        if self.thread_cache && span <= CACHE_MAX_SPAN {
            let slot = &cell.cache[(span / WORD - 2) as usize];
            let (first, count) = cache_parts(slot.load(Ordering::Relaxed));
            if count < CACHE_DEPTH {
                // The span word first, then the FREE header: a walk sees a whole free segment.
                self.b.word(hdr + WORD).store(span, Ordering::Relaxed);
                self.b
                    .word(hdr)
                    .store(block::free(free_gen, first), Ordering::Relaxed);
                slot.store(cache_head(hdr, count + 1), Ordering::Relaxed);
                return;
            }
        }
        match self.g.freelist {
            Freelist::None => {
                self.b.word(hdr + WORD).store(span, Ordering::Relaxed);
                self.b
                    .word(hdr)
                    .store(block::free(free_gen, 0), Ordering::Relaxed);
                self.add_discarded(span);
            }
            _ => self.lists.push(&self.b, hdr, span, free_gen),
        }
    }

    pub(crate) fn header_snapshot(&self) -> RawHeader {
        let mut bytes = vec![0u8; HEADER_SIZE as usize];
        for off in (0..HEADER_SIZE).step_by(8) {
            let w = self.b.word(off).load(Ordering::Relaxed);
            bytes[off as usize..off as usize + 8].copy_from_slice(&w.to_le_bytes());
        }
        RawHeader::parse(&bytes)
    }

    /// The close protocol: chunk tails back, data durable, then the clean mark durable.
    fn close(&mut self) -> Result<(), Error> {
        if self.read_only {
            return Ok(());
        }
        self.retire_all();
        let bump = self.bump();
        let hw = self.b.word(OFF_HIGH_WATER);
        hw.store(hw.load(Ordering::Relaxed).max(bump), Ordering::Relaxed);
        self.b.flush(self.g.data_start, bump - self.g.data_start)?;
        let sum = format::state_checksum(
            (OFF_CAPACITY..format::HEAP_META_END)
                .step_by(8)
                .map(|off| (off, self.b.word(off).load(Ordering::Relaxed))),
        );
        self.b
            .word(OFF_STATE_CHECKSUM)
            .store(sum, Ordering::Relaxed);
        self.b.word(OFF_STATE).store(STATE_CLEAN, Ordering::Relaxed);
        self.b.flush(0, self.g.data_start)?;
        // Mark the arena closed so the drop does not repeat the protocol.
        self.read_only = true;
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; `Arena::close` reports them. On failure the arena
        // stays marked dirty and the next open recovers it.
        let _ = self.close();
    }
}

/// Ends a coalescing pass when dropped (also when the pass returns early or unwinds), so threads
/// waiting for it never wait forever.
struct PassGuard<'a>(&'a AtomicBool);

impl Drop for PassGuard<'_> {
    fn drop(&mut self) {
        // Release: the pass's pushes happen before the waiters' retries and the next pass; pairs
        // with the Acquire load of the waiters and the Acquire CAS that starts a pass.
        self.0.store(false, Ordering::Release);
    }
}

/// A reader's pin on a block, from `Arena::pin`; unpins on drop (also when the reader unwinds).
struct ReadPin<'a> {
    arena: &'a Arena,
    hdr: u64,
    len: u64,
    /// The block's generation; `None` when nothing was pinned (a read-only arena).
    gen: Option<u32>,
}

impl Drop for ReadPin<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(gen) = self.gen {
            self.arena.inner.unpin(self.hdr, gen, self.arena.lane());
        }
    }
}

/// An exclusive, freshly allocated (zeroed) block. Derefs to its bytes.
///
/// While it lives the block is *pending*: `read`, `get` and `free` of its handle get
/// [`Error::Busy`], so nothing else sees the bytes while they are written. Dropping it publishes
/// the block.
pub struct BlockMut<'a> {
    inner: &'a Inner,
    hdr: u64,
    len: u64,
    gen: u32,
}

impl BlockMut<'_> {
    /// The block's handle (usable by others once this `BlockMut` is dropped).
    #[inline]
    pub fn handle(&self) -> Handle {
        Handle::new(self.hdr + WORD, self.gen)
    }

    /// Offset of the block's first byte from the start of the arena.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.hdr + WORD
    }

    /// Publishes the block and returns its handle.
    #[inline]
    pub fn into_handle(self) -> Handle {
        self.handle()
    }
}

impl Deref for BlockMut<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: in bounds (allocated); PENDING: no one else reads or writes these bytes.
        unsafe { self.inner.b.slice(self.hdr + WORD, self.len) }
    }
}

impl DerefMut for BlockMut<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: in bounds, writable (allocation refuses read-only arenas); PENDING: exclusive,
        // and `&mut self` makes this the only live borrow of the bytes.
        unsafe { self.inner.b.slice_mut(self.hdr + WORD, self.len) }
    }
}

impl Drop for BlockMut<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `hdr` is the header of a block allocated inside the heap: 8-aligned, and
        // `hdr + 8 <= hdr + span <= capacity`, the backing's length.
        let w = unsafe { self.inner.b.word_unchecked(self.hdr) };
        // Release: the bytes written through this BlockMut happen before any `read`, `get` or
        // `free` that observes PUBLISHED (their Acquire).
        w.store(
            block::live(self.len, self.gen, LiveState::Published, 0),
            Ordering::Release,
        );
    }
}

impl std::fmt::Debug for BlockMut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockMut")
            .field("handle", &self.handle())
            .field("len", &self.len)
            .finish()
    }
}
