//! One connection's protocol logic: sequence checking, heartbeats and event dispatch, with no IO and no clock.
//!
//! The IO loop in `source::run` feeds every decoded SSE item here together with the time it
//! arrived; the session folds snapshots and deltas into the shared account, records the stream's
//! metrics, and answers whether the connection must be dropped and re-synced.

use std::time::Duration;

use crate::account::SharedAccount;
use crate::model::EventKind;
use crate::source::sse::{SseEvent, SseItem};
use crate::source::wire::{self, WireError};
use crate::state::Scope;
use crate::telemetry::{DecodeKind, EventType, ReconnectReason, StreamMetrics};

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
}

impl Session {
    pub fn new(kind: StreamKind) -> Self {
        Self {
            kind,
            last_seq: None,
            last_heartbeat: None,
            retry_floor: None,
        }
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
        let named = match ev.event.as_str() {
            "snapshot" => Some(EventKind::Snapshot),
            "delta" | "update" => Some(EventKind::Delta),
            "error" => {
                m.event(EventType::Error);
                return self.on_error_event(&ev.data, m);
            }
            // Unnamed events carry their kind in the envelope's eventType.
            "message" | "" => None,
            _ => {
                m.event(EventType::Unknown);
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
                    return Verdict::Continue;
                }
            },
            (None, Err(_)) => {
                m.event(EventType::Unknown);
                return self.decode_failed(parsed.err(), false, m);
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
            Err(e) => return self.decode_failed(Some(e), is_snapshot, m),
        };
        for _ in 0..env.skipped_items {
            m.decode_error(DecodeKind::Schema);
        }
        if !is_snapshot {
            let Some(last) = self.last_seq else {
                // A delta before any snapshot has no baseline to apply to.
                m.duplicate_events.increment(1);
                return Verdict::Continue;
            };
            if env.seq <= last {
                m.duplicate_events.increment(1);
                return Verdict::Continue;
            }
            if env.seq > last + 1 {
                m.sequence_gaps.increment(1);
                m.missed_events.increment(env.seq - last - 1);
                return Verdict::Reconnect(ReconnectReason::Gap);
            }
        }
        account.apply_event(
            kind,
            self.kind.scope(),
            &env.payload,
            env.engine_ts_ms,
            now.unix_ms,
        );
        self.last_seq = Some(env.seq);
        m.up.set(1.0);
        m.last_sequence.set(env.seq as f64);
        m.set_last_event(now.unix_secs());
        if let Some(engine) = env.engine_ts_ms {
            m.observe_lag(now.unix_ms, engine);
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
    ) -> Verdict {
        m.decode_error(match e {
            Some(WireError::Schema(_)) => DecodeKind::Schema,
            _ => DecodeKind::Json,
        });
        if snapshot {
            Verdict::Reconnect(ReconnectReason::Decode)
        } else {
            Verdict::Continue
        }
    }

    fn on_error_event(&self, data: &str, m: &mut StreamMetrics) -> Verdict {
        match wire::parse_error_event(data) {
            Ok(err) => {
                m.stream_error(&err.code, err.retryable);
                tracing::warn!(
                    stream = self.kind.label(),
                    code = %err.code,
                    retryable = err.retryable,
                    "stream sent an error event"
                );
                if err.retryable {
                    Verdict::Reconnect(ReconnectReason::ErrorEvent)
                } else {
                    Verdict::Continue
                }
            }
            Err(e) => self.decode_failed(Some(e), false, m),
        }
    }
}

#[cfg(test)]
mod tests;
