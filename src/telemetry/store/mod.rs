//! The series store: every counter, gauge and histogram by metric name and label set, written by the handles and read by `/metrics` and the rule engine alike.
//!
//! Registration takes a lock (it allocates the label set and may insert a series); the handles it
//! returns are `Arc`s to atomics, so the per-event path never locks (only recording an exemplar,
//! for a sampled trace, takes its slot's lock: see `exemplar.rs`). Readers see the very values
//! `/metrics` shows: `select` resolves a family to its series once, [`Registry::generation`]
//! says when the set of series changed and a selector should resolve again, and
//! [`Registry::members_since`] which series came and went, so a reader resolves only those.
//! [`Registry::written_since`] says which counters and gauges were written since a reader last
//! asked (see `written.rs`), so a reader after a change reads what moved, not the whole store.

mod exemplar;
mod render;
mod written;

pub use exemplar::TraceIds;
pub use render::Format;
pub(crate) use render::write_go_float;
pub use written::{WRITE_LOG_CAP, WriteCursor};

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::catalogue::{Kind, MetricDef};
use exemplar::{Exemplar, ExemplarSlot};
use written::{Logged, WriteLog};

/// Why a series could not be registered. Names and label names are constants in this crate, so
/// each of these is a programming error, caught by the tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("metric {0} is not in the catalogue")]
    UnknownMetric(String),
    #[error("metric {name} is a {actual}, not a {requested}")]
    WrongKind {
        name: String,
        actual: &'static str,
        requested: &'static str,
    },
    #[error("metric {name}: {label:?} is not a valid label name here")]
    InvalidLabelName { name: String, label: String },
    #[error("metric {name}: label {label} given twice")]
    DuplicateLabel { name: String, label: String },
}

/// A series' label set, sorted by label name; cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Labels(Arc<[(Box<str>, Box<str>)]>);

impl Labels {
    /// Sort by name and check the names: `[a-zA-Z_][a-zA-Z0-9_]*`, not `__`-prefixed (reserved
    /// by Prometheus), unique, and not `le` on a histogram (its bucket label).
    fn new(metric: &str, pairs: &[(&str, &str)], histogram: bool) -> Result<Self, StoreError> {
        let mut v: Vec<(Box<str>, Box<str>)> = Vec::with_capacity(pairs.len());
        for (k, val) in pairs {
            if !valid_label_name(k) || (histogram && *k == "le") {
                return Err(StoreError::InvalidLabelName {
                    name: metric.to_string(),
                    label: k.to_string(),
                });
            }
            v.push(((*k).into(), (*val).into()));
        }
        v.sort();
        if let Some(w) = v.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(StoreError::DuplicateLabel {
                name: metric.to_string(),
                label: w[0].0.to_string(),
            });
        }
        Ok(Self(v.into()))
    }

    /// The pairs in label-name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !s.starts_with("__")
}

/// `x += d` on an f64 kept as bits.
fn add_f64(cell: &AtomicU64, d: f64) {
    // The closure always returns Some, so this cannot fail; a lost race only retries.
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
        Some((f64::from_bits(b) + d).to_bits())
    });
}

/// `add_f64` for a series in the write log: `SeqCst` (see `written.rs`; on x86 the locked
/// compare-exchange costs the same either way), then logged if the value changed.
fn add_f64_logged(cell: &AtomicU64, d: f64, logged: Option<&Logged>) {
    let Some(logged) = logged else {
        return add_f64(cell, d);
    };
    let old = cell.fetch_update(Ordering::SeqCst, Ordering::Relaxed, |b| {
        Some((f64::from_bits(b) + d).to_bits())
    });
    // Bits, as the reader compares them (`-0.0 + 0.0` is a change).
    if old.is_ok_and(|b| (f64::from_bits(b) + d).to_bits() != b) {
        logged.wrote();
    }
}

/// A monotonically increasing total. Integer counts and exact decimal amounts (converted to
/// f64) are both native: there is no separate float kind to re-type at render time.
#[derive(Clone, Default)]
pub struct Counter(Arc<CounterCell>);

#[derive(Default)]
struct CounterCell {
    bits: AtomicU64,
    exemplar: ExemplarSlot,
    /// `None` outside a registry (a failed registration's detached handle).
    logged: Option<Logged>,
}

impl Counter {
    fn logged(log: &Arc<WriteLog>, id: u32) -> Self {
        Self(Arc::new(CounterCell {
            logged: Some(Logged::new(log.clone(), id)),
            ..CounterCell::default()
        }))
    }

    pub fn increment(&self, n: u64) {
        add_f64_logged(&self.0.bits, n as f64, self.0.logged.as_ref());
    }

    /// `increment(n)`, and `n` becomes the series' exemplar (replacing any earlier one) with
    /// `ids` and the wall-clock time now, as client_golang's `AddWithExemplar`. For sampled
    /// traces only: this path takes a lock and reads the clock, `increment` does neither.
    pub fn increment_with_exemplar(&self, n: u64, ids: TraceIds) {
        self.increment_with_exemplar_at(n, ids, crate::clock::unix_ms());
    }

    /// Makes `value` (with `ids`, at the wall-clock time now) the series' exemplar without
    /// counting: for a total set with [`Counter::absolute`] once its change is durable, whose
    /// exemplar is known when the change is made. The exemplar may then show a commit (a few
    /// milliseconds) before the total that includes it.
    pub fn attach_exemplar(&self, value: f64, ids: TraceIds) {
        self.0.exemplar.set(Exemplar {
            ids,
            value,
            unix_ms: crate::clock::unix_ms(),
        });
    }

    /// `increment_with_exemplar` at a given time (tests pin it to render exact text).
    pub(crate) fn increment_with_exemplar_at(&self, n: u64, ids: TraceIds, unix_ms: i64) {
        // The count first: the exemplar's lock then publishes it, so a render that reads the
        // exemplar before the total (as `render` does) never shows an exemplar beside a total
        // that lacks its increment.
        self.increment(n);
        self.0.exemplar.set(Exemplar {
            ids,
            value: n as f64,
            unix_ms,
        });
    }

    /// Add a float amount; a negative or NaN amount is ignored, as a counter never goes down.
    pub fn increment_by(&self, amount: f64) {
        if amount > 0.0 {
            add_f64_logged(&self.0.bits, amount, self.0.logged.as_ref());
        }
    }

    /// Set the total from an exact running total kept elsewhere (decimal amounts). A value below
    /// the current one (or NaN) is ignored: a counter never goes down, and a decrease would read
    /// as a reset to `rate()`.
    pub fn absolute(&self, total: f64) {
        let raised = self
            .0
            .bits
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |b| {
                (total > f64::from_bits(b)).then_some(total.to_bits())
            });
        if let (Ok(_), Some(logged)) = (raised, &self.0.logged) {
            logged.wrote();
        }
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.bits.load(Ordering::Relaxed))
    }

    /// Its id in the registry's write log (see [`Registry::written_since`]); `None` outside a
    /// registry or once ids ran out.
    pub fn write_id(&self) -> Option<u32> {
        self.0.logged.as_ref().and_then(Logged::id)
    }

    /// Whether `other` is a handle to this very counter.
    pub fn same(&self, other: &Counter) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub(crate) fn exemplar(&self) -> &ExemplarSlot {
        &self.0.exemplar
    }
}

/// A value that goes up and down.
#[derive(Clone, Default)]
pub struct Gauge(Arc<GaugeCell>);

#[derive(Default)]
struct GaugeCell {
    bits: AtomicU64,
    /// `None` outside a registry (a failed registration's detached handle).
    logged: Option<Logged>,
}

impl Gauge {
    fn logged(log: &Arc<WriteLog>, id: u32) -> Self {
        Self(Arc::new(GaugeCell {
            bits: AtomicU64::new(0),
            logged: Some(Logged::new(log.clone(), id)),
        }))
    }

    pub fn set(&self, v: f64) {
        let bits = v.to_bits();
        match &self.0.logged {
            // The value it has already (many gauges are set on every event to what they hold):
            // nothing to store or log.
            Some(_) if self.0.bits.load(Ordering::Relaxed) == bits => {}
            // A swap, not a store: the write log's reader must not miss it (see `written.rs`),
            // and the old value says whether there is anything to log.
            Some(logged) => {
                if self.0.bits.swap(bits, Ordering::SeqCst) != bits {
                    logged.wrote();
                }
            }
            None => self.0.bits.store(bits, Ordering::Relaxed),
        }
    }

    pub fn increment(&self, d: f64) {
        add_f64_logged(&self.0.bits, d, self.0.logged.as_ref());
    }

    pub fn decrement(&self, d: f64) {
        add_f64_logged(&self.0.bits, -d, self.0.logged.as_ref());
    }

    /// One atomic load: cheap enough for a rule to read on every evaluation.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.bits.load(Ordering::Relaxed))
    }

    /// Its id in the registry's write log (see [`Registry::written_since`]); `None` outside a
    /// registry or once ids ran out.
    pub fn write_id(&self) -> Option<u32> {
        self.0.logged.as_ref().and_then(Logged::id)
    }

    /// Whether `other` is a handle to this very gauge.
    pub fn same(&self, other: &Gauge) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Observations counted into fixed buckets (given per metric in the catalogue), with their sum.
#[derive(Clone)]
pub struct Histogram(Arc<HistogramCell>);

struct HistogramCell {
    /// Upper bounds, strictly increasing and finite; `+Inf` is implicit.
    bounds: &'static [f64],
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`. The total count is their sum,
    /// so a reader never sees `_count` disagree with the `+Inf` bucket.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    /// One per bucket, `+Inf` last: the bucket's latest exemplar (see [`ExemplarSlot`]).
    exemplars: Box<[ExemplarSlot]>,
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub count: u64,
    pub sum: f64,
    /// `(upper bound, cumulative count)`, ending with `(+Inf, count)`.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        // Only a finite, strictly increasing prefix makes buckets (`+Inf` is always added); the
        // catalogue test keeps ours whole.
        let mut usable = 0;
        while usable < bounds.len()
            && bounds[usable].is_finite()
            && (usable == 0 || bounds[usable] > bounds[usable - 1])
        {
            usable += 1;
        }
        let bounds = &bounds[..usable];
        Self(Arc::new(HistogramCell {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            exemplars: (0..=bounds.len())
                .map(|_| ExemplarSlot::default())
                .collect(),
        }))
    }

    /// Count `v` into the first bucket whose bound is at least `v` (`+Inf` for NaN).
    pub fn record(&self, v: f64) {
        self.observe(v);
    }

    /// `record(v)`, and `v` becomes the exemplar of the bucket it was counted in (replacing
    /// that bucket's earlier one) with `ids` and the wall-clock time now. For sampled traces
    /// only: this path takes a lock and reads the clock, `record` does neither.
    pub fn record_with_exemplar(&self, v: f64, ids: TraceIds) {
        self.record_with_exemplar_at(v, ids, crate::clock::unix_ms());
    }

    /// `record_with_exemplar` at a given time (tests pin it to render exact text).
    pub(crate) fn record_with_exemplar_at(&self, v: f64, ids: TraceIds, unix_ms: i64) {
        // Counted first, as in `Counter::increment_with_exemplar_at`.
        let i = self.observe(v);
        if let Some(slot) = self.0.exemplars.get(i) {
            slot.set(Exemplar {
                ids,
                value: v,
                unix_ms,
            });
        }
    }

    /// `record`: returns the bucket `v` was counted in.
    #[inline]
    fn observe(&self, v: f64) -> usize {
        let c = &self.0;
        let i = c
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(c.bounds.len());
        if let Some(n) = c.counts.get(i) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        add_f64(&c.sum, v);
        i
    }

    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.0.sum.load(Ordering::Relaxed))
    }

    /// Whether `other` is a handle to this very histogram.
    pub fn same(&self, other: &Histogram) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub fn bounds(&self) -> &'static [f64] {
        self.0.bounds
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.0.counts.len());
        for (i, n) in self.0.counts.iter().enumerate() {
            cumulative += n.load(Ordering::Relaxed);
            let bound = self.0.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, cumulative));
        }
        HistogramSnapshot {
            count: cumulative,
            sum: self.sum(),
            buckets,
        }
    }

    pub(crate) fn exemplars(&self) -> &[ExemplarSlot] {
        &self.0.exemplars
    }
}

/// A series' handle, whatever its kind.
#[derive(Clone)]
pub enum Handle {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

/// A series' value read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Counter(f64),
    Gauge(f64),
    Histogram(HistogramSnapshot),
}

impl Handle {
    /// Whether `other` is a handle to this very series (one registered again after a removal is
    /// another).
    pub fn same(&self, other: &Handle) -> bool {
        match (self, other) {
            (Self::Counter(a), Self::Counter(b)) => a.same(b),
            (Self::Gauge(a), Self::Gauge(b)) => a.same(b),
            (Self::Histogram(a), Self::Histogram(b)) => a.same(b),
            _ => false,
        }
    }

    pub fn value(&self) -> Value {
        match self {
            Self::Counter(c) => Value::Counter(c.get()),
            Self::Gauge(g) => Value::Gauge(g.get()),
            Self::Histogram(h) => Value::Histogram(h.snapshot()),
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value().fmt(f)
    }
}

/// One series of a family: its labels and a live handle (reading it costs an atomic load).
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: Labels,
    pub handle: Handle,
}

/// A family with at least one series, as the renderers and rules see it.
#[derive(Debug, Clone)]
pub struct Family {
    pub def: &'static MetricDef,
    /// Sorted by labels.
    pub series: Vec<Series>,
}

/// Most series creations and removals [`Registry::members_since`] remembers: a reader further
/// behind resolves every series again.
pub const MEMBERSHIP_LOG_CAP: usize = 1024;

/// A series created or removed after a given generation, as it is now.
#[derive(Debug, Clone)]
pub struct Membership {
    /// Index of its family in the catalogue.
    pub family: usize,
    pub labels: Labels,
    /// `None` when it is gone. A series removed and registered again is another series (another
    /// handle, see [`Handle::same`]).
    pub handle: Option<Handle>,
}

/// The series, and the log of changes to which series exist.
struct Sets {
    /// One map per catalogue entry, in catalogue order: that is the families' stable order.
    families: Vec<BTreeMap<Labels, Handle>>,
    /// The latest creations and removals: the generation each made, family and labels.
    changes: VecDeque<(u64, usize, Labels)>,
    /// Every change that made a generation above this is in `changes`.
    complete_after: u64,
    /// The write log id of the next counter or gauge created.
    next_id: u32,
}

impl Sets {
    /// Once ids run out every later series shares [`written::UNKNOWN`], which makes readers of
    /// the write log read everything.
    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = id.saturating_add(1);
        id
    }

    /// Note a creation or removal of `(family, labels)`, under the write lock (so the generation
    /// and the log agree for a reader holding the read lock).
    fn changed(&mut self, generation: &AtomicU64, family: usize, labels: Labels) {
        let g = generation.fetch_add(1, Ordering::AcqRel) + 1;
        if self.changes.len() >= MEMBERSHIP_LOG_CAP
            && let Some((dropped, _, _)) = self.changes.pop_front()
        {
            self.complete_after = dropped;
        }
        self.changes.push_back((g, family, labels));
    }
}

struct Inner {
    catalogue: &'static [MetricDef],
    index: HashMap<&'static str, usize>,
    sets: RwLock<Sets>,
    generation: AtomicU64,
    /// Which counters and gauges were written lately (see [`Registry::written_since`]).
    written: Arc<WriteLog>,
}

/// The store of one sidecar process. Cheap to clone; clones share the series.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A store for the metrics of `catalogue`; only those names can be registered.
    pub fn new(catalogue: &'static [MetricDef]) -> Self {
        let index = catalogue
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name, i))
            .collect();
        Self {
            inner: Arc::new(Inner {
                catalogue,
                index,
                sets: RwLock::new(Sets {
                    families: vec![BTreeMap::new(); catalogue.len()],
                    changes: VecDeque::new(),
                    complete_after: 0,
                    next_id: 0,
                }),
                generation: AtomicU64::new(0),
                written: WriteLog::new(),
            }),
        }
    }

    pub fn catalogue(&self) -> &'static [MetricDef] {
        self.inner.catalogue
    }

    /// The catalogue entry of `name`.
    pub fn def(&self, name: &str) -> Option<&'static MetricDef> {
        let i = *self.inner.index.get(name)?;
        self.inner.catalogue.get(i)
    }

    // A panic while a lock was held cannot leave a map half-updated (each write is one insert
    // or remove), so a poisoned lock is still safe to use.
    fn read(&self) -> RwLockReadGuard<'_, Sets> {
        self.inner
            .sets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Sets> {
        self.inner
            .sets
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Bumped whenever a series is created or removed (never by a value update, nor by
    /// registering an existing series again): a selector resolved at generation N is still
    /// exact while the generation is N. Read it before `select`, so a change that races the
    /// resolve is seen next time.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The generation now and each series created or removed since generation `since` (once
    /// each, as it is now, in no particular order); `None` when that is no longer known (more
    /// than [`MEMBERSHIP_LOG_CAP`] changes ago). A reader that resolved at `since` updates what
    /// it resolved with these instead of selecting every family again.
    pub fn members_since(&self, since: u64) -> Option<(u64, Vec<Membership>)> {
        let sets = self.read();
        let now = self.generation();
        if since < sets.complete_after || since > now {
            return None;
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (g, family, labels) in sets.changes.iter().rev() {
            if *g <= since {
                break;
            }
            if seen.insert((*family, labels)) {
                out.push(Membership {
                    family: *family,
                    labels: labels.clone(),
                    handle: sets.families[*family].get(labels).cloned(),
                });
            }
        }
        Some((now, out))
    }

    /// Calls `f` with the write log id (see [`Counter::write_id`]) of each counter and gauge
    /// whose value changed from `from` on (possibly twice), and returns the cursor for the next
    /// call, with whether those were all: `false` when `from` is `None` or the log no longer
    /// reaches back that far, and the caller must read every series. Either way the values read
    /// after the call include every write not listed. Histograms are not logged.
    ///
    /// The cost is that of the series written since the reader's last call, not that of the
    /// store: a hot series is listed once per call, not once per write.
    pub fn written_since(
        &self,
        from: Option<WriteCursor>,
        f: &mut dyn FnMut(u32),
    ) -> (WriteCursor, bool) {
        self.inner.written.read(from, f)
    }

    fn register(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        requested: &'static str,
    ) -> Result<Handle, StoreError> {
        let i = *self
            .inner
            .index
            .get(name)
            .ok_or_else(|| StoreError::UnknownMetric(name.to_string()))?;
        let def = &self.inner.catalogue[i];
        if def.kind.as_str() != requested {
            return Err(StoreError::WrongKind {
                name: name.to_string(),
                actual: def.kind.as_str(),
                requested,
            });
        }
        let labels = Labels::new(name, labels, matches!(def.kind, Kind::Histogram(_)))?;
        if let Some(h) = self.read().families[i].get(&labels) {
            return Ok(h.clone());
        }
        let mut sets = self.write();
        // Another thread may have created it between the two locks.
        if let Some(h) = sets.families[i].get(&labels) {
            return Ok(h.clone());
        }
        let log = &self.inner.written;
        let h = match def.kind {
            Kind::Counter => Handle::Counter(Counter::logged(log, sets.take_id())),
            Kind::Gauge => Handle::Gauge(Gauge::logged(log, sets.take_id())),
            Kind::Histogram(bounds) => Handle::Histogram(Histogram::new(bounds)),
        };
        sets.families[i].insert(labels.clone(), h.clone());
        sets.changed(&self.inner.generation, i, labels);
        Ok(h)
    }

    pub fn try_counter(&self, name: &str, labels: &[(&str, &str)]) -> Result<Counter, StoreError> {
        match self.register(name, labels, "counter")? {
            Handle::Counter(c) => Ok(c),
            _ => Err(self.kind_error(name, "counter")),
        }
    }

    pub fn try_gauge(&self, name: &str, labels: &[(&str, &str)]) -> Result<Gauge, StoreError> {
        match self.register(name, labels, "gauge")? {
            Handle::Gauge(g) => Ok(g),
            _ => Err(self.kind_error(name, "gauge")),
        }
    }

    pub fn try_histogram(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Result<Histogram, StoreError> {
        match self.register(name, labels, "histogram")? {
            Handle::Histogram(h) => Ok(h),
            _ => Err(self.kind_error(name, "histogram")),
        }
    }

    fn kind_error(&self, name: &str, requested: &'static str) -> StoreError {
        StoreError::WrongKind {
            name: name.to_string(),
            actual: self.def(name).map_or("unknown", |d| d.kind.as_str()),
            requested,
        }
    }

    /// The counter `name{labels}`, created on first use; the same series for the same name and
    /// label set in any order.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Counter {
        self.try_counter(name, labels)
            .unwrap_or_else(|e| detached(e, Counter::default))
    }

    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Gauge {
        self.try_gauge(name, labels)
            .unwrap_or_else(|e| detached(e, Gauge::default))
    }

    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Histogram {
        self.try_histogram(name, labels).unwrap_or_else(|e| {
            let bounds = match self.def(name).map(|d| d.kind) {
                Some(Kind::Histogram(b)) => b,
                _ => &[],
            };
            detached(e, || Histogram::new(bounds))
        })
    }

    /// Drop a series; it disappears from the renders and from `select`. Handles to it still work
    /// but nobody sees them; registering the same labels again starts a new series at zero.
    /// Returns whether the series existed.
    pub fn remove(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        let Some(&i) = self.inner.index.get(name) else {
            return false;
        };
        let histogram = matches!(self.inner.catalogue[i].kind, Kind::Histogram(_));
        let Ok(labels) = Labels::new(name, labels, histogram) else {
            return false;
        };
        let mut sets = self.write();
        let removed = sets.families[i].remove(&labels).is_some();
        if removed {
            sets.changed(&self.inner.generation, i, labels);
        }
        removed
    }

    /// The series of family `name`, sorted by labels (empty for an unknown name).
    pub fn select(&self, name: &str) -> Vec<Series> {
        let Some(&i) = self.inner.index.get(name) else {
            return Vec::new();
        };
        collect(&self.read().families[i])
    }

    /// Every family with at least one series, in catalogue order, each sorted by labels.
    pub fn families(&self) -> Vec<Family> {
        let sets = self.read();
        self.inner
            .catalogue
            .iter()
            .zip(sets.families.iter())
            .filter(|(_, m)| !m.is_empty())
            .map(|(def, m)| Family {
                def,
                series: collect(m),
            })
            .collect()
    }

    /// The exposition of every non-empty family in `format`.
    pub fn render(&self, format: Format) -> String {
        // Snapshot the handles (two `Arc` clones a series) and format without the lock, so a
        // registration on the event path never waits for a whole render.
        let families = self.families();
        let series: usize = families.iter().map(|f| f.series.len()).sum();
        let mut out = String::with_capacity(200 * series + 64);
        for f in &families {
            render::family(&mut out, format, f.def, &f.series);
        }
        render::finish(&mut out, format);
        out
    }
}

fn collect(m: &BTreeMap<Labels, Handle>) -> Vec<Series> {
    m.iter()
        .map(|(labels, handle)| Series {
            labels: labels.clone(),
            handle: handle.clone(),
        })
        .collect()
}

/// A handle outside the registry, for a registration that failed: recording into it is harmless
/// and invisible. Failing is a bug (names are constants), so it is loud in debug builds and
/// tests; a release build logs it and keeps serving the other series.
fn detached<H>(e: StoreError, make: impl FnOnce() -> H) -> H {
    if cfg!(debug_assertions) {
        panic!("metric registration failed: {e}");
    }
    tracing::error!(error = %e, "metric registration failed; the series is not exported");
    make()
}

#[cfg(test)]
mod tests;
