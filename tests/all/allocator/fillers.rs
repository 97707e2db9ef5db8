//! The small remainder a carve leaves stays with its block as a filler, and the block's free
//! takes it back (docs/metadata.md, section 13.1): a freed block is whole again at once, and the
//! churn at 80 % full does not grind the free space into pieces.

use crate::util::{check, fill, Rng};
use parena::{Error, Freelist, Options};

/// A 1016-byte block (a 1 KiB span) freed in a full arena serves a 900-byte request; the carve's
/// 112-byte remainder is left behind the block, and the block's free takes it back, so the whole
/// 1 KiB segment serves the next 1016-byte request with no coalescing pass.
#[test]
fn a_free_takes_back_the_remainder_its_carve_left() {
    for kind in [Freelist::Optimistic, Freelist::Pessimistic] {
        // Under Miri a smaller heap (and chunk): the same fill and reuse in an eighth of the steps.
        let mut arena = Options::new()
            .capacity(if cfg!(miri) { 128 << 10 } else { 1 << 20 })
            .chunk_size(if cfg!(miri) { 16 << 10 } else { 64 << 10 })
            .freelist(kind)
            .heap()
            .unwrap();
        let mut live = Vec::new();
        loop {
            match arena.alloc(1016) {
                Ok(mut b) => {
                    b.fill(7);
                    live.push(b.into_handle());
                }
                Err(Error::Full { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let x = live.swap_remove(live.len() / 2);
        arena.free(x).unwrap();
        let before = arena.stats();
        let small = fill(&arena, 900, 9);
        assert_eq!(
            small.offset(),
            x.offset(),
            "{kind:?}: the freed block's segment"
        );
        arena.free(small).unwrap();
        let big = fill(&arena, 1016, 3);
        let after = arena.stats();
        assert_eq!(
            big.offset(),
            x.offset(),
            "{kind:?}: the segment is whole again"
        );
        assert_eq!(
            after.coalesced, before.coalesced,
            "{kind:?}: no pass was needed to join it"
        );
        assert_eq!(
            after.discarded, before.discarded,
            "{kind:?}: nothing left out"
        );
        check(&arena, big, 1016, 3);
        for h in live {
            check(&arena, h, 1016, 7);
        }
        arena.verify().unwrap();
    }
}

/// The churn at 80 % full (docs/performance.md): random 16-1024-byte blocks, each step frees a
/// random live block and allocates a new one of random length; under 1 % of the allocations are
/// refused, with either policy, and every live block keeps its bytes.
#[test]
#[cfg_attr(miri, ignore = "200,000 steps")]
fn the_churn_at_80_percent_full_refuses_under_one_percent() {
    for kind in [Freelist::Optimistic, Freelist::Pessimistic] {
        let mut arena = Options::new()
            .capacity(4 << 20)
            .freelist(kind)
            .heap()
            .unwrap();
        let mut rng = Rng(0x5eed_0000 + kind as u64);
        let len = |rng: &mut Rng| 16 + rng.below(1009) as usize;
        // About 80 % of the heap live: 6,300 blocks of 528 bytes on average (header included).
        let mut live: Vec<Option<(parena::Handle, usize, u8)>> = Vec::new();
        for i in 0..6_300usize {
            let n = len(&mut rng);
            live.push(Some((fill(&arena, n, i as u8), n, i as u8)));
        }
        let (steps, mut refused) = (200_000u64, 0u64);
        for step in 0..steps {
            let i = rng.below(live.len() as u64) as usize;
            if let Some((h, _, _)) = live[i].take() {
                arena.free(h).unwrap();
            }
            let n = len(&mut rng);
            match arena.alloc(n) {
                Ok(mut b) => {
                    b.fill(step as u8);
                    live[i] = Some((b.into_handle(), n, step as u8));
                }
                Err(Error::Full { .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            refused * 100 < steps,
            "{kind:?}: {refused} of {steps} allocations refused"
        );
        for (h, n, b) in live.into_iter().flatten() {
            check(&arena, h, n, b);
        }
        arena.verify().unwrap();
    }
}

/// An allocator block shrunk in place, with a block behind it, leaves its cut-off tail as a
/// filler (16 bytes: too short to list); the block's free takes the tail back with it, and the
/// whole span serves the next allocation of the old size.
#[cfg(feature = "allocator-api2")]
#[test]
fn a_free_takes_back_the_tail_its_shrink_left() {
    use allocator_api2::alloc::Allocator;
    use std::alloc::Layout;
    let mut arena = Options::new()
        .capacity(1 << 20)
        .freelist(Freelist::Pessimistic)
        .heap()
        .unwrap();
    let (long, short) = (
        Layout::from_size_align(200, 8).unwrap(),
        Layout::from_size_align(184, 8).unwrap(),
    );
    let p = arena.allocate(long).unwrap().cast::<u8>();
    // A block behind `p`, so `p` is not the last block of its chunk (whose shrink would move the
    // chunk's cursor back instead).
    let _behind = arena.allocate(long).unwrap();
    let before = arena.stats().discarded;
    // SAFETY: `p` came from `allocate` with `long`, and `short` is no larger.
    let q = unsafe { arena.shrink(p, long, short) }.unwrap();
    assert_eq!(q.cast::<u8>(), p, "shrunk in place");
    assert_eq!(arena.stats().discarded, before + 16, "the tail is a filler");
    // SAFETY: `p` is live with layout `short`.
    unsafe { arena.deallocate(p, short) };
    assert_eq!(
        arena.stats().discarded,
        before,
        "the free took the tail back"
    );
    let again = arena.allocate(long).unwrap().cast::<u8>();
    assert_eq!(again, p, "the whole span serves the old size");
    arena.verify().unwrap();
}
