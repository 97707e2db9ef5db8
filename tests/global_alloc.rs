//! parena as the process's global allocator: threads of allocation-heavy work (strings, vectors,
//! maps) on an anonymous-map arena with the free list on. Its own binary, because the global
//! allocator is per binary.

use parena::{Freelist, GlobalArena};
use std::collections::{BTreeMap, HashMap};

#[global_allocator]
static GLOBAL: GlobalArena = GlobalArena::new(16 << 20, Freelist::Pessimistic);

fn work(seed: u64) -> u64 {
    let mut x = seed;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut map: HashMap<u64, String> = HashMap::new();
    let mut tree: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut sum = 0u64;
    for i in 0..if cfg!(miri) { 500 } else { 60_000 } {
        let k = next() % 5000;
        let s = format!("{k:x}-{}", "y".repeat((next() % 64) as usize));
        sum = sum.wrapping_add(s.len() as u64);
        map.insert(k, s.clone());
        tree.entry(s).or_default().push(i);
        if i % 3 == 0 {
            map.remove(&(next() % 5000));
        }
        if tree.len() > 2000 {
            let first = tree.keys().next().cloned().unwrap();
            tree.remove(&first);
        }
    }
    sum + map.values().map(|s| s.len() as u64).sum::<u64>()
}

#[test]
fn threads_of_real_work_on_the_arena() {
    let handles: Vec<_> = (1..=4)
        .map(|t| std::thread::spawn(move || work(t * 7919)))
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 0);
    // The threads' front caches went back when they exited; what they moved between them (the
    // stash) goes back now.
    GLOBAL.trim();
    let arena = GLOBAL.arena().expect("the arena served allocations");
    let s = arena.stats();
    let hits = GLOBAL.front_hits();
    assert!(s.allocations + hits > 100_000, "{s:?}, {hits} front hits");
    assert!(
        s.from_freelist + s.rewinds + hits > 1000,
        "no reuse of freed memory: {s:?}, {hits} front hits"
    );
    // Every block the threads freed is back in the arena: what is live is the main thread's.
    assert!(s.net_blocks < 1000, "{s:?}");
}
