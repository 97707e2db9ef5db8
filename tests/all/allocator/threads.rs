//! Blocks allocated by threads at once never overlap.

use crate::util::{check, fill, open, Rng};
use parena::Options;

#[test]
#[cfg_attr(miri, ignore = "includes a file map; the sanitizers run it")]
fn two_threads_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let arenas = [
        Options::new().capacity(32 << 20).heap().unwrap(),
        open(&Options::new().capacity(32 << 20), &dir.path().join("t")).unwrap(),
    ];
    for arena in arenas {
        let per_thread: Vec<Vec<(parena::Handle, usize)>> = std::thread::scope(|s| {
            let ts: Vec<_> = (0..2u8)
                .map(|t| {
                    let arena = &arena;
                    s.spawn(move || {
                        let mut rng = Rng(1 + u64::from(t));
                        let mut mine = Vec::new();
                        for i in 0..20_000 {
                            let len =
                                1 + rng.below(if i % 100 == 0 { 40_000 } else { 200 }) as usize;
                            mine.push((fill(arena, len, t + 1), len));
                        }
                        mine
                    })
                })
                .collect();
            ts.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let mut spans = Vec::new();
        for (t, blocks) in per_thread.iter().enumerate() {
            for &(h, len) in blocks {
                check(&arena, h, len, t as u8 + 1);
                spans.push((h.offset(), h.offset() + len as u64));
            }
        }
        spans.sort_unstable();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "blocks {w:?} overlap");
        }
    }
}
