//! The Grafana dashboards in `dashboards/` and their provisioning in `deploy/grafana/`: current schema, a unit, description and the `${datasource}` variable on every panel, every query parses and names only metrics and labels the sidecar exports, and `may-be-empty.txt` names real panels.
//!
//! Metric names and labels come from `ocx_sentinel::telemetry::CATALOGUE`, the public list
//! `/metrics` is rendered from (README's table is checked against the same list by
//! tests/docs.rs). Reading it directly needs no running process, and it covers series a demo
//! scrape would not show (failure counters that appear on the first failure, metrics of features
//! the demo leaves off).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use ocx_sentinel::telemetry::{CATALOGUE, Kind};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, LabelModifier, VectorMatchCardinality, VectorSelector};
use regex::Regex;
use serde::Deserialize;
use serde_json::{Value, json};

const DASHBOARDS: &[&str] = &["overview.json", "market.json"];
/// Where the compose file mounts `../dashboards` (relative to deploy/), and so where the
/// dashboards provider must read.
const DASHBOARDS_MOUNT: &str = "/var/lib/grafana/dashboards";
const PROVISIONING_MOUNT: &str = "/etc/grafana/provisioning";
/// The current dashboard schema (panel types `timeseries`, `stat`, ...); older ones are migrated on import.
const MIN_SCHEMA_VERSION: u64 = 39;
/// Panel types Grafana replaced (`graph` by `timeseries`, `singlestat` by `stat`); importing them
/// triggers an automatic migration that loses settings.
const LEGACY_PANEL_TYPES: &[&str] = &["graph", "singlestat", "table-old", "grafana-piechart-panel"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(name: &str) -> Value {
    let path = root().join("dashboards").join(name);
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn datasource_ref() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

/// Series name → the labels its samples can carry.
struct Catalogue(HashMap<String, BTreeSet<String>>);

impl Catalogue {
    fn new() -> Self {
        let mut series = HashMap::new();
        for def in CATALOGUE {
            let mut labels: BTreeSet<String> = def
                .labels
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            // README "## Metrics": stream series carry `market` on the events stream; the
            // catalogue's label column lists only the labels every series of the family has.
            if labels.contains("stream") {
                labels.insert("market".into());
            }
            if let Kind::Histogram(_) = def.kind {
                let mut bucket = labels.clone();
                bucket.insert("le".into());
                series.insert(format!("{}_bucket", def.name), bucket);
                series.insert(format!("{}_sum", def.name), labels.clone());
                series.insert(format!("{}_count", def.name), labels);
            } else {
                series.insert(def.name.to_string(), labels);
            }
        }
        Self(series)
    }
}

/// What an expression yields: a scalar, or a vector whose series carry these labels (`None` when
/// the checker cannot tell, e.g. after an unknown metric, already reported).
#[derive(Debug, Clone)]
enum Out {
    Scalar,
    Vector(Option<BTreeSet<String>>),
}

/// Walks a parsed expression: every selector must name a catalogue series and match only its
/// labels, every `by`/`on`/`group_left` label must exist on the operand it groups.
struct Walker<'a> {
    cat: &'a Catalogue,
    errors: Vec<String>,
}

impl Walker<'_> {
    fn selector(&mut self, vs: &VectorSelector) -> Out {
        let all: Vec<&Matcher> = vs
            .matchers
            .matchers
            .iter()
            .chain(vs.matchers.or_matchers.iter().flatten())
            .collect();
        let name = vs.name.clone().or_else(|| {
            all.iter()
                .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
                .map(|m| m.value.clone())
        });
        let Some(name) = name else {
            self.errors
                .push(format!("selector {vs} has no fixed metric name"));
            return Out::Vector(None);
        };
        let Some(labels) = self.cat.0.get(&name) else {
            self.errors
                .push(format!("metric {name} is not in the sidecar's catalogue"));
            return Out::Vector(None);
        };
        for m in all.iter().filter(|m| m.name != "__name__") {
            if !labels.contains(&m.name) {
                self.errors.push(format!(
                    "{name} has no label {:?} (it has {labels:?})",
                    m.name
                ));
            }
        }
        Out::Vector(Some(labels.clone()))
    }

    fn need(&mut self, what: &str, label: &str, have: &Option<BTreeSet<String>>) {
        if let Some(have) = have
            && !have.contains(label)
        {
            self.errors.push(format!(
                "{what} uses label {label:?}, which its operand lacks ({have:?})"
            ));
        }
    }

    fn walk(&mut self, e: &Expr) -> Out {
        match e {
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Out::Scalar,
            Expr::VectorSelector(vs) => self.selector(vs),
            Expr::MatrixSelector(ms) => self.selector(&ms.vs),
            Expr::Paren(p) => self.walk(&p.expr),
            Expr::Unary(u) => self.walk(&u.expr),
            Expr::Subquery(s) => self.walk(&s.expr),
            Expr::Extension(_) => Out::Vector(None),
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk(p);
                }
                let inner = match self.walk(&a.expr) {
                    Out::Vector(l) => l,
                    Out::Scalar => Some(BTreeSet::new()),
                };
                let op = a.op.to_string();
                match &a.modifier {
                    Some(LabelModifier::Include(by)) => {
                        for l in &by.labels {
                            self.need(&format!("{op} by"), l, &inner);
                        }
                        if matches!(op.as_str(), "topk" | "bottomk" | "limitk" | "limit_ratio") {
                            Out::Vector(inner)
                        } else {
                            Out::Vector(Some(by.labels.iter().cloned().collect()))
                        }
                    }
                    Some(LabelModifier::Exclude(without)) => {
                        for l in &without.labels {
                            self.need(&format!("{op} without"), l, &inner);
                        }
                        Out::Vector(inner.map(|mut s| {
                            for l in &without.labels {
                                s.remove(l);
                            }
                            s
                        }))
                    }
                    None if matches!(
                        op.as_str(),
                        "topk" | "bottomk" | "limitk" | "limit_ratio"
                    ) =>
                    {
                        Out::Vector(inner)
                    }
                    None => Out::Vector(Some(BTreeSet::new())),
                }
            }
            Expr::Call(c) => {
                let args: Vec<Out> = c.args.args.iter().map(|a| self.walk(a)).collect();
                match c.func.name {
                    "time" | "pi" | "scalar" => Out::Scalar,
                    "vector" => Out::Vector(Some(BTreeSet::new())),
                    "absent" | "absent_over_time" => Out::Vector(None),
                    "histogram_quantile" => match args.get(1) {
                        Some(Out::Vector(labels)) => {
                            self.need("histogram_quantile", "le", labels);
                            Out::Vector(labels.clone().map(|mut s| {
                                s.remove("le");
                                s
                            }))
                        }
                        _ => Out::Vector(None),
                    },
                    "label_replace" | "label_join" => {
                        let dst = match c.args.args.get(1).map(|a| a.as_ref()) {
                            Some(Expr::StringLiteral(s)) => Some(s.val.clone()),
                            _ => None,
                        };
                        match (args.first(), dst) {
                            (Some(Out::Vector(Some(l))), Some(dst)) => {
                                let mut l = l.clone();
                                l.insert(dst);
                                Out::Vector(Some(l))
                            }
                            _ => Out::Vector(None),
                        }
                    }
                    _ => args
                        .into_iter()
                        .find(|a| matches!(a, Out::Vector(_)))
                        .unwrap_or(Out::Scalar),
                }
            }
            Expr::Binary(b) => {
                let (lhs, rhs) = (self.walk(&b.lhs), self.walk(&b.rhs));
                let (l, r) = match (lhs, rhs) {
                    (Out::Scalar, Out::Scalar) => return Out::Scalar,
                    (Out::Scalar, v) | (v, Out::Scalar) => return v,
                    (Out::Vector(l), Out::Vector(r)) => (l, r),
                };
                let set_op = b.op.is_set_operator();
                let modifier = b.modifier.as_ref();
                let include = match modifier.map(|m| &m.card) {
                    Some(VectorMatchCardinality::ManyToOne(ls))
                    | Some(VectorMatchCardinality::OneToMany(ls)) => ls.labels.clone(),
                    _ => Vec::new(),
                };
                // group_left(extra) copies `extra` from the "one" side.
                let (many, one) = match modifier.map(|m| &m.card) {
                    Some(VectorMatchCardinality::OneToMany(_)) => (r.clone(), l.clone()),
                    _ => (l.clone(), r.clone()),
                };
                for x in &include {
                    self.need("group_left/group_right", x, &one);
                }
                match modifier.and_then(|m| m.matching.as_ref()) {
                    Some(LabelModifier::Include(on)) => {
                        for x in &on.labels {
                            self.need("on", x, &l);
                            self.need("on", x, &r);
                        }
                        if set_op {
                            return Out::Vector(if b.op.to_string() == "or" {
                                l.zip(r).map(|(l, r)| l.union(&r).cloned().collect())
                            } else {
                                l
                            });
                        }
                        match modifier.map(|m| &m.card) {
                            Some(VectorMatchCardinality::OneToOne) | None => {
                                Out::Vector(Some(on.labels.iter().cloned().collect()))
                            }
                            _ => Out::Vector(many.map(|mut s| {
                                s.extend(include.iter().cloned());
                                s
                            })),
                        }
                    }
                    Some(LabelModifier::Exclude(ignoring)) => {
                        for x in &ignoring.labels {
                            self.need("ignoring", x, &l);
                            self.need("ignoring", x, &r);
                        }
                        Out::Vector(many.map(|mut s| {
                            for x in &ignoring.labels {
                                s.remove(x);
                            }
                            s.extend(include.iter().cloned());
                            s
                        }))
                    }
                    None => {
                        // Matching on every label: series whose label sets differ never pair.
                        if !set_op
                            && let (Some(l), Some(r)) = (&l, &r)
                            && l != r
                        {
                            self.errors.push(format!(
                                "`{}` matches {l:?} against {r:?} on all labels: no series pair; use on(...)",
                                b.op
                            ));
                        }
                        Out::Vector(l)
                    }
                }
            }
        }
    }
}

/// The values the checks substitute for Grafana's variables: any plausible value parses the same.
fn substitute(expr: &str, errors: &mut Vec<String>) -> String {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("account", "demo"),
        ("market", "BTC-PERP"),
        ("datasource", "prometheus"),
        ("__rate_interval", "1m"),
        ("__interval", "15s"),
        ("__interval_ms", "15000"),
        ("__range", "1h"),
        ("__range_s", "3600"),
        ("__range_ms", "3600000"),
    ]);
    // `$name`, `${name}` and `${name:format}`; `$1` (a label_replace group) is not a variable.
    let re = Regex::new(r"\$\{(\w+)(?::\w+)?\}|\$([A-Za-z_]\w*)").unwrap();
    re.replace_all(expr, |c: &regex::Captures| {
        let name = c.get(1).or(c.get(2)).unwrap().as_str();
        match vars.get(name) {
            Some(v) => v.to_string(),
            None => {
                errors.push(format!("unknown variable ${name} in {expr:?}"));
                "x".to_string()
            }
        }
    })
    .into_owned()
}

/// Parses one query (after substitution) and checks its metrics and labels; returns the labels of
/// its result when known.
fn check_expr(
    where_: &str,
    expr: &str,
    cat: &Catalogue,
    errors: &mut Vec<String>,
) -> Option<BTreeSet<String>> {
    let mut sub_errors = Vec::new();
    let text = substitute(expr, &mut sub_errors);
    errors.extend(sub_errors.into_iter().map(|e| format!("{where_}: {e}")));
    let parsed = match parser::parse(&text) {
        Ok(p) => p,
        Err(e) => {
            errors.push(format!("{where_}: {text:?} does not parse: {e}"));
            return None;
        }
    };
    let mut w = Walker {
        cat,
        errors: Vec::new(),
    };
    let out = w.walk(&parsed);
    errors.extend(w.errors.into_iter().map(|e| format!("{where_}: {e}")));
    match out {
        Out::Vector(l) => l,
        Out::Scalar => Some(BTreeSet::new()),
    }
}

/// Every panel, those nested in rows included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

fn nonempty_str(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.trim().is_empty())
}

fn check_variables(name: &str, d: &Value, cat: &Catalogue, errors: &mut Vec<String>) {
    let vars = d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let find = |n: &str| vars.iter().find(|v| v["name"] == n);
    match find("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        _ => errors.push(format!(
            "{name}: needs a variable `datasource` of type datasource, query prometheus"
        )),
    }
    let label_values = Regex::new(r"^label_values\((.+),\s*(\w+)\)$").unwrap();
    for (var, depends_on) in [("account", None), ("market", Some("$account"))] {
        let Some(v) = find(var) else {
            errors.push(format!("{name}: no variable `{var}`"));
            continue;
        };
        let where_ = format!("{name}: variable {var}");
        if v["type"] != "query" || v["datasource"] != datasource_ref() {
            errors.push(format!(
                "{where_}: must be a query variable on ${{datasource}}"
            ));
        }
        if v["multi"] != true || v["includeAll"] != true {
            errors.push(format!("{where_}: must allow several values and All"));
        }
        let query = match &v["query"] {
            Value::String(s) => s.clone(),
            q => q["query"].as_str().unwrap_or_default().to_string(),
        };
        let Some(c) = label_values.captures(&query) else {
            errors.push(format!(
                "{where_}: query {query:?} is not label_values(<selector>, <label>)"
            ));
            continue;
        };
        if let Some(dep) = depends_on
            && !c[1].contains(dep)
        {
            errors.push(format!("{where_}: query {query:?} must depend on {dep}"));
        }
        let labels = check_expr(&where_, &c[1], cat, errors);
        if let Some(labels) = labels
            && !labels.contains(&c[2])
        {
            errors.push(format!("{where_}: the selector has no label {:?}", &c[2]));
        }
    }
}

/// Every check of one dashboard; an empty result means it passes.
fn check_dashboard(name: &str, d: &Value, cat: &Catalogue) -> Vec<String> {
    let mut errors = Vec::new();
    for key in ["uid", "title"] {
        if !nonempty_str(&d[key]) {
            errors.push(format!("{name}: no {key}"));
        }
    }
    if d["schemaVersion"].as_u64().unwrap_or(0) < MIN_SCHEMA_VERSION {
        errors.push(format!(
            "{name}: schemaVersion {} < {MIN_SCHEMA_VERSION}",
            d["schemaVersion"]
        ));
    }
    check_variables(name, d, cat, &mut errors);

    let mut ids = HashSet::new();
    let mut titles = HashSet::new();
    let legend = Regex::new(r"\{\{\s*(\w+)\s*\}\}").unwrap();
    let all = panels(d);
    if all.iter().filter(|p| p["type"] != "row").count() == 0 {
        errors.push(format!("{name}: no panels"));
    }
    for p in all {
        let title = p["title"].as_str().unwrap_or_default();
        let at = format!("{name}: panel {title:?}");
        if title.trim().is_empty() {
            errors.push(format!("{name}: a panel without a title (id {})", p["id"]));
        }
        match p["id"].as_u64() {
            Some(id) if !ids.insert(id) => errors.push(format!("{at}: id {id} used twice")),
            Some(_) => {}
            None => errors.push(format!("{at}: no numeric id")),
        }
        let g = &p["gridPos"];
        match ["h", "w", "x", "y"].map(|k| g[k].as_u64()) {
            [Some(h), Some(w), Some(x), Some(_)] if h > 0 && w > 0 && x + w <= 24 => {}
            _ => errors.push(format!("{at}: gridPos {g} is not a box inside 24 columns")),
        }
        if p["type"] == "row" {
            continue;
        }
        if !titles.insert(title) {
            errors.push(format!(
                "{at}: title used twice (may-be-empty.txt names panels by title)"
            ));
        }
        let kind = p["type"].as_str().unwrap_or_default();
        if kind.is_empty() || LEGACY_PANEL_TYPES.contains(&kind) {
            errors.push(format!("{at}: panel type {kind:?} is missing or legacy"));
        }
        if !nonempty_str(&p["description"]) {
            errors.push(format!("{at}: no description"));
        }
        if !nonempty_str(&p["fieldConfig"]["defaults"]["unit"]) {
            errors.push(format!("{at}: no fieldConfig.defaults.unit"));
        }
        if p["datasource"] != datasource_ref() {
            errors.push(format!(
                "{at}: datasource {} is not {}",
                p["datasource"],
                datasource_ref()
            ));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            errors.push(format!("{at}: no targets"));
        }
        let mut refs = HashSet::new();
        for t in &targets {
            let r = t["refId"].as_str().unwrap_or_default();
            let at = format!("{at} target {r:?}");
            if r.is_empty() || !refs.insert(r.to_string()) {
                errors.push(format!("{at}: refId missing or repeated"));
            }
            if t["datasource"] != datasource_ref() {
                errors.push(format!(
                    "{at}: datasource {} is not ${{datasource}}",
                    t["datasource"]
                ));
            }
            let Some(expr) = t["expr"].as_str().filter(|e| !e.trim().is_empty()) else {
                errors.push(format!("{at}: no expr"));
                continue;
            };
            let labels = check_expr(&at, expr, cat, &mut errors);
            // A legend naming a label the result lacks renders as an empty string.
            let fmt = t["legendFormat"].as_str().unwrap_or_default();
            for c in legend.captures_iter(fmt) {
                if let Some(labels) = &labels
                    && !labels.contains(&c[1])
                {
                    errors.push(format!(
                        "{at}: legend {fmt:?} names {:?}, which the result lacks ({labels:?})",
                        &c[1]
                    ));
                }
            }
        }
    }
    errors
}

#[test]
fn dashboards_are_current_schema_and_query_only_exported_metrics() {
    let cat = Catalogue::new();
    let mut uids = HashSet::new();
    let mut errors = Vec::new();
    for name in DASHBOARDS {
        let d = load(name);
        errors.extend(check_dashboard(name, &d, &cat));
        if !uids.insert(d["uid"].as_str().unwrap_or_default().to_string()) {
            errors.push(format!(
                "{name}: uid {} shared with another dashboard",
                d["uid"]
            ));
        }
    }
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}

#[test]
fn no_other_dashboard_files_escape_the_checks() {
    let mut found: Vec<String> = std::fs::read_dir(root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    found.sort();
    let mut listed: Vec<String> = DASHBOARDS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed, "add new dashboards to DASHBOARDS");
}

/// The checker itself: each kind of mistake it exists for is caught.
#[test]
fn the_checks_catch_misspelled_metrics_wrong_labels_and_missing_fields() {
    let cat = Catalogue::new();
    // A real dashboard cut to its variables and first panels (checking all of it once per case
    // would only slow the test), which must pass before a probe panel is added.
    let mut base = load("market.json");
    base["panels"].as_array_mut().unwrap().truncate(3);
    assert_eq!(check_dashboard("base", &base, &cat), Vec::<String>::new());
    let panel = |expr: &str, legend: &str, unit: &str, description: &str| {
        json!({
            "id": 900, "type": "timeseries", "title": "Probe", "description": description,
            "datasource": datasource_ref(), "gridPos": {"h": 4, "w": 6, "x": 0, "y": 99},
            "fieldConfig": {"defaults": {"unit": unit}},
            "targets": [{"refId": "A", "datasource": datasource_ref(), "expr": expr, "legendFormat": legend}]
        })
    };
    let cases = [
        (
            panel("rate(ocx_fils_total[5m])", "", "cpm", "d"),
            "ocx_fils_total is not in",
        ),
        (
            panel("ocx_fills_total{markt=\"x\"}", "", "short", "d"),
            "has no label \"markt\"",
        ),
        (
            panel("sum by (endpoint) (ocx_fills_total)", "", "short", "d"),
            "label \"endpoint\"",
        ),
        (
            panel("ocx_fills_total", "{{venue}}", "short", "d"),
            "names \"venue\"",
        ),
        (
            panel("ocx_fills_total{account=~\"$acount\"}", "", "short", "d"),
            "unknown variable $acount",
        ),
        (
            panel("rate(ocx_fills_total[5m]", "", "short", "d"),
            "does not parse",
        ),
        (
            panel(
                "histogram_quantile(0.9, rate(ocx_stream_event_lag_seconds[5m]))",
                "",
                "s",
                "d",
            ),
            "ocx_stream_event_lag_seconds is not in",
        ),
        (
            panel("ocx_position_quantity / ocx_book_levels", "", "short", "d"),
            "no series pair",
        ),
        (
            panel(
                "ocx_position_quantity / on(side) ocx_book_levels",
                "",
                "short",
                "d",
            ),
            "label \"side\"",
        ),
        (
            panel("ocx_fills_total", "", "", "d"),
            "no fieldConfig.defaults.unit",
        ),
        (panel("ocx_fills_total", "", "short", ""), "no description"),
    ];
    for (p, expected) in cases {
        let mut probe = base.clone();
        probe["panels"].as_array_mut().unwrap().push(p.clone());
        let errors = check_dashboard("probe", &probe, &cat);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{} should be reported with {expected:?}, got {errors:#?}",
            p["targets"][0]["expr"]
        );
    }
}

#[test]
fn may_be_empty_names_only_existing_panels() {
    let text = read(&root().join("dashboards/may-be-empty.txt"));
    let titles: HashMap<&str, HashSet<String>> = DASHBOARDS
        .iter()
        .map(|name| {
            let d = load(name);
            let t = panels(&d)
                .into_iter()
                .filter(|p| p["type"] != "row")
                .filter_map(|p| p["title"].as_str().map(String::from))
                .collect();
            (*name, t)
        })
        .collect();
    let mut seen = HashSet::new();
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = n + 1;
        let Some((panel, reason)) = line.split_once(" -- ") else {
            errors.push(format!("line {n}: not `<file> <panel title> -- <reason>`"));
            continue;
        };
        let (file, title) = panel.split_once(' ').unwrap_or((panel, ""));
        if reason.trim().is_empty() {
            errors.push(format!("line {n}: no reason"));
        }
        match titles.get(file) {
            None => errors.push(format!("line {n}: {file:?} is not a dashboard")),
            Some(t) if !t.contains(title.trim()) => {
                errors.push(format!("line {n}: {file} has no panel {:?}", title.trim()))
            }
            Some(_) => {}
        }
        if !seen.insert(panel.to_string()) {
            errors.push(format!("line {n}: {panel:?} listed twice"));
        }
    }
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}

#[derive(Debug, Deserialize)]
struct DatasourcesFile {
    #[serde(rename = "apiVersion")]
    api_version: u32,
    datasources: Vec<Datasource>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Datasource {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    uid: String,
    url: String,
    #[serde(default)]
    is_default: bool,
}

#[derive(Debug, Deserialize)]
struct ProvidersFile {
    #[serde(rename = "apiVersion")]
    api_version: u32,
    providers: Vec<Provider>,
}

#[derive(Debug, Deserialize)]
struct Provider {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    options: ProviderOptions,
}

#[derive(Debug, Deserialize)]
struct ProviderOptions {
    path: String,
}

#[test]
fn grafana_provisioning_files_parse_and_point_where_compose_mounts() {
    let dir = root().join("deploy/grafana/provisioning");
    let ds: DatasourcesFile =
        serde_saphyr::from_str(&read(&dir.join("datasources/prometheus.yml"))).unwrap();
    assert_eq!(ds.api_version, 1);
    let [prom] = ds.datasources.as_slice() else {
        panic!("one datasource expected: {ds:?}");
    };
    assert!(!prom.name.is_empty());
    assert_eq!(
        (
            prom.kind.as_str(),
            prom.uid.as_str(),
            prom.url.as_str(),
            prom.is_default
        ),
        ("prometheus", "prometheus", "http://prometheus:9090", true)
    );

    let dash: ProvidersFile =
        serde_saphyr::from_str(&read(&dir.join("dashboards/ocx-sentinel.yml"))).unwrap();
    assert_eq!(dash.api_version, 1);
    let [provider] = dash.providers.as_slice() else {
        panic!("one provider expected: {dash:?}");
    };
    assert!(!provider.name.is_empty());
    assert_eq!(provider.kind, "file");
    assert_eq!(
        provider.options.path.trim_end_matches('/'),
        DASHBOARDS_MOUNT
    );

    // The compose file (deploy/docker-compose.yml) is written separately; once it is there, its
    // Grafana mounts must be the ones the provider above and the provisioning directory assume.
    let compose = root().join("deploy/docker-compose.yml");
    if compose.exists() {
        let doc: Value = serde_saphyr::from_str(&read(&compose)).unwrap();
        let mut mounts = Vec::new();
        for service in doc["services"].as_object().into_iter().flatten() {
            for v in service.1["volumes"].as_array().into_iter().flatten() {
                let (source, target) = match v {
                    Value::String(s) => {
                        let mut parts = s.split(':');
                        (
                            parts.next().unwrap_or("").to_string(),
                            parts.next().unwrap_or("").to_string(),
                        )
                    }
                    m => (
                        m["source"].as_str().unwrap_or("").to_string(),
                        m["target"].as_str().unwrap_or("").to_string(),
                    ),
                };
                mounts.push((
                    source.trim_end_matches('/').to_string(),
                    target.trim_end_matches('/').to_string(),
                ));
            }
        }
        for (source, target) in [
            ("../dashboards", DASHBOARDS_MOUNT),
            ("./grafana/provisioning", PROVISIONING_MOUNT),
        ] {
            assert!(
                mounts.iter().any(|(s, t)| s == source && t == target),
                "deploy/docker-compose.yml should mount {source} at {target}; it mounts {mounts:?}"
            );
        }
    }
}
