//! The modules of graflow-docker refer to each other one way only: no two top-level modules
//! import each other, directly or through others. A cycle means two areas cannot be read,
//! changed or tested apart; this test names it.
//!
//! The graph is read from the sources, without a compiler: for each top-level module (`src/x.rs`
//! or the folder `src/x/`), the other top-level modules its code names, as `crate::NAME`
//! (`use crate::{a, b::C}` too) or as a `super::` chain that climbs to the crate root.
//! Comments, strings and character literals are skipped. `crate::NAME` where `NAME` is not a
//! top-level module (an item of `lib.rs`) is not an edge; the crate root is above every module.
//! A `super::` chain is counted from the file's place in the tree and not from inline `mod`
//! blocks, so a chain inside `mod tests { ... }` may add an edge that is not there, never hide
//! one.
//!
//! [`module_graph`] and [`find_cycle`] take any crate's `src` directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// For each top-level module of the crate whose sources are in `src`, the other top-level
/// modules it refers to. Every module is a key, also one that refers to none.
pub fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files: Vec<(String, usize, PathBuf)> = Vec::new();
    for entry in read_dir(src) {
        let path = entry;
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if path.is_dir() {
            let mut below = Vec::new();
            rust_files(&path, 1, &mut below);
            for (depth, file) in below {
                files.push((name.clone(), depth, file));
            }
        } else if let Some(module) = name.strip_suffix(".rs")
            && module != "lib"
            && module != "main"
        {
            files.push((module.to_owned(), 1, path));
        }
    }
    let modules: BTreeSet<String> = files.iter().map(|(m, ..)| m.clone()).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for (module, depth, file) in &files {
        let text = fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        for name in crate_level_names(&code_only(&text), *depth) {
            if name != *module && modules.contains(&name) {
                graph.entry(module.clone()).or_default().insert(name);
            }
        }
    }
    graph
}

/// A cycle of `graph` as the modules along it, the first repeated at the end (`a → b → a`), or
/// `None` when the graph has none.
pub fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        marks.insert(node, Mark::Open);
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next.as_str()).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = path.iter().position(|m| *m == next.as_str()).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|m| (*m).to_owned()).collect();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(next, graph, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node.as_str()).copied().unwrap_or(Mark::New) == Mark::New
            && let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

/// The modules of an acyclic `graph` in layers: each module refers only to modules of earlier
/// layers. `None` when there is a cycle.
pub fn layers(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<Vec<String>>> {
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut layers = Vec::new();
    while placed.len() < graph.len() {
        let layer: Vec<String> = graph
            .iter()
            .filter(|(m, deps)| {
                !placed.contains(m.as_str()) && deps.iter().all(|d| placed.contains(d.as_str()))
            })
            .map(|(m, _)| m.clone())
            .collect();
        if layer.is_empty() {
            return None;
        }
        for m in &layer {
            placed.insert(graph.get_key_value(m)?.0.as_str());
        }
        layers.push(layer);
    }
    Some(layers)
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path()
        })
        .collect();
    paths.sort();
    paths
}

/// The `.rs` files under `dir`, the folder of a module `depth` levels below the crate root, with
/// the depth of the module each defines (`mod.rs` is its folder's module).
fn rust_files(dir: &Path, depth: usize, out: &mut Vec<(usize, PathBuf)>) {
    for path in read_dir(dir) {
        if path.is_dir() {
            rust_files(&path, depth + 1, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let own = path.file_name().is_some_and(|n| n == "mod.rs");
            out.push((if own { depth } else { depth + 1 }, path));
        }
    }
}

/// `text` with comments, string literals and character literals replaced by spaces (lifetimes
/// are kept).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string `r#"..."#`, or an identifier starting with `r#`.
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                j += 1;
            }
            if chars.get(j) == Some(&'"') {
                let hashes = j - i - 1;
                j += 1;
                while j < chars.len()
                    && !(chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')))
                {
                    j += 1;
                }
                i = j + 1 + hashes;
                out.push(' ');
            } else {
                out.push(c);
                i += 1;
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}'), or a lifetime ('a), which stays.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push(' ');
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push(' ');
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The names right below the crate root that `code` (of a module `depth` levels below the root)
/// refers to: after `crate::`, inside `crate::{...}`, and after a chain of at least `depth`
/// `super::`.
fn crate_level_names(code: &str, depth: usize) -> BTreeSet<String> {
    let tokens = path_tokens(code);
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        // Where the path goes on after its climb to the root, if it climbs there.
        let (climbs, after) = if tokens[i] == "crate" && tokens.get(i + 1) == Some(&"::") {
            (true, i + 2)
        } else if tokens[i] == "super" {
            let (mut supers, mut j) = (0, i);
            while tokens.get(j) == Some(&"super") && tokens.get(j + 1) == Some(&"::") {
                supers += 1;
                j += 2;
            }
            (supers > 0 && supers >= depth, j)
        } else {
            (false, i)
        };
        if climbs {
            match tokens.get(after) {
                Some(&"{") => {
                    // `crate::{a, b::C, d::{E, F}}`: the first segment of each path in it.
                    let mut level = 0;
                    let mut expect_name = true;
                    for token in &tokens[after..] {
                        match *token {
                            "{" => {
                                level += 1;
                                expect_name = level == 1;
                            }
                            "}" => {
                                level -= 1;
                                if level == 0 {
                                    break;
                                }
                            }
                            "," if level == 1 => expect_name = true,
                            name if expect_name && level == 1 && is_ident(name) => {
                                names.insert(name.to_owned());
                                expect_name = false;
                            }
                            _ => expect_name = false,
                        }
                    }
                }
                Some(name) if is_ident(name) => {
                    names.insert((*name).to_owned());
                }
                _ => {}
            }
        }
        i = after.max(i + 1);
    }
    names
}

fn is_ident(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// `code` as identifiers (`$crate` and `r#x` whole), `::`, braces and commas; anything else is
/// a separator.
fn path_tokens(code: &str) -> Vec<&str> {
    let bytes = code.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric()
                    || bytes[i] == b'_'
                    || bytes[i] == b'$'
                    || bytes[i] == b'#'
                    || bytes[i] >= 0x80)
            {
                i += 1;
            }
            tokens.push(&code[start..i]);
        } else if c == b':' && bytes.get(i + 1) == Some(&b':') {
            tokens.push("::");
            i += 2;
        } else if matches!(c, b'{' | b'}' | b',') {
            tokens.push(&code[i..=i]);
            i += 1;
        } else {
            i += 1;
        }
    }
    tokens
}

/// The message for a cycle: the cycle, then the whole graph.
fn explain(cycle: &[String], graph: &BTreeMap<String, BTreeSet<String>>) -> String {
    let mut text = format!(
        "the modules import each other in a circle: {}\n\nevery module and what it refers to:\n",
        cycle.join(" → ")
    );
    for (module, deps) in graph {
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        text.push_str(&format!("  {module} → {}\n", deps.join(", ")));
    }
    text
}

#[test]
fn graflow_docker_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(
        graph.len() > 3,
        "found too few modules in {}: {graph:?}",
        src.display()
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("{}", explain(&cycle, &graph));
    }
    let layers = layers(&graph).unwrap_or_default();
    println!("graflow-docker's modules, lowest layer first:");
    for (n, layer) in layers.iter().enumerate() {
        println!("  {n}: {}", layer.join(", "));
    }
}

/// A scratch crate source tree, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, files: &[(&str, &str)]) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "graflow-module-graph-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        for (path, text) in files {
            let path = dir.join(path);
            fs::create_dir_all(path.parent().unwrap_or(&dir)).expect("create the scratch folder");
            fs::write(&path, text).expect("write a scratch file");
        }
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_cycle_through_a_folder_module_and_a_super_chain_is_found() {
    let scratch = Scratch::new(
        "cycle",
        &[
            ("lib.rs", "mod a; mod b; mod c; pub use crate::a::A;"),
            ("a.rs", "use crate::{b::B, c};\npub struct A;"),
            ("b/mod.rs", "mod inner; pub struct B;"),
            ("b/inner.rs", "use super::super::c::C; use super::B;"),
            (
                "c.rs",
                "// crate::a in a comment\nconst S: &str = \"crate::a\";\nfn f<'a>(x: &'a str) -> char { 'x' }\npub struct C(crate::b::B);",
            ),
        ],
    );
    let graph = module_graph(&scratch.0);
    let expected: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b", "c"]), ("b", vec!["c"]), ("c", vec!["b"])]
            .into_iter()
            .map(|(m, deps)| (m.to_owned(), deps.into_iter().map(str::to_owned).collect()))
            .collect();
    assert_eq!(graph, expected);
    let cycle = find_cycle(&graph).expect("b and c refer to each other");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 3, "{cycle:?}");
    assert!(
        explain(&cycle, &graph).contains("b → c → b")
            || explain(&cycle, &graph).contains("c → b → c")
    );
    assert_eq!(layers(&graph), None);
}

#[test]
fn a_one_way_graph_has_no_cycle_and_is_layered() {
    let scratch = Scratch::new(
        "layers",
        &[
            ("lib.rs", "mod a; mod b; mod c;"),
            ("a.rs", "pub struct A;"),
            ("b.rs", "use crate::a::A; mod tests { use super::*; }"),
            ("c.rs", "use crate::{a, b};"),
        ],
    );
    let graph = module_graph(&scratch.0);
    assert_eq!(find_cycle(&graph), None, "{graph:?}");
    let expected: Vec<Vec<String>> = vec![vec!["a".into()], vec!["b".into()], vec!["c".into()]];
    assert_eq!(layers(&graph), Some(expected));
}
