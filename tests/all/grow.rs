//! An arena that grows while it is used (docs/metadata.md, section 12): threads allocate, read
//! and free while the arena grows, by call or by allocation alone, on every backing; a grown file
//! reopens with every block; a disk that cannot hold the growth is `NoSpace` and nothing is lost;
//! options and requests out of range get their typed errors.

use crate::util::{open, Rng};
use parena::{Arena, Error, Handle, Options};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const MIB: u64 = 1 << 20;
/// The first capacity of the growable arenas here: 1 MiB of heap after the header page and the
/// maps, which lie in front of the heap sized for the 64 MiB maximum (4 MiB).
const START: u64 = 4096 + 4 * MIB + MIB;

/// The byte a block of thread `t`, number `i`, is filled with.
fn pattern(t: u64, i: u64) -> u8 {
    (t.wrapping_mul(131) ^ i.wrapping_mul(31)) as u8 | 1
}

/// Asserts block `h` holds `len` bytes of `byte`.
fn holds(arena: &Arena, h: Handle, len: usize, byte: u8) {
    let mut buf = vec![0u8; len];
    arena.read(h, 0, &mut buf).unwrap();
    assert!(
        buf.iter().all(|&x| x == byte),
        "block {h:?} ({len} bytes, offset {}) lost its pattern",
        h.offset()
    );
}

/// One allocating thread: allocates blocks of 16 bytes to 4 KiB (and one LARGE block in 4000, up
/// to four, which it keeps, so that freed LARGE spans do not leave the heap to fragmentation),
/// fills each
/// with its pattern and reads back a random live block after every allocation; once it holds
/// `live` bytes of small blocks it frees one per allocation, so it holds about that much. Runs
/// until it holds `live` bytes and `stop` is set (or `rounds` allocations ran), counting its
/// allocations in `progress`. Returns the blocks it still holds. Every byte of every block is
/// checked at its free.
fn worker(
    arena: &Arena,
    t: u64,
    live: u64,
    rounds: u64,
    stop: &AtomicBool,
    progress: &AtomicU64,
) -> Vec<(Handle, usize, u8)> {
    let mut rng = Rng(0x9e37_79b9 ^ t);
    let mut mine: Vec<(Handle, usize, u8)> = Vec::new();
    let mut kept = Vec::new();
    let mut held = 0u64;
    for i in 0..rounds {
        if held >= live && stop.load(Ordering::Relaxed) {
            break;
        }
        let large = i % 4000 == 3999 && kept.len() < 4;
        let len = if large {
            (MIB + rng.below(64 << 10)) as usize
        } else if i % 20 == 0 {
            1 + rng.below(4 << 10) as usize
        } else {
            16 + rng.below(300) as usize
        };
        let byte = pattern(t, i);
        let mut b = match arena.alloc(len) {
            Ok(b) => b,
            Err(e) => panic!(
                "thread {t}: allocation {i} of {len} bytes failed: {e}; {:?}",
                arena.stats()
            ),
        };
        assert!(b.iter().all(|&x| x == 0), "fresh block not zeroed");
        b.fill(byte);
        let h = b.into_handle();
        if large {
            kept.push((h, len, byte));
            continue;
        }
        mine.push((h, len, byte));
        held += len as u64;
        progress.fetch_add(1, Ordering::Relaxed);
        let k = rng.below(mine.len() as u64) as usize;
        let (h, l, x) = mine[k];
        holds(arena, h, l, x);
        if held >= live {
            let (h, l, x) = mine.swap_remove(k);
            holds(arena, h, l, x);
            arena.free(h).unwrap();
            held -= l as u64;
        }
    }
    for &(h, l, x) in &kept {
        holds(arena, h, l, x);
    }
    mine.extend(kept);
    mine
}

/// Runs two workers against `arena`, and with `grower` a third thread that grows the arena
/// from its capacity to `to` in steps of `step` bytes, one step per 100 allocations of the
/// workers (so the steps run while they allocate). Returns every block still held, after
/// checking that no two overlap and every one holds its pattern.
fn run(arena: &Arena, live: u64, grower: Option<(u64, u64)>) -> Vec<(Handle, usize, u8)> {
    let stop = AtomicBool::new(grower.is_none());
    let progress = AtomicU64::new(0);
    let blocks: Vec<(Handle, usize, u8)> = std::thread::scope(|s| {
        let ws: Vec<_> = (0..2u64)
            .map(|t| {
                let (arena, stop, progress) = (arena, &stop, &progress);
                s.spawn(move || worker(arena, t, live, 200_000, stop, progress))
            })
            .collect();
        if let Some((to, step)) = grower {
            let mut c = arena.capacity();
            let mut steps = 0;
            while c < to {
                steps += 1;
                while progress.load(Ordering::Relaxed) < steps * 100
                    && ws.iter().all(|w| !w.is_finished())
                {
                    std::thread::yield_now();
                }
                c = (c + step).min(to);
                arena.grow(c).unwrap();
                assert!(arena.capacity() >= c);
            }
            stop.store(true, Ordering::Relaxed);
        }
        ws.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let mut spans: Vec<(u64, u64)> = blocks
        .iter()
        .map(|&(h, l, _)| (h.offset(), h.offset() + l as u64))
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "blocks {w:?} overlap");
    }
    for &(h, l, x) in &blocks {
        holds(arena, h, l, x);
    }
    blocks
}

/// Asserts the arena's heap and metadata check out.
fn verified(arena: &mut Arena) {
    let r = arena.verify().unwrap();
    assert!(r.is_clean(), "{r:?}");
}

fn growable() -> Options {
    Options::new().capacity(START).max_capacity(64 * MIB)
}

/// A growable arena of each backing, 1 MiB now, 64 MiB at most.
fn each_backing(dir: &std::path::Path) -> Vec<Arena> {
    vec![
        growable().heap().unwrap(),
        growable().map_anon().unwrap(),
        open(&growable(), &dir.join("grow")).unwrap(),
    ]
}

#[test]
#[cfg_attr(miri, ignore = "maps 64 MiB reservations and a file")]
fn threads_allocate_read_and_free_while_a_third_grows() {
    let dir = tempfile::tempdir().unwrap();
    for mut arena in each_backing(dir.path()) {
        assert_eq!((arena.capacity(), arena.max_capacity()), (START, 64 * MIB));
        let base = arena.stats().data_start;
        let blocks = run(&arena, 4 * MIB, Some((64 * MIB, 256 << 10)));
        assert_eq!(arena.capacity(), 64 * MIB, "{:?}", arena.backing());
        assert!(!blocks.is_empty());
        assert_eq!(arena.stats().data_start, base, "the heap did not move");
        verified(&mut arena);
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps 64 MiB reservations and a file")]
fn allocations_alone_grow_the_arena() {
    let dir = tempfile::tempdir().unwrap();
    for mut arena in each_backing(dir.path()) {
        let blocks = run(&arena, 12 * MIB, None);
        let held: u64 = blocks.iter().map(|&(_, l, _)| l as u64).sum();
        assert!(held >= 24 * MIB, "{held} bytes held");
        assert!(
            arena.capacity() > 24 * MIB && arena.capacity() <= 64 * MIB,
            "{:?}: capacity {}",
            arena.backing(),
            arena.capacity()
        );
        verified(&mut arena);
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps 64 MiB reservations")]
fn allocation_is_full_only_at_max_capacity() {
    let arena = Options::new()
        .capacity(2 * MIB)
        .max_capacity(8 * MIB)
        .heap()
        .unwrap();
    let mut n = 0u64;
    let err = loop {
        match arena.alloc(4000) {
            Ok(b) => {
                drop(b);
                n += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::Full { .. }), "{err}");
    assert_eq!(arena.capacity(), 8 * MIB);
    assert!(n * 4000 > 7 * MIB, "only {n} blocks before Full");
}

#[test]
#[cfg_attr(miri, ignore = "maps 64 MiB reservations")]
fn grow_past_max_capacity_is_full_and_changes_nothing() {
    let arena = growable().heap().unwrap();
    let h = arena.alloc(100).unwrap().into_handle();
    let e = arena.grow(64 * MIB + 4096).unwrap_err();
    assert!(matches!(e, Error::Full { .. }), "{e}");
    assert_eq!(arena.capacity(), START);
    arena.grow(START + MIB).unwrap();
    arena.grow(START).unwrap();
    assert_eq!(
        arena.capacity(),
        START + MIB,
        "growing to less changes nothing"
    );
    arena.read(h, 0, &mut [0u8; 100]).unwrap();
    // An arena made without max_capacity cannot grow while open.
    let fixed = Options::new().capacity(MIB).heap().unwrap();
    assert_eq!(fixed.max_capacity(), MIB);
    assert!(matches!(fixed.grow(2 * MIB), Err(Error::Full { .. })));
    assert_eq!(fixed.capacity(), MIB);
}

#[test]
fn max_capacity_options_out_of_range_are_typed_errors() {
    let below = Options::new().capacity(4 * MIB).max_capacity(MIB).heap();
    assert!(
        matches!(
            below,
            Err(Error::MaxCapacity {
                requested,
                min,
                ..
            }) if requested == MIB && min == 4 * MIB
        ),
        "{below:?}"
    );
    let above = Options::new().max_capacity((1 << 40) + 1).heap();
    assert!(
        matches!(above, Err(Error::MaxCapacity { requested, max, .. }) if requested == (1 << 40) + 1 && max == 1 << 40),
        "{above:?}"
    );
    let zero = Options::new().max_capacity(0).heap();
    assert!(matches!(zero, Err(Error::MaxCapacity { .. })), "{zero:?}");
}

#[test]
#[cfg_attr(miri, ignore = "opens files")]
fn a_reopen_keeps_the_files_max_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m");
    drop(open(&growable(), &p).unwrap());
    let other = open(&Options::new().max_capacity(32 * MIB), &p);
    assert!(
        matches!(
            other,
            Err(Error::MaxCapacityMismatch { expected, found }) if expected == 32 * MIB && found == 64 * MIB
        ),
        "{other:?}"
    );
    let a = open(&Options::new(), &p).unwrap();
    assert_eq!(a.max_capacity(), 64 * MIB);
    drop(a);
    let past = open(&Options::new().capacity(128 * MIB), &p);
    assert!(matches!(past, Err(Error::MaxCapacity { .. })), "{past:?}");
    let q = dir.path().join("fixed");
    drop(open(&Options::new().capacity(MIB), &q).unwrap());
    let fixed = open(&Options::new().max_capacity(64 * MIB), &q);
    assert!(
        matches!(fixed, Err(Error::MaxCapacityMismatch { found: 0, .. })),
        "{fixed:?}"
    );
}

#[test]
#[cfg_attr(miri, ignore = "opens files")]
fn a_grown_file_reopens_with_every_block() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g");
    let arena = open(&growable(), &p).unwrap();
    let blocks = run(&arena, 6 * MIB, Some((16 * MIB, 512 << 10)));
    assert!(
        blocks.iter().any(|&(h, _, _)| h.offset() > START),
        "no block past the first capacity"
    );
    let cap = arena.capacity();
    arena.flush().unwrap();
    drop(arena);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), cap);
    let mut back = open(&Options::new(), &p).unwrap();
    assert_eq!(back.capacity(), cap);
    verified(&mut back);
    for &(h, l, x) in &blocks {
        holds(&back, h, l, x);
    }
    // The options it was created with open it too: a growable arena's `capacity` is where it
    // starts, and an arena that grew past it opens at its grown capacity.
    drop(back);
    let same = open(&growable(), &p).unwrap();
    assert_eq!(same.capacity(), cap);
    for &(h, l, x) in &blocks {
        holds(&same, h, l, x);
    }
    let back = same;
    // A reopen with a larger capacity grows in place, as a step while open does.
    drop(back);
    let bigger = open(&Options::new().capacity(cap + 4 * MIB), &p).unwrap();
    assert_eq!(bigger.capacity(), cap + 4 * MIB);
    for &(h, l, x) in &blocks {
        holds(&bigger, h, l, x);
    }
}

/// The child of `growth_on_a_full_disk_is_no_space`: runs under a file-size limit of 8 MiB with
/// `SIGXFSZ` ignored, so extending the file past it fails with `EFBIG`.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn growth_on_a_full_disk_is_no_space() {
    if let Ok(path) = std::env::var("PARENA_GROW_NOSPACE") {
        let p = std::path::Path::new(&path);
        let mut arena = open(&growable(), p).unwrap();
        let h = arena.alloc(1000).unwrap().into_handle();
        let e = arena.grow(16 * MIB).unwrap_err();
        assert!(matches!(e, Error::NoSpace), "{e}");
        assert_eq!(arena.capacity(), START, "nothing changed");
        // Growth within the limit still works; then allocations run into the limit.
        arena.grow(START + MIB).unwrap();
        let mut held = Vec::new();
        let e = loop {
            match arena.alloc(30_000) {
                Ok(mut b) => {
                    b.fill(7);
                    held.push(b.into_handle());
                }
                Err(e) => break e,
            }
        };
        assert!(matches!(e, Error::NoSpace), "{e}");
        let cap = arena.capacity();
        assert!(cap <= 8 * MIB, "capacity {cap}");
        // The arena keeps working at its capacity: blocks read back, a free makes room.
        arena.read(h, 0, &mut [0u8; 1000]).unwrap();
        for &b in &held {
            holds(&arena, b, 30_000, 7);
        }
        arena.free(held.pop().unwrap()).unwrap();
        let _ = arena.alloc(30_000).unwrap().into_handle();
        verified(&mut arena);
        arena.flush().unwrap();
        println!("child done");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nospace");
    let exe = std::env::current_exe().unwrap();
    // `ulimit -f` counts 512-byte blocks; a signal ignored at `exec` stays ignored.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 16384 && trap '' XFSZ && exec \"$0\" \"$@\"")
        .arg(exe)
        .args([
            "grow::growth_on_a_full_disk_is_no_space",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PARENA_GROW_NOSPACE", &p)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("child done"),
        "{text}"
    );
    // What the child flushed opens again.
    let mut back = open(&Options::new(), &p).unwrap();
    verified(&mut back);
}

/// The bytes of record `seq` at index `i`.
fn record_byte(seq: u64, i: usize) -> u8 {
    (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 56)) as u8 ^ i as u8
}

/// Whether the record `seq` of `len` bytes reads back whole at handle `h`.
fn record_ok(a: &Arena, h: u64, seq: u64, len: usize) -> bool {
    let mut buf = vec![0u8; len];
    a.read(Handle::from_u64(h), 0, &mut buf).is_ok()
        && buf
            .iter()
            .enumerate()
            .all(|(i, &x)| x == record_byte(seq, i))
}

/// How a cut treats the header page, which holds the `capacity` word a growth step stores
/// (docs/metadata.md, 12.2, step 4) and the meta slots a flush writes (step 6).
#[derive(Clone, Copy, Debug)]
enum HeaderFate {
    /// The OS wrote it back after the last step: the header names the grown capacity.
    Written,
    /// Only what the last flush made durable: the header names the capacity of that flush.
    Flushed,
    /// A flush right after a step, torn inside the header page: its meta slot with the grown
    /// capacity reached the disk, the header's first sector (the `capacity` and `bump` words)
    /// did not (12.6, gap 3).
    Torn,
}

/// A simulated disk under a growable arena: blocks allocated, freed and flushed while the arena
/// grows (by call and by allocation), then a power cut that keeps the flushed pages, a random
/// share of the others and the header page as `fate` says. The image opens, and every block a
/// completed flush acknowledged reads back whole.
fn cut_during_growth(seed: u64, fate: HeaderFate) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let start = 4096 + MIB + MIB;
    let (arena, disk) = Options::new()
        .capacity(start)
        .max_capacity(16 * MIB)
        .simulated_disk()
        .unwrap();
    let mut live: std::collections::BTreeMap<u64, (u64, usize)> = Default::default();
    let mut acked = live.clone();
    let mut alloc = |arena: &Arena, live: &mut std::collections::BTreeMap<_, _>, seq: u64| {
        let len = 1 + match rng.below(40) {
            0 => rng.below(100_000),
            1..=3 => rng.below(9000),
            _ => rng.below(300),
        } as usize;
        match arena.alloc(len) {
            Ok(mut b) => {
                for (i, x) in b.iter_mut().enumerate() {
                    *x = record_byte(seq, i);
                }
                live.insert(b.into_handle().to_u64(), (seq, len));
            }
            Err(Error::Full { .. }) => {}
            Err(e) => panic!("seed {seed}: {e}"),
        }
    };
    let mut picks = Rng(seed ^ 0x5555);
    for seq in 0..3000 {
        alloc(&arena, &mut live, seq);
        if picks.below(3) == 0 && !live.is_empty() {
            let k = *live
                .keys()
                .nth(picks.below(live.len() as u64) as usize)
                .unwrap();
            arena.free(Handle::from_u64(k)).unwrap();
            live.remove(&k);
            acked.remove(&k);
        }
        if picks.below(100) == 0 {
            arena.flush().unwrap();
            acked = live.clone();
        }
        if picks.below(400) == 0 {
            let _ = arena.grow(arena.capacity() + 256 * 1024);
        }
    }
    let before = arena.capacity();
    assert!(before > start, "seed {seed}: the arena never grew");
    // The last step: grown, blocks past the old end, and (but for `Flushed`) flushed.
    arena.grow(before + MIB).unwrap();
    let past = |live: &std::collections::BTreeMap<u64, _>| {
        live.keys()
            .filter(|&&h| Handle::from_u64(h).offset() >= before)
            .count()
    };
    let mut seq = 3000;
    while past(&live) < 20 && seq < 10_000 {
        alloc(&arena, &mut live, seq);
        seq += 1;
    }
    assert!(past(&live) > 0, "seed {seed}: no block past the old end");
    // The header's first 512-byte sector as the disk held it before the last flush.
    let old_sector = disk.crash_image(&arena, |_| false)[..512].to_vec();
    if !matches!(fate, HeaderFate::Flushed) {
        arena.flush().unwrap();
        acked = live.clone();
    }
    let keep_one_in = 2 + picks.below(4);
    let mut img = disk.crash_image(&arena, |p| match fate {
        HeaderFate::Written => p == 0 || picks.below(keep_one_in) == 0,
        _ => p != 0 && picks.below(keep_one_in) == 0,
    });
    drop(arena);
    if matches!(fate, HeaderFate::Torn) {
        img[..512].copy_from_slice(&old_sector);
        let named = u64::from_le_bytes(img[48..56].try_into().unwrap());
        assert!(named <= before, "the torn sector names an old capacity");
    }
    let path = dir.path().join("cut");
    std::fs::write(&path, &img).unwrap();
    let mut a = open(&Options::new(), &path)
        .unwrap_or_else(|e| panic!("seed {seed}, {fate:?}: the image does not open: {e}"));
    assert!(!a.was_clean());
    let lost: Vec<u64> = acked
        .iter()
        .filter(|&(&h, &(seq, len))| !record_ok(&a, h, seq, len))
        .map(|(_, &(seq, _))| seq)
        .collect();
    assert!(
        lost.is_empty(),
        "seed {seed}, {fate:?}: {} of {} flushed blocks lost (records {lost:?}); capacity {} \
         (before the last step {before})",
        lost.len(),
        acked.len(),
        a.capacity()
    );
    if !matches!(fate, HeaderFate::Flushed) {
        assert_eq!(a.capacity(), before + MIB, "seed {seed}, {fate:?}");
    }
    grows_again_keeping(&mut a, &mut rng, &acked, &format!("seed {seed}"));
}

/// A recovered arena verifies clean, grows again and allocates until full without touching a
/// flushed block of `acked`.
fn grows_again_keeping(
    a: &mut Arena,
    rng: &mut Rng,
    acked: &std::collections::BTreeMap<u64, (u64, usize)>,
    case: &str,
) {
    verified(a);
    a.grow(a.capacity() + MIB).unwrap();
    let mut fresh = Vec::new();
    while let Ok(mut b) = a.alloc(1 + rng.below(5000) as usize) {
        b.fill(0xaa);
        fresh.push((b.len(), b.into_handle()));
    }
    for (&h, &(seq, len)) in acked {
        assert!(
            record_ok(a, h, seq, len),
            "{case}: record {seq} overwritten"
        );
    }
    // The blocks allocated in the grown range read back, and the start map agrees with the heap
    // (a start bit a cut step left past the capacity would cancel or split one).
    for (len, h) in fresh {
        let mut buf = vec![0u8; len];
        a.read(h, 0, &mut buf)
            .unwrap_or_else(|e| panic!("{case}: a block allocated after the reopen: {e}"));
        assert!(
            buf.iter().all(|&x| x == 0xaa),
            "{case}: a fresh block changed"
        );
    }
    verified(a);
}

#[test]
#[cfg_attr(miri, ignore = "writes images to files and maps them")]
fn power_cuts_during_growth_keep_every_flushed_block() {
    for seed in 1..=4 {
        for fate in [HeaderFate::Written, HeaderFate::Flushed, HeaderFate::Torn] {
            cut_during_growth(seed, fate);
        }
    }
}

/// A kill after each store of a growth step (docs/metadata.md, 12.2 and 12.4): a growable arena
/// on a simulated disk holds flushed blocks (and others allocated after the flush); a step is
/// stopped after its first `stores` stores; the power then goes with the header page written
/// back or not and a random share of the other pages. The image opens at the old or the new
/// capacity with every flushed block, verifies clean, and grows and allocates again.
fn kill_at_store(seed: u64, stores: u8, header_written: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed ^ u64::from(stores) << 8);
    let (arena, disk) = Options::new()
        .capacity(4096 + 2 * MIB)
        .max_capacity(16 * MIB)
        .simulated_disk()
        .unwrap();
    let mut live: std::collections::BTreeMap<u64, (u64, usize)> = Default::default();
    let mut acked = live.clone();
    let mut flushed = 0;
    for seq in 0..4000 {
        let len = 1 + if rng.below(30) == 0 {
            rng.below(9000)
        } else {
            rng.below(300)
        } as usize;
        if let Ok(mut b) = arena.alloc(len) {
            for (i, x) in b.iter_mut().enumerate() {
                *x = record_byte(seq, i);
            }
            live.insert(b.into_handle().to_u64(), (seq, len));
        }
        // One block in three freed, a random one of the live ones (flushed or not).
        if let Some(&k) = (rng.below(3) == 0)
            .then(|| {
                live.keys()
                    .nth(rng.below(live.len().max(1) as u64) as usize)
            })
            .flatten()
        {
            arena.free(Handle::from_u64(k)).unwrap();
            live.remove(&k);
            acked.remove(&k);
        }
        if seq == 3000 {
            arena.flush().unwrap();
            acked = live.clone();
            flushed = arena.capacity();
            // A step after the flush, whole: the header may name it, the meta slot does not.
            arena.grow(flushed + 256 * 1024).unwrap();
        }
    }
    let before = arena.capacity();
    assert!(
        before > flushed,
        "seed {seed}: the arena never grew after the flush"
    );
    arena.grow_stopped_after(stores, before + MIB).unwrap();
    let img = disk.crash_image(&arena, |p| {
        if p == 0 {
            header_written
        } else {
            rng.below(3) == 0
        }
    });
    drop(arena);
    let path = dir.path().join("cut");
    std::fs::write(&path, &img).unwrap();
    let case =
        format!("seed {seed}, stopped after {stores} stores, header written {header_written}");
    let mut a = open(&Options::new(), &path)
        .unwrap_or_else(|e| panic!("{case}: the image does not open: {e}"));
    // The dirty open takes the larger of the header's capacity and the newest meta slot's
    // (docs/metadata.md, 12.6, gap 3): the step's own capacity once its header word is stored
    // and written back, else what the header held before the step (the arena also grew by
    // allocations after the flush), else what the flush made durable.
    let expected = match (header_written, stores >= 3) {
        (true, true) => before + MIB,
        (true, false) => before,
        (false, _) => flushed,
    };
    assert_eq!(
        a.capacity(),
        expected,
        "{case}: opened at {} (flushed at {flushed}, before the step {before})",
        a.capacity()
    );
    let lost = acked
        .iter()
        .filter(|&(&h, &(seq, len))| !record_ok(&a, h, seq, len))
        .count();
    assert_eq!(
        lost,
        0,
        "{case}: {lost} of {} flushed blocks lost",
        acked.len()
    );
    grows_again_keeping(&mut a, &mut rng, &acked, &case);
}

#[test]
#[cfg_attr(miri, ignore = "writes images to files and maps them")]
fn a_kill_after_each_store_of_a_step_keeps_every_flushed_block() {
    for seed in 1..=3 {
        for stores in 0..=4 {
            for header_written in [false, true] {
                kill_at_store(seed, stores, header_written);
            }
        }
    }
}

/// The child of [`kills_during_growth_keep_every_flushed_block`]: grows the arena file named by
/// `PARENA_GROW_KILL` in small steps (by call and by allocation) while it allocates records,
/// flushes every 40 of them and acknowledges each flushed record on stdout, until it is killed.
#[test]
#[cfg_attr(miri, ignore = "run as a child process")]
fn grow_kill_child() {
    let Ok(path) = std::env::var("PARENA_GROW_KILL") else {
        return;
    };
    crate::util::end_with_parent();
    use std::io::Write;
    let arena = open(&growable(), std::path::Path::new(&path)).unwrap();
    let mut rng = Rng(arena.capacity() ^ 0x77);
    let mut pending = Vec::new();
    let mut out = std::io::stdout().lock();
    for seq in 0u64.. {
        let len = 1 + rng.below(if seq % 10 == 0 { 40_000 } else { 2000 }) as usize;
        match arena.alloc(len) {
            Ok(mut b) => {
                for (i, x) in b.iter_mut().enumerate() {
                    *x = record_byte(seq, i);
                }
                pending.push((b.into_handle().to_u64(), seq, len));
            }
            Err(Error::Full { .. }) => {
                // At the maximum: keep flushing the same state until the kill.
                arena.flush().unwrap();
                continue;
            }
            Err(e) => panic!("{e}"),
        }
        if seq % 7 == 0 {
            let _ = arena.grow(arena.capacity() + 64 * 1024);
        }
        if pending.len() == 40 {
            arena.flush().unwrap();
            for (h, s, l) in pending.drain(..) {
                writeln!(out, "ACK {h} {s} {l}").unwrap();
            }
            out.flush().unwrap();
        }
    }
}

/// `kill -9` at random moments while a file arena grows under allocations: every reopen finds
/// every acknowledged (flushed) record whole.
#[test]
#[cfg_attr(miri, ignore = "spawns and kills processes, maps files")]
fn kills_during_growth_keep_every_flushed_block() {
    use std::io::{BufRead, BufReader};
    if std::env::var("PARENA_GROW_KILL").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let seed = crate::util::time_seed();
    let mut rng = Rng(seed);
    let mut grown = 0;
    for cycle in 0..6 {
        let path = dir.path().join(format!("k{cycle}"));
        let mut child = crate::util::spawn_child(
            "grow::grow_kill_child",
            &[("PARENA_GROW_KILL", path.to_str().unwrap())],
        );
        let out = BufReader::new(child.stdout.take().unwrap());
        // Kill after a random number of acknowledged flushes: during a step, an allocation, a
        // flush.
        let wanted = 1 + rng.below(60) as usize;
        let mut acked = Vec::new();
        for line in out.lines() {
            let Ok(line) = line else { break };
            let f: Vec<&str> = line.split(' ').collect();
            if let ["ACK", h, s, l] = f[..] {
                acked.push((h.parse().unwrap(), s.parse().unwrap(), l.parse().unwrap()));
            }
            if acked.len() >= wanted * 40 {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let mut a = open(&Options::new(), &path).unwrap();
        grown += u64::from(a.capacity() > START);
        let lost: Vec<u64> = acked
            .iter()
            .filter(|&&(h, seq, len)| !record_ok(&a, h, seq, len))
            .map(|&(_, seq, _)| seq)
            .collect();
        assert!(
            lost.is_empty(),
            "seed {seed}, cycle {cycle}: {} of {} acknowledged records lost: {lost:?}",
            lost.len(),
            acked.len()
        );
        verified(&mut a);
    }
    assert!(grown > 0, "seed {seed}: no cycle grew the arena");
}

/// A private copy (`map_copy`) of a growable file holds no address space past its capacity: it
/// does not grow, and answers `Full` instead (a read-only open refuses any change).
#[test]
#[cfg_attr(miri, ignore = "opens files")]
fn a_private_copy_of_a_growable_file_does_not_grow() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    drop(open(&growable(), &p).unwrap());
    let copy = open(&Options::new().map_copy(true), &p).unwrap();
    assert_eq!(copy.max_capacity(), START);
    assert_eq!(copy.header().max_capacity, 64 * MIB, "the file's maximum");
    assert!(matches!(copy.grow(START + MIB), Err(Error::Full { .. })));
    let e = loop {
        match copy.alloc(3000) {
            Ok(b) => drop(b.into_handle()),
            Err(e) => break e,
        }
    };
    assert!(matches!(e, Error::Full { .. }), "{e}");
    assert_eq!(copy.capacity(), START);
    let ro = open(&Options::new().read_only(true), &p).unwrap();
    assert!(matches!(ro.grow(START + MIB), Err(Error::ReadOnly)));
}

/// The map settings on a growable arena: `populate` faults in the arena's part of the
/// reservation, and `lock_memory` (which would lock the whole reservation) is a typed refusal.
#[test]
#[cfg_attr(miri, ignore = "maps 64 MiB reservations and a file")]
fn map_settings_on_a_growable_arena() {
    let dir = tempfile::tempdir().unwrap();
    let a = growable().populate(true).map_anon();
    // `populate` needs a kernel with MADV_POPULATE_* (5.14); an older one refuses it by name.
    assert!(
        matches!(
            a,
            Ok(_)
                | Err(Error::Refused {
                    option: "populate",
                    ..
                })
        ),
        "{a:?}"
    );
    let f = open(&growable().populate(true), &dir.path().join("p"));
    assert!(
        matches!(
            f,
            Ok(_)
                | Err(Error::Refused {
                    option: "populate",
                    ..
                })
        ),
        "{f:?}"
    );
    let l = growable().lock_memory(true).map_anon();
    assert!(
        matches!(
            l,
            Err(Error::Unsupported {
                option: "lock_memory",
                ..
            })
        ),
        "{l:?}"
    );
}

/// An allocation that finds a growable heap used up grows it by a step before it runs a merge
/// pass: a step costs a map (and, for a file, an extension), a pass walks every listed segment.
/// The heap holds pairs of freed neighbours (too large for a thread's cache, so listed) that only
/// a merge could turn into a segment the next allocation fits, less than a chunk's worth of them
/// (a pass before growth waits for at least that much freed since the last one); it is served
/// from the grown heap, and no pass has merged anything. At `max_capacity` the pass runs as
/// before, and serves it.
#[test]
#[cfg_attr(
    miri,
    ignore = "maps a growable reservation (Miri maps only plain private anonymous memory)"
)]
fn growth_comes_before_a_merge_pass() {
    let arena = Options::new()
        .capacity(START)
        .max_capacity(START + 4 * MIB)
        .heap()
        .unwrap();
    let mut pairs = Vec::new();
    while let Ok(h) = arena.alloc_copy(&[1; 1000]) {
        pairs.push(h);
        if arena.capacity() > START {
            break;
        }
    }
    // Fill exactly to the first capacity: stop at the allocation that grew it.
    assert!(arena.capacity() > START, "the fill reached growth");
    let grown_at = arena.capacity();
    let chunk = arena.header().chunk_size;
    for (i, &h) in pairs.iter().enumerate().take((chunk / 1008) as usize - 1) {
        if i % 4 < 2 {
            arena.free(h).unwrap();
        }
    }
    let before = arena.stats().coalesced;
    // Fill the grown part too (with blocks no freed one fits), then ask for a block only a merged
    // pair would fit.
    while arena.capacity() == grown_at && arena.alloc_copy(&[2; 1800]).is_ok() {}
    let big = arena.alloc_copy(&[3; 1800]).unwrap();
    assert!(arena.capacity() > grown_at, "the allocation grew the arena");
    assert_eq!(
        arena.stats().coalesced,
        before,
        "a merge pass ran before growth"
    );
    assert!(arena.read_with(big, |b| b.iter().all(|&x| x == 3)).unwrap());
    // Used up at its maximum, the arena merges the freed pairs to serve the same requests.
    while arena.capacity() < START + 4 * MIB {
        let _ = arena.alloc_copy(&[4; 1800]).unwrap();
    }
    while arena.stats().coalesced == before {
        let _ = arena
            .alloc_copy(&[5; 1800])
            .expect("served from merged pairs at max_capacity, not Full");
    }
}

/// A torn header page after a growth (docs/metadata.md, 12.6, gap 3): the newest meta slot names
/// the grown capacity, the header's `capacity` word still the old one. Blocks flushed past the
/// old capacity are found by a dirty open and by `salvage`, each through its handle.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn a_torn_header_after_a_growth_keeps_the_blocks_past_the_old_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g");
    let a = open(&growable(), &p).unwrap();
    let mut blocks = Vec::new();
    let mut put = |a: &Arena, i: u64, len: usize| {
        let mut b = a.alloc(len).unwrap();
        b.fill(pattern(5, i));
        blocks.push((b.into_handle(), len, pattern(5, i)));
    };
    for i in 0..50 {
        put(&a, i, 100 + i as usize);
    }
    a.flush().unwrap();
    // The header's first sector (the capacity and bump words) as written back then.
    let first = std::fs::read(&p).unwrap()[..512].to_vec();
    let old = a.capacity();
    a.grow(old + 2 * MIB).unwrap();
    for i in 50..60 {
        put(&a, i, 300 << 10);
    }
    a.flush().unwrap();
    assert!(blocks.iter().any(|&(h, ..)| h.offset() > old));
    // The file as a cut during that flush can leave it: the sector of the new meta slot written,
    // the header's first sector (capacity and bump) as an earlier write-back left it.
    let mut img = std::fs::read(&p).unwrap();
    drop(a);
    img[..512].copy_from_slice(&first);
    let torn = dir.path().join("torn");
    std::fs::write(&torn, &img).unwrap();
    let copy = dir.path().join("copy");
    std::fs::write(&copy, &img).unwrap();

    let opened = open(&Options::new(), &copy).unwrap();
    for &(h, len, byte) in &blocks {
        holds(&opened, h, len, byte);
    }
    drop(opened);

    let fresh = dir.path().join("fresh");
    // SAFETY: both files are private to this test's directory.
    let report = unsafe { parena::salvage(&torn, &fresh) }.unwrap();
    let saved = open(&Options::new(), &fresh).unwrap();
    for &(h, len, byte) in &blocks {
        holds(&saved, h, len, byte);
    }
    assert!(report.saved_blocks() >= blocks.len(), "{report:?}");
}
