//! The pure fold of stream payloads into account state: fills (counted once), positions,
//! realized PnL counters and order books.
//!
//! **Architecture Invariant:** state never does IO, never reads the clock and never records
//! metrics. It reports what changed in [`Applied`]; the caller turns that into metrics.
//!
//! The rules:
//! - **Scope.** The all-markets user stream ([`Scope::User`]) carries trades and positions; a
//!   book in it is ignored. A market's events stream ([`Scope::Market`]) contributes only its
//!   book: its trades and positions duplicate the user stream and are ignored.
//! - **Fills are counted exactly once** by key across reconnects and re-snapshots. The key is the
//!   trade `id` when present, else its content (market, `createdAt`, side, normalized price,
//!   normalized quantity, liquidity). A snapshot's recent trades are counted when new (fills
//!   made while the sidecar was away are not lost); already counted, they add to
//!   [`Applied::dedup_snapshot_replay`]. In a delta, an already counted trade, and in any event a
//!   trade repeated within that same event, adds to [`Applied::dedup_duplicate`]. The memory of
//!   keys is bounded by the capacity given to [`Account::new`], oldest forgotten first.
//! - **Positions** are kept by id. An upsert replaces; `removedIds` delete; a snapshot carrying
//!   positions replaces the whole set (known ids absent from it are removed), while a snapshot
//!   without a `positions` key leaves them alone. A `closed` upsert keeps the id known (with the
//!   quantity as sent) until it is removed, so its realized-PnL baseline is kept.
//! - **Realized PnL counters.** Each change of a position's `realizedPnl` adds to `profit`
//!   (positive change) or `loss` (absolute value of a negative change) of its market. The
//!   positions of the first snapshot with positions are the baseline: their current
//!   `realizedPnl` is not counted (if one has none yet, its first report is the baseline). Any id
//!   first seen later (in a delta or a later snapshot) counts from zero, and so does an id seen
//!   again after it was removed. A removal counts nothing; an upsert without `realizedPnl` keeps
//!   the previous baseline. So `profit - loss` is the PnL realized while watched.
//! - **Books** are per market: a snapshot's book replaces that market's book; a delta sets the
//!   levels it carries, and a zero size removes a level. The market is the book's `marketId`,
//!   else the scope's market.
//! - **Reconciliation with REST** (the caller fetches, this module only compares):
//!   [`Account::apply_recovered`] counts trades the stream never delivered, through the same
//!   dedup memory, without moving the dedup counters; [`Account::unlisted_stream_trades`] finds
//!   stream fills a REST listing should contain but does not; [`Account::watch_start_ms`] says
//!   from when REST trades can have been missed; [`positions_by_market`] aggregates a REST
//!   position list exactly as [`Account::market_position`] aggregates the stream's.

mod book;
pub mod durable;
mod fills;
pub(crate) mod hash;
mod positions;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::Serialize;

pub use book::Book;
pub use fills::{FillKey, FillTotals, FillTotalsView};
pub use positions::{MarketPosition, RealizedByMarket, RealizedTotals, positions_by_market};

use crate::model::{EventKind, Fill, Payload, ShortStr, Trade};
use durable::{DedupCounts, Draft, DurableImage, Journal, NewKey, TakenJournal};
use fills::{Dedup, FillBook, Seen, StoredKey, StreamTrades, TradeKey, fill_slot, slot_parts};
use hash::FastState;
use positions::{PositionChanges, Positions};

/// Which stream a payload came from; decides which parts of it are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The all-markets user stream: trades and positions; any book is ignored.
    User,
    /// That market's events stream: only its book is applied.
    Market(&'a str),
}

/// What one event changed; the caller updates metrics from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// Fills newly counted by this event (after dedup), in wire order.
    pub fills: Vec<Fill>,
    /// For each of `fills`, its index in the trades applied (the trade's id is there, for the
    /// fill's span).
    pub fill_trades: Vec<u32>,
    /// Trades in a snapshot already counted before this event.
    pub dedup_snapshot_replay: u64,
    /// Trades in a delta already counted, or repeated within this one event.
    pub dedup_duplicate: u64,
    /// Markets whose aggregated position changed (including removed to nothing).
    pub position_markets: Vec<ShortStr>,
    /// Markets whose realized totals changed.
    pub realized_markets: Vec<ShortStr>,
    /// Markets whose book changed.
    pub book_markets: Vec<ShortStr>,
}

impl Applied {
    /// Empties it, keeping the vectors' capacity (see [`Account::apply_event_into`]).
    pub fn clear(&mut self) {
        self.fills.clear();
        self.fill_trades.clear();
        self.dedup_snapshot_replay = 0;
        self.dedup_duplicate = 0;
        self.position_markets.clear();
        self.realized_markets.clear();
        self.book_markets.clear();
    }
}

/// A market's position valued at its mark; see [`Account::valuation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Valuation {
    /// `(mark - entry) * signed quantity`.
    pub unrealized_pnl: Decimal,
    /// `|quantity| * mark`.
    pub notional: Decimal,
}

/// The account as folded from the stream. See the module docs for the rules.
#[derive(Debug)]
pub struct Account {
    dedup: Dedup,
    fills: FillBook,
    positions: Positions,
    books: BTreeMap<String, Book>,
    /// `Arc` so each kept stream trade shares its market's one allocation.
    markets: BTreeSet<Arc<str>>,
    /// The same markets by first-seen index.
    names: Vec<Arc<str>>,
    /// The same again, by value, for fills (see [`ShortStr`]).
    fill_names: Vec<ShortStr>,
    /// A market's index in `names`, hashed: finding a market here costs one hash instead of a
    /// string comparison per tree level.
    market_index: HashMap<ShortStr, u32, FastState>,
    /// The index of the market noted last. A fill and the position update that follows it name
    /// the same market, so this answers about half of the [`Account::market_slot`] calls
    /// without a lookup.
    last_market: Option<u32>,
    stream_trades: StreamTrades,
    watch_start_ms: Option<i64>,
    /// Trades not counted because already counted, since the account began (restored too).
    dedup_counts: DedupCounts,
    /// How many markets were seen, for their first-seen index.
    market_count: u32,
    /// Durable changes since [`Account::take_journal`], while journaling (see [`durable`]).
    journal: Option<Draft>,
    /// Whether anything was marked in `journal` since [`Account::take_touched`].
    touched: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Snapshot,
    Delta,
}

impl Account {
    /// An empty account remembering up to `dedup_capacity` trade keys (FIFO eviction).
    pub fn new(dedup_capacity: usize) -> Self {
        Account {
            dedup: Dedup::new(dedup_capacity),
            fills: FillBook::default(),
            positions: Positions::default(),
            books: BTreeMap::new(),
            markets: BTreeSet::new(),
            names: Vec::new(),
            fill_names: Vec::new(),
            market_index: HashMap::default(),
            last_market: None,
            stream_trades: StreamTrades::default(),
            watch_start_ms: None,
            dedup_counts: DedupCounts::default(),
            market_count: 0,
            journal: None,
            touched: false,
        }
    }

    /// An account rebuilt from its durable image after a restart, journaling from then on.
    /// Returns it with the number of stored trade keys that could not be decoded (skipped).
    /// Keys beyond `dedup_capacity` (a capacity lowered since) are dropped, oldest first.
    pub fn restore(dedup_capacity: usize, image: DurableImage) -> (Self, u64) {
        let mut acc = Account::new(dedup_capacity);
        let mut keys = image.keys;
        keys.sort_unstable_by_key(|(serial, _)| *serial);
        let mut skipped = 0u64;
        let keep_from = keys.len().saturating_sub(dedup_capacity);
        let decoded = keys[keep_from..].iter().filter_map(|(serial, k)| {
            let key = durable::decode_key(k);
            if key.is_none() {
                skipped += 1;
            }
            key.map(|key| (*serial, key))
        });
        acc.dedup.restore(decoded);
        for m in &image.markets {
            acc.note_market(&ShortStr::new(m));
        }
        for (k, t) in image.fills {
            let m = acc.market_slot(&ShortStr::new(&k.market));
            let slot = fill_slot(k.side, k.liquidity);
            acc.fills.insert(m, slot, t, &acc.names);
        }
        let realized: Vec<_> = image.realized;
        for (m, _) in &realized {
            acc.note_market(&ShortStr::new(m));
        }
        acc.positions.restore(
            realized,
            image
                .bases
                .into_iter()
                .map(|(id, _market, base)| (id, base)),
            image.baselined,
        );
        acc.dedup_counts = image.dedup;
        acc.watch_start_ms = image.watch_start_ms;
        acc.start_journal();
        (acc, skipped)
    }

    /// Start recording durable changes (an account with a data dir); see [`Account::take_journal`].
    pub fn start_journal(&mut self) {
        self.positions.journal = true;
        // Keys remembered before (restored ones) are already durable, or predate journaling.
        let keys_from = self.dedup.event_start();
        self.journal.get_or_insert_with(|| Draft {
            keys_from,
            ..Draft::default()
        });
    }

    /// Stop recording durable changes (a restored account without a data dir to write to):
    /// what nobody takes need not be kept.
    pub fn stop_journal(&mut self) {
        self.positions.journal = false;
        self.journal = None;
        self.positions.take_bases(&mut Vec::new());
        self.positions.take_realized(&mut Vec::new());
        self.take_touched();
    }

    /// The durable changes since the last call (empty when nothing durable changed), or `None`
    /// when the account is not journaling. Rows are read now, at their current values (see
    /// [`durable`]): one row per key however many events changed it.
    pub fn take_journal(&mut self) -> Option<Journal> {
        self.take_journal_rows().map(TakenJournal::into_journal)
    }

    /// [`Account::take_journal`], the rows only copied: what the account cell does under its
    /// lock, building the journal after releasing it.
    pub fn take_journal_rows(&mut self) -> Option<TakenJournal> {
        let d = self.journal.as_mut()?;
        let mut new_keys: Vec<_> = d.new_keys.drain(..).collect();
        let next = self.dedup.event_start();
        new_keys.extend(
            self.dedup
                .keys_since(d.keys_from)
                .map(|(serial, k)| (serial, NewKey::of(k.clone()))),
        );
        d.keys_from = next;
        // Drained, not swapped: the draft keeps its capacity for the stream's next pushes.
        let new_markets: Vec<_> = d.new_markets.drain(..).collect();
        let (floor, dedup, watch_start, baselined) = (
            std::mem::take(&mut d.floor),
            std::mem::take(&mut d.dedup),
            std::mem::take(&mut d.watch_start),
            std::mem::take(&mut d.baselined),
        );
        let (book, names) = (&self.fills, &self.names);
        let fills = d
            .fills
            .drain(..)
            .filter_map(|(m, slot)| {
                let t = book.get(m, usize::from(slot))?.clone();
                let (side, liquidity) = slot_parts(usize::from(slot));
                let key = FillKey {
                    market: Arc::clone(names.get(m as usize)?),
                    side,
                    liquidity,
                };
                Some((key, t))
            })
            .collect();
        let mut realized = Vec::new();
        self.positions.take_realized(&mut realized);
        let mut bases = Vec::new();
        self.positions.take_bases(&mut bases);
        Some(TakenJournal {
            new_keys,
            key_floor: if floor { self.dedup.floor() } else { None },
            fills,
            realized,
            bases,
            new_markets,
            dedup: dedup.then_some(self.dedup_counts),
            watch_start_ms: if watch_start {
                self.watch_start_ms
            } else {
                None
            },
            baselined: baselined.then_some(true),
        })
    }

    /// Whether anything durable changed since the last call (always false when not
    /// journaling): the account cell asks after each event whether it waits for a commit.
    pub fn take_touched(&mut self) -> bool {
        let positions = self.positions.take_touched();
        std::mem::take(&mut self.touched) | positions
    }

    /// Trades not counted because already counted, in total.
    pub fn dedup_counts(&self) -> DedupCounts {
        self.dedup_counts
    }

    /// Applies a snapshot: new trades counted, positions replaced (if present), book replaced.
    pub fn apply_snapshot(&mut self, scope: Scope<'_>, payload: &Payload) -> Applied {
        self.apply(Kind::Snapshot, scope, payload)
    }

    /// Applies a delta: new trades counted, position upserts/removals, book levels set.
    pub fn apply_delta(&mut self, scope: Scope<'_>, payload: &Payload) -> Applied {
        self.apply(Kind::Delta, scope, payload)
    }

    /// Applies a snapshot or a delta into `applied`, which is cleared first: a caller applying
    /// event after event (the account cell) reuses one, so an event allocates no vectors for
    /// what it changed.
    pub fn apply_event_into(
        &mut self,
        kind: EventKind,
        scope: Scope<'_>,
        payload: &Payload,
        applied: &mut Applied,
    ) {
        applied.clear();
        let kind = match kind {
            EventKind::Snapshot => Kind::Snapshot,
            EventKind::Delta => Kind::Delta,
        };
        self.apply_into(kind, scope, payload, applied);
    }

    fn apply(&mut self, kind: Kind, scope: Scope<'_>, payload: &Payload) -> Applied {
        let mut applied = Applied::default();
        self.apply_into(kind, scope, payload, &mut applied);
        applied
    }

    fn apply_into(
        &mut self,
        kind: Kind,
        scope: Scope<'_>,
        payload: &Payload,
        applied: &mut Applied,
    ) {
        match scope {
            Scope::User => {
                self.apply_trades(kind, &payload.trades, applied);
                if let Some(update) = &payload.positions {
                    let was_baselined = self.positions.baselined();
                    let changes = PositionChanges {
                        markets: &mut applied.position_markets,
                        realized: &mut applied.realized_markets,
                    };
                    match kind {
                        Kind::Snapshot => self.positions.apply_snapshot(update, changes),
                        Kind::Delta => self.positions.apply_delta(update, changes),
                    }
                    for p in &update.upserts {
                        self.note_market(&p.market);
                    }
                    if let Some(j) = &mut self.journal {
                        // Realized totals are marked stale by the positions themselves.
                        if !was_baselined && self.positions.baselined() {
                            j.baselined = true;
                            self.touched = true;
                        }
                    }
                }
            }
            Scope::Market(scope_market) => {
                if let Some(update) = &payload.book {
                    let market = update.market.as_deref().unwrap_or(scope_market);
                    let changed = match (kind, self.books.get_mut(market)) {
                        (Kind::Delta, Some(book)) => book.apply_levels(&update.bids, &update.asks),
                        (_, existing) => {
                            let fresh = Book::from_levels(&update.bids, &update.asks);
                            match existing {
                                Some(book) if *book == fresh => false,
                                Some(book) => {
                                    *book = fresh;
                                    true
                                }
                                None => {
                                    self.books.insert(market.to_owned(), fresh);
                                    true
                                }
                            }
                        }
                    };
                    self.note_market(&ShortStr::new(market));
                    if changed {
                        applied.book_markets.push(ShortStr::new(market));
                    }
                }
            }
        }
    }

    fn apply_trades(&mut self, kind: Kind, trades: &[Trade], applied: &mut Applied) {
        if trades.is_empty() {
            return;
        }
        if kind == Kind::Snapshot && self.watch_start_ms.is_none() {
            self.watch_start_ms = trades.iter().filter_map(|t| t.created_at_ms).min();
            if let (Some(j), Some(_)) = (&mut self.journal, self.watch_start_ms) {
                j.watch_start = true;
                self.touched = true;
            }
        }
        let start = self.dedup.event_start();
        for (i, t) in trades.iter().enumerate() {
            let key = StoredKey::from(TradeKey::of(t));
            let serial = self.dedup.event_start();
            match self.dedup.observe(key.clone(), start) {
                Seen::New => {
                    self.journal_key(serial, &key);
                    let (fill, market) = self.count_fill(t);
                    self.stream_trades.push(key, market, t.created_at_ms);
                    applied.fills.push(fill);
                    applied.fill_trades.push(i as u32);
                }
                Seen::Earlier if kind == Kind::Snapshot => applied.dedup_snapshot_replay += 1,
                Seen::Earlier | Seen::ThisEvent => applied.dedup_duplicate += 1,
            }
        }
        self.note_dedup(applied.dedup_snapshot_replay, applied.dedup_duplicate);
    }

    /// Journals a newly remembered key. A dedup memory that remembers keys holds them in serial
    /// order, so the journal reads them from there when taken ([`Dedup::keys_since`]) and the
    /// fold copies nothing per trade; one that remembers nothing (capacity 0) has them pushed.
    fn journal_key(&mut self, serial: u64, key: &StoredKey) {
        if let Some(j) = &mut self.journal {
            if !self.dedup.remembers() {
                j.new_keys.push((serial, NewKey::of(key.clone())));
            }
            self.touched = true;
        }
    }

    /// Adds to the running dedup totals, and journals the key floor and totals.
    fn note_dedup(&mut self, snapshot_replay: u64, duplicate: u64) {
        let c = &mut self.dedup_counts;
        c.snapshot_replay = c.snapshot_replay.saturating_add(snapshot_replay);
        c.duplicate = c.duplicate.saturating_add(duplicate);
        if let Some(j) = &mut self.journal {
            if snapshot_replay > 0 || duplicate > 0 {
                j.dedup = true;
                self.touched = true;
            }
            if self.dedup.floor().is_some() {
                j.floor = true;
                self.touched = true;
            }
        }
    }

    /// Counts a new trade: adds it to its totals and returns it as a fill whose market is shared
    /// with [`Account::markets`], with the market's first-seen index.
    ///
    /// No `Arc` is cloned here: the fill's market is by value, and the totals are found by
    /// index (see [`FillBook`]). An `Arc` clone is an atomic increment, which waits for the stores
    /// still pending (see [`ShortStr`]).
    fn count_fill(&mut self, t: &Trade) -> (Fill, u32) {
        let slot = self.market_slot(&t.market);
        let fill = Fill {
            market: self.fill_names[slot as usize].clone(),
            side: t.side,
            liquidity: t.liquidity,
            price: t.price,
            quantity: t.quantity,
            created_at_ms: t.created_at_ms,
        };
        let fill_at = fill_slot(t.side, t.liquidity);
        match self.fills.get_mut(slot, fill_at) {
            Some(totals) => totals.add(&fill),
            None => {
                let mut totals = FillTotals::default();
                totals.add(&fill);
                self.fills.insert(slot, fill_at, totals, &self.names);
            }
        }
        if let Some(j) = &mut self.journal {
            j.mark_fill(slot, fill_at);
            self.touched = true;
        }
        (fill, slot)
    }

    /// Notes that a market was seen (see [`Account::markets`]).
    fn note_market(&mut self, market: &ShortStr) {
        self.market_slot(market);
    }

    /// The market's first-seen index, the market noted as seen. Names are compared as
    /// [`ShortStr`]s: inline, without a call to `memcmp`.
    fn market_slot(&mut self, market: &ShortStr) -> u32 {
        if let Some(last) = self.last_market
            && self.fill_names[last as usize] == *market
        {
            return last;
        }
        let slot = self.market_entry(market);
        self.last_market = Some(slot);
        slot
    }

    /// The market's first-seen index, the market added to [`Account::markets`] (and journaled)
    /// when new.
    fn market_entry(&mut self, market: &ShortStr) -> u32 {
        match self.market_index.get(market) {
            Some(&slot) => slot,
            None => {
                let m: Arc<str> = market.as_str().into();
                // Saturating: four billion markets is beyond any account.
                let slot = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
                self.markets.insert(Arc::clone(&m));
                self.market_index.insert(market.clone(), slot);
                self.names.push(m);
                self.fill_names.push(market.clone());
                if let Some(j) = &mut self.journal {
                    j.new_markets.push((self.market_count, market.to_string()));
                    self.touched = true;
                }
                self.market_count = self.market_count.saturating_add(1);
                slot
            }
        }
    }

    /// Counts trades read from REST that the stream never delivered: each one not in the dedup
    /// memory is counted exactly like a stream fill (and remembered), and returned in
    /// [`Applied::fills`], the only field set. Remembered trades are ignored without moving any
    /// dedup counter, since a REST list repeats known trades by design; so is a trade repeated
    /// within `trades`. A recovered trade the stream delivers later is then an ordinary
    /// [`Applied::dedup_snapshot_replay`] / [`Applied::dedup_duplicate`]. Recovered trades are
    /// not stream-delivered: [`Account::unlisted_stream_trades`] never reports them. With a dedup
    /// capacity of 0 nothing is remembered and every call counts its trades again.
    pub fn apply_recovered(&mut self, trades: &[Trade]) -> Applied {
        let mut applied = Applied::default();
        let start = self.dedup.event_start();
        for (i, t) in trades.iter().enumerate() {
            let key = StoredKey::from(TradeKey::of(t));
            let serial = self.dedup.event_start();
            // A REST listing repeats known trades by design: journal only the new ones.
            if self.dedup.observe(key.clone(), start) == Seen::New {
                self.journal_key(serial, &key);
                let (fill, _) = self.count_fill(t);
                applied.fills.push(fill);
                applied.fill_trades.push(i as u32);
            }
        }
        self.note_dedup(0, 0);
        applied
    }

    /// Whether the dedup memory holds this trade's key (its id, else its content).
    pub fn has_seen(&self, trade: &Trade) -> bool {
        self.dedup.contains(&TradeKey::of(trade))
    }

    /// Stream-delivered fills that a REST trade listing omits: among the last 10,000 trades the
    /// stream delivered (new ones, in either event kind; never [`Account::apply_recovered`]
    /// ones), those whose `createdAt` lies within `[min, max]` of `rest`'s `createdAt`s and whose
    /// key (id, else content) is not among `rest`'s keys. Trades without `createdAt`, on either
    /// side, are not judged (a `rest` trade without one still lists its key); a `rest` without
    /// any `createdAt` judges nothing. Each trade is reported at most once while it is among
    /// those 10,000. Returns the market of each reported trade, oldest first.
    pub fn unlisted_stream_trades(&mut self, rest: &[Trade]) -> Vec<String> {
        self.stream_trades.unlisted(rest, &self.names)
    }

    /// The earliest time the account is watching from, unix ms: REST trades older than this
    /// predate the sidecar and must not count as missed. Set, while unset, by the first
    /// [`Scope::User`] snapshot carrying trades with `createdAt` (the minimum of them), or by
    /// [`Account::note_watch_start`].
    pub fn watch_start_ms(&self) -> Option<i64> {
        self.watch_start_ms
    }

    /// Sets [`Account::watch_start_ms`] if still unset (the caller passes the first snapshot's
    /// `engineTs` or its receipt time; call it after applying that snapshot so its trades win).
    pub fn note_watch_start(&mut self, ms: i64) {
        if self.watch_start_ms.is_none() {
            self.watch_start_ms = Some(ms);
            if let Some(j) = &mut self.journal {
                j.watch_start = true;
                self.touched = true;
            }
        }
    }

    /// The aggregate of a market's known positions (closed ones included, with the quantity
    /// they were sent with). `None` when the market has no known position: never had one, or
    /// all were removed. A market whose known positions are all flat or closed gives `Some` with
    /// quantity 0. So a comparison with an exchange listing reads `None` as quantity 0; see
    /// [`positions_by_market`] for the listing side.
    pub fn market_position(&self, market: &str) -> Option<MarketPosition> {
        self.positions.market_position(market)
    }

    /// Every market ever seen in positions, fills or books, sorted (for metric cleanup).
    pub fn markets(&self) -> impl Iterator<Item = &str> {
        self.markets.iter().map(|m| &**m)
    }

    /// Positions with a nonzero quantity that are not closed.
    pub fn open_positions(&self) -> usize {
        self.positions.open_count()
    }

    /// A market's position valued at its mark, the mid of its book: `None` without a position
    /// with a nonzero quantity or without a mark. A position without an entry price is valued
    /// at the mark (no unrealized PnL).
    pub fn valuation(&self, market: &str) -> Option<Valuation> {
        // The mark first: without a book (the user stream alone) nothing else is looked up.
        let mid = self.books.get(market)?.mid()?;
        let p = self.market_position(market)?;
        if p.quantity.is_zero() {
            return None;
        }
        let entry = p.entry_price.unwrap_or(mid);
        Some(Valuation {
            // Saturating: absurd wire values must not panic the sidecar.
            unrealized_pnl: mid.saturating_sub(entry).saturating_mul(p.quantity),
            notional: p.quantity.abs().saturating_mul(mid),
        })
    }

    pub fn book(&self, market: &str) -> Option<&Book> {
        self.books.get(market)
    }

    /// Cumulative fill totals, exact, as a map by [`FillKey`].
    pub fn fill_totals(&self) -> FillTotalsView<'_> {
        FillTotalsView {
            book: &self.fills,
            names: &self.names,
            index: &self.market_index,
        }
    }

    /// Realized profit and loss accumulated while watched, per market.
    pub fn realized_totals(&self) -> RealizedByMarket<'_> {
        self.positions.realized()
    }

    /// Number of trade keys currently remembered for dedup.
    pub fn remembered_trades(&self) -> usize {
        self.dedup.len()
    }

    /// A deterministic, serializable view of everything; decimals as normalized strings.
    pub fn summary(&self) -> Summary {
        let positions = self
            .positions
            .all()
            .map(|p| {
                (
                    p.id.to_string(),
                    PositionSummary {
                        market: p.market.to_string(),
                        quantity: dec(p.quantity),
                        entry_price: p.entry_price.map(dec),
                        realized_pnl: p.realized_pnl.map(dec),
                        closed: p.closed,
                    },
                )
            })
            .collect();
        let mut market_positions = BTreeMap::new();
        for market in &self.markets {
            if let Some(mp) = self.market_position(market) {
                market_positions.insert(
                    market.to_string(),
                    MarketPositionSummary {
                        quantity: dec(mp.quantity),
                        entry_price: mp.entry_price.map(dec),
                        realized_pnl: dec(mp.realized_pnl),
                    },
                );
            }
        }
        let fills = self
            .fill_totals()
            .iter()
            .map(|(k, t)| FillSummary {
                market: k.market.to_string(),
                side: k.side.as_str(),
                liquidity: k.liquidity.as_str(),
                count: t.count,
                quantity: dec(t.quantity),
                notional: dec(t.notional),
                last_created_at_ms: t.last_created_at_ms,
            })
            .collect();
        let realized = self
            .realized_totals()
            .iter()
            .map(|(m, r)| {
                (
                    m.to_owned(),
                    RealizedSummary {
                        profit: dec(r.profit),
                        loss: dec(r.loss),
                    },
                )
            })
            .collect();
        let books = self
            .books
            .iter()
            .map(|(m, b)| {
                let side = |levels: &mut dyn Iterator<Item = (Decimal, Decimal)>| {
                    levels.map(|(p, s)| [dec(p), dec(s)]).collect()
                };
                (
                    m.clone(),
                    BookSummary {
                        best_bid: b.best_bid().map(dec),
                        best_ask: b.best_ask().map(dec),
                        mid: b.mid().map(dec),
                        bids: side(&mut b.bids()),
                        asks: side(&mut b.asks()),
                    },
                )
            })
            .collect();
        Summary {
            markets: self.markets.iter().map(|m| m.to_string()).collect(),
            open_positions: self.open_positions(),
            positions,
            market_positions,
            fills,
            realized,
            books,
            remembered_trades: self.dedup.len(),
        }
    }
}

fn dec(d: Decimal) -> String {
    d.normalize().to_string()
}

/// Everything the account knows, in a stable order (fixtures and the status API print it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub markets: Vec<String>,
    pub open_positions: usize,
    /// By position id.
    pub positions: BTreeMap<String, PositionSummary>,
    /// By market.
    pub market_positions: BTreeMap<String, MarketPositionSummary>,
    /// Sorted by market, side, liquidity.
    pub fills: Vec<FillSummary>,
    /// By market.
    pub realized: BTreeMap<String, RealizedSummary>,
    /// By market.
    pub books: BTreeMap<String, BookSummary>,
    pub remembered_trades: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionSummary {
    pub market: String,
    pub quantity: String,
    pub entry_price: Option<String>,
    pub realized_pnl: Option<String>,
    pub closed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MarketPositionSummary {
    pub quantity: String,
    pub entry_price: Option<String>,
    pub realized_pnl: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FillSummary {
    pub market: String,
    pub side: &'static str,
    pub liquidity: &'static str,
    pub count: u64,
    pub quantity: String,
    pub notional: String,
    pub last_created_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RealizedSummary {
    pub profit: String,
    pub loss: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BookSummary {
    pub best_bid: Option<String>,
    pub best_ask: Option<String>,
    pub mid: Option<String>,
    /// `[price, size]`, best first.
    pub bids: Vec<[String; 2]>,
    pub asks: Vec<[String; 2]>,
}

#[cfg(test)]
mod tests;
