//! One connection's protocol logic: sequence checking, heartbeats and event dispatch, with no IO and no clock.
//!
//! The IO loop in `source::run` feeds every decoded SSE item here together with the time it
//! arrived; the session folds snapshots and deltas into the shared account, records the stream's
//! metrics, and answers whether the connection must be dropped and re-synced.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{SpanContext, SpanKind};
use opentelemetry::{KeyValue, StringValue};

use crate::account::SharedAccount;
use crate::model::{EventKind, Fill, Trade};
use crate::source::sse::{SseEvent, SseItem};
use crate::source::wire::{self, WireError};
use crate::state::Scope;
use crate::telemetry::{DecodeKind, EventType, ReconnectReason, StreamMetrics};
use crate::traces::log::in_span;
use crate::traces::{TraceSpan, Traces, ids_of};

/// Which endpoint a connection reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamKind {
    /// `/perps/stream/user`: fills and positions across all markets.
    User,
    /// `/perps/stream/events?marketId=`: one market's book (its fills and positions repeat the
    /// user stream's and are ignored, so nothing is counted twice).
    Events { market: String },
}

impl StreamKind {
    pub fn label(&self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Events { .. } => "events",
        }
    }

    pub fn market(&self) -> Option<&str> {
        match self {
            Self::User => None,
            Self::Events { market } => Some(market),
        }
    }

    fn scope(&self) -> Scope<'_> {
        match self {
            Self::User => Scope::User,
            Self::Events { market } => Scope::Market(market),
        }
    }
}

/// The moment an item arrived: wall time for timestamps and lag, a monotonic reading for intervals.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub unix_ms: i64,
    pub mono: Duration,
}

impl Now {
    fn unix_secs(self) -> f64 {
        self.unix_ms as f64 / 1000.0
    }
}

/// What the connection should do after an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Reconnect(ReconnectReason),
}

/// Per-connection protocol state. A new one is made for every connection: a fresh connection
/// always starts with a fresh snapshot, so nothing here survives a reconnect.
#[derive(Debug)]
pub struct Session {
    kind: StreamKind,
    last_seq: Option<u64>,
    last_heartbeat: Option<Duration>,
    /// The server's `retry:` field: a floor under our own backoff.
    pub retry_floor: Option<Duration>,
    /// Spans for the events (off unless [`Session::traced`]).
    traces: Traces,
    /// The account and market attributes, made once (a clone is a reference count).
    account: StringValue,
    market: Option<StringValue>,
    /// A traced event's new fills, reused between events.
    fills: Vec<(usize, Fill)>,
}

impl Session {
    pub fn new(kind: StreamKind) -> Self {
        Self {
            kind,
            last_seq: None,
            last_heartbeat: None,
            retry_floor: None,
            traces: Traces::off(),
            account: StringValue::from(""),
            market: None,
            fills: Vec::new(),
        }
    }

    /// Records a `stream.event` span per event (with `state.apply` and `ocx.fill` children)
    /// when tracing is on and the sampler keeps it.
    pub fn traced(mut self, traces: Traces, account: &str) -> Self {
        self.traces = traces;
        self.account = StringValue::from(Arc::<str>::from(account));
        self.market = self
            .kind
            .market()
            .map(|m| StringValue::from(Arc::<str>::from(m)));
        self
    }

    /// True once this connection applied a snapshot (it is live and in sync).
    pub fn synced(&self) -> bool {
        self.last_seq.is_some()
    }

    pub fn on_item(
        &mut self,
        item: SseItem,
        now: Now,
        account: &SharedAccount,
        m: &mut StreamMetrics,
    ) -> Verdict {
        match item {
            SseItem::Event(ev) => self.on_event(ev, now, account, m),
            SseItem::Comment(text) => {
                if text.trim() == "heartbeat" {
                    m.heartbeats.increment(1);
                    m.set_last_heartbeat(now.unix_secs());
                    if let Some(prev) = self.last_heartbeat {
                        m.heartbeat_interval
                            .record(now.mono.saturating_sub(prev).as_secs_f64());
                    }
                    self.last_heartbeat = Some(now.mono);
                }
                Verdict::Continue
            }
            SseItem::Retry(ms) => {
                self.retry_floor = Some(Duration::from_millis(ms));
                Verdict::Continue
            }
            SseItem::Error(_) => {
                // An oversized event: the framing can no longer be trusted, so re-sync.
                m.decode_error(DecodeKind::Sse);
                Verdict::Reconnect(ReconnectReason::Decode)
            }
        }
    }

    fn on_event(
        &mut self,
        ev: SseEvent,
        now: Now,
        account: &SharedAccount,
        m: &mut StreamMetrics,
    ) -> Verdict {
        let mut span = self
            .traces
            .span("stream.event", SpanKind::Consumer, None, &[]);
        if span.is_recording() {
            span.set("ocx.stream", self.kind.label());
            if let Some(market) = &self.market {
                span.set("ocx.market", market.clone());
            }
            span.set("ocx.account", self.account.clone());
        }
        // Log lines written while the event is handled carry its span's ids.
        let cx = span.context();
        let verdict = in_span(cx.as_ref(), || {
            self.on_event_in(ev, now, account, m, &mut span)
        });
        if let Verdict::Reconnect(reason) = verdict {
            span.set("ocx.reconnect.reason", reason.as_str());
        }
        verdict
    }

    fn on_event_in(
        &mut self,
        ev: SseEvent,
        now: Now,
        account: &SharedAccount,
        m: &mut StreamMetrics,
        span: &mut TraceSpan,
    ) -> Verdict {
        let named = match ev.event.as_str() {
            "snapshot" => Some(EventKind::Snapshot),
            "delta" | "update" => Some(EventKind::Delta),
            "error" => {
                m.event(EventType::Error);
                span.set("ocx.event.type", "error");
                return self.on_error_event(&ev.data, m, span);
            }
            // Unnamed events carry their kind in the envelope's eventType.
            "message" | "" => None,
            _ => {
                m.event(EventType::Unknown);
                span.set("ocx.event.type", "unknown");
                return Verdict::Continue;
            }
        };
        let parsed = wire::parse_envelope(&ev.data);
        let kind = match (&named, &parsed) {
            (Some(k), _) => *k,
            (None, Ok(env)) => match env.kind {
                Some(k) => k,
                None => {
                    m.event(EventType::Unknown);
                    span.set("ocx.event.type", "unknown");
                    return Verdict::Continue;
                }
            },
            (None, Err(_)) => {
                m.event(EventType::Unknown);
                span.set("ocx.event.type", "unknown");
                return self.decode_failed(parsed.err(), false, m, span);
            }
        };
        let is_snapshot = kind == EventKind::Snapshot;
        m.event(if is_snapshot {
            EventType::Snapshot
        } else {
            EventType::Delta
        });
        let env = match parsed {
            Ok(env) => env,
            Err(e) => return self.decode_failed(Some(e), is_snapshot, m, span),
        };
        let traced = span.is_recording();
        if traced {
            span.set(
                "ocx.event.type",
                if is_snapshot { "snapshot" } else { "delta" },
            );
            span.set("ocx.event.seq", env.seq as i64);
            if let Some(id) = &env.event_id {
                span.set("ocx.event.id", id.clone());
            }
            if let Some(engine) = env.engine_ts_ms {
                span.set("ocx.event.lag_ms", now.unix_ms - engine);
            }
            span.set("ocx.event.trades", env.payload.trades.len() as i64);
            let positions = env
                .payload
                .positions
                .as_ref()
                .map_or(0, |p| p.upserts.len() + p.removed_ids.len());
            span.set("ocx.event.position_changes", positions as i64);
        }
        for _ in 0..env.skipped_items {
            m.decode_error(DecodeKind::Schema);
        }
        if env.skipped_items > 0 {
            span.event(
                "decode_error",
                vec![
                    KeyValue::new("ocx.decode.kind", "schema"),
                    KeyValue::new("ocx.decode.skipped_items", i64::from(env.skipped_items)),
                ],
            );
        }
        if !is_snapshot {
            let Some(last) = self.last_seq else {
                // A delta before any snapshot has no baseline to apply to.
                m.duplicate_events.increment(1);
                span.event(
                    "duplicate",
                    vec![KeyValue::new("ocx.event.seq", env.seq as i64)],
                );
                return Verdict::Continue;
            };
            if env.seq <= last {
                m.duplicate_events.increment(1);
                span.event(
                    "duplicate",
                    vec![
                        KeyValue::new("ocx.event.seq", env.seq as i64),
                        KeyValue::new("ocx.event.last_seq", last as i64),
                    ],
                );
                return Verdict::Continue;
            }
            if env.seq > last + 1 {
                m.sequence_gaps.increment(1);
                m.missed_events.increment(env.seq - last - 1);
                span.event(
                    "sequence_gap",
                    vec![
                        KeyValue::new("ocx.gap.expected_seq", (last + 1) as i64),
                        KeyValue::new("ocx.gap.received_seq", env.seq as i64),
                        KeyValue::new("ocx.gap.missed", (env.seq - last - 1) as i64),
                    ],
                );
                span.error("sequence gap: re-syncing");
                return Verdict::Reconnect(ReconnectReason::Gap);
            }
        }
        let parent = span.context();
        // Before the apply: the apply wakes the rule engine (the epoch), whose pass must find
        // this event (or that it was not sampled), not the one before.
        self.traces.note_event(parent.clone());
        let mut apply = match &parent {
            Some(p) => self
                .traces
                .span("state.apply", SpanKind::Internal, Some(p), &[]),
            None => TraceSpan::none(),
        };
        self.fills.clear();
        let ids = parent.as_ref().and_then(ids_of);
        let outcome = account.apply_event_traced(
            kind,
            self.kind.scope(),
            &env.payload,
            env.engine_ts_ms,
            now.unix_ms,
            ids.map(|ids| (ids, &mut self.fills)),
        );
        if apply.is_recording() {
            apply.set("ocx.fills.new", outcome.fills as i64);
        }
        apply.end();
        if let Some(p) = &parent {
            // Drained, not taken: the buffer keeps its capacity for the next traced event.
            for (i, fill) in self.fills.drain(..) {
                fill_span(
                    &self.traces,
                    p,
                    &fill,
                    env.payload.trades.get(i),
                    now.unix_ms,
                );
            }
        }
        self.last_seq = Some(env.seq);
        m.up.set(1.0);
        m.last_sequence.set(env.seq as f64);
        m.set_last_event(now.unix_secs());
        if let Some(engine) = env.engine_ts_ms {
            m.observe_lag(now.unix_ms, engine, ids);
        }
        Verdict::Continue
    }

    /// Malformed data is counted and skipped; a malformed *snapshot* leaves no baseline, so the
    /// connection re-syncs instead of skipping every delta that follows.
    fn decode_failed(
        &self,
        e: Option<WireError>,
        snapshot: bool,
        m: &mut StreamMetrics,
        span: &mut TraceSpan,
    ) -> Verdict {
        let kind = match e {
            Some(WireError::Schema(_)) => DecodeKind::Schema,
            _ => DecodeKind::Json,
        };
        m.decode_error(kind);
        if span.is_recording() {
            let mut attrs = vec![KeyValue::new("ocx.decode.kind", kind.as_str())];
            if let Some(e) = &e {
                attrs.push(KeyValue::new("exception.message", e.to_string()));
            }
            span.event("decode_error", attrs);
            span.error("malformed event");
        }
        if snapshot {
            Verdict::Reconnect(ReconnectReason::Decode)
        } else {
            Verdict::Continue
        }
    }

    fn on_error_event(&self, data: &str, m: &mut StreamMetrics, span: &mut TraceSpan) -> Verdict {
        match wire::parse_error_event(data) {
            Ok(err) => {
                m.stream_error(&err.code, err.retryable);
                tracing::warn!(
                    stream = self.kind.label(),
                    code = %err.code,
                    retryable = err.retryable,
                    "stream sent an error event"
                );
                span.event(
                    "error_event",
                    vec![
                        KeyValue::new("ocx.error.code", err.code.to_string()),
                        KeyValue::new("ocx.error.retryable", err.retryable),
                    ],
                );
                span.error(format!("error event {}", err.code));
                if err.retryable {
                    Verdict::Reconnect(ReconnectReason::ErrorEvent)
                } else {
                    Verdict::Continue
                }
            }
            Err(e) => self.decode_failed(Some(e), false, m, span),
        }
    }
}

/// One `ocx.fill` span, a child of its event's.
fn fill_span(
    traces: &Traces,
    parent: &SpanContext,
    fill: &Fill,
    trade: Option<&Trade>,
    now_ms: i64,
) {
    let mut s = traces.span("ocx.fill", SpanKind::Internal, Some(parent), &[]);
    if !s.is_recording() {
        return;
    }
    s.set("ocx.market", fill.market.as_str().to_string());
    s.set("ocx.fill.side", fill.side.as_str());
    s.set("ocx.fill.liquidity", fill.liquidity.as_str());
    // Exact decimals, as the exchange sent them (a float would round them).
    s.set("ocx.fill.price", fill.price.to_string());
    s.set("ocx.fill.quantity", fill.quantity.to_string());
    if let Some(id) = trade.and_then(|t| t.id.as_ref()) {
        s.set("ocx.trade.id", id.as_str().to_string());
    }
    if let Some(created) = fill.created_at_ms {
        s.set("ocx.fill.latency_ms", now_ms - created);
    }
}

#[cfg(test)]
mod tests;
