//! Tests of the fold rules documented on [`crate::state`], one rule per test.

use super::*;
use crate::model::{BookUpdate, Liquidity, Position, PositionsUpdate, Side};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn trade(id: Option<&str>, market: &str, side: Side, price: &str, qty: &str) -> Trade {
    Trade {
        id: id.map(Into::into),
        market: market.into(),
        side,
        liquidity: Liquidity::Maker,
        price: d(price),
        quantity: d(qty),
        created_at_ms: Some(1_000),
    }
}

fn trade_at(id: Option<&str>, market: &str, at: Option<i64>) -> Trade {
    Trade {
        created_at_ms: at,
        ..trade(id, market, Side::Buy, "1", "1")
    }
}

fn trades(ts: Vec<Trade>) -> Payload {
    Payload {
        trades: ts,
        ..Payload::default()
    }
}

fn pos(id: &str, market: &str, qty: &str, entry: Option<&str>, realized: Option<&str>) -> Position {
    Position {
        id: id.into(),
        market: market.into(),
        quantity: d(qty),
        entry_price: entry.map(d),
        realized_pnl: realized.map(d),
        closed: false,
    }
}

fn positions(upserts: Vec<Position>, removed: &[&str]) -> Payload {
    Payload {
        positions: Some(PositionsUpdate {
            upserts,
            removed_ids: removed.iter().map(|s| s.to_string()).collect(),
        }),
        ..Payload::default()
    }
}

fn book(market: Option<&str>, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> Payload {
    let lv = |l: &[(&str, &str)]| l.iter().map(|(p, s)| (d(p), d(s))).collect();
    Payload {
        book: Some(BookUpdate {
            market: market.map(str::to_owned),
            bids: lv(bids),
            asks: lv(asks),
        }),
        ..Payload::default()
    }
}

fn realized(acc: &Account, market: &str) -> (Decimal, Decimal) {
    acc.realized_totals()
        .get(market)
        .map_or((Decimal::ZERO, Decimal::ZERO), |r| (r.profit, r.loss))
}

fn key(market: &str, side: Side) -> FillKey {
    FillKey {
        market: market.into(),
        side,
        liquidity: Liquidity::Maker,
    }
}

// ---- fills and dedup ----

#[test]
fn unknown_liquidity_is_counted_under_its_own_key() {
    let mut acc = Account::new(100);
    let t = |id, liquidity| Trade {
        liquidity,
        ..trade(Some(id), "BTC-PERP", Side::Sell, "10", "2")
    };
    let a = acc.apply_delta(
        Scope::User,
        &trades(vec![
            t("u1", Liquidity::Unknown),
            t("m1", Liquidity::Maker),
            t("u2", Liquidity::Unknown),
        ]),
    );
    let got: Vec<_> = a.fills.iter().map(|f| f.liquidity).collect();
    assert_eq!(
        got,
        vec![Liquidity::Unknown, Liquidity::Maker, Liquidity::Unknown]
    );
    let unknown = FillKey {
        market: "BTC-PERP".into(),
        side: Side::Sell,
        liquidity: Liquidity::Unknown,
    };
    let totals = &acc.fill_totals()[&unknown];
    assert_eq!((totals.count, totals.notional), (2, d("40")));
    assert_eq!(acc.fill_totals()[&key("BTC-PERP", Side::Sell)].count, 1);
    // Replayed, it is a duplicate like any other trade.
    let a = acc.apply_delta(Scope::User, &trades(vec![t("u1", Liquidity::Unknown)]));
    assert_eq!((a.fills.len(), a.dedup_duplicate), (0, 1));
    let s = acc.summary();
    let labels: Vec<_> = s.fills.iter().map(|f| (f.liquidity, f.count)).collect();
    assert_eq!(labels, vec![("maker", 1), ("unknown", 2)]);
}

#[test]
fn snapshot_trades_are_counted_when_new() {
    let mut acc = Account::new(100);
    let a = acc.apply_snapshot(
        Scope::User,
        &trades(vec![trade(Some("t1"), "BTC-PERP", Side::Buy, "100", "2")]),
    );
    assert_eq!(a.fills.len(), 1);
    assert_eq!(&*a.fills[0].market, "BTC-PERP");
    assert_eq!(a.dedup_snapshot_replay, 0);
    let t = &acc.fill_totals()[&key("BTC-PERP", Side::Buy)];
    assert_eq!((t.count, t.quantity, t.notional), (1, d("2"), d("200")));
}

#[test]
fn resnapshot_repeating_trades_counts_them_once() {
    let mut acc = Account::new(100);
    let t1 = trade(Some("t1"), "BTC-PERP", Side::Buy, "100", "1");
    let t2 = trade(Some("t2"), "BTC-PERP", Side::Sell, "101", "1");
    acc.apply_snapshot(Scope::User, &trades(vec![t1.clone()]));
    acc.apply_delta(Scope::User, &trades(vec![t2.clone()]));
    // Reconnect: the new snapshot repeats both and adds t3, made while disconnected.
    let t3 = trade(Some("t3"), "BTC-PERP", Side::Buy, "99", "3");
    let a = acc.apply_snapshot(Scope::User, &trades(vec![t1, t2, t3]));
    assert_eq!(a.dedup_snapshot_replay, 2);
    assert_eq!(a.dedup_duplicate, 0);
    assert_eq!(a.fills.len(), 1);
    assert_eq!(a.fills[0].quantity, d("3"));
    let t = &acc.fill_totals()[&key("BTC-PERP", Side::Buy)];
    assert_eq!((t.count, t.quantity), (2, d("4")));
}

#[test]
fn delta_repeating_a_trade_is_a_duplicate() {
    let mut acc = Account::new(100);
    let t1 = trade(Some("t1"), "BTC-PERP", Side::Buy, "100", "1");
    acc.apply_delta(Scope::User, &trades(vec![t1.clone()]));
    let a = acc.apply_delta(Scope::User, &trades(vec![t1]));
    assert_eq!(
        (a.fills.len(), a.dedup_duplicate, a.dedup_snapshot_replay),
        (0, 1, 0)
    );
}

#[test]
fn trade_repeated_within_one_event_is_a_duplicate_even_in_a_snapshot() {
    let mut acc = Account::new(100);
    let t1 = trade(Some("t1"), "BTC-PERP", Side::Buy, "100", "1");
    let a = acc.apply_snapshot(Scope::User, &trades(vec![t1.clone(), t1]));
    assert_eq!(
        (a.fills.len(), a.dedup_duplicate, a.dedup_snapshot_replay),
        (1, 1, 0)
    );
}

#[test]
fn trades_without_id_dedup_on_normalized_content() {
    let mut acc = Account::new(100);
    acc.apply_delta(
        Scope::User,
        &trades(vec![trade(None, "BTC-PERP", Side::Buy, "100.50", "1.0")]),
    );
    let a = acc.apply_snapshot(
        Scope::User,
        &trades(vec![
            trade(None, "BTC-PERP", Side::Buy, "100.5", "1"),
            // Different side: a different trade.
            trade(None, "BTC-PERP", Side::Sell, "100.5", "1"),
        ]),
    );
    assert_eq!((a.fills.len(), a.dedup_snapshot_replay), (1, 1));
    assert_eq!(a.fills[0].side, Side::Sell);
}

#[test]
fn dedup_memory_is_bounded_and_forgets_oldest_first() {
    let mut acc = Account::new(2);
    let t = |id| trade(Some(id), "BTC-PERP", Side::Buy, "1", "1");
    acc.apply_delta(Scope::User, &trades(vec![t("a"), t("b"), t("c")]));
    assert_eq!(acc.remembered_trades(), 2);
    // "b" and "c" are remembered; "a" was evicted and so is counted again.
    let a = acc.apply_snapshot(Scope::User, &trades(vec![t("b"), t("c"), t("a")]));
    assert_eq!((a.fills.len(), a.dedup_snapshot_replay), (1, 2));
    assert_eq!(acc.fill_totals()[&key("BTC-PERP", Side::Buy)].count, 4);
}

#[test]
fn notional_is_exact() {
    let mut acc = Account::new(100);
    acc.apply_delta(
        Scope::User,
        &trades(vec![
            trade(Some("a"), "ETH-PERP", Side::Sell, "0.1", "0.3"),
            trade(Some("b"), "ETH-PERP", Side::Sell, "0.2", "0.3"),
        ]),
    );
    let t = &acc.fill_totals()[&key("ETH-PERP", Side::Sell)];
    assert_eq!(t.notional, d("0.09"));
    assert_eq!(t.quantity, d("0.6"));
}

// ---- scope ----

#[test]
fn market_scope_applies_only_the_book() {
    let mut acc = Account::new(100);
    let mut p = book(Some("BTC-PERP"), &[("100", "1")], &[("101", "1")]);
    p.trades = vec![trade(Some("t1"), "BTC-PERP", Side::Buy, "100", "1")];
    p.positions = positions(vec![pos("p1", "BTC-PERP", "1", None, Some("5"))], &[]).positions;
    let a = acc.apply_snapshot(Scope::Market("BTC-PERP"), &p);
    assert!(a.fills.is_empty() && a.position_markets.is_empty());
    assert_eq!(a.book_markets, vec!["BTC-PERP".to_string()]);
    assert!(acc.fill_totals().is_empty());
    assert_eq!(acc.market_position("BTC-PERP"), None);
    // The trade was not remembered either: the user stream still counts it.
    let a = acc.apply_delta(Scope::User, &p);
    assert_eq!(a.fills.len(), 1);
}

#[test]
fn user_scope_ignores_the_book() {
    let mut acc = Account::new(100);
    let a = acc.apply_snapshot(Scope::User, &book(Some("BTC-PERP"), &[("100", "1")], &[]));
    assert!(a.book_markets.is_empty());
    assert!(acc.book("BTC-PERP").is_none());
    assert_eq!(acc.markets().count(), 0);
}

// ---- positions ----

#[test]
fn upsert_replaces_and_removed_ids_delete() {
    let mut acc = Account::new(100);
    acc.apply_delta(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "1", Some("100"), None)], &[]),
    );
    let a = acc.apply_delta(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "-2", Some("110"), None)], &[]),
    );
    assert_eq!(a.position_markets, vec!["BTC-PERP".to_string()]);
    let mp = acc.market_position("BTC-PERP").unwrap();
    assert_eq!((mp.quantity, mp.entry_price), (d("-2"), Some(d("110"))));
    let a = acc.apply_delta(Scope::User, &positions(vec![], &["p1"]));
    assert_eq!(a.position_markets, vec!["BTC-PERP".to_string()]);
    assert_eq!(acc.market_position("BTC-PERP"), None);
    assert_eq!(acc.open_positions(), 0);
    // Still listed for metric cleanup.
    assert_eq!(acc.markets().collect::<Vec<_>>(), vec!["BTC-PERP"]);
}

#[test]
fn unchanged_upsert_reports_no_position_change() {
    let mut acc = Account::new(100);
    let p = positions(vec![pos("p1", "BTC-PERP", "1", Some("100"), None)], &[]);
    acc.apply_delta(Scope::User, &p);
    let a = acc.apply_delta(Scope::User, &p);
    assert!(a.position_markets.is_empty());
}

#[test]
fn snapshot_replaces_the_whole_set() {
    let mut acc = Account::new(100);
    acc.apply_snapshot(
        Scope::User,
        &positions(
            vec![
                pos("p1", "BTC-PERP", "1", None, None),
                pos("p2", "ETH-PERP", "5", None, None),
            ],
            &[],
        ),
    );
    assert_eq!(acc.open_positions(), 2);
    let mut a = acc.apply_snapshot(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "1", None, None)], &[]),
    );
    assert_eq!(acc.open_positions(), 1);
    assert_eq!(acc.market_position("ETH-PERP"), None);
    a.position_markets.sort();
    assert_eq!(a.position_markets, vec!["ETH-PERP".to_string()]);
}

#[test]
fn snapshot_without_positions_key_leaves_positions_alone() {
    let mut acc = Account::new(100);
    acc.apply_delta(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "1", None, None)], &[]),
    );
    acc.apply_snapshot(Scope::User, &Payload::default());
    assert_eq!(acc.open_positions(), 1);
}

#[test]
fn market_position_aggregates_signed_quantity_weighted_entry_and_realized() {
    let mut acc = Account::new(100);
    acc.apply_delta(
        Scope::User,
        &positions(
            vec![
                pos("a", "BTC-PERP", "3", Some("100"), Some("1.5")),
                pos("b", "BTC-PERP", "-1", Some("120"), Some("-0.5")),
                // Zero quantity: no weight in the entry price.
                pos("c", "BTC-PERP", "0", Some("999"), None),
            ],
            &[],
        ),
    );
    let mp = acc.market_position("BTC-PERP").unwrap();
    assert_eq!(mp.quantity, d("2"));
    // (3*100 + 1*120) / 4
    assert_eq!(mp.entry_price, Some(d("105")));
    assert_eq!(mp.realized_pnl, d("1"));
    assert_eq!(acc.open_positions(), 2);
}

#[test]
fn closed_upsert_keeps_the_id_and_its_realized_baseline_until_removed() {
    let mut acc = Account::new(100);
    acc.apply_snapshot(
        Scope::User,
        &positions(
            vec![pos("p1", "BTC-PERP", "1", Some("100"), Some("10"))],
            &[],
        ),
    );
    let mut closed = pos("p1", "BTC-PERP", "0", Some("100"), Some("12"));
    closed.closed = true;
    let a = acc.apply_delta(Scope::User, &positions(vec![closed.clone()], &[]));
    assert_eq!(a.realized_markets, vec!["BTC-PERP".to_string()]);
    assert_eq!(realized(&acc, "BTC-PERP"), (d("2"), d("0")));
    assert_eq!(acc.open_positions(), 0);
    // Still known: a repeat of the closed upsert changes nothing.
    let a = acc.apply_delta(Scope::User, &positions(vec![closed], &[]));
    assert!(a.realized_markets.is_empty());
    assert!(acc.summary().positions["p1"].closed);
    let a = acc.apply_delta(Scope::User, &positions(vec![], &["p1"]));
    assert!(a.realized_markets.is_empty());
    assert_eq!(a.position_markets, vec!["BTC-PERP".to_string()]);
    assert_eq!(realized(&acc, "BTC-PERP"), (d("2"), d("0")));
}

#[test]
fn position_moving_market_updates_both() {
    let mut acc = Account::new(100);
    acc.apply_delta(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "1", None, None)], &[]),
    );
    let mut a = acc.apply_delta(
        Scope::User,
        &positions(vec![pos("p1", "ETH-PERP", "1", None, None)], &[]),
    );
    a.position_markets.sort();
    assert_eq!(
        a.position_markets,
        vec!["BTC-PERP".to_string(), "ETH-PERP".to_string()]
    );
    assert_eq!(acc.market_position("BTC-PERP"), None);
    assert_eq!(acc.open_positions(), 1);
}

// ---- realized pnl ----

#[test]
fn first_snapshot_is_the_realized_baseline() {
    let mut acc = Account::new(100);
    let a = acc.apply_snapshot(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "1", None, Some("50"))], &[]),
    );
    assert!(a.realized_markets.is_empty());
    assert!(acc.realized_totals().is_empty());
    acc.apply_delta(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "1", None, Some("53"))], &[]),
    );
    acc.apply_delta(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "1", None, Some("51.5"))], &[]),
    );
    assert_eq!(realized(&acc, "BTC-PERP"), (d("3"), d("1.5")));
}

#[test]
fn baseline_position_without_realized_takes_its_first_report_as_baseline() {
    let mut acc = Account::new(100);
    acc.apply_snapshot(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "1", None, None)], &[]),
    );
    acc.apply_delta(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "1", None, Some("40"))], &[]),
    );
    assert!(acc.realized_totals().is_empty());
    // And an upsert without realizedPnl keeps the baseline.
    acc.apply_delta(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "1", None, None)], &[]),
    );
    acc.apply_delta(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "1", None, Some("41"))], &[]),
    );
    assert_eq!(realized(&acc, "BTC-PERP"), (d("1"), d("0")));
}

#[test]
fn ids_first_seen_in_a_delta_count_from_zero() {
    let mut acc = Account::new(100);
    acc.apply_snapshot(Scope::User, &positions(vec![], &[]));
    let a = acc.apply_delta(
        Scope::User,
        &positions(vec![pos("p1", "ETH-PERP", "1", None, Some("-4"))], &[]),
    );
    assert_eq!(a.realized_markets, vec!["ETH-PERP".to_string()]);
    assert_eq!(realized(&acc, "ETH-PERP"), (d("0"), d("4")));
}

#[test]
fn ids_first_seen_in_a_later_snapshot_count_from_zero() {
    let mut acc = Account::new(100);
    acc.apply_snapshot(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "1", None, Some("10"))], &[]),
    );
    // Reconnect: p1 realized 2 more, p2 opened and realized 7 while we were away.
    acc.apply_snapshot(
        Scope::User,
        &positions(
            vec![
                pos("p1", "BTC-PERP", "1", None, Some("12")),
                pos("p2", "ETH-PERP", "1", None, Some("7")),
            ],
            &[],
        ),
    );
    assert_eq!(realized(&acc, "BTC-PERP"), (d("2"), d("0")));
    assert_eq!(realized(&acc, "ETH-PERP"), (d("7"), d("0")));
}

#[test]
fn removal_counts_nothing_and_a_reappearing_id_counts_from_zero() {
    let mut acc = Account::new(100);
    acc.apply_snapshot(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "1", None, Some("10"))], &[]),
    );
    acc.apply_delta(Scope::User, &positions(vec![], &["p1"]));
    assert!(acc.realized_totals().is_empty());
    acc.apply_delta(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "1", None, Some("3"))], &[]),
    );
    assert_eq!(realized(&acc, "BTC-PERP"), (d("3"), d("0")));
}

#[test]
fn snapshot_removal_counts_nothing() {
    let mut acc = Account::new(100);
    acc.apply_snapshot(
        Scope::User,
        &positions(vec![pos("p1", "BTC-PERP", "1", None, Some("10"))], &[]),
    );
    let a = acc.apply_snapshot(Scope::User, &positions(vec![], &[]));
    assert!(a.realized_markets.is_empty());
    assert!(acc.realized_totals().is_empty());
    assert_eq!(a.position_markets, vec!["BTC-PERP".to_string()]);
}

// ---- books ----

#[test]
fn book_snapshot_replaces_and_delta_zero_size_removes() {
    let mut acc = Account::new(100);
    let scope = Scope::Market("BTC-PERP");
    acc.apply_snapshot(
        scope,
        &book(
            None,
            &[("100", "1"), ("99", "2")],
            &[("101", "1"), ("102", "5")],
        ),
    );
    let b = acc.book("BTC-PERP").unwrap();
    assert_eq!(
        (b.best_bid(), b.best_ask(), b.mid()),
        (Some(d("100")), Some(d("101")), Some(d("100.5")))
    );
    let a = acc.apply_delta(scope, &book(None, &[("100", "0")], &[("100.5", "3")]));
    assert_eq!(a.book_markets, vec!["BTC-PERP".to_string()]);
    let b = acc.book("BTC-PERP").unwrap();
    assert_eq!(
        (b.best_bid(), b.best_ask()),
        (Some(d("99")), Some(d("100.5")))
    );
    assert_eq!((b.levels(true), b.levels(false)), (1, 3));
    // A new snapshot replaces everything, including levels the delta added.
    acc.apply_snapshot(scope, &book(None, &[("98", "1")], &[]));
    let b = acc.book("BTC-PERP").unwrap();
    assert_eq!((b.levels(true), b.levels(false), b.mid()), (1, 0, None));
    // Removing a level that is not there is no change.
    let a = acc.apply_delta(scope, &book(None, &[("50", "0")], &[]));
    assert!(a.book_markets.is_empty());
}

#[test]
fn book_market_comes_from_the_payload_else_the_scope() {
    let mut acc = Account::new(100);
    acc.apply_snapshot(
        Scope::Market("BTC-PERP"),
        &book(Some("ETH-PERP"), &[("1", "1")], &[]),
    );
    assert!(acc.book("ETH-PERP").is_some());
    assert!(acc.book("BTC-PERP").is_none());
}

#[test]
fn delta_before_any_book_snapshot_starts_a_book() {
    let mut acc = Account::new(100);
    acc.apply_delta(
        Scope::Market("BTC-PERP"),
        &book(None, &[("1", "1"), ("2", "0")], &[]),
    );
    assert_eq!(acc.book("BTC-PERP").unwrap().levels(true), 1);
}

// ---- markets and summary ----

#[test]
fn markets_lists_every_market_seen_anywhere() {
    let mut acc = Account::new(100);
    acc.apply_delta(
        Scope::User,
        &trades(vec![trade(Some("t"), "SOL-PERP", Side::Buy, "1", "1")]),
    );
    acc.apply_delta(
        Scope::User,
        &positions(vec![pos("p", "ETH-PERP", "1", None, None)], &[]),
    );
    acc.apply_delta(Scope::Market("BTC-PERP"), &book(None, &[("1", "1")], &[]));
    acc.apply_delta(Scope::User, &positions(vec![], &["p"]));
    assert_eq!(
        acc.markets().collect::<Vec<_>>(),
        vec!["BTC-PERP", "ETH-PERP", "SOL-PERP"]
    );
}

#[test]
fn summary_is_normalized_and_deterministic() {
    let mut acc = Account::new(100);
    acc.apply_delta(
        Scope::User,
        &trades(vec![trade(
            Some("t"),
            "BTC-PERP",
            Side::Buy,
            "100.50",
            "2.000",
        )]),
    );
    acc.apply_delta(
        Scope::User,
        &positions(
            vec![pos("p", "BTC-PERP", "-0.50", Some("100.0"), Some("-0"))],
            &[],
        ),
    );
    let s = acc.summary();
    assert_eq!(s.fills[0].notional, "201");
    assert_eq!(s.fills[0].quantity, "2");
    assert_eq!(s.positions["p"].quantity, "-0.5");
    assert_eq!(s.positions["p"].realized_pnl.as_deref(), Some("0"));
    assert_eq!(
        s.market_positions["BTC-PERP"].entry_price.as_deref(),
        Some("100")
    );
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(json, serde_json::to_string(&acc.summary()).unwrap());
}

// ---- reconciliation with REST ----

#[test]
fn recovered_trades_count_once_and_a_later_snapshot_replays_them() {
    let mut acc = Account::new(100);
    let t = |id| trade(Some(id), "BTC-PERP", Side::Buy, "100", "1");
    acc.apply_snapshot(Scope::User, &trades(vec![t("t1")]));
    assert!(acc.has_seen(&t("t1")) && !acc.has_seen(&t("t2")));
    // REST repeats t1 (known) and lists t2 twice: only t2 is new, no dedup counter moves.
    let a = acc.apply_recovered(&[t("t1"), t("t2"), t("t2")]);
    assert_eq!(
        a,
        Applied {
            fills: vec![Fill::from(&t("t2"))],
            // t2 is the second trade listed.
            fill_trades: vec![1],
            ..Applied::default()
        }
    );
    assert!(acc.has_seen(&t("t2")));
    assert_eq!(acc.apply_recovered(&[t("t1"), t("t2")]), Applied::default());
    // The stream catches up: a replay and a duplicate, not a second count.
    let a = acc.apply_snapshot(Scope::User, &trades(vec![t("t1"), t("t2"), t("t3")]));
    assert_eq!(
        (a.fills.len(), a.dedup_snapshot_replay, a.dedup_duplicate),
        (1, 2, 0)
    );
    let a = acc.apply_delta(Scope::User, &trades(vec![t("t2")]));
    assert_eq!((a.fills.len(), a.dedup_duplicate), (0, 1));
    let totals = &acc.fill_totals()[&key("BTC-PERP", Side::Buy)];
    assert_eq!((totals.count, totals.notional), (3, d("300")));
}

#[test]
fn recovered_trades_are_counted_like_stream_fills() {
    let mut acc = Account::new(100);
    let a = acc.apply_recovered(&[trade(None, "SOL-PERP", Side::Sell, "20.50", "2")]);
    assert_eq!(&*a.fills[0].market, "SOL-PERP");
    let totals = &acc.fill_totals()[&key("SOL-PERP", Side::Sell)];
    assert_eq!((totals.count, totals.notional), (1, d("41")));
    assert_eq!(acc.markets().collect::<Vec<_>>(), vec!["SOL-PERP"]);
    // Content keys are normalized for `has_seen` too.
    assert!(acc.has_seen(&trade(None, "SOL-PERP", Side::Sell, "20.5", "2.0")));
}

#[test]
fn recovered_trades_are_never_unlisted_stream_trades() {
    let mut acc = Account::new(100);
    acc.apply_delta(
        Scope::User,
        &trades(vec![trade_at(Some("s1"), "STREAM", Some(100))]),
    );
    acc.apply_recovered(&[trade_at(Some("r1"), "RECOVERED", Some(150))]);
    // The stream repeats the recovered trade later: still not stream-delivered.
    let a = acc.apply_snapshot(
        Scope::User,
        &trades(vec![trade_at(Some("r1"), "RECOVERED", Some(150))]),
    );
    assert_eq!(a.dedup_snapshot_replay, 1);
    let rest = [
        trade_at(Some("x"), "X", Some(100)),
        trade_at(Some("y"), "X", Some(200)),
    ];
    assert_eq!(
        acc.unlisted_stream_trades(&rest),
        vec!["STREAM".to_string()]
    );
}

#[test]
fn unlisted_window_is_rest_created_at_span_inclusive() {
    let mut acc = Account::new(100);
    acc.apply_delta(
        Scope::User,
        &trades(vec![
            trade_at(Some("a"), "AT-99", Some(99)),
            trade_at(Some("b"), "AT-100", Some(100)),
            trade_at(Some("c"), "AT-150", Some(150)),
            trade_at(Some("d"), "AT-200", Some(200)),
            trade_at(Some("e"), "AT-201", Some(201)),
            trade_at(Some("f"), "UNDATED", None),
            trade_at(Some("g"), "LISTED", Some(160)),
            trade_at(None, "LISTED-BY-CONTENT", Some(170)),
            trade_at(Some("h"), "LISTED-UNDATED", Some(180)),
        ]),
    );
    let rest = [
        // Listed out of order: the span is min..=max whatever the order.
        trade_at(Some("r2"), "X", Some(200)),
        trade_at(Some("g"), "LISTED", Some(160)),
        trade_at(None, "LISTED-BY-CONTENT", Some(170)),
        // Without createdAt it widens nothing but still lists its key.
        trade_at(Some("h"), "LISTED-UNDATED", None),
        trade_at(Some("r3"), "X", None),
        trade_at(Some("r1"), "X", Some(100)),
    ];
    assert_eq!(
        acc.unlisted_stream_trades(&rest),
        vec!["AT-100", "AT-150", "AT-200"]
    );
}

#[test]
fn rest_without_created_at_judges_nothing() {
    let mut acc = Account::new(100);
    acc.apply_delta(
        Scope::User,
        &trades(vec![trade_at(Some("a"), "M", Some(100))]),
    );
    assert!(acc.unlisted_stream_trades(&[]).is_empty());
    assert!(
        acc.unlisted_stream_trades(&[trade_at(Some("x"), "M", None)])
            .is_empty()
    );
    // Not reported above, so still reportable.
    let rest = [trade_at(Some("x"), "M", Some(100))];
    assert_eq!(acc.unlisted_stream_trades(&rest), vec!["M"]);
}

#[test]
fn each_unlisted_trade_is_reported_once() {
    let mut acc = Account::new(100);
    acc.apply_snapshot(
        Scope::User,
        &trades(vec![
            trade_at(Some("a"), "BTC-PERP", Some(100)),
            trade_at(Some("b"), "BTC-PERP", Some(110)),
        ]),
    );
    let rest = [
        trade_at(Some("x"), "X", Some(0)),
        trade_at(Some("y"), "X", Some(1_000)),
    ];
    assert_eq!(
        acc.unlisted_stream_trades(&rest),
        vec!["BTC-PERP", "BTC-PERP"]
    );
    assert!(acc.unlisted_stream_trades(&rest).is_empty());
    acc.apply_delta(
        Scope::User,
        &trades(vec![trade_at(Some("c"), "ETH-PERP", Some(120))]),
    );
    assert_eq!(acc.unlisted_stream_trades(&rest), vec!["ETH-PERP"]);
}

#[test]
fn a_trade_kept_twice_is_reported_once() {
    // Dedup capacity 1 forgets "a" once "b" arrives, so a replay of "a" is kept a second time.
    let mut acc = Account::new(1);
    let a = trade_at(Some("a"), "M", Some(100));
    acc.apply_delta(
        Scope::User,
        &trades(vec![a.clone(), trade_at(Some("b"), "M", Some(5))]),
    );
    let rest = [
        trade_at(Some("x"), "X", Some(50)),
        trade_at(Some("y"), "X", Some(150)),
    ];
    assert_eq!(acc.unlisted_stream_trades(&rest), vec!["M"]);
    acc.apply_delta(Scope::User, &trades(vec![a.clone(), a]));
    assert_eq!(acc.stream_trades.len(), 3);
    assert!(acc.unlisted_stream_trades(&rest).is_empty());
}

#[test]
fn stream_trade_memory_keeps_the_last_ten_thousand() {
    let mut acc = Account::new(20_000);
    let n = fills::STREAM_TRADES_KEPT as i64;
    let batch: Vec<Trade> = (0..=n)
        .map(|i| trade_at(Some(&format!("t{i}")), "M", Some(i)))
        .collect();
    acc.apply_delta(Scope::User, &trades(batch));
    assert_eq!(acc.stream_trades.len(), fills::STREAM_TRADES_KEPT);
    // The trade at 0 is forgotten: not judged although inside the span.
    let rest = [
        trade_at(Some("x"), "X", Some(0)),
        trade_at(Some("y"), "X", Some(n)),
    ];
    assert_eq!(
        acc.unlisted_stream_trades(&rest).len(),
        fills::STREAM_TRADES_KEPT
    );
    // Reported flags go with their entries: the memory does not grow.
    acc.apply_delta(
        Scope::User,
        &trades(vec![trade_at(Some("new"), "N", Some(n))]),
    );
    assert_eq!(acc.stream_trades.len(), fills::STREAM_TRADES_KEPT);
    assert_eq!(acc.unlisted_stream_trades(&rest), vec!["N"]);
}

#[test]
fn dedup_memory_bounds_recovered_trades_too() {
    let mut acc = Account::new(2);
    let t = |id| trade(Some(id), "BTC-PERP", Side::Buy, "1", "1");
    assert_eq!(
        acc.apply_recovered(&[t("a"), t("b"), t("c")]).fills.len(),
        3
    );
    assert_eq!(acc.remembered_trades(), 2);
    assert!(!acc.has_seen(&t("a")));
    // Forgotten, so counted again: the capacity must cover what REST lists.
    assert_eq!(acc.apply_recovered(&[t("a")]).fills.len(), 1);
}

#[test]
fn watch_start_is_the_first_user_snapshot_trades_minimum() {
    let mut acc = Account::new(100);
    assert_eq!(acc.watch_start_ms(), None);
    acc.apply_delta(
        Scope::User,
        &trades(vec![trade_at(Some("d"), "M", Some(10))]),
    );
    acc.apply_snapshot(
        Scope::Market("M"),
        &trades(vec![trade_at(Some("m"), "M", Some(20))]),
    );
    acc.apply_snapshot(Scope::User, &trades(vec![trade_at(Some("u"), "M", None)]));
    acc.apply_snapshot(Scope::User, &Payload::default());
    acc.apply_recovered(&[trade_at(Some("r"), "M", Some(30))]);
    assert_eq!(acc.watch_start_ms(), None);
    acc.apply_snapshot(
        Scope::User,
        &trades(vec![
            trade_at(Some("a"), "M", Some(500)),
            trade_at(Some("b"), "M", None),
            trade_at(Some("c"), "M", Some(300)),
            // Already counted: still part of what the snapshot shows.
            trade_at(Some("d"), "M", Some(10)),
        ]),
    );
    assert_eq!(acc.watch_start_ms(), Some(10));
    acc.apply_snapshot(
        Scope::User,
        &trades(vec![trade_at(Some("e"), "M", Some(1))]),
    );
    acc.note_watch_start(0);
    assert_eq!(acc.watch_start_ms(), Some(10));
}

#[test]
fn note_watch_start_sets_only_while_unset() {
    let mut acc = Account::new(100);
    acc.note_watch_start(1_000);
    assert_eq!(acc.watch_start_ms(), Some(1_000));
    acc.note_watch_start(5);
    acc.apply_snapshot(
        Scope::User,
        &trades(vec![trade_at(Some("a"), "M", Some(5))]),
    );
    assert_eq!(acc.watch_start_ms(), Some(1_000));
}

#[test]
fn positions_by_market_sums_signed_quantities_like_the_account() {
    let mut closed = pos("p3", "ETH-PERP", "0.5", None, None);
    closed.closed = true;
    let list = vec![
        pos("p1", "BTC-PERP", "1", Some("100"), None),
        pos("p2", "BTC-PERP", "-3", None, None),
        closed,
        pos("p4", "SOL-PERP", "0", None, None),
        // Listed again: the last listing wins, as an upsert would.
        pos("p1", "BTC-PERP", "1.5", None, None),
        pos("p5", "ETH-PERP", "-0.25", None, None),
    ];
    let by_market = positions_by_market(&list);
    let want: BTreeMap<String, Decimal> = [
        ("BTC-PERP", d("-1.5")),
        ("ETH-PERP", d("0.25")),
        ("SOL-PERP", d("0")),
    ]
    .into_iter()
    .map(|(m, q)| (m.to_string(), q))
    .collect();
    assert_eq!(by_market, want);
    let mut acc = Account::new(100);
    acc.apply_snapshot(Scope::User, &positions(list, &[]));
    for (m, q) in &by_market {
        assert_eq!(acc.market_position(m).unwrap().quantity, *q, "{m}");
    }
    assert!(positions_by_market(&[]).is_empty());
}

#[test]
fn market_position_is_none_without_positions_and_zero_when_all_flat() {
    let mut acc = Account::new(100);
    assert_eq!(acc.market_position("BTC-PERP"), None);
    let mut closed = pos("p1", "BTC-PERP", "0", Some("100"), Some("3"));
    closed.closed = true;
    acc.apply_delta(Scope::User, &positions(vec![closed], &[]));
    assert_eq!(acc.market_position("BTC-PERP").unwrap().quantity, d("0"));
    acc.apply_delta(Scope::User, &positions(vec![], &["p1"]));
    assert_eq!(acc.market_position("BTC-PERP"), None);
}

proptest::proptest! {
    /// The aggregates and the open count kept up to date per update equal a fresh computation
    /// over every known position, whatever the sequence of snapshots, upserts, moves and
    /// removals.
    #[test]
    fn kept_aggregates_equal_a_fresh_computation(
        steps in proptest::collection::vec(
            (
                proptest::bool::weighted(0.15),
                proptest::collection::vec(
                    (0..6usize, 0..3usize, -3i64..4, proptest::option::of(1u32..5), proptest::bool::weighted(0.2)),
                    0..4,
                ),
                proptest::collection::vec(0..6usize, 0..2),
            ),
            1..12,
        )
    ) {
        let mut acc = Account::new(100);
        for (snapshot, upserts, removed) in steps {
            let ups = upserts
                .iter()
                .map(|&(id, m, q, entry, closed)| Position {
                    closed,
                    ..pos(
                        &format!("p{id}"),
                        &format!("M{m}"),
                        &q.to_string(),
                        entry.map(|e| e.to_string()).as_deref(),
                        Some(&q.to_string()),
                    )
                })
                .collect();
            let removed: Vec<String> = removed.iter().map(|id| format!("p{id}")).collect();
            let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
            let payload = positions(ups, &removed);
            if snapshot {
                acc.apply_snapshot(Scope::User, &payload);
            } else {
                acc.apply_delta(Scope::User, &payload);
            }
            let all: Vec<Position> = acc.positions.all().cloned().collect();
            let open = all.iter().filter(|p| !p.closed && !p.quantity.is_zero()).count();
            proptest::prop_assert_eq!(acc.open_positions(), open);
            for m in 0..3 {
                let market = format!("M{m}");
                let ids: BTreeMap<String, positions::Entry> = all
                    .iter()
                    .filter(|p| p.market == market)
                    .map(|p| (p.id.to_string(), positions::Entry { pos: p.clone(), realized_base: None }))
                    .collect();
                let fresh = (!ids.is_empty()).then(|| positions::aggregate(&ids).0);
                proptest::prop_assert_eq!(acc.market_position(&market), fresh, "{}", market);
            }
        }
    }
}
