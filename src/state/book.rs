//! One market's order book: price levels per side, replaced by a snapshot, edited by deltas.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

/// Price to size, per side. Prices are normalized so `"100.0"` and `"100"` are one level.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Book {
    bids: BTreeMap<Decimal, Decimal>,
    asks: BTreeMap<Decimal, Decimal>,
}

impl Book {
    /// A full book from snapshot levels; zero-size levels are left out.
    pub(crate) fn from_levels(bids: &[(Decimal, Decimal)], asks: &[(Decimal, Decimal)]) -> Self {
        let mut book = Book::default();
        book.apply_levels(bids, asks);
        book
    }

    /// Sets each level; a zero size removes it. Returns whether anything changed.
    pub(crate) fn apply_levels(
        &mut self,
        bids: &[(Decimal, Decimal)],
        asks: &[(Decimal, Decimal)],
    ) -> bool {
        let a = set_levels(&mut self.bids, bids);
        let b = set_levels(&mut self.asks, asks);
        a || b
    }

    pub fn best_bid(&self) -> Option<Decimal> {
        self.bids.last_key_value().map(|(p, _)| *p)
    }

    pub fn best_ask(&self) -> Option<Decimal> {
        self.asks.first_key_value().map(|(p, _)| *p)
    }

    /// The midpoint of best bid and best ask; `None` unless both sides have a level.
    pub fn mid(&self) -> Option<Decimal> {
        let sum = self.best_bid()?.checked_add(self.best_ask()?)?;
        sum.checked_div(Decimal::TWO)
    }

    /// Number of price levels on the bid side (`true`) or the ask side (`false`).
    pub fn levels(&self, bids: bool) -> usize {
        if bids {
            self.bids.len()
        } else {
            self.asks.len()
        }
    }

    /// Bids best (highest) first, as `(price, size)`.
    pub fn bids(&self) -> impl Iterator<Item = (Decimal, Decimal)> + '_ {
        self.bids.iter().rev().map(|(p, s)| (*p, *s))
    }

    /// Asks best (lowest) first, as `(price, size)`.
    pub fn asks(&self) -> impl Iterator<Item = (Decimal, Decimal)> + '_ {
        self.asks.iter().map(|(p, s)| (*p, *s))
    }
}

fn set_levels(side: &mut BTreeMap<Decimal, Decimal>, levels: &[(Decimal, Decimal)]) -> bool {
    let mut changed = false;
    for &(price, size) in levels {
        let price = price.normalize();
        if size.is_zero() {
            changed |= side.remove(&price).is_some();
        } else {
            let size = size.normalize();
            changed |= side.insert(price, size) != Some(size);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn lv(levels: &[(&str, &str)]) -> Vec<(Decimal, Decimal)> {
        levels.iter().map(|(p, s)| (d(p), d(s))).collect()
    }

    #[test]
    fn best_prices_and_mid() {
        let book = Book::from_levels(
            &lv(&[("99", "1"), ("100", "2")]),
            &lv(&[("101", "1"), ("102", "1")]),
        );
        assert_eq!(book.best_bid(), Some(d("100")));
        assert_eq!(book.best_ask(), Some(d("101")));
        assert_eq!(book.mid(), Some(d("100.5")));
        assert_eq!((book.levels(true), book.levels(false)), (2, 2));
        assert_eq!(book.bids().next(), Some((d("100"), d("2"))));
        assert_eq!(book.asks().next(), Some((d("101"), d("1"))));
    }

    #[test]
    fn mid_needs_both_sides() {
        let book = Book::from_levels(&lv(&[("100", "1")]), &[]);
        assert_eq!(book.best_ask(), None);
        assert_eq!(book.mid(), None);
    }

    #[test]
    fn zero_size_removes_and_is_skipped_in_snapshot() {
        let mut book = Book::from_levels(&lv(&[("100", "1"), ("99", "0")]), &lv(&[("101", "1")]));
        assert_eq!(book.levels(true), 1);
        assert!(book.apply_levels(&lv(&[("100.0", "0.00")]), &[]));
        assert_eq!(book.levels(true), 0);
        assert_eq!(book.best_bid(), None);
        // Removing an absent level or re-setting the same size is no change.
        assert!(!book.apply_levels(&lv(&[("98", "0")]), &lv(&[("101.00", "1.0")])));
        assert!(book.apply_levels(&[], &lv(&[("101", "3")])));
    }
}
