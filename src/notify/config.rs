//! Alertmanager's configuration file (the subset ocx-sentinel implements): parsed, validated with Alertmanager's rules, and built into a routing tree, receivers, inhibit rules and time intervals.
//!
//! Parse, then validate, then build: `raw` is the file as written (unknown keys are serde
//! errors with file:line:column), the builder checks everything Alertmanager checks and reports
//! every problem at once, each with its location and path, and the result is [`AlertingConfig`].
//! Only webhook and email receivers are supported; any other receiver type is an error naming it.

mod build;
mod raw;
mod route;
mod timeinterval;
mod tz;

pub use route::{GroupBy, Route, RouteNode};
pub use timeinterval::{InclusiveRange, NamedTimeInterval, TimeInterval, TimeRange};
pub use tz::Zone;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Secret;
use crate::notify::matcher::{Matcher, all_match};

/// One problem with a file: where, and what, in Alertmanager's words where it has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `file:line:column` or just `file`.
    pub location: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AmConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Everything wrong with the file, one problem a line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl AmConfigError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            AmConfigError::Invalid(p) => p,
            AmConfigError::Read { .. } => &[],
        }
    }
}

/// A loaded, valid Alertmanager configuration.
#[derive(Debug, Clone)]
pub struct AlertingConfig {
    pub global: Global,
    pub route: Route,
    pub receivers: Vec<Receiver>,
    pub inhibit_rules: Vec<InhibitRule>,
    /// `time_intervals` and `mute_time_intervals` together, in file order (the older list
    /// first); names are unique across both.
    pub time_intervals: Vec<NamedTimeInterval>,
    /// `templates:` resolved against the file's directory; not read yet.
    pub templates: Vec<PathBuf>,
}

impl AlertingConfig {
    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }

    pub fn time_interval(&self, name: &str) -> Option<&NamedTimeInterval> {
        self.time_intervals.iter().find(|t| t.name == name)
    }

    /// Whether a route's notifications are held at `unix_ms`: inside one of its mute intervals,
    /// or outside all of its active intervals (when it has any), as Alertmanager's
    /// `TimeMuteStage` and `TimeActiveStage` decide.
    pub fn route_muted_at(&self, node: &RouteNode, unix_ms: i64) -> bool {
        let within = |names: &[String]| {
            names
                .iter()
                .filter_map(|n| self.time_interval(n))
                .any(|t| t.contains(unix_ms))
        };
        within(&node.mute_time_intervals)
            || (!node.active_time_intervals.is_empty() && !within(&node.active_time_intervals))
    }
}

/// `global:` after defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// How long an alert without an end time stays firing after its last update (5m).
    pub resolve_timeout: Duration,
    pub http_config: HttpConfig,
    pub smtp_from: Option<String>,
    /// Alertmanager's default is `localhost`.
    pub smtp_hello: String,
    pub smtp_smarthost: Option<HostPort>,
    pub smtp_auth_username: Option<String>,
    pub smtp_auth_password: Option<Secret>,
    pub smtp_auth_secret: Option<Secret>,
    pub smtp_auth_identity: Option<String>,
    pub smtp_require_tls: bool,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            resolve_timeout: Duration::from_secs(300),
            http_config: HttpConfig::default(),
            smtp_from: None,
            smtp_hello: "localhost".into(),
            smtp_smarthost: None,
            smtp_auth_username: None,
            smtp_auth_password: None,
            smtp_auth_secret: None,
            smtp_auth_identity: None,
            smtp_require_tls: true,
        }
    }
}

/// `host:port`, both present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: String,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The HTTP client settings of a webhook (prometheus/common's `HTTPClientConfig`, in part).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// `authorization`, or `bearer_token`/`bearer_token_file` as `Bearer` credentials.
    pub authorization: Option<Authorization>,
    pub basic_auth: Option<BasicAuth>,
    pub tls: TlsConfig,
    pub proxy_url: Option<String>,
    pub follow_redirects: bool,
    pub enable_http2: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            authorization: None,
            basic_auth: None,
            tls: TlsConfig::default(),
            proxy_url: None,
            follow_redirects: true,
            enable_http2: true,
        }
    }
}

/// `Authorization: <scheme> <credentials>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorization {
    /// `Bearer` unless set.
    pub scheme: String,
    pub credentials: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BasicAuth {
    pub username: String,
    pub password: Option<Secret>,
}

/// Accepted and kept; which of these the sender honours is its business.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
    pub min_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Receiver {
    pub name: String,
    pub webhooks: Vec<WebhookConfig>,
    pub emails: Vec<EmailConfig>,
}

impl Receiver {
    /// A receiver with no integrations drops what is routed to it (Alertmanager's "blackhole").
    pub fn is_blackhole(&self) -> bool {
        self.webhooks.is_empty() && self.emails.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// May carry a token in its query, so it is a secret (`url_file` keeps it out of the file).
    pub url: Secret,
    /// Default true.
    pub send_resolved: bool,
    /// Alerts per message; 0 is unlimited.
    pub max_alerts: u64,
    /// None: no limit beyond the sender's own.
    pub timeout: Option<Duration>,
    /// Its own, else the global one (whole, not merged field by field, as Alertmanager does).
    pub http_config: HttpConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmailConfig {
    pub to: String,
    pub from: String,
    pub hello: String,
    pub smarthost: HostPort,
    pub auth_username: Option<String>,
    pub auth_password: Option<Secret>,
    pub auth_secret: Option<Secret>,
    pub auth_identity: Option<String>,
    pub require_tls: bool,
    /// TLS from the first byte (true) or STARTTLS (false); unset, port 465 means implicit TLS.
    pub force_implicit_tls: Option<bool>,
    /// Default false.
    pub send_resolved: bool,
    /// Header names in canonical MIME form (`X-Team`), unique.
    pub headers: BTreeMap<String, String>,
    /// Templates, unrendered. `html` defaults to Alertmanager's `email.default.html`, `text` to
    /// ocx-sentinel's `email.default.text`; empty means no such part.
    pub html: String,
    pub text: String,
    pub tls: TlsConfig,
}

/// An inhibit rule: a firing alert matching `source_matchers` mutes alerts matching
/// `target_matchers` that agree with it on every `equal` label.
#[derive(Debug, Clone, PartialEq)]
pub struct InhibitRule {
    pub source_matchers: Vec<Matcher>,
    pub target_matchers: Vec<Matcher>,
    pub equal: Vec<String>,
}

impl InhibitRule {
    pub fn source_matches(&self, labels: &BTreeMap<String, String>) -> bool {
        all_match(&self.source_matchers, labels)
    }

    pub fn target_matches(&self, labels: &BTreeMap<String, String>) -> bool {
        all_match(&self.target_matchers, labels)
    }

    /// Whether both have the same value for every `equal` label; a label missing from one
    /// reads as empty, so missing on both sides (or missing on one and empty on the other) is
    /// equal, as in Alertmanager.
    pub fn equal_labels_match(
        &self,
        source: &BTreeMap<String, String>,
        target: &BTreeMap<String, String>,
    ) -> bool {
        fn get<'a>(l: &'a BTreeMap<String, String>, n: &str) -> &'a str {
            l.get(n).map_or("", String::as_str)
        }
        self.equal.iter().all(|n| get(source, n) == get(target, n))
    }

    /// Whether a firing `source` alert mutes `target` under this rule (Alertmanager's
    /// `Inhibitor.Mutes` for one pair). An alert matching both sides cannot be inhibited by
    /// another that also matches both, so two such alerts never mute each other (or
    /// themselves).
    pub fn inhibits(
        &self,
        source: &BTreeMap<String, String>,
        target: &BTreeMap<String, String>,
    ) -> bool {
        self.target_matches(target)
            && self.source_matches(source)
            && self.equal_labels_match(source, target)
            && !(self.source_matches(target) && self.target_matches(source))
    }
}

/// Reads and builds `path`; relative `_file` paths and templates are resolved against its directory.
pub fn load_file(path: &Path) -> Result<AlertingConfig, AmConfigError> {
    load_file_with_text(path).map(|(cfg, _)| cfg)
}

/// [`load_file`], also returning the text it was built from (read once: `/api/v2/status` shows
/// it masked).
pub fn load_file_with_text(path: &Path) -> Result<(AlertingConfig, String), AmConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| AmConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let cfg = parse_str(&text, &path.display().to_string())?;
    Ok((cfg, text))
}

/// Builds a configuration from `text`. `origin` names it in errors; relative `_file` paths and
/// templates are resolved against `origin`'s directory (the working directory when it has none).
pub fn parse_str(text: &str, origin: &str) -> Result<AlertingConfig, AmConfigError> {
    let base = Path::new(origin)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    parse_in(text, origin, &base)
}

/// [`parse_str`] with relative paths resolved against `base`.
pub fn parse_in(text: &str, origin: &str, base: &Path) -> Result<AlertingConfig, AmConfigError> {
    // An empty document is a file without a route, as Alertmanager reads it.
    let raw: raw::RawConfig = if text.trim().is_empty() {
        raw::RawConfig::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            let (location, message) = crate::config::locate_yaml_error(origin, &e.to_string());
            AmConfigError::Invalid(vec![Problem { location, message }])
        })?
    };
    build::build(raw, origin, base).map_err(AmConfigError::Invalid)
}

#[cfg(test)]
mod tests;
