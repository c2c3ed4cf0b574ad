//! Unit tests: load errors naming unsupported constructs, evaluation errors with Prometheus's
//! messages, NaN cases promtool cannot compare, selectors and retention, storage matching.
//! The semantics themselves are checked against promtool in `tests/promql_differential.rs`.

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(pairs.iter().copied())
}

/// Series with one sample each at t=0, from `name{a="1",...} value` lines.
fn storage(series: &[(&[(&str, &str)], f64)]) -> MemStorage {
    MemStorage::new(series.iter().map(|(l, v)| SeriesData {
        labels: labels(l),
        samples: vec![(0, *v)],
    }))
}

fn eval_at0(text: &str, s: &MemStorage) -> Result<Value, EvalError> {
    eval(&Expr::parse(text).unwrap(), s, 0)
}

fn vector(v: Value) -> Vec<Sample> {
    match v {
        Value::Vector(mut v) => {
            v.sort_by(|a, b| a.labels.cmp(&b.labels));
            v
        }
        Value::Scalar(s) => panic!("expected a vector, got scalar {s}"),
    }
}

fn load_error(text: &str) -> PromqlError {
    match Expr::parse(text) {
        Ok(e) => panic!("{text:?} loaded as {e:?}"),
        Err(e) => e,
    }
}

#[test]
fn unsupported_functions_are_named_with_their_offset() {
    let text = "rate(x[5m]) + predict_linear(x[5m], 60)";
    let e = load_error(text);
    assert_eq!(e.message, r#"unsupported function "predict_linear""#);
    assert_eq!(e.offset, Some(text.find("predict_linear").unwrap()));
    // A label that happens to be called like a function is not mistaken for it.
    let text =
        r#"sum by (label_replace) (x{a="label_replace("}) + label_replace(x, "a", "b", "c", "d")"#;
    let e = load_error(text);
    assert_eq!(e.message, r#"unsupported function "label_replace""#);
    assert_eq!(e.offset, Some(text.rfind("label_replace").unwrap()));
    for f in [
        "irate(x[5m])",
        "sort(x)",
        "round(x)",
        "label_join(x, \"a\", \",\", \"b\")",
    ] {
        let name = &f[..f.find('(').unwrap()];
        assert_eq!(
            load_error(f).message,
            format!("unsupported function {name:?}"),
            "{f}"
        );
    }
}

#[test]
fn unsupported_aggregations_are_named() {
    for (text, name) in [
        ("topk(3, x)", "topk"),
        ("bottomk by (a) (3, x)", "bottomk"),
        ("quantile(0.9, x)", "quantile"),
        (r#"count_values("v", x)"#, "count_values"),
        ("stddev(x)", "stddev"),
        ("stdvar(x)", "stdvar"),
        ("group(x)", "group"),
    ] {
        let e = load_error(text);
        assert_eq!(
            e.message,
            format!("unsupported aggregation {name:?}"),
            "{text}"
        );
        assert_eq!(e.offset, Some(0), "{text}");
    }
}

#[test]
fn other_unsupported_constructs_are_named() {
    let text = "max_over_time(rate(x[1m])[5m:1m])";
    let e = load_error(text);
    assert_eq!(e.message, "subqueries are not supported");
    assert_eq!(e.offset, text.find(':'));
    let e = load_error("sum(x)[5m:]");
    assert_eq!(e.message, "subqueries are not supported");
    let e = load_error("x @ 100");
    assert_eq!(e.message, "the @ modifier is not supported");
    assert_eq!(e.offset, Some(2));
    let e = load_error("rate(x[5m] @ end())");
    assert_eq!(e.message, "the @ modifier is not supported");
    let e = load_error(r#""hello""#);
    assert_eq!(e.message, "string literals are not supported as values");
    assert_eq!(e.offset, Some(0));
    let e = load_error("x[5m]");
    assert!(
        e.message.starts_with("range selectors are only supported"),
        "{e}"
    );
    assert_eq!(e.offset, Some(1));
    let e = load_error("x + fill_left(1) y");
    assert_eq!(e.message, "fill modifiers are not supported");
    assert_eq!(e.offset, Some(4));
    let e = load_error("x atan2 y");
    assert_eq!(e.message, r#"unsupported binary operator "atan2""#);
    assert_eq!(e.offset, Some(2));
}

#[test]
fn scalar_comparison_without_bool_is_a_load_error() {
    let e = load_error("1 > 2");
    assert!(
        e.message
            .contains("comparisons between scalars must use BOOL modifier"),
        "{e}"
    );
    let e = load_error("time() == scalar(x)");
    assert!(
        e.message
            .contains("comparisons between scalars must use BOOL modifier"),
        "{e}"
    );
    assert!(Expr::parse("1 > bool 2").is_ok());
    assert!(Expr::parse("x > 2").is_ok());
}

#[test]
fn syntax_and_type_errors_are_load_errors() {
    for text in [
        "sum(",
        "x +",
        "rate(x)",
        "abs(1)",
        "x and 1",
        "x + on(a) group_left(a) y",
        "x + bool y",
        "",
    ] {
        let e = load_error(text);
        assert!(!e.message.is_empty(), "{text}");
        assert_eq!(e.to_string(), e.message);
    }
}

#[test]
fn many_to_many_matching_is_prometheus_error() {
    let s = storage(&[
        (&[("__name__", "one"), ("a", "1")], 1.0),
        (&[("__name__", "many"), ("a", "1"), ("b", "2")], 1.0),
        (&[("__name__", "many"), ("a", "1"), ("b", "1")], 1.0),
    ]);
    let e = eval_at0("one + on(a) many", &s).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"found duplicate series for the match group {a="1"} on the right hand-side of the operation: [{__name__="many", a="1", b="2"}, {__name__="many", a="1", b="1"}];many-to-many matching not allowed: matching labels must be unique on one side"#
    );
    let e = eval_at0("one + on(a) group_left many", &s).unwrap_err();
    assert!(
        matches!(e, EvalError::ManyToMany { side: "right", .. }),
        "{e}"
    );
    let e = eval_at0("many + on(a) group_right one", &s).unwrap_err();
    assert!(
        e.to_string().starts_with(
            r#"found duplicate series for the match group {a="1"} on the left hand-side"#
        ),
        "{e}"
    );
    // With ignoring, the group is every label but the ignored ones and the name.
    let e = eval_at0("one + ignoring(b) many", &s).unwrap_err();
    assert!(e.to_string().contains(r#"match group {a="1"}"#), "{e}");
}

#[test]
fn implicit_many_to_one_is_prometheus_error() {
    let s = storage(&[
        (&[("__name__", "one"), ("a", "1")], 1.0),
        (&[("__name__", "many"), ("a", "1"), ("b", "2")], 5.0),
        (&[("__name__", "many"), ("a", "1"), ("b", "1")], 0.0),
    ]);
    let e = eval_at0("many + ignoring(b) one", &s).unwrap_err();
    assert_eq!(
        e.to_string(),
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
    );
    // A pair a comparison filters out does not count as a match.
    let v = vector(eval_at0("many > ignoring(b) one", &s).unwrap());
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].value, 5.0);
}

#[test]
fn group_left_collisions_are_prometheus_error() {
    let s = storage(&[
        (&[("__name__", "one"), ("a", "1")], 1.0),
        (&[("__name__", "many"), ("a", "1"), ("b", "2")], 1.0),
        (&[("__name__", "many"), ("a", "1"), ("b", "1")], 1.0),
    ]);
    // Copying b from the "one" side, which lacks it, removes b: both results are {a="1"}.
    let e = eval_at0("many + on(a) group_left(b) one", &s).unwrap_err();
    assert_eq!(
        e.to_string(),
        "multiple matches for labels: grouping labels must ensure unique matches"
    );
}

#[test]
fn dropping_the_name_into_a_collision_is_prometheus_error() {
    let s = MemStorage::new([
        SeriesData {
            labels: labels(&[("__name__", "a"), ("x", "1"), ("le", "1")]),
            samples: vec![(0, 1.0), (60_000, 2.0)],
        },
        SeriesData {
            labels: labels(&[("__name__", "b"), ("x", "1"), ("le", "1")]),
            samples: vec![(0, 1.0), (60_000, 2.0)],
        },
        SeriesData {
            labels: labels(&[("__name__", "a"), ("x", "1"), ("le", "+Inf")]),
            samples: vec![(0, 1.0), (60_000, 2.0)],
        },
        SeriesData {
            labels: labels(&[("__name__", "b"), ("x", "1"), ("le", "+Inf")]),
            samples: vec![(0, 1.0), (60_000, 2.0)],
        },
    ]);
    let msg = "vector cannot contain metrics with the same labelset";
    for text in [
        r#"{__name__=~"a|b"} * 2"#,
        r#"2 - {__name__=~"a|b"}"#,
        r#"{__name__=~"a|b"} > bool 0"#,
        r#"-{__name__=~"a|b"}"#,
        r#"abs({__name__=~"a|b"})"#,
        r#"clamp_min({__name__=~"a|b"}, 0)"#,
        r#"timestamp({__name__=~"a|b"})"#,
        r#"rate({__name__=~"a|b"}[5m])"#,
        r#"sum_over_time({__name__=~"a|b"}[5m])"#,
        r#"histogram_quantile(0.5, {__name__=~"a|b"})"#,
    ] {
        let e = eval(&Expr::parse(text).unwrap(), &s, 60_000).unwrap_err();
        assert_eq!(e.to_string(), msg, "{text}");
    }
    // Filters and last_over_time keep the name, so nothing collides.
    for text in [
        r#"{__name__=~"a|b"} > 0"#,
        r#"last_over_time({__name__=~"a|b"}[5m])"#,
        r#"sum by (__name__) ({__name__=~"a|b"})"#,
    ] {
        assert!(
            eval(&Expr::parse(text).unwrap(), &s, 60_000).is_ok(),
            "{text}"
        );
    }
}

fn nan_value(text: &str, s: &MemStorage) -> f64 {
    match eval_at0(text, s).unwrap() {
        Value::Scalar(v) => v,
        Value::Vector(v) => {
            assert_eq!(v.len(), 1, "{text}: {v:?}");
            v[0].value
        }
    }
}

#[test]
fn nan_results() {
    let s = storage(&[
        (&[("__name__", "x"), ("a", "1")], 1.0),
        (&[("__name__", "x"), ("a", "2")], 2.0),
        (&[("__name__", "n")], f64::NAN),
        (&[("__name__", "h_bucket"), ("le", "+Inf")], 3.0),
    ]);
    assert!(nan_value("scalar(x)", &s).is_nan());
    assert!(nan_value("scalar(nothing)", &s).is_nan());
    assert!(nan_value("histogram_quantile(0.5, h_bucket)", &s).is_nan());
    assert!(nan_value("histogram_quantile(scalar(x), h_bucket)", &s).is_nan());
    assert!(nan_value("clamp_min(n, 0)", &s).is_nan());
    assert!(nan_value("clamp_max(x{a=\"1\"}, scalar(x))", &s).is_nan());
    assert!(nan_value("n + 1", &s).is_nan());
    assert!(nan_value("0 / 0", &s).is_nan());
    // NaN gives way to any number in min and max, and compares false.
    assert_eq!(nan_value("min(n or x{a=\"2\"})", &s), 2.0);
    assert_eq!(nan_value("max(n or x{a=\"2\"})", &s), 2.0);
    assert!(vector(eval_at0("n == n", &s).unwrap()).is_empty());
    assert_eq!(nan_value("n != bool n", &s), 1.0);
}

#[test]
fn stale_marker_is_a_particular_nan() {
    assert!(is_stale(stale_nan()));
    assert!(stale_nan().is_nan());
    assert!(!is_stale(f64::NAN));
    assert!(!is_stale(0.0));
    assert_eq!(stale_nan().to_bits(), STALE_NAN_BITS);
}

#[test]
fn selectors_and_retention() {
    let e = Expr::parse(
        r#"rate(a_total{job="x"}[5m] offset 1m) / on() group_left b{c=~"d.*"} offset 10m + {__name__="e"} + sum_over_time(f[1h]) + g offset -1h"#,
    )
    .unwrap();
    let sels = e.selectors();
    let names: Vec<Option<&str>> = sels.iter().map(|s| s.name.as_deref()).collect();
    assert_eq!(
        names,
        vec![Some("a_total"), Some("b"), Some("e"), Some("f"), Some("g")]
    );
    assert_eq!(sels[0].to_string(), r#"a_total{job="x"}"#);
    assert!(sels[1].matches(&labels(&[("__name__", "b"), ("c", "dx")])));
    assert!(!sels[1].matches(&labels(&[("__name__", "b"), ("c", "xd")])));
    assert!(!sels[1].matches(&labels(&[("__name__", "bb"), ("c", "d")])));
    assert_eq!(e.max_range(), Duration::from_secs(3600));
    assert_eq!(
        Expr::parse("rate(x[5m] offset 1m) + y offset 2m")
            .unwrap()
            .max_range(),
        Duration::from_secs(360)
    );
    assert_eq!(
        Expr::parse("y offset 7m").unwrap().max_range(),
        Duration::from_secs(420)
    );
    assert_eq!(Expr::parse("1").unwrap().max_range(), Duration::ZERO);
    assert!(Expr::parse("time() + 1").unwrap().is_scalar());
    assert!(!Expr::parse("vector(1)").unwrap().is_scalar());
}

#[test]
fn regexes_are_anchored_and_missing_labels_are_empty() {
    let s = storage(&[
        (&[("__name__", "x"), ("a", "abc")], 1.0),
        (&[("__name__", "x"), ("a", "b")], 2.0),
        (&[("__name__", "x")], 3.0),
    ]);
    let values = |text: &str| -> Vec<f64> {
        let mut v: Vec<f64> = vector(eval_at0(text, &s).unwrap())
            .iter()
            .map(|s| s.value)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    assert_eq!(values(r#"x{a=~"b"}"#), vec![2.0]);
    assert_eq!(values(r#"x{a=~"b|"}"#), vec![2.0, 3.0]);
    assert_eq!(values(r#"x{a!~"b"}"#), vec![1.0, 3.0]);
    assert_eq!(values(r#"x{a=~".*b.*"}"#), vec![1.0, 2.0]);
    assert_eq!(values(r#"x{a=""}"#), vec![3.0]);
    assert_eq!(values(r#"x{a!=""}"#), vec![1.0, 2.0]);
    assert_eq!(values(r#"x{a!="b"}"#), vec![1.0, 3.0]);
    assert_eq!(values(r#"{__name__=~"x|y", a="abc"}"#), vec![1.0]);
}

#[test]
fn labels_sort_render_and_drop_empty_values() {
    let l = Labels::new([
        ("b", "2"),
        ("__name__", "m"),
        ("a", "say \"hi\"\n"),
        ("c", ""),
    ]);
    assert_eq!(l.to_string(), r#"{__name__="m", a="say \"hi\"\n", b="2"}"#);
    assert_eq!(l.len(), 3);
    assert_eq!(l.get("b"), Some("2"));
    assert_eq!(l.get("c"), None);
    assert_eq!(l.metric_name(), Some("m"));
    assert_eq!(
        l.without_metric_name().to_string(),
        r#"{a="say \"hi\"\n", b="2"}"#
    );
    assert_eq!(
        l.with("b", "").to_string(),
        r#"{__name__="m", a="say \"hi\"\n"}"#
    );
    assert_eq!(Labels::new([("a", "1"), ("a", "2")]), labels(&[("a", "2")]));
    assert!(labels(&[("a", "1")]) < labels(&[("a", "1"), ("b", "1")]));
    assert!(labels(&[("a", "1"), ("c", "1")]) > labels(&[("a", "1"), ("b", "9")]));
    assert_eq!(Labels::empty().to_string(), "{}");
}

#[test]
fn mem_storage_narrows_to_the_window_and_merges_equal_label_sets() {
    let s = MemStorage::new([SeriesData {
        labels: labels(&[("__name__", "x")]),
        samples: vec![(30, 3.0), (10, 1.0), (20, 2.0)],
    }]);
    let sel = Expr::parse("x").unwrap().selectors().remove(0);
    let got = s.select(&sel, 15, 30);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples, vec![(20, 2.0), (30, 3.0)]);
    assert!(s.select(&sel, 31, 40).is_empty());

    // The same label set again adds to that series; a repeated timestamp keeps the later value.
    let mut s = s;
    s.push(SeriesData {
        labels: labels(&[("__name__", "x")]),
        samples: vec![(40, 4.0), (20, 2.5)],
    });
    assert_eq!(s.series().len(), 1);
    let got = s.select(&sel, 0, 100);
    assert_eq!(
        got[0].samples,
        vec![(10, 1.0), (20, 2.5), (30, 3.0), (40, 4.0)]
    );
    assert_eq!(sel.to_string(), "x");
}

#[test]
fn expressions_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Expr>();
    assert_send_sync::<Value>();
    assert_send_sync::<EvalError>();
    assert_send_sync::<MemStorage>();
}

/// An interruptible evaluation polls once every `Interrupt::EVERY` series read, by instant and
/// range selectors alike; when the poll says so it stops reading and reports `Interrupted`
/// (never a partial result); when it never does, the result is the uninterrupted one.
#[test]
fn an_interrupted_evaluation_reports_interrupted_and_never_a_partial_result() {
    let n = 3 * Interrupt::EVERY as usize + 1;
    let names: Vec<String> = (0..n).map(|i| format!("{i:03}")).collect();
    let s = MemStorage::new(names.iter().map(|i| SeriesData {
        labels: labels(&[("__name__", "x"), ("i", i)]),
        samples: vec![(0, 1.0), (30_000, 2.0)],
    }));
    for text in ["sum(x)", "sum(increase(x[1m]))", "x > 0"] {
        let e = Expr::parse(text).unwrap();
        let polls = std::cell::Cell::new(0u32);
        let never = || {
            polls.set(polls.get() + 1);
            false
        };
        let whole = eval_interruptible(&e, &s, 30_000, &[], Some(&Interrupt::new(&never)));
        assert_eq!(whole, eval(&e, &s, 30_000), "{text}");
        assert_eq!(
            polls.get(),
            3,
            "{text}: once per {} series",
            Interrupt::EVERY
        );
        // Asked at the second poll: it reads nothing more.
        polls.set(0);
        let second = || {
            polls.set(polls.get() + 1);
            polls.get() == 2
        };
        let got = eval_interruptible(&e, &s, 30_000, &[], Some(&Interrupt::new(&second)));
        assert_eq!(got, Err(EvalError::Interrupted), "{text}");
        assert_eq!(polls.get(), 2, "{text}: no poll after it gave up");
    }
}
