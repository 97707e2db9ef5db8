//! The layer table of `docs/design.md`, enforced.
//!
//! Every `.rs` file under `src/` has one row in the table, in exactly this form:
//!
//! ```text
//! | `src/path/file.rs` | N | what it owns |
//! ```
//!
//! and may use only files whose layer number is lower than or equal to its own. An edge to a
//! higher number fails, and so does any cycle (which, with no edge running up, can only join files
//! of one layer): dependencies point one way. The test also fails when a file under `src/` has no
//! row, or a row names a file that does not exist.
//!
//! The edges are read from the source text, with comments and the contents of string and char
//! literals blanked out:
//! - `use` trees (`use crate::{a::X, b::{Y, Z}};`, `pub(crate) use ...`), expanded to paths;
//! - paths in code that start with `crate::`, `super::` or `self::`, or with the name of a child
//!   module the file declares (`mod flush;` then `flush::forget(..)`);
//! - `super::` climbs one module per step: out of `src/aio/open.rs` it reaches `src/aio/mod.rs`'s
//!   module, out of `src/aio/mod.rs` the crate root; inside an inline module (`mod tests { .. }`)
//!   the first steps stay in the same file, which is not an edge.
//!
//! A path resolves to the file of its longest prefix that is a module with a file
//! (`crate::freelist::policy::Policy` is `src/freelist/policy.rs`, `crate::arena::Inner` is
//! `src/arena.rs` or `src/arena/mod.rs`). Declaring a module (`mod x;`) is not an edge: only using
//! it is.
//!
//! A second check keeps the heap layer the one owner of the heap's words
//! (`only_the_heap_layer_stores_heap_words`): no file outside `src/heap/` (and the backing and the
//! block codec beneath it) stores to a heap word or builds a header word to store; the start map's
//! toggles are private to `src/heap/`, so the compiler keeps those.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One crate-internal path found in a file, made absolute (from the crate root).
#[derive(Clone, Debug)]
struct Use {
    line: usize,
    /// The path as written (after expanding `use` groups).
    path: String,
    /// Its segments from the crate root (`super`, `self` and child names resolved).
    abs: Vec<String>,
    /// Whether it comes from a `use` at the top of the file, which makes its last segment a name
    /// of this module that others can reach (`crate::Arena` through `pub use arena::Arena`).
    top_use: bool,
}

/// One crate-internal use of another file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Edge {
    from: String,
    line: usize,
    /// The path as written (after expanding `use` groups).
    path: String,
    to: String,
}

/// Edges of the current layout that the layering does not allow yet, each with the change that
/// removes it. An edge listed here is left out of both checks; a listed edge that no longer occurs
/// fails the test, so the list only shrinks.
const KNOWN: &[(&str, &str, &str)] = &[];

/// Parses the rows `| `src/...rs` | N | ... |` of a markdown document.
fn parse_table(doc: &str) -> Result<BTreeMap<String, u32>, Vec<String>> {
    let mut rows = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, line) in doc.lines().enumerate() {
        let cells: Vec<&str> = line.trim().split('|').map(str::trim).collect();
        // "| a | b | c |" splits into ["", a, b, c, ""].
        if cells.len() < 5 || !cells[0].is_empty() {
            continue;
        }
        let Some(file) = cells[1]
            .strip_prefix('`')
            .and_then(|c| c.strip_suffix('`'))
            .filter(|f| f.starts_with("src/") && f.ends_with(".rs"))
        else {
            continue;
        };
        match cells[2].parse::<u32>() {
            Ok(layer) => {
                if rows.insert(file.to_string(), layer).is_some() {
                    errors.push(format!(
                        "docs/design.md:{}: `{file}` has a second row",
                        i + 1
                    ));
                }
            }
            Err(_) => errors.push(format!(
                "docs/design.md:{}: `{file}`: layer `{}` is not a number",
                i + 1,
                cells[2]
            )),
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

/// `src` with comments and the contents of string and char literals replaced by spaces (newlines
/// kept, so line numbers and byte positions still match).
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !is_ident(c[i - 1]))
        {
            // A raw string r"..." or r#"..."#.
            let mut j = i + 1;
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            out.extend(std::iter::repeat_n(' ', j - i + 1));
            i = j + 1;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                    out.extend(std::iter::repeat_n(' ', hashes + 1));
                    i += hashes + 1;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' && next == Some('\\') {
            // An escaped char literal: '\n', '\'', '\u{7f}'.
            out.push_str("  ");
            i += 2;
            while i < c.len() && c[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' && c.get(i + 2) == Some(&'\'') {
            // A char literal '{' (a lifetime 'a is never followed by a quote).
            out.push_str("   ");
            i += 3;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// The module path of a file under `src/`: `src/lib.rs` is `[]`, `src/aio/mod.rs` is `["aio"]`,
/// `src/aio/open.rs` is `["aio", "open"]`.
fn module_of(file: &str) -> Vec<String> {
    let rel = file.strip_prefix("src/").unwrap_or(file);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = rel.split('/').map(String::from).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file of the longest prefix of `path` that has one, and the prefix's length.
fn file_of(path: &[String], files: &BTreeSet<String>) -> Option<(String, usize)> {
    (0..=path.len()).rev().find_map(|n| {
        let p = path[..n].join("/");
        let candidates = if n == 0 {
            vec!["src/lib.rs".to_string()]
        } else {
            vec![format!("src/{p}.rs"), format!("src/{p}/mod.rs")]
        };
        candidates
            .into_iter()
            .find(|c| files.contains(c))
            .map(|c| (c, n))
    })
}

/// The file that defines what `abs` names: the file of its longest module prefix, followed
/// through that file's top-level `use` of the next segment, if any (re-exports such as
/// `crate::Arena`, or a child's `super::X` where the parent imported `X`).
fn resolve(
    abs: &[String],
    files: &BTreeSet<String>,
    imports: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
) -> Option<String> {
    let mut abs = abs.to_vec();
    let mut seen = BTreeSet::new();
    loop {
        let (file, n) = file_of(&abs, files)?;
        let next = abs
            .get(n)
            .and_then(|name| imports.get(&file).and_then(|m| m.get(name)));
        match next {
            Some(target) if seen.insert(abs.clone()) => {
                let mut followed = target.clone();
                followed.extend(abs[n + 1..].iter().cloned());
                abs = followed;
            }
            _ => return Some(file),
        }
    }
}

/// Expands a `use` tree (the text between `use` and `;`) into its paths, as `::`-joined segments.
fn expand_use(tree: &str) -> Vec<String> {
    fn go(s: &[char], i: &mut usize, prefix: &str, out: &mut Vec<String>) {
        let mut cur = prefix.to_string();
        while *i < s.len() {
            match s[*i] {
                '{' => {
                    *i += 1;
                    loop {
                        go(s, i, &cur, out);
                        if *i < s.len() && s[*i] == ',' {
                            *i += 1;
                            continue;
                        }
                        break;
                    }
                    if *i < s.len() && s[*i] == '}' {
                        *i += 1;
                    }
                    return;
                }
                ',' | '}' => break,
                ch if ch.is_whitespace() => *i += 1,
                _ => {
                    let start = *i;
                    while *i < s.len()
                        && !matches!(s[*i], '{' | '}' | ',')
                        && !s[*i].is_whitespace()
                    {
                        *i += 1;
                    }
                    let word: String = s[start..*i].iter().collect();
                    if word == "as" {
                        // Skip the alias.
                        while *i < s.len() && s[*i].is_whitespace() {
                            *i += 1;
                        }
                        while *i < s.len() && is_ident(s[*i]) {
                            *i += 1;
                        }
                        continue;
                    }
                    cur.push_str(&word);
                }
            }
        }
        if !cur.is_empty() && cur != prefix {
            out.push(cur);
        }
    }
    let s: Vec<char> = tree.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    go(&s, &mut i, "", &mut out);
    out
}

/// The crate-internal edges of `file` (its source `src`), resolved against `files`.
/// The crate-internal paths of `file` (its source `src`), made absolute.
fn uses_of(file: &str, src: &str) -> Result<Vec<Use>, String> {
    let code = strip(src);
    let chars: Vec<char> = code.chars().collect();
    let module = module_of(file);
    let line_at = |pos: usize| chars[..pos].iter().filter(|&&c| c == '\n').count() + 1;

    // Words, with their positions, and the brace depth at each.
    let mut children = BTreeSet::new();
    // (position, inline module depth, path, from a top-level `use`)
    let mut found: Vec<(usize, usize, String, bool)> = Vec::new();
    let mut depth = 0usize;
    let mut inline: Vec<usize> = Vec::new(); // brace depths that opened an inline `mod`
    let mut pending_mod = false;
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        if ch == '{' {
            depth += 1;
            if pending_mod {
                inline.push(depth);
                pending_mod = false;
            }
            i += 1;
            continue;
        }
        if ch == '}' {
            if inline.last() == Some(&depth) {
                inline.pop();
            }
            depth = depth
                .checked_sub(1)
                .ok_or_else(|| format!("{file}:{}: unbalanced `}}`", line_at(i)))?;
            i += 1;
            continue;
        }
        if ch == ';' {
            pending_mod = false;
        }
        if !is_ident(ch) || (i > 0 && (is_ident(chars[i - 1]) || chars[i - 1] == '$')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let preceded_by_colons = start >= 2 && chars[start - 2..start] == [':', ':'];
        if word == "mod" {
            // `mod name;` declares a child file; `mod name {` opens an inline module.
            let rest: String = chars[i..]
                .iter()
                .take_while(|&&c| c != ';' && c != '{')
                .collect();
            let name = rest.trim();
            match chars.get(i + rest.chars().count()) {
                Some(';') if depth == 0 => {
                    children.insert(name.to_string());
                }
                Some('{') => pending_mod = true,
                _ => {}
            }
            continue;
        }
        if word == "use" {
            let end = chars[i..]
                .iter()
                .position(|&c| c == ';')
                .map_or(chars.len(), |p| i + p);
            let tree: String = chars[i..end].iter().collect();
            for path in expand_use(&tree) {
                found.push((start, inline.len(), path, depth == 0));
            }
            i = end;
            continue;
        }
        if preceded_by_colons {
            continue;
        }
        // A path in code: word(::word)*.
        let mut path = word;
        while chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
            let s = i + 2;
            let mut e = s;
            while e < chars.len() && is_ident(chars[e]) {
                e += 1;
            }
            if e == s {
                break;
            }
            path.push_str("::");
            path.extend(&chars[s..e]);
            i = e;
        }
        if path.contains("::") {
            found.push((start, inline.len(), path, false));
        }
    }
    if depth != 0 {
        return Err(format!(
            "{file}: unbalanced braces (depth {depth} at the end)"
        ));
    }

    let mut uses = Vec::new();
    for (pos, inline_depth, path, top_use) in found {
        let segs: Vec<String> = path.split("::").map(String::from).collect();
        let mut target: Vec<String>;
        let rest: &[String];
        match segs[0].as_str() {
            "crate" => {
                target = Vec::new();
                rest = &segs[1..];
            }
            "super" => {
                let ups = segs.iter().take_while(|s| *s == "super").count();
                if ups <= inline_depth {
                    continue; // stays in this file
                }
                let climb = ups - inline_depth;
                if climb > module.len() {
                    return Err(format!(
                        "{file}:{}: `{path}` climbs above the crate root",
                        line_at(pos)
                    ));
                }
                target = module[..module.len() - climb].to_vec();
                rest = &segs[ups..];
            }
            "self" if inline_depth == 0 => {
                target = module.clone();
                rest = &segs[1..];
            }
            first if inline_depth == 0 && children.contains(first) => {
                target = module.clone();
                rest = &segs[..];
            }
            _ => continue,
        }
        target.extend(rest.iter().filter(|s| *s != "*" && *s != "self").cloned());
        uses.push(Use {
            line: line_at(pos),
            path,
            abs: target,
            top_use,
        });
    }
    Ok(uses)
}

/// Checks `sources` (path under the crate, text) against the layer table in `doc`, leaving out
/// the edges in `known` (from, to, why); returns one message per problem.
fn check(
    doc: &str,
    sources: &BTreeMap<String, String>,
    known: &[(&str, &str, &str)],
) -> Vec<String> {
    let table = match parse_table(doc) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let mut problems = Vec::new();
    let files: BTreeSet<String> = sources.keys().cloned().collect();
    for f in &files {
        if !table.contains_key(f) {
            problems.push(format!("{f}: no row in the layer table of docs/design.md"));
        }
    }
    for f in table.keys() {
        if !files.contains(f) {
            problems.push(format!(
                "docs/design.md: the layer table names `{f}`, which does not exist"
            ));
        }
    }
    let mut uses = BTreeMap::new();
    for (f, src) in sources {
        match uses_of(f, src) {
            Ok(u) => {
                uses.insert(f.clone(), u);
            }
            Err(e) => problems.push(e),
        }
    }
    let imports: BTreeMap<String, BTreeMap<String, Vec<String>>> = uses
        .iter()
        .map(|(f, us)| {
            let names = us
                .iter()
                .filter(|u| u.top_use && u.abs.last().is_some_and(|l| l != "*" && l != "self"))
                .map(|u| (u.abs.last().unwrap().clone(), u.abs.clone()))
                .collect();
            (f.clone(), names)
        })
        .collect();
    let mut graph: BTreeMap<String, Vec<Edge>> = BTreeMap::new();
    let mut used_known = BTreeSet::new();
    for (f, us) in &uses {
        for u in us {
            let Some(to) = resolve(&u.abs, &files, &imports) else {
                continue;
            };
            if &to == f {
                continue;
            }
            if let Some(k) = known.iter().position(|(a, b, _)| a == f && *b == to) {
                used_known.insert(k);
                continue;
            }
            let e = Edge {
                from: f.clone(),
                line: u.line,
                path: u.path.clone(),
                to,
            };
            if let (Some(&a), Some(&b)) = (table.get(&e.from), table.get(&e.to)) {
                if b > a {
                    problems.push(format!(
                        "{}:{}: `{}` runs up: {} (layer {a}) uses {} (layer {b})",
                        e.from, e.line, e.path, e.from, e.to
                    ));
                }
            }
            graph.entry(e.from.clone()).or_default().push(e);
        }
    }
    for (k, (a, b, _)) in known.iter().enumerate() {
        if !used_known.contains(&k) {
            problems.push(format!(
                "tests/layering.rs: the known edge {a} -> {b} no longer occurs: delete it from KNOWN"
            ));
        }
    }
    problems.extend(cycles(&graph));
    if std::env::var_os("LAYERING_SUGGEST").is_some() {
        eprintln!("{}", suggest(&graph, &files));
    }
    problems
}

/// The unit a cycle may stay inside: the directory of a file under `src/x/` (a directory module:
/// its `mod.rs` re-exports its files, which reach shared items through `super::`), or the file
/// itself at the top of `src/`.
fn unit(file: &str) -> &str {
    match file.rfind('/') {
        Some(i) if &file[..i] != "src" => &file[..i],
        _ => file,
    }
}

/// One message per cycle of files that leaves a directory module: each strongly connected set of
/// files spanning more than one [`unit`], with the edges that join it.
fn cycles(graph: &BTreeMap<String, Vec<Edge>>) -> Vec<String> {
    fn reach<'g>(from: &'g str, graph: &'g BTreeMap<String, Vec<Edge>>) -> BTreeSet<&'g str> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(f) = todo.pop() {
            for e in graph.get(f).into_iter().flatten() {
                if seen.insert(e.to.as_str()) {
                    todo.push(&e.to);
                }
            }
        }
        seen
    }
    let reached: BTreeMap<&str, BTreeSet<&str>> = graph
        .keys()
        .map(|f| (f.as_str(), reach(f, graph)))
        .collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for (&f, r) in &reached {
        if done.contains(f) || !r.contains(f) {
            continue;
        }
        let scc: BTreeSet<&str> = r
            .iter()
            .copied()
            .filter(|g| reached.get(g).is_some_and(|rg| rg.contains(f)))
            .collect();
        done.extend(scc.iter().copied());
        if scc.iter().map(|g| unit(g)).collect::<BTreeSet<_>>().len() < 2 {
            continue;
        }
        // The first edge between each pair of files, in file order.
        let mut pairs = BTreeSet::new();
        let edges: Vec<String> = scc
            .iter()
            .flat_map(|g| graph.get(*g).into_iter().flatten())
            .filter(|e| scc.contains(e.to.as_str()) && unit(&e.from) != unit(&e.to))
            .filter(|e| pairs.insert((e.from.as_str(), e.to.as_str())))
            .map(|e| format!("{}:{}: `{}` -> {}", e.from, e.line, e.path, e.to))
            .collect();
        out.push(format!("cycle: {}", edges.join("; ")));
    }
    out
}

/// A layer table the edges allow (each file one above the highest file it uses in another
/// directory module, equal to those in its own), printed when `LAYERING_SUGGEST` is set.
fn suggest(graph: &BTreeMap<String, Vec<Edge>>, files: &BTreeSet<String>) -> String {
    let mut layer: BTreeMap<&str, u32> = files.iter().map(|f| (f.as_str(), 0)).collect();
    for _ in 0..=files.len() {
        let mut changed = false;
        for e in graph.values().flatten() {
            let need = layer[e.to.as_str()] + u32::from(unit(&e.from) != unit(&e.to));
            if layer[e.from.as_str()] < need {
                layer.insert(&e.from, need);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut rows: Vec<(u32, &str)> = layer.into_iter().map(|(f, l)| (l, f)).collect();
    rows.sort();
    rows.iter()
        .map(|(l, f)| format!("| `{f}` | {l} | |"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn read_sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.insert(rel, std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// Every `.rs` file under the crate's `src/`, by its path from the crate root.
fn crate_sources() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = BTreeMap::new();
    read_sources(&root.join("src"), root, &mut sources);
    sources
}

#[test]
fn src_follows_the_layer_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/design.md")).unwrap();
    let mut sources = BTreeMap::new();
    read_sources(&root.join("src"), root, &mut sources);
    assert!(
        sources.contains_key("src/lib.rs"),
        "no src/lib.rs under {root:?}"
    );
    let problems = check(&doc, &sources, KNOWN);
    assert!(
        problems.is_empty(),
        "the layering of src/ breaks the table in docs/design.md:\n{}",
        problems.join("\n")
    );
}

/// The check itself: a synthetic table and sources with one of each problem.
#[test]
fn check_catches_planted_violations() {
    let doc = "\
| file | layer | owns |
| --- | --- | --- |
| `src/lib.rs` | 9 | root |
| `src/low.rs` | 0 | bottom |
| `src/high.rs` | 2 | top |
| `src/dir/mod.rs` | 1 | a directory module |
| `src/dir/child.rs` | 1 | its child |
| `src/a.rs` | 1 | one of a cycle |
| `src/b.rs` | 1 | the other |
| `src/gone.rs` | 1 | a row without a file |
";
    let src = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect()
    };
    let clean = [
        (
            "src/lib.rs",
            "mod low; mod high; mod dir; mod a; mod b;\npub use high::Top;\n",
        ),
        (
            "src/low.rs",
            "// use crate::high::Top;\n/* crate::high::X */ const S: &str = \"crate::high::Y\";\n\
             fn f() -> char { '{' }\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
        ),
        (
            "src/high.rs",
            "use crate::{low, dir::child::C};\npub struct Top;\n",
        ),
        (
            "src/dir/mod.rs",
            "mod child;\nuse crate::low::L;\nfn g() { child::f() }\n",
        ),
        (
            "src/dir/child.rs",
            "use super::super::low::L;\npub fn f() {}\n",
        ),
        ("src/a.rs", "pub fn a() {}\n"),
        ("src/b.rs", "pub fn b() { crate::a::a() }\n"),
    ];
    let doc_ok = doc.replace("| `src/gone.rs` | 1 | a row without a file |\n", "");
    assert_eq!(check(&doc_ok, &src(&clean), &[]), Vec::<String>::new());

    // An edge running up, in a grouped `use` inside a non-test inline module.
    let mut bad = src(&clean);
    bad.insert(
        "src/low.rs".into(),
        "fn f() {}\nmod inner {\n    use crate::{dir::{child::C, self}};\n}\n".into(),
    );
    let p = check(&doc_ok, &bad, &[]);
    assert!(
        p.iter()
            .any(|m| m.starts_with("src/low.rs:3: `crate::dir::child::C` runs up")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|m| m.starts_with("src/low.rs:3: `crate::dir::self` runs up")),
        "{p:#?}"
    );

    // `super::` out of a child file is its directory module (layer 1 from layer 0: up).
    let mut bad = src(&clean);
    bad.insert(
        "src/low.rs".into(),
        "mod inner { fn f() { super::super::high::g() } }\n".into(),
    );
    let p = check(&doc_ok, &bad, &[]);
    assert!(
        p.iter()
            .any(|m| m.contains("src/low.rs:1: `super::super::high::g` runs up")),
        "{p:#?}"
    );

    // A cycle between two files of one layer.
    let mut bad = src(&clean);
    bad.insert(
        "src/a.rs".into(),
        "use crate::b::b;\npub fn a() {}\n".into(),
    );
    let p = check(&doc_ok, &bad, &[]);
    assert!(
        p.iter().any(|m| m.starts_with("cycle:")
            && m.contains("src/a.rs:1")
            && m.contains("src/b.rs:1")),
        "{p:#?}"
    );

    // A row without a file, and a file without a row.
    let mut bad = src(&clean);
    bad.insert("src/extra.rs".into(), "fn x() {}\n".into());
    let p = check(doc, &bad, &[]);
    assert!(
        p.iter()
            .any(|m| m.contains("`src/gone.rs`, which does not exist")),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|m| m.starts_with("src/extra.rs: no row")),
        "{p:#?}"
    );
}

#[test]
fn use_trees_expand() {
    assert_eq!(
        expand_use(" crate::{a::X, b::{Y as Z, self}, c::*}"),
        [
            "crate::a::X",
            "crate::b::Y",
            "crate::b::self",
            "crate::c::*"
        ]
    );
    assert_eq!(
        expand_use(" super::registry::Entry"),
        ["super::registry::Entry"]
    );
}

/// Lines outside `src/heap/` that the heap-write check flags but that store no heap word, each with
/// why. A listed line that no longer occurs fails the test, so the list only shrinks.
const HEAP_WRITE_EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "src/arena/open.rs",
        "inner.mem.word(offset).store(0, Ordering::Relaxed);",
        "a spare file-header word a recovery clears (`Problem::HeaderSpare`): no heap word",
    ),
    (
        "src/arena/meta.rs",
        "let check = self.mem.word(off + 8);",
        "a root slot's check word in the file header, settled by its offset: no heap word",
    ),
    (
        "src/loom_hooks/lists/slots.rs",
        "self.b.word(w).store(pattern, Ordering::Relaxed);",
        "a model's owner writing user bytes inside the block it was given: no heap word",
    ),
    (
        "src/testkit.rs",
        "block::live(len, generation, LiveState::Published, readers)",
        "the tests' header-word packing: returns the word, stores none",
    ),
    (
        "src/testkit.rs",
        "block::free(generation, next)",
        "the tests' header-word packing: returns the word, stores none",
    ),
    (
        "src/testkit.rs",
        "block::pad(span)",
        "the tests' header-word packing: returns the word, stores none",
    ),
];

/// `code` (stripped) with every `#[cfg(test)] mod name { .. }` blanked: unit tests plant words,
/// damaged ones included, on purpose.
fn without_test_modules(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(at) = out[from..].find("#[cfg(test)]").map(|i| i + from) {
        let after = &out[at + "#[cfg(test)]".len()..];
        let rest = after.trim_start();
        let Some(open) = rest
            .strip_prefix("mod ")
            .and_then(|r| r.find('{').filter(|&b| r[..b].trim().chars().all(is_ident)))
        else {
            from = at + 1;
            continue;
        };
        let open = at + "#[cfg(test)]".len() + (after.len() - rest.len()) + "mod ".len() + open;
        let mut depth = 0usize;
        let mut end = out.len();
        for (i, b) in out.bytes().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let blank: String = out[at..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(at..end, &blank);
        from = end;
    }
    out
}

/// Whether `rest` (the code right after a word access) starts a write to the word.
fn is_write(rest: &str) -> bool {
    let rest = rest.trim_start();
    [".store(", ".swap(", ".compare_exchange", ".fetch_"]
        .iter()
        .any(|w| rest.starts_with(w))
}

/// The stores to heap words in one file's code, as `(line, what)`: a `.word(x)` or
/// `.word_unchecked(x)` access, `x` not a file-header offset (`OFF_*`), that a `.store(`,
/// `.swap(`, `.compare_exchange..` or `.fetch_..` follows (whitespace and newlines between
/// allowed), directly or through a `let` binding used in the same block; and every header word
/// built with `block::free(`, `pad(`, `live(`, `live_small(`, `live_foreign(` or `large_tail(`.
/// Code in `#[cfg(test)]` modules is left out.
fn heap_writes(src: &str) -> Vec<(usize, String)> {
    let code = without_test_modules(&strip(src));
    let bytes = code.as_bytes();
    let line_at = |pos: usize| code[..pos].matches('\n').count() + 1;
    let mut found = Vec::new();
    let accesses = code
        .match_indices(".word(")
        .chain(code.match_indices(".word_unchecked("))
        .map(|(at, m)| (at, at + m.len()));
    for (at, open) in accesses {
        let mut depth = 1;
        let mut close = open;
        while close < bytes.len() && depth > 0 {
            match bytes[close] {
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ => {}
            }
            close += 1;
        }
        let arg = code[open..close - 1].trim();
        if arg
            .rsplit("::")
            .next()
            .is_some_and(|a| a.starts_with("OFF_"))
        {
            continue;
        }
        let rest = &code[close..];
        if is_write(rest) {
            found.push((line_at(at), "a store to a heap word".to_string()));
            continue;
        }
        // `let name = <..>.word(x)<..>;` and a write through `name` in the rest of the block.
        let boundary = |end: usize| code[..end].rfind([';', '{', '}']);
        let mut stmt = boundary(at);
        if let Some(b) = stmt.filter(|&b| code[..b].trim_end().ends_with("unsafe")) {
            stmt = boundary(b);
        }
        let stmt = stmt.map_or(0, |s| s + 1);
        let Some(name) = code[stmt..at].trim_start().strip_prefix("let ").map(|r| {
            let r = r.trim_start();
            let r = r.strip_prefix("mut ").unwrap_or(r);
            r.chars().take_while(|&c| is_ident(c)).collect::<String>()
        }) else {
            continue;
        };
        if name.is_empty()
            || !rest
                .trim_start()
                .trim_start_matches('}')
                .trim_start()
                .starts_with(';')
        {
            continue;
        }
        let rest = &rest[rest.find(';').map_or(rest.len(), |s| s + 1)..];
        let mut depth = 0i32;
        let mut end = rest.len();
        for (i, b) in rest.bytes().enumerate() {
            match b {
                b'{' => depth += 1,
                b'}' if depth == 0 => {
                    end = i;
                    break;
                }
                b'}' => depth -= 1,
                _ => {}
            }
        }
        let scope = &rest[..end];
        let writes = scope.match_indices(name.as_str()).any(|(i, _)| {
            !scope[..i].chars().next_back().is_some_and(is_ident)
                && !scope[i + name.len()..].chars().next().is_some_and(is_ident)
                && is_write(&scope[i + name.len()..])
        });
        if writes {
            found.push((
                line_at(at),
                format!("a store through `{name}` to a heap word"),
            ));
        }
    }
    for ctor in [
        "free",
        "pad",
        "live",
        "live_small",
        "live_foreign",
        "large_tail",
    ] {
        let pat = format!("block::{ctor}(");
        for (at, _) in code.match_indices(&pat) {
            if !code[..at].chars().next_back().is_some_and(is_ident) {
                found.push((line_at(at), format!("a header word built with `{pat}`")));
            }
        }
    }
    found.sort();
    found
}

/// Checks every file outside the heap layer (and the backing, which owns the word accessor, and
/// the block codec, which defines the header words) for stores to heap words, leaving out the
/// `exceptions` (file, line text, why); returns one message per problem.
fn check_heap_writes(
    sources: &BTreeMap<String, String>,
    exceptions: &[(&str, &str, &str)],
) -> Vec<String> {
    let mut left: Vec<Option<&(&str, &str, &str)>> = exceptions.iter().map(Some).collect();
    let mut problems = Vec::new();
    for (file, src) in sources {
        if ["src/heap/", "src/backing/", "src/block/"]
            .iter()
            .any(|d| file.starts_with(d))
        {
            continue;
        }
        let lines: Vec<&str> = src.lines().collect();
        for (line, what) in heap_writes(src) {
            let text = lines.get(line - 1).map_or("", |l| l.trim());
            let excused = left
                .iter_mut()
                .find(|e| e.is_some_and(|(f, t, _)| f == file && text.contains(t)));
            match excused {
                Some(e) => *e = None,
                None => problems.push(format!(
                    "{file}:{line}: {what} outside src/heap/ (call a heap verb): `{text}`"
                )),
            }
        }
    }
    for (f, t, _) in left.into_iter().flatten() {
        problems.push(format!(
            "tests/layering.rs: the heap-write exception {f}: `{t}` no longer occurs: delete it"
        ));
    }
    problems
}

/// Nothing above the heap layer stores a block-header word: the heap layer's verbs are the one
/// owner of every entry's words (docs/design.md, "The heap layer").
#[test]
fn only_the_heap_layer_stores_heap_words() {
    let problems = check_heap_writes(&crate_sources(), HEAP_WRITE_EXCEPTIONS);
    assert!(
        problems.is_empty(),
        "heap words stored outside src/heap/:\n{}",
        problems.join("\n")
    );
}

/// The heap-write check itself: planted stores of each shape are found, file-header words, test
/// modules and the heap layer are not, and a stale exception is reported.
#[test]
fn heap_write_check_catches_planted_stores() {
    let src = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect()
    };
    let clean = src(&[
        (
            "src/heap/entry.rs",
            "fn f(m: &B) { m.word(off).store(block::pad(8), R); }\n",
        ),
        (
            "src/arena/meta.rs",
            "fn g(m: &B) {\n    m.word(OFF_BUMP).store(1, R);\n    let hw = m.word(format::OFF_HIGH_WATER);\n    \
             hw.store(2, R);\n    let x = m.word(off).load(R); // m.word(off).store(0, R)\n}\n\
             #[cfg(test)]\nmod tests {\n    fn t(m: &B) { m.word(64).store(block::live(1, 2, S, 0), R); }\n}\n",
        ),
    ]);
    assert_eq!(check_heap_writes(&clean, &[]), Vec::<String>::new());

    let planted = [
        "fn a(m: &B) {\n    m.mem\n        .word(hdr + 8)\n        .store(span, R);\n}\n",
        "fn a(m: &B) { let w = unsafe { m.word_unchecked(hdr) };\n    w.compare_exchange(0, 1, R, R); }\n",
        "fn a(m: &B) { let mut w = m.word(hdr);\n    loop { w\n        .fetch_xor(1, R); } }\n",
        "fn a(m: &B) -> u64 { block::free(3, 0) }\n",
    ];
    for p in planted {
        let mut bad = clean.clone();
        bad.insert("src/arena/alloc.rs".into(), p.into());
        let problems = check_heap_writes(&bad, &[]);
        assert!(
            problems.len() == 1 && problems[0].starts_with("src/arena/alloc.rs:"),
            "{p}: {problems:#?}"
        );
        let excused = [("src/arena/alloc.rs", "", "planted")];
        assert_eq!(check_heap_writes(&bad, &excused), Vec::<String>::new());
    }
    let stale = check_heap_writes(&clean, &[("src/arena/alloc.rs", "w.store", "gone")]);
    assert!(
        stale.len() == 1 && stale[0].contains("no longer occurs"),
        "{stale:#?}"
    );
}

/// Where a file names the `loom` crate in code (comments and strings aside): the 1-based lines.
fn loom_paths(src: &str) -> Vec<usize> {
    let code = strip(src);
    let mut lines = Vec::new();
    for (at, _) in code.match_indices("loom::") {
        // `loom::` or `::loom::`, not `my_loom::` or `a::loom::`.
        let head = code[..at].strip_suffix("::").unwrap_or(&code[..at]);
        if !head.chars().next_back().is_some_and(is_ident) {
            lines.push(code[..at].matches('\n').count() + 1);
        }
    }
    lines
}

/// src/sync.rs says it is the only module that names loom: every loom atomic, `Arc`, `Mutex` and
/// thread-local reaches the rest of the crate through it (thread-locals through
/// `parena_thread_local!`), so a model never runs a std type in its place.
#[test]
fn only_sync_names_loom() {
    let found: Vec<String> = crate_sources()
        .iter()
        .filter(|(file, _)| file.as_str() != "src/sync.rs")
        .flat_map(|(file, src)| {
            loom_paths(src)
                .into_iter()
                .map(move |l| format!("{file}:{l}"))
        })
        .collect();
    assert!(
        found.is_empty(),
        "loom named outside src/sync.rs (use crate::sync's aliases and parena_thread_local!): {}",
        found.join(", ")
    );
    assert_eq!(
        loom_paths("// loom::x\nuse loom::sync;\nlet s = \"loom::\"; my_loom::f(); ::loom::g();\n"),
        [2, 3],
        "the scan itself"
    );
}
