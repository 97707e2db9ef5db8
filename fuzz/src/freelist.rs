//! The `freelist` target: small heaps and chunks so the free lists carry the load, with the heap
//! walk's accounting checked after every step.

use crate::subject::{create, scratch_file, Subject};
use crate::{BackingChoice, Config, FlOp, FreelistInput, MAX_OPS};
use parena::{Arena, Freelist, Handle, Options, Report};
use parena_testkit::{alloc_checked, check_all, check_report, expect_refused, Model};

/// Checks the walk's accounting: every heap byte up to the bump offset is in exactly one of the
/// live blocks, the free segments, the fillers or the gaps.
fn check_accounting(a: &mut Arena, m: &Model, what: &str) -> Report {
    let r = a.verify().expect("verify");
    check_report(&r, m, what);
    let st = a.stats();
    let pads = r.leaked_bytes - (r.free_bytes - r.listed_bytes.min(r.free_bytes));
    assert_eq!(
        m.live_span() + r.free_bytes + pads + r.gap_bytes,
        r.bump - st.data_start,
        "{what}: heap bytes do not add up: {r:?}"
    );
    assert_eq!(r.bump - st.data_start, st.allocated, "{what}: {r:?}");
    if a.freelist() == Freelist::None {
        assert_eq!(r.listed_segments, 0, "{what}: listed without a freelist");
    }
    r
}

/// Runs one `freelist` input.
pub fn run_freelist(input: &FreelistInput) {
    let cfg = Config {
        backing: if input.file {
            BackingChoice::File
        } else {
            BackingChoice::Heap
        },
        policy: input.policy,
        pages: input.pages % 16,
        chunk: Some(input.chunk % 4),
        min_segment: input.min_segment,
        zero_on_free: false,
        reserved: 0,
    };
    let (arena, path) = create(&cfg, 16);
    let mut s = Subject {
        arena: Some(arena),
        path,
        policy: input.policy,
        reserved: 0,
    };
    let chunk = 512u64 << (input.chunk % 4);
    let max = (chunk * 3) as usize;
    let mut m = Model::default();
    let mut order: Vec<Handle> = Vec::new();
    for op in input.ops.iter().take(MAX_OPS) {
        match *op {
            FlOp::Alloc { len, seed } => {
                let len = usize::from(len) % max + 1;
                if let Some(h) = alloc_checked(s.a(), &mut m, len, None, seed, false) {
                    order.push(h);
                }
            }
            FlOp::Small { len, seed } => {
                let len = usize::from(len) + 1;
                if let Some(h) = alloc_checked(s.a(), &mut m, len, None, seed, false) {
                    order.push(h);
                }
            }
            FlOp::Fill { len, seed } => {
                let len = usize::from(len) % max + 1;
                for i in 0..256u16 {
                    match alloc_checked(s.a(), &mut m, len, None, seed ^ i as u8, false) {
                        Some(h) => order.push(h),
                        None => break,
                    }
                }
            }
            FlOp::Free { pick } => {
                if let Some(l) = m.pick(pick) {
                    s.a().free(l.h).expect("free");
                    m.remove(l.h);
                    expect_refused(s.a(), l.h);
                }
            }
            FlOp::FreeNewest => {
                while let Some(h) = order.pop() {
                    if m.is_live(h) {
                        s.a().free(h).expect("free newest");
                        m.remove(h);
                        expect_refused(s.a(), h);
                        break;
                    }
                }
            }
            FlOp::FreeEvery { k, phase } => {
                let k = usize::from(k % 4) + 1;
                let victims: Vec<Handle> = m
                    .live
                    .values()
                    .skip(usize::from(phase) % k)
                    .step_by(k)
                    .map(|l| l.h)
                    .collect();
                for h in victims {
                    s.a().free(h).expect("free every k-th");
                    m.remove(h);
                }
            }
            FlOp::Compact => {
                let r = s.a_mut().compact().expect("compact");
                check_report(&r, &m, "compact");
                if m.live.is_empty() {
                    let st = s.a().stats();
                    assert_eq!(st.allocated, 0, "compact of an empty arena: {r:?}");
                    // Nothing leaked: the whole heap is one block again.
                    let all = (st.heap_end - st.data_start - 8) as usize;
                    let h = alloc_checked(s.a(), &mut m, all, None, 7, false)
                        .expect("the whole heap after compact");
                    s.a().free(h).expect("free the whole-heap block");
                    m.remove(h);
                }
            }
            FlOp::Reopen { other, k } => {
                let mode = if other { 1 | (k << 4) } else { 0 };
                if s.path.is_some() {
                    s.reopen(&m, mode);
                } else {
                    // Heap: move to the file its image makes, and go on there.
                    let mut img = Vec::new();
                    s.a_mut().write_image(&mut img).expect("write_image");
                    let path = scratch_file("flimage");
                    std::fs::write(&path, &img).expect("write image");
                    s.arena = None;
                    s.path = Some(path);
                    // SAFETY: private file.
                    let a = unsafe {
                        Options::new()
                            .create(false)
                            .map_file(s.path.as_ref().unwrap())
                    }
                    .expect("open image");
                    s.arena = Some(a);
                    s.reopen(&m, mode);
                }
            }
        }
        check_all(s.a(), &m);
        check_accounting(s.a_mut(), &m, "after step");
    }
}
