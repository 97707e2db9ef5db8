//! Prints what an arena file holds: header, clean/dirty state, usage, free-segment sizes and the
//! result of a heap walk. Opens read-only, so it never changes the file (a dirty file stays dirty:
//! recovery runs at the next writable open).
//!
//! ```sh
//! cargo run --example inspect -- FILE [MAGIC_VERSION]
//! ```

use parena::{Error, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: inspect FILE [MAGIC_VERSION]");
        std::process::exit(2);
    };
    let magic: u16 = args.next().map(|v| v.parse()).transpose()?.unwrap_or(0);
    let opts = Options::new().read_only(true).magic_version(magic);
    // SAFETY: the caller points us at a file nothing rewrites while we look (a writer would hold
    // the lock and make this open fail with `Locked`).
    let mut arena = match unsafe { opts.map_file(&path) } {
        Ok(a) => a,
        Err(Error::MagicVersion { found, .. }) => {
            eprintln!("{path}: created with magic_version {found}; pass it as the second argument");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("{path}: not openable as a parena arena: {e}");
            std::process::exit(1);
        }
    };
    let h = arena.header();
    println!("file            {path}");
    println!("format version  {}", h.format_version);
    println!("magic version   {}", h.magic_version);
    println!("arena id        {:#018x}", h.arena_id);
    println!("freelist        {:?}", h.freelist);
    println!("chunk size      {} B", h.chunk_size);
    println!("min segment     {} B", h.min_segment);
    println!("reserved area   {} B", h.reserved_len);
    println!("capacity        {} B", h.capacity);
    println!("data start      {}", h.data_start);
    println!(
        "bump            {} ({} B used, {:.1} %)",
        h.bump,
        h.bump - h.data_start,
        100.0 * (h.bump - h.data_start) as f64 / (h.capacity - h.data_start) as f64
    );
    println!("high water      {}", h.high_water);
    println!("discarded       {} B", h.discarded);
    println!("opens           {}", h.open_count);
    println!(
        "last close      {}",
        if arena.was_clean() {
            "clean"
        } else {
            "NOT clean: recovery pending (runs at the next writable open)"
        }
    );
    for (i, r) in h.roots.iter().enumerate().filter(|(_, r)| **r != 0) {
        println!("root[{i:2}]        {r:#x}");
    }
    let report = arena.verify()?;
    println!();
    println!(
        "heap walk       {}",
        if report.is_clean() {
            "clean"
        } else {
            "PROBLEMS FOUND"
        }
    );
    println!(
        "live blocks     {} ({} B, {} pending)",
        report.live_blocks, report.live_bytes, report.pending_blocks
    );
    println!(
        "free segments   {} ({} B; {} listed, {} B)",
        report.free_segments, report.free_bytes, report.listed_segments, report.listed_bytes
    );
    println!(
        "leaked          {} B (fillers and unlisted free space)",
        report.leaked_bytes
    );
    println!("never used      {} B (chunk tails)", report.gap_bytes);
    println!("free segment sizes:");
    for (i, &n) in report
        .free_histogram
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
    {
        println!("  {:>12} B+  {n}", 1u64 << (i + 4));
    }
    for p in &report.problems {
        println!("problem: {p:?}");
    }
    if !report.is_clean() {
        std::process::exit(1);
    }
    Ok(())
}
