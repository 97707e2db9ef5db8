//! The storage-engine showcase at small sizes: the memtable skiplist and the write-ahead log of
//! `examples/`, included from `examples/common/` so the tests run the code users copy.

#[allow(dead_code)]
#[path = "../../examples/common/memtable.rs"]
pub(crate) mod memtable;
#[allow(dead_code)]
#[path = "../../examples/common/wal.rs"]
pub(crate) mod wal;

use crate::util::{spawn_child, Rng};
use memtable::Memtable;
use parena::{Arena, Options};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wal::{record_span, ReplayInfo, Wal};

pub(crate) const MEMTABLE_SLOT: usize = 0;
pub(crate) const WAL_SLOT: usize = 1;

pub(crate) fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

/// A self-describing value: key index, version, then a pattern of both; 16 to 100 bytes.
pub(crate) fn value(i: u64, version: u64) -> Vec<u8> {
    let len = 16 + ((i * 31 + version * 7) % 85) as usize;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&i.to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    v.extend((16..len).map(|j| (i as u8) ^ (version as u8).rotate_left(3) ^ j as u8));
    v
}

/// The (index, version) of a well-formed value.
pub(crate) fn parse_value(v: &[u8]) -> (u64, u64) {
    let i = u64::from_le_bytes(v[..8].try_into().unwrap());
    let version = u64::from_le_bytes(v[8..16].try_into().unwrap());
    assert_eq!(v, value(i, version), "value bytes are not a whole value");
    (i, version)
}

fn open_file(path: &Path, capacity: u64) -> Arena {
    // SAFETY: the file is a test's own temporary file; nothing else maps or changes it.
    unsafe { Options::new().capacity(capacity).map_file(path) }.unwrap()
}

pub(crate) fn open_memtable(arena: Arena) -> Memtable {
    // SAFETY: the arena holds only this memtable.
    unsafe { Memtable::open_or_create(arena, MEMTABLE_SLOT).unwrap() }
}

/// Every key once, in order, each value one of the versions `versions` allows for its key.
fn check_memtable(table: &Memtable, n: u64, versions: impl Fn(u64) -> Vec<u64>) {
    let mut seen = vec![false; n as usize];
    let mut prev: Option<&[u8]> = None;
    for e in table.iter() {
        let (k, v) = e.unwrap();
        assert!(prev < Some(k), "scan out of order");
        prev = Some(k);
        let (i, version) = parse_value(&v);
        assert_eq!(k, key(i), "value stored under another key");
        assert!(versions(i).contains(&version), "key {i}: version {version}");
        assert!(!seen[i as usize], "key {i} twice");
        seen[i as usize] = true;
    }
    assert!(seen.iter().all(|&s| s), "a key is missing from the scan");
    let mut buf = Vec::new();
    for i in 0..n {
        assert!(table.get_into(&key(i), &mut buf).unwrap(), "key {i} lost");
        assert!(versions(i).contains(&parse_value(&buf).1));
    }
    assert!(table.get(&key(n + 1)).unwrap().is_none());
}

#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn memtable_races_replace_and_reopen_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memtable.arena");
    let n = 20_000u64;
    let table = open_memtable(open_file(&path, 16 << 20));
    // Both threads insert every key (in opposite orders): every key is raced for, the loser's
    // node is freed and its value replaces the winner's, whose value is freed.
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let table = &table;
            s.spawn(move || {
                for j in 0..n {
                    let i = if t == 0 { j } else { n - 1 - j };
                    table.insert(&key(i), &value(i, t)).unwrap();
                }
            });
        }
    });
    check_memtable(&table, n, |_| vec![0, 1]);
    table.arena().flush().unwrap();
    let mut arena = table.arena().clone();
    drop(table);
    // Head, one node and one value per key: losers and replaced values were all freed.
    let report = arena.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.live_blocks, 1 + 2 * n, "{report:?}");
    drop(arena);

    // Usable straight from the file: no rebuild, just the root slot.
    let arena = open_file(&path, 16 << 20);
    assert!(arena.was_clean());
    let table = open_memtable(arena);
    check_memtable(&table, n, |_| vec![0, 1]);
    for i in (0..n).step_by(3) {
        assert!(!table.insert(&key(i), &value(i, 2)).unwrap());
    }
    assert!(table.insert(&key(n), &value(n, 0)).unwrap());
    check_memtable(&table, n + 1, |i| {
        if i == n {
            vec![0]
        } else if i % 3 == 0 {
            vec![2]
        } else {
            vec![0, 1]
        }
    });
}

#[test]
fn memtable_readers_never_see_a_freed_value() {
    let table = open_memtable(Options::new().capacity(8 << 20).heap().unwrap());
    let keys = if cfg!(miri) { 8 } else { 64u64 };
    let versions = if cfg!(miri) { 6 } else { 300u64 };
    for i in 0..keys {
        table.insert(&key(i), &value(i, 0)).unwrap();
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Replaced values are freed at once and their space reused by the next values.
            for version in 1..versions {
                for i in 0..keys {
                    assert!(!table.insert(&key(i), &value(i, version)).unwrap());
                }
            }
            done.store(true, Ordering::Relaxed);
        });
        s.spawn(|| {
            let mut buf = Vec::new();
            let mut last = vec![0u64; keys as usize];
            while !done.load(Ordering::Relaxed) {
                for i in 0..keys {
                    assert!(table.get_into(&key(i), &mut buf).unwrap());
                    let (j, version) = parse_value(&buf);
                    assert_eq!(j, i);
                    assert!(version >= last[i as usize], "a value went back in time");
                    last[i as usize] = version;
                }
            }
        });
    });
    check_memtable(&table, keys, |_| vec![versions - 1]);
}

/// A payload that says who wrote it: `tag`, `n`, then 0 to 120 bytes derived from both.
pub(crate) fn payload(tag: u64, n: u64) -> Vec<u8> {
    let h = (tag ^ n.rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut p = Vec::new();
    p.extend_from_slice(&tag.to_le_bytes());
    p.extend_from_slice(&n.to_le_bytes());
    p.extend((0..(h >> 57) as usize).map(|j| (h >> (j % 8 * 8)) as u8 ^ j as u8));
    p
}

pub(crate) fn parse_payload(p: &[u8]) -> (u64, u64) {
    let tag = u64::from_le_bytes(p[..8].try_into().unwrap());
    let n = u64::from_le_bytes(p[8..16].try_into().unwrap());
    assert_eq!(p, payload(tag, n), "payload damaged");
    (tag, n)
}

/// Opens the log, collecting the replay (checking sequence numbers run 1, 2, 3, ...).
fn open_wal(arena: Arena, segment_len: usize) -> (Wal, ReplayInfo, Vec<Vec<u8>>) {
    let mut records = Vec::new();
    // SAFETY: the arena holds only this log.
    let (log, info) = unsafe {
        Wal::open(arena, WAL_SLOT, segment_len, |seq, p| {
            assert_eq!(
                seq,
                records.len() as u64 + 1,
                "replay out of order or with a gap"
            );
            records.push(p.to_vec());
        })
        .unwrap()
    };
    assert_eq!(info.records, records.len() as u64);
    (log, info, records)
}

#[test]
fn crc32c_known_answer() {
    assert_eq!(wal::crc32c(b"123456789"), 0xe306_9283);
    assert_eq!(wal::crc32c(b""), 0);
}

#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn wal_replays_every_synced_record_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.arena");
    // Small segments: many segment switches under concurrent appends.
    let seg = 4096;
    let (log, info, _) = open_wal(open_file(&path, 16 << 20), seg);
    assert_eq!(info, ReplayInfo::default());
    let acked = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (log, acked) = (&log, &acked);
            s.spawn(move || {
                for n in 0..400 {
                    let seq = log.append(&payload(t, n)).unwrap();
                    if n % 7 == 0 {
                        assert!(log.sync().unwrap() >= seq);
                        acked.lock().unwrap().push((seq, t, n));
                    }
                }
            });
        }
    });
    log.sync().unwrap();
    assert_eq!(log.last_seq(), 1200);
    drop(log);
    let (log, info, records) = open_wal(open_file(&path, 16 << 20), seg);
    assert!(!info.torn);
    assert_eq!(records.len(), 1200);
    for &(seq, t, n) in acked.lock().unwrap().iter() {
        assert_eq!(parse_payload(&records[seq as usize - 1]), (t, n));
    }
    // Per writer, its records in its order, each once.
    let mut next = [0u64; 3];
    for r in &records {
        let (t, n) = parse_payload(r);
        assert_eq!(n, next[t as usize]);
        next[t as usize] += 1;
    }
    assert_eq!(log.append(b"after").unwrap(), 1201);
    assert!(
        log.append(&vec![0; seg]).is_err(),
        "a record larger than a segment"
    );
}

/// Puts `image` back at `path`, writing only the pages that differ (the test reopens a 1 MiB file
/// some 1,400 times: rewriting it whole each time wrote 1.6 GB).
fn restore(path: &std::path::Path, image: &[u8]) {
    let now = std::fs::read(path).unwrap();
    if now.len() != image.len() {
        std::fs::write(path, image).unwrap();
        return;
    }
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    for (i, (a, b)) in now.chunks(4096).zip(image.chunks(4096)).enumerate() {
        if a != b {
            f.write_all_at(b, i as u64 * 4096).unwrap();
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn wal_stops_at_a_torn_tail_whatever_byte_it_stopped_at() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.arena");
    let cap = 1 << 20;
    let (log, _, _) = open_wal(open_file(&path, cap), 4096);
    for n in 0..10 {
        log.append(&payload(7, n)).unwrap();
    }
    let last = payload(7, 10);
    log.append(&last).unwrap();
    log.sync().unwrap();
    let span = record_span(last.len());
    let start = log.tail_offset() - span as u64;
    // Bytes past the payload are padding, outside the checksum: tearing there tears nothing.
    let used = wal::RECORD_HEADER + last.len();
    drop(log);
    let image = std::fs::read(&path).unwrap();
    for fill in [0x00u8, 0xa5] {
        for k in 0..used {
            // The write stopped after byte k: the rest of the record is what was there before.
            restore(&path, &image);
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.write_all_at(&vec![fill; span - k], start + k as u64)
                .unwrap();
            drop(f);
            let (log, info, records) = open_wal(open_file(&path, cap), 4096);
            assert_eq!(records.len(), 10, "fill {fill:#x}, torn after byte {k}");
            assert_eq!(info.torn, fill != 0 || k > 0, "fill {fill:#x}, byte {k}");
            for (n, r) in records.iter().enumerate() {
                assert_eq!(parse_payload(r), (7, n as u64));
            }
            // Appending resumes at the tear, with the torn record's number.
            assert_eq!(log.append(&payload(8, 0)).unwrap(), 11);
            log.sync().unwrap();
            drop(log);
            let (log, info, records) = open_wal(open_file(&path, cap), 4096);
            assert!(
                !info.torn,
                "nothing of the torn record is left behind the new one"
            );
            assert_eq!(records.len(), 11);
            assert_eq!(parse_payload(&records[10]), (8, 0));
            drop(log);
        }
    }
}

const CHILD_ENV: &str = "PARENA_ENGINE_WAL_CHILD";
const KILL_CAPACITY: u64 = 64 << 20;
const KILL_SEGMENT: usize = 16 << 10;

/// The child role of `wal_survives_kills`: reopen the log (recovering the arena), then append and
/// sync from 3 threads, printing `ACK seq tag n` for records a finished sync covered, until killed.
#[test]
#[cfg_attr(miri, ignore = "child role: maps a file (not in Miri)")]
fn wal_kill_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return; // Not the child: nothing to do.
    };
    crate::util::end_with_parent();
    let (log, _, _) = open_wal(open_file(Path::new(&path), KILL_CAPACITY), KILL_SEGMENT);
    let pid = u64::from(std::process::id());
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let log = &log;
            s.spawn(move || {
                let tag = pid << 8 | t;
                for n in 0.. {
                    let seq = log.append(&payload(tag, n)).unwrap();
                    match t {
                        // Thread 0 syncs every record and acknowledges it.
                        0 => {
                            assert!(log.sync().unwrap() >= seq);
                            println!("ACK {seq} {tag} {n}");
                        }
                        // Thread 1 syncs every third record and acknowledges only that one.
                        1 if n % 3 == 2 => {
                            assert!(log.sync().unwrap() >= seq);
                            println!("ACK {seq} {tag} {n}");
                        }
                        1 => {}
                        // Thread 2 appends in bursts and never waits: a kill often lands in the
                        // middle of one of its records (a torn tail).
                        _ => {
                            if n % 64 == 63 {
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                }
            });
        }
    });
}

#[test]
#[cfg_attr(miri, ignore = "spawns and kills processes, maps files")]
fn wal_survives_kills() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.arena");
    let seed = crate::util::time_seed();
    let mut rng = Rng(seed);
    let mut acked: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut total_torn = 0;
    for cycle in 0..12 {
        let mut child = spawn_child(
            "engine::wal_kill_child",
            &[(CHILD_ENV, path.to_str().unwrap())],
        );
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            })
        };
        // Any moment: during the child's open and replay, its appends, a segment switch.
        std::thread::sleep(Duration::from_millis(5 + rng.below(250)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "seed {seed}, cycle {cycle}: the child exited on its own"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        // A line cut by the kill does not parse and is not an acknowledgement.
        for line in lines.lock().unwrap().iter() {
            let f: Vec<&str> = line.split(' ').collect();
            if let ["ACK", seq, tag, n] = f[..] {
                if let (Ok(seq), Ok(tag), Ok(n)) = (seq.parse(), tag.parse(), n.parse()) {
                    assert!(
                        acked.insert(seq, (tag, n)).is_none(),
                        "seq {seq} acked twice"
                    );
                }
            }
        }

        let arena = open_file(&path, KILL_CAPACITY);
        let mut probe = arena.clone();
        let (log, info, records) = open_wal(arena, KILL_SEGMENT);
        total_torn += u32::from(info.torn);
        for (&seq, &(tag, n)) in &acked {
            let r = records
                .get(seq as usize - 1)
                .unwrap_or_else(|| panic!("seed {seed}, cycle {cycle}: acked seq {seq} lost"));
            assert_eq!(parse_payload(r), (tag, n), "seed {seed}: seq {seq}");
        }
        drop(log);
        let report = probe.verify().unwrap();
        assert!(report.is_clean(), "seed {seed}, cycle {cycle}: {report:?}");
        drop(probe);
    }
    assert!(
        !acked.is_empty(),
        "seed {seed}: no child acknowledged anything"
    );
    eprintln!(
        "wal_survives_kills: {} acknowledged records checked, {total_torn} torn tails",
        acked.len()
    );
}

/// Closing a file arena and opening it again while another thread of the process spawns a child
/// (which holds a copy of every open file description, the arena file's included, from its fork
/// until its exec, and the `flock` with it) must not be refused as `Locked`: no second writer
/// exists.
#[test]
#[cfg_attr(miri, ignore = "spawns processes and maps files")]
fn reopen_is_not_locked_by_a_child_being_spawned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.arena");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let _ = std::process::Command::new("true").status();
            }
        });
        let mut locked = 0;
        for _ in 0..500 {
            // SAFETY: the test's own temporary file.
            match unsafe { Options::new().capacity(1 << 20).map_file(&path) } {
                Ok(a) => drop(a),
                Err(parena::Error::Locked) => locked += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert_eq!(locked, 0, "{locked} of 500 reopens were refused as Locked");
    });
}
