//! Cuts and kills inside the exclusive passes — `compact()`, `clear()` and a recovering open —
//! against the case-by-case argument of docs/metadata.md, section 7 ("Exclusive passes").
//!
//! A power cut during a pass leaves on disk the last flush plus any subset of the pages the pass
//! changed, at their new version; the header page (which holds the meta slots) keeps its old
//! version until the pass's own flush has synced everything else. With few changed pages every
//! subset is tried. A recovery cut again is the same model applied to the recovery of such an
//! image, up to four times. A `kill -9` at a random moment of a pass leaves the page cache as it
//! was at that instruction: a child process runs the pass and is killed.
//!
//! In every case every block live at the last flush must read back at its handle with its bytes.

use crate::util::{spawn_child, Rng};
use parena::{Arena, Error, Handle, Options};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;

/// Opens (or creates) the file arena at `path`.
fn open(path: &Path, capacity: u64) -> Result<Arena, Error> {
    // SAFETY: the test's private file in a private directory; nothing else maps or changes it
    // while this arena is open.
    unsafe { Options::new().capacity(capacity).map_file(path) }
}

/// Opens (or creates) the file arena at `path` without the thread cache, so that frees reach the
/// free lists and allocations carve them (the splits whose remainders the passes must keep).
fn open_uncached(path: &Path, capacity: u64) -> Arena {
    // SAFETY: as `open`.
    unsafe {
        Options::new()
            .capacity(capacity)
            .thread_cache(false)
            .map_file(path)
            .unwrap()
    }
}

/// The byte `i` of the block written as record `seq`.
fn record_byte(seq: u64, i: usize) -> u8 {
    let x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64).wrapping_mul(0x2545_f491);
    (x ^ (x >> 29)).to_le_bytes()[i % 8]
}

/// Allocates record `seq` of `len` bytes.
fn record(arena: &Arena, seq: u64, len: usize) -> Result<(Handle, u64, usize), Error> {
    let mut b = arena.alloc(len)?;
    for (i, x) in b.iter_mut().enumerate() {
        *x = record_byte(seq, i);
    }
    Ok((b.into_handle(), seq, len))
}

/// The records of `live` that do not read back at their handle with their bytes.
fn lost(arena: &Arena, live: &[(Handle, u64, usize)]) -> Vec<(Handle, String)> {
    let mut out = Vec::new();
    for &(h, seq, len) in live {
        let mut buf = vec![0u8; len];
        match arena.read(h, 0, &mut buf) {
            Ok(())
                if buf
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == record_byte(seq, i)) => {}
            Ok(()) => out.push((h, "foreign bytes".to_string())),
            Err(e) => out.push((h, e.to_string())),
        }
    }
    out
}

/// The pages of `after` that differ from `before`, header page excluded.
fn changed_pages(before: &[u8], after: &[u8]) -> Vec<usize> {
    (1..before.len() / PAGE)
        .filter(|&p| before[p * PAGE..(p + 1) * PAGE] != after[p * PAGE..(p + 1) * PAGE])
        .collect()
}

/// `before` with the pages `take` from `after`.
fn mix(before: &[u8], after: &[u8], take: impl IntoIterator<Item = usize>) -> Vec<u8> {
    let mut img = before.to_vec();
    for p in take {
        img[p * PAGE..(p + 1) * PAGE].copy_from_slice(&after[p * PAGE..(p + 1) * PAGE]);
    }
    img
}

/// Opens `img` (written to `path`) writable, which recovers it, and returns the records of
/// `live` it lost.
fn recover_and_check(img: &[u8], path: &Path, cap: u64, live: &[(Handle, u64, usize)]) -> usize {
    fs::write(path, img).unwrap();
    let arena = open(path, cap).expect("a cut image opens");
    let lost = lost(&arena, live);
    if !lost.is_empty() {
        eprintln!(
            "lost {} blocks, first {:?}",
            lost.len(),
            &lost[..lost.len().min(4)]
        );
    }
    lost.len()
}

/// The arena: 64 B blocks to the end, ten freed, then twenty 24 B blocks carved from
/// them (ten at a freed block's start, ten at the remainder a split leaves), then `flush()`. The
/// file is left open (dirty). Returns the arena and the records live at the flush.
fn carved_arena(path: &Path, cap: u64) -> (Arena, Vec<(Handle, u64, usize)>) {
    // The thread cache would serve the 24 B blocks from freed 64 B blocks whole; the split
    // remainders are the case under test.
    let arena = open_uncached(path, cap);
    let mut live = Vec::new();
    let mut seq = 0;
    loop {
        match record(&arena, seq, 64) {
            Ok(r) => live.push(r),
            Err(Error::Full { .. }) => break,
            Err(e) => panic!("{e}"),
        }
        seq += 1;
    }
    for (h, _, _) in live.drain(100..110) {
        arena.free(h).unwrap();
    }
    for _ in 0..20 {
        seq += 1;
        live.push(record(&arena, seq, 24).unwrap());
    }
    arena.flush().unwrap();
    (arena, live)
}

/// Every subset of the pages a pass changed (or 4,096 random ones when there are more than 12),
/// over the flushed image `before`: returns the blocks lost in all the images tried.
fn every_mix(
    before: &[u8],
    after: &[u8],
    scratch: &Path,
    cap: u64,
    live: &[(Handle, u64, usize)],
) -> (usize, usize) {
    let pages = changed_pages(before, after);
    assert!(!pages.is_empty(), "the pass changed no page");
    let mut rng = Rng(0x5eed ^ pages.len() as u64);
    let subsets: Vec<u64> = if pages.len() <= 12 {
        (0..1u64 << pages.len()).collect()
    } else {
        (0..4096).map(|_| rng.next()).collect()
    };
    let mut lost = 0;
    for &mask in &subsets {
        let take = pages
            .iter()
            .enumerate()
            .filter(|(i, _)| mask >> (i % 64) & 1 == 1)
            .map(|(_, &p)| p);
        lost += recover_and_check(&mix(before, after, take), scratch, cap, live);
    }
    (lost, subsets.len())
}

/// The arena cut at every page mix of what `pass` changes: `pass` gets the arena left
/// open after its flush and the file's path, and returns the file as the pass left it.
fn cut_inside(what: &str, pass: impl FnOnce(Arena, &Path) -> Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let cap = 256 << 10;
    let path = dir.path().join("arena");
    let (arena, live) = carved_arena(&path, cap);
    let before = fs::read(&path).unwrap();
    let after = pass(arena, dir.path());
    let (lost, images) = every_mix(&before, &after, &dir.path().join("img"), cap, &live);
    assert_eq!(
        lost, 0,
        "blocks lost over {images} images cut inside {what}"
    );
}

#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn a_cut_inside_compact_loses_no_flushed_block() {
    cut_inside("compact()", |mut arena, dir| {
        arena.compact().unwrap();
        fs::read(dir.join("arena")).unwrap()
    });
}

#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn a_cut_inside_a_recovering_open_loses_no_flushed_block() {
    cut_inside("a recovering open", |arena, dir| {
        // The file as a crash right after the flush leaves it: dirty; a copy of it is recovered.
        let copy = dir.join("copy");
        fs::write(&copy, fs::read(dir.join("arena")).unwrap()).unwrap();
        drop(arena);
        let recovered = open(&copy, 256 << 10).unwrap();
        let after = fs::read(&copy).unwrap();
        drop(recovered);
        after
    });
}

/// A recovery cut, recovered and cut again, up to four times: each image is the previous one plus
/// a random part of what its recovery changed.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn a_recovery_cut_again_and_again_loses_no_flushed_block() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 1 << 20;
    let path = dir.path().join("arena");
    // A dirtier file than the issue's: records of many sizes, a third freed, flushed, then more
    // churn after the flush (not protected), so recovery has gaps to walk and runs to merge.
    let mut rng = Rng(7);
    let arena = open_uncached(&path, cap);
    let mut live = fill_and_churn(&arena, &mut rng, 300);
    arena.flush().unwrap();
    let mut extra = Vec::new();
    for seq in 1 << 32..(1 << 32) + 200 {
        if let Ok(r) = record(&arena, seq, 8 + rng.below(100) as usize) {
            extra.push(r);
        }
        if rng.below(2) == 0 && !live.is_empty() {
            // Freed after the flush: no longer protected.
            let i = rng.below(live.len() as u64) as usize;
            arena.free(live.swap_remove(i).0).unwrap();
        }
    }
    let base = fs::read(&path).unwrap();
    drop(arena);
    let scratch = dir.path().join("img");
    let mut total_lost = 0;
    let mut images = 0;
    for trial in 0..24 {
        let mut img = base.clone();
        let depth = 1 + trial % 4;
        for _ in 0..depth {
            fs::write(&scratch, &img).unwrap();
            let after = {
                let a = open(&scratch, cap).expect("a cut image opens");
                let after = fs::read(&scratch).unwrap();
                drop(a);
                after
            };
            let keep = [10, 50, 90][rng.below(3) as usize];
            let take: Vec<usize> = changed_pages(&img, &after)
                .into_iter()
                .filter(|_| rng.below(100) < keep)
                .collect();
            img = mix(&img, &after, take);
        }
        total_lost += recover_and_check(&img, &scratch, cap, &live);
        images += 1;
    }
    assert_eq!(
        total_lost, 0,
        "blocks lost over {images} recoveries cut again"
    );
}

/// `clear()` on a file arena is all or nothing: a cut before it returns recovers every flushed
/// block with its bytes, or an empty heap; never some of them, never a block with bytes that are
/// not its own. The model follows the order docs/metadata.md (section 7, row n) gives: until the
/// header page (its meta slot) is durable only the flush maps (the last two of the four bitmaps
/// past the heap, format.md) may have been written back; after it, any page.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn a_cut_inside_clear_recovers_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 256 << 10;
    let path = dir.path().join("arena");
    let (mut arena, live) = carved_arena(&path, cap);
    let flush_maps = (arena.stats().heap_end + 2 * cap.div_ceil(512) * 8) as usize;
    let before = fs::read(&path).unwrap();
    arena.clear().unwrap();
    let after = fs::read(&path).unwrap();
    drop(arena);
    let scratch = dir.path().join("img");
    let pages = changed_pages(&before, &after);
    let mut rng = Rng(11);
    let (mut partial, mut old, mut empty) = (0, 0, 0);
    for trial in 0..200u64 {
        let keep = [10, 50, 90][(trial % 3) as usize];
        let header_new = trial % 2 == 1;
        let take: Vec<usize> = pages
            .iter()
            .copied()
            .filter(|&p| header_new || p * PAGE >= flush_maps)
            .filter(|_| rng.below(100) < keep)
            .collect();
        let mut img = mix(&before, &after, take);
        if header_new {
            img[..PAGE].copy_from_slice(&after[..PAGE]);
        }
        fs::write(&scratch, &img).unwrap();
        let mut a = open(&scratch, cap).expect("a cut image opens");
        let n = lost(&a, &live).len();
        let blocks = a.live_blocks().unwrap().len();
        if n == 0 && blocks == live.len() {
            old += 1;
        } else if blocks == 0 {
            empty += 1;
        } else {
            partial += 1;
            eprintln!(
                "trial {trial}: {n} of {} lost, {blocks} blocks walk",
                live.len()
            );
        }
    }
    assert_eq!(partial, 0, "clear() cut into a mix of old and new");
    assert!(
        old > 0 && empty > 0,
        "both outcomes tried: {old} old, {empty} empty"
    );
}

/// Child role for the kill tests: runs one pass on `PARENA_PASS_FILE` and reports when it starts
/// and how long it took.
#[test]
#[cfg_attr(miri, ignore = "child role: maps a file (not in Miri)")]
fn child_pass_worker() {
    let Ok(path) = std::env::var("PARENA_PASS_FILE") else {
        return;
    };
    crate::util::end_with_parent();
    let cap: u64 = std::env::var("PARENA_PASS_CAP").unwrap().parse().unwrap();
    let pass = std::env::var("PARENA_PASS").unwrap();
    println!("go");
    let t = Instant::now();
    let mut arena = open(Path::new(&path), cap).unwrap();
    if pass == "compact" {
        arena.compact().unwrap();
    }
    println!("done {}", t.elapsed().as_micros());
    // Wait to be killed (or for the parent to close our stdin).
    let _ = std::io::stdin().read_line(&mut String::new());
}

/// Records of 8 to `max` bytes until the arena is full, a third of the operations freeing a
/// random one: the records still live.
fn fill_and_churn(arena: &Arena, rng: &mut Rng, max: u64) -> Vec<(Handle, u64, usize)> {
    let mut live: Vec<(Handle, u64, usize)> = Vec::new();
    for seq in 0.. {
        if !live.is_empty() && rng.below(3) == 0 {
            let i = rng.below(live.len() as u64) as usize;
            arena.free(live.swap_remove(i).0).unwrap();
            continue;
        }
        match record(arena, seq, 8 + rng.below(max) as usize) {
            Ok(r) => live.push(r),
            Err(Error::Full { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    live
}

/// A file for the kill tests: `cap` bytes of records, a third freed in random order before the
/// flush (so compact and recovery merge many runs). Closed cleanly when `clean` (compact then
/// opens it without a recovery), else left as a crash right after the flush leaves it.
fn churned_file(path: &Path, cap: u64, seed: u64, clean: bool) -> Vec<(Handle, u64, usize)> {
    let mut rng = Rng(seed);
    let arena = open(path, cap).unwrap();
    let live = fill_and_churn(&arena, &mut rng, 200);
    arena.flush().unwrap();
    let image = fs::read(path).unwrap();
    drop(arena);
    if !clean {
        // The file as the crash after the flush left it: dirty, so the next open recovers.
        fs::write(path, image).unwrap();
    }
    live
}

/// Runs `pass` in a child on copies of a dirty file, killing it at random moments of the pass.
fn kill_during(pass: &str, kills: u64) {
    let dir = tempfile::tempdir().unwrap();
    let cap = 16 << 20;
    let master = dir.path().join("master");
    let live = churned_file(&master, cap, 3, pass == "compact");
    let path = dir.path().join("arena");
    let run = |kill_after: Option<Duration>| -> Option<u64> {
        fs::copy(&master, &path).unwrap();
        let mut child = spawn_child(
            "recovery::passes::child_pass_worker",
            &[
                ("PARENA_PASS_FILE", path.to_str().unwrap()),
                ("PARENA_PASS_CAP", &cap.to_string()),
                ("PARENA_PASS", pass),
            ],
        );
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.starts_with("go") {
            line.clear();
            assert_ne!(out.read_line(&mut line).unwrap(), 0, "child ended early");
        }
        let took = match kill_after {
            Some(d) => {
                std::thread::sleep(d);
                None
            }
            None => {
                line.clear();
                out.read_line(&mut line).unwrap();
                line.trim()
                    .strip_prefix("done ")
                    .map(|t| t.parse().unwrap())
            }
        };
        child.kill().unwrap();
        child.wait().unwrap();
        took
    };
    // How long the pass (with the child's start) takes, to aim the kills inside it.
    let micros = run(None).expect("the child reports its pass");
    let mut rng = Rng(17);
    let mut lost_total = 0;
    for _ in 0..kills {
        run(Some(Duration::from_micros(rng.below(micros + 1))));
        let arena = open(&path, cap).expect("a killed pass leaves a file that opens");
        let n = lost(&arena, &live).len();
        if n > 0 {
            eprintln!("kill during {pass}: {n} blocks lost");
        }
        lost_total += n;
    }
    assert_eq!(
        lost_total, 0,
        "kill -9 during {pass} lost acknowledged blocks"
    );
}

#[test]
#[cfg_attr(miri, ignore = "spawns and kills processes, maps files")]
fn kill_nine_inside_compact_loses_nothing() {
    kill_during("compact", 12);
}

#[test]
#[cfg_attr(miri, ignore = "spawns and kills processes, maps files")]
fn kill_nine_inside_a_recovering_open_loses_nothing() {
    kill_during("recover", 12);
}
