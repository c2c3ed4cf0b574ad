//! Positions by id, their per-market aggregate, and the realized-PnL profit/loss counters.

use std::collections::{BTreeMap, HashMap, HashSet};

use rust_decimal::Decimal;

use super::hash::FastState;
use crate::model::{Position, PositionsUpdate, ShortStr};

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

/// One market's positions, with what is asked of them most, kept up to date, and its realized
/// totals. A market keeps its slot for good (its realized totals outlive its positions), so a
/// slot number names it for the life of the account.
#[derive(Debug)]
struct MarketSlot {
    name: String,
    /// The same, by value, for the lists of changed markets (see [`ShortStr`]).
    short: ShortStr,
    /// By position id; empty when the market has no known position.
    ids: BTreeMap<ShortStr, Entry>,
    /// The aggregate of `ids`, computed once per update touching the market (in
    /// [`Positions::finish`]) instead of at every question: the fold, the metrics and the
    /// valuation all ask for it after each event. Meaningless while `ids` is empty.
    aggregate: MarketPosition,
    /// How many of `ids` are open (nonzero quantity, not closed), as of the same update.
    open: usize,
    /// Realized PnL accumulated while watched; `None` until the market's first realized change.
    realized: Option<RealizedTotals>,
    /// The realized totals changed since [`Positions::take_realized`] (while journaling).
    realized_stale: bool,
}

impl MarketSlot {
    fn new(name: &str) -> Self {
        MarketSlot {
            name: name.to_owned(),
            short: ShortStr::new(name),
            ids: BTreeMap::new(),
            aggregate: MarketPosition {
                quantity: Decimal::ZERO,
                entry_price: None,
                realized_pnl: Decimal::ZERO,
            },
            open: 0,
            realized: None,
            realized_stale: false,
        }
    }

    /// The aggregate, `None` when the market has no known position.
    fn position(&self) -> Option<&MarketPosition> {
        (!self.ids.is_empty()).then_some(&self.aggregate)
    }
}

/// A position's market and realized-PnL baseline, as taken for the durable journal.
pub(crate) type ShortBaseRow = (ShortStr, Option<Decimal>);

/// Where a positions update reports what it touched: [`crate::state::Applied`]'s lists.
#[derive(Debug)]
pub(crate) struct PositionChanges<'a> {
    /// Markets whose aggregate changed.
    pub(crate) markets: &'a mut Vec<ShortStr>,
    /// Markets whose realized totals changed.
    pub(crate) realized: &'a mut Vec<ShortStr>,
}

/// All known positions. See [`crate::state::Account`] for the rules.
///
/// Markets are numbered (slots) when first seen here, and everything per market lives in its
/// slot: an update finds its market once by name and then works with the number, instead of
/// comparing market names (each a separate allocation to follow) at every map it touches.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    markets: Vec<MarketSlot>,
    /// A market's slot (hashed: nothing walks it in order).
    slots: HashMap<ShortStr, u32, FastState>,
    /// The slot found last: the upserts of an event mostly name one market.
    last_slot: Option<u32>,
    /// Markets with realized totals, in name order, to their slot.
    realized_names: BTreeMap<String, u32>,
    /// Open positions over all markets: the sum of their [`MarketSlot::open`].
    open: usize,
    /// The markets an update touches, with their aggregate from before it; empty between
    /// updates (its capacity is reused).
    before: Before,
    /// Markets whose realized totals the update changed, in order (capacity reused too).
    realized_changed: Vec<u32>,
    /// Position id to its market's slot.
    market_of: HashMap<ShortStr, u32, FastState>,
    /// Whether a snapshot with positions has been applied (its positions were the baseline).
    baselined: bool,
    /// Baselines of the positions known before a restart, by id: the first snapshot after it
    /// counts each one's change since (PnL realized while the sidecar was down), then the rest
    /// are forgotten (closed while it was down).
    restored_bases: HashMap<String, Option<Decimal>>,
    /// Mark baseline and realized changes stale (the account persists them).
    pub(crate) journal: bool,
    /// Ids whose realized-PnL baseline changed (or that are gone) since [`Positions::take_bases`]:
    /// their rows are read then, so a burst of upserts of one id journals it once.
    stale_bases: HashSet<ShortStr, FastState>,
    /// Slots whose realized totals changed since [`Positions::take_realized`].
    stale_realized: Vec<u32>,
    /// Whether anything was marked stale since [`Positions::take_touched`].
    touched: bool,
}

/// Realized totals by market, in market order: what [`crate::state::Account::realized_totals`]
/// shows of the positions' per-market slots.
#[derive(Debug, Clone, Copy)]
pub struct RealizedByMarket<'a> {
    names: &'a BTreeMap<String, u32>,
    markets: &'a [MarketSlot],
}

impl<'a> RealizedByMarket<'a> {
    fn totals(&self, slot: u32) -> Option<&'a RealizedTotals> {
        self.markets.get(slot as usize)?.realized.as_ref()
    }

    /// A market's totals, `None` before its first realized change.
    pub fn get(&self, market: &str) -> Option<&'a RealizedTotals> {
        self.totals(*self.names.get(market)?)
    }

    /// Every market's totals, in market order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a RealizedTotals)> + use<'a> {
        let markets = self.markets;
        self.names.iter().filter_map(move |(m, &slot)| {
            let t = markets.get(slot as usize)?.realized.as_ref()?;
            Some((m.as_str(), t))
        })
    }

    /// The markets with totals, in order.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.names.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// As a map's index: panics when the market has no totals.
impl std::ops::Index<&str> for RealizedByMarket<'_> {
    type Output = RealizedTotals;

    fn index(&self, market: &str) -> &RealizedTotals {
        // UNWRAP: indexing a map by a missing key panics, as `BTreeMap`'s own index does.
        self.get(market)
            .expect("no realized totals for this market")
    }
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
                out.insert(p.market.to_string(), p.quantity);
            }
        }
    }
    out
}

/// A market's aggregate and how many of its positions are open (nonzero quantity, not closed),
/// in one pass over them, in id order.
pub(super) fn aggregate<K>(ids: &BTreeMap<K, Entry>) -> (MarketPosition, usize) {
    let mut quantity = Decimal::ZERO;
    let mut realized_pnl = Decimal::ZERO;
    let mut priced = 0usize;
    let mut single_entry = None;
    let mut open = 0;
    let is_priced = |p: &Position| p.entry_price.is_some() && !p.quantity.is_zero();
    for e in ids.values() {
        let p = &e.pos;
        quantity = quantity.saturating_add(p.quantity);
        realized_pnl = realized_pnl.saturating_add(p.realized_pnl.unwrap_or_default());
        if is_priced(p) {
            priced += 1;
            single_entry = p.entry_price;
        }
        if !p.closed && !p.quantity.is_zero() {
            open += 1;
        }
    }
    let entry_price = match priced {
        0 => None,
        // One position: its own price, untouched by division rounding (and no weighting: the
        // usual market has one position, and decimal multiplies are not free).
        1 => single_entry,
        _ => {
            let (mut weight, mut weighted) = (Decimal::ZERO, Decimal::ZERO);
            for p in ids.values().map(|e| &e.pos).filter(|p| is_priced(p)) {
                let w = p.quantity.abs();
                weight = weight.saturating_add(w);
                let entry = p.entry_price.unwrap_or_default();
                weighted = weighted.saturating_add(w.saturating_mul(entry));
            }
            weighted.checked_div(weight)
        }
    };
    let aggregate = MarketPosition {
        quantity,
        entry_price,
        realized_pnl,
    };
    (aggregate, open)
}

/// Markets touched by one update (by slot), with their aggregate from before it.
type Before = Vec<(u32, Option<MarketPosition>)>;

/// Marks an id's baseline row stale.
fn mark_base(stale: &mut HashSet<ShortStr, FastState>, touched: &mut bool, id: &ShortStr) {
    *touched = true;
    if !stale.contains(id) {
        stale.insert(id.clone());
    }
}

impl Positions {
    /// A market's slot, created when new.
    /// Names are compared as [`ShortStr`]s: inline, without a call to `memcmp`.
    fn slot(&mut self, market: &ShortStr) -> u32 {
        if let Some(last) = self.last_slot
            && self.markets[last as usize].short == *market
        {
            return last;
        }
        let slot = match self.slots.get(market) {
            Some(&slot) => slot,
            None => {
                // Saturating: four billion markets is beyond any account.
                let slot = u32::try_from(self.markets.len()).unwrap_or(u32::MAX);
                self.markets.push(MarketSlot::new(market));
                self.slots.insert(market.clone(), slot);
                slot
            }
        };
        self.last_slot = Some(slot);
        slot
    }

    /// Adds a position's realized-PnL change to its market's profit or loss.
    fn record_realized(&mut self, slot: u32, change: Decimal) {
        if change.is_zero() {
            return;
        }
        let m = &mut self.markets[slot as usize];
        let totals = match &mut m.realized {
            Some(t) => t,
            None => {
                self.realized_names.insert(m.name.clone(), slot);
                m.realized.insert(RealizedTotals::default())
            }
        };
        if change.is_sign_positive() {
            totals.profit = totals.profit.saturating_add(change);
        } else {
            totals.loss = totals.loss.saturating_sub(change);
        }
        if self.journal {
            self.touched = true;
            if !m.realized_stale {
                m.realized_stale = true;
                self.stale_realized.push(slot);
            }
        }
        if !self.realized_changed.contains(&slot) {
            self.realized_changed.push(slot);
        }
    }

    /// A delta: upserts replace by id, then `removed_ids` delete (a removal counts no PnL).
    pub(crate) fn apply_delta(&mut self, update: &PositionsUpdate, changes: PositionChanges<'_>) {
        let mut before = std::mem::take(&mut self.before);
        for p in &update.upserts {
            self.upsert(p, false, &mut before);
        }
        for id in &update.removed_ids {
            if self.remove(id, &mut before) && self.journal {
                mark_base(&mut self.stale_bases, &mut self.touched, &ShortStr::new(id));
            }
        }
        self.finish(before, changes);
    }

    /// A snapshot: the upserts are the whole set; known ids absent from it are removed (so any
    /// `removedIds` are moot). The first snapshot applied is the realized-PnL baseline.
    pub(crate) fn apply_snapshot(
        &mut self,
        update: &PositionsUpdate,
        changes: PositionChanges<'_>,
    ) {
        let mut before = std::mem::take(&mut self.before);
        let present: HashSet<&str> = update.upserts.iter().map(|p| p.id.as_str()).collect();
        let gone: Vec<ShortStr> = self
            .market_of
            .keys()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect();
        for id in &gone {
            if self.remove(id, &mut before) && self.journal {
                mark_base(&mut self.stale_bases, &mut self.touched, id);
            }
        }
        let baseline = !self.baselined;
        for p in &update.upserts {
            self.upsert(p, baseline, &mut before);
        }
        self.baselined = true;
        // Restored ids this snapshot does not carry were closed while the sidecar was down.
        for (id, _) in self.restored_bases.drain() {
            if self.journal {
                self.touched = true;
                self.stale_bases.insert(ShortStr::new(&id));
            }
        }
        self.finish(before, changes);
    }

    fn upsert(&mut self, p: &Position, baseline: bool, before: &mut Before) {
        let slot = self.slot(&p.market);
        // The usual update, a known id staying in its market: one lookup of each kind, and the
        // entry updated in place. The general way below gives the same result, with more
        // lookups.
        if self.market_of.get(&p.id) == Some(&slot)
            && let Some(e) = self.markets[slot as usize].ids.get_mut(&p.id)
        {
            let realized_base = match (e.realized_base, p.realized_pnl) {
                (_, Some(r)) => Some(r),
                (base, None) => base,
            };
            let change = match (e.realized_base, p.realized_pnl) {
                (Some(base), Some(r)) => Some(r.saturating_sub(base)),
                _ => None,
            };
            if self.journal && e.realized_base != realized_base {
                mark_base(&mut self.stale_bases, &mut self.touched, &p.id);
            }
            e.pos.quantity = p.quantity;
            e.pos.entry_price = p.entry_price;
            e.pos.realized_pnl = p.realized_pnl;
            e.pos.closed = p.closed;
            e.realized_base = realized_base;
            if !before.iter().any(|(m, _)| *m == slot) {
                // Before the entry changed: the aggregate is of the previous update.
                let was = self.markets[slot as usize].aggregate.clone();
                before.push((slot, Some(was)));
            }
            if let Some(change) = change {
                self.record_realized(slot, change);
            }
            return;
        }
        self.note_before(slot, before);
        // `Some(base)` when the id is already known (a replace), `None` when it is new.
        let known: Option<Option<Decimal>> = match self.market_of.get(&p.id) {
            Some(&m) if m == slot => self.markets[m as usize]
                .ids
                .get(&p.id)
                .map(|e| e.realized_base),
            Some(&m) => {
                // The id moved market: it leaves the old one.
                self.note_before(m, before);
                let old = self.take_entry(m, &p.id);
                self.market_of.insert(p.id.clone(), slot);
                old.map(|e| e.realized_base)
            }
            None => {
                self.market_of.insert(p.id.clone(), slot);
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
                self.record_realized(slot, r.saturating_sub(b));
                Some(r)
            }
            (None, Some(r)) => Some(r),
            (b, None) => b,
        };
        if self.journal && known != Some(realized_base) {
            mark_base(&mut self.stale_bases, &mut self.touched, &p.id);
        }
        let ids = &mut self.markets[slot as usize].ids;
        match ids.get_mut(&p.id) {
            // Same id and market: update in place, no allocation.
            Some(e) => {
                e.pos.quantity = p.quantity;
                e.pos.entry_price = p.entry_price;
                e.pos.realized_pnl = p.realized_pnl;
                e.pos.closed = p.closed;
                e.realized_base = realized_base;
            }
            None => {
                ids.insert(
                    p.id.clone(),
                    Entry {
                        pos: p.clone(),
                        realized_base,
                    },
                );
            }
        }
    }

    /// Returns whether the id was known.
    fn remove(&mut self, id: &str, before: &mut Before) -> bool {
        match self.market_of.remove(id) {
            Some(slot) => {
                self.note_before(slot, before);
                self.take_entry(slot, id);
                true
            }
            None => false,
        }
    }

    fn take_entry(&mut self, slot: u32, id: &str) -> Option<Entry> {
        let m = self.markets.get_mut(slot as usize)?;
        let entry = m.ids.remove(id);
        if entry.is_some() && m.ids.is_empty() {
            // The market has no position left: its open count goes with it.
            self.open -= m.open;
            m.open = 0;
        }
        entry
    }

    fn note_before(&self, slot: u32, before: &mut Before) {
        if !before.iter().any(|(m, _)| *m == slot) {
            let was = self.markets[slot as usize].position().cloned();
            before.push((slot, was));
        }
    }

    /// Brings the touched markets' aggregates up to date and reports those that changed.
    fn finish(&mut self, mut before: Before, changes: PositionChanges<'_>) {
        for (slot, was) in before.drain(..) {
            let m = &mut self.markets[slot as usize];
            let now = if m.ids.is_empty() {
                None
            } else {
                let (aggregate, open) = aggregate(&m.ids);
                self.open = self.open - m.open + open;
                m.open = open;
                m.aggregate = aggregate;
                Some(&m.aggregate)
            };
            if now != was.as_ref() {
                changes.markets.push(m.short.clone());
            }
        }
        for slot in self.realized_changed.drain(..) {
            changes
                .realized
                .push(self.markets[slot as usize].short.clone());
        }
        // Kept for the next update, so its list of touched markets needs no allocation.
        self.before = before;
    }

    pub(crate) fn market_position(&self, market: &str) -> Option<MarketPosition> {
        let slot = *self.slots.get(market)?;
        self.markets[slot as usize].position().cloned()
    }

    /// Positions with a nonzero quantity that are not closed.
    pub(crate) fn open_count(&self) -> usize {
        self.open
    }

    /// Every known position, by market then id.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Position> {
        self.markets
            .iter()
            .flat_map(|m| m.ids.values().map(|e| &e.pos))
    }

    pub(crate) fn realized(&self) -> RealizedByMarket<'_> {
        RealizedByMarket {
            names: &self.realized_names,
            markets: &self.markets,
        }
    }

    pub(crate) fn baselined(&self) -> bool {
        self.baselined
    }

    /// The baseline rows marked stale since the last call, read now: id to its (market,
    /// baseline), `None` when the id is no longer known. Copies only (see
    /// [`crate::state::durable::TakenJournal`]).
    pub(crate) fn take_bases(&mut self, out: &mut Vec<(ShortStr, Option<ShortBaseRow>)>) {
        let Positions {
            stale_bases,
            market_of,
            markets,
            ..
        } = self;
        out.extend(stale_bases.drain().map(|id| {
            let row = market_of.get(&id).and_then(|&slot| {
                let m = &markets[slot as usize];
                let e = m.ids.get(&id)?;
                Some((m.short.clone(), e.realized_base))
            });
            (id, row)
        }));
    }

    /// The realized totals rows marked stale since the last call, read now. Copies only.
    pub(crate) fn take_realized(&mut self, out: &mut Vec<(ShortStr, RealizedTotals)>) {
        let Positions {
            stale_realized,
            markets,
            ..
        } = self;
        out.extend(stale_realized.drain(..).filter_map(|slot| {
            let m = &mut markets[slot as usize];
            m.realized_stale = false;
            Some((m.short.clone(), m.realized.clone()?))
        }));
    }

    /// Whether anything was marked stale since the last call.
    pub(crate) fn take_touched(&mut self) -> bool {
        std::mem::take(&mut self.touched)
    }

    /// Rebuilds the durable part after a restart: realized totals, the baselines of the positions
    /// known then, and whether the baseline snapshot had been applied.
    pub(crate) fn restore(
        &mut self,
        realized: impl IntoIterator<Item = (String, RealizedTotals)>,
        bases: impl IntoIterator<Item = (String, Option<Decimal>)>,
        baselined: bool,
    ) {
        for (market, totals) in realized {
            let slot = self.slot(&ShortStr::new(&market));
            let m = &mut self.markets[slot as usize];
            if m.realized.is_none() {
                self.realized_names.insert(market, slot);
            }
            m.realized = Some(totals);
        }
        self.restored_bases.extend(bases);
        self.baselined = baselined;
    }
}
