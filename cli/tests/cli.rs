//! The `parena` binary on real arena files: readable text, JSON that a JSON parser accepts, errors
//! that name the path, and exit statuses.

use parena::Options;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A fresh path under the temporary directory, removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> TempPath {
        let p = std::env::temp_dir().join(format!("parena-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        TempPath(p)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An arena with three blocks, one freed, and root 2 set; closed cleanly.
fn arena_file(name: &str) -> TempPath {
    let t = TempPath::new(name);
    // SAFETY: a fresh file that only this test maps.
    let arena = unsafe { Options::new().capacity(1 << 20).map_file(&t.0) }.expect("create");
    let a = arena.alloc_copy(b"first block").expect("alloc");
    let b = arena.alloc_copy(&[7u8; 300]).expect("alloc");
    let _third = arena.alloc_copy(b"third").expect("alloc");
    arena.free(b).expect("free");
    arena.set_root(2, a.to_u64()).expect("root");
    drop(arena);
    t
}

fn parena(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_parena"))
        .args(args)
        .output()
        .expect("run parena")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8")
}

#[test]
fn inspect_json_parses_and_adds_up() {
    let f = arena_file("json");
    let path = f.0.to_str().expect("utf-8 path");
    let out = parena(&["inspect", "--json", path]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    assert_eq!(v["path"], path);
    assert_eq!(v["header"]["closed_cleanly"], true);
    assert_eq!(v["header"]["capacity"], 1 << 20);
    assert_eq!(v["header"]["roots"][0]["slot"], 2);
    assert_eq!(v["walk"]["clean"], true);
    let u = &v["usage"];
    assert_eq!(u["live_blocks"], 2);
    assert_eq!(u["live_bytes"], 11 + 5);
    // Every heap byte is exactly one kind.
    let kinds = [
        "live_bytes",
        "free_listed_bytes",
        "free_unlisted_bytes",
        "padding_bytes",
        "gap_bytes",
        "header_bytes",
        "never_reserved_bytes",
    ];
    let sum: u64 = kinds.iter().map(|k| u[k].as_u64().expect(k)).sum();
    assert_eq!(sum, u["heap_bytes"].as_u64().unwrap());
}

#[test]
fn inspect_text_and_verify() {
    let f = arena_file("text");
    let path = f.0.to_str().expect("utf-8 path");
    let out = parena(&["inspect", path]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    for word in [
        "last close      clean",
        "live",
        "free, listed",
        "padding",
        "never reserved",
        "walk: clean",
    ] {
        assert!(text.contains(word), "{word:?} missing from\n{text}");
    }
    assert!(text.contains("1.0 MiB"), "units: {text}");

    let out = parena(&["verify", "--json", path]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    assert_eq!(v["clean"], true);
    assert_eq!(v["live_blocks"], 2);
}

#[test]
fn errors_name_the_path_and_usage_is_checked() {
    let missing = TempPath::new("missing");
    let path = missing.0.to_str().expect("utf-8 path");
    let out = parena(&["inspect", path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(path));

    let not_arena = TempPath::new("not-arena");
    std::fs::write(&not_arena.0, b"hello, not an arena at all").expect("write");
    let out = parena(&["verify", not_arena.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(not_arena.0.to_str().unwrap()));

    assert_eq!(parena(&["frobnicate", path]).status.code(), Some(2));
    assert_eq!(parena(&["inspect", "--bogus", path]).status.code(), Some(2));
    let help = parena(&["--help"]);
    assert!(help.status.success());
    assert!(
        stdout(&help).contains("padding"),
        "the glossary is in --help"
    );
}

#[test]
fn magic_version_mismatch_says_what_to_pass() {
    let t = TempPath::new("magic");
    let opts = Options::new().capacity(1 << 20).magic_version(7);
    // SAFETY: a fresh file that only this test maps.
    drop(unsafe { opts.map_file(&t.0) }.expect("create"));
    let out = parena(&["inspect", t.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--magic-version 7"));
    let out = parena(&["inspect", "--magic-version", "7", t.0.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn blocks_lists_every_live_block() {
    let f = arena_file("blocks");
    let path = f.0.to_str().expect("utf-8 path");
    let out = parena(&["blocks", "--json", path]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    assert_eq!(v["count"], 2);
    assert_eq!(v["bytes"], 11 + 5);
    let blocks = v["blocks"].as_array().expect("an array");
    let lens: Vec<u64> = blocks.iter().map(|b| b["len"].as_u64().unwrap()).collect();
    assert_eq!(lens, [11, 5]);
    // The first block is the one root 2 names, by its full handle.
    // SAFETY: the file is closed; only this test maps it, read-only.
    let arena = unsafe { Options::new().read_only(true).map_file(&f.0) }.expect("open");
    assert_eq!(blocks[0]["handle"], arena.root(2).to_string());
    assert!(blocks.iter().all(|b| b["pending"] == false));
    drop(arena);
    let text = stdout(&parena(&["blocks", path]));
    assert!(text.contains("2 live blocks"), "{text}");
    assert_eq!(text.matches("published").count(), 2, "{text}");
}

#[test]
fn salvage_writes_a_new_file_and_reports() {
    let f = arena_file("salvage-src");
    let path = f.0.to_str().expect("utf-8 path");
    let mut img = std::fs::read(&f.0).expect("read");
    let before = img.clone();
    let fresh = TempPath::new("salvage-fresh");
    let fresh_path = fresh.0.to_str().expect("utf-8 path");
    let out = parena(&["salvage", "--json", path, fresh_path]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    assert_eq!(v["complete"], true);
    assert_eq!(v["saved_blocks"], 2);
    assert_eq!(v["lost_regions"], 0);
    assert_eq!(std::fs::read(&f.0).expect("read"), before, "FILE changed");
    // FRESH exists now: refused, exit status 2, and the file is left alone.
    let again = parena(&["salvage", path, fresh_path]);
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    std::fs::remove_file(&fresh.0).expect("remove");

    // Damage: the heap's second entry (the freed 300-byte block) has its header word zeroed.
    let data_start = 4096usize;
    let first_span = 8 + "first block".len().div_ceil(8) * 8;
    let at = data_start + first_span;
    img[at..at + 8].fill(0);
    let damaged = TempPath::new("salvage-damaged");
    std::fs::write(&damaged.0, &img).expect("write");
    let d = damaged.0.to_str().expect("utf-8 path");
    let out = parena(&["salvage", d, fresh_path]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("saved:"), "{text}");
    assert!(text.contains("unwalkable"), "{text}");
    std::fs::remove_file(&fresh.0).expect("remove");

    // `inspect --salvage FRESH FILE` is the same command.
    let out = parena(&["inspect", "--salvage", fresh_path, "--json", d]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    assert_eq!(v["complete"], false);
    assert!(fresh.0.exists(), "inspect --salvage wrote FRESH");
    let bad = parena(&["verify", "--salvage", fresh_path, d]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}

#[test]
fn version_help_and_end_of_options() {
    for flag in ["--version", "-V"] {
        let out = parena(&[flag]);
        assert!(out.status.success(), "{out:?}");
        let text = stdout(&out);
        assert!(
            text.starts_with(&format!("parena {}", env!("CARGO_PKG_VERSION"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("format version {}", parena::FORMAT_VERSION)),
            "{text}"
        );
    }
    let help = parena(&["help"]);
    assert!(help.status.success(), "{help:?}");
    assert!(stdout(&help).contains("usage: parena"), "{help:?}");
    // After `--`, a FILE may start with a dash.
    let dir = tempfile_dir("dash");
    let f = arena_file("dash-src");
    let dashed = dir.join("-arena");
    std::fs::copy(&f.0, &dashed).expect("copy");
    let out = Command::new(env!("CARGO_BIN_EXE_parena"))
        .current_dir(&dir)
        .args(["verify", "--", "-arena"])
        .output()
        .expect("run parena");
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_parena"))
        .current_dir(&dir)
        .args(["verify", "-arena"])
        .output()
        .expect("run parena");
    assert_eq!(
        out.status.code(),
        Some(2),
        "without --, -arena is an option"
    );
    std::fs::remove_dir_all(&dir).expect("remove");
}

/// A fresh directory under the temporary directory.
fn tempfile_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("parena-cli-{}-{name}.d", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d).expect("mkdir");
    d
}

/// Handles and roots are 64-bit words: every `--json` output gives them as decimal strings, which
/// JSON readers that hold numbers as doubles read exactly.
#[test]
fn json_handles_and_roots_are_exact_strings() {
    let f = arena_file("strings");
    let path = f.0.to_str().expect("utf-8 path");
    // SAFETY: the file is closed; only this test maps it, read-only.
    let arena = unsafe { Options::new().read_only(true).map_file(&f.0) }.expect("open");
    let root = arena.root(2);
    drop(arena);
    let json = |args: &[&str]| -> serde_json::Value {
        let out = parena(args);
        assert!(out.status.code() != Some(2), "{out:?}");
        serde_json::from_str(&stdout(&out)).expect("valid JSON")
    };
    let v = json(&["inspect", "--json", path]);
    assert_eq!(v["header"]["roots"][0]["value"], root.to_string());
    let v = json(&["blocks", "--json", path]);
    for b in v["blocks"].as_array().expect("an array") {
        let h: u64 = b["handle"].as_str().expect("a string").parse().unwrap();
        assert_eq!(parena::Handle::from_u64(h).offset(), b["offset"]);
    }
    let fresh = TempPath::new("strings-fresh");
    let v = json(&["salvage", "--json", path, fresh.0.to_str().unwrap()]);
    for b in v["saved"].as_array().expect("an array") {
        assert!(b["handle"].as_str().is_some(), "{b}");
    }
}

/// `inspect` prints roots in the base `blocks` prints handles in, so a root is found by eye.
#[test]
fn a_root_matches_its_block_in_text() {
    let f = arena_file("roots");
    let path = f.0.to_str().expect("utf-8 path");
    // SAFETY: the file is closed; only this test maps it, read-only.
    let arena = unsafe { Options::new().read_only(true).map_file(&f.0) }.expect("open");
    let root = arena.root(2).to_string();
    drop(arena);
    let inspect = stdout(&parena(&["inspect", path]));
    let blocks = stdout(&parena(&["blocks", path]));
    assert!(inspect.contains(&format!(" 2: {root}")), "{inspect}");
    assert!(blocks.contains(&root), "{blocks}");
}

/// The heap `inspect` accounts for is the heap `Stats` describes: it ends where the start and
/// flush maps begin, and "never reserved" is `Stats::remaining`.
#[test]
fn heap_accounting_adds_up_to_stats() {
    let f = arena_file("stats");
    let path = f.0.to_str().expect("utf-8 path");
    // SAFETY: the file is closed; only this test maps it, read-only.
    let arena = unsafe { Options::new().read_only(true).map_file(&f.0) }.expect("open");
    let s = arena.stats();
    drop(arena);
    let out = parena(&["inspect", "--json", path]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    let u = &v["usage"];
    assert_eq!(u["heap_bytes"], s.heap_end - s.data_start);
    assert_eq!(u["never_reserved_bytes"], s.remaining);
    assert_eq!(u["map_bytes"], s.capacity - s.heap_end);
    let text = stdout(&parena(&["inspect", path]));
    assert!(text.contains("start and flush maps"), "{text}");
}

/// A flipped bit in a root of a cleanly closed file: `verify` and `inspect` say the header is
/// damaged (not "the writer died") and exit with the problems status.
#[test]
fn a_damaged_header_is_reported_as_damage() {
    let t = arena_file("header-damage");
    let p = t.0.to_str().expect("utf-8 path");
    let mut img = std::fs::read(&t.0).expect("read");
    let root2 = parena::testkit::OFF_ROOTS + 2 * parena::testkit::ROOT_SLOT_BYTES;
    img[root2] ^= 1;
    std::fs::write(&t.0, &img).expect("write");
    let out = parena(&["verify", p]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("header DAMAGED"), "{text}");
    assert!(text.contains("HeaderChecksum"), "{text}");
    let out = parena(&["inspect", "--json", p]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    assert_eq!(v["header"]["header_damaged"], true);
    assert_eq!(v["header"]["closed_cleanly"], false);
    let out = parena(&["inspect", p]);
    assert!(stdout(&out).contains("DAMAGED"), "{out:?}");
}

/// `inspect` shows a growable arena's capacity and maximum, and accounts for the maps in front
/// of its heap.
#[test]
fn inspect_shows_capacity_and_maximum() {
    let t = TempPath::new("grown");
    // SAFETY: a fresh file that only this test maps.
    let arena = unsafe {
        Options::new()
            .capacity(2 << 20)
            .max_capacity(16 << 20)
            .map_file(&t.0)
    }
    .expect("create");
    arena.grow(5 << 20).expect("grow");
    let _block = arena.alloc_copy(b"after the growth").expect("alloc");
    drop(arena);
    let path = t.0.to_str().expect("utf-8 path");
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&parena(&["inspect", "--json", path]))).expect("valid JSON");
    assert_eq!(v["header"]["capacity"], 5 << 20);
    assert_eq!(v["header"]["max_capacity"], 16 << 20);
    assert_eq!(
        v["header"]["format_version"],
        parena::GROWABLE_FORMAT_VERSION
    );
    let u = &v["usage"];
    assert_eq!(u["map_bytes"], 1 << 20, "1/16 of the maximum");
    assert_eq!(
        u["heap_bytes"].as_u64().unwrap() + u["map_bytes"].as_u64().unwrap() + 4096,
        5 << 20
    );
    let text = stdout(&parena(&["inspect", path]));
    assert!(text.contains("capacity        5.0 MiB"), "{text}");
    assert!(
        text.contains("maximum         16.0 MiB (grows while open"),
        "{text}"
    );
    let fixed = arena_file("fixed-max");
    let text = stdout(&parena(&["inspect", fixed.0.to_str().unwrap()]));
    assert!(
        text.contains("maximum         1.0 MiB (fixed while open"),
        "{text}"
    );
}

/// A wide arena (a maximum past 32 GiB): `inspect` names its offset unit, in JSON and in text.
#[test]
fn inspect_shows_a_wide_arenas_offset_unit() {
    let t = TempPath::new("wide");
    // SAFETY: a fresh file that only this test maps.
    let arena = unsafe {
        Options::new()
            .capacity(65 << 30)
            .max_capacity(1 << 40)
            .preallocate(false)
            .map_file(&t.0)
    }
    .expect("create");
    let _block = arena.alloc_copy(b"on the unit").expect("alloc");
    drop(arena);
    let path = t.0.to_str().expect("utf-8 path");
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&parena(&["inspect", "--json", path]))).expect("valid JSON");
    assert_eq!(v["header"]["offset_unit"], 256);
    assert_eq!(v["header"]["max_capacity"], 1u64 << 40);
    let text = stdout(&parena(&["inspect", path]));
    assert!(text.contains("offset unit     256 B"), "{text}");
}
