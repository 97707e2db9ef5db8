//! A freed handle never reaches the bytes of an allocator block laid over its block's header
//! position (issue 23, item 3).
//!
//! The sequence: an allocator block `v` of the calling thread's chunk, and right after it a block
//! `b` allocated through a handle. A second thread's `read_with(b)` holds its read slot and tests
//! `b`'s start, and is held there, before it loads `b`'s header. `b` is freed (had the free
//! released it, the chunk's cursor would move back over it). Then `v` grows (or shrinks, and a
//! new allocator block is bumped after it), and the user writes, at the place of `b`'s old
//! header, a word that reads as `b`'s header. The held reader goes on: it must refuse `b`
//! (`Stale`), never take those user bytes for `b`'s header and read the allocator block's memory.
//!
//! The reader is held at the one point of every read between its start-map test and its header
//! load (`testkit::on_read_held`) until the block's memory could have been reused, so the
//! interleaving is the same on every run. (Seen failing with the free's look at the read slots
//! removed: the free released `b`, `v` grew over its header, and the reader read `v`'s bytes.)

use parena::testkit::{live_word, offset_of_ptr, on_read_held};
use parena::{Arena, Error, Freelist, GlobalArena, Handle};
use std::alloc::{GlobalAlloc, Layout};
use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex};

/// Bytes of `b`, the block whose handle the waiting reader holds.
const B: [u8; 8] = [0xBB; 8];
/// Bytes the allocator blocks' owner writes past the forged header word.
const USER: u8 = 0xCC;

/// Where the waiting reader is held: it arrives, and goes on when released.
#[derive(Default)]
struct Hold {
    /// (arrived, released)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Hold {
    fn arrive_and_wait(&self) {
        let mut s = self.state.lock().unwrap();
        s.0 = true;
        self.changed.notify_all();
        while !s.1 {
            s = self.changed.wait(s).unwrap();
        }
    }

    fn wait_arrived(&self) {
        let mut s = self.state.lock().unwrap();
        while !s.0 {
            s = self.changed.wait(s).unwrap();
        }
    }

    fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

std::thread_local! {
    /// Set on the one thread a test holds; taken at its first read.
    static HELD: RefCell<Option<Arc<Hold>>> = const { RefCell::new(None) };
}

/// The process-wide hold point: holds only a thread a test marked, once.
fn hold_point(_offset: u64) {
    if let Some(h) = HELD.with(|c| c.borrow_mut().take()) {
        h.arrive_and_wait();
    }
}

/// Runs the race on `b` and returns what the held reader got, and what `reuse` returned.
/// `reuse` runs after `b` was freed: it resizes or allocates, and writes.
fn race<T>(arena: &Arena, b: Handle, reuse: impl FnOnce() -> T) -> (Result<Vec<u8>, Error>, T) {
    on_read_held(hold_point);
    let hold = Arc::new(Hold::default());
    std::thread::scope(|s| {
        let held = Arc::clone(&hold);
        let reader = s.spawn(move || {
            HELD.with(|c| *c.borrow_mut() = Some(held));
            arena.read_with(b, <[u8]>::to_vec)
        });
        // The reader holds its slot and found `b`'s start; it has not loaded the header.
        hold.wait_arrived();
        arena.free(b).unwrap();
        assert!(!arena.contains(b), "a freed handle is refused at once");
        let t = reuse();
        hold.release();
        (reader.join().unwrap(), t)
    })
}

/// The header word `b` had (LIVE, published), as the user writes it.
fn forged(b: Handle) -> [u8; 8] {
    live_word(B.len() as u64, b.generation(), 0).to_le_bytes()
}

/// The owner's writes to the block that covers `b`'s old header at its bytes `8..16` (where the
/// old code put it): `b`'s header word there, its own bytes after.
fn write_over(v: &mut [u8], b: Handle) {
    v[16..].fill(USER);
    v[8..16].copy_from_slice(&forged(b));
}

/// The owner's block still holds what [`write_over`] wrote (no reader changed it).
fn assert_written(v: &[u8], b: Handle) {
    assert_eq!(v[8..16], forged(b));
    assert!(v[16..].iter().all(|&x| x == USER), "{v:x?}");
}

fn assert_refused(got: Result<Vec<u8>, Error>) {
    match got {
        Err(Error::Stale { .. }) => {}
        Ok(bytes) => panic!(
            "the freed handle read bytes that are not its block's: {bytes:x?} \
             (it loads the header after the free, so it must be refused)"
        ),
        Err(e) => panic!("the freed handle got {e:?}, not Stale"),
    }
}

/// `p..p + len` as a slice.
///
/// # Safety
/// `p` is valid for `len` bytes, and nothing else uses them while the slice lives.
unsafe fn bytes<'a>(p: *mut u8, len: usize) -> &'a mut [u8] {
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(p, len) }
}

/// A `GlobalArena` block of `len` bytes (8-aligned) filled with `0xAA`, and `b` right after it:
/// the block, `b`, and the arena.
fn global_block_then_b(g: &GlobalArena, len: usize) -> (*mut u8, Handle, &Arena) {
    // SAFETY: a non-zero size.
    let p = unsafe { g.alloc(Layout::from_size_align(len, 8).unwrap()) };
    assert!(!p.is_null());
    // SAFETY: `p` holds `len` bytes, ours.
    unsafe { bytes(p, len) }.fill(0xAA);
    let arena = g.arena().expect("the arena served the allocation");
    let b = arena.alloc_copy(&B).unwrap();
    let span = (len as u64 + 8).next_multiple_of(8);
    assert_eq!(
        b.offset(),
        offset_of_ptr(arena, p) + span,
        "b follows the block"
    );
    (p, b, arena)
}

/// `GlobalArena::realloc` grows the block before `b` (in place when it may) over `b`'s header.
#[test]
fn global_realloc_grow_keeps_a_freed_handle_out() {
    let g = GlobalArena::new(1 << 20, Freelist::Optimistic);
    let (p, b, arena) = global_block_then_b(&g, 8);
    let (got, q) = race(arena, b, || {
        // SAFETY: `p` came from `g.alloc` with 8 bytes, alignment 8, and is not used after this.
        let q = unsafe { g.realloc(p, Layout::from_size_align(8, 8).unwrap(), 72) };
        assert!(!q.is_null());
        // SAFETY: `q` holds 72 bytes, ours.
        write_over(unsafe { bytes(q, 72) }, b);
        q
    });
    assert_refused(got);
    // SAFETY: `q` holds 72 bytes, ours; no other thread runs.
    let v = unsafe { bytes(q, 72) };
    assert_eq!(v[..8], [0xAA; 8]);
    assert_written(v, b);
    // SAFETY: `q` came from `realloc` with 72 bytes, alignment 8.
    unsafe { g.dealloc(q, Layout::from_size_align(72, 8).unwrap()) };
}

/// `GlobalArena::realloc` shrinks the block before `b`, and a new block is bumped after it, over
/// `b`'s header.
#[test]
fn global_realloc_shrink_then_alloc_keeps_a_freed_handle_out() {
    let g = GlobalArena::new(1 << 20, Freelist::Optimistic);
    let l24 = Layout::from_size_align(24, 8).unwrap();
    let (p, b, arena) = global_block_then_b(&g, 24);
    let (got, (q, w)) = race(arena, b, || {
        // SAFETY: `p` came from `g.alloc(l24)` and is not used after this.
        let q = unsafe { g.realloc(p, l24, 8) };
        assert!(!q.is_null());
        // SAFETY: a non-zero size.
        let w = unsafe { g.alloc(l24) };
        assert!(!w.is_null());
        // SAFETY: `w` holds 24 bytes, ours.
        write_over(unsafe { bytes(w, 24) }, b);
        (q, w)
    });
    assert_refused(got);
    // SAFETY: `q` holds 8 bytes, ours; no other thread runs.
    let vq = unsafe { bytes(q, 8) };
    // SAFETY: `w` holds 24 bytes, ours, apart from `q`'s.
    let vw = unsafe { bytes(w, 24) };
    assert_eq!(vq, [0xAA; 8]);
    assert_written(vw, b);
    // SAFETY: each came from `g` with that layout, and is not used after.
    unsafe { g.dealloc(q, Layout::from_size_align(8, 8).unwrap()) };
    // SAFETY: as above.
    unsafe { g.dealloc(w, l24) };
}

#[cfg(feature = "allocator-api2")]
mod api2 {
    use super::*;
    use allocator_api2::vec::Vec as AVec;
    use parena::Options;

    fn heap_arena() -> Arena {
        Options::new()
            .capacity(1 << 20)
            .freelist(Freelist::Optimistic)
            .heap()
            .unwrap()
    }

    /// A `Vec` of capacity `cap` holding `0xAA`s, and `b` right after its block.
    fn vec_then_b(arena: &Arena, cap: usize) -> (AVec<u8, &Arena>, Handle) {
        let mut v: AVec<u8, &Arena> = AVec::with_capacity_in(cap, arena);
        v.resize(cap, 0xAA);
        let b = arena.alloc_copy(&B).unwrap();
        let span = (cap as u64 + 8).next_multiple_of(8);
        assert_eq!(b.offset(), offset_of_ptr(arena, v.as_ptr()) + span);
        (v, b)
    }

    /// Once every block is gone, the arena verifies clean and empty.
    fn assert_empty(mut arena: Arena) {
        let r = arena.verify().unwrap();
        assert!(r.is_clean(), "{r:?}");
        assert_eq!(r.live_blocks, 0);
    }

    /// allocator-api2's `Vec::reserve_exact` grows the block before `b` (in place when it may)
    /// over `b`'s header.
    #[test]
    fn vec_grow_keeps_a_freed_handle_out() {
        let arena = heap_arena();
        let (mut v, b) = vec_then_b(&arena, 8);
        let (got, ()) = race(&arena, b, || {
            v.reserve_exact(64);
            v.resize(72, 0);
            write_over(&mut v, b);
        });
        assert_refused(got);
        assert_eq!(v[..8], [0xAA; 8]);
        assert_written(&v, b);
        drop(v);
        assert_empty(arena);
    }

    /// allocator-api2's `Vec::shrink_to_fit` shrinks the block before `b`, then a new `Vec` is
    /// bumped after it, over `b`'s header.
    #[test]
    fn vec_shrink_then_alloc_keeps_a_freed_handle_out() {
        let arena = heap_arena();
        let (mut v, b) = vec_then_b(&arena, 24);
        let (got, w) = race(&arena, b, || {
            v.truncate(8);
            v.shrink_to_fit();
            let mut w: AVec<u8, &Arena> = AVec::with_capacity_in(24, &arena);
            w.resize(24, 0);
            write_over(&mut w, b);
            w
        });
        assert_refused(got);
        assert_eq!(v[..], [0xAA; 8]);
        assert_written(&w, b);
        drop((v, w));
        assert_empty(arena);
    }
}
