//! The `test` and `check` subcommands as a user runs them: promtool's output and exit codes.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ocx-sentinel");

fn files(dir: &str, suffix: &str) -> Vec<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
    let mut out: Vec<String> = std::fs::read_dir(format!("{root}{dir}"))
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(suffix))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no {suffix} files in {dir}");
    out
}

#[test]
fn test_passes_every_passing_file_and_prints_promtools_success_lines() {
    let tests = files("tests/rules", "_test.yml");
    let out = Command::new(BIN)
        .arg("test")
        .args(&tests)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches("  SUCCESS\n").count(),
        tests.len(),
        "{stdout}"
    );
    assert_eq!(stdout.matches("Unit Testing:  ").count(), tests.len());
}

#[test]
fn test_fails_a_failing_file_with_exit_1_and_says_what_was_expected_and_got() {
    for f in files("tests/rules/failing", "_test.yml") {
        let out = Command::new(BIN).args(["test", &f]).output().expect("runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{f}: {stdout}");
        assert!(stdout.contains("  FAILED:\n"), "{f}: {stdout}");
    }
}

#[test]
fn check_accepts_good_rule_files_and_names_file_line_and_column_of_each_error() {
    let good: Vec<String> = files("tests/rules", ".rules.yml");
    let out = Command::new(BIN)
        .arg("check")
        .args(&good)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("rules ok: ").count(), good.len(), "{stdout}");

    let bad = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/rules/testdata/bad_duration.yml"
    );
    let out = Command::new(BIN)
        .args(["check", bad])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(
            "bad_duration.yml:10:14: group \"g\", rule 1 (alert \"A\"): for: invalid duration \"5\""
        ),
        "{stderr}"
    );
    assert!(stderr.contains("1 of 1 file(s) have errors"), "{stderr}");
}

/// `check --config` checks the rule files the config names (relative to the config file).
#[test]
fn check_with_a_config_checks_its_rule_files() {
    let dir = std::env::temp_dir().join(format!("ocx-sentinel-check-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("sentinel.yml"),
        "rule_files: ['rules/*.yml']\nevaluation_interval: 2s\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("rules/good.yml"),
        "groups: [{name: g, rules: [{alert: A, expr: vector(1)}]}]\n",
    )
    .unwrap();
    let check = || {
        Command::new(BIN)
            .args(["check", "--config"])
            .arg(dir.join("sentinel.yml"))
            .env("OCX_API_KEY", "k")
            .output()
            .expect("runs")
    };
    let ok = check();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("rules ok: ") && stdout.contains("good.yml: 1 group(s), 1 rule(s)"),
        "{stdout}"
    );

    std::fs::write(
        dir.join("rules/bad.yml"),
        "groups: [{name: g, rules: [{alert: A, expr: 'rate(x)'}]}]\n",
    )
    .unwrap();
    let bad = check();
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("bad.yml:1:"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
