//! The documentation stands alone: README.md stays a user's page, and every link in it, in
//! CHANGELOG.md and in docs/ resolves to a file (and heading) of this repository.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn pages() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    let mut pages = vec![root.join("README.md"), root.join("CHANGELOG.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("a docs directory") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages
}

/// The targets of the Markdown links `[text](target)` of `text`.
fn links(text: &str) -> Vec<&str> {
    text.split("](").skip(1).filter_map(|rest| rest.split(')').next()).collect()
}

/// GitHub's anchor of a heading: lower case, spaces to hyphens, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(page: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(page).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|h| anchor(h.trim_start_matches('#')))
        .collect()
}

#[test]
fn every_link_resolves_inside_the_repository() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("a readable page");
        for target in links(&text) {
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let linked =
                if file.is_empty() { page.clone() } else { page.parent().unwrap().join(file) };
            let fine = !target.contains("://")
                && !target.starts_with("mailto:")
                && linked.exists()
                && linked.canonicalize().is_ok_and(|p| p.starts_with(ROOT))
                && (fragment.is_empty() || anchors(&linked).iter().any(|a| a == fragment));
            if !fine {
                broken.push(format!("{}: ({target})", page.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links that leave the repository or lead nowhere:\n{}",
        broken.join("\n")
    );
    assert!(links("see [a](b.md#c) and [d](e)") == ["b.md#c", "e"]);
    assert_eq!(
        anchor(" Provider credentials (`/v1/providers`)"),
        "provider-credentials-v1providers"
    );
}

#[test]
fn the_readme_is_a_users_page() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README.md");
    assert!(readme.lines().count() <= 220, "README.md has {} lines", readme.lines().count());
    for word in readme.split(|c: char| !c.is_ascii_alphanumeric()) {
        let hash =
            word.len() >= 7 && word.len() <= 40 && word.bytes().all(|b| b.is_ascii_hexdigit());
        assert!(
            !hash || word.bytes().all(|b| b.is_ascii_digit()),
            "a commit hash in README.md: {word}"
        );
    }
    // nothing outside the repository: no sibling folder of the checkout is the user's
    let sibling = ["..", "shared"].join("/");
    assert!(!readme.contains(&sibling), "README.md points outside the repository");
}
