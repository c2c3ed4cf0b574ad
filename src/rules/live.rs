//! The live rules' view of the sidecar's own series: the values `/metrics` shows, read from the series store at each evaluation, plus a thinned in-memory history of the families the loaded rules select.
//!
//! Each evaluation calls [`LiveStore::observe`] with its timestamp: every tracked series gets its
//! current value as a sample at that time, so an instant selector sees exactly what a scrape at
//! that moment would. Series that left the store get a staleness marker, as a scrape that no
//! longer finds them would write. History is thinned to about one sample per `resolution`
//! (the newest sample always reflects the latest evaluation) and kept only as long as some rule
//! can read it: the longest range plus offset of the rules selecting that metric, plus the 5m
//! lookback. Metrics that are only read by plain instant selectors keep one sample.
//!
//! A pass after a change ([`LiveStore::observe_moved`]) costs what moved, not the store's size:
//! it samples the counters and gauges the registry's write log lists as written since this
//! store last looked, and takes in the series created or removed since its last resolve from
//! the registry's membership log, instead of resolving every family again.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::file::RuleGroup;
use super::promql::{self, Expr, InPlace, LOOKBACK_DELTA, Labels, METRIC_NAME, Selector};
use crate::telemetry::store::{self, Counter, Gauge, Handle, Histogram, Registry, WriteCursor};
use crate::telemetry::{Kind, MetricDef};

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
    /// The store series' id in the registry's write log, for a counter or a gauge.
    fn write_id(&self) -> Option<u32> {
        match self {
            Reader::Counter(c) => c.write_id(),
            Reader::Gauge(g) => g.write_id(),
            Reader::Bucket(..) | Reader::Sum(_) | Reader::Count(_) => None,
        }
    }

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

/// The PromQL series of one store series, with the handle they read (a series removed and
/// registered again is another handle, and is built again).
type Built = (Handle, Vec<(Labels, Reader)>);

/// The rule engine's storage over the series store. See the module docs.
pub struct LiveStore {
    registry: Registry,
    needs: Needs,
    resolution_ms: i64,
    /// The store's generation the series were resolved at; `None` forces a resolve.
    generation: Option<u64>,
    /// By slot: a series keeps its slot until a full resolve or a prune that drops a series
    /// (both put them in label order again); one that appears between takes a new slot at the
    /// end, so the indexes below need no renumbering.
    series: Vec<Tracked>,
    /// The slots in label order: the order a full resolve leaves them in, in which observations
    /// read them (adjacent series of one histogram share a snapshot) and a selector without a
    /// metric name visits them.
    order: Vec<usize>,
    index: HashMap<Labels, usize>,
    /// Metric name to its index in `names` and `members`.
    by_name: HashMap<String, usize>,
    names: Vec<String>,
    /// The series of each name, by slot, in label order (as are the postings' lists).
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
    /// PromQL series built from one store series (with its handle), so a resolve after a new
    /// series appeared allocates only for that one.
    built: HashMap<(usize, store::Labels), Built>,
    samples: usize,
    /// Where this store is in the registry's write log; `None`: the next change pass reads
    /// every counter and gauge.
    cursor: Option<WriteCursor>,
    /// Tracked counters and gauges by their write log id, by index into `series`.
    by_write_id: HashMap<u32, usize>,
    /// Scratch for a change pass: the ids the write log listed.
    written: Vec<u32>,
    /// Scratch for a change pass: the series to read, by index into `series`.
    moved: Vec<usize>,
    /// Write log ids of the counters and gauges the latest resolve began to track (or gave a
    /// new handle): a change pass reads them, as a full one would.
    fresh: Vec<u32>,
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
            order: Vec::new(),
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
            cursor: None,
            by_write_id: HashMap::new(),
            written: Vec::new(),
            moved: Vec::new(),
            fresh: Vec::new(),
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
    /// of which moved). Which moved the registry's write log says: the series written since
    /// this store last looked (a few per event), read instead of every counter and gauge (which
    /// it still does when its place fell off the log).
    pub fn observe_moved(&mut self, t_ms: i64, seq: u64) {
        self.observe_with(t_ms, seq, false);
    }

    fn observe_with(&mut self, t_ms: i64, seq: u64, all: bool) {
        // Whether every counter and gauge is read: in a full observation, and after a full
        // resolve (new series have no sample yet: reading them is what gives them one).
        let mut every = all;
        self.fresh.clear();
        let generation = self.registry.generation();
        if self.generation != Some(generation) {
            let changes = self.generation.and_then(|g| self.registry.members_since(g));
            match changes {
                Some((now, changes)) => {
                    every |= self.resolve_changes(t_ms, seq, changes);
                    self.generation = Some(now);
                }
                None => {
                    self.resolve(t_ms, seq);
                    self.generation = Some(generation);
                    every = true;
                }
            }
        }
        // Before reading any value: the write log lists what changed after this point.
        let written = &mut self.written;
        written.clear();
        let (cursor, known) = self
            .registry
            .written_since(self.cursor.filter(|_| !every), &mut |id| written.push(id));
        self.cursor = Some(cursor);
        let mut snap = None;
        self.dirty.clear();
        self.dirty.resize(self.names.len(), false);
        let (dirty, changed) = (&mut self.dirty, &mut self.changed);
        if every || !known {
            for &i in &self.order {
                sample(&mut self.series[i], t_ms, all, &mut snap, dirty, changed);
            }
        } else {
            // In label order, as the full scan would (the change logs list them in that order).
            self.moved.clear();
            self.moved.extend(
                self.written
                    .iter()
                    .chain(&self.fresh)
                    .filter_map(|id| self.by_write_id.get(id)),
            );
            let series = &self.series;
            self.moved
                .sort_unstable_by(|&a, &b| series[a].labels.cmp(&series[b].labels));
            self.moved.dedup();
            for &i in &self.moved {
                sample(&mut self.series[i], t_ms, all, &mut snap, dirty, changed);
            }
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

    /// The PromQL names of a store family (a histogram's three) and how long the rules keep
    /// each (`None`: no rule reads it).
    fn family_needs(&self, def: &MetricDef) -> (Vec<String>, Vec<Option<i64>>) {
        let names: Vec<String> = match def.kind {
            Kind::Histogram(_) => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{}{s}", def.name))
                .collect(),
            Kind::Counter | Kind::Gauge => vec![def.name.to_string()],
        };
        let keeps = names.iter().map(|n| self.needs.keep_ms(n)).collect();
        (names, keeps)
    }

    /// Re-read which series exist: new ones are tracked, gone ones get a stale marker at `t_ms`.
    fn resolve(&mut self, t_ms: i64, seq: u64) {
        let mut present: HashMap<Labels, (Reader, i64)> = HashMap::new();
        let mut seen_keys = Vec::new();
        for (i, def) in self.registry.catalogue().iter().enumerate() {
            let (names, keeps) = self.family_needs(def);
            if keeps.iter().all(Option::is_none) {
                continue;
            }
            for series in self.registry.select(def.name) {
                let key = (i, series.labels.clone());
                let built = match self.built.get(&key) {
                    // A series removed and registered again since is another handle.
                    Some((held, built)) if held.same(&series.handle) => built,
                    _ => {
                        let built = build(def.name, &series);
                        &self
                            .built
                            .entry(key.clone())
                            .insert_entry((series.handle.clone(), built))
                            .into_mut()
                            .1
                    }
                };
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

        // In label order, so the stale markers' changes are logged in that order.
        let mut series = self.take_in_order();
        for s in &mut series {
            match present.remove(&s.labels) {
                Some((reader, keep)) => {
                    s.reader = Some(reader);
                    s.keep_ms = keep;
                    s.resolution_ms = self.resolution_for(keep);
                }
                None => {
                    if s.reader.take().is_some() {
                        went_stale(s, &mut self.logs, &mut self.changed_at, t_ms, seq);
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

    /// `resolve` for only the store series created or removed since the last one (`changes`),
    /// with what the rules need unchanged: a resolve of every series cost 30 ms with a few
    /// thousand, and series do appear while alerts fire (`ocx_sentinel_alerts` for a rule's
    /// first alert in a state, a stream's first heartbeat gauge), which put that on the change
    /// pass after them. Leaves the tracked state as `resolve` would; returns whether the change
    /// pass must read every counter and gauge (a new one without a write log id), and lists the
    /// others it must read in `fresh`.
    fn resolve_changes(&mut self, t_ms: i64, seq: u64, changes: Vec<store::Membership>) -> bool {
        let catalogue = self.registry.catalogue();
        let mut every = false;
        let mut gone = Vec::new();
        let mut added: Vec<Tracked> = Vec::new();
        let mut added_labels = std::collections::HashSet::new();
        for m in changes {
            let Some(def) = catalogue.get(m.family) else {
                continue;
            };
            let (names, keeps) = self.family_needs(def);
            if keeps.iter().all(Option::is_none) {
                continue;
            }
            let key = (m.family, m.labels);
            let old = self.built.remove(&key);
            if let (Some(now), Some((held, _))) = (&m.handle, &old)
                && held.same(now)
            {
                // Created and resolved already (it raced the resolve before).
                self.built.extend(old.map(|o| (key, o)));
                continue;
            }
            let new = m.handle.map(|handle| {
                let series = store::Series {
                    labels: key.1.clone(),
                    handle,
                };
                let built = build(def.name, &series);
                (series.handle, built)
            });
            let present: Vec<(&Labels, &Reader, i64)> = new
                .iter()
                .flat_map(|(_, built)| built)
                .filter_map(|(labels, reader)| {
                    let name = labels.metric_name().unwrap_or("");
                    let p = names.iter().position(|n| n == name)?;
                    Some((labels, reader, keeps[p]?))
                })
                .collect();
            for (labels, _) in old.iter().flat_map(|(_, built)| built) {
                if !present.iter().any(|(l, ..)| *l == labels)
                    && let Some(&i) = self.index.get(labels)
                {
                    gone.push(i);
                }
            }
            for (labels, reader, keep) in present {
                match reader.write_id() {
                    Some(id) => self.fresh.push(id),
                    None => every |= matches!(reader, Reader::Counter(_) | Reader::Gauge(_)),
                }
                match self.index.get(labels) {
                    Some(&i) => {
                        let resolution_ms = self.resolution_for(keep);
                        let s = &mut self.series[i];
                        if let Some(id) = s.reader.as_ref().and_then(Reader::write_id) {
                            self.by_write_id.remove(&id);
                        }
                        if let Some(id) = reader.write_id() {
                            self.by_write_id.insert(id, i);
                        }
                        s.reader = Some(reader.clone());
                        s.keep_ms = keep;
                        s.resolution_ms = resolution_ms;
                    }
                    None if added_labels.insert(labels.clone()) => added.push(Tracked {
                        labels: labels.clone(),
                        resolution_ms: self.resolution_for(keep),
                        reader: Some(reader.clone()),
                        samples: VecDeque::new(),
                        keep_ms: keep,
                        name: 0,
                    }),
                    None => {}
                }
            }
            self.built.extend(new.map(|n| (key, n)));
        }
        // In label order, as `resolve` marks them (the change logs list them in that order).
        let series = &self.series;
        gone.sort_unstable_by(|&a, &b| series[a].labels.cmp(&series[b].labels));
        gone.dedup();
        for i in gone {
            let s = &mut self.series[i];
            if let Some(reader) = s.reader.take() {
                if let Some(id) = reader.write_id() {
                    self.by_write_id.remove(&id);
                }
                went_stale(s, &mut self.logs, &mut self.changed_at, t_ms, seq);
            }
        }
        self.insert_all(added);
        every
    }

    /// Track `added` (series not tracked yet), each in a new slot, entered in `order` and the
    /// indexes where a full resolve would have put it: a binary search each, nothing renumbered.
    fn insert_all(&mut self, added: Vec<Tracked>) {
        for t in added {
            let i = self.series.len();
            let at = self
                .order
                .partition_point(|&j| self.series[j].labels < t.labels);
            self.series.push(t);
            self.order.insert(at, i);
            self.index_series(i, false);
        }
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
            // Back in label order, in slots from 0, as `reindex` wants them.
            let mut series = self.take_in_order();
            series.retain(|s| s.reader.is_some() || !s.samples.is_empty());
            self.series = series;
            self.reindex();
        }
    }

    /// The tracked series in label order, leaving none (the caller puts them back and reindexes).
    fn take_in_order(&mut self) -> Vec<Tracked> {
        let mut slots: Vec<Option<Tracked>> = std::mem::take(&mut self.series)
            .into_iter()
            .map(Some)
            .collect();
        self.order.iter().filter_map(|&i| slots[i].take()).collect()
    }

    /// Index `series`, which must be in label order (after a full resolve or a prune).
    fn reindex(&mut self) {
        self.index.clear();
        self.by_name.clear();
        self.names.clear();
        self.members.clear();
        self.postings.clear();
        self.by_write_id.clear();
        self.order.clear();
        self.order.extend(0..self.series.len());
        for i in 0..self.series.len() {
            self.index_series(i, true);
        }
    }

    /// Enter slot `i` in the indexes, each list kept in label order: `last` when it sorts after
    /// every series indexed so far (`reindex`), which saves the searches.
    fn index_series(&mut self, i: usize, last: bool) {
        let series = &self.series;
        let s = &series[i];
        let labels = &s.labels;
        let insert = |list: &mut Vec<usize>| {
            let at = if last {
                list.len()
            } else {
                list.partition_point(|&j| series[j].labels < *labels)
            };
            list.insert(at, i);
        };
        self.index.insert(labels.clone(), i);
        if let Some(id) = s.reader.as_ref().and_then(Reader::write_id) {
            self.by_write_id.insert(id, i);
        }
        let name = labels.metric_name().unwrap_or("");
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
        insert(&mut self.members[id]);
        for (label, value) in labels.iter() {
            if label != METRIC_NAME {
                insert(
                    self.postings[id]
                        .entry(label.to_string())
                        .or_default()
                        .entry(value.to_string())
                        .or_default(),
                );
            }
        }
        self.series[i].name = id;
    }
}

/// A tracked series left the store: its stale marker at `t_ms`, a change of its name at `seq`.
fn went_stale(
    s: &mut Tracked,
    logs: &mut HashMap<String, ChangeLog>,
    changed_at: &mut HashMap<String, u64>,
    t_ms: i64,
    seq: u64,
) {
    push_thinned(&mut s.samples, t_ms, promql::stale_nan(), 0);
    let name = s.labels.metric_name().unwrap_or("").to_string();
    logs.entry(name.clone())
        .or_default()
        .push(seq, s.labels.clone());
    changed_at.insert(name, seq);
}

/// Sample one tracked series for [`LiveStore::observe`] (`all`) or
/// [`LiveStore::observe_moved`], noting a change in `dirty` and `changed`.
fn sample(
    s: &mut Tracked,
    t_ms: i64,
    all: bool,
    snap: &mut Option<(Histogram, store::HistogramSnapshot)>,
    dirty: &mut [bool],
    changed: &mut Vec<(usize, Labels)>,
) {
    let v = match &s.reader {
        // A change pass reads counters and gauges: what an account's change writes.
        // Histograms (stream lag, heartbeats, REST timings) wait for the next full
        // observation; reading one copies all its buckets.
        Some(Reader::Bucket(..) | Reader::Sum(_) | Reader::Count(_)) if !all => return,
        Some(r) => r.read(snap),
        None => return,
    };
    // Bits, so a NaN that stays NaN is no change.
    if s.samples
        .back()
        .is_none_or(|&(_, last)| last.to_bits() != v.to_bits())
    {
        dirty[s.name] = true;
        changed.push((s.name, s.labels.clone()));
    } else if !all {
        return;
    }
    push_thinned(&mut s.samples, t_ms, v, s.resolution_ms);
    // Keep each history one slice, so reading a window never gathers it first.
    s.samples.make_contiguous();
}

impl InPlace for LiveStore {
    /// Every selected series with its whole history, in place.
    fn each(&self, sel: &Selector, f: &mut promql::VisitFn<'_>) {
        // The matchers each candidate is tested against. Series found through the name index
        // need not test the name matcher again (without a name, `beyond_name` keeps every
        // matcher).
        let mut check = sel.beyond_name();
        let candidates: &[usize] = match &sel.name {
            Some(name) => {
                let Some(&id) = self.by_name.get(name) else {
                    return;
                };
                // The fewest series an equality matcher leaves (a missing label is the empty
                // value, which the postings do not list, so those matchers scan). Not tested
                // again: the matcher that chose them, and any that every series of the name
                // passes (an `account="a"` with one account). Comparing label values was 16%
                // of the evaluation's CPU at 1,000 markets.
                let all = &self.members[id];
                let mut candidates = all;
                let mut chosen: Option<&promql::Matcher> = None;
                let mut j = 0;
                while j < check.len() {
                    let m = check[j];
                    let equality = m.kind() == promql::MatchKind::Equal && !m.value().is_empty();
                    if equality {
                        let found = self.postings[id]
                            .get(m.name())
                            .and_then(|values| values.get(m.value()));
                        match found {
                            None => return,
                            Some(list) if list.len() == all.len() => {
                                check.swap_remove(j);
                                continue;
                            }
                            Some(list) if list.len() < candidates.len() => {
                                (candidates, chosen) = (list, Some(m));
                            }
                            Some(_) => {}
                        }
                    }
                    j += 1;
                }
                if let Some(c) = chosen {
                    check.retain(|m| !std::ptr::eq(*m, c));
                }
                candidates
            }
            None => &self.order,
        };
        for &i in candidates {
            let s = &self.series[i];
            if !check
                .iter()
                .all(|m| m.matches(s.labels.get(m.name()).unwrap_or("")))
            {
                continue;
            }
            let (a, b) = s.samples.as_slices();
            if b.is_empty() {
                f(&s.labels, a);
            } else {
                // Unreachable after `observe` (it keeps each history contiguous).
                let all: Vec<_> = s.samples.iter().copied().collect();
                f(&s.labels, &all);
            }
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

    /// Selection through the postings: the equality matcher that picks the candidates, and
    /// those every series of the name passes, are not checked again; every other matcher is
    /// (including one that picked the candidates before a smaller list replaced it).
    #[test]
    fn selectors_through_the_postings_select_exactly_the_matching_series() {
        let t = Telemetry::new();
        for m in 0..6 {
            let market = format!("M{m}");
            let kind = if m < 4 { "x" } else { "y" };
            t.gauge(
                names::POSITION_QUANTITY,
                &[
                    ("account", "a"),
                    ("market", market.as_str()),
                    ("kind", kind),
                ],
            )
            .set(f64::from(m));
        }
        let mut live = LiveStore::new(t.registry().clone(), Duration::from_secs(1));
        live.set_needs(needs(RULES));
        live.observe(1_000, 1_000);
        let markets = |sel: &str| -> Vec<f64> {
            let q = format!("ocx_position_quantity{sel}");
            instant(&live, &q, 1_000)
                .into_iter()
                .map(|(_, v)| v)
                .collect()
        };
        assert_eq!(markets(r#"{account="a"}"#), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(markets(r#"{account="a", market="M1"}"#), [1.0]);
        assert_eq!(markets(r#"{market="M1", account="b"}"#), [0.0; 0]);
        assert_eq!(markets(r#"{account="a", market=~"M[12]"}"#), [1.0, 2.0]);
        assert_eq!(markets(r#"{account="a", market!="M1"}"#).len(), 5);
        assert_eq!(markets(r#"{market="M1", market="M2"}"#), [0.0; 0]);
        assert_eq!(markets(r#"{kind="x", market="M1"}"#), [1.0]);
        assert_eq!(markets(r#"{kind="y", market="M1"}"#), [0.0; 0]);
        assert_eq!(markets(r#"{market="M5", kind="x"}"#), [0.0; 0]);
        assert_eq!(markets(r#"{kind="y"}"#), [4.0, 5.0]);
        assert_eq!(markets(r#"{account=""}"#), [0.0; 0]);
        assert_eq!(markets(r#"{side=""}"#).len(), 6);
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

    /// Everything two stores over one registry must agree on, as text: each series (labels,
    /// read or gone, samples as bits), the name and label indexes by labels, and the change
    /// logs. Also checks the indexes against the series.
    fn state(live: &LiveStore) -> String {
        use std::collections::BTreeMap;
        use std::fmt::Write;
        let mut out = String::new();
        let mut order = live.order.clone();
        order.sort_unstable();
        assert!(
            order.iter().copied().eq(0..live.series.len()),
            "order lists every slot once"
        );
        let labels_at = |w: &[usize]| (&live.series[w[0]].labels, &live.series[w[1]].labels);
        assert!(
            live.order.windows(2).map(labels_at).all(|(a, b)| a < b),
            "order is by labels"
        );
        for &i in &live.order {
            let s = &live.series[i];
            let bits: Vec<(i64, u64)> = s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
            let _ = writeln!(out, "{:?} read={} {bits:?}", s.labels, s.reader.is_some());
            assert_eq!(
                live.index.get(&s.labels),
                Some(&i),
                "index of {:?}",
                s.labels
            );
            assert_eq!(live.names[s.name], s.labels.metric_name().unwrap_or(""));
            if let Some(id) = s.reader.as_ref().and_then(Reader::write_id) {
                assert_eq!(
                    live.by_write_id.get(&id),
                    Some(&i),
                    "write id of {:?}",
                    s.labels
                );
            }
        }
        assert_eq!(live.index.len(), live.series.len());
        let with_id = live
            .series
            .iter()
            .filter(|s| s.reader.as_ref().and_then(Reader::write_id).is_some());
        assert_eq!(live.by_write_id.len(), with_id.count());
        let labels_of = |list: &[usize]| -> Vec<String> {
            list.iter()
                .map(|&i| format!("{:?}", live.series[i].labels))
                .collect()
        };
        let mut names = BTreeMap::new();
        for (name, &id) in &live.by_name {
            let postings: BTreeMap<_, BTreeMap<_, _>> = live.postings[id]
                .iter()
                .map(|(l, values)| {
                    (
                        l,
                        values
                            .iter()
                            .map(|(v, list)| (v, labels_of(list)))
                            .collect(),
                    )
                })
                .collect();
            names.insert(name, (labels_of(&live.members[id]), postings));
        }
        let _ = writeln!(out, "{names:?}");
        let changed_at: BTreeMap<_, _> = live.changed_at.iter().collect();
        let logs: BTreeMap<_, _> = live
            .logs
            .iter()
            .map(|(n, log)| (n, (log.complete_after, format!("{:?}", log.entries))))
            .collect();
        let _ = writeln!(out, "{changed_at:?}\n{logs:?}");
        out
    }

    /// `LiveStore::observe_moved` as it was before the write and membership logs: every series
    /// resolved again and every counter and gauge read.
    fn observe_moved_by_scanning(live: &mut LiveStore, t: i64, seq: u64) {
        live.generation = None;
        live.cursor = None;
        live.observe_moved(t, seq);
    }

    const MOVED_RULES: &str = r#"
groups:
  - name: g
    rules:
      - alert: Inventory
        expr: abs(ocx_position_quantity) > ocx_inventory_limit
      - alert: Fills
        expr: increase(ocx_fills_total[1m]) > 0
      - alert: Lag
        expr: histogram_quantile(0.99, rate(ocx_stream_event_lag_seconds_bucket[1m])) > 0.5
"#;

    #[test]
    fn a_change_pass_reads_exactly_the_series_that_moved() {
        let t = Telemetry::new();
        let markets: Vec<String> = (0..50).map(|i| format!("M{i}")).collect();
        let gauges: Vec<Gauge> = markets
            .iter()
            .map(|m| t.gauge(names::POSITION_QUANTITY, &[("account", "a"), ("market", m)]))
            .collect();
        for (i, g) in gauges.iter().enumerate() {
            g.set(i as f64);
        }
        let mut live = LiveStore::new(t.registry().clone(), Duration::from_secs(1));
        live.set_needs(needs(MOVED_RULES));
        live.observe(1_000, 1);
        gauges[7].set(-1.0);
        gauges[7].set(-2.0);
        gauges[31].increment(0.5);
        gauges[12].set(12.0); // the value it had: not a change
        live.observe_moved(1_010, 2);
        let mut changed = Vec::new();
        assert!(live.changes_since("ocx_position_quantity", 1, &mut |l| {
            changed.push(l.get("market").unwrap_or("").to_string())
        }));
        changed.sort();
        assert_eq!(changed, ["M31", "M7"]);
        let q = instant(&live, "ocx_position_quantity", 1_010);
        for (i, (_, v)) in q.iter().enumerate() {
            let m: usize = q[i]
                .0
                .split("market=\"M")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let want = match m {
                7 => -2.0,
                31 => 31.5,
                m => m as f64,
            };
            assert_eq!(*v, want, "market M{m}");
        }
        // Only the two moved got a sample at 1_010.
        let at_1010 = live
            .series
            .iter()
            .filter(|s| s.samples.back().is_some_and(|&(t, _)| t == 1_010));
        assert_eq!(at_1010.count(), 2);
        // Nothing written: nothing read, nothing changed.
        live.observe_moved(1_020, 3);
        assert_eq!(live.changed_at("ocx_position_quantity"), 2);
    }

    #[test]
    fn a_change_pass_whose_place_fell_off_the_write_log_still_sees_everything() {
        let t = Telemetry::new();
        let early = t.gauge(
            names::POSITION_QUANTITY,
            &[("account", "a"), ("market", "EARLY")],
        );
        let hot = t.gauge(
            names::POSITION_QUANTITY,
            &[("account", "a"), ("market", "HOT")],
        );
        let mut live = LiveStore::new(t.registry().clone(), Duration::from_secs(1));
        live.set_needs(needs(MOVED_RULES));
        live.observe(1_000, 1);
        early.set(3.0);
        // Another reader of the registry takes the log after every write: the entry of
        // `early` is overwritten long before this store looks again.
        let mut other = None;
        for i in 0..=crate::telemetry::store::WRITE_LOG_CAP {
            hot.set(i as f64 + 1.0);
            other = Some(t.registry().written_since(other, &mut |_| {}).0);
        }
        live.observe_moved(1_010, 2);
        let q = instant(&live, r#"ocx_position_quantity{market="EARLY"}"#, 1_010);
        assert_eq!(q[0].1, 3.0, "the write before the ring lapped is seen");
        assert_eq!(live.changed_at("ocx_position_quantity"), 2);
        // Back on the log.
        early.set(4.0);
        live.observe_moved(1_020, 3);
        assert_eq!(
            instant(&live, r#"ocx_position_quantity{market="EARLY"}"#, 1_020)[0].1,
            4.0
        );
    }

    #[test]
    fn two_stores_on_one_registry_both_see_each_write() {
        let t = Telemetry::new();
        let g = t.gauge(
            names::POSITION_QUANTITY,
            &[("account", "a"), ("market", "M")],
        );
        let (mut a, mut b) = (
            LiveStore::new(t.registry().clone(), Duration::from_secs(1)),
            LiveStore::new(t.registry().clone(), Duration::from_secs(1)),
        );
        for live in [&mut a, &mut b] {
            live.set_needs(needs(MOVED_RULES));
            live.observe(1_000, 1);
        }
        g.set(1.0);
        a.observe_moved(1_010, 2);
        // `a` took the entry; the next write must be logged again for `a`.
        g.set(2.0);
        b.observe_moved(1_020, 3);
        a.observe_moved(1_030, 4);
        g.set(5.0);
        b.observe_moved(1_040, 5);
        a.observe_moved(1_050, 6);
        for (live, t) in [(&a, 1_050), (&b, 1_040)] {
            assert_eq!(instant(live, "ocx_position_quantity", t)[0].1, 5.0);
        }
        let seqs = |live: &LiveStore| {
            let mut seqs = Vec::new();
            let log = &live.logs["ocx_position_quantity"];
            for (seq, _) in &log.entries {
                seqs.push(*seq);
            }
            seqs
        };
        assert_eq!(seqs(&a), [1, 2, 4, 6]);
        assert_eq!(seqs(&b), [1, 3, 5]);
    }

    #[test]
    fn series_registered_between_change_passes_appear_and_removed_ones_go_stale() {
        let t = Telemetry::new();
        let kept = [("account", "a"), ("market", "KEPT")];
        t.gauge(names::POSITION_QUANTITY, &kept).set(1.0);
        let mut live = LiveStore::new(t.registry().clone(), Duration::from_secs(1));
        live.set_needs(needs(MOVED_RULES));
        live.observe(1_000, 1);
        let resolved = live.generation;
        // Registered and never written: read as a full pass would, at its value (zero).
        t.gauge(
            names::INVENTORY_LIMIT,
            &[("account", "a"), ("market", "NEW")],
        );
        t.gauge(
            names::POSITION_QUANTITY,
            &[("account", "a"), ("market", "NEW")],
        )
        .set(4.0);
        live.observe_moved(1_010, 2);
        assert_ne!(live.generation, resolved);
        assert_eq!(
            instant(&live, r#"ocx_inventory_limit{market="NEW"}"#, 1_010)[0].1,
            0.0
        );
        assert_eq!(
            instant(&live, r#"ocx_position_quantity{market="NEW"}"#, 1_010)[0].1,
            4.0
        );
        assert!(t.registry().remove(names::POSITION_QUANTITY, &kept));
        live.observe_moved(1_020, 3);
        assert!(
            instant(&live, r#"ocx_position_quantity{market="KEPT"}"#, 1_020).is_empty(),
            "stale at once"
        );
        let mut gone = Vec::new();
        assert!(live.changes_since("ocx_position_quantity", 2, &mut |l| gone.push(l.clone())));
        assert_eq!(gone.len(), 1);
        // Registered again: another series, read from its new handle.
        t.gauge(names::POSITION_QUANTITY, &kept).set(9.0);
        live.observe_moved(1_030, 4);
        assert_eq!(
            instant(&live, r#"ocx_position_quantity{market="KEPT"}"#, 1_030)[0].1,
            9.0
        );
    }

    #[test]
    fn change_passes_over_the_logs_agree_with_scanning_every_series() {
        let t = Telemetry::new();
        let mut rng = fastrand::Rng::with_seed(11);
        let stores = || {
            let mut live = LiveStore::new(t.registry().clone(), Duration::from_millis(20));
            live.set_needs(needs(MOVED_RULES));
            live
        };
        // Two stores following the logs (two engines on one registry) and one scanning.
        let (mut a, mut b, mut scan) = (stores(), stores(), stores());
        let markets: Vec<String> = (0..12).map(|i| format!("M{i}")).collect();
        let mut at = 1_000;
        for step in 1..=800u64 {
            for _ in 0..rng.usize(0..=4) {
                let m = markets[rng.usize(..markets.len())].as_str();
                let l = [("account", "a"), ("market", m)];
                let fill = [
                    ("account", "a"),
                    ("market", m),
                    ("side", "buy"),
                    ("liquidity", "maker"),
                ];
                match rng.u8(..20) {
                    0 => {
                        t.registry().remove(names::POSITION_QUANTITY, &l);
                    }
                    1 => {
                        t.registry().remove(names::FILLS, &fill);
                    }
                    2 => t
                        .histogram(names::EVENT_LAG, &[("account", "a"), ("stream", m)])
                        .record(0.01),
                    3 => {
                        t.registry()
                            .remove(names::EVENT_LAG, &[("account", "a"), ("stream", m)]);
                    }
                    4..=7 => t.counter(names::FILLS, &fill).increment(1),
                    8 => t
                        .gauge(names::INVENTORY_LIMIT, &l)
                        .set(f64::from(rng.u8(1..3))),
                    _ => t
                        .gauge(names::POSITION_QUANTITY, &l)
                        .set(f64::from(rng.i8(-2..=2))),
                }
            }
            at += 10;
            // Now and then `a` resolves every series (new rules do that), over slots that
            // incremental resolves left out of label order.
            if step % 40 == 0 {
                a.generation = None;
            }
            // A timer pass now and then, as each engine's groups do.
            if step % 25 == 0 {
                for live in [&mut a, &mut b, &mut scan] {
                    live.observe(at, step);
                }
            } else {
                if step % 3 != 0 {
                    a.observe_moved(at, step);
                }
                b.observe_moved(at, step);
                observe_moved_by_scanning(&mut scan, at, step);
                if step % 3 == 0 {
                    // `a` skipped a pass: it catches up (a change pass without a change in
                    // between reads nothing).
                    a.observe_moved(at, step);
                }
            }
            let want = state(&scan);
            assert_eq!(state(&a), want, "step {step}");
            assert_eq!(state(&b), want, "step {step}");
        }
        assert!(a.series() > 30, "tracked {}", a.series());
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
