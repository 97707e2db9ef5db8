//! The heap layer: the one owner of the persistent words that describe the heap's entries.
//!
//! This layer is to hold the only code that toggles a start-map bit, stores a block-header word
//! or moves a chunk cursor, each write beside the crash order it keeps (docs/metadata.md). It holds
//! so far:
//!
//! - [`startmap`]: the start map (the owner and shared bitmaps that record where every entry
//!   starts) and the two flush maps, behind [`StartMap`], a borrowed view that owns their encoding;
//!   and [`startmap::Retarget`], the one rewrite of the start map by an exclusive pass.
//! - [`slots`]: the two meta slots in the file header and the flush protocol's durable part
//!   (`flush_layout`, `flush_empty_layout`).
//! - [`cell`]: [`ChunkCell`], one thread's chunk, cursor (invariant C), cache of freed blocks,
//!   generation batch and check slot, every field private, each change one method; the head word
//!   of its cache ([`CacheTop`]) in `cache`, its counters (`Counters`, one method per event) in
//!   `counters`.
//! - [`state`]: the block-state steps on a LIVE header word while shared (publish, pin, unpin,
//!   DYING), behind [`LiveWord`].

mod cache;
pub(crate) mod cell;
mod counters;
pub(crate) mod slots;
pub(crate) mod startmap;
pub(crate) mod state;

pub(crate) use cache::CacheTop;
pub(crate) use cell::ChunkCell;
pub(crate) use counters::CounterSnapshot;
pub(crate) use slots::{flush_empty_layout, flush_layout, newest_meta, read_meta};
pub(crate) use startmap::{MapGeom, StartMap};
pub(crate) use state::LiveWord;
