//! Sorting the coalescing pass's chain of detached nodes by address, in place and allocating
//! nothing (invariant A, `reentry.rs`): the pass then finds physically adjacent segments next to
//! each other in the chain.

use super::merge::{next_of, set_next};
use crate::backing::Backing;

/// Merges two chains sorted by offset into one.
fn merge_chains(b: &Backing, mut x: u64, mut y: u64) -> u64 {
    let mut head = 0u64;
    let mut tail: Option<(u64, u32)> = None;
    while x != 0 || y != 0 {
        let take_x = y == 0 || (x != 0 && x < y);
        let off = if take_x { x } else { y };
        let (gen, next) = next_of(b, off);
        if take_x {
            x = next;
        } else {
            y = next;
        }
        match tail {
            Some((t, tg)) => set_next(b, t, tg, off),
            None => head = off,
        }
        tail = Some((off, gen));
    }
    if let Some((t, tg)) = tail {
        set_next(b, t, tg, 0);
    }
    head
}

/// How many address ranges `sort_chain` deals a chain into (4 KiB of stack).
const BUCKETS: usize = 512;

/// The most nodes of one range `sort_chain` sorts in an array (4 KiB of stack); a longer range
/// is merge-sorted in its chain.
const RANGE_MAX: usize = 256;

/// Sorts a chain of detached nodes by offset in place, allocating nothing: one walk deals the
/// nodes into [`BUCKETS`] equal ranges of `0..limit` (each a chain, in a fixed array), and each
/// range, from the highest down, is sorted and linked in front of the ranges above it. A range of
/// at most [`RANGE_MAX`] nodes is read once into an array (offset and generation), sorted there
/// and relinked by address; a longer one is merge-sorted in its chain (`merge_sort`). The chain
/// comes in list order, scattered over the heap, so each walk of it waits on a miss a node; this
/// walks it twice (the deal, then the ranges' reads), where a merge sort of the whole chain walks
/// it about `log2 n` times.
pub(super) fn sort_chain(b: &Backing, chain: u64, limit: u64) -> u64 {
    // `off / width <= limit / width < BUCKETS` for every node below `limit`; a node at or past
    // it (not reached: `take_all` checked every node against it) goes to the last range.
    let width = limit / BUCKETS as u64 + 1;
    let mut heads = [0u64; BUCKETS];
    let mut off = chain;
    while off != 0 {
        let (gen, next) = next_of(b, off);
        let k = ((off / width) as usize).min(BUCKETS - 1);
        set_next(b, off, gen, heads[k]);
        heads[k] = off;
        off = next;
    }
    let mut sorted = 0u64;
    let mut range = [(0u64, 0u32); RANGE_MAX];
    for &head in heads.iter().rev().filter(|&&h| h != 0) {
        let mut n = 0;
        let mut off = head;
        while off != 0 && n < RANGE_MAX {
            let (gen, next) = next_of(b, off);
            range[n] = (off, gen);
            n += 1;
            off = next;
        }
        if off != 0 {
            // A long range: merge-sorted in its chain, then its last node found.
            let first = merge_sort(b, head);
            let mut last = first;
            loop {
                let (gen, next) = next_of(b, last);
                if next == 0 {
                    set_next(b, last, gen, sorted);
                    break;
                }
                last = next;
            }
            sorted = first;
            continue;
        }
        let nodes = &mut range[..n];
        nodes.sort_unstable_by_key(|&(o, _)| o);
        for (i, &(o, gen)) in nodes.iter().enumerate() {
            let next = nodes.get(i + 1).map_or(sorted, |&(m, _)| m);
            set_next(b, o, gen, next);
        }
        sorted = nodes[0].0;
    }
    sorted
}

/// Sorts a chain of detached nodes by offset in place: a bottom-up merge sort whose pending runs
/// (of 2^i nodes in slot i) live in a fixed array, so it allocates nothing.
fn merge_sort(b: &Backing, mut chain: u64) -> u64 {
    let mut runs = [0u64; 64];
    while chain != 0 {
        let (gen, next) = next_of(b, chain);
        set_next(b, chain, gen, 0);
        let mut carry = chain;
        chain = next;
        for slot in runs.iter_mut() {
            if *slot == 0 {
                *slot = carry;
                carry = 0;
                break;
            }
            carry = merge_chains(b, *slot, carry);
            *slot = 0;
        }
        if carry != 0 {
            // More than 2^64 nodes: impossible; keep them rather than lose them.
            runs[63] = merge_chains(b, runs[63], carry);
        }
    }
    runs.iter().fold(0, |acc, &r| merge_chains(b, r, acc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::Entries;

    /// `n` FREE nodes 32 bytes apart from `first`, chained in a scrambled order (generation `i +
    /// 1` for the `i`-th by address); returns the chain's head.
    fn scrambled_chain(b: &Backing, first: u64, n: u64) -> u64 {
        let mut order: Vec<u64> = (0..n).collect();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut head = 0;
        for &i in &order {
            let off = first + 32 * i;
            Entries::new(b, None).relink(off, i as u32 + 1, head);
            head = off;
        }
        head
    }

    /// The chain comes back in address order, every node once, each with its generation: with
    /// ranges short enough for the array (a limit spreading the nodes over many ranges) and with
    /// every node in one range longer than [`RANGE_MAX`] (the merge sort in the chain).
    #[test]
    fn sort_chain_orders_every_node_by_address() {
        let b = Backing::heap(1 << 20).unwrap();
        let (first, n) = (4096u64, 1000u64);
        for limit in [1 << 20, 1 << 40] {
            let head = scrambled_chain(&b, first, n);
            let mut off = sort_chain(&b, head, limit);
            let mut seen = 0;
            while off != 0 {
                assert_eq!(off, first + 32 * seen, "limit {limit}: node {seen}");
                let (gen, next) = next_of(&b, off);
                assert_eq!(u64::from(gen), seen + 1, "limit {limit}: generation kept");
                seen += 1;
                off = next;
            }
            assert_eq!(seen, n, "limit {limit}: every node once");
        }
        assert_eq!(sort_chain(&b, 0, 1 << 20), 0);
    }
}
