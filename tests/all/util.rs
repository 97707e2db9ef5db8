//! Helpers shared by the test modules.

use parena::{Arena, Error, Handle, Options};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// FNV-1a of a file's bytes: "the file is unchanged" checks.
pub fn file_hash(path: &Path) -> (u64, u64) {
    let bytes = std::fs::read(path).unwrap();
    (bytes.len() as u64, parena_testkit::layout::fnv1a(&bytes))
}

/// Cuts the power under `arena` (the simulated disk keeps the flushed pages and one in
/// `keep_one_in` of the others, chosen by `rng`), writes the image to `path` and opens it.
pub fn power_cut(
    arena: Arena,
    disk: &parena::SimDisk,
    keep_one_in: u64,
    rng: &mut Rng,
    path: &Path,
) -> Result<Arena, parena::Error> {
    let mut pages = Rng(rng.next());
    let img = disk.crash_image(&arena, |_| pages.below(keep_one_in) == 0);
    drop(arena);
    std::fs::write(path, &img).unwrap();
    // SAFETY: a test's private file in a private directory; nothing else maps or changes it.
    unsafe { parena::Options::new().map_file(path) }
}

/// A seed from the clock (never 0), for tests that pick their kill moments at random; they print
/// it with every failure so a run can be repeated.
pub fn time_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1
}

/// A small deterministic generator (tests must not depend on a global RNG state).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Allocates `len` bytes filled with `byte`.
pub fn fill(arena: &Arena, len: usize, byte: u8) -> Handle {
    let mut b = arena.alloc(len).unwrap();
    // Slice equality (a `memcmp`), not a loop over the bytes: Miri runs it as one step.
    assert!(b[..] == vec![0u8; len][..], "fresh block not zeroed");
    b.fill(byte);
    b.into_handle()
}

/// Asserts block `h` holds `len` bytes of `byte`.
pub fn check(arena: &Arena, h: Handle, len: usize, byte: u8) {
    let mut buf = vec![0u8; len];
    arena.read(h, 0, &mut buf).unwrap();
    assert!(buf == vec![byte; len], "block {h:?} lost its pattern");
}

/// In a child worker, which runs until its parent kills it: ends the process when the parent is
/// gone (a test run interrupted between spawning the child and killing it), instead of leaving an
/// orphan that works on forever. A thread polls the parent's pid every 100 ms.
pub fn end_with_parent() {
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(0);
        }
    });
}

/// Runs this test binary again as a child that executes only the test `name`, with `env` set.
/// The child's stdout is piped.
pub fn spawn_child(name: &str, env: &[(&str, &str)]) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([name, "--exact", "--nocapture", "--test-threads=1", "-q"]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    c.spawn().unwrap()
}

/// Opens (or creates) the arena file at `path` with `o`. Every caller's file lives in a private
/// temporary directory that nothing else touches while it is mapped.
pub fn open(o: &Options, path: &Path) -> Result<Arena, Error> {
    // SAFETY: the file is in a private temporary directory (see above): nothing else maps,
    // truncates or writes it while it is mapped.
    unsafe { o.map_file(path) }
}
