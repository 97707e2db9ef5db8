//! A simulated disk for power-loss tests: a heap backing whose `flush` copies the flushed pages
//! into a "durable" image. What was never flushed is lost at a simulated power cut, except for any
//! pages the test chooses to keep (the OS may write any dirty page back at any time).

use super::Backing;
use crate::sync::{lock, Mutex, Ordering};

/// Page size of the simulation: the unit in which the OS writes back.
const PAGE: u64 = 4096;

/// The durable side of a simulated disk. Obtained from [`crate::Options::simulated_disk`].
///
/// Tests only: it copies the arena's bytes with word loads while the caller guarantees that no
/// other thread writes the arena (flush and crash from the one thread that works on it).
pub struct SimDisk {
    durable: Mutex<Vec<u8>>,
}

impl SimDisk {
    pub(super) fn new(len: u64) -> SimDisk {
        SimDisk {
            durable: Mutex::new(vec![0; len as usize]),
        }
    }

    /// Copies the pages covering `off..off + len` from the live arena to the durable image.
    pub(super) fn persist(&self, b: &Backing, off: u64, len: u64) {
        let start = off / PAGE * PAGE;
        let end = (off + len).div_ceil(PAGE).saturating_mul(PAGE).min(b.len());
        let mut d = lock(&self.durable);
        copy_words(b, &mut d, start, end);
    }

    /// The image a power cut would leave now over the live memory `b`: every flushed page, plus
    /// the live contents of each page `p` (its byte offset) for which `keep(p)` says the OS
    /// happened to write it back. The arena hands its memory in (`SimDisk::crash_image`).
    ///
    /// The image is as long as the backing now: a growable arena's growth step makes the file's
    /// new length durable before anything names it (docs/metadata.md, 12.2, step 1), so the
    /// simulated file has the length of the last step.
    pub(crate) fn image_over(&self, b: &Backing, mut keep: impl FnMut(u64) -> bool) -> Vec<u8> {
        let len = b.len();
        let mut img = lock(&self.durable)[..len as usize].to_vec();
        let mut p = 0;
        while p < len {
            if keep(p) {
                copy_words(b, &mut img, p, (p + PAGE).min(len));
            }
            p += PAGE;
        }
        img
    }
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDisk")
            .field("len", &lock(&self.durable).len())
            .finish_non_exhaustive()
    }
}

fn copy_words(b: &Backing, dst: &mut [u8], start: u64, end: u64) {
    let mut o = start;
    while o < end {
        let w = b.word(o).load(Ordering::Relaxed);
        dst[o as usize..o as usize + 8].copy_from_slice(&w.to_le_bytes());
        o += 8;
    }
}
