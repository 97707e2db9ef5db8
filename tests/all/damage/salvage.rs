//! `parena::salvage`: damaged files (flipped header bits, zeroed heap, a garbage bump word, a
//! damaged meta slot, a damaged free segment, a page of random bytes; a dirty image; a power-cut
//! image) salvage into files that open clean and verify clean, hold every block the report saved
//! under its original handle, and lose no block whose header and bytes were not hit. The damaged
//! file is never changed; a file that is not an arena, and a `fresh` path that exists, are refused.

use crate::util::{file_hash, Rng};
use parena::{Arena, Error, Freelist, Handle, LostReason, Options, SalvageReport};
use std::alloc::Layout;
use std::collections::HashMap;
use std::path::Path;

const CAP: u64 = 1 << 20;
const MAGIC_VERSION: u16 = 3;
const RESERVED: u32 = 100;
const ROOTS: usize = 16;

fn opts(freelist: Freelist) -> Options {
    Options::new()
        .capacity(CAP)
        .freelist(freelist)
        .reserved(RESERVED)
        .chunk_size(4096)
        .magic_version(MAGIC_VERSION)
}

fn open(o: Options, path: &Path) -> Result<Arena, Error> {
    // SAFETY: a private file in a private directory; nothing else maps or changes it.
    unsafe { o.map_file(path) }
}

fn run_salvage(damaged: &Path, fresh: &Path) -> Result<SalvageReport, Error> {
    // SAFETY: as above, for both files.
    unsafe { parena::salvage(damaged, fresh) }
}

/// What the arena held when it was imaged: live blocks by handle (their bytes), roots, reserved.
struct Original {
    live: HashMap<Handle, Vec<u8>>,
    roots: [u64; ROOTS],
    reserved: Vec<u8>,
    foreign: usize,
}

fn span(len: usize) -> u64 {
    8 + (len as u64).div_ceil(8) * 8
}

/// Fills `arena` with `n` blocks (lengths 1..300, some aligned to 64 or 256 so fillers exist,
/// one large block over several chunks), frees every fourth, sets roots and the reserved area.
fn populate(arena: &mut Arena, n: usize, seed: u64, o: &mut Original) {
    let mut rng = Rng(seed);
    let mut freed = Vec::new();
    for i in 0..n {
        let len = if i == n / 2 {
            10_000
        } else {
            1 + rng.below(300) as usize
        };
        let mut b = match i % 9 {
            3 => arena.alloc_layout(Layout::from_size_align(len, 64).unwrap()),
            6 => arena.alloc_layout(Layout::from_size_align(len, 256).unwrap()),
            _ => arena.alloc(len),
        }
        .unwrap();
        for x in b.iter_mut() {
            *x = rng.next() as u8;
        }
        let bytes = b.to_vec();
        let h = b.into_handle();
        if i % 4 == 1 {
            freed.push(h);
        } else {
            o.live.insert(h, bytes);
        }
    }
    for h in freed {
        arena.free(h).unwrap();
    }
    #[cfg(feature = "allocator-api2")]
    {
        use allocator_api2::alloc::Allocator;
        for i in 0..4 {
            let p = (*arena)
                .allocate(Layout::from_size_align(24 + 8 * i, 8).unwrap())
                .unwrap();
            // SAFETY: the block was just handed out for 24 + 8i bytes and nothing else uses it.
            unsafe { std::ptr::write_bytes(p.as_ptr().cast::<u8>(), 0xa5, 24 + 8 * i) };
            o.foreign += 1;
        }
    }
    let handles: Vec<Handle> = o.live.keys().copied().collect();
    for i in 0..ROOTS {
        let v = if i < 4 {
            handles[i * 7].to_u64()
        } else {
            rng.next()
        };
        arena.set_root(i, v).unwrap();
        o.roots[i] = v;
    }
    let r = arena.reserved_mut().unwrap();
    for x in r.iter_mut() {
        *x = rng.next() as u8;
    }
    o.reserved = r.to_vec();
}

fn original() -> Original {
    Original {
        live: HashMap::new(),
        roots: [0; ROOTS],
        reserved: Vec::new(),
        foreign: 0,
    }
}

/// A cleanly closed arena file at `path` and what it holds.
fn build_clean(path: &Path, freelist: Freelist, seed: u64) -> Original {
    let mut o = original();
    let mut a = open(opts(freelist), path).unwrap();
    populate(&mut a, 400, seed, &mut o);
    a.close().unwrap();
    o
}

fn word(img: &[u8], at: u64) -> u64 {
    u64::from_le_bytes(img[at as usize..at as usize + 8].try_into().unwrap())
}

fn set_word(img: &mut [u8], at: u64, w: u64) {
    img[at as usize..at as usize + 8].copy_from_slice(&w.to_le_bytes());
}

fn xor_word(img: &mut [u8], at: u64, bits: u64) {
    let w = word(img, at);
    set_word(img, at, w ^ bits);
}

/// Live blocks sorted by offset: (header offset, handle).
fn by_offset(o: &Original) -> Vec<(u64, Handle)> {
    let mut v: Vec<(u64, Handle)> = o.live.keys().map(|&h| (h.offset() - 8, h)).collect();
    v.sort();
    v
}

/// How many original blocks one case saved and lost.
#[derive(Debug)]
struct Tally {
    saved: usize,
    lost: usize,
    hit: usize,
    regions: usize,
}

/// Salvages `damaged` into a new file beside it and checks everything the guarantee says; `hit`
/// lists the byte ranges the damage touched (blocks overlapping one may be lost or changed).
fn check_salvage(
    damaged: &Path,
    o: &Original,
    hit: &[(u64, u64)],
    all_must_survive: bool,
) -> (SalvageReport, Tally) {
    let before = file_hash(damaged);
    let img = std::fs::read(damaged).unwrap();
    let fresh = damaged.with_extension("fresh");
    let report = run_salvage(damaged, &fresh).unwrap();
    assert_eq!(
        file_hash(damaged),
        before,
        "salvage changed the damaged file"
    );
    assert_eq!(report.capacity, CAP);
    assert_eq!(
        report.saved_bytes,
        report.saved.iter().map(|s| s.len).sum::<u64>()
    );
    let mut a = open(Options::new().magic_version(MAGIC_VERSION), &fresh).unwrap();
    assert!(a.was_clean(), "the salvaged file is not clean");
    let v = a.verify().unwrap();
    assert!(v.is_clean(), "{v:?}");
    assert_eq!(v.live_blocks, report.saved.len() as u64);
    let touched =
        |off: u64, len: usize| hit.iter().any(|&(h, l)| off < h + l && h < off + span(len));
    let saved: HashMap<Handle, u64> = report.saved.iter().map(|s| (s.handle, s.len)).collect();
    let mut t = Tally {
        saved: 0,
        lost: 0,
        hit: 0,
        regions: report.lost.len(),
    };
    for s in report.saved.iter().filter(|s| !s.foreign) {
        let off = s.handle.offset();
        let mut got = vec![0u8; s.len as usize];
        a.read(s.handle, 0, &mut got).unwrap();
        // Always exactly what the damaged file holds there.
        assert_eq!(got, img[off as usize..(off + s.len) as usize], "{s:?}");
        if let Some(bytes) = o.live.get(&s.handle) {
            if !touched(off - 8, bytes.len()) {
                assert_eq!(&got, bytes, "{s:?} changed");
            }
        } else {
            assert!(
                touched(off - 8, s.len as usize),
                "{s:?} saved but never allocated, and not hit"
            );
        }
    }
    for (&h, bytes) in &o.live {
        let hit_here = touched(h.offset() - 8, bytes.len());
        t.hit += usize::from(hit_here);
        if saved.get(&h) == Some(&(bytes.len() as u64)) {
            t.saved += 1;
        } else {
            t.lost += 1;
            // After a crash, a block allocated since the last flush that follows damage has
            // only the start map to vouch for it: reported as such, never silently.
            let one_record = report.lost.iter().any(|l| {
                l.offset == h.offset() - 8 && matches!(l.reason, LostReason::OneRecord { .. })
            });
            assert!(
                (hit_here || one_record) && !all_must_survive,
                "block {h:?} ({} bytes) was not hit and was not saved: {:?}",
                bytes.len(),
                report.lost
            );
        }
    }
    assert_eq!(
        report.saved.iter().filter(|s| s.foreign).count(),
        o.foreign,
        "FOREIGN blocks"
    );
    for i in 0..ROOTS {
        assert_eq!(a.root(i), o.roots[i], "root {i}");
    }
    assert_eq!(a.reserved(), &o.reserved[..]);
    assert!(report.roots_copied);
    assert_eq!(report.reserved_copied, u64::from(RESERVED));
    // The salvaged arena is usable: allocations never overlap a saved block.
    for i in 0..200 {
        let h = a.alloc_copy(&[i as u8; 72]).unwrap();
        assert!(saved.keys().all(|s| s.offset() != h.offset()));
    }
    for s in report.saved.iter().filter(|s| !s.foreign) {
        let off = s.handle.offset();
        let mut got = vec![0u8; s.len as usize];
        a.read(s.handle, 0, &mut got).unwrap();
        assert_eq!(got, img[off as usize..(off + s.len) as usize]);
    }
    assert!(a.verify().unwrap().is_clean());
    a.close().unwrap();
    std::fs::remove_file(&fresh).unwrap();
    (report, t)
}

/// One way of damaging a clean image; returns the byte ranges it touched.
type Damage = fn(&mut [u8], &Original) -> Vec<(u64, u64)>;

fn flip_len(img: &mut [u8], o: &Original) -> Vec<(u64, u64)> {
    let blocks = by_offset(o);
    let (off, _) = blocks[blocks.len() / 3];
    xor_word(img, off, 1 << 4);
    vec![(off, 8)]
}

fn flip_gen(img: &mut [u8], o: &Original) -> Vec<(u64, u64)> {
    let blocks = by_offset(o);
    let (a, _) = blocks[blocks.len() / 4];
    let (b, _) = blocks[blocks.len() / 5];
    // Two flips in the generation field (bits 24..56 of a LIVE word): each breaks the check code.
    xor_word(img, a, 1 << 35);
    xor_word(img, b, 1 << 32);
    vec![(a, 8), (b, 8)]
}

fn zero_run(img: &mut [u8], o: &Original) -> Vec<(u64, u64)> {
    let blocks = by_offset(o);
    let at = (blocks[blocks.len() * 2 / 3].0 - 100) / 8 * 8;
    img[at as usize..at as usize + 400].fill(0);
    vec![(at, 400)]
}

fn garbage_bump(img: &mut [u8], _: &Original) -> Vec<(u64, u64)> {
    set_word(img, 80, 0x1234_5678_9abc_def1);
    Vec::new()
}

fn damaged_meta(img: &mut [u8], _: &Original) -> Vec<(u64, u64)> {
    let newest = if word(img, 2560) > word(img, 2304) {
        2560
    } else {
        2304
    };
    img[newest as usize + 24] ^= 0x10;
    Vec::new()
}

fn garbage_capacity(img: &mut [u8], _: &Original) -> Vec<(u64, u64)> {
    // Still a multiple of 4096 and within the file: it validates, but no meta slot names it.
    let c = word(img, 48);
    set_word(img, 48, c - 8192);
    Vec::new()
}

fn both_meta_slots(img: &mut [u8], _: &Original) -> Vec<(u64, u64)> {
    // No flush map to trust: the walk and the start map alone.
    img[2304 + 56] ^= 1;
    img[2560 + 56] ^= 1;
    Vec::new()
}

fn free_span(img: &mut [u8], o: &Original) -> Vec<(u64, u64)> {
    // The first FREE segment after the middle of the heap: its span word grows by 48.
    let blocks = by_offset(o);
    let mut p = blocks[blocks.len() / 2].0;
    loop {
        let w = word(img, p);
        if w >> 62 == 0b10 {
            let s = word(img, p + 8);
            set_word(img, p + 8, s + 48);
            return vec![(p, 16)];
        }
        p = match (
            parena::testkit::decode_live(w),
            parena::testkit::decode_pad(w),
        ) {
            (Some((len, _, _)), _) => p + span(len as usize),
            (_, Some(pad)) => p + pad,
            _ => p + 8,
        };
    }
}

fn random_page(img: &mut [u8], o: &Original) -> Vec<(u64, u64)> {
    let blocks = by_offset(o);
    let mid = blocks[blocks.len() / 2 + 20].0 / 4096 * 4096;
    let mut rng = Rng(0x5eed);
    for b in &mut img[mid as usize..mid as usize + 4096] {
        *b = rng.next() as u8;
    }
    vec![(mid, 4096)]
}

#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn damaged_clean_files_salvage_every_intact_block() {
    let cases: &[(&str, Damage, bool)] = &[
        ("flipped length bit", flip_len, false),
        ("flipped generation bits", flip_gen, false),
        ("zeroed run of heap", zero_run, false),
        ("garbage bump word", garbage_bump, true),
        ("damaged meta slot", damaged_meta, true),
        ("garbage capacity word", garbage_capacity, true),
        ("both meta slots damaged", both_meta_slots, true),
        ("damaged free segment span", free_span, true),
        ("page of random bytes", random_page, false),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (k, freelist) in [Freelist::Optimistic, Freelist::Pessimistic]
        .into_iter()
        .enumerate()
    {
        let clean = dir.path().join(format!("clean{k}"));
        let o = build_clean(&clean, freelist, 7 + k as u64);
        let img0 = std::fs::read(&clean).unwrap();
        // The undamaged file salvages whole.
        let (r, t) = check_salvage(&clean, &o, &[], true);
        assert!(r.is_complete(), "{r:?}");
        assert!(r.header_clean);
        assert_eq!(t.saved, o.live.len());
        for &(name, damage, all) in cases {
            let mut img = img0.clone();
            let hit = damage(&mut img, &o);
            let path = dir.path().join(format!("damaged{k}"));
            std::fs::write(&path, &img).unwrap();
            let (r, t) = check_salvage(&path, &o, &hit, all);
            eprintln!(
                "salvage {freelist:?} {name}: {} of {} live blocks saved, {} lost ({} hit), \
                 {} regions reported, header clean {}, repaired {:?}",
                t.saved,
                o.live.len(),
                t.lost,
                t.hit,
                t.regions,
                r.header_clean,
                r.header_repaired
            );
            match name {
                "garbage bump word" => assert_eq!(r.header_repaired, ["bump"]),
                "garbage capacity word" => assert_eq!(r.header_repaired, ["capacity"]),
                "both meta slots damaged" => assert_eq!(r.meta_epoch, None),
                _ => {}
            }
            if t.lost > 0 {
                assert!(!r.lost.is_empty(), "blocks lost without a region reported");
            }
            std::fs::remove_file(&path).unwrap();
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn dirty_images_salvage() {
    let dir = tempfile::tempdir().unwrap();
    for (k, freelist) in [Freelist::Optimistic, Freelist::Pessimistic]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("arena{k}"));
        let mut o = original();
        let mut a = open(opts(freelist), &path).unwrap();
        populate(&mut a, 300, 99 + k as u64, &mut o);
        a.flush().unwrap();
        // More after the flush: these are vouched for by the walk only.
        for i in 0..50 {
            let h = a.alloc_copy(&[i as u8; 40]).unwrap();
            o.live.insert(h, vec![i as u8; 40]);
        }
        // The file as a process crash would leave it (the page cache at this moment).
        let img = std::fs::read(&path).unwrap();
        drop(a);
        let dirty = dir.path().join(format!("dirty{k}"));
        std::fs::write(&dirty, &img).unwrap();
        let (r, t) = check_salvage(&dirty, &o, &[], true);
        assert!(!r.header_clean);
        eprintln!(
            "salvage {freelist:?} dirty image: {} of {} saved, {} regions reported: {:?}",
            t.saved,
            o.live.len(),
            t.regions,
            r.lost
        );
        assert!(
            r.lost
                .iter()
                .all(|l| matches!(l.reason, LostReason::NotLive { .. })),
            "{:?}",
            r.lost
        );
        // The same image with a run of the blocks allocated after the flush zeroed: the walk
        // resumes after it, and the first block there has only the start map (not the flush
        // map) to vouch for it. The run is two such blocks (48-byte spans) followed by a third:
        // where the allocator placed them is its business (a freed segment before the flush
        // serves some of them before a new chunk), so the run is looked for, not assumed.
        let mut late: Vec<u64> = o
            .live
            .iter()
            .filter(|(_, b)| b.len() == 40 && b.iter().all(|&x| x == b[0]) && b[0] < 50)
            .map(|(h, _)| h.offset() - 8)
            .collect();
        late.sort();
        let at = late
            .iter()
            .copied()
            .find(|&x| late.contains(&(x + 48)) && late.contains(&(x + 96)))
            .expect("three blocks allocated after the flush lie next to each other");
        let mut img = img.clone();
        img[at as usize..at as usize + 96].fill(0);
        std::fs::write(&dirty, &img).unwrap();
        let (r, t) = check_salvage(&dirty, &o, &[(at, 96)], false);
        eprintln!(
            "salvage {freelist:?} dirty image, zeroed run after the flush: {} of {} saved, \
             {} lost ({} hit): {:?}",
            t.saved,
            o.live.len(),
            t.lost,
            t.hit,
            r.lost
        );
        assert!(r
            .lost
            .iter()
            .any(|l| matches!(l.reason, LostReason::OneRecord { .. })));
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn power_cut_images_salvage_into_clean_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0xc0ffee);
    let (mut saved, mut total) = (0, 0);
    for round in 0..12u64 {
        let freelist = if round % 2 == 0 {
            Freelist::Optimistic
        } else {
            Freelist::Pessimistic
        };
        let (mut a, disk) = opts(freelist).simulated_disk().unwrap();
        let mut o = original();
        populate(&mut a, 250, round, &mut o);
        a.flush().unwrap();
        // After the flush: frees, allocations, a root; none of it is promised to survive.
        let at_flush = o.live.clone();
        let mut handles: Vec<Handle> = o.live.keys().copied().collect();
        handles.sort();
        for h in handles.iter().step_by(5) {
            a.free(*h).unwrap();
            o.live.remove(h);
        }
        for i in 0..100 {
            let len = 1 + rng.below(200) as usize;
            let h = a.alloc_copy(&vec![i as u8; len]).unwrap();
            o.live.insert(h, vec![i as u8; len]);
        }
        let keep = rng.below(100);
        let mut pages = Rng(rng.next());
        let img = disk.crash_image(&a, |_| pages.below(100) < keep);
        drop(a);
        let path = dir.path().join(format!("cut{round}"));
        std::fs::write(&path, &img).unwrap();
        let before = file_hash(&path);
        let fresh = dir.path().join(format!("cut{round}.fresh"));
        let r = run_salvage(&path, &fresh).unwrap();
        assert_eq!(file_hash(&path), before);
        let mut f = open(Options::new().magic_version(MAGIC_VERSION), &fresh).unwrap();
        assert!(f.was_clean());
        assert!(f.verify().unwrap().is_clean());
        for s in r.saved.iter().filter(|s| !s.foreign) {
            let off = s.handle.offset() as usize;
            let mut got = vec![0u8; s.len as usize];
            f.read(s.handle, 0, &mut got).unwrap();
            assert_eq!(got, img[off..off + s.len as usize]);
        }
        // Blocks live at the flush and not freed since keep their bytes (their pages were
        // flushed and nothing wrote them after).
        for (h, bytes) in at_flush.iter().filter(|(h, _)| o.live.contains_key(*h)) {
            total += 1;
            if r.saved.iter().any(|s| s.handle == *h) {
                saved += 1;
                let mut got = vec![0u8; bytes.len()];
                f.read(*h, 0, &mut got).unwrap();
                assert_eq!(&got, bytes, "{h:?}");
            }
        }
        f.close().unwrap();
    }
    eprintln!("salvage power cuts: {saved} of {total} blocks live at the flush saved");
    assert!(saved * 10 >= total * 9, "{saved} of {total}");
}

#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn not_an_arena_and_existing_fresh_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0x42u8; 64 << 10]).unwrap();
    let fresh = dir.path().join("fresh");
    let before = file_hash(&junk);
    assert!(matches!(
        run_salvage(&junk, &fresh),
        Err(Error::Magic { .. })
    ));
    assert_eq!(file_hash(&junk), before);
    assert!(!fresh.exists());

    let clean = dir.path().join("clean");
    build_clean(&clean, Freelist::Optimistic, 1);
    let mut img = std::fs::read(&clean).unwrap();
    img[20] ^= 1; // min_segment: covered by the header checksum
    let bad = dir.path().join("bad");
    std::fs::write(&bad, &img).unwrap();
    let before = file_hash(&bad);
    assert!(matches!(
        run_salvage(&bad, &fresh),
        Err(Error::Checksum { .. })
    ));
    assert_eq!(file_hash(&bad), before);
    assert!(!fresh.exists());

    std::fs::write(&fresh, b"keep me").unwrap();
    let before = file_hash(&clean);
    assert!(matches!(run_salvage(&clean, &fresh), Err(Error::Exists)));
    assert_eq!(std::fs::read(&fresh).unwrap(), b"keep me");
    assert_eq!(file_hash(&clean), before);
    assert!(matches!(run_salvage(&clean, &clean), Err(Error::Exists)));
    assert_eq!(file_hash(&clean), before);
}
