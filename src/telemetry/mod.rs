//! The metric catalogue (every name, type, label set and HELP text in one place), the series store, and the handles that record them.
//!
//! Each sidecar instance owns its own [`Registry`] (no global recorder), so several instances
//! (tests, `demo`) never share series. Handles are registered once and cached: the per-event
//! path touches atomics only. `/metrics` renders the same registry the rule engine reads.

mod account;
mod catalogue;
pub mod exposition;
mod labels;
pub mod reconcile;
pub mod store;

pub use account::{APPLY_FAMILIES, AccountMetrics, Total};
pub use catalogue::{
    CATALOGUE, HEARTBEAT_BUCKETS, Kind, LAG_BUCKETS, MetricDef, REST_BUCKETS, names,
};
pub use labels::LabelFolder;
pub use store::{Counter, Format, Gauge, Histogram, Registry, TraceIds};

use std::collections::HashMap;

/// The metrics of one sidecar process: its registry and the label-folding counters every handle
/// set shares.
#[derive(Clone)]
pub struct Telemetry {
    registry: Registry,
    folded_market: Counter,
    folded_code: Counter,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Telemetry")
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let registry = Registry::new(CATALOGUE);
        let t = Self {
            folded_market: registry.counter(names::LABEL_VALUES_FOLDED, &[("label", "market")]),
            folded_code: registry.counter(names::LABEL_VALUES_FOLDED, &[("label", "code")]),
            registry,
        };
        t.gauge(names::BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))])
            .set(1.0);
        t
    }

    /// The series store, for readers (the rule engine) that want values rather than text.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn counter(&self, name: &'static str, labels: &[(&str, &str)]) -> Counter {
        self.registry.counter(name, labels)
    }

    pub fn gauge(&self, name: &'static str, labels: &[(&str, &str)]) -> Gauge {
        self.registry.gauge(name, labels)
    }

    pub fn histogram(&self, name: &'static str, labels: &[(&str, &str)]) -> Histogram {
        self.registry.histogram(name, labels)
    }

    /// Prometheus text exposition (0.0.4) of every series.
    pub fn render(&self) -> String {
        self.registry.render(Format::Prometheus)
    }

    /// The exposition of every series in `format`.
    pub fn render_as(&self, format: Format) -> String {
        self.registry.render(format)
    }

    pub fn stream(&self, account: &str, stream: &str, market: Option<&str>) -> StreamMetrics {
        StreamMetrics::new(self.clone(), account, stream, market)
    }

    pub fn reconcile(&self, account: &str, max_markets: usize) -> reconcile::ReconcileMetrics {
        reconcile::ReconcileMetrics::new(self.clone(), account, max_markets)
    }

    pub fn account(&self, account: &str, max_markets: usize) -> AccountMetrics {
        AccountMetrics::new(self.clone(), account, max_markets)
    }
}

/// Why a connection ended and a new one is being made: the `reason` label of
/// `ocx_stream_reconnects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectReason {
    Gap,
    HeartbeatTimeout,
    Eof,
    ErrorEvent,
    HttpStatus,
    Io,
    Decode,
    /// No response headers within `stream.response_timeout`.
    ResponseTimeout,
}

impl ReconnectReason {
    pub const ALL: [ReconnectReason; 8] = [
        Self::Gap,
        Self::HeartbeatTimeout,
        Self::Eof,
        Self::ErrorEvent,
        Self::HttpStatus,
        Self::Io,
        Self::Decode,
        Self::ResponseTimeout,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gap => "gap",
            Self::HeartbeatTimeout => "heartbeat_timeout",
            Self::Eof => "eof",
            Self::ErrorEvent => "error_event",
            Self::HttpStatus => "http_status",
            Self::Io => "io",
            Self::Decode => "decode",
            Self::ResponseTimeout => "response_timeout",
        }
    }
}

/// The `type` label of `ocx_stream_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Snapshot,
    Delta,
    Error,
    Unknown,
}

impl EventType {
    const ALL: [EventType; 4] = [Self::Snapshot, Self::Delta, Self::Error, Self::Unknown];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot",
            Self::Delta => "delta",
            Self::Error => "error",
            Self::Unknown => "unknown",
        }
    }
}

/// The `kind` label of `ocx_stream_decode_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeKind {
    Sse,
    Json,
    Schema,
}

impl DecodeKind {
    const ALL: [DecodeKind; 3] = [Self::Sse, Self::Json, Self::Schema];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sse => "sse",
            Self::Json => "json",
            Self::Schema => "schema",
        }
    }
}

/// Error codes beyond this many distinct values are reported as `other`: codes come from the
/// exchange, and an unbounded label set would grow the registry without limit.
pub const MAX_ERROR_CODES: usize = 32;

/// Series of one stream connection (`account`, `stream`, and `market` on the events stream).
pub struct StreamMetrics {
    telemetry: Telemetry,
    labels: Vec<(String, String)>,
    pub up: Gauge,
    pub connects: Counter,
    reconnects: [Counter; 8],
    events: [Counter; 4],
    pub received_bytes: Counter,
    pub heartbeats: Counter,
    pub heartbeat_interval: Histogram,
    /// Registered on first use: a timestamp of 0 would read as "55 years ago" to
    /// `time() - x` alerts before the first heartbeat or event has even had a chance to arrive.
    last_heartbeat: Option<Gauge>,
    last_event: Option<Gauge>,
    pub last_sequence: Gauge,
    pub sequence_gaps: Counter,
    pub missed_events: Counter,
    pub duplicate_events: Counter,
    pub event_lag: Histogram,
    pub clock_skew_events: Counter,
    decode_errors: [Counter; 3],
    errors: HashMap<(String, bool), Counter>,
    codes: LabelFolder,
}

impl StreamMetrics {
    fn new(telemetry: Telemetry, account: &str, stream: &str, market: Option<&str>) -> Self {
        let mut labels = vec![
            ("account".to_string(), account.to_string()),
            ("stream".to_string(), stream.to_string()),
        ];
        if let Some(m) = market {
            labels.push(("market".to_string(), m.to_string()));
        }
        let base: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        fn with<'a>(
            base: &[(&'a str, &'a str)],
            extra: (&'a str, &'a str),
        ) -> Vec<(&'a str, &'a str)> {
            let mut l = base.to_vec();
            l.push(extra);
            l
        }
        let t = &telemetry;
        let reconnects = ReconnectReason::ALL
            .map(|r| t.counter(names::RECONNECTS, &with(&base, ("reason", r.as_str()))));
        let events =
            EventType::ALL.map(|e| t.counter(names::EVENTS, &with(&base, ("type", e.as_str()))));
        let decode_errors = DecodeKind::ALL
            .map(|k| t.counter(names::DECODE_ERRORS, &with(&base, ("kind", k.as_str()))));
        Self {
            up: t.gauge(names::STREAM_UP, &base),
            connects: t.counter(names::CONNECTS, &base),
            reconnects,
            events,
            received_bytes: t.counter(names::RECEIVED_BYTES, &base),
            heartbeats: t.counter(names::HEARTBEATS, &base),
            heartbeat_interval: t.histogram(names::HEARTBEAT_INTERVAL, &base),
            last_heartbeat: None,
            last_event: None,
            last_sequence: t.gauge(names::LAST_SEQUENCE, &base),
            sequence_gaps: t.counter(names::SEQUENCE_GAPS, &base),
            missed_events: t.counter(names::MISSED_EVENTS, &base),
            duplicate_events: t.counter(names::DUPLICATE_EVENTS, &base),
            event_lag: t.histogram(names::EVENT_LAG, &base),
            clock_skew_events: t.counter(names::CLOCK_SKEW_EVENTS, &base),
            decode_errors,
            errors: HashMap::new(),
            codes: LabelFolder::new(MAX_ERROR_CODES, telemetry.folded_code.clone()),
            telemetry: telemetry.clone(),
            labels,
        }
    }

    /// The gauge, registered on first use. Lent, not cloned: a clone moves the handle's
    /// atomic reference count twice per event.
    fn lazy_gauge(
        &mut self,
        name: &'static str,
        pick: fn(&mut Self) -> &mut Option<Gauge>,
    ) -> &Gauge {
        if pick(self).is_none() {
            let l: Vec<(&str, &str)> = self
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let g = self.telemetry.gauge(name, &l);
            *pick(self) = Some(g);
        }
        // Registered just above when it was missing, so the default is never made.
        pick(self).get_or_insert_with(Gauge::default)
    }

    pub fn set_last_heartbeat(&mut self, unix_secs: f64) {
        self.lazy_gauge(names::LAST_HEARTBEAT, |s| &mut s.last_heartbeat)
            .set(unix_secs);
    }

    pub fn set_last_event(&mut self, unix_secs: f64) {
        self.lazy_gauge(names::LAST_EVENT, |s| &mut s.last_event)
            .set(unix_secs);
    }

    pub fn reconnect(&self, reason: ReconnectReason) {
        let i = ReconnectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.reconnects[i].increment(1);
    }

    pub fn event(&self, kind: EventType) {
        let i = EventType::ALL.iter().position(|e| *e == kind).unwrap_or(0);
        self.events[i].increment(1);
    }

    pub fn decode_error(&self, kind: DecodeKind) {
        let i = DecodeKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.decode_errors[i].increment(1);
    }

    /// Count an `error` event by code (bounded) and retryable.
    pub fn stream_error(&mut self, code: &str, retryable: bool) {
        let code = self.codes.fold(code).to_string();
        let key = (code, retryable);
        if let Some(c) = self.errors.get(&key) {
            c.increment(1);
            return;
        }
        let mut l: Vec<(&str, &str)> = self
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        l.push(("code", key.0.as_str()));
        l.push(("retryable", if retryable { "true" } else { "false" }));
        let c = self.telemetry.counter(names::STREAM_ERRORS, &l);
        c.increment(1);
        self.errors.insert(key, c);
    }

    /// Record receipt lag against the engine timestamp; a negative lag means the clocks disagree.
    /// `ids`: the event's sampled trace, which becomes the bucket's exemplar.
    pub fn observe_lag(&self, received_ms: i64, engine_ms: i64, ids: Option<TraceIds>) {
        let lag = (received_ms - engine_ms) as f64 / 1000.0;
        if lag < 0.0 {
            self.clock_skew_events.increment(1);
        }
        let lag = lag.max(0.0);
        match ids {
            Some(ids) => self.event_lag.record_with_exemplar(lag, ids),
            None => self.event_lag.record(lag),
        }
    }
}

#[cfg(test)]
mod tests;
