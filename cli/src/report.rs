//! `inspect` and `verify`: what an arena file holds, in one vocabulary (see [`GLOSSARY`]).

use crate::json::{Object, Value};
use crate::{Invocation, Outcome, FAILED, OK, PROBLEMS};
use parena::{Handle, HeaderInfo, Problem, Report, Stats};

/// The words the tool uses for the bytes of a heap; printed by `--help`. Every heap byte below
/// the bump offset is in exactly one of the first six kinds, and the seven kinds add up to the
/// heap (`Stats::heap_end - data_start`; the start and flush maps after it are not heap).
pub const GLOSSARY: &str = "\
what the words mean (every byte of the heap is exactly one of these):
  live            blocks handed out and not freed (bytes as requested); 'pending' ones are still
                  being written (their BlockMut is out, or was when the process died)
  free, listed    freed segments on the free lists: the next allocations reuse them
  free, unlisted  free segments on no list (left by a crash or a race); the next writable open
                  after a crash lists them again
  padding         fillers between blocks: alignment and remainders too small to list; they
                  become free space when a neighbour is freed and a repair merges them
  gaps            tails of per-thread chunks never allocated (a thread's chunk at close, or a
                  crash's leftovers)
  headers         block headers and the rounding of block sizes
  never reserved  the heap past the bump offset: not yet handed to any thread (Stats::remaining)
the arena's capacity is the file header, the heap, and the start and flush maps after the heap
(in a growable arena, format version 5, the maps lie between the file header and the heap, sized
for its maximum, and the heap ends at the capacity)
";

/// The heap's bytes by kind, from the header and a walk.
struct Usage {
    /// `heap_end - data_start`: the seven kinds below add up to it.
    heap: u64,
    /// The start and flush maps: after the heap (`capacity - heap_end`), or in a growable arena
    /// before it (`data_start` less the file header and the reserved area).
    maps: u64,
    /// The maps lie before the heap (a growable arena).
    maps_first: bool,
    live_blocks: u64,
    live: u64,
    pending_blocks: u64,
    listed_segments: u64,
    listed: u64,
    unlisted_segments: u64,
    unlisted: u64,
    padding: u64,
    gaps: u64,
    headers: u64,
    never_reserved: u64,
}

impl Usage {
    fn new(h: &HeaderInfo, r: &Report, s: &Stats) -> Usage {
        let unlisted = r.free_bytes.saturating_sub(r.listed_bytes);
        // The walk counts unlisted free segments inside `leaked_bytes` too; padding is the rest.
        let padding = r.leaked_bytes.saturating_sub(unlisted);
        let reserved = h.bump.saturating_sub(h.data_start);
        let counted = r.live_bytes + r.free_bytes + padding + r.gap_bytes;
        let maps_first = h.format_version == parena::GROWABLE_FORMAT_VERSION;
        let header_and_reserved =
            (parena::HEADER_SIZE + u64::from(h.reserved_len)).div_ceil(4096) * 4096;
        Usage {
            heap: s.heap_end.saturating_sub(h.data_start),
            maps: if maps_first {
                h.data_start.saturating_sub(header_and_reserved)
            } else {
                h.capacity.saturating_sub(s.heap_end)
            },
            maps_first,
            live_blocks: r.live_blocks,
            live: r.live_bytes,
            pending_blocks: r.pending_blocks,
            listed_segments: r.listed_segments,
            listed: r.listed_bytes,
            unlisted_segments: r.free_segments.saturating_sub(r.listed_segments),
            unlisted,
            padding,
            gaps: r.gap_bytes,
            headers: reserved.saturating_sub(counted),
            never_reserved: s.remaining,
        }
    }

    fn json(&self) -> Object {
        Object::new()
            .set("heap_bytes", self.heap)
            .set("map_bytes", self.maps)
            .set("live_blocks", self.live_blocks)
            .set("live_bytes", self.live)
            .set("pending_blocks", self.pending_blocks)
            .set("free_listed_segments", self.listed_segments)
            .set("free_listed_bytes", self.listed)
            .set("free_unlisted_segments", self.unlisted_segments)
            .set("free_unlisted_bytes", self.unlisted)
            .set("padding_bytes", self.padding)
            .set("gap_bytes", self.gaps)
            .set("header_bytes", self.headers)
            .set("never_reserved_bytes", self.never_reserved)
    }
}

/// `n` bytes for people: `512 B`, `4.0 KiB`, `64.0 MiB`, `1.50 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `part` as a percentage of `whole`.
fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.1} %", 100.0 * part as f64 / whole as f64)
}

fn freelist_name(h: &HeaderInfo) -> String {
    format!("{:?}", h.freelist).to_lowercase()
}

/// Opens and walks the file; on failure prints the error (naming the path) and gives the exit
/// status to end with.
fn open_and_walk(inv: &Invocation) -> Result<(HeaderInfo, Report, Stats), Outcome> {
    let mut arena = inv.open().map_err(|msg| {
        eprintln!("parena: {msg}");
        Outcome(FAILED)
    })?;
    let header = arena.header();
    let stats = arena.stats();
    let report = arena.verify().map_err(|e| {
        eprintln!("parena: {}: heap walk failed: {e}", inv.path.display());
        Outcome(FAILED)
    })?;
    Ok((header, report, stats))
}

/// The header said CLEAN but failed its seal: damage, not a crash.
fn header_damaged(r: &Report) -> bool {
    r.problems
        .iter()
        .any(|p| matches!(p, Problem::HeaderChecksum { .. }))
}

/// What the last close left, in words.
fn last_close(h: &HeaderInfo, r: &Report) -> &'static str {
    if header_damaged(r) {
        "DAMAGED: the header says clean but fails its checksum; the next writable open recovers it"
    } else if h.clean {
        "clean"
    } else {
        "NOT clean: the writer died; the next writable open recovers it"
    }
}

fn problems(r: &Report) -> Vec<String> {
    r.problems.iter().map(|p| format!("{p:?}")).collect()
}

fn status(r: &Report) -> Outcome {
    Outcome(if r.is_clean() { OK } else { PROBLEMS })
}

/// `parena inspect FILE`.
pub fn inspect(inv: &Invocation) -> Outcome {
    let (h, r, s) = match open_and_walk(inv) {
        Ok(v) => v,
        Err(o) => return o,
    };
    let u = Usage::new(&h, &r, &s);
    let file_len = std::fs::metadata(&inv.path).map(|m| m.len()).unwrap_or(0);
    let path = inv.path.display().to_string();
    let roots: Vec<(usize, u64)> = h
        .roots
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, v)| *v != 0)
        .collect();
    let histogram: Vec<(u64, u64)> = r
        .free_histogram
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, &n)| (1u64 << (i + 4), n))
        .collect();

    if inv.json {
        let header = Object::new()
            .set("format_version", u64::from(h.format_version))
            .set("magic_version", u64::from(h.magic_version))
            .set("arena_id", format!("{:#018x}", h.arena_id))
            .set("freelist", freelist_name(&h))
            .set("capacity", h.capacity)
            .set("max_capacity", h.max_capacity)
            .set("offset_unit", h.offset_unit)
            .set("data_start", h.data_start)
            .set("chunk_size", h.chunk_size)
            .set("min_segment", u64::from(h.min_segment))
            .set("reserved_len", u64::from(h.reserved_len))
            .set("bump", h.bump)
            .set("high_water", h.high_water)
            .set("discarded", h.discarded)
            .set("open_count", h.open_count)
            .set("closed_cleanly", h.clean)
            .set("header_damaged", header_damaged(&r))
            .set(
                "roots",
                roots
                    .iter()
                    .map(|&(slot, v)| {
                        Object::new()
                            .set("slot", slot as u64)
                            .set("value", Value::word(v))
                    })
                    .collect::<Vec<_>>(),
            );
        let out = Object::new()
            .set("path", path)
            .set("file_bytes", file_len)
            .set("header", header)
            .set("usage", u.json())
            .set(
                "free_segment_sizes",
                histogram
                    .iter()
                    .map(|&(min, n)| Object::new().set("min_bytes", min).set("count", n))
                    .collect::<Vec<_>>(),
            )
            .set(
                "walk",
                Object::new()
                    .set("clean", r.is_clean())
                    .set("problems", problems(&r)),
            );
        println!("{}", out.to_json());
        return status(&r);
    }

    println!("{path}  ({} on disk)", bytes(file_len));
    println!("  last close      {}", last_close(&h, &r));
    println!(
        "  format          version {}, magic_version {}, freelist {}",
        h.format_version,
        h.magic_version,
        freelist_name(&h)
    );
    println!(
        "  arena id        {:#018x}, opened {} times",
        h.arena_id, h.open_count
    );
    if u.maps_first {
        println!(
            "  capacity        {} = file header {} + start and flush maps {} + heap {}",
            bytes(h.capacity),
            bytes(h.data_start - u.maps),
            bytes(u.maps),
            bytes(u.heap)
        );
        println!(
            "  maximum         {} (grows while open, in steps; the maps are sized for it)",
            bytes(h.max_capacity)
        );
        if h.offset_unit > 8 {
            println!(
                "  offset unit     {} B (a wide arena: handles count offsets in it, and every \
                 block is aligned to it)",
                h.offset_unit
            );
        }
    } else {
        println!(
            "  capacity        {} = file header {} + heap {} + start and flush maps {}",
            bytes(h.capacity),
            bytes(h.data_start),
            bytes(u.heap),
            bytes(u.maps)
        );
        println!(
            "  maximum         {} (fixed while open; a reopen with a larger capacity grows it)",
            bytes(h.max_capacity)
        );
    }
    println!(
        "  chunk size      {} (each thread bumps inside its own chunk)",
        bytes(h.chunk_size)
    );
    println!(
        "  reserved area   {} (the user's, in the file header)",
        bytes(u64::from(h.reserved_len))
    );
    println!(
        "  bump            at {} of the heap ({}); high water {}",
        bytes(h.bump.saturating_sub(h.data_start)),
        share(h.bump.saturating_sub(h.data_start), u.heap),
        bytes(h.high_water.saturating_sub(h.data_start))
    );
    println!();
    println!(
        "heap by kind (from a walk; `parena --help` says what each kind is)          share of heap"
    );
    let row = |name: &str, count: Option<u64>, n: u64, note: String| {
        let count = count.map_or(String::new(), |c| format!("{c:>9}"));
        let line = format!(
            "  {name:<16}{count:>9}  {:>10}  {:>7}  {note}",
            bytes(n),
            share(n, u.heap)
        );
        println!("{}", line.trim_end());
    };
    row(
        "live",
        Some(u.live_blocks),
        u.live,
        if u.pending_blocks > 0 {
            format!("{} pending", u.pending_blocks)
        } else {
            String::new()
        },
    );
    row(
        "free, listed",
        Some(u.listed_segments),
        u.listed,
        "reused by the next allocations".into(),
    );
    row(
        "free, unlisted",
        Some(u.unlisted_segments),
        u.unlisted,
        if u.unlisted > 0 {
            "listed again by the next recovering open".into()
        } else {
            String::new()
        },
    );
    row("padding", None, u.padding, "alignment fillers".into());
    row("gaps", None, u.gaps, "chunk tails never allocated".into());
    row(
        "headers",
        None,
        u.headers,
        "block headers and size rounding".into(),
    );
    row(
        "never reserved",
        None,
        u.never_reserved,
        "room left past the bump".into(),
    );
    if !histogram.is_empty() {
        println!();
        println!("free-segment sizes (listed and unlisted)");
        for (min, n) in &histogram {
            println!("  {:>10} and up  {n:>9}", bytes(*min));
        }
    }
    if !roots.is_empty() {
        println!();
        println!("roots (slot: value, in decimal like the handles of `parena blocks`)");
        for (slot, v) in &roots {
            let h = Handle::from_u64(*v);
            println!(
                "  {slot:>2}: {v}  (as a handle: offset {}, generation {})",
                h.offset(),
                h.generation()
            );
        }
    }
    println!();
    print_walk(&r);
    status(&r)
}

fn print_walk(r: &Report) {
    if r.is_clean() {
        println!("walk: clean (every block header and free-list link checked)");
    } else {
        println!("walk: {} PROBLEMS", r.problems.len());
        for p in problems(r) {
            println!("  {p}");
        }
    }
}

/// `parena verify FILE`.
pub fn verify(inv: &Invocation) -> Outcome {
    let (h, r, _) = match open_and_walk(inv) {
        Ok(v) => v,
        Err(o) => return o,
    };
    if inv.json {
        let out = Object::new()
            .set("path", inv.path.display().to_string())
            .set("closed_cleanly", h.clean)
            .set("header_damaged", header_damaged(&r))
            .set("clean", r.is_clean())
            .set("live_blocks", r.live_blocks)
            .set("live_bytes", r.live_bytes)
            .set("problems", problems(&r));
        println!("{}", out.to_json());
    } else {
        print!("{}: ", inv.path.display());
        if header_damaged(&r) {
            print!("header DAMAGED (says clean, fails its checksum); ");
        } else if !h.clean {
            print!("not closed cleanly (recovery pending); ");
        }
        println!("{} live blocks ({})", r.live_blocks, bytes(r.live_bytes));
        print_walk(&r);
    }
    status(&r)
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(4096), "4.0 KiB");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }
}
