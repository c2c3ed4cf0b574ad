//! Differential tests of the Alertmanager config against the real `amtool` (Debian's 0.25): every valid case in src/notify/config/testdata loads in both, every invalid one both refuse (unless the case says amtool accepts or cannot judge it), and every `# route:` case gives amtool's receivers in amtool's order.
//!
//! Skipped with a message when amtool is missing, unless `OCX_REQUIRE_PEERS=1` (CI), which makes
//! a missing amtool a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ocx_sentinel::notify::config::load_file;

const TESTDATA: &str = "src/notify/config/testdata";

/// What a case's leading comment lines say.
struct Case {
    path: PathBuf,
    expect_ok: bool,
    /// `# amtool: accepts ...` (we refuse what Alertmanager allows) or `# amtool: skip ...`
    /// (amtool 0.25 predates a field the case uses).
    amtool: Option<String>,
    /// (label args as given to amtool, receivers it prints).
    routes: Vec<(Vec<String>, String)>,
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(TESTDATA);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testdata dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("case");
            let mut case = Case {
                path,
                expect_ok: false,
                amtool: None,
                routes: Vec::new(),
            };
            for line in text.lines().take_while(|l| l.starts_with('#')) {
                if line.trim() == "# expect: ok" {
                    case.expect_ok = true;
                } else if let Some(a) = line.strip_prefix("# amtool: ") {
                    case.amtool = Some(a.to_string());
                } else if let Some(spec) = line.strip_prefix("# route:") {
                    let (labels, want) = spec.split_once("->").expect("labels -> receivers");
                    case.routes.push((
                        labels.split_whitespace().map(str::to_string).collect(),
                        want.trim().to_string(),
                    ));
                }
            }
            case
        })
        .collect()
}

/// amtool's output, or `None` (with a message) when it cannot run and is not required.
fn amtool(args: &[&str]) -> Option<std::process::Output> {
    let required = std::env::var("OCX_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    match Command::new("amtool").args(args).output() {
        Ok(out) => Some(out),
        Err(e) => {
            assert!(
                !required,
                "amtool is required (OCX_REQUIRE_PEERS=1) but cannot run: {e}"
            );
            eprintln!("amtool not installed: Alertmanager differential skipped (CI runs it)");
            None
        }
    }
}

#[test]
fn amtool_and_we_accept_and_refuse_the_same_configs() {
    let cases = cases();
    assert!(cases.len() >= 40, "the corpus is there");
    let mut mismatches = Vec::new();
    let (mut compared, mut valid, mut invalid) = (0, 0, 0);
    for case in &cases {
        let name = case.path.display().to_string();
        let ours = load_file(&case.path);
        assert_eq!(
            ours.is_ok(),
            case.expect_ok,
            "{name}: our result differs from the case's expectation: {:?}",
            ours.err().map(|e| e.to_string())
        );
        if case
            .amtool
            .as_deref()
            .is_some_and(|a| a.starts_with("skip"))
        {
            continue;
        }
        let Some(out) = amtool(&["check-config", &name]) else {
            return;
        };
        let amtool_ok = out.status.success();
        let want_amtool_ok = case.expect_ok
            || case
                .amtool
                .as_deref()
                .is_some_and(|a| a.starts_with("accepts"));
        if amtool_ok != want_amtool_ok {
            mismatches.push(format!(
                "{name}: amtool {} but the case says it should {}:\n{}",
                if amtool_ok { "accepts" } else { "refuses" },
                if want_amtool_ok { "accept" } else { "refuse" },
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        compared += 1;
        if case.expect_ok {
            valid += 1;
        } else if !want_amtool_ok {
            invalid += 1;
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    eprintln!("{compared} configs compared with amtool ({valid} valid, {invalid} refused by both)");
}

#[test]
fn amtool_and_we_route_alerts_to_the_same_receivers_in_the_same_order() {
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for case in cases().iter().filter(|c| !c.routes.is_empty()) {
        let name = case.path.display().to_string();
        let config = load_file(&case.path).expect("a routing case is valid");
        for (labels, want) in &case.routes {
            let parsed: BTreeMap<String, String> = labels
                .iter()
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("label=value");
                    (k.to_string(), v.to_string())
                })
                .collect();
            let ours = config.route.receivers_for(&parsed).join(",");
            let config_flag = format!("--config.file={name}");
            let mut args = vec!["config", "routes", "test", config_flag.as_str()];
            args.extend(labels.iter().map(String::as_str));
            let Some(out) = amtool(&args) else {
                return;
            };
            let theirs = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if ours != theirs || &theirs != want {
                mismatches.push(format!(
                    "{name} {labels:?}: ours {ours:?}, amtool {theirs:?}, case says {want:?}"
                ));
            }
            compared += 1;
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(compared >= 20);
    eprintln!("{compared} label sets routed by both");
}
