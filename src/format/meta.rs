//! `Meta`, the layout as of one completed flush, and its codec: a meta slot's eight words, checked
//! by an FNV-1a checksum of the other seven and the slot's index.

use super::{fnv1a_more, FNV_OFFSET};

/// The layout as of one completed flush, as a meta slot records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Flushes so far; the valid slot with the larger epoch wins.
    pub epoch: u64,
    /// Which flush map (0 or 1) holds the live starts of this flush.
    pub map: u64,
    pub capacity: u64,
    pub bump: u64,
    pub high_water: u64,
    pub discarded: u64,
    pub gen_seed: u64,
}

impl Meta {
    /// The slot's first eight words, checksum last.
    pub(crate) fn encode(&self, slot: u64) -> [u64; 8] {
        let w = [
            self.epoch,
            self.map,
            self.capacity,
            self.bump,
            self.high_water,
            self.discarded,
            self.gen_seed,
            0,
        ];
        let mut out = w;
        out[7] = meta_checksum(&w[..7], slot);
        out
    }

    /// A slot's words back to a `Meta`, or `None` when its checksum does not match (a slot never
    /// written, or torn by a power cut).
    pub(crate) fn decode(w: &[u64; 8], slot: u64) -> Option<Meta> {
        if w[7] != meta_checksum(&w[..7], slot) || w[0] == 0 || w[1] > 1 {
            return None;
        }
        Some(Meta {
            epoch: w[0],
            map: w[1],
            capacity: w[2],
            bump: w[3],
            high_water: w[4],
            discarded: w[5],
            gen_seed: w[6],
        })
    }
}

fn meta_checksum(words: &[u64], slot: u64) -> u64 {
    let h = words
        .iter()
        .fold(FNV_OFFSET, |h, w| fnv1a_more(h, &w.to_le_bytes()));
    fnv1a_more(h, &slot.to_le_bytes())
}
