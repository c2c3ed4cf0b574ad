//! Differential test of the promtool-format runner: every `*_test.yml` under `tests/rules/` must
//! pass both here and in `promtool test rules`; every one under `tests/rules/failing/` must fail
//! in both, with the same failing tests and the same failure text.
//!
//! The promtool half is skipped (with a note) when promtool is not on PATH, unless
//! `OCX_REQUIRE_PEERS=1`, which makes its absence a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use ocx_sentinel::rules::unittest::{Report, run_file};

fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("_test.yml"))
        .collect();
    files.sort();
    files
}

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules")
}

struct Promtool {
    passed: bool,
    stderr: String,
}

/// `None` when promtool is not installed and peers are not required.
fn promtool(file: &Path) -> Option<Promtool> {
    match Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg(file)
        .output()
    {
        Ok(out) => Some(Promtool {
            passed: out.status.success(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }),
        Err(e) if std::env::var("OCX_REQUIRE_PEERS").as_deref() == Ok("1") => {
            panic!("OCX_REQUIRE_PEERS=1 but promtool cannot run: {e}")
        }
        Err(e) => {
            eprintln!("note: promtool not runnable ({e}); checking our runner alone");
            None
        }
    }
}

fn ours(file: &Path) -> Report {
    run_file(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// What promtool writes to stderr for a report: warnings, then the failures.
fn expected_stderr(r: &Report) -> String {
    let mut s = String::new();
    for w in &r.warnings {
        s.push_str(w);
        s.push('\n');
    }
    if !r.passed() {
        s.push_str("  FAILED:\n");
        for f in &r.failures {
            s.push_str(f);
            s.push('\n');
        }
    }
    s
}

/// The failing tests a failure text names: test group names, alert names with times, and
/// expressions with times.
fn failing_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .map(str::trim_start)
        .filter(|l| {
            l.starts_with("name: ")
                || l.starts_with("alertname: ")
                || l.starts_with("expr: ")
                || l.starts_with("rule: ")
        })
        .map(|l| l.trim_end().trim_end_matches(',').to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn passing_files_pass_here_and_in_promtool() {
    let files = test_files(&rules_dir());
    let mut problems = Vec::new();
    for f in &files {
        let r = ours(f);
        if !r.passed() {
            problems.push(format!("ours failed {}:\n{}", f.display(), r.text()));
        }
        if let Some(p) = promtool(f)
            && !p.passed
        {
            problems.push(format!("promtool failed {}:\n{}", f.display(), p.stderr));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(files.len() >= 6, "expected the differential test files");
}

#[test]
fn failing_files_fail_here_and_in_promtool_the_same_way() {
    let files = test_files(&rules_dir().join("failing"));
    let mut problems = Vec::new();
    let mut compared = 0;
    for f in &files {
        let r = ours(f);
        if r.passed() {
            problems.push(format!("ours passed {}, which must fail", f.display()));
            continue;
        }
        let Some(p) = promtool(f) else { continue };
        compared += 1;
        if p.passed {
            problems.push(format!("promtool passed {}, which must fail", f.display()));
            continue;
        }
        let ours_text = expected_stderr(&r);
        if failing_names(&ours_text) != failing_names(&p.stderr) {
            problems.push(format!(
                "{}: different failing tests\n  ours:     {:?}\n  promtool: {:?}",
                f.display(),
                failing_names(&ours_text),
                failing_names(&p.stderr)
            ));
        } else if ours_text != p.stderr {
            problems.push(format!(
                "{}: same failing tests, different text\n--- ours ---\n{ours_text}--- promtool ---\n{}",
                f.display(),
                p.stderr
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(files.len() >= 2, "expected deliberately failing files");
    if compared > 0 {
        assert_eq!(compared, files.len(), "promtool ran on some files only");
    }
}
