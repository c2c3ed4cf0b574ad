//! Series describing one account's state (fills, positions, PnL, books), computed from the fold's
//! [`Applied`] and the state after it.
//!
//! Two kinds of update, because they have different durability:
//! - **live** values (gauges: positions, book, valuation, clocks) are set at once by
//!   [`AccountMetrics::observe_live`];
//! - **counter** values (fills, traded amounts, realized profit/loss, deduplicated trades) are
//!   returned by [`AccountMetrics::counter_updates`] as absolute totals read from the fold, for the
//!   caller to publish once they are durable (`crate::account`). A counter is never shown at a
//!   value a restart could take back, so Prometheus never sees it go down.
//!
//! Markets past `max_markets` fold into the label `other`; counters under `other` are the sums of
//! the fold's exact per-market totals of the markets folded there.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::labels::OTHER;
use super::{Counter, Gauge, LabelFolder, Telemetry, names};
use crate::config::{LimitMap, Limits};
use crate::model::{Liquidity, Side};
use crate::state::{Account, Applied, FillKey, FillTotals};

/// Fill series by `fill_slot(side, liquidity)`.
const SLOTS: usize = 6;

fn fill_slot(side: Side, liquidity: Liquidity) -> usize {
    let l = match liquidity {
        Liquidity::Maker => 0,
        Liquidity::Taker => 1,
        Liquidity::Unknown => 2,
    };
    (matches!(side, Side::Sell) as usize) * 3 + l
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

#[derive(Clone)]
struct FillHandles {
    count: Counter,
    quantity: Counter,
    notional: Counter,
}

/// The series of one market label, registered on first use.
#[derive(Default)]
struct LabelHandles {
    quantity: Option<Gauge>,
    entry_price: Option<Gauge>,
    realized_pnl: Option<Gauge>,
    unrealized_pnl: Option<Gauge>,
    notional: Option<Gauge>,
    best_bid: Option<Gauge>,
    best_ask: Option<Gauge>,
    bid_levels: Option<Gauge>,
    ask_levels: Option<Gauge>,
    last_fill: Option<Gauge>,
    fills: [Option<FillHandles>; SLOTS],
    profit: Option<Counter>,
    loss: Option<Counter>,
    /// The last-fill clock only moves forward: a replayed old trade must not turn it back.
    last_fill_at: f64,
}

type Pick = fn(&mut LabelHandles) -> &mut Option<Gauge>;

/// Series describing one account's state. See the module docs.
pub struct AccountMetrics {
    telemetry: Telemetry,
    account: String,
    markets: LabelFolder,
    /// Real markets folded into `other`.
    in_other: BTreeSet<Arc<str>>,
    labels: HashMap<String, LabelHandles>,
    positions_open: Gauge,
    dedup_snapshot: Counter,
    dedup_duplicate: Counter,
    fill_time_clamped: Counter,
    limits: Limits,
    /// Labels whose limit series are set.
    limited: BTreeSet<String>,
    /// Labels whose counters exist (at 0 until their first fill or realized change).
    initialized: BTreeSet<String>,
}

impl AccountMetrics {
    pub(super) fn new(telemetry: Telemetry, account: &str, max_markets: usize) -> Self {
        let t = &telemetry;
        let dedup = |reason| {
            t.counter(
                names::FILLS_DEDUPLICATED,
                &[("account", account), ("reason", reason)],
            )
        };
        Self {
            positions_open: t.gauge(names::POSITIONS_OPEN, &[("account", account)]),
            dedup_snapshot: dedup("snapshot_replay"),
            dedup_duplicate: dedup("duplicate"),
            fill_time_clamped: t.counter(names::FILL_TIME_CLAMPED, &[("account", account)]),
            markets: LabelFolder::new(max_markets, telemetry.folded_market.clone()),
            telemetry: telemetry.clone(),
            account: account.to_string(),
            in_other: BTreeSet::new(),
            labels: HashMap::new(),
            limits: Limits::default(),
            limited: BTreeSet::new(),
            initialized: BTreeSet::new(),
        }
    }

    /// Creates a market's counters at 0 once it is known (a position, a book, or a fill), so
    /// `increase()` sees its first fill: a counter born at 1 has no earlier sample to rise from.
    /// `liquidity="unknown"` is left to appear when it happens: it is an anomaly, not a series
    /// every market needs.
    fn init_counters(&mut self, label: &str) {
        if self.initialized.contains(label) {
            return;
        }
        self.initialized.insert(label.to_string());
        for side in [Side::Buy, Side::Sell] {
            for liq in [Liquidity::Maker, Liquidity::Taker] {
                self.fill_handles(label, side, liq);
            }
        }
        self.realized_handles(label);
    }

    /// The account's limits: their series are set for every market named in them now, and for
    /// any other market (from `default`) when it first has a position.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
        self.limited.clear();
        let named: BTreeSet<String> = self
            .limits
            .inventory
            .per_market
            .keys()
            .chain(self.limits.notional.per_market.keys())
            .cloned()
            .collect();
        for m in named {
            let label = self.label(&m);
            self.apply_limits(label);
        }
    }

    /// Sets a label's limit series once. `other` takes the default: the markets folded there
    /// have no series of their own to compare with.
    fn apply_limits(&mut self, label: &str) {
        if self.limited.contains(label) {
            return;
        }
        self.limited.insert(label.to_string());
        let l = [("account", self.account.as_str()), ("market", label)];
        let pick = |m: &LimitMap| {
            if label == OTHER {
                m.default
            } else {
                m.get(label)
            }
        };
        if let Some(v) = pick(&self.limits.inventory) {
            self.telemetry.gauge(names::INVENTORY_LIMIT, &l).set(v);
        }
        if let Some(v) = pick(&self.limits.notional) {
            self.telemetry.gauge(names::NOTIONAL_LIMIT, &l).set(v);
        }
    }

    /// The label for a market, remembering markets folded into `other`.
    fn label<'m>(&mut self, market: &'m str) -> &'m str {
        let label = self.markets.fold(market);
        if label == OTHER && market != OTHER && !self.in_other.contains(market) {
            self.in_other.insert(market.into());
        }
        label
    }

    fn handles(&mut self, label: &str) -> &mut LabelHandles {
        if !self.labels.contains_key(label) {
            self.labels
                .insert(label.to_string(), LabelHandles::default());
        }
        // UNWRAP: inserted just above when missing.
        self.labels.get_mut(label).expect("inserted above")
    }

    fn set(
        &mut self,
        label: &str,
        name: &'static str,
        pick: Pick,
        extra: Option<(&'static str, &'static str)>,
        value: f64,
    ) {
        self.handles(label);
        // Split borrows: the hot path sets an existing gauge and allocates nothing.
        let Self {
            labels,
            telemetry,
            account,
            ..
        } = self;
        // UNWRAP: `handles` inserted the label just above when missing.
        let h = labels.get_mut(label).expect("inserted above");
        let g = pick(h).get_or_insert_with(|| {
            let mut l = vec![("account", account.as_str()), ("market", label)];
            l.extend(extra);
            telemetry.gauge(name, &l)
        });
        g.set(value);
    }

    /// Set a label's gauges to 0 if they exist (a removed position, an unknown mark).
    fn zero(&mut self, label: &str, picks: &[Pick]) {
        if let Some(h) = self.labels.get_mut(label) {
            for pick in picks {
                if let Some(g) = pick(h) {
                    g.set(0.0);
                }
            }
        }
    }

    /// Sets every gauge the event touched. `now_unix` is the receipt time in seconds.
    pub fn observe_live(&mut self, applied: &Applied, account: &Account, now_unix: f64) {
        for fill in &applied.fills {
            let label = self.label(&fill.market);
            self.init_counters(label);
            let mut ts = fill
                .created_at_ms
                .map(|ms| ms as f64 / 1000.0)
                .unwrap_or(now_unix);
            // A fill dated after its receipt (a clock ahead, or microseconds read as
            // milliseconds) would hold the clock in the future and silence every "no fills for
            // N minutes" alert: clamp it to the receipt time, and count that it happened.
            if ts > now_unix {
                ts = now_unix;
                self.fill_time_clamped.increment(1);
            }
            let h = self.handles(label);
            if ts > h.last_fill_at {
                h.last_fill_at = ts;
                self.set(label, names::LAST_FILL, |h| &mut h.last_fill, None, ts);
            }
        }
        for m in &applied.position_markets {
            let label = self.label(m);
            self.apply_limits(label);
            self.init_counters(label);
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
            let label = self.label(m);
            self.init_counters(label);
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
        // Unrealized PnL and notional change with the position or the mark.
        let valued = applied.position_markets.iter().chain(
            applied
                .book_markets
                .iter()
                .filter(|m| !applied.position_markets.contains(m)),
        );
        for m in valued {
            let label = self.label(m);
            match account.valuation(m) {
                Some(v) => {
                    self.set(
                        label,
                        names::POSITION_UNREALIZED_PNL,
                        |h| &mut h.unrealized_pnl,
                        None,
                        f(v.unrealized_pnl),
                    );
                    self.set(
                        label,
                        names::POSITION_NOTIONAL,
                        |h| &mut h.notional,
                        None,
                        f(v.notional),
                    );
                }
                None => self.zero(label, &[|h| &mut h.unrealized_pnl, |h| &mut h.notional]),
            }
        }
        self.positions_open.set(account.open_positions() as f64);
    }

    /// The fill handles of a label and slot, registered on first use.
    fn fill_handles(&mut self, label: &str, side: Side, liquidity: Liquidity) -> FillHandles {
        let (telemetry, account) = (self.telemetry.clone(), self.account.clone());
        let slot = &mut self.handles(label).fills[fill_slot(side, liquidity)];
        slot.get_or_insert_with(|| {
            let l = [
                ("account", account.as_str()),
                ("market", label),
                ("side", side.as_str()),
                ("liquidity", liquidity.as_str()),
            ];
            FillHandles {
                count: telemetry.counter(names::FILLS, &l),
                quantity: telemetry.counter(names::FILL_QUANTITY, &l),
                notional: telemetry.counter(names::FILL_NOTIONAL, &l),
            }
        })
        .clone()
    }

    /// A label's exact fill totals for one side and liquidity: the fold's own totals for a
    /// market label, their sum over the folded markets for `other`.
    fn label_totals(
        &self,
        account: &Account,
        label: &str,
        side: Side,
        liq: Liquidity,
    ) -> FillTotals {
        let totals = account.fill_totals();
        if label != OTHER {
            let key = FillKey {
                market: label.into(),
                side,
                liquidity: liq,
            };
            return totals.get(&key).cloned().unwrap_or_default();
        }
        let mut sum = FillTotals::default();
        for (k, t) in totals {
            if k.side == side && k.liquidity == liq && self.in_other.contains(&k.market) {
                sum.count = sum.count.saturating_add(t.count);
                sum.quantity = sum.quantity.saturating_add(t.quantity);
                sum.notional = sum.notional.saturating_add(t.notional);
            }
        }
        sum
    }

    fn realized_handles(&mut self, label: &str) -> (Counter, Counter) {
        let (telemetry, account) = (self.telemetry.clone(), self.account.clone());
        let h = self.handles(label);
        let l = [("account", account.as_str()), ("market", label)];
        let p = h
            .profit
            .get_or_insert_with(|| telemetry.counter(names::REALIZED_PROFIT, &l))
            .clone();
        let q = h
            .loss
            .get_or_insert_with(|| telemetry.counter(names::REALIZED_LOSS, &l))
            .clone();
        (p, q)
    }

    fn label_realized(&self, account: &Account, label: &str) -> (Decimal, Decimal) {
        let all = account.realized_totals();
        if label != OTHER {
            return all
                .get(label)
                .map(|r| (r.profit, r.loss))
                .unwrap_or_default();
        }
        all.iter()
            .filter(|(m, _)| self.in_other.contains(m.as_str()))
            .fold((Decimal::ZERO, Decimal::ZERO), |(p, l), (_, r)| {
                (p.saturating_add(r.profit), l.saturating_add(r.loss))
            })
    }

    /// The counters the event changed, with their new absolute values: for the caller to
    /// publish once the change is durable.
    pub fn counter_updates(&mut self, applied: &Applied, account: &Account) -> Vec<(Counter, f64)> {
        let mut out = Vec::new();
        let mut done: Vec<(&str, usize)> = Vec::new();
        for fill in &applied.fills {
            let label = self.label(&fill.market);
            let slot = fill_slot(fill.side, fill.liquidity);
            if done.iter().any(|(l, s)| *l == label && *s == slot) {
                continue;
            }
            self.push_fill_totals(account, label, fill.side, fill.liquidity, &mut out);
            done.push((label, slot));
        }
        for m in &applied.realized_markets {
            let label = self.label(m);
            self.push_realized(account, label, &mut out);
        }
        if applied.dedup_snapshot_replay > 0 || applied.dedup_duplicate > 0 {
            self.push_dedup(account, &mut out);
        }
        out
    }

    fn push_fill_totals(
        &mut self,
        account: &Account,
        label: &str,
        side: Side,
        liq: Liquidity,
        out: &mut Vec<(Counter, f64)>,
    ) {
        let t = self.label_totals(account, label, side, liq);
        let h = self.fill_handles(label, side, liq);
        out.push((h.count, t.count as f64));
        out.push((h.quantity, f(t.quantity)));
        out.push((h.notional, f(t.notional)));
    }

    fn push_realized(&mut self, account: &Account, label: &str, out: &mut Vec<(Counter, f64)>) {
        let (p, l) = self.label_realized(account, label);
        let (pc, lc) = self.realized_handles(label);
        out.push((pc, f(p)));
        out.push((lc, f(l)));
    }

    fn push_dedup(&self, account: &Account, out: &mut Vec<(Counter, f64)>) {
        let c = account.dedup_counts();
        out.push((self.dedup_snapshot.clone(), c.snapshot_replay as f64));
        out.push((self.dedup_duplicate.clone(), c.duplicate as f64));
    }

    /// Every counter of the account at its current total: after a restart, so counters continue
    /// from where the previous process left them. `markets` is the first-seen order, so markets
    /// fold into `other` as they did before.
    pub fn restore(&mut self, account: &Account, markets: &[String]) -> Vec<(Counter, f64)> {
        for m in markets {
            let label = self.label(m);
            self.init_counters(label);
        }
        let mut out = Vec::new();
        let keys: Vec<FillKey> = account.fill_totals().keys().cloned().collect();
        let mut done: Vec<(&str, usize)> = Vec::new();
        for k in &keys {
            let label = self.label(&k.market);
            let slot = fill_slot(k.side, k.liquidity);
            if done.iter().any(|(l, s)| *l == label && *s == slot) {
                continue;
            }
            self.push_fill_totals(account, label, k.side, k.liquidity, &mut out);
            done.push((label, slot));
        }
        let realized: Vec<String> = account.realized_totals().keys().cloned().collect();
        let mut labels_done = BTreeSet::new();
        for m in &realized {
            let label = self.label(m);
            if labels_done.insert(label) {
                self.push_realized(account, label, &mut out);
            }
        }
        self.push_dedup(account, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIDES: [Side; 2] = [Side::Buy, Side::Sell];
    const LIQUIDITIES: [Liquidity; 3] = [Liquidity::Maker, Liquidity::Taker, Liquidity::Unknown];

    use crate::model::{Payload, Trade};
    use crate::state::Scope;
    use crate::telemetry::exposition;

    fn trade(id: &str, market: &str, price: &str, qty: &str, at_ms: Option<i64>) -> Trade {
        Trade {
            id: Some(id.into()),
            market: market.into(),
            side: Side::Buy,
            liquidity: Liquidity::Maker,
            price: price.parse().unwrap(),
            quantity: qty.parse().unwrap(),
            created_at_ms: at_ms,
        }
    }

    fn fold(acc: &mut Account, m: &mut AccountMetrics, trades: Vec<Trade>, now_unix: f64) {
        let applied = acc.apply_delta(
            Scope::User,
            &Payload {
                trades,
                ..Payload::default()
            },
        );
        m.observe_live(&applied, acc, now_unix);
        for (c, v) in m.counter_updates(&applied, acc) {
            c.absolute(v);
        }
    }

    fn value(t: &Telemetry, series: &str) -> Option<f64> {
        exposition::parse(&t.render())
            .get(&exposition::normalize(series))
            .copied()
    }

    // Regression: the last-fill clock only moved forward, so one fill dated in the future
    // (microseconds read as milliseconds) held it there and silenced every "no fills for N
    // minutes" alert for good. It is now clamped to the receipt time, and the clamp counted.
    #[test]
    fn a_fill_dated_in_the_future_is_clamped_to_its_receipt_and_counted() {
        let t = Telemetry::new();
        let mut m = t.account("a", 10);
        let mut acc = Account::new(100);
        let now = 1_800_000_000.0;
        let micros_as_millis = 1_800_000_000_000_000; // year ~59000
        fold(
            &mut acc,
            &mut m,
            vec![trade("1", "BTC", "1", "1", Some(micros_as_millis))],
            now,
        );
        let last = r#"ocx_last_fill_timestamp_seconds{account="a",market="BTC"}"#;
        assert_eq!(value(&t, last), Some(now));
        assert_eq!(
            value(&t, r#"ocx_fill_time_clamped_total{account="a"}"#),
            Some(1.0)
        );
        // A later, correctly dated fill moves the clock on.
        let later_ms = (now as i64 + 60) * 1000;
        fold(
            &mut acc,
            &mut m,
            vec![trade("2", "BTC", "1", "1", Some(later_ms))],
            now + 61.0,
        );
        assert_eq!(value(&t, last), Some(now + 60.0));
        assert_eq!(
            value(&t, r#"ocx_fill_time_clamped_total{account="a"}"#),
            Some(1.0)
        );
    }

    // Regression: the per-label totals behind `other` were added with `+=`, which panics on
    // Decimal overflow; absurd amounts off the wire must saturate instead.
    #[test]
    fn totals_folded_into_other_saturate_instead_of_panicking() {
        let t = Telemetry::new();
        let mut m = t.account("a", 1);
        let mut acc = Account::new(100);
        let huge = "79228162514264337593543950335"; // Decimal::MAX
        fold(
            &mut acc,
            &mut m,
            vec![trade("0", "FIRST", "1", "1", None)],
            1.0,
        );
        fold(
            &mut acc,
            &mut m,
            vec![
                trade("1", "B", "1", huge, None),
                trade("2", "C", "1", huge, None),
            ],
            1.0,
        );
        let q = value(
            &t,
            r#"ocx_fill_quantity_total{account="a",market="other",side="buy",liquidity="maker"}"#,
        )
        .expect("other has a quantity series");
        assert!(q.is_finite() && q > 7.9e28, "{q}");
        let n = value(
            &t,
            r#"ocx_fills_total{account="a",market="other",side="buy",liquidity="maker"}"#,
        );
        assert_eq!(n, Some(2.0), "both folded markets add up under other");
    }

    #[test]
    fn limits_are_series_for_named_markets_at_once_and_for_others_on_their_first_position() {
        use crate::model::{Position, PositionsUpdate};
        let t = Telemetry::new();
        let mut m = t.account("a", 2);
        let mut limits = Limits::default();
        limits.inventory.per_market.insert("BTC".into(), 5.0);
        limits.inventory.default = Some(1.0);
        limits.notional.default = Some(1000.0);
        m.set_limits(limits);
        let inv = |market: &str| {
            value(
                &t,
                &format!(r#"ocx_inventory_limit{{account="a",market="{market}"}}"#),
            )
        };
        assert_eq!(inv("BTC"), Some(5.0));
        assert_eq!(inv("ETH"), None, "no series before a position");
        let mut acc = Account::new(10);
        let pos = |market: &str| Position {
            id: market.into(),
            market: market.into(),
            quantity: "2".parse().unwrap(),
            entry_price: None,
            realized_pnl: None,
            closed: false,
        };
        let applied = acc.apply_snapshot(
            Scope::User,
            &Payload {
                positions: Some(PositionsUpdate {
                    upserts: vec![pos("ETH"), pos("SOL")],
                    removed_ids: vec![],
                }),
                ..Payload::default()
            },
        );
        m.observe_live(&applied, &acc, 1.0);
        assert_eq!(inv("ETH"), Some(1.0));
        // max_markets 2: BTC and ETH have labels, SOL folds into other, which takes the default.
        assert_eq!(inv("other"), Some(1.0));
        assert_eq!(
            value(&t, r#"ocx_notional_limit{account="a",market="ETH"}"#),
            Some(1000.0)
        );
        assert_eq!(
            value(&t, r#"ocx_notional_limit{account="a",market="BTC"}"#),
            Some(1000.0)
        );
    }

    #[test]
    fn every_side_and_liquidity_has_its_own_slot() {
        let mut slots: Vec<usize> = SIDES
            .iter()
            .flat_map(|s| LIQUIDITIES.iter().map(move |l| fill_slot(*s, *l)))
            .collect();
        slots.sort_unstable();
        assert_eq!(slots, (0..SLOTS).collect::<Vec<_>>());
    }
}
