//! Restarts without a disk: fold, journal, rebuild from the image, fold again. What a restarted
//! account counts must be what one uninterrupted account would have counted.

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;
use crate::model::{Payload, Position, PositionsUpdate, Trade};
use crate::state::{Account, Scope};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn trade(id: u32, market: &str) -> Trade {
    Trade {
        id: Some(format!("t-{id}").into()),
        market: market.into(),
        side: if id.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        },
        liquidity: if id.is_multiple_of(3) {
            Liquidity::Taker
        } else {
            Liquidity::Maker
        },
        price: d("100.5"),
        quantity: Decimal::from(id % 7 + 1),
        created_at_ms: Some(1_000 + i64::from(id)),
    }
}

fn position(id: &str, market: &str, qty: &str, realized: &str) -> Position {
    Position {
        id: id.into(),
        market: market.into(),
        quantity: d(qty),
        entry_price: Some(d("100")),
        realized_pnl: Some(d(realized)),
        closed: false,
    }
}

fn payload(trades: Vec<Trade>, positions: Option<Vec<Position>>) -> Payload {
    Payload {
        trades,
        positions: positions.map(|upserts| PositionsUpdate {
            upserts,
            removed_ids: vec![],
        }),
        book: None,
    }
}

/// Journals `acc`'s pending changes into `image`, then rebuilds an account from it.
fn restart(acc: &mut Account, image: &mut DurableImage, capacity: usize) -> Account {
    if let Some(j) = acc.take_journal() {
        image.apply_journal(&j);
    }
    let (acc, skipped) = Account::restore(capacity, image.clone());
    assert_eq!(skipped, 0);
    acc
}

fn total_count(acc: &Account) -> u64 {
    acc.fill_totals().values().map(|t| t.count).sum()
}

#[test]
fn a_restart_recounts_nothing_and_counts_what_happened_while_down() {
    let mut image = DurableImage::default();
    let mut a = Account::new(1000);
    a.start_journal();
    let snap = payload(
        vec![trade(1, "BTC"), trade(2, "BTC")],
        Some(vec![position("p1", "BTC", "1", "5")]),
    );
    a.apply_snapshot(Scope::User, &snap);
    a.apply_delta(
        Scope::User,
        &payload(
            vec![trade(3, "ETH")],
            Some(vec![position("p1", "BTC", "2", "7")]),
        ),
    );
    assert_eq!(total_count(&a), 3);
    assert_eq!(a.realized_totals()["BTC"].profit, d("2"));

    let mut b = restart(&mut a, &mut image, 1000);
    // Counters continue: totals and dedup counts are back before any event.
    assert_eq!(total_count(&b), 3);
    assert_eq!(b.realized_totals()["BTC"].profit, d("2"));
    // The first snapshot after the restart repeats 1..=3 and brings 4 (made while down); p1
    // realized 2 more while down; p2 opened while down with 1 realized.
    let applied = b.apply_snapshot(
        Scope::User,
        &payload(
            vec![
                trade(1, "BTC"),
                trade(2, "BTC"),
                trade(3, "ETH"),
                trade(4, "ETH"),
            ],
            Some(vec![
                position("p1", "BTC", "2", "9"),
                position("p2", "ETH", "1", "1"),
            ]),
        ),
    );
    assert_eq!(applied.fills.len(), 1);
    assert_eq!(&*applied.fills[0].market, "ETH");
    assert_eq!(applied.dedup_snapshot_replay, 3);
    assert_eq!(total_count(&b), 4);
    assert_eq!(b.dedup_counts().snapshot_replay, 3);
    assert_eq!(b.realized_totals()["BTC"].profit, d("4"));
    assert_eq!(b.realized_totals()["ETH"].profit, d("1"));

    // And again: a second restart carries the second process's counts too.
    let mut c = restart(&mut b, &mut image, 1000);
    assert_eq!(total_count(&c), 4);
    assert_eq!(c.dedup_counts().snapshot_replay, 3);
    let applied = c.apply_snapshot(
        Scope::User,
        &payload(
            vec![trade(3, "ETH"), trade(4, "ETH")],
            Some(vec![position("p2", "ETH", "1", "1")]),
        ),
    );
    assert!(applied.fills.is_empty());
    assert_eq!(c.dedup_counts().snapshot_replay, 5);
    assert_eq!(
        c.realized_totals()["BTC"].profit,
        d("4"),
        "p1 closed while down: nothing"
    );
    assert_eq!(
        c.watch_start_ms(),
        Some(1_001),
        "the first process's watch start is kept"
    );
}

#[test]
fn before_any_positions_snapshot_a_restart_keeps_the_baseline_rule() {
    let mut image = DurableImage::default();
    let mut a = Account::new(10);
    a.start_journal();
    a.apply_snapshot(Scope::User, &payload(vec![trade(1, "BTC")], None));
    let mut b = restart(&mut a, &mut image, 10);
    // The first positions snapshot the account ever sees is still the baseline.
    let applied = b.apply_snapshot(
        Scope::User,
        &payload(vec![], Some(vec![position("p1", "BTC", "1", "50")])),
    );
    assert!(applied.realized_markets.is_empty());
    assert!(b.realized_totals().is_empty());
}

#[test]
fn a_full_dedup_memory_is_persisted_as_its_newest_keys() {
    let mut image = DurableImage::default();
    let mut a = Account::new(3);
    a.start_journal();
    let trades: Vec<Trade> = (1..=5).map(|i| trade(i, "BTC")).collect();
    a.apply_snapshot(Scope::User, &payload(trades, None));
    let b = restart(&mut a, &mut image, 3);
    let serials: Vec<u64> = image.keys.iter().map(|(s, _)| *s).collect();
    assert_eq!(serials, vec![2, 3, 4]);
    assert_eq!(b.remembered_trades(), 3);
    assert!(b.has_seen(&trade(5, "BTC")));
    assert!(!b.has_seen(&trade(2, "BTC")));
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Op {
    Snapshot(Vec<u32>),
    Delta(Vec<u32>),
    Recovered(Vec<u32>),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let ids = prop::collection::vec(0u32..40, 0..8);
    prop_oneof![
        ids.clone().prop_map(Op::Snapshot),
        ids.clone().prop_map(Op::Delta),
        ids.prop_map(Op::Recovered),
        Just(Op::Restart),
    ]
}

proptest! {
    /// Under any interleaving of snapshots, deltas, REST recoveries and restarts, each distinct
    /// trade is counted exactly once, and every repeat is counted as deduplicated (REST repeats
    /// excepted: a listing repeats known trades by design).
    #[test]
    fn each_distinct_trade_is_counted_once_across_restarts(ops in prop::collection::vec(op(), 1..40)) {
        let mut image = DurableImage::default();
        let mut acc = Account::new(1000);
        acc.start_journal();
        let mut distinct = std::collections::BTreeSet::new();
        let mut repeats_on_stream = 0u64;
        for op in ops {
            match op {
                Op::Snapshot(ids) | Op::Delta(ids) if ids.is_empty() => {}
                Op::Snapshot(ids) => {
                    for id in &ids {
                        if !distinct.insert(*id) { repeats_on_stream += 1; }
                    }
                    let trades = ids.iter().map(|i| trade(*i, "M")).collect();
                    acc.apply_snapshot(Scope::User, &payload(trades, None));
                }
                Op::Delta(ids) => {
                    for id in &ids {
                        if !distinct.insert(*id) { repeats_on_stream += 1; }
                    }
                    let trades = ids.iter().map(|i| trade(*i, "M")).collect();
                    acc.apply_delta(Scope::User, &payload(trades, None));
                }
                Op::Recovered(ids) => {
                    let trades: Vec<Trade> = ids.iter().map(|i| trade(*i, "M")).collect();
                    distinct.extend(ids);
                    acc.apply_recovered(&trades);
                }
                Op::Restart => acc = restart(&mut acc, &mut image, 1000),
            }
        }
        prop_assert_eq!(total_count(&acc), distinct.len() as u64);
        let c = acc.dedup_counts();
        prop_assert_eq!(c.snapshot_replay + c.duplicate, repeats_on_stream);
        // What is on disk agrees with memory.
        let again = restart(&mut acc, &mut image, 1000);
        prop_assert_eq!(total_count(&again), distinct.len() as u64);
    }
}
