//! Slugs: the URL-safe names of organizations, projects and provider credentials
//! (`[a-z0-9]` and single inner hyphens), derived from display names.

/// The longest slug.
pub const MAX_CHARS: usize = 48;

pub fn is_valid(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= MAX_CHARS
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-')
        && !slug.contains("--")
}

/// The slug of a display name: ASCII letters and digits kept (lower-cased), everything else a
/// single hyphen; `fallback` when nothing is left.
pub fn slugify(name: &str, fallback: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    // leave room for a "-NN" collision suffix
    slug.truncate(MAX_CHARS - 4);
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() { fallback.to_owned() } else { slug.to_owned() }
}

/// `base`, or `base-2`, `base-3`... : the first that `taken` does not contain.
pub fn first_free(base: &str, taken: &[String]) -> String {
    if !taken.iter().any(|t| t == base) {
        return base.to_owned();
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_slugs() {
        assert_eq!(slugify("My Great App!", "x"), "my-great-app");
        assert_eq!(slugify("  --Ünïcode__name-- ", "x"), "n-code-name");
        assert_eq!(slugify("日本", "project"), "project");
        assert!(slugify(&"a".repeat(200), "x").len() <= MAX_CHARS - 4);
        for s in ["my-great-app", "a", "a1-b2"] {
            assert!(is_valid(s), "{s}");
        }
        for s in ["", "-a", "a-", "a--b", "A", "a_b", &"a".repeat(49)] {
            assert!(!is_valid(s), "{s}");
        }
    }

    #[test]
    fn collisions_get_numeric_suffixes() {
        let taken = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(first_free("app", &taken(&[])), "app");
        assert_eq!(first_free("app", &taken(&["app"])), "app-2");
        assert_eq!(first_free("app", &taken(&["app", "app-2", "app-3"])), "app-4");
        assert_eq!(first_free("app", &taken(&["app-2"])), "app");
    }
}
