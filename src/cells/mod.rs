//! Per-thread chunk cells and the thread-local that finds them: each thread keeps, per open arena
//! and lane, one [`ChunkCell`] (its current chunk, its cache of freed blocks, its counters: the
//! cell and the rules of its fields, invariant C of the chunk cursor among them, are
//! `crate::heap::cell`); the arena's [`CellRegistry`] (`registry`) holds every cell it handed out
//! so that exclusive passes reach them all; the thread-local slots are in `local`.
//! How chunks are reserved and bumped is in `heap::chunks`.
//!
//! ## Allocator paths (invariant A)
//!
//! The steps here that hold something exclusive (this thread's slot list) or walk the registry run
//! under a [`Step`](crate::reentry::Step); the invariant and the guard are in `reentry`.
//!
//! ## Orderings
//!
//! | word | op | ordering | why |
//! | --- | --- | --- | --- |
//! | registry `head` | load / CAS | Acquire / Release | publishes a node's fields to every later walk (`CellRegistry`) |
//! | cell `abandoned` | store / CAS | Release / Acquire | hands a cell (and its chunk state) from a departing thread to the next owner (`ChunkCell::abandon`, `ChunkCell::try_adopt`) |

use crate::heap::ChunkCell;
use crate::sync::Arc;
use crossbeam_utils::CachePadded;

mod local;
mod registry;

pub use local::LANES;
pub(crate) use local::{for_each_thread_cell, with_cell};
pub(crate) use registry::CellRegistry;

pub(crate) type Cell = Arc<CachePadded<ChunkCell>>;
