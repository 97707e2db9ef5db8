//! Shared inputs of parena's fuzz targets, and one module per target driving them.
//!
//! Every input is bounded: at most [`MAX_OPS`] operations, arenas of at most 1 MiB, blocks of at
//! most 64 KiB, so one run takes milliseconds and libFuzzer can explore many of them.
//!
//! The model, the byte patterns and the checks are `parena-testkit`'s, shared with the
//! integration tests; the private layout facts (header offsets, checksums, handle packing) come
//! from the crate through `parena_testkit::layout`.
//!
//! - [`ops`]: operation sequences against the model, over every backing and policy;
//! - [`open_bytes`]: arbitrary bytes, or a valid image patched by them, opened as an arena file;
//! - [`forge`]: header-shaped block contents, and handles forged from them and near real ones;
//! - [`freelist`]: the free lists under each policy, with the heap walk's accounting;
//! - [`subject`]: the arena under test, its file, reopen and crash, shared by the drivers.

use arbitrary::Arbitrary;
use parena::{Freelist, Options};

pub mod forge;
pub mod freelist;
pub mod open_bytes;
pub mod ops;
pub mod subject;

pub use forge::{run_forge, ForgeInput};
pub use freelist::run_freelist;
pub use open_bytes::run_open_bytes;
pub use ops::run_ops;

/// The most operations one input runs.
pub const MAX_OPS: usize = 256;

/// Which memory the arena lives in.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackingChoice {
    /// `Options::heap`.
    Heap,
    /// `Options::map_anon`.
    Anon,
    /// `Options::map_file` in the scratch directory.
    File,
}

/// A freelist policy.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyChoice {
    /// `Freelist::None`.
    None,
    /// `Freelist::Optimistic`.
    Optimistic,
    /// `Freelist::Pessimistic`.
    Pessimistic,
}

impl PolicyChoice {
    /// The parena value.
    pub fn freelist(self) -> Freelist {
        match self {
            PolicyChoice::None => Freelist::None,
            PolicyChoice::Optimistic => Freelist::Optimistic,
            PolicyChoice::Pessimistic => Freelist::Pessimistic,
        }
    }

    /// Another policy than `self`, chosen by `k`.
    pub fn other(self, k: u8) -> Freelist {
        let all = [Freelist::None, Freelist::Optimistic, Freelist::Pessimistic];
        let others: Vec<_> = all.into_iter().filter(|&f| f != self.freelist()).collect();
        others[k as usize % others.len()]
    }
}

/// How an arena is made: all fields are reduced into valid ranges.
#[derive(Arbitrary, Debug, Clone)]
pub struct Config {
    /// Memory.
    pub backing: BackingChoice,
    /// Freelist policy.
    pub policy: PolicyChoice,
    /// Heap pages beyond the header (reduced to 1..=`max_pages`).
    pub pages: u8,
    /// Chunk size `1 << (9 + c % 8)` (512 B to 64 KiB), or the default.
    pub chunk: Option<u8>,
    /// Minimum listed segment, `8 * m`.
    pub min_segment: u8,
    /// `zero_on_free`.
    pub zero_on_free: bool,
    /// Reserved area length (reduced below 6000).
    pub reserved: u16,
}

impl Config {
    /// The options to create the arena with, and its heap size.
    pub fn options(&self, max_pages: u64) -> Options {
        let reserved = u32::from(self.reserved % 6000);
        let data_start = (4096 + u64::from(reserved)).div_ceil(4096) * 4096;
        let pages = 1 + u64::from(self.pages) % max_pages;
        let mut o = Options::new()
            .capacity(parena::testkit::capacity_for_heap(data_start, pages * 4096))
            .freelist(self.policy.freelist())
            .min_segment_size(u32::from(self.min_segment) * 8)
            .zero_on_free(self.zero_on_free)
            .reserved(reserved)
            .preallocate(false);
        if let Some(c) = self.chunk {
            o = o.chunk_size(1 << (9 + c % 8));
        }
        o
    }
}

// ---------------------------------------------------------------------------------------------
// ops

/// One step of the `ops` target.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    /// Allocate `len % 2049` bytes (0 must be refused), aligned to `1 << (align % 13)` when
    /// `layout`; with `probe`, the block must be busy while its `BlockMut` lives.
    Alloc {
        /// Length.
        len: u16,
        /// Use `alloc_layout`.
        layout: bool,
        /// Alignment exponent.
        align: u8,
        /// Pattern seed.
        seed: u8,
        /// Check `Busy` while pending.
        probe: bool,
    },
    /// Allocate `kb` KiB plus `extra` bytes.
    AllocBig {
        /// KiB.
        kb: u8,
        /// Extra bytes.
        extra: u8,
        /// Pattern seed.
        seed: u8,
    },
    /// Free a live block.
    Free {
        /// Which.
        pick: u16,
    },
    /// Use a handle of a freed block.
    Stale {
        /// Which.
        pick: u16,
    },
    /// Use an arbitrary handle.
    Forged {
        /// Raw handle bits.
        raw: u64,
    },
    /// Use a handle near a live one: offset moved by `delta` words, generation by `gen_delta`.
    ForgedNear {
        /// Which live block.
        pick: u16,
        /// Offset change in words.
        delta: i8,
        /// Generation change.
        gen_delta: u8,
    },
    /// Read part of a live block.
    Read {
        /// Which.
        pick: u16,
        /// Start.
        off: u16,
        /// Length.
        len: u16,
    },
    /// Borrow a live block with `get` and check it.
    Get {
        /// Which.
        pick: u16,
    },
    /// Rewrite a live block through `get_mut`.
    Write {
        /// Which.
        pick: u16,
        /// New seed.
        seed: u8,
    },
    /// `compact()`.
    Compact,
    /// `verify()`.
    Verify,
    /// The flush family.
    Flush {
        /// Range start.
        off: u32,
        /// Range length.
        len: u32,
    },
    /// Set a root slot.
    Root {
        /// Slot.
        slot: u8,
        /// Value.
        value: u64,
    },
    /// Close and reopen (file), or an image round trip (heap, anonymous map). `mode` bits:
    /// 1 try another policy first, 2 open read-only first, 4 try a second writer, 8 grow.
    Reopen {
        /// What to try on the way.
        mode: u8,
    },
    /// File only: copy the file as it is now (as a crash would leave it), drop the arena, open the
    /// copy (recovery). With `pending`, a block is allocated and left pending at the copy.
    Crash {
        /// Leave a block pending at the crash.
        pending: bool,
        /// Its length.
        len: u8,
        /// Its seed.
        seed: u8,
    },
}

/// Input of the `ops` target.
#[derive(Arbitrary, Debug, Clone)]
pub struct OpsInput {
    /// The arena.
    pub config: Config,
    /// The steps (at most [`MAX_OPS`] run).
    pub ops: Vec<Op>,
}

// ---------------------------------------------------------------------------------------------
// freelist

/// One step of the `freelist` target.
#[derive(Arbitrary, Debug, Clone)]
pub enum FlOp {
    /// Allocate `len % max + 1` bytes, `max` a few chunks.
    Alloc {
        /// Length.
        len: u16,
        /// Seed.
        seed: u8,
    },
    /// Allocate a small block (1..=256 bytes).
    Small {
        /// Length.
        len: u8,
        /// Seed.
        seed: u8,
    },
    /// Allocate blocks of one size until the arena is full (at most 256).
    Fill {
        /// Length.
        len: u16,
        /// Seed.
        seed: u8,
    },
    /// Free a block.
    Free {
        /// Which.
        pick: u16,
    },
    /// Free the block allocated last (a bump rewind when it ends the chunk).
    FreeNewest,
    /// Free every `k`-th live block, starting at `phase`: neighbours to merge.
    FreeEvery {
        /// Stride (reduced to 1..=4).
        k: u8,
        /// Start.
        phase: u8,
    },
    /// `compact()`.
    Compact,
    /// Close and reopen; first try another policy (which must be refused) when `other`.
    Reopen {
        /// Try another policy first.
        other: bool,
        /// Which other policy.
        k: u8,
    },
}

/// Input of the `freelist` target.
#[derive(Arbitrary, Debug, Clone)]
pub struct FreelistInput {
    /// Policy.
    pub policy: PolicyChoice,
    /// File-backed (reopen closes and opens the file); else heap (reopen goes through an image
    /// and continues on the file it was opened from).
    pub file: bool,
    /// Heap pages (reduced to 1..=16).
    pub pages: u8,
    /// Chunk size `1 << (9 + c % 4)`: 512 B .. 4 KiB, so big blocks take whole chunks.
    pub chunk: u8,
    /// Minimum listed segment `8 * m`.
    pub min_segment: u8,
    /// The steps.
    pub ops: Vec<FlOp>,
}

#[cfg(test)]
mod tests {
    //! Smoke tests: random inputs through each driver, on a stable toolchain, without libFuzzer.
    use super::*;
    use arbitrary::Unstructured;

    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn ops_smoke() {
        for seed in 0..300 {
            let data = bytes(seed, 2000);
            if let Ok(input) = OpsInput::arbitrary(&mut Unstructured::new(&data)) {
                run_ops(&input);
            }
        }
    }

    #[test]
    fn forge_smoke() {
        for seed in 0..300 {
            // Operations one after another until the bytes run out (a derived `Vec` would stop
            // after a few).
            let data = bytes(seed, 3000);
            let mut u = Unstructured::new(&data);
            let (Ok(config), Ok(thread_cache)) =
                (Config::arbitrary(&mut u), bool::arbitrary(&mut u))
            else {
                continue;
            };
            let mut ops = Vec::new();
            while let Ok(op) = forge::ForgeOp::arbitrary(&mut u) {
                if u.is_empty() {
                    break;
                }
                ops.push(op);
            }
            run_forge(&ForgeInput {
                config,
                thread_cache,
                ops,
            });
        }
    }

    #[test]
    fn freelist_smoke() {
        for seed in 0..300 {
            let data = bytes(seed, 1000);
            if let Ok(input) = FreelistInput::arbitrary(&mut Unstructured::new(&data)) {
                run_freelist(&input);
            }
        }
    }

    #[test]
    fn open_bytes_smoke() {
        for seed in 0..300 {
            let mut data = bytes(seed, 200);
            data[1] |= 0x80;
            run_open_bytes(&data);
        }
    }
}
