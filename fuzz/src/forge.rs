//! The `forge` target: blocks whose bytes look like block headers, and handles forged from them.
//!
//! Block contents here are not the byte pattern of the other targets: they are LIVE, FREE and PAD
//! header words built from the real handles' generations and lengths, copies of the blocks' own
//! headers, real handles' bits and words from the input. The handle check reads the start map
//! before the word at `offset - 8`, so none of these words may make a forged handle pass: every
//! handle that is not exactly a live block's own must be refused by `contains`, `len_of`,
//! `read`, `read_with`, `get` and `free`, and a refused `free` must change nothing.

use crate::subject::{create_with, scratch_file};
use crate::{Config, MAX_OPS};
use allocator_api2::alloc::Allocator;
use arbitrary::Arbitrary;
use parena::{Arena, Error, Handle, Options};
use parena_testkit::layout::{decode_live, forge_handle, live_word, offset_of_ptr};
use parena_testkit::{expect_refused_with, header_shaped, span, Model};
use std::alloc::Layout;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::ptr::NonNull;

/// Where one word of a block's contents comes from.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum WordSrc {
    /// A header-shaped word ([`header_shaped`]) from the real generations and lengths.
    Shaped(u64),
    /// The exact header word of the `pick`-th live block.
    HeaderOf(u16),
    /// The handle bits of the `pick`-th live block (a content word that is a real handle).
    HandleOf(u16),
    /// A word from the input.
    Raw(u64),
}

/// How a handle is forged.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ForgeHow {
    /// Word `word` of live block `pick`'s contents, read as a handle.
    Content {
        /// Which block.
        pick: u16,
        /// Which word.
        word: u16,
    },
    /// Offset of block `pick` moved by `k` words, generation of handle `gen_from` (live, dead or
    /// foreign) changed by `dgen`.
    Near {
        /// Which block.
        pick: u16,
        /// Words to move.
        k: i16,
        /// Whose generation.
        gen_from: u16,
        /// Generation change.
        dgen: i8,
    },
    /// A foreign block's offset with its header's generation changed by `dgen`.
    Foreign {
        /// Which foreign block.
        pick: u16,
        /// Generation change.
        dgen: i8,
    },
    /// Any 64 bits.
    Raw(u64),
}

/// One step of the `forge` target.
#[derive(Arbitrary, Debug, Clone)]
pub enum ForgeOp {
    /// Allocate `len % 1200 + 1` bytes (aligned to `1 << (a % 13)` with `align`) and fill them
    /// from `words`.
    Alloc {
        /// Length.
        len: u16,
        /// Alignment exponent for `alloc_layout`.
        align: Option<u8>,
        /// Content words, used in turn (the block's words cycle through them).
        words: [WordSrc; 4],
    },
    /// Free a live block.
    Free {
        /// Which.
        pick: u16,
    },
    /// Rewrite a live block's contents.
    Write {
        /// Which.
        pick: u16,
        /// Content words.
        words: [WordSrc; 4],
    },
    /// Allocate through `Allocator for &Arena` (a FOREIGN block) and fill it.
    ForeignAlloc {
        /// Length, `len % 600 + 1`.
        len: u16,
        /// Alignment exponent (`a % 13`).
        align: u8,
        /// Content words.
        words: [WordSrc; 4],
    },
    /// Give a FOREIGN block back.
    ForeignFree {
        /// Which.
        pick: u16,
    },
    /// Forge a handle and use it.
    Forge(ForgeHow),
    /// Forge handles at every word of a live block and its neighbours with every real
    /// generation.
    Sweep {
        /// Around which block.
        pick: u16,
    },
    /// `compact()` (foreign blocks stay).
    Compact,
    /// Image round trip (heap, anonymous) or close and reopen (file).
    Reopen,
    /// File only: open a copy of the file as a crash leaves it (recovery walks the heap).
    Crash,
}

/// Input of the `forge` target.
#[derive(Arbitrary, Debug, Clone)]
pub struct ForgeInput {
    /// The arena (at most 16 heap pages).
    pub config: Config,
    /// Per-thread cache of freed blocks.
    pub thread_cache: bool,
    /// The steps.
    pub ops: Vec<ForgeOp>,
}

/// A block handed out through the allocator interface.
struct Foreign {
    ptr: NonNull<u8>,
    layout: Layout,
    offset: u64,
    generation: u32,
    bytes: Vec<u8>,
}

struct State {
    arena: Option<Arena>,
    path: Option<PathBuf>,
    m: Model,
    /// Contents of each live block, by data offset.
    bytes: BTreeMap<u64, Vec<u8>>,
    foreign: Vec<Foreign>,
}

impl State {
    fn a(&self) -> &Arena {
        self.arena.as_ref().expect("arena present")
    }

    /// Every generation a forger knows: live, dead and foreign blocks'.
    fn gens(&self) -> Vec<u32> {
        let mut g: Vec<u32> = self.m.live.values().map(|l| l.h.generation()).collect();
        g.extend(self.m.dead.iter().map(|h| h.generation()));
        g.extend(self.foreign.iter().map(|f| f.generation));
        if g.is_empty() {
            g.push(1);
        }
        g
    }

    fn words(&self, srcs: &[WordSrc], own: Handle, len: usize) -> Vec<u8> {
        let mut real: Vec<(u64, u32)> = self.gens().into_iter().map(|g| (8, g)).collect();
        real.extend(
            self.m
                .live
                .values()
                .map(|l| (l.len as u64, l.h.generation())),
        );
        real.push((len as u64, own.generation()));
        let own_word = live_word(len as u64, own.generation(), 0);
        let pick = |p: u16| self.m.pick(p);
        let mut out = Vec::with_capacity(len + 8);
        let mut i = 0;
        while out.len() < len {
            let w = match srcs.get(i % srcs.len().max(1)) {
                None => own_word,
                Some(&WordSrc::Shaped(sel)) => header_shaped(sel, &real, own_word),
                Some(&WordSrc::HeaderOf(p)) => {
                    pick(p).map_or(own_word, |l| live_word(l.len as u64, l.h.generation(), 0))
                }
                Some(&WordSrc::HandleOf(p)) => pick(p).map_or(own.to_u64(), |l| l.h.to_u64()),
                Some(&WordSrc::Raw(w)) => w,
            };
            out.extend_from_slice(&w.to_le_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    /// Every live block reads back as the model holds it; every foreign block too.
    fn check(&self) {
        let a = self.a();
        for (off, l) in &self.m.live {
            let want = &self.bytes[off];
            assert!(a.contains(l.h), "live block {:?} not contained", l.h);
            assert_eq!(a.len_of(l.h).expect("len_of a live block"), l.len);
            let same = a.read_with(l.h, |b| b == &want[..]);
            assert_eq!(same.ok(), Some(true), "live block {:?} changed", l.h);
        }
        for f in &self.foreign {
            // SAFETY: the block is live (given back only through `ForeignFree`, which drops the
            // record) and nothing writes it while it is read.
            let got = unsafe { std::slice::from_raw_parts(f.ptr.as_ptr(), f.bytes.len()) };
            assert_eq!(got, &f.bytes[..], "foreign block at {} changed", f.offset);
        }
    }

    /// Uses `h`: accepted with the right length and bytes exactly when it is a live block's own
    /// handle, refused otherwise (and a refused free changes nothing).
    fn try_handle(&mut self, h: Handle) {
        if self.m.is_live(h) {
            let want = &self.bytes[&h.offset()];
            let a = self.a();
            assert!(a.contains(h));
            assert_eq!(a.len_of(h).ok(), Some(want.len()));
            assert_eq!(a.read_with(h, |b| b == &want[..]).ok(), Some(true));
            return;
        }
        let foreign = self.foreign.iter().any(|f| f.offset == h.offset());
        let ok = |e: &Error| match e {
            Error::Stale { .. } | Error::DoubleFree { .. } | Error::OutOfBounds { .. } => true,
            Error::Foreign { .. } => foreign,
            _ => false,
        };
        let a = self.a();
        let before = a.stats();
        expect_refused_with(a, h, ok);
        let after = a.stats();
        assert_eq!(
            (before.allocated, before.net_blocks, before.net_bytes),
            (after.allocated, after.net_blocks, after.net_bytes),
            "a refused free of {h:?} changed the arena"
        );
    }

    fn forge(&self, how: ForgeHow) -> Option<Handle> {
        Some(match how {
            ForgeHow::Content { pick, word } => {
                let l = self.m.pick(pick)?;
                let b = &self.bytes[&l.h.offset()];
                let i = usize::from(word) % b.len().div_ceil(8) * 8;
                let mut w = [0u8; 8];
                let end = (i + 8).min(b.len());
                w[..end - i].copy_from_slice(&b[i..end]);
                Handle::from_u64(u64::from_le_bytes(w))
            }
            ForgeHow::Near {
                pick,
                k,
                gen_from,
                dgen,
            } => {
                let l = self.m.pick(pick)?;
                let gens = self.gens();
                let g = gens[usize::from(gen_from) % gens.len()];
                let off = (l.h.offset() as i64 + i64::from(k) * 8).max(0) as u64;
                forge_handle(off, g.wrapping_add(dgen as u32))
            }
            ForgeHow::Foreign { pick, dgen } => {
                if self.foreign.is_empty() {
                    return None;
                }
                let f = &self.foreign[usize::from(pick) % self.foreign.len()];
                forge_handle(f.offset, f.generation.wrapping_add(dgen as u32))
            }
            ForgeHow::Raw(raw) => Handle::from_u64(raw),
        })
    }

    fn release_foreign(&mut self) {
        for f in std::mem::take(&mut self.foreign) {
            // SAFETY: allocated from this arena with `f.layout`, not used afterwards.
            unsafe { self.a().deallocate(f.ptr, f.layout) };
        }
    }

    fn verify(&mut self) {
        let a = self.arena.as_mut().expect("arena present");
        let r = a.verify().expect("verify");
        assert!(r.is_clean(), "verify: {r:?}");
        assert_eq!(
            r.live_blocks,
            (self.m.live.len() + self.foreign.len()) as u64,
            "{r:?}"
        );
    }
}

/// Runs one `forge` input.
pub fn run_forge(input: &ForgeInput) {
    // At least 4 heap pages, so that blocks, fillers and free segments lie side by side.
    let mut cfg = input.config.clone();
    cfg.pages = 3 + cfg.pages % 14;
    let cfg = &cfg;
    let o = cfg.options(16).thread_cache(input.thread_cache);
    let (arena, path) = create_with(cfg.backing, o);
    let mut s = State {
        arena: Some(arena),
        path,
        m: Model::default(),
        bytes: BTreeMap::new(),
        foreign: Vec::new(),
    };
    for op in input.ops.iter().take(MAX_OPS) {
        step(&mut s, op);
        s.check();
    }
    s.verify();
    s.release_foreign();
    if let Some(p) = s.path.take() {
        drop(s.arena.take());
        let _ = std::fs::remove_file(p);
    }
}

fn step(s: &mut State, op: &ForgeOp) {
    match op {
        ForgeOp::Alloc { len, align, words } => {
            if let Some((h, bytes)) = alloc(s, usize::from(len % 1200) + 1, *align, words) {
                s.m.insert(h, bytes.len(), 0);
                s.bytes.insert(h.offset(), bytes);
            }
        }
        ForgeOp::Free { pick } => {
            if let Some(l) = s.m.pick(*pick) {
                s.a().free(l.h).expect("free a live block");
                s.m.remove(l.h);
                s.bytes.remove(&l.h.offset());
                s.try_handle(l.h);
            }
        }
        ForgeOp::Write { pick, words } => {
            if let Some(l) = s.m.pick(*pick) {
                let bytes = s.words(words, l.h, l.len);
                // SAFETY: single-threaded; no other reference to the block exists while the
                // slice lives, and it is not freed.
                let b = unsafe { s.a().get_mut(l.h) }.expect("get_mut a live block");
                b.copy_from_slice(&bytes);
                s.bytes.insert(l.h.offset(), bytes);
            }
        }
        ForgeOp::ForeignAlloc { len, align, words } => {
            let len = usize::from(len % 600) + 1;
            let layout = Layout::from_size_align(len, 1 << (align % 13)).expect("layout");
            let Ok(p) = s.a().allocate(layout) else {
                return;
            };
            let ptr = p.cast::<u8>();
            // SAFETY: the word before a block's data is its header, in the same heap.
            let at = unsafe { ptr.as_ptr().cast::<u64>().sub(1) };
            // SAFETY: `at` is 8-aligned and readable; nothing writes it while it is read
            // (single-threaded).
            let word = unsafe { at.read() };
            let (_, generation, _) = decode_live(word).expect("a foreign block's LIVE header");
            let offset = offset_of_ptr(s.a(), ptr.as_ptr());
            let bytes = s.words(words, forge_handle(offset, generation), len);
            // SAFETY: the block is ours, `len` bytes long, and no one else reaches it.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), len) };
            let end = offset - 8 + span(len);
            for (&o, l) in &s.m.live {
                assert!(
                    o - 8 >= end || o - 8 + span(l.len) <= offset - 8,
                    "foreign block at {offset} overlaps {:?}",
                    l.h
                );
            }
            s.foreign.push(Foreign {
                ptr,
                layout,
                offset,
                generation,
                bytes,
            });
        }
        ForgeOp::ForeignFree { pick } => {
            if !s.foreign.is_empty() {
                let f = s.foreign.remove(usize::from(*pick) % s.foreign.len());
                // SAFETY: allocated from this arena with `f.layout`, not used afterwards.
                unsafe { s.a().deallocate(f.ptr, f.layout) };
                let h = forge_handle(f.offset, f.generation);
                s.try_handle(h);
            }
        }
        ForgeOp::Forge(how) => {
            if let Some(h) = s.forge(*how) {
                s.try_handle(h);
            }
        }
        ForgeOp::Sweep { pick } => {
            if let Some(l) = s.m.pick(*pick) {
                let gens = s.gens();
                let from = l.h.offset().saturating_sub(64);
                let to = l.h.offset() + span(l.len) + 64;
                for off in (from..to).step_by(8) {
                    for &g in &gens {
                        s.try_handle(forge_handle(off, g));
                    }
                }
            }
        }
        ForgeOp::Compact => {
            s.arena.as_mut().expect("arena").compact().expect("compact");
            s.verify();
        }
        ForgeOp::Reopen | ForgeOp::Crash => reopen(s, matches!(op, ForgeOp::Crash)),
    }
}

/// Allocates `len` bytes (aligned to `1 << (align % 13)` through `alloc_layout` when `align`
/// is given) and fills them from `words`; `None` when the arena is full.
fn alloc(s: &State, len: usize, align: Option<u8>, words: &[WordSrc]) -> Option<(Handle, Vec<u8>)> {
    let r = match align {
        Some(al) => {
            let layout = Layout::from_size_align(len, 1 << (al % 13)).expect("layout");
            s.a().alloc_layout(layout)
        }
        None => s.a().alloc(len),
    };
    match r {
        Ok(mut b) => {
            let h = b.handle();
            let bytes = s.words(words, h, len);
            b.copy_from_slice(&bytes);
            Some((h, bytes))
        }
        Err(Error::Full { .. }) => None,
        Err(e) => panic!("alloc({len}) = {e:?}"),
    }
}

/// Reopens the arena (an image for heap and anonymous arenas, the file otherwise; with `crash`,
/// a copy of the file taken while it was open, which recovery walks). Foreign blocks are given
/// back first: their pointers do not survive.
fn reopen(s: &mut State, crash: bool) {
    let crash = crash && s.path.is_some();
    s.release_foreign();
    let path = match (&s.path, crash) {
        (None, _) => {
            let mut img = Vec::new();
            let a = s.arena.as_mut().expect("arena");
            a.write_image(&mut img).expect("write_image");
            let p = scratch_file("forge-image");
            std::fs::write(&p, img).expect("write image");
            s.arena = None;
            p
        }
        (Some(p), false) => {
            s.arena.take().expect("arena").close().expect("close");
            p.clone()
        }
        (Some(p), true) => {
            let copy = scratch_file("forge-crash");
            let bytes = std::fs::read(p).expect("read the file");
            std::fs::write(&copy, bytes).expect("write the copy");
            s.arena.take().expect("arena").close().expect("close");
            let _ = std::fs::remove_file(p);
            copy
        }
    };
    // SAFETY: a private file nothing else maps.
    let a = unsafe { Options::new().create(false).map_file(&path) }.expect("reopen");
    assert_eq!(a.was_clean(), !crash);
    if let Some(r) = a.recovery_report() {
        assert!(r.is_clean(), "recovery: {r:?}");
        assert_eq!(r.live_blocks, s.m.live.len() as u64, "recovery: {r:?}");
    }
    s.arena = Some(a);
    // For a heap or anonymous arena, the image file is the arena's file from here on.
    s.path = Some(path);
    s.check();
    s.verify();
}
