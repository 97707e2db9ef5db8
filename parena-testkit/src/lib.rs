//! What parena's integration tests (`tests/all`) and fuzz targets (`fuzz/`) share: the byte
//! patterns blocks are filled with, a model of the live blocks (a `BTreeMap` by data offset) and
//! the checks that compare an arena with it. Test code only: a dev-dependency of parena, never a
//! dependency of its library.
//!
//! The private layout facts (header offsets, checksums, handle and header-word packing) come from
//! the crate itself, through [`layout`] (`parena::testkit`): nothing here re-derives them.
//!
//! The block contents follow [`pattern`]: byte `i` of a block written with seed `s` is
//! `s + i (mod 256)`, so a damaged or overlapping block shows. Tests of the handle check fill
//! blocks with [`header_shaped`] words instead: the check reads the start map before the header
//! word, so user bytes never make a forged handle pass, and a test may demand `Err` for every
//! handle that is not exactly a live block's own.

use parena::{Arena, Error, Handle, Report};
use std::collections::{BTreeMap, HashSet};

pub use parena::testkit as layout;

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

/// A pattern with no zero byte: byte `i` of a block with seed `seed`. It differs between
/// neighbours and between blocks, and is never the zero a reused or overlapping block would show.
#[inline]
pub fn pattern_nonzero(seed: u8, i: usize) -> u8 {
    seed.wrapping_add((i as u8).wrapping_mul(31)) | 1
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
#[derive(Debug)]
pub struct Model {
    /// Live blocks by data offset.
    pub live: BTreeMap<u64, Live>,
    /// Handles of freed blocks (the most recent [`Model::keep_dead`]).
    pub dead: Vec<Handle>,
    /// How many freed handles [`Model::dead`] keeps (64 by default).
    pub keep_dead: usize,
    /// Every handle ever handed out: a handle must never be issued twice.
    pub issued: HashSet<u64>,
    /// Root slot values.
    pub roots: [u64; 16],
}

impl Default for Model {
    fn default() -> Model {
        Model {
            live: BTreeMap::new(),
            dead: Vec::new(),
            keep_dead: 64,
            issued: HashSet::new(),
            roots: [0; 16],
        }
    }
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
        if self.dead.len() >= self.keep_dead {
            let _oldest: Handle = self.dead.remove(0);
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
    expect_refused_with(arena, h, |e| {
        matches!(
            e,
            Error::Stale { .. } | Error::DoubleFree { .. } | Error::OutOfBounds { .. }
        )
    });
}

/// [`expect_refused`] with the errors `ok` accepts: `contains` false; `len_of`, `read`,
/// `read_with`, `get` and (on a writable arena) `free` each an error `ok` accepts.
pub fn expect_refused_with(arena: &Arena, h: Handle, ok: impl Fn(&Error) -> bool) {
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
    match arena.read_with(h, <[u8]>::len) {
        Err(e) if ok(&e) => {}
        other => panic!("read_with(dead {h:?}) = {other:?}"),
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

/// Allocates `len` bytes filled with the pattern of `seed`; the new block must be zeroed.
pub fn alloc_filled(a: &Arena, len: usize, seed: u8) -> Result<Handle, Error> {
    let mut b = a.alloc(len)?;
    assert!(b.iter().all(|&x| x == 0), "a new block is not zeroed");
    fill(&mut b, seed, 0);
    Ok(b.into_handle())
}

/// Asserts block `h` holds `len` bytes of the pattern of `seed`.
pub fn intact(a: &Arena, h: Handle, len: usize, seed: u8) {
    let mut buf = vec![0u8; len];
    a.read(h, 0, &mut buf).expect("read a live block");
    assert!(holds(&buf, seed, 0), "block {h:?} was damaged");
}

/// Allocates through `alloc` (or `alloc_layout` with `align`) and checks the new block: zeroed,
/// aligned, its handle naming it; with `probe`, busy while its `BlockMut` lives. Fills it with
/// the pattern of `seed` and records it in the model (which checks it overlaps no live block and
/// its handle is new). `ZeroSize` and `Full` (with the requested length) give `None`.
pub fn alloc_checked(
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

/// A FREE header word (as parena writes it, check code included).
pub fn free_word(generation: u32, next: u64) -> u64 {
    layout::free_word(generation & 0x1f_ffff, next % (1 << 41) / 8 * 8)
}

/// A PAD filler word covering `span` bytes (as parena writes it, check code included).
pub fn pad_word(span: u64) -> u64 {
    layout::pad_word(span.max(8) / 8 * 8)
}

/// A header-shaped word for user bytes, chosen by `sel` (`sel % 8` picks the shape) among those a
/// forger would write, from `real` (length, generation) pairs of real blocks: the exact LIVE header
/// of one of them; a LIVE word with one's length and another's generation changed by 0, ±1 or ±2;
/// a LIVE word with a nearby length and some readers; a FREE word with a real generation; a PAD
/// word; `own` (the block's own header); a LIVE word with a small length; an odd generation.
/// `real` must not be empty.
pub fn header_shaped(sel: u64, real: &[(u64, u32)], own: u64) -> u64 {
    let (len_a, gen_a) = real[(sel >> 8) as usize % real.len()];
    let (len_b, gen_b) = real[(sel >> 24) as usize % real.len()];
    let dg = [0u32, 1, 2, 0xff_ffff, 0xff_fffe][(sel >> 40) as usize % 5];
    let g = gen_b.wrapping_add(dg) & 0xff_ffff;
    let len_a = len_a & parena::MAX_BLOCK_LEN;
    match sel % 8 {
        0 => layout::live_word(len_a, gen_a & 0xff_ffff, 0),
        1 => layout::live_word(len_a, g, 0),
        2 => layout::live_word(
            (len_a + (sel >> 48) % 64) & parena::MAX_BLOCK_LEN,
            g,
            (sel >> 56) % 8,
        ),
        3 => free_word(g, (sel >> 16) % 4096 * 8),
        4 => pad_word(8 * (1 + (sel >> 16) % 512)),
        5 => own,
        6 => layout::live_word(1 + (sel >> 48) % 4096, g, 0),
        _ => layout::live_word(len_b & 0xffff_ffff, g | 1, 0),
    }
}
