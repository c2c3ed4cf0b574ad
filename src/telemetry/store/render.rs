//! The store's two text expositions, Prometheus 0.0.4 and OpenMetrics 1.0, and choosing one by the scraper's `Accept` header.

use std::fmt::Write as _;

use super::exemplar::{Exemplar, SPAN_ID_LABEL, TRACE_ID_LABEL};
use super::{Handle, Labels, Series};
use crate::telemetry::catalogue::{Kind, MetricDef};

/// An exposition format of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4: the default, and what `promtool check metrics` lints.
    Prometheus,
    /// OpenMetrics 1.0 text, which Prometheus asks for first; the only one with exemplars.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header asks for, as Prometheus negotiates it: the acceptable media
    /// range with the highest `q` wins (the earlier one on a tie); OpenMetrics is acceptable
    /// without a version or at 1.0.0 or 0.0.1 (the same text), anything else textual gets 0.0.4.
    /// No header, or nothing we can serve, gets 0.0.4 too rather than a 406: a scraper that
    /// asks oddly still gets metrics.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let mut best: Option<(f32, Self)> = None;
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let (mut q, mut version) = (1.0_f32, None);
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.parse().unwrap_or(0.0),
                    "version" => version = Some(v),
                    _ => {}
                }
            }
            let format = match media.as_str() {
                "application/openmetrics-text"
                    if matches!(version, None | Some("1.0.0") | Some("0.0.1")) =>
                {
                    Self::OpenMetrics
                }
                "text/plain" | "text/*" | "*/*" => Self::Prometheus,
                _ => continue,
            };
            // q is 0..=1 with at most three decimals, so a plain comparison is exact enough.
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
        best.map_or(Self::Prometheus, |(_, f)| f)
    }
}

/// Append one family: its metadata, then every series in label order.
pub(super) fn family(out: &mut String, format: Format, def: &MetricDef, series: &[Series]) {
    let kind = def.kind.as_str();
    match format {
        Format::Prometheus => {
            let _ = write!(out, "# HELP {} ", def.name);
            escape(out, def.help, false);
            let _ = writeln!(out, "\n# TYPE {} {kind}", def.name);
        }
        Format::OpenMetrics => {
            // An OpenMetrics counter family is named without `_total`; its sample keeps it.
            let family = match def.kind {
                Kind::Counter => def.name.strip_suffix("_total").unwrap_or(def.name),
                _ => def.name,
            };
            let _ = write!(out, "# TYPE {family} {kind}\n# HELP {family} ");
            escape(out, def.help, true);
            out.push('\n');
        }
    }
    for Series { labels, handle } in series {
        match handle {
            Handle::Counter(c) => {
                let om = format == Format::OpenMetrics;
                // The exemplar before the total: its lock orders the read after the increment
                // it belongs to (see `Counter::increment_with_exemplar_at`).
                let exemplar = if om { c.exemplar().get() } else { None };
                out.push_str(def.name);
                if om && !def.name.ends_with("_total") {
                    out.push_str("_total");
                }
                write_labels(out, labels, None, format);
                out.push(' ');
                write_value(out, c.get());
                if let Some(e) = &exemplar {
                    write_exemplar(out, e);
                }
                out.push('\n');
            }
            Handle::Gauge(g) => {
                out.push_str(def.name);
                write_labels(out, labels, None, format);
                out.push(' ');
                write_value(out, g.get());
                out.push('\n');
            }
            Handle::Histogram(h) => {
                // The exemplars before the counts, as for a counter: a bucket never shows an
                // exemplar its count does not include.
                let exemplars: Vec<Option<Exemplar>> = match format {
                    Format::OpenMetrics => h.exemplars().iter().map(|s| s.get()).collect(),
                    Format::Prometheus => Vec::new(),
                };
                let snap = h.snapshot();
                for (i, (bound, n)) in snap.buckets.iter().enumerate() {
                    let _ = write!(out, "{}_bucket", def.name);
                    write_labels(out, labels, Some(*bound), format);
                    let _ = write!(out, " {n}");
                    if let Some(Some(e)) = exemplars.get(i) {
                        write_exemplar(out, e);
                    }
                    out.push('\n');
                }
                let _ = write!(out, "{}_sum", def.name);
                write_labels(out, labels, None, format);
                out.push(' ');
                write_value(out, snap.sum);
                let _ = write!(out, "\n{}_count", def.name);
                write_labels(out, labels, None, format);
                let _ = writeln!(out, " {}", snap.count);
            }
        }
    }
}

/// Close the exposition: OpenMetrics ends with `# EOF`.
pub(super) fn finish(out: &mut String, format: Format) {
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
}

/// OpenMetrics' ` # {trace_id="…",span_id="…"} value timestamp` after a sample: the ids in
/// lowercase hex at their full widths, the value as a sample's, the time in unix seconds with
/// exactly three decimals. Prometheus reads it as `int64(float64(text) * 1000)`, which gives the
/// very millisecond back for times between 2004-11 and 2038-01 (the product lands in
/// [2^40, 2^41), where its rounding error stays below half a unit); outside that window it can
/// come out 1ms early, which only writing a later time than the true one would avoid.
fn write_exemplar(out: &mut String, e: &Exemplar) {
    let _ = write!(
        out,
        " # {{{TRACE_ID_LABEL}=\"{:032x}\",{SPAN_ID_LABEL}=\"{:016x}\"}} ",
        e.ids.trace_id, e.ids.span_id
    );
    write_value(out, e.value);
    let sign = if e.unix_ms < 0 { "-" } else { "" };
    let ms = e.unix_ms.unsigned_abs();
    let _ = write!(out, " {sign}{}.{:03}", ms / 1000, ms % 1000);
}

/// `{k="v",...}` with `le` last for a bucket; nothing for an empty set.
fn write_labels(out: &mut String, labels: &Labels, le: Option<f64>, format: Format) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"");
        escape(out, v, true);
        out.push('"');
    }
    if let Some(le) = le {
        if !labels.is_empty() {
            out.push(',');
        }
        out.push_str("le=\"");
        write_go_float(out, le, format == Format::OpenMetrics);
        out.push('"');
    }
    out.push('}');
}

/// Escape `\` and newline, and `"` where the format quotes (label values; OpenMetrics HELP).
fn escape(out: &mut String, s: &str, quote: bool) {
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A sample value: `NaN`, `+Inf`, `-Inf`, plain decimals (integers without `.0`) in the usual
/// range, and Go's exponent form outside it so a huge or tiny value stays short.
fn write_value(out: &mut String, v: f64) {
    let a = v.abs();
    if v.is_finite() && (a == 0.0 || (1e-6..1e21).contains(&a)) {
        let _ = write!(out, "{}", v + 0.0); // + 0.0 turns -0 into 0
    } else {
        write_go_float(out, v, false);
    }
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`: the shortest digits that read back exactly, in
/// exponent form (two-digit exponent with a sign) below 1e-4 and from 1e6. That is how the Go
/// client prints `le`; OpenMetrics' canonical `le` adds `.0` where there is neither point nor
/// exponent (`1.0`, `100000.0`, `1e+06`).
pub(crate) fn write_go_float(out: &mut String, v: f64, canonical: bool) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    let sci = format!("{:e}", v + 0.0);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if v != 0.0 && !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "{mantissa}e{sign}{:02}", exp.unsigned_abs());
        return;
    }
    let start = out.len();
    let _ = write!(out, "{}", v + 0.0);
    if canonical && !out[start..].contains('.') {
        out.push_str(".0");
    }
}

#[cfg(test)]
pub(super) fn go_float(v: f64, canonical: bool) -> String {
    let mut s = String::new();
    write_go_float(&mut s, v, canonical);
    s
}
