//! `parena blocks FILE`: every live block, for finding orphans after a crash and for dumping an
//! arena's contents with other tools.

use crate::json::{Object, Value};
use crate::report::bytes;
use crate::{Invocation, Outcome, FAILED, OK};
use parena::LiveBlock;
use std::io::Write;

/// `parena blocks FILE`: one line per live block (handle, offset, generation, length, and
/// whether its writer had finished), or a JSON object with a `blocks` array.
pub fn blocks(inv: &Invocation) -> Outcome {
    let mut arena = match inv.open() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("parena: {msg}");
            return Outcome(FAILED);
        }
    };
    let live = match arena.live_blocks() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("parena: {}: heap walk failed: {e}", inv.path.display());
            return Outcome(FAILED);
        }
    };
    let total: u64 = live.iter().map(|b| b.len).sum();
    if inv.json {
        let list = live
            .iter()
            .map(|b| {
                Value::Object(
                    Object::new()
                        .set("handle", Value::word(b.handle.to_u64()))
                        .set("offset", b.handle.offset())
                        .set("generation", u64::from(b.handle.generation()))
                        .set("len", b.len)
                        .set("pending", b.pending),
                )
            })
            .collect();
        let out = Object::new()
            .set("path", inv.path.display().to_string())
            .set("count", live.len() as u64)
            .set("bytes", total)
            .set("blocks", Value::Array(list));
        println!("{}", out.to_json());
    } else if print_table(inv, &live, total).is_err() {
        // The reader went away (`parena blocks FILE | head`): nothing more to say.
        return Outcome(OK);
    }
    Outcome(OK)
}

/// The text listing, written through one lock of stdout; an error (a closed pipe) ends it.
fn print_table(inv: &Invocation, live: &[LiveBlock], total: u64) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}: {} live blocks, {}",
        inv.path.display(),
        live.len(),
        bytes(total)
    )?;
    writeln!(
        out,
        "{:>20}  {:>14}  {:>10}  {:>12}  state",
        "handle", "offset", "generation", "length"
    )?;
    for b in live {
        writeln!(
            out,
            "{:>20}  {:>14}  {:>10}  {:>12}  {}",
            b.handle.to_u64(),
            b.handle.offset(),
            b.handle.generation(),
            b.len,
            if b.pending {
                "pending (its writer never finished)"
            } else {
                "published"
            }
        )?;
    }
    out.flush()
}
