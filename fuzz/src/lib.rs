//! Shared inputs, model and drivers of parena's fuzz targets.
//!
//! Every input is bounded: at most [`MAX_OPS`] operations, arenas of at most 1 MiB, blocks of at
//! most 64 KiB, so one run takes milliseconds and libFuzzer can explore many of them.
//!
//! The block contents follow [`pattern`]: byte `i` of a block written with seed `s` is
//! `s + i (mod 256)`. In such a block no aligned 8-byte word can decode as a LIVE block header of
//! an arena smaller than 16 MiB (its length field would be at least 2^24), so a forged handle that
//! points into user data can never be mistaken for a real block: the targets may demand `Err` for
//! every forged handle.

use arbitrary::Arbitrary;
use parena::{Arena, Error, Freelist, Handle, Options, Report};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The most operations one input runs.
pub const MAX_OPS: usize = 256;

/// Header layout facts the targets need to build files (see `src/format.rs`).
pub mod layout {
    /// Bytes covered by the header checksum.
    pub const IMMUTABLE_END: usize = 40;
    /// Offset of the header checksum.
    pub const OFF_HEADER_CHECKSUM: usize = 40;
    /// Offset of the first mutable word.
    pub const OFF_CAPACITY: usize = 48;
    /// Offset of the clean/dirty state word.
    pub const OFF_STATE: usize = 56;
    /// Offset of the state checksum.
    pub const OFF_STATE_CHECKSUM: usize = 64;
    /// End of the words the state checksum covers.
    pub const HEAP_META_END: usize = 256 + 256 * 8;
    /// The clean marker.
    pub const STATE_CLEAN: u64 = 0x4e41_454c_4321_0001;
    /// The dirty marker.
    pub const STATE_DIRTY: u64 = 0x5954_5249_4421_0002;
}

/// FNV-1a 64, as the header checksums use.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Rewrites the header checksum of an arena image so that the immutable fields validate.
pub fn fix_header_checksum(file: &mut [u8]) {
    use layout::*;
    if file.len() >= OFF_HEADER_CHECKSUM + 8 {
        let sum = fnv1a(&file[..IMMUTABLE_END]);
        file[OFF_HEADER_CHECKSUM..OFF_HEADER_CHECKSUM + 8].copy_from_slice(&sum.to_le_bytes());
    }
}

/// Rewrites the state checksum so that a CLEAN state word is believed.
pub fn fix_state_checksum(file: &mut [u8]) {
    use layout::*;
    if file.len() >= HEAP_META_END {
        let mut words = Vec::with_capacity(HEAP_META_END - OFF_CAPACITY);
        for off in (OFF_CAPACITY..HEAP_META_END).step_by(8) {
            if off == OFF_STATE || off == OFF_STATE_CHECKSUM {
                words.extend_from_slice(&[0; 8]);
            } else {
                words.extend_from_slice(&file[off..off + 8]);
            }
        }
        let sum = fnv1a(&words);
        file[OFF_STATE_CHECKSUM..OFF_STATE_CHECKSUM + 8].copy_from_slice(&sum.to_le_bytes());
    }
}

/// Byte `i` of a block written with `seed`.
#[inline]
pub fn pattern(seed: u8, i: usize) -> u8 {
    seed.wrapping_add(i as u8)
}

/// `pattern(0, i)` for `i` in `0..512`: any 256 consecutive pattern bytes are a slice of it.
const TABLE: [u8; 512] = {
    let mut t = [0u8; 512];
    let mut i = 0;
    while i < 512 {
        t[i] = i as u8;
        i += 1;
    }
    t
};

/// Fills `buf` (which starts at byte `start` of its block) with the pattern of `seed`.
pub fn fill(buf: &mut [u8], seed: u8, start: usize) {
    for (k, c) in buf.chunks_mut(256).enumerate() {
        let from = usize::from(pattern(seed, start + k * 256));
        c.copy_from_slice(&TABLE[from..from + c.len()]);
    }
}

/// Whether `buf` (bytes from `start` of a block) holds the pattern of `seed`.
pub fn holds(buf: &[u8], seed: u8, start: usize) -> bool {
    buf.chunks(256).enumerate().all(|(k, c)| {
        let from = usize::from(pattern(seed, start + k * 256));
        c == &TABLE[from..from + c.len()]
    })
}

/// A private directory for the files of one fuzzing process (on tmpfs when there is one, so
/// create's fsyncs are cheap).
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let b = tempfile::Builder::new()
            .prefix("parena-fuzz-")
            .tempdir_in("/dev/shm");
        b.or_else(|_| tempfile::Builder::new().prefix("parena-fuzz-").tempdir())
            .expect("a scratch directory")
    })
    .path()
}

/// A fresh file name in [`scratch_dir`].
pub fn scratch_file(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    scratch_dir().join(format!("{tag}-{n}.parena"))
}

/// Which memory the arena lives in.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackingChoice {
    /// `Options::heap`.
    Heap,
    /// `Options::map_anon`.
    Anon,
    /// `Options::map_file` in the scratch directory.
    File,
}

/// A freelist policy.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyChoice {
    /// `Freelist::None`.
    None,
    /// `Freelist::Optimistic`.
    Optimistic,
    /// `Freelist::Pessimistic`.
    Pessimistic,
}

impl PolicyChoice {
    /// The parena value.
    pub fn freelist(self) -> Freelist {
        match self {
            PolicyChoice::None => Freelist::None,
            PolicyChoice::Optimistic => Freelist::Optimistic,
            PolicyChoice::Pessimistic => Freelist::Pessimistic,
        }
    }

    /// Another policy than `self`, chosen by `k`.
    pub fn other(self, k: u8) -> Freelist {
        let all = [Freelist::None, Freelist::Optimistic, Freelist::Pessimistic];
        let others: Vec<_> = all.into_iter().filter(|&f| f != self.freelist()).collect();
        others[k as usize % others.len()]
    }
}

/// How an arena is made: all fields are reduced into valid ranges.
#[derive(Arbitrary, Debug, Clone)]
pub struct Config {
    /// Memory.
    pub backing: BackingChoice,
    /// Freelist policy.
    pub policy: PolicyChoice,
    /// Heap pages beyond the header (reduced to 1..=`max_pages`).
    pub pages: u8,
    /// Chunk size `1 << (9 + c % 8)` (512 B to 64 KiB), or the default.
    pub chunk: Option<u8>,
    /// Minimum listed segment, `8 * m`.
    pub min_segment: u8,
    /// `zero_on_free`.
    pub zero_on_free: bool,
    /// Reserved area length (reduced below 6000).
    pub reserved: u16,
}

impl Config {
    /// The options to create the arena with, and its heap size.
    pub fn options(&self, max_pages: u64) -> Options {
        let reserved = u32::from(self.reserved % 6000);
        let data_start = (4096 + u64::from(reserved)).div_ceil(4096) * 4096;
        let pages = 1 + u64::from(self.pages) % max_pages;
        let mut o = Options::new()
            .capacity(data_start + pages * 4096)
            .freelist(self.policy.freelist())
            .min_segment_size(u32::from(self.min_segment) * 8)
            .zero_on_free(self.zero_on_free)
            .reserved(reserved)
            .preallocate(false);
        if let Some(c) = self.chunk {
            o = o.chunk_size(1 << (9 + c % 8));
        }
        o
    }
}

/// Creates the arena described by `cfg` (and its file, for a file backing).
pub fn create(cfg: &Config, max_pages: u64) -> (Arena, Option<PathBuf>) {
    let o = cfg.options(max_pages);
    match cfg.backing {
        BackingChoice::Heap => (o.heap().expect("heap arena"), None),
        BackingChoice::Anon => (o.map_anon().expect("anonymous arena"), None),
        BackingChoice::File => {
            let path = scratch_file("arena");
            // SAFETY: the file is private to this process and no one else maps or changes it.
            let a = unsafe { o.create_new(true).map_file(&path) }.expect("file arena");
            (a, Some(path))
        }
    }
}

/// One live block of the model.
#[derive(Clone, Copy, Debug)]
pub struct Live {
    /// Its handle.
    pub h: Handle,
    /// Bytes.
    pub len: usize,
    /// Pattern seed of its contents.
    pub seed: u8,
}

/// The span (header included) of a block of `len` bytes.
pub fn span(len: usize) -> u64 {
    8 + (len as u64).div_ceil(8) * 8
}

/// What the arena must hold: live blocks by data offset, handles that died, every handle issued.
#[derive(Default, Debug)]
pub struct Model {
    /// Live blocks by data offset.
    pub live: BTreeMap<u64, Live>,
    /// Handles of freed blocks (the most recent ones).
    pub dead: Vec<Handle>,
    /// Every handle ever handed out: a handle must never be issued twice.
    pub issued: HashSet<u64>,
    /// Root slot values.
    pub roots: [u64; 16],
}

impl Model {
    /// Records a block just allocated; checks it overlaps no live block and its handle is new.
    pub fn insert(&mut self, h: Handle, len: usize, seed: u8) {
        let off = h.offset();
        let (start, end) = (off - 8, off - 8 + span(len));
        if let Some((&o, l)) = self.live.range(..off).next_back() {
            assert!(
                o - 8 + span(l.len) <= start,
                "new block {h:?} ({len} bytes) overlaps live {:?} ({} bytes)",
                l.h,
                l.len
            );
        }
        if let Some((&o, l)) = self.live.range(off..).next() {
            assert!(
                end <= o - 8,
                "new block {h:?} ({len} bytes) overlaps live {:?} ({} bytes)",
                l.h,
                l.len
            );
        }
        assert!(
            self.issued.insert(h.to_u64()),
            "handle {h:?} issued twice: a stale handle to its first block would name this one"
        );
        self.live.insert(off, Live { h, len, seed });
    }

    /// The `pick`-th live block, if any.
    pub fn pick(&self, pick: u16) -> Option<Live> {
        if self.live.is_empty() {
            return None;
        }
        self.live
            .values()
            .nth(pick as usize % self.live.len())
            .copied()
    }

    /// Removes a freed block and remembers its handle as stale.
    pub fn remove(&mut self, h: Handle) -> Live {
        let l = self
            .live
            .remove(&h.offset())
            .expect("freed block in the model");
        if self.dead.len() >= 64 {
            self.dead.remove(0);
        }
        self.dead.push(h);
        l
    }

    /// Whether `h` is the handle of a live block.
    pub fn is_live(&self, h: Handle) -> bool {
        self.live.get(&h.offset()).is_some_and(|l| l.h == h)
    }

    /// Sum of the spans of the live blocks.
    pub fn live_span(&self) -> u64 {
        self.live.values().map(|l| span(l.len)).sum()
    }

    /// Sum of the lengths of the live blocks.
    pub fn live_bytes(&self) -> u64 {
        self.live.values().map(|l| l.len as u64).sum()
    }
}

/// Checks every live block: readable through every accessor, intact, and no two overlapping.
pub fn check_all(arena: &Arena, m: &Model) {
    let mut prev_end = 0u64;
    let mut buf = Vec::new();
    for (&off, l) in &m.live {
        assert!(
            off - 8 >= prev_end,
            "live block {:?} overlaps its predecessor",
            l.h
        );
        prev_end = off - 8 + span(l.len);
        assert!(
            prev_end <= arena.capacity(),
            "block {:?} past the capacity",
            l.h
        );
        assert!(arena.contains(l.h), "live block {:?} not contained", l.h);
        assert_eq!(arena.len_of(l.h).expect("len_of a live block"), l.len);
        buf.clear();
        buf.resize(l.len, 0);
        arena.read(l.h, 0, &mut buf).expect("read a live block");
        assert!(
            holds(&buf, l.seed, 0),
            "live block {:?} ({} bytes, seed {}) was damaged",
            l.h,
            l.len,
            l.seed
        );
    }
}

/// A handle that names no live block: every access must be refused, and nothing may change.
pub fn expect_refused(arena: &Arena, h: Handle) {
    let ok = |e: &Error| {
        matches!(
            e,
            Error::Stale { .. } | Error::DoubleFree { .. } | Error::OutOfBounds { .. }
        )
    };
    assert!(!arena.contains(h), "dead handle {h:?} is contained");
    match arena.len_of(h) {
        Err(e) if ok(&e) => {}
        other => panic!("len_of(dead {h:?}) = {other:?}"),
    }
    let mut b = [0u8; 8];
    match arena.read(h, 0, &mut b) {
        Err(e) if ok(&e) => {}
        other => panic!("read(dead {h:?}) = {other:?}"),
    }
    // SAFETY: nothing frees or writes blocks while the slice lives (it is dropped at once).
    match unsafe { arena.get(h) } {
        Err(e) if ok(&e) => {}
        Ok(s) => panic!("get(dead {h:?}) returned {} bytes", s.len()),
        Err(e) => panic!("get(dead {h:?}) = {e:?}"),
    }
    if !arena.is_read_only() {
        match arena.free(h) {
            Err(e) if ok(&e) => {}
            other => panic!("free(dead {h:?}) = {other:?}"),
        }
    }
}

/// Checks a report of `verify` or `compact` against the model.
pub fn check_report(r: &Report, m: &Model, what: &str) {
    assert!(r.is_clean(), "{what}: problems {r:?}");
    assert_eq!(
        r.live_blocks,
        m.live.len() as u64,
        "{what}: live blocks {r:?}"
    );
    assert_eq!(r.live_bytes, m.live_bytes(), "{what}: live bytes {r:?}");
}

/// Writes the arena's image to a file, opens that file and checks every block there.
pub fn image_round_trip(arena: &mut Arena, m: &Model) {
    let mut img = Vec::new();
    arena.write_image(&mut img).expect("write_image");
    assert_eq!(img.len() as u64, arena.capacity());
    let path = scratch_file("image");
    std::fs::write(&path, &img).expect("write image file");
    {
        // SAFETY: private file.
        let mut a = unsafe { Options::new().create(false).map_file(&path) }.expect("open image");
        assert!(a.was_clean(), "an image opens clean");
        assert_eq!(a.freelist(), arena.freelist());
        check_all(&a, m);
        for (i, &r) in m.roots.iter().enumerate() {
            assert_eq!(a.root(i), r, "root {i} in the image");
        }
        let r = a.verify().expect("verify image");
        check_report(&r, m, "verify image");
    }
    let _ = std::fs::remove_file(&path);
}

// ---------------------------------------------------------------------------------------------
// ops

/// One step of the `ops` target.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    /// Allocate `len % 2049` bytes (0 must be refused), aligned to `1 << (align % 13)` when
    /// `layout`; with `probe`, the block must be busy while its `BlockMut` lives.
    Alloc {
        /// Length.
        len: u16,
        /// Use `alloc_layout`.
        layout: bool,
        /// Alignment exponent.
        align: u8,
        /// Pattern seed.
        seed: u8,
        /// Check `Busy` while pending.
        probe: bool,
    },
    /// Allocate `kb` KiB plus `extra` bytes.
    AllocBig {
        /// KiB.
        kb: u8,
        /// Extra bytes.
        extra: u8,
        /// Pattern seed.
        seed: u8,
    },
    /// Free a live block.
    Free {
        /// Which.
        pick: u16,
    },
    /// Use a handle of a freed block.
    Stale {
        /// Which.
        pick: u16,
    },
    /// Use an arbitrary handle.
    Forged {
        /// Raw handle bits.
        raw: u64,
    },
    /// Use a handle near a live one: offset moved by `delta` words, generation by `gen_delta`.
    ForgedNear {
        /// Which live block.
        pick: u16,
        /// Offset change in words.
        delta: i8,
        /// Generation change.
        gen_delta: u8,
    },
    /// Read part of a live block.
    Read {
        /// Which.
        pick: u16,
        /// Start.
        off: u16,
        /// Length.
        len: u16,
    },
    /// Borrow a live block with `get` and check it.
    Get {
        /// Which.
        pick: u16,
    },
    /// Rewrite a live block through `get_mut`.
    Write {
        /// Which.
        pick: u16,
        /// New seed.
        seed: u8,
    },
    /// `compact()`.
    Compact,
    /// `verify()`.
    Verify,
    /// The flush family.
    Flush {
        /// Range start.
        off: u32,
        /// Range length.
        len: u32,
    },
    /// Set a root slot.
    Root {
        /// Slot.
        slot: u8,
        /// Value.
        value: u64,
    },
    /// Close and reopen (file), or an image round trip (heap, anonymous map). `mode` bits:
    /// 1 try another policy first, 2 open read-only first, 4 try a second writer, 8 grow.
    Reopen {
        /// What to try on the way.
        mode: u8,
    },
    /// File only: copy the file as it is now (as a crash would leave it), drop the arena, open the
    /// copy (recovery). With `pending`, a block is allocated and left pending at the copy.
    Crash {
        /// Leave a block pending at the crash.
        pending: bool,
        /// Its length.
        len: u8,
        /// Its seed.
        seed: u8,
    },
}

/// Input of the `ops` target.
#[derive(Arbitrary, Debug, Clone)]
pub struct OpsInput {
    /// The arena.
    pub config: Config,
    /// The steps (at most [`MAX_OPS`] run).
    pub ops: Vec<Op>,
}

/// Handle bits for `offset` and `gen`.
pub fn handle_bits(offset: u64, gen: u32) -> Handle {
    Handle::from_u64((u64::from(gen & 0xff_ffff) << 40) | ((offset / 8) & ((1 << 40) - 1)))
}

/// A subject under test: the arena, its file, and the options to reopen it with.
pub struct Subject {
    /// The arena (always `Some` between steps).
    pub arena: Option<Arena>,
    /// Its file, for a file arena.
    pub path: Option<PathBuf>,
    /// The policy it was made with.
    pub policy: PolicyChoice,
    /// Reserved length.
    pub reserved: u32,
}

impl Subject {
    /// The arena.
    pub fn a(&self) -> &Arena {
        self.arena.as_ref().expect("arena present")
    }

    /// The arena, mutably.
    pub fn a_mut(&mut self) -> &mut Arena {
        self.arena.as_mut().expect("arena present")
    }

    /// Closes and reopens a file arena (see [`Op::Reopen`]); an image round trip otherwise.
    pub fn reopen(&mut self, m: &Model, mode: u8) {
        let Some(path) = self.path.clone() else {
            image_round_trip(self.a_mut(), m);
            return;
        };
        if mode & 4 != 0 {
            // SAFETY: private file.
            let second = unsafe { Options::new().create(false).map_file(&path) };
            assert!(
                matches!(second, Err(Error::Locked)),
                "second writer: {second:?}"
            );
        }
        let cap = self.a().capacity();
        self.arena.take().expect("arena").close().expect("close");
        if mode & 1 != 0 {
            let before = std::fs::read(&path).expect("read file");
            let other = self.policy.other(mode >> 4);
            // SAFETY: private file.
            let r = unsafe { Options::new().freelist(other).map_file(&path) };
            match r {
                Err(Error::FreelistKind { expected, found }) => {
                    assert_eq!(expected, other as u8);
                    assert_eq!(found, self.policy.freelist() as u8);
                }
                other => panic!("reopen with another policy: {other:?}"),
            }
            assert!(
                std::fs::read(&path).expect("read file") == before,
                "a refused open changed the file"
            );
        }
        if mode & 2 != 0 {
            let before = std::fs::read(&path).expect("read file");
            {
                // SAFETY: private file.
                let ro = unsafe { Options::new().read_only(true).map_file(&path) }
                    .expect("read-only open");
                assert!(ro.was_clean());
                check_all(&ro, m);
                assert!(matches!(ro.alloc(8), Err(Error::ReadOnly)));
                if let Some(l) = m.pick(0) {
                    assert!(matches!(ro.free(l.h), Err(Error::ReadOnly)));
                }
                assert!(matches!(ro.set_root(0, 1), Err(Error::ReadOnly)));
                // A writer cannot come in while a reader holds the file.
                // SAFETY: private file.
                let w = unsafe { Options::new().map_file(&path) };
                assert!(
                    matches!(w, Err(Error::Locked)),
                    "writer beside reader: {w:?}"
                );
            }
            assert!(
                std::fs::read(&path).expect("read file") == before,
                "a read-only open changed the file"
            );
        }
        let mut o = Options::new().create(false).reserved(self.reserved);
        if mode & 8 != 0 {
            o = o.capacity(cap + 4096 * u64::from(1 + (mode >> 4)));
        }
        // SAFETY: private file.
        let a = unsafe { o.map_file(&path) }.expect("reopen");
        assert!(a.was_clean(), "a closed arena reopens clean");
        assert_eq!(a.freelist(), self.policy.freelist());
        if mode & 8 != 0 {
            assert!(a.capacity() > cap);
        } else {
            assert_eq!(a.capacity(), cap);
        }
        self.arena = Some(a);
    }

    /// Copies the file as a crash would leave it and continues on the copy after recovery.
    /// Returns the pending block, if one was left.
    pub fn crash(&mut self, m: &mut Model, pending: Option<(usize, u8)>) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let copy = scratch_file("crash");
        let mut pend = None;
        {
            let a = self.a();
            let blk = pending.and_then(|(len, seed)| {
                let mut b = a.alloc(len).ok()?;
                fill(&mut b, seed, 0);
                Some((b, len, seed))
            });
            // The map is shared: the file's pages hold every store made so far.
            // (`read` and `write` retry EINTR; `fs::copy` does not, and libFuzzer's timer
            // interrupts it.)
            let bytes = std::fs::read(&path).expect("read the file");
            std::fs::write(&copy, bytes).expect("write the copy");
            if let Some((b, len, seed)) = blk {
                pend = Some((b.handle(), len, seed));
                drop(b);
            }
        }
        self.arena.take().expect("arena").close().expect("close");
        let _ = std::fs::remove_file(&path);
        // SAFETY: private file.
        let mut a = unsafe { Options::new().create(false).map_file(&copy) }.expect("recover");
        assert!(!a.was_clean(), "a crashed arena opens dirty");
        let r = a.recovery_report().cloned().expect("a recovery report");
        if let Some((h, len, seed)) = pend {
            m.insert(h, len, seed);
        }
        check_report(&r, m, "recovery");
        assert_eq!(r.pending_blocks, u64::from(pend.is_some()), "{r:?}");
        check_all(&a, m);
        let v = a.verify().expect("verify after recovery");
        check_report(&v, m, "verify after recovery");
        self.arena = Some(a);
        self.path = Some(copy);
    }
}

impl Drop for Subject {
    fn drop(&mut self) {
        drop(self.arena.take());
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn alloc_checked(
    arena: &Arena,
    m: &mut Model,
    len: usize,
    align: Option<usize>,
    seed: u8,
    probe: bool,
) -> Option<Handle> {
    let r = match align {
        Some(al) => arena.alloc_layout(std::alloc::Layout::from_size_align(len, al).ok()?),
        None => arena.alloc(len),
    };
    match r {
        Ok(mut b) => {
            assert!(len > 0, "a zero-sized block was allocated");
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0), "a new block is not zeroed");
            let h = b.handle();
            assert_eq!(h.offset(), b.offset());
            assert_eq!(h.offset() % 8, 0);
            if let Some(al) = align {
                assert_eq!(b.as_ptr() as usize % al, 0, "misaligned block");
            }
            fill(&mut b, seed, 0);
            if probe {
                let mut x = [0u8; 1];
                assert!(
                    matches!(arena.read(h, 0, &mut x), Err(Error::Busy { .. })),
                    "a pending block must be busy"
                );
                assert!(matches!(arena.free(h), Err(Error::Busy { .. })));
                assert!(!arena.contains(h));
            }
            drop(b);
            m.insert(h, len, seed);
            Some(h)
        }
        Err(Error::ZeroSize) => {
            assert_eq!(len, 0);
            None
        }
        Err(Error::Full { requested, .. }) => {
            assert_eq!(requested, len as u64);
            None
        }
        Err(e) => panic!("alloc({len}, {align:?}) = {e:?}"),
    }
}

/// Runs one `ops` input.
pub fn run_ops(input: &OpsInput) {
    let cfg = &input.config;
    let (arena, path) = create(cfg, 64);
    let mut s = Subject {
        arena: Some(arena),
        path,
        policy: cfg.policy,
        reserved: u32::from(cfg.reserved % 6000),
    };
    let mut m = Model::default();
    for op in input.ops.iter().take(MAX_OPS) {
        step(&mut s, &mut m, op);
        check_all(s.a(), &m);
        let st = s.a().stats();
        assert_eq!(st.data_start + st.allocated + st.remaining, st.capacity);
    }
    let r = s.a_mut().verify().expect("final verify");
    check_report(&r, &m, "final verify");
}

fn step(s: &mut Subject, m: &mut Model, op: &Op) {
    match *op {
        Op::Alloc {
            len,
            layout,
            align,
            seed,
            probe,
        } => {
            let al = layout.then(|| 1usize << (align % 13));
            alloc_checked(s.a(), m, usize::from(len % 2049), al, seed, probe);
        }
        Op::AllocBig { kb, extra, seed } => {
            let len = usize::from(kb % 65) * 1024 + usize::from(extra);
            alloc_checked(s.a(), m, len, None, seed, false);
        }
        Op::Free { pick } => {
            if let Some(l) = m.pick(pick) {
                s.a().free(l.h).expect("free a live block");
                m.remove(l.h);
                expect_refused(s.a(), l.h);
            }
        }
        Op::Stale { pick } => {
            if !m.dead.is_empty() {
                let h = m.dead[pick as usize % m.dead.len()];
                assert!(!m.is_live(h), "a dead handle is live again: {h:?}");
                expect_refused(s.a(), h);
            }
        }
        Op::Forged { raw } => {
            let h = Handle::from_u64(raw);
            if !m.is_live(h) {
                expect_refused(s.a(), h);
            }
        }
        Op::ForgedNear {
            pick,
            delta,
            gen_delta,
        } => {
            if let Some(l) = m.pick(pick) {
                let off = (l.h.offset() as i64 + i64::from(delta) * 8).max(0) as u64;
                let h = handle_bits(off, l.h.generation().wrapping_add(u32::from(gen_delta)));
                if !m.is_live(h) {
                    expect_refused(s.a(), h);
                }
            }
        }
        Op::Read { pick, off, len } => {
            if let Some(l) = m.pick(pick) {
                let (off, n) = (usize::from(off % 4200), usize::from(len % 4200));
                let mut buf = vec![0u8; n];
                match s.a().read(l.h, off, &mut buf) {
                    Ok(()) => {
                        assert!(off + n <= l.len, "read past the end succeeded");
                        assert!(holds(&buf, l.seed, off), "partial read mismatch");
                    }
                    Err(Error::OutOfBounds { .. }) => assert!(off + n > l.len),
                    Err(e) => panic!("read: {e:?}"),
                }
            }
        }
        Op::Get { pick } => {
            if let Some(l) = m.pick(pick) {
                // SAFETY: single-threaded; nothing frees or writes the block while `b` lives.
                let b = unsafe { s.a().get(l.h) }.expect("get a live block");
                assert_eq!(b.len(), l.len);
                assert!(holds(b, l.seed, 0));
            }
        }
        Op::Write { pick, seed } => {
            if let Some(l) = m.pick(pick) {
                {
                    // SAFETY: single-threaded; no other reference to the block exists while `b`
                    // lives, and it is not freed.
                    let b = unsafe { s.a().get_mut(l.h) }.expect("get_mut a live block");
                    fill(b, seed, 0);
                }
                m.live.get_mut(&l.h.offset()).expect("live").seed = seed;
            }
        }
        Op::Compact => {
            let r = s.a_mut().compact().expect("compact");
            check_report(&r, m, "compact");
            let v = s.a_mut().verify().expect("verify after compact");
            check_report(&v, m, "verify after compact");
            if m.live.is_empty() {
                assert_eq!(
                    s.a().stats().allocated,
                    0,
                    "empty arena after compact: {r:?}"
                );
            }
        }
        Op::Verify => {
            let r = s.a_mut().verify().expect("verify");
            check_report(&r, m, "verify");
            assert_eq!(r.pending_blocks, 0);
        }
        Op::Flush { off, len } => {
            let a = s.a();
            a.flush().expect("flush");
            a.flush_header().expect("flush_header");
            a.flush_background().expect("flush_background");
            let cap = a.capacity();
            let (off, len) = (u64::from(off), u64::from(len));
            let r = a.flush_range(off, len);
            if off + len <= cap {
                r.expect("flush_range in bounds");
            } else {
                assert!(matches!(r, Err(Error::OutOfBounds { .. })), "{r:?}");
            }
        }
        Op::Root { slot, value } => {
            let i = usize::from(slot) % 17;
            let r = s.a().set_root(i, value);
            if i < 16 {
                r.expect("set_root");
                m.roots[i] = value;
                assert_eq!(s.a().root(i), value);
            } else {
                assert!(matches!(r, Err(Error::OutOfBounds { .. })));
            }
        }
        Op::Reopen { mode } => {
            s.reopen(m, mode);
            for (i, &r) in m.roots.iter().enumerate() {
                assert_eq!(s.a().root(i), r, "root {i} after reopen");
            }
        }
        Op::Crash { pending, len, seed } => {
            s.crash(m, pending.then_some((usize::from(len) + 1, seed)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// freelist

/// One step of the `freelist` target.
#[derive(Arbitrary, Debug, Clone)]
pub enum FlOp {
    /// Allocate `len % max + 1` bytes, `max` a few chunks.
    Alloc {
        /// Length.
        len: u16,
        /// Seed.
        seed: u8,
    },
    /// Allocate a small block (1..=256 bytes).
    Small {
        /// Length.
        len: u8,
        /// Seed.
        seed: u8,
    },
    /// Allocate blocks of one size until the arena is full (at most 256).
    Fill {
        /// Length.
        len: u16,
        /// Seed.
        seed: u8,
    },
    /// Free a block.
    Free {
        /// Which.
        pick: u16,
    },
    /// Free the block allocated last (a bump rewind when it ends the chunk).
    FreeNewest,
    /// Free every `k`-th live block, starting at `phase`: neighbours to merge.
    FreeEvery {
        /// Stride (reduced to 1..=4).
        k: u8,
        /// Start.
        phase: u8,
    },
    /// `compact()`.
    Compact,
    /// Close and reopen; first try another policy (which must be refused) when `other`.
    Reopen {
        /// Try another policy first.
        other: bool,
        /// Which other policy.
        k: u8,
    },
}

/// Input of the `freelist` target.
#[derive(Arbitrary, Debug, Clone)]
pub struct FreelistInput {
    /// Policy.
    pub policy: PolicyChoice,
    /// File-backed (reopen closes and opens the file); else heap (reopen goes through an image
    /// and continues on the file it was opened from).
    pub file: bool,
    /// Heap pages (reduced to 1..=16).
    pub pages: u8,
    /// Chunk size `1 << (9 + c % 4)`: 512 B .. 4 KiB, so big blocks take whole chunks.
    pub chunk: u8,
    /// Minimum listed segment `8 * m`.
    pub min_segment: u8,
    /// The steps.
    pub ops: Vec<FlOp>,
}

/// Checks the walk's accounting: every heap byte up to the bump offset is in exactly one of the
/// live blocks, the free segments, the fillers or the gaps.
fn check_accounting(a: &mut Arena, m: &Model, what: &str) -> Report {
    let r = a.verify().expect("verify");
    check_report(&r, m, what);
    let st = a.stats();
    let pads = r.leaked_bytes - (r.free_bytes - r.listed_bytes.min(r.free_bytes));
    assert_eq!(
        m.live_span() + r.free_bytes + pads + r.gap_bytes,
        r.bump - st.data_start,
        "{what}: heap bytes do not add up: {r:?}"
    );
    assert_eq!(r.bump - st.data_start, st.allocated, "{what}: {r:?}");
    if a.freelist() == Freelist::None {
        assert_eq!(r.listed_segments, 0, "{what}: listed without a freelist");
    }
    r
}

/// Runs one `freelist` input.
pub fn run_freelist(input: &FreelistInput) {
    let cfg = Config {
        backing: if input.file {
            BackingChoice::File
        } else {
            BackingChoice::Heap
        },
        policy: input.policy,
        pages: input.pages % 16,
        chunk: Some(input.chunk % 4),
        min_segment: input.min_segment,
        zero_on_free: false,
        reserved: 0,
    };
    let (arena, path) = create(&cfg, 16);
    let mut s = Subject {
        arena: Some(arena),
        path,
        policy: input.policy,
        reserved: 0,
    };
    let chunk = 512u64 << (input.chunk % 4);
    let max = (chunk * 3) as usize;
    let mut m = Model::default();
    let mut order: Vec<Handle> = Vec::new();
    for op in input.ops.iter().take(MAX_OPS) {
        match *op {
            FlOp::Alloc { len, seed } => {
                let len = usize::from(len) % max + 1;
                if let Some(h) = alloc_checked(s.a(), &mut m, len, None, seed, false) {
                    order.push(h);
                }
            }
            FlOp::Small { len, seed } => {
                let len = usize::from(len) + 1;
                if let Some(h) = alloc_checked(s.a(), &mut m, len, None, seed, false) {
                    order.push(h);
                }
            }
            FlOp::Fill { len, seed } => {
                let len = usize::from(len) % max + 1;
                for i in 0..256u16 {
                    match alloc_checked(s.a(), &mut m, len, None, seed ^ i as u8, false) {
                        Some(h) => order.push(h),
                        None => break,
                    }
                }
            }
            FlOp::Free { pick } => {
                if let Some(l) = m.pick(pick) {
                    s.a().free(l.h).expect("free");
                    m.remove(l.h);
                    expect_refused(s.a(), l.h);
                }
            }
            FlOp::FreeNewest => {
                while let Some(h) = order.pop() {
                    if m.is_live(h) {
                        s.a().free(h).expect("free newest");
                        m.remove(h);
                        expect_refused(s.a(), h);
                        break;
                    }
                }
            }
            FlOp::FreeEvery { k, phase } => {
                let k = usize::from(k % 4) + 1;
                let victims: Vec<Handle> = m
                    .live
                    .values()
                    .skip(usize::from(phase) % k)
                    .step_by(k)
                    .map(|l| l.h)
                    .collect();
                for h in victims {
                    s.a().free(h).expect("free every k-th");
                    m.remove(h);
                }
            }
            FlOp::Compact => {
                let r = s.a_mut().compact().expect("compact");
                check_report(&r, &m, "compact");
                if m.live.is_empty() {
                    let st = s.a().stats();
                    assert_eq!(st.allocated, 0, "compact of an empty arena: {r:?}");
                    // Nothing leaked: the whole heap is one block again.
                    let all = (st.capacity - st.data_start - 8) as usize;
                    let h = alloc_checked(s.a(), &mut m, all, None, 7, false)
                        .expect("the whole heap after compact");
                    s.a().free(h).expect("free the whole-heap block");
                    m.remove(h);
                }
            }
            FlOp::Reopen { other, k } => {
                let mode = if other { 1 | (k << 4) } else { 0 };
                if s.path.is_some() {
                    s.reopen(&m, mode);
                } else {
                    // Heap: move to the file its image makes, and go on there.
                    let mut img = Vec::new();
                    s.a_mut().write_image(&mut img).expect("write_image");
                    let path = scratch_file("flimage");
                    std::fs::write(&path, &img).expect("write image");
                    s.arena = None;
                    s.path = Some(path);
                    // SAFETY: private file.
                    let a = unsafe {
                        Options::new()
                            .create(false)
                            .map_file(s.path.as_ref().unwrap())
                    }
                    .expect("open image");
                    s.arena = Some(a);
                    s.reopen(&m, mode);
                }
            }
        }
        check_all(s.a(), &m);
        check_accounting(s.a_mut(), &m, "after step");
    }
}

// ---------------------------------------------------------------------------------------------
// open_bytes

/// Kinds of template for the `open_bytes` target.
const TEMPLATES: usize = 4;

/// Valid arena images to mutate: clean or dirty, each policy, with and without a reserved area.
pub fn template(i: usize) -> &'static [u8] {
    static T: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    &T.get_or_init(|| (0..TEMPLATES).map(make_template).collect())[i % TEMPLATES]
}

fn make_template(i: usize) -> Vec<u8> {
    let policy = [
        Freelist::Optimistic,
        Freelist::Pessimistic,
        Freelist::None,
        Freelist::Optimistic,
    ][i];
    let o = Options::new()
        .capacity(4096 * 5)
        .chunk_size(512)
        .freelist(policy)
        .reserved(if i == 1 { 100 } else { 0 })
        .preallocate(false);
    let path = scratch_file("template");
    // SAFETY: private file.
    let a = unsafe { o.map_file(&path) }.expect("template arena");
    let mut hs = Vec::new();
    for k in 0..24usize {
        let mut b = a.alloc(1 + k * 37 % 700).expect("template alloc");
        fill(&mut b, k as u8, 0);
        hs.push(b.into_handle());
    }
    for (k, h) in hs.iter().enumerate() {
        if k % 3 == 1 {
            a.free(*h).expect("template free");
        }
    }
    for r in 0..4 {
        a.set_root(r, hs[r * 3].to_u64()).expect("root");
    }
    let bytes = if i == 3 {
        // Dirty: the file as a crash would leave it.
        std::fs::read(&path).expect("read template")
    } else {
        drop(a);
        std::fs::read(&path).expect("read template")
    };
    let _ = std::fs::remove_file(&path);
    bytes
}

/// Builds the file bytes for an `open_bytes` input. Byte 0: bit 7 selects a template (bits 0-1
/// which) patched by the rest, else the rest is the file itself. Bits 4 and 5 re-seal the header
/// and state checksums after patching.
pub fn build_file(data: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    if mode & 0x80 == 0 {
        return rest.to_vec();
    }
    let mut f = template(usize::from(mode & 3)).to_vec();
    let mut r = rest;
    // Patch records: [kind, off_lo, off_hi, n, n bytes...]
    while r.len() >= 4 {
        let kind = r[0];
        let off = usize::from(u16::from_le_bytes([r[1], r[2]]));
        let n = usize::from(r[3] % 17);
        let body = &r[4..(4 + n).min(r.len())];
        r = &r[(4 + n).min(r.len())..];
        match kind % 4 {
            // Bytes at an offset in the header page.
            0 => {
                let off = off % f.len().min(4096);
                let end = (off + body.len()).min(f.len());
                f[off..end].copy_from_slice(&body[..end - off]);
            }
            // A word in the heap, 8-aligned.
            1 => {
                let off = (off * 8) % f.len();
                let end = (off + body.len().min(8)).min(f.len());
                f[off..end].copy_from_slice(&body[..end - off]);
            }
            // Truncate.
            2 => {
                let len = (off * 4) % (f.len() + 1);
                f.truncate(len);
                if f.is_empty() {
                    break;
                }
            }
            // Extend with zeros.
            _ => f.resize(f.len() + (off % 64) * 512, 0),
        }
    }
    if mode & 0x10 != 0 {
        fix_header_checksum(&mut f);
    }
    if mode & 0x20 != 0 {
        fix_state_checksum(&mut f);
    }
    f
}

/// Runs one `open_bytes` input: byte 0 builds the file (see [`build_file`]), byte 1 the options.
pub fn run_open_bytes(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let opts = data[0];
    let file = build_file(&data[1..]);
    let path = scratch_file("bytes");
    std::fs::write(&path, &file).expect("write the input file");
    let read_only = opts & 1 != 0;
    let mut o = Options::new().create(false).read_only(read_only);
    if opts & 2 != 0 {
        o = o.freelist(
            [Freelist::None, Freelist::Optimistic, Freelist::Pessimistic]
                [usize::from(opts >> 6) % 3],
        );
    }
    if opts & 4 != 0 {
        o = o.capacity(4096 * u64::from(1 + (opts >> 4)));
    }
    if opts & 8 != 0 {
        o = o.reserved(100);
    }
    // SAFETY: private file; nothing else maps or changes it.
    let opened = unsafe { o.map_file(&path) };
    match opened {
        Err(_) => {
            let now = std::fs::read(&path).expect("read back");
            assert!(now == file, "a failed open changed the file");
        }
        Ok(mut a) => {
            exercise(&mut a, read_only);
            drop(a);
            if read_only {
                let now = std::fs::read(&path).expect("read back");
                assert!(now == file, "a read-only open changed the file");
            } else {
                // The arena it left must open again.
                // SAFETY: private file.
                let mut again = unsafe { Options::new().create(false).map_file(&path) }
                    .expect("reopen after a successful open");
                let _ = again.verify().expect("verify");
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

fn exercise(a: &mut Arena, read_only: bool) {
    let st = a.stats();
    assert_eq!(st.data_start + st.allocated + st.remaining, st.capacity);
    // A writable open of a dirty arena walked and repaired the heap: from then on it must behave
    // exactly like a healthy arena. A clean one is trusted as stored (open is O(1)): only typed
    // errors, no panic, no hang, no out-of-bounds access.
    let strict = a.recovery_report().is_some();
    let first = a.verify().expect("verify");
    if strict {
        assert!(
            first.is_clean(),
            "a recovered arena does not verify: {first:?}"
        );
    }
    // Handles stored in the roots, and whatever else they hold.
    let mut buf = [0u8; 64];
    for i in 0..16 {
        let h = Handle::from_u64(a.root(i));
        let _ = a.contains(h);
        let n = a.len_of(h).map_or(0, |n| n.min(buf.len()));
        if strict {
            let _ = a.read(h, 0, &mut buf[..n]);
        } else {
            // Open finding (see fuzz/README.md): in a trusted clean file, a block header with
            // the reader count at its maximum makes `read` wait forever for a slot. `get` takes
            // no pin.
            // SAFETY: single-threaded; nothing frees or writes the block while `b` lives.
            if let Ok(b) = unsafe { a.get(h) } {
                buf[..n].copy_from_slice(&b[..n]);
            }
        }
    }
    if read_only {
        assert!(matches!(a.alloc(8), Err(Error::ReadOnly)));
        return;
    }
    let mut m = Model::default();
    let mut hs = Vec::new();
    for k in 0..12usize {
        let len = 1 + k * 53 % 900;
        match a.alloc(len) {
            Ok(mut b) => {
                if strict {
                    assert!(b.iter().all(|&x| x == 0), "a new block is not zeroed");
                }
                fill(&mut b, k as u8, 0);
                let h = b.into_handle();
                hs.push(h);
                if strict {
                    m.insert(h, len, k as u8);
                }
            }
            Err(Error::Full { .. }) => {}
            Err(Error::Corrupt { .. }) => assert!(!strict, "alloc in a recovered arena: corrupt"),
            Err(e) => panic!("alloc: {e:?}"),
        }
    }
    for h in hs.iter().step_by(2) {
        match a.free(*h) {
            Ok(()) => {
                if strict {
                    m.remove(*h);
                }
            }
            Err(e) => assert!(!strict, "free in a recovered arena: {e:?}"),
        }
    }
    // Roots that name blocks: free them too (handles from the file are not trusted).
    for i in 0..16 {
        let h = Handle::from_u64(a.root(i));
        if !hs.contains(&h) {
            let _ = a.free(h);
        }
    }
    if strict {
        check_all(a, &m);
        let r = a.verify().expect("verify");
        assert!(r.is_clean(), "a recovered arena went bad: {r:?}");
    }
    match a.compact() {
        Ok(r) => {
            if strict {
                assert!(r.is_clean(), "compact: {r:?}");
                check_all(a, &m);
            }
        }
        Err(Error::Corrupt { .. }) => assert!(!strict, "compact refused a recovered arena"),
        Err(e) => panic!("compact: {e:?}"),
    }
    let _ = a.verify().expect("verify");
}

#[cfg(test)]
mod tests {
    //! Smoke tests: random inputs through each driver, on a stable toolchain, without libFuzzer.
    use super::*;
    use arbitrary::Unstructured;

    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn ops_smoke() {
        for seed in 0..300 {
            let data = bytes(seed, 2000);
            if let Ok(input) = OpsInput::arbitrary(&mut Unstructured::new(&data)) {
                run_ops(&input);
            }
        }
    }

    #[test]
    fn freelist_smoke() {
        for seed in 0..300 {
            let data = bytes(seed, 1000);
            if let Ok(input) = FreelistInput::arbitrary(&mut Unstructured::new(&data)) {
                run_freelist(&input);
            }
        }
    }

    #[test]
    fn open_bytes_smoke() {
        for seed in 0..300 {
            let mut data = bytes(seed, 200);
            data[1] |= 0x80;
            run_open_bytes(&data);
        }
    }
}
