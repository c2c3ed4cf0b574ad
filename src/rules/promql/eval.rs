//! Evaluation of a validated tree at one instant: selectors (lookback, staleness, offset), binary
//! operators with vector matching, and aggregations. Semantics follow Prometheus 2.42's engine.

use super::ast::{AggOp, Aggregate, BinOp, Binary, Card, Func, Grouping, Matching, Node, Sel};
use super::functions;
use super::hash::{FastMap, FastSet};
use super::labels::{Labels, METRIC_NAME};
use std::borrow::Cow;

use super::storage::{Matcher, Selector, Storage, VisitFn, is_stale};
use super::{EvalError, Interrupt, LOOKBACK_DELTA_MS, Sample, Value};

#[derive(Clone)]
pub(crate) struct Evaluator<'a> {
    pub storage: &'a dyn Storage,
    /// Evaluation time, unix ms.
    pub t: i64,
    /// Matchers every selector below adds to its own (a change pass's scope; see
    /// `Node::narrowing`), less those on labels a binary operator above does not match on,
    /// on the side it looks up.
    pub narrow: Vec<&'a Matcher>,
    /// Polled for each series read: once it asks, nothing more is read (the caller throws the
    /// result away).
    pub interrupt: Option<&'a Interrupt<'a>>,
}

/// An instant selector's hit: the series, its latest value, and that value's timestamp.
pub(crate) struct Hit {
    pub labels: Labels,
    pub value: f64,
    pub t: i64,
}

impl<'a> Evaluator<'a> {
    pub fn eval(&self, n: &Node) -> Result<Value, EvalError> {
        match n {
            Node::Number(v) => Ok(Value::Scalar(*v)),
            Node::Instant(sel) => Ok(Value::Vector(
                self.select_instant(sel)
                    .into_iter()
                    .map(|h| Sample {
                        labels: h.labels,
                        value: h.value,
                    })
                    .collect(),
            )),
            Node::Paren(inner) => self.eval(inner),
            Node::Neg(inner) => match self.eval(inner)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(v) => Ok(Value::Vector(drop_metric_names(
                    v.into_iter()
                        .map(|s| Sample {
                            value: -s.value,
                            ..s
                        })
                        .collect(),
                )?)),
            },
            Node::Binary(b) => self.binary(b),
            Node::Aggregate(a) => Ok(Value::Vector(self.aggregate(a)?)),
            Node::Call(f) => self.call(f),
        }
    }

    /// Evaluates a node the converter typed as an instant vector.
    pub fn vector(&self, n: &Node) -> Result<Vec<Sample>, EvalError> {
        Ok(match self.eval(n)? {
            Value::Vector(v) => v,
            // Unreachable: the converter checked the argument's type.
            Value::Scalar(v) => vec![Sample {
                labels: Labels::empty(),
                value: v,
            }],
        })
    }

    /// Evaluates a node the converter typed as a scalar.
    pub fn scalar(&self, n: &Node) -> Result<f64, EvalError> {
        Ok(match self.eval(n)? {
            Value::Scalar(v) => v,
            // Unreachable: the converter checked the argument's type.
            Value::Vector(_) => f64::NAN,
        })
    }

    /// The latest sample of each selected series in `[t - offset - 5m, t - offset]` (closed on
    /// the left, as in Prometheus 2.x). A series whose latest sample there is a stale marker is
    /// absent.
    pub fn select_instant(&self, sel: &Sel) -> Vec<Hit> {
        let end = self.t.saturating_sub(sel.offset_ms);
        let start = end.saturating_sub(LOOKBACK_DELTA_MS);
        let mut out = Vec::new();
        self.storage.visit_latest(
            &self.narrowed(sel),
            start,
            end,
            &mut |labels, (t, value)| {
                if self.given_up() || t < start || t > end || is_stale(value) {
                    return;
                }
                out.push(Hit {
                    labels: labels.clone(),
                    value,
                    t,
                });
            },
        );
        out
    }

    /// Calls `f` with each selected series' samples in `[t - offset - range, t - offset]`
    /// (closed, as in Prometheus 2.x), stale markers removed; series with no sample left are
    /// skipped. Windows are read in place; only one holding a stale marker is copied.
    pub fn visit_range(&self, sel: &Sel, f: &mut VisitFn<'_>) {
        let end = self.t.saturating_sub(sel.offset_ms);
        let start = end.saturating_sub(sel.range_ms);
        let mut scratch = Vec::new();
        let keep = |&(t, v): &(i64, f64)| t >= start && t <= end && !is_stale(v);
        self.storage
            .visit(&self.narrowed(sel), start, end, &mut |labels, samples| {
                if self.given_up() {
                    return;
                }
                if samples.iter().all(keep) {
                    if !samples.is_empty() {
                        f(labels, samples);
                    }
                    return;
                }
                scratch.clear();
                scratch.extend(samples.iter().copied().filter(keep));
                if !scratch.is_empty() {
                    f(labels, &scratch);
                }
            });
    }

    /// Whether the evaluation gave up (counting one series read).
    fn given_up(&self) -> bool {
        self.interrupt.is_some_and(Interrupt::give_up)
    }

    /// `sel`'s selector with the matchers of `narrow` added.
    fn narrowed<'s>(&self, sel: &'s Sel) -> Cow<'s, Selector> {
        if self.narrow.is_empty() {
            return Cow::Borrowed(&sel.selector);
        }
        let mut s = sel.selector.clone();
        s.matchers.extend(self.narrow.iter().map(|&m| m.clone()));
        Cow::Owned(s)
    }

    /// The evaluator for one side of `b`: the side looked up by the other side's match groups
    /// (the right one of `and`, `unless` and `group_left`, the left one of `group_right`) is
    /// narrowed only on the labels matched on, as `Node::narrowing` has it.
    fn for_side(&self, b: &Binary, left: bool) -> Cow<'_, Evaluator<'a>> {
        // Otherwise matched on every narrowing label (`Node::narrowing` checked): nothing to drop.
        let looked_up = b.looked_up_left() == Some(left);
        let vectors = !b.lhs.is_scalar() && !b.rhs.is_scalar();
        if !looked_up || !vectors || self.narrow.iter().all(|m| b.matching.matches_on(m.name())) {
            return Cow::Borrowed(self);
        }
        Cow::Owned(Evaluator {
            narrow: self
                .narrow
                .iter()
                .copied()
                .filter(|m| b.matching.matches_on(m.name()))
                .collect(),
            ..self.clone()
        })
    }

    fn call(&self, f: &Func) -> Result<Value, EvalError> {
        functions::call(self, f)
    }

    fn binary(&self, b: &Binary) -> Result<Value, EvalError> {
        let lhs = self.for_side(b, true).eval(&b.lhs)?;
        let rhs = self.for_side(b, false).eval(&b.rhs)?;
        Ok(match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => {
                let (v, keep) = elem_binop(b.op, l, r);
                // Scalar comparisons always carry `bool` (checked at load).
                Value::Scalar(if b.op.is_comparison() {
                    bool_value(keep)
                } else {
                    v
                })
            }
            (Value::Vector(v), Value::Scalar(s)) => {
                Value::Vector(vector_scalar(b.op, v, s, false, b.return_bool)?)
            }
            (Value::Scalar(s), Value::Vector(v)) => {
                Value::Vector(vector_scalar(b.op, v, s, true, b.return_bool)?)
            }
            (Value::Vector(l), Value::Vector(r)) => Value::Vector(match b.op {
                BinOp::And => set_and(l, r, &b.matching, false),
                BinOp::Unless => set_and(l, r, &b.matching, true),
                BinOp::Or => set_or(l, r, &b.matching),
                _ => vector_binop(b.op, l, r, &b.matching, b.return_bool)?,
            }),
        })
    }

    fn aggregate(&self, a: &Aggregate) -> Result<Vec<Sample>, EvalError> {
        let input = self.vector(&a.expr)?;
        Ok(aggregate(a.op, &a.grouping, input))
    }
}

fn bool_value(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// One operator applied to two values: the result, and for comparisons whether it holds (the
/// result of a comparison is its left value, which filtering keeps).
fn elem_binop(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (l + r, true),
        BinOp::Sub => (l - r, true),
        BinOp::Mul => (l * r, true),
        BinOp::Div => (l / r, true),
        // Rust's `%` on floats is C's fmod, which is Go's math.Mod.
        BinOp::Mod => (l % r, true),
        BinOp::Pow => (l.powf(r), true),
        BinOp::Eq => (l, l == r),
        BinOp::Ne => (l, l != r),
        BinOp::Gt => (l, l > r),
        BinOp::Lt => (l, l < r),
        BinOp::Ge => (l, l >= r),
        BinOp::Le => (l, l <= r),
        // Set operators never reach here: they are matched before.
        BinOp::And | BinOp::Or | BinOp::Unless => (f64::NAN, false),
    }
}

/// Arithmetic drops the metric name (the result is no longer that metric); filtering keeps it.
fn drops_name(op: BinOp) -> bool {
    !op.is_comparison() && !op.is_set()
}

fn vector_scalar(
    op: BinOp,
    v: Vec<Sample>,
    s: f64,
    scalar_on_left: bool,
    return_bool: bool,
) -> Result<Vec<Sample>, EvalError> {
    let mut out = Vec::with_capacity(v.len());
    for sample in v {
        let (l, r) = if scalar_on_left {
            (s, sample.value)
        } else {
            (sample.value, s)
        };
        let (mut value, keep) = elem_binop(op, l, r);
        if op.is_comparison() && scalar_on_left {
            // A filter keeps the vector's value, whichever side it is on.
            value = r;
        }
        if return_bool {
            value = bool_value(keep);
        } else if !keep {
            continue;
        }
        out.push(Sample {
            labels: sample.labels,
            value,
        });
    }
    if drops_name(op) || return_bool {
        drop_metric_names(out)
    } else {
        Ok(out)
    }
}

/// Removes `__name__` from every sample, failing as Prometheus does when that makes two samples'
/// label sets equal. Input vectors never repeat a label set, so a collision needs two different
/// names: when all names agree, the check is skipped.
pub(crate) fn drop_metric_names(mut v: Vec<Sample>) -> Result<Vec<Sample>, EvalError> {
    let first = v.first().map(|s| s.labels.metric_name());
    let uniform = v.iter().all(|s| Some(s.labels.metric_name()) == first);
    for s in &mut v {
        s.labels = s.labels.without_metric_name();
    }
    if !uniform {
        check_unique(&v)?;
    }
    Ok(v)
}

/// Prometheus's "vector cannot contain metrics with the same labelset".
pub(crate) fn check_unique(v: &[Sample]) -> Result<(), EvalError> {
    let mut seen = FastSet::with_capacity_and_hasher(v.len(), Default::default());
    for s in v {
        if !seen.insert(&s.labels) {
            return Err(EvalError::DuplicateLabelset {
                labels: s.labels.clone(),
            });
        }
    }
    Ok(())
}

/// The match-group signature of `labels` into `buf`: the `on` labels, or all but the
/// `ignoring` labels and the metric name.
fn signature(labels: &Labels, on: bool, names: &[String], buf: &mut Vec<u8>) {
    buf.clear();
    for (n, v) in labels.iter() {
        let listed = names.iter().any(|x| x == n);
        let included = if on {
            listed
        } else {
            !listed && n != METRIC_NAME
        };
        if included {
            buf.extend_from_slice(n.as_bytes());
            // 0xff never occurs in UTF-8, so it separates unambiguously.
            buf.push(0xff);
            buf.extend_from_slice(v.as_bytes());
            buf.push(0xff);
        }
    }
}

/// The labels that form the match group, for error messages.
fn match_labels(labels: &Labels, m: &Matching) -> Labels {
    labels.filter(|n| {
        let listed = m.labels.iter().any(|x| x == n);
        if m.on {
            listed
        } else {
            !listed && n != METRIC_NAME
        }
    })
}

fn sigs(v: &[Sample], m: &Matching) -> FastSet<Vec<u8>> {
    let mut buf = Vec::new();
    v.iter()
        .map(|s| {
            signature(&s.labels, m.on, &m.labels, &mut buf);
            buf.clone()
        })
        .collect()
}

/// `and` (or with `negate`, `unless`): the left samples whose group does (not) occur on the right.
fn set_and(lhs: Vec<Sample>, rhs: Vec<Sample>, m: &Matching, negate: bool) -> Vec<Sample> {
    if rhs.is_empty() {
        return if negate { lhs } else { Vec::new() };
    }
    let right = sigs(&rhs, m);
    let mut buf = Vec::new();
    lhs.into_iter()
        .filter(|s| {
            signature(&s.labels, m.on, &m.labels, &mut buf);
            right.contains(&buf) != negate
        })
        .collect()
}

/// `or`: all left samples, and the right samples whose group does not occur on the left.
fn set_or(mut lhs: Vec<Sample>, rhs: Vec<Sample>, m: &Matching) -> Vec<Sample> {
    let left = sigs(&lhs, m);
    let mut buf = Vec::new();
    lhs.extend(rhs.into_iter().filter(|s| {
        signature(&s.labels, m.on, &m.labels, &mut buf);
        !left.contains(&buf)
    }));
    lhs
}

/// Arithmetic and comparison between two vectors: one-to-one, or many-to-one / one-to-many with
/// `group_left` / `group_right`.
fn vector_binop(
    op: BinOp,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    m: &Matching,
    return_bool: bool,
) -> Result<Vec<Sample>, EvalError> {
    // Work as many-to-one throughout: for one-to-many, swap the sides here and swap the values
    // back when computing.
    let swapped = matches!(m.card, Card::OneToMany(_));
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let mut buf = Vec::new();

    let mut one_by_sig: FastMap<Vec<u8>, usize> =
        FastMap::with_capacity_and_hasher(one.len(), Default::default());
    for (i, s) in one.iter().enumerate() {
        signature(&s.labels, m.on, &m.labels, &mut buf);
        if one_by_sig.insert(buf.clone(), i).is_some() {
            return Err(duplicate_on_one_side(&one, m, swapped));
        }
    }

    let include: &[String] = match &m.card {
        Card::ManyToOne(l) | Card::OneToMany(l) => l,
        Card::OneToOne | Card::ManyToMany => &[],
    };
    let one_to_one = m.card == Card::OneToOne;
    // Per "one"-side sample: whether it was matched (one-to-one), or the result label sets it
    // produced (many-to-one), which must not repeat.
    let mut matched = vec![false; if one_to_one { one.len() } else { 0 }];
    let mut produced: Vec<Option<FastSet<Labels>>> = if one_to_one {
        Vec::new()
    } else {
        vec![None; one.len()]
    };

    let mut out = Vec::with_capacity(many.len());
    for ms in many {
        signature(&ms.labels, m.on, &m.labels, &mut buf);
        let Some(&oi) = one_by_sig.get(buf.as_slice()) else {
            continue;
        };
        let os = &one[oi];
        let (l, r) = if swapped {
            (os.value, ms.value)
        } else {
            (ms.value, os.value)
        };
        let (mut value, keep) = elem_binop(op, l, r);
        if return_bool {
            value = bool_value(keep);
        } else if !keep {
            continue;
        }
        let mut labels = result_labels(&ms.labels, &os.labels, op, m, include);
        if return_bool {
            labels = labels.without_metric_name();
        }
        if one_to_one {
            if std::mem::replace(&mut matched[oi], true) {
                return Err(EvalError::ManyToOneImplicit);
            }
        } else {
            let set = produced[oi].get_or_insert_with(FastSet::default);
            if !set.insert(labels.clone()) {
                return Err(EvalError::GroupingNotUnique);
            }
        }
        out.push(Sample { labels, value });
    }
    Ok(out)
}

/// A result sample's labels: the "many" side's, less the name for arithmetic; for one-to-one,
/// only the `on` labels or all but the `ignoring` ones; plus the `group_x(...)` labels copied
/// from the "one" side (removed where that side lacks them).
fn result_labels(
    many: &Labels,
    one: &Labels,
    op: BinOp,
    m: &Matching,
    include: &[String],
) -> Labels {
    let drop_name = drops_name(op);
    let one_to_one = m.card == Card::OneToOne;
    let mut labels = many.filter(|n| {
        if drop_name && n == METRIC_NAME {
            return false;
        }
        if one_to_one {
            let listed = m.labels.iter().any(|x| x == n);
            return listed == m.on;
        }
        true
    });
    if !include.is_empty() {
        labels = labels.with_values_from(include, one);
    }
    labels
}

/// The error for two "one"-side samples in one match group, naming the first such pair in label
/// order, which is the pair Prometheus meets first (its selectors return series sorted).
fn duplicate_on_one_side(one: &[Sample], m: &Matching, swapped: bool) -> EvalError {
    let mut sorted: Vec<&Sample> = one.iter().collect();
    sorted.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut seen: FastMap<Vec<u8>, &Sample> = FastMap::default();
    let mut buf = Vec::new();
    for s in sorted {
        signature(&s.labels, m.on, &m.labels, &mut buf);
        if let Some(prev) = seen.insert(buf.clone(), s) {
            return EvalError::ManyToMany {
                group: match_labels(&s.labels, m),
                side: if swapped { "left" } else { "right" },
                series: s.labels.clone(),
                other: prev.labels.clone(),
            };
        }
    }
    // Unreachable: called only after a duplicate was seen.
    EvalError::ManyToOneImplicit
}

struct Group {
    labels: Labels,
    value: f64,
    count: usize,
}

/// `sum`, `min`, `max`, `avg`, `count` by or without labels.
fn aggregate(op: AggOp, grouping: &Grouping, input: Vec<Sample>) -> Vec<Sample> {
    let (names, without): (&[String], bool) = match grouping {
        Grouping::By(l) => (l, false),
        Grouping::Without(l) => (l, true),
    };
    let keep = |n: &str| {
        let listed = names.iter().any(|x| x == n);
        if without {
            !listed && n != METRIC_NAME
        } else {
            listed
        }
    };
    let mut index: FastMap<Vec<u8>, usize> = FastMap::default();
    let mut groups: Vec<Group> = Vec::new();
    let mut key = Vec::new();
    for s in input {
        key.clear();
        for (n, v) in s.labels.iter() {
            if keep(n) {
                key.extend_from_slice(n.as_bytes());
                key.push(0xff);
                key.extend_from_slice(v.as_bytes());
                key.push(0xff);
            }
        }
        let Some(&gi) = index.get(key.as_slice()) else {
            index.insert(key.clone(), groups.len());
            groups.push(Group {
                labels: s.labels.filter(keep),
                value: s.value,
                count: 1,
            });
            continue;
        };
        let g = &mut groups[gi];
        g.count += 1;
        let v = s.value;
        match op {
            AggOp::Sum => g.value += v,
            AggOp::Count => {}
            AggOp::Min => {
                // A NaN gives way to any number, so NaN results only from all-NaN groups.
                if g.value > v || g.value.is_nan() {
                    g.value = v;
                }
            }
            AggOp::Max => {
                if g.value < v || g.value.is_nan() {
                    g.value = v;
                }
            }
            AggOp::Avg => g.value = mean_step(g.value, v, g.count),
        }
    }
    groups
        .into_iter()
        .map(|g| Sample {
            value: if op == AggOp::Count {
                g.count as f64
            } else {
                g.value
            },
            labels: g.labels,
        })
        .collect()
}

/// One step of the running mean Prometheus uses (it avoids overflowing a sum), where `count`
/// counts `v` already. An infinite mean stays as it is unless `v` is NaN or the opposite infinity.
pub(crate) fn mean_step(mean: f64, v: f64, count: usize) -> f64 {
    if mean.is_infinite() {
        let same_inf = v.is_infinite() && (mean > 0.0) == (v > 0.0);
        let finite = v.is_finite();
        if same_inf || finite {
            return mean;
        }
    }
    let n = count as f64;
    mean + (v / n - mean / n)
}
