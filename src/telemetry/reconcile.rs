//! Series of the reconciler: per-endpoint runs and requests, position drift, recovered fills, open orders, balances.

use std::collections::{BTreeSet, HashMap};

use super::{Counter, Gauge, Histogram, LabelFolder, Telemetry, names};

/// The kinds of disagreement between REST and the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    Position,
    FillMissing,
    FillExtra,
}

impl Mismatch {
    const ALL: [Mismatch; 3] = [Self::Position, Self::FillMissing, Self::FillExtra];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Position => "position",
            Self::FillMissing => "fill_missing",
            Self::FillExtra => "fill_extra",
        }
    }
}

/// How one endpoint's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    Ok,
    Drift,
    Error,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Drift => "drift",
            Self::Error => "error",
        }
    }
}

/// The account-level figures read from the balances endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BalanceFigures {
    pub equity: Option<f64>,
    pub available: Option<f64>,
    pub initial_margin: Option<f64>,
    pub maintenance_margin: Option<f64>,
    pub margin_usage: Option<f64>,
}

pub struct ReconcileMetrics {
    telemetry: Telemetry,
    account: String,
    markets: LabelFolder,
    counters: HashMap<(&'static str, String, String), Counter>,
    gauges: HashMap<(&'static str, String, String), Gauge>,
    histograms: HashMap<(&'static str, String), Histogram>,
    mismatches: [Counter; 3],
    /// Markets with a drift series, so a market that leaves both sides reads 0 again.
    drift_markets: BTreeSet<String>,
    /// The same for the observed (unconfirmed) drift series.
    drift_observed_markets: BTreeSet<String>,
    /// (market, side) pairs with an open-orders series, for the same reason.
    order_keys: BTreeSet<(String, &'static str)>,
}

impl ReconcileMetrics {
    pub(super) fn new(telemetry: Telemetry, account: &str, max_markets: usize) -> Self {
        let mismatches = Mismatch::ALL.map(|k| {
            telemetry.counter(
                names::RECONCILE_MISMATCHES,
                &[("account", account), ("kind", k.as_str())],
            )
        });
        Self {
            markets: LabelFolder::new(max_markets, telemetry.folded_market.clone()),
            telemetry,
            account: account.to_string(),
            counters: HashMap::new(),
            gauges: HashMap::new(),
            histograms: HashMap::new(),
            mismatches,
            drift_markets: BTreeSet::new(),
            drift_observed_markets: BTreeSet::new(),
            order_keys: BTreeSet::new(),
        }
    }

    /// Up to two labels after `account`; an empty key means "no label in this slot".
    /// Registered once per label set and cached: the registry lookup allocates a key.
    fn cached<H: Clone>(
        cache: &mut HashMap<(&'static str, String, String), H>,
        account: &str,
        name: &'static str,
        labels: [(&'static str, &str); 2],
        register: impl FnOnce(&[(&str, &str)]) -> H,
    ) -> H {
        let key = (name, labels[0].1.to_string(), labels[1].1.to_string());
        if let Some(h) = cache.get(&key) {
            return h.clone();
        }
        let l: Vec<(&str, &str)> = std::iter::once(("account", account))
            .chain(labels.iter().copied().filter(|(k, _)| !k.is_empty()))
            .collect();
        let h = register(&l);
        cache.insert(key, h.clone());
        h
    }

    fn counter(&mut self, name: &'static str, labels: [(&'static str, &str); 2]) -> Counter {
        let t = &self.telemetry;
        Self::cached(&mut self.counters, &self.account, name, labels, |l| {
            t.counter(name, l)
        })
    }

    fn gauge(&mut self, name: &'static str, labels: [(&'static str, &str); 2]) -> Gauge {
        let t = &self.telemetry;
        Self::cached(&mut self.gauges, &self.account, name, labels, |l| {
            t.gauge(name, l)
        })
    }

    fn histogram(&mut self, name: &'static str, endpoint: &str) -> Histogram {
        let key = (name, endpoint.to_string());
        if let Some(h) = self.histograms.get(&key) {
            return h.clone();
        }
        let h = self
            .telemetry
            .histogram(name, &[("account", &self.account), ("endpoint", endpoint)]);
        self.histograms.insert(key, h.clone());
        h
    }

    /// One HTTP request to a pull endpoint; `status` None means no answer (transport error).
    pub fn request(&mut self, endpoint: &str, status: Option<u16>, seconds: f64) {
        let code = match status {
            Some(s) => match s / 100 {
                1 => "1xx",
                2 => "2xx",
                3 => "3xx",
                4 => "4xx",
                _ => "5xx",
            },
            None => "error",
        };
        self.counter(
            names::REST_REQUESTS,
            [("endpoint", endpoint), ("code", code)],
        )
        .increment(1);
        self.histogram(names::REST_DURATION, endpoint)
            .record(seconds);
    }

    /// One endpoint's run finished.
    pub fn run(&mut self, endpoint: &str, result: RunResult, seconds: f64, now_unix: f64) {
        self.counter(
            names::RECONCILE_RUNS,
            [("endpoint", endpoint), ("result", result.as_str())],
        )
        .increment(1);
        self.histogram(names::RECONCILE_DURATION, endpoint)
            .record(seconds);
        if result != RunResult::Error {
            self.gauge(
                names::RECONCILE_LAST_SUCCESS,
                [("endpoint", endpoint), ("", "")],
            )
            .set(now_unix);
        }
    }

    pub fn unreadable(&mut self, endpoint: &str, n: u64) {
        if n > 0 {
            self.counter(
                names::RECONCILE_UNREADABLE,
                [("endpoint", endpoint), ("", "")],
            )
            .increment(n);
        }
    }

    pub fn mismatch(&self, kind: Mismatch, n: u64) {
        if n > 0 {
            let i = Mismatch::ALL.iter().position(|k| *k == kind).unwrap_or(0);
            self.mismatches[i].increment(n);
        }
    }

    /// Set every market's confirmed drift; markets that had a series but are absent now read 0.
    pub fn drift(&mut self, drift: &[(String, f64)]) {
        let mut seen = std::mem::take(&mut self.drift_markets);
        self.set_per_market(names::RECONCILE_POSITION_DRIFT, drift, &mut seen);
        self.drift_markets = seen;
    }

    /// Set every market's drift as this run observed it (fills in flight included), with the
    /// same rule for absent markets.
    pub fn drift_observed(&mut self, drift: &[(String, f64)]) {
        let mut seen = std::mem::take(&mut self.drift_observed_markets);
        self.set_per_market(names::RECONCILE_POSITION_DRIFT_OBSERVED, drift, &mut seen);
        self.drift_observed_markets = seen;
    }

    /// A per-market gauge: set the given markets, and 0 for those in `seen` not given now.
    fn set_per_market(
        &mut self,
        name: &'static str,
        values: &[(String, f64)],
        seen: &mut BTreeSet<String>,
    ) {
        let mut now = BTreeSet::new();
        for (market, value) in values {
            let label = self.markets.fold(market).to_string();
            self.gauge(name, [("market", &label), ("", "")]).set(*value);
            now.insert(label);
        }
        let stale: Vec<String> = seen.difference(&now).cloned().collect();
        for label in stale {
            self.gauge(name, [("market", &label), ("", "")]).set(0.0);
        }
        seen.extend(now);
    }

    /// A trades run that recovered nothing because the comparison looked untrustworthy;
    /// `n` 0 registers the series.
    pub fn recovery_refused(&mut self, reason: &'static str, n: u64) {
        self.counter(
            names::RECONCILE_RECOVERY_REFUSED,
            [("reason", reason), ("", "")],
        )
        .increment(n);
    }

    pub fn recovered(&mut self, market: &str) {
        let label = self.markets.fold(market).to_string();
        self.counter(names::FILLS_RECOVERED, [("market", &label), ("", "")])
            .increment(1);
    }

    /// Resting orders per (market, side); pairs that had a series but are absent now read 0.
    pub fn open_orders(&mut self, counts: &[(String, &'static str, u64)]) {
        let mut now = BTreeSet::new();
        let mut per: HashMap<(String, &'static str), u64> = HashMap::new();
        for (market, side, n) in counts {
            let label = self.markets.fold(market).to_string();
            *per.entry((label, side)).or_default() += n;
        }
        for ((label, side), n) in per {
            let g = self.telemetry.gauge(
                names::OPEN_ORDERS,
                &[
                    ("account", &self.account),
                    ("market", &label),
                    ("side", side),
                ],
            );
            g.set(n as f64);
            now.insert((label, side));
        }
        let stale: Vec<(String, &'static str)> =
            self.order_keys.difference(&now).cloned().collect();
        for (label, side) in stale {
            self.telemetry
                .gauge(
                    names::OPEN_ORDERS,
                    &[
                        ("account", &self.account),
                        ("market", &label),
                        ("side", side),
                    ],
                )
                .set(0.0);
        }
        self.order_keys.extend(now);
    }

    /// The balance gauges; a figure the endpoint did not give is left as it was.
    pub fn balances(&mut self, b: &BalanceFigures) {
        for (name, v) in [
            (names::ACCOUNT_EQUITY, b.equity),
            (names::ACCOUNT_AVAILABLE, b.available),
            (names::ACCOUNT_INITIAL_MARGIN, b.initial_margin),
            (names::ACCOUNT_MAINTENANCE_MARGIN, b.maintenance_margin),
            (names::ACCOUNT_MARGIN_USAGE, b.margin_usage),
        ] {
            if let Some(v) = v {
                self.gauge(name, [("", ""), ("", "")]).set(v);
            }
        }
    }
}
