//! Forged, foreign and wrapped handles: no safe call may reach bytes its caller does not own.
//!
//! Each test tries one way to fool a handle check, from the public API.

use parena::{Error, Handle, Options};
use proptest::collection::vec;
use proptest::prelude::*;

/// The header word parena writes before a published block of `len` bytes with generation `g`
/// (check code included).
fn live_header(len: u64, g: u64) -> u64 {
    parena::testkit::live_word(len, g as u32, 0)
}

/// A handle naming `offset` with generation `g`, built from bits as a user could.
fn forge(offset: u64, g: u64) -> Handle {
    parena::testkit::forge_handle(offset, g as u32)
}

#[test]
fn a_header_forged_inside_a_block_is_refused() {
    let arena = Options::new().capacity(1 << 20).heap().unwrap();
    let mut a = arena.alloc(64).unwrap();
    // Header-shaped user bytes at the start of the block, for every generation a guesser would
    // try first.
    a[..8].copy_from_slice(&live_header(8, 1).to_le_bytes());
    let inner = a.offset() + 8;
    let h = a.into_handle();
    for g in 0..4 {
        let forged = forge(inner, g);
        assert!(
            arena.free(forged).is_err(),
            "a forged header at {inner} (generation {g}) was freed"
        );
        assert!(arena.len_of(forged).is_err());
        assert!(!arena.contains(forged));
    }
    // The real block is untouched and still the only owner of its bytes.
    let mut buf = [0u8; 8];
    arena.read(h, 0, &mut buf).unwrap();
    assert_eq!(u64::from_le_bytes(buf), live_header(8, 1));
}

/// Refused except by chance: generations start at each arena's random id, so two arenas' first
/// handles share a generation with probability about 2^-32.
#[test]
fn a_handle_from_another_arena_is_refused() {
    let a = Options::new().capacity(1 << 20).heap().unwrap();
    let b = Options::new().capacity(1 << 20).heap().unwrap();
    let ha = a.alloc_copy(b"from a").unwrap();
    let hb = b.alloc_copy(b"from b").unwrap();
    assert_ne!(
        ha, hb,
        "two fresh arenas hand out the same handle for their first block"
    );
    assert!(b.read_with(ha, |_| ()).is_err());
    assert!(b.free(ha).is_err());
    assert_eq!(b.read_with(hb, <[u8]>::to_vec).unwrap(), b"from b");
}

/// 2^24 + 10 allocate/free cycles at one offset (a 24-bit generation wrapped after 2^23): the
/// stale handle of the first block is still refused. A generation comes back to one position only
/// after `2^32 - 1` generations were minted.
#[test]
#[ignore = "long (17 s on 2 cores, debug build): 16.8 million allocate/free cycles at one offset"]
fn a_stale_handle_stays_stale_after_2_pow_24_reuses() {
    let arena = Options::new()
        .capacity(1 << 20)
        .thread_cache(false)
        .heap()
        .unwrap();
    let first = arena.alloc_copy(&[1u8; 16]).unwrap();
    arena.free(first).unwrap();
    for i in 0..(1u64 << 24) + 10 {
        let h = arena.alloc_copy(&[2u8; 16]).unwrap();
        assert_eq!(
            h.offset(),
            first.offset(),
            "reuse left the offset at cycle {i}"
        );
        assert_ne!(
            h.generation(),
            first.generation(),
            "cycle {i}: the stale handle's generation came back: it now names a new block"
        );
        arena.free(h).unwrap();
    }
    assert!(matches!(
        arena.free(first),
        Err(Error::Stale { .. } | Error::DoubleFree { .. })
    ));
}

#[cfg(feature = "allocator-api2")]
#[test]
fn allocator_blocks_are_off_limits_to_handles() {
    use allocator_api2::vec::Vec as AVec;
    let arena = Options::new().capacity(1 << 20).heap().unwrap();
    let marker = arena.alloc_copy(&[0u8; 8]).unwrap();
    let mut v: AVec<u8, &parena::Arena> = AVec::with_capacity_in(64, &arena);
    v.extend_from_slice(&[7u8; 64]);
    // The Vec's buffer lies just after `marker`: every offset there, with every generation a
    // guesser would try first, must be refused.
    for off in (marker.offset() + 8..marker.offset() + 512).step_by(8) {
        for g in 0..4 {
            let guess = forge(off, g);
            assert!(
                arena.read_with(guess, |_| ()).is_err(),
                "the Vec's buffer was readable through a forged handle at {off}"
            );
            assert!(
                arena.free(guess).is_err(),
                "the Vec's buffer was freed through a forged handle at {off}"
            );
        }
    }
    // Even the exact handle (its generation read from the block's header word, as a program
    // with `unsafe` could) is refused: the block belongs to the allocator interface.
    // SAFETY: the word before the Vec's buffer is its block's header, inside the arena's heap
    // (the same allocation as the buffer).
    let at = unsafe { v.as_ptr().cast::<u64>().sub(1) };
    // SAFETY: `at` is 8-aligned and readable; nothing writes it while it is read (this thread
    // owns the Vec, and no other thread uses the arena).
    let word = unsafe { at.read() };
    let (_, generation, _) = parena::testkit::decode_live(word).expect("a LIVE header");
    let off = parena::testkit::offset_of_ptr(&arena, v.as_ptr());
    let exact = parena::testkit::forge_handle(off, generation);
    assert!(matches!(
        arena.read_with(exact, |_| ()),
        Err(Error::Foreign { .. })
    ));
    assert!(matches!(arena.free(exact), Err(Error::Foreign { .. })));
    assert!(!arena.contains(exact));
    v.push(8);
    assert!(v[..64].iter().all(|&b| b == 7));
}

/// A read-only open maps the file privately: the handle checks' atomic loads run on writable
/// memory (as Rust requires of memory behind an atomic), and nothing can reach the file.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn a_read_only_open_maps_private_writable_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arena");
    let h = {
        // SAFETY: a private file in a private directory; nothing else maps it.
        let a = unsafe { Options::new().capacity(1 << 20).map_file(&path) }.unwrap();
        a.alloc_copy(b"persisted").unwrap()
    };
    let before = std::fs::read(&path).unwrap();
    // SAFETY: as above.
    let arena = unsafe { Options::new().read_only(true).map_file(&path) }.unwrap();
    assert_eq!(arena.read_with(h, <[u8]>::to_vec).unwrap(), b"persisted");
    // SAFETY: the block is live and nothing frees or writes it while `bytes` lives.
    let bytes = unsafe { arena.get(h) }.unwrap();
    let addr = bytes.as_ptr() as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| {
            let range = l.split_whitespace().next().unwrap();
            let (lo, hi) = range.split_once('-').unwrap();
            let lo = usize::from_str_radix(lo, 16).unwrap();
            let hi = usize::from_str_radix(hi, 16).unwrap();
            (lo..hi).contains(&addr)
        })
        .expect("the block's address is mapped");
    let perms = line.split_whitespace().nth(1).unwrap();
    assert_eq!(perms, "rw-p", "read-only arena mapped as {line}");
    drop(arena);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a read-only open changed the file"
    );
}

/// One step of [`forged_handles_from_every_offset_are_refused`]'s fill.
#[derive(Debug, Clone)]
enum FillStep {
    /// `alloc(len)`.
    Alloc(usize),
    /// `alloc_layout(len, 1 << shift)`: a PAD filler before the block when the bump is not
    /// aligned.
    Aligned(usize, u32),
    /// Free the `i`-th live block (modulo their count).
    Free(usize),
}

fn fill_step(max_len: usize) -> impl Strategy<Value = FillStep> {
    prop_oneof![
        4 => (1..max_len).prop_map(FillStep::Alloc),
        1 => (1..max_len, 6u32..=12).prop_map(|(l, s)| FillStep::Aligned(l, s)),
        2 => any::<usize>().prop_map(FillStep::Free),
    ]
}

/// The sizes of [`forged_handles_from_every_offset_are_refused`]'s cases.
struct ForgeSizes {
    /// Arena capacity.
    capacity: u64,
    /// Most fill steps.
    steps: usize,
    /// Longest block (exclusive).
    max_len: usize,
    /// Bytes forged past the bump.
    tail: u64,
    /// Chunk size exponents.
    chunk_shifts: std::ops::RangeInclusive<u32>,
}

/// Under Miri, a few small blocks in 512-byte chunks: every handle check is interpreted.
fn forge_sizes() -> ForgeSizes {
    if cfg!(miri) {
        ForgeSizes {
            capacity: 32 << 10,
            steps: 3,
            max_len: 64,
            tail: 32,
            chunk_shifts: 9..=9,
        }
    } else {
        ForgeSizes {
            capacity: 256 << 10,
            steps: 96,
            max_len: 600,
            tail: 4096,
            chunk_shifts: 9..=13,
        }
    }
}

/// The generations a forger tries: every real one, each ±1 and ±2, 0 and 1.
fn guessed_generations(real: &[u32]) -> Vec<u32> {
    let mut gens: std::collections::BTreeSet<u32> = [0, 1].into();
    for &g in real {
        for d in [0u32, 1, 2, u32::MAX, u32::MAX - 1] {
            gens.insert(g.wrapping_add(d));
        }
        // The same generation cut to 24 bits, and with one high bit flipped.
        gens.insert(g & 0xff_ffff);
        gens.insert(g ^ (1 << 31));
    }
    gens.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 16 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// A heap of live blocks, free segments, PAD fillers and an unused tail, every live block
    /// full of header-shaped words (the exact headers of other blocks, LIVE words with real
    /// generations, FREE and PAD words, its own header): from every 8-byte offset of the heap to
    /// past the bump, with every real generation and its neighbours, only the live blocks' own
    /// handles are accepted by `read_with`, `len_of` and `contains`; every forged `free` fails;
    /// the blocks keep their bytes and `verify` stays clean.
    #[test]
    fn forged_handles_from_every_offset_are_refused(
        steps in vec(fill_step(forge_sizes().max_len), 1..=forge_sizes().steps),
        pessimistic: bool,
        cache: bool,
        chunk_shift in forge_sizes().chunk_shifts,
        words in vec(any::<u64>(), 1..16),
    ) {
        forge_every_offset(&steps, pessimistic, cache, chunk_shift, &words)?;
    }
}

/// The body of [`forged_handles_from_every_offset_are_refused`] (outside the macro, so that
/// rustfmt reaches it).
fn forge_every_offset(
    steps: &[FillStep],
    pessimistic: bool,
    cache: bool,
    chunk_shift: u32,
    words: &[u64],
) -> Result<(), TestCaseError> {
    use parena::testkit::{forge_handle, live_word};
    use parena::Freelist;
    use std::collections::BTreeMap;

    let ForgeSizes { capacity, tail, .. } = forge_sizes();
    let policy = if pessimistic {
        Freelist::Pessimistic
    } else {
        Freelist::Optimistic
    };
    let mut arena = Options::new()
        .capacity(capacity)
        .chunk_size(1 << chunk_shift)
        .freelist(policy)
        .thread_cache(cache)
        .heap()
        .unwrap();
    let mut live: Vec<(Handle, usize)> = Vec::new();
    let mut dead: Vec<Handle> = Vec::new();
    for step in steps {
        let made = match *step {
            FillStep::Alloc(len) => arena.alloc(len),
            FillStep::Aligned(len, shift) => {
                arena.alloc_layout(std::alloc::Layout::from_size_align(len, 1 << shift).unwrap())
            }
            FillStep::Free(i) => {
                if !live.is_empty() {
                    let (h, _) = live.swap_remove(i % live.len());
                    arena.free(h).unwrap();
                    dead.push(h);
                }
                continue;
            }
        };
        match made {
            Ok(b) => {
                let len = b.len();
                live.push((b.into_handle(), len));
            }
            Err(Error::Full { .. }) => {}
            Err(e) => panic!("{step:?}: {e:?}"),
        }
    }

    // Every live block's words are header-shaped, from the real blocks' lengths and
    // generations (and the dead ones' generations).
    let mut real: Vec<(u64, u32)> = live
        .iter()
        .map(|&(h, l)| (l as u64, h.generation()))
        .collect();
    real.extend(dead.iter().map(|h| (8, h.generation())));
    if real.is_empty() {
        real.push((8, 1));
    }
    let mut contents: BTreeMap<u64, (Handle, Vec<u8>)> = BTreeMap::new();
    for (i, &(h, len)) in live.iter().enumerate() {
        let own = live_word(len as u64, h.generation(), 0);
        let bytes: Vec<u8> = (0..len.div_ceil(8))
            .flat_map(|j| {
                let mix = words[j % words.len()] ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let sel = (mix.rotate_left(j as u32) & !7) | (j as u64 % 8);
                parena_testkit::header_shaped(sel, &real, own).to_le_bytes()
            })
            .take(len)
            .collect();
        // SAFETY: single-threaded; nothing else references the block while `b` lives.
        let b = unsafe { arena.get_mut(h) }.unwrap();
        b.copy_from_slice(&bytes);
        contents.insert(h.offset(), (h, bytes));
    }

    // A block of the allocator interface, full of the same words, with its own generation
    // among the guesses.
    #[cfg(feature = "allocator-api2")]
    let (foreign_vec, foreign_off) = {
        let mut v: allocator_api2::vec::Vec<u8, &parena::Arena> =
            allocator_api2::vec::Vec::with_capacity_in(96, &arena);
        for k in 0..12u64 {
            let w = parena_testkit::header_shaped(k, &real, live_word(96, 1, 0));
            v.extend_from_slice(&w.to_le_bytes());
        }
        // SAFETY: the word before the Vec's buffer is its block's header, in the same heap
        // allocation.
        let at = unsafe { v.as_ptr().cast::<u64>().sub(1) };
        // SAFETY: `at` is 8-aligned and readable; nothing writes it while it is read
        // (single-threaded).
        let word = unsafe { at.read() };
        let (_, generation, _) = parena::testkit::decode_live(word).expect("a LIVE header");
        let off = parena::testkit::offset_of_ptr(&arena, v.as_ptr());
        real.push((96, generation));
        (v, off)
    };

    let mut all: Vec<u32> = real.iter().map(|&(_, g)| g).collect();
    all.extend(live.iter().map(|(h, _)| h.generation()));
    let gens = guessed_generations(&all);
    let st = arena.stats();
    let from = st.data_start;
    let to = st.data_start + st.allocated + tail;
    let mut accepted = 0usize;
    for off in (from..to).step_by(8) {
        for &g in &gens {
            let h = forge_handle(off, g);
            match contents.get(&off) {
                Some((real_h, bytes)) if *real_h == h => {
                    prop_assert!(arena.contains(h));
                    prop_assert_eq!(arena.len_of(h).ok(), Some(bytes.len()));
                    prop_assert_eq!(arena.read_with(h, |b| b == &bytes[..]).ok(), Some(true));
                    accepted += 1;
                }
                _ => {
                    prop_assert!(!arena.contains(h), "{:?} is contained", h);
                    let len = arena.len_of(h);
                    prop_assert!(len.is_err(), "len_of({:?}) = {:?}", h, len);
                    let read = arena.read_with(h, <[u8]>::len);
                    prop_assert!(read.is_err(), "read_with({:?}) = {:?}", h, read);
                }
            }
        }
    }
    prop_assert_eq!(accepted, live.len());
    #[cfg(feature = "allocator-api2")]
    {
        let g = real.last().unwrap().1;
        let r = arena.read_with(forge_handle(foreign_off, g), |_| ());
        prop_assert!(matches!(r, Err(Error::Foreign { .. })), "{:?}", r);
    }

    // Only now the frees: a forged one that succeeded would free a block under its owner.
    for off in (from..to).step_by(8) {
        for &g in &gens {
            let h = forge_handle(off, g);
            if contents.get(&off).is_some_and(|(real_h, _)| *real_h == h) {
                continue;
            }
            let r = arena.free(h);
            prop_assert!(r.is_err(), "free({:?}) = {:?}", h, r);
        }
    }
    for (h, bytes) in contents.values() {
        prop_assert_eq!(arena.read_with(*h, |b| b == &bytes[..]).ok(), Some(true));
    }
    #[cfg(feature = "allocator-api2")]
    {
        prop_assert_eq!(foreign_vec.len(), 96);
        for (k, c) in foreign_vec.chunks(8).enumerate() {
            let w = parena_testkit::header_shaped(
                k as u64,
                &real[..real.len() - 1],
                live_word(96, 1, 0),
            );
            prop_assert_eq!(c, &w.to_le_bytes()[..]);
        }
        drop(foreign_vec);
    }
    let r = arena.verify().unwrap();
    prop_assert!(r.is_clean(), "{:?}", r);
    prop_assert_eq!(r.live_blocks, live.len() as u64);
    let mut listed: Vec<u64> = arena
        .live_blocks()
        .unwrap()
        .iter()
        .map(|b| b.handle.to_u64())
        .collect();
    let mut ours: Vec<u64> = live.iter().map(|(h, _)| h.to_u64()).collect();
    listed.sort_unstable();
    ours.sort_unstable();
    prop_assert_eq!(listed, ours);
    Ok(())
}
