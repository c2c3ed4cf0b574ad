//! The pure part of reconciliation: position drift between REST and the stream, and which of it is news.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

/// What one positions run found.
#[derive(Debug, Default, PartialEq)]
pub struct PositionReport {
    /// REST minus stream for every market either side knows, 0 where they agree.
    pub drift: Vec<(String, Decimal)>,
    /// Markets whose drift appeared or changed value since the last run: each is one mismatch.
    /// A drift that merely persists is not counted again, so the counter does not depend on
    /// how often reconciliation runs.
    pub new_mismatches: Vec<String>,
    /// Markets drifting by the same amount in this run and the previous one: (market, rest, stream).
    pub persisting: Vec<(String, Decimal, Decimal)>,
}

impl PositionReport {
    pub fn drifted(&self) -> bool {
        self.drift.iter().any(|(_, d)| !d.is_zero())
    }
}

/// Remembers the previous run's drift per market.
#[derive(Debug, Default)]
pub struct DriftTracker {
    last: BTreeMap<String, Decimal>,
}

impl DriftTracker {
    /// Compare signed quantities per market. Quantities are normalized so `0.50` and `0.5` agree.
    pub fn compare(
        &mut self,
        rest: &BTreeMap<String, Decimal>,
        stream: &BTreeMap<String, Decimal>,
    ) -> PositionReport {
        let mut report = PositionReport::default();
        let mut markets: Vec<&String> = rest.keys().chain(stream.keys()).collect();
        markets.sort();
        markets.dedup();
        let mut now = BTreeMap::new();
        for m in markets {
            let r = rest.get(m).copied().unwrap_or_default();
            let s = stream.get(m).copied().unwrap_or_default();
            let d = r.saturating_sub(s).normalize();
            report.drift.push((m.clone(), d));
            if d.is_zero() {
                continue;
            }
            match self.last.get(m) {
                Some(prev) if *prev == d => report.persisting.push((m.clone(), r, s)),
                _ => report.new_mismatches.push(m.clone()),
            }
            now.insert(m.clone(), d);
        }
        self.last = now;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(items: &[(&str, &str)]) -> BTreeMap<String, Decimal> {
        items
            .iter()
            .map(|(m, q)| (m.to_string(), q.parse().unwrap()))
            .collect()
    }

    #[test]
    fn drift_is_rest_minus_stream_over_the_union_of_markets() {
        let mut t = DriftTracker::default();
        let r = t.compare(
            &map(&[("BTC", "1.5"), ("ETH", "-2"), ("XRP", "3")]),
            &map(&[("BTC", "1.50"), ("ETH", "-1"), ("SOL", "4")]),
        );
        let d: Vec<(String, String)> = r
            .drift
            .iter()
            .map(|(m, d)| (m.clone(), d.to_string()))
            .collect();
        assert_eq!(
            d,
            [("BTC", "0"), ("ETH", "-1"), ("SOL", "-4"), ("XRP", "3")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(r.new_mismatches, ["ETH", "SOL", "XRP"]);
        assert!(r.persisting.is_empty());
        assert!(r.drifted());
    }

    #[test]
    fn a_persisting_drift_is_reported_but_not_counted_again() {
        let mut t = DriftTracker::default();
        let rest = map(&[("BTC", "2")]);
        let stream = map(&[("BTC", "1")]);
        assert_eq!(t.compare(&rest, &stream).new_mismatches, ["BTC"]);
        let second = t.compare(&rest, &stream);
        assert!(second.new_mismatches.is_empty());
        assert_eq!(
            second.persisting,
            [("BTC".to_string(), Decimal::TWO, Decimal::ONE)]
        );
        // A different amount is a new mismatch; agreement clears the memory.
        assert_eq!(
            t.compare(&map(&[("BTC", "3")]), &stream).new_mismatches,
            ["BTC"]
        );
        assert!(!t.compare(&stream, &stream).drifted());
        assert_eq!(t.compare(&rest, &stream).new_mismatches, ["BTC"]);
    }
}
