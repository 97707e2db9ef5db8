//! Simulated power loss: only flushed pages (plus a random subset of the others) survive. The open
//! must succeed and every record acknowledged by a completed `flush()` must be intact (the
//! power-cut guarantee, docs/recovery.md).

use crate::util::{power_cut, Rng};
use parena::{Error, Handle, Options};
use std::collections::BTreeMap;

fn byte(seq: u64, i: usize) -> u8 {
    (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 56)) as u8 ^ i as u8
}

#[test]
#[ignore = "long (12 s on 2 cores, debug build): 60 logs appended and flushed, each cut by a simulated power loss, reopened and checked"]
fn flushed_records_survive_power_loss() {
    cut_logs(60);
}

/// The first seeds of [`flushed_records_survive_power_loss`], in the default run.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn flushed_records_survive_a_few_power_losses() {
    cut_logs(4);
}

/// `seeds` logs appended at random and cut at a random point after their flushes: every image
/// opens and every record acknowledged by a completed flush is intact.
fn cut_logs(seeds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (mut opened, mut refused, mut lost, mut checked) = (0, 0, 0u64, 0u64);
    for seed in 1..=seeds {
        let mut rng = Rng(seed);
        let (arena, disk) = Options::new().capacity(1 << 20).simulated_disk().unwrap();
        let mut live: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
        let mut acked: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
        let steps = 100 + rng.below(3000);
        for seq in 0..steps {
            let max = if rng.below(20) == 0 { 9000 } else { 300 };
            let len = 1 + rng.below(max) as usize;
            match arena.alloc(len) {
                Ok(mut b) => {
                    for (i, x) in b.iter_mut().enumerate() {
                        *x = byte(seq, i);
                    }
                    live.insert(b.into_handle().to_u64(), (seq, len));
                }
                Err(Error::Full { .. }) => {}
                Err(e) => panic!("{e}"),
            }
            if !live.is_empty() && rng.below(3) == 0 {
                let k = *live
                    .keys()
                    .nth(rng.below(live.len() as u64) as usize)
                    .unwrap();
                arena.free(Handle::from_u64(k)).unwrap();
                live.remove(&k);
                acked.remove(&k);
            }
            if rng.below(60) == 0 {
                arena.flush().unwrap();
                acked = live.clone();
            }
        }
        // The power goes: flushed pages, plus whatever the OS happened to write back.
        let keep_one_in = 1 + rng.below(4);
        let path = dir.path().join(format!("pl{seed}"));
        match power_cut(arena, &disk, keep_one_in, &mut rng, &path) {
            Ok(mut a) => {
                opened += 1;
                assert!(!a.was_clean());
                let intact: Vec<(u64, u64, usize)> = acked
                    .iter()
                    .map(|(&h, &(seq, len))| (h, seq, len))
                    .filter(|&(h, seq, len)| record_ok(&a, h, seq, len))
                    .collect();
                checked += acked.len() as u64;
                lost += (acked.len() - intact.len()) as u64;
                let r = a.verify().unwrap();
                assert!(r.is_clean(), "seed {seed}: {r:?}");
                // The recovered arena allocates without touching acknowledged records.
                while let Ok(mut b) = a.alloc(1 + rng.below(500) as usize) {
                    b.fill(0xaa);
                }
                for &(h, seq, len) in &intact {
                    assert!(
                        record_ok(&a, h, seq, len),
                        "seed {seed}: record {seq} overwritten"
                    );
                }
            }
            Err(e) => {
                refused += 1;
                assert!(
                    matches!(e, Error::Corrupt { .. }),
                    "seed {seed}: unexpected error {e:?}"
                );
            }
        }
    }
    assert!(checked > 0);
    assert_eq!(
        (refused, lost),
        (0, 0),
        "power loss: {opened} images recovered, {refused} refused, {checked} acknowledged \
         records checked, {lost} lost"
    );
}

/// Whether record `seq` of `len` bytes is readable at handle `h` with its bytes.
fn record_ok(a: &parena::Arena, h: u64, seq: u64, len: usize) -> bool {
    let mut buf = vec![0u8; len];
    a.read(Handle::from_u64(h), 0, &mut buf).is_ok()
        && buf.iter().enumerate().all(|(i, &x)| x == byte(seq, i))
}
