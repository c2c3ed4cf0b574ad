//! Where samples come from: selectors and their matchers, the `Storage` trait, stale markers, and
//! `MemStorage`, a plain in-memory implementation for tests and the promtool-format runner.

use std::collections::HashMap;
use std::fmt;

use promql_parser::label::{MatchOp, Matcher as ParsedMatcher};

use super::labels::{Labels, METRIC_NAME};

/// The bit pattern Prometheus writes as a staleness marker: a NaN no computation produces.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is a staleness marker (an ordinary NaN is not).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The staleness marker as an f64.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// How a matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Equal,
    NotEqual,
    /// Fully anchored RE2-style regular expression.
    Regex,
    NotRegex,
}

/// One label matcher of a selector. Regexes are compiled once, when the expression is parsed
/// (anchored as `^(?:...)$`, as Prometheus anchors them).
#[derive(Clone)]
pub struct Matcher {
    inner: ParsedMatcher,
}

impl Matcher {
    pub(crate) fn from_parsed(inner: ParsedMatcher) -> Matcher {
        Matcher { inner }
    }

    /// An equality matcher, e.g. the `__name__="x"` implied by a selector's metric name.
    pub fn equal(name: &str, value: &str) -> Matcher {
        Matcher {
            inner: ParsedMatcher::new(MatchOp::Equal, name, value),
        }
    }

    /// `name="v"` for one value, `name=~"v1|v2|..."` (each value literal, anchored as every
    /// PromQL regex) for several.
    pub fn one_of(name: &str, values: &[String]) -> Matcher {
        match values {
            [one] => Matcher::equal(name, one),
            _ => {
                let alternatives: Vec<String> = values.iter().map(|v| regex::escape(v)).collect();
                let re = format!("^(?:{})$", alternatives.join("|"));
                Matcher {
                    // UNWRAP: escaped literals joined by `|` always form a valid regex.
                    inner: ParsedMatcher::new(
                        MatchOp::Re(regex::Regex::new(&re).unwrap()),
                        name,
                        &alternatives.join("|"),
                    ),
                }
            }
        }
    }

    /// Whether a series whose label has `value` passes; a missing label is the empty string.
    pub fn matches(&self, value: &str) -> bool {
        self.inner.is_match(value)
    }

    /// The label name this matcher reads.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The value or the regex source as written (unanchored).
    pub fn value(&self) -> &str {
        &self.inner.value
    }

    pub fn kind(&self) -> MatchKind {
        match self.inner.op {
            MatchOp::Equal => MatchKind::Equal,
            MatchOp::NotEqual => MatchKind::NotEqual,
            MatchOp::Re(_) => MatchKind::Regex,
            MatchOp::NotRe(_) => MatchKind::NotRegex,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Matcher({})", self.inner)
    }
}

/// What a vector or range selector asks storage for. `matchers` is complete: a series is
/// selected iff every matcher accepts its label (a fixed metric name appears there as
/// `__name__="x"` too); `name` repeats that fixed name so a store can index by it.
#[derive(Debug, Clone)]
pub struct Selector {
    pub name: Option<String>,
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// The matchers a store that found its candidates by `name` still has to check: all but
    /// the `__name__` equality the name stands for.
    pub fn beyond_name(&self) -> Vec<&Matcher> {
        self.matchers
            .iter()
            .filter(|m| {
                !(m.name() == METRIC_NAME
                    && m.kind() == MatchKind::Equal
                    && self.name.as_deref() == Some(m.value()))
            })
            .collect()
    }

    /// Whether the series with `labels` is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches(labels.get(m.name()).unwrap_or("")))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let is_name = |m: &Matcher| {
            self.name.as_deref() == Some(m.value())
                && m.name() == METRIC_NAME
                && m.kind() == MatchKind::Equal
        };
        if let Some(name) = &self.name {
            f.write_str(name)?;
        }
        let mut rest = self.matchers.iter().filter(|m| !is_name(m)).peekable();
        if self.name.is_some() && rest.peek().is_none() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, m) in rest.enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{m}")?;
        }
        f.write_str("}")
    }
}

/// One series as storage returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub labels: Labels,
    /// (unix ms, value), sorted by time; stale markers included as `STALE_NAN_BITS` NaNs.
    pub samples: Vec<(i64, f64)>,
}

/// What [`Storage::visit`] calls for each series: its labels and samples, in place.
pub type VisitFn<'a> = dyn FnMut(&Labels, &[(i64, f64)]) + 'a;

/// Where samples come from: a promtool test's input series, or the live engine's history.
pub trait Storage {
    /// Series matching `sel`, each with its samples whose timestamps lie in `[start_ms, end_ms]`
    /// (inclusive; the evaluator narrows further), sorted by time. Stale markers are included as
    /// samples with the stale NaN. Series with no sample in the interval may be left out.
    fn select(&self, sel: &Selector, start_ms: i64, end_ms: i64) -> Vec<SeriesData>;

    /// Like [`Storage::select`], but each series carries only its latest sample in the interval:
    /// all an instant selector reads. A store with long histories overrides it to skip copying
    /// them.
    fn select_latest(&self, sel: &Selector, start_ms: i64, end_ms: i64) -> Vec<SeriesData> {
        let mut out = self.select(sel, start_ms, end_ms);
        for s in &mut out {
            let keep_from = s.samples.len().saturating_sub(1);
            s.samples.drain(..keep_from);
        }
        out.retain(|s| !s.samples.is_empty());
        out
    }

    /// [`Storage::select`] without copying: `f` gets each series' labels and its samples in
    /// `[start_ms, end_ms]`, read in place where the store can. Range functions read windows
    /// this way; the default goes through `select`.
    fn visit(&self, sel: &Selector, start_ms: i64, end_ms: i64, f: &mut VisitFn<'_>) {
        for s in self.select(sel, start_ms, end_ms) {
            f(&s.labels, &s.samples);
        }
    }

    /// [`Storage::select_latest`] without copying: `f` gets each series' labels and its latest
    /// sample in `[start_ms, end_ms]`. Instant selectors read this way.
    fn visit_latest(
        &self,
        sel: &Selector,
        start_ms: i64,
        end_ms: i64,
        f: &mut dyn FnMut(&Labels, (i64, f64)),
    ) {
        for s in self.select_latest(sel, start_ms, end_ms) {
            if let Some(&last) = s.samples.last() {
                f(&s.labels, last);
            }
        }
    }
}

/// A store that holds each series' samples as one slice and can hand the selected ones over in
/// place: every [`Storage`] method follows from that one, so such a store implements only this.
pub trait InPlace {
    /// Calls `f` with each series `sel` selects and all its samples, sorted by time.
    fn each(&self, sel: &Selector, f: &mut VisitFn<'_>);
}

impl<T: InPlace> Storage for T {
    fn select(&self, sel: &Selector, start_ms: i64, end_ms: i64) -> Vec<SeriesData> {
        let mut out = Vec::new();
        self.each(sel, &mut |l, s| {
            out.extend(SeriesData::window(l, s, start_ms, end_ms));
        });
        out
    }

    fn select_latest(&self, sel: &Selector, start_ms: i64, end_ms: i64) -> Vec<SeriesData> {
        let mut out = Vec::new();
        self.each(sel, &mut |l, s| {
            out.extend(SeriesData::latest(l, s, start_ms, end_ms));
        });
        out
    }

    fn visit(&self, sel: &Selector, start_ms: i64, end_ms: i64, f: &mut VisitFn<'_>) {
        self.each(sel, &mut |l, s| {
            let w = window_of(s, start_ms, end_ms);
            if !w.is_empty() {
                f(l, w);
            }
        });
    }

    fn visit_latest(
        &self,
        sel: &Selector,
        start_ms: i64,
        end_ms: i64,
        f: &mut dyn FnMut(&Labels, (i64, f64)),
    ) {
        self.each(sel, &mut |l, s| {
            if let Some(one) = latest_of(s, start_ms, end_ms) {
                f(l, one);
            }
        });
    }
}

/// The samples of `samples` in `[start, end]`, in place.
pub fn window_of(samples: &[(i64, f64)], start: i64, end: i64) -> &[(i64, f64)] {
    let lo = samples.partition_point(|&(t, _)| t < start);
    let hi = samples.partition_point(|&(t, _)| t <= end);
    samples.get(lo..hi).unwrap_or(&[])
}

/// The latest sample of `samples` in `[start, end]`.
pub fn latest_of(samples: &[(i64, f64)], start: i64, end: i64) -> Option<(i64, f64)> {
    let hi = samples.partition_point(|&(t, _)| t <= end);
    let &(t, v) = samples.get(hi.checked_sub(1)?)?;
    (t >= start).then_some((t, v))
}

impl SeriesData {
    /// The samples of `samples` in `[start, end]` as a series, if any: what
    /// [`Storage::select`] returns for one series.
    pub fn window(labels: &Labels, samples: &[(i64, f64)], start: i64, end: i64) -> Option<Self> {
        let w = window_of(samples, start, end);
        (!w.is_empty()).then(|| SeriesData {
            labels: labels.clone(),
            samples: w.to_vec(),
        })
    }

    /// The latest sample of `samples` in `[start, end]` as a one-sample series: what
    /// [`Storage::select_latest`] returns for one series.
    pub fn latest(labels: &Labels, samples: &[(i64, f64)], start: i64, end: i64) -> Option<Self> {
        let s = latest_of(samples, start, end)?;
        Some(SeriesData {
            labels: labels.clone(),
            samples: vec![s],
        })
    }
}

/// Series held in memory, indexed by metric name.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    series: Vec<SeriesData>,
    by_name: HashMap<String, Vec<usize>>,
    by_labels: HashMap<Labels, usize>,
}

impl MemStorage {
    pub fn new(series: impl IntoIterator<Item = SeriesData>) -> MemStorage {
        let mut s = MemStorage::default();
        for one in series {
            s.push(one);
        }
        s
    }

    /// Adds a series, or more samples to a series with the same labels (a store holds one
    /// series per label set). Samples are sorted by time here, so callers may add them in any
    /// order; at a repeated timestamp the sample added last wins.
    pub fn push(&mut self, series: SeriesData) {
        let i = match self.by_labels.get(&series.labels) {
            Some(&i) => {
                self.series[i].samples.extend(series.samples);
                i
            }
            None => {
                let i = self.series.len();
                let name = series.labels.metric_name().unwrap_or("").to_string();
                self.by_name.entry(name).or_default().push(i);
                self.by_labels.insert(series.labels.clone(), i);
                self.series.push(series);
                i
            }
        };
        let samples = &mut self.series[i].samples;
        // The sort is stable, so among equal timestamps the sample added last stays last;
        // reversed, dedup keeps the first of each run, which is that one.
        samples.sort_by_key(|&(t, _)| t);
        samples.reverse();
        samples.dedup_by_key(|&mut (t, _)| t);
        samples.reverse();
    }

    pub fn series(&self) -> &[SeriesData] {
        &self.series
    }
}

impl InPlace for MemStorage {
    fn each(&self, sel: &Selector, f: &mut VisitFn<'_>) {
        let rest = sel.beyond_name();
        let mut one = |s: &SeriesData| {
            if rest
                .iter()
                .all(|m| m.matches(s.labels.get(m.name()).unwrap_or("")))
            {
                f(&s.labels, &s.samples);
            }
        };
        match &sel.name {
            Some(name) => self
                .by_name
                .get(name)
                .into_iter()
                .flatten()
                .for_each(|&i| one(&self.series[i])),
            None => self.series.iter().for_each(one),
        }
    }
}
