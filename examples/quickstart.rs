//! parena in one page: create a file arena, fill it from two threads, keep a root, close, reopen,
//! and check every record.
//!
//! ```sh
//! cargo run --release --example quickstart            # in a temporary directory
//! cargo run --release --example quickstart -- FILE    # keep the arena in FILE (then: inspect it)
//! ```

use parena::{Arena, Handle, Options};
use std::time::Instant;

const RECORDS_PER_THREAD: u64 = 50_000;

/// A record: its sequence number, then bytes derived from it.
fn record(seq: u64) -> Vec<u8> {
    let len = 16 + (seq % 80) as usize;
    let mut v = seq.to_le_bytes().to_vec();
    v.extend((8..len).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8));
    v
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keep = std::env::args().nth(1).map(std::path::PathBuf::from);
    let dir = tempfile_dir()?;
    let path = keep
        .clone()
        .unwrap_or_else(|| dir.join("quickstart.parena"));
    let opts = Options::new().capacity(64 << 20).create_new(true);

    // 1. Create the arena and allocate from two threads at once.
    let t = Instant::now();
    // SAFETY: the file is in a fresh private directory; nothing else maps or changes it.
    let arena = unsafe { opts.map_file(&path)? };
    let created = t.elapsed();
    let t = Instant::now();
    let handles: Vec<Vec<Handle>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2u64)
            .map(|thread| {
                let arena = &arena;
                s.spawn(move || -> Result<Vec<Handle>, parena::Error> {
                    (0..RECORDS_PER_THREAD)
                        .map(|i| arena.alloc_copy(&record(thread * RECORDS_PER_THREAD + i)))
                        .collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker panicked"))
            .collect::<Result<_, _>>()
    })?;
    let filled = t.elapsed();

    // 2. Keep the handles in the arena itself: one block holding them all, found through root 0.
    let all: Vec<u64> = handles.iter().flatten().map(|h| h.to_u64()).collect();
    let index = arena.alloc_copy(bytemuck::cast_slice(&all))?;
    arena.set_root(0, index.to_u64())?;
    arena.flush()?;
    let stats = arena.stats();
    println!(
        "created {} in {:?}; wrote {} records from 2 threads in {:?} ({:.0} ns each)",
        path.display(),
        created,
        all.len(),
        filled,
        filled.as_nanos() as f64 / all.len() as f64
    );
    println!("stats before close: {stats:?}");
    drop(arena); // the last clone closes the arena cleanly

    // 3. Reopen and check every record.
    let t = Instant::now();
    // SAFETY: as above.
    let mut arena: Arena = unsafe { Options::new().map_file(&path)? };
    let reopened = t.elapsed();
    assert!(arena.was_clean());
    let index = Handle::from_u64(arena.root(0));
    let mut raw = vec![0u8; all.len() * 8];
    arena.read(index, 0, &mut raw)?;
    let mut checked = 0;
    for (n, chunk) in raw.chunks_exact(8).enumerate() {
        let h = Handle::from_u64(u64::from_le_bytes(chunk.try_into()?));
        let thread = (n as u64) / RECORDS_PER_THREAD;
        let want = record(thread * RECORDS_PER_THREAD + n as u64 % RECORDS_PER_THREAD);
        let mut got = vec![0u8; want.len()];
        arena.read(h, 0, &mut got)?;
        assert_eq!(got, want, "record {n} differs after reopen");
        checked += 1;
    }
    let report = arena.verify()?;
    assert!(report.is_clean(), "{report:?}");
    println!(
        "reopened in {:?} (clean: {}); {} records verified; heap walk: {} live blocks, {} free segments",
        reopened,
        arena.was_clean(),
        checked,
        report.live_blocks,
        report.free_segments
    );
    println!("stats after reopen: {:?}", arena.stats());
    drop(arena);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("parena-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
