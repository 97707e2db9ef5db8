//! A write-ahead log in a file-backed arena: appends from several threads, group-committed
//! syncs, replay after reopen, and a torn tail that replay stops at cleanly.
//!
//! ```sh
//! cargo run --release -p parena-examples --example wal
//! cargo run --release -p parena-examples --example wal -- --records 1000000 --threads 4 --syncs 2000 --path FILE
//! ```
//!
//! The log itself is `examples/common/wal.rs` (shared with the tests).

// Not the library: std's atomics, `Arc` and `Mutex` are fine here (see clippy.toml).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[allow(dead_code)] // the tests use the rest
#[path = "common/wal.rs"]
mod wal;

use parena::{Error, Options};
use parena_examples::{Args, Flag};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;
use wal::{record_span, Wal, DEFAULT_SEGMENT_LEN};

/// Root slot holding the log's first segment.
const SLOT: usize = 1;

/// The payload of record `i` of thread `t`: `t`, `i`, then 4 to 188 bytes derived from them.
fn payload(t: u32, i: u64) -> Vec<u8> {
    let h = (i ^ (u64::from(t) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let extra = 4 + (h >> 56) as usize % 185;
    let mut p = Vec::with_capacity(12 + extra);
    p.extend_from_slice(&t.to_le_bytes());
    p.extend_from_slice(&i.to_le_bytes());
    p.extend((0..extra).map(|j| (h >> (j % 8 * 8)) as u8 ^ j as u8));
    p
}

/// The (thread, index) a payload was made from, if it is one of ours.
fn decode(p: &[u8]) -> Option<(u32, u64)> {
    let t = u32::from_le_bytes(p.get(..4)?.try_into().ok()?);
    let i = u64::from_le_bytes(p.get(4..12)?.try_into().ok()?);
    (payload(t, i) == p).then_some((t, i))
}

const FLAGS: &[Flag] = &[
    Flag {
        name: "records",
        help: "records appended without waiting for a sync",
        default: 200_000,
    },
    Flag {
        name: "threads",
        help: "appending threads",
        default: 4,
    },
    Flag {
        name: "syncs",
        help: "records appended each waiting for its sync",
        default: 2_000,
    },
];

/// What one run does.
struct Run {
    records: u64,
    threads: u32,
    syncs: u64,
    path: PathBuf,
}

/// A failed open, with the path it was about.
#[derive(Debug)]
struct PathError(PathBuf, Error);

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.display(), self.1)
    }
}

impl std::error::Error for PathError {}

impl From<Error> for PathError {
    fn from(e: Error) -> Self {
        PathError(PathBuf::new(), e)
    }
}

/// Opens the arena at `path` and its log, checking every replayed record; returns the log,
/// the replay report, the per-thread counts and the replay time.
fn open(
    a: &Run,
    create: bool,
    capacity: u64,
) -> Result<(Wal, wal::ReplayInfo, Vec<u64>, f64), PathError> {
    let t = Instant::now();
    let opts = Options::new().capacity(capacity).create_new(create);
    // SAFETY: the file is ours (created by this run) and nothing else maps or changes it while
    // it is open.
    let arena = unsafe { opts.map_file(&a.path) }.map_err(|e| PathError(a.path.clone(), e))?;
    let mut expect_seq = 1;
    let mut next_of = vec![0u64; a.threads as usize];
    // SAFETY: the arena holds only this log.
    let (log, info) = unsafe {
        Wal::open(arena, SLOT, DEFAULT_SEGMENT_LEN, |seq, p| {
            assert_eq!(seq, expect_seq, "replay out of order or with a gap");
            expect_seq += 1;
            let (th, i) = decode(p).expect("a record we wrote, intact");
            // Each thread appends in order, so its records replay in order, each once.
            assert_eq!(
                i, next_of[th as usize],
                "thread {th}: record {i} repeated or lost"
            );
            next_of[th as usize] += 1;
        })?
    };
    Ok((log, info, next_of, t.elapsed().as_secs_f64()))
}

fn main() {
    parena_examples::main_with("wal", run);
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(
        "wal",
        "a write-ahead log in a file arena: appends, group commit, replay, a torn tail",
        FLAGS,
    );
    args.check_fresh()?;
    let a = Run {
        records: args.get("records"),
        threads: u32::try_from(args.get("threads").max(1))?,
        syncs: args.get("syncs"),
        path: args.path.clone(),
    };
    let capacity = (a.records + a.syncs) * 256 + (64 << 20);
    let (log, _, _, open_secs) = open(&a, true, capacity)?;
    println!(
        "wal: {} threads, {} records then {} synced appends",
        a.threads, a.records, a.syncs
    );
    println!("  create            {:>10.3} ms", open_secs * 1e3);

    // Appends with no sync, then one sync of all of them.
    let per_thread = a.records / u64::from(a.threads);
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..a.threads {
            let log = &log;
            s.spawn(move || {
                for i in 0..per_thread {
                    log.append(&payload(th, i)).expect("append");
                }
            });
        }
    });
    let append_secs = t.elapsed().as_secs_f64();
    let written = log.arena().stats().allocated;
    let t = Instant::now();
    let durable = log.sync()?;
    let sync_secs = t.elapsed().as_secs_f64();
    println!(
        "  append            {:>10.0} records/s ({} records, {:.1} MB/s)",
        (per_thread * u64::from(a.threads)) as f64 / append_secs,
        per_thread * u64::from(a.threads),
        written as f64 / append_secs / 1e6
    );
    println!(
        "  sync all          {:>10.3} ms (durable through seq {durable})",
        sync_secs * 1e3
    );

    // Appends that each wait for their sync: concurrent syncs share one flush (group commit).
    let per_thread_synced = a.syncs / u64::from(a.threads);
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..a.threads {
            let log = &log;
            s.spawn(move || {
                for i in per_thread..per_thread + per_thread_synced {
                    let seq = log.append(&payload(th, i)).expect("append");
                    assert!(log.sync().expect("sync") >= seq, "sync covers the append");
                }
            });
        }
    });
    let synced_secs = t.elapsed().as_secs_f64();
    let total = log.last_seq();
    println!(
        "  append+sync       {:>10.0} records/s ({} records acknowledged durable)",
        (per_thread_synced * u64::from(a.threads)) as f64 / synced_secs,
        per_thread_synced * u64::from(a.threads)
    );

    // Tear the last record the way a crash in the middle of writing it would.
    let last = payload(0, per_thread + per_thread_synced);
    let seq = log.append(&last)?;
    log.sync()?;
    let torn_at = log.tail_offset() - record_span(last.len()) as u64;
    drop(log);
    let file = std::fs::OpenOptions::new().write(true).open(&a.path)?;
    let half = record_span(last.len()) as u64 / 2;
    file.write_all_at(&vec![0u8; half as usize], torn_at + half)?;
    drop(file);

    let (log, info, counts, replay_secs) = open(&a, false, capacity)?;
    assert_eq!(info.records, total, "every acknowledged record, once");
    assert_eq!(info.last_seq, seq - 1, "the torn record is not replayed");
    assert!(info.torn, "the torn tail is reported");
    assert!(counts.iter().all(|&c| c == per_thread + per_thread_synced));
    println!(
        "  reopen + replay   {:>10.3} ms ({} records in order, each once, {:.0} records/s)",
        replay_secs * 1e3,
        info.records,
        info.records as f64 / replay_secs
    );
    println!("  torn tail         stopped cleanly before seq {seq}");

    // Appending resumes after the torn tail, and the next replay sees it.
    let resumed = log.append(&last)?;
    log.sync()?;
    assert_eq!(resumed, seq, "the torn record's number is reused");
    drop(log);
    let (log, info, _, _) = open(&a, false, capacity)?;
    assert_eq!(info.last_seq, seq);
    assert!(!info.torn);
    println!("  resumed           seq {resumed} appended and replayed after the tear");
    println!(
        "  bytes             {} used in the arena",
        log.arena().stats().allocated
    );
    drop(log);
    args.finish();
    Ok(())
}
