//! Lifecycle unit tests; the same behaviours are checked against promtool in `tests/rules/`.

use super::*;
use crate::rules::file::{Rule, parse_str};

fn rule(extra: &str) -> AlertingRule {
    let text = format!(
        "groups:\n  - name: g\n    rules:\n      - alert: Breach\n        expr: pos > 10\n{extra}"
    );
    match parse_str(&text, "t.yml")
        .unwrap()
        .groups
        .remove(0)
        .rules
        .remove(0)
    {
        Rule::Alerting(a) => a,
        Rule::Recording(_) => unreachable!("an alert"),
    }
}

fn sample(market: &str, v: f64) -> Sample {
    Sample {
        labels: Labels::new([("__name__", "pos"), ("market", market)]),
        value: v,
    }
}

fn ctx(limit: usize) -> AlertContext<'static> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    AlertContext {
        external_labels: &EMPTY,
        external_url: "",
        limit,
        query: None,
    }
}

const S: i64 = 1000;

fn id(market: &str) -> Labels {
    Labels::new([("alertname", "Breach"), ("market", market)])
}

#[test]
fn pending_then_firing_after_for() {
    let r = rule("        for: 1m\n");
    let mut st = RuleAlerts::default();
    let out = st
        .eval(&r, &[sample("BTC", 11.0)], 0, &ctx(0), None)
        .unwrap();
    assert_eq!(out.transitions, [(id("BTC"), Transition::Pending)]);
    assert_eq!(st.state(), AlertState::Pending);
    let out = st
        .eval(&r, &[sample("BTC", 12.0)], 59 * S, &ctx(0), None)
        .unwrap();
    assert!(out.transitions.is_empty());
    assert_eq!(st.active().next().unwrap().value, 12.0);
    let out = st
        .eval(&r, &[sample("BTC", 13.0)], 60 * S, &ctx(0), None)
        .unwrap();
    assert_eq!(out.transitions, [(id("BTC"), Transition::Firing)]);
    let a = st.firing().next().unwrap();
    assert_eq!((a.active_at_ms, a.fired_at_ms), (0, Some(60 * S)));
}

#[test]
fn for_zero_fires_at_once_with_one_transition() {
    let r = rule("");
    let mut st = RuleAlerts::default();
    let out = st
        .eval(&r, &[sample("BTC", 11.0)], 5 * S, &ctx(0), None)
        .unwrap();
    assert_eq!(out.transitions, [(id("BTC"), Transition::Firing)]);
    assert_eq!(st.firing().count(), 1);
}

#[test]
fn pending_alerts_just_disappear() {
    let r = rule("        for: 5m\n");
    let mut st = RuleAlerts::default();
    st.eval(&r, &[sample("BTC", 11.0)], 0, &ctx(0), None)
        .unwrap();
    let out = st.eval(&r, &[], 60 * S, &ctx(0), None).unwrap();
    assert_eq!(out.transitions, [(id("BTC"), Transition::PendingCleared)]);
    assert_eq!(st.alerts().count(), 0);
    assert!(out.samples.is_empty());
}

#[test]
fn firing_alerts_resolve_and_are_kept_fifteen_minutes() {
    let r = rule("");
    let mut st = RuleAlerts::default();
    st.eval(&r, &[sample("BTC", 11.0)], 0, &ctx(0), None)
        .unwrap();
    let out = st.eval(&r, &[], 60 * S, &ctx(0), None).unwrap();
    assert_eq!(out.transitions, [(id("BTC"), Transition::Resolved)]);
    assert!(
        out.samples.is_empty(),
        "resolved alerts have no ALERTS series"
    );
    let a = st.alerts().next().unwrap();
    assert_eq!(
        (a.state, a.resolved_at_ms),
        (AlertState::Inactive, Some(60 * S))
    );
    assert_eq!(st.active().count(), 0);
    st.eval(&r, &[], 60 * S + 15 * 60 * S, &ctx(0), None)
        .unwrap();
    assert_eq!(st.alerts().count(), 1, "kept for exactly 15m");
    st.eval(&r, &[], 60 * S + 15 * 60 * S + 1, &ctx(0), None)
        .unwrap();
    assert_eq!(st.alerts().count(), 0);
}

#[test]
fn keep_firing_for_holds_a_firing_alert() {
    let r = rule("        keep_firing_for: 2m\n");
    let mut st = RuleAlerts::default();
    st.eval(&r, &[sample("BTC", 11.0)], 0, &ctx(0), None)
        .unwrap();
    let out = st.eval(&r, &[], 60 * S, &ctx(0), None).unwrap();
    assert!(out.transitions.is_empty());
    assert_eq!(out.samples.len(), 2, "still ALERTS while kept firing");
    assert_eq!(
        st.firing().next().unwrap().keep_firing_since_ms,
        Some(60 * S)
    );
    st.eval(&r, &[], 179 * S, &ctx(0), None).unwrap();
    assert_eq!(st.firing().count(), 1);
    let out = st.eval(&r, &[], 180 * S, &ctx(0), None).unwrap();
    assert_eq!(out.transitions, [(id("BTC"), Transition::Resolved)]);
}

#[test]
fn keep_firing_resets_when_the_series_returns() {
    let r = rule("        keep_firing_for: 2m\n");
    let mut st = RuleAlerts::default();
    st.eval(&r, &[sample("BTC", 11.0)], 0, &ctx(0), None)
        .unwrap();
    st.eval(&r, &[], 60 * S, &ctx(0), None).unwrap();
    st.eval(&r, &[sample("BTC", 11.0)], 120 * S, &ctx(0), None)
        .unwrap();
    assert_eq!(st.firing().next().unwrap().keep_firing_since_ms, None);
    st.eval(&r, &[], 180 * S, &ctx(0), None).unwrap();
    st.eval(&r, &[], 299 * S, &ctx(0), None).unwrap();
    assert_eq!(st.firing().count(), 1, "the 2m count restarted at 180s");
}

#[test]
fn a_resolved_alert_that_returns_starts_pending_again() {
    let r = rule("        for: 1m\n");
    let mut st = RuleAlerts::default();
    st.eval(&r, &[sample("BTC", 11.0)], 0, &ctx(0), None)
        .unwrap();
    st.eval(&r, &[sample("BTC", 11.0)], 60 * S, &ctx(0), None)
        .unwrap();
    st.eval(&r, &[], 120 * S, &ctx(0), None).unwrap();
    let out = st
        .eval(&r, &[sample("BTC", 11.0)], 180 * S, &ctx(0), None)
        .unwrap();
    assert_eq!(out.transitions, [(id("BTC"), Transition::Pending)]);
    let a = st.active().next().unwrap();
    assert_eq!((a.state, a.active_at_ms), (AlertState::Pending, 180 * S));
}

#[test]
fn annotations_follow_the_value_and_label_templates_make_identity() {
    let r = rule(
        "        labels:\n          band: '{{ if gt $value 100.0 }}high{{ else }}low{{ end }}'\n        annotations:\n          summary: '{{ $labels.market }} at {{ $value }}'\n",
    );
    let mut st = RuleAlerts::default();
    st.eval(&r, &[sample("BTC", 11.0)], 0, &ctx(0), None)
        .unwrap();
    st.eval(&r, &[sample("BTC", 12.5)], 60 * S, &ctx(0), None)
        .unwrap();
    let a = st.firing().next().unwrap();
    assert_eq!(
        a.annotations,
        [("summary".to_string(), "BTC at 12.5".to_string())]
    );
    assert_eq!(a.labels.get("band"), Some("low"));
    let out = st
        .eval(&r, &[sample("BTC", 500.0)], 120 * S, &ctx(0), None)
        .unwrap();
    let kinds: Vec<Transition> = out.transitions.iter().map(|t| t.1).collect();
    assert_eq!(kinds, [Transition::Firing, Transition::Resolved]);
}

#[test]
fn alerts_series_carry_state_and_active_since() {
    let r = rule("        for: 1m\n        labels:\n          severity: page\n");
    let mut st = RuleAlerts::default();
    let out = st
        .eval(&r, &[sample("BTC", 11.0)], 90_500, &ctx(0), None)
        .unwrap();
    let got: Vec<String> = out
        .samples
        .iter()
        .map(|(l, v)| format!("{l} {v}"))
        .collect();
    assert_eq!(
        got,
        [
            r#"{__name__="ALERTS", alertname="Breach", alertstate="pending", market="BTC", severity="page"} 1"#,
            r#"{__name__="ALERTS_FOR_STATE", alertname="Breach", market="BTC", severity="page"} 90"#,
        ]
    );
}

#[test]
fn exceeding_the_limit_fails_and_drops_every_alert() {
    let r = rule("");
    let mut st = RuleAlerts::default();
    st.eval(
        &r,
        &[sample("A", 11.0), sample("B", 11.0)],
        0,
        &ctx(2),
        None,
    )
    .unwrap();
    let err = st
        .eval(
            &r,
            &[sample("A", 11.0), sample("B", 11.0), sample("C", 11.0)],
            60 * S,
            &ctx(2),
            None,
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "exceeded limit of 2 with 3 alerts");
    assert_eq!(st.alerts().count(), 0);
}

#[test]
fn the_same_labels_after_dropping_the_name_is_an_error() {
    let r = rule("");
    let mut st = RuleAlerts::default();
    let other = Sample {
        labels: Labels::new([("__name__", "other"), ("market", "BTC")]),
        value: 1.0,
    };
    let err = st
        .eval(&r, &[sample("BTC", 11.0), other], 0, &ctx(0), None)
        .unwrap_err();
    assert_eq!(err, AlertError::DuplicateLabelset);
    assert_eq!(st.alerts().count(), 0, "state untouched");
}
