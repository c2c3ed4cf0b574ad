//! The Alertmanager API's view of the live alerts ([`LiveAlerts`], an [`AlertSource`]): the rule engine's firing alerts as the notifier gets them, each with its receivers, aggregation groups and inhibitions from the Alertmanager-format configuration, and that configuration as text with its secrets masked.
//!
//! Alertmanager lists an alert until its `endsAt` passes, so resolved alerts are not listed
//! (its API filters them out the same way). Silences are applied by the API on every listing;
//! inhibition is decided here, against the same firing set the notifier's muter sees.
//!
//! Without a notification configuration (no `--alerting`) the firing alerts are still listed,
//! `active` and silenceable, with no receivers and in no group: nothing routes them, as if no
//! route matched. Alertmanager itself cannot run without a route, so there is no behaviour of
//! its to copy; hiding them would make `amtool alert query` useless on such a sidecar.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

use super::amapi::{AlertSource, AlertState, AlertStatus, AmAlert, AmAlertGroup};
use super::config::AlertingConfig;
use super::dispatch::{Notifiable, NotifyAlert, group_labels};
use super::pipeline::Router;
use super::wire::{ConfigRouter, inhibited_by};
use crate::clock::unix_ms;

/// The live alerts for the API: what the rules runner last published, routed by `config`.
pub struct LiveAlerts {
    alerts: watch::Receiver<Notifiable>,
    /// The configuration, and its text with secrets masked (computed once per load); replaced
    /// on reload.
    loaded: std::sync::RwLock<Loaded>,
    clock: fn() -> i64,
}

#[derive(Clone, Default)]
struct Loaded {
    config: Option<Arc<AlertingConfig>>,
    original: String,
}

impl std::fmt::Debug for LiveAlerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveAlerts").finish_non_exhaustive()
    }
}

impl LiveAlerts {
    /// `alerts` is the rules runner's notifiable watch; `config` the loaded notification
    /// configuration with the text it was loaded from (masked here, never kept in the clear).
    pub fn new(
        alerts: watch::Receiver<Notifiable>,
        config: Option<(Arc<AlertingConfig>, &str)>,
    ) -> LiveAlerts {
        let (config, original) = match config {
            Some((c, text)) => (Some(c), mask_secrets(text)),
            None => (None, String::new()),
        };
        LiveAlerts {
            alerts,
            loaded: std::sync::RwLock::new(Loaded { config, original }),
            clock: unix_ms,
        }
    }

    /// Lists by a reloaded configuration from now on.
    pub fn reload(&self, config: Arc<AlertingConfig>, text: &str) {
        *self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Loaded {
            config: Some(config),
            original: mask_secrets(text),
        };
    }

    fn config(&self) -> Option<Arc<AlertingConfig>> {
        self.loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .config
            .clone()
    }

    /// The wall clock the listing reads (tests pin it).
    pub fn with_clock(mut self, clock: fn() -> i64) -> LiveAlerts {
        self.clock = clock;
        self
    }

    /// The firing alerts of the latest snapshot.
    fn firing(&self) -> Vec<Arc<NotifyAlert>> {
        let snapshot = self.alerts.borrow().clone();
        snapshot.iter().filter(|a| !a.resolved()).cloned().collect()
    }

    /// One alert as the API shows it. A firing alert the engine holds is as fresh as its last
    /// evaluation, so it is shown the way Alertmanager shows an alert posted without an end:
    /// updated now, ending `resolve_timeout` from now unless it is posted again.
    fn am_alert(&self, a: &NotifyAlert, firing: &[Arc<NotifyAlert>], now: i64) -> AmAlert {
        let (receivers, inhibitors, resolve_timeout) = match &self.config() {
            Some(cfg) => (
                ConfigRouter(cfg.clone())
                    .routes(&a.labels)
                    .into_iter()
                    .map(|p| p.receiver)
                    .collect(),
                inhibited_by(&cfg.inhibit_rules, &a.labels, firing),
                cfg.global.resolve_timeout,
            ),
            None => (
                Vec::new(),
                Vec::new(),
                super::config::Global::default().resolve_timeout,
            ),
        };
        let inhibited_by: Vec<String> = inhibitors.iter().map(|fp| format!("{fp:016x}")).collect();
        AmAlert {
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at: a.starts_at_ms,
            ends_at: now
                .saturating_add(i64::try_from(resolve_timeout.as_millis()).unwrap_or(i64::MAX)),
            updated_at: now,
            generator_url: a.generator_url.clone(),
            fingerprint: format!("{:016x}", a.fingerprint()),
            receivers,
            status: AlertStatus {
                state: if inhibited_by.is_empty() {
                    AlertState::Active
                } else {
                    AlertState::Suppressed
                },
                silenced_by: Vec::new(),
                inhibited_by,
            },
        }
    }
}

impl AlertSource for LiveAlerts {
    fn alerts(&self) -> Vec<AmAlert> {
        let firing = self.firing();
        let now = (self.clock)();
        firing
            .iter()
            .map(|a| self.am_alert(a, &firing, now))
            .collect()
    }

    /// One group per route and group-label values, as the dispatcher forms them
    /// ([`group_labels`] with each route's `group_by`).
    fn groups(&self) -> Vec<AmAlertGroup> {
        let Some(cfg) = &self.config() else {
            return Vec::new();
        };
        let firing = self.firing();
        let now = (self.clock)();
        let router = ConfigRouter(cfg.clone());
        let mut groups: BTreeMap<(String, BTreeMap<String, String>), AmAlertGroup> =
            BTreeMap::new();
        for a in &firing {
            let shown = self.am_alert(a, &firing, now);
            for plan in router.routes(&a.labels) {
                let labels = group_labels(&plan.group_by, &a.labels);
                groups
                    .entry((plan.route.clone(), labels.clone()))
                    .or_insert_with(|| AmAlertGroup {
                        labels,
                        receiver: plan.receiver.clone(),
                        alerts: Vec::new(),
                    })
                    .alerts
                    .push(shown.clone());
            }
        }
        groups.into_values().collect()
    }

    fn receivers(&self) -> Vec<String> {
        self.config()
            .iter()
            .flat_map(|c| c.receivers.iter().map(|r| r.name.clone()))
            .collect()
    }

    fn config_original(&self) -> String {
        self.loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .original
            .clone()
    }
}

/// Keys whose values Alertmanager's configuration types hold as `Secret` or `SecretURL`, which
/// it renders as `<secret>`: every receiver type's, so a key this build refuses is masked too.
/// `*_file` keys hold paths and stay.
const SECRET_KEYS: &[&str] = &[
    "password",
    "credentials",
    "bearer_token",
    "client_secret",
    "url",
    "api_url",
    "api_key",
    "api_secret",
    "auth_password",
    "auth_secret",
    "smtp_auth_password",
    "smtp_auth_secret",
    "slack_api_url",
    "opsgenie_api_key",
    "victorops_api_key",
    "wechat_api_secret",
    "routing_key",
    "service_key",
    "token",
    "user_key",
    "bot_token",
    "webhook_url",
];

/// The configuration as YAML with every secret value replaced by `<secret>`, as Alertmanager's
/// `config.original` shows it. Comments and key order are not kept (keys come out sorted). Text
/// that does not parse gives an empty string: nothing is shown rather than risk a secret.
pub fn mask_secrets(text: &str) -> String {
    if text.trim().is_empty() {
        return String::new();
    }
    let Ok(mut v) = serde_saphyr::from_str::<Value>(text) else {
        return String::new();
    };
    mask(&mut v);
    let mut out = String::new();
    emit(&v, 0, &mut out);
    out
}

fn mask(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if SECRET_KEYS.contains(&k.as_str()) && !child.is_null() {
                    *child = Value::String("<secret>".into());
                } else {
                    mask(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

/// A string as a YAML scalar: plain when it cannot be read as anything else, else JSON-quoted
/// (a JSON string is a valid YAML double-quoted scalar).
fn scalar_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '_')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "nan" | "inf"
        );
    if plain {
        s.to_string()
    } else {
        // UNWRAP: serializing a &str cannot fail.
        serde_json::to_string(s).unwrap()
    }
}

/// `v` on one line, when it is a scalar or an empty collection.
fn inline(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("null".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(scalar_str(s)),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(m) if m.is_empty() => Some("{}".into()),
        _ => None,
    }
}

/// Block-style YAML for a non-empty collection (or a scalar document), at `indent` spaces.
fn emit(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                out.push_str(&pad);
                out.push_str(&scalar_str(k));
                out.push(':');
                match inline(child) {
                    Some(s) => {
                        out.push(' ');
                        out.push_str(&s);
                        out.push('\n');
                    }
                    None => {
                        out.push('\n');
                        // A sequence may sit at its key's indentation; a map goes deeper.
                        let deeper = if child.is_array() { indent } else { indent + 2 };
                        emit(child, deeper, out);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                match inline(item) {
                    Some(s) => {
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&s);
                        out.push('\n');
                    }
                    None => {
                        // The item's block, two deeper, with its first indentation turned
                        // into the dash.
                        let mut block = String::new();
                        emit(item, indent + 2, &mut block);
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&block[indent + 2..]);
                    }
                }
            }
        }
        other => {
            if let Some(s) = inline(other) {
                out.push_str(&pad);
                out.push_str(&s);
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::amapi::{AmApi, router};
    use crate::notify::silence::Silences;

    const NOW: i64 = 1_800_000_000_000;

    fn alert(pairs: &[(&str, &str)], resolved: bool) -> NotifyAlert {
        NotifyAlert {
            labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: [("summary".to_string(), "s".to_string())].into(),
            starts_at_ms: NOW - 60_000,
            ends_at_ms: resolved.then_some(NOW - 1_000),
            value: 1.0,
            generator_url: "http://sidecar/graph".into(),
            trigger: None,
        }
    }

    const CONFIG: &str = r#"
global:
  resolve_timeout: 1m
route:
  receiver: team
  group_by: [alertname]
  routes:
    - receiver: pager
      matchers: [severity="page"]
      group_by: [alertname, market]
      continue: true
    - receiver: audit
      matchers: [market="BTC"]
    - receiver: blackhole
      matchers: [severity="none"]
receivers:
  - name: team
    webhook_configs:
      - url: 'http://hook.example/x?token=hunter2'
        http_config:
          basic_auth: {username: u, password: pa55}
  - name: pager
    webhook_configs:
      - url: http://pager.example/
        http_config:
          authorization: {credentials: t0ken}
  - name: audit
  - name: blackhole
templates: [/etc/am/extra.tmpl]
inhibit_rules:
  - source_matchers: [alertname="Huge"]
    target_matchers: [alertname="Breach"]
    equal: [market]
"#;

    fn live(snapshot: Vec<NotifyAlert>, config: bool) -> LiveAlerts {
        let (_tx, rx) = watch::channel(Arc::new(snapshot.into_iter().map(Arc::new).collect()));
        // The sender may go: the receiver keeps the last value.
        let cfg = crate::notify::config::parse_str(CONFIG, "am.yml").unwrap();
        LiveAlerts::new(rx, config.then(|| (Arc::new(cfg), CONFIG))).with_clock(|| NOW)
    }

    #[test]
    fn firing_alerts_are_listed_with_receivers_groups_and_inhibitions() {
        let breach = alert(
            &[
                ("alertname", "Breach"),
                ("market", "BTC"),
                ("severity", "page"),
            ],
            false,
        );
        let huge = alert(
            &[
                ("alertname", "Huge"),
                ("market", "BTC"),
                ("severity", "page"),
            ],
            false,
        );
        let other = alert(&[("alertname", "Breach"), ("market", "ETH")], false);
        let gone = alert(&[("alertname", "Old")], true);
        let l = live(
            vec![breach.clone(), huge.clone(), other.clone(), gone],
            true,
        );
        let mut got = l.alerts();
        got.sort_by(|a, b| a.labels.cmp(&b.labels));
        let names: Vec<(&str, &str)> = got
            .iter()
            .map(|a| (a.labels["alertname"].as_str(), a.labels["market"].as_str()))
            .collect();
        assert_eq!(
            names,
            [("Breach", "BTC"), ("Breach", "ETH"), ("Huge", "BTC")],
            "resolved alerts are not listed"
        );
        let b = &got[0];
        assert_eq!(
            b.receivers,
            ["pager", "audit"],
            "continue: both routes, in tree order"
        );
        assert_eq!(b.status.state, AlertState::Suppressed);
        assert_eq!(
            b.status.inhibited_by,
            [format!("{:016x}", huge.fingerprint())]
        );
        assert_eq!(b.fingerprint, format!("{:016x}", breach.fingerprint()));
        assert_eq!(
            (b.starts_at, b.ends_at, b.updated_at),
            (NOW - 60_000, NOW + 60_000, NOW)
        );
        assert_eq!(got[1].receivers, ["team"]);
        assert_eq!(
            got[1].status.state,
            AlertState::Active,
            "other market: not inhibited"
        );
        assert!(got[2].status.inhibited_by.is_empty());

        let groups = l.groups();
        let mut shown: Vec<(String, Vec<String>, usize)> = groups
            .iter()
            .map(|g| {
                (
                    g.receiver.clone(),
                    g.labels.values().cloned().collect(),
                    g.alerts.len(),
                )
            })
            .collect();
        shown.sort();
        assert_eq!(
            shown,
            [
                ("audit".to_string(), vec!["Breach".to_string()], 1),
                ("audit".to_string(), vec!["Huge".to_string()], 1),
                (
                    "pager".to_string(),
                    vec!["Breach".to_string(), "BTC".to_string()],
                    1
                ),
                (
                    "pager".to_string(),
                    vec!["Huge".to_string(), "BTC".to_string()],
                    1
                ),
                ("team".to_string(), vec!["Breach".to_string()], 1),
            ]
        );
        assert_eq!(l.receivers(), ["team", "pager", "audit", "blackhole"]);
    }

    #[test]
    fn without_a_configuration_alerts_list_unrouted() {
        let l = live(vec![alert(&[("alertname", "A")], false)], false);
        let got = l.alerts();
        assert_eq!(got.len(), 1);
        assert!(got[0].receivers.is_empty());
        assert_eq!(got[0].status.state, AlertState::Active);
        assert!(l.groups().is_empty());
        assert!(l.receivers().is_empty());
        assert_eq!(l.config_original(), "");
    }

    #[test]
    fn the_original_config_masks_every_secret_and_reads_back() {
        let l = live(Vec::new(), true);
        let text = l.config_original();
        for secret in ["hunter2", "pa55", "t0ken", "hook.example", "pager.example"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        assert!(text.contains("/etc/am/extra.tmpl"), "paths stay:\n{text}");
        let back: Value = serde_saphyr::from_str(&text).unwrap();
        let mut want: Value = serde_saphyr::from_str(CONFIG).unwrap();
        mask(&mut want);
        assert_eq!(back, want, "{text}");
        assert_eq!(
            back["receivers"][0]["webhook_configs"][0]["url"],
            "<secret>"
        );
        assert_eq!(
            back["receivers"][0]["webhook_configs"][0]["http_config"]["basic_auth"]["password"],
            "<secret>"
        );
        assert_eq!(
            back["route"]["routes"][0]["matchers"][0],
            "severity=\"page\""
        );
        assert_eq!(mask_secrets("{bad"), "");
        // Shapes the emitter must get right: nested sequences, empty collections, odd strings.
        let odd = "a: [[1, 2], []]\nb: {}\nc: ['yes', '', ' x', 'a: b', '#c', \"q\\\"\"]\nd: [{e: 1, f: [x]}]\n";
        let back: Value = serde_saphyr::from_str(&mask_secrets(odd)).unwrap();
        let want: Value = serde_saphyr::from_str(odd).unwrap();
        assert_eq!(back, want, "{}", mask_secrets(odd));
    }

    #[tokio::test]
    async fn the_api_lists_them_with_silences_applied() {
        let l = live(
            vec![alert(&[("alertname", "Breach"), ("market", "ETH")], false)],
            true,
        );
        let api = Arc::new(AmApi::new(Silences::default(), Arc::new(l), None).with_clock(|| NOW));
        let app = router(api);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let get = |path: &'static str| async move {
            let text = reqwest::get(format!("http://{addr}{path}"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            serde_json::from_str::<Value>(&text).unwrap()
        };
        let body = get("/api/v2/alerts").await;
        assert_eq!(body[0]["labels"]["market"], "ETH");
        assert_eq!(body[0]["receivers"], serde_json::json!([{"name": "team"}]));
        assert_eq!(body[0]["status"]["state"], "active");
        let status = get("/api/v2/status").await;
        let original = status["config"]["original"].as_str().unwrap();
        assert!(original.contains("<secret>") && !original.contains("hunter2"));
    }
}
