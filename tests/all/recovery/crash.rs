//! Recovery after `kill -9`: a child process allocates, writes records, frees and flushes from
//! three threads; the parent kills it at random moments, reopens, and checks every acknowledged
//! record. `PARENA_CRASH_CYCLES` raises the number of cycles (default 50).

use crate::util::{spawn_child, Rng};
use parena::{Arena, Error, Handle, Options};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

const CAP: u64 = 32 << 20;
const THREADS: u64 = 3;

fn open(path: &Path) -> Result<Arena, Error> {
    // SAFETY: the file lives in a private temporary directory; only the child (which is dead by
    // the time the parent opens it) and this process map it, never at once.
    unsafe { Options::new().capacity(CAP).map_file(path) }
}

/// The bytes of record `seq` of length `len`: derived from both, so any damage shows.
fn record_byte(seq: u64, len: usize, i: usize) -> u8 {
    let x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (len as u64) << 32 ^ i as u64;
    (x ^ (x >> 29))
        .wrapping_mul(0xbf58_476d_1ce4_e5b9)
        .to_le_bytes()[i % 8]
}

fn record_ok(arena: &Arena, h: Handle, seq: u64, len: usize) -> Result<bool, Error> {
    let mut buf = vec![0u8; len];
    arena.read(h, 0, &mut buf)?;
    Ok(buf
        .iter()
        .enumerate()
        .all(|(i, &b)| b == record_byte(seq, len, i)))
}

/// Child role: works until killed.
#[test]
#[cfg_attr(miri, ignore = "child role: maps a file (not in Miri)")]
fn child_crash_worker() {
    let Ok(path) = std::env::var("PARENA_CRASH_CHILD") else {
        return;
    };
    crate::util::end_with_parent();
    let seed: u64 = std::env::var("PARENA_CRASH_SEED").unwrap().parse().unwrap();
    let arena = open(Path::new(&path)).unwrap();
    println!("\nready");
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let arena = &arena;
            s.spawn(move || {
                let mut rng = Rng(seed * 31 + t + 1);
                let mut mine: Vec<Handle> = Vec::new();
                for i in 0u64.. {
                    let seq = seed << 40 | t << 32 | i;
                    let len = 16 + rng.below(400) as usize;
                    match arena.alloc(len) {
                        Ok(mut b) => {
                            for (j, x) in b.iter_mut().enumerate() {
                                *x = record_byte(seq, len, j);
                            }
                            let h = b.into_handle();
                            println!("A {} {} {}", h.to_u64(), seq, len);
                            mine.push(h);
                        }
                        Err(Error::Full { .. }) => {}
                        Err(e) => panic!("alloc: {e}"),
                    }
                    if !mine.is_empty() && (rng.below(4) == 0 || mine.len() > 5000) {
                        let h = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                        println!("P {}", h.to_u64());
                        arena.free(h).unwrap();
                        println!("F {}", h.to_u64());
                    }
                    if rng.below(200) == 0 {
                        arena.flush().unwrap();
                    }
                }
            });
        }
    });
}

#[test]
#[ignore = "long (71 s on 2 cores, debug build): 50 cycles of a child process killed with SIGKILL at a random point, each reopened and checked"]
fn kill_nine_at_random_points() {
    kill_cycles(
        std::env::var("PARENA_CRASH_CYCLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50),
    );
}

/// The first cycles of [`kill_nine_at_random_points`], in the default run.
#[test]
#[cfg_attr(miri, ignore = "spawns and kills processes")]
fn kill_nine_a_few_times() {
    kill_cycles(4);
}

/// `cycles` times: a child allocates, frees and acknowledges records on the file until it is
/// killed with SIGKILL at a random point; the parent reopens (recovers) the file and checks every
/// acknowledged record.
fn kill_cycles(cycles: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.parena");
    drop(open(&path).unwrap());
    let mut live: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
    let mut rng = Rng(0x5eed);
    let mut recovered_runs = 0;
    let mut checked = 0u64;
    for cycle in 0..cycles {
        let mut child = spawn_child(
            "recovery::crash::child_crash_worker",
            &[
                ("PARENA_CRASH_CHILD", path.to_str().unwrap()),
                ("PARENA_CRASH_SEED", &(cycle + 1).to_string()),
            ],
        );
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child holds the arena, then let it run a random while.
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(l) if l.trim() == "ready" => break,
                Ok(_) => {}
                Err(e) => panic!("child never became ready: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(2 + rng.below(40)));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child was meant to be killed");
        reader.join().unwrap();
        let mut uncertain = Vec::new();
        for line in rx.try_iter() {
            let mut parts = line.split_whitespace();
            match (
                parts.next(),
                parts.next().and_then(|h| h.parse::<u64>().ok()),
            ) {
                (Some("A"), Some(h)) => {
                    let seq = parts.next().and_then(|x| x.parse().ok());
                    let len = parts.next().and_then(|x| x.parse().ok());
                    if let (Some(seq), Some(len)) = (seq, len) {
                        live.insert(h, (seq, len));
                    }
                }
                (Some("P"), Some(h)) => {
                    if let Some(r) = live.remove(&h) {
                        uncertain.push((h, r));
                    }
                }
                (Some("F"), Some(h)) => uncertain.retain(|&(u, _)| u != h),
                _ => {} // a torn last line, or the harness's own output
            }
        }

        // Reopen: recovery must succeed and find every acknowledged record intact.
        let mut arena = open(&path).unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        assert!(
            !arena.was_clean(),
            "cycle {cycle}: a killed writer left a clean mark"
        );
        let report = arena
            .recovery_report()
            .expect("a dirty open runs recovery")
            .clone();
        assert!(
            report.is_clean(),
            "cycle {cycle}: recovery found {report:?}"
        );
        recovered_runs += 1;
        let v = arena.verify().unwrap();
        assert!(v.is_clean(), "cycle {cycle}: verify after recovery: {v:?}");
        assert!(
            v.live_blocks >= live.len() as u64,
            "cycle {cycle}: fewer live blocks than records"
        );
        for (&h, &(seq, len)) in &live {
            let ok = record_ok(&arena, Handle::from_u64(h), seq, len);
            assert!(
                matches!(ok, Ok(true)),
                "cycle {cycle}: record {seq:#x} at {h:#x}: {ok:?}"
            );
            checked += 1;
        }
        for (h, (seq, len)) in uncertain {
            // A free was in flight: the record is either intact or gone, never damaged.
            match record_ok(&arena, Handle::from_u64(h), seq, len) {
                Ok(true) => {
                    live.insert(h, (seq, len));
                }
                Ok(false) => {
                    panic!("cycle {cycle}: record {seq:#x} damaged by an interrupted free")
                }
                Err(_) => {}
            }
        }

        // New allocations never land on an acknowledged record.
        let mut fresh = Vec::new();
        for _ in 0..2000 {
            let len = 8 + rng.below(3000) as usize;
            match arena.alloc(len) {
                Ok(mut b) => {
                    b.fill(0xee);
                    fresh.push(b.into_handle());
                }
                Err(Error::Full { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let spans: BTreeMap<u64, u64> = live
            .iter()
            .map(|(&h, &(_, len))| (Handle::from_u64(h).offset(), len as u64))
            .collect();
        for f in &fresh {
            let start = f.offset();
            let end = start + arena.len_of(*f).unwrap() as u64;
            if let Some((&s, &l)) = spans.range(..end).next_back() {
                assert!(
                    s + l <= start,
                    "cycle {cycle}: new block {start}..{end} overlaps record at {s}"
                );
            }
        }
        for (&h, &(seq, len)) in &live {
            assert!(
                record_ok(&arena, Handle::from_u64(h), seq, len).unwrap(),
                "cycle {cycle}: record overwritten"
            );
        }
        for f in fresh {
            arena.free(f).unwrap();
        }
        // Keep about a tenth of the records for later cycles.
        let keys: Vec<u64> = live.keys().copied().collect();
        for h in keys {
            if rng.below(10) != 0 {
                arena.free(Handle::from_u64(h)).unwrap();
                live.remove(&h);
            }
        }
        arena.close().unwrap();
        let _ = std::io::stdout().flush();
    }
    assert_eq!(recovered_runs, cycles);
    assert!(
        checked >= cycles * 10,
        "the children acknowledged too little to prove anything"
    );
}
