//! `parena salvage FILE FRESH`: copies every block of a damaged arena file that two independent
//! records vouch for into the new file FRESH, at the same handles, and reports what was saved and
//! what was not (`parena::salvage`). FILE is never written; FRESH must not exist.

use crate::json::{Object, Value};
use crate::report::bytes;
use crate::{Invocation, Outcome, FAILED, OK, PROBLEMS};
use parena::{Error, LostReason, SalvageReport};

/// Runs the salvage and prints its report; exit status 0 when nothing was lost, 1 when regions
/// were lost or the header was damaged, 2 when no fresh file was written.
pub fn salvage(inv: &Invocation) -> Outcome {
    let Some(fresh) = &inv.fresh else {
        eprintln!("parena: salvage needs FILE and FRESH (the new file to write)");
        return Outcome(FAILED);
    };
    // SAFETY: the user points us at a damaged file that nothing changes while we read it, and at
    // a new path that `salvage` creates; a parena writer holding FILE makes this fail `Locked`.
    let report = match unsafe { parena::salvage(&inv.path, fresh) } {
        Ok(r) => r,
        Err(e) => {
            let p = inv.path.display();
            match e {
                Error::Exists => eprintln!(
                    "parena: {}: already exists; salvage writes a new file only",
                    fresh.display()
                ),
                Error::Locked => eprintln!("parena: {p}: a writer holds this arena open"),
                e => eprintln!("parena: {p}: cannot salvage: {e}"),
            }
            return Outcome(FAILED);
        }
    };
    if inv.json {
        println!("{}", to_json(inv, fresh, &report).to_json());
    } else {
        print_text(inv, fresh, &report);
    }
    Outcome(if report.is_complete() { OK } else { PROBLEMS })
}

fn reason(r: &LostReason) -> (&'static str, u64) {
    match *r {
        LostReason::Unwalkable { word } => ("unwalkable", word),
        LostReason::OneRecord { word } => ("one record", word),
        LostReason::NotLive { word } => ("not live", word),
        LostReason::BeyondBump { word } => ("beyond bump", word),
        LostReason::BadTail { word } => ("bad tail", word),
        LostReason::NoHeader => ("no header", 0),
        _ => ("other", 0),
    }
}

fn to_json(inv: &Invocation, fresh: &std::path::Path, r: &SalvageReport) -> Object {
    let saved = r
        .saved
        .iter()
        .map(|s| {
            Value::Object(
                Object::new()
                    .set("handle", Value::word(s.handle.to_u64()))
                    .set("offset", s.handle.offset())
                    .set("generation", u64::from(s.handle.generation()))
                    .set("len", s.len)
                    .set("foreign", s.foreign)
                    .set("pending", s.pending)
                    .set("by_walk", s.by_walk)
                    .set("by_flush_map", s.by_flush_map),
            )
        })
        .collect();
    let lost = r
        .lost
        .iter()
        .map(|l| {
            let (why, word) = reason(&l.reason);
            Value::Object(
                Object::new()
                    .set("offset", l.offset)
                    .set("len", l.len)
                    .set("reason", why)
                    .set("word", Value::word(word)),
            )
        })
        .collect();
    let repaired: Vec<Value> = r.header_repaired.iter().map(|&w| w.into()).collect();
    Object::new()
        .set("path", inv.path.display().to_string())
        .set("fresh", fresh.display().to_string())
        .set("complete", r.is_complete())
        .set("header_clean", r.header_clean)
        .set("header_repaired", Value::Array(repaired))
        .set("capacity", r.capacity)
        .set("bump", r.bump)
        .set(
            "meta_epoch",
            r.meta_epoch.map_or(Value::Str("none".into()), Value::U64),
        )
        .set("saved_blocks", r.saved.len() as u64)
        .set("saved_bytes", r.saved_bytes)
        .set("lost_regions", r.lost.len() as u64)
        .set("lost_bytes", r.lost.iter().map(|l| l.len).sum::<u64>())
        .set("roots_copied", r.roots_copied)
        .set("reserved_copied", r.reserved_copied)
        .set("gen_seed", r.gen_seed)
        .set("saved", Value::Array(saved))
        .set("lost", Value::Array(lost))
}

fn print_text(inv: &Invocation, fresh: &std::path::Path, r: &SalvageReport) {
    println!("{} -> {}", inv.path.display(), fresh.display());
    println!(
        "  header: {}{}",
        if r.header_clean { "clean" } else { "not clean" },
        if r.header_repaired.is_empty() {
            String::new()
        } else {
            format!(
                " (replaced from the meta slot: {})",
                r.header_repaired.join(", ")
            )
        }
    );
    println!(
        "  flush map: {}",
        r.meta_epoch
            .map_or("none valid".to_string(), |e| format!("meta slot epoch {e}"))
    );
    println!(
        "  saved: {} blocks, {} (roots copied: {}, reserved area: {})",
        r.saved.len(),
        bytes(r.saved_bytes),
        if r.roots_copied { "yes" } else { "no" },
        bytes(r.reserved_copied)
    );
    let lost: u64 = r.lost.iter().map(|l| l.len).sum();
    println!(
        "  not vouched for: {} regions, {}",
        r.lost.len(),
        bytes(lost)
    );
    for l in &r.lost {
        let (why, word) = reason(&l.reason);
        println!(
            "    offset {:>12}  {:>10}  {why} (word {word:#018x})",
            l.offset,
            bytes(l.len)
        );
    }
}
