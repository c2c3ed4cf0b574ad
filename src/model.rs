//! The domain values the sidecar reasons about (trades, fills, positions, books, stream events), as plain data with no parsing.
//!
//! `source::wire` builds them from the exchange's JSON, `state` folds them, `reconcile` compares
//! them with REST listings and `telemetry` turns them into series. Keeping them here, apart from
//! any of those, means none of those modules has to import another's internals to share them.

use std::sync::Arc;

use rust_decimal::Decimal;

/// Whether an event is a full snapshot or an incremental delta, from `eventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `PerpStreamSnapshot`: full state on connect.
    Snapshot,
    /// `PerpStreamDelta`: changes since the previous event.
    Delta,
}

/// One decoded stream event.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// From `eventType` (`PerpStreamSnapshot` / `PerpStreamDelta`); `None` when absent or unknown,
    /// in which case the SSE event name decides.
    pub kind: Option<EventKind>,
    pub event_id: Option<String>,
    /// `eventSeq`, required.
    pub seq: u64,
    pub engine_ts_ms: Option<i64>,
    pub source_ts_ms: Option<i64>,
    pub payload: Payload,
    /// Trades, positions, removed ids and book levels that could not be read and were left out
    /// (the caller counts them as schema errors).
    pub skipped_items: u32,
}

/// The account-relevant parts of an event; every part is optional on the wire.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    pub trades: Vec<Trade>,
    /// `None` when the event carried no `positions` key (a snapshot then says nothing about them).
    pub positions: Option<PositionsUpdate>,
    pub book: Option<BookUpdate>,
}

/// Position changes. In a snapshot `upserts` is the full set and `removed_ids` is empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PositionsUpdate {
    pub upserts: Vec<Position>,
    pub removed_ids: Vec<String>,
}

/// One of the account's trades, as the exchange reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    /// `id`, else `tradeId`; `None` when neither is present (dedup then keys on content).
    pub id: Option<String>,
    pub market: String,
    pub side: Side,
    pub liquidity: Liquidity,
    pub price: Decimal,
    pub quantity: Decimal,
    pub created_at_ms: Option<i64>,
}

/// A trade the fold counted: what the metrics add up.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    /// Shared with the account's set of known markets, so counting a fill allocates no string.
    pub market: Arc<str>,
    pub side: Side,
    pub liquidity: Liquidity,
    pub price: Decimal,
    pub quantity: Decimal,
    pub created_at_ms: Option<i64>,
}

impl From<&Trade> for Fill {
    fn from(t: &Trade) -> Self {
        Fill {
            market: t.market.as_str().into(),
            side: t.side,
            liquidity: t.liquidity,
            price: t.price,
            quantity: t.quantity,
            created_at_ms: t.created_at_ms,
        }
    }
}

/// Trade side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    /// The lowercase wire spelling, also used as a metric label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

/// Whether the account's order made (rested) or took liquidity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Liquidity {
    Maker,
    Taker,
    /// The trade's `liquidity` was missing or not `maker`/`taker`. Such a fill is still a fill:
    /// it is counted (under this value) rather than dropped.
    Unknown,
}

impl Liquidity {
    /// The lowercase wire spelling, also used as a metric label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Liquidity::Maker => "maker",
            Liquidity::Taker => "taker",
            Liquidity::Unknown => "unknown",
        }
    }
}

/// One position as reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    /// `id`, else `positionId`, else the `marketId` (one position per market).
    pub id: String,
    pub market: String,
    /// Signed: long > 0, short < 0.
    pub quantity: Decimal,
    /// `entryPrice`, else `avgPrice`.
    pub entry_price: Option<Decimal>,
    pub realized_pnl: Option<Decimal>,
    /// `status` is `closed` (any case).
    pub closed: bool,
}

/// Order-book levels: the full book in a snapshot, changed levels in a delta. A zero size means
/// the level was removed; such levels are kept here and the fold removes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BookUpdate {
    pub market: Option<String>,
    /// `(price, size)` in wire order.
    pub bids: Vec<(Decimal, Decimal)>,
    pub asks: Vec<(Decimal, Decimal)>,
}

/// The data of an `error` event: `{code, message, retryable}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}
