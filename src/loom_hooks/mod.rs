//! Crate-internal entry points for the loom models in `tests/loom.rs`.
//!
//! Built only with `--cfg parena_loom`; not part of the public API: free lists over a small heap
//! (`lists.rs`), `GlobalArena`'s stash alone, and the allocator-interface calls a model makes on a
//! whole arena (below).

mod lists;

pub use lists::{Lists, SEGMENT};

/// `GlobalArena`'s stash alone (`src/global/stash.rs`).
pub use crate::global::stash::StashModel;

use crate::sync::Ordering;

/// An allocator-interface block of `len` bytes, as `Allocator::allocate` hands it out (FOREIGN,
/// zeroed): its data offset.
///
/// # Panics
/// When the arena cannot serve it.
pub fn allocate(arena: &crate::Arena, len: usize) -> u64 {
    let layout = std::alloc::Layout::from_size_align(len, 8).expect("a valid layout");
    let p = arena.allocate_ptr(layout).expect("room for the block");
    arena.offset_of_ptr(p.cast())
}

/// `Allocator::grow` or `shrink` in place: the allocator block at data offset `off` resized from
/// `old` to `new` bytes if it can be done without moving it. Returns whether it was.
///
/// # Panics
/// When `off` is not inside the arena.
pub fn resize_in_place(arena: &crate::Arena, off: u64, old: usize, new: usize) -> bool {
    let p = std::ptr::NonNull::new(arena.data_ptr(off)).expect("an offset inside the arena");
    // SAFETY: the models call this only on a block `allocate` gave them, with its current length,
    // and use no other reference to it meanwhile.
    unsafe { arena.resize_in_place(p, old, new) }
}

/// `Allocator::deallocate` of the allocator block of `len` bytes at data offset `off`.
///
/// # Panics
/// When `off` is not inside the arena or `len` is no layout.
pub fn deallocate(arena: &crate::Arena, off: u64, len: usize) {
    let p = std::ptr::NonNull::new(arena.data_ptr(off)).expect("an offset inside the arena");
    let layout = std::alloc::Layout::from_size_align(len, 8).expect("a valid layout");
    // SAFETY: as for `resize_in_place`: a block `allocate` gave the model, not used after.
    unsafe { arena.deallocate_ptr(p, layout) };
}

/// The owner of an allocator block writing the 8 bytes at arena offset `off` (8-aligned, inside
/// its block) as `word`: through the word view, which is what a handle check's atomic access
/// to that place reads under loom (the plain bytes are outside loom's view).
pub fn write_user_word(arena: &crate::Arena, off: u64, word: u64) {
    arena.word_at(off).store(word, Ordering::Relaxed);
}
