//! A concurrent, lock-free skiplist memtable whose nodes, keys and values live in a parena arena.
//!
//! Shared by `examples/memtable.rs`, the `engine` tests and `benches/engine.rs` (each includes
//! this file with `#[path]`), so the structure they run is the one a user copies.
//!
//! ## Layout
//!
//! Nodes are arena blocks and link to each other by arena offset, so the list means the same
//! thing after a reopen, at whatever address the file is mapped. The head node's [`Handle`] is kept
//! in a root slot: reopening the file gives a usable memtable at once, with no rebuild.
//!
//! ```text
//! +0        meta   u64   height (bits 0..8) | key length (bits 32..64)     immutable
//! +8        value  u64   handle of the value block (0 = empty value)       atomic
//!                        (head node: the list's height, a search hint)
//! +16       key bytes, padded to 8                                           immutable
//! +16+k     next[0..height]  u64 link words                                  atomic
//! ```
//!
//! A link word (0 = none) holds the successor's offset divided by `NODE_ALIGN` in its low 32 bits
//! and the first four bytes of the successor's key in its high 32 bits. A search compares those
//! bytes before it touches the successor: when they already order the keys, a step that would stop
//! at the successor (its key is greater) costs no cache miss at all. That is about a third of the
//! nodes a search would otherwise load. 32 bits of offset in units of 64 bytes reach 256 GiB, the
//! largest arena a memtable accepts.
//!
//! Nodes are allocated on a 64-byte boundary (`NODE_ALIGN`), so the words a search step reads
//! share one cache line, and in their own allocation lane ([`Arena::with_lane`]), values in
//! another: each thread's nodes sit next to each other, not spread out by the values allocated
//! between them, so a search touches fewer cache lines and pages.
//!
//! Values are separate blocks, so replacing a value is one atomic swap of the `value` word; the
//! old value block is freed at once. Readers copy values out with [`Arena::read_with`], which pins
//! the block and checks its generation: a reader that loaded a value handle just before it was
//! replaced and freed gets [`Error::Stale`] and reloads the word, never the bytes of whatever reused
//! the space.
//!
//! ## Algorithm
//!
//! The insert-only lock-free skiplist (Pugh's skiplist made concurrent as in Fraser, "Practical
//! lock-freedom", 2004, and Herlihy & Shavit, "The Art of Multiprocessor Programming", ch. 14,
//! without deletion). A new node is written completely, published, then linked bottom-up with one
//! CAS per level; level 0 decides membership. Linked nodes are never unlinked or freed while the
//! memtable lives (a memtable is dropped whole after it is flushed to a table), so there are no
//! deletion marks, no helping, and no ABA: a `next` word only ever moves forward to a new node.
//! Two inserts of one key race on the level-0 CAS; the loser finds the winner's node, frees its
//! own (never linked, so nobody else saw it), and swaps its value into the winner's node.
//!
//! ## Orderings
//!
//! | word | op | ordering | pairs with |
//! | --- | --- | --- | --- |
//! | `next[i]` | link CAS | Release (success) | the Acquire loads in searches: the node's meta, key, value handle and lower links are visible to whoever reaches it |
//! | `next[i]` | load | Acquire | the link CAS above |
//! | `next[i]` of an unlinked node | store | Relaxed | published by the Release link CAS of that level |
//! | `value` | swap | AcqRel | Release: publishes the new value handle (the value block itself is published by parena's block protocol); Acquire: the old handle read is the one freed |
//! | `value` | load | Acquire | the swap |
//! | head `value` (height hint) | fetch_max / load | Relaxed | a hint: level 0 alone decides membership |

use parena::{Arena, Error, Handle};
use std::cell::Cell;
use std::cmp::Ordering as Cmp;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tallest tower; with a branching factor of 2 this suits lists up to 2^24 keys.
pub const MAX_HEIGHT: usize = 24;

/// The allocation lanes of nodes and of values (lane 0 stays for whatever else the arena holds).
const NODE_LANE: usize = 1;
const VALUE_LANE: usize = 2;

/// Largest arena a memtable accepts: a link word's 32-bit offset counts `NODE_ALIGN` units.
const MAX_ARENA: u64 = (NODE_ALIGN as u64) << 32;

const OFF_META: u64 = 0;
const OFF_VALUE: u64 = 8;
const OFF_KEY: u64 = 16;
const KEY_LEN_SHIFT: u32 = 32;

/// Packs a node's immutable meta word.
const fn meta(height: usize, key_len: usize) -> u64 {
    ((key_len as u64) << KEY_LEN_SHIFT) | height as u64
}

/// Offset of `next[0]` from the node's start, for a key of `key_len` bytes.
const fn tower_at(key_len: u64) -> u64 {
    OFF_KEY + key_len.div_ceil(8) * 8
}

/// The first four bytes of `key` as a big-endian number, zero-padded: `a < b` implies
/// `prefix(a) <= prefix(b)`, so different prefixes order their keys.
#[inline]
fn prefix(key: &[u8]) -> u64 {
    let mut p = [0u8; 4];
    let n = key.len().min(4);
    p[..n].copy_from_slice(&key[..n]);
    u64::from(u32::from_be_bytes(p))
}

/// The link word naming the node at arena offset `node` (a multiple of `NODE_ALIGN` below
/// `MAX_ARENA`), whose key is `key`.
#[inline]
fn link_to(node: u64, key: &[u8]) -> u64 {
    debug_assert!(node % NODE_ALIGN as u64 == 0 && node < MAX_ARENA);
    (prefix(key) << 32) | (node / NODE_ALIGN as u64)
}

/// The arena offset of the node a nonzero link word names.
#[inline]
fn link_node(link: u64) -> u64 {
    (link & 0xffff_ffff) * NODE_ALIGN as u64
}

/// The key prefix a nonzero link word carries.
#[inline]
fn link_prefix(link: u64) -> u64 {
    link >> 32
}

/// Bytes of a node of `height` with a key of `key_len` bytes.
const fn node_len(height: usize, key_len: usize) -> usize {
    tower_at(key_len as u64) as usize + 8 * height
}

const HEAD_LEN: usize = node_len(MAX_HEIGHT, 0);

/// The layout of a node of `len` bytes.
fn node_layout(len: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(len, NODE_ALIGN).expect("node layout")
}

/// Nodes start on a cache line: a search step reads a node's meta, key and first links, which
/// then share one line for towers up to 3 high (most nodes). Measured: point reads ~1.4x
/// faster than with 8-byte alignment, for ~25 bytes of padding per node.
const NODE_ALIGN: usize = 64;

thread_local! {
    static HEIGHT_RNG: Cell<u64> = const { Cell::new(0) };
}

/// A tower height: 1 with probability 1/2, 2 with 1/4, ... (branching factor 2). Against a
/// factor of 4, a search compares about as many keys but reaches fewer distinct nodes (a level's
/// successor is more often the node already compared on the level above): ~15 % faster point
/// reads here.
fn random_height() -> usize {
    HEIGHT_RNG.with(|c| {
        let mut x = c.get();
        if x == 0 {
            // Seed from this thread's stack address and the clock; any nonzero value works.
            let local = 0u8;
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() as u64);
            x = (std::ptr::addr_of!(local) as u64) ^ (t << 17) | 1;
        }
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.set(x);
        (x.trailing_zeros() as usize + 1).min(MAX_HEIGHT)
    })
}

/// Byte-wise order of two keys, eight bytes at a time (the order `<[u8]>::cmp` gives, without a
/// call to `memcmp` for the short keys a memtable holds).
#[inline]
fn compare(a: &[u8], b: &[u8]) -> Cmp {
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let x = u64::from_be_bytes(x.try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(y.try_into().expect("8 bytes"));
        if x != y {
            return x.cmp(&y);
        }
    }
    let n = a.len().min(b.len()) / 8 * 8;
    a[n..].cmp(&b[n..])
}

/// Where a search for a key ended.
struct Search {
    /// Per level, the arena offset of the predecessor's `next[level]` word.
    preds: [u64; MAX_HEIGHT],
    /// Per level, the successor's link word (0 = none): the value the link CAS expects.
    succs: [u64; MAX_HEIGHT],
    /// The node holding the key, if it is in the list.
    found: Option<u64>,
}

/// A lock-free skiplist map from byte keys to byte values, inside a parena arena.
///
/// Cloning is cheap and shares the list. Every method takes `&self` and may run on many threads
/// at once.
#[derive(Clone)]
pub struct Memtable {
    /// The arena, in the nodes' lane.
    arena: Arena,
    /// The arena, in the values' lane.
    values: Arena,
    /// Arena offset of the head node.
    head: u64,
}

impl Memtable {
    /// Opens the memtable whose head is in root slot `slot`, or creates one there when the slot
    /// is 0. Concurrent calls on one arena agree on one head.
    ///
    /// # Errors
    /// [`Error::Full`] and the other allocation errors; a slot that holds something other than a
    /// memtable head gives [`Error::Stale`] or [`Error::OutOfBounds`]; an arena larger than
    /// 256 GiB (more than a link word reaches) gives [`Error::TooLarge`].
    ///
    /// # Safety
    /// The blocks reachable from the head (nodes and values) must be used only through
    /// `Memtable`s for as long as any of them lives: nobody may free or write them through another
    /// clone of the arena or a handle built by hand, and the slot must hold a head written by this
    /// module (or 0). The memtable reads linked nodes without checking their generation, which is
    /// sound only because nothing else frees them.
    pub unsafe fn open_or_create(arena: Arena, slot: usize) -> Result<Memtable, Error> {
        if arena.capacity() > MAX_ARENA {
            return Err(Error::TooLarge {
                requested: arena.capacity(),
                max: MAX_ARENA,
            });
        }
        let arena = arena.with_lane(NODE_LANE);
        if arena.root(slot) == 0 {
            let mut b = arena.alloc_layout(node_layout(HEAD_LEN))?;
            b[..8].copy_from_slice(&meta(MAX_HEIGHT, 0).to_le_bytes());
            b[8..16].copy_from_slice(&1u64.to_le_bytes());
            let h = b.into_handle();
            if arena.compare_exchange_root(slot, 0, h.to_u64())?.is_err() {
                // Another thread created it first: ours was never seen by anyone.
                arena.free(h)?;
            }
        }
        let h = Handle::from_u64(arena.root(slot));
        let len = arena.len_of(h)?;
        if len != HEAD_LEN || arena.offset_of(h) % NODE_ALIGN as u64 != 0 {
            return Err(Error::OutOfBounds {
                offset: arena.offset_of(h),
                len: len as u64,
                limit: HEAD_LEN as u64,
                region: parena::Region::Block,
            });
        }
        Ok(Memtable {
            values: arena.with_lane(VALUE_LANE),
            head: arena.offset_of(h),
            arena,
        })
    }

    /// The arena the memtable lives in (to flush it, or read its stats); a clone in the nodes'
    /// lane, so use `with_lane(0)` for blocks of your own.
    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    /// The atomic word at arena offset `off`, a word of the head or of a linked (or our own
    /// published) node.
    #[inline]
    fn word(&self, off: u64) -> &AtomicU64 {
        // SAFETY: `off` is a word of the head or of a node reached through links (or one this
        // thread published): such blocks are never freed while a `Memtable` lives (the contract of
        // `open_or_create`), and their meta, value and link words are only accessed atomically
        // after publication (keys are never covered by these words).
        unsafe { self.arena.atomic_u64_at(off) }.expect("memtable node inside the arena")
    }

    /// The key of the node at `node`, whose meta word is `m`.
    #[inline]
    fn key(&self, node: u64, m: u64) -> &[u8] {
        let len = (m >> KEY_LEN_SHIFT) as usize;
        // SAFETY: the key lies inside the node (its length is the node's immutable meta); linked
        // nodes are never freed while a `Memtable` lives, and keys are never written after the
        // node is published.
        unsafe { self.arena.bytes_at(node + OFF_KEY, len) }.expect("memtable key inside the arena")
    }

    /// The list's height hint.
    #[inline]
    fn height(&self) -> usize {
        (self.word(self.head + OFF_VALUE).load(Ordering::Relaxed) as usize).clamp(1, MAX_HEIGHT)
    }

    /// Searches levels `top - 1` down to 0 for `key`. With `full`, records the predecessors and
    /// successors on every level (for an insert); otherwise stops at the first node holding `key`.
    #[inline]
    fn search(&self, key: &[u8], top: usize, full: bool) -> Search {
        let mut s = Search {
            preds: [0; MAX_HEIGHT],
            succs: [0; MAX_HEIGHT],
            found: None,
        };
        let want = prefix(key);
        // The predecessor's tower: `next[0]` of the current node.
        let mut pred_tower = self.head + OFF_KEY;
        for level in (0..top).rev() {
            let mut succ;
            loop {
                let link = pred_tower + 8 * level as u64;
                // Acquire: pairs with the Release link CAS; the node's contents are visible.
                succ = self.word(link).load(Ordering::Acquire);
                s.preds[level] = link;
                if succ == 0 || link_prefix(succ) > want {
                    // The successor's key is greater: known without loading it.
                    break;
                }
                let node = link_node(succ);
                let m = self.word(node + OFF_META).load(Ordering::Relaxed);
                let order = if link_prefix(succ) < want {
                    Cmp::Less
                } else {
                    compare(self.key(node, m), key)
                };
                match order {
                    Cmp::Less => pred_tower = node + tower_at(m >> KEY_LEN_SHIFT),
                    Cmp::Equal => {
                        s.found = Some(node);
                        if !full {
                            return s;
                        }
                        break;
                    }
                    Cmp::Greater => break,
                }
            }
            s.succs[level] = succ;
        }
        s
    }

    /// Inserts `key` with `value`, or replaces the value of `key` (freeing the old value block).
    /// Returns `true` when the key was new.
    ///
    /// # Errors
    /// The allocation errors ([`Error::Full`], [`Error::TooLarge`], ...).
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<bool, Error> {
        let value = if value.is_empty() {
            0
        } else {
            self.values.alloc_copy(value)?.to_u64()
        };
        // A tower at most one level above the list's: levels far above every other tower would
        // only lengthen searches.
        let height = random_height().min(self.height() + 1);
        let top = self.height().max(height);
        let mut s = self.search(key, top, true);
        if let Some(node) = s.found {
            self.replace_value(node, value)?;
            return Ok(false);
        }
        let tower = tower_at(key.len() as u64);
        let mut b = match self
            .arena
            .alloc_layout(node_layout(node_len(height, key.len())))
        {
            Ok(b) => b,
            Err(e) => {
                if value != 0 {
                    self.values.free(Handle::from_u64(value))?;
                }
                return Err(e);
            }
        };
        b[..8].copy_from_slice(&meta(height, key.len()).to_le_bytes());
        b[8..16].copy_from_slice(&value.to_le_bytes());
        b[OFF_KEY as usize..OFF_KEY as usize + key.len()].copy_from_slice(key);
        for level in 0..height {
            let at = tower as usize + 8 * level;
            b[at..at + 8].copy_from_slice(&s.succs[level].to_le_bytes());
        }
        let h = b.into_handle();
        let node = self.arena.offset_of(h);
        let me = link_to(node, key);
        // Level 0 decides whether the key is in the list.
        loop {
            // Release: publishes the node (see the orderings table); Acquire on failure: the node
            // found there is read next.
            match self.word(s.preds[0]).compare_exchange(
                s.succs[0],
                me,
                Ordering::Release,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(_) => {
                    s = self.search(key, top, true);
                    if let Some(winner) = s.found {
                        // Lost the race to an insert of the same key: nobody saw our node.
                        self.arena.free(h)?;
                        self.replace_value(winner, value)?;
                        return Ok(false);
                    }
                    self.word(node + tower).store(s.succs[0], Ordering::Relaxed);
                }
            }
        }
        for level in 1..height {
            let link = node + tower + 8 * level as u64;
            loop {
                // A search since the node was written may have found new successors: point at
                // the one the CAS below expects (nobody reads this word before that CAS).
                self.word(link).store(s.succs[level], Ordering::Relaxed);
                // Release / Acquire: as for level 0.
                if self
                    .word(s.preds[level])
                    .compare_exchange(s.succs[level], me, Ordering::Release, Ordering::Acquire)
                    .is_ok()
                {
                    break;
                }
                s = self.search(key, top, true);
            }
        }
        self.word(self.head + OFF_VALUE)
            .fetch_max(height as u64, Ordering::Relaxed);
        Ok(true)
    }

    /// Swaps `value` into `node` and frees the value it replaces.
    fn replace_value(&self, node: u64, value: u64) -> Result<(), Error> {
        // AcqRel: see the orderings table.
        let old = self.word(node + OFF_VALUE).swap(value, Ordering::AcqRel);
        if old != 0 {
            self.values.free(Handle::from_u64(old))?;
        }
        Ok(())
    }

    /// Copies the value of the node at `node` into `out`.
    fn read_value(&self, node: u64, out: &mut Vec<u8>) -> Result<(), Error> {
        let word = self.word(node + OFF_VALUE);
        // Acquire: pairs with the swap in `replace_value` (and the link CAS for the first value).
        let mut raw = word.load(Ordering::Acquire);
        loop {
            if raw == 0 {
                out.clear();
                return Ok(());
            }
            let r = self.values.read_with(Handle::from_u64(raw), |bytes| {
                out.clear();
                out.extend_from_slice(bytes);
            });
            match r {
                Ok(()) => return Ok(()),
                Err(e) => {
                    // Replaced (and freed) since we loaded it: read the new one. The same handle
                    // failing twice is not a race but a broken list.
                    let now = word.load(Ordering::Acquire);
                    if now == raw {
                        return Err(e);
                    }
                    raw = now;
                }
            }
        }
    }

    /// Copies the value of `key` into `out`; `Ok(false)` when the key is absent.
    ///
    /// # Errors
    /// Only when the arena does not hold a well-formed memtable.
    pub fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, Error> {
        match self.search(key, self.height(), false).found {
            Some(node) => self.read_value(node, out).map(|()| true),
            None => Ok(false),
        }
    }

    /// The value of `key`.
    ///
    /// # Errors
    /// As [`Memtable::get_into`].
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let mut v = Vec::new();
        Ok(self.get_into(key, &mut v)?.then_some(v))
    }

    /// Every entry in key order: the keys borrowed from the arena, the values copied.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            table: self,
            // Acquire: pairs with the Release link CAS.
            next: self.word(self.head + OFF_KEY).load(Ordering::Acquire),
        }
    }
}

/// Iterator over a [`Memtable`] in key order, from [`Memtable::iter`]. Entries inserted while it
/// runs are seen if they land after its position.
pub struct Iter<'a> {
    table: &'a Memtable,
    /// Link word of the next node, 0 at the end.
    next: u64,
}

impl<'a> Iterator for Iter<'a> {
    type Item = Result<(&'a [u8], Vec<u8>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next == 0 {
            return None;
        }
        let t = self.table;
        let node = link_node(self.next);
        let m = t.word(node + OFF_META).load(Ordering::Relaxed);
        let key = t.key(node, m);
        // Acquire: pairs with the Release link CAS.
        self.next = t
            .word(node + tower_at(m >> KEY_LEN_SHIFT))
            .load(Ordering::Acquire);
        let mut value = Vec::new();
        Some(t.read_value(node, &mut value).map(|()| (key, value)))
    }
}
