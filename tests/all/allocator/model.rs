//! A proptest state machine: random alloc / free / stale free / compact / reopen sequences against
//! a model of the live blocks, for every freelist policy and backing.
//!
//! After each step every live block must hold its pattern, no two live blocks may overlap, and the
//! arena must agree on each block's length. After each compact and reopen `verify()` must be clean
//! and count exactly the model's blocks. A free through a stale handle must be an `Err` and change
//! nothing (the verify report before and after is the same).
//!
//! The model of the live blocks is `parena-testkit`'s, the one the fuzz targets use.

use parena::{Arena, Error, Freelist, Options};
// The nonzero pattern: a reused or overlapping block shows up as a byte that changed.
use parena_testkit::{pattern_nonzero as pattern, span, Live, Model};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::alloc::Layout;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backing {
    Heap,
    Anon,
    File,
}

#[derive(Clone, Debug)]
enum Op {
    /// Allocate `len` bytes with alignment `1 << align_shift` (shift 3 is the default 8).
    Alloc {
        len: usize,
        align_shift: u8,
    },
    /// Free the `i % live`-th live block.
    Free(usize),
    /// Free the `i % freed`-th handle freed before: must fail and change nothing.
    FreeStale(usize),
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..=700, prop_oneof![4 => Just(3u8), 1 => 4u8..=8])
            .prop_map(|(len, align_shift)| Op::Alloc { len, align_shift }),
        5 => any::<usize>().prop_map(Op::Free),
        1 => any::<usize>().prop_map(Op::FreeStale),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

/// Per-case settings drawn by proptest.
#[derive(Clone, Copy, Debug)]
struct Settings {
    zero_on_free: bool,
    thread_cache: bool,
}

fn options(policy: Freelist, s: Settings) -> Options {
    Options::new()
        .capacity(16 << 10)
        .chunk_size(512)
        .freelist(policy)
        .zero_on_free(s.zero_on_free)
        .thread_cache(s.thread_cache)
}

fn open(b: Backing, o: &Options, path: &Path) -> Arena {
    match b {
        Backing::Heap => o.heap().unwrap(),
        Backing::Anon => o.map_anon().unwrap(),
        // SAFETY: the file is private to this test case.
        Backing::File => unsafe { o.map_file(path) }.unwrap(),
    }
}

/// Every live block holds its pattern and has its length; no two overlap (header included).
fn check_blocks(arena: &Arena, m: &Model) -> Result<(), TestCaseError> {
    let mut prev_end = 0u64;
    for (&off, &Live { h, len, seed }) in &m.live {
        prop_assert_eq!(h.offset(), off);
        prop_assert!(
            off - 8 >= prev_end,
            "block at {} (header at {}) overlaps the one ending at {}",
            off,
            off - 8,
            prev_end
        );
        prev_end = off - 8 + span(len);
        prop_assert_eq!(arena.len_of(h).map_err(|e| e.to_string()), Ok(len));
        let mut buf = vec![0u8; len];
        arena.read(h, 0, &mut buf).unwrap();
        for (i, &b) in buf.iter().enumerate() {
            prop_assert_eq!(b, pattern(seed, i), "block {:?} byte {} changed", h, i);
        }
    }
    Ok(())
}

fn check_verify(arena: &mut Arena, m: &Model) -> Result<parena::Report, TestCaseError> {
    let r = arena.verify().unwrap();
    prop_assert!(r.is_clean(), "verify: {:?}", r.problems);
    prop_assert_eq!(r.live_blocks, m.live.len() as u64, "{:?}", r);
    Ok(r)
}

fn run(backing: Backing, policy: Freelist, set: Settings, ops: &[Op]) -> Result<(), TestCaseError> {
    // Miri (with isolation) has no file system: no file backing, no reopen there.
    let dir = (!cfg!(miri)).then(|| tempfile::tempdir().unwrap());
    let path = dir
        .as_ref()
        .map_or_else(Default::default, |d| d.path().join("model.parena"));
    let o = options(policy, set);
    let mut arena = Some(open(backing, &o, &path));
    // Every freed handle is kept for the stale-free steps.
    let mut m = Model {
        keep_dead: usize::MAX,
        ..Model::default()
    };
    let mut next_seed = 1u8;
    for op in ops {
        let a = arena.as_mut().unwrap();
        match *op {
            Op::Alloc { len, align_shift } => {
                let layout = Layout::from_size_align(len, 1 << align_shift).unwrap();
                match a.alloc_layout(layout) {
                    Ok(mut b) => {
                        prop_assert!(b.iter().all(|&x| x == 0), "fresh block not zeroed");
                        prop_assert_eq!(b.as_ptr() as usize % layout.align(), 0);
                        let seed = next_seed;
                        next_seed = next_seed.wrapping_add(37);
                        for (i, x) in b.iter_mut().enumerate() {
                            *x = pattern(seed, i);
                        }
                        let h = b.into_handle();
                        prop_assert!(
                            !m.live.contains_key(&h.offset()),
                            "allocation at {} over a live block",
                            h.offset()
                        );
                        // Also checks it overlaps no live block and its handle is new.
                        m.insert(h, len, seed);
                    }
                    Err(Error::Full { .. }) => {}
                    Err(e) => return Err(TestCaseError::fail(format!("alloc({len}): {e:?}"))),
                }
            }
            Op::Free(i) => {
                if m.live.is_empty() {
                    continue;
                }
                let h = m.live.values().nth(i % m.live.len()).unwrap().h;
                prop_assert!(a.free(h).is_ok(), "free of live {:?}", h);
                prop_assert!(!a.contains(h));
                m.remove(h);
            }
            Op::FreeStale(i) => {
                if m.dead.is_empty() {
                    continue;
                }
                let h = m.dead[i % m.dead.len()];
                let before = a.verify().unwrap();
                let stats = a.stats();
                let r = a.free(h);
                prop_assert!(
                    matches!(
                        r,
                        Err(Error::Stale { .. }
                            | Error::DoubleFree { .. }
                            | Error::OutOfBounds { .. })
                    ),
                    "free of stale {:?}: {:?} (live at that offset: {:?})",
                    h,
                    r,
                    m.live.get(&h.offset())
                );
                prop_assert_eq!(
                    before,
                    a.verify().unwrap(),
                    "a refused free changed the heap"
                );
                prop_assert_eq!(stats, a.stats());
            }
            Op::Compact => {
                let r = a.compact().unwrap();
                prop_assert!(r.is_clean(), "compact: {:?}", r.problems);
                prop_assert_eq!(r.live_blocks, m.live.len() as u64);
                check_verify(a, &m)?;
            }
            Op::Reopen if cfg!(miri) => {}
            Op::Reopen => {
                let mut old = arena.take().unwrap();
                let reopened = if old.backing() == parena::BackingKind::File {
                    old.close().unwrap();
                    // SAFETY: the file is private to this test case.
                    unsafe { o.map_file(&path) }.unwrap()
                } else {
                    let f = std::fs::File::create(&path).unwrap();
                    old.write_image(std::io::BufWriter::new(f)).unwrap();
                    drop(old);
                    // SAFETY: as above.
                    unsafe { o.map_file(&path) }.unwrap()
                };
                prop_assert!(reopened.was_clean());
                prop_assert_eq!(reopened.freelist(), policy);
                arena = Some(reopened);
                check_verify(arena.as_mut().unwrap(), &m)?;
            }
        }
        check_blocks(arena.as_ref().unwrap(), &m)?;
    }
    // Free everything: the whole heap comes back.
    let a = arena.as_mut().unwrap();
    for (_, l) in std::mem::take(&mut m.live) {
        prop_assert!(a.free(l.h).is_ok());
    }
    let r = a.compact().unwrap();
    prop_assert!(r.is_clean(), "{:?}", r.problems);
    prop_assert_eq!(r.live_blocks, 0);
    let s = a.stats();
    prop_assert_eq!(s.allocated, 0, "{:?}", r);
    prop_assert_eq!(s.discarded, 0, "{:?}", r);
    Ok(())
}

/// Cases per test and the longest sequence. `PROPTEST_CASES` overrides the number of cases (for a
/// longer hunt: `PROPTEST_CASES=2000 cargo test --release model::`).
fn cases() -> (u32, usize) {
    let (cases, len) = if cfg!(miri) { (4, 24) } else { (48, 120) };
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    (cases, len)
}

fn model(backing: Backing, policy: Freelist) {
    let (cases, max_len) = cases();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(
                any::<(bool, bool)>(),
                proptest::collection::vec(op(), 1..max_len),
            ),
            |((zero_on_free, thread_cache), ops)| {
                let set = Settings {
                    zero_on_free,
                    thread_cache,
                };
                run(backing, policy, set, &ops)
            },
        )
        .unwrap();
}

macro_rules! model_tests {
    ($($name:ident: $backing:ident, $policy:ident;)*) => {$(
        #[test]
        #[cfg_attr(miri, ignore = "maps and files")]
        fn $name() {
            model(Backing::$backing, Freelist::$policy);
        }
    )*};
}

model_tests! {
    model_heap_none: Heap, None;
    model_anon_none: Anon, None;
    model_file_none: File, None;
    model_anon_optimistic: Anon, Optimistic;
    model_file_optimistic: File, Optimistic;
    model_anon_pessimistic: Anon, Pessimistic;
    model_file_pessimistic: File, Pessimistic;
}

// The heap backing also runs under Miri, with fewer and shorter cases and no reopen steps.
#[test]
fn model_heap_optimistic() {
    model(Backing::Heap, Freelist::Optimistic);
}

#[test]
fn model_heap_pessimistic() {
    model(Backing::Heap, Freelist::Pessimistic);
}
