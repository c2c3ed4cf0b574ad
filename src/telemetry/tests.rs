//! Catalogue and rendering tests: names, HELP lines, types and bounded labels.

use std::collections::HashSet;

use super::*;

#[test]
fn catalogue_names_are_unique_and_prefixed() {
    let mut seen = HashSet::new();
    for d in CATALOGUE {
        assert!(seen.insert(d.name), "{} listed twice", d.name);
        assert!(d.name.starts_with("ocx_"), "{}", d.name);
        assert!(!d.help.is_empty());
        let counter = matches!(d.kind, Kind::Counter);
        assert_eq!(
            counter,
            d.name.ends_with("_total"),
            "{}: counters and only counters end in _total",
            d.name
        );
    }
}

#[test]
fn catalogue_names_are_valid_and_buckets_increase() {
    for d in CATALOGUE {
        let mut chars = d.name.chars();
        assert!(chars.next().is_some_and(|c| c.is_ascii_lowercase()));
        assert!(
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{}",
            d.name
        );
        if let Kind::Histogram(b) = d.kind {
            assert!(!b.is_empty(), "{}", d.name);
            assert!(b.iter().all(|x| x.is_finite() && *x > 0.0), "{}", d.name);
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{}", d.name);
        }
    }
}

#[test]
fn rendered_text_has_help_and_the_right_types() {
    let t = Telemetry::new();
    let s = t.stream("a", "user", None);
    s.heartbeat_interval.record(15.0);
    s.event_lag.record(0.02);
    let mut acc = t.account("a", 10);
    let account = crate::state::Account::new(1000);
    acc.observe_live(&crate::state::Applied::default(), &account, 0.0);
    let quantity = t.counter(names::FILL_QUANTITY, &[("account", "a")]);
    quantity.absolute(1.5);
    let text = t.render();
    assert!(
        text.contains(
            "# TYPE ocx_fill_quantity_total counter\nocx_fill_quantity_total{account=\"a\"} 1.5\n"
        ),
        "{text}"
    );
    assert!(text.contains("# TYPE ocx_stream_heartbeat_interval_seconds histogram\n"));
    assert!(text.contains(
        "ocx_stream_heartbeat_interval_seconds_bucket{account=\"a\",stream=\"user\",le=\"15\"} 1"
    ));
    assert!(text.contains(
        "ocx_stream_event_lag_seconds_bucket{account=\"a\",stream=\"user\",le=\"0.025\"} 1"
    ));
    assert!(text.contains("ocx_sentinel_build_info{version=\""));
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap_or_default();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP line"
        );
    }
}

#[test]
fn label_values_past_the_cap_fold_into_other_once_each() {
    let t = Telemetry::new();
    let counter = t.counter(names::LABEL_VALUES_FOLDED, &[("label", "market")]);
    let mut f = LabelFolder::new(2, counter);
    assert_eq!(f.fold("A"), "A");
    assert_eq!(f.fold("B"), "B");
    assert_eq!(f.fold("C"), "other");
    assert_eq!(f.fold("C"), "other");
    assert_eq!(f.fold("D"), "other");
    assert_eq!(f.fold("A"), "A");
    let m = exposition::parse(&t.render());
    assert_eq!(
        m.get("ocx_sentinel_label_values_folded_total{label=\"market\"}"),
        Some(&2.0)
    );
}

#[test]
fn each_telemetry_instance_has_its_own_series() {
    let a = Telemetry::new();
    let b = Telemetry::new();
    a.stream("x", "user", None).connects.increment(3);
    assert!(
        a.render()
            .contains("ocx_stream_connects_total{account=\"x\",stream=\"user\"} 3")
    );
    assert!(!b.render().contains("account=\"x\""));
}
