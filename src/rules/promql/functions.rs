//! The supported functions: instant-vector ones (`abs`, `clamp_*`, `timestamp`, `absent`,
//! `vector`, `scalar`, `time`, `histogram_quantile`) and the range ones (`rate` and kin,
//! `*_over_time`), with Prometheus 2.42's semantics.

use super::ast::{Func, Node, RangeFn, Sel};
use super::eval::{Evaluator, check_unique, drop_metric_names, mean_step};
use super::hash::FastMap;
use super::labels::Labels;
use super::{EvalError, Sample, Value};

/// The label a classic histogram bucket's upper bound lives in.
const BUCKET_LABEL: &str = "le";

pub(crate) fn call(ev: &Evaluator<'_>, f: &Func) -> Result<Value, EvalError> {
    let v = match f {
        Func::Time => return Ok(Value::Scalar(ev.t as f64 / 1000.0)),
        Func::Scalar(arg) => {
            let v = ev.vector(arg)?;
            return Ok(Value::Scalar(match v.as_slice() {
                [one] => one.value,
                _ => f64::NAN,
            }));
        }
        Func::Vector(arg) => vec![Sample {
            labels: Labels::empty(),
            value: ev.scalar(arg)?,
        }],
        Func::Abs(arg) => map_values(ev.vector(arg)?, f64::abs)?,
        Func::ClampMin(arg, min) => {
            let min = ev.scalar(min)?;
            let v = ev.vector(arg)?;
            map_values(v, |x| go_max(x, min))?
        }
        Func::ClampMax(arg, max) => {
            let max = ev.scalar(max)?;
            let v = ev.vector(arg)?;
            map_values(v, |x| go_min(x, max))?
        }
        Func::Absent(arg, labels) => {
            if ev.vector(arg)?.is_empty() {
                vec![Sample {
                    labels: labels.clone(),
                    value: 1.0,
                }]
            } else {
                Vec::new()
            }
        }
        Func::Timestamp(arg) => timestamp(ev, arg)?,
        Func::HistogramQuantile(phi, arg) => {
            let phi = ev.scalar(phi)?;
            histogram_quantile(phi, ev.vector(arg)?)?
        }
        Func::OverRange(func, sel) => over_range(ev, *func, sel)?,
    };
    Ok(Value::Vector(v))
}

fn map_values(v: Vec<Sample>, f: impl Fn(f64) -> f64) -> Result<Vec<Sample>, EvalError> {
    drop_metric_names(
        v.into_iter()
            .map(|s| Sample {
                value: f(s.value),
                ..s
            })
            .collect(),
    )
}

/// Go's `math.Max`: NaN wins over everything, +Inf over numbers.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// `timestamp(v)`: for a plain selector (parentheses allowed), each sample's own timestamp; for
/// any other expression, whose samples carry no time of their own, the evaluation time.
fn timestamp(ev: &Evaluator<'_>, arg: &Node) -> Result<Vec<Sample>, EvalError> {
    let mut inner = arg;
    while let Node::Paren(n) = inner {
        inner = n;
    }
    let v = match inner {
        Node::Instant(sel) => ev
            .select_instant(sel)
            .into_iter()
            .map(|h| Sample {
                labels: h.labels,
                value: h.t as f64 / 1000.0,
            })
            .collect(),
        _ => {
            let now = ev.t as f64 / 1000.0;
            ev.vector(arg)?
                .into_iter()
                .map(|s| Sample { value: now, ..s })
                .collect()
        }
    };
    drop_metric_names(v)
}

/// A range function over each selected series' samples in the window. Series with no sample in
/// the window produce nothing; `last_over_time` alone keeps the metric name.
fn over_range(ev: &Evaluator<'_>, func: RangeFn, sel: &Sel) -> Result<Vec<Sample>, EvalError> {
    let end = ev.t.saturating_sub(sel.offset_ms);
    let start = end.saturating_sub(sel.range_ms);
    let mut out = Vec::new();
    ev.visit_range(sel, &mut |labels, samples| {
        let value =
            match func {
                RangeFn::Rate => extrapolated_rate(samples, start, end, true, true),
                RangeFn::Increase => extrapolated_rate(samples, start, end, true, false),
                RangeFn::Delta => extrapolated_rate(samples, start, end, false, false),
                RangeFn::Changes => Some(changes(samples)),
                RangeFn::Resets => Some(resets(samples)),
                RangeFn::MinOverTime => Some(samples.iter().fold(f64::NAN, |acc, &(_, v)| {
                    if v < acc || acc.is_nan() { v } else { acc }
                })),
                RangeFn::MaxOverTime => Some(samples.iter().fold(f64::NAN, |acc, &(_, v)| {
                    if v > acc || acc.is_nan() { v } else { acc }
                })),
                RangeFn::AvgOverTime => Some(avg_over_time(samples)),
                RangeFn::SumOverTime => Some(samples.iter().map(|&(_, v)| v).sum()),
                RangeFn::CountOverTime => Some(samples.len() as f64),
                RangeFn::LastOverTime => samples.last().map(|&(_, v)| v),
            };
        if let Some(value) = value {
            out.push(Sample {
                labels: labels.clone(),
                value,
            });
        }
    });
    if func == RangeFn::LastOverTime {
        Ok(out)
    } else {
        drop_metric_names(out)
    }
}

fn avg_over_time(samples: &[(i64, f64)]) -> f64 {
    let mut mean = 0.0;
    for (i, &(_, v)) in samples.iter().enumerate() {
        mean = mean_step(mean, v, i + 1);
    }
    mean
}

fn changes(samples: &[(i64, f64)]) -> f64 {
    let n = samples
        .windows(2)
        .filter(|w| {
            let (a, b) = (w[0].1, w[1].1);
            a != b && !(a.is_nan() && b.is_nan())
        })
        .count();
    n as f64
}

fn resets(samples: &[(i64, f64)]) -> f64 {
    samples.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64
}

/// `rate`, `increase` and `delta`: the change over the samples in the window, counter resets
/// compensated for counters, extrapolated towards the window's edges. Extrapolation reaches an
/// edge only if the first/last sample is within 1.1 average sample intervals of it (else it goes
/// half an interval), and for counters never below the point where the counter would be zero.
/// Needs two samples.
fn extrapolated_rate(
    samples: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    let (&(first_t, first_v), &(last_t, last_v)) = (samples.first()?, samples.last()?);
    if samples.len() < 2 {
        return None;
    }
    let mut result = last_v - first_v;
    if is_counter {
        // A drop is a reset: the counter restarted from zero, so the value before the drop was
        // also gained.
        for w in samples.windows(2) {
            if w[1].1 < w[0].1 {
                result += w[0].1;
            }
        }
    }
    let mut duration_to_start = first_t.saturating_sub(range_start) as f64 / 1000.0;
    let duration_to_end = range_end.saturating_sub(last_t) as f64 / 1000.0;
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let average_interval = sampled_interval / (samples.len() - 1) as f64;

    if is_counter && result > 0.0 && first_v >= 0.0 {
        let duration_to_zero = sampled_interval * (first_v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }

    let threshold = average_interval * 1.1;
    let mut extrapolate_to = sampled_interval;
    extrapolate_to += if duration_to_start < threshold {
        duration_to_start
    } else {
        average_interval / 2.0
    };
    extrapolate_to += if duration_to_end < threshold {
        duration_to_end
    } else {
        average_interval / 2.0
    };
    let mut factor = extrapolate_to / sampled_interval;
    if is_rate {
        factor /= range_end.saturating_sub(range_start) as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `histogram_quantile(phi, buckets)` over classic `le` buckets: series are grouped by their
/// labels without `le`, and each group with buckets gives one sample without `le` and name.
fn histogram_quantile(phi: f64, v: Vec<Sample>) -> Result<Vec<Sample>, EvalError> {
    let mut index: FastMap<Labels, usize> = FastMap::default();
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    for s in v {
        // A series without a parsable `le` is no bucket: Prometheus skips it.
        let Some(upper) = s.labels.get(BUCKET_LABEL).and_then(parse_go_float) else {
            continue;
        };
        let key = s.labels.filter(|n| n != BUCKET_LABEL);
        let gi = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key.without_metric_name(), Vec::new()));
            groups.len() - 1
        });
        groups[gi].1.push((upper, s.value));
    }
    let out: Vec<Sample> = groups
        .into_iter()
        .map(|(labels, mut buckets)| Sample {
            labels,
            value: bucket_quantile(phi, &mut buckets),
        })
        .collect();
    // Groups whose keys differed only in the metric name now collide.
    check_unique(&out)?;
    Ok(out)
}

/// Go's `strconv.ParseFloat` for the forms bucket bounds take (`+Inf`, `1e-3`, `0.5`).
fn parse_go_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

/// The `phi` quantile of cumulative `(upper bound, count)` buckets, by linear interpolation
/// within the bucket the rank falls in. NaN without a `+Inf` bucket, with fewer than two
/// bucket bounds, or with no observations; -Inf/+Inf for `phi` below 0 / above 1.
fn bucket_quantile(phi: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if phi.is_nan() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    match buckets.last() {
        Some(&(upper, _)) if upper == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    // Several series with the same bound (e.g. from differently labelled sources) add up.
    buckets.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1 += later.1;
            true
        } else {
            false
        }
    });
    // Cumulative counts must not decrease; scrape skew between buckets can make them, so raise
    // each to the largest before it.
    let mut max = f64::NEG_INFINITY;
    for b in buckets.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let n = buckets.len();
    let observations = buckets[n - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = phi * observations;
    // The first bucket (among all but +Inf) whose count reaches the rank, by binary search as
    // Prometheus does it (which matters only for NaN counts).
    let (mut lo, mut hi) = (0, n - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if buckets[mid].1 >= rank {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let b = lo;
    if b == n - 1 {
        return buckets[n - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let mut bucket_start = 0.0;
    let bucket_end = buckets[b].0;
    let mut count = buckets[b].1;
    if b > 0 {
        bucket_start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}
