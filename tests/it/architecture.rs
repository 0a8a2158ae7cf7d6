//! The crate's module graph flows one way: no top-level module of `src/` depends, directly or
//! through others, on a module that depends on it.
//!
//! Dependencies are read from the code itself: every `crate::module` path and every name in a
//! `use crate::{...}` group, in code lines (comments and doc links are not dependencies), in the
//! library's files (the binary's `cli/` and `main.rs` sit on top of everything).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Edges `from → to` between top-level modules, each with one place that creates it.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module of a file under `src/`, or `None` for the crate root and the binary.
fn top_module(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.as_str() {
        "lib.rs" | "main.rs" | "cli" => None,
        name => Some(name.trim_end_matches(".rs").to_string()),
    }
}

/// Code with `//` comments removed (string literals holding `//` are rare enough in this crate
/// that a line-level cut is good enough; a missed edge would only hide a cycle, never invent one).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("")))
}

/// Top-level modules named by `crate::` paths in `text`.
fn referenced_modules(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let code: Vec<(usize, &str)> = code_lines(text).collect();
    let joined: String = code.iter().map(|(_, l)| format!("{l}\n")).collect();
    let line_of = |offset: usize| joined[..offset].matches('\n').count() + 1;
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut at = 0;
    while let Some(pos) = joined[at..].find("crate::") {
        let start = at + pos + "crate::".len();
        at = start;
        // Skip `mprm_crate::` style suffixes: the match must start a path.
        let before = joined[..start - "crate::".len()].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &joined[start..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::b, c, d::{e, f}}`: the first segment of each top-level item.
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        found.push((line_of(start), ident(&group[i..])));
                        item_start = false;
                    }
                    c if !c.is_whitespace() => item_start = false,
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.push((line_of(start), name));
            }
        }
    }
    found
}

fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut graph = Graph::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let Some(from) = top_module(rel) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let edges = graph.entry(from.clone()).or_default();
        for (line, to) in referenced_modules(&text) {
            if to != from && to != "self" {
                edges
                    .entry(to)
                    .or_insert_with(|| format!("src/{}:{line}", rel.display()));
            }
        }
    }
    graph
}

/// Every cycle's members (strongly connected components with more than one module), by
/// Tarjan's algorithm.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut members = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                members.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if members.len() > 1 {
                members.sort();
                s.out.push(members);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    // The reader must see the graph's known edges, or an empty graph would pass vacuously.
    assert!(graph["train"].contains_key("data"), "{graph:#?}");
    assert!(graph["experiments"].contains_key("train"), "{graph:#?}");
    assert!(
        graph["gradient_selection"].contains_key("train"),
        "{graph:#?}"
    );
    let found = cycles(&graph);
    let explain: Vec<String> = found
        .iter()
        .map(|members| {
            let edges: Vec<String> = members
                .iter()
                .flat_map(|a| {
                    graph[a]
                        .iter()
                        .filter(|(b, _)| members.contains(b))
                        .map(move |(b, at)| format!("{a} → {b} ({at})"))
                })
                .collect();
            format!("cycle among {members:?}: {}", edges.join("; "))
        })
        .collect();
    assert!(found.is_empty(), "{}", explain.join("\n"));
}

#[test]
fn the_cycle_check_finds_a_planted_cycle_and_reads_use_groups() {
    let refs = referenced_modules(
        "use crate::{data::ids, head::{HeadKind, HeadName}, error::Result};\n\
         // use crate::train::nothing;\n\
         let x = crate::device::resolve(r); /// [`crate::eval`] in a doc\n",
    );
    let names: Vec<&str> = refs.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["data", "head", "error", "device"]);

    let mut graph = Graph::new();
    for (a, b) in [("data", "error"), ("select", "data"), ("train", "select")] {
        graph
            .entry(a.into())
            .or_default()
            .insert(b.into(), String::new());
    }
    assert!(cycles(&graph).is_empty());
    graph
        .entry("data".into())
        .or_default()
        .insert("train".into(), String::new());
    assert_eq!(cycles(&graph), vec![vec!["data", "select", "train"]]);
}

/// The module names README's "Source layout" block lists, in order (`src/x/`, `src/x.rs`, and the
/// continuation lines of a `src/a.rs, b.rs,` group).
fn readme_layout() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("## Source layout")
        .nth(1)
        .expect("README has a Source layout section");
    let block = section
        .split("```text")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let mut names = Vec::new();
    for line in block.lines() {
        // The module column ends at the first run of two spaces.
        let column = line.trim_start().split("  ").next().unwrap_or("");
        for part in column.split(',') {
            let part = part.trim().trim_start_matches("src/");
            let name = part.trim_end_matches('/').trim_end_matches(".rs");
            if !name.is_empty()
                && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                && (part.ends_with('/') || part.ends_with(".rs"))
            {
                names.push(name.to_string());
            }
        }
    }
    names
}

#[test]
fn readme_lists_every_module_in_dependency_order() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    let listed = readme_layout();
    let mut on_disk: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(&src).unwrap().to_path_buf();
            top_module(&rel)
        })
        .collect();
    on_disk.extend(graph.keys().cloned());
    let listed_set: BTreeSet<String> = listed
        .iter()
        .filter(|n| on_disk.contains(*n))
        .cloned()
        .collect();
    assert_eq!(listed_set, on_disk, "README's Source layout against src/");
    let position = |m: &str| listed.iter().position(|n| n == m).unwrap();
    let upward: Vec<String> = graph
        .iter()
        .flat_map(|(a, edges)| {
            edges
                .iter()
                .filter(|(b, _)| on_disk.contains(*b) && position(b) > position(a))
                .map(move |(b, at)| format!("{a} → {b} ({at})"))
        })
        .collect();
    assert!(
        upward.is_empty(),
        "modules that depend on one listed below them in README: {upward:?}"
    );
}
