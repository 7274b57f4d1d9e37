//! The modules of every crate of the workspace form a one-way graph: no module uses, directly or
//! through others, a module that uses it. Checked for each crate's top-level modules
//! (`src/*.rs`, `src/*/mod.rs`) and, the same way, for the files of each module folder
//! (`graflow-redis/src/worker/*.rs`, `graflow-core/src/run/scheduler/*.rs`). (graflow-core's
//! `tests/layers.rs` also holds its modules to a documented order.)
//!
//! Each file is read as Rust tokens (comments and doc comments are not code, so links in
//! documentation make no edge). A path that names a module of the crate makes an edge: one
//! from `crate::`, from `super::` (resolved against where it stands, inline `mod`s included),
//! or from `self::` or a child module's name. A name the parent file re-exports (`crate::Worker`,
//! `pub use worker::Worker` in `lib.rs`) counts as the module it comes from; any other item of
//! the parent file counts as the parent file itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// A module path from the crate root: `["worker", "lease"]`.
type ModPath = Vec<String>;

/// One source file: its module path and its tokens.
struct File {
    module: ModPath,
    path: PathBuf,
    tokens: TokenStream,
}

/// The crates checked, by folder (the facade is the workspace root).
const CRATES: &[&str] = &[
    "graflow-protocol",
    "graflow-core",
    "graflow-macros",
    "graflow-docker",
    "graflow-redis",
    "graflow-store",
    ".",
];

fn src(krate: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(krate)
        .join("src")
}

/// Every `.rs` file under `dir`, with its module path.
fn files(dir: &Path, module: &ModPath, out: &mut Vec<File>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a UTF-8 file name")
            .to_owned();
        if path.is_dir() {
            let mut child = module.clone();
            child.push(name);
            files(&path, &child, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut own = module.clone();
            if !matches!(name.as_str(), "lib" | "mod") {
                own.push(name);
            }
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let tokens: TokenStream = text
                .parse()
                .unwrap_or_else(|e| panic!("cannot tokenize {}: {e:?}", path.display()));
            out.push(File {
                module: own,
                path,
                tokens,
            });
        }
    }
}

/// What one file says: the absolute paths it names (with the module each is named from), the
/// modules declared in it (`mod x;`, `mod x { }`), and the names it re-exports (`use`).
#[derive(Default)]
struct Scan {
    paths: Vec<(ModPath, ModPath)>,
    declared: BTreeSet<ModPath>,
    /// `(module of the use, name it brings in, absolute path it comes from)`.
    uses: Vec<(ModPath, String, ModPath)>,
}

fn ident(tree: &TokenTree) -> Option<String> {
    match tree {
        TokenTree::Ident(i) => Some(i.to_string()),
        _ => None,
    }
}

fn is_punct(tree: Option<&TokenTree>, c: char) -> bool {
    matches!(tree, Some(TokenTree::Punct(p)) if p.as_char() == c)
}

/// Whether `trees[i..]` starts with `::`.
fn colons(trees: &[TokenTree], i: usize) -> bool {
    is_punct(trees.get(i), ':') && is_punct(trees.get(i + 1), ':')
}

/// The absolute form of a path that begins with `first` in module `module`, or `None` when it
/// does not name something of this crate.
fn absolute(first: &[String], module: &ModPath, children: &BTreeSet<ModPath>) -> Option<ModPath> {
    let head = first.first()?;
    match head.as_str() {
        "crate" => Some(first[1..].to_vec()),
        "self" => Some(
            module
                .iter()
                .cloned()
                .chain(first[1..].iter().cloned())
                .collect(),
        ),
        "super" => {
            let ups = first.iter().take_while(|s| *s == "super").count();
            let base = module.len().checked_sub(ups)?;
            Some(
                module[..base]
                    .iter()
                    .cloned()
                    .chain(first[ups..].iter().cloned())
                    .collect(),
            )
        }
        // A child module's name, as in `pub use worker::Worker` (a bare name is a variable).
        _ if first.len() > 1 => {
            let mut child = module.clone();
            child.push(head.clone());
            children.contains(&child).then(|| {
                module
                    .iter()
                    .cloned()
                    .chain(first.iter().cloned())
                    .collect()
            })
        }
        _ => None,
    }
}

/// Reads a path from `trees[i]` on: its segments, and where it ends. A `{...}` group after
/// `::` expands to each of its paths.
fn read_path(trees: &[TokenTree], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut segments = Vec::new();
    while let Some(name) = trees.get(i).and_then(ident) {
        segments.push(name);
        i += 1;
        if !colons(trees, i) {
            return (vec![segments], i);
        }
        i += 2;
        if let Some(TokenTree::Group(g)) = trees.get(i)
            && g.delimiter() == Delimiter::Brace
        {
            let inner: Vec<TokenTree> = g.stream().into_iter().collect();
            let mut all = Vec::new();
            let mut j = 0;
            while j < inner.len() {
                let (paths, end) = read_path(&inner, j);
                for tail in paths {
                    all.push(segments.iter().cloned().chain(tail).collect());
                }
                j = end.max(j + 1);
            }
            return (all, i + 1);
        }
    }
    (vec![segments], i)
}

fn scan(trees: &[TokenTree], module: &ModPath, children: &BTreeSet<ModPath>, out: &mut Scan) {
    let mut i = 0;
    while i < trees.len() {
        let tree = &trees[i];
        // `mod name { ... }` and `mod name;`
        if ident(tree).as_deref() == Some("mod")
            && let Some(name) = trees.get(i + 1).and_then(ident)
        {
            let mut inner = module.clone();
            inner.push(name);
            out.declared.insert(inner.clone());
            if let Some(TokenTree::Group(g)) = trees.get(i + 2) {
                let body: Vec<TokenTree> = g.stream().into_iter().collect();
                scan(&body, &inner, children, out);
                i += 3;
                continue;
            }
            i += 2;
            continue;
        }
        let after_colons = i >= 2 && colons(trees, i - 2);
        // `$crate::...` in a `macro_rules!` body is a path of the macro's caller.
        let in_macro = i >= 1 && is_punct(trees.get(i - 1), '$');
        if !after_colons && !in_macro && ident(tree).is_some() {
            let is_use = i >= 1 && ident(&trees[i - 1]).as_deref() == Some("use");
            let (paths, end) = read_path(trees, i);
            for path in paths {
                if let Some(abs) = absolute(&path, module, children) {
                    if is_use && let Some(last) = abs.last() {
                        out.uses.push((module.clone(), last.clone(), abs.clone()));
                    }
                    out.paths.push((module.clone(), abs));
                }
            }
            i = end.max(i + 1);
            continue;
        }
        if let TokenTree::Group(g) = tree {
            let body: Vec<TokenTree> = g.stream().into_iter().collect();
            scan(&body, module, children, out);
        }
        i += 1;
    }
}

/// The edges among the modules directly under `parent` (`parent`'s own file is left out: see
/// below): `from -> to` with the files that make them.
fn graph(
    files: &[File],
    scans: &[Scan],
    parent: &ModPath,
    modules: &BTreeSet<ModPath>,
) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    const PARENT: &str = "(parent file)";
    let depth = parent.len();
    // Names the parent file brings in with `use child::...`: they stand for that child.
    let mut reexports: HashMap<String, ModPath> = HashMap::new();
    for scan in scans {
        for (at, name, from) in &scan.uses {
            if at == parent && from.starts_with(parent) && from.len() > depth + 1 {
                reexports.insert(name.clone(), from.clone());
            }
        }
    }
    let node_of = |path: &ModPath| -> Option<String> {
        if !path.starts_with(parent) {
            return None;
        }
        let Some(next) = path.get(depth) else {
            return Some(PARENT.to_owned());
        };
        let child: ModPath = parent.iter().cloned().chain([next.clone()]).collect();
        if modules.contains(&child) {
            return Some(next.clone());
        }
        match reexports.get(next) {
            Some(from) => Some(from[depth].clone()),
            None => Some(PARENT.to_owned()),
        }
    };
    let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (file, scan) in files.iter().zip(scans) {
        for (at, target) in &scan.paths {
            // A path of the parent file's own module stands for the whole parent: skip paths
            // that do not leave `parent`.
            if target.len() <= depth {
                continue;
            }
            let (Some(from), Some(to)) = (node_of(at), node_of(target)) else {
                continue;
            };
            // A folder's `mod.rs` is its module's root: it declares and re-exports its files, and
            // they may use what it defines (`impl` blocks of its types in several files). The
            // order that matters is among the files, so edges with the parent are left out.
            if from == to || from == PARENT || to == PARENT {
                continue;
            }
            let rel = file
                .path
                .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
                .unwrap_or(&file.path)
                .display()
                .to_string();
            edges
                .entry(from)
                .or_default()
                .entry(to)
                .or_default()
                .insert(rel);
        }
    }
    edges
}

/// A cycle of `edges`, if there is one, as the nodes along it (the first repeated at the end).
fn cycle(edges: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        state: &mut HashMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flat_map(|m| m.keys()) {
            match state.get(next.as_str()).copied() {
                Some(1) => {
                    let at = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut found = stack[at..].to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                Some(_) => {}
                None => {
                    if let Some(found) = visit(next, edges, state, stack) {
                        return Some(found);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = HashMap::new();
    for node in edges.keys() {
        if !state.contains_key(node.as_str())
            && let Some(found) = visit(node, edges, &mut state, &mut Vec::new())
        {
            return Some(found);
        }
    }
    None
}

fn read_crate(krate: &str) -> (Vec<File>, Vec<Scan>, BTreeSet<ModPath>) {
    let mut all = Vec::new();
    files(&src(krate), &Vec::new(), &mut all);
    // Modules are the files (and folders) of the crate; inline modules are found by the scan.
    let mut modules: BTreeSet<ModPath> = all.iter().map(|f| f.module.clone()).collect();
    let mut scans = Vec::new();
    for file in &all {
        let trees: Vec<TokenTree> = file.tokens.clone().into_iter().collect();
        let mut scan_of = Scan::default();
        scan(&trees, &file.module, &modules, &mut scan_of);
        scans.push(scan_of);
    }
    for scan in &scans {
        modules.extend(scan.declared.iter().cloned());
    }
    (all, scans, modules)
}

fn describe(
    edges: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    cycle: &[String],
) -> String {
    let mut text = format!("the modules form a cycle: {}\n", cycle.join(" -> "));
    for pair in cycle.windows(2) {
        let files = edges
            .get(&pair[0])
            .and_then(|m| m.get(&pair[1]))
            .map(|f| f.iter().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        text.push_str(&format!("  {} -> {}: in {files}\n", pair[0], pair[1]));
    }
    text
}

#[test]
fn the_top_level_modules_of_every_crate_form_no_cycle() {
    for krate in CRATES {
        let (files, scans, modules) = read_crate(krate);
        let edges = graph(&files, &scans, &Vec::new(), &modules);
        if let Some(found) = cycle(&edges) {
            panic!("{krate}: {}", describe(&edges, &found));
        }
    }
    // The scan finds uses (the graph is not empty for want of reading them).
    let (files, scans, modules) = read_crate("graflow-redis");
    let edges = graph(&files, &scans, &Vec::new(), &modules);
    assert!(
        edges
            .get("worker")
            .is_some_and(|to| to.contains_key("keys")),
        "the scan missed worker -> keys: {edges:#?}"
    );
}

#[test]
fn the_files_of_each_module_folder_form_no_cycle() {
    for krate in CRATES {
        let (files, scans, modules) = read_crate(krate);
        let folders: BTreeSet<ModPath> = files
            .iter()
            .filter(|f| f.path.file_name().is_some_and(|n| n == "mod.rs"))
            .map(|f| f.module.clone())
            .collect();
        for folder in folders {
            let edges = graph(&files, &scans, &folder, &modules);
            if let Some(found) = cycle(&edges) {
                panic!(
                    "{krate}, in {}: {}",
                    folder.join("::"),
                    describe(&edges, &found)
                );
            }
        }
    }
}

#[test]
fn a_cycle_is_found_and_printed() {
    let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        edges
            .entry(from.to_owned())
            .or_default()
            .entry(to.to_owned())
            .or_default()
            .insert(format!("{from}.rs"));
    }
    let found = cycle(&edges).expect("a cycle");
    assert_eq!(found, ["a", "b", "c", "a"]);
    assert!(describe(&edges, &found).contains("c -> a: in c.rs"));
    if let Some(from_c) = edges.get_mut("c") {
        from_c.remove("a");
    }
    assert_eq!(cycle(&edges), None);
}
