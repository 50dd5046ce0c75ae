//! The crate's top-level modules call down, never back up: no two of them import each other,
//! directly or around a circle. Circles (config ↔ the plugin runner, pipeline ↔ engine)
//! made every layer depend on every other, so none could be read, tested or moved alone.
//!
//! Read from the source: every `crate::…` path (and `super::…` reaching the crate root)
//! outside comments and `#[cfg(test)] mod tests`, by the top-level module of the file it
//! is in and the one it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the modules it uses → the files that do.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

#[test]
fn top_level_modules_import_each_other_in_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    assert!(
        graph.len() > 20
            && graph.contains_key("pipeline")
            && graph["pipeline"].contains_key("engine"),
        "the source was not read: {graph:?}"
    );
    if let Some(circle) = find_circle(&graph) {
        let steps: Vec<String> = circle
            .windows(2)
            .map(|w| {
                let files: Vec<&str> = graph[&w[0]][&w[1]].iter().map(String::as_str).collect();
                format!("{} → {} ({})", w[0], w[1], files.join(", "))
            })
            .collect();
        panic!(
            "modules import each other in a circle:\n  {}",
            steps.join("\n  ")
        );
    }
}

/// The checker finds a circle where there is one.
#[test]
fn a_circle_is_found() {
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
    let uses = uses_in(
        "use crate::{\n    a,\n    b::c,\n};\n// crate::commented\nlet x = super::super::d::e(crate::f);\n",
        &["x".into(), "y".into()],
    );
    assert_eq!(uses, ["a", "b", "d", "f"].map(String::from).into());
}

fn graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap();
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
        let Some(top) = module.first().cloned() else {
            continue; // lib.rs and main.rs declare and glue; they are above every module
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default();
        let entry = graph.entry(top.clone()).or_default();
        for used in uses_in(code, &module) {
            if used != top {
                entry
                    .entry(used)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    // Names that are not modules (macros, `crate::Result`) are no edges.
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for uses in graph.values_mut() {
        uses.retain(|m, _| modules.contains(m));
    }
    graph
}

/// The top-level modules `code` names, in a file of module path `module`.
fn uses_in(code: &str, module: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code: Vec<&str> = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    let code = code.join("\n");
    {
        let mut rest = code.as_str();
        while let Some(at) = next_path(rest) {
            let (path, after) = at;
            rest = after;
            // `crate::x` or `super::…::x` with as many `super`s as reach the root.
            let mut parts = path.split("::").map(str::trim);
            let head = parts.next().unwrap_or_default();
            let mut depth = module.len();
            let mut named = Vec::new();
            if head == "crate" {
                depth = 0;
            } else {
                depth -= 1; // the first `super`
                for p in parts.by_ref() {
                    if p == "super" {
                        depth = depth.saturating_sub(1);
                    } else {
                        named.push(p.to_string());
                        break;
                    }
                }
            }
            if depth > 0 {
                continue; // inside its own top-level module
            }
            named.extend(parts.map(String::from));
            match named.first().map(String::as_str) {
                Some(group) if group.starts_with('{') => {
                    let inner = path[path.find('{').unwrap() + 1..].trim_end_matches('}');
                    for item in inner.split(',') {
                        let m = item.trim().split("::").next().unwrap_or_default();
                        if is_ident(m) {
                            out.insert(m.to_string());
                        }
                    }
                }
                Some(m) if is_ident(m) => {
                    out.insert(m.to_string());
                }
                _ => {}
            }
        }
    }
    out
}

/// The next `crate::…` or `super::…` path in `s` (a `{…}` group whole), and what follows.
fn next_path(s: &str) -> Option<(&str, &str)> {
    let start = ["crate::", "super::"]
        .iter()
        .filter_map(|k| {
            s.match_indices(k)
                .find(|(i, _)| {
                    !s[..*i]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                })
                .map(|(i, _)| i)
        })
        .min()?;
    let tail = &s[start..];
    let mut end = 0;
    let mut braces = 0;
    for (i, c) in tail.char_indices() {
        match c {
            '{' => braces += 1,
            '}' if braces > 0 => {
                braces -= 1;
                if braces == 0 {
                    end = i + 1;
                    break;
                }
            }
            c if braces == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') => {
                end = i;
                break;
            }
            _ => {}
        }
        end = i + c.len_utf8();
    }
    Some((&tail[..end], &tail[end..]))
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !matches!(s, "self" | "super" | "crate")
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

/// A circle as its modules, the first repeated at the end; `None` when there is none.
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
