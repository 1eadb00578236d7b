//! Every example runs with `cargo run -p <name>`, as the README says: an example with more
//! than one binary (a `*-bare` baseline, say) names the one `cargo run` starts
//! (`default-run`), or cargo refuses with "could not determine which binary to run".

#[test]
fn every_example_with_several_binaries_sets_default_run() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        // The binaries cargo builds: src/main.rs, src/bin/*.rs and any declared path.
        let mut binaries = std::collections::BTreeSet::new();
        if dir.join("src/main.rs").exists() {
            binaries.insert("src/main.rs".to_owned());
        }
        if let Ok(entries) = std::fs::read_dir(dir.join("src/bin")) {
            for entry in entries {
                let name = entry.unwrap().file_name();
                binaries.insert(format!("src/bin/{}", name.to_string_lossy()));
            }
        }
        let mut in_bin = false;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin && let Some(path) = line.strip_prefix("path = ") {
                binaries.insert(path.trim_matches('"').to_owned());
            }
        }
        if binaries.len() > 1
            && !manifest
                .lines()
                .any(|line| line.trim_start().starts_with("default-run"))
        {
            missing.push(dir.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "examples with several binaries and no `default-run` (cargo run -p fails): {missing:?}"
    );
}
