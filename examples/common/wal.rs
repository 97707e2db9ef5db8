//! An append-only write-ahead log of checksummed records in a parena arena.
//!
//! Shared by `examples/wal.rs` and the `engine` tests (both include this file with `#[path]`).
//!
//! ## Layout
//!
//! The log is a chain of *segments*, each one arena block; the first segment's handle is kept in
//! a root slot, and each segment links to the next by handle. A segment's length is its block's
//! length, so segments of different sizes can follow one another.
//!
//! ```text
//! segment:  +0   next       u64   handle of the next segment (0 = none); atomic
//!           +8   first_seq  u64   sequence number of its first record
//!           +16  records, each at a multiple of 8:
//! record:   +0   len        u32   payload length (u32::MAX: end of segment, go to `next`)
//!           +4   checksum   u32   CRC-32C of payload ‖ len ‖ seq
//!           +8   seq        u64   one more than the record before it
//!           +16  payload, zero-padded to 8
//! ```
//!
//! ## Torn tails
//!
//! A crash can stop a record at any byte: the length, the checksum, the sequence number or the
//! payload may be missing or old. Replay accepts a record only when its length fits the segment,
//! its sequence number is the next one, and its checksum matches; the first record that fails
//! ends the log. Whatever the crash left there, the check fails unless every byte was written
//! (up to a CRC collision, 2^-32). Space past the end is zero in a fresh segment, and is zeroed
//! (and made durable) when a log is reopened after a torn tail, so old bytes can never line up
//! behind a new record; segments linked after the torn one are freed.
//!
//! ## Appends and syncs
//!
//! Appenders on any number of threads take a short lock that assigns the sequence number and
//! the position and copies the record in (the log's order is one point of serialisation
//! whatever the scheme; the payload's checksum is computed before the lock). `sync` flushes the
//! bytes written since the last sync, segment by segment, then the arena header, and returns the
//! last sequence number now durable. Concurrent syncs share work: one that finds its records already flushed by
//! another returns at once (group commit). Starting a new segment runs a full `Arena::flush`, so
//! the segment's place in the arena's layout survives a power cut, before any record goes into it.

use parena::{Arena, Error, Handle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Bytes before the first record of a segment.
pub const SEGMENT_HEADER: usize = 16;
/// Bytes before a record's payload.
pub const RECORD_HEADER: usize = 16;
/// The `len` of the end-of-segment marker.
const END: u32 = u32::MAX;
/// The default length of a new segment.
pub const DEFAULT_SEGMENT_LEN: usize = 1 << 20;

const CRC32C_POLY: u32 = 0x82f6_3b78;

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ CRC32C_POLY
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC_TABLE: [u32; 256] = crc_table();

fn crc_update(mut c: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    c
}

/// CRC-32C (Castagnoli) of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    !crc_update(!0, bytes)
}

/// A record's checksum, continuing the payload's running CRC with the length and the sequence
/// number.
fn record_checksum(payload_crc: u32, len: u32, seq: u64) -> u32 {
    !crc_update(
        crc_update(payload_crc, &len.to_le_bytes()),
        &seq.to_le_bytes(),
    )
}

/// Bytes a record with `len` payload bytes takes.
pub const fn record_span(len: usize) -> usize {
    RECORD_HEADER + len.div_ceil(8) * 8
}

/// A position in the log: the record slot at `pos` of segment `seg`.
#[derive(Clone, Copy, Debug)]
struct Mark {
    seg: Handle,
    /// Length of `seg`'s block.
    seg_len: usize,
    /// Byte offset inside `seg`: always `SEGMENT_HEADER..=seg_len`, a multiple of 8.
    pos: usize,
    /// Sequence number of the last record before `pos` (0: none yet).
    seq: u64,
}

/// What [`Wal::open`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayInfo {
    /// Records replayed.
    pub records: u64,
    /// Sequence number of the last one (0 when the log is empty).
    pub last_seq: u64,
    /// Whether the log ended at a damaged (torn) record rather than at clean zeros.
    pub torn: bool,
    /// Segments after the torn one that were freed.
    pub dropped_segments: u64,
}

/// An append-only log in a parena arena. Share it between threads by reference (or an `Arc`).
pub struct Wal {
    arena: Arena,
    segment_len: usize,
    tail: Mutex<Mark>,
    synced: Mutex<Mark>,
}

fn lock(m: &Mutex<Mark>) -> MutexGuard<'_, Mark> {
    // Every update of a `Mark` is one assignment, so a panic elsewhere cannot leave it torn.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Wal {
    /// Opens the log whose first segment is in root slot `slot` (creating it when the slot is 0),
    /// replays every record in order through `each(seq, payload)`, and returns the log ready for
    /// appends after the last good record. New segments get `segment_len` bytes.
    ///
    /// # Errors
    /// Allocation and flush errors; [`Error::TooLarge`] when `segment_len` cannot hold a record;
    /// a slot or link that names no live block ends the log (it is not an error).
    ///
    /// # Safety
    /// The log's segments must be used only through this `Wal` while it lives: nobody may free or
    /// write them through another clone of the arena or a hand-built handle, and the slot must
    /// hold a log written by this module (or 0).
    pub unsafe fn open(
        arena: Arena,
        slot: usize,
        segment_len: usize,
        mut each: impl FnMut(u64, &[u8]),
    ) -> Result<(Wal, ReplayInfo), Error> {
        if segment_len < SEGMENT_HEADER + RECORD_HEADER + 8 || segment_len > u32::MAX as usize {
            return Err(Error::TooLarge {
                requested: segment_len as u64,
                max: u64::from(u32::MAX),
            });
        }
        let first = Handle::from_u64(arena.root(slot));
        let mut wal = Wal {
            arena,
            segment_len: segment_len / 8 * 8,
            tail: Mutex::new(Mark {
                seg: Handle::NULL,
                seg_len: 0,
                pos: 0,
                seq: 0,
            }),
            synced: Mutex::new(Mark {
                seg: Handle::NULL,
                seg_len: 0,
                pos: 0,
                seq: 0,
            }),
        };
        let mut info = ReplayInfo::default();
        let end = match wal.segment(first)? {
            None => {
                let seg = wal.new_segment(1)?;
                wal.arena.set_root(slot, seg.to_u64())?;
                wal.arena.flush_header()?;
                Mark {
                    seg,
                    seg_len: wal.segment_len,
                    pos: SEGMENT_HEADER,
                    seq: 0,
                }
            }
            Some(m) => wal.replay(m, &mut info, &mut each)?,
        };
        *wal.tail.get_mut().unwrap_or_else(|e| e.into_inner()) = end;
        *wal.synced.get_mut().unwrap_or_else(|e| e.into_inner()) = end;
        Ok((wal, info))
    }

    /// The arena the log lives in.
    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    /// A segment's start mark, or `None` when `h` names no live block.
    fn segment(&self, h: Handle) -> Result<Option<Mark>, Error> {
        if h.is_null() {
            return Ok(None);
        }
        let Ok(seg_len) = self.arena.len_of(h) else {
            return Ok(None);
        };
        if seg_len < SEGMENT_HEADER + RECORD_HEADER {
            return Ok(None);
        }
        // SAFETY: the segment is live (checked above) and only this `Wal` frees it (contract of
        // `open`); `first_seq` is written once, before the segment is published.
        let first_seq = unsafe { self.arena.get_range(h, 8, 8)? };
        let first_seq = u64::from_le_bytes(first_seq.try_into().expect("8 bytes"));
        Ok(Some(Mark {
            seg: h,
            seg_len,
            pos: SEGMENT_HEADER,
            seq: first_seq.wrapping_sub(1),
        }))
    }

    /// The `next` link of segment `seg`.
    fn next_word(&self, seg: Handle) -> Result<&AtomicU64, Error> {
        // SAFETY: only this `Wal` frees segments (contract of `open`), and never one it still
        // links to; word 0 of a segment is only accessed atomically once the segment is
        // published.
        unsafe { self.arena.atomic_u64(seg, 0) }
    }

    /// Allocates and publishes an empty segment whose first record will be `first_seq`.
    fn new_segment(&self, first_seq: u64) -> Result<Handle, Error> {
        let mut b = self.arena.alloc(self.segment_len)?;
        b[8..16].copy_from_slice(&first_seq.to_le_bytes());
        let h = b.into_handle();
        // A full flush: the segment's place in the layout (its start in the flush map) becomes
        // durable with its header, so a power cut keeps the block; a range flush of its bytes
        // alone would not (docs/recovery.md). Appends into it then need only range flushes.
        self.arena.flush()?;
        Ok(h)
    }

    /// Reads records from `m` on, feeding them to `each`; at the end, cleans what lies past the
    /// last good record and returns the mark to append at.
    fn replay(
        &self,
        mut m: Mark,
        info: &mut ReplayInfo,
        each: &mut impl FnMut(u64, &[u8]),
    ) -> Result<Mark, Error> {
        loop {
            if m.pos + RECORD_HEADER > m.seg_len {
                match self.follow(m)? {
                    Some(next) => {
                        m = next;
                        continue;
                    }
                    None => break,
                }
            }
            // SAFETY: the segment is live and only this `Wal` writes or frees it; nothing else
            // runs while the log is opened. Bytes past 16 are never accessed atomically.
            let head = unsafe { self.arena.get_range(m.seg, m.pos, RECORD_HEADER)? };
            let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
            let sum = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
            let seq = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
            if len == END {
                match self.follow(m)? {
                    Some(next) => {
                        m = next;
                        continue;
                    }
                    None => {
                        info.torn = true;
                        break;
                    }
                }
            }
            let span = record_span(len as usize);
            if m.pos + span > m.seg_len || seq != m.seq.wrapping_add(1) {
                info.torn = len != 0 || sum != 0 || seq != 0;
                break;
            }
            // SAFETY: as above; the range lies inside the segment (checked).
            let payload = unsafe {
                self.arena
                    .get_range(m.seg, m.pos + RECORD_HEADER, len as usize)?
            };
            if record_checksum(crc_update(!0, payload), len, seq) != sum {
                info.torn = true;
                break;
            }
            each(seq, payload);
            info.records += 1;
            info.last_seq = seq;
            m.pos += span;
            m.seq = seq;
        }
        self.truncate_after(m, info)?;
        Ok(m)
    }

    /// The segment after `m`'s, if it is live and continues the sequence.
    fn follow(&self, m: Mark) -> Result<Option<Mark>, Error> {
        // Acquire: pairs with the Release store that linked the segment.
        let next = Handle::from_u64(self.next_word(m.seg)?.load(Ordering::Acquire));
        Ok(self.segment(next)?.filter(|n| n.seq == m.seq))
    }

    /// Zeroes `m`'s segment from `m.pos` on and frees the segments linked after it, each step
    /// durable before the next, so that a crash at any point leaves a log that replays to `m`.
    fn truncate_after(&self, m: Mark, info: &mut ReplayInfo) -> Result<(), Error> {
        let rest = m.seg_len - m.pos;
        // SAFETY: the segment is live; nothing else touches it while the log is opened.
        let tail = unsafe { self.arena.get_range_mut(m.seg, m.pos, rest)? };
        if tail.iter().any(|&b| b != 0) {
            tail.fill(0);
            self.arena
                .flush_range(self.arena.offset_of(m.seg) + m.pos as u64, rest as u64)?;
        }
        // Relaxed: only this thread uses the log while it is opened.
        let mut next = Handle::from_u64(self.next_word(m.seg)?.load(Ordering::Relaxed));
        if next.is_null() {
            return Ok(());
        }
        // The zeroed tail no longer ends in an end marker, so replay cannot reach these segments
        // any more: free them, then unlink.
        while let Some(seg) = self.segment(next)? {
            let after = Handle::from_u64(self.next_word(seg.seg)?.load(Ordering::Relaxed));
            self.arena.free(seg.seg)?;
            info.dropped_segments += 1;
            next = after;
        }
        self.next_word(m.seg)?.store(0, Ordering::Relaxed);
        self.arena.flush_range(self.arena.offset_of(m.seg), 8)?;
        Ok(())
    }

    /// Appends one record and returns its sequence number. The record is durable once a
    /// [`Wal::sync`] that started after this returned has returned.
    ///
    /// # Errors
    /// [`Error::TooLarge`] when the record cannot fit in a segment; allocation and flush errors
    /// when a new segment is needed.
    pub fn append(&self, payload: &[u8]) -> Result<u64, Error> {
        let span = record_span(payload.len());
        if span + SEGMENT_HEADER > self.segment_len || payload.len() >= END as usize {
            return Err(Error::TooLarge {
                requested: payload.len() as u64,
                max: (self.segment_len - SEGMENT_HEADER - RECORD_HEADER) as u64,
            });
        }
        let payload_crc = crc_update(!0, payload);
        let len = payload.len() as u32;
        let mut t = lock(&self.tail);
        if t.pos + span > t.seg_len {
            self.start_segment(&mut t)?;
        }
        let seq = t.seq + 1;
        // SAFETY: `pos..pos + span` of the tail segment has not been handed to anyone: appends
        // take it under the tail lock, and readers (replay, sync's msync) never hold references
        // to bytes past the tail. The segment is not freed while the log is open.
        let rec = unsafe { self.arena.get_range_mut(t.seg, t.pos, span)? };
        rec[..4].copy_from_slice(&len.to_le_bytes());
        rec[8..16].copy_from_slice(&seq.to_le_bytes());
        rec[RECORD_HEADER..RECORD_HEADER + payload.len()].copy_from_slice(payload);
        rec[4..8].copy_from_slice(&record_checksum(payload_crc, len, seq).to_le_bytes());
        t.pos += span;
        t.seq = seq;
        Ok(seq)
    }

    /// Ends the tail segment and links a new one, durable before any record goes in.
    #[cold]
    fn start_segment(&self, t: &mut Mark) -> Result<(), Error> {
        let seg = self.new_segment(t.seq + 1)?;
        if t.pos + RECORD_HEADER <= t.seg_len {
            // SAFETY: as in `append`: the range past the tail is ours under the tail lock.
            let end = unsafe { self.arena.get_range_mut(t.seg, t.pos, 4)? };
            end.copy_from_slice(&END.to_le_bytes());
        }
        // Release: publishes the new segment's header to whoever follows the link (Acquire in
        // `follow` and `sync`).
        self.next_word(t.seg)?
            .store(seg.to_u64(), Ordering::Release);
        self.arena.flush_range(self.arena.offset_of(t.seg), 8)?;
        *t = Mark {
            seg,
            seg_len: self.segment_len,
            pos: SEGMENT_HEADER,
            seq: t.seq,
        };
        Ok(())
    }

    /// Makes every record appended before the call durable: the written range, then the arena
    /// header. Returns the last sequence number now durable.
    ///
    /// # Errors
    /// [`Error::Io`] from the flushes.
    pub fn sync(&self) -> Result<u64, Error> {
        let target = *lock(&self.tail);
        let mut synced = lock(&self.synced);
        if synced.seq >= target.seq {
            return Ok(synced.seq);
        }
        let mut m = *synced;
        while m.seg != target.seg {
            self.arena.flush_range(
                self.arena.offset_of(m.seg) + m.pos as u64,
                (m.seg_len - m.pos) as u64,
            )?;
            // Acquire: pairs with the Release link store in `start_segment`.
            let next = Handle::from_u64(self.next_word(m.seg)?.load(Ordering::Acquire));
            m = Mark {
                seg: next,
                seg_len: self.arena.len_of(next)?,
                pos: SEGMENT_HEADER,
                seq: m.seq,
            };
        }
        if target.pos > m.pos {
            self.arena.flush_range(
                self.arena.offset_of(m.seg) + m.pos as u64,
                (target.pos - m.pos) as u64,
            )?;
        }
        self.arena.flush_header()?;
        *synced = target;
        Ok(target.seq)
    }

    /// Sequence number of the last record appended (0 when none).
    pub fn last_seq(&self) -> u64 {
        lock(&self.tail).seq
    }

    /// Arena offset where the next record will be written (if it fits in the tail segment).
    pub fn tail_offset(&self) -> u64 {
        let t = lock(&self.tail);
        self.arena.offset_of(t.seg) + t.pos as u64
    }
}
