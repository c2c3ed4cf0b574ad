//! The Alertmanager-format configuration put to work: its route tree as the notifier's router, its inhibit rules and the silences as its muter, its receivers as integrations.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::amapi::AmApi;
use super::config::{self, AlertingConfig, InhibitRule};
use super::dispatch::{Fallback, GroupBy, LabelSet, NotifyAlert, RoutePlan};
use super::email::{self, Email};
use super::pipeline::{Integration, Muter, Router};
use super::webhook::{Webhook, WebhookAuth};
use crate::config::Secret;

/// Routes by the configuration's tree (Alertmanager's `Route.Match`, `continue` included).
#[derive(Debug, Clone)]
pub struct ConfigRouter(pub Arc<AlertingConfig>);

impl Router for ConfigRouter {
    fn routes(&self, labels: &LabelSet) -> Vec<RoutePlan> {
        self.0
            .route
            .match_labels(labels)
            .into_iter()
            .map(|n| RoutePlan {
                route: n.id.clone(),
                key: n.key.clone(),
                receiver: n.receiver.clone(),
                group_by: match &n.group_by {
                    config::GroupBy::All => GroupBy::All,
                    config::GroupBy::Labels(set) => GroupBy::Labels(set.iter().cloned().collect()),
                },
                group_wait: n.group_wait,
                group_interval: n.group_interval,
                repeat_interval: n.repeat_interval,
                fallback: n.fallback.as_ref().map(|(receiver, after)| Fallback {
                    receiver: receiver.clone(),
                    after: *after,
                }),
            })
            .collect()
    }

    fn route_muted(&self, route: &str, now_ms: i64) -> bool {
        self.0
            .route
            .nodes()
            .iter()
            .find(|n| n.id == route)
            .is_some_and(|n| self.0.route_muted_at(n, now_ms))
    }
}

/// Silenced (an active silence matches) or inhibited (a firing alert mutes it under an inhibit
/// rule). Inhibition is decided at the flush, over every firing alert of the latest evaluation
/// round, so an inhibiting alert and its target that start in the same round never notify the
/// target.
pub struct ConfigMuter {
    pub config: Arc<AlertingConfig>,
    pub silences: Arc<AmApi>,
}

impl std::fmt::Debug for ConfigMuter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigMuter").finish_non_exhaustive()
    }
}

impl Muter for ConfigMuter {
    fn muted(&self, alert: &NotifyAlert, firing: &[Arc<NotifyAlert>], now_ms: i64) -> bool {
        if !self
            .silences
            .silences()
            .mutes(&alert.labels, now_ms)
            .is_empty()
        {
            return true;
        }
        self.inhibited(alert, firing)
    }

    fn inhibited(&self, alert: &NotifyAlert, firing: &[Arc<NotifyAlert>]) -> bool {
        // `inhibits` already keeps an alert from muting itself (one matching both sides never
        // mutes another such alert), so every firing alert can be offered as a source.
        self.config.inhibit_rules.iter().any(|rule| {
            firing
                .iter()
                .any(|s| rule.inhibits(&s.labels, &alert.labels))
        })
    }
}

/// The firing alerts that inhibit `target` under `rules`, by fingerprint, sorted: the API's
/// `inhibitedBy`. Alertmanager's inhibitor stops at the first source it finds (which one is
/// map order); every one is listed here, so the answer does not depend on iteration order.
pub fn inhibited_by(
    rules: &[InhibitRule],
    target: &LabelSet,
    firing: &[Arc<NotifyAlert>],
) -> Vec<u64> {
    let mut out: Vec<u64> = firing
        .iter()
        .filter(|s| rules.iter().any(|r| r.inhibits(&s.labels, target)))
        .map(|a| a.fingerprint())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Why the configuration cannot be run by this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("receiver {receiver:?}: {what}")]
pub struct Unsupported {
    pub receiver: String,
    pub what: String,
}

/// Each receiver's integrations: its webhooks, then its emails (in that order, so a webhook's
/// index in the notification log does not depend on the emails beside it). Email templates
/// (the built-in ones and the `templates:` files) are parsed here, so a broken one stops the
/// start instead of every mail.
pub fn integrations(
    cfg: &AlertingConfig,
) -> Result<HashMap<String, Vec<Integration>>, Unsupported> {
    let mut out = HashMap::new();
    // Read only when some receiver mails: the files are email templates.
    let templates = match cfg.receivers.iter().find(|r| !r.emails.is_empty()) {
        Some(r) => Some(
            email::template_set(&cfg.templates).map_err(|e| Unsupported {
                receiver: r.name.clone(),
                what: e.to_string(),
            })?,
        ),
        None => None,
    };
    for r in &cfg.receivers {
        let mut list: Vec<Integration> = r
            .webhooks
            .iter()
            .map(|w| {
                let auth = match (&w.http_config.authorization, &w.http_config.basic_auth) {
                    (Some(a), _) => match &a.credentials {
                        Some(c) if a.scheme.eq_ignore_ascii_case("bearer") => {
                            WebhookAuth::Bearer(c.clone())
                        }
                        _ => WebhookAuth::None,
                    },
                    (None, Some(b)) => WebhookAuth::Basic {
                        username: b.username.clone(),
                        password: b.password.clone().unwrap_or_else(|| Secret::new("")),
                    },
                    (None, None) => WebhookAuth::None,
                };
                Integration::Webhook(Webhook {
                    url: w.url.expose().to_string(),
                    auth,
                    timeout: w.timeout.unwrap_or(Duration::from_secs(10)),
                    max_alerts: usize::try_from(w.max_alerts).unwrap_or(usize::MAX),
                    send_resolved: w.send_resolved,
                })
            })
            .collect();
        // `templates` is set whenever any receiver has emails.
        if let Some(set) = &templates {
            for (i, e) in r.emails.iter().enumerate() {
                let mail = Email::new(e, set).map_err(|err| Unsupported {
                    receiver: r.name.clone(),
                    what: format!("email_configs[{i}]: {err}"),
                })?;
                list.push(Integration::Email(mail));
            }
        }
        out.insert(r.name.clone(), list);
    }
    Ok(out)
}
