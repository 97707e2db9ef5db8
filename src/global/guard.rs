//! The "inside the arena" mark of `GlobalArena`'s paths: an allocation parena makes for itself
//! (a thread's slot list, a chunk cell, the arena's creation) is served by the system allocator
//! instead of recursing into the arena.

use crate::arena::Arena;
use crate::reentry::in_step;
use std::alloc::Layout;
use std::ptr::NonNull;

std::thread_local! {
    /// Set while this thread is inside the arena: allocations made by parena itself (thread-local
    /// slots, chunk cells) go to the system allocator instead of recursing.
    static IN_ARENA: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` marked as inside the arena; `None` if this thread already is, is inside one of parena's
/// exclusive steps (a coalescing pass, a walk of its cells: invariant A in `reentry.rs`), or is
/// exiting.
pub(super) fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    if in_step() {
        return None;
    }
    let entered = IN_ARENA.try_with(|g| !g.replace(true)).unwrap_or(false);
    if !entered {
        return None;
    }
    let r = f();
    let _ = IN_ARENA.try_with(|g| g.set(false));
    Some(r)
}

/// Whether the calling thread may enter the arena now: not inside it already, nor inside one of
/// parena's exclusive steps (the same test as [`guarded`]'s, without the mark).
#[inline]
pub(super) fn may_enter() -> bool {
    !in_step() && IN_ARENA.try_with(|g| !g.get()).unwrap_or(false)
}

/// Frees an arena block the allocator handed out: marked as inside the arena when the thread is
/// not already (a free allocates nothing, so a re-entered or exiting thread frees unmarked).
///
/// # Safety
/// `p` came from `arena.allocate_ptr` with `layout`, and is not used afterwards.
pub(super) unsafe fn free_to_arena(arena: &Arena, p: NonNull<u8>, layout: Layout) {
    // SAFETY: forwarded caller contract.
    let done = guarded(|| unsafe { arena.deallocate_ptr(p, layout) });
    if done.is_none() {
        // SAFETY: as above.
        unsafe { arena.deallocate_ptr(p, layout) };
    }
}
