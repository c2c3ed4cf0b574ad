//! The README's metric catalogue is checked against the code's, so the two cannot drift.

use ocx_sentinel::telemetry::CATALOGUE;

#[test]
fn readme_lists_every_metric_with_its_type_labels_and_help() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut missing = Vec::new();
    for d in CATALOGUE {
        let kind = d.kind.as_str();
        let row = format!("| `{}` | {kind} | {} | {} |", d.name, d.labels, d.help);
        if !readme.contains(&row) {
            missing.push(row);
        }
    }
    assert!(
        missing.is_empty(),
        "README.md lacks these catalogue rows:\n{}",
        missing.join("\n")
    );
}

#[test]
fn readme_opens_with_the_two_commands() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let first_block = readme.split("```").nth(1).unwrap_or_default();
    assert!(first_block.contains("cargo run --release -- demo"));
    assert!(first_block.contains("cargo test --locked"));
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(
        ci.contains("cargo test --locked"),
        ".ci/run must call the README's test command"
    );
}
