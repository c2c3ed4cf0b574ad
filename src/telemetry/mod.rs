//! The metric catalogue (every name, type, label set and HELP text in one place), the series store, and the handles that record them.
//!
//! Each sidecar instance owns its own [`Registry`] (no global recorder), so several instances
//! (tests, `demo`) never share series. Handles are registered once and cached: the per-event
//! path touches atomics only. `/metrics` renders the same registry the rule engine reads.

mod catalogue;
pub mod exposition;
mod labels;
pub mod reconcile;
pub mod store;

pub use catalogue::{
    CATALOGUE, HEARTBEAT_BUCKETS, Kind, LAG_BUCKETS, MetricDef, REST_BUCKETS, names,
};
pub use labels::LabelFolder;
pub use store::{Counter, Format, Gauge, Histogram, Registry};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::model::{Fill, Liquidity, Side};
use crate::state::{Account, Applied};

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

    fn lazy_gauge(
        &mut self,
        name: &'static str,
        pick: fn(&mut Self) -> &mut Option<Gauge>,
    ) -> Gauge {
        if let Some(g) = pick(self) {
            return g.clone();
        }
        let l: Vec<(&str, &str)> = self
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let g = self.telemetry.gauge(name, &l);
        *pick(self) = Some(g.clone());
        g
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
    pub fn observe_lag(&self, received_ms: i64, engine_ms: i64) {
        let lag = (received_ms - engine_ms) as f64 / 1000.0;
        if lag < 0.0 {
            self.clock_skew_events.increment(1);
            self.event_lag.record(0.0);
        } else {
            self.event_lag.record(lag);
        }
    }
}

#[derive(Default)]
struct MarketHandles {
    quantity: Option<Gauge>,
    entry_price: Option<Gauge>,
    realized_pnl: Option<Gauge>,
    unrealized_pnl: Option<Gauge>,
    notional: Option<Gauge>,
    /// Float counters of the exact `realized` totals below.
    profit: Option<Counter>,
    loss: Option<Counter>,
    best_bid: Option<Gauge>,
    best_ask: Option<Gauge>,
    bid_levels: Option<Gauge>,
    ask_levels: Option<Gauge>,
    last_fill: Option<Gauge>,
    /// Fill series by `fill_slot(side, liquidity)`.
    fills: [Option<FillHandles>; 6],
    /// Exact (quantity, notional) running totals per fill slot, for this *label*: several real
    /// markets may fold into `other`, and their fills must add up, not overwrite each other.
    fill_totals: [(Decimal, Decimal); 6],
    /// Exact (profit, loss) totals for this label.
    realized: (Decimal, Decimal),
    /// The last-fill clock only moves forward: a replayed old trade must not turn it back.
    last_fill_at: f64,
}

struct FillHandles {
    count: Counter,
    /// Float counters, set from the exact `fill_totals`.
    quantity: Counter,
    notional: Counter,
}

fn fill_slot(side: Side, liquidity: Liquidity) -> usize {
    let liquidity = match liquidity {
        Liquidity::Maker => 0,
        Liquidity::Taker => 1,
        Liquidity::Unknown => 2,
    };
    (matches!(side, Side::Sell) as usize) * 3 + liquidity
}

/// Series describing one account's state; fed from the fold's [`Applied`] and the state after it.
pub struct AccountMetrics {
    telemetry: Telemetry,
    account: String,
    markets: LabelFolder,
    per_market: HashMap<String, MarketHandles>,
    positions_open: Gauge,
    fills_dedup_snapshot: Counter,
    fills_dedup_duplicate: Counter,
    /// Each real market's last exact realized totals, so a change can be added to its label.
    realized_by_market: HashMap<String, (Decimal, Decimal)>,
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// Shared handle to the account state and its metrics; one lock so each event's fold and its
/// metrics update are atomic with respect to the other streams of the same account.
pub type SharedAccount = Arc<Mutex<(Account, AccountMetrics)>>;

/// The handles of a market label; looked up without allocating on the hot path.
fn handles_in<'m>(
    map: &'m mut HashMap<String, MarketHandles>,
    label: &str,
) -> &'m mut MarketHandles {
    if !map.contains_key(label) {
        map.insert(label.to_string(), MarketHandles::default());
    }
    // UNWRAP: the entry was inserted just above when missing.
    map.get_mut(label).expect("inserted above")
}

/// A market's gauge, registered on first use and cached in its slot.
fn market_gauge(
    telemetry: &Telemetry,
    account: &str,
    h: &mut MarketHandles,
    label: &str,
    name: &'static str,
    pick: fn(&mut MarketHandles) -> &mut Option<Gauge>,
    extra: Option<(&'static str, &'static str)>,
) -> Gauge {
    let slot = pick(h);
    if let Some(g) = slot {
        return g.clone();
    }
    let mut l = vec![("account", account), ("market", label)];
    if let Some(e) = extra {
        l.push(e);
    }
    let g = telemetry.gauge(name, &l);
    *slot = Some(g.clone());
    g
}

impl AccountMetrics {
    fn new(telemetry: Telemetry, account: &str, max_markets: usize) -> Self {
        let t = &telemetry;
        let acc = [("account", account)];
        Self {
            positions_open: t.gauge(names::POSITIONS_OPEN, &acc),
            fills_dedup_snapshot: t.counter(
                names::FILLS_DEDUPLICATED,
                &[("account", account), ("reason", "snapshot_replay")],
            ),
            fills_dedup_duplicate: t.counter(
                names::FILLS_DEDUPLICATED,
                &[("account", account), ("reason", "duplicate")],
            ),
            markets: LabelFolder::new(max_markets, telemetry.folded_market.clone()),
            telemetry: telemetry.clone(),
            account: account.to_string(),
            per_market: HashMap::new(),
            realized_by_market: HashMap::new(),
        }
    }

    fn set(
        &mut self,
        label: &str,
        name: &'static str,
        pick: fn(&mut MarketHandles) -> &mut Option<Gauge>,
        extra: Option<(&'static str, &'static str)>,
        value: f64,
    ) {
        let h = handles_in(&mut self.per_market, label);
        market_gauge(&self.telemetry, &self.account, h, label, name, pick, extra).set(value);
    }

    /// Set a market's gauges to 0 if they exist (a removed position, an unknown mark).
    fn zero(&mut self, label: &str, picks: &[fn(&mut MarketHandles) -> &mut Option<Gauge>]) {
        if let Some(h) = self.per_market.get_mut(label) {
            for pick in picks {
                if let Some(g) = pick(h) {
                    g.set(0.0);
                }
            }
        }
    }

    fn observe_fill(&mut self, fill: &Fill, now_unix: f64) {
        let label = self.markets.fold(&fill.market);
        let slot = fill_slot(fill.side, fill.liquidity);
        let (telemetry, account) = (&self.telemetry, self.account.as_str());
        let h = handles_in(&mut self.per_market, label);
        let totals = &mut h.fill_totals[slot];
        // Saturating: absurd values off the wire must not panic the sidecar.
        totals.0 = totals.0.saturating_add(fill.quantity);
        totals.1 = totals
            .1
            .saturating_add(fill.price.saturating_mul(fill.quantity));
        let (q, n) = *totals;
        let fh = h.fills[slot].get_or_insert_with(|| {
            let l = [
                ("account", account),
                ("market", label),
                ("side", fill.side.as_str()),
                ("liquidity", fill.liquidity.as_str()),
            ];
            FillHandles {
                count: telemetry.counter(names::FILLS, &l),
                quantity: telemetry.counter(names::FILL_QUANTITY, &l),
                notional: telemetry.counter(names::FILL_NOTIONAL, &l),
            }
        });
        fh.count.increment(1);
        fh.quantity.absolute(f(q));
        fh.notional.absolute(f(n));
        // The exchange's own fill time when it sent one, else the receipt time.
        let ts = fill
            .created_at_ms
            .map(|ms| ms as f64 / 1000.0)
            .unwrap_or(now_unix);
        if ts > h.last_fill_at {
            h.last_fill_at = ts;
            market_gauge(
                telemetry,
                account,
                h,
                label,
                names::LAST_FILL,
                |h| &mut h.last_fill,
                None,
            )
            .set(ts);
        }
    }

    /// Update every series the event touched. `now_unix` is the receipt time in seconds.
    pub fn observe(&mut self, applied: &Applied, account: &Account, now_unix: f64) {
        if applied.dedup_snapshot_replay > 0 {
            self.fills_dedup_snapshot
                .increment(applied.dedup_snapshot_replay);
        }
        if applied.dedup_duplicate > 0 {
            self.fills_dedup_duplicate
                .increment(applied.dedup_duplicate);
        }
        for fill in &applied.fills {
            self.observe_fill(fill, now_unix);
        }
        for m in &applied.realized_markets {
            let Some(t) = account.realized_totals().get(m.as_str()) else {
                continue;
            };
            let label = self.markets.fold(m);
            let prev = self
                .realized_by_market
                .insert(m.clone(), (t.profit, t.loss))
                .unwrap_or_default();
            let (telemetry, acc) = (&self.telemetry, self.account.as_str());
            let h = handles_in(&mut self.per_market, label);
            h.realized.0 += t.profit - prev.0;
            h.realized.1 += t.loss - prev.1;
            let (profit, loss) = h.realized;
            let labels = [("account", acc), ("market", label)];
            h.profit
                .get_or_insert_with(|| telemetry.counter(names::REALIZED_PROFIT, &labels))
                .absolute(f(profit));
            h.loss
                .get_or_insert_with(|| telemetry.counter(names::REALIZED_LOSS, &labels))
                .absolute(f(loss));
        }
        for m in &applied.position_markets {
            let label = self.markets.fold(m);
            match account.market_position(m) {
                Some(p) => {
                    self.set(
                        label,
                        names::POSITION_QUANTITY,
                        |h| &mut h.quantity,
                        None,
                        f(p.quantity),
                    );
                    let entry = p.entry_price.map(f).unwrap_or(0.0);
                    self.set(
                        label,
                        names::POSITION_ENTRY_PRICE,
                        |h| &mut h.entry_price,
                        None,
                        entry,
                    );
                    let pnl = f(p.realized_pnl);
                    self.set(
                        label,
                        names::POSITION_REALIZED_PNL,
                        |h| &mut h.realized_pnl,
                        None,
                        pnl,
                    );
                }
                // A removed position: its series drop to 0 rather than keep a stale value.
                None => self.zero(
                    label,
                    &[
                        |h| &mut h.quantity,
                        |h| &mut h.entry_price,
                        |h| &mut h.realized_pnl,
                    ],
                ),
            }
        }
        for m in &applied.book_markets {
            let label = self.markets.fold(m);
            let (bid, ask, nb, na) = match account.book(m) {
                Some(b) => (
                    b.best_bid().map(f).unwrap_or(0.0),
                    b.best_ask().map(f).unwrap_or(0.0),
                    b.levels(true) as f64,
                    b.levels(false) as f64,
                ),
                None => (0.0, 0.0, 0.0, 0.0),
            };
            self.set(label, names::BOOK_BEST_BID, |h| &mut h.best_bid, None, bid);
            self.set(label, names::BOOK_BEST_ASK, |h| &mut h.best_ask, None, ask);
            let bids = Some(("side", "bid"));
            self.set(label, names::BOOK_LEVELS, |h| &mut h.bid_levels, bids, nb);
            let asks = Some(("side", "ask"));
            self.set(label, names::BOOK_LEVELS, |h| &mut h.ask_levels, asks, na);
        }
        // Unrealized PnL and notional need both a position and a mark (the book's mid), so
        // they change with either.
        let marks = applied.position_markets.iter().chain(
            applied
                .book_markets
                .iter()
                .filter(|m| !applied.position_markets.contains(m)),
        );
        for m in marks {
            let label = self.markets.fold(m);
            let mark = account.book(m).and_then(|b| b.mid());
            match (account.market_position(m), mark) {
                (Some(p), Some(mid)) if !p.quantity.is_zero() => {
                    let entry = p.entry_price.unwrap_or(mid);
                    let upnl = f(mid.saturating_sub(entry).saturating_mul(p.quantity));
                    let notional = f(p.quantity.abs().saturating_mul(mid));
                    self.set(
                        label,
                        names::POSITION_UNREALIZED_PNL,
                        |h| &mut h.unrealized_pnl,
                        None,
                        upnl,
                    );
                    self.set(
                        label,
                        names::POSITION_NOTIONAL,
                        |h| &mut h.notional,
                        None,
                        notional,
                    );
                }
                _ => self.zero(label, &[|h| &mut h.unrealized_pnl, |h| &mut h.notional]),
            }
        }
        self.positions_open.set(account.open_positions() as f64);
    }
}

#[cfg(test)]
mod tests;
