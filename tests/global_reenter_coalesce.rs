//! Issue 17, first reproduction: a coalescing pass started by a direct call on
//! `GlobalArena::arena()` must not re-enter the global allocator and wait for itself.
//!
//! Fill the global arena through `Box`es until the system allocator serves the overflow, free every
//! other box (free segments that touch nothing listed), in two size classes, then ask the arena itself for a block no
//! listed segment holds: the allocation runs a coalescing pass on this thread. Before the fix the
//! pass built a `Vec` of segments, which came back into `GlobalArena::alloc`, found the arena
//! exhausted, and spun for good on the pass flag this same thread held. Its own binary, because the
//! global allocator is per binary; the scenario runs in a child process under a time limit.

#[path = "support/child.rs"]
mod child;

use parena::{Freelist, GlobalArena};
use std::time::Duration;

#[global_allocator]
static GLOBAL: GlobalArena = GlobalArena::new(4 << 20, Freelist::Pessimistic);

#[test]
fn coalescing_pass_started_through_arena_does_not_wait_for_itself() {
    child::in_child(
        "coalescing_pass_started_through_arena_does_not_wait_for_itself",
        Duration::from_secs(30),
        scenario,
    );
}

fn scenario() {
    // Two classes of free segments: ~50 of 9008 bytes, then a few hundred of 4008 bytes (the
    // lower class, detached first by a pass, so the pass's own bookkeeping would need more than
    // any segment still listed holds).
    let mut big: Vec<Box<[u8; 9000]>> = (0..100).map(|_| Box::new([9u8; 9000])).collect();
    let mut small: Vec<Box<[u8; 4000]>> = Vec::with_capacity(4096);
    let before = GLOBAL.fallbacks();
    while GLOBAL.fallbacks() == before {
        small.push(Box::new([7u8; 4000]));
        assert!(small.len() < 4096, "a 4 MiB arena never filled");
    }
    let mut i = 0;
    big.retain(|_| {
        i += 1;
        i % 2 == 0
    });
    let mut i = 0;
    small.retain(|_| {
        i += 1;
        i % 2 == 0
    });
    let arena = GLOBAL.arena().expect("the arena served allocations");
    // Larger than any listed segment, so only a coalescing pass can serve it. Either answer is
    // fine; returning at all is the point.
    match arena.alloc(30_000) {
        Ok(b) => assert_eq!(b.len(), 30_000),
        Err(e) => assert!(matches!(e, parena::Error::Full { .. }), "{e}"),
    }
    drop((big, small));
}
