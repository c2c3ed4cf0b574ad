//! A PromQL subset with Prometheus's semantics: parse (with `promql-parser`), check against the
//! subset, evaluate at an instant against a `Storage`.
//!
//! The semantics are those of Prometheus 2.42 (the `promtool` CI installs, which the differential
//! tests in `tests/promql/` are checked against): the 5m lookback and range windows are closed
//! on the left, `[t - 5m, t]`; `last_over_time` keeps the metric name; other functions and
//! arithmetic drop it.
//!
//! Supported: selectors with `=`, `!=`, `=~`, `!~` and `offset`; range selectors as arguments of
//! the range functions; numbers, unary minus, `+ - * / % ^`, comparisons with and without `bool`;
//! `and`, `or`, `unless`; `on`, `ignoring`, `group_left`, `group_right`; `sum`, `min`, `max`,
//! `avg`, `count` by or without labels; `abs`, `time`, `absent`, `clamp_min`, `clamp_max`,
//! `timestamp`, `vector`, `scalar`, `histogram_quantile`, `rate`, `increase`, `delta`, `changes`,
//! `resets`, `min_over_time`, `max_over_time`, `avg_over_time`, `sum_over_time`,
//! `count_over_time`, `last_over_time`. Anything else is an error at parse time that names it.

mod ast;
mod eval;
mod functions;
mod hash;
mod labels;
mod storage;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use hash::FastMap;
pub use labels::{Labels, METRIC_NAME};
pub use storage::{
    InPlace, MatchKind, Matcher, MemStorage, STALE_NAN_BITS, Selector, SeriesData, Storage,
    VisitFn, is_stale, latest_of, stale_nan, window_of,
};

/// How far back an instant selector looks for a series' latest sample.
pub const LOOKBACK_DELTA: Duration = Duration::from_secs(5 * 60);
const LOOKBACK_DELTA_MS: i64 = 5 * 60 * 1000;

/// A parsed expression, checked against the supported subset. Cheap to clone.
#[derive(Clone)]
pub struct Expr {
    text: Arc<str>,
    root: Arc<ast::Node>,
}

impl Expr {
    /// Parse and check against the subset. The error carries a message and, where the construct
    /// can be found in `text`, its byte offset.
    pub fn parse(text: &str) -> Result<Expr, PromqlError> {
        let parsed = promql_parser::parser::parse(text).map_err(|message| PromqlError {
            message,
            offset: None,
        })?;
        let root = ast::convert(&parsed, text)?;
        Ok(Expr {
            text: Arc::from(text),
            root: Arc::new(root),
        })
    }

    /// Every selector's (metric name if fixed, matchers), instant and range alike, in source
    /// order, so a live engine knows which series to keep history for.
    pub fn selectors(&self) -> Vec<Selector> {
        let mut out = Vec::new();
        self.root
            .visit_selectors(&mut |s| out.push(s.selector.clone()));
        out
    }

    /// The longest range plus offset any range selector reads, or the longest offset of an
    /// instant selector if that is longer: how much history before `t` the expression needs,
    /// beyond the [`LOOKBACK_DELTA`] every instant selector adds. Negative offsets count as 0.
    pub fn max_range(&self) -> Duration {
        let mut ms = 0i64;
        self.root.visit_selectors(&mut |s| {
            ms = ms.max(s.range_ms.saturating_add(s.offset_ms.max(0)));
        });
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// How the outputs with some values of the labels `part` can be computed from only some
    /// of the series: for each selector, in the order of [`Expr::selectors`], its metric name
    /// (if fixed) and the labels of `part` its series may be narrowed by (all of `part`, or
    /// fewer on a side of a binary operator matching on fewer, as the right side of
    /// `unless on(account)`); `None` when they cannot be. [`eval_narrowed`] evaluates so.
    /// Every output carries the values of `part` of its inputs (a missing label is the empty
    /// value). Conservative: `None` when that is not certain.
    pub fn narrowing(&self, part: &[&str]) -> Option<Vec<(Option<String>, Vec<String>)>> {
        let mut out = Vec::new();
        let ok = !self.is_scalar()
            && self.root.narrowing(part, &mut |sel, by| {
                let by = by.iter().map(|l| l.to_string()).collect();
                out.push((sel.selector.name.clone(), by));
            });
        ok.then_some(out)
    }

    /// Whether the expression yields a scalar (else an instant vector).
    pub fn is_scalar(&self) -> bool {
        self.root.is_scalar()
    }

    /// The source text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", &*self.text)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An expression that does not parse or is outside the supported subset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PromqlError {
    pub message: String,
    /// Byte offset of the offending construct in the source, when known.
    pub offset: Option<usize>,
}

/// The result of an instant query at `t`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<Sample>),
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

/// Evaluation failures; `Display` is Prometheus's message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// Two series on the side that must be unique match the same group.
    #[error(
        "found duplicate series for the match group {group} on the {side} hand-side of the \
         operation: [{series}, {other}];many-to-many matching not allowed: matching labels must \
         be unique on one side"
    )]
    ManyToMany {
        group: Labels,
        /// "left" or "right".
        side: &'static str,
        series: Labels,
        other: Labels,
    },
    /// One-to-one matching met a group twice on the left.
    #[error(
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
    )]
    ManyToOneImplicit,
    /// `group_left`/`group_right` produced the same result series twice.
    #[error("multiple matches for labels: grouping labels must ensure unique matches")]
    GroupingNotUnique,
    /// Dropping the metric name made two results' label sets equal.
    #[error("vector cannot contain metrics with the same labelset")]
    DuplicateLabelset { labels: Labels },
    /// The evaluation was given up when its [`Interrupt`] asked: what it read is partial, and
    /// nothing of it may be kept. Never shown to a user: the caller evaluates the rule again.
    #[error("evaluation interrupted")]
    Interrupted,
}

/// Asks an evaluation in progress to give up (a change waits for the thread, see the rule
/// engine's preemptible timer pass): `wanted` is polled once every [`Interrupt::EVERY`] series
/// read, so a costly expression (range functions over thousands of series: a millisecond or
/// two) gives up within tens of microseconds.
pub struct Interrupt<'a> {
    wanted: &'a dyn Fn() -> bool,
    read: std::cell::Cell<u32>,
    hit: std::cell::Cell<bool>,
}

impl<'a> Interrupt<'a> {
    /// Series read between two polls: a poll reads the clock and the accounts' epochs, a series
    /// read may run a range function over its window, so a poll costs a small part of what it
    /// follows (an estimate: the bench's engine rows evaluate without an `Interrupt`).
    pub const EVERY: u32 = 8;

    pub fn new(wanted: &'a dyn Fn() -> bool) -> Self {
        Interrupt {
            wanted,
            read: std::cell::Cell::new(0),
            hit: std::cell::Cell::new(false),
        }
    }

    /// Whether the evaluation gave up.
    pub fn hit(&self) -> bool {
        self.hit.get()
    }

    /// Counts one series read; whether the evaluation gives up (then it reads nothing more).
    fn give_up(&self) -> bool {
        if self.hit.get() {
            return true;
        }
        let n = self.read.get().wrapping_add(1);
        self.read.set(n);
        if n.is_multiple_of(Self::EVERY) && (self.wanted)() {
            self.hit.set(true);
        }
        self.hit.get()
    }
}

/// Evaluate `expr` at `t_ms` (unix ms).
pub fn eval(expr: &Expr, storage: &dyn Storage, t_ms: i64) -> Result<Value, EvalError> {
    eval_narrowed(expr, storage, t_ms, &[])
}

/// [`eval`] over part of the series: each selector adds to its own matchers those of `narrow`
/// on the labels [`Expr::narrowing`] gives it. For an expression with a narrowing in (a
/// superset of) the labels of `narrow`, the result is exactly the outputs of [`eval`] that
/// `narrow` accepts.
pub fn eval_narrowed(
    expr: &Expr,
    storage: &dyn Storage,
    t_ms: i64,
    narrow: &[Matcher],
) -> Result<Value, EvalError> {
    eval_interruptible(expr, storage, t_ms, narrow, None)
}

/// [`eval_narrowed`] that gives up when `interrupt` asks, with [`EvalError::Interrupted`].
pub fn eval_interruptible(
    expr: &Expr,
    storage: &dyn Storage,
    t_ms: i64,
    narrow: &[Matcher],
    interrupt: Option<&Interrupt<'_>>,
) -> Result<Value, EvalError> {
    let out = eval::Evaluator {
        storage,
        t: t_ms,
        narrow: narrow.iter().collect(),
        interrupt,
    }
    .eval(&expr.root);
    // Whatever it returned, a result built on part of the series is not one.
    if interrupt.is_some_and(Interrupt::hit) {
        return Err(EvalError::Interrupted);
    }
    out
}
