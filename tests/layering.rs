//! The crate's modules depend one way only (ARCHITECTURE.md, "Layering"): no cycle
//! between top-level modules, nor between the engine's own modules (`ws::*`).
//!
//! Dependencies are read from the source: every `crate::a::b` and `super::` path in
//! non-test code, comments left out. A module's children count as the module itself
//! (a parent declares its children), so `hub::rooms -> hub` is not an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Module path of a source file: `src/hub/rooms.rs` -> `["hub", "rooms"]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix("src").unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its unit tests.
fn code_of(file: &Path) -> String {
    let text = fs::read_to_string(file).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths named after `prefix` (`crate::`, or `super::` repeated) in `code`.
fn paths_after<'a>(
    code: &'a str,
    prefix: &'a str,
) -> impl Iterator<Item = (usize, Vec<String>)> + 'a {
    code.match_indices(prefix).filter_map(move |(i, _)| {
        if i > 0 {
            let before = code.as_bytes()[i - 1];
            if before.is_ascii_alphanumeric() || before == b'_' || before == b':' {
                return None;
            }
        }
        let mut ups = 0;
        let mut rest = &code[i..];
        while let Some(r) = rest.strip_prefix(prefix) {
            ups += 1;
            rest = r;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let segs: Vec<String> = path
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Some((ups, segs))
    })
}

/// The longest prefix of `path` that is a module with a file of its own.
fn as_module(path: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
        .unwrap_or_default()
}

/// The node a module counts as: its top-level module, or `ws::x` inside the engine.
fn node(module: &[String]) -> Option<String> {
    match module {
        [] => None,
        [ws, sub, ..] if ws == "ws" => Some(format!("ws::{sub}")),
        [top, ..] => Some(top.clone()),
    }
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(Path::new("src"), &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let me = module_of(file);
        if me
            .last()
            .is_some_and(|m| m == "tests" || m == "test_support")
        {
            continue;
        }
        let Some(from) = node(&me) else { continue };
        let code = code_of(file);
        let mut targets = Vec::new();
        for (_, segs) in paths_after(&code, "crate::") {
            targets.push(as_module(&segs, &modules));
        }
        for (ups, segs) in paths_after(&code, "super::") {
            // `mod.rs` is its module; `super` from it is the parent of that module.
            let base = me.len().saturating_sub(ups);
            let mut path = me[..base].to_vec();
            path.extend(segs);
            targets.push(as_module(&path, &modules));
        }
        for target in targets {
            if let Some(to) = node(&target)
                && to != from
                // `ws` itself (its mod.rs re-exports) is the engine's facade.
                && !(from.starts_with("ws::") && to == "ws")
            {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

/// A cycle through `start`, if any (depth-first search).
fn cycle_from(start: &str, edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn walk(
        at: &str,
        start: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in edges.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(next, start, edges, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    walk(start, start, edges, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn modules_depend_one_way() {
    let edges = graph();
    // The graph is really read: the hub depends on rooms, the server on the session.
    assert!(edges["hub"].contains("room"), "{edges:?}");
    assert!(edges["server"].contains("session"), "{edges:?}");
    assert!(edges["ws::conn"].contains("ws::prepared"), "{edges:?}");
    let cycles: Vec<String> = edges
        .keys()
        .filter_map(|m| cycle_from(m, &edges))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "dependency cycles: {cycles:#?}");
}

#[test]
fn rooms_never_call_the_hub() {
    let edges = graph();
    for lower in [
        "room",
        "history",
        "presence",
        "protocol",
        "ws::prepared",
        "error",
    ] {
        let deps = edges.get(lower).cloned().unwrap_or_default();
        for upper in ["hub", "session", "server"] {
            assert!(
                !deps.contains(upper),
                "{lower} depends on {upper}: {deps:?}"
            );
        }
    }
}
