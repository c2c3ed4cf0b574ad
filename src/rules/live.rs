//! The live rules' view of the sidecar's own series: the values `/metrics` shows, read from the series store at each evaluation, plus a thinned in-memory history of the families the loaded rules select.
//!
//! Each evaluation calls [`LiveStore::observe`] with its timestamp: every tracked series gets its
//! current value as a sample at that time, so an instant selector sees exactly what a scrape at
//! that moment would. Series that left the store get a staleness marker, as a scrape that no
//! longer finds them would write. History is thinned to about one sample per `resolution`
//! (the newest sample always reflects the latest evaluation) and kept only as long as some rule
//! can read it: the longest range plus offset of the rules selecting that metric, plus the 5m
//! lookback. Metrics that are only read by plain instant selectors keep one sample.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::file::RuleGroup;
use super::promql::{self, Expr, InPlace, LOOKBACK_DELTA, Labels, METRIC_NAME, Selector};
use crate::telemetry::Kind;
use crate::telemetry::store::{self, Counter, Gauge, Handle, Histogram, Registry};

/// Which metrics the loaded rules read, and how much history before `t` each needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Needs {
    /// PromQL metric name (a histogram's `_bucket`, `_sum`, `_count`) to history in ms.
    by_name: HashMap<String, i64>,
    /// A selector without a fixed metric name reads every family; this is its history.
    any: Option<i64>,
}

impl Needs {
    /// What `groups` read: each selector of each rule, with the rule's reach (range + offset +
    /// the group's query offset, plus the lookback when it reaches back at all).
    pub fn of<'a>(groups: impl IntoIterator<Item = &'a RuleGroup>) -> Needs {
        let mut needs = Needs::default();
        for g in groups {
            for r in &g.rules {
                needs.add(r.expr(), g.query_offset);
            }
        }
        needs
    }

    fn add(&mut self, expr: &Expr, query_offset: Duration) {
        let reach = expr.max_range() + query_offset;
        let keep = if reach.is_zero() {
            0
        } else {
            ms(reach + LOOKBACK_DELTA)
        };
        for sel in expr.selectors() {
            let slot = match sel.name {
                Some(name) => self.by_name.entry(name).or_insert(0),
                None => self.any.get_or_insert(0),
            };
            *slot = (*slot).max(keep);
        }
    }

    /// How long to keep `name`'s history, if the rules read it at all.
    pub fn keep_ms(&self, name: &str) -> Option<i64> {
        match (self.by_name.get(name), self.any) {
            (Some(&a), Some(b)) => Some(a.max(b)),
            (a, b) => a.copied().or(b),
        }
    }

    /// The longest history any metric keeps.
    pub fn max_keep(&self) -> Duration {
        let max = self.by_name.values().copied().chain(self.any).max();
        Duration::from_millis(u64::try_from(max.unwrap_or(0)).unwrap_or(0))
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Most changes a [`ChangeLog`] remembers per name: a rule that last ran before the oldest one
/// is evaluated whole.
pub const CHANGE_LOG_CAP: usize = 64;

/// Which series of one metric name changed, at which observation: the latest
/// [`CHANGE_LOG_CAP`] changes. A change pass asks it which markets (or accounts) a rule must
/// look at again.
#[derive(Debug, Clone, Default)]
pub struct ChangeLog {
    entries: VecDeque<(u64, Labels)>,
    /// Every change numbered above this is in `entries` (older ones were dropped).
    complete_after: u64,
}

impl ChangeLog {
    /// The series `labels` changed at `seq` (which never decreases from call to call).
    pub fn push(&mut self, seq: u64, labels: Labels) {
        if self.entries.len() >= CHANGE_LOG_CAP
            && let Some((dropped, _)) = self.entries.pop_front()
        {
            self.complete_after = self.complete_after.max(dropped);
        }
        self.entries.push_back((seq, labels));
    }

    /// Calls `f` with each series that changed after `since`, newest first; `false` (and
    /// possibly some calls) when the log no longer reaches back that far.
    pub fn since(&self, since: u64, f: &mut dyn FnMut(&Labels)) -> bool {
        if since < self.complete_after {
            return false;
        }
        for (seq, labels) in self.entries.iter().rev() {
            if *seq <= since {
                break;
            }
            f(labels);
        }
        true
    }
}

/// How one PromQL series is read from a store handle.
#[derive(Clone)]
enum Reader {
    Counter(Counter),
    Gauge(Gauge),
    /// Cumulative count of bucket `i` (the last is `+Inf`).
    Bucket(Histogram, usize),
    Sum(Histogram),
    Count(Histogram),
}

impl Reader {
    fn read(&self, snap: &mut Option<(Histogram, store::HistogramSnapshot)>) -> f64 {
        let (h, pick): (&Histogram, fn(&store::HistogramSnapshot, usize) -> f64) = match self {
            Reader::Counter(c) => return c.get(),
            Reader::Gauge(g) => return g.get(),
            Reader::Bucket(h, _) => (h, |s, i| {
                s.buckets.get(i).map_or(f64::NAN, |&(_, n)| n as f64)
            }),
            Reader::Sum(h) => (h, |s, _| s.sum),
            Reader::Count(h) => (h, |s, _| s.count as f64),
        };
        // The series of one histogram are adjacent, so one snapshot serves them all (read in
        // place, not copied per series) and they agree with each other as on a scrape.
        if !matches!(snap, Some((held, _)) if held.same(h)) {
            *snap = Some((h.clone(), h.snapshot()));
        }
        let i = match self {
            Reader::Bucket(_, i) => *i,
            _ => 0,
        };
        snap.as_ref().map_or(f64::NAN, |(_, s)| pick(s, i))
    }
}

/// Most samples one series keeps: a metric read over a long range (a 24h `increase`) is thinned
/// further, to one sample per `keep / MAX_SAMPLES_PER_SERIES`, so memory and the cost of
/// reading a window stay bounded per series whatever the ranges: a `rate(x[5m])` (kept 10m) reads
/// one sample per 5s, like a 5s scrape, and a 24h range one per ~12m. Range windows were the
/// bulk of an evaluation's cost at one sample per second.
pub const MAX_SAMPLES_PER_SERIES: i64 = 120;

struct Tracked {
    labels: Labels,
    resolution_ms: i64,
    /// `None` once the series left the store (its last sample is then a stale marker).
    reader: Option<Reader>,
    samples: VecDeque<(i64, f64)>,
    keep_ms: i64,
    /// Index of its metric name in `LiveStore::names`.
    name: usize,
}

/// The rule engine's storage over the series store. See the module docs.
pub struct LiveStore {
    registry: Registry,
    needs: Needs,
    resolution_ms: i64,
    /// The store's generation the series were resolved at; `None` forces a resolve.
    generation: Option<u64>,
    series: Vec<Tracked>,
    index: HashMap<Labels, usize>,
    /// Metric name to its index in `names` and `members`.
    by_name: HashMap<String, usize>,
    names: Vec<String>,
    /// The series of each name, by index into `series`.
    members: Vec<Vec<usize>>,
    /// Per name (by index), label, and value: the series with that value, by index into
    /// `series`. An equality matcher then reads its few series instead of the whole family: a
    /// change pass narrowed to one market selects that market's series of each family.
    postings: Vec<HashMap<String, HashMap<String, Vec<usize>>>>,
    /// Per metric name, the sequence number of the latest observation at which one of its
    /// series changed value, appeared or went stale: what change-driven passes ask.
    changed_at: HashMap<String, u64>,
    /// Per metric name, which of its series changed lately.
    logs: HashMap<String, ChangeLog>,
    /// Scratch for `observe`: which names changed, by index.
    dirty: Vec<bool>,
    /// Scratch for `observe`: the series that changed, with their name's index.
    changed: Vec<(usize, Labels)>,
    /// When history was last pruned: pruning walks every series, so it runs once per
    /// resolution, not after every event.
    last_prune_ms: i64,
    /// PromQL series built from one store series, so a resolve after a new series appeared
    /// allocates only for that one.
    built: HashMap<(usize, store::Labels), Vec<(Labels, Reader)>>,
    samples: usize,
}

impl std::fmt::Debug for LiveStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStore")
            .field("series", &self.series.len())
            .field("samples", &self.samples)
            .finish_non_exhaustive()
    }
}

impl LiveStore {
    /// A view of `registry` keeping about one sample per `resolution` per tracked series.
    pub fn new(registry: Registry, resolution: Duration) -> LiveStore {
        LiveStore {
            registry,
            needs: Needs::default(),
            resolution_ms: ms(resolution).max(1),
            generation: None,
            series: Vec::new(),
            index: HashMap::new(),
            by_name: HashMap::new(),
            names: Vec::new(),
            members: Vec::new(),
            postings: Vec::new(),
            changed_at: HashMap::new(),
            logs: HashMap::new(),
            dirty: Vec::new(),
            changed: Vec::new(),
            last_prune_ms: i64::MIN,
            built: HashMap::new(),
            samples: 0,
        }
    }

    /// Track what `needs` says from the next [`LiveStore::observe`] on; history of metrics
    /// still read is kept.
    pub fn set_needs(&mut self, needs: Needs) {
        if needs != self.needs {
            self.needs = needs;
            self.generation = None;
        }
    }

    /// Samples held, over all series.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Series tracked (including those that left the store and still have history).
    pub fn series(&self) -> usize {
        self.series.len()
    }

    /// Sample every tracked series at `t_ms` (which must not go backwards), then drop what no
    /// rule can read any more. `seq` numbers this observation (it must grow from call to call):
    /// names with a series whose value differs from its previous sample, that is new, or that
    /// left the store are marked changed at `seq` (see [`LiveStore::changed_at`]).
    pub fn observe(&mut self, t_ms: i64, seq: u64) {
        self.observe_with(t_ms, seq, true);
    }

    /// [`LiveStore::observe`] for a pass after a change: only counters and gauges are read (an
    /// account's change writes no histogram), and only those whose value moved since their
    /// latest sample get one at `t_ms` (and nothing is pruned). What did not move keeps
    /// its latest sample, which the next full observation (every group's timer, seconds away)
    /// follows up; a rule reading it sees the same value through the lookback. Sampling every
    /// tracked series was the bulk of a change pass (thousands of series with 200 markets, one
    /// of which moved).
    pub fn observe_moved(&mut self, t_ms: i64, seq: u64) {
        self.observe_with(t_ms, seq, false);
    }

    fn observe_with(&mut self, t_ms: i64, seq: u64, all: bool) {
        let generation = self.registry.generation();
        if self.generation != Some(generation) {
            self.resolve(t_ms, seq);
            self.generation = Some(generation);
        }
        let mut snap = None;
        self.dirty.clear();
        self.dirty.resize(self.names.len(), false);
        for s in &mut self.series {
            let v = match &s.reader {
                // A change pass reads counters and gauges: what an account's change writes.
                // Histograms (stream lag, heartbeats, REST timings) wait for the next full
                // observation; reading one copies all its buckets.
                Some(Reader::Bucket(..) | Reader::Sum(_) | Reader::Count(_)) if !all => continue,
                Some(r) => r.read(&mut snap),
                None => continue,
            };
            // Bits, so a NaN that stays NaN is no change.
            if s.samples
                .back()
                .is_none_or(|&(_, last)| last.to_bits() != v.to_bits())
            {
                self.dirty[s.name] = true;
                self.changed.push((s.name, s.labels.clone()));
            } else if !all {
                continue;
            }
            push_thinned(&mut s.samples, t_ms, v, s.resolution_ms);
            // Keep each history one slice, so reading a window never gathers it first.
            s.samples.make_contiguous();
        }
        for (i, labels) in self.changed.drain(..) {
            match self.logs.get_mut(&self.names[i]) {
                Some(log) => log.push(seq, labels),
                None => {
                    let mut log = ChangeLog::default();
                    log.push(seq, labels);
                    self.logs.insert(self.names[i].clone(), log);
                }
            }
        }
        for (i, _) in self.dirty.iter().enumerate().filter(|(_, d)| **d) {
            match self.changed_at.get_mut(&self.names[i]) {
                Some(at) => *at = seq,
                None => {
                    self.changed_at.insert(self.names[i].clone(), seq);
                }
            }
        }
        if all && t_ms.saturating_sub(self.last_prune_ms) >= self.resolution_ms {
            self.last_prune_ms = t_ms;
            self.prune(t_ms);
        }
    }

    /// The `seq` of the latest observation at which a series of `name` changed (0: never).
    pub fn changed_at(&self, name: &str) -> u64 {
        self.changed_at.get(name).copied().unwrap_or(0)
    }

    /// Calls `f` with each series of `name` that changed at an observation after `since`;
    /// `false` when that is no longer known (the rule should then read every series).
    pub fn changes_since(&self, name: &str, since: u64, f: &mut dyn FnMut(&Labels)) -> bool {
        match self.logs.get(name) {
            Some(log) => log.since(since, f),
            None => self.changed_at(name) <= since,
        }
    }

    /// The latest `seq` at which any series of a name passing `relevant` changed (0: never).
    pub fn latest_change(&self, relevant: impl Fn(&str) -> bool) -> u64 {
        self.changed_at
            .iter()
            .filter(|(n, _)| relevant(n))
            .map(|(_, &at)| at)
            .max()
            .unwrap_or(0)
    }

    fn resolution_for(&self, keep_ms: i64) -> i64 {
        self.resolution_ms.max(keep_ms / MAX_SAMPLES_PER_SERIES)
    }

    /// Re-read which series exist: new ones are tracked, gone ones get a stale marker at `t_ms`.
    fn resolve(&mut self, t_ms: i64, seq: u64) {
        let mut present: HashMap<Labels, (Reader, i64)> = HashMap::new();
        let mut seen_keys = Vec::new();
        for (i, def) in self.registry.catalogue().iter().enumerate() {
            let names: Vec<String> = match def.kind {
                Kind::Histogram(_) => ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|s| format!("{}{s}", def.name))
                    .collect(),
                Kind::Counter | Kind::Gauge => vec![def.name.to_string()],
            };
            let keeps: Vec<Option<i64>> = names.iter().map(|n| self.needs.keep_ms(n)).collect();
            if keeps.iter().all(Option::is_none) {
                continue;
            }
            for series in self.registry.select(def.name) {
                let key = (i, series.labels.clone());
                let built = self
                    .built
                    .entry(key.clone())
                    .or_insert_with(|| build(def.name, &series));
                seen_keys.push(key);
                for (labels, reader) in built.iter() {
                    let name = labels.metric_name().unwrap_or("");
                    let keep = names.iter().position(|n| n == name).and_then(|p| keeps[p]);
                    if let Some(keep) = keep {
                        present.insert(labels.clone(), (reader.clone(), keep));
                    }
                }
            }
        }
        // Forget built series the store no longer has.
        let seen: std::collections::HashSet<_> = seen_keys.into_iter().collect();
        self.built.retain(|k, _| seen.contains(k));

        let mut series = std::mem::take(&mut self.series);
        for s in &mut series {
            match present.remove(&s.labels) {
                Some((reader, keep)) => {
                    s.reader = Some(reader);
                    s.keep_ms = keep;
                    s.resolution_ms = self.resolution_for(keep);
                }
                None => {
                    if s.reader.take().is_some() {
                        push_thinned(&mut s.samples, t_ms, promql::stale_nan(), 0);
                        let name = s.labels.metric_name().unwrap_or("").to_string();
                        self.logs
                            .entry(name.clone())
                            .or_default()
                            .push(seq, s.labels.clone());
                        self.changed_at.insert(name, seq);
                    }
                    // No longer read by any rule: drop its history at once.
                    if self
                        .needs
                        .keep_ms(s.labels.metric_name().unwrap_or(""))
                        .is_none()
                    {
                        s.samples.clear();
                    }
                }
            }
        }
        let mut fresh: Vec<_> = present.into_iter().collect();
        fresh.sort_by(|a, b| a.0.cmp(&b.0));
        for (labels, (reader, keep)) in fresh {
            series.push(Tracked {
                labels,
                resolution_ms: self.resolution_for(keep),
                reader: Some(reader),
                samples: VecDeque::new(),
                keep_ms: keep,
                name: 0,
            });
        }
        // Adjacent series of one histogram share a snapshot in `observe`.
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        self.series = series;
        self.reindex();
    }

    fn prune(&mut self, t_ms: i64) {
        let mut dropped = false;
        let mut samples = 0;
        for s in &mut self.series {
            let cutoff = t_ms.saturating_sub(s.keep_ms);
            // The newest sample stays while the series exists: it is the current value.
            while s.samples.len() > 1 && s.samples[0].0 < cutoff {
                s.samples.pop_front();
            }
            if s.reader.is_none() && s.samples.back().is_none_or(|&(t, _)| t < cutoff) {
                s.samples.clear();
                dropped = true;
            }
            samples += s.samples.len();
        }
        self.samples = samples;
        if dropped {
            self.series
                .retain(|s| s.reader.is_some() || !s.samples.is_empty());
            self.reindex();
        }
    }

    fn reindex(&mut self) {
        self.index.clear();
        self.by_name.clear();
        self.names.clear();
        self.members.clear();
        self.postings.clear();
        for (i, s) in self.series.iter_mut().enumerate() {
            self.index.insert(s.labels.clone(), i);
            let name = s.labels.metric_name().unwrap_or("");
            let id = match self.by_name.get(name) {
                Some(&id) => id,
                None => {
                    let id = self.names.len();
                    self.by_name.insert(name.to_string(), id);
                    self.names.push(name.to_string());
                    self.members.push(Vec::new());
                    self.postings.push(HashMap::new());
                    id
                }
            };
            self.members[id].push(i);
            for (label, value) in s.labels.iter() {
                if label != METRIC_NAME {
                    self.postings[id]
                        .entry(label.to_string())
                        .or_default()
                        .entry(value.to_string())
                        .or_default()
                        .push(i);
                }
            }
            s.name = id;
        }
    }
}

impl InPlace for LiveStore {
    /// Every selected series with its whole history, in place.
    fn each(&self, sel: &Selector, f: &mut promql::VisitFn<'_>) {
        // Series found through the name index need not check the name matcher again (without
        // a name, `beyond_name` keeps every matcher).
        let rest = sel.beyond_name();
        let mut one = |s: &Tracked| {
            if !rest
                .iter()
                .all(|m| m.matches(s.labels.get(m.name()).unwrap_or("")))
            {
                return;
            }
            let (a, b) = s.samples.as_slices();
            if b.is_empty() {
                f(&s.labels, a);
            } else {
                // Unreachable after `observe` (it keeps each history contiguous).
                let all: Vec<_> = s.samples.iter().copied().collect();
                f(&s.labels, &all);
            }
        };
        match &sel.name {
            Some(name) => {
                let Some(&id) = self.by_name.get(name) else {
                    return;
                };
                // The fewest series an equality matcher leaves (a missing label is the empty
                // value, which the postings do not list, so those matchers scan).
                let mut candidates = &self.members[id];
                for m in &rest {
                    if m.kind() != promql::MatchKind::Equal || m.value().is_empty() {
                        continue;
                    }
                    let found = self.postings[id]
                        .get(m.name())
                        .and_then(|values| values.get(m.value()));
                    match found {
                        Some(list) if list.len() < candidates.len() => candidates = list,
                        Some(_) => {}
                        None => return,
                    }
                }
                for &i in candidates {
                    one(&self.series[i]);
                }
            }
            None => self.series.iter().for_each(one),
        }
    }
}

/// Append `(t, v)`, keeping samples `resolution` apart: while the newest sample is closer than
/// that to the one before, it is replaced instead, so the newest always holds the latest reading
/// and the ones before it lie a resolution apart.
fn push_thinned(samples: &mut VecDeque<(i64, f64)>, t: i64, v: f64, resolution: i64) {
    let n = samples.len();
    let Some(&(last_t, _)) = samples.back() else {
        samples.push_back((t, v));
        return;
    };
    // At or before the newest sample's time (the same evaluation time; the engine never steps
    // back), or while the newest is still within a resolution of the one before: replace it.
    let replace = last_t >= t || (n >= 2 && last_t - samples[n - 2].0 < resolution);
    match samples.back_mut() {
        Some(last) if replace => *last = (last_t.max(t), v),
        _ => samples.push_back((t, v)),
    }
}

/// The PromQL series of one store series: itself, or a histogram's buckets, sum and count.
fn build(name: &str, series: &store::Series) -> Vec<(Labels, Reader)> {
    let base = || {
        series
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
    };
    let named = |suffix: &str, extra: Option<(&str, String)>| {
        Labels::new(
            base()
                .chain(std::iter::once((
                    METRIC_NAME.to_string(),
                    format!("{name}{suffix}"),
                )))
                .chain(extra.map(|(k, v)| (k.to_string(), v))),
        )
    };
    match &series.handle {
        Handle::Counter(c) => vec![(named("", None), Reader::Counter(c.clone()))],
        Handle::Gauge(g) => vec![(named("", None), Reader::Gauge(g.clone()))],
        Handle::Histogram(h) => {
            let mut out: Vec<(Labels, Reader)> = h
                .bounds()
                .iter()
                .copied()
                .chain(std::iter::once(f64::INFINITY))
                .enumerate()
                .map(|(i, le)| {
                    let mut s = String::new();
                    store::write_go_float(&mut s, le, false);
                    (
                        named("_bucket", Some(("le", s))),
                        Reader::Bucket(h.clone(), i),
                    )
                })
                .collect();
            out.push((named("_sum", None), Reader::Sum(h.clone())));
            out.push((named("_count", None), Reader::Count(h.clone())));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::file::parse_str;
    use crate::telemetry::{Telemetry, names};

    fn needs(rules: &str) -> Needs {
        let f = parse_str(rules, "test.yml").unwrap();
        Needs::of(&f.groups)
    }

    fn instant(store: &LiveStore, q: &str, t: i64) -> Vec<(String, f64)> {
        let e = Expr::parse(q).unwrap();
        let v = match promql::eval(&e, store, t).unwrap() {
            promql::Value::Vector(v) => v,
            promql::Value::Scalar(f) => {
                return vec![(String::new(), f)];
            }
        };
        let mut out: Vec<_> = v
            .into_iter()
            .map(|s| (format!("{:?}", s.labels), s.value))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    const RULES: &str = r#"
groups:
  - name: g
    rules:
      - alert: Inventory
        expr: abs(ocx_position_quantity) > 1
      - alert: Reconnects
        expr: increase(ocx_stream_reconnects_total[1m]) > 0
      - alert: Lag
        expr: histogram_quantile(0.99, rate(ocx_stream_event_lag_seconds_bucket[1m])) > 0.5
"#;

    #[test]
    fn needs_keep_only_what_ranges_reach_back_to() {
        let n = needs(RULES);
        assert_eq!(n.keep_ms("ocx_position_quantity"), Some(0));
        assert_eq!(
            n.keep_ms("ocx_stream_reconnects_total"),
            Some(60_000 + 300_000)
        );
        assert_eq!(
            n.keep_ms("ocx_stream_event_lag_seconds_bucket"),
            Some(360_000)
        );
        assert_eq!(n.keep_ms("ocx_fills_total"), None);
        assert_eq!(n.max_keep(), Duration::from_secs(360));
    }

    #[test]
    fn reads_the_values_the_store_holds_at_each_observation() {
        let t = Telemetry::new();
        let q = t.gauge(
            names::POSITION_QUANTITY,
            &[("account", "a"), ("market", "BTC-PERP")],
        );
        let mut live = LiveStore::new(t.registry().clone(), Duration::from_secs(1));
        live.set_needs(needs(RULES));
        q.set(-3.0);
        live.observe(1_000, 1_000);
        assert_eq!(
            instant(&live, "ocx_position_quantity", 1_000),
            vec![(
                r#"{__name__="ocx_position_quantity", account="a", market="BTC-PERP"}"#.into(),
                -3.0
            )]
        );
        q.set(2.0);
        live.observe(1_200, 1_200);
        assert_eq!(instant(&live, "ocx_position_quantity", 1_200)[0].1, 2.0);
        // Not read by any rule: not tracked.
        t.counter(names::FILLS, &[("account", "a"), ("market", "BTC-PERP")])
            .increment(1);
        live.observe(1_300, 1_300);
        assert!(instant(&live, "ocx_fills_total", 1_300).is_empty());
    }

    #[test]
    fn a_series_that_leaves_the_store_is_stale_at_once() {
        let t = Telemetry::new();
        let labels = [("account", "a"), ("market", "M")];
        t.gauge(names::POSITION_QUANTITY, &labels).set(5.0);
        let mut live = LiveStore::new(t.registry().clone(), Duration::from_secs(1));
        live.set_needs(needs(RULES));
        live.observe(1_000, 1_000);
        assert_eq!(instant(&live, "ocx_position_quantity", 1_000).len(), 1);
        assert!(t.registry().remove(names::POSITION_QUANTITY, &labels));
        live.observe(2_000, 2_000);
        // Without the marker the 5m lookback would still return 5 for five minutes.
        assert!(instant(&live, "ocx_position_quantity", 2_000).is_empty());
        live.observe(3_000, 3_000);
        assert_eq!(live.series(), 0, "a gone series without history is dropped");
    }

    #[test]
    fn histograms_expand_to_buckets_sum_and_count_as_scraped() {
        let t = Telemetry::new();
        let h = t.histogram(names::EVENT_LAG, &[("account", "a"), ("stream", "user")]);
        let mut live = LiveStore::new(t.registry().clone(), Duration::from_secs(1));
        live.set_needs(needs(
            "groups: [{name: g, rules: [{record: x, expr: 'ocx_stream_event_lag_seconds_count + ocx_stream_event_lag_seconds_sum'}, {record: y, expr: 'ocx_stream_event_lag_seconds_bucket'}]}]",
        ));
        h.record(0.003);
        h.record(2.0);
        live.observe(1_000, 1_000);
        let v = instant(
            &live,
            "ocx_stream_event_lag_seconds_count + ocx_stream_event_lag_seconds_sum",
            1_000,
        );
        assert_eq!(v[0].1, 4.003);
        let b = instant(
            &live,
            r#"ocx_stream_event_lag_seconds_bucket{le=~"0.005|2.5|\\+Inf|0.0025"}"#,
            1_000,
        );
        let got: Vec<f64> = b.iter().map(|x| x.1).collect();
        // Sorted by label text: le="+Inf", "0.0025", "0.005", "2.5".
        assert_eq!(got, vec![2.0, 0.0, 1.0, 2.0]);
        assert!(live.series.iter().all(|s| matches!(
            s.reader,
            Some(Reader::Bucket(..) | Reader::Sum(_) | Reader::Count(_))
        )));
    }

    #[test]
    fn history_is_thinned_and_bounded_and_range_functions_read_it() {
        let t = Telemetry::new();
        let labels = [("account", "a"), ("stream", "user")];
        let c = t.counter(names::RECONNECTS, &labels);
        let mut live = LiveStore::new(t.registry().clone(), Duration::from_secs(1));
        live.set_needs(needs(RULES));
        // 10 evaluations a second for 20 minutes, one reconnect a second.
        let mut at = 0;
        for step in 0..12_000i64 {
            at = 1_000_000 + step * 100;
            if step % 10 == 0 {
                c.increment(1);
            }
            live.observe(at, step as u64 + 1);
        }
        // 1m range + 5m lookback, at most MAX_SAMPLES_PER_SERIES (one per 3s), not 20 minutes
        // at 10/s.
        assert!(
            (118..=122).contains(&live.samples()),
            "samples held: {}",
            live.samples()
        );
        let inc = instant(&live, "increase(ocx_stream_reconnects_total[1m])", at);
        assert!(
            (inc[0].1 - 60.0).abs() < 1.5,
            "increase over 1m: {}",
            inc[0].1
        );
    }

    #[test]
    fn long_ranges_are_thinned_to_a_bounded_number_of_samples() {
        let t = Telemetry::new();
        let c = t.counter(names::REALIZED_LOSS, &[("account", "a"), ("market", "M")]);
        let mut live = LiveStore::new(t.registry().clone(), Duration::from_secs(1));
        live.set_needs(needs(
            "groups: [{name: g, rules: [{alert: L, expr: 'increase(ocx_realized_loss_total[24h]) > 100'}]}]",
        ));
        // Two days, one evaluation and one unit of loss every 10s.
        let mut at = 0;
        for step in 0..17_280i64 {
            at = step * 10_000;
            c.increment_by(1.0);
            live.observe(at, step as u64 + 1);
        }
        assert!(
            live.samples() <= MAX_SAMPLES_PER_SERIES as usize + 2,
            "samples held: {}",
            live.samples()
        );
        let inc = instant(&live, "increase(ocx_realized_loss_total[24h])", at);
        assert!(
            (inc[0].1 - 8_640.0).abs() < 10.0,
            "increase over 24h: {}",
            inc[0].1
        );
    }

    #[test]
    fn push_thinned_keeps_the_latest_reading_last() {
        let mut s = VecDeque::new();
        for (t, v) in [(0, 1.0), (300, 2.0), (600, 3.0), (1_100, 4.0), (1_100, 5.0)] {
            push_thinned(&mut s, t, v, 1_000);
        }
        assert_eq!(Vec::from(s.clone()), vec![(0, 1.0), (1_100, 5.0)]);
        push_thinned(&mut s, 1_200, 6.0, 1_000);
        assert_eq!(Vec::from(s), vec![(0, 1.0), (1_100, 5.0), (1_200, 6.0)]);
    }
}
