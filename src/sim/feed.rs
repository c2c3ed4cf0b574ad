//! What the simulator says on the wire: the change log, snapshot and delta payloads, the SSE
//! framing of events and the JSON shapes shared with the REST endpoints.
//!
//! Architecture Invariant: pure. Times arrive as unix milliseconds; nothing here reads a clock.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

use rust_decimal::Decimal;
use serde::Serialize;

use super::TsFormat;
use super::world::{Market, Position, PositionChange, Trade, World, position_id, trade_id};

/// One entry of the change log: a new trade (index into `World::trades`) or a position's new state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Trade(usize),
    Position(PositionChange),
}

/// Append-only log of changes with absolute positions, so each connection keeps a cursor into it.
/// It holds at most `cap` entries; a connection whose cursor fell behind the trimmed front is too
/// slow to follow and is closed, so that it reconnects and starts from a fresh snapshot.
#[derive(Debug)]
pub struct ChangeLog {
    base: u64,
    entries: VecDeque<Change>,
    cap: usize,
}

impl ChangeLog {
    pub fn new(cap: usize) -> ChangeLog {
        ChangeLog {
            base: 0,
            entries: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    pub fn push(&mut self, change: Change) {
        if self.entries.len() == self.cap {
            self.entries.pop_front();
            self.base += 1;
        }
        self.entries.push_back(change);
    }

    /// Absolute position after the last entry: a new connection's cursor.
    pub fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// Entries from `cursor` on, or None when some of them were already trimmed.
    pub fn since(&self, cursor: u64) -> Option<impl Iterator<Item = &Change>> {
        let skip = cursor.checked_sub(self.base)?;
        Some(self.entries.iter().skip(skip as usize))
    }
}

/// Which stream a connection is: all markets without a book, or one market with its book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    User,
    Market { market: usize, depth: usize },
}

impl Scope {
    fn wants_trade(self, trade: &Trade) -> bool {
        match self {
            Scope::User => true,
            Scope::Market { market, .. } => trade.market == market,
        }
    }

    /// Whether a stream in this scope sends `trade`: never a stream-hidden one.
    fn streams_trade(self, trade: &Trade) -> bool {
        !trade.stream_hidden && self.wants_trade(trade)
    }
}

/// What a connection has already been told: its log cursor and the book levels it last saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub cursor: u64,
    bids: Vec<(i64, i64)>,
    asks: Vec<(i64, i64)>,
}

/// The outcome of looking for a delta.
#[derive(Debug)]
pub enum Delta {
    /// The connection's cursor fell off the log.
    Lagged,
    /// Nothing the connection cares about changed; `View` is the advanced view to keep anyway.
    Nothing(View),
    /// Payload JSON and the view to keep once it is sent.
    Changes(String, View),
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum Ts {
    Iso(String),
    Millis(i64),
}

impl Ts {
    pub fn new(ms: i64, fmt: TsFormat) -> Ts {
        match fmt {
            TsFormat::Iso => Ts::Iso(iso_millis(ms)),
            TsFormat::Millis => Ts::Millis(ms),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TradeJson<'a> {
    id: String,
    market_id: &'a str,
    side: &'static str,
    price: Decimal,
    quantity: Decimal,
    liquidity: &'static str,
    created_at: Ts,
}

pub fn trade_json<'a>(world: &'a World, t: &Trade, fmt: TsFormat) -> TradeJson<'a> {
    let market = &world.markets[t.market];
    TradeJson {
        id: trade_id(t.n),
        market_id: &market.id,
        side: if t.buy { "buy" } else { "sell" },
        price: market.price(t.price),
        quantity: market.qty(t.qty),
        liquidity: if t.maker { "maker" } else { "taker" },
        created_at: Ts::new(t.created_ms, fmt),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PositionJson<'a> {
    id: String,
    market_id: &'a str,
    side: &'static str,
    quantity: Decimal,
    entry_price: Decimal,
    realized_pnl: Decimal,
    status: &'static str,
}

pub fn position_json<'a>(market: &'a Market, p: &Position) -> PositionJson<'a> {
    PositionJson {
        id: position_id(&market.id, p.n),
        market_id: &market.id,
        side: if p.qty > 0 { "long" } else { "short" },
        quantity: market.qty(p.qty.abs()),
        entry_price: p.entry,
        realized_pnl: p.realized,
        status: "open",
    }
}

/// Every open position, in market order.
pub fn open_positions(world: &World) -> Vec<PositionJson<'_>> {
    world
        .positions
        .iter()
        .zip(&world.markets)
        .filter_map(|(p, m)| p.as_ref().map(|p| position_json(m, p)))
        .collect()
}

fn side(signed: Decimal) -> &'static str {
    if signed > Decimal::ZERO {
        "long"
    } else {
        "short"
    }
}

/// A position as the REST side reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestPosition {
    pub id: String,
    /// Index into `World::markets`.
    pub market: usize,
    /// Signed, long > 0, never zero.
    pub qty: Decimal,
    pub entry: Decimal,
    pub realized: Decimal,
}

/// Open positions in market order as REST reports them: the world's, with `offset` (market id,
/// signed quantity; the `rest_position_offset` fault) added to that market's. A world position
/// keeps its id, entry and realized pnl, and is left out when the sum is exactly zero; without one,
/// a REST-only `p-<market>-rest` appears at the current mid with no realized pnl. An unknown market
/// id changes nothing.
pub fn rest_positions(world: &World, offset: Option<&(String, Decimal)>) -> Vec<RestPosition> {
    let offset = offset.and_then(|(id, delta)| {
        let m = world.markets.iter().position(|m| m.id == *id)?;
        Some((m, *delta))
    });
    let mut out = Vec::new();
    for (i, (p, m)) in world.positions.iter().zip(&world.markets).enumerate() {
        let mut rest = p.as_ref().map(|p| RestPosition {
            id: position_id(&m.id, p.n),
            market: i,
            qty: m.qty(p.qty),
            entry: p.entry,
            realized: p.realized,
        });
        if let Some((at, delta)) = offset
            && at == i
        {
            rest = match rest {
                Some(mut r) => {
                    r.qty += delta;
                    (!r.qty.is_zero()).then_some(r)
                }
                None => (!delta.is_zero()).then(|| RestPosition {
                    id: format!("p-{}-rest", m.id),
                    market: i,
                    qty: delta,
                    entry: m.price(m.mid),
                    realized: Decimal::ZERO,
                }),
            };
        }
        out.extend(rest);
    }
    out
}

pub fn rest_position_json<'a>(world: &'a World, p: &RestPosition) -> PositionJson<'a> {
    PositionJson {
        id: p.id.clone(),
        market_id: &world.markets[p.market].id,
        side: side(p.qty),
        quantity: p.qty.abs(),
        entry_price: p.entry,
        realized_pnl: p.realized,
        status: "open",
    }
}

/// The last `n` trades in `scope`, oldest first; stream-hidden ones only with `include_hidden`
/// (REST returns them, streams never do).
pub fn recent_trades(
    world: &World,
    scope: Scope,
    n: usize,
    fmt: TsFormat,
    include_hidden: bool,
) -> Vec<TradeJson<'_>> {
    let mut out: Vec<_> = world
        .trades
        .iter()
        .rev()
        .filter(|t| {
            if include_hidden {
                scope.wants_trade(t)
            } else {
                scope.streams_trade(t)
            }
        })
        .take(n)
        .map(|t| trade_json(world, t, fmt))
        .collect();
    out.reverse();
    out
}

#[derive(Serialize)]
struct LevelJson {
    price: Decimal,
    size: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<Decimal>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BookJson<'a> {
    market_id: &'a str,
    bids: Vec<LevelJson>,
    asks: Vec<LevelJson>,
}

#[derive(Serialize)]
struct SnapshotPayload<'a> {
    positions: Vec<PositionJson<'a>>,
    trades: Vec<TradeJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orderbook: Option<BookJson<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PositionDelta<'a> {
    upserts: Vec<PositionJson<'a>>,
    removed_ids: Vec<String>,
}

#[derive(Serialize)]
struct DeltaPayload<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    trades: Vec<TradeJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    positions: Option<PositionDelta<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orderbook: Option<BookJson<'a>>,
}

/// Levels with running totals, best first.
fn levels(market: &Market, side: &[(i64, i64)]) -> Vec<LevelJson> {
    let mut total = 0;
    side.iter()
        .map(|&(p, s)| {
            total += s;
            LevelJson {
                price: market.price(p),
                size: market.qty(s),
                total: Some(market.qty(total)),
            }
        })
        .collect()
}

/// Levels of `new` that differ from `old` (with totals), then levels of `old` gone from `new` as
/// size 0, all ordered best first (`bid` decides the direction).
fn level_diff(
    market: &Market,
    old: &[(i64, i64)],
    new: &[(i64, i64)],
    bid: bool,
) -> Vec<LevelJson> {
    let before: BTreeMap<i64, i64> = old.iter().copied().collect();
    let after: BTreeMap<i64, i64> = new.iter().copied().collect();
    let mut changed: Vec<(i64, LevelJson)> = Vec::new();
    let mut total = 0;
    for &(p, s) in new {
        total += s;
        if before.get(&p) != Some(&s) {
            let level = LevelJson {
                price: market.price(p),
                size: market.qty(s),
                total: Some(market.qty(total)),
            };
            changed.push((p, level));
        }
    }
    for &(p, _) in old {
        if !after.contains_key(&p) {
            changed.push((
                p,
                LevelJson {
                    price: market.price(p),
                    size: Decimal::ZERO,
                    total: None,
                },
            ));
        }
    }
    changed.sort_by_key(|(p, _)| if bid { -p } else { *p });
    changed.into_iter().map(|(_, l)| l).collect()
}

/// The snapshot payload for a new connection and the view it leaves the connection with.
pub fn snapshot(
    world: &World,
    log: &ChangeLog,
    scope: Scope,
    recent: usize,
    fmt: TsFormat,
) -> (String, View) {
    let mut view = View {
        cursor: log.end(),
        ..View::default()
    };
    let orderbook = match scope {
        Scope::User => None,
        Scope::Market { market, depth } => {
            let m = &world.markets[market];
            view.bids = m.top(true, depth);
            view.asks = m.top(false, depth);
            Some(BookJson {
                market_id: &m.id,
                bids: levels(m, &view.bids),
                asks: levels(m, &view.asks),
            })
        }
    };
    let payload = SnapshotPayload {
        positions: open_positions(world),
        trades: recent_trades(world, scope, recent, fmt, false),
        orderbook,
    };
    (to_json(&payload), view)
}

/// Everything that changed for this connection since `view`.
pub fn delta(world: &World, log: &ChangeLog, scope: Scope, view: &View, fmt: TsFormat) -> Delta {
    let Some(changes) = log.since(view.cursor) else {
        return Delta::Lagged;
    };
    let mut trades = Vec::new();
    // Keyed by (market, position number): the last state wins, None meaning removed.
    let mut positions: BTreeMap<(usize, u32), Option<&Position>> = BTreeMap::new();
    for change in changes {
        match change {
            Change::Trade(i) => {
                let t = &world.trades[*i];
                if scope.streams_trade(t) {
                    trades.push(trade_json(world, t, fmt));
                }
            }
            Change::Position(pc) => {
                positions.insert((pc.market, pc.n), pc.state.as_ref());
            }
        }
    }
    let mut next = View {
        cursor: log.end(),
        ..View::default()
    };
    let orderbook = match scope {
        Scope::User => None,
        Scope::Market { market, depth } => {
            let m = &world.markets[market];
            next.bids = m.top(true, depth);
            next.asks = m.top(false, depth);
            let bids = level_diff(m, &view.bids, &next.bids, true);
            let asks = level_diff(m, &view.asks, &next.asks, false);
            (!bids.is_empty() || !asks.is_empty()).then_some(BookJson {
                market_id: &m.id,
                bids,
                asks,
            })
        }
    };
    let positions = (!positions.is_empty()).then(|| {
        let mut delta = PositionDelta {
            upserts: Vec::new(),
            removed_ids: Vec::new(),
        };
        for ((market, n), state) in positions {
            let m = &world.markets[market];
            match state {
                Some(p) => delta.upserts.push(position_json(m, p)),
                None => delta.removed_ids.push(position_id(&m.id, n)),
            }
        }
        delta
    });
    if trades.is_empty() && positions.is_none() && orderbook.is_none() {
        return Delta::Nothing(next);
    }
    Delta::Changes(
        to_json(&DeltaPayload {
            trades,
            positions,
            orderbook,
        }),
        next,
    )
}

/// Collateral the simulated account starts with, in USDC.
const COLLATERAL: i64 = 10_000;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderJson<'a> {
    id: String,
    market_id: &'a str,
    side: &'static str,
    price: Decimal,
    quantity: Decimal,
    status: &'static str,
}

/// A few resting orders per market, derived from the book: at the touch and two levels back on
/// each side, sized from the level they rest at.
pub fn open_orders(world: &World) -> Vec<OrderJson<'_>> {
    let mut out = Vec::new();
    for m in &world.markets {
        for bid in [true, false] {
            for (i, (price, size)) in m.top(bid, 3).into_iter().enumerate().step_by(2) {
                out.push(OrderJson {
                    id: format!("o-{}-{}{}", m.id, if bid { "b" } else { "a" }, i / 2 + 1),
                    market_id: &m.id,
                    side: if bid { "buy" } else { "sell" },
                    price: m.price(price),
                    quantity: m.qty(size % 5 + 1),
                    status: "open",
                });
            }
        }
    }
    out
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BalancesJson {
    pub equity: Decimal,
    pub available_balance: Decimal,
    pub initial_margin: Decimal,
    pub maintenance_margin: Decimal,
    pub margin_usage: Decimal,
}

/// The account as the REST side sees it, computed from the REST positions (so a
/// `rest_position_offset` moves the margins too and every REST body agrees with the others):
///
/// - mark = the market's mid; per position unrealizedPnl = round2(qty × (mark − entry)), qty signed
/// - unrealized = Σ unrealizedPnl; cash (perpsBalance) = round2(collateral + realized), where
///   realized covers every position ever, closed ones included
/// - equity = cash + unrealized
/// - initialMargin = round2(10% of Σ |qty| × mark); maintenanceMargin = round2(5% of it)
/// - availableBalance = equity − initialMargin (negative when under-collateralised)
/// - marginUsage = round6(initialMargin / equity), or 1 when equity ≤ 0
///
/// `roundN` is `Decimal::round_dp(N)` (banker's rounding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub cash: Decimal,
    pub unrealized: Decimal,
    pub realized: Decimal,
    pub balances: BalancesJson,
    /// Per REST position, in the same order: (mark price, unrealized pnl).
    pub marks: Vec<(Decimal, Decimal)>,
}

pub fn account(world: &World, positions: &[RestPosition]) -> Account {
    let mut unrealized = Decimal::ZERO;
    let mut notional = Decimal::ZERO;
    let marks: Vec<_> = positions
        .iter()
        .map(|p| {
            let m = &world.markets[p.market];
            let mark = m.price(m.mid);
            let pnl = (p.qty * (mark - p.entry)).round_dp(2);
            unrealized += pnl;
            notional += p.qty.abs() * mark;
            (mark, pnl)
        })
        .collect();
    let realized = world.realized_total.round_dp(2);
    let cash = (Decimal::from(COLLATERAL) + world.realized_total).round_dp(2);
    let equity = cash + unrealized;
    let initial = (notional / Decimal::from(10)).round_dp(2);
    let maintenance = (notional / Decimal::from(20)).round_dp(2);
    let usage = if equity > Decimal::ZERO {
        (initial / equity).round_dp(6)
    } else {
        Decimal::ONE
    };
    Account {
        cash,
        unrealized,
        realized,
        balances: BalancesJson {
            equity,
            available_balance: equity - initial,
            initial_margin: initial,
            maintenance_margin: maintenance,
            margin_usage: usage,
        },
        marks,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortfolioJson<'a> {
    equity: Decimal,
    tradable_balance: Decimal,
    balances: BucketsJson,
    pnl: PnlJson,
    margin: MarginJson,
    positions: Vec<PortfolioPositionJson<'a>>,
    option_positions: [u8; 0],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BucketsJson {
    wallet_balance: Decimal,
    perps_balance: Decimal,
    options_balance: Decimal,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PnlJson {
    unrealized: Decimal,
    realized24h: Decimal,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MarginJson {
    initial_margin: Decimal,
    maintenance_margin: Decimal,
    margin_usage: Decimal,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PortfolioPositionJson<'a> {
    market_id: &'a str,
    side: &'static str,
    quantity: Decimal,
    avg_price: Decimal,
    mark_price: Decimal,
    unrealized_pnl: Decimal,
    realized_pnl: Decimal,
    funding_payment: &'static str,
    margin_mode: &'static str,
}

/// `GET /portfolio/me`: the same numbers as `/perps/balances` (tradableBalance = availableBalance)
/// and the REST positions. Everything sits in the perps bucket; realized24h is all realized pnl
/// (a simulated account is younger than a day) and there is no funding.
pub fn portfolio<'a>(
    world: &'a World,
    positions: &[RestPosition],
    acc: &Account,
) -> PortfolioJson<'a> {
    let zero = Decimal::new(0, 2);
    PortfolioJson {
        equity: acc.balances.equity,
        tradable_balance: acc.balances.available_balance,
        balances: BucketsJson {
            wallet_balance: zero,
            perps_balance: acc.cash,
            options_balance: zero,
        },
        pnl: PnlJson {
            unrealized: acc.unrealized,
            realized24h: acc.realized,
        },
        margin: MarginJson {
            initial_margin: acc.balances.initial_margin,
            maintenance_margin: acc.balances.maintenance_margin,
            margin_usage: acc.balances.margin_usage,
        },
        positions: positions
            .iter()
            .zip(&acc.marks)
            .map(|(p, &(mark, pnl))| PortfolioPositionJson {
                market_id: &world.markets[p.market].id,
                side: side(p.qty),
                quantity: p.qty.abs(),
                avg_price: p.entry,
                mark_price: mark,
                unrealized_pnl: pnl,
                realized_pnl: p.realized,
                funding_payment: "0",
                margin_mode: "cross",
            })
            .collect(),
        option_positions: [],
    }
}

pub fn to_json<T: Serialize>(value: &T) -> String {
    // UNWRAP: these payloads are plain structs of strings, numbers and decimals; serializing them cannot fail.
    serde_json::to_string(value).expect("payload serializes")
}

/// Which event an envelope carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Snapshot,
    Delta,
}

/// One SSE message: `event`, `id` (the eventSeq) and the envelope as a single `data` line.
pub fn frame(
    kind: Kind,
    seq: u64,
    engine_ms: i64,
    source_ms: i64,
    fmt: TsFormat,
    payload: &str,
) -> String {
    let (name, event_type) = match kind {
        Kind::Snapshot => ("snapshot", "PerpStreamSnapshot"),
        Kind::Delta => ("delta", "PerpStreamDelta"),
    };
    let mut out = String::with_capacity(payload.len() + 256);
    // Writing to a String does not fail, so the fmt::Results below are ignored.
    let _ = write!(
        out,
        "event: {name}\nid: {seq}\ndata: {{\"eventId\":\"evt-{seq}\",\"eventType\":\"{event_type}\",\"eventSeq\":{seq},\"engineTs\":"
    );
    write_ts(&mut out, engine_ms, fmt);
    out.push_str(",\"sourceTs\":");
    write_ts(&mut out, source_ms, fmt);
    out.push_str(",\"payload\":");
    out.push_str(payload);
    out.push_str("}\n\n");
    out
}

/// An `error` event; it carries no id because it does not consume an eventSeq.
pub fn error_frame(retryable: bool) -> String {
    format!(
        "event: error\ndata: {{\"code\":\"UPSTREAM_UNAVAILABLE\",\"message\":\"simulated upstream failure\",\"retryable\":{retryable}}}\n\n"
    )
}

/// A `delta` whose data is cut off mid-object, as a broken proxy might deliver it.
pub const MALFORMED_FRAME: &str = "event: delta\ndata: {\"eventId\":\"evt-malformed\",\"eventType\":\"PerpStreamDelta\",\"payload\":{\"trades\":[{\"id\":\"t-\n\n";

/// The idle comment, exactly `:heartbeat`.
pub const HEARTBEAT_FRAME: &str = ":heartbeat\n\n";

fn write_ts(out: &mut String, ms: i64, fmt: TsFormat) {
    match fmt {
        TsFormat::Iso => {
            out.push('"');
            out.push_str(&iso_millis(ms));
            out.push('"');
        }
        TsFormat::Millis => {
            let _ = write!(out, "{ms}");
        }
    }
}

/// `2026-04-24T12:00:00.123Z` for unix milliseconds (proleptic Gregorian, UTC).
pub fn iso_millis(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_millis_formats_known_instants() {
        assert_eq!(iso_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_millis(1_777_032_000_123), "2026-04-24T12:00:00.123Z");
        assert_eq!(iso_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn change_log_trims_and_reports_lag() {
        let mut log = ChangeLog::new(3);
        for i in 0..5 {
            log.push(Change::Trade(i));
        }
        assert_eq!(log.end(), 5);
        assert!(log.since(1).is_none());
        let rest: Vec<_> = log.since(3).unwrap().cloned().collect();
        assert_eq!(rest, vec![Change::Trade(3), Change::Trade(4)]);
        assert_eq!(log.since(5).unwrap().count(), 0);
    }

    #[test]
    fn frame_is_canonical() {
        let f = frame(
            Kind::Delta,
            7,
            1_777_032_000_123,
            1_777_032_000_000,
            TsFormat::Iso,
            "{}",
        );
        assert_eq!(
            f,
            "event: delta\nid: 7\ndata: {\"eventId\":\"evt-7\",\"eventType\":\"PerpStreamDelta\",\"eventSeq\":7,\"engineTs\":\"2026-04-24T12:00:00.123Z\",\"sourceTs\":\"2026-04-24T12:00:00.000Z\",\"payload\":{}}\n\n"
        );
        let f = frame(Kind::Snapshot, 1, 5, 4, TsFormat::Millis, "{}");
        assert!(f.contains(
            "\"eventType\":\"PerpStreamSnapshot\",\"eventSeq\":1,\"engineTs\":5,\"sourceTs\":4,"
        ));
        assert!(error_frame(false).contains("\"retryable\":false"));
    }

    #[test]
    fn book_delta_reports_changed_levels_and_removals_as_zero() {
        let markets = vec!["BTC-PERP".to_string()];
        let world = World::new(1, &markets);
        let m = &world.markets[0];
        let old = vec![(1000, 5), (999, 3), (998, 2)];
        let new = vec![(1000, 5), (999, 4), (997, 1)];
        let diff = serde_json::to_value(level_diff(m, &old, &new, true)).unwrap();
        assert_eq!(
            diff,
            serde_json::json!([
                {"price": "99.9", "size": "0.004", "total": "0.009"},
                {"price": "99.8", "size": "0"},
                {"price": "99.7", "size": "0.001", "total": "0.010"},
            ])
        );
    }

    #[test]
    fn delta_merges_positions_to_the_latest_state_and_filters_trades_by_market() {
        let markets: Vec<String> = ["BTC-PERP", "ETH-PERP"].map(String::from).to_vec();
        let mut world = World::new(11, &markets);
        let mut log = ChangeLog::new(1000);
        let (_, user_view) = snapshot(&world, &log, Scope::User, 10, TsFormat::Iso);
        let scope = Scope::Market {
            market: 0,
            depth: 5,
        };
        let (_, market_view) = snapshot(&world, &log, scope, 10, TsFormat::Iso);
        for i in 0..60 {
            if let Some(fill) = world.step(i) {
                log.push(Change::Trade(fill.trade));
                log.push(Change::Position(fill.position));
            }
        }
        let Delta::Changes(json, next) =
            delta(&world, &log, Scope::User, &user_view, TsFormat::Iso)
        else {
            panic!("60 steps change something");
        };
        assert_eq!(next.cursor, log.end());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["trades"].as_array().unwrap().len(), world.trades.len());
        assert!(v.get("orderbook").is_none());
        let upserts = v["positions"]["upserts"].as_array().unwrap();
        let open: Vec<_> = world.positions.iter().flatten().collect();
        assert_eq!(upserts.len(), open.len());
        let Delta::Changes(json, _) = delta(&world, &log, scope, &market_view, TsFormat::Iso)
        else {
            panic!("the book moves every step");
        };
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let btc = world.trades.iter().filter(|t| t.market == 0).count();
        assert_eq!(v["trades"].as_array().map_or(0, Vec::len), btc);
        assert_eq!(v["orderbook"]["marketId"], "BTC-PERP");
    }
}
