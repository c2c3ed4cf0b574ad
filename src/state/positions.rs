//! Positions by id, their per-market aggregate, and the realized-PnL profit/loss counters.

use std::collections::{BTreeMap, HashMap, HashSet};

use rust_decimal::Decimal;

use super::hash::FastState;
use crate::model::{Position, PositionsUpdate};

/// A market's positions rolled into one.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketPosition {
    /// Signed sum over the market's positions (long > 0).
    pub quantity: Decimal,
    /// `|quantity|`-weighted entry price over the positions with a nonzero quantity and an entry
    /// price; `None` when there are none.
    pub entry_price: Option<Decimal>,
    /// Sum of `realizedPnl` as reported (absent counts as zero).
    pub realized_pnl: Decimal,
}

/// Realized PnL accumulated while watched, per market.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RealizedTotals {
    /// Sum of the positive changes of positions' `realizedPnl`.
    pub profit: Decimal,
    /// Sum of the absolute values of the negative changes.
    pub loss: Decimal,
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) pos: Position,
    /// The `realizedPnl` already accounted for; `None` while a baseline position has not yet
    /// reported one (its first report then becomes the baseline, not a change).
    pub(super) realized_base: Option<Decimal>,
}

/// One market's positions, with what is asked of them most, kept up to date.
#[derive(Debug)]
struct MarketPositions {
    /// By position id.
    ids: BTreeMap<String, Entry>,
    /// The aggregate of `ids`, computed once per update touching the market (in
    /// [`Positions::finish`]) instead of at every question: the fold, the metrics and the
    /// valuation all ask for it after each event.
    aggregate: MarketPosition,
    /// How many of `ids` are open (nonzero quantity, not closed), as of the same update.
    open: usize,
}

impl MarketPositions {
    fn new(id: String, entry: Entry) -> Self {
        MarketPositions {
            ids: BTreeMap::from([(id, entry)]),
            // Placeholders until the update's `finish`, before which nobody asks.
            aggregate: MarketPosition {
                quantity: Decimal::ZERO,
                entry_price: None,
                realized_pnl: Decimal::ZERO,
            },
            open: 0,
        }
    }
}

/// A position's market and realized-PnL baseline, as the durable journal keeps it.
pub(crate) type BaseRow = (String, Option<Decimal>);

/// What a positions update touched, for [`crate::state::Applied`].
#[derive(Debug, Default)]
pub(crate) struct PositionChanges {
    /// Markets whose aggregate changed.
    pub(crate) markets: Vec<String>,
    /// Markets whose realized totals changed.
    pub(crate) realized: Vec<String>,
    /// Realized-PnL baselines that changed, for the durable journal (only while journaling):
    /// id to its new (market, baseline), `None` when the id is gone.
    pub(crate) bases: Vec<(String, Option<BaseRow>)>,
}

/// All known positions. See [`crate::state::Account`] for the rules.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    /// By market (hashed: nothing walks it in order).
    by_market: HashMap<String, MarketPositions, FastState>,
    /// Open positions over all markets: the sum of their [`MarketPositions::open`].
    open: usize,
    /// The markets an update touches, with their aggregate from before it; empty between
    /// updates (its capacity is reused).
    before: Before,
    /// Position id to its market.
    market_of: HashMap<String, String, FastState>,
    /// Whether a snapshot with positions has been applied (its positions were the baseline).
    baselined: bool,
    realized: BTreeMap<String, RealizedTotals>,
    /// Baselines of the positions known before a restart, by id: the first snapshot after it
    /// counts each one's change since (PnL realized while the sidecar was down), then the rest
    /// are forgotten (closed while it was down).
    restored_bases: HashMap<String, Option<Decimal>>,
    /// Report baseline changes in [`PositionChanges::bases`] (the account persists them).
    pub(crate) journal: bool,
}

/// The signed quantity per market of a full position list (e.g. a REST `GET /perps/positions`
/// body), aggregated as the account aggregates positions: after a snapshot carrying `list`,
/// [`crate::state::Account::market_position`]`(m).quantity` equals `result[m]` for every market.
/// So an id listed twice counts once, its last listing winning (as upserts replace by id); closed
/// positions count with their quantity; a market whose positions are all flat maps to zero.
pub fn positions_by_market(list: &[Position]) -> BTreeMap<String, Decimal> {
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        last.insert(p.id.as_str(), i);
    }
    let mut out: BTreeMap<String, Decimal> = BTreeMap::new();
    for (i, p) in list.iter().enumerate() {
        if last.get(p.id.as_str()) != Some(&i) {
            continue;
        }
        match out.get_mut(p.market.as_str()) {
            Some(q) => *q = q.saturating_add(p.quantity),
            None => {
                out.insert(p.market.clone(), p.quantity);
            }
        }
    }
    out
}

/// A market's aggregate and how many of its positions are open (nonzero quantity, not closed),
/// in one pass over them, in id order.
pub(super) fn aggregate(ids: &BTreeMap<String, Entry>) -> (MarketPosition, usize) {
    let mut quantity = Decimal::ZERO;
    let mut realized_pnl = Decimal::ZERO;
    let mut weight = Decimal::ZERO;
    let mut weighted = Decimal::ZERO;
    let mut priced = 0usize;
    let mut single_entry = None;
    let mut open = 0;
    for e in ids.values() {
        let p = &e.pos;
        quantity = quantity.saturating_add(p.quantity);
        realized_pnl = realized_pnl.saturating_add(p.realized_pnl.unwrap_or_default());
        if let Some(entry) = p.entry_price
            && !p.quantity.is_zero()
        {
            let w = p.quantity.abs();
            weight = weight.saturating_add(w);
            weighted = weighted.saturating_add(w.saturating_mul(entry));
            priced += 1;
            single_entry = Some(entry);
        }
        if !p.closed && !p.quantity.is_zero() {
            open += 1;
        }
    }
    let entry_price = match priced {
        0 => None,
        // One position: its own price, untouched by division rounding.
        1 => single_entry,
        _ => weighted.checked_div(weight),
    };
    let aggregate = MarketPosition {
        quantity,
        entry_price,
        realized_pnl,
    };
    (aggregate, open)
}

/// Adds a position's realized-PnL change to its market's profit or loss.
fn record_realized(
    realized: &mut BTreeMap<String, RealizedTotals>,
    market: &str,
    change: Decimal,
    changes: &mut PositionChanges,
) {
    if change.is_zero() {
        return;
    }
    let totals = match realized.get_mut(market) {
        Some(t) => t,
        None => realized.entry(market.to_owned()).or_default(),
    };
    if change.is_sign_positive() {
        totals.profit = totals.profit.saturating_add(change);
    } else {
        totals.loss = totals.loss.saturating_sub(change);
    }
    if !changes.realized.iter().any(|m| m == market) {
        changes.realized.push(market.to_owned());
    }
}

/// Markets touched by one update, with their aggregate from before it.
type Before = Vec<(String, Option<MarketPosition>)>;

impl Positions {
    /// A delta: upserts replace by id, then `removed_ids` delete (a removal counts no PnL).
    pub(crate) fn apply_delta(&mut self, update: &PositionsUpdate) -> PositionChanges {
        let mut before = std::mem::take(&mut self.before);
        let mut changes = PositionChanges::default();
        for p in &update.upserts {
            self.upsert(p, false, &mut before, &mut changes);
        }
        for id in &update.removed_ids {
            if self.remove(id, &mut before) && self.journal {
                changes.bases.push((id.clone(), None));
            }
        }
        self.finish(before, changes)
    }

    /// A snapshot: the upserts are the whole set; known ids absent from it are removed (so any
    /// `removedIds` are moot). The first snapshot applied is the realized-PnL baseline.
    pub(crate) fn apply_snapshot(&mut self, update: &PositionsUpdate) -> PositionChanges {
        let mut before = std::mem::take(&mut self.before);
        let mut changes = PositionChanges::default();
        let present: HashSet<&str> = update.upserts.iter().map(|p| p.id.as_str()).collect();
        let gone: Vec<String> = self
            .market_of
            .keys()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect();
        for id in &gone {
            if self.remove(id, &mut before) && self.journal {
                changes.bases.push((id.clone(), None));
            }
        }
        let baseline = !self.baselined;
        for p in &update.upserts {
            self.upsert(p, baseline, &mut before, &mut changes);
        }
        self.baselined = true;
        // Restored ids this snapshot does not carry were closed while the sidecar was down.
        for (id, _) in self.restored_bases.drain() {
            if self.journal {
                changes.bases.push((id, None));
            }
        }
        self.finish(before, changes)
    }

    fn upsert(
        &mut self,
        p: &Position,
        baseline: bool,
        before: &mut Before,
        changes: &mut PositionChanges,
    ) {
        // The usual update, a known id staying in its market: one lookup of each kind, and the
        // entry updated in place. The general way below gives the same result, with more
        // lookups.
        if self
            .market_of
            .get(p.id.as_str())
            .is_some_and(|m| *m == p.market)
            && let Some(b) = self.by_market.get_mut(p.market.as_str())
            && let Some(e) = b.ids.get_mut(p.id.as_str())
        {
            if !before.iter().any(|(m, _)| *m == p.market) {
                before.push((p.market.clone(), Some(b.aggregate.clone())));
            }
            let realized_base = match (e.realized_base, p.realized_pnl) {
                (Some(base), Some(r)) => {
                    record_realized(
                        &mut self.realized,
                        &p.market,
                        r.saturating_sub(base),
                        changes,
                    );
                    Some(r)
                }
                (None, Some(r)) => Some(r),
                (base, None) => base,
            };
            if self.journal && e.realized_base != realized_base {
                changes
                    .bases
                    .push((p.id.clone(), Some((p.market.clone(), realized_base))));
            }
            e.pos.quantity = p.quantity;
            e.pos.entry_price = p.entry_price;
            e.pos.realized_pnl = p.realized_pnl;
            e.pos.closed = p.closed;
            e.realized_base = realized_base;
            return;
        }
        self.note_before(&p.market, before);
        // `Some(base)` when the id is already known (a replace), `None` when it is new.
        let known: Option<Option<Decimal>> = match self.market_of.get(p.id.as_str()) {
            Some(m) if *m == p.market => self
                .by_market
                .get(m.as_str())
                .and_then(|b| b.ids.get(p.id.as_str()))
                .map(|e| e.realized_base),
            Some(m) => {
                // The id moved market: it leaves the old one.
                let m = m.clone();
                self.note_before(&m, before);
                let old = self.take_entry(&m, &p.id);
                self.market_of.insert(p.id.clone(), p.market.clone());
                old.map(|e| e.realized_base)
            }
            None => {
                self.market_of.insert(p.id.clone(), p.market.clone());
                // Known before a restart: its baseline carries over.
                self.restored_bases.remove(p.id.as_str())
            }
        };
        let base = match known {
            Some(base) => base,
            // New ids count from zero, except in the baseline snapshot.
            None if baseline => None,
            None => Some(Decimal::ZERO),
        };
        let realized_base = match (base, p.realized_pnl) {
            (Some(b), Some(r)) => {
                record_realized(&mut self.realized, &p.market, r.saturating_sub(b), changes);
                Some(r)
            }
            (None, Some(r)) => Some(r),
            (b, None) => b,
        };
        if self.journal && known != Some(realized_base) {
            changes
                .bases
                .push((p.id.clone(), Some((p.market.clone(), realized_base))));
        }
        match self.by_market.get_mut(p.market.as_str()) {
            Some(b) => match b.ids.get_mut(p.id.as_str()) {
                // Same id and market: update in place, no allocation.
                Some(e) => {
                    e.pos.quantity = p.quantity;
                    e.pos.entry_price = p.entry_price;
                    e.pos.realized_pnl = p.realized_pnl;
                    e.pos.closed = p.closed;
                    e.realized_base = realized_base;
                }
                None => {
                    b.ids.insert(
                        p.id.clone(),
                        Entry {
                            pos: p.clone(),
                            realized_base,
                        },
                    );
                }
            },
            None => {
                let entry = Entry {
                    pos: p.clone(),
                    realized_base,
                };
                self.by_market
                    .insert(p.market.clone(), MarketPositions::new(p.id.clone(), entry));
            }
        }
    }

    /// Returns whether the id was known.
    fn remove(&mut self, id: &str, before: &mut Before) -> bool {
        match self.market_of.remove(id) {
            Some(market) => {
                self.note_before(&market, before);
                self.take_entry(&market, id);
                true
            }
            None => false,
        }
    }

    fn take_entry(&mut self, market: &str, id: &str) -> Option<Entry> {
        let b = self.by_market.get_mut(market)?;
        let entry = b.ids.remove(id);
        if b.ids.is_empty()
            && let Some(gone) = self.by_market.remove(market)
        {
            self.open -= gone.open;
        }
        entry
    }

    fn note_before(&self, market: &str, before: &mut Before) {
        if !before.iter().any(|(m, _)| m == market) {
            before.push((market.to_owned(), self.market_position(market)));
        }
    }

    /// Brings the touched markets' aggregates up to date and reports those that changed.
    fn finish(&mut self, mut before: Before, mut changes: PositionChanges) -> PositionChanges {
        for (market, was) in before.drain(..) {
            let now = self.by_market.get_mut(market.as_str()).map(|b| {
                let (aggregate, open) = aggregate(&b.ids);
                self.open = self.open - b.open + open;
                b.open = open;
                b.aggregate = aggregate;
                &b.aggregate
            });
            if now != was.as_ref() {
                changes.markets.push(market);
            }
        }
        // Kept for the next update, so its list of touched markets needs no allocation.
        self.before = before;
        changes
    }

    pub(crate) fn market_position(&self, market: &str) -> Option<MarketPosition> {
        self.by_market.get(market).map(|b| b.aggregate.clone())
    }

    /// Positions with a nonzero quantity that are not closed.
    pub(crate) fn open_count(&self) -> usize {
        self.open
    }

    /// Every known position, by market then id.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Position> {
        self.by_market
            .values()
            .flat_map(|b| b.ids.values().map(|e| &e.pos))
    }
    pub(crate) fn realized(&self) -> &BTreeMap<String, RealizedTotals> {
        &self.realized
    }

    pub(crate) fn baselined(&self) -> bool {
        self.baselined
    }

    /// Rebuilds the durable part after a restart: realized totals, the baselines of the positions
    /// known then, and whether the baseline snapshot had been applied.
    pub(crate) fn restore(
        &mut self,
        realized: impl IntoIterator<Item = (String, RealizedTotals)>,
        bases: impl IntoIterator<Item = (String, Option<Decimal>)>,
        baselined: bool,
    ) {
        self.realized.extend(realized);
        self.restored_bases.extend(bases);
        self.baselined = baselined;
    }
}
