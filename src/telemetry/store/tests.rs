//! Store tests: exact 0.0.4 and OpenMetrics text (exemplars included), registration, generation, removal, reads, negotiation, and promtool on every kind.

use std::process::{Command, Stdio};

use super::render::go_float;
use super::*;
use crate::telemetry::catalogue::CATALOGUE;

const CATALOGUE_T: &[MetricDef] = &[
    MetricDef {
        name: "t_requests_total",
        kind: Kind::Counter,
        labels: "path, code",
        help: "Requests handled",
    },
    MetricDef {
        name: "t_amount_total",
        kind: Kind::Counter,
        labels: "side",
        help: "Traded amount, in \"quote\" \\ units",
    },
    MetricDef {
        name: "t_temperature",
        kind: Kind::Gauge,
        labels: "room",
        help: "Temperature, in degrees",
    },
    MetricDef {
        name: "t_latency_seconds",
        kind: Kind::Histogram(&[0.25, 1.0, 1e6]),
        labels: "op",
        help: "Latency\nin seconds",
    },
    MetricDef {
        name: "t_unused",
        kind: Kind::Gauge,
        labels: "",
        help: "Never registered, so never rendered",
    },
    MetricDef {
        name: "t_up",
        kind: Kind::Gauge,
        labels: "",
        help: "Always 1",
    },
];

/// A registry with every kind, registered out of catalogue order and with labels out of order.
fn small() -> Registry {
    let r = Registry::new(CATALOGUE_T);
    r.gauge("t_up", &[]).set(1.0);
    let h = r.histogram("t_latency_seconds", &[("op", "read")]);
    for v in [0.25, 0.5, 0.5, 3e6] {
        h.record(v);
    }
    let rooms = [
        ("zz", f64::NAN),
        ("kitchen", -2.5),
        ("cellar", f64::NEG_INFINITY),
        ("attic", f64::INFINITY),
        ("a\"b\\c\nd", 1e21),
    ];
    for (room, v) in rooms {
        r.gauge("t_temperature", &[("room", room)]).set(v);
    }
    let amount = r.counter("t_amount_total", &[("side", "buy")]);
    amount.absolute(1.25);
    amount.absolute(1.0); // lower: ignored
    amount.increment_by(0.5);
    r.counter("t_requests_total", &[("path", "/a"), ("code", "500")])
        .increment(1);
    r.counter("t_requests_total", &[("code", "200"), ("path", "/a")])
        .increment(3);
    r
}

const SMALL_TEXT: &str = r#"# HELP t_requests_total Requests handled
# TYPE t_requests_total counter
t_requests_total{code="200",path="/a"} 3
t_requests_total{code="500",path="/a"} 1
# HELP t_amount_total Traded amount, in "quote" \\ units
# TYPE t_amount_total counter
t_amount_total{side="buy"} 1.75
# HELP t_temperature Temperature, in degrees
# TYPE t_temperature gauge
t_temperature{room="a\"b\\c\nd"} 1e+21
t_temperature{room="attic"} +Inf
t_temperature{room="cellar"} -Inf
t_temperature{room="kitchen"} -2.5
t_temperature{room="zz"} NaN
# HELP t_latency_seconds Latency\nin seconds
# TYPE t_latency_seconds histogram
t_latency_seconds_bucket{op="read",le="0.25"} 1
t_latency_seconds_bucket{op="read",le="1"} 3
t_latency_seconds_bucket{op="read",le="1e+06"} 3
t_latency_seconds_bucket{op="read",le="+Inf"} 4
t_latency_seconds_sum{op="read"} 3000001.25
t_latency_seconds_count{op="read"} 4
# HELP t_up Always 1
# TYPE t_up gauge
t_up 1
"#;

const SMALL_OPENMETRICS: &str = r#"# TYPE t_requests counter
# HELP t_requests Requests handled
t_requests_total{code="200",path="/a"} 3
t_requests_total{code="500",path="/a"} 1
# TYPE t_amount counter
# HELP t_amount Traded amount, in \"quote\" \\ units
t_amount_total{side="buy"} 1.75
# TYPE t_temperature gauge
# HELP t_temperature Temperature, in degrees
t_temperature{room="a\"b\\c\nd"} 1e+21
t_temperature{room="attic"} +Inf
t_temperature{room="cellar"} -Inf
t_temperature{room="kitchen"} -2.5
t_temperature{room="zz"} NaN
# TYPE t_latency_seconds histogram
# HELP t_latency_seconds Latency\nin seconds
t_latency_seconds_bucket{op="read",le="0.25"} 1
t_latency_seconds_bucket{op="read",le="1.0"} 3
t_latency_seconds_bucket{op="read",le="1e+06"} 3
t_latency_seconds_bucket{op="read",le="+Inf"} 4
t_latency_seconds_sum{op="read"} 3000001.25
t_latency_seconds_count{op="read"} 4
# TYPE t_up gauge
# HELP t_up Always 1
t_up 1
# EOF
"#;

#[test]
fn prometheus_text_is_exact() {
    assert_eq!(small().render(Format::Prometheus), SMALL_TEXT);
}

#[test]
fn openmetrics_text_is_exact() {
    assert_eq!(small().render(Format::OpenMetrics), SMALL_OPENMETRICS);
}

#[test]
fn an_empty_registry_renders_nothing_but_openmetrics_eof() {
    let r = Registry::new(CATALOGUE_T);
    assert_eq!(r.render(Format::Prometheus), "");
    assert_eq!(r.render(Format::OpenMetrics), "# EOF\n");
}

/// The W3C trace-context example ids (a span id with a leading zero), and tiny ones that need
/// every digit of padding.
const W3C: TraceIds = TraceIds {
    trace_id: 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c,
    span_id: 0x00f0_67aa_0ba9_02b7,
};
const TINY: TraceIds = TraceIds {
    trace_id: 1,
    span_id: 2,
};
const MAX: TraceIds = TraceIds {
    trace_id: u128::MAX,
    span_id: u64::MAX,
};

/// A counter and a histogram with exemplars beside ones without, replaced and not.
fn with_exemplars() -> Registry {
    let r = Registry::new(CATALOGUE_T);
    let ok = r.counter("t_requests_total", &[("path", "/a"), ("code", "200")]);
    ok.increment(2);
    ok.increment_with_exemplar_at(3, TINY, 1_732_589_990_000);
    ok.increment(4); // a plain increment leaves the exemplar alone
    ok.increment_with_exemplar_at(1, W3C, 1_732_590_000_123); // the latest wins
    r.counter("t_requests_total", &[("path", "/a"), ("code", "500")])
        .increment(1);
    let h = r.histogram("t_latency_seconds", &[("op", "read")]);
    h.record(0.1);
    h.record_with_exemplar_at(0.2, TINY, 1_732_590_000_001);
    h.record_with_exemplar_at(0.25, W3C, 1_732_590_000_005); // same bucket: replaces
    h.record(0.5); // le="1.0" is counted but holds no exemplar
    h.record(5.0);
    h.record_with_exemplar_at(3e6, MAX, 1_732_590_001_200); // +Inf
    r
}

#[test]
fn openmetrics_carries_counter_and_bucket_exemplars_the_latest_winning() {
    let want = r#"# TYPE t_requests counter
# HELP t_requests Requests handled
t_requests_total{code="200",path="/a"} 10 # {trace_id="0af7651916cd43dd8448eb211c80319c",span_id="00f067aa0ba902b7"} 1 1732590000.123
t_requests_total{code="500",path="/a"} 1
# TYPE t_latency_seconds histogram
# HELP t_latency_seconds Latency\nin seconds
t_latency_seconds_bucket{op="read",le="0.25"} 3 # {trace_id="0af7651916cd43dd8448eb211c80319c",span_id="00f067aa0ba902b7"} 0.25 1732590000.005
t_latency_seconds_bucket{op="read",le="1.0"} 4
t_latency_seconds_bucket{op="read",le="1e+06"} 5
t_latency_seconds_bucket{op="read",le="+Inf"} 6 # {trace_id="ffffffffffffffffffffffffffffffff",span_id="ffffffffffffffff"} 3000000 1732590001.200
t_latency_seconds_sum{op="read"} 3000006.05
t_latency_seconds_count{op="read"} 6
# EOF
"#;
    assert_eq!(with_exemplars().render(Format::OpenMetrics), want);
}

#[test]
fn prometheus_text_never_carries_exemplars() {
    let want = r#"# HELP t_requests_total Requests handled
# TYPE t_requests_total counter
t_requests_total{code="200",path="/a"} 10
t_requests_total{code="500",path="/a"} 1
# HELP t_latency_seconds Latency\nin seconds
# TYPE t_latency_seconds histogram
t_latency_seconds_bucket{op="read",le="0.25"} 3
t_latency_seconds_bucket{op="read",le="1"} 4
t_latency_seconds_bucket{op="read",le="1e+06"} 5
t_latency_seconds_bucket{op="read",le="+Inf"} 6
t_latency_seconds_sum{op="read"} 3000006.05
t_latency_seconds_count{op="read"} 6
"#;
    let r = with_exemplars();
    assert_eq!(r.render(Format::Prometheus), want);
    promtool_check(&r.render(Format::Prometheus));
}

#[test]
fn exemplar_values_and_times_render_like_samples() {
    let r = Registry::new(CATALOGUE_T);
    let h = r.histogram("t_latency_seconds", &[]);
    // NaN is counted into +Inf, and its exemplar goes there too.
    h.record_with_exemplar_at(f64::NAN, TINY, 0);
    h.record_with_exemplar_at(1e-7, TINY, -1_500);
    let text = r.render(Format::OpenMetrics);
    let tiny = r#"{trace_id="00000000000000000000000000000001",span_id="0000000000000002"}"#;
    assert!(
        text.contains(&format!(
            "t_latency_seconds_bucket{{le=\"+Inf\"}} 2 # {tiny} NaN 0.000\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "t_latency_seconds_bucket{{le=\"0.25\"}} 1 # {tiny} 1e-07 -1.500\n"
        )),
        "{text}"
    );
}

#[test]
fn the_exemplar_paths_count_as_the_plain_ones_and_stamp_the_wall_clock() {
    let r = Registry::new(CATALOGUE_T);
    let (plain, traced) = (
        r.histogram("t_latency_seconds", &[("op", "plain")]),
        r.histogram("t_latency_seconds", &[("op", "traced")]),
    );
    let (c_plain, c_traced) = (
        r.counter("t_requests_total", &[("path", "plain")]),
        r.counter("t_requests_total", &[("path", "traced")]),
    );
    let before = crate::clock::unix_ms();
    for v in [0.1, 0.25, 7.0, 2e6, f64::NAN] {
        plain.record(v);
        traced.record_with_exemplar(v, W3C);
    }
    c_plain.increment(5);
    c_traced.increment_with_exemplar(5, W3C);
    let after = crate::clock::unix_ms();
    // NaN sums are never equal: compare the buckets and the count.
    assert_eq!(plain.snapshot().buckets, traced.snapshot().buckets);
    assert_eq!(c_plain.get(), c_traced.get());
    let e = c_traced.exemplar().get().unwrap();
    assert_eq!((e.ids, e.value), (W3C, 5.0));
    assert!((before..=after).contains(&e.unix_ms), "{e:?}");
    let held: Vec<Option<f64>> = traced
        .exemplars()
        .iter()
        .map(|s| s.get().map(|e| e.value))
        .collect();
    assert_eq!(held[..3], [Some(0.25), None, Some(7.0)]); // 0.1 then 0.25; none; 7
    assert!(held[3].unwrap().is_nan(), "{held:?}"); // 2e6 then NaN: both +Inf, NaN later
    assert!(plain.exemplars().iter().all(|s| s.get().is_none()));
    assert!(c_plain.exemplar().get().is_none());
}

#[test]
fn an_exemplar_slot_costs_no_allocation_until_used() {
    // A lock word and a pointer: every counter and histogram bucket carries one.
    assert!(
        std::mem::size_of::<exemplar::ExemplarSlot>() <= 16,
        "{}",
        std::mem::size_of::<exemplar::ExemplarSlot>()
    );
}

#[test]
fn registration_is_idempotent_whatever_the_label_order() {
    let r = Registry::new(CATALOGUE_T);
    let a = r.counter("t_requests_total", &[("path", "/x"), ("code", "200")]);
    let b = r.counter("t_requests_total", &[("code", "200"), ("path", "/x")]);
    a.increment(2);
    b.increment(3);
    assert_eq!(a.get(), 5.0);
    assert_eq!(b.get(), 5.0);
    let other = r.counter("t_requests_total", &[("code", "201"), ("path", "/x")]);
    assert_eq!(other.get(), 0.0);
    assert_eq!(r.select("t_requests_total").len(), 2);
    let g1 = r.gauge("t_up", &[]);
    let g2 = r.gauge("t_up", &[]);
    g1.set(4.0);
    g2.increment(1.5);
    g1.decrement(0.5);
    assert_eq!(g2.get(), 5.0);
}

#[test]
fn generation_moves_only_when_the_set_of_series_changes() {
    let r = Registry::new(CATALOGUE_T);
    assert_eq!(r.generation(), 0);
    let c = r.counter("t_requests_total", &[("code", "200"), ("path", "/")]);
    assert_eq!(r.generation(), 1);
    r.counter("t_requests_total", &[("path", "/"), ("code", "200")]);
    c.increment(7);
    r.gauge("t_up", &[]).set(1.0);
    assert_eq!(
        r.generation(),
        2,
        "t_up was new; re-registering and updating are not"
    );
    r.gauge("t_up", &[]).set(0.0);
    r.histogram("t_latency_seconds", &[("op", "w")]).record(0.1);
    assert_eq!(r.generation(), 3);
    assert!(r.remove("t_up", &[]));
    assert_eq!(r.generation(), 4, "a removal changes the set too");
    assert!(!r.remove("t_up", &[]));
    assert!(!r.remove("t_nope", &[]));
    assert_eq!(r.generation(), 4);
}

#[test]
fn a_removed_series_disappears_and_comes_back_at_zero() {
    let r = Registry::new(CATALOGUE_T);
    let kept = r.counter("t_requests_total", &[("code", "200"), ("path", "/")]);
    let gone = r.counter("t_requests_total", &[("code", "500"), ("path", "/")]);
    kept.increment(1);
    gone.increment(9);
    assert!(r.remove("t_requests_total", &[("path", "/"), ("code", "500")]));
    let text = r.render(Format::Prometheus);
    assert_eq!(
        text,
        "# HELP t_requests_total Requests handled\n# TYPE t_requests_total counter\n\
         t_requests_total{code=\"200\",path=\"/\"} 1\n"
    );
    // The old handle still works, unseen.
    gone.increment(1);
    assert_eq!(gone.get(), 10.0);
    assert_eq!(r.select("t_requests_total").len(), 1);
    let again = r.counter("t_requests_total", &[("code", "500"), ("path", "/")]);
    assert_eq!(again.get(), 0.0);
    // Removing a family's last series drops the family from the render.
    assert!(r.remove("t_requests_total", &[("code", "200"), ("path", "/")]));
    assert!(r.remove("t_requests_total", &[("code", "500"), ("path", "/")]));
    assert_eq!(r.render(Format::Prometheus), "");
}

/// The ids `written_since` lists from `cursor` on (sorted, once each), and whether that is all.
fn written(r: &Registry, cursor: &mut Option<WriteCursor>) -> (Vec<u32>, bool) {
    let mut ids = Vec::new();
    let (next, known) = r.written_since(*cursor, &mut |id| ids.push(id));
    *cursor = Some(next);
    ids.sort_unstable();
    ids.dedup();
    (ids, known)
}

#[test]
fn the_write_log_lists_the_counters_and_gauges_whose_values_changed() {
    let r = Registry::new(CATALOGUE_T);
    let c = r.counter("t_requests_total", &[("code", "200"), ("path", "/")]);
    let amount = r.counter("t_amount_total", &[("side", "buy")]);
    let g = r.gauge("t_temperature", &[("room", "attic")]);
    let quiet = r.gauge("t_up", &[]);
    let h = r.histogram("t_latency_seconds", &[("op", "read")]);
    let id = |w: Option<u32>| w.expect("a registered counter or gauge has an id");
    let (c_id, amount_id, g_id, quiet_id) = (
        id(c.write_id()),
        id(amount.write_id()),
        id(g.write_id()),
        id(quiet.write_id()),
    );
    assert_eq!(
        Counter::default().write_id(),
        None,
        "a detached handle is not logged"
    );
    let mut cursor = None;
    assert_eq!(
        written(&r, &mut cursor),
        (vec![], false),
        "no cursor: read all"
    );
    assert_eq!(written(&r, &mut cursor), (vec![], true));
    for _ in 0..5 {
        c.increment(1);
    }
    g.set(21.5);
    amount.absolute(10.0);
    amount.absolute(3.0);
    h.record(0.1);
    let (ids, known) = written(&r, &mut cursor);
    assert!(known);
    let mut want = vec![c_id, g_id, amount_id];
    want.sort_unstable();
    assert_eq!(ids, want);
    // A hot series is one entry per reader pass, not one per write.
    let before = r.inner.written.entries();
    for _ in 0..1_000 {
        c.increment(1);
    }
    assert_eq!(r.inner.written.entries(), before + 1);
    // Writes that change nothing list nothing: a gauge set to its value, a counter offered a
    // lower total or a zero or negative amount.
    g.set(21.5);
    quiet.increment(0.0);
    amount.absolute(9.0);
    amount.increment_by(-1.0);
    let (ids, known) = written(&r, &mut cursor);
    assert_eq!((ids, known), (vec![c_id], true));
    quiet.decrement(1.0);
    assert_eq!(written(&r, &mut cursor), (vec![quiet_id], true));
    // -0.0 to +0.0 compares equal as floats, not as the bits the rules compare.
    quiet.set(-0.0);
    written(&r, &mut cursor);
    quiet.increment(0.0);
    assert_eq!(written(&r, &mut cursor), (vec![quiet_id], true));
    assert_eq!(written(&r, &mut cursor), (vec![], true));
}

#[test]
fn every_reader_of_the_write_log_sees_every_write() {
    let r = Registry::new(CATALOGUE_T);
    let g = r.gauge("t_temperature", &[("room", "attic")]);
    let id = g.write_id().unwrap();
    let (mut a, mut b) = (None, None);
    written(&r, &mut a);
    written(&r, &mut b);
    g.set(1.0);
    // Logged once; the second write finds the entry not taken by any reader yet.
    g.set(2.0);
    assert_eq!(written(&r, &mut a), (vec![id], true));
    // `a` took the entry: the next write is logged again, for `a`, and `b` still sees both.
    g.set(3.0);
    assert_eq!(written(&r, &mut b), (vec![id], true));
    assert_eq!(written(&r, &mut a), (vec![id], true));
    assert_eq!(written(&r, &mut a), (vec![], true));
    assert_eq!(written(&r, &mut b), (vec![], true));
}

#[test]
fn a_reader_that_fell_off_the_write_log_is_told_to_read_everything() {
    let r = Registry::new(CATALOGUE_T);
    let early = r.gauge("t_up", &[]);
    let hot = r.gauge("t_temperature", &[("room", "attic")]);
    let (mut slow, mut busy) = (None, None);
    written(&r, &mut slow);
    written(&r, &mut busy);
    early.set(1.0);
    // Another reader takes every entry, so each write of `hot` is one more: the ring laps.
    for i in 0..WRITE_LOG_CAP {
        hot.set(i as f64 + 1.0);
        written(&r, &mut busy);
    }
    assert!(r.inner.written.entries() > WRITE_LOG_CAP as u64);
    let (_, known) = written(&r, &mut slow);
    assert!(
        !known,
        "the entry of `early` was overwritten: the reader must read everything"
    );
    // From its new cursor on, it follows again.
    early.set(2.0);
    assert_eq!(
        written(&r, &mut slow),
        (vec![early.write_id().unwrap()], true)
    );
}

#[test]
fn members_since_lists_the_series_created_and_removed_as_they_are_now() {
    let r = Registry::new(CATALOGUE_T);
    let kept = r.counter("t_requests_total", &[("code", "200"), ("path", "/")]);
    let g0 = r.generation();
    assert_eq!(
        r.members_since(g0).map(|(g, m)| (g, m.len())),
        Some((g0, 0))
    );
    let new = r.gauge("t_temperature", &[("room", "attic")]);
    r.gauge("t_up", &[]);
    assert!(r.remove("t_up", &[]));
    assert!(r.remove("t_requests_total", &[("code", "200"), ("path", "/")]));
    let again = r.counter("t_requests_total", &[("path", "/"), ("code", "200")]);
    let (now, mut members) = r.members_since(g0).unwrap();
    assert_eq!(now, r.generation());
    members.sort_by(|a, b| (a.family, &a.labels).cmp(&(b.family, &b.labels)));
    let shown: Vec<_> = members
        .iter()
        .map(|m| {
            (
                CATALOGUE_T[m.family].name,
                m.labels.clone(),
                m.handle.is_some(),
            )
        })
        .collect();
    let labels = |pairs: &[(&str, &str)]| Labels::new("t", pairs, false).unwrap();
    assert_eq!(
        shown,
        vec![
            (
                "t_requests_total",
                labels(&[("code", "200"), ("path", "/")]),
                true
            ),
            ("t_temperature", labels(&[("room", "attic")]), true),
            ("t_up", labels(&[]), false),
        ]
    );
    let handle = |name: &str| {
        members
            .iter()
            .find(|m| CATALOGUE_T[m.family].name == name)
            .and_then(|m| m.handle.clone())
            .unwrap()
    };
    // Removed and registered again: another series than the one resolved before.
    assert!(handle("t_requests_total").same(&Handle::Counter(again.clone())));
    assert!(!handle("t_requests_total").same(&Handle::Counter(kept)));
    assert!(handle("t_temperature").same(&Handle::Gauge(new)));
    assert_ne!(again.write_id(), None);
    // Only what changed after the generation asked about.
    let (_, m) = r.members_since(now - 1).unwrap();
    assert_eq!(m.len(), 1);
    assert!(
        r.members_since(now + 1).is_none(),
        "a generation from the future"
    );
    // Further back than the log reaches: unknown.
    for i in 0..MEMBERSHIP_LOG_CAP {
        r.gauge("t_temperature", &[("room", &i.to_string())]);
    }
    assert!(r.members_since(g0).is_none());
    assert!(r.members_since(now).is_some());
}

#[test]
fn select_and_families_read_the_rendered_values() {
    let r = small();
    let temps = r.select("t_temperature");
    let rooms: Vec<&str> = temps
        .iter()
        .map(|s| s.labels.get("room").unwrap())
        .collect();
    assert_eq!(rooms, ["a\"b\\c\nd", "attic", "cellar", "kitchen", "zz"]);
    assert_eq!(temps[3].handle.value(), Value::Gauge(-2.5));
    let reqs = r.select("t_requests_total");
    let labels: Vec<Vec<(&str, &str)>> = reqs.iter().map(|s| s.labels.iter().collect()).collect();
    assert_eq!(
        labels,
        [
            vec![("code", "200"), ("path", "/a")],
            vec![("code", "500"), ("path", "/a")]
        ]
    );
    assert_eq!(reqs[0].handle.value(), Value::Counter(3.0));
    let lat = r.select("t_latency_seconds");
    assert_eq!(
        lat[0].handle.value(),
        Value::Histogram(HistogramSnapshot {
            count: 4,
            sum: 3000001.25,
            buckets: vec![(0.25, 1), (1.0, 3), (1e6, 3), (f64::INFINITY, 4)],
        })
    );
    assert!(r.select("t_unused").is_empty());
    assert!(r.select("t_nope").is_empty());
    let names: Vec<&str> = r.families().iter().map(|f| f.def.name).collect();
    assert_eq!(
        names,
        [
            "t_requests_total",
            "t_amount_total",
            "t_temperature",
            "t_latency_seconds",
            "t_up"
        ]
    );
    // A held handle sees later writes without resolving again.
    let held = r.select("t_up").remove(0).handle;
    r.gauge("t_up", &[]).set(42.0);
    assert_eq!(held.value(), Value::Gauge(42.0));
}

#[test]
fn histograms_count_bounds_inclusively_and_nan_into_inf() {
    let r = Registry::new(CATALOGUE_T);
    let h = r.histogram("t_latency_seconds", &[]);
    h.record(0.25);
    h.record(0.2500001);
    h.record(f64::NAN);
    h.record(-1.0);
    let s = h.snapshot();
    assert_eq!(s.count, 4);
    assert_eq!(h.count(), 4);
    assert_eq!(
        s.buckets,
        vec![(0.25, 2), (1.0, 3), (1e6, 3), (f64::INFINITY, 4)]
    );
    assert!(h.sum().is_nan());
    assert_eq!(h.bounds(), &[0.25, 1.0, 1e6]);
}

#[test]
fn counters_never_go_down() {
    let r = Registry::new(CATALOGUE_T);
    let c = r.counter("t_amount_total", &[]);
    c.increment_by(2.5);
    c.increment_by(-1.0);
    c.increment_by(f64::NAN);
    c.absolute(2.0);
    c.absolute(f64::NAN);
    assert_eq!(c.get(), 2.5);
    c.absolute(10.125);
    c.increment(1);
    assert_eq!(c.get(), 11.125);
}

#[test]
fn bad_registrations_are_typed_errors() {
    let r = Registry::new(CATALOGUE_T);
    assert_eq!(
        r.try_counter("t_nope", &[]).err(),
        Some(StoreError::UnknownMetric("t_nope".into()))
    );
    assert_eq!(
        r.try_counter("t_up", &[]).err(),
        Some(StoreError::WrongKind {
            name: "t_up".into(),
            actual: "gauge",
            requested: "counter"
        })
    );
    for bad in ["", "1a", "a-b", "__x", "é"] {
        assert!(
            matches!(
                r.try_gauge("t_up", &[(bad, "v")]),
                Err(StoreError::InvalidLabelName { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        r.try_histogram("t_latency_seconds", &[("le", "1")]),
        Err(StoreError::InvalidLabelName { .. })
    ));
    assert!(
        r.try_gauge("t_up", &[("le", "1")]).is_ok(),
        "le is only a histogram's"
    );
    assert_eq!(
        r.try_gauge("t_up", &[("a", "1"), ("a", "2")]).err(),
        Some(StoreError::DuplicateLabel {
            name: "t_up".into(),
            label: "a".into()
        })
    );
    assert_eq!(
        r.select("t_up").len(),
        1,
        "only the valid registration made a series"
    );
}

#[test]
fn le_values_follow_go_and_openmetrics_canonical_forms() {
    let canonical = [
        (0.0, "0.0"),
        (0.001, "0.001"),
        (0.002, "0.002"),
        (0.01, "0.01"),
        (0.1, "0.1"),
        (0.9, "0.9"),
        (0.95, "0.95"),
        (0.99, "0.99"),
        (0.999, "0.999"),
        (1.0, "1.0"),
        (1.7, "1.7"),
        (10.0, "10.0"),
        (1e-10, "1e-10"),
        (1e-9, "1e-09"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (100000.0, "100000.0"),
        (1e6, "1e+06"),
        (1e10, "1e+10"),
        (1.5e300, "1.5e+300"),
        (f64::INFINITY, "+Inf"),
    ];
    for (v, want) in canonical {
        assert_eq!(go_float(v, true), want, "{v}");
    }
    for (v, want) in [
        (1.0, "1"),
        (15.0, "15"),
        (0.025, "0.025"),
        (2.5e6, "2.5e+06"),
    ] {
        assert_eq!(go_float(v, false), want, "{v}");
    }
}

#[test]
fn accept_headers_pick_the_format_prometheus_would_get() {
    use Format::*;
    let cases: &[(Option<&str>, Format)] = &[
        (None, Prometheus),
        (Some(""), Prometheus),
        (Some("*/*"), Prometheus),
        (Some("text/plain"), Prometheus),
        (Some("application/json"), Prometheus),
        (Some("application/openmetrics-text"), OpenMetrics),
        // Prometheus 2.x
        (
            Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            ),
            OpenMetrics,
        ),
        // Prometheus with scrape_protocols, and 3.x
        (
            Some(
                "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            ),
            OpenMetrics,
        ),
        (
            Some(
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.1",
            ),
            OpenMetrics,
        ),
        // scrape_protocols: [PrometheusText0.0.4] first
        (
            Some(
                "text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,*/*;q=0.1",
            ),
            Prometheus,
        ),
        (
            Some("Application/OpenMetrics-Text; Version=\"1.0.0\""),
            OpenMetrics,
        ),
        (
            Some("application/openmetrics-text;version=2.0.0"),
            Prometheus,
        ),
        (Some("application/openmetrics-text;q=0"), Prometheus),
        (
            Some("text/plain;q=0.2, application/openmetrics-text;q=0.9"),
            OpenMetrics,
        ),
        (
            Some("application/openmetrics-text;q=0.5, text/plain;q=0.5"),
            OpenMetrics,
        ),
    ];
    for (accept, want) in cases {
        assert_eq!(Format::negotiate(*accept), *want, "{accept:?}");
    }
    assert_eq!(
        OpenMetrics.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(
        Prometheus.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

/// Every catalogue family with one series each (label values that need escaping included), so
/// the lint sees each real name, kind and HELP text.
fn every_real_family() -> Registry {
    let r = Registry::new(CATALOGUE);
    for d in CATALOGUE {
        let labels: Vec<(&str, &str)> = d
            .labels
            .split(", ")
            .filter(|l| !l.is_empty())
            .map(|l| (l, "a \"quoted\" \\ value\nwith a newline"))
            .collect();
        match d.kind {
            Kind::Counter => r.counter(d.name, &labels).absolute(12.5),
            Kind::Gauge => r.gauge(d.name, &labels).set(-0.25),
            Kind::Histogram(b) => {
                let h = r.histogram(d.name, &labels);
                h.record(b[0]);
                h.record(b[b.len() - 1] * 2.0);
            }
        }
    }
    r
}

/// promtool is the reference linter of the 0.0.4 format. CI installs it and sets
/// OCX_REQUIRE_PEERS=1, so there this check cannot be skipped.
fn promtool_check(text: &str) {
    use std::io::Write;
    let required = std::env::var("OCX_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                !required,
                "promtool is required (OCX_REQUIRE_PEERS=1) but cannot run: {e}"
            );
            eprintln!("promtool not installed: exposition lint skipped (CI runs it)");
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics said:\n{said}\non:\n{text}"
    );
}

#[test]
fn promtool_finds_nothing_to_say_about_any_kind() {
    promtool_check(&small().render(Format::Prometheus));
    let every = every_real_family();
    assert_eq!(every.families().len(), CATALOGUE.len());
    promtool_check(&every.render(Format::Prometheus));
}

#[test]
fn every_real_family_in_openmetrics_has_the_counter_and_eof_shape() {
    let text = every_real_family().render(Format::OpenMetrics);
    assert!(text.ends_with("\n# EOF\n"));
    assert_eq!(text.matches("# EOF").count(), 1);
    for d in CATALOGUE {
        let family = match d.kind {
            Kind::Counter => d.name.strip_suffix("_total").unwrap(),
            _ => d.name,
        };
        let head = format!(
            "# TYPE {family} {}\n# HELP {family} {}\n",
            d.kind.as_str(),
            d.help.replace('\\', "\\\\").replace('"', "\\\"")
        );
        assert!(text.contains(&head), "{head}");
    }
    assert!(text.contains(
        "ocx_fills_total{account=\"a \\\"quoted\\\" \\\\ value\\nwith a newline\",liquidity="
    ));
    assert!(!text.contains("# TYPE ocx_fills_total"));
}
