//! Session tests: sequence, heartbeat and error handling, asserted through the exported metrics.

use std::time::Duration;

use super::*;
use crate::account::AccountCell;
use crate::source::sse::SseError;
use crate::state::Account;
use crate::telemetry::{Telemetry, exposition};

struct Rig {
    t: Telemetry,
    account: SharedAccount,
    m: StreamMetrics,
    s: Session,
}

fn rig(kind: StreamKind) -> Rig {
    let t = Telemetry::new();
    let account = AccountCell::new("acc", Account::new(1000), t.account("acc", 500), &[], None);
    let m = t.stream("acc", kind.label(), kind.market());
    Rig {
        t,
        account,
        m,
        s: Session::new(kind),
    }
}

fn at(secs: u64) -> Now {
    Now {
        unix_ms: 1_777_000_000_000 + secs as i64 * 1000,
        mono: Duration::from_secs(secs),
    }
}

fn ev(name: &str, data: &str) -> SseItem {
    SseItem::Event(SseEvent {
        event: name.to_string(),
        data: data.to_string(),
        id: None,
    })
}

fn env(kind: &str, seq: u64, payload: &str) -> String {
    let ty = if kind == "snapshot" {
        "PerpStreamSnapshot"
    } else {
        "PerpStreamDelta"
    };
    format!(
        r#"{{"eventId":"e{seq}","eventType":"{ty}","eventSeq":{seq},"engineTs":1777000000000,"payload":{payload}}}"#
    )
}

fn trade(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","marketId":"BTC-PERP","side":"buy","price":"100","quantity":"2","liquidity":"maker","createdAt":1777000000000}}"#
    )
}

impl Rig {
    fn feed(&mut self, item: SseItem, now: Now) -> Verdict {
        self.s.on_item(item, now, &self.account, &mut self.m)
    }
    fn snap(&mut self, seq: u64) -> Verdict {
        self.feed(
            ev(
                "snapshot",
                &env("snapshot", seq, r#"{"positions":[],"trades":[]}"#),
            ),
            at(0),
        )
    }
    fn delta(&mut self, seq: u64, payload: &str) -> Verdict {
        self.feed(ev("delta", &env("delta", seq, payload)), at(1))
    }
    fn get(&self, series: &str) -> f64 {
        let all = exposition::parse(&self.t.render());
        *all.get(&exposition::normalize(series))
            .unwrap_or_else(|| panic!("no series {series} in\n{}", self.t.render()))
    }
}

const U: &str = r#"account="acc",stream="user""#;

#[test]
fn in_order_deltas_are_applied_and_the_sequence_tracked() {
    let mut r = rig(StreamKind::User);
    assert_eq!(r.snap(10), Verdict::Continue);
    assert!(r.s.synced());
    let p = format!(r#"{{"trades":[{}]}}"#, trade("t1"));
    assert_eq!(r.delta(11, &p), Verdict::Continue);
    assert_eq!(r.get(&format!("ocx_stream_up{{{U}}}")), 1.0);
    assert_eq!(r.get(&format!("ocx_stream_last_sequence{{{U}}}")), 11.0);
    assert_eq!(
        r.get(&format!(
            r#"ocx_stream_events_total{{{U},type="snapshot"}}"#
        )),
        1.0
    );
    assert_eq!(
        r.get(&format!(r#"ocx_stream_events_total{{{U},type="delta"}}"#)),
        1.0
    );
    let fills = r#"ocx_fills_total{account="acc",market="BTC-PERP",side="buy",liquidity="maker"}"#;
    assert_eq!(r.get(fills), 1.0);
    let notional =
        r#"ocx_fill_notional_total{account="acc",market="BTC-PERP",side="buy",liquidity="maker"}"#;
    assert_eq!(r.get(notional), 200.0);
}

#[test]
fn a_sequence_jump_counts_one_gap_and_the_missed_events_and_reconnects() {
    let mut r = rig(StreamKind::User);
    r.snap(10);
    let p = format!(r#"{{"trades":[{}]}}"#, trade("t1"));
    assert_eq!(r.delta(14, &p), Verdict::Reconnect(ReconnectReason::Gap));
    assert_eq!(
        r.get(&format!("ocx_stream_sequence_gaps_total{{{U}}}")),
        1.0
    );
    assert_eq!(
        r.get(&format!("ocx_stream_missed_events_total{{{U}}}")),
        3.0
    );
    // The delta after the gap is not applied: the re-snapshot will carry its trades.
    assert_eq!(r.get(&format!("ocx_stream_last_sequence{{{U}}}")), 10.0);
    let all = exposition::parse(&r.t.render());
    assert!(!all.keys().any(|k| k.starts_with("ocx_fills_total")));
}

#[test]
fn stale_and_early_deltas_are_counted_and_skipped() {
    let mut r = rig(StreamKind::User);
    assert_eq!(r.delta(5, "{}"), Verdict::Continue); // before any snapshot
    r.snap(10);
    assert_eq!(r.delta(10, "{}"), Verdict::Continue); // at the last seq
    assert_eq!(r.delta(9, "{}"), Verdict::Continue); // below it
    assert_eq!(
        r.get(&format!("ocx_stream_duplicate_events_total{{{U}}}")),
        3.0
    );
    assert_eq!(
        r.get(&format!("ocx_stream_sequence_gaps_total{{{U}}}")),
        0.0
    );
}

#[test]
fn malformed_delta_is_skipped_but_a_malformed_snapshot_resyncs() {
    let mut r = rig(StreamKind::User);
    assert_eq!(
        r.feed(ev("snapshot", "{not json"), at(0)),
        Verdict::Reconnect(ReconnectReason::Decode)
    );
    r.snap(1);
    assert_eq!(
        r.feed(ev("delta", "{\"eventSeq\":"), at(1)),
        Verdict::Continue
    );
    assert_eq!(
        r.feed(ev("delta", r#"{"payload":{}}"#), at(1)),
        Verdict::Continue
    );
    assert_eq!(
        r.get(&format!(
            r#"ocx_stream_decode_errors_total{{{U},kind="json"}}"#
        )),
        2.0
    );
    assert_eq!(
        r.get(&format!(
            r#"ocx_stream_decode_errors_total{{{U},kind="schema"}}"#
        )),
        1.0
    );
    // The stream carries on in sequence after the bad frames.
    assert_eq!(r.delta(2, "{}"), Verdict::Continue);
    assert_eq!(r.get(&format!("ocx_stream_last_sequence{{{U}}}")), 2.0);
}

#[test]
fn heartbeats_are_counted_and_their_intervals_measured() {
    let mut r = rig(StreamKind::User);
    r.feed(SseItem::Comment("heartbeat".into()), at(100));
    r.feed(SseItem::Comment("heartbeat".into()), at(115));
    r.feed(SseItem::Comment("not a heartbeat".into()), at(116));
    assert_eq!(r.get(&format!("ocx_stream_heartbeats_total{{{U}}}")), 2.0);
    assert_eq!(
        r.get(&format!(
            "ocx_stream_heartbeat_interval_seconds_count{{{U}}}"
        )),
        1.0
    );
    assert_eq!(
        r.get(&format!("ocx_stream_heartbeat_interval_seconds_sum{{{U}}}")),
        15.0
    );
    assert_eq!(
        r.get(&format!(
            "ocx_stream_last_heartbeat_timestamp_seconds{{{U}}}"
        )),
        1_777_000_115.0
    );
}

#[test]
fn error_events_are_counted_by_code_and_retryable_ones_reconnect() {
    let mut r = rig(StreamKind::User);
    let v = r.feed(
        ev(
            "error",
            r#"{"code":"UPSTREAM","message":"x","retryable":true}"#,
        ),
        at(0),
    );
    assert_eq!(v, Verdict::Reconnect(ReconnectReason::ErrorEvent));
    let v = r.feed(
        ev(
            "error",
            r#"{"error":"BAD","message":"x","retryable":false}"#,
        ),
        at(0),
    );
    assert_eq!(v, Verdict::Continue);
    assert_eq!(
        r.get(&format!(
            r#"ocx_stream_errors_total{{{U},code="UPSTREAM",retryable="true"}}"#
        )),
        1.0
    );
    assert_eq!(
        r.get(&format!(
            r#"ocx_stream_errors_total{{{U},code="BAD",retryable="false"}}"#
        )),
        1.0
    );
    assert_eq!(
        r.get(&format!(r#"ocx_stream_events_total{{{U},type="error"}}"#)),
        2.0
    );
}

#[test]
fn error_codes_past_the_cap_fold_into_other() {
    let mut r = rig(StreamKind::User);
    for i in 0..40 {
        let data = format!(r#"{{"code":"C{i}","message":"m","retryable":false}}"#);
        r.feed(ev("error", &data), at(0));
    }
    assert_eq!(
        r.get(&format!(
            r#"ocx_stream_errors_total{{{U},code="C31",retryable="false"}}"#
        )),
        1.0
    );
    assert_eq!(
        r.get(&format!(
            r#"ocx_stream_errors_total{{{U},code="other",retryable="false"}}"#
        )),
        8.0
    );
    assert_eq!(
        r.get(r#"ocx_sentinel_label_values_folded_total{label="code"}"#),
        8.0
    );
}

#[test]
fn unknown_event_names_are_counted_and_unnamed_events_use_the_event_type() {
    let mut r = rig(StreamKind::User);
    assert_eq!(r.feed(ev("funding", "{}"), at(0)), Verdict::Continue);
    assert_eq!(
        r.get(&format!(r#"ocx_stream_events_total{{{U},type="unknown"}}"#)),
        1.0
    );
    let snap = env("snapshot", 7, "{}");
    assert_eq!(r.feed(ev("message", &snap), at(0)), Verdict::Continue);
    assert!(r.s.synced());
    assert_eq!(
        r.get(&format!(
            r#"ocx_stream_events_total{{{U},type="snapshot"}}"#
        )),
        1.0
    );
}

#[test]
fn lag_is_measured_against_engine_time_and_skew_clamped() {
    let mut r = rig(StreamKind::User);
    // engineTs in `env` is 1777000000000; at(2) arrives 2s later.
    r.feed(ev("snapshot", &env("snapshot", 1, "{}")), at(2));
    let early = Now {
        unix_ms: 1_776_999_999_000,
        mono: Duration::from_secs(3),
    };
    r.feed(ev("delta", &env("delta", 2, "{}")), early);
    assert_eq!(
        r.get(&format!("ocx_stream_event_lag_seconds_count{{{U}}}")),
        2.0
    );
    assert_eq!(
        r.get(&format!("ocx_stream_event_lag_seconds_sum{{{U}}}")),
        2.0
    );
    assert_eq!(
        r.get(&format!("ocx_stream_clock_skew_events_total{{{U}}}")),
        1.0
    );
}

#[test]
fn retry_field_sets_a_floor_and_oversized_events_resync() {
    let mut r = rig(StreamKind::User);
    r.feed(SseItem::Retry(2500), at(0));
    assert_eq!(r.s.retry_floor, Some(Duration::from_millis(2500)));
    let v = r.feed(SseItem::Error(SseError::EventTooLarge { limit: 10 }), at(0));
    assert_eq!(v, Verdict::Reconnect(ReconnectReason::Decode));
    assert_eq!(
        r.get(&format!(
            r#"ocx_stream_decode_errors_total{{{U},kind="sse"}}"#
        )),
        1.0
    );
}

#[test]
fn the_events_stream_applies_only_its_book() {
    let mut r = rig(StreamKind::Events {
        market: "BTC-PERP".into(),
    });
    let payload = format!(
        r#"{{"trades":[{}],"orderbook":{{"bids":[{{"price":"99","size":"1"}}],"asks":[{{"price":"101","size":"2"}}]}}}}"#,
        trade("t1")
    );
    r.feed(ev("snapshot", &env("snapshot", 1, &payload)), at(0));
    assert_eq!(
        r.get(r#"ocx_book_best_bid_price{account="acc",market="BTC-PERP"}"#),
        99.0
    );
    assert_eq!(
        r.get(r#"ocx_book_best_ask_price{account="acc",market="BTC-PERP"}"#),
        101.0
    );
    assert_eq!(
        r.get(r#"ocx_book_levels{account="acc",market="BTC-PERP",side="ask"}"#),
        1.0
    );
    let all = exposition::parse(&r.t.render());
    // The market's counters exist (at 0, so `increase()` sees its first fill), but the events
    // stream's trades are not counted: the user stream counts them.
    let fills: Vec<f64> = all
        .iter()
        .filter(|(k, _)| k.starts_with("ocx_fills_total"))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(fills, vec![0.0; 4], "events-stream trades must not count");
}
