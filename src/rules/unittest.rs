//! promtool's rule unit-test format (`promtool test rules`): a file that passes there passes here,
//! one that fails there fails here, and failures print in promtool's shape.
//!
//! Semantics follow `cmd/promtool/unittest.go`: input series are loaded at multiples of the
//! test's `interval`; every group of every rule file is evaluated at every multiple of the file's
//! `evaluation_interval` (not the group's own interval) from 0 to the largest `eval_time`, in
//! `group_eval_order`; an `alert_rule_test` compares the *firing* alerts of its alert name after
//! the latest evaluation at or before its `eval_time`; a `promql_expr_test` runs after all
//! evaluations and compares samples exactly (`fuzzy_compare: true` allows one ulp). A rule
//! evaluation error stops the test group. One deliberate difference: a test group without
//! `interval` uses `evaluation_interval`, as promtool does since 2.43 (2.42 loaded every sample at
//! time 0).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::file::{self, Rule, RuleGroup};
use super::gofmt;
use super::group::{EvalContext, GroupState, History, Layered, eval_group};
use super::promql::{self, Expr, Labels, MemStorage, SeriesData, Value};

/// A test file that cannot be run at all.
#[derive(Debug, thiserror::Error)]
pub enum UnitTestError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

/// The outcome of one test file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The file as named by the caller.
    pub file: String,
    /// One entry per failure, each in promtool's text (several lines for alert mismatches).
    pub failures: Vec<String>,
    /// promtool's warnings (a `rule_files` pattern that matched nothing).
    pub warnings: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// What `promtool test rules` prints for this file (stdout and stderr interleaved).
    pub fn text(&self) -> String {
        let mut out = format!("Unit Testing:  {}\n", self.file);
        for w in &self.warnings {
            out.push_str(w);
            out.push('\n');
        }
        if self.passed() {
            out.push_str("  SUCCESS\n");
        } else {
            out.push_str("  FAILED:\n");
            for f in &self.failures {
                out.push_str(f);
                out.push_str("\n\n");
            }
        }
        out.push('\n');
        out
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestFile {
    rule_files: Option<Vec<String>>,
    evaluation_interval: Option<String>,
    group_eval_order: Option<Vec<String>>,
    tests: Option<Vec<RawTestGroup>>,
    /// Prometheus 3: compare floats allowing one ulp.
    fuzzy_compare: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestGroup {
    interval: Option<String>,
    input_series: Option<Vec<RawSeries>>,
    alert_rule_test: Option<Vec<RawAlertTest>>,
    promql_expr_test: Option<Vec<RawExprTest>>,
    external_labels: Option<BTreeMap<String, String>>,
    external_url: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeries {
    series: String,
    values: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertTest {
    eval_time: Option<String>,
    alertname: Option<String>,
    exp_alerts: Option<Vec<RawExpAlert>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpAlert {
    exp_labels: Option<BTreeMap<String, String>>,
    exp_annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExprTest {
    expr: String,
    eval_time: Option<String>,
    exp_samples: Option<Vec<RawExpSample>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpSample {
    labels: String,
    value: f64,
}

/// Run one promtool-format test file.
pub fn run_file(path: &Path) -> Result<Report, UnitTestError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| UnitTestError::Read {
        path: name.clone(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    run_str(&text, &name, dir)
}

/// Run test-file text; `rule_files` resolve against `base_dir`.
pub fn run_str(text: &str, origin: &str, base_dir: &Path) -> Result<Report, UnitTestError> {
    let parse_err = |message: String| UnitTestError::Parse {
        path: origin.to_string(),
        message,
    };
    let raw: RawTestFile = serde_saphyr::from_str(text).map_err(|e| {
        let (path, message) = crate::config::locate_yaml_error(origin, &e.to_string());
        UnitTestError::Parse { path, message }
    })?;
    let duration = |field: &str, v: &Option<String>| -> Result<i64, UnitTestError> {
        match v {
            None => Ok(0),
            Some(s) => file_duration(s).map_err(|e| parse_err(format!("{field}: {e}"))),
        }
    };
    let mut eval_interval = duration("evaluation_interval", &raw.evaluation_interval)?;
    if eval_interval == 0 {
        eval_interval = 60_000;
    }
    let mut report = Report {
        file: origin.to_string(),
        failures: Vec::new(),
        warnings: Vec::new(),
    };

    let mut order: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, g) in raw.group_eval_order.iter().flatten().enumerate() {
        if order.insert(g.as_str(), i).is_some() {
            report
                .failures
                .push(format!("group name repeated in evaluation order: {g}"));
            return Ok(report);
        }
    }

    // Rule files: relative to the test file, globbed; a pattern matching nothing is a warning.
    let mut paths = Vec::new();
    for pattern in raw.rule_files.iter().flatten() {
        let full = if Path::new(pattern).is_absolute() || pattern.is_empty() {
            PathBuf::from(pattern)
        } else {
            base_dir.join(pattern)
        };
        let matched = glob(&full).map_err(|e| parse_err(format!("rule_files: {e}")))?;
        if matched.is_empty() {
            report.warnings.push(format!(
                "  WARNING: no file match pattern {}",
                full.display()
            ));
        }
        paths.extend(matched);
    }
    let mut load_errors = Vec::new();
    let mut groups: Vec<RuleGroup> = Vec::new();
    for p in &paths {
        match file::load_file(p) {
            Ok(f) => groups.extend(f.groups),
            Err(file::RuleFileError::Invalid(errs)) => load_errors.extend(errs),
            Err(e) => load_errors.push(e.to_string()),
        }
    }
    // promtool sorts by position in group_eval_order, unlisted groups counting as 0; its sort
    // is unstable, ours keeps file order among equals.
    groups.sort_by_key(|g| order.get(g.name.as_str()).copied().unwrap_or(0));

    let fuzzy = raw.fuzzy_compare.unwrap_or(false);
    for tg in raw.tests.iter().flatten() {
        if !load_errors.is_empty() {
            report.failures.extend(load_errors.iter().cloned());
            continue;
        }
        let interval = duration("interval", &tg.interval)?;
        let interval = if interval == 0 {
            eval_interval
        } else {
            interval
        };
        let t = TestGroup {
            raw: tg,
            interval,
            eval_interval,
            fuzzy,
            origin,
        };
        report.failures.extend(t.run(&groups)?);
    }
    Ok(report)
}

/// A duration field of the test file, in ms.
fn file_duration(s: &str) -> Result<i64, String> {
    crate::config::parse_duration(s)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .map_err(|e| e.to_string())
}

struct TestGroup<'a> {
    raw: &'a RawTestGroup,
    interval: i64,
    eval_interval: i64,
    fuzzy: bool,
    origin: &'a str,
}

/// A label set as promtool compares it: sorted pairs, empty values kept.
type Pairs = Vec<(String, String)>;

fn pairs_of(l: &Labels) -> Pairs {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Go's `labels.Labels.String()`.
fn labels_string(p: &Pairs) -> String {
    let items: Vec<String> = p
        .iter()
        .map(|(k, v)| format!("{k}={}", gofmt::quote(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn indent_lines(s: &str, indent: &str) -> String {
    s.split('\n')
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"))
}

/// promtool's `labelsAndAnnotations.String()`.
fn alerts_string(list: &[(Pairs, Pairs)]) -> String {
    if list.is_empty() {
        return "[]".into();
    }
    let one = |(l, a): &(Pairs, Pairs)| {
        format!(
            "Labels:{}\nAnnotations:{}",
            labels_string(l),
            labels_string(a)
        )
    };
    let mut s = format!(
        "[\n0:{}",
        indent_lines(&format!("\n{}", one(&list[0])), "  ")
    );
    for (i, la) in list.iter().enumerate().skip(1) {
        s.push_str(&format!(
            ",\n{i}:{}",
            indent_lines(&format!("\n{}", one(la)), "  ")
        ));
    }
    s.push_str("\n]");
    s
}

fn samples_string(list: &[(Pairs, f64)]) -> String {
    if list.is_empty() {
        return "nil".into();
    }
    list.iter()
        .map(|(l, v)| format!("{} {}", labels_string(l), gofmt::format_e(*v, None, true)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl TestGroup<'_> {
    fn ms(&self, field: &str, v: &Option<String>) -> Result<i64, UnitTestError> {
        match v {
            None => Ok(0),
            Some(s) => file_duration(s).map_err(|e| UnitTestError::Parse {
                path: self.origin.to_string(),
                message: format!("{field}: {e}"),
            }),
        }
    }

    fn float_eq(&self, a: f64, b: f64) -> bool {
        a == b || (self.fuzzy && (a.next_up() == b || a.next_down() == b))
    }

    /// Run the group; the failures in promtool's words.
    fn run(&self, groups: &[RuleGroup]) -> Result<Vec<String>, UnitTestError> {
        let tg = self.raw;
        let mut errs = Vec::new();
        let storage = match self.load_series() {
            Ok(s) => s,
            Err(e) => return Ok(vec![e]),
        };
        let external_labels = tg.external_labels.clone().unwrap_or_default();
        let external_url = tg.external_url.clone().unwrap_or_default();
        let ctx = EvalContext {
            external_labels: &external_labels,
            external_url: &external_url,
            clock: None,
        };

        // Alert checks by eval time, in time order, each time's checks in file order.
        let mut alert_tests: BTreeMap<i64, Vec<&RawAlertTest>> = BTreeMap::new();
        for at in tg.alert_rule_test.iter().flatten() {
            let t = self.ms("eval_time", &at.eval_time)?;
            if at.alertname.as_deref().unwrap_or("").is_empty() {
                let in_group = tg
                    .name
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .map(|n| format!(" (in TestGroup {n})"))
                    .unwrap_or_default();
                return Ok(vec![format!(
                    "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                    gofmt::model_duration(t)
                )]);
            }
            alert_tests.entry(t).or_default().push(at);
        }
        let mut max_t = alert_tests.keys().next_back().copied().unwrap_or(0);
        for pt in tg.promql_expr_test.iter().flatten() {
            max_t = max_t.max(self.ms("eval_time", &pt.eval_time)?);
        }
        let times: Vec<i64> = alert_tests.keys().copied().collect();
        let mut curr = 0;

        let mut states: Vec<GroupState> = groups.iter().map(GroupState::new).collect();
        let mut history = History::new();
        let mut ts = 0i64;
        while ts <= max_t {
            let mut eval_errs = Vec::new();
            for (g, st) in groups.iter().zip(states.iter_mut()) {
                eval_group(g, st, &storage, &mut history, ts, &ctx);
                for (i, rule) in g.rules.iter().enumerate() {
                    if let Some(e) = st.status(i).and_then(|s| s.last_error.as_ref()) {
                        eval_errs.push(format!(
                            "    rule: {}, time: {}, err: {e}",
                            rule.name(),
                            gofmt::go_duration(ts)
                        ));
                    }
                }
            }
            if !eval_errs.is_empty() {
                errs.extend(eval_errs);
                return Ok(errs);
            }
            while curr < times.len() && ts <= times[curr] && times[curr] < ts + self.eval_interval {
                let t = times[curr];
                for at in &alert_tests[&t] {
                    if let Some(e) = self.check_alerts(groups, &states, at, t) {
                        errs.push(e);
                    }
                }
                curr += 1;
            }
            ts += self.eval_interval;
        }

        for pt in tg.promql_expr_test.iter().flatten() {
            let t = self.ms("eval_time", &pt.eval_time)?;
            if let Some(e) = self.check_expr(&storage, &history, pt, t) {
                errs.push(e);
            }
        }
        Ok(errs)
    }

    fn load_series(&self) -> Result<MemStorage, String> {
        let mut by_labels: Vec<(Labels, Vec<(i64, f64)>)> = Vec::new();
        for s in self.raw.input_series.iter().flatten() {
            let pairs = parse_metric(&s.series)
                .map_err(|e| format!("    series {}: {e}", gofmt::quote(&s.series)))?;
            let labels = Labels::new(pairs);
            let values = parse_series_values(s.values.as_deref().unwrap_or(""))
                .map_err(|e| format!("    series {}: values: {e}", gofmt::quote(&s.series)))?;
            let samples: Vec<(i64, f64)> = values
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i as i64 * self.interval, v)))
                .collect();
            // A series given twice: the later definition replaces the earlier, as in promtool.
            match by_labels.iter_mut().find(|(l, _)| *l == labels) {
                Some(slot) => slot.1 = samples,
                None => by_labels.push((labels, samples)),
            }
        }
        Ok(MemStorage::new(
            by_labels
                .into_iter()
                .map(|(labels, samples)| SeriesData { labels, samples }),
        ))
    }

    fn check_alerts(
        &self,
        groups: &[RuleGroup],
        states: &[GroupState],
        at: &RawAlertTest,
        t: i64,
    ) -> Option<String> {
        let name = at.alertname.as_deref().unwrap_or("");
        let mut got: Vec<(Pairs, Pairs)> = Vec::new();
        for (g, st) in groups.iter().zip(states) {
            for (i, rule) in g.rules.iter().enumerate() {
                if !matches!(rule, Rule::Alerting(a) if a.name == name) {
                    continue;
                }
                for a in st.alerts(i).into_iter().flat_map(|r| r.firing()) {
                    got.push((pairs_of(&a.labels), a.annotations.clone()));
                }
            }
        }
        let mut exp: Vec<(Pairs, Pairs)> = at
            .exp_alerts
            .iter()
            .flatten()
            .map(|e| {
                let mut l = e.exp_labels.clone().unwrap_or_default();
                l.insert("alertname".into(), name.to_string());
                let a = e.exp_annotations.clone().unwrap_or_default();
                (l.into_iter().collect(), a.into_iter().collect())
            })
            .collect();
        got.sort();
        exp.sort();
        if got == exp {
            return None;
        }
        let test_name = self
            .raw
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .map(|n| format!("    name: {n},\n"))
            .unwrap_or_default();
        let indent = "            ";
        Some(format!(
            "{test_name}    alertname: {name}, time: {}, \n        exp:{}, \n        got:{}",
            gofmt::model_duration(t),
            indent_lines(&alerts_string(&exp), indent),
            indent_lines(&alerts_string(&got), indent)
        ))
    }

    fn check_expr(
        &self,
        storage: &MemStorage,
        history: &History,
        pt: &RawExprTest,
        t: i64,
    ) -> Option<String> {
        let head = format!(
            "    expr: {}, time: {}",
            gofmt::quote(&pt.expr),
            gofmt::model_duration(t)
        );
        let layered = Layered {
            base: storage,
            overlay: history,
        };
        let got = Expr::parse(&pt.expr)
            .map_err(|e| e.to_string())
            .and_then(|e| promql::eval(&e, &layered, t).map_err(|e| e.to_string()));
        let mut got: Vec<(Pairs, f64)> = match got {
            Err(e) => return Some(format!("{head}, err: {e}")),
            Ok(Value::Scalar(v)) => vec![(Vec::new(), v)],
            Ok(Value::Vector(v)) => v.iter().map(|s| (pairs_of(&s.labels), s.value)).collect(),
        };
        let mut exp = Vec::new();
        for s in pt.exp_samples.iter().flatten() {
            match parse_metric(&s.labels) {
                Ok(l) => exp.push((l, s.value)),
                Err(e) => {
                    return Some(format!(
                        "{head}, err: labels {}: {e}",
                        gofmt::quote(&s.labels)
                    ));
                }
            }
        }
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let same = exp.len() == got.len()
            && exp
                .iter()
                .zip(&got)
                .all(|(e, g)| e.0 == g.0 && self.float_eq(e.1, g.1));
        (!same).then(|| {
            format!(
                "{head},\n        exp: {}\n        got: {}",
                samples_string(&exp),
                samples_string(&got)
            )
        })
    }
}

/// A metric as promtool reads `series` and `exp_samples[].labels`: `name{a="b", …}`, `name`, or
/// `{__name__="x", …}`; only `=` matchers; sorted pairs (empty values kept, as Go keeps them).
pub fn parse_metric(s: &str) -> Result<Vec<(String, String)>, String> {
    let text = s.trim();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let name_len = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    let (name, mut rest) = text.split_at(name_len);
    if !name.is_empty() {
        if !file::is_valid_metric_name(name) {
            return Err(format!("invalid metric name {}", gofmt::quote(name)));
        }
        pairs.push(("__name__".into(), name.into()));
    }
    rest = rest.trim_start();
    if let Some(body) = rest.strip_prefix('{') {
        let mut r = body.trim_start();
        loop {
            if let Some(after) = r.strip_prefix('}') {
                rest = after;
                break;
            }
            let n_len = r
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(r.len());
            let label = &r[..n_len];
            if !file::is_valid_label_name(label) {
                return Err(format!(
                    "unexpected {} in label set",
                    gofmt::quote(&r.chars().take(1).collect::<String>())
                ));
            }
            r = r[n_len..].trim_start();
            r = r
                .strip_prefix('=')
                .filter(|after| !after.starts_with('~'))
                .ok_or_else(|| format!("label {label}: only = is allowed in a series"))?
                .trim_start();
            let (value, after) = take_string(r)?;
            if pairs.iter().any(|(n, _)| n == label) {
                return Err(format!("label {label} given twice"));
            }
            pairs.push((label.to_string(), value));
            r = after.trim_start();
            if let Some(after) = r.strip_prefix(',') {
                r = after.trim_start();
            } else if !r.starts_with('}') {
                return Err("expected , or } in label set".into());
            }
        }
    } else if name.is_empty() {
        return Err(format!("cannot parse metric {}", gofmt::quote(s)));
    }
    if !rest.trim().is_empty() {
        return Err(format!(
            "unexpected {} after the metric",
            gofmt::quote(rest.trim())
        ));
    }
    pairs.sort();
    Ok(pairs)
}

/// A PromQL string literal at the start of `s`: "…", '…' (Go escapes) or `…` (raw).
fn take_string(s: &str) -> Result<(String, &str), String> {
    let quote = s.chars().next().ok_or("missing label value")?;
    if !matches!(quote, '"' | '\'' | '`') {
        return Err("label values must be quoted".into());
    }
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' && quote != '`' {
            escaped = true;
        } else if c == quote {
            let lit = &s[..=i];
            let text = if quote == '\'' {
                let inner = lit[1..lit.len() - 1]
                    .replace("\\'", "'")
                    .replace('"', "\\\"");
                super::template::unquote(&format!("\"{inner}\""))
            } else {
                super::template::unquote(lit)
            };
            return Ok((text.ok_or("invalid escape in label value")?, &s[i + 1..]));
        }
    }
    Err("unterminated label value".into())
}

/// promtool's expanding notation for `values`: `1 2 3`, `1+2x3` (1, 3, 5, 7), `1-1x2`, `5x3`
/// (four 5s), `_` (no sample), `_x3` (three gaps), `stale`, `Inf`, `-Inf`, `NaN`, `1e3`.
/// `None` entries are gaps.
pub fn parse_series_values(s: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for item in s.split_whitespace() {
        out.extend(parse_item(item).map_err(|e| format!("{e} in {}", gofmt::quote(item)))?);
    }
    Ok(out)
}

/// Split a number token off the front: sign, digits, fraction, exponent; or a word
/// (`Inf`, `NaN`, `stale`) when it starts with a letter.
fn split_number(s: &str) -> (&str, &str) {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    if i < b.len() && b[i].is_ascii_alphabetic() {
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
            i += 1;
        }
        return s.split_at(i);
    }
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    s.split_at(i)
}

fn number(tok: &str) -> Result<f64, String> {
    let body = tok.trim_start_matches(['+', '-']);
    let neg = tok.starts_with('-');
    let lower = body.to_ascii_lowercase();
    let v = if lower == "inf" || lower == "nan" {
        if lower == "inf" {
            f64::INFINITY
        } else {
            f64::NAN
        }
    } else if let Some(i) = gofmt::parse_go_int(body) {
        i as f64
    } else {
        gofmt::parse_go_float(body).ok_or_else(|| format!("bad number {}", gofmt::quote(tok)))?
    };
    Ok(if neg { -v } else { v })
}

fn parse_item(item: &str) -> Result<Vec<Option<f64>>, String> {
    let times = |rest: &str| -> Result<u64, String> {
        let n = rest.strip_prefix('x').ok_or("expected x<count>")?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err("invalid repetition".into());
        }
        n.parse::<u64>().map_err(|e| e.to_string())
    };
    if let Some(rest) = item.strip_prefix('_') {
        if rest.is_empty() {
            return Ok(vec![None]);
        }
        return Ok(vec![None; times(rest)? as usize]);
    }
    let (first, rest) = split_number(item);
    if first.is_empty() || first == "+" || first == "-" {
        return Err("expected a number".into());
    }
    let word = first.trim_start_matches(['+', '-']);
    let start = if word.starts_with(|c: char| c.is_ascii_alphabetic()) {
        match word.to_ascii_lowercase().as_str() {
            "stale" if first == word => promql::stale_nan(),
            "inf" | "nan" => number(first)?,
            _ => return Err(format!("unexpected {}", gofmt::quote(word))),
        }
    } else {
        number(first)?
    };
    if rest.is_empty() {
        return Ok(vec![Some(start)]);
    }
    if rest.starts_with('x') {
        return Ok(vec![Some(start); times(rest)? as usize + 1]);
    }
    if !rest.starts_with(['+', '-']) {
        return Err("expected x, + or -".into());
    }
    let (step, rest) = split_number(rest);
    let step = number(step)?;
    let n = times(rest)?;
    // Accumulate by repeated addition, as promtool does, so rounding matches.
    let mut v = start;
    let mut out = Vec::with_capacity(n as usize + 1);
    for _ in 0..=n {
        out.push(Some(v));
        v += step;
    }
    Ok(out)
}

/// Go's `filepath.Glob`: `*`, `?`, `[…]` within one path element; results sorted per directory.
pub fn glob(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let text = pattern.to_string_lossy();
    if !has_meta(&text) {
        return Ok(if pattern.symlink_metadata().is_ok() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let dir = pattern.parent().unwrap_or(Path::new(""));
    let file = pattern
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let dirs = if has_meta(&dir.to_string_lossy()) {
        glob(dir)?
    } else {
        vec![dir.to_path_buf()]
    };
    let mut out = Vec::new();
    for d in dirs {
        let read_dir = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d.as_path()
        };
        let Ok(entries) = std::fs::read_dir(read_dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
            .collect();
        names.sort();
        for n in names {
            if glob_match(file.as_bytes(), n.as_bytes())? {
                out.push(d.join(n));
            }
        }
    }
    Ok(out)
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

/// Go's `filepath.Match` on one path element.
fn glob_match(pat: &[u8], name: &[u8]) -> Result<bool, String> {
    match pat.first() {
        None => Ok(name.is_empty()),
        Some(b'*') => {
            for i in 0..=name.len() {
                if glob_match(&pat[1..], &name[i..])? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Some(b'?') => Ok(!name.is_empty() && glob_match(&pat[1..], &name[1..])?),
        Some(b'[') => {
            let end = pat[1..]
                .iter()
                .position(|&c| c == b']')
                .map(|p| p + 1)
                .ok_or("syntax error in pattern")?;
            let Some(&c) = name.first() else {
                return Ok(false);
            };
            let mut class = &pat[1..end];
            let negate = class.first() == Some(&b'^');
            if negate {
                class = &class[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            Ok(hit != negate && glob_match(&pat[end + 1..], &name[1..])?)
        }
        Some(b'\\') if pat.len() > 1 => {
            Ok(name.first() == Some(&pat[1]) && glob_match(&pat[2..], &name[1..])?)
        }
        Some(&p) => Ok(name.first() == Some(&p) && glob_match(&pat[1..], &name[1..])?),
    }
}

#[cfg(test)]
mod tests;
