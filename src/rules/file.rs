//! Prometheus rule files: parse (serde-saphyr, with positions), validate as `promtool check rules`
//! does, and build runnable groups of recording and alerting rules.
//!
//! Parse, then validate, then build: [`RawRuleFile`] is exactly what the file says (unknown keys
//! are errors), [`build`] checks everything and returns every problem at once, each naming
//! `file:line:column`, the group and rule, and the construct. Beyond Prometheus 2.42 (which
//! promtool in CI is), group `labels` (Prometheus 3: added to every rule's labels, rule labels
//! win) and `query_offset` (Prometheus 2.53: rules query at `t - query_offset`) are supported.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::promql::{Expr, Labels};
use super::template::Template;
use crate::config::parse_duration;

/// A rule file that cannot be read, is not the expected YAML shape, or has invalid rules.
#[derive(Debug, thiserror::Error)]
pub enum RuleFileError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

type RawMap = HashMap<Spanned<String>, Spanned<String>>;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuleFile {
    pub groups: Option<Vec<Spanned<RawGroup>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub name: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub query_offset: Option<Spanned<String>>,
    pub limit: Option<Spanned<i64>>,
    pub labels: Option<RawMap>,
    pub rules: Option<Vec<Spanned<RawRule>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub record: Option<Spanned<String>>,
    pub alert: Option<Spanned<String>>,
    pub expr: Option<Spanned<String>>,
    #[serde(rename = "for")]
    pub for_: Option<Spanned<String>>,
    pub keep_firing_for: Option<Spanned<String>>,
    pub labels: Option<RawMap>,
    pub annotations: Option<RawMap>,
}

/// A validated rule file.
#[derive(Debug, Clone)]
pub struct RuleFile {
    /// The path or name the file was loaded from, as errors and group keys show it.
    pub origin: String,
    pub groups: Vec<RuleGroup>,
}

/// A group: rules evaluated in order at one timestamp.
#[derive(Debug, Clone)]
pub struct RuleGroup {
    pub name: String,
    /// The rule file the group came from.
    pub file: String,
    /// `None`: the evaluator's default interval.
    pub interval: Option<Duration>,
    /// Rules query at `t - query_offset` (Prometheus 2.53+); zero when not set.
    pub query_offset: Duration,
    /// Most alerts (per alerting rule) or series (per recording rule) one evaluation may
    /// produce; 0 is no limit.
    pub limit: usize,
    /// Group labels (Prometheus 3), already merged into every rule's labels.
    pub labels: Vec<(String, String)>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub enum Rule {
    Recording(RecordingRule),
    Alerting(AlertingRule),
}

impl Rule {
    /// The record or alert name.
    pub fn name(&self) -> &str {
        match self {
            Rule::Recording(r) => &r.name,
            Rule::Alerting(a) => &a.name,
        }
    }

    pub fn expr(&self) -> &Expr {
        match self {
            Rule::Recording(r) => &r.expr,
            Rule::Alerting(a) => &a.expr,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RecordingRule {
    /// The metric name written.
    pub name: String,
    pub expr: Expr,
    /// Set on every result (not templates), group labels under rule labels.
    pub labels: Labels,
}

#[derive(Debug, Clone)]
pub struct AlertingRule {
    /// The `alertname` label.
    pub name: String,
    pub expr: Expr,
    /// `for`: how long a result must persist before pending becomes firing.
    pub hold: Duration,
    /// How long a firing alert keeps firing after its series disappear.
    pub keep_firing_for: Duration,
    /// Label templates by name (group labels under rule labels), sorted by name.
    pub labels: Vec<(String, Template)>,
    /// Annotation templates by name, sorted by name.
    pub annotations: Vec<(String, Template)>,
}

/// Read, parse, validate and build a rule file; every problem is reported at once.
pub fn load_file(path: &Path) -> Result<RuleFile, RuleFileError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RuleFileError::Read {
        path: origin.clone(),
        source,
    })?;
    parse_str(&text, &origin)
}

/// Parse, validate and build rule-file text; `origin` names it in errors.
pub fn parse_str(text: &str, origin: &str) -> Result<RuleFile, RuleFileError> {
    let raw = if text.trim().is_empty() {
        RawRuleFile::default()
    } else {
        serde_saphyr::from_str::<RawRuleFile>(text)
            .map_err(|e| parse_error(origin, &e.to_string()))?
    };
    build(&raw, text, origin)
}

fn parse_error(origin: &str, rendered: &str) -> RuleFileError {
    let (path, message) = crate::config::locate_yaml_error(origin, rendered);
    RuleFileError::Parse { path, message }
}

/// Prometheus's (legacy, as in 2.x) metric name rule.
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Prometheus's (legacy, as in 2.x) label name rule.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Validate and build; every problem at once.
pub fn build(raw: &RawRuleFile, source: &str, origin: &str) -> Result<RuleFile, RuleFileError> {
    let mut b = Builder {
        origin,
        source,
        errors: Vec::new(),
    };
    let mut seen = BTreeSet::new();
    let mut groups = Vec::new();
    for g in raw.groups.iter().flatten() {
        if let Some(group) = b.group(g, &mut seen) {
            groups.push(group);
        }
    }
    if b.errors.is_empty() {
        Ok(RuleFile {
            origin: origin.to_string(),
            groups,
        })
    } else {
        Err(RuleFileError::Invalid(b.errors))
    }
}

/// Collects every problem while turning the raw file into groups.
struct Builder<'a> {
    origin: &'a str,
    source: &'a str,
    errors: Vec<String>,
}

/// Which rule an error is about, for its prefix.
struct RuleCtx<'a> {
    group: &'a str,
    index: usize,
    kind: &'a str,
    name: &'a str,
}

impl std::fmt::Display for RuleCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "group {:?}, rule {}", self.group, self.index)?;
        if !self.name.is_empty() {
            write!(f, " ({} {:?})", self.kind, self.name)?;
        }
        Ok(())
    }
}

fn sorted(map: &Option<RawMap>) -> Vec<(&Spanned<String>, &Spanned<String>)> {
    let mut v: Vec<_> = map.iter().flatten().collect();
    v.sort_by(|a, b| a.0.value.cmp(&b.0.value));
    v
}

impl Builder<'_> {
    fn at<T>(&self, s: &Spanned<T>) -> String {
        format!(
            "{}:{}:{}",
            self.origin,
            s.referenced.line(),
            s.referenced.column()
        )
    }

    fn push(&mut self, at: String, msg: impl std::fmt::Display) {
        self.errors.push(format!("{at}: {msg}"));
    }

    fn duration(&mut self, field: &Option<Spanned<String>>, what: String) -> Option<Duration> {
        let v = field.as_ref()?;
        match parse_duration(&v.value) {
            Ok(d) => Some(d),
            Err(e) => {
                let at = self.at(v);
                self.push(at, format!("{what}: {e}"));
                None
            }
        }
    }

    fn group(&mut self, sg: &Spanned<RawGroup>, seen: &mut BTreeSet<String>) -> Option<RuleGroup> {
        let g = &sg.value;
        let errors_before = self.errors.len();
        let name = match &g.name {
            Some(n) if !n.value.is_empty() => {
                if !seen.insert(n.value.clone()) {
                    let at = self.at(n);
                    self.push(
                        at,
                        format!(
                            "group {:?} is repeated in the same file (group names must be unique per file)",
                            n.value
                        ),
                    );
                }
                n.value.clone()
            }
            Some(n) => {
                let at = self.at(n);
                self.push(at, "group name must not be empty");
                String::new()
            }
            None => {
                let at = self.at(sg);
                self.push(at, "group has no name (add `name:`)");
                String::new()
            }
        };
        let ctx = format!("group {name:?}");
        let interval = self
            .duration(&g.interval, format!("{ctx}: interval"))
            .filter(|d| !d.is_zero());
        let query_offset = self
            .duration(&g.query_offset, format!("{ctx}: query_offset"))
            .unwrap_or_default();
        let limit = match &g.limit {
            Some(l) if l.value < 0 => {
                let at = self.at(l);
                self.push(
                    at,
                    format!("{ctx}: limit: {} is negative (0 means no limit)", l.value),
                );
                0
            }
            Some(l) => usize::try_from(l.value).unwrap_or(usize::MAX),
            None => 0,
        };
        let mut labels = Vec::new();
        for (k, v) in sorted(&g.labels) {
            if !is_valid_label_name(&k.value) || k.value == "__name__" {
                let at = self.at(k);
                self.push(
                    at,
                    format!("{ctx}: labels: invalid label name {:?}", k.value),
                );
            }
            labels.push((k.value.clone(), v.clone()));
        }
        let mut rules = Vec::new();
        for (i, r) in g.rules.iter().flatten().enumerate() {
            if let Some(rule) = self.rule(&name, i + 1, r, &labels) {
                rules.push(rule);
            }
        }
        (self.errors.len() == errors_before).then(|| RuleGroup {
            name,
            file: self.origin.to_string(),
            interval,
            query_offset,
            limit,
            labels: labels.into_iter().map(|(k, v)| (k, v.value)).collect(),
            rules,
        })
    }

    fn rule(
        &mut self,
        group: &str,
        index: usize,
        sr: &Spanned<RawRule>,
        group_labels: &[(String, Spanned<String>)],
    ) -> Option<Rule> {
        let r = &sr.value;
        let errors_before = self.errors.len();
        let nonempty =
            |f: &Option<Spanned<String>>| f.as_ref().filter(|s| !s.value.is_empty()).cloned();
        let (record, alert) = (nonempty(&r.record), nonempty(&r.alert));
        let (kind, name) = match (&record, &alert) {
            (Some(rec), _) => ("record", rec.value.as_str()),
            (None, Some(a)) => ("alert", a.value.as_str()),
            (None, None) => ("rule", ""),
        };
        let ctx = RuleCtx {
            group,
            index,
            kind,
            name,
        };
        match (&record, &alert) {
            (Some(rec), Some(_)) => {
                let at = self.at(rec);
                self.push(
                    at,
                    format!("{ctx}: only one of 'record' and 'alert' may be set"),
                );
            }
            (None, None) => {
                let at = self.at(sr);
                self.push(at, format!("{ctx}: one of 'record' or 'alert' must be set"));
            }
            _ => {}
        }
        let expr = match &r.expr {
            None => {
                let at = self.at(sr);
                self.push(at, format!("{ctx}: field 'expr' must be set in rule"));
                None
            }
            Some(e) if e.value.trim().is_empty() => {
                let at = self.at(e);
                self.push(at, format!("{ctx}: field 'expr' must be set in rule"));
                None
            }
            Some(e) => match Expr::parse(&e.value) {
                Ok(x) => Some(x),
                Err(err) => {
                    let (at, near) = self.locate_in_expr(e, err.offset);
                    self.push(
                        at,
                        format!("{ctx}: could not parse expression: {}{near}", err.message),
                    );
                    None
                }
            },
        };
        let hold = self
            .duration(&r.for_, format!("{ctx}: for"))
            .unwrap_or_default();
        let keep_firing_for = self
            .duration(&r.keep_firing_for, format!("{ctx}: keep_firing_for"))
            .unwrap_or_default();
        let mut labels: Vec<(String, Spanned<String>)> = group_labels.to_vec();
        for (k, v) in sorted(&r.labels) {
            if !is_valid_label_name(&k.value) || k.value == "__name__" {
                let at = self.at(k);
                self.push(
                    at,
                    format!(
                        "{ctx}: invalid label name {:?} (label names match [a-zA-Z_][a-zA-Z0-9_]* and are not __name__)",
                        k.value
                    ),
                );
            }
            labels.retain(|(n, _)| *n != k.value);
            labels.push((k.value.clone(), v.clone()));
        }
        labels.sort_by(|a, b| a.0.cmp(&b.0));

        if let Some(rec) = &record {
            for (field, present) in [
                (
                    "annotations",
                    r.annotations.as_ref().is_some_and(|a| !a.is_empty()),
                ),
                ("for", hold > Duration::ZERO),
                ("keep_firing_for", keep_firing_for > Duration::ZERO),
            ] {
                if present {
                    let at = self.at(rec);
                    self.push(
                        at,
                        format!(
                            "{ctx}: invalid field '{field}' in recording rule (only alerts have it)"
                        ),
                    );
                }
            }
            if !is_valid_metric_name(&rec.value) {
                let at = self.at(rec);
                self.push(
                    at,
                    format!(
                        "{ctx}: invalid recording rule name {:?} (record names are metric names: [a-zA-Z_:][a-zA-Z0-9_:]*)",
                        rec.value
                    ),
                );
            }
            let expr = expr?;
            return (self.errors.len() == errors_before).then(|| {
                Rule::Recording(RecordingRule {
                    name: rec.value.clone(),
                    expr,
                    labels: Labels::new(labels.iter().map(|(k, v)| (k.as_str(), v.value.as_str()))),
                })
            });
        }
        let alert = alert.as_ref()?;
        let mut label_templates = Vec::new();
        for (k, v) in &labels {
            let key = Spanned::new(k.clone(), v.referenced, v.defined);
            if let Some(t) = self.template(&ctx, "label", &alert.value, &key, v) {
                label_templates.push((k.clone(), t));
            }
        }
        let mut annotations = Vec::new();
        for (k, v) in sorted(&r.annotations) {
            if !is_valid_label_name(&k.value) {
                let at = self.at(k);
                self.push(at, format!("{ctx}: invalid annotation name {:?}", k.value));
            }
            if let Some(t) = self.template(&ctx, "annotation", &alert.value, k, v) {
                annotations.push((k.value.clone(), t));
            }
        }
        let expr = expr?;
        (self.errors.len() == errors_before).then(|| {
            Rule::Alerting(AlertingRule {
                name: alert.value.clone(),
                expr,
                hold,
                keep_firing_for,
                labels: label_templates,
                annotations,
            })
        })
    }

    fn template(
        &mut self,
        ctx: &RuleCtx<'_>,
        what: &str,
        alert: &str,
        key: &Spanned<String>,
        value: &Spanned<String>,
    ) -> Option<Template> {
        match Template::parse(alert, &value.value) {
            Ok(t) => Some(t),
            Err(e) => {
                let at = self.at(value);
                self.push(at, format!("{ctx}: {what} {:?}: {e}", key.value));
                None
            }
        }
    }

    /// Where in the file the construct at byte `offset` of the expression is, when the
    /// expression is a one-line scalar or a literal block (`|`) and the position can be checked
    /// against the source; else the `expr` field itself. Also a hint naming the construct
    /// (` (near "x")`), or the expression when the parser gave no position (` (in "...")`).
    fn locate_in_expr(&self, e: &Spanned<String>, offset: Option<usize>) -> (String, String) {
        let field = self.at(e);
        let whole: String = e.value.split_whitespace().collect::<Vec<_>>().join(" ");
        let whole = if whole.chars().count() > 60 {
            format!("{}...", whole.chars().take(60).collect::<String>())
        } else {
            whole
        };
        let Some(offset) = offset.filter(|&o| o < e.value.len() && e.value.is_char_boundary(o))
        else {
            // No position from the parser: the construct is the expression itself.
            return (field, format!(" (in {whole:?})"));
        };
        let rest = &e.value[offset..];
        let word: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let near = if word.is_empty() {
            rest.lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(20)
                .collect::<String>()
        } else {
            word
        };
        let near = match near.trim_end() {
            "" => String::new(),
            n => format!(" (near {n:?})"),
        };
        let (line, col) = (e.referenced.line() as usize, e.referenced.column() as usize);
        let lines: Vec<&str> = self.source.lines().collect();
        let Some(field_line) = line.checked_sub(1).and_then(|l| lines.get(l)) else {
            return (field, near);
        };
        let at_char = |l: &str, c: usize| l.chars().nth(c.saturating_sub(1));
        let target = e.value[offset..].chars().next();
        let before = &e.value[..offset];
        let row = before.matches('\n').count();
        let in_line = before.rsplit('\n').next().unwrap_or("").chars().count();
        let candidate = match at_char(field_line, col) {
            // A quoted one-line scalar: the content starts after the quote.
            Some('"' | '\'') if row == 0 && !e.value.starts_with(['"', '\'']) => {
                Some((line, col + 1 + in_line))
            }
            // A plain scalar or a literal block (the location is where its content starts,
            // and every line of a literal block shares that indentation).
            _ => Some((line + row, col + in_line)),
        };
        match candidate {
            Some((l, c))
                if lines
                    .get(l.wrapping_sub(1))
                    .is_some_and(|text| at_char(text, c) == target) =>
            {
                (format!("{}:{l}:{c}", self.origin), near)
            }
            _ => (field, near),
        }
    }
}

#[cfg(test)]
mod tests;
