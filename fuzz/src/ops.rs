//! The `ops` target: a sequence of operations on one arena against the model of its live blocks.

use crate::subject::{create, Subject};
use crate::{Op, OpsInput, MAX_OPS};
use parena::{Error, Handle};
use parena_testkit::layout::forge_handle;
use parena_testkit::{alloc_checked, check_all, check_report, expect_refused, fill, holds, Model};

/// Runs one `ops` input.
pub fn run_ops(input: &OpsInput) {
    let cfg = &input.config;
    let (arena, path) = create(cfg, 64);
    let mut s = Subject {
        arena: Some(arena),
        path,
        policy: cfg.policy,
        reserved: u32::from(cfg.reserved % 6000),
    };
    let mut m = Model::default();
    for op in input.ops.iter().take(MAX_OPS) {
        step(&mut s, &mut m, op);
        check_all(s.a(), &m);
        let st = s.a().stats();
        assert_eq!(st.data_start + st.allocated + st.remaining, st.heap_end);
    }
    let r = s.a_mut().verify().expect("final verify");
    check_report(&r, &m, "final verify");
}

fn step(s: &mut Subject, m: &mut Model, op: &Op) {
    match *op {
        Op::Alloc {
            len,
            layout,
            align,
            seed,
            probe,
        } => {
            let al = layout.then(|| 1usize << (align % 13));
            alloc_checked(s.a(), m, usize::from(len % 2049), al, seed, probe);
        }
        Op::AllocBig { kb, extra, seed } => {
            let len = usize::from(kb % 65) * 1024 + usize::from(extra);
            alloc_checked(s.a(), m, len, None, seed, false);
        }
        Op::Free { pick } => {
            if let Some(l) = m.pick(pick) {
                s.a().free(l.h).expect("free a live block");
                m.remove(l.h);
                expect_refused(s.a(), l.h);
            }
        }
        Op::Stale { pick } => {
            if !m.dead.is_empty() {
                let h = m.dead[pick as usize % m.dead.len()];
                assert!(!m.is_live(h), "a dead handle is live again: {h:?}");
                expect_refused(s.a(), h);
            }
        }
        Op::Forged { raw } => {
            let h = Handle::from_u64(raw);
            if !m.is_live(h) {
                expect_refused(s.a(), h);
            }
        }
        Op::ForgedNear {
            pick,
            delta,
            gen_delta,
        } => {
            if let Some(l) = m.pick(pick) {
                let off = (l.h.offset() as i64 + i64::from(delta) * 8).max(0) as u64;
                let h = forge_handle(off, l.h.generation().wrapping_add(u32::from(gen_delta)));
                if !m.is_live(h) {
                    expect_refused(s.a(), h);
                }
            }
        }
        Op::Read { pick, off, len } => {
            if let Some(l) = m.pick(pick) {
                let (off, n) = (usize::from(off % 4200), usize::from(len % 4200));
                let mut buf = vec![0u8; n];
                match s.a().read(l.h, off, &mut buf) {
                    Ok(()) => {
                        assert!(off + n <= l.len, "read past the end succeeded");
                        assert!(holds(&buf, l.seed, off), "partial read mismatch");
                    }
                    Err(Error::OutOfBounds { .. }) => assert!(off + n > l.len),
                    Err(e) => panic!("read: {e:?}"),
                }
            }
        }
        Op::Get { pick } => {
            if let Some(l) = m.pick(pick) {
                // SAFETY: single-threaded; nothing frees or writes the block while `b` lives.
                let b = unsafe { s.a().get(l.h) }.expect("get a live block");
                assert_eq!(b.len(), l.len);
                assert!(holds(b, l.seed, 0));
            }
        }
        Op::Write { pick, seed } => {
            if let Some(l) = m.pick(pick) {
                {
                    // SAFETY: single-threaded; no other reference to the block exists while `b`
                    // lives, and it is not freed.
                    let b = unsafe { s.a().get_mut(l.h) }.expect("get_mut a live block");
                    fill(b, seed, 0);
                }
                m.live.get_mut(&l.h.offset()).expect("live").seed = seed;
            }
        }
        Op::Compact => {
            let r = s.a_mut().compact().expect("compact");
            check_report(&r, m, "compact");
            let v = s.a_mut().verify().expect("verify after compact");
            check_report(&v, m, "verify after compact");
            if m.live.is_empty() {
                assert_eq!(
                    s.a().stats().allocated,
                    0,
                    "empty arena after compact: {r:?}"
                );
            }
        }
        Op::Verify => {
            let r = s.a_mut().verify().expect("verify");
            check_report(&r, m, "verify");
            assert_eq!(r.pending_blocks, 0);
        }
        Op::Flush { off, len } => {
            let a = s.a();
            a.flush().expect("flush");
            a.flush_header().expect("flush_header");
            a.flush_background().expect("flush_background");
            // A range flush covers the heap; the start and flush maps after it are `flush()`'s.
            let end = a.stats().heap_end;
            let (off, len) = (u64::from(off), u64::from(len));
            let r = a.flush_range(off, len);
            if off + len <= end {
                r.expect("flush_range in bounds");
            } else {
                assert!(matches!(r, Err(Error::OutOfBounds { .. })), "{r:?}");
            }
        }
        Op::Root { slot, value } => {
            let i = usize::from(slot) % 17;
            let r = s.a().set_root(i, value);
            if i < 16 {
                r.expect("set_root");
                m.roots[i] = value;
                assert_eq!(s.a().root(i), value);
            } else {
                assert!(matches!(r, Err(Error::OutOfBounds { .. })));
            }
        }
        Op::Reopen { mode } => {
            s.reopen(m, mode);
            for (i, &r) in m.roots.iter().enumerate() {
                assert_eq!(s.a().root(i), r, "root {i} after reopen");
            }
        }
        Op::Crash { pending, len, seed } => {
            s.crash(m, pending.then_some((usize::from(len) + 1, seed)));
        }
    }
}
