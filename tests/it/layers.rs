//! The layer rules of `docs/architecture.md`, checked on the source: a change that adds an
//! import against them fails here, naming the file and the line.
//!
//! - nothing outside `src/api/` uses `crate::api`, except `src/server.rs`, the composition root
//!   that starts the roles (the HTTP API among them);
//! - `src/domain/` knows nothing of HTTP, the database, the queue or the workers;
//! - `src/delivery/` and `src/webhooks/` do not use each other, and the runtime they share
//!   uses neither.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, as a path relative to the crate root.
fn sources(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    let mut pending = vec![root.join(dir)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path.strip_prefix(root).expect("under the root").to_owned());
            }
        }
    }
    found.sort();
    found
}

/// The paths a `use` tree names, groups expanded: `crate::{api, db::{a, b}}` is `crate::api`,
/// `crate::db::a` and `crate::db::b`.
fn flatten(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        // `a::b as c` names `a::b`
        return vec![tree.split_whitespace().next().unwrap_or_default().to_owned()];
    };
    let head = tree[..open].trim();
    let inner = tree[open + 1..].trim_end().strip_suffix('}').unwrap_or_default();
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .flat_map(|part| flatten(&format!("{head}{part}")))
        .collect()
}

/// Whether `used` is `path` or inside it.
fn within(used: &str, path: &str) -> bool {
    used == path || used.starts_with(&format!("{path}::"))
}

/// Where `file` uses one of `paths` in code (comments are not code): in a `use` declaration,
/// groups included, or written out in full.
fn uses(file: &Path, paths: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join(file)).expect("a readable source file");
    let code: Vec<&str> =
        text.lines().map(|line| line.split("//").next().unwrap_or_default()).collect();
    let mut found = Vec::new();
    let mut n = 0;
    while n < code.len() {
        let line = code[n].trim_start();
        let first = n;
        let named: Vec<String> = match line.strip_prefix("use ").or(line.strip_prefix("pub use ")) {
            Some(rest) => {
                // a declaration runs to its semicolon
                let mut tree = rest.to_owned();
                while !tree.contains(';') && n + 1 < code.len() {
                    n += 1;
                    tree.push_str(code[n]);
                }
                flatten(tree.split(';').next().unwrap_or_default())
            }
            None => line
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map(str::to_owned)
                .collect(),
        };
        if named.iter().any(|used| paths.iter().any(|path| within(used, path))) {
            found.push(format!(
                "{}:{}: {}",
                file.display(),
                first + 1,
                text.lines().nth(first).unwrap_or_default().trim()
            ));
        }
        n += 1;
    }
    found
}

/// The offending lines of the files under `dir` (but not under `except`) that use `paths`.
fn violations(dir: &str, except: &[&str], paths: &[&str]) -> Vec<String> {
    sources(dir)
        .iter()
        .filter(|file| !except.iter().any(|e| file.starts_with(e)))
        .flat_map(|file| uses(file, paths))
        .collect()
}

#[test]
fn use_trees_are_read_whole() {
    let mut named = flatten("crate::{api, db::{a, b as c}, delivery}");
    named.sort();
    assert_eq!(named, ["crate::api", "crate::db::a", "crate::db::b", "crate::delivery"]);
    assert!(within("crate::api::json::Json", "crate::api") && !within("crate::apis", "crate::api"));
}

#[test]
fn nothing_outside_the_api_imports_it() {
    let found = violations("src", &["src/api", "src/server.rs"], &["crate::api", "relayit::api"]);
    assert!(
        found.is_empty(),
        "only src/api and the composition root use the API:\n{}",
        found.join("\n")
    );
    // the scan sees imports where there are some
    assert!(!uses(Path::new("src/server.rs"), &["crate::api"]).is_empty());
}

#[test]
fn the_domain_knows_nothing_of_http_storage_or_workers() {
    let outer = [
        "actix_web",
        "crate::api",
        "crate::error",
        "crate::db",
        "crate::queue",
        "crate::state",
        "crate::delivery",
        "crate::webhooks",
        "crate::providers",
        "crate::inbound",
        "diesel",
        "fred",
    ];
    let found = violations("src/domain", &[], &outer);
    assert!(found.is_empty(), "the domain imports an outer layer:\n{}", found.join("\n"));
}

#[test]
fn the_workers_share_the_runtime_not_each_other() {
    let mut found = violations("src/delivery", &[], &["crate::webhooks"]);
    found.extend(violations("src/webhooks", &[], &["crate::delivery"]));
    found.extend(violations("src/runtime", &[], &["crate::delivery", "crate::webhooks"]));
    assert!(found.is_empty(), "a worker imports another:\n{}", found.join("\n"));
    assert!(!sources("src/runtime").is_empty(), "the runtime is where it should be");
}
