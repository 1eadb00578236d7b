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

#[cfg(test)]
mod tests {
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
