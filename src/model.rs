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
    pub id: Option<ShortStr>,
    pub market: ShortStr,
    pub side: Side,
    pub liquidity: Liquidity,
    pub price: Decimal,
    pub quantity: Decimal,
    pub created_at_ms: Option<i64>,
}

/// Texts up to this many bytes are kept inline in a [`ShortStr`].
const INLINE: usize = 22;

/// A short text passed by value: inline up to 22 bytes (market names, most ids), else behind an
/// `Arc`. Cloning an inline one copies 24 bytes; cloning an `Arc` is an atomic increment, which
/// waits for every store still pending, and on the fold's path (right after the dedup memory's
/// insert) that wait was a seventh of the fold's time. Compared, ordered and hashed as its text.
#[derive(Clone)]
pub struct ShortStr(Form);

#[derive(Clone)]
enum Form {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<str>),
}

impl ShortStr {
    pub fn new(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE => {
                let mut bytes = [0u8; INLINE];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                ShortStr(Form::Inline { len, bytes })
            }
            _ => ShortStr(Form::Shared(s.into())),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Form::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Form::Shared(s) => s.as_bytes(),
        }
    }

    pub fn as_str(&self) -> &str {
        // The bytes were a whole `str`, so this cannot fail.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl std::ops::Deref for ShortStr {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for ShortStr {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            // Unused bytes are zero, so equal texts are equal arrays: a fixed-size comparison,
            // inlined, where comparing slices calls `memcmp` (which showed in the fold's
            // profile: it compares market names at every lookup).
            (Form::Inline { len: a, bytes: x }, Form::Inline { len: b, bytes: y }) => {
                a == b && x == y
            }
            _ => self.as_bytes() == other.as_bytes(),
        }
    }
}

impl Eq for ShortStr {}

impl PartialEq<str> for ShortStr {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for ShortStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// The order of the texts (UTF-8 byte order is `str` order).
impl Ord for ShortStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl PartialOrd for ShortStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for ShortStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `str` hashes: the bytes, then a byte no UTF-8 text contains.
        state.write(self.as_bytes());
        state.write_u8(0xff);
    }
}

impl std::fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl std::fmt::Display for ShortStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl From<&str> for ShortStr {
    fn from(s: &str) -> Self {
        ShortStr::new(s)
    }
}

impl From<String> for ShortStr {
    fn from(s: String) -> Self {
        ShortStr::new(&s)
    }
}

impl PartialEq<String> for ShortStr {
    fn eq(&self, other: &String) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<ShortStr> for &str {
    fn eq(&self, other: &ShortStr) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl std::borrow::Borrow<str> for ShortStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// A trade the fold counted: what the metrics add up.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    /// The market, by value (see [`ShortStr`]): counting a fill allocates no string and moves
    /// no shared reference count.
    pub market: ShortStr,
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
    pub id: ShortStr,
    pub market: ShortStr,
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
