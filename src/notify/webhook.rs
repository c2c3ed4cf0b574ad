//! The webhook integration: Alertmanager's webhook payload (version 4, plus each alert's `value`) built from a flush, and its delivery with Alertmanager's outcome rules (2xx done; 429, 5xx and network errors retried; other 4xx given up).

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::dispatch::{Flush, LabelSet, NotifyAlert};
use crate::config::Secret;
use crate::rules::gofmt;
use crate::source::retry_after_delay;

/// Go's zero time, which Alertmanager writes as `endsAt` of a firing alert.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn kv(m: &LabelSet) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// Labels (or annotations) every alert has with the same value.
pub(crate) fn common(alerts: &[NotifyAlert], pick: impl Fn(&NotifyAlert) -> &LabelSet) -> LabelSet {
    let mut it = alerts.iter();
    let Some(first) = it.next() else {
        return LabelSet::new();
    };
    let mut out = pick(first).clone();
    for a in it {
        let m = pick(a);
        out.retain(|k, v| m.get(k) == Some(v));
    }
    out
}

/// One alert of the payload.
pub fn alert_json(a: &NotifyAlert) -> Value {
    let mut o = Map::new();
    o.insert(
        "status".into(),
        Value::String(if a.resolved() { "resolved" } else { "firing" }.into()),
    );
    o.insert("labels".into(), kv(&a.labels));
    o.insert("annotations".into(), kv(&a.annotations));
    o.insert(
        "startsAt".into(),
        Value::String(gofmt::go_time_json(Some(a.starts_at_ms))),
    );
    o.insert(
        "endsAt".into(),
        Value::String(match a.ends_at_ms {
            Some(t) => gofmt::go_time_json(Some(t)),
            None => ZERO_TIME.into(),
        }),
    );
    o.insert(
        "generatorURL".into(),
        Value::String(a.generator_url.clone()),
    );
    o.insert(
        "fingerprint".into(),
        Value::String(format!("{:016x}", a.fingerprint())),
    );
    // Beyond Alertmanager: the sample that fired it; consumers that do not know it ignore it.
    o.insert("value".into(), json!(finite_or_null(a.value)));
    Value::Object(o)
}

fn finite_or_null(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The webhook body for `flush` sent to `receiver`: Alertmanager's version 4 message. With
/// `max_alerts` > 0 only that many alerts are listed and the rest counted in `truncatedAlerts`.
pub fn payload(
    flush: &Flush,
    alerts: &[NotifyAlert],
    external_url: &str,
    max_alerts: usize,
) -> Value {
    let status = if alerts.iter().any(|a| !a.resolved()) {
        "firing"
    } else {
        "resolved"
    };
    let (listed, truncated) = if max_alerts > 0 && alerts.len() > max_alerts {
        (&alerts[..max_alerts], alerts.len() - max_alerts)
    } else {
        (alerts, 0)
    };
    json!({
        "receiver": flush.receiver,
        "status": status,
        "alerts": listed.iter().map(alert_json).collect::<Vec<_>>(),
        "groupLabels": kv(&flush.group_labels),
        "commonLabels": kv(&common(alerts, |a| &a.labels)),
        "commonAnnotations": kv(&common(alerts, |a| &a.annotations)),
        "externalURL": external_url,
        "version": "4",
        "groupKey": flush.group_key,
        "truncatedAlerts": truncated,
    })
}

/// How a request authenticates (`http_config`); secrets never print.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum WebhookAuth {
    #[default]
    None,
    Bearer(Secret),
    Basic {
        username: String,
        password: Secret,
    },
}

/// One webhook integration.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub auth: WebhookAuth,
    pub timeout: Duration,
    pub max_alerts: usize,
    pub send_resolved: bool,
}

/// What a delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again: after `after` when the receiver said so (`Retry-After` on a 429 or 503).
    Retry {
        reason: &'static str,
        after: Option<Duration>,
        detail: String,
    },
    /// A 4xx other than 429: the request is wrong and sending it again will not help.
    GiveUp {
        reason: &'static str,
        detail: String,
    },
}

/// The outcome of an answered request, from its status and (for errors) its body.
pub fn classify(status: u16, retry_after: Option<&str>, body: &str) -> Outcome {
    let detail = || {
        let body: String = body.chars().take(512).collect();
        format!("HTTP {status}: {body}")
    };
    match status {
        200..=299 => Outcome::Delivered,
        429 | 500..=599 => Outcome::Retry {
            reason: if status == 429 {
                "rate_limited"
            } else {
                "server_error"
            },
            // A receiver may slow us down, not silence us: at most an hour.
            after: retry_after
                .and_then(|v| retry_after_delay(v, std::time::SystemTime::now()))
                .map(|d| d.min(Duration::from_secs(3600))),
            detail: detail(),
        },
        _ => Outcome::GiveUp {
            reason: "client_error",
            detail: detail(),
        },
    }
}

impl Webhook {
    /// POST `body` once. Errors never include the credentials (they travel in headers marked
    /// sensitive).
    pub async fn send(&self, client: &reqwest::Client, body: &Value) -> Outcome {
        self.send_traced(client, body, None).await
    }

    /// [`Webhook::send`] with a W3C `traceparent` header: a receiver that traces joins the
    /// sidecar's `notify.send` span.
    pub async fn send_traced(
        &self,
        client: &reqwest::Client,
        body: &Value,
        traceparent: Option<&str>,
    ) -> Outcome {
        let mut req = client
            .post(&self.url)
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::USER_AGENT,
                concat!("ocx-sentinel/", env!("CARGO_PKG_VERSION")),
            )
            .body(body.to_string());
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        match &self.auth {
            WebhookAuth::None => {}
            WebhookAuth::Bearer(token) => {
                let mut v =
                    reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
                v.set_sensitive(true);
                req = req.header(reqwest::header::AUTHORIZATION, v);
            }
            WebhookAuth::Basic { username, password } => {
                req = req.basic_auth(username, Some(password.expose()));
            }
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = if (200..300).contains(&status) {
                    String::new()
                } else {
                    resp.text().await.unwrap_or_default()
                };
                classify(status, retry_after.as_deref(), &body)
            }
            Err(e) => Outcome::Retry {
                reason: if e.is_timeout() { "timeout" } else { "network" },
                after: None,
                // Without the URL: it may carry a token in its query.
                detail: e.without_url().to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(market: &str, resolved: bool) -> NotifyAlert {
        NotifyAlert {
            labels: [
                ("alertname", "OcxInventoryLimitBreached"),
                ("market", market),
                ("severity", "page"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            annotations: [("summary", format!("{market} over"))]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            starts_at_ms: 1_764_092_913_120,
            ends_at_ms: resolved.then_some(1_764_092_973_000),
            value: 7.5,
            generator_url: "http://sentinel/".into(),
            trigger: None,
        }
    }

    fn flush(alerts: Vec<NotifyAlert>) -> Flush {
        Flush {
            id: r#"{}:{alertname="OcxInventoryLimitBreached"}"#.into(),
            route: "{}".into(),
            group_key: r#"{}:{alertname="OcxInventoryLimitBreached"}"#.into(),
            receiver: "team".into(),
            group_labels: [(
                "alertname".to_string(),
                "OcxInventoryLimitBreached".to_string(),
            )]
            .into_iter()
            .collect(),
            repeat_interval: Duration::from_secs(3600),
            group_interval: Duration::from_secs(300),
            alerts,
            fallback: None,
        }
    }

    #[test]
    fn the_payload_is_alertmanagers_version_4_with_values() {
        let f = flush(vec![alert("BTC-PERP", false), alert("ETH-PERP", true)]);
        let p = payload(&f, &f.alerts, "http://sentinel:9477", 0);
        assert_eq!(p["version"], "4");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["receiver"], "team");
        assert_eq!(p["truncatedAlerts"], 0);
        assert_eq!(
            p["commonLabels"],
            json!({"alertname": "OcxInventoryLimitBreached", "severity": "page"})
        );
        assert_eq!(p["commonAnnotations"], json!({}));
        assert_eq!(p["alerts"][0]["endsAt"], ZERO_TIME);
        assert_eq!(p["alerts"][0]["startsAt"], "2025-11-25T17:48:33.12Z");
        assert_eq!(p["alerts"][1]["status"], "resolved");
        assert_eq!(p["alerts"][1]["endsAt"], "2025-11-25T17:49:33Z");
        assert_eq!(p["alerts"][0]["value"], 7.5);
        assert_eq!(p["alerts"][0]["fingerprint"].as_str().unwrap().len(), 16);
        let resolved = flush(vec![alert("ETH-PERP", true)]);
        assert_eq!(
            payload(&resolved, &resolved.alerts, "", 0)["status"],
            "resolved"
        );
        let t = payload(&f, &f.alerts, "", 1);
        assert_eq!(t["alerts"].as_array().unwrap().len(), 1);
        assert_eq!(t["truncatedAlerts"], 1);
    }

    #[test]
    fn outcomes_follow_alertmanagers_retry_rules() {
        assert_eq!(classify(204, None, ""), Outcome::Delivered);
        assert!(matches!(
            classify(429, Some("7"), ""),
            Outcome::Retry { reason: "rate_limited", after: Some(d), .. } if d == Duration::from_secs(7)
        ));
        assert!(matches!(
            classify(503, Some("999999"), ""),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(3600)
        ));
        assert!(matches!(
            classify(502, None, ""),
            Outcome::Retry { after: None, .. }
        ));
        match classify(400, None, "bad field x") {
            Outcome::GiveUp { detail, .. } => assert_eq!(detail, "HTTP 400: bad field x"),
            o => panic!("{o:?}"),
        }
    }
}
