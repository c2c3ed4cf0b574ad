//! Series describing one account's state (fills, positions, PnL, books), computed from the fold's
//! [`Applied`] and the state after it.
//!
//! Two kinds of update, because they have different durability:
//! - **live** values (gauges: positions, book, valuation, clocks) are set at once by
//!   [`AccountMetrics::observe_live`];
//! - **counter** values (fills, traded amounts, realized profit/loss, deduplicated trades) are
//!   marked changed by [`AccountMetrics::note_counters`] and read, as absolute totals from the
//!   fold, by [`AccountMetrics::counter_updates_pending`] (or set at once by
//!   [`AccountMetrics::publish_counters`]) when the caller publishes them: once they are durable
//!   (`crate::account`). A counter is never shown at a value a restart could take back, so
//!   Prometheus never sees it go down. Reading totals when publishing, not per event, means a
//!   burst of events reads each changed total once.
//!
//! Markets past `max_markets` fold into the label `other`; counters under `other` are the sums of
//! the fold's exact per-market totals of the markets folded there.
//!
//! The per-event path allocates nothing: each market is resolved to its label once (when first
//! seen; that is when it is folded) and the label's handles are kept in a vector by index.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::labels::OTHER;
use super::{Counter, Gauge, LabelFolder, Telemetry, TraceIds, names};
use crate::config::{LimitMap, Limits};
use crate::model::{Fill, Liquidity, ShortStr, Side};
use crate::state::hash::FastState;
use crate::state::{Account, Applied, FillKey, FillTotals};

/// Every family the apply path writes (fills, positions, profit and loss, limits, books): the
/// series an account's epoch can move. The rule engine's change-driven passes evaluate only rules
/// that read these (or what such rules record), so stream-health and meta rules stay on their
/// timers. `every_family_written_here_is_listed` keeps it complete.
pub const APPLY_FAMILIES: &[&str] = &[
    names::BOOK_BEST_ASK,
    names::BOOK_BEST_BID,
    names::BOOK_LEVELS,
    names::FILLS,
    names::FILLS_DEDUPLICATED,
    names::FILL_NOTIONAL,
    names::FILL_QUANTITY,
    names::FILL_TIME_CLAMPED,
    names::INVENTORY_LIMIT,
    names::LAST_FILL,
    names::NOTIONAL_LIMIT,
    names::POSITIONS_OPEN,
    names::POSITION_ENTRY_PRICE,
    names::POSITION_NOTIONAL,
    names::POSITION_QUANTITY,
    names::POSITION_REALIZED_PNL,
    names::POSITION_UNREALIZED_PNL,
    names::REALIZED_LOSS,
    names::REALIZED_PROFIT,
];

/// Fill series by `fill_slot(side, liquidity)`.
const SLOTS: usize = 6;

/// The slots' side and liquidity, in slot order.
const SLOT_KEYS: [(Side, Liquidity); SLOTS] = [
    (Side::Buy, Liquidity::Maker),
    (Side::Buy, Liquidity::Taker),
    (Side::Buy, Liquidity::Unknown),
    (Side::Sell, Liquidity::Maker),
    (Side::Sell, Liquidity::Taker),
    (Side::Sell, Liquidity::Unknown),
];

/// Markets remembered with their label beyond which a new market is resolved on each use
/// instead: the memory stays bounded if the exchange sends ever new market ids.
const MAX_REMEMBERED_MARKETS: usize = 10_000;

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

/// A counter's new total as read from the fold, made an `f64` only when published: with a data
/// dir that is after the account's lock is released (the stream waits for that lock, and a
/// decimal's conversion is not free).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Total {
    Count(u64),
    Amount(Decimal),
}

impl Total {
    pub fn value(self) -> f64 {
        match self {
            Total::Count(n) => n as f64,
            Total::Amount(d) => f(d),
        }
    }
}

struct FillHandles {
    count: Counter,
    quantity: Counter,
    notional: Counter,
}

/// A label's gauges, registered on first use.
#[derive(Default)]
struct Gauges {
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
}

/// The series of one market label.
struct LabelHandles {
    /// The label value: a market, or `other`.
    name: String,
    gauges: Gauges,
    fills: [Option<FillHandles>; SLOTS],
    profit: Option<Counter>,
    loss: Option<Counter>,
    /// The last-fill clock only moves forward: a replayed old trade must not turn it back.
    last_fill_at: f64,
    /// Its counters exist (at 0 until their first fill or realized change).
    initialized: bool,
    /// Its limit series are set.
    limited: bool,
    /// Fill slots (one bit each) whose totals changed since they were last published.
    dirty_fills: u8,
    /// Realized totals changed since they were last published.
    dirty_realized: bool,
}

impl LabelHandles {
    fn new(name: &str) -> Self {
        LabelHandles {
            name: name.to_string(),
            gauges: Gauges::default(),
            fills: Default::default(),
            profit: None,
            loss: None,
            last_fill_at: 0.0,
            initialized: false,
            limited: false,
            dirty_fills: 0,
            dirty_realized: false,
        }
    }

    /// Sets a gauge, registering it on first use.
    fn set(
        &mut self,
        t: &Telemetry,
        account: &str,
        name: &'static str,
        pick: Pick,
        extra: Option<(&'static str, &'static str)>,
        value: f64,
    ) {
        let label = self.name.as_str();
        pick(&mut self.gauges)
            .get_or_insert_with(|| {
                let mut l = vec![("account", account), ("market", label)];
                l.extend(extra);
                t.gauge(name, &l)
            })
            .set(value);
    }

    /// Sets gauges to 0 if they exist (a removed position, an unknown mark).
    fn zero(&mut self, picks: &[Pick]) {
        for pick in picks {
            if let Some(g) = pick(&mut self.gauges) {
                g.set(0.0);
            }
        }
    }

    /// The fill handles of a slot, registered on first use.
    fn fill_handles(&mut self, t: &Telemetry, account: &str, slot: usize) -> &FillHandles {
        let label = self.name.as_str();
        self.fills[slot].get_or_insert_with(|| {
            let (side, liquidity) = SLOT_KEYS[slot];
            let l = [
                ("account", account),
                ("market", label),
                ("side", side.as_str()),
                ("liquidity", liquidity.as_str()),
            ];
            FillHandles {
                count: t.counter(names::FILLS, &l),
                quantity: t.counter(names::FILL_QUANTITY, &l),
                notional: t.counter(names::FILL_NOTIONAL, &l),
            }
        })
    }

    fn realized_handles(&mut self, t: &Telemetry, account: &str) -> (&Counter, &Counter) {
        let l = [("account", account), ("market", self.name.as_str())];
        let p = self
            .profit
            .get_or_insert_with(|| t.counter(names::REALIZED_PROFIT, &l));
        let q = self
            .loss
            .get_or_insert_with(|| t.counter(names::REALIZED_LOSS, &l));
        (p, q)
    }
}

type Pick = fn(&mut Gauges) -> &mut Option<Gauge>;

/// Series describing one account's state. See the module docs.
pub struct AccountMetrics {
    telemetry: Telemetry,
    account: String,
    markets: LabelFolder,
    /// Real markets folded into `other`.
    in_other: BTreeSet<Arc<str>>,
    /// Each market seen, with the index of its label in `labels`.
    known: Vec<(ShortStr, usize)>,
    /// A market's index in `known`.
    known_index: HashMap<ShortStr, usize, FastState>,
    /// The index in `known` of the market resolved last: an event's fills and position name
    /// the same market, so this answers most lookups with one string comparison.
    last: Option<usize>,
    labels: Vec<LabelHandles>,
    /// A label's index in `labels`.
    label_index: HashMap<String, usize>,
    /// Labels with counters changed since they were last published.
    dirty: Vec<usize>,
    /// The dedup counters changed since they were last published.
    dirty_dedup: bool,
    positions_open: Gauge,
    dedup_snapshot: Counter,
    dedup_duplicate: Counter,
    fill_time_clamped: Counter,
    limits: Limits,
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
            known: Vec::new(),
            known_index: HashMap::default(),
            last: None,
            labels: Vec::new(),
            label_index: HashMap::new(),
            dirty: Vec::new(),
            dirty_dedup: false,
            limits: Limits::default(),
        }
    }

    /// Creates a label's counters at 0 once its market is known (a position, a book, or a
    /// fill), so `increase()` sees its first fill: a counter born at 1 has no earlier sample to
    /// rise from. `liquidity="unknown"` is left to appear when it happens: it is an anomaly, not
    /// a series every market needs.
    fn init_counters(&mut self, label: usize) {
        let Self {
            labels,
            telemetry,
            account,
            ..
        } = self;
        let h = &mut labels[label];
        if h.initialized {
            return;
        }
        h.initialized = true;
        for (slot, (_, liq)) in SLOT_KEYS.iter().enumerate() {
            if *liq != Liquidity::Unknown {
                h.fill_handles(telemetry, account, slot);
            }
        }
        h.realized_handles(telemetry, account);
    }

    /// The account's limits: their series are set for every market named in them now, and for
    /// any other market (from `default`) when it first has a position.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
        for h in &mut self.labels {
            h.limited = false;
        }
        let named: BTreeSet<String> = self
            .limits
            .inventory
            .per_market
            .keys()
            .chain(self.limits.notional.per_market.keys())
            .cloned()
            .collect();
        for m in named {
            let label = self.label(&ShortStr::new(&m));
            self.apply_limits(label);
        }
    }

    /// Sets a label's limit series once. `other` takes the default: the markets folded there
    /// have no series of their own to compare with.
    fn apply_limits(&mut self, label: usize) {
        let h = &mut self.labels[label];
        if h.limited {
            return;
        }
        h.limited = true;
        let name = h.name.as_str();
        let l = [("account", self.account.as_str()), ("market", name)];
        let pick = |m: &LimitMap| {
            if name == OTHER {
                m.default
            } else {
                m.get(name)
            }
        };
        if let Some(v) = pick(&self.limits.inventory) {
            self.telemetry.gauge(names::INVENTORY_LIMIT, &l).set(v);
        }
        if let Some(v) = pick(&self.limits.notional) {
            self.telemetry.gauge(names::NOTIONAL_LIMIT, &l).set(v);
        }
    }

    /// The label of a market (an index into `labels`). A market is folded when first seen,
    /// remembering markets folded into `other`; later lookups find the answer kept then.
    /// Names are compared as [`ShortStr`]s: inline, without a call to `memcmp`.
    fn label(&mut self, market: &ShortStr) -> usize {
        if let Some(i) = self.last
            && self.known[i].0 == *market
        {
            return self.known[i].1;
        }
        if let Some(&i) = self.known_index.get(market) {
            self.last = Some(i);
            return self.known[i].1;
        }
        let market_str = market.as_str();
        let name = self.markets.fold(market_str);
        if name == OTHER && market_str != OTHER && !self.in_other.contains(market_str) {
            self.in_other.insert(market_str.into());
        }
        let label = match self.label_index.get(name) {
            Some(&l) => l,
            None => {
                self.labels.push(LabelHandles::new(name));
                self.label_index
                    .insert(name.to_string(), self.labels.len() - 1);
                self.labels.len() - 1
            }
        };
        if self.known.len() < MAX_REMEMBERED_MARKETS {
            self.known_index.insert(market.clone(), self.known.len());
            self.last = Some(self.known.len());
            self.known.push((market.clone(), label));
        }
        label
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
            let h = &mut self.labels[label];
            if ts > h.last_fill_at {
                h.last_fill_at = ts;
                h.set(
                    &self.telemetry,
                    &self.account,
                    names::LAST_FILL,
                    |g| &mut g.last_fill,
                    None,
                    ts,
                );
            }
        }
        for m in &applied.position_markets {
            let label = self.label(m);
            self.apply_limits(label);
            self.init_counters(label);
            let (t, a) = (&self.telemetry, self.account.as_str());
            let h = &mut self.labels[label];
            match account.market_position(m) {
                Some(p) => {
                    let quantity = f(p.quantity);
                    h.set(
                        t,
                        a,
                        names::POSITION_QUANTITY,
                        |g| &mut g.quantity,
                        None,
                        quantity,
                    );
                    let entry = p.entry_price.map(f).unwrap_or(0.0);
                    h.set(
                        t,
                        a,
                        names::POSITION_ENTRY_PRICE,
                        |g| &mut g.entry_price,
                        None,
                        entry,
                    );
                    h.set(
                        t,
                        a,
                        names::POSITION_REALIZED_PNL,
                        |g| &mut g.realized_pnl,
                        None,
                        f(p.realized_pnl),
                    );
                }
                // A removed position: its series drop to 0 rather than keep a stale value.
                None => h.zero(&[
                    |g| &mut g.quantity,
                    |g| &mut g.entry_price,
                    |g| &mut g.realized_pnl,
                ]),
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
            let (t, a) = (&self.telemetry, self.account.as_str());
            let h = &mut self.labels[label];
            h.set(t, a, names::BOOK_BEST_BID, |g| &mut g.best_bid, None, bid);
            h.set(t, a, names::BOOK_BEST_ASK, |g| &mut g.best_ask, None, ask);
            let bids = Some(("side", "bid"));
            h.set(t, a, names::BOOK_LEVELS, |g| &mut g.bid_levels, bids, nb);
            let asks = Some(("side", "ask"));
            h.set(t, a, names::BOOK_LEVELS, |g| &mut g.ask_levels, asks, na);
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
            let (t, a) = (&self.telemetry, self.account.as_str());
            let h = &mut self.labels[label];
            match account.valuation(m) {
                Some(v) => {
                    h.set(
                        t,
                        a,
                        names::POSITION_UNREALIZED_PNL,
                        |g| &mut g.unrealized_pnl,
                        None,
                        f(v.unrealized_pnl),
                    );
                    h.set(
                        t,
                        a,
                        names::POSITION_NOTIONAL,
                        |g| &mut g.notional,
                        None,
                        f(v.notional),
                    );
                }
                None => h.zero(&[|g| &mut g.unrealized_pnl, |g| &mut g.notional]),
            }
        }
        self.positions_open.set(account.open_positions() as f64);
    }

    /// Marks a label's counters changed.
    fn mark(&mut self, label: usize, fill_slot: Option<usize>, realized: bool) {
        let h = &mut self.labels[label];
        if h.dirty_fills == 0 && !h.dirty_realized {
            self.dirty.push(label);
        }
        if let Some(slot) = fill_slot {
            h.dirty_fills |= 1 << slot;
        }
        h.dirty_realized |= realized;
    }

    /// Makes a sampled event's trace the exemplar of `ocx_fills_total` for each of its new
    /// fills' series (the totals themselves are set when published).
    pub fn fill_exemplars<'a>(&mut self, fills: impl Iterator<Item = &'a Fill>, ids: TraceIds) {
        for fill in fills {
            let label = self.label(&fill.market);
            let (t, account) = (self.telemetry.clone(), self.account.clone());
            self.labels[label]
                .fill_handles(&t, &account, fill_slot(fill.side, fill.liquidity))
                .count
                .attach_exemplar(1.0, ids);
        }
    }

    /// Notes which counters the event changed; their totals are read when published.
    pub fn note_counters(&mut self, applied: &Applied) {
        for fill in &applied.fills {
            let label = self.label(&fill.market);
            self.mark(label, Some(fill_slot(fill.side, fill.liquidity)), false);
        }
        for m in &applied.realized_markets {
            let label = self.label(m);
            self.mark(label, None, true);
        }
        if applied.dedup_snapshot_replay > 0 || applied.dedup_duplicate > 0 {
            self.dirty_dedup = true;
        }
    }

    /// A label's exact fill totals for one side and liquidity: the fold's own totals for a
    /// market label, their sum over the folded markets for `other`.
    fn label_totals(
        &self,
        account: &Account,
        label: usize,
        side: Side,
        liq: Liquidity,
    ) -> FillTotals {
        let totals = account.fill_totals();
        let name = self.labels[label].name.as_str();
        if name != OTHER {
            return totals
                .get_parts(name, side, liq)
                .cloned()
                .unwrap_or_default();
        }
        let mut sum = FillTotals::default();
        for (k, t) in totals.iter() {
            if k.side == side && k.liquidity == liq && self.in_other.contains(&k.market) {
                sum.count = sum.count.saturating_add(t.count);
                sum.quantity = sum.quantity.saturating_add(t.quantity);
                sum.notional = sum.notional.saturating_add(t.notional);
            }
        }
        sum
    }

    fn label_realized(&self, account: &Account, label: usize) -> (Decimal, Decimal) {
        let all = account.realized_totals();
        let name = self.labels[label].name.as_str();
        if name != OTHER {
            return all
                .get(name)
                .map(|r| (r.profit, r.loss))
                .unwrap_or_default();
        }
        all.iter()
            .filter(|(m, _)| self.in_other.contains(*m))
            .fold((Decimal::ZERO, Decimal::ZERO), |(p, l), (_, r)| {
                (p.saturating_add(r.profit), l.saturating_add(r.loss))
            })
    }

    /// A label's fill counters of one slot at their totals.
    fn fill_values(
        &mut self,
        account: &Account,
        label: usize,
        slot: usize,
        out: &mut dyn FnMut(&Counter, Total),
    ) {
        let (side, liq) = SLOT_KEYS[slot];
        let t = self.label_totals(account, label, side, liq);
        let h = self.labels[label].fill_handles(&self.telemetry, &self.account, slot);
        out(&h.count, Total::Count(t.count));
        out(&h.quantity, Total::Amount(t.quantity));
        out(&h.notional, Total::Amount(t.notional));
    }

    fn realized_values(
        &mut self,
        account: &Account,
        label: usize,
        out: &mut dyn FnMut(&Counter, Total),
    ) {
        let (p, l) = self.label_realized(account, label);
        let (pc, lc) = self.labels[label].realized_handles(&self.telemetry, &self.account);
        out(pc, Total::Amount(p));
        out(lc, Total::Amount(l));
    }

    fn dedup_values(&self, account: &Account, out: &mut dyn FnMut(&Counter, Total)) {
        let c = account.dedup_counts();
        out(&self.dedup_snapshot, Total::Count(c.snapshot_replay));
        out(&self.dedup_duplicate, Total::Count(c.duplicate));
    }

    /// Every counter marked changed at its current total, unmarked.
    fn drain_changed(&mut self, account: &Account, out: &mut dyn FnMut(&Counter, Total)) {
        let dirty = std::mem::take(&mut self.dirty);
        for &label in &dirty {
            let h = &mut self.labels[label];
            let (fills, realized) = (h.dirty_fills, h.dirty_realized);
            h.dirty_fills = 0;
            h.dirty_realized = false;
            for slot in 0..SLOTS {
                if fills & (1 << slot) != 0 {
                    self.fill_values(account, label, slot, out);
                }
            }
            if realized {
                self.realized_values(account, label, out);
            }
        }
        // Kept for its capacity.
        self.dirty = dirty;
        self.dirty.clear();
        if std::mem::take(&mut self.dirty_dedup) {
            self.dedup_values(account, out);
        }
    }

    /// Sets the counters marked changed to their current totals (no data dir: at once).
    pub fn publish_counters(&mut self, account: &Account) {
        self.drain_changed(account, &mut |c, v| c.absolute(v.value()));
    }

    /// The counters marked changed, with their current totals, unmarked: for the caller to
    /// publish ([`Total::value`]) once the change is durable.
    pub fn take_changed(&mut self, account: &Account) -> Vec<(Counter, Total)> {
        let mut out = Vec::new();
        self.drain_changed(account, &mut |c, v| out.push((c.clone(), v)));
        out
    }

    /// The counters the event changed, with their new absolute values: for the caller to
    /// publish once the change is durable.
    pub fn counter_updates(&mut self, applied: &Applied, account: &Account) -> Vec<(Counter, f64)> {
        self.note_counters(applied);
        self.take_changed(account)
            .into_iter()
            .map(|(c, v)| (c, v.value()))
            .collect()
    }

    /// Every counter of the account at its current total: after a restart, so counters continue
    /// from where the previous process left them. `markets` is the first-seen order, so markets
    /// fold into `other` as they did before.
    pub fn restore(&mut self, account: &Account, markets: &[String]) -> Vec<(Counter, f64)> {
        for m in markets {
            let label = self.label(&ShortStr::new(m));
            self.init_counters(label);
        }
        let mut out = Vec::new();
        let mut push = |c: &Counter, v: Total| out.push((c.clone(), v.value()));
        let keys: Vec<FillKey> = account.fill_totals().keys().collect();
        let mut done: Vec<(usize, usize)> = Vec::new();
        for k in &keys {
            let label = self.label(&ShortStr::new(&k.market));
            let slot = fill_slot(k.side, k.liquidity);
            if done.contains(&(label, slot)) {
                continue;
            }
            self.fill_values(account, label, slot, &mut push);
            done.push((label, slot));
        }
        let realized: Vec<String> = account
            .realized_totals()
            .keys()
            .map(str::to_owned)
            .collect();
        let mut labels_done = BTreeSet::new();
        for m in &realized {
            let label = self.label(&ShortStr::new(m));
            if labels_done.insert(label) {
                self.realized_values(account, label, &mut push);
            }
        }
        self.dedup_values(account, &mut push);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change pass of the rule engine samples counters and gauges only (`rules::live`
    /// `observe_moved`), which is right only while no family an account's change writes is a
    /// histogram.
    #[test]
    fn no_family_an_account_change_writes_is_a_histogram() {
        use super::super::catalogue::{CATALOGUE, Kind};
        for name in APPLY_FAMILIES {
            let def = CATALOGUE
                .iter()
                .find(|d| d.name == *name)
                .expect("in the catalogue");
            assert!(
                !matches!(def.kind, Kind::Histogram(_)),
                "{name} is a histogram"
            );
        }
    }

    /// `APPLY_FAMILIES` must name every family this file writes, or a rule reading a new one
    /// would wait for its timer after a change: every `names::X` here must be in the list.
    #[test]
    fn every_family_written_here_is_listed() {
        let src = include_str!("account.rs");
        let start = src.find("pub const APPLY_FAMILIES").unwrap();
        let list = &src[start..start + src[start..].find("];").unwrap()];
        // The code, not this test.
        let mut rest = &src[..src.find("#[cfg(test)]").unwrap()];
        let mut seen = 0;
        while let Some(at) = rest.find("names::") {
            rest = &rest[at + "names::".len()..];
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if ident.is_empty() {
                continue;
            }
            seen += 1;
            assert!(
                list.contains(&format!("names::{ident},")),
                "names::{ident} is written here but not in APPLY_FAMILIES"
            );
        }
        assert!(seen > 2 * APPLY_FAMILIES.len(), "the scan found the writes");
    }

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
