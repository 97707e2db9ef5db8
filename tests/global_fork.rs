//! Issue 23, item 4: `fork()` while other threads allocate through a `GlobalArena`. The child has
//! only the forking thread; whatever the parent's other threads held at the fork (a coalescing
//! pass, the cell registry, a free list half-way through a push) they hold forever in the child.
//! The child must still allocate and free, and never wait for them.
//!
//! The parent's threads churn an arena kept exhausted (so coalescing passes run all the time) and
//! start short-lived threads (so new cells are registered all the time); the test forks 50 times;
//! each child allocates and frees through the global allocator past the point where the arena is
//! full (the slow path, the coalescing pass and the registry fold), then exits. The parent waits
//! for each child with a deadline and kills it if it does not exit: a killed child fails the test.
//! Its own binary, because the global allocator is per binary.

#![cfg(target_os = "linux")]
// Not the library: std's atomics and `Arc` are fine here (see clippy.toml).
#![allow(clippy::disallowed_types)]

use parena::{Freelist, GlobalArena};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: GlobalArena = GlobalArena::new(4 << 20, Freelist::Pessimistic);

extern "C" {
    fn fork() -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
    fn _exit(code: i32) -> !;
}

const WNOHANG: i32 = 1;
const SIGKILL: i32 = 9;
const FORKS: usize = 50;
/// How long a child may take: its work takes milliseconds; only a hang reaches this.
const DEADLINE: Duration = Duration::from_secs(20);

/// A small xorshift generator: sizes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn size(&mut self) -> usize {
        16 + (self.next() % 4000) as usize
    }
}

/// Keeps `live` blocks of random sizes, replacing one at random per step: with several threads
/// this holds more than the arena, so it stays exhausted and the slow path runs passes.
fn churn(seed: u64, live: usize, steps: Option<usize>, stop: &AtomicBool) {
    let mut rng = Rng(seed | 1);
    let mut blocks: Vec<Vec<u8>> = (0..live).map(|_| vec![1u8; rng.size()]).collect();
    let mut step = 0;
    while !stop.load(Ordering::Relaxed) && steps.is_none_or(|n| step < n) {
        let i = (rng.next() % live as u64) as usize;
        blocks[i] = vec![2u8; rng.size()];
        step += 1;
    }
    assert!(blocks.iter().all(|b| b.iter().all(|&x| x == 1 || x == 2)));
}

/// The child's work: allocate and free through the global allocator until the arena was full
/// several times over, check the bytes, free everything, allocate again.
fn child_work() -> bool {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for round in 0..3u8 {
        for _ in 0..4000 {
            let n = rng.size();
            kept.push(vec![round; n]);
            if rng.next() % 3 == 0 {
                let i = (rng.next() % kept.len() as u64) as usize;
                kept.swap_remove(i);
            }
        }
        if !kept.iter().all(|b| b.iter().all(|&x| x <= round)) {
            return false;
        }
        kept.clear();
        kept.shrink_to_fit();
    }
    let a = GLOBAL.arena().expect("the arena exists");
    let s = a.stats();
    s.allocated > 0
}

#[test]
fn a_child_forked_while_threads_allocate_allocates_and_frees() {
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for t in 0..3u64 {
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || churn(t + 1, 1500, None, &stop)));
    }
    {
        // Threads that live briefly: each registers a cell (the registry's lock) and abandons it.
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let mut seed = 100;
            while !stop.load(Ordering::Relaxed) {
                seed += 1;
                let stop = stop.clone();
                let _ = std::thread::spawn(move || churn(seed, 50, Some(200), &stop)).join();
            }
        }));
    }
    // Let the arena fill up first.
    std::thread::sleep(Duration::from_millis(300));
    let mut hung = 0;
    let mut failed = 0;
    let mut forks = 0;
    // Stops at the first child that hangs or fails: one is enough to fail the test.
    while forks < FORKS && hung + failed == 0 {
        forks += 1;
        // SAFETY: the child runs only `child_work` (allocation through the global allocator and
        // reads of the arena's stats) and `_exit`; it never returns into the test harness.
        let pid = unsafe { fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = std::panic::catch_unwind(child_work).unwrap_or(false);
            // SAFETY: ends the child without running the parent's atexit handlers or destructors.
            unsafe { _exit(if ok { 0 } else { 1 }) };
        }
        let start = Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: `pid` is our child; `status` is a valid out-pointer.
            let r = unsafe { waitpid(pid, &mut status, WNOHANG) };
            if r == pid {
                // Exited normally with code 0: WIFEXITED and WEXITSTATUS == 0.
                if status != 0 {
                    failed += 1;
                }
                break;
            }
            assert_eq!(r, 0, "waitpid failed");
            if start.elapsed() > DEADLINE {
                // SAFETY: `pid` is our child, not yet reaped.
                unsafe { kill(pid, SIGKILL) };
                // SAFETY: as above; reaps the killed child.
                unsafe { waitpid(pid, &mut status, 0) };
                hung += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a worker panicked");
    }
    let s = GLOBAL.arena().expect("the arena exists").stats();
    println!(
        "{forks} forks: {hung} hung, {failed} failed; parent passes coalesced {} segments, {} fallbacks",
        s.coalesced,
        GLOBAL.fallbacks()
    );
    assert_eq!(
        (hung, failed),
        (0, 0),
        "child {forks} of those forked while threads allocate hung in the allocator ({hung}) or failed ({failed})"
    );
}
