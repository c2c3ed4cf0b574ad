//! Group evaluation tests: ordering, visibility of outputs, staleness, health, offsets, limits.

use super::*;
use crate::rules::alert::AlertState;
use crate::rules::file::parse_str;
use crate::rules::promql::{MemStorage, is_stale};

const M: i64 = 60_000;

fn group(yaml: &str) -> RuleGroup {
    parse_str(yaml, "g.yml").unwrap().groups.remove(0)
}

/// (label pairs, samples) of one input series.
type Input<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn input(series: &[Input<'_>]) -> MemStorage {
    MemStorage::new(series.iter().map(|(l, s)| SeriesData {
        labels: Labels::new(l.iter().copied()),
        samples: s.to_vec(),
    }))
}

fn ctx() -> EvalContext<'static> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    EvalContext {
        external_labels: &EMPTY,
        external_url: "",
        clock: None,
    }
}

fn query(base: &dyn Storage, h: &History, expr: &str, t: i64) -> Vec<String> {
    let storage = Layered { base, overlay: h };
    let mut got: Vec<String> =
        vector(promql::eval(&Expr::parse(expr).unwrap(), &storage, t).unwrap())
            .into_iter()
            .map(|s| format!("{} {}", s.labels, s.value))
            .collect();
    got.sort();
    got
}

const CHAIN: &str = "groups:
  - name: g
    rules:
      - record: market:pos:abs
        expr: abs(pos)
        labels: {source: rule}
      - alert: Breach
        expr: market:pos:abs > 10
      - record: breaches
        expr: count(ALERTS{alertname=\"Breach\", alertstate=\"firing\"})
";

#[test]
fn later_rules_read_earlier_outputs_in_the_same_evaluation() {
    let g = group(CHAIN);
    let base = input(&[(
        &[("__name__", "pos"), ("market", "BTC")],
        &[(0, -20.0), (M, 5.0)],
    )]);
    let mut st = GroupState::new(&g);
    let mut h = History::new();
    let ev = eval_group(&g, &mut st, &base, &mut h, 0, &ctx());
    assert!(ev.errors.is_empty(), "{:?}", ev.errors);
    assert_eq!(ev.transitions.len(), 1);
    assert_eq!(ev.transitions[0].transition, Transition::Firing);
    assert_eq!(
        query(&base, &h, "market:pos:abs", 0),
        [r#"{__name__="market:pos:abs", market="BTC", source="rule"} 20"#]
    );
    assert_eq!(
        query(&base, &h, "breaches", 0),
        [r#"{__name__="breaches"} 1"#]
    );
    assert_eq!(st.status(2).unwrap().health, Health::Ok);
    assert_eq!(st.alerts(1).unwrap().state(), AlertState::Firing);
}

#[test]
fn series_a_rule_stops_writing_go_stale() {
    let g = group(CHAIN);
    let base = input(&[(
        &[("__name__", "pos"), ("market", "BTC")],
        &[(0, -20.0), (M, 5.0)],
    )]);
    let mut st = GroupState::new(&g);
    let mut h = History::new();
    eval_group(&g, &mut st, &base, &mut h, 0, &ctx());
    let ev = eval_group(&g, &mut st, &base, &mut h, M, &ctx());
    assert_eq!(ev.transitions[0].transition, Transition::Resolved);
    // Without the marker the 5m lookback would still find ALERTS from t=0.
    assert!(query(&base, &h, "ALERTS", M).is_empty());
    let alerts = Labels::new([
        ("__name__", "ALERTS"),
        ("alertname", "Breach"),
        ("alertstate", "firing"),
        ("market", "BTC"),
        ("source", "rule"),
    ]);
    let s = h.samples(&alerts).unwrap();
    assert_eq!(s.len(), 2);
    assert!(is_stale(s[1].1));
    // count() of nothing is nothing, so `breaches` is stale too.
    assert!(query(&base, &h, "breaches", M).is_empty());
}

#[test]
fn a_failing_rule_reports_and_leaves_its_series_alone() {
    let g = group(
        "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: x / on() y\n      - record: ok\n        expr: vector(1)\n",
    );
    let base = input(&[
        (&[("__name__", "x"), ("a", "1")], &[(0, 1.0)]),
        (&[("__name__", "x"), ("a", "2")], &[(0, 1.0)]),
        (&[("__name__", "y")], &[(0, 1.0)]),
    ]);
    let mut st = GroupState::new(&g);
    let mut h = History::new();
    let ev = eval_group(&g, &mut st, &base, &mut h, 0, &ctx());
    assert_eq!(ev.errors.len(), 1);
    assert_eq!(ev.errors[0].0, 0);
    let s = st.status(0).unwrap();
    assert_eq!(s.health, Health::Err);
    assert!(
        s.last_error.as_deref().unwrap().contains("many-to-one"),
        "{s:?}"
    );
    assert_eq!(st.status(1).unwrap().health, Health::Ok);
    assert_eq!(st.status(0).unwrap().last_eval_ms, Some(0));
}

#[test]
fn recording_limits_fail_the_rule() {
    let g = group(
        "groups:\n  - name: g\n    limit: 1\n    rules:\n      - record: r\n        expr: x\n",
    );
    let base = input(&[
        (&[("__name__", "x"), ("a", "1")], &[(0, 1.0)]),
        (&[("__name__", "x"), ("a", "2")], &[(0, 1.0)]),
    ]);
    let mut st = GroupState::new(&g);
    let mut h = History::new();
    let ev = eval_group(&g, &mut st, &base, &mut h, 0, &ctx());
    assert_eq!(
        ev.errors,
        [(0, "exceeded limit of 1 with 2 series".to_string())]
    );
    assert!(h.is_empty());
}

#[test]
fn query_offset_reads_and_writes_in_the_past() {
    let g = group(
        "groups:\n  - name: g\n    query_offset: 1m\n    rules:\n      - record: r\n        expr: x\n",
    );
    let base = input(&[(&[("__name__", "x")], &[(0, 1.0), (M, 2.0)])]);
    let mut st = GroupState::new(&g);
    let mut h = History::new();
    eval_group(&g, &mut st, &base, &mut h, M, &ctx());
    let r = Labels::new([("__name__", "r")]);
    assert_eq!(h.samples(&r).unwrap(), [(0, 1.0)]);
}

#[test]
fn history_refuses_rewrites_and_prunes() {
    let mut h = History::new();
    let l = Labels::new([("__name__", "r")]);
    h.append(&l, 10, 1.0).unwrap();
    h.append(&l, 10, 1.0).unwrap();
    assert_eq!(h.append(&l, 10, 2.0), Err(AppendError::Duplicate));
    assert_eq!(h.append(&l, 5, 2.0), Err(AppendError::OutOfOrder));
    h.append(&l, 20, 3.0).unwrap();
    h.prune_before(15);
    assert_eq!(h.samples(&l).unwrap(), [(20, 3.0)]);
    h.prune_before(25);
    assert!(h.is_empty());
    assert!(query(&MemStorage::default(), &h, "r", 25).is_empty());
}

/// Pruning hides expired samples at once and frees them in batches: readers and the sample
/// count see exactly the samples at or after the cutoff, while memory holds at most a third
/// more (a series drops its expired samples once they are a quarter of it).
#[test]
fn pruned_samples_are_gone_for_readers_and_freed_in_batches() {
    let mut h = History::new();
    let l = Labels::new([("__name__", "r")]);
    for t in 0..100 {
        h.append(&l, t * 1_000, t as f64).unwrap();
    }
    h.prune_before(10_000);
    assert_eq!(h.samples(&l).unwrap().first(), Some(&(10_000, 10.0)));
    assert_eq!(h.sample_count(), 90);
    assert_eq!(h.series[&l].len(), 100, "10 of 100 expired: not moved yet");
    let base = MemStorage::default();
    assert_eq!(
        query(&base, &h, "count_over_time(r[1h])", 99_000),
        ["{} 90"]
    );
    h.prune_before(30_000);
    assert_eq!(h.series[&l].len(), 70, "30 of 100 expired: freed");
    assert_eq!(
        query(&base, &h, "count_over_time(r[1h])", 99_000),
        ["{} 70"]
    );
    // A cutoff never moves back.
    h.prune_before(20_000);
    assert_eq!(h.sample_count(), 70);
    // In steady state (a sample in, a second pruned), memory stays within a third more than
    // what readers see.
    for t in 100..1_000 {
        h.append(&l, t * 1_000, t as f64).unwrap();
        h.prune_before((t - 69) * 1_000);
        assert_eq!(h.sample_count(), 70);
        assert!(
            h.series[&l].len() <= 70 * 4 / 3 + 1,
            "{}",
            h.series[&l].len()
        );
    }
}

#[test]
fn alert_templates_can_query() {
    let g = group(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x > 0\n        annotations:\n          total: '{{ with query \"sum(x)\" }}{{ . | first | value }}{{ end }}'\n",
    );
    let base = input(&[
        (&[("__name__", "x"), ("a", "1")], &[(0, 1.0)]),
        (&[("__name__", "x"), ("a", "2")], &[(0, 2.0)]),
    ]);
    let mut st = GroupState::new(&g);
    let mut h = History::new();
    eval_group(&g, &mut st, &base, &mut h, 0, &ctx());
    let a = st.alerts(0).unwrap().firing().next().unwrap();
    assert_eq!(a.annotations, [("total".to_string(), "3".to_string())]);
}

/// Queries are parsed once per rule and text, and evaluated afresh every time: a query per
/// alert (built from its labels) follows the series, and one that fails to parse says so on
/// every evaluation.
#[test]
fn template_queries_follow_the_series_across_evaluations() {
    let g = group(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x > 0\n        annotations:\n          own: '{{ with printf \"x{a=%q}\" $labels.a | query }}{{ . | first | value }}{{ end }}'\n          bad: '{{ with query \"sum(\" }}{{ . }}{{ end }}'\n",
    );
    let at = |v1: f64, v2: f64| {
        input(&[
            (&[("__name__", "x"), ("a", "1")], &[(0, v1)]),
            (&[("__name__", "x"), ("a", "2")], &[(0, v2)]),
        ])
    };
    let mut st = GroupState::new(&g);
    let mut h = History::new();
    let own = |st: &GroupState| -> Vec<(String, String)> {
        st.alerts(0)
            .unwrap()
            .firing()
            .map(|a| {
                let get = |k: &str| {
                    a.annotations
                        .iter()
                        .find(|(n, _)| n == k)
                        .unwrap()
                        .1
                        .clone()
                };
                (get("own"), get("bad"))
            })
            .collect()
    };
    eval_group(&g, &mut st, &at(1.0, 2.0), &mut h, 0, &ctx());
    let first = own(&st);
    assert_eq!(
        first.iter().map(|o| o.0.as_str()).collect::<Vec<_>>(),
        ["1", "2"]
    );
    assert!(first[0].1.contains("error"), "{first:?}");
    eval_group(&g, &mut st, &at(5.0, 7.0), &mut h, 1_000, &ctx());
    let second = own(&st);
    assert_eq!(
        second.iter().map(|o| o.0.as_str()).collect::<Vec<_>>(),
        ["5", "7"]
    );
    assert_eq!(second[0].1, first[0].1);
}

#[test]
fn group_labels_reach_recorded_series_and_alerts() {
    let g = group(
        "groups:\n  - name: g\n    labels: {desk: mm, team: a}\n    rules:\n      - record: r\n        expr: x\n        labels: {team: b}\n      - alert: A\n        expr: x > 0\n",
    );
    let base = input(&[(&[("__name__", "x")], &[(0, 1.0)])]);
    let mut st = GroupState::new(&g);
    let mut h = History::new();
    eval_group(&g, &mut st, &base, &mut h, 0, &ctx());
    assert_eq!(
        query(&base, &h, "r", 0),
        [r#"{__name__="r", desk="mm", team="b"} 1"#]
    );
    let a = st.alerts(1).unwrap().firing().next().unwrap();
    assert_eq!(
        a.labels.to_string(),
        r#"{alertname="A", desk="mm", team="a"}"#
    );
}

#[test]
fn layered_storage_merges_a_series_held_in_both() {
    let base = input(&[(&[("__name__", "r")], &[(0, 1.0), (2 * M, 3.0)])]);
    let mut h = History::new();
    let r = Labels::new([("__name__", "r")]);
    h.append(&r, M, 2.0).unwrap();
    h.append(&r, 2 * M, 9.0).unwrap();
    let storage = Layered {
        base: &base,
        overlay: &h,
    };
    let sel = Expr::parse("r").unwrap().selectors().remove(0);
    let got = storage.select(&sel, 0, 3 * M);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].samples,
        [(0, 1.0), (M, 2.0), (2 * M, 3.0)],
        "the base wins a tie"
    );
}
