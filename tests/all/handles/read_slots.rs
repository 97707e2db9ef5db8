//! Reads hold read slots (docs/metadata.md, 4.1): a block freed while a read is in it keeps its
//! bytes until the read is over, reads nest four deep, a free that would have to keep too many
//! blocks for readers is `Busy` with nothing changed, and nothing freed under a read is stranded
//! (a thread that exits, an exclusive pass, a child of `fork`).

use parena::{Arena, Error, Handle, Options};
use std::sync::{Arc, Barrier};

fn arena() -> Arena {
    Options::new().capacity(1 << 20).heap().unwrap()
}

/// Blocks until `go` is set; tells `ready` first.
fn signal_and_wait(ready: &Barrier, go: &Barrier) {
    ready.wait();
    go.wait();
}

/// A read on another thread is inside `b`'s bytes when `b` is freed, and the freeing thread at
/// once allocates blocks of `b`'s size and fills them. The read must still see `b`'s bytes: the
/// free leaves them alone until the read is over. (Seen failing with the free's look at the read
/// slots removed: the next allocation took `b`'s place and the read saw `[204, ...]` or zeros.)
#[test]
fn a_block_freed_during_a_read_keeps_its_bytes_until_the_read_ends() {
    let a = arena();
    let b = a.alloc_copy(&[0xBB; 40]).unwrap();
    let (ready, go) = (Barrier::new(2), Barrier::new(2));
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            a.read_with(b, |bytes| {
                signal_and_wait(&ready, &go);
                bytes.to_vec()
            })
        });
        ready.wait();
        // Checked after the reader is let go, so that a failure fails the test instead of
        // leaving the reader waiting.
        let freed = a.free(b);
        let refused = !a.contains(b);
        let mut others = Vec::new();
        for _ in 0..8 {
            let mut m = a.alloc(40).unwrap();
            m.fill(0xCC);
            others.push(m.handle());
        }
        go.wait();
        freed.unwrap();
        assert!(refused, "a freed handle is refused at once");
        for h in &others {
            assert_ne!(h.offset(), b.offset(), "b's place reused while it is read");
        }
        let got = reader.join().unwrap().unwrap();
        assert_eq!(got, [0xBB; 40], "the read saw another block's bytes");
        for h in others {
            a.free(h).unwrap();
        }
    });
    // The next free of this thread (or an exclusive pass) gives `b`'s place back.
    let mut a = a;
    let r = a.verify().unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.live_blocks, 0, "{r:?}");
}

/// Reads nest four deep on one thread; a fifth is `Busy`, and the slots are free again after.
#[test]
fn reads_nest_four_deep_and_a_fifth_is_busy() {
    let a = arena();
    let h: Vec<Handle> = (0..5u8).map(|i| a.alloc_copy(&[i; 16]).unwrap()).collect();
    let fifth = a
        .read_with(h[0], |_| {
            a.read_with(h[1], |_| {
                a.read_with(h[2], |_| {
                    a.read_with(h[3], |_| a.read_with(h[4], <[u8]>::to_vec))
                })
            })
        })
        .unwrap()
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(fifth, Err(Error::Busy { .. })), "{fifth:?}");
    // A lane of its own is a cell of its own, with its own slots.
    let other_lane = a.with_lane(1);
    let deep = a.read_with(h[0], |_| {
        a.read_with(h[1], |_| {
            a.read_with(h[2], |_| {
                a.read_with(h[3], |_| other_lane.read_with(h[4], <[u8]>::to_vec))
            })
        })
    });
    assert_eq!(deep.unwrap().unwrap().unwrap().unwrap().unwrap(), [4; 16]);
    for (i, &x) in h.iter().enumerate() {
        assert_eq!(a.read_with(x, <[u8]>::to_vec).unwrap(), [i as u8; 16]);
    }
}

/// A free inside a read of the same block succeeds; the bytes stay until the read returns, and
/// the block is given back afterwards.
#[test]
fn a_free_inside_a_read_of_the_same_block_keeps_its_bytes() {
    let a = arena();
    let h = a.alloc_copy(&[7; 24]).unwrap();
    a.read_with(h, |bytes| {
        a.free(h).unwrap();
        assert!(matches!(a.free(h), Err(Error::DoubleFree { .. })));
        let n = a.alloc_copy(&[9; 24]).unwrap();
        assert_ne!(n.offset(), h.offset());
        assert_eq!(bytes, [7; 24]);
        a.free(n).unwrap();
    })
    .unwrap();
    let mut a = a;
    let r = a.verify().unwrap();
    assert!(r.is_clean() && r.live_blocks == 0, "{r:?}");
}

/// With 36 blocks held by reads on nine threads, one thread frees them: the first 32 frees keep
/// their block for its reader, the 33rd is `Busy` and changes nothing (the block is still live
/// and readable). Once the reads end, the same free succeeds and gives every block back.
#[test]
fn a_full_deferred_list_is_busy_and_changes_nothing() {
    const READERS: usize = 9;
    let a = arena();
    let blocks: Vec<Handle> = (0..READERS * 4)
        .map(|i| a.alloc_copy(&[i as u8; 32]).unwrap())
        .collect();
    let (ready, go) = (Barrier::new(READERS + 1), Barrier::new(READERS + 1));
    std::thread::scope(|s| {
        for t in 0..READERS {
            let (a, blocks, ready, go) = (&a, &blocks, &ready, &go);
            s.spawn(move || {
                let mine = &blocks[t * 4..t * 4 + 4];
                let r = a.read_with(mine[0], |_| {
                    a.read_with(mine[1], |_| {
                        a.read_with(mine[2], |_| {
                            a.read_with(mine[3], |last| {
                                signal_and_wait(ready, go);
                                last.to_vec()
                            })
                        })
                    })
                });
                assert_eq!(
                    r.unwrap().unwrap().unwrap().unwrap(),
                    [(t * 4 + 3) as u8; 32]
                );
            });
        }
        ready.wait();
        // Checked after the readers are let go (a failure must fail the test, not hang it).
        let first: Vec<_> = blocks[..32].iter().map(|&h| a.free(h)).collect();
        let held = blocks[32];
        let refused = a.free(held);
        let still = a.contains(held);
        go.wait();
        assert!(first.iter().all(Result::is_ok), "{first:?}");
        match refused {
            Err(Error::Busy { offset }) => assert_eq!(offset, held.offset()),
            r => panic!("a 33rd free under reads answered {r:?}, not Busy"),
        }
        assert!(still, "the refused free changed the block");
    });
    for &h in &blocks[32..] {
        assert_eq!(
            a.read_with(h, <[u8]>::to_vec).unwrap(),
            [blocks.iter().position(|&x| x == h).unwrap() as u8; 32]
        );
        a.free(h).unwrap();
    }
    let mut a = a;
    let r = a.verify().unwrap();
    assert!(r.is_clean() && r.live_blocks == 0, "{r:?}");
}

/// A thread frees a block another thread is reading, and exits before the read ends. Nothing is
/// stranded: the block goes back at the next exclusive pass (a stranded one would stay a live,
/// DYING block).
#[test]
fn a_thread_that_exits_with_deferred_blocks_strands_nothing() {
    let a = arena();
    let h = a.alloc_copy(&[3; 64]).unwrap();
    let (ready, go) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let reader = {
        let (a, ready, go) = (a.clone(), ready.clone(), go.clone());
        std::thread::spawn(move || a.read_with(h, |b| (signal_and_wait(&ready, &go), b.to_vec()).1))
    };
    ready.wait();
    {
        let a = a.clone();
        std::thread::spawn(move || a.free(h).unwrap())
            .join()
            .unwrap();
    }
    go.wait();
    assert_eq!(reader.join().unwrap().unwrap(), [3; 64]);
    let mut a = a;
    let before = a.verify().unwrap();
    assert_eq!(before.live_blocks, 0, "{before:?}");
    assert!(before.is_clean(), "{before:?}");
    // Free space again (in the freeing thread's cell's cache, which the next thread to need a
    // cell adopts, or on the lists).
    assert!(
        before.free_bytes >= 72,
        "h's span is free space again: {before:?}"
    );
}

/// Readers of hot blocks on two threads against a thread that frees and reallocates them: every
/// read either is refused or sees exactly the bytes of the block its handle named.
#[test]
fn hot_readers_against_frees_and_reallocations() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const SLOTS: usize = 8;
    let rounds = if cfg!(miri) { 200 } else { 40_000 };
    let a = arena();
    let fill = |h: Handle| (h.offset() as u8) ^ (h.generation() as u8) ^ 0x5A;
    let put = |len: usize| {
        let mut m = a.alloc(len).unwrap();
        let h = m.handle();
        m.fill(fill(h));
        h
    };
    let table: Vec<AtomicU64> = (0..SLOTS)
        .map(|i| AtomicU64::new(put(16 + 8 * i).to_u64()))
        .collect();
    let stop = AtomicBool::new(false);
    // Each reader counts itself in as it starts reading, and the frees start only then: without
    // it a loaded machine can run every round before a reader is scheduled, and nothing races.
    let ready = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (a, table, stop, ready) = (&a, &table, &stop, &ready);
            s.spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t;
                ready.fetch_add(1, Ordering::Release);
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let h = Handle::from_u64(table[(x as usize) % SLOTS].load(Ordering::Acquire));
                    match a.read_with(h, |b| b.iter().all(|&v| v == fill(h))) {
                        Ok(true) => {}
                        Ok(false) => panic!("a read of {h:?} saw another block's bytes"),
                        Err(Error::Stale { .. } | Error::Busy { .. }) => {}
                        Err(e) => panic!("{e:?}"),
                    }
                }
            });
        }
        while ready.load(Ordering::Acquire) < 2 {
            std::thread::yield_now();
        }
        let mut x = 7u64;
        for _ in 0..rounds {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let i = (x >> 33) as usize % SLOTS;
            let new = put(16 + 8 * ((x >> 40) as usize % SLOTS));
            let old = Handle::from_u64(table[i].swap(new.to_u64(), Ordering::AcqRel));
            loop {
                match a.free(old) {
                    Ok(()) => break,
                    // Too many freed blocks still being read: let the readers move on.
                    Err(Error::Busy { .. }) => std::thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    for t in &table {
        a.free(Handle::from_u64(t.load(Ordering::Relaxed))).unwrap();
    }
    let mut a = a;
    let r = a.verify().unwrap();
    assert!(r.is_clean() && r.live_blocks == 0, "{r:?}");
}

/// `fork` in the middle of reads. A parent's other thread is reading `p`, and the forking thread
/// itself is reading `q` when it forks. In the child, a free of `p` gives it back at once (the
/// parent's reader does not exist there), while a free of `q` keeps its bytes until the child's
/// own read of it ends.
#[cfg(all(target_os = "linux", not(miri)))]
#[test]
fn a_forked_child_frees_what_only_its_parent_was_reading() {
    extern "C" {
        fn fork() -> i32;
        fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
        fn _exit(code: i32) -> !;
    }
    let a = arena();
    let p = a.alloc_copy(&[0x11; 48]).unwrap();
    let q = a.alloc_copy(&[0x22; 48]).unwrap();
    let (ready, go) = (Barrier::new(2), Barrier::new(2));
    std::thread::scope(|s| {
        s.spawn(|| a.read_with(p, |_| signal_and_wait(&ready, &go)).unwrap());
        ready.wait();
        let status = a
            .read_with(q, |q_bytes| {
                // SAFETY: `fork` has no preconditions; the child runs only the code below and
                // leaves with `_exit`.
                let pid = unsafe { fork() };
                assert!(pid >= 0, "fork failed");
                if pid == 0 {
                    let code = child(&a, p, q, q_bytes);
                    // SAFETY: ends the child without running the parent's destructors.
                    unsafe { _exit(code) };
                }
                let mut status = 0;
                // SAFETY: `pid` is our child; `status` is a valid out pointer.
                let r = unsafe { waitpid(pid, &mut status, 0) };
                assert_eq!(r, pid);
                status
            })
            .unwrap();
        go.wait();
        assert_eq!(
            status,
            0,
            "the child failed check {} (status {status:#x})",
            status >> 8
        );
    });

    /// The child's checks: 0 when all hold, else which one failed.
    fn child(a: &Arena, p: Handle, q: Handle, q_bytes: &[u8]) -> i32 {
        if a.free(p).is_err() {
            return 1;
        }
        // `p` went back at once: the next block of its size takes its place (its chunk's cursor
        // moves back over it, or the thread's cache hands it out).
        match a.alloc_copy(&[0x33; 48]) {
            Ok(n) if n.offset() == p.offset() => {}
            _ => return 2,
        }
        if a.free(q).is_err() {
            return 3;
        }
        match a.alloc_copy(&[0x44; 48]) {
            Ok(n) if n.offset() != q.offset() => {}
            _ => return 4,
        }
        if q_bytes != [0x22; 48] {
            return 5;
        }
        0
    }
}
