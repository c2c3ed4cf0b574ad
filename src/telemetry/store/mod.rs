//! The series store: every counter, gauge and histogram by metric name and label set, written by the handles and read by `/metrics` and the rule engine alike.
//!
//! Registration takes a lock (it allocates the label set and may insert a series); the handles it
//! returns are `Arc`s to atomics, so the per-event path never locks (only recording an exemplar,
//! for a sampled trace, takes its slot's lock: see `exemplar.rs`). Readers see the very values
//! `/metrics` shows: `select` resolves a family to its series once, and [`Registry::generation`]
//! says when the set of series changed and a selector should resolve again.

mod exemplar;
mod render;

pub use exemplar::TraceIds;
pub use render::Format;
pub(crate) use render::write_go_float;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::catalogue::{Kind, MetricDef};
use exemplar::{Exemplar, ExemplarSlot};

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

/// A monotonically increasing total. Integer counts and exact decimal amounts (converted to
/// f64) are both native: there is no separate float kind to re-type at render time.
#[derive(Clone, Default)]
pub struct Counter(Arc<CounterCell>);

#[derive(Default)]
struct CounterCell {
    bits: AtomicU64,
    exemplar: ExemplarSlot,
}

impl Counter {
    pub fn increment(&self, n: u64) {
        add_f64(&self.0.bits, n as f64);
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
            add_f64(&self.0.bits, amount);
        }
    }

    /// Set the total from an exact running total kept elsewhere (decimal amounts). A value below
    /// the current one (or NaN) is ignored: a counter never goes down, and a decrease would read
    /// as a reset to `rate()`.
    pub fn absolute(&self, total: f64) {
        let _ = self
            .0
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (total > f64::from_bits(b)).then_some(total.to_bits())
            });
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.bits.load(Ordering::Relaxed))
    }

    pub(crate) fn exemplar(&self) -> &ExemplarSlot {
        &self.0.exemplar
    }
}

/// A value that goes up and down.
#[derive(Clone, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn increment(&self, d: f64) {
        add_f64(&self.0, d);
    }

    pub fn decrement(&self, d: f64) {
        add_f64(&self.0, -d);
    }

    /// One atomic load: cheap enough for a rule to read on every evaluation.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
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

type Families = Vec<BTreeMap<Labels, Handle>>;

struct Inner {
    catalogue: &'static [MetricDef],
    index: HashMap<&'static str, usize>,
    /// One map per catalogue entry, in catalogue order: that is the families' stable order.
    families: RwLock<Families>,
    generation: AtomicU64,
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
                families: RwLock::new(vec![BTreeMap::new(); catalogue.len()]),
                generation: AtomicU64::new(0),
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
    fn read(&self) -> RwLockReadGuard<'_, Families> {
        self.inner
            .families
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Families> {
        self.inner
            .families
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
        if let Some(h) = self.read()[i].get(&labels) {
            return Ok(h.clone());
        }
        let mut families = self.write();
        // Another thread may have created it between the two locks.
        let h = families[i].entry(labels).or_insert_with(|| {
            self.inner.generation.fetch_add(1, Ordering::AcqRel);
            match def.kind {
                Kind::Counter => Handle::Counter(Counter::default()),
                Kind::Gauge => Handle::Gauge(Gauge::default()),
                Kind::Histogram(bounds) => Handle::Histogram(Histogram::new(bounds)),
            }
        });
        Ok(h.clone())
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
        let removed = self.write()[i].remove(&labels).is_some();
        if removed {
            self.inner.generation.fetch_add(1, Ordering::AcqRel);
        }
        removed
    }

    /// The series of family `name`, sorted by labels (empty for an unknown name).
    pub fn select(&self, name: &str) -> Vec<Series> {
        let Some(&i) = self.inner.index.get(name) else {
            return Vec::new();
        };
        collect(&self.read()[i])
    }

    /// Every family with at least one series, in catalogue order, each sorted by labels.
    pub fn families(&self) -> Vec<Family> {
        let families = self.read();
        self.inner
            .catalogue
            .iter()
            .zip(families.iter())
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
