//! Rule-file cases, one file each in `src/rules/testdata/`, each stating the exact result it
//! expects: `# expect: ok`, or one `# expect-error: <line>` per error line, in order.

use std::path::Path;

use super::*;

#[test]
fn every_testdata_case_gives_exactly_its_expected_result() {
    crate::testdata::check_dir("src/rules/testdata", 12, |text, name| {
        parse_str(text, name).map(|_| ()).map_err(|e| e.to_string())
    });
}

#[test]
fn builds_groups_with_merged_labels_and_durations() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/rules/testdata/ok_full.yml"),
    )
    .unwrap();
    let file = parse_str(&text, "ok_full.yml").unwrap();
    assert_eq!(file.groups.len(), 2);
    let g = &file.groups[0];
    assert_eq!(g.name, "inventory");
    assert_eq!(g.interval, Some(Duration::from_secs(15)));
    assert_eq!(g.query_offset, Duration::from_secs(1));
    assert_eq!(g.limit, 10);
    assert_eq!(g.labels, [("team".to_string(), "desk".to_string())]);
    let Rule::Recording(rec) = &g.rules[0] else {
        panic!("first rule records")
    };
    assert_eq!(rec.name, "market:position:abs");
    assert_eq!(rec.labels.to_string(), r#"{source="rule", team="desk"}"#);
    let Rule::Alerting(a) = &g.rules[1] else {
        panic!("second rule alerts")
    };
    assert_eq!(a.hold, Duration::from_secs(30));
    assert_eq!(a.keep_firing_for, Duration::from_secs(60));
    let names: Vec<&str> = a.labels.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["severity", "team"]);
    assert_eq!(a.annotations[0].0, "summary");
    assert_eq!(a.expr.as_str().trim(), "market:position:abs > 100");
    assert!(file.groups[1].rules.is_empty());
}

#[test]
fn rule_labels_override_group_labels() {
    let text = "groups:\n  - name: g\n    labels: {team: a, env: prod}\n    rules:\n      - alert: X\n        expr: up\n        labels: {team: b}\n";
    let file = parse_str(text, "f.yml").unwrap();
    let Rule::Alerting(a) = &file.groups[0].rules[0] else {
        panic!("alert")
    };
    let got: Vec<(&str, &str)> = a
        .labels
        .iter()
        .map(|(k, t)| (k.as_str(), t.source()))
        .collect();
    assert_eq!(got, [("env", "prod"), ("team", "b")]);
}

#[test]
fn scalars_of_any_yaml_type_are_text() {
    // Prometheus reads `expr: 1` and `severity: 2` as strings; so must we.
    let text = "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: 1\n        labels:\n          severity: 2\n          page: true\n";
    let file = parse_str(text, "f.yml").unwrap();
    assert_eq!(file.groups[0].rules[0].expr().as_str(), "1");
}

#[test]
fn empty_and_missing_files() {
    assert!(parse_str("", "f.yml").unwrap().groups.is_empty());
    assert!(
        parse_str("groups: []\n", "f.yml")
            .unwrap()
            .groups
            .is_empty()
    );
    let err = load_file(Path::new("/nonexistent/rules.yml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/rules.yml: cannot read:"),
        "{err}"
    );
}

#[test]
fn name_rules() {
    assert!(is_valid_metric_name("job:up:sum"));
    assert!(is_valid_metric_name("_x"));
    assert!(!is_valid_metric_name("1x"));
    assert!(!is_valid_metric_name(""));
    assert!(!is_valid_metric_name("a-b"));
    assert!(is_valid_label_name("a_1"));
    assert!(!is_valid_label_name("a:b"));
    assert!(!is_valid_label_name(""));
}
