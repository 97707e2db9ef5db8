//! Issue 17, second reproduction: `GlobalArena::arena().flush()` on a thread that has also used an
//! ordinary arena must not re-enter the global allocator while parena holds this thread's cells.
//!
//! Before the fix, `flush` collected the thread's cells into a `Vec` while it borrowed the
//! thread-local slot list; the `Vec` came back into `GlobalArena::alloc`, which (the other arena
//! being first in the slot list) went to borrow the same list mutably: a panic inside the global
//! allocator, "failed to initiate panic", abort. The scenario runs in a child process under a time
//! limit, so the abort fails this test with a message.

#[path = "support/child.rs"]
mod child;

use parena::{Freelist, GlobalArena, Options};
use std::time::Duration;

#[global_allocator]
static GLOBAL: GlobalArena = GlobalArena::new(64 << 20, Freelist::Optimistic);

#[test]
fn flush_of_the_global_arena_after_another_arena() {
    child::in_child(
        "flush_of_the_global_arena_after_another_arena",
        Duration::from_secs(30),
        scenario,
    );
}

fn scenario() {
    // The global arena serves this thread (and gives it a cell and a cached block).
    let v: Vec<u64> = (0..1000).collect();
    let small = Box::new(5u64);
    drop(small);
    let global = GLOBAL.arena().expect("the arena served allocations");
    // A second, ordinary arena, used once on this thread: its slot goes first.
    let other = Options::new()
        .capacity(1 << 20)
        .heap()
        .expect("a heap arena");
    let h = other.alloc_copy(b"once").expect("room");
    other.free(h).expect("live");
    global.flush().expect("flush of an anonymous arena");
    other.flush().expect("flush of a heap arena");
    // And the allocator interfaces still work afterwards.
    let w: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    assert_eq!(v.len() + w.len(), 1100);
}
