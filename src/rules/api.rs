//! Prometheus's HTTP API shapes for the live rules: the `/api/v1/rules` and `/api/v1/alerts` bodies, built from the engine, so tools that read a Prometheus read the sidecar.

use serde_json::{Map, Value, json};

use super::alert::{Alert, AlertState};
use super::engine::Engine;
use super::file::Rule;
use super::gofmt;
use super::promql::Labels;

/// `{"status":"success","data":…}`.
pub fn success(data: Value) -> Value {
    json!({"status": "success", "data": data})
}

/// `{"status":"error","errorType":"bad_data","error":…}` (with HTTP 400).
pub fn bad_data(error: &str) -> Value {
    json!({"status": "error", "errorType": "bad_data", "error": error})
}

/// The filters of `/api/v1/rules`, as Prometheus reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RulesQuery {
    alerts: bool,
    records: bool,
    names: Vec<String>,
    groups: Vec<String>,
    files: Vec<String>,
    exclude_alerts: bool,
}

impl RulesQuery {
    /// From the query string's pairs; an invalid `type` or `exclude_alerts` is an error in
    /// Prometheus's words.
    pub fn parse(pairs: &[(String, String)]) -> Result<RulesQuery, String> {
        let get = |k: &str| pairs.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v);
        let all = |k: &str| -> Vec<String> {
            pairs
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let typ = get("type")
            .map(|t| t.to_ascii_lowercase())
            .unwrap_or_default();
        if !matches!(typ.as_str(), "" | "alert" | "record") {
            return Err(format!(
                "invalid parameter \"type\": not supported value {typ:?}"
            ));
        }
        let exclude_alerts = match get("exclude_alerts").map(|v| v.to_ascii_lowercase()) {
            None => false,
            Some(v) if v.is_empty() => false,
            Some(v) => parse_go_bool(&v).ok_or_else(|| {
                format!(
                    "invalid parameter \"exclude_alerts\": error converting exclude_alerts: strconv.ParseBool: parsing {v:?}: invalid syntax"
                )
            })?,
        };
        Ok(RulesQuery {
            alerts: typ != "record",
            records: typ != "alert",
            names: all("rule_name[]"),
            groups: all("rule_group[]"),
            files: all("file[]"),
            exclude_alerts,
        })
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "true" => Some(true),
        "0" | "f" | "false" => Some(false),
        _ => None,
    }
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect(),
    )
}

fn pairs_json<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    Value::Object(m)
}

/// One alert as Prometheus's API shows it.
pub fn alert_json(a: &Alert) -> Value {
    let mut o = Map::new();
    o.insert("labels".into(), labels_json(&a.labels));
    o.insert(
        "annotations".into(),
        pairs_json(a.annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    );
    o.insert("state".into(), Value::String(a.state.as_str().into()));
    o.insert(
        "activeAt".into(),
        Value::String(gofmt::go_time_json(Some(a.active_at_ms))),
    );
    if let Some(since) = a.keep_firing_since_ms {
        o.insert(
            "keepFiringSince".into(),
            Value::String(gofmt::go_time_json(Some(since))),
        );
    }
    o.insert(
        "value".into(),
        Value::String(gofmt::format_e(a.value, None, false)),
    );
    Value::Object(o)
}

/// Group indices in the order Prometheus lists groups: by file, then by name.
fn group_order(engine: &Engine) -> Vec<usize> {
    let groups = engine.groups();
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&groups[a].group, &groups[b].group);
        (&a.file, &a.name).cmp(&(&b.file, &b.name))
    });
    order
}

/// `/api/v1/alerts`'s data: every pending and firing alert, groups in Prometheus's order
/// (file, then name), rules in file order.
pub fn alerts(engine: &Engine) -> Value {
    let mut list = Vec::new();
    for gi in group_order(engine) {
        let g = &engine.groups()[gi];
        for ri in 0..g.group.rules.len() {
            if let Some(held) = g.state.alerts(ri) {
                list.extend(held.active().map(alert_json));
            }
        }
    }
    json!({ "alerts": list })
}

/// `/api/v1/rules`'s data: groups by file, then name (as Prometheus lists them), each with its
/// rules in order; groups left without rules by the filters are left out.
pub fn rules(engine: &Engine, q: &RulesQuery) -> Value {
    let mut groups = Vec::new();
    for gi in group_order(engine) {
        let g = &engine.groups()[gi];
        if !q.groups.is_empty() && !q.groups.contains(&g.group.name) {
            continue;
        }
        if !q.files.is_empty() && !q.files.contains(&g.group.file) {
            continue;
        }
        let mut rules = Vec::new();
        for (ri, rule) in g.group.rules.iter().enumerate() {
            if !q.names.is_empty() && !q.names.iter().any(|n| n == rule.name()) {
                continue;
            }
            let status = engine.status(gi, ri).cloned().unwrap_or_default();
            let mut o = Map::new();
            match rule {
                Rule::Alerting(a) => {
                    if !q.alerts {
                        continue;
                    }
                    let held = g.state.alerts(ri);
                    let state = held.map_or(AlertState::Inactive, |h| h.state());
                    o.insert("state".into(), Value::String(state.as_str().into()));
                    o.insert("name".into(), Value::String(a.name.clone()));
                    o.insert("query".into(), Value::String(a.expr.as_str().into()));
                    o.insert("duration".into(), json!(a.hold.as_secs_f64()));
                    o.insert(
                        "keepFiringFor".into(),
                        json!(a.keep_firing_for.as_secs_f64()),
                    );
                    o.insert(
                        "labels".into(),
                        pairs_json(a.labels.iter().map(|(k, t)| (k.as_str(), t.source()))),
                    );
                    o.insert(
                        "annotations".into(),
                        pairs_json(a.annotations.iter().map(|(k, t)| (k.as_str(), t.source()))),
                    );
                    let alerts: Value = if q.exclude_alerts {
                        Value::Null
                    } else {
                        Value::Array(
                            held.into_iter()
                                .flat_map(|h| h.active())
                                .map(alert_json)
                                .collect(),
                        )
                    };
                    o.insert("alerts".into(), alerts);
                }
                Rule::Recording(r) => {
                    if !q.records {
                        continue;
                    }
                    o.insert("name".into(), Value::String(r.name.clone()));
                    o.insert("query".into(), Value::String(r.expr.as_str().into()));
                    o.insert("labels".into(), labels_json(&r.labels));
                }
            }
            o.insert(
                "health".into(),
                Value::String(status.health.as_str().into()),
            );
            if let Some(e) = &status.last_error {
                o.insert("lastError".into(), Value::String(e.clone()));
            }
            o.insert("evaluationTime".into(), json!(status.eval_seconds));
            o.insert(
                "lastEvaluation".into(),
                Value::String(gofmt::go_time_json(status.last_eval_ms)),
            );
            o.insert(
                "type".into(),
                Value::String(
                    match rule {
                        Rule::Alerting(_) => "alerting",
                        Rule::Recording(_) => "recording",
                    }
                    .into(),
                ),
            );
            rules.push(Value::Object(o));
        }
        if rules.is_empty() {
            continue;
        }
        groups.push(json!({
            "name": g.group.name,
            "file": g.group.file,
            "rules": rules,
            "interval": g.interval.as_secs_f64(),
            "limit": g.group.limit,
            "evaluationTime": g.last_seconds,
            "lastEvaluation": gofmt::go_time_json(g.last_eval_ms),
        }));
    }
    json!({ "groups": groups })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rules::file::parse_str;
    use crate::telemetry::{Telemetry, names};

    const RULES: &str = r#"
groups:
  - name: limits
    interval: 5s
    rules:
      - record: market:abs_position
        expr: abs(ocx_position_quantity)
        labels: {source: sentinel}
      - alert: Big
        expr: ocx_position_quantity > 5
        for: 1m
        keep_firing_for: 30s
        labels: {severity: '{{ if gt $value 10.0 }}page{{ else }}ticket{{ end }}'}
        annotations: {summary: '{{ $labels.market }} holds {{ $value }}'}
"#;

    fn engine() -> (Telemetry, Engine) {
        let t = Telemetry::new();
        let mut e = Engine::new(&t, Duration::from_secs(1), "");
        e.load(vec![parse_str(RULES, "r.yml").unwrap()], 0);
        (t, e)
    }

    #[test]
    fn rules_and_alerts_in_prometheus_shapes() {
        let (t, mut e) = engine();
        let before = rules(&e, &RulesQuery::parse(&[]).unwrap());
        assert_eq!(before["groups"][0]["rules"][1]["health"], "unknown");
        assert_eq!(
            before["groups"][0]["rules"][1]["lastEvaluation"],
            "0001-01-01T00:00:00Z"
        );
        t.gauge(
            names::POSITION_QUANTITY,
            &[("account", "a"), ("market", "BTC-PERP")],
        )
        .set(7.0);
        e.evaluate(1_764_092_913_120, false);
        let r = rules(&e, &RulesQuery::parse(&[]).unwrap());
        let g = &r["groups"][0];
        assert_eq!(g["name"], "limits");
        assert_eq!(g["file"], "r.yml");
        assert_eq!(g["interval"], 5.0);
        assert_eq!(g["limit"], 0);
        assert_eq!(g["lastEvaluation"], "2025-11-25T17:48:33.12Z");
        let rec = &g["rules"][0];
        assert_eq!(rec["type"], "recording");
        assert_eq!(rec["labels"], json!({"source": "sentinel"}));
        assert_eq!(rec["health"], "ok");
        assert!(rec.get("lastError").is_none());
        let al = &g["rules"][1];
        assert_eq!(al["type"], "alerting");
        assert_eq!(al["state"], "pending");
        assert_eq!(al["duration"], 60.0);
        assert_eq!(al["keepFiringFor"], 30.0);
        assert_eq!(
            al["labels"]["severity"],
            "{{ if gt $value 10.0 }}page{{ else }}ticket{{ end }}"
        );
        assert_eq!(
            al["alerts"][0],
            json!({
                "labels": {"alertname": "Big", "account": "a", "market": "BTC-PERP", "severity": "ticket"},
                "annotations": {"summary": "BTC-PERP holds 7"},
                "state": "pending",
                "activeAt": "2025-11-25T17:48:33.12Z",
                "value": "7e+00",
            })
        );
        assert_eq!(alerts(&e)["alerts"][0], al["alerts"][0]);

        let only_records = RulesQuery::parse(&[("type".into(), "record".into())]).unwrap();
        let r = rules(&e, &only_records);
        assert_eq!(r["groups"][0]["rules"].as_array().unwrap().len(), 1);
        let none = RulesQuery::parse(&[("rule_group[]".into(), "other".into())]).unwrap();
        assert_eq!(rules(&e, &none)["groups"], json!([]));
        let excl = RulesQuery::parse(&[("exclude_alerts".into(), "true".into())]).unwrap();
        assert_eq!(
            rules(&e, &excl)["groups"][0]["rules"][1]["alerts"],
            Value::Null
        );
        assert!(RulesQuery::parse(&[("type".into(), "x".into())]).is_err());
        assert!(RulesQuery::parse(&[("exclude_alerts".into(), "yes".into())]).is_err());
    }
}
