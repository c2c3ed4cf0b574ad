//! The pure part of reconciliation: position drift between REST and the stream, and which of it is news.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

/// What one positions run found.
#[derive(Debug, Default, PartialEq)]
pub struct PositionReport {
    /// REST minus stream for every market either side knows, 0 where they agree.
    pub drift: Vec<(String, Decimal)>,
    /// Markets whose drift was just confirmed: the same non-zero amount in this run and the one
    /// before, (market, rest, stream). Each is one mismatch. A fill in flight between the two
    /// reads shows as drift in one run only, so it is never counted; a confirmed drift is counted
    /// once however long it lasts, so the counter does not depend on how often runs happen.
    pub confirmed: Vec<(String, Decimal, Decimal)>,
}

impl PositionReport {
    pub fn drifted(&self) -> bool {
        self.drift.iter().any(|(_, d)| !d.is_zero())
    }
}

/// Remembers the previous run's drift per market, and whether it was already counted.
#[derive(Debug, Default)]
pub struct DriftTracker {
    last: BTreeMap<String, (Decimal, bool)>,
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
            let counted = match self.last.get(m) {
                Some((prev, counted)) if *prev == d => {
                    if !counted {
                        report.confirmed.push((m.clone(), r, s));
                    }
                    true
                }
                _ => false,
            };
            now.insert(m.clone(), (d, counted));
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
        assert!(r.confirmed.is_empty(), "one run confirms nothing");
        assert!(r.drifted());
    }

    #[test]
    fn a_drift_counts_once_when_seen_twice_and_a_transient_one_never() {
        let mut t = DriftTracker::default();
        let rest = map(&[("BTC", "2")]);
        let stream = map(&[("BTC", "1")]);
        assert!(t.compare(&rest, &stream).confirmed.is_empty());
        let second = t.compare(&rest, &stream);
        assert_eq!(
            second.confirmed,
            [("BTC".to_string(), Decimal::TWO, Decimal::ONE)]
        );
        assert!(
            t.compare(&rest, &stream).confirmed.is_empty(),
            "counted once per episode"
        );
        // A different amount is a new episode, confirmed by its own second sighting.
        assert!(
            t.compare(&map(&[("BTC", "3")]), &stream)
                .confirmed
                .is_empty()
        );
        assert_eq!(t.compare(&map(&[("BTC", "3")]), &stream).confirmed.len(), 1);
        // A fill in flight: drift in one run, gone in the next: never counted.
        assert!(!t.compare(&stream, &stream).drifted());
        assert!(t.compare(&rest, &stream).confirmed.is_empty());
        assert!(t.compare(&stream, &stream).confirmed.is_empty());
    }
}
