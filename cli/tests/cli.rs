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
    arena.alloc_copy(b"third").expect("alloc");
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
