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

/// Every top-level key of the config file is shown in one of the README's YAML examples (the
/// Configuration section's, or the section of the feature it belongs to), at the start of a
/// line. The keys are the parser's own list: the one an unknown key's error offers.
#[test]
fn readme_shows_every_top_level_config_key() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let err = ocx_sentinel::config::parse_str("no_such_key: 1\n", "probe.yml")
        .unwrap_err()
        .to_string();
    let keys: Vec<&str> = err
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("no key list in {err:?}"))
        .trim()
        .split(", ")
        .collect();
    assert!(
        keys.contains(&"listen") && keys.contains(&"health_listen"),
        "{keys:?}"
    );
    let yaml_lines: Vec<&str> = readme
        .split("```")
        .skip(1)
        .step_by(2)
        .filter_map(|block| block.strip_prefix("yaml\n"))
        .flat_map(str::lines)
        .collect();
    let missing: Vec<&&str> = keys
        .iter()
        .filter(|k| !yaml_lines.iter().any(|l| l.starts_with(&format!("{k}:"))))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's YAML examples lack these config keys: {missing:?}"
    );
}
