//! graflow-core's modules import each other one way only: each top-level module may use the
//! modules listed before it in `LAYERS`, never one after it. A change that makes a lower layer
//! reach up (the circle this crate once had) fails here, naming the file and the import.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bottom first. Modules on one line are independent of each other.
const LAYERS: &[&[&str]] = &[
    &[
        "value",
        "config",
        "retry",
        "descendants",
        "interrupt",
        "files",
        // Human feedback's data: requests, answers, their errors.
        "feedback",
        // The background runtime of the out-of-process machinery: Tokio only.
        "runtime",
    ],
    &["channel"],
    &["definition"],
    &["graph"],
    &["report"],
    &["observe"],
    // The interface of a run store (the engine's recorder): events as `observe` has them.
    &["record"],
    &["run"],
    &["remote"],
    &["program"],
    &["runner"],
    // The backend SDK: the public face of `remote`, `runner`, `program` and `interrupt`.
    &["backend"],
    &["handlers"],
    &["engine"],
    &["error"],
    // Compiled only for the fuzz targets (`--cfg fuzzing`): drives the decoders of every layer.
    &["fuzzing"],
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file's code (not its comments, not `$crate` macro paths) names
/// through `crate::`.
fn imports(source: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = &rest[..at];
            let after = &rest[at + "crate::".len()..];
            rest = after;
            if before.ends_with('$') || before.ends_with("pub(") {
                continue;
            }
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::{a, b}` groups: take every name in the braces.
            if name.is_empty() && after.starts_with('{') {
                let group = after[1..].split('}').next().unwrap_or("");
                for part in group.split(',') {
                    let module = part.trim().split("::").next().unwrap_or("").trim();
                    if !module.is_empty() {
                        found.push((module.to_owned(), n + 1));
                    }
                }
            } else if !name.is_empty() {
                found.push((name, n + 1));
            }
        }
    }
    found
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rank: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, layer)| layer.iter().map(move |m| (*m, i)))
        .collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut unknown = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src/");
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_owned())
            .expect("a file name");
        if module == "lib" {
            continue;
        }
        let Some(&own) = rank.get(module.as_str()) else {
            unknown.push(module);
            continue;
        };
        let source = std::fs::read_to_string(file).expect("a readable source file");
        for (import, line) in imports(&source) {
            if import == module {
                continue;
            }
            match rank.get(import.as_str()) {
                Some(&theirs) if theirs < own => {}
                // Items re-exported at the crate root (`crate::Task` in a doc link or path):
                // resolve them through lib.rs instead, so list them here as violations too.
                _ => violations.push(format!(
                    "{}:{line}: `{module}` uses `crate::{import}`, which is not a layer below it",
                    relative.display()
                )),
            }
        }
    }
    unknown.sort();
    unknown.dedup();
    assert!(
        unknown.is_empty(),
        "modules missing from LAYERS: {unknown:?}"
    );
    assert!(
        violations.is_empty(),
        "imports against the layering (bottom first: {LAYERS:?}):\n{}",
        violations.join("\n")
    );
}

/// Inside `run/`, bottom first: each submodule may name (as `super::NAME` or
/// `crate::run::NAME`) only the submodules before it. Items `run/mod.rs` re-exports are the
/// parent's and not checked here.
const RUN_LAYERS: &[&[&str]] = &[
    &["cpu", "gate", "feedback"],
    &["body", "context"],
    &["handler", "state"],
    &["control"],
    &["body_access"],
    &["checkpoint"],
    &["options", "error"],
    &["scheduler", "standalone"],
];

/// The `run/` submodules a file names through `super::` (from a file directly in `run/`),
/// `super::super::` (from a file in a folder of `run/`) or `crate::run::`.
fn run_imports(source: &str, depth: usize) -> Vec<(String, usize)> {
    let prefixes: Vec<String> = vec![
        format!("{}", "super::".repeat(depth)),
        "crate::run::".to_owned(),
    ];
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for prefix in &prefixes {
            let mut rest = code;
            while let Some(at) = rest.find(prefix.as_str()) {
                let before = &rest[..at];
                let after = &rest[at + prefix.len()..];
                rest = after;
                // `super::super::x` seen as `super::` + `super`: skip the longer match's part.
                if before.ends_with("super::") || after.starts_with("super::") {
                    continue;
                }
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let names: Vec<String> = if name.is_empty() && after.starts_with('{') {
                    // `super::{a, b::C}` groups (on one line): every name in the braces.
                    let group = after[1..].split('}').next().unwrap_or("");
                    group
                        .split(',')
                        .map(|part| {
                            part.trim()
                                .split("::")
                                .next()
                                .unwrap_or("")
                                .trim()
                                .to_owned()
                        })
                        .collect()
                } else {
                    vec![name]
                };
                for name in names {
                    if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    {
                        found.push((name, n + 1));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn run_submodules_import_only_the_ones_below_them() {
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/run");
    let rank: BTreeMap<&str, usize> = RUN_LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, layer)| layer.iter().map(move |m| (*m, i)))
        .collect();
    let mut files = Vec::new();
    rust_files(&run, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut unknown = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&run).expect("under src/run/");
        let parts: Vec<&str> = relative
            .components()
            .filter_map(|c| c.as_os_str().to_str())
            .collect();
        let module = parts[0].trim_end_matches(".rs");
        if module == "mod" {
            continue;
        }
        let Some(&own) = rank.get(module) else {
            unknown.push(module.to_owned());
            continue;
        };
        // A file in a folder (`checkpoint/write.rs`) reaches its siblings through `super::`
        // and `run/`'s other submodules through `super::super::`; its folder's `mod.rs` is a
        // file directly in the folder, one level down as well.
        let depth = if parts.len() > 1 && parts[parts.len() - 1] != "mod.rs" {
            2
        } else {
            1
        };
        let source = std::fs::read_to_string(file).expect("a readable source file");
        for (import, line) in run_imports(&source, depth) {
            if import == module {
                continue;
            }
            match rank.get(import.as_str()) {
                Some(&theirs) if theirs < own => {}
                Some(_) => violations.push(format!(
                    "run/{}:{line}: `{module}` uses `{import}`, which is not below it",
                    relative.display()
                )),
                // Names that are not submodules (items, `self`, a folder's own children).
                None => {}
            }
        }
    }
    unknown.sort();
    unknown.dedup();
    assert!(
        unknown.is_empty(),
        "run/ submodules missing from RUN_LAYERS: {unknown:?}"
    );
    assert!(
        violations.is_empty(),
        "imports against run/'s layering (bottom first: {RUN_LAYERS:?}):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_run_layer_check_sees_a_cycle() {
    // `state` naming `scheduler` (the circle run/ once had) is found.
    let found = run_imports("use super::scheduler::Scheduler;", 1);
    assert_eq!(found, vec![("scheduler".to_owned(), 1)]);
    let nested = run_imports(
        "use super::super::scheduler::Start; use super::format::Head;",
        2,
    );
    assert_eq!(nested, vec![("scheduler".to_owned(), 1)]);
}
