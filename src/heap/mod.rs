//! The heap layer: the one owner of the persistent words that describe the heap's entries.
//!
//! This layer holds the only code that toggles a start-map bit or stores a block-header word
//! (an entry's first word, a FREE segment's span word, a LARGE block's tail word), each write
//! beside the crash order it keeps (docs/design.md, "The heap layer"; docs/metadata.md). The
//! layers above call its verbs; `tests/layering.rs` fails on a store to a heap word anywhere
//! else. It holds:
//!
//! - [`chunks`]: [`Heap`], the arena's borrowed view of its heap, and the chunk verbs: reserve
//!   chunks, bump an entry (the fast path's and the checked one with a filler in front), start a
//!   large block and its tail word, rewind or resize a chunk's last block.
//! - [`entry`]: [`Entries`], the entry verbs the free lists and the exclusive passes use (add a
//!   FREE or filler entry, relink, set a span, absorb a start in a merge, recovery's and
//!   salvage's rewrites), the carve out of a free segment and the cached block taken back, and
//!   the file header's discarded count.
//! - [`startmap`]: the start map (the owner and shared bitmaps that record where every entry
//!   starts) and the two flush maps, behind [`StartMap`], a borrowed view that owns their encoding;
//!   and [`startmap::Retarget`], the one rewrite of the start map by an exclusive pass. Its
//!   toggles are private to this layer. Where the maps lie, [`MapGeom`], is in `mapgeom`.
//! - [`slots`]: the two meta slots in the file header and the flush protocol's durable part
//!   (`flush_layout`, `flush_empty_layout`).
//! - [`cell`]: [`ChunkCell`], one thread's chunk, cursor (invariant C), cache of freed blocks,
//!   generation batch and check slot, every field private, each change one method; the head word
//!   of its cache ([`CacheTop`]) in `cache`, its counters (`Counters`, one method per event) in
//!   `counters`.
//! - [`reads`]: [`ReadSlots`], a cell's check slot, read slots and deferred list: which header
//!   positions its thread is checking or reading, and the blocks it freed while a read held them.
//! - [`state`]: the block-state steps on a LIVE header word while shared (publish, pin, unpin,
//!   DYING), behind [`LiveWord`].
//!
//! The heap layer sits below the free lists: a verb that frees space returns what its caller
//! gives back to the lists (a large block's unused tail), and never lists anything itself.

mod cache;
pub(crate) mod cell;
pub(crate) mod chunks;
mod counters;
mod disk;
pub(crate) mod entry;
mod mapgeom;
pub(crate) mod reads;
pub(crate) mod slots;
pub(crate) mod startmap;
pub(crate) mod state;

pub(crate) use cache::{CacheTop, CACHE_DEPTH};
pub(crate) use cell::ChunkCell;
pub(crate) use chunks::Heap;
pub(crate) use counters::CounterSnapshot;
pub(crate) use entry::{add_discarded, sub_discarded, Entries, Start};
pub(crate) use mapgeom::MapGeom;
pub(crate) use reads::ReadSlot;
pub(crate) use slots::{flush_empty_layout, flush_layout, newest_meta, read_meta};
pub(crate) use startmap::StartMap;
pub(crate) use state::LiveWord;
