//! The part of an account that must survive a restart, as plain data: the image a restarted
//! account is rebuilt from, the journal of changes a fold leaves for the data dir, and the text
//! encoding of trade keys and decimals both use.
//!
//! What is durable: the dedup memory (so a re-snapshot after a restart recounts nothing), the
//! fill and realized totals (so counters continue instead of resetting), each position's
//! realized-PnL baseline (so PnL realized while the sidecar was down is counted once, when the
//! next snapshot shows it), the dedup counters, the first-seen order of markets (so label folding
//! into `other` is stable across restarts) and the watch start (so REST trades made while the
//! sidecar was down can still be recovered). Positions, books and stream bookkeeping are not:
//! the first snapshot after a restart brings them back.
//!
//! Everything here is pure: no IO, no clock. The data dir (`crate::datadir`) stores the rows.
//!
//! The fold does not build rows as it goes: it marks, in a `Draft`, what changed (markets as
//! they are first seen, and which rows are stale), and the rows are read from the account when
//! the journal is taken ([`crate::state::Account::take_journal`]); new trade keys are read from
//! the dedup memory, which holds them in serial order. A burst of events that touch the same
//! rows then journals each row once, and the per-event cost is a few pushes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use rust_decimal::Decimal;

use super::fills::{FillKey, FillTotals, StoredKey, TradeKey};
use super::positions::{RealizedTotals, ShortBaseRow};
use crate::model::{Liquidity, ShortStr, Side};

/// Separates fields in encoded keys and rows. A control character: market ids and trade ids
/// are printable, and a field that contains it anyway cannot be split wrongly because the
/// free-form field is always the last one.
const SEP: char = '\u{1f}';

/// A restarted account's durable state, as loaded from the data dir.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DurableImage {
    /// Remembered trade keys with their serial numbers, any order.
    pub keys: Vec<(u64, String)>,
    pub fills: Vec<(FillKey, FillTotals)>,
    pub realized: Vec<(String, RealizedTotals)>,
    /// Position id to (market, realized-PnL baseline).
    pub bases: Vec<(String, String, Option<Decimal>)>,
    /// Markets in first-seen order.
    pub markets: Vec<String>,
    pub dedup: DedupCounts,
    pub watch_start_ms: Option<i64>,
    /// Whether the positions of a first snapshot had become the realized-PnL baseline.
    pub baselined: bool,
}

impl DurableImage {
    pub fn is_empty(&self) -> bool {
        *self == DurableImage::default()
    }

    /// The image after `j`, exactly as the data dir stores it: the model the store is tested
    /// against, and what restart tests use without a disk.
    #[cfg(test)]
    pub fn apply_journal(&mut self, j: &Journal) {
        self.keys
            .extend(j.new_keys.iter().map(|(s, k)| (*s, k.text().into_owned())));
        if let Some(floor) = j.key_floor {
            self.keys.retain(|(serial, _)| *serial >= floor);
        }
        for (k, t) in &j.fills {
            match self.fills.iter_mut().find(|(fk, _)| fk == k) {
                Some(row) => row.1 = t.clone(),
                None => self.fills.push((k.clone(), t.clone())),
            }
        }
        for (m, r) in &j.realized {
            match self.realized.iter_mut().find(|(rm, _)| rm == m) {
                Some(row) => row.1 = r.clone(),
                None => self.realized.push((m.clone(), r.clone())),
            }
        }
        for (id, base) in &j.bases {
            self.bases.retain(|(bid, _, _)| bid != id);
            if let Some((market, b)) = base {
                self.bases.push((id.clone(), market.clone(), *b));
            }
        }
        self.markets
            .extend(j.new_markets.iter().map(|(_, m)| m.clone()));
        if let Some(d) = j.dedup {
            self.dedup = d;
        }
        if let Some(ms) = j.watch_start_ms {
            self.watch_start_ms = Some(ms);
        }
        if let Some(b) = j.baselined {
            self.baselined = b;
        }
    }
}

/// Running totals of trades not counted because they were already counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DedupCounts {
    /// Trades a snapshot repeated.
    pub snapshot_replay: u64,
    /// Trades a delta repeated, or one event repeated within itself.
    pub duplicate: u64,
}

/// A newly remembered trade key, as a journal carries it: as the fold saw it, made text (see
/// `encode_key`) by the data dir's writer thread rather than on the stream's, or already text.
#[derive(Debug, Clone)]
pub struct NewKey(KeyForm);

#[derive(Debug, Clone)]
enum KeyForm {
    Key(StoredKey),
    Text(String),
}

impl NewKey {
    pub(crate) fn of(key: StoredKey) -> Self {
        NewKey(KeyForm::Key(key))
    }

    /// The key as stored (see `encode_key`).
    pub fn text(&self) -> Cow<'_, str> {
        match &self.0 {
            KeyForm::Key(_) => {
                let mut out = String::new();
                self.encode_into(&mut out);
                Cow::Owned(out)
            }
            KeyForm::Text(t) => Cow::Borrowed(t),
        }
    }

    /// Writes the key as stored into `out` (cleared first), so a writer encoding many keys
    /// reuses one buffer.
    pub fn encode_into(&self, out: &mut String) {
        out.clear();
        match &self.0 {
            KeyForm::Key(StoredKey::Id(id)) => write_id(id.as_str(), out),
            KeyForm::Key(StoredKey::Content(c)) => write_content(
                out,
                &c.market,
                c.created_at_ms,
                c.side,
                c.liquidity,
                c.price,
                c.quantity,
            ),
            KeyForm::Text(t) => out.push_str(t),
        }
    }
}

/// Keys are equal when they are stored alike, whichever form they are in.
impl PartialEq for NewKey {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl From<String> for NewKey {
    fn from(text: String) -> Self {
        NewKey(KeyForm::Text(text))
    }
}

impl From<&str> for NewKey {
    fn from(text: &str) -> Self {
        NewKey(KeyForm::Text(text.to_owned()))
    }
}

/// Durable changes since the journal was last taken. Rows are absolute values (the totals after
/// the change), so applying a journal twice, or a later journal over an earlier one, is safe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Journal {
    /// Newly remembered trade keys with their serials.
    pub new_keys: Vec<(u64, NewKey)>,
    /// Serials below this are forgotten (evicted from the bounded dedup memory).
    pub key_floor: Option<u64>,
    pub fills: BTreeMap<FillKey, FillTotals>,
    pub realized: BTreeMap<String, RealizedTotals>,
    /// Position id to its new (market, baseline), or `None` when the id was removed.
    pub bases: BTreeMap<String, Option<(String, Option<Decimal>)>>,
    /// Markets seen for the first time, with their first-seen index.
    pub new_markets: Vec<(u32, String)>,
    pub dedup: Option<DedupCounts>,
    pub watch_start_ms: Option<i64>,
    pub baselined: Option<bool>,
}

impl Journal {
    pub fn is_empty(&self) -> bool {
        self.new_keys.is_empty()
            && self.key_floor.is_none()
            && self.fills.is_empty()
            && self.realized.is_empty()
            && self.bases.is_empty()
            && self.new_markets.is_empty()
            && self.dedup.is_none()
            && self.watch_start_ms.is_none()
            && self.baselined.is_none()
    }

    /// Folds a later journal into this one (the later values win).
    pub fn merge(&mut self, later: Journal) {
        if self.is_empty() {
            // The usual case in a group commit (one journal per account): nothing to fold.
            *self = later;
            return;
        }
        self.new_keys.extend(later.new_keys);
        if later.key_floor.is_some() {
            self.key_floor = later.key_floor;
        }
        self.fills.extend(later.fills);
        self.realized.extend(later.realized);
        self.bases.extend(later.bases);
        self.new_markets.extend(later.new_markets);
        if later.dedup.is_some() {
            self.dedup = later.dedup;
        }
        if later.watch_start_ms.is_some() {
            self.watch_start_ms = later.watch_start_ms;
        }
        if later.baselined.is_some() {
            self.baselined = later.baselined;
        }
    }
}

/// A trade key as text: `i<SEP><id>` or
/// `c<SEP><createdAt ms or empty><SEP><side><SEP><liquidity><SEP><price><SEP><qty><SEP><market>`.
/// The writer encodes through [`NewKey::encode_into`]; this is that, for one key.
#[cfg(test)]
pub(crate) fn encode_key(key: &TradeKey) -> String {
    NewKey::of(StoredKey::from(key.clone())).text().into_owned()
}

/// Pushes rather than `format!`: the writer encodes every key a stream delivers.
fn write_id(id: &str, out: &mut String) {
    out.reserve(2 + id.len());
    out.push('i');
    out.push(SEP);
    out.push_str(id);
}

fn write_content(
    out: &mut String,
    market: &str,
    created_at_ms: Option<i64>,
    side: Side,
    liquidity: Liquidity,
    price: Decimal,
    quantity: Decimal,
) {
    out.push('c');
    out.push(SEP);
    if let Some(at) = created_at_ms {
        // Writing to a String cannot fail.
        let _ = write!(out, "{at}");
    }
    out.push(SEP);
    out.push_str(side.as_str());
    out.push(SEP);
    out.push_str(liquidity.as_str());
    let _ = write!(out, "{SEP}{price}{SEP}{quantity}{SEP}");
    out.push_str(market);
}

/// A journal as taken under the account's lock: the rows copied as they are, into vectors, so
/// the lock is held for copies only (the stream waits for it); [`TakenJournal::into_journal`]
/// builds the [`Journal`]'s maps and texts afterwards, on the writer's thread.
#[derive(Debug, Default)]
pub struct TakenJournal {
    pub(crate) new_keys: Vec<(u64, NewKey)>,
    pub(crate) key_floor: Option<u64>,
    pub(crate) fills: Vec<(FillKey, FillTotals)>,
    pub(crate) realized: Vec<(ShortStr, RealizedTotals)>,
    pub(crate) bases: Vec<(ShortStr, Option<ShortBaseRow>)>,
    pub(crate) new_markets: Vec<(u32, String)>,
    pub(crate) dedup: Option<DedupCounts>,
    pub(crate) watch_start_ms: Option<i64>,
    pub(crate) baselined: Option<bool>,
}

impl TakenJournal {
    pub fn into_journal(self) -> Journal {
        Journal {
            new_keys: self.new_keys,
            key_floor: self.key_floor,
            fills: self.fills.into_iter().collect(),
            realized: self
                .realized
                .into_iter()
                .map(|(m, t)| (m.to_string(), t))
                .collect(),
            bases: self
                .bases
                .into_iter()
                .map(|(id, row)| (id.to_string(), row.map(|(m, b)| (m.to_string(), b))))
                .collect(),
            new_markets: self.new_markets,
            dedup: self.dedup,
            watch_start_ms: self.watch_start_ms,
            baselined: self.baselined,
        }
    }
}

/// What changed since the journal was last taken, as the fold marks it (see the module docs):
/// events as they happened, and for rows holding state only which ones are stale. Realized-PnL
/// baselines and realized totals are marked by the positions themselves
/// (`Positions::take_bases`, `Positions::take_realized`).
#[derive(Debug, Default)]
pub(crate) struct Draft {
    /// Keys remembered from this serial on are not journaled yet; they are read from the dedup
    /// memory when taken.
    pub(crate) keys_from: u64,
    /// Keys of a dedup memory that remembers none (capacity 0), which cannot be read back.
    pub(crate) new_keys: Vec<(u64, NewKey)>,
    /// The dedup memory was full at some point: the key floor is read when taken.
    pub(crate) floor: bool,
    /// Fill totals rows to write, each once: (market slot, fill slot).
    pub(crate) fills: Vec<(u32, u8)>,
    pub(crate) new_markets: Vec<(u32, String)>,
    pub(crate) dedup: bool,
    pub(crate) watch_start: bool,
    pub(crate) baselined: bool,
}

impl Draft {
    /// Marks a fill totals row stale, by the market's slot and the fill slot: a comparison of
    /// numbers finds it among the few rows a burst touches.
    pub(crate) fn mark_fill(&mut self, market: u32, slot: usize) {
        // Below 6, so it fits.
        let row = (market, slot as u8);
        if !self.fills.contains(&row) {
            self.fills.push(row);
        }
    }
}

pub(crate) fn decode_key(s: &str) -> Option<TradeKey> {
    let (tag, rest) = s.split_once(SEP)?;
    match tag {
        "i" => Some(TradeKey::Id(ShortStr::new(rest))),
        "c" => {
            let mut f = rest.splitn(6, SEP);
            let at = f.next()?;
            let created_at_ms = if at.is_empty() {
                None
            } else {
                Some(at.parse().ok()?)
            };
            let side = parse_side(f.next()?)?;
            let liquidity = parse_liquidity(f.next()?)?;
            let price: Decimal = f.next()?.parse().ok()?;
            let quantity: Decimal = f.next()?.parse().ok()?;
            let market = f.next()?;
            Some(TradeKey::Content {
                market: Arc::from(market),
                created_at_ms,
                side,
                price: price.normalize(),
                quantity: quantity.normalize(),
                liquidity,
            })
        }
        _ => None,
    }
}

pub(crate) fn parse_side(s: &str) -> Option<Side> {
    [Side::Buy, Side::Sell]
        .into_iter()
        .find(|v| v.as_str() == s)
}

pub(crate) fn parse_liquidity(s: &str) -> Option<Liquidity> {
    [Liquidity::Maker, Liquidity::Taker, Liquidity::Unknown]
        .into_iter()
        .find(|v| v.as_str() == s)
}

/// A fill-totals row id: `<side><SEP><liquidity><SEP><market>`.
pub fn encode_fill_key(k: &FillKey) -> String {
    format!(
        "{}{SEP}{}{SEP}{}",
        k.side.as_str(),
        k.liquidity.as_str(),
        k.market
    )
}

pub fn decode_fill_key(s: &str) -> Option<FillKey> {
    let mut f = s.splitn(3, SEP);
    let side = parse_side(f.next()?)?;
    let liquidity = parse_liquidity(f.next()?)?;
    let market = f.next()?.into();
    Some(FillKey {
        market,
        side,
        liquidity,
    })
}

/// A fill-totals row value: `<count><SEP><quantity><SEP><notional><SEP><last createdAt or empty>`.
pub fn encode_fill_totals(t: &FillTotals) -> String {
    let at = t
        .last_created_at_ms
        .map(|v| v.to_string())
        .unwrap_or_default();
    format!("{}{SEP}{}{SEP}{}{SEP}{at}", t.count, t.quantity, t.notional)
}

pub fn decode_fill_totals(s: &str) -> Option<FillTotals> {
    let mut f = s.splitn(4, SEP);
    let count = f.next()?.parse().ok()?;
    let quantity = f.next()?.parse().ok()?;
    let notional = f.next()?.parse().ok()?;
    let at = f.next()?;
    let last_created_at_ms = if at.is_empty() {
        None
    } else {
        Some(at.parse().ok()?)
    };
    Some(FillTotals {
        count,
        quantity,
        notional,
        last_created_at_ms,
    })
}

/// A realized row value: `<profit><SEP><loss>`.
pub fn encode_realized(r: &RealizedTotals) -> String {
    format!("{}{SEP}{}", r.profit, r.loss)
}

pub fn decode_realized(s: &str) -> Option<RealizedTotals> {
    let (p, l) = s.split_once(SEP)?;
    Some(RealizedTotals {
        profit: p.parse().ok()?,
        loss: l.parse().ok()?,
    })
}

/// A baseline row value: `<baseline or empty><SEP><market>`.
pub fn encode_base(market: &str, base: Option<Decimal>) -> String {
    let b = base.map(|d| d.to_string()).unwrap_or_default();
    format!("{b}{SEP}{market}")
}

pub fn decode_base(s: &str) -> Option<(String, Option<Decimal>)> {
    let (b, market) = s.split_once(SEP)?;
    let base = if b.is_empty() {
        None
    } else {
        Some(b.parse().ok()?)
    };
    Some((market.to_string(), base))
}

/// Dedup counters row value: `<snapshot_replay><SEP><duplicate>`.
pub fn encode_dedup(d: DedupCounts) -> String {
    format!("{}{SEP}{}", d.snapshot_replay, d.duplicate)
}

pub fn decode_dedup(s: &str) -> Option<DedupCounts> {
    let (a, b) = s.split_once(SEP)?;
    Some(DedupCounts {
        snapshot_replay: a.parse().ok()?,
        duplicate: b.parse().ok()?,
    })
}

#[cfg(test)]
mod restart_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn trade_keys_round_trip() {
        let keys = [
            TradeKey::Id("t-1".into()),
            TradeKey::Id("weird\u{1f}id".into()),
            TradeKey::Content {
                market: "BTC-PERP".into(),
                created_at_ms: Some(1_764_072_000_123),
                side: Side::Sell,
                price: d("100.5"),
                quantity: d("0.25"),
                liquidity: Liquidity::Taker,
            },
            TradeKey::Content {
                market: "odd\u{1f}market".into(),
                created_at_ms: None,
                side: Side::Buy,
                price: d("1"),
                quantity: d("2"),
                liquidity: Liquidity::Unknown,
            },
        ];
        for k in keys {
            assert_eq!(decode_key(&encode_key(&k)), Some(k));
        }
        assert_eq!(decode_key("x\u{1f}1"), None);
        assert_eq!(decode_key("garbage"), None);
        assert_eq!(decode_key("c\u{1f}notanumber\u{1f}buy"), None);
    }

    #[test]
    fn rows_round_trip() {
        let fk = FillKey {
            market: "ETH-PERP".into(),
            side: Side::Buy,
            liquidity: Liquidity::Maker,
        };
        assert_eq!(decode_fill_key(&encode_fill_key(&fk)), Some(fk));
        let t = FillTotals {
            count: 7,
            quantity: d("1.50"),
            notional: d("123456789012345678.123456789"),
            last_created_at_ms: Some(5),
        };
        assert_eq!(decode_fill_totals(&encode_fill_totals(&t)), Some(t));
        let t0 = FillTotals::default();
        assert_eq!(decode_fill_totals(&encode_fill_totals(&t0)), Some(t0));
        let r = RealizedTotals {
            profit: d("3.25"),
            loss: d("0"),
        };
        assert_eq!(decode_realized(&encode_realized(&r)), Some(r));
        assert_eq!(
            decode_base(&encode_base("BTC-PERP", Some(d("-4.5")))),
            Some(("BTC-PERP".to_string(), Some(d("-4.5"))))
        );
        assert_eq!(
            decode_base(&encode_base("BTC-PERP", None)),
            Some(("BTC-PERP".to_string(), None))
        );
        let c = DedupCounts {
            snapshot_replay: 3,
            duplicate: 9,
        };
        assert_eq!(decode_dedup(&encode_dedup(c)), Some(c));
        assert_eq!(decode_fill_totals("1\u{1f}x\u{1f}2\u{1f}"), None);
    }

    #[test]
    fn a_later_journal_wins_on_merge() {
        let mut a = Journal {
            key_floor: Some(3),
            dedup: Some(DedupCounts {
                snapshot_replay: 1,
                duplicate: 0,
            }),
            ..Journal::default()
        };
        a.realized.insert(
            "M".into(),
            RealizedTotals {
                profit: d("1"),
                loss: d("0"),
            },
        );
        let mut b = Journal::default();
        b.realized.insert(
            "M".into(),
            RealizedTotals {
                profit: d("2"),
                loss: d("0"),
            },
        );
        b.new_keys.push((9, "i\u{1f}x".into()));
        a.merge(b);
        assert_eq!(a.key_floor, Some(3));
        assert_eq!(a.realized["M"].profit, d("2"));
        assert_eq!(a.new_keys.len(), 1);
        assert!(!a.is_empty());
        assert!(Journal::default().is_empty());
    }
}
