//! LARGE blocks (1 MiB and more): the header keeps their span in 4 KiB units, and the exact length
//! lives in a tail word after the user bytes (docs/format.md). Everything a small block does, a
//! LARGE block does the same way: exact lengths, frees and reuse, reopen, the allocator interface,
//! and a tail word that is not the block's own is damage, reported and never read past.

use crate::util::{check, fill};
use parena::{Arena, Error, Freelist, Handle, Options};
use std::path::Path;

const MIB: usize = 1 << 20;

fn open(path: &Path) -> Result<Arena, Error> {
    // SAFETY: a test's private file in a private directory; nothing else maps or changes it.
    unsafe {
        Options::new()
            .capacity(32 << 20)
            .freelist(Freelist::Pessimistic)
            .map_file(path)
    }
}

/// Lengths on both sides of the LARGE boundary and of a 4 KiB unit.
const LENS: [usize; 6] = [
    MIB - 1,
    MIB,
    MIB + 1,
    MIB + 4079,
    MIB + 4080,
    3 * MIB + 12_345,
];

#[test]
#[cfg_attr(miri, ignore = "fills 9 MiB; `one_large_block` is the Miri case")]
fn large_blocks_keep_their_exact_length() {
    let mut arena = Options::new().capacity(64 << 20).heap().unwrap();
    let hs: Vec<(Handle, usize)> = LENS
        .iter()
        .enumerate()
        .map(|(i, &len)| (fill(&arena, len, i as u8 + 1), len))
        .collect();
    for (i, &(h, len)) in hs.iter().enumerate() {
        assert_eq!(arena.len_of(h).unwrap(), len);
        assert_eq!(arena.read_with(h, <[u8]>::len).unwrap(), len);
        check(&arena, h, len, i as u8 + 1);
        // One byte past the end is out of bounds, as for any block.
        let mut one = [0u8; 1];
        assert!(matches!(
            arena.read(h, len, &mut one),
            Err(Error::OutOfBounds { .. })
        ));
        assert!(arena.contains(h));
    }
    let s = arena.stats();
    assert_eq!(s.net_bytes, LENS.iter().sum::<usize>() as i64);
    assert!(arena.verify().unwrap().is_clean());
    for &(h, _) in &hs {
        arena.free(h).unwrap();
        assert!(matches!(
            arena.free(h),
            Err(Error::DoubleFree { .. } | Error::Stale { .. })
        ));
        assert!(arena.read_with(h, |_| ()).is_err());
        assert!(arena.len_of(h).is_err());
    }
    assert_eq!(arena.stats().net_bytes, 0);
    assert!(arena.verify().unwrap().is_clean());
}

/// One LARGE block through the block API, small enough for Miri: the tail word is read under a
/// pin (`read_with`, `len_of`) and under `get`'s contract.
/// How many of the pages of `addr..addr + len` (page-aligned) are resident (`mincore`).
fn resident_pages(addr: usize, len: usize) -> usize {
    extern "C" {
        fn mincore(addr: *mut std::ffi::c_void, length: usize, vec: *mut u8) -> i32;
    }
    let mut vec = vec![0u8; len.div_ceil(4096)];
    // SAFETY: `addr..addr + len` lies in a live mapping (the caller's arena) and `vec` has a byte
    // per page; mincore only writes `vec`.
    let rc = unsafe { mincore(addr as *mut _, len, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().filter(|&&b| b & 1 != 0).count()
}

/// In an anonymous map a freed block of 128 KiB or more gives its pages back to the kernel, as a
/// system allocator unmaps its large blocks: resident memory follows the live data. The next
/// block of that size reuses the place and reads zero.
#[test]
#[cfg_attr(miri, ignore = "calls mincore; pages are not given back under Miri")]
fn a_freed_large_block_gives_its_pages_back_in_an_anonymous_map() {
    let arena = Options::new().capacity(64 << 20).map_anon().unwrap();
    let mut b = arena.alloc(8 * MIB).unwrap();
    b.fill(0x5a);
    let addr = b.as_ptr() as usize;
    let h = b.into_handle();
    // The whole pages inside the block's data, past its header's page.
    let (from, to) = (addr.div_ceil(4096) * 4096, (addr + 8 * MIB) / 4096 * 4096);
    assert_eq!(resident_pages(from, to - from), (to - from) / 4096);
    arena.free(h).unwrap();
    assert_eq!(
        resident_pages(from, to - from),
        0,
        "pages kept after the free"
    );
    let again = arena.alloc(8 * MIB).unwrap();
    assert_eq!(again.as_ptr() as usize, addr, "the freed place is reused");
    assert!(again.iter().all(|&x| x == 0));
    // A block below 128 KiB keeps its pages (the next allocation of its size takes them at once).
    let mut s = arena.alloc(64 << 10).unwrap();
    s.fill(1);
    let addr = s.as_ptr() as usize;
    let (from, to) = (
        addr.div_ceil(4096) * 4096,
        (addr + (64 << 10)) / 4096 * 4096,
    );
    let hs = s.into_handle();
    arena.free(hs).unwrap();
    assert_eq!(resident_pages(from, to - from), (to - from) / 4096);
}

#[test]
fn one_large_block() {
    let mut arena = Options::new().capacity(4 << 20).heap().unwrap();
    let len = MIB + 9;
    let mut b = arena.alloc(len).unwrap();
    b.fill(7);
    let h = b.into_handle();
    assert_eq!(arena.len_of(h).unwrap(), len);
    assert_eq!(
        arena.read_with(h, |b| (b.len(), b[len - 1])).unwrap(),
        (len, 7)
    );
    // SAFETY: nothing frees or writes `h` while `bytes` lives.
    let bytes = unsafe { arena.get(h).unwrap() };
    assert_eq!(bytes.len(), len);
    arena.free(h).unwrap();
    assert!(arena.len_of(h).is_err());
    assert!(arena.verify().unwrap().is_clean());
}

#[test]
#[cfg_attr(miri, ignore = "fills 8 MiB")]
fn a_freed_large_block_is_reused_and_its_stale_handle_refused() {
    let mut arena = Options::new()
        .capacity(8 << 20)
        .freelist(Freelist::Pessimistic)
        .heap()
        .unwrap();
    let a = fill(&arena, 2 * MIB, 1);
    let keep = fill(&arena, 100, 2);
    arena.free(a).unwrap();
    let allocated = arena.stats().allocated;
    // The next LARGE block that fits the freed one takes it before fresh memory.
    let b = fill(&arena, 2 * MIB - 3, 3);
    assert_eq!(b.offset(), a.offset(), "reused from the free list");
    assert_eq!(arena.stats().allocated, allocated, "fresh memory reserved");
    assert!(
        arena.read_with(a, |_| ()).is_err(),
        "the stale handle reads"
    );
    assert_eq!(arena.len_of(b).unwrap(), 2 * MIB - 3);
    check(&arena, b, 2 * MIB - 3, 3);
    check(&arena, keep, 100, 2);
    assert!(arena.verify().unwrap().is_clean());
}

#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn large_blocks_survive_reopen_and_a_read_only_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    let hs: Vec<(Handle, usize)> = {
        let a = open(&path).unwrap();
        let hs = LENS
            .iter()
            .enumerate()
            .map(|(i, &len)| (fill(&a, len, i as u8 + 1), len))
            .collect();
        a.close().unwrap();
        hs
    };
    for read_only in [false, true] {
        // SAFETY: as in `open`.
        let a = unsafe { Options::new().read_only(read_only).map_file(&path).unwrap() };
        for (i, &(h, len)) in hs.iter().enumerate() {
            assert_eq!(a.len_of(h).unwrap(), len);
            check(&a, h, len, i as u8 + 1);
        }
    }
}

/// The tail word of a published LARGE block, found by its span (header, bytes and tail, rounded up
/// to 4 KiB).
fn tail_at(h: Handle, len: usize) -> u64 {
    let span = (len as u64 + 16).div_ceil(4096) * 4096;
    h.offset() - 8 + span - 8
}

/// Whether the recovery report of `a` is not clean and lists a dropped region holding `h`'s header.
fn dropped_and_reported(a: &Arena, h: Handle) -> bool {
    let report = a.recovery_report().expect("a dirty file is recovered");
    let hdr = h.offset() - 8;
    let held = report
        .dropped
        .iter()
        .any(|d| d.offset <= hdr && hdr < d.offset + d.len);
    if !held || report.is_clean() {
        eprintln!("{h:?} not in {report:?}");
    }
    held && !report.is_clean()
}

fn xor_word(path: &Path, at: u64, bits: u64) {
    let mut img = std::fs::read(path).unwrap();
    let at = at as usize;
    let w = u64::from_le_bytes(img[at..at + 8].try_into().unwrap()) ^ bits;
    img[at..at + 8].copy_from_slice(&w.to_le_bytes());
    std::fs::write(path, img).unwrap();
}

/// A tail word that is not the block's own (damage in a clean file): reading the block is
/// `Error::Corrupt`, never a slice of another length; `verify()` names it; the other blocks are
/// untouched.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn a_damaged_tail_is_corrupt_never_a_wrong_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    let (big, small, len) = {
        let a = open(&path).unwrap();
        let big = fill(&a, 2 * MIB + 7, 5);
        let small = fill(&a, 64, 6);
        a.close().unwrap();
        (big, small, 2 * MIB + 7)
    };
    // The length grows by 8: the block would reach its own tail word.
    xor_word(&path, tail_at(big, len), 8);
    let mut a = open(&path).unwrap();
    assert!(matches!(
        a.read_with(big, |_| ()),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(a.len_of(big), Err(Error::Corrupt { .. })));
    check(&a, small, 64, 6);
    let r = a.verify().unwrap();
    assert!(
        r.problems.iter().any(
            |p| matches!(p, parena::Problem::BadTail { offset, .. } if *offset == big.offset() - 8)
        ),
        "{:?}",
        r.problems
    );
}

/// A LARGE block published after the last flush, whose tail word the disk did not keep (a power
/// cut that kept the header's page and not the tail's): recovery drops it and says so, and keeps
/// every flushed block.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn a_large_block_without_its_tail_is_dropped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    let a = open(&path).unwrap();
    let kept = fill(&a, MIB + 100, 1);
    let small = fill(&a, 300, 2);
    a.flush().unwrap();
    let late = fill(&a, 2 * MIB, 3);
    a.flush_range(0, 0).ok();
    let mut img = std::fs::read(&path).unwrap();
    drop(a);
    let at = tail_at(late, 2 * MIB) as usize;
    img[at..at + 8].fill(0);
    std::fs::write(&path, &img).unwrap();
    let a = open(&path).unwrap();
    assert!(dropped_and_reported(&a, late));
    assert!(a.read_with(late, |_| ()).is_err());
    check(&a, kept, MIB + 100, 1);
    check(&a, small, 300, 2);
}

/// Every byte a block's writer can reach (`BlockMut`, then `get_mut`) lies before the tail: writing
/// them all leaves the length intact, now and after a reopen, and `verify()` clean.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn the_block_api_never_reaches_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    let h = {
        let a = open(&path).unwrap();
        let len = MIB + 1;
        let mut b = a.alloc(len).unwrap();
        assert_eq!(b.len(), len);
        b.fill(0xff);
        let h = b.into_handle();
        // SAFETY: nothing else references the block.
        let bytes = unsafe { a.get_mut(h).unwrap() };
        assert_eq!(bytes.len(), len);
        bytes.fill(0xee);
        assert_eq!(a.len_of(h).unwrap(), len);
        a.close().unwrap();
        h
    };
    let mut a = open(&path).unwrap();
    assert_eq!(a.len_of(h).unwrap(), MIB + 1);
    check(&a, h, MIB + 1, 0xee);
    assert!(a.verify().unwrap().is_clean());
}

#[cfg(feature = "allocator-api2")]
#[test]
#[cfg_attr(miri, ignore = "pushes 3 MiB")]
fn allocator_vectors_grow_past_the_large_boundary() {
    let mut arena = Options::new().capacity(32 << 20).heap().unwrap();
    let mut v: allocator_api2::vec::Vec<u64, &Arena> = allocator_api2::vec::Vec::new_in(&arena);
    for i in 0..(3 * MIB / 8) as u64 {
        v.push(i);
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v[9], 9);
    drop(v);
    assert!(arena.verify().unwrap().is_clean());
}

/// Salvage saves LARGE blocks at their handles with their exact lengths, and names a LARGE block
/// whose tail word is not its own (`LostReason::BadTail`) instead of guessing its length.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn salvage_keeps_large_blocks_and_names_a_bad_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    let (good, bad, small) = {
        let a = open(&path).unwrap();
        let good = fill(&a, MIB + 333, 1);
        let bad = fill(&a, 2 * MIB + 8, 2);
        let small = fill(&a, 500, 3);
        a.close().unwrap();
        (good, bad, small)
    };
    xor_word(&path, tail_at(bad, 2 * MIB + 8), 1 << 40);
    let fresh = dir.path().join("fresh");
    // SAFETY: both files are this test's own; nothing else maps or changes them.
    let report = unsafe { parena::salvage(&path, &fresh) }.unwrap();
    let saved: Vec<(Handle, u64)> = report.saved.iter().map(|s| (s.handle, s.len)).collect();
    assert!(saved.contains(&(good, MIB as u64 + 333)), "{saved:?}");
    assert!(saved.contains(&(small, 500)), "{saved:?}");
    assert!(!saved.iter().any(|&(h, _)| h == bad), "{saved:?}");
    assert!(
        report.lost.iter().any(|l| l.offset == bad.offset() - 8
            && matches!(l.reason, parena::LostReason::BadTail { .. })),
        "{:?}",
        report.lost
    );
    let mut a = open(&fresh).unwrap();
    check(&a, good, MIB + 333, 1);
    check(&a, small, 500, 3);
    assert_eq!(a.len_of(good).unwrap(), MIB + 333);
    assert!(a.read_with(bad, |_| ()).is_err());
    assert!(a.verify().unwrap().is_clean());
}

/// A crash between a LARGE allocation's header and its tail word (a PENDING block with no tail
/// yet, or a cut that kept the header's page and not the tail's): recovery does not keep it with a
/// length nothing vouches for; it drops it and says so, and `verify()` is clean after.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn a_pending_large_block_without_its_tail_is_dropped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    let a = open(&path).unwrap();
    let kept = fill(&a, 4000, 1);
    a.flush().unwrap();
    let mut b = a.alloc(MIB + 4).unwrap();
    b.fill(9);
    let pending = b.handle();
    // The image while the `BlockMut` is out: the block is PENDING.
    let mut img = std::fs::read(&path).unwrap();
    drop(b);
    drop(a);
    let at = tail_at(pending, MIB + 4) as usize;
    img[at..at + 8].fill(0);
    std::fs::write(&path, &img).unwrap();
    let mut a = open(&path).unwrap();
    assert!(dropped_and_reported(&a, pending));
    assert!(a.read_with(pending, |_| ()).is_err());
    check(&a, kept, 4000, 1);
    assert!(a.verify().unwrap().is_clean());
}
