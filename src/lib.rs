#![doc = include_str!("../README.md")]
#![deny(missing_docs, missing_debug_implementations)]
// docs.rs builds with `--cfg docsrs` and every feature (Cargo.toml's [package.metadata.docs.rs]);
// `doc_cfg` then marks each feature-gated item ("Available on crate feature async only").
#![cfg_attr(docsrs, feature(doc_cfg))]
// `parena_loom` is a test-only cfg: no badge for it.
#![cfg_attr(docsrs, doc(auto_cfg(hide(parena_loom))))]

/// The code in `docs/guide.md`, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/guide.md")]
pub struct GuideDoctests;

#[cfg(all(feature = "async", not(parena_loom)))]
mod aio;
mod alloc_api;
mod arena;
mod backing;
mod block;
mod cells;
mod error;
mod fork;
mod format;
mod freelist;
pub(crate) mod global;
mod heap;
mod hook;
mod kinds;
mod layout;
#[cfg(parena_loom)]
#[doc(hidden)]
pub mod loom_hooks;
mod options;
mod recovery;
mod reentry;
mod salvage;
mod sync;
#[cfg(feature = "testkit")]
#[doc(hidden)]
pub mod testkit;

/// The `allocator-api2` crate (0.2) whose `Allocator` trait `&Arena` and `Arena` implement:
/// name it as `parena::allocator_api2` so the versions match (`cargo add allocator-api2` picks
/// a newer, incompatible major version).
#[cfg(feature = "allocator-api2")]
pub use allocator_api2;
pub use arena::{Arena, BlockMut, HeaderInfo, LiveBlock, Stats, LANES};
pub use backing::BackingKind;
#[cfg(feature = "testkit")]
#[doc(hidden)]
pub use backing::SimDisk;
pub use block::{Handle, MAX_BLOCK_LEN};
pub use error::{Error, Region};
pub use format::{FORMAT_VERSION, GROWABLE_FORMAT_VERSION, HEADER_SIZE, MAGIC, ROOT_SLOTS};
pub use global::GlobalArena;
pub use layout::MAX_ALIGN;
pub use options::{Freelist, Options, DEFAULT_CAPACITY};
pub use recovery::{Dropped, Problem, Report};
#[cfg(feature = "alloc-audit")]
#[doc(hidden)]
pub use reentry::audit;
pub use salvage::{salvage, Lost, LostReason, SalvageReport, SavedBlock};
