//! Calls go down the layers, never back up: in the daemon's crate and the engines' crate,
//! no two top-level modules import each other, directly or around a circle, and neither do any two of its files (a part
//! never reaches back into the `mod.rs` that sequences it while that imports the part).
//! Circles (config ↔ the plugin runner, pipeline ↔ engine, pipeline ↔ its live previews)
//! made every layer depend on every other, so none could be read, tested or moved alone.
//!
//! Read from the source: every `crate::…` and `super::…` path, and every path through a
//! file's own child modules, outside comments and `#[cfg(test)] mod tests`, resolved to the
//! file that defines what it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Node → the nodes it uses → the files that do.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// The daemon's crate.
fn host() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The providers' crate (with its mock servers).
fn engines() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engines/src")
}

#[test]
fn top_level_modules_import_each_other_in_no_circle() {
    let (modules, _) = graphs(&host());
    assert!(
        modules.len() > 20 && modules["pipeline"].contains_key("engine"),
        "the source was not read: {modules:?}"
    );
    assert_no_circle(&modules, "modules");
}

#[test]
fn files_import_each_other_in_no_circle() {
    let (_, files) = graphs(&host());
    assert!(
        files.len() > 80 && files["pipeline/mod.rs"].contains_key("pipeline/steps.rs"),
        "the source was not read: {files:?}"
    );
    assert_no_circle(&files, "files");
}

#[test]
fn the_engines_crate_has_no_circle_either() {
    let (modules, files) = graphs(&engines());
    assert!(
        files.len() > 15 && files["mock/mod.rs"].contains_key("mock/shared.rs"),
        "the source was not read: {files:?}"
    );
    assert_no_circle(&modules, "modules of luminary-engines");
    assert_no_circle(&files, "files of luminary-engines");
}

fn assert_no_circle(graph: &Graph, what: &str) {
    if let Some(circle) = find_circle(graph) {
        let steps: Vec<String> = circle
            .windows(2)
            .map(|w| {
                let by: Vec<&str> = graph[&w[0]][&w[1]].iter().map(String::as_str).collect();
                format!("{} → {} ({})", w[0], w[1], by.join(", "))
            })
            .collect();
        panic!(
            "{what} import each other in a circle:\n  {}",
            steps.join("\n  ")
        );
    }
}

/// The checker finds a circle where there is one, and reads paths as Rust resolves them.
#[test]
fn a_circle_is_found_and_paths_are_resolved() {
    fn edge(g: &mut Graph, a: &str, b: &str) {
        g.entry(a.into())
            .or_default()
            .entry(b.into())
            .or_default()
            .insert(format!("{a}.rs"));
        g.entry(b.into()).or_default();
    }
    let mut g = Graph::new();
    edge(&mut g, "cli", "pipeline");
    edge(&mut g, "pipeline", "engine");
    edge(&mut g, "engine", "config");
    assert_eq!(find_circle(&g), None);
    edge(&mut g, "config", "pipeline");
    let circle = find_circle(&g).expect("a circle");
    assert_eq!(circle.first(), circle.last());
    assert!(circle.contains(&"config".to_string()) && circle.contains(&"engine".to_string()));

    let module = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let known: BTreeSet<Vec<String>> = [
        &["a"][..],
        &["b"],
        &["b", "c"],
        &["d"],
        &["f"],
        &["x"],
        &["x", "y"],
        &["x", "y", "kid"],
        &["x", "z"],
    ]
    .iter()
    .map(|m| module(m))
    .collect();
    let code = "use crate::{\n    a,\n    b::c::Thing,\n};\n// crate::commented\n\
                let v = super::super::d::e(crate::f);\nuse super::{z, Other};\nkid::go();\n";
    let uses = uses_in(code, &module(&["x", "y"]), &known);
    let want: BTreeSet<Vec<String>> = [
        &["a"][..],
        &["b", "c"],
        &["d"],
        &["f"],
        &["x", "z"],
        &["x"],
        &["x", "y", "kid"],
    ]
    .iter()
    .map(|m| module(m))
    .collect();
    assert_eq!(uses, want);
}

/// The graph of top-level modules and the graph of files of the crate in `src`.
fn graphs(src: &Path) -> (Graph, Graph) {
    let mut files = BTreeMap::new(); // module path → file
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap().to_path_buf();
        let mut module: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        if matches!(
            module.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            module.pop();
        }
        files.insert(module, rel);
    }
    let known: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let (mut by_module, mut by_file) = (Graph::new(), Graph::new());
    for (module, rel) in &files {
        let name = rel.display().to_string().replace('\\', "/");
        by_file.entry(name.clone()).or_default();
        let Some(top) = module.first() else {
            continue; // lib.rs and main.rs declare and glue; they are above every module
        };
        by_module.entry(top.clone()).or_default();
        let text = std::fs::read_to_string(src.join(rel)).unwrap();
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default();
        for used in uses_in(code, module, &known) {
            let used_file = files[&used].display().to_string().replace('\\', "/");
            if used_file != name {
                by_file
                    .entry(name.clone())
                    .or_default()
                    .entry(used_file)
                    .or_default()
                    .insert(name.clone());
            }
            if used[0] != *top {
                by_module
                    .entry(top.clone())
                    .or_default()
                    .entry(used[0].clone())
                    .or_default()
                    .insert(name.clone());
            }
        }
    }
    (by_module, by_file)
}

/// The modules (by path from the crate root, among `known`) that `code` uses, in a file of
/// module path `module`: the longest known prefix of each path it names.
fn uses_in(code: &str, module: &[String], known: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let code: Vec<&str> = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    let code = code.join("\n");
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some((path, after)) = next_path(rest) {
        rest = after;
        let (prefix, tail) = match path.find('{') {
            Some(i) => (&path[..i], Some(path[i + 1..].trim_end_matches('}'))),
            None => (path, None),
        };
        let mut base: Vec<String> = Vec::new();
        let mut segs = prefix.split("::").map(str::trim).filter(|s| !s.is_empty());
        let mut first = true;
        let mut from_child = false;
        for s in segs.by_ref() {
            match (first, s) {
                (true, "crate") => base.clear(),
                (true, "super") => base = module[..module.len().saturating_sub(1)].to_vec(),
                (false, "super") => {
                    base.pop();
                }
                (true, child) => {
                    base = module.to_vec();
                    base.push(child.to_string());
                    from_child = true;
                }
                (false, name) => base.push(name.to_string()),
            }
            first = false;
        }
        if from_child && !known.contains(&base[..module.len() + 1].to_vec()) {
            continue; // `foo::bar` where `foo` is no child module: a crate or a type
        }
        let items: Vec<Vec<String>> = match tail {
            None => vec![base],
            Some(group) => group
                .split(',')
                .map(|item| {
                    let mut p = base.clone();
                    p.extend(
                        item.trim()
                            .split("::")
                            .map(str::trim)
                            .filter(|s| !s.is_empty() && *s != "self" && *s != "*")
                            .map(String::from),
                    );
                    p
                })
                .collect(),
        };
        for p in items {
            if let Some(n) = (1..=p.len()).rev().find(|&n| known.contains(&p[..n])) {
                if p[..n] != *module {
                    out.insert(p[..n].to_vec());
                }
            }
        }
    }
    out
}

/// The next path in `s` that starts at `crate::`, `super::` or a lower-case name followed
/// by `::` (a `{…}` group whole), and what follows it.
fn next_path(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let starts_word =
            word(bytes[i]) && (i == 0 || !(word(bytes[i - 1]) || bytes[i - 1] == b':'));
        if starts_word && bytes[i].is_ascii_lowercase() {
            let mut j = i;
            while j < bytes.len() && word(bytes[j]) {
                j += 1;
            }
            if s[j..].starts_with("::") && !s[j..].starts_with("::<") {
                let tail = &s[i..];
                let mut end = tail.len();
                let mut braces = 0;
                for (k, c) in tail.char_indices() {
                    match c {
                        '{' => braces += 1,
                        '}' if braces > 0 => {
                            braces -= 1;
                            if braces == 0 {
                                end = k + 1;
                                break;
                            }
                        }
                        c if braces == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') => {
                            end = k;
                            break;
                        }
                        _ => {}
                    }
                }
                return Some((&tail[..end], &tail[end..]));
            }
            i = j;
        } else {
            i += 1;
        }
    }
    None
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// A circle as its nodes, the first repeated at the end; `None` when there is none.
fn find_circle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        m: &String,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut circle = path[i..].to_vec();
            circle.push(m.clone());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.clone());
        for next in graph.get(m).into_iter().flat_map(|u| u.keys()) {
            if let Some(c) = visit(graph, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(graph, m, &mut Vec::new(), &mut done))
}
