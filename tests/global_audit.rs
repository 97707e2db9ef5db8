//! Invariant A of issue 17, enforced: no parena operation reachable from an allocator interface
//! allocates. The global allocator here is `GlobalArena` behind an audit that aborts, with a
//! message, if it is entered while a parena operation is on the calling thread's stack
//! (`parena::audit::depth()`, cargo feature `alloc-audit`). The work: threads of maps, strings and
//! vectors on a 16 MiB arena (so caches, free lists, coalescing passes and the system fallback
//! all run), `flush` and `stats` on `GlobalArena::arena()`, and a hashbrown map in a second,
//! ordinary arena through `allocator_api2::Allocator`. Runs in a child process under a time limit.

#[path = "support/child.rs"]
mod child;

use parena::{Freelist, GlobalArena, Options};
use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Duration;

static ARENA: GlobalArena = GlobalArena::new(16 << 20, Freelist::Optimistic);

struct Audit;

fn check(what: &str) {
    if parena::audit::depth() > 0 {
        // Unbuffered stderr: no allocation on the way out.
        let _ = std::io::stderr().write_all(b"global_audit: the global allocator was entered (");
        let _ = std::io::stderr().write_all(what.as_bytes());
        let _ =
            std::io::stderr().write_all(b") while a parena operation was on this thread's stack\n");
        std::process::abort();
    }
}

// SAFETY: forwards every call unchanged to `GlobalArena`, which upholds the contract.
unsafe impl GlobalAlloc for Audit {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        check("alloc");
        // SAFETY: forwarded caller contract.
        unsafe { ARENA.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        check("dealloc");
        // SAFETY: forwarded caller contract.
        unsafe { ARENA.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        check("realloc");
        // SAFETY: forwarded caller contract.
        unsafe { ARENA.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Audit = Audit;

fn work(seed: u64, rounds: u64) -> u64 {
    let mut x = seed;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut map: HashMap<u64, String> = HashMap::new();
    let mut tree: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut sum = 0u64;
    for i in 0..rounds {
        let k = next() % 4000;
        map.insert(k, "z".repeat((next() % 300) as usize));
        tree.insert(k, vec![1; (next() % 6000) as usize]);
        if i % 2 == 0 {
            map.remove(&(next() % 4000));
            tree.remove(&(next() % 4000));
        }
        if i % 5000 == 0 {
            if let Some(a) = ARENA.arena() {
                a.flush().expect("flush of an anonymous arena");
                sum += a.stats().allocations % 2;
            }
        }
    }
    sum + map.len() as u64 + tree.len() as u64
}

#[test]
fn no_allocation_inside_parena() {
    child::in_child(
        "no_allocation_inside_parena",
        Duration::from_secs(120),
        || {
            let other = Options::new()
                .capacity(4 << 20)
                .heap()
                .expect("a heap arena");
            let mut m = hashbrown::HashMap::new_in(&other);
            for i in 0..20_000u64 {
                m.insert(i, i * 2);
                if i % 3 == 0 {
                    m.remove(&(i / 2));
                }
            }
            other.flush().expect("flush of a heap arena");
            let handles: Vec<_> = (1..=3)
                .map(|t| std::thread::spawn(move || work(t * 7919, 40_000)))
                .collect();
            let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
            assert!(total > 0);
            let s = ARENA.arena().expect("the arena served allocations").stats();
            assert!(s.coalesced > 0 || ARENA.fallbacks() > 0, "{s:?}");
        },
    );
}
