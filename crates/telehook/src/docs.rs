//! The project's guides, the files under `docs/` in the repository, rendered here so they are
//! read on docs.rs beside the API and their Rust code blocks run as doctests.
//!
//! Each module below holds one guide and nothing else. A code block that needs an adapter
//! feature (a web framework) is marked `ignore` with the reason next to it; every other Rust
//! block compiles and runs with `cargo test -p telehook --doc`.
//!
//! Links between the guides point at the `.md` files, so they work on GitHub; on docs.rs use the
//! list below.

// The guides are read from the repository's `docs/` folder, outside this crate. `cargo package`
// takes only the crate's own folder, so publishing as is would fail to build. Before the first
// `cargo publish`, give the crate its own `crates/telehook/docs/` and change these paths to
// `../docs/…`: a symbolic link `crates/telehook/docs -> ../../docs` works (`cargo package --list
// -p telehook` then lists `docs/*.md`), or a copy made by the release script. Not done yet:
// nothing is published, a link breaks checkouts on Windows without symlink support, and a build
// script that copies files could fail or go stale.

#[doc = include_str!("../../../docs/telegram.md")]
pub mod telegram {}

#[doc = include_str!("../../../docs/adapter-contract.md")]
pub mod adapter_contract {}

#[doc = include_str!("../../../docs/timeouts.md")]
pub mod timeouts {}

#[doc = include_str!("../../../docs/webhook-reply.md")]
pub mod webhook_reply {}

#[doc = include_str!("../../../docs/long-polling.md")]
pub mod long_polling {}

#[doc = include_str!("../../../docs/relay.md")]
pub mod relay {}

#[doc = include_str!("../../../docs/edge.md")]
pub mod edge {}

#[doc = include_str!("../../../docs/scaling.md")]
pub mod scaling {}

#[doc = include_str!("../../../docs/operations.md")]
pub mod operations {}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// The Markdown files a reader follows links between: the README, the guides, and the
    /// crates' and examples' READMEs.
    fn markdown_files() -> Vec<PathBuf> {
        let root = repo();
        let mut files = vec![root.join("README.md"), root.join("CHANGELOG.md")];
        for dir in ["docs"] {
            for entry in std::fs::read_dir(root.join(dir)).expect("read docs/") {
                let path = entry.expect("docs/ entry").path();
                if path.extension().is_some_and(|e| e == "md") {
                    files.push(path);
                }
            }
        }
        for dir in ["crates", "examples"] {
            for entry in std::fs::read_dir(root.join(dir)).expect("read crates/") {
                let readme = entry.expect("entry").path().join("README.md");
                if readme.is_file() {
                    files.push(readme);
                }
            }
        }
        files
    }

    /// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
    fn slug(heading: &str) -> String {
        heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect()
    }

    fn anchors(text: &str) -> Vec<String> {
        let mut in_code = false;
        let mut out = Vec::new();
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
            } else if !in_code && line.starts_with('#') {
                out.push(slug(line.trim_start_matches('#')));
            }
        }
        out
    }

    /// Link targets written `[text](target)` or `[name]: target`, outside code blocks.
    fn links(text: &str) -> Vec<String> {
        let mut in_code = false;
        let mut out = Vec::new();
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if in_code {
                continue;
            }
            let mut rest = line;
            while let Some(at) = rest.find("](") {
                rest = &rest[at + 2..];
                let end = rest.find(')').unwrap_or(rest.len());
                out.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
            if let Some(definition) = line.strip_prefix('[')
                && let Some((_, target)) = definition.split_once("]: ")
            {
                out.push(target.trim().to_owned());
            }
        }
        out
    }

    /// Every relative link in the project's Markdown reaches a file of the repository (and a
    /// heading of it, for `file.md#anchor`), so a bare clone holds everything its docs cite.
    #[test]
    fn relative_links_stay_inside_the_repository_and_resolve() {
        let root = repo().canonicalize().expect("repository root");
        let mut broken = Vec::new();
        for file in markdown_files() {
            let text = std::fs::read_to_string(&file).expect("read markdown");
            for link in links(&text) {
                if link.contains("://") || link.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
                let target = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().expect("parent").join(path)
                };
                let Ok(target) = target.canonicalize() else {
                    broken.push(format!("{}: {link} (no such file)", file.display()));
                    continue;
                };
                if !target.starts_with(&root) {
                    broken.push(format!(
                        "{}: {link} (outside the repository)",
                        file.display()
                    ));
                    continue;
                }
                if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                    let text = std::fs::read_to_string(&target).expect("read link target");
                    if !anchors(&text).iter().any(|a| a == anchor) {
                        broken.push(format!("{}: {link} (no such heading)", file.display()));
                    }
                }
            }
            // The sibling folder the project once read its fixtures and facts from; spelled in
            // two parts so that this check is not itself a citation of it.
            let sibling = concat!("..", "/shared");
            if text.contains(sibling) {
                broken.push(format!("{}: cites {sibling}", file.display()));
            }
        }
        assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    }

    #[test]
    fn slugs_are_githubs() {
        assert_eq!(
            slug(" Ordering: one update per queue at a time"),
            "ordering-one-update-per-queue-at-a-time"
        );
        assert_eq!(
            slug(" The webhook reply (\"making requests when getting updates\")"),
            "the-webhook-reply-making-requests-when-getting-updates"
        );
        assert_eq!(
            slug(" Timeouts: `Throw` versus `Return`"),
            "timeouts-throw-versus-return"
        );
    }

    /// A guide added to `docs/` must be added here too, or docs.rs never shows it and its code
    /// blocks are never tested.
    #[test]
    fn every_guide_in_docs_is_included() {
        let source = include_str!("docs.rs");
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs");
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(dir).expect("read docs/") {
            let name = entry.expect("docs/ entry").file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".md") && !source.contains(&format!("docs/{name}\")")) {
                missing.push(name.into_owned());
            }
        }
        assert!(
            missing.is_empty(),
            "docs not included in src/docs.rs: {missing:?}"
        );
    }
}

#[doc = include_str!("../../../docs/cli.md")]
pub mod cli {}
