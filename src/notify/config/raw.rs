//! The Alertmanager file exactly as written: every key Alertmanager knows, unknown keys rejected by serde with file:line:column.
//!
//! Keys of Alertmanager's that ocx-sentinel does not implement (other receiver types, OAuth2,
//! the other integrations' global defaults) are read as [`Unsupported`] so the builder can name
//! each of them with its location, all at once, instead of serde stopping at the first.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;

use crate::config::Secret;

/// A key Alertmanager accepts and we refuse; only its location is kept.
pub(crate) type Unsupported = Option<Spanned<IgnoredAny>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub global: Option<Spanned<RawGlobal>>,
    pub route: Option<Spanned<RawRoute>>,
    pub receivers: Option<Vec<Spanned<RawReceiver>>>,
    pub inhibit_rules: Option<Vec<Spanned<RawInhibitRule>>>,
    pub time_intervals: Option<Vec<Spanned<RawNamedInterval>>>,
    /// The older spelling of `time_intervals`; the two share one namespace.
    pub mute_time_intervals: Option<Vec<Spanned<RawNamedInterval>>>,
    pub templates: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGlobal {
    pub resolve_timeout: Option<Spanned<String>>,
    pub http_config: Option<Spanned<RawHttpConfig>>,
    pub smtp_from: Option<Spanned<String>>,
    pub smtp_hello: Option<Spanned<String>>,
    pub smtp_smarthost: Option<Spanned<String>>,
    pub smtp_auth_username: Option<Spanned<String>>,
    pub smtp_auth_password: Option<Spanned<Secret>>,
    pub smtp_auth_password_file: Option<Spanned<String>>,
    pub smtp_auth_secret: Option<Spanned<Secret>>,
    pub smtp_auth_identity: Option<Spanned<String>>,
    pub smtp_require_tls: Option<bool>,
    pub slack_api_url: Unsupported,
    pub slack_api_url_file: Unsupported,
    pub pagerduty_url: Unsupported,
    pub opsgenie_api_url: Unsupported,
    pub opsgenie_api_key: Unsupported,
    pub opsgenie_api_key_file: Unsupported,
    pub wechat_api_url: Unsupported,
    pub wechat_api_secret: Unsupported,
    pub wechat_api_corp_id: Unsupported,
    pub victorops_api_url: Unsupported,
    pub victorops_api_key: Unsupported,
    pub victorops_api_key_file: Unsupported,
    pub telegram_api_url: Unsupported,
    pub webex_api_url: Unsupported,
}

impl RawGlobal {
    /// The integration defaults we do not implement, by name, where set.
    pub fn unsupported(&self) -> Vec<(&'static str, &Spanned<IgnoredAny>)> {
        [
            ("slack_api_url", &self.slack_api_url),
            ("slack_api_url_file", &self.slack_api_url_file),
            ("pagerduty_url", &self.pagerduty_url),
            ("opsgenie_api_url", &self.opsgenie_api_url),
            ("opsgenie_api_key", &self.opsgenie_api_key),
            ("opsgenie_api_key_file", &self.opsgenie_api_key_file),
            ("wechat_api_url", &self.wechat_api_url),
            ("wechat_api_secret", &self.wechat_api_secret),
            ("wechat_api_corp_id", &self.wechat_api_corp_id),
            ("victorops_api_url", &self.victorops_api_url),
            ("victorops_api_key", &self.victorops_api_key),
            ("victorops_api_key_file", &self.victorops_api_key_file),
            ("telegram_api_url", &self.telegram_api_url),
            ("webex_api_url", &self.webex_api_url),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
        .collect()
    }
}

/// prometheus/common's `HTTPClientConfig`, the parts a webhook needs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpConfig {
    pub authorization: Option<Spanned<RawAuthorization>>,
    pub basic_auth: Option<Spanned<RawBasicAuth>>,
    pub bearer_token: Option<Spanned<Secret>>,
    pub bearer_token_file: Option<Spanned<String>>,
    pub tls_config: Option<RawTlsConfig>,
    pub proxy_url: Option<Spanned<String>>,
    pub follow_redirects: Option<bool>,
    pub enable_http2: Option<bool>,
    pub oauth2: Unsupported,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthorization {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub credentials: Option<Spanned<Secret>>,
    pub credentials_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBasicAuth {
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<Secret>>,
    pub password_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTlsConfig {
    pub ca_file: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    pub insecure_skip_verify: Option<bool>,
    pub min_version: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub receiver: Option<Spanned<String>>,
    pub group_by: Option<Vec<Spanned<String>>>,
    #[serde(rename = "continue")]
    pub continue_: Option<Spanned<bool>>,
    pub matchers: Option<Vec<Spanned<String>>>,
    #[serde(rename = "match")]
    pub match_: Option<BTreeMap<String, Spanned<String>>>,
    pub match_re: Option<BTreeMap<String, Spanned<String>>>,
    pub group_wait: Option<Spanned<String>>,
    pub group_interval: Option<Spanned<String>>,
    pub repeat_interval: Option<Spanned<String>>,
    pub mute_time_intervals: Option<Vec<Spanned<String>>>,
    pub active_time_intervals: Option<Vec<Spanned<String>>>,
    /// ocx-sentinel's extension (Alertmanager has none, and `amtool check-config` rejects it).
    pub fallback_receiver: Option<Spanned<String>>,
    pub fallback_after: Option<Spanned<String>>,
    pub routes: Option<Vec<Spanned<RawRoute>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReceiver {
    pub name: Option<Spanned<String>>,
    pub webhook_configs: Option<Vec<Spanned<RawWebhook>>>,
    pub email_configs: Option<Vec<Spanned<RawEmail>>>,
    pub discord_configs: Unsupported,
    pub pagerduty_configs: Unsupported,
    pub slack_configs: Unsupported,
    pub opsgenie_configs: Unsupported,
    pub wechat_configs: Unsupported,
    pub pushover_configs: Unsupported,
    pub victorops_configs: Unsupported,
    pub sns_configs: Unsupported,
    pub telegram_configs: Unsupported,
    pub webex_configs: Unsupported,
    pub msteams_configs: Unsupported,
    pub msteamsv2_configs: Unsupported,
    pub jira_configs: Unsupported,
    pub rocketchat_configs: Unsupported,
    pub incidentio_configs: Unsupported,
    pub mattermost_configs: Unsupported,
}

impl RawReceiver {
    /// The receiver types set here that we cannot send to.
    pub fn unsupported(&self) -> Vec<(&'static str, &Spanned<IgnoredAny>)> {
        [
            ("discord_configs", &self.discord_configs),
            ("pagerduty_configs", &self.pagerduty_configs),
            ("slack_configs", &self.slack_configs),
            ("opsgenie_configs", &self.opsgenie_configs),
            ("wechat_configs", &self.wechat_configs),
            ("pushover_configs", &self.pushover_configs),
            ("victorops_configs", &self.victorops_configs),
            ("sns_configs", &self.sns_configs),
            ("telegram_configs", &self.telegram_configs),
            ("webex_configs", &self.webex_configs),
            ("msteams_configs", &self.msteams_configs),
            ("msteamsv2_configs", &self.msteamsv2_configs),
            ("jira_configs", &self.jira_configs),
            ("rocketchat_configs", &self.rocketchat_configs),
            ("incidentio_configs", &self.incidentio_configs),
            ("mattermost_configs", &self.mattermost_configs),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
        .collect()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub send_resolved: Option<bool>,
    pub http_config: Option<Spanned<RawHttpConfig>>,
    pub url: Option<Spanned<Secret>>,
    pub url_file: Option<Spanned<String>>,
    pub max_alerts: Option<Spanned<u64>>,
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmail {
    pub send_resolved: Option<bool>,
    pub to: Option<Spanned<String>>,
    pub from: Option<Spanned<String>>,
    pub hello: Option<Spanned<String>>,
    pub smarthost: Option<Spanned<String>>,
    pub auth_username: Option<Spanned<String>>,
    pub auth_password: Option<Spanned<Secret>>,
    pub auth_password_file: Option<Spanned<String>>,
    pub auth_secret: Option<Spanned<Secret>>,
    pub auth_identity: Option<Spanned<String>>,
    pub headers: Option<BTreeMap<String, Spanned<String>>>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub require_tls: Option<bool>,
    pub tls_config: Option<RawTlsConfig>,
    pub force_implicit_tls: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInhibitRule {
    pub source_match: Option<BTreeMap<String, Spanned<String>>>,
    pub source_match_re: Option<BTreeMap<String, Spanned<String>>>,
    pub source_matchers: Option<Vec<Spanned<String>>>,
    pub target_match: Option<BTreeMap<String, Spanned<String>>>,
    pub target_match_re: Option<BTreeMap<String, Spanned<String>>>,
    pub target_matchers: Option<Vec<Spanned<String>>>,
    pub equal: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNamedInterval {
    pub name: Option<Spanned<String>>,
    pub time_intervals: Option<Vec<Spanned<RawTimeInterval>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeInterval {
    pub times: Option<Vec<Spanned<RawTimeRange>>>,
    pub weekdays: Option<Vec<Spanned<String>>>,
    pub days_of_month: Option<Vec<Spanned<String>>>,
    pub months: Option<Vec<Spanned<String>>>,
    pub years: Option<Vec<Spanned<String>>>,
    pub location: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeRange {
    pub start_time: Option<Spanned<String>>,
    pub end_time: Option<Spanned<String>>,
}
