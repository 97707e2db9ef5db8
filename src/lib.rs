#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[cfg(all(feature = "async", not(parena_loom)))]
mod aio;
mod alloc_api;
mod arena;
mod backing;
mod block;
mod bump;
mod error;
mod format;
mod freelist;
mod layout;
#[cfg(parena_loom)]
#[doc(hidden)]
pub mod loom_hooks;
mod options;
#[cfg(not(parena_loom))]
mod raw;
mod recovery;
mod sync;

pub use alloc_api::GlobalArena;
pub use arena::{Arena, BlockMut, HeaderInfo, Stats, LANES};
pub use backing::BackingKind;
#[doc(hidden)]
pub use backing::SimDisk;
pub use block::{Handle, MAX_BLOCK_LEN};
#[cfg(feature = "alloc-audit")]
#[doc(hidden)]
pub use bump::audit;
pub use error::Error;
pub use format::{FORMAT_VERSION, HEADER_SIZE, MAGIC, ROOT_SLOTS};
pub use layout::MAX_ALIGN;
pub use options::{Freelist, Options, DEFAULT_CAPACITY};
pub use recovery::{Problem, Report};
