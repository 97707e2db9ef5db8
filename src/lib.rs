#![doc = include_str!("../README.md")]
#![deny(missing_docs, missing_debug_implementations)]

#[cfg(all(feature = "async", not(parena_loom)))]
mod aio;
mod alloc_api;
mod arena;
mod backing;
mod block;
mod bump;
mod cells;
mod error;
mod format;
mod freelist;
mod hook;
mod layout;
#[cfg(parena_loom)]
#[doc(hidden)]
pub mod loom_hooks;
mod options;
mod recovery;
mod sync;
#[doc(hidden)]
pub mod testkit;

pub use alloc_api::GlobalArena;
pub use arena::{Arena, BlockMut, HeaderInfo, Stats, LANES};
pub use backing::BackingKind;
#[doc(hidden)]
pub use backing::SimDisk;
pub use block::{Handle, MAX_BLOCK_LEN};
#[cfg(feature = "alloc-audit")]
#[doc(hidden)]
pub use cells::audit;
pub use error::Error;
pub use format::{FORMAT_VERSION, HEADER_SIZE, MAGIC, ROOT_SLOTS};
pub use layout::MAX_ALIGN;
pub use options::{Freelist, Options, DEFAULT_CAPACITY};
pub use recovery::{Problem, Report};
