//! Fill accounting: counting each trade exactly once (bounded FIFO memory of trade keys), the
//! cumulative per (market, side, liquidity) totals, and the bounded record of stream-delivered
//! trades that REST listings are checked against.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use rust_decimal::Decimal;

use super::hash::FastState;
use crate::model::{Fill, Liquidity, ShortStr, Side, Trade};

/// The label set fills are totalled under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FillKey {
    /// Shared with the account's set of known markets.
    pub market: Arc<str>,
    pub side: Side,
    pub liquidity: Liquidity,
}

/// Totals per market by side and liquidity: this many, indexed by [`fill_slot`].
pub(crate) const FILL_SLOTS: usize = 6;

/// A side and liquidity's index among a market's totals, in [`FillKey`] order (buy before sell,
/// then maker, taker, unknown).
pub(crate) fn fill_slot(side: Side, liquidity: Liquidity) -> usize {
    let l = match liquidity {
        Liquidity::Maker => 0,
        Liquidity::Taker => 1,
        Liquidity::Unknown => 2,
    };
    (matches!(side, Side::Sell) as usize) * 3 + l
}

/// The side and liquidity of a [`fill_slot`].
pub(crate) fn slot_parts(slot: usize) -> (Side, Liquidity) {
    let side = if slot < 3 { Side::Buy } else { Side::Sell };
    let liquidity = match slot % 3 {
        0 => Liquidity::Maker,
        1 => Liquidity::Taker,
        _ => Liquidity::Unknown,
    };
    (side, liquidity)
}

/// The fill totals of an account, by the market's first-seen index (its slot in the account) and
/// [`fill_slot`]. The fold finds a fill's totals by index: in a map ordered by [`FillKey`], each
/// fill compared market names (a `memcmp` call each) at every level of the tree.
#[derive(Debug, Default)]
pub(crate) struct FillBook {
    rows: Vec<[Option<FillTotals>; FILL_SLOTS]>,
    /// The market slots that have totals, in market-name order: the order views show.
    sorted: Vec<u32>,
    len: usize,
}

impl FillBook {
    pub(crate) fn get(&self, market: u32, slot: usize) -> Option<&FillTotals> {
        self.rows.get(market as usize)?.get(slot)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, market: u32, slot: usize) -> Option<&mut FillTotals> {
        self.rows.get_mut(market as usize)?.get_mut(slot)?.as_mut()
    }

    /// Sets a market's totals for a slot. `names` are the account's markets by slot.
    pub(crate) fn insert(
        &mut self,
        market: u32,
        slot: usize,
        totals: FillTotals,
        names: &[Arc<str>],
    ) {
        let m = market as usize;
        if self.rows.len() <= m {
            self.rows
                .resize_with(m + 1, || std::array::from_fn(|_| None));
        }
        let row = &mut self.rows[m];
        if row.iter().all(Option::is_none) {
            let name = names.get(m).map_or("", |n| n);
            let at = self
                .sorted
                .partition_point(|&s| names.get(s as usize).map_or("", |n| n) < name);
            self.sorted.insert(at, market);
        }
        if row[slot].replace(totals).is_none() {
            self.len += 1;
        }
    }
}

/// An account's fill totals as a map by [`FillKey`] would show them, in its order (see
/// [`crate::state::Account::fill_totals`]).
#[derive(Debug, Clone, Copy)]
pub struct FillTotalsView<'a> {
    pub(crate) book: &'a FillBook,
    /// The account's markets by slot.
    pub(crate) names: &'a [Arc<str>],
    /// A market's slot.
    pub(crate) index: &'a HashMap<ShortStr, u32, FastState>,
}

impl<'a> FillTotalsView<'a> {
    /// The totals of a market, side and liquidity, by the market's name.
    pub fn get_parts(
        &self,
        market: &str,
        side: Side,
        liquidity: Liquidity,
    ) -> Option<&'a FillTotals> {
        let &m = self.index.get(market)?;
        self.book.get(m, fill_slot(side, liquidity))
    }

    pub fn get(&self, key: &FillKey) -> Option<&'a FillTotals> {
        self.get_parts(&key.market, key.side, key.liquidity)
    }

    /// Every key with its totals, in [`FillKey`] order.
    pub fn iter(&self) -> impl Iterator<Item = (FillKey, &'a FillTotals)> + use<'a> {
        let (book, names) = (self.book, self.names);
        book.sorted.iter().flat_map(move |&m| {
            let row = &book.rows[m as usize];
            row.iter().enumerate().filter_map(move |(slot, t)| {
                let (side, liquidity) = slot_parts(slot);
                let key = FillKey {
                    market: Arc::clone(names.get(m as usize)?),
                    side,
                    liquidity,
                };
                Some((key, t.as_ref()?))
            })
        })
    }

    pub fn keys(&self) -> impl Iterator<Item = FillKey> + use<'a> {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &'a FillTotals> + use<'a> {
        self.iter().map(|(_, t)| t)
    }

    pub fn len(&self) -> usize {
        self.book.len
    }

    pub fn is_empty(&self) -> bool {
        self.book.len == 0
    }
}

/// As a map's index: panics when the key has no totals.
impl std::ops::Index<&FillKey> for FillTotalsView<'_> {
    type Output = FillTotals;

    fn index(&self, key: &FillKey) -> &FillTotals {
        // UNWRAP: indexing a map by a missing key panics, as `BTreeMap`'s own index does.
        self.get(key).expect("no fill totals for this key")
    }
}

/// Cumulative totals of the fills counted under one [`FillKey`]. Exact decimal sums.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FillTotals {
    pub count: u64,
    pub quantity: Decimal,
    /// Sum of `price * quantity`.
    pub notional: Decimal,
    /// The latest `createdAt` among the counted fills (the maximum, so reordering cannot move it
    /// backwards).
    pub last_created_at_ms: Option<i64>,
}

impl FillTotals {
    pub(crate) fn add(&mut self, fill: &Fill) {
        self.count += 1;
        // Saturating: absurd wire values must not panic the sidecar.
        self.quantity = self.quantity.saturating_add(fill.quantity);
        self.notional = self
            .notional
            .saturating_add(fill.price.saturating_mul(fill.quantity));
        self.last_created_at_ms = self.last_created_at_ms.max(fill.created_at_ms);
    }
}

/// What makes two trades the same trade: the exchange's id when it sends one, else the content.
/// Decimals are normalized so `"0.50"` and `0.5` are one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum TradeKey {
    /// Inline when short (most ids are): remembering one allocates nothing and comparing one
    /// follows no pointer.
    Id(ShortStr),
    Content {
        market: Arc<str>,
        created_at_ms: Option<i64>,
        side: Side,
        price: Decimal,
        quantity: Decimal,
        liquidity: Liquidity,
    },
}

impl TradeKey {
    pub(crate) fn of(t: &Trade) -> Self {
        match &t.id {
            Some(id) => TradeKey::Id(id.clone()),
            None => TradeKey::Content {
                market: t.market.as_str().into(),
                created_at_ms: t.created_at_ms,
                side: t.side,
                price: t.price.normalize(),
                quantity: t.quantity.normalize(),
                liquidity: t.liquidity,
            },
        }
    }
}

/// [`TradeKey`] as the memories store it: the content variant behind one pointer, so an entry is
/// three words instead of ten. The dedup memory holds up to its capacity of keys twice (map and
/// queue); at 100,000 keys that is the difference between about 6 and 17 MB, and the map's
/// inserts touch that much less memory.
///
/// The fold makes one per trade and clones it for the eviction queue and the stream's record:
/// an id key (the usual one) clones as a copy of three words.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum StoredKey {
    Id(ShortStr),
    Content(Arc<ContentKey>),
}

/// The fields of [`TradeKey::Content`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ContentKey {
    pub(crate) market: Arc<str>,
    pub(crate) created_at_ms: Option<i64>,
    pub(crate) side: Side,
    pub(crate) price: Decimal,
    pub(crate) quantity: Decimal,
    pub(crate) liquidity: Liquidity,
}

impl From<TradeKey> for StoredKey {
    fn from(key: TradeKey) -> Self {
        match key {
            TradeKey::Id(id) => StoredKey::Id(id),
            TradeKey::Content {
                market,
                created_at_ms,
                side,
                price,
                quantity,
                liquidity,
            } => StoredKey::Content(Arc::new(ContentKey {
                market,
                created_at_ms,
                side,
                price,
                quantity,
                liquidity,
            })),
        }
    }
}

/// Whether a trade key was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Not remembered: count it.
    New,
    /// Counted by an earlier event.
    Earlier,
    /// Counted earlier in the same event (the event repeats a trade).
    ThisEvent,
}

/// Remembers the last `capacity` trade keys; the oldest is forgotten first. A trade forgotten
/// and then replayed is counted again: the capacity must exceed the number of trades a snapshot
/// can repeat.
#[derive(Debug)]
pub(crate) struct Dedup {
    /// Key to the serial number it was inserted with.
    seen: HashMap<StoredKey, u64, FastState>,
    /// The same keys (sharing their strings), oldest first.
    order: VecDeque<StoredKey>,
    capacity: usize,
    next_serial: u64,
}

impl Dedup {
    pub(crate) fn new(capacity: usize) -> Self {
        Dedup {
            seen: HashMap::with_capacity_and_hasher(capacity.min(1 << 16), FastState::default()),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity,
            next_serial: 0,
        }
    }

    /// The serial the next insertion gets; keys inserted at or after it belong to this event.
    pub(crate) fn event_start(&self) -> u64 {
        self.next_serial
    }

    /// Checks a key and remembers it if it was new.
    pub(crate) fn observe(&mut self, key: impl Into<StoredKey>, event_start: u64) -> Seen {
        if self.capacity == 0 {
            return Seen::New;
        }
        match self.seen.entry(key.into()) {
            Entry::Occupied(o) => {
                return if *o.get() >= event_start {
                    Seen::ThisEvent
                } else {
                    Seen::Earlier
                };
            }
            Entry::Vacant(v) => {
                self.order.push_back(v.key().clone());
                v.insert(self.next_serial);
            }
        }
        // Evict after inserting so the key is hashed once; the newest key is at the back, so the
        // front is never the key just added.
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.next_serial += 1;
        Seen::New
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether keys are remembered at all (capacity above 0).
    pub(crate) fn remembers(&self) -> bool {
        self.capacity > 0
    }

    /// The remembered keys with serials from `from` on, oldest first, with their serials.
    /// Keys inserted since a restore have consecutive serials and sit at the back of the
    /// queue, so no lookup is needed; keys already forgotten (more new ones than the capacity)
    /// are not returned, and are below the floor anyway.
    pub(crate) fn keys_since(&self, from: u64) -> impl Iterator<Item = (u64, &StoredKey)> {
        let n = self
            .next_serial
            .saturating_sub(from)
            .min(self.order.len() as u64);
        let first = self.next_serial - n;
        let skip = self.order.len() - n as usize;
        self.order
            .range(skip..)
            .zip(first..)
            .map(|(k, serial)| (serial, k))
    }

    /// Serials below this are forgotten, once the memory is full (`None` before: nothing was).
    pub(crate) fn floor(&self) -> Option<u64> {
        if self.capacity == 0 || self.order.len() < self.capacity {
            return None;
        }
        // The oldest key's own serial: restored serials may have gaps (undecodable keys).
        self.order.front().and_then(|k| self.seen.get(k)).copied()
    }

    /// Refills the memory after a restart, with keys in serial order; later keys are counted
    /// from the serial after the last one.
    pub(crate) fn restore(&mut self, keys: impl IntoIterator<Item = (u64, TradeKey)>) {
        if self.capacity == 0 {
            return;
        }
        for (serial, key) in keys {
            let key = StoredKey::from(key);
            if self.seen.insert(key.clone(), serial).is_none() {
                self.order.push_back(key);
            }
            self.next_serial = serial.saturating_add(1);
        }
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
    }

    pub(crate) fn contains(&self, key: &TradeKey) -> bool {
        self.seen.contains_key(&StoredKey::from(key.clone()))
    }
}

/// How many of the latest stream-delivered trades [`StreamTrades`] keeps.
pub(crate) const STREAM_TRADES_KEPT: usize = 10_000;

#[derive(Debug)]
struct StreamTrade {
    key: StoredKey,
    /// The market's first-seen index in the account (a number, not a shared name: no atomic
    /// reference count to move per trade).
    market: u32,
    created_at_ms: Option<i64>,
    /// Already returned by [`StreamTrades::unlisted`]; the flag lives and dies with the entry,
    /// so the memory of reported trades is bounded by the same capacity.
    reported: bool,
}

/// The latest [`STREAM_TRADES_KEPT`] trades counted from the stream (never recovered ones),
/// oldest first.
#[derive(Debug, Default)]
pub(crate) struct StreamTrades {
    entries: VecDeque<StreamTrade>,
}

impl StreamTrades {
    pub(crate) fn push(&mut self, key: StoredKey, market: u32, created_at_ms: Option<i64>) {
        if self.entries.len() >= STREAM_TRADES_KEPT {
            self.entries.pop_front();
        }
        self.entries.push_back(StreamTrade {
            key,
            market,
            created_at_ms,
            reported: false,
        });
    }

    /// The markets of kept trades inside `rest`'s `createdAt` span (inclusive) whose key `rest`
    /// does not list, each trade once over its stay here, oldest first. `names` are the
    /// account's markets by first-seen index.
    pub(crate) fn unlisted(&mut self, rest: &[Trade], names: &[Arc<str>]) -> Vec<String> {
        let span = rest
            .iter()
            .filter_map(|t| t.created_at_ms)
            .fold(None, |span, at| match span {
                None => Some((at, at)),
                Some((lo, hi)) => Some((at.min(lo), at.max(hi))),
            });
        let Some((lo, hi)) = span else {
            return Vec::new();
        };
        let listed: HashSet<StoredKey> = rest
            .iter()
            .map(|t| StoredKey::from(TradeKey::of(t)))
            .collect();
        // A key kept twice (dedup forgot it and the stream replayed it) is reported once.
        let mut reported: HashSet<StoredKey> = self
            .entries
            .iter()
            .filter(|e| e.reported)
            .map(|e| e.key.clone())
            .collect();
        let mut out = Vec::new();
        for e in &mut self.entries {
            let judged = e.created_at_ms.is_some_and(|at| lo <= at && at <= hi);
            if e.reported || !judged || listed.contains(&e.key) {
                continue;
            }
            e.reported = true;
            if reported.insert(e.key.clone()) {
                let market = names.get(e.market as usize).map_or("", |m| m);
                out.push(market.to_owned());
            }
        }
        out
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> TradeKey {
        TradeKey::Id(id.into())
    }

    #[test]
    fn remembers_until_capacity_then_forgets_oldest_first() {
        let mut d = Dedup::new(2);
        let s = d.event_start();
        assert_eq!(d.observe(key("a"), s), Seen::New);
        assert_eq!(d.observe(key("b"), s), Seen::New);
        assert_eq!(d.observe(key("c"), s), Seen::New); // evicts a
        assert_eq!(d.len(), 2);
        let s = d.event_start();
        assert_eq!(d.observe(key("b"), s), Seen::Earlier);
        assert_eq!(d.observe(key("c"), s), Seen::Earlier);
        assert_eq!(d.observe(key("a"), s), Seen::New); // forgotten, counted again; evicts b
        assert_eq!(d.observe(key("b"), d.event_start()), Seen::New);
    }

    #[test]
    fn repeat_within_one_event_is_told_apart_from_earlier() {
        let mut d = Dedup::new(10);
        d.observe(key("a"), d.event_start());
        let s = d.event_start();
        assert_eq!(d.observe(key("b"), s), Seen::New);
        assert_eq!(d.observe(key("b"), s), Seen::ThisEvent);
        assert_eq!(d.observe(key("a"), s), Seen::Earlier);
    }

    #[test]
    fn stored_keys_are_three_words_and_content_keys_dedup() {
        assert!(std::mem::size_of::<StoredKey>() <= 3 * std::mem::size_of::<usize>());
        let content = |qty: &str| TradeKey::Content {
            market: "M".into(),
            created_at_ms: Some(1),
            side: Side::Sell,
            price: "2".parse().unwrap(),
            quantity: qty.parse().unwrap(),
            liquidity: Liquidity::Unknown,
        };
        let mut d = Dedup::new(10);
        let s = d.event_start();
        assert_eq!(d.observe(content("1"), s), Seen::New);
        assert_eq!(d.observe(content("1"), s), Seen::ThisEvent);
        assert_eq!(d.observe(content("3"), s), Seen::New);
        // An id equal to nothing in content is its own key.
        assert_eq!(d.observe(key("M"), s), Seen::New);
        assert!(d.contains(&content("1")) && !d.contains(&content("2")));
        assert_eq!(d.floor(), None);
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut d = Dedup::new(0);
        assert_eq!(d.observe(key("a"), 0), Seen::New);
        assert_eq!(d.observe(key("a"), 0), Seen::New);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn content_key_normalizes_decimals() {
        let t = |price: &str, qty: &str| Trade {
            id: None,
            market: "BTC-PERP".into(),
            side: Side::Buy,
            liquidity: Liquidity::Maker,
            price: price.parse().unwrap(),
            quantity: qty.parse().unwrap(),
            created_at_ms: Some(1),
        };
        assert_eq!(
            TradeKey::of(&t("100.50", "1.0")),
            TradeKey::of(&t("100.5", "1"))
        );
        assert_ne!(
            TradeKey::of(&t("100.5", "1")),
            TradeKey::of(&t("100.5", "2"))
        );
    }

    #[test]
    fn totals_are_exact() {
        let mut totals = FillTotals::default();
        let fill = |p: &str, q: &str, at| Fill {
            market: "BTC-PERP".into(),
            side: Side::Buy,
            liquidity: Liquidity::Maker,
            price: p.parse().unwrap(),
            quantity: q.parse().unwrap(),
            created_at_ms: at,
        };
        totals.add(&fill("0.1", "3", Some(5)));
        totals.add(&fill("0.2", "0.1", Some(2)));
        totals.add(&fill("1", "1", None));
        assert_eq!(totals.count, 3);
        assert_eq!(totals.quantity, "4.1".parse::<Decimal>().unwrap());
        assert_eq!(totals.notional, "1.32".parse::<Decimal>().unwrap());
        assert_eq!(totals.last_created_at_ms, Some(5));
    }
}
