//! One flipped bit in allocation metadata, in a clean image and in a dirty one: the acceptance test
//! of "corruption is found and reported, never recovered into silent loss" (docs/metadata.md,
//! section 8).
//!
//! For every case the open must either refuse the image and leave the file untouched, or open it
//! with every block whose header was not hit intact (before and after filling the arena), and the
//! hit block intact or reported (by the recovery report or by `verify()`). Zero exceptions:
//! `cargo test --release --test all bitflips -- --nocapture` prints the tally.

use crate::util::file_hash;
use parena::{Arena, Error, Freelist, Handle, Options, Problem};
use std::path::Path;

const CAP: u64 = 256 << 10;
/// Header offsets of the bump and high-water words (docs/format.md).
const OFF_BUMP: u64 = 80;
const OFF_HIGH_WATER: u64 = 88;
/// The free-list heads: one word per size class.
const OFF_HEADS: u64 = 256;
/// Bit positions tried in each word. In a LIVE word: the length (0..21, bit 20 the LARGE flag),
/// the check code (21..24), the generation (24..56), the state (56, 57), the readers (58..61), the
/// FOREIGN flag (61) and the kind (62, 63).
const BITS: [u32; 18] = [
    0, 1, 2, 3, 7, 12, 20, 21, 24, 31, 32, 40, 55, 56, 59, 61, 62, 63,
];

fn open(path: &Path) -> Result<Arena, Error> {
    open_with(path, CAP)
}

fn open_with(path: &Path, cap: u64) -> Result<Arena, Error> {
    // SAFETY: private file in a private directory; nothing else maps it.
    unsafe {
        Options::new()
            .capacity(cap)
            .freelist(Freelist::Pessimistic)
            .chunk_size(4096)
            .map_file(path)
    }
}

fn byte(i: usize, k: usize) -> u8 {
    (i as u8).wrapping_mul(31) ^ k as u8
}

/// 225 live and 75 freed blocks; returns (live (handle, len, index), metadata word offsets, clean
/// image, dirty image).
#[allow(clippy::type_complexity)]
fn build(
    path: &Path,
) -> (
    Vec<(Handle, usize, usize)>,
    Vec<(u64, Option<usize>)>,
    Vec<u8>,
    Vec<u8>,
) {
    let a = open(path).unwrap();
    let mut live = Vec::new();
    let mut freed = Vec::new();
    for i in 0..300 {
        let len = 24 + (i * 7) % 200;
        let mut b = a.alloc(len).unwrap();
        for (k, x) in b.iter_mut().enumerate() {
            *x = byte(i, k);
        }
        let h = b.into_handle();
        if i % 4 == 3 {
            freed.push(h);
        } else {
            live.push((h, len, i));
        }
    }
    for &h in &freed {
        a.free(h).unwrap();
    }
    a.flush().unwrap();
    let dirty = std::fs::read(path).unwrap();
    a.close().unwrap();
    let clean = std::fs::read(path).unwrap();
    // Words to hit: the bump and high-water words, every free-list head in use, every live
    // block's header, and the header and span words of every freed segment. `Some(j)` names the
    // live block a word belongs to.
    let mut words: Vec<(u64, Option<usize>)> = vec![(OFF_BUMP, None), (OFF_HIGH_WATER, None)];
    for class in 0..256u64 {
        let at = OFF_HEADS + 8 * class;
        let head =
            |img: &[u8]| u64::from_le_bytes(img[at as usize..at as usize + 8].try_into().unwrap());
        if head(&clean) != 0 || head(&dirty) != 0 {
            words.push((at, None));
        }
    }
    for (j, (h, _, _)) in live.iter().enumerate() {
        words.push((h.offset() - 8, Some(j)));
    }
    for h in &freed {
        words.push((h.offset() - 8, None));
        words.push((h.offset(), None));
    }
    (live, words, clean, dirty)
}

fn intact(a: &Arena, h: Handle, len: usize, i: usize) -> bool {
    let mut buf = vec![0u8; len];
    a.read(h, 0, &mut buf).is_ok() && buf.iter().enumerate().all(|(k, &b)| b == byte(i, k))
}

#[derive(Debug, Default)]
struct Tally {
    cases: u64,
    refused: u64,
    refused_but_changed: u64,
    opened: u64,
    /// Blocks whose header was not hit that were lost or damaged.
    unhit_lost: u64,
    /// The hit block lost with neither the recovery report nor `verify()` saying so.
    hit_lost_silently: u64,
    /// Opens or operations that panicked.
    panicked: u64,
}

fn run(
    image: &[u8],
    live: &[(Handle, usize, usize)],
    words: &[(u64, Option<usize>)],
    t: &mut Tally,
) {
    run_with(image, live, words, &BITS, open, &[40], t);
}

fn run_with(
    image: &[u8],
    live: &[(Handle, usize, usize)],
    words: &[(u64, Option<usize>)],
    bits: &[u32],
    open: fn(&Path) -> Result<Arena, Error>,
    fill: &[usize],
    t: &mut Tally,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flip");
    for &(at, hit) in words {
        for &bit in bits {
            t.cases += 1;
            let mut img = image.to_vec();
            let w = u64::from_le_bytes(img[at as usize..at as usize + 8].try_into().unwrap());
            img[at as usize..at as usize + 8].copy_from_slice(&(w ^ (1 << bit)).to_le_bytes());
            std::fs::write(&path, &img).unwrap();
            let before = file_hash(&path);
            let outcome = std::panic::catch_unwind(|| {
                let mut a = match open(&path) {
                    Ok(a) => a,
                    Err(_) => return None,
                };
                let reported = a.recovery_report().is_some_and(|r| !r.is_clean())
                    | !matches!(a.verify(), Ok(r) if r.is_clean());
                let check = |a: &Arena| {
                    let mut unhit = 0;
                    let mut hit_ok = true;
                    for (j, &(h, len, i)) in live.iter().enumerate() {
                        if !intact(a, h, len, i) {
                            if hit == Some(j) {
                                hit_ok = false;
                            } else {
                                unhit += 1;
                            }
                        }
                    }
                    (unhit, hit_ok)
                };
                let (u1, ok1) = check(&a);
                // Fill what is left: nothing handed out may overlap a kept block.
                for &len in fill {
                    while let Ok(mut b) = a.alloc(len) {
                        b.fill(0xee);
                    }
                }
                let (u2, ok2) = check(&a);
                Some((u1.max(u2), ok1 && ok2, reported))
            });
            match outcome {
                Err(_) => t.panicked += 1,
                Ok(None) => {
                    t.refused += 1;
                    if file_hash(&path) != before {
                        t.refused_but_changed += 1;
                    }
                }
                Ok(Some((unhit, hit_ok, reported))) => {
                    t.opened += 1;
                    t.unhit_lost += unhit;
                    if !hit_ok && !reported {
                        t.hit_lost_silently += 1;
                    }
                }
            }
        }
    }
}

#[test]
#[ignore = "long (560 s on 2 cores, debug build): every metadata bit of a clean and a dirty image flipped in turn, each image reopened and checked"]
fn one_flipped_bit_is_refused_or_reported_never_silent() {
    let dir = tempfile::tempdir().unwrap();
    let (live, words, clean, dirty) = build(&dir.path().join("arena"));
    let mut failures = Vec::new();
    for (name, image) in [("clean", &clean), ("dirty", &dirty)] {
        // The control: the image unharmed opens with every block intact, before and after a fill.
        let path = dir.path().join("control");
        std::fs::write(&path, image).unwrap();
        let a = open(&path).unwrap();
        while let Ok(mut b) = a.alloc(40) {
            b.fill(0xee);
        }
        for &(h, len, i) in &live {
            assert!(
                intact(&a, h, len, i),
                "{name}: block {h:?} lost with no bit flipped"
            );
        }
        drop(a);
        let mut t = Tally::default();
        run(image, &live, &words, &mut t);
        eprintln!("bit flips, {name} image: {t:?}");
        if t.refused_but_changed + t.unhit_lost + t.hit_lost_silently + t.panicked > 0 {
            failures.push(format!("{name}: {t:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "damage lost data silently: {failures:?}"
    );
}

const LARGE_CAP: u64 = 8 << 20;

fn open_large(path: &Path) -> Result<Arena, Error> {
    open_with(path, LARGE_CAP)
}

/// LARGE blocks (1 MiB and more) keep their exact length in a tail word after their bytes: every
/// bit of each LARGE block's tail word, and the bits above plus every state and reader bit of each
/// block's header (LARGE and small) and of a freed LARGE block's segment words, in a clean image
/// and a dirty one, under the same rule as above. Zero exceptions.
#[test]
#[ignore = "long (480 s on 2 cores, debug build): every bit of each LARGE block's tail and header words flipped in turn, clean and dirty images"]
fn one_flipped_bit_in_a_large_block_is_refused_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arena");
    let a = open_large(&path).unwrap();
    let lens = [40, (1 << 20) + 5, 72, (2 << 20) + 100, 24, 1 << 20, 56];
    let mut live = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        let mut b = a.alloc(len).unwrap();
        for (k, x) in b.iter_mut().enumerate() {
            *x = byte(i, k);
        }
        live.push((b.into_handle(), len, i));
    }
    // A freed LARGE block between them: its span becomes a free segment.
    let gone = a.alloc(3 << 19).unwrap().into_handle();
    let last = a.alloc(32).unwrap().into_handle();
    a.free(gone).unwrap();
    a.flush().unwrap();
    let dirty = std::fs::read(&path).unwrap();
    a.close().unwrap();
    let clean = std::fs::read(&path).unwrap();
    let mut a = open_large(&path).unwrap();
    assert_eq!(a.len_of(live[1].0).unwrap(), (1 << 20) + 5);
    assert!(a.verify().unwrap().is_clean());
    drop(a);
    let _ = last;

    let mut words = Vec::new();
    let mut tails = Vec::new();
    for (j, &(h, len, _)) in live.iter().enumerate() {
        words.push((h.offset() - 8, Some(j)));
        if len >= 1 << 20 {
            // The tail: the last word of the span (header, bytes, tail, rounded up to 4 KiB).
            let span = (len as u64 + 16).div_ceil(4096) * 4096;
            tails.push((h.offset() - 8 + span - 8, Some(j)));
        }
    }
    words.push((gone.offset() - 8, None));
    words.push((gone.offset(), None));
    let header_bits: Vec<u32> = BITS.iter().copied().chain(56..61).collect();
    let all_bits: Vec<u32> = (0..64).collect();
    let mut failures = Vec::new();
    for (name, image) in [("clean", &clean), ("dirty", &dirty)] {
        let mut t = Tally::default();
        let fill = [1 << 20, 64 << 10, 4096, 40];
        run_with(image, &live, &tails, &all_bits, open_large, &fill, &mut t);
        run_with(
            image,
            &live,
            &words,
            &header_bits,
            open_large,
            &fill,
            &mut t,
        );
        eprintln!("bit flips in LARGE blocks, {name} image: {t:?}");
        if t.refused_but_changed + t.unhit_lost + t.hit_lost_silently + t.panicked > 0 {
            failures.push(format!("{name}: {t:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "damage lost data silently: {failures:?}"
    );
}

// ---- The header page: every bit of the first 4096 bytes ----------------------------------------

/// What a user of an opened arena can read: the roots, the reserved bytes, every block and its
/// bytes, the file-wide stats, the header's counters and whether the open trusted the last close,
/// and (writable opens) the handle the next allocation gets, which shows the generation counter.
#[derive(Debug, PartialEq, Eq)]
struct Readable {
    roots: Vec<u64>,
    reserved: Vec<u8>,
    blocks: Vec<(parena::LiveBlock, Vec<u8>)>,
    stats: (u64, u64, u64, u64, u64, u64),
    header: (u64, u64, u32, u32, bool),
    was_clean: bool,
    next: Option<Handle>,
}

/// Reads everything in [`Readable`], and whether the open or `verify()` reported anything.
fn readable(a: &mut Arena, writable: bool) -> Result<(Readable, bool), Error> {
    let mut reported = a.recovery_report().is_some_and(|r| !r.is_clean());
    reported |= !a.verify()?.is_clean();
    let mut blocks = Vec::new();
    for b in a.live_blocks()? {
        let mut bytes = vec![0u8; b.len as usize];
        a.read(b.handle, 0, &mut bytes)?;
        blocks.push((b, bytes));
    }
    let s = a.stats();
    let h = a.header();
    let next = if writable {
        Some(a.alloc_copy(b"next")?)
    } else {
        None
    };
    let r = Readable {
        roots: (0..parena::ROOT_SLOTS).map(|i| a.root(i)).collect(),
        reserved: a.reserved().to_vec(),
        blocks,
        stats: (
            s.capacity,
            s.data_start,
            s.heap_end,
            s.allocated,
            s.remaining,
            s.discarded,
        ),
        header: (
            h.capacity,
            h.open_count,
            h.reserved_len,
            h.min_segment,
            h.clean,
        ),
        was_clean: a.was_clean(),
        next,
    };
    Ok((r, reported))
}

fn open_header_case(path: &Path, reserved: u32, read_only: bool) -> Result<Arena, Error> {
    // SAFETY: private file in a private directory; nothing else maps it.
    unsafe {
        Options::new()
            .create(false)
            .read_only(read_only)
            .freelist(Freelist::Pessimistic)
            .reserved(reserved)
            .map_file(path)
    }
}

/// A cleanly closed arena: blocks (a quarter freed, so free-list heads are in use) and, with
/// `reserved > 0`, reserved bytes and sixteen non-zero roots.
fn build_header_case(path: &Path, reserved: u32) -> Vec<u8> {
    // SAFETY: as above.
    let mut a = unsafe {
        Options::new()
            .capacity(256 << 10)
            .chunk_size(4096)
            .freelist(Freelist::Pessimistic)
            .reserved(reserved)
            .map_file(path)
    }
    .unwrap();
    if reserved > 0 {
        for (k, x) in a.reserved_mut().unwrap().iter_mut().enumerate() {
            *x = byte(7, k) | 1;
        }
        for i in 0..parena::ROOT_SLOTS {
            a.set_root(i, 42 + (i as u64) * 0x0101_0101).unwrap();
        }
    }
    let mut freed = Vec::new();
    for i in 0..120 {
        let len = 24 + (i * 13) % 300;
        let mut b = a.alloc(len).unwrap();
        for (k, x) in b.iter_mut().enumerate() {
            *x = byte(i, k);
        }
        let h = b.into_handle();
        if i % 4 == 1 {
            freed.push(h);
        }
    }
    for h in freed {
        a.free(h).unwrap();
    }
    a.close().unwrap();
    std::fs::read(path).unwrap()
}

/// Header-page flips tallied: refused (a typed error, the file untouched), reported (by the
/// recovery report or `verify()`), kept with every readable value unchanged, or silent (a
/// readable value changed and nothing said so).
#[derive(Debug, Default)]
struct HeaderTally {
    cases: u64,
    refused: u64,
    refused_but_changed: u64,
    reported: u64,
    unchanged: u64,
    silent: u64,
    panicked: u64,
    /// The first few silent cases: (byte offset, bit, read-only open).
    first_silent: Vec<(usize, u32, bool)>,
}

/// Flips each `(byte, bit)` of `image`'s header page, one at a time, and opens the result
/// read-only (as `parena verify` does) and writable.
fn sweep_header(image: &[u8], reserved: u32, flips: &[(usize, u32)], t: &mut HeaderTally) {
    // In memory where the system has a tmpfs: tens of thousands of opens, each with an `msync`.
    let dir = match tempfile::tempdir_in("/dev/shm") {
        Ok(d) => d,
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let path = dir.path().join("flip");
    let mut base = Vec::new();
    for read_only in [true, false] {
        std::fs::write(&path, image).unwrap();
        let mut a = open_header_case(&path, reserved, read_only).unwrap();
        let (r, reported) = readable(&mut a, !read_only).unwrap();
        assert!(!reported, "the unharmed image reports damage");
        assert!(r.was_clean, "the unharmed image opens clean");
        assert_eq!(
            r.header.4, r.was_clean,
            "header().clean and was_clean() disagree"
        );
        base.push(r);
    }
    for &(at, bit) in flips {
        let mut img = image.to_vec();
        img[at] ^= 1 << bit;
        for (k, read_only) in [true, false].into_iter().enumerate() {
            t.cases += 1;
            std::fs::write(&path, &img).unwrap();
            let before = file_hash(&path);
            let outcome = std::panic::catch_unwind(|| {
                let mut a = open_header_case(&path, reserved, read_only)?;
                readable(&mut a, !read_only)
            });
            match outcome {
                Err(_) => t.panicked += 1,
                Ok(Err(_)) => {
                    t.refused += 1;
                    if file_hash(&path) != before {
                        t.refused_but_changed += 1;
                    }
                }
                Ok(Ok((_, true))) => t.reported += 1,
                Ok(Ok((r, false))) if r == base[k] => t.unchanged += 1,
                Ok(Ok(_)) => {
                    t.silent += 1;
                    if t.first_silent.len() < 12 {
                        t.first_silent.push((at, bit, read_only));
                    }
                }
            }
        }
    }
}

/// Every bit of the header page and of the reserved area (`reserved` bytes after it), or
/// (`sampled`) every bit of the words that change while an arena is open (bytes 48..128:
/// capacity to `gen_seed` and the spare words), of root slots 0 and 5, of each meta slot's epoch
/// and checksum, and one bit of every reserved byte and of one byte in sixteen elsewhere (the bit
/// moving with the byte, so every bit position is tried).
fn header_flips(sampled: bool, reserved: usize) -> Vec<(usize, u32)> {
    let roots = parena_testkit::layout::OFF_ROOTS;
    let slot = parena_testkit::layout::ROOT_SLOT_BYTES;
    let every = |at: usize| {
        (48..128).contains(&at)
            || (roots..roots + slot).contains(&at)
            || (roots + 5 * slot..roots + 6 * slot).contains(&at)
            || [2304, 2304 + 56, 2560, 2560 + 56]
                .iter()
                .any(|&w| (w..w + 8).contains(&at))
    };
    (0..4096 + reserved)
        .flat_map(|at| (0..8).map(move |bit| (at, bit)))
        .filter(|&(at, bit)| {
            !sampled || every(at) || (bit as usize == (at / 16) % 8 && (at % 16 == 3 || at >= 4096))
        })
        .collect()
}

fn header_sweep(sampled: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (name, reserved) in [("plain", 0u32), ("reserved and roots", 100)] {
        let flips = header_flips(sampled, reserved as usize);
        let image = build_header_case(&dir.path().join(name), reserved);
        let mut t = HeaderTally::default();
        sweep_header(&image, reserved, &flips, &mut t);
        eprintln!("header flips, {name}: {t:?}");
        // A cleanly closed header is sealed whole: every flip is refused or reported, and in
        // particular no readable value changes unannounced.
        if t.refused_but_changed + t.silent + t.unchanged + t.panicked > 0 {
            failures.push(format!("{name}: {t:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "header flips not refused nor reported: {failures:?}"
    );
}

/// One flipped bit in the header page or the reserved area of a cleanly closed arena is refused
/// (a typed error, the file untouched) or reported (recovery report or `verify()`), read-only
/// and writable, and never changes a readable value unannounced: the mutable words, two root
/// slots and the meta slots' epochs and checksums bit by bit, a sample elsewhere
/// ([`header_flips`]).
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn a_flipped_header_bit_is_refused_or_reported() {
    header_sweep(true);
}

/// [`a_flipped_header_bit_is_refused_or_reported`] over every bit of the header page and the
/// reserved area.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
#[cfg_attr(
    not(miri),
    ignore = "long (81 s on 2 cores): every bit of the header page and reserved area, two arenas, read-only and writable"
)]
fn every_flipped_header_bit_is_refused_or_reported() {
    header_sweep(false);
}

/// A root's value and its check word share one 16-byte unit, so even a file left dirty (no seal:
/// a crash, here a flushed arena never closed) reports a flipped bit in either: every bit of root
/// 5's value and of its check word, read-only (through `verify()`) and writable (the recovery
/// report and `verify()`). The unharmed dirty image reports nothing.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn a_flipped_root_bit_in_a_dirty_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arena");
    let a = open(&path).unwrap();
    for i in 0..parena::ROOT_SLOTS {
        a.set_root(i, 42 + i as u64).unwrap();
    }
    let _ = a.alloc_copy(b"a block").unwrap();
    a.flush().unwrap();
    let dirty = std::fs::read(&path).unwrap();
    drop(a);
    let at = parena_testkit::layout::OFF_ROOTS + 5 * parena_testkit::layout::ROOT_SLOT_BYTES;
    let reported = |img: &[u8], read_only: bool| {
        std::fs::write(&path, img).unwrap();
        // SAFETY: as above.
        let mut a = unsafe {
            Options::new()
                .create(false)
                .read_only(read_only)
                .map_file(&path)
        }
        .unwrap();
        let by_open = a.recovery_report().is_some_and(|r| !r.is_clean());
        by_open | !a.verify().unwrap().is_clean()
    };
    assert!(!reported(&dirty, true) && !reported(&dirty, false));
    let mut silent = Vec::new();
    for bit in 0..128 {
        let mut img = dirty.clone();
        img[at + bit / 8] ^= 1 << (bit % 8);
        for read_only in [true, false] {
            if !reported(&img, read_only) {
                silent.push((bit, read_only));
            }
        }
    }
    assert!(silent.is_empty(), "root flips not reported: {silent:?}");
}

/// A word parena keeps zero that is set in a dirty file (no seal covers it): a read-only open
/// reports it through `verify()` and changes nothing; a recovering open lists it in its report
/// and repairs it (the word holds nothing), so the arena verifies clean from then on and the next
/// open finds nothing to report. Found by the `open_bytes` fuzz target (an old root's word set).
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn a_set_spare_word_in_a_dirty_file_is_reported_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arena");
    let a = open(&path).unwrap();
    let h = a.alloc_copy(b"a block").unwrap();
    a.set_root(0, h.to_u64()).unwrap();
    a.flush().unwrap();
    let dirty = std::fs::read(&path).unwrap();
    drop(a);
    let spares = parena::testkit::spare_word_offsets();
    assert!(spares.len() > 100 && spares.contains(&240));
    let word = 0x3000_0000_0000_0008u64;
    for &at in &spares {
        let mut img = dirty.clone();
        img[at..at + 8].copy_from_slice(&word.to_le_bytes());
        std::fs::write(&path, &img).unwrap();
        let set = Problem::HeaderSpare {
            offset: at as u64,
            word,
        };
        {
            // SAFETY: private file; nothing else maps it.
            let mut ro =
                unsafe { Options::new().create(false).read_only(true).map_file(&path) }.unwrap();
            assert_eq!(
                ro.verify().unwrap().problems,
                std::slice::from_ref(&set),
                "at {at}"
            );
        }
        assert_eq!(std::fs::read(&path).unwrap(), img, "a read-only open wrote");
        {
            let mut a = open(&path).unwrap();
            let report = a.recovery_report().expect("a dirty file recovers").clone();
            assert!(report.problems.contains(&set), "at {at}: {report:?}");
            let v = a.verify().unwrap();
            assert!(v.is_clean(), "at {at}: {v:?}");
            let mut buf = [0u8; 7];
            a.read(h, 0, &mut buf).unwrap();
            assert_eq!(&buf, b"a block");
        }
        let mut a = open(&path).unwrap();
        assert!(a.recovery_report().is_none(), "closed clean");
        assert!(a.verify().unwrap().is_clean(), "at {at}");
        drop(a);
        let now = std::fs::read(&path).unwrap();
        assert_eq!(&now[at..at + 8], &[0; 8], "at {at}");
    }
}

/// The generation counter is a header word no check can vouch for in a dirty file, and in a
/// clean file whose seal fails the open trusts no mutable word. Each meta slot records the
/// counter as of its flush (a clean close flushes last, so its slot holds the exact value): a
/// recovering open continues from the larger of the two, so a counter set back by damage never
/// mints again the generations of blocks freed before it, and their stale handles stay stale.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn a_damaged_generation_counter_never_revives_a_stale_handle() {
    use parena::testkit::OFF_GEN_SEED;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arena");
    let at = OFF_GEN_SEED..OFF_GEN_SEED + 8;
    let seed_of = |img: &[u8]| u64::from_le_bytes(img[at.clone()].try_into().unwrap());
    // One cycle: 2000 blocks allocated, then all freed; the handles and the file as the flush
    // after it left it.
    let cycle = |a: &Arena| -> (Vec<Handle>, Vec<u8>) {
        let hs: Vec<Handle> = (0..2000)
            .map(|i| a.alloc_copy(&[i as u8; 40]).unwrap())
            .collect();
        for &h in hs.iter().rev() {
            a.free(h).unwrap();
        }
        a.flush().unwrap();
        (hs, std::fs::read(&path).unwrap())
    };
    for dirty in [false, true] {
        let _ = std::fs::remove_file(&path);
        // A few cycles, each in an open of its own, until one allocates what the one before did.
        drop(open(&path).unwrap());
        let mut before = seed_of(&std::fs::read(&path).unwrap());
        let mut last = Vec::new();
        let (mut old, mut used) = (Vec::new(), 0);
        for _ in 0..4 {
            let a = open(&path).unwrap();
            let (hs, flushed) = cycle(&a);
            drop(a);
            let closed = std::fs::read(&path).unwrap();
            let after = seed_of(&flushed);
            used = after - before;
            before = after;
            // Each next cycle starts from a recovery, as the one after the damage does.
            std::fs::write(&path, &flushed).unwrap();
            last = if dirty { flushed } else { closed };
            old = hs;
        }
        // The counter set back by what the last cycle used: without the meta slot's record, the
        // next cycle mints the same generations again (a clean file's seal then fails).
        let mut img = last;
        let back = before - used;
        img[at.clone()].copy_from_slice(&back.to_le_bytes());
        std::fs::write(&path, &img).unwrap();
        let a = open(&path).unwrap();
        assert!(a.recovery_report().is_some(), "dirty: {dirty}");
        let new: Vec<Handle> = (0..2000)
            .map(|i| a.alloc_copy(&[i as u8; 40]).unwrap())
            .collect();
        let revived = old.iter().filter(|&&h| a.contains(h)).count();
        let same = old.iter().zip(&new).filter(|(o, n)| o == n).count();
        assert_eq!((revived, same), (0, 0), "dirty {dirty}: stale handles pass");
    }
}
