//! Validation: lenient raw structs to typed model values, skipping and counting what cannot be read.

use rust_decimal::Decimal;

use super::lenient::{List, Obj, Scalar};
use super::raw::{RawBook, RawLevel, RawPayload, RawPosition, RawPositions, RawTrade};
use crate::model::{BookUpdate, EventKind, Liquidity, Payload, Position, ShortStr, Side, Trade};

/// A trade side in any case; `None` for anything else (the trade is then unreadable).
fn parse_side(s: &str) -> Option<Side> {
    if s.eq_ignore_ascii_case("buy") {
        Some(Side::Buy)
    } else if s.eq_ignore_ascii_case("sell") {
        Some(Side::Sell)
    } else {
        None
    }
}

/// `maker`/`taker` in any case; any other spelling is [`Liquidity::Unknown`].
fn parse_liquidity(s: &str) -> Liquidity {
    if s.eq_ignore_ascii_case("maker") {
        Liquidity::Maker
    } else if s.eq_ignore_ascii_case("taker") {
        Liquidity::Taker
    } else {
        Liquidity::Unknown
    }
}

pub(super) fn parse_kind(s: &str) -> Option<EventKind> {
    if s.eq_ignore_ascii_case("PerpStreamSnapshot") || s.eq_ignore_ascii_case("snapshot") {
        Some(EventKind::Snapshot)
    } else if s.eq_ignore_ascii_case("PerpStreamDelta")
        || s.eq_ignore_ascii_case("delta")
        || s.eq_ignore_ascii_case("update")
    {
        Some(EventKind::Delta)
    } else {
        None
    }
}

/// Builds a payload item by item, as a reader meets them: the one place where the rules for
/// unreadable items and for `orderbook` over `book` live, whichever reader feeds it (serde's raw
/// structs through [`build_payload`], or [`super::fast`] as it goes, without collecting raw
/// items first).
#[derive(Default)]
pub(super) struct PayloadBuilder<'a> {
    payload: Payload,
    orderbook: Obj<RawBook<'a>>,
    book: Obj<RawBook<'a>>,
    skipped: u32,
}

impl<'a> PayloadBuilder<'a> {
    /// One element of `trades`.
    pub(super) fn trade(&mut self, item: &Obj<RawTrade<'_>>) {
        match item {
            Obj::Ok(t) => match build_trade(t) {
                Some(trade) => self.payload.trades.push(trade),
                None => self.skipped += 1,
            },
            _ => self.skipped += 1,
        }
    }

    /// A list (`trades`, `upserts`, `removedIds`, book levels) that is neither an array nor
    /// `null`: one unreadable item.
    pub(super) fn malformed(&mut self) {
        self.skipped += 1;
    }

    /// `positions` is an array or an object: the event carries a positions update, even an
    /// empty one. Call before [`Self::position`] and [`Self::removed_id`].
    pub(super) fn positions(&mut self) {
        self.payload.positions.get_or_insert_with(Default::default);
    }

    /// One upsert (an element of `positions`, or of its `upserts`).
    pub(super) fn position(&mut self, item: &Obj<RawPosition<'_>>) {
        let read = match item {
            Obj::Ok(p) => build_position(p),
            _ => None,
        };
        match (read, &mut self.payload.positions) {
            (Some(p), Some(update)) => update.upserts.push(p),
            _ => self.skipped += 1,
        }
    }

    /// One element of `removedIds`.
    pub(super) fn removed_id(&mut self, id: &Scalar<'_>) {
        match (id.to_id(), &mut self.payload.positions) {
            (Some(id), Some(update)) => update.removed_ids.push(id),
            _ => self.skipped += 1,
        }
    }

    pub(super) fn orderbook(&mut self, book: Obj<RawBook<'a>>) {
        self.orderbook = book;
    }

    pub(super) fn book(&mut self, book: Obj<RawBook<'a>>) {
        self.book = book;
    }

    /// The payload, and how many items were unreadable.
    pub(super) fn finish(mut self) -> (Payload, u32) {
        // `orderbook` wins over its alias `book` when both are present.
        self.payload.book = match (self.orderbook, self.book) {
            (Obj::Ok(b), _) | (_, Obj::Ok(b)) => Some(build_book(b, &mut self.skipped)),
            (Obj::NotObject, _) | (_, Obj::NotObject) => {
                self.skipped += 1;
                None
            }
            _ => None,
        };
        (self.payload, self.skipped)
    }
}

/// A payload read by serde, and how many of its items were unreadable.
pub(super) fn build_payload(raw: RawPayload<'_>) -> (Payload, u32) {
    let mut b = PayloadBuilder::default();
    for item in &raw.trades.items {
        b.trade(item);
    }
    if raw.trades.malformed {
        b.malformed();
    }
    let upserts = |b: &mut PayloadBuilder<'_>, list: &List<Obj<RawPosition<'_>>>| {
        for item in &list.items {
            b.position(item);
        }
        if list.malformed {
            b.malformed();
        }
    };
    match raw.positions {
        RawPositions::Absent => {}
        RawPositions::Malformed => b.malformed(),
        RawPositions::Array(list) => {
            b.positions();
            upserts(&mut b, &list);
        }
        RawPositions::Object(obj) => {
            b.positions();
            for id in &obj.removed_ids.items {
                b.removed_id(id);
            }
            if obj.removed_ids.malformed {
                b.malformed();
            }
            upserts(&mut b, &obj.upserts);
        }
    }
    b.orderbook(raw.orderbook);
    b.book(raw.book);
    b.finish()
}

/// A REST list of trades; unreadable items are counted in `skipped`.
pub(super) fn build_trades(list: List<Obj<RawTrade<'_>>>, skipped: &mut u32) -> Vec<Trade> {
    let mut out = Vec::with_capacity(list.items.len());
    for item in list.items {
        match item {
            Obj::Ok(t) => match build_trade(&t) {
                Some(trade) => out.push(trade),
                None => *skipped += 1,
            },
            _ => *skipped += 1,
        }
    }
    *skipped += u32::from(list.malformed);
    out
}

fn build_trade(t: &RawTrade<'_>) -> Option<Trade> {
    let id = t.id.to_short_id().or_else(|| t.trade_id.to_short_id());
    let market = t.market_id.as_str().filter(|m| !m.is_empty())?;
    let side = parse_side(t.side.as_str()?)?;
    // A fill with an unreadable liquidity is still a fill: counted as unknown, never dropped.
    let liquidity = t
        .liquidity
        .as_str()
        .map_or(Liquidity::Unknown, parse_liquidity);
    let price = t.price.as_decimal()?;
    let quantity = t.quantity.as_decimal()?;
    Some(Trade {
        id,
        market: ShortStr::new(market),
        side,
        liquidity,
        price,
        quantity,
        created_at_ms: t.created_at.as_timestamp_ms(),
    })
}

/// A REST list of positions; unreadable items are counted in `skipped`.
pub(super) fn build_positions(
    list: List<Obj<RawPosition<'_>>>,
    skipped: &mut u32,
) -> Vec<Position> {
    let mut out = Vec::with_capacity(list.items.len());
    for item in list.items {
        match item {
            Obj::Ok(p) => match build_position(&p) {
                Some(pos) => out.push(pos),
                None => *skipped += 1,
            },
            _ => *skipped += 1,
        }
    }
    *skipped += u32::from(list.malformed);
    out
}

/// Sign rule: a negative quantity is already signed; otherwise `long`/`buy` keep it positive and
/// `short`/`sell` negate it; no side means the quantity is taken as signed. An unknown side is
/// only acceptable for a zero quantity (e.g. a flat closed position), as the sign is unknowable.
fn build_position(p: &RawPosition<'_>) -> Option<Position> {
    let market = p.market_id.as_str().filter(|m| !m.is_empty())?;
    let closed = p
        .status
        .as_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("closed"));
    let quantity = match &p.quantity {
        Scalar::Null if closed => Decimal::ZERO,
        q => q.as_decimal()?,
    };
    let quantity = if quantity.is_sign_negative() || quantity.is_zero() {
        quantity
    } else {
        match p.side.as_str() {
            None => quantity,
            Some(s) if s.eq_ignore_ascii_case("long") || s.eq_ignore_ascii_case("buy") => quantity,
            Some(s) if s.eq_ignore_ascii_case("short") || s.eq_ignore_ascii_case("sell") => {
                -quantity
            }
            Some(_) => return None,
        }
    };
    let id =
        p.id.to_short_id()
            .or_else(|| p.position_id.to_short_id())
            .unwrap_or_else(|| ShortStr::new(market));
    Some(Position {
        id,
        market: ShortStr::new(market),
        quantity,
        entry_price: p
            .entry_price
            .as_decimal()
            .or_else(|| p.avg_price.as_decimal()),
        realized_pnl: p.realized_pnl.as_decimal(),
        closed,
    })
}

fn build_book(b: RawBook<'_>, skipped: &mut u32) -> BookUpdate {
    BookUpdate {
        market: b.market_id.to_id(),
        bids: build_levels(&b.bids, skipped),
        asks: build_levels(&b.asks, skipped),
    }
}

fn build_levels(list: &List<RawLevel<'_>>, skipped: &mut u32) -> Vec<(Decimal, Decimal)> {
    let mut out = Vec::with_capacity(list.items.len());
    for level in &list.items {
        let read = match level {
            RawLevel::Pair(p, s) => p.as_decimal().zip(s.as_decimal()),
            RawLevel::Bad => None,
        };
        match read {
            Some((price, size)) if !size.is_sign_negative() || size.is_zero() => {
                out.push((price, size));
            }
            _ => *skipped += 1,
        }
    }
    *skipped += u32::from(list.malformed);
    out
}

#[cfg(test)]
mod tests {
    use crate::model::{BookUpdate, Liquidity, Position, PositionsUpdate, Side, Trade};
    use crate::source::wire::parse_trade_list;
    use crate::source::wire::tests::{T0, d, env};

    // ---- trades ----

    #[test]
    fn canonical_trade() {
        let e = env(
            r#"{"trades":[{"id":"t-000123","marketId":"BTC-PERP","side":"buy","price":"68200.5",
                "quantity":"0.5","liquidity":"maker","createdAt":"2026-04-24T12:00:00.000Z"}]}"#,
        );
        assert_eq!(
            e.payload.trades,
            vec![Trade {
                id: Some("t-000123".into()),
                market: "BTC-PERP".into(),
                side: Side::Buy,
                liquidity: Liquidity::Maker,
                price: d("68200.5"),
                quantity: d("0.5"),
                created_at_ms: Some(T0),
            }]
        );
    }

    #[test]
    fn decimals_as_strings_or_json_numbers() {
        let e = env(
            r#"{"trades":[{"marketId":"M","side":"sell","liquidity":"taker","price":68200.5,"quantity":2},
                {"marketId":"M","side":"sell","liquidity":"taker","price":0.1,"quantity":"1e-3"},
                {"marketId":"M","side":"sell","liquidity":"taker","price":-3,"quantity":1.5e2}]}"#,
        );
        let got: Vec<_> = e
            .payload
            .trades
            .iter()
            .map(|t| (t.price, t.quantity))
            .collect();
        assert_eq!(
            got,
            vec![
                (d("68200.5"), d("2")),
                (d("0.1"), d("0.001")),
                (d("-3"), d("150")),
            ]
        );
    }

    #[test]
    fn created_at_as_iso_or_ms() {
        let e = env(
            r#"{"trades":[{"marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1","createdAt":1714000000000},
                {"marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1","createdAt":"1714000000000"},
                {"marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1","createdAt":"2026-04-24T14:00:00+02:00"},
                {"marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1"}]}"#,
        );
        let got: Vec<_> = e.payload.trades.iter().map(|t| t.created_at_ms).collect();
        assert_eq!(
            got,
            vec![
                Some(1_714_000_000_000),
                Some(1_714_000_000_000),
                Some(T0),
                None
            ]
        );
    }

    #[test]
    fn trade_side_and_liquidity_any_case() {
        let e = env(
            r#"{"trades":[{"marketId":"M","side":"BUY","liquidity":"Maker","price":"1","quantity":"1"},
                {"marketId":"M","side":"Sell","liquidity":"TAKER","price":"1","quantity":"1"}]}"#,
        );
        let got: Vec<_> = e
            .payload
            .trades
            .iter()
            .map(|t| (t.side, t.liquidity))
            .collect();
        assert_eq!(
            got,
            vec![
                (Side::Buy, Liquidity::Maker),
                (Side::Sell, Liquidity::Taker)
            ]
        );
        assert_eq!(
            (Side::Sell.as_str(), Liquidity::Taker.as_str()),
            ("sell", "taker")
        );
    }

    #[test]
    fn trade_id_from_id_else_trade_id_else_none() {
        let e = env(
            r#"{"trades":[{"id":"a","tradeId":"b","marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1"},
                {"tradeId":"b","marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1"},
                {"id":77,"marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1"},
                {"id":"","marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1"}]}"#,
        );
        let got: Vec<_> = e.payload.trades.iter().map(|t| t.id.as_deref()).collect();
        assert_eq!(got, vec![Some("a"), Some("b"), Some("77"), None]);
    }

    #[test]
    fn unreadable_trades_are_skipped_and_counted() {
        let e = env(r#"{"trades":[
                {"side":"buy","liquidity":"maker","price":"1","quantity":"1"},
                {"marketId":"M","liquidity":"maker","price":"1","quantity":"1"},
                {"marketId":"M","side":"buy","liquidity":"maker","quantity":"1"},
                {"marketId":"M","side":"buy","liquidity":"maker","price":"1"},
                {"marketId":"M","side":"long","liquidity":"maker","price":"1","quantity":"1"},
                {"marketId":"M","side":"buy","liquidity":"maker","price":"abc","quantity":"1"},
                {"marketId":"M","side":"buy","liquidity":"maker","price":true,"quantity":"1"},
                {"marketId":["M"],"side":"buy","liquidity":"maker","price":"1","quantity":"1"},
                "not an object", 5, null,
                {"marketId":"OK","side":"buy","liquidity":"maker","price":"1","quantity":"1"}]}"#);
        assert_eq!(e.skipped_items, 11);
        assert_eq!(e.payload.trades.len(), 1);
        assert_eq!(e.payload.trades[0].market, "OK");
    }

    #[test]
    fn unknown_or_missing_liquidity_is_read_as_unknown() {
        let e = env(r#"{"trades":[
                {"id":"a","marketId":"M","side":"buy","price":"1","quantity":"2"},
                {"id":"b","marketId":"M","side":"sell","liquidity":"weird","price":"3","quantity":"4"},
                {"id":"c","marketId":"M","side":"buy","liquidity":null,"price":"1","quantity":"1"},
                {"id":"d","marketId":"M","side":"buy","liquidity":7,"price":"1","quantity":"1"},
                {"id":"e","marketId":"M","side":"buy","liquidity":"MAKER","price":"1","quantity":"1"}]}"#);
        assert_eq!(e.skipped_items, 0);
        let got: Vec<_> = e
            .payload
            .trades
            .iter()
            .map(|t| (t.id.as_deref().unwrap(), t.side, t.liquidity))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", Side::Buy, Liquidity::Unknown),
                ("b", Side::Sell, Liquidity::Unknown),
                ("c", Side::Buy, Liquidity::Unknown),
                ("d", Side::Buy, Liquidity::Unknown),
                ("e", Side::Buy, Liquidity::Maker),
            ]
        );
        assert_eq!(
            (e.payload.trades[1].price, e.payload.trades[1].quantity),
            (d("3"), d("4"))
        );
        assert_eq!(Liquidity::Unknown.as_str(), "unknown");
    }

    #[test]
    fn a_trade_without_side_is_a_schema_error_even_with_liquidity_unknown() {
        let e = env(r#"{"trades":[
                {"id":"a","marketId":"M","liquidity":"maker","price":"1","quantity":"1"},
                {"id":"b","marketId":"M","price":"1","quantity":"1"},
                {"id":"c","marketId":"M","side":null,"liquidity":"weird","price":"1","quantity":"1"},
                {"id":"ok","marketId":"M","side":"sell","price":"1","quantity":"1"}]}"#);
        assert_eq!(e.skipped_items, 3);
        let ids: Vec<_> = e.payload.trades.iter().map(|t| t.id.as_deref()).collect();
        assert_eq!(ids, vec![Some("ok")]);
        // The REST list reads the same way.
        let (trades, skipped) = parse_trade_list(
            r#"[{"id":"a","marketId":"M","price":"1","quantity":"1"},
                {"id":"b","marketId":"M","side":"buy","price":"1","quantity":"1"}]"#,
        )
        .unwrap();
        assert_eq!(skipped, 1);
        assert_eq!((trades.len(), trades[0].liquidity), (1, Liquidity::Unknown));
    }

    #[test]
    fn trades_not_an_array_is_one_skipped_item() {
        assert_eq!(env(r#"{"trades":{"a":1}}"#).skipped_items, 1);
        assert_eq!(env(r#"{"trades":null}"#).skipped_items, 0);
    }

    #[test]
    fn escaped_strings_are_read() {
        let e = env(
            r#"{"trades":[{"id":"t\"1","marketId":"BTC\u002DPERP","side":"b\u0075y","liquidity":"maker",
                "price":"\u0031.5","quantity":"1"}]}"#,
        );
        let t = &e.payload.trades[0];
        assert_eq!(
            (t.id.as_deref(), t.market.as_str()),
            (Some("t\"1"), "BTC-PERP")
        );
        assert_eq!((t.side, t.price), (Side::Buy, d("1.5")));
    }

    // ---- positions ----

    #[test]
    fn positions_object_form() {
        let e = env(
            r#"{"positions":{"upserts":[{"id":"p-BTC-PERP","marketId":"BTC-PERP","side":"long",
                "quantity":"0.5","entryPrice":"68000.0","realizedPnl":"12.5","status":"open"}],
                "removedIds":["p-ETH-PERP", 9]}}"#,
        );
        assert_eq!(
            e.payload.positions,
            Some(PositionsUpdate {
                upserts: vec![Position {
                    id: "p-BTC-PERP".into(),
                    market: "BTC-PERP".into(),
                    quantity: d("0.5"),
                    entry_price: Some(d("68000")),
                    realized_pnl: Some(d("12.5")),
                    closed: false,
                }],
                removed_ids: vec!["p-ETH-PERP".into(), "9".into()],
            })
        );
    }

    #[test]
    fn positions_bare_array_is_upserts() {
        let e = env(r#"{"positions":[{"id":"p","marketId":"M","quantity":"1"}]}"#);
        let p = e.payload.positions.unwrap();
        assert_eq!((p.upserts.len(), p.removed_ids.len()), (1, 0));
        assert_eq!(
            env(r#"{"positions":[]}"#).payload.positions,
            Some(PositionsUpdate::default())
        );
        assert_eq!(env(r#"{}"#).payload.positions, None);
        assert_eq!(env(r#"{"positions":null}"#).payload.positions, None);
        let e = env(r#"{"positions":"x"}"#);
        assert_eq!((e.payload.positions, e.skipped_items), (None, 1));
    }

    #[test]
    fn position_side_and_sign() {
        let e = env(r#"{"positions":[
                {"id":"a","marketId":"M","side":"LONG","quantity":"1"},
                {"id":"b","marketId":"M","side":"Short","quantity":"1"},
                {"id":"c","marketId":"M","side":"buy","quantity":"2"},
                {"id":"d","marketId":"M","side":"SELL","quantity":2},
                {"id":"e","marketId":"M","side":"short","quantity":"-3"},
                {"id":"f","marketId":"M","side":"long","quantity":"-3"},
                {"id":"g","marketId":"M","quantity":"-4"},
                {"id":"h","marketId":"M","side":"flat","quantity":"0"},
                {"id":"i","marketId":"M","side":"sideways","quantity":"1"}]}"#);
        let got: Vec<_> = e
            .payload
            .positions
            .unwrap()
            .upserts
            .iter()
            .map(|p| (p.id.to_string(), p.quantity))
            .collect();
        let want: Vec<_> = [
            ("a", "1"),
            ("b", "-1"),
            ("c", "2"),
            ("d", "-2"),
            ("e", "-3"),
            ("f", "-3"),
            ("g", "-4"),
            ("h", "0"),
        ]
        .iter()
        .map(|(i, q)| (i.to_string(), d(q)))
        .collect();
        assert_eq!(got, want);
        assert_eq!(e.skipped_items, 1);
    }

    #[test]
    fn position_id_fallbacks_and_avg_price() {
        let e = env(r#"{"positions":[
                {"id":"a","positionId":"x","marketId":"M1","quantity":"1","entryPrice":"10","avgPrice":"11"},
                {"positionId":"b","marketId":"M2","quantity":"1","avgPrice":"11"},
                {"marketId":"M3","quantity":"1"}]}"#);
        let ups = e.payload.positions.unwrap().upserts;
        let got: Vec<_> = ups.iter().map(|p| (p.id.as_str(), p.entry_price)).collect();
        assert_eq!(
            got,
            vec![("a", Some(d("10"))), ("b", Some(d("11"))), ("M3", None)]
        );
    }

    #[test]
    fn position_closed_status_any_case() {
        let e = env(r#"{"positions":[
                {"id":"a","marketId":"M","quantity":"0","status":"CLOSED","realizedPnl":-2.5},
                {"id":"b","marketId":"M","status":"Closed"},
                {"id":"c","marketId":"M","quantity":"1","status":"open"}]}"#);
        let ups = e.payload.positions.unwrap().upserts;
        let got: Vec<_> = ups.iter().map(|p| (p.closed, p.quantity)).collect();
        assert_eq!(got, vec![(true, d("0")), (true, d("0")), (false, d("1"))]);
        assert_eq!(ups[0].realized_pnl, Some(d("-2.5")));
    }

    #[test]
    fn unreadable_positions_are_skipped() {
        let e = env(r#"{"positions":{"upserts":[
                {"id":"a","quantity":"1"},
                {"id":"b","marketId":"","quantity":"1"},
                {"id":"c","marketId":"M"},
                {"id":"d","marketId":"M","quantity":"x"},
                7,
                {"id":"ok","marketId":"M","quantity":"1"}],
                "removedIds":["r", null, {"x":1}]}}"#);
        assert_eq!(e.skipped_items, 7);
        let p = e.payload.positions.unwrap();
        assert_eq!(p.upserts.len(), 1);
        assert_eq!(p.removed_ids, vec!["r".to_string()]);
    }

    // ---- book ----

    #[test]
    fn orderbook_object_levels_with_zero_size_kept() {
        let e = env(r#"{"orderbook":{"marketId":"BTC-PERP",
                "bids":[{"price":"68200.0","size":"1.2","total":"1.2"},{"price":"68199","size":"0"}],
                "asks":[{"price":"68201.0","size":"0.8","total":"0.8"}]}}"#);
        assert_eq!(
            e.payload.book,
            Some(BookUpdate {
                market: Some("BTC-PERP".into()),
                bids: vec![(d("68200.0"), d("1.2")), (d("68199"), d("0"))],
                asks: vec![(d("68201.0"), d("0.8"))],
            })
        );
    }

    #[test]
    fn book_alias_and_array_levels() {
        let e = env(r#"{"book":{"bids":[["100","1"],[99.5,2,"extra"]],"asks":[]}}"#);
        let b = e.payload.book.unwrap();
        assert_eq!(b.market, None);
        assert_eq!(b.bids, vec![(d("100"), d("1")), (d("99.5"), d("2"))]);
        // `orderbook` wins when both are present.
        let e = env(r#"{"book":{"marketId":"B"},"orderbook":{"marketId":"A"}}"#);
        assert_eq!(e.payload.book.unwrap().market.as_deref(), Some("A"));
    }

    #[test]
    fn unreadable_levels_are_skipped() {
        let e = env(
            r#"{"orderbook":{"bids":[["1"],{"price":"1"},"x",["a","1"],["1","-2"],["2","1"]],
                "asks":{"not":"a list"}}}"#,
        );
        assert_eq!(e.skipped_items, 6);
        assert_eq!(e.payload.book.unwrap().bids, vec![(d("2"), d("1"))]);
    }
}
