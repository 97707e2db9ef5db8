//! A lock-free skiplist memtable in a file-backed arena, filled from 2 threads, closed, reopened
//! and checked straight from the file.
//!
//! ```sh
//! cargo run --release -p parena-examples --example memtable                 # 1,000,000 keys
//! cargo run --release -p parena-examples --example memtable -- --keys 100000 --threads 4 --path /tmp/m.arena  # kept
//! ```
//!
//! The skiplist itself is `examples/common/memtable.rs` (shared with the tests and the bench).

// Not the library: std's atomics, `Arc` and `Mutex` are fine here (see clippy.toml).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[allow(dead_code)] // the tests and the bench use the rest
#[path = "common/memtable.rs"]
mod memtable;

use memtable::Memtable;
use parena::Options;
use parena_examples::{at, Args, Flag};
use std::path::PathBuf;

/// What one run does.
struct Run {
    keys: u64,
    threads: u64,
    path: PathBuf,
}
use std::time::Instant;

/// Root slot holding the memtable's head.
const SLOT: usize = 0;

/// The 16-byte key of entry `i`: a scrambled prefix (so inserts land all over the list) and `i`.
fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mix(i).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

/// The value of entry `i`: 16 to 100 bytes derived from `i`.
fn value(i: u64) -> Vec<u8> {
    let h = mix(i ^ 0x5555);
    let len = 16 + (h % 85) as usize;
    (0..len)
        .map(|j| (h >> (j % 8 * 8)) as u8 ^ j as u8)
        .collect()
}

/// splitmix64's finaliser.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const FLAGS: &[Flag] = &[
    Flag {
        name: "keys",
        help: "entries to insert",
        default: 1_000_000,
    },
    Flag {
        name: "threads",
        help: "inserting threads",
        default: 2,
    },
];

fn main() {
    parena_examples::main_with("memtable", run);
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(
        "memtable",
        "a lock-free skiplist memtable in a file arena: fill, close, reopen, read back",
        FLAGS,
    );
    args.check_fresh()?;
    let a = Run {
        keys: args.get("keys"),
        threads: args.get("threads").max(1),
        path: args.path.clone(),
    };
    // Nodes ~56 bytes, values ~72 with their headers; room to spare.
    let capacity = a.keys * 192 + (16 << 20);

    let t = Instant::now();
    let opts = Options::new().capacity(capacity).create_new(true);
    // SAFETY: the file is new (create_new) and nothing else maps or changes it meanwhile.
    let arena = unsafe { opts.map_file(&a.path) }.map_err(at(&a.path))?;
    // SAFETY: the arena is new and only this memtable uses it.
    let table = unsafe { Memtable::open_or_create(arena, SLOT)? };
    let open_time = t.elapsed();

    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..a.threads {
            let table = &table;
            let (n, threads) = (a.keys, a.threads);
            s.spawn(move || {
                let mut i = th;
                while i < n {
                    table.insert(&key(i), &value(i)).expect("insert");
                    i += threads;
                }
            });
        }
    });
    let insert_time = t.elapsed();
    let t = Instant::now();
    table.arena().flush()?;
    let flush_time = t.elapsed();
    let stats = table.arena().stats();
    drop(table);

    let t = Instant::now();
    // SAFETY: as above; the previous open was closed by the drop.
    let arena = unsafe { Options::new().map_file(&a.path)? };
    // SAFETY: the arena holds only the memtable written above.
    let table = unsafe { Memtable::open_or_create(arena, SLOT)? };
    let reopen_time = t.elapsed();
    assert!(table.arena().was_clean(), "the close was clean");

    // Every key, from as many threads as wrote them, straight from the file.
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..a.threads {
            let table = &table;
            let (n, threads) = (a.keys, a.threads);
            s.spawn(move || {
                let mut buf = Vec::new();
                let mut i = th;
                while i < n {
                    assert!(
                        table.get_into(&key(i), &mut buf).expect("get"),
                        "key {i} lost"
                    );
                    assert_eq!(buf, value(i), "value of key {i}");
                    i += threads;
                }
            });
        }
    });
    let get_time = t.elapsed();

    // The scan: strictly increasing keys, each one of ours with its value, all of them.
    let t = Instant::now();
    let mut count = 0u64;
    let mut prev: Option<&[u8]> = None;
    for entry in table.iter() {
        let (k, v) = entry?;
        assert!(prev < Some(k), "scan out of order at entry {count}");
        let i = u64::from_be_bytes(k[8..].try_into().expect("16-byte key"));
        assert_eq!(k, key(i), "scan found a key never inserted");
        assert_eq!(v, value(i), "scan value of key {i}");
        prev = Some(k);
        count += 1;
    }
    assert_eq!(count, a.keys, "scan length");
    let scan_time = t.elapsed();

    let secs = insert_time.as_secs_f64();
    println!(
        "memtable: {} keys (16-byte keys, 16-100-byte values) from {} threads",
        a.keys, a.threads
    );
    println!(
        "  insert   {:>10.3} s  {:>12.0} inserts/s",
        secs,
        a.keys as f64 / secs
    );
    println!(
        "  bytes    {:>10} used of {} ({:.1} per key)",
        stats.allocated,
        stats.capacity,
        stats.allocated as f64 / a.keys.max(1) as f64
    );
    println!("  open     {:>10.3} ms (create)", ms(open_time));
    println!("  flush    {:>10.3} ms", ms(flush_time));
    println!(
        "  reopen   {:>10.3} ms (clean, no rebuild)",
        ms(reopen_time)
    );
    println!(
        "  get all  {:>10.3} s  {:>12.0} gets/s (after reopen)",
        get_time.as_secs_f64(),
        a.keys as f64 / get_time.as_secs_f64()
    );
    println!(
        "  scan     {:>10.3} s  in order, {} entries",
        scan_time.as_secs_f64(),
        count
    );
    drop(table);
    args.finish();
    Ok(())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
