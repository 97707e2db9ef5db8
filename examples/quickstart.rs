//! parena in one page: create a file arena, fill it from two threads, keep a root, close, reopen,
//! and check every record.
//!
//! ```sh
//! cargo run --release -p parena-examples --example quickstart                    # a temporary file, removed at the end
//! cargo run --release -p parena-examples --example quickstart -- --path FILE     # keep the arena in FILE
//! parena inspect FILE                                         # then look inside (cargo install --path cli)
//! ```

use parena::{Arena, Handle, Options};
use parena_examples::{at, Args};
use std::time::Instant;

const RECORDS_PER_THREAD: u64 = 50_000;

/// A record: its sequence number, then bytes derived from it.
fn record(seq: u64) -> Vec<u8> {
    let len = 16 + (seq % 80) as usize;
    let mut v = seq.to_le_bytes().to_vec();
    v.extend((8..len).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8));
    v
}

fn main() {
    parena_examples::main_with("quickstart", run);
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(
        "quickstart",
        "create a 64 MiB file arena, fill it from 2 threads, reopen it, check every record",
        &[],
    );
    args.check_fresh()?;
    let path = args.path.clone();
    let opts = Options::new().capacity(64 << 20).create_new(true);

    // 1. Create the arena and allocate from two threads at once.
    let t = Instant::now();
    // SAFETY: the file is new (create_new); nothing else maps or changes it while it is open.
    let arena = unsafe { opts.map_file(&path) }.map_err(at(&path))?;
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
    let bytes: Vec<u8> = all.iter().flat_map(|h| h.to_le_bytes()).collect();
    let index = arena.alloc_copy(&bytes)?;
    arena.set_root(0, index.to_u64())?;
    arena.flush()?;
    let stats = arena.stats();
    println!(
        "created  {} (64 MiB) in {:.1} ms",
        path.display(),
        created.as_secs_f64() * 1e3
    );
    println!(
        "wrote    {} records from 2 threads in {:.1} ms ({:.0} ns each), {} in use",
        all.len(),
        filled.as_secs_f64() * 1e3,
        filled.as_nanos() as f64 / all.len() as f64,
        mib(stats.allocated)
    );
    drop(arena); // the last clone closes the arena cleanly

    // 3. Reopen and check every record.
    let t = Instant::now();
    // SAFETY: as above.
    let mut arena: Arena = unsafe { Options::new().map_file(&path) }.map_err(at(&path))?;
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
        "reopened in {:.2} ms after a clean close; read back all {checked} records",
        reopened.as_secs_f64() * 1e3
    );
    // The heap walk reads what the file holds; `Arena::stats()` would count only what this
    // process did since the reopen (no allocations yet), so it is not the place to look.
    println!(
        "file     {} live blocks ({}), {} free segments ({}): the walk found no problems",
        report.live_blocks,
        mib(report.live_bytes),
        report.free_segments,
        mib(report.free_bytes)
    );
    drop(arena);
    args.finish();
    Ok(())
}

/// `n` bytes in MiB, one decimal.
fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
}
