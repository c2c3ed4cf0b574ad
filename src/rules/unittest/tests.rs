//! Runner unit tests; whole-file behaviour against promtool is in `tests/rules_unittest.rs`.

use super::*;

fn vals(s: &str) -> Vec<Option<f64>> {
    parse_series_values(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[test]
fn expanding_notation() {
    assert_eq!(vals("1 2 3"), [Some(1.0), Some(2.0), Some(3.0)]);
    assert_eq!(vals("1+2x3"), [Some(1.0), Some(3.0), Some(5.0), Some(7.0)]);
    assert_eq!(vals("1-1x2"), [Some(1.0), Some(0.0), Some(-1.0)]);
    assert_eq!(vals("-2+1x1"), [Some(-2.0), Some(-1.0)]);
    assert_eq!(vals("5x2"), [Some(5.0); 3]);
    assert_eq!(vals("_ 1 _x2 2"), [None, Some(1.0), None, None, Some(2.0)]);
    assert_eq!(
        vals("1e3 2.5e-1 .5 010"),
        [Some(1000.0), Some(0.25), Some(0.5), Some(8.0)]
    );
    assert_eq!(vals("1e+3x1"), [Some(1000.0), Some(1000.0)]);
    assert_eq!(vals(""), []);
    let v = vals("Inf -Inf +Inf NaN nan stale");
    assert_eq!(v[0], Some(f64::INFINITY));
    assert_eq!(v[1], Some(f64::NEG_INFINITY));
    assert_eq!(v[2], Some(f64::INFINITY));
    assert!(v[3].unwrap().is_nan() && !promql::is_stale(v[3].unwrap()));
    assert!(v[4].unwrap().is_nan());
    assert!(promql::is_stale(v[5].unwrap()));
    // Accumulated by addition, as promtool does: 0.1 added three times is not 0.3.
    assert_eq!(vals("0+0.1x3")[3], Some(0.1 + 0.1 + 0.1));
    for bad in [
        "1+2", "1x", "x3", "abc", "stalex2", "Infx2", "1+", "_x", "1 2 y",
    ] {
        assert!(parse_series_values(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn metrics_as_promtool_reads_them() {
    let p = |s: &str| parse_metric(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(p("up"), pairs(&[("__name__", "up")]));
    assert_eq!(
        p(r#"job:up:sum{job="a", instance='b\'c',}"#),
        pairs(&[
            ("__name__", "job:up:sum"),
            ("instance", "b'c"),
            ("job", "a")
        ])
    );
    assert_eq!(
        p(r#"{__name__="x", a="\n"}"#),
        pairs(&[("__name__", "x"), ("a", "\n")])
    );
    assert_eq!(p("{}"), pairs(&[]));
    assert_eq!(p(r#"x{a=""}"#), pairs(&[("__name__", "x"), ("a", "")]));
    for bad in [
        r#"x{a=~"b"}"#,
        r#"x{a="b" c="d"}"#,
        "x{a=b}",
        "1x",
        r#"x{a="b"} y"#,
        r#"x{a="b""#,
        r#"x{a="1",a="2"}"#,
    ] {
        assert!(parse_metric(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn glob_matches_like_go() {
    let m = |p: &str, n: &str| glob_match(p.as_bytes(), n.as_bytes()).unwrap();
    assert!(m("*.yml", "a.yml"));
    assert!(!m("*.yml", "a.yaml"));
    assert!(m("rule?.yml", "rule1.yml"));
    assert!(m("[ab]*", "beta"));
    assert!(!m("[^ab]*", "beta"));
    assert!(m("[a-c]x", "bx"));
    assert!(m(r"\*", "*"));
    assert!(glob_match(b"[ab", b"a").is_err());
}

#[test]
fn report_text_has_promtools_shape() {
    let ok = Report {
        file: "t.yml".into(),
        failures: vec![],
        warnings: vec![],
    };
    assert_eq!(ok.text(), "Unit Testing:  t.yml\n  SUCCESS\n\n");
    let bad = Report {
        file: "t.yml".into(),
        failures: vec!["    a".into(), "    b".into()],
        warnings: vec!["  WARNING: no file match pattern x".into()],
    };
    assert_eq!(
        bad.text(),
        "Unit Testing:  t.yml\n  WARNING: no file match pattern x\n  FAILED:\n    a\n\n    b\n\n\n"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ocx-rules-unittest-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn runs_a_file_and_formats_failures_like_promtool() {
    let dir = scratch("run");
    std::fs::write(
        dir.join("r.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: High\n        expr: x > 1\n        for: 1m\n        annotations:\n          v: '{{ $value }}'\n",
    )
    .unwrap();
    let test = r#"
rule_files: [r.yml]
tests:
  - name: t1
    interval: 1m
    input_series:
      - series: 'x{a="1"}'
        values: '2 3 4'
    alert_rule_test:
      - eval_time: 30s
        alertname: High
        exp_alerts: []
      - eval_time: 2m
        alertname: High
        exp_alerts:
          - exp_labels: {a: "1"}
            exp_annotations: {v: "5"}
    promql_expr_test:
      - expr: x
        eval_time: 1m
        exp_samples:
          - labels: 'x{a="1"}'
            value: 3
      - expr: ALERTS_FOR_STATE
        eval_time: 2m
        exp_samples: []
"#;
    let r = run_str(test, "t.yml", &dir).unwrap();
    assert_eq!(
        r.failures,
        [
            "    name: t1,\n    alertname: High, time: 2m, \n        exp:[\n            0:\n              Labels:{a=\"1\", alertname=\"High\"}\n              Annotations:{v=\"5\"}\n            ], \n        got:[\n            0:\n              Labels:{a=\"1\", alertname=\"High\"}\n              Annotations:{v=\"4\"}\n            ]",
            "    expr: \"ALERTS_FOR_STATE\", time: 2m,\n        exp: nil\n        got: {__name__=\"ALERTS_FOR_STATE\", a=\"1\", alertname=\"High\"} 0E+00",
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rule_errors_stop_the_group_and_missing_files_warn() {
    let dir = scratch("errors");
    std::fs::write(
        dir.join("r.yml"),
        "groups:\n  - name: g\n    limit: 1\n    rules:\n      - record: r\n        expr: x\n",
    )
    .unwrap();
    let test = "rule_files: [r.yml, nothing*.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - {series: 'x{a=\"1\"}', values: '1 1'}\n      - {series: 'x{a=\"2\"}', values: '_ 1'}\n    promql_expr_test:\n      - {expr: r, eval_time: 5m}\n";
    let r = run_str(test, "t.yml", &dir).unwrap();
    assert_eq!(
        r.failures,
        ["    rule: r, time: 1m0s, err: exceeded limit of 1 with 2 series"]
    );
    assert_eq!(r.warnings.len(), 1);
    assert!(
        r.warnings[0].starts_with("  WARNING: no file match pattern "),
        "{:?}",
        r.warnings
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreadable_and_malformed_files_are_errors() {
    assert!(matches!(
        run_file(Path::new("/nonexistent/t.yml")),
        Err(UnitTestError::Read { .. })
    ));
    let err = run_str("tests:\n  - intervl: 1m\n", "t.yml", Path::new(".")).unwrap_err();
    assert!(err.to_string().contains("unknown field `intervl`"), "{err}");
}
