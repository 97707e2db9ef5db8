#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod arena;
mod backing;
mod block;
mod bump;
mod error;
mod format;
mod freelist;
mod layout;
mod options;
mod recovery;
mod sync;

pub use arena::{Arena, BlockMut, Stats};
pub use backing::BackingKind;
pub use block::{Handle, MAX_BLOCK_LEN};
pub use error::Error;
pub use format::{FORMAT_VERSION, HEADER_SIZE, MAGIC, ROOT_SLOTS};
pub use layout::MAX_ALIGN;
pub use options::{Freelist, Options, DEFAULT_CAPACITY};
pub use recovery::{Problem, Report};
