//! The damaged file, opened read-only: its header validated as an open does, with the mutable
//! words a damage hit replaced from the newest meta slot.

use crate::backing::{Backing, OpenedFile};
use crate::error::Error;
use crate::format::{self, Geometry, Meta, RawHeader, DATA_ALIGN, HEADER_SIZE, STATE_DIRTY};
use crate::heap::MapGeom;
use crate::sync::Ordering;
use std::path::Path;

/// The damaged file, mapped read-only, with the header facts salvage trusts.
pub(super) struct Source {
    pub mem: Backing,
    pub raw: RawHeader,
    pub g: Geometry,
    pub capacity: u64,
    pub maps: MapGeom,
    /// Where the walk ends.
    pub limit: u64,
    pub meta: Option<Meta>,
    pub header_clean: bool,
    pub header_repaired: Vec<&'static str>,
}

impl Source {
    pub(super) fn open(path: &Path) -> Result<Source, Error> {
        let f = OpenedFile::open(path, true, false, false, 0)?;
        let file_len = f.len()?;
        let mut buf = vec![0u8; HEADER_SIZE as usize];
        let n = f.read_prefix(&mut buf)?;
        // Bytes past a short file read as zero: validation then reports the magic it found.
        let raw = RawHeader::parse(&buf);
        if (n as u64) < HEADER_SIZE && raw.magic == format::MAGIC {
            return Err(Error::Truncated {
                expected: HEADER_SIZE,
                found: file_len,
            });
        }
        let newest = |capacity: Option<u64>| {
            (0..2u64)
                .filter_map(|slot| {
                    let mut w = [0u64; 8];
                    w.copy_from_slice(&raw.meta[slot as usize][..8]);
                    Meta::decode(&w, slot)
                })
                .filter(|m| capacity.is_none_or(|c| m.capacity == c))
                .max_by_key(|m| m.epoch)
        };
        // Validate as an open does; a failure in a mutable word (capacity, bump offset, state) is
        // patched from the newest meta slot and the header validated again, so only the
        // unchanging fields (which the header checksum covers) can refuse the file.
        let reserved = crate::arena::read_reserved(&f, &raw, file_len)?;
        let mut patched = raw;
        let mut repaired = Vec::new();
        let v = loop {
            match patched.validate(file_len, &reserved) {
                Ok(v) => {
                    // A capacity that validates but that no valid meta slot names (a growth
                    // names the new capacity in a slot before the header) is a damaged word.
                    let named = newest(Some(v.capacity)).is_some() || newest(None).is_none();
                    if named || repaired.contains(&"capacity") {
                        break v;
                    }
                    patched.capacity = newest(None).map_or(v.capacity, |m| m.capacity);
                    repaired.push("capacity");
                }
                Err(
                    e @ (Error::Size {
                        field: "capacity", ..
                    }
                    | Error::Truncated { .. }),
                ) => match newest(None)
                    .filter(|m| m.capacity != patched.capacity && !repaired.contains(&"capacity"))
                {
                    Some(m) => {
                        patched.capacity = m.capacity;
                        repaired.push("capacity");
                    }
                    None => return Err(e),
                },
                Err(Error::Bump { .. }) if !repaired.contains(&"bump") => {
                    patched.bump = newest(Some(patched.capacity))
                        .map_or(patched.data_start, |m| m.bump)
                        .clamp(
                            patched.data_start,
                            format::heap_end(patched.capacity, patched.layout_max()),
                        )
                        / 8
                        * 8;
                    repaired.push("bump");
                }
                Err(Error::State { .. }) if !repaired.contains(&"state") => {
                    patched.state = STATE_DIRTY;
                    repaired.push("state");
                }
                Err(e) => return Err(e),
            }
        };
        let g = v.geometry;
        // A growable arena's newest meta slot may name more than its header's capacity word (a
        // cut in a growth step's flush tore the header page: docs/metadata.md, 12.6, gap 3). The
        // dirty open takes the larger, and so does salvage: blocks that slot's flush protects may
        // lie past the header's capacity.
        let capacity = match newest(None) {
            Some(m)
                if g.growable()
                    && m.capacity > v.capacity
                    && m.capacity % DATA_ALIGN == 0
                    && m.capacity <= g.max_capacity
                    && m.capacity <= file_len =>
            {
                m.capacity
            }
            _ => v.capacity,
        };
        let maps = MapGeom::of(&g, capacity);
        let meta = newest(Some(capacity));
        let heap_end = maps.heap_end();
        let header_bump = (!repaired.contains(&"bump")).then_some(patched.bump);
        let meta_bump = meta.map(|m| m.bump.clamp(g.data_start, heap_end) / 8 * 8);
        let limit = match (header_bump, meta_bump) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => heap_end,
        };
        let mem = Backing::file(f, capacity)?;
        Ok(Source {
            mem,
            raw: patched,
            g,
            capacity,
            maps,
            limit,
            meta,
            header_clean: v.clean && repaired.is_empty(),
            header_repaired: repaired,
        })
    }

    pub(super) fn word(&self, off: u64) -> u64 {
        self.mem.word(off).load(Ordering::Relaxed)
    }
}
