//! The `open_bytes` target: arbitrary bytes, or a valid arena image patched by them, opened as
//! an arena file.

use crate::subject::scratch_file;
use parena::{Arena, Error, Freelist, Handle, Options, Problem, Report};
use parena_testkit::layout::{reseal_header_checksum, reseal_state_checksum};
use parena_testkit::{check_all, fill, Model};
use std::sync::OnceLock;

/// Kinds of template for the `open_bytes` target.
const TEMPLATES: usize = 4;

/// Valid arena images to mutate: clean or dirty, each policy, with and without a reserved area.
pub fn template(i: usize) -> &'static [u8] {
    static T: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    &T.get_or_init(|| (0..TEMPLATES).map(make_template).collect())[i % TEMPLATES]
}

fn make_template(i: usize) -> Vec<u8> {
    let policy = [
        Freelist::Optimistic,
        Freelist::Pessimistic,
        Freelist::None,
        Freelist::Optimistic,
    ][i];
    let o = Options::new()
        .capacity(parena::testkit::capacity_for_heap(4096, 4096 * 4))
        .chunk_size(512)
        .freelist(policy)
        .reserved(if i == 1 { 100 } else { 0 })
        .preallocate(false);
    let path = scratch_file("template");
    // SAFETY: private file.
    let a = unsafe { o.map_file(&path) }.expect("template arena");
    let mut hs = Vec::new();
    for k in 0..24usize {
        let mut b = a.alloc(1 + k * 37 % 700).expect("template alloc");
        fill(&mut b, k as u8, 0);
        hs.push(b.into_handle());
    }
    for (k, h) in hs.iter().enumerate() {
        if k % 3 == 1 {
            a.free(*h).expect("template free");
        }
    }
    for r in 0..4 {
        a.set_root(r, hs[r * 3].to_u64()).expect("root");
    }
    let bytes = if i == 3 {
        // Dirty: the file as a crash would leave it.
        std::fs::read(&path).expect("read template")
    } else {
        drop(a);
        std::fs::read(&path).expect("read template")
    };
    let _ = std::fs::remove_file(&path);
    bytes
}

/// Builds the file bytes for an `open_bytes` input. Byte 0: bit 7 selects a template (bits 0-1
/// which) patched by the rest, else the rest is the file itself. Bits 4 and 5 re-seal the header
/// and state checksums after patching.
pub fn build_file(data: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    if mode & 0x80 == 0 {
        return rest.to_vec();
    }
    let mut f = template(usize::from(mode & 3)).to_vec();
    let mut r = rest;
    // Patch records: [kind, off_lo, off_hi, n, n bytes...]
    while r.len() >= 4 {
        let kind = r[0];
        let off = usize::from(u16::from_le_bytes([r[1], r[2]]));
        let n = usize::from(r[3] % 17);
        let body = &r[4..(4 + n).min(r.len())];
        r = &r[(4 + n).min(r.len())..];
        match kind % 5 {
            // Bytes at an offset in the header page.
            0 => {
                let off = off % f.len().min(4096);
                let end = (off + body.len()).min(f.len());
                f[off..end].copy_from_slice(&body[..end - off]);
            }
            // A word in the heap, 8-aligned.
            1 => {
                let off = (off * 8) % f.len();
                let end = (off + body.len().min(8)).min(f.len());
                f[off..end].copy_from_slice(&body[..end - off]);
            }
            // Truncate.
            2 => {
                let len = (off * 4) % (f.len() + 1);
                f.truncate(len);
                if f.is_empty() {
                    break;
                }
            }
            // Extend with zeros.
            3 => f.resize(f.len() + (off % 64) * 512, 0),
            // One flipped bit anywhere: header, heap metadata or user bytes, the start and flush
            // maps, the meta slots.
            _ => {
                let at = (off * 8 + usize::from(body.first().copied().unwrap_or(0) & 7)) % f.len();
                f[at] ^= 1 << (n % 8);
            }
        }
    }
    if mode & 0x10 != 0 {
        reseal_header_checksum(&mut f);
    }
    if mode & 0x20 != 0 {
        reseal_state_checksum(&mut f);
    }
    f
}

/// Runs one `open_bytes` input: byte 0 builds the file (see [`build_file`]), byte 1 the options.
pub fn run_open_bytes(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let opts = data[0];
    let file = build_file(&data[1..]);
    let path = scratch_file("bytes");
    std::fs::write(&path, &file).expect("write the input file");
    let read_only = opts & 1 != 0;
    let mut o = Options::new().create(false).read_only(read_only);
    if opts & 2 != 0 {
        o = o.freelist(
            [Freelist::None, Freelist::Optimistic, Freelist::Pessimistic]
                [usize::from(opts >> 6) % 3],
        );
    }
    if opts & 4 != 0 {
        o = o.capacity(4096 * u64::from(1 + (opts >> 4)));
    }
    if opts & 8 != 0 {
        o = o.reserved(100);
    }
    // SAFETY: private file; nothing else maps or changes it.
    let opened = unsafe { o.map_file(&path) };
    match opened {
        Err(_) => {
            let now = std::fs::read(&path).expect("read back");
            assert!(now == file, "a failed open changed the file");
        }
        Ok(mut a) => {
            exercise(&mut a, read_only);
            drop(a);
            if read_only {
                let now = std::fs::read(&path).expect("read back");
                assert!(now == file, "a read-only open changed the file");
            } else {
                // The arena it left must open again.
                // SAFETY: private file.
                let mut again = unsafe { Options::new().create(false).map_file(&path) }
                    .expect("reopen after a successful open");
                let _ = again.verify().expect("verify");
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// Whether `r` is clean but for header damage the recovering open reported (`reported`) and
/// cannot undo: a root whose value fails its check word (only its owner knows the right value)
/// and a failed seal. The heap and every record recovery rebuilt must verify clean.
fn clean_but_reported(r: &Report, reported: &[Problem]) -> bool {
    r.dropped.is_empty()
        && r.problems.iter().all(|p| {
            matches!(p, Problem::Root { .. } | Problem::HeaderChecksum { .. })
                && reported.contains(p)
        })
}

fn exercise(a: &mut Arena, read_only: bool) {
    let st = a.stats();
    assert_eq!(st.data_start + st.allocated + st.remaining, st.heap_end);
    assert!(
        st.heap_end < st.capacity,
        "the start and flush maps follow the heap"
    );
    // A writable open of a dirty arena walked and repaired the heap: from then on it must behave
    // exactly like a healthy arena. A clean one is trusted as stored (open is O(1)): only typed
    // errors, no panic, no hang, no out-of-bounds access.
    let strict = a.recovery_report().is_some();
    let reported = a
        .recovery_report()
        .map(|r| r.problems.clone())
        .unwrap_or_default();
    let first = a.verify().expect("verify");
    if strict {
        assert!(
            clean_but_reported(&first, &reported),
            "a recovered arena does not verify: {first:?}"
        );
    }
    // Handles stored in the roots, and whatever else they hold.
    let mut buf = [0u8; 64];
    for i in 0..16 {
        let h = Handle::from_u64(a.root(i));
        let _ = a.contains(h);
        let n = a.len_of(h).map_or(0, |n| n.min(buf.len()));
        if strict {
            let _ = a.read(h, 0, &mut buf[..n]);
        } else {
            // Open finding (see fuzz/README.md): in a trusted clean file, a block header with
            // the reader count at its maximum makes `read` wait forever for a slot. `get` takes
            // no pin.
            // SAFETY: single-threaded; nothing frees or writes the block while `b` lives.
            if let Ok(b) = unsafe { a.get(h) } {
                buf[..n].copy_from_slice(&b[..n]);
            }
        }
    }
    if read_only {
        assert!(matches!(a.alloc(8), Err(Error::ReadOnly)));
        return;
    }
    let mut m = Model::default();
    let mut hs = Vec::new();
    for k in 0..12usize {
        let len = 1 + k * 53 % 900;
        match a.alloc(len) {
            Ok(mut b) => {
                if strict {
                    assert!(b.iter().all(|&x| x == 0), "a new block is not zeroed");
                }
                fill(&mut b, k as u8, 0);
                let h = b.into_handle();
                hs.push(h);
                if strict {
                    m.insert(h, len, k as u8);
                }
            }
            Err(Error::Full { .. }) => {}
            Err(Error::Corrupt { .. }) => assert!(!strict, "alloc in a recovered arena: corrupt"),
            Err(e) => panic!("alloc: {e:?}"),
        }
    }
    for h in hs.iter().step_by(2) {
        match a.free(*h) {
            Ok(()) => {
                if strict {
                    m.remove(*h);
                }
            }
            Err(e) => assert!(!strict, "free in a recovered arena: {e:?}"),
        }
    }
    // Roots that name blocks: free them too (handles from the file are not trusted).
    for i in 0..16 {
        let h = Handle::from_u64(a.root(i));
        if !hs.contains(&h) {
            let _ = a.free(h);
        }
    }
    if strict {
        check_all(a, &m);
        let r = a.verify().expect("verify");
        assert!(
            clean_but_reported(&r, &reported),
            "a recovered arena went bad: {r:?}"
        );
    }
    match a.compact() {
        Ok(r) => {
            if strict {
                assert!(r.is_clean(), "compact: {r:?}");
                check_all(a, &m);
            }
        }
        Err(Error::Corrupt { .. }) => assert!(!strict, "compact refused a recovered arena"),
        Err(e) => panic!("compact: {e:?}"),
    }
    let _ = a.verify().expect("verify");
}
