//! The pure part of reconciliation: position drift between REST and the stream (which of it is confirmed, which is news), and when fill recovery is not to be trusted.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

/// Why a trades run recovered nothing: what it found looks like REST and the stream keying
/// trades differently (another id field, another time precision), where every listed trade
/// would look missed and every streamed one extra, and recovering would count each fill twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Fills missing from the stream and stream fills missing from the listing, in one run.
    MissingAndExtra,
    /// More missing fills than `reconcile.max_recovery_share` of the listing.
    TooManyMissing,
}

impl Refusal {
    pub const ALL: [Refusal; 2] = [Self::MissingAndExtra, Self::TooManyMissing];
    /// The `reason` label of `ocx_reconcile_recovery_refused_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingAndExtra => "missing_and_extra",
            Self::TooManyMissing => "too_many_missing",
        }
    }
}

/// Whether a trades run that found `missing` fills not on the stream and `extra` stream fills not
/// listed, out of `listed` trades, may recover the missing ones. `carried`: one of the missing
/// ones was missing in a run refused for [`Refusal::MissingAndExtra`] too (whose extra fills,
/// reported once, do not show again).
pub fn refuse_recovery(
    missing: usize,
    extra: usize,
    listed: usize,
    max_share: f64,
    carried: bool,
) -> Option<Refusal> {
    if missing > 0 && (extra > 0 || carried) {
        Some(Refusal::MissingAndExtra)
    } else if missing as f64 > max_share * listed as f64 {
        Some(Refusal::TooManyMissing)
    } else {
        None
    }
}

/// What one positions run found.
#[derive(Debug, Default, PartialEq)]
pub struct PositionReport {
    /// REST minus stream for every market either side knows, 0 where they agree, as this run
    /// read it: a fill in flight between the two reads shows here.
    pub drift: Vec<(String, Decimal)>,
    /// The confirmed drift of the same markets (and of any whose confirmed drift is not yet
    /// cleared): it changes only when two runs in a row find the same amount, so a one-run
    /// difference in either direction moves nothing.
    pub confirmed_drift: Vec<(String, Decimal)>,
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

/// A non-zero drift as the previous run left it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    drift: Decimal,
    /// Already counted as a mismatch.
    counted: bool,
    /// When this same amount was first read (unix ms), in an unbroken row of runs.
    since_ms: i64,
}

/// Remembers the previous run's drift per market, whether it was already counted, since when it
/// has lasted, and the confirmed drift.
#[derive(Debug, Default)]
pub struct DriftTracker {
    /// Non-zero drifts of the previous run; an absent market had none.
    last: BTreeMap<String, Seen>,
    /// Non-zero confirmed drifts; an absent market has none.
    confirmed: BTreeMap<String, Decimal>,
}

impl DriftTracker {
    /// Compare signed quantities per market, with no minimum age (tests of the run logic).
    /// Quantities are normalized so `0.50` and `0.5` agree.
    pub fn compare(
        &mut self,
        rest: &BTreeMap<String, Decimal>,
        stream: &BTreeMap<String, Decimal>,
    ) -> PositionReport {
        self.compare_at(rest, stream, 0, 0)
    }

    /// Compare at `now_ms`: a drift is confirmed when two runs in a row read the same amount
    /// *and* it has lasted at least `settle_ms` since first read. Two runs alone are not enough:
    /// on a loaded machine, or with runs closer together than the stream's delivery time, two
    /// runs can both read the same fill in flight.
    pub fn compare_at(
        &mut self,
        rest: &BTreeMap<String, Decimal>,
        stream: &BTreeMap<String, Decimal>,
        now_ms: i64,
        settle_ms: i64,
    ) -> PositionReport {
        let mut report = PositionReport::default();
        let mut markets: Vec<String> = rest
            .keys()
            .chain(stream.keys())
            .chain(self.confirmed.keys())
            .cloned()
            .collect();
        markets.sort();
        markets.dedup();
        let mut now = BTreeMap::new();
        for m in &markets {
            let r = rest.get(m).copied().unwrap_or_default();
            let s = stream.get(m).copied().unwrap_or_default();
            let d = r.saturating_sub(s).normalize();
            let prev = self.last.get(m).copied();
            let before = prev.map(|p| p.drift).unwrap_or_default();
            // Lasted since: the earlier first reading when the amount is unchanged.
            let since_ms = match prev {
                Some(p) if p.drift == d => p.since_ms,
                _ => now_ms,
            };
            let settled = now_ms.saturating_sub(since_ms) >= settle_ms;
            if d == before {
                if d.is_zero() {
                    self.confirmed.remove(m);
                } else if settled {
                    self.confirmed.insert(m.clone(), d);
                }
            }
            let shown = self.confirmed.get(m).copied().unwrap_or_default();
            report.confirmed_drift.push((m.clone(), shown));
            if rest.contains_key(m) || stream.contains_key(m) {
                report.drift.push((m.clone(), d));
            }
            if d.is_zero() {
                continue;
            }
            let counted = match prev {
                Some(p) if p.drift == d && (p.counted || settled) => {
                    if !p.counted {
                        report.confirmed.push((m.clone(), r, s));
                    }
                    true
                }
                _ => false,
            };
            now.insert(
                m.clone(),
                Seen {
                    drift: d,
                    counted,
                    since_ms,
                },
            );
        }
        self.last = now;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Regression: under load two runs in a row read the same in-flight fill and counted a
    // position mismatch on a healthy exchange. Confirmation now also needs the drift to last
    // `settle`.
    #[test]
    fn a_drift_younger_than_settle_is_not_confirmed_even_in_two_runs() {
        let mut t = DriftTracker::default();
        let rest = map(&[("BTC", "1")]);
        let stream = map(&[("BTC", "0.5")]);
        let r = t.compare_at(&rest, &stream, 1_000, 5_000);
        assert!(r.confirmed.is_empty());
        let r = t.compare_at(&rest, &stream, 1_150, 5_000);
        assert!(
            r.confirmed.is_empty(),
            "two runs 150ms apart: still in flight"
        );
        assert_eq!(r.confirmed_drift, vec![("BTC".to_string(), Decimal::ZERO)]);
        let r = t.compare_at(&rest, &stream, 6_000, 5_000);
        assert_eq!(r.confirmed.len(), 1, "the same amount for 5s: confirmed");
        assert_eq!(r.confirmed_drift[0].1, "0.5".parse::<Decimal>().unwrap());
        let r = t.compare_at(&rest, &stream, 9_000, 5_000);
        assert!(r.confirmed.is_empty(), "counted once");
        // A different amount starts its own clock.
        let r = t.compare_at(&rest, &map(&[("BTC", "0.25")]), 9_100, 5_000);
        assert!(r.confirmed.is_empty());
        let r = t.compare_at(&rest, &map(&[("BTC", "0.25")]), 9_200, 5_000);
        assert!(r.confirmed.is_empty());
    }

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

    #[test]
    fn recovery_is_refused_on_both_kinds_at_once_or_past_the_share() {
        assert_eq!(refuse_recovery(0, 0, 10, 0.5, false), None);
        assert_eq!(
            refuse_recovery(5, 0, 10, 0.5, false),
            None,
            "the share itself is allowed"
        );
        assert_eq!(
            refuse_recovery(6, 0, 10, 0.5, false),
            Some(Refusal::TooManyMissing)
        );
        assert_eq!(
            refuse_recovery(0, 3, 10, 0.5, false),
            None,
            "extra alone is news, not a refusal"
        );
        assert_eq!(
            refuse_recovery(1, 1, 10, 0.5, false),
            Some(Refusal::MissingAndExtra)
        );
        assert_eq!(refuse_recovery(10, 0, 10, 1.0, false), None);
        assert_eq!(
            refuse_recovery(1, 0, 10, 0.0, false),
            Some(Refusal::TooManyMissing)
        );
        // After a refusal for both kinds the extra fills are not reported again: the same
        // missing trades alone stay refused for the same reason.
        assert_eq!(
            refuse_recovery(1, 0, 10, 0.5, true),
            Some(Refusal::MissingAndExtra)
        );
        assert_eq!(refuse_recovery(0, 0, 10, 0.5, true), None);
    }

    #[test]
    fn confirmed_drift_moves_only_when_two_runs_in_a_row_agree() {
        let mut t = DriftTracker::default();
        let stream = map(&[("BTC", "1")]);
        let mut shown = |rest: &str| {
            let r = t.compare(&map(&[("BTC", rest)]), &stream);
            r.confirmed_drift
                .iter()
                .map(|(m, d)| format!("{m}={d}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(shown("1.5"), "BTC=0", "a one-run difference is not shown");
        assert_eq!(shown("2"), "BTC=0");
        assert_eq!(shown("2"), "BTC=1");
        assert_eq!(shown("3"), "BTC=1", "a new amount needs its own second run");
        assert_eq!(shown("1"), "BTC=1", "so does agreement");
        assert_eq!(shown("1"), "BTC=0");
        // A market that leaves both sides while confirmed is still reported until cleared.
        let mut t = DriftTracker::default();
        let rest = map(&[("ETH", "2")]);
        t.compare(&rest, &BTreeMap::new());
        t.compare(&rest, &BTreeMap::new());
        let gone = t.compare(&BTreeMap::new(), &BTreeMap::new());
        assert!(gone.drift.is_empty());
        assert_eq!(gone.confirmed_drift, [("ETH".to_string(), Decimal::TWO)]);
        let cleared = t.compare(&BTreeMap::new(), &BTreeMap::new());
        assert_eq!(
            cleared.confirmed_drift,
            [("ETH".to_string(), Decimal::ZERO)]
        );
        assert!(
            t.compare(&BTreeMap::new(), &BTreeMap::new())
                .confirmed_drift
                .is_empty()
        );
    }
}
