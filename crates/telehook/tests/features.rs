//! Every facade feature is documented: a row of the README's feature table names it.

#[test]
fn every_feature_has_a_row_in_the_readme() {
    let manifest = include_str!("../Cargo.toml");
    let readme = include_str!("../README.md");
    let features = manifest
        .split("[features]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [features] table");
    let names: Vec<&str> = features
        .lines()
        .filter_map(|line| line.split_once(" = ").map(|(name, _)| name.trim()))
        .filter(|name| !name.starts_with('#') && *name != "default")
        .collect();
    assert!(names.len() >= 13, "{names:?}");
    for name in names {
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "feature `{name}` has no row in crates/telehook/README.md"
        );
    }
}
