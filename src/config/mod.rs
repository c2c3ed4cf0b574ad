//! Configuration: the YAML file's shape, command-line overrides, and validation into a runnable [`Settings`].
//!
//! Parse, then validate, then build: [`RawConfig`] is exactly what the file says (unknown keys are
//! errors, with file:line:column from serde-saphyr), [`Overrides`] is what the flags say, and
//! [`Settings::build`] merges the two and returns every problem at once, each naming its path.

mod duration;
mod forward;
mod tracing;

pub use duration::{DurationError, parse_duration};
pub use forward::{AlertmanagerTarget, ForwardAuth, ForwardSettings};
pub use tracing::{
    OtlpProtocol, RawTracing, Sampling, TraceSettings, otel_env, parse_pairs, tracing_from_env,
};

use crate::rules::runner::RuleSource;
use crate::web::ListenerLimits;
use crate::web::config::{WebConfig, WebConfigError};

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// Default API base: the host the GitBook doc set names (docs/ocx-api.md, "Conventions").
pub const DEFAULT_API_BASE: &str = "https://api.ocx.global";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9477";
/// The data dir when neither `--data-dir` nor `data_dir:` names one.
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_ACCOUNT: &str = "default";
pub const DEFAULT_COOKIE_NAME: &str = "astra_session";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
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

/// A secret (API key, session cookie). Never printed: `Debug` and `Display` show a placeholder, and
/// it has no `Serialize`, so it cannot leak through logs, errors or `/api`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The only way to read the value: at the point where it goes into a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// The file as written. Every key optional; unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<Spanned<String>>,
    /// A second, plain-HTTP listener serving only `/-/healthy` and `/-/ready`, for probes that
    /// carry no credentials; `--health-listen` replaces it. Absent: no such listener.
    pub health_listen: Option<Spanned<String>>,
    pub api_base: Option<Spanned<String>>,
    pub stream: Option<RawStream>,
    pub dedup_capacity: Option<Spanned<u64>>,
    pub max_markets: Option<Spanned<u64>>,
    pub reconcile: Option<RawReconcile>,
    pub accounts: Option<Vec<RawAccount>>,
    /// Where fill dedup, counters (and later alert state) survive restarts.
    pub data_dir: Option<Spanned<String>>,
    /// Position limits for every account, exported as series for alert rules.
    pub limits: Option<RawLimits>,
    /// Prometheus rule files (paths or globs, relative to this file).
    pub rule_files: Option<Vec<Spanned<String>>>,
    /// How often groups without an `interval` are evaluated on the timer (besides after every
    /// change).
    pub evaluation_interval: Option<Spanned<String>>,
    /// An Alertmanager-format configuration file (routes, receivers, inhibit rules), relative
    /// to this file.
    pub alerting_file: Option<Spanned<String>>,
    /// A file holding the bearer token that changes over HTTP (silences, `/-/reload`) need.
    pub api_token_file: Option<Spanned<String>>,
    /// Real Alertmanagers to post firing alerts to, as Prometheus's `alerting.alertmanagers`.
    pub alertmanagers: Option<Vec<Spanned<forward::RawAlertmanager>>>,
    /// How long a forwarded alert waits before it is sent again (Prometheus's
    /// `--rules.alert.resend-delay`).
    pub alert_resend_delay: Option<Spanned<String>>,
    /// The exporter-toolkit web configuration file (TLS, basic auth), relative to this file;
    /// `--web.config.file` replaces it.
    pub web_config_file: Option<Spanned<String>>,
    /// The HTTP listener's timeouts and connection cap.
    pub listener: Option<RawListener>,
    /// Traces over OTLP.
    pub tracing: Option<RawTracing>,
}

/// `listener:`: the HTTP listener's limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub header_read_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub tls_handshake_timeout: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<u64>>,
}

/// `limits:` (top level, or per account over it): market id, or `default`, to a limit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Absolute position size per market (`ocx_inventory_limit`).
    pub inventory: Option<BTreeMap<String, Spanned<f64>>>,
    /// Absolute position notional per market (`ocx_notional_limit`).
    pub notional: Option<BTreeMap<String, Spanned<f64>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReconcile {
    pub enabled: Option<bool>,
    pub interval: Option<Spanned<String>>,
    pub after_reconnect: Option<bool>,
    pub endpoints: Option<Vec<Spanned<String>>>,
    pub timeout: Option<Spanned<String>>,
    pub settle: Option<Spanned<String>>,
    pub max_recovery_share: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStream {
    pub heartbeat_timeout: Option<Spanned<String>>,
    pub backoff_initial: Option<Spanned<String>>,
    pub backoff_max: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub response_timeout: Option<Spanned<String>>,
    pub backoff_reset_after: Option<Spanned<String>>,
    pub max_event_bytes: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub name: Option<Spanned<String>>,
    pub api_base: Option<Spanned<String>>,
    pub api_key: Option<Secret>,
    pub api_key_file: Option<Spanned<String>>,
    /// `x-api-key` (default, docs.ocx.global) or `bearer` (`Authorization: Bearer`, the GitBook docs).
    pub api_key_header: Option<Spanned<String>>,
    pub session_cookie: Option<Secret>,
    pub session_cookie_file: Option<Spanned<String>>,
    pub cookie_name: Option<Spanned<String>>,
    pub markets: Option<Vec<Spanned<String>>>,
    pub open_only: Option<bool>,
    pub interval_ms: Option<Spanned<u64>>,
    pub depth: Option<Spanned<u64>>,
    /// Per-market limits of this account, over the top-level ones.
    pub limits: Option<RawLimits>,
}

/// What the command line says; every field overrides the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    /// `--health-listen`: replaces `health_listen:`.
    pub health_listen: Option<String>,
    pub api_base: Option<String>,
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    pub markets: Vec<String>,
    pub open_only: bool,
    pub interval_ms: Option<u64>,
    pub account: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// `--rules`: rule files or globs; when given, they replace the file's `rule_files:`.
    pub rules: Vec<PathBuf>,
    /// `--alerting`: the Alertmanager-format file; replaces `alerting_file:`.
    pub alerting: Option<PathBuf>,
    /// `--web.config.file`: the web configuration file; replaces `web_config_file:`.
    pub web_config_file: Option<PathBuf>,
    /// The config file's path, which relative `rule_files:` are resolved against (not an
    /// override: where the file came from).
    pub config_path: Option<PathBuf>,
    /// The `OTEL_*` environment variables ([`otel_env`]): tracing's defaults under the file.
    pub otel_env: BTreeMap<String, String>,
}

/// How the API key travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHeader {
    XApiKey,
    Bearer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    ApiKey { key: Secret, header: KeyHeader },
    Cookie { name: String, value: Secret },
}

#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub heartbeat_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
    /// From sending the request to the response headers: a server that accepts the connection
    /// and never answers would otherwise hold the stream down forever, uncounted.
    pub response_timeout: Duration,
    /// How long a connection must stay live (snapshot applied) before the reconnect backoff
    /// starts over: a server that sends a snapshot and hangs up must not get a reconnect storm.
    pub backoff_reset_after: Duration,
    pub max_event_bytes: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            // The exchange documents a heartbeat roughly every 15s; three missed ones is dead.
            heartbeat_timeout: Duration::from_secs(45),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(10),
            backoff_reset_after: Duration::from_secs(30),
            max_event_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AccountSettings {
    pub name: String,
    pub api_base: String,
    pub auth: Auth,
    pub markets: Vec<String>,
    pub open_only: bool,
    pub interval_ms: Option<u64>,
    pub depth: Option<u64>,
    pub limits: Limits,
}

/// An account's position limits, exported as `ocx_inventory_limit` and `ocx_notional_limit` so
/// alert rules compare against them in plain PromQL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub inventory: LimitMap,
    pub notional: LimitMap,
}

/// Limits by market, and the one for every other market.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitMap {
    pub per_market: BTreeMap<String, f64>,
    pub default: Option<f64>,
}

impl LimitMap {
    /// The limit of `market`: its own, else the default.
    pub fn get(&self, market: &str) -> Option<f64> {
        self.per_market.get(market).copied().or(self.default)
    }
}

/// A pull endpoint the reconciler reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    Positions,
    Trades,
    OrdersOpen,
    Balances,
    /// `/portfolio/me` (GitBook docs): equity and margin, where the key may read it.
    Portfolio,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Self::Positions,
        Self::Trades,
        Self::OrdersOpen,
        Self::Balances,
        Self::Portfolio,
    ];
    /// The `endpoint` label and config name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Positions => "positions",
            Self::Trades => "trades",
            Self::OrdersOpen => "orders_open",
            Self::Balances => "balances",
            Self::Portfolio => "portfolio",
        }
    }
    pub fn path(self) -> &'static str {
        match self {
            Self::Positions => "/perps/positions",
            Self::Trades => "/perps/trades",
            Self::OrdersOpen => "/perps/orders/open",
            Self::Balances => "/perps/balances",
            Self::Portfolio => "/portfolio/me",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    pub enabled: bool,
    pub interval: Duration,
    pub after_reconnect: bool,
    pub endpoints: Vec<Endpoint>,
    pub timeout: Duration,
    /// How old (by its `createdAt`) a REST trade must be before its absence from the stream
    /// counts as missed: younger ones may still be on their way down the stream.
    pub settle: Duration,
    /// The most missing fills one run may recover, as a share of the trades `/perps/trades`
    /// listed; more looks like REST keying trades differently from the stream, and the run
    /// recovers nothing rather than count every fill twice.
    pub max_recovery_share: f64,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(30),
            after_reconnect: true,
            // `/portfolio/me` is tried too and dropped for the session if it answers 401, 403
            // or 404 (it is documented only in the second doc set).
            endpoints: Endpoint::ALL.to_vec(),
            timeout: Duration::from_secs(10),
            settle: Duration::from_secs(5),
            max_recovery_share: 0.5,
        }
    }
}

/// Validated, runnable settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub stream: StreamSettings,
    pub dedup_capacity: usize,
    pub max_markets: usize,
    pub reconcile: ReconcileSettings,
    pub accounts: Vec<AccountSettings>,
    /// The data dir (`--data-dir`, `data_dir:`; default `./data`). `None` keeps everything in
    /// memory only: library users and tests that do not test restarts.
    pub data_dir: Option<PathBuf>,
    pub rules: RuleSettings,
    /// Where notifications go (Alertmanager's configuration format); `None` sends none.
    pub alerting: Option<AlertingSource>,
    /// The bearer token changes over HTTP need (`api_token_file:`); `None` leaves them open.
    pub api_token: Option<Secret>,
    /// Real Alertmanagers the firing alerts are posted to (`alertmanagers:`).
    pub forward: ForwardSettings,
    /// The HTTP listener: its web configuration file and its limits.
    pub web: WebSettings,
    /// Traces over OTLP; `None` exports none.
    pub tracing: Option<TraceSettings>,
}

/// The HTTP listener's security: the web configuration file (TLS, basic auth), loaded and
/// checked, and the listener's timeouts and connection cap.
#[derive(Debug, Clone, Default)]
pub struct WebSettings {
    /// `--web.config.file` or `web_config_file:`; `None` serves plain HTTP to anyone.
    pub config: Option<WebConfigFile>,
    pub limits: ListenerLimits,
    /// `--health-listen` or `health_listen:`: where the health-only listener binds (plain
    /// HTTP, no auth, `/-/healthy` and `/-/ready` only, the same limits); `None`: not at all.
    /// Here rather than beside `listen` because it follows the web configuration: it exists so
    /// probes keep working once that file adds basic auth or TLS.
    pub health_listen: Option<SocketAddr>,
}

/// A web configuration file and what it held at start (re-read when it changes).
#[derive(Debug, Clone)]
pub struct WebConfigFile {
    pub path: PathBuf,
    pub loaded: Arc<WebConfig>,
}

impl WebSettings {
    /// The defaults with the web configuration file at `path` (`demo --web.config.file`);
    /// errors name file:line:column and the field.
    pub fn with_file(path: &Path) -> Result<Self, ConfigError> {
        let loaded = crate::web::config::load_file(path).map_err(|e| match e {
            WebConfigError::Invalid(lines) => ConfigError::Invalid(lines),
            read @ WebConfigError::Read { .. } => ConfigError::Invalid(vec![read.to_string()]),
        })?;
        Ok(Self {
            config: Some(WebConfigFile {
                path: path.to_path_buf(),
                loaded: Arc::new(loaded),
            }),
            limits: ListenerLimits::default(),
            health_listen: None,
        })
    }
}

/// Where the notification routing comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertingSource {
    /// An Alertmanager-format file (`--alerting`, `alerting_file:`).
    File(PathBuf),
    /// `demo`'s: every alert grouped by name to a receiver that prints to stdout.
    Demo,
}

/// Alert and recording rules.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSettings {
    /// Where the rule files come from (none: no rules, the engine idles).
    pub source: RuleSource,
    /// Timer evaluation of groups without their own `interval` (default 1s).
    pub evaluation_interval: Duration,
}

impl Default for RuleSettings {
    fn default() -> Self {
        RuleSettings {
            source: RuleSource::default(),
            evaluation_interval: Duration::from_secs(1),
        }
    }
}

/// Read and parse a config file; errors name the file, line and column.
pub fn load_file(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_str(&text, &path.display().to_string())
}

pub fn parse_str(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    serde_saphyr::from_str::<RawConfig>(text).map_err(|e| parse_error(origin, &e.to_string()))
}

fn parse_error(origin: &str, rendered: &str) -> ConfigError {
    let (path, message) = locate_yaml_error(origin, rendered);
    ConfigError::Parse { path, message }
}

/// Reshape serde-saphyr's "error: line 3 column 1: msg" (followed by a source snippet) into the
/// compiler-style ("file:3:1", "msg") that editors and people read. Shared by every YAML file the
/// sidecar reads (config, rule files, rule tests), so their errors look alike.
pub(crate) fn locate_yaml_error(origin: &str, rendered: &str) -> (String, String) {
    let first = rendered.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // A hint aimed at developers embedding the parser, not at people writing config.
    let first = first
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(first);
    let located = first.strip_prefix("line ").and_then(|rest| {
        let (line, rest) = rest.split_once(" column ")?;
        let (col, msg) = rest.split_once(": ")?;
        Some((line.parse::<u64>().ok()?, col.parse::<u64>().ok()?, msg))
    });
    match located {
        Some((line, col, msg)) => (format!("{origin}:{line}:{col}"), msg.to_string()),
        None => (origin.to_string(), first.to_string()),
    }
}

fn at<T>(origin: &str, s: &Spanned<T>) -> String {
    format!("{origin}:{}:{}", s.referenced.line(), s.referenced.column())
}

fn read_secret_file(path: &str) -> Result<Secret, String> {
    std::fs::read_to_string(path)
        .map(|s| Secret(s.trim().to_string()))
        .map_err(|e| format!("cannot read {path}: {e}"))
}

impl Settings {
    /// Merge file and flags, validate everything, and report every problem at once.
    pub fn build(raw: RawConfig, flags: Overrides, origin: &str) -> Result<Settings, ConfigError> {
        let mut b = Builder {
            origin,
            flags: &flags,
            errors: Vec::new(),
        };
        let listen = b.listen(&raw);
        let stream = raw.stream.as_ref().map(|s| b.stream(s)).unwrap_or_default();
        let dedup_capacity = b.at_least(&raw.dedup_capacity, "dedup_capacity", 1000, 100_000);
        let max_markets = b.at_least(&raw.max_markets, "max_markets", 1, 500);
        let reconcile = raw
            .reconcile
            .as_ref()
            .map(|r| b.reconcile(r))
            .unwrap_or_default();
        let accounts = b.accounts(&raw);
        let data_dir = b.data_dir(&raw);
        let rules = b.rules(&raw);
        let alerting = b.alerting(&raw);
        let api_token = b.api_token(&raw);
        let forward = b.forward(&raw);
        let web = b.web(&raw, listen);
        let tracing = b.tracing(raw.tracing.as_ref());
        match listen {
            Some(listen) if b.errors.is_empty() => Ok(Settings {
                listen,
                stream,
                dedup_capacity,
                max_markets,
                reconcile,
                accounts,
                data_dir,
                rules,
                alerting,
                api_token,
                forward,
                web,
                tracing,
            }),
            _ => Err(ConfigError::Invalid(b.errors)),
        }
    }
}

/// Collects every problem while turning the raw file and the flags into settings.
struct Builder<'a> {
    origin: &'a str,
    flags: &'a Overrides,
    errors: Vec<String>,
}

impl Builder<'_> {
    fn at<T>(&self, s: &Spanned<T>) -> String {
        at(self.origin, s)
    }

    fn listen(&mut self, raw: &RawConfig) -> Option<SocketAddr> {
        let (text, whence) = match (&self.flags.listen, &raw.listen) {
            (Some(l), _) => (l.clone(), "--listen".to_string()),
            (None, Some(l)) => (l.value.clone(), format!("{}: listen", self.at(l))),
            (None, None) => (DEFAULT_LISTEN.to_string(), "listen".to_string()),
        };
        let parsed = text.parse::<SocketAddr>().ok();
        if parsed.is_none() {
            self.errors.push(format!(
                "{whence}: {text:?} is not an address like 0.0.0.0:9477"
            ));
        }
        parsed
    }

    /// `--data-dir`, else `data_dir:`, else `./data` (relative paths are relative to the
    /// working directory, as Prometheus's `--storage.tsdb.path` is).
    fn data_dir(&mut self, raw: &RawConfig) -> Option<PathBuf> {
        if let Some(d) = &self.flags.data_dir {
            return Some(d.clone());
        }
        match &raw.data_dir {
            Some(v) if v.value.trim().is_empty() => {
                self.errors.push(format!(
                    "{}: data_dir: must name a directory (leave the key out for ./data)",
                    self.at(v)
                ));
                None
            }
            Some(v) => Some(PathBuf::from(&v.value)),
            None => Some(PathBuf::from(DEFAULT_DATA_DIR)),
        }
    }

    /// `--alerting`, else `alerting_file:` resolved against the config file's directory.
    fn alerting(&mut self, raw: &RawConfig) -> Option<AlertingSource> {
        if let Some(p) = &self.flags.alerting {
            return Some(AlertingSource::File(p.clone()));
        }
        let f = raw.alerting_file.as_ref()?;
        if f.value.trim().is_empty() {
            self.errors.push(format!(
                "{}: alerting_file: must name a file (leave the key out to send no notifications)",
                self.at(f)
            ));
            return None;
        }
        Some(AlertingSource::File(match &self.flags.config_path {
            Some(c) => crate::rules::runner::relative_to(c, &f.value),
            None => PathBuf::from(&f.value),
        }))
    }

    /// `listener:`, the web configuration file and the health listener's address.
    fn web(&mut self, raw: &RawConfig, listen: Option<SocketAddr>) -> WebSettings {
        let mut limits = ListenerLimits::default();
        if let Some(l) = &raw.listener {
            let positive = Duration::from_millis(1);
            for (field, name, slot) in [
                (
                    &l.header_read_timeout,
                    "header_read_timeout",
                    &mut limits.header_read_timeout,
                ),
                (&l.idle_timeout, "idle_timeout", &mut limits.idle_timeout),
                (
                    &l.tls_handshake_timeout,
                    "tls_handshake_timeout",
                    &mut limits.tls_handshake_timeout,
                ),
            ] {
                if let Some(d) = self.duration(field, &format!("listener.{name}"), positive) {
                    *slot = d;
                }
            }
            limits.max_connections = self.at_least(
                &l.max_connections,
                "listener.max_connections",
                1,
                limits.max_connections,
            );
        }
        WebSettings {
            config: self.web_config_file(raw),
            limits,
            health_listen: self.health_listen(raw, listen),
        }
    }

    /// `--web.config.file`, else `web_config_file:` resolved against the config file's
    /// directory, read and checked now.
    fn web_config_file(&mut self, raw: &RawConfig) -> Option<WebConfigFile> {
        let (path, whence) = match (&self.flags.web_config_file, &raw.web_config_file) {
            (Some(p), _) => (p.clone(), "--web.config.file".to_string()),
            (None, Some(f)) if f.value.trim().is_empty() => {
                self.errors.push(format!(
                    "{}: web_config_file: must name a file (leave the key out to serve plain HTTP without auth)",
                    self.at(f)
                ));
                return None;
            }
            (None, Some(f)) => (
                match &self.flags.config_path {
                    Some(c) => crate::rules::runner::relative_to(c, &f.value),
                    None => PathBuf::from(&f.value),
                },
                format!("{}: web_config_file", self.at(f)),
            ),
            (None, None) => return None,
        };
        match crate::web::config::load_file(&path) {
            Ok(loaded) => Some(WebConfigFile {
                path,
                loaded: Arc::new(loaded),
            }),
            // The file's own problems name its lines; a file that cannot be read is named by
            // where it was asked for.
            Err(WebConfigError::Invalid(lines)) => {
                self.errors.extend(lines);
                None
            }
            Err(WebConfigError::Read { path, source }) => {
                self.errors
                    .push(format!("{whence}: cannot read {path}: {source}"));
                None
            }
        }
    }

    /// `--health-listen`, else `health_listen:`, else none: as `listen` is read. An address
    /// that would collide with `listen` is refused here, where the error can name both, rather
    /// than as a bind failure at start.
    fn health_listen(&mut self, raw: &RawConfig, listen: Option<SocketAddr>) -> Option<SocketAddr> {
        let (text, whence) = match (&self.flags.health_listen, &raw.health_listen) {
            (Some(l), _) => (l.clone(), "--health-listen".to_string()),
            (None, Some(l)) => (l.value.clone(), format!("{}: health_listen", self.at(l))),
            (None, None) => return None,
        };
        let Ok(addr) = text.parse::<SocketAddr>() else {
            self.errors.push(format!(
                "{whence}: {text:?} is not an address like 127.0.0.1:9478"
            ));
            return None;
        };
        // Port 0 is a fresh port for each, never a collision. The same port on the same or the
        // wildcard address is one the second bind would find taken.
        if let Some(main) = listen
            && addr.port() != 0
            && addr.port() == main.port()
            && (addr.ip() == main.ip() || addr.ip().is_unspecified() || main.ip().is_unspecified())
        {
            self.errors.push(format!(
                "{whence}: {addr} overlaps the main listener ({main}): the health listener needs a port of its own"
            ));
            return None;
        }
        Some(addr)
    }

    /// `--rules` (which replaces the file's list), else `rule_files:` resolved against the
    /// config file's directory; and `evaluation_interval:`.
    fn rules(&mut self, raw: &RawConfig) -> RuleSettings {
        let patterns = if !self.flags.rules.is_empty() {
            self.flags.rules.clone()
        } else {
            let config = self.flags.config_path.clone();
            let mut out = Vec::new();
            for f in raw.rule_files.iter().flatten() {
                if f.value.trim().is_empty() {
                    self.errors.push(format!(
                        "{}: rule_files: an entry is empty (name a file or a glob)",
                        self.at(f)
                    ));
                    continue;
                }
                out.push(match &config {
                    Some(c) => crate::rules::runner::relative_to(c, &f.value),
                    None => PathBuf::from(&f.value),
                });
            }
            out
        };
        let evaluation_interval = self
            .duration(
                &raw.evaluation_interval,
                "evaluation_interval",
                Duration::from_millis(10),
            )
            .unwrap_or(RuleSettings::default().evaluation_interval);
        RuleSettings {
            source: RuleSource::Paths(patterns),
            evaluation_interval,
        }
    }

    /// A duration field at `path`, at least `min`; `None` when absent or invalid (reported).
    fn duration(
        &mut self,
        field: &Option<Spanned<String>>,
        path: &str,
        min: Duration,
    ) -> Option<Duration> {
        let v = field.as_ref()?;
        match parse_duration(&v.value) {
            Ok(d) if d >= min => Some(d),
            Ok(_) if min == Duration::from_millis(1) => {
                self.errors
                    .push(format!("{}: {path}: must be greater than 0", self.at(v)));
                None
            }
            Ok(_) => {
                self.errors.push(format!(
                    "{}: {path}: must be at least {}ms",
                    self.at(v),
                    min.as_millis()
                ));
                None
            }
            Err(e) => {
                self.errors.push(format!("{}: {path}: {e}", self.at(v)));
                None
            }
        }
    }

    fn at_least(
        &mut self,
        field: &Option<Spanned<u64>>,
        path: &str,
        min: u64,
        default: usize,
    ) -> usize {
        match field {
            Some(v) if v.value < min => {
                self.errors
                    .push(format!("{}: {path}: must be at least {min}", self.at(v)));
                default
            }
            Some(v) => v.value as usize,
            None => default,
        }
    }

    fn stream(&mut self, s: &RawStream) -> StreamSettings {
        let mut out = StreamSettings::default();
        let positive = Duration::from_millis(1);
        for (field, name, slot) in [
            (
                &s.heartbeat_timeout,
                "heartbeat_timeout",
                &mut out.heartbeat_timeout,
            ),
            (
                &s.backoff_initial,
                "backoff_initial",
                &mut out.backoff_initial,
            ),
            (&s.backoff_max, "backoff_max", &mut out.backoff_max),
            (
                &s.connect_timeout,
                "connect_timeout",
                &mut out.connect_timeout,
            ),
            (
                &s.response_timeout,
                "response_timeout",
                &mut out.response_timeout,
            ),
            (
                &s.backoff_reset_after,
                "backoff_reset_after",
                &mut out.backoff_reset_after,
            ),
        ] {
            if let Some(d) = self.duration(field, &format!("stream.{name}"), positive) {
                *slot = d;
            }
        }
        out.max_event_bytes = self.at_least(
            &s.max_event_bytes,
            "stream.max_event_bytes",
            1024,
            out.max_event_bytes,
        );
        if out.backoff_initial > out.backoff_max {
            self.errors.push(format!(
                "{}: stream.backoff_initial ({:?}) must not exceed stream.backoff_max ({:?})",
                self.origin, out.backoff_initial, out.backoff_max
            ));
        }
        out
    }

    fn reconcile(&mut self, r: &RawReconcile) -> ReconcileSettings {
        let mut out = ReconcileSettings::default();
        out.enabled = r.enabled.unwrap_or(out.enabled);
        out.after_reconnect = r.after_reconnect.unwrap_or(out.after_reconnect);
        let floor = Duration::from_millis(100);
        if let Some(d) = self.duration(&r.interval, "reconcile.interval", floor) {
            out.interval = d;
        }
        if let Some(d) = self.duration(&r.timeout, "reconcile.timeout", floor) {
            out.timeout = d;
        }
        if let Some(d) = self.duration(&r.settle, "reconcile.settle", Duration::ZERO) {
            out.settle = d;
        }
        if let Some(v) = &r.max_recovery_share {
            // NaN fails `contains` too.
            if (0.0..=1.0).contains(&v.value) {
                out.max_recovery_share = v.value;
            } else {
                self.errors.push(format!(
                    "{}: reconcile.max_recovery_share: {} is outside 0..=1",
                    self.at(v),
                    v.value
                ));
            }
        }
        if let Some(list) = &r.endpoints {
            let mut endpoints = Vec::new();
            for e in list {
                match Endpoint::ALL.iter().find(|x| x.name() == e.value) {
                    Some(x) if !endpoints.contains(x) => endpoints.push(*x),
                    Some(_) => self.errors.push(format!(
                        "{}: reconcile.endpoints: {:?} listed twice",
                        self.at(e),
                        e.value
                    )),
                    None => self.errors.push(format!(
                        "{}: reconcile.endpoints: {:?} is not one of positions, trades, orders_open, balances, portfolio",
                        self.at(e),
                        e.value
                    )),
                }
            }
            endpoints.sort();
            out.endpoints = endpoints;
        }
        out
    }

    fn accounts(&mut self, raw: &RawConfig) -> Vec<AccountSettings> {
        let flags = self.flags;
        let default_account = [RawAccount::default()];
        let raw_accounts: &[RawAccount] = match &raw.accounts {
            Some(a) if !a.is_empty() => a,
            _ => &default_account,
        };
        // Per-account flags apply to the account named by --account, or to the only one.
        let target = match &flags.account {
            Some(name) if raw_accounts.len() > 1 => {
                let idx = raw_accounts
                    .iter()
                    .position(|a| a.name.as_ref().map(|n| n.value.as_str()) == Some(name.as_str()));
                if idx.is_none() {
                    self.errors.push(format!(
                        "--account {name}: no such account in {}",
                        self.origin
                    ));
                }
                idx
            }
            _ => Some(0),
        };
        let per_account_flags = flags.api_key.is_some()
            || flags.api_key_file.is_some()
            || !flags.markets.is_empty()
            || flags.open_only
            || flags.interval_ms.is_some();
        if raw_accounts.len() > 1 && flags.account.is_none() && per_account_flags {
            self.errors.push(format!(
                "{} defines {} accounts: name the one the flags apply to with --account",
                self.origin,
                raw_accounts.len()
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for (i, ra) in raw_accounts.iter().enumerate() {
            let acc = self.account(i, ra, target == Some(i), raw);
            if !names.insert(acc.name.clone()) {
                let loc = ra
                    .name
                    .as_ref()
                    .map(|n| self.at(n))
                    .unwrap_or_else(|| self.origin.to_string());
                self.errors.push(format!(
                    "{loc}: accounts[{i}].name: duplicate account name {:?}",
                    acc.name
                ));
            }
            out.push(acc);
        }
        out
    }

    /// One account; `is_target` says whether the per-account flags apply to it.
    fn account(
        &mut self,
        i: usize,
        ra: &RawAccount,
        is_target: bool,
        raw: &RawConfig,
    ) -> AccountSettings {
        let (flags, origin) = (self.flags, self.origin);
        let p = format!("accounts[{i}]");
        let name = match (&flags.account, &ra.name) {
            (Some(n), _) if is_target => n.clone(),
            (_, Some(n)) => n.value.clone(),
            _ => DEFAULT_ACCOUNT.to_string(),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            self.errors.push(format!(
                "{origin}: {p}.name: {name:?} must be non-empty and use only letters, digits, '-', '_' or '.'"
            ));
        }
        let api_base = self.api_base(&p, ra, raw);
        let auth = self.auth(&p, ra, is_target);

        let mut markets: Vec<String> = match &flags.markets {
            m if is_target && !m.is_empty() => m.clone(),
            _ => ra
                .markets
                .iter()
                .flatten()
                .map(|s| s.value.clone())
                .collect(),
        };
        for m in &markets {
            if m.is_empty()
                || m.len() > 64
                || m.chars().any(|c| c.is_whitespace() || c == '&' || c == '#')
            {
                self.errors
                    .push(format!("{origin}: {p}.markets: {m:?} is not a market id"));
            }
        }
        markets.sort();
        markets.dedup();

        let from_flag = is_target && flags.interval_ms.is_some();
        let interval_ms = if from_flag {
            flags.interval_ms
        } else {
            ra.interval_ms.as_ref().map(|s| s.value)
        };
        if let Some(iv) = interval_ms
            && !(100..=5000).contains(&iv)
        {
            let loc = match &ra.interval_ms {
                Some(s) if !from_flag => self.at(s),
                _ => "--interval-ms".into(),
            };
            self.errors.push(format!(
                "{loc}: {p}.interval_ms: {iv} is outside the exchange's range 100..=5000"
            ));
        }
        let depth = ra.depth.as_ref().map(|s| s.value);
        if let Some(s) = &ra.depth
            && !(1..=250).contains(&s.value)
        {
            self.errors.push(format!(
                "{}: {p}.depth: {} is outside the exchange's range 1..=250",
                self.at(s),
                s.value
            ));
        }
        let mut limits = Limits::default();
        for (raw_limits, path) in [
            (&raw.limits, "limits".to_string()),
            (&ra.limits, format!("{p}.limits")),
        ] {
            if let Some(rl) = raw_limits {
                self.limit_map(
                    &rl.inventory,
                    &format!("{path}.inventory"),
                    &mut limits.inventory,
                );
                self.limit_map(
                    &rl.notional,
                    &format!("{path}.notional"),
                    &mut limits.notional,
                );
            }
        }
        AccountSettings {
            name,
            api_base,
            auth,
            markets,
            open_only: ra.open_only.unwrap_or(false) || (is_target && flags.open_only),
            interval_ms,
            depth,
            limits,
        }
    }

    /// Reads one limits map into `into` (later maps override earlier ones per key).
    fn limit_map(
        &mut self,
        raw: &Option<BTreeMap<String, Spanned<f64>>>,
        path: &str,
        into: &mut LimitMap,
    ) {
        for (market, v) in raw.iter().flatten() {
            if !v.value.is_finite() || v.value < 0.0 {
                self.errors.push(format!(
                    "{}: {path}.{market}: a limit must be a number >= 0, got {}",
                    self.at(v),
                    v.value
                ));
                continue;
            }
            if market == "default" {
                into.default = Some(v.value);
            } else {
                into.per_market.insert(market.clone(), v.value);
            }
        }
    }

    /// The flag wins over the account's own base, which wins over the file's default.
    fn api_base(&mut self, p: &str, ra: &RawAccount, raw: &RawConfig) -> String {
        let (value, loc) = match (&self.flags.api_base, &ra.api_base, &raw.api_base) {
            (Some(f), _, _) => (f.clone(), "--api-base".to_string()),
            (None, Some(b), _) | (None, None, Some(b)) => (b.value.clone(), self.at(b)),
            (None, None, None) => (DEFAULT_API_BASE.to_string(), self.origin.to_string()),
        };
        if !(value.starts_with("http://") || value.starts_with("https://")) {
            self.errors.push(format!(
                "{loc}: {p}.api_base: {value:?} must start with http:// or https://"
            ));
        } else if value
            .split_once("://")
            .and_then(|(_, rest)| rest.split(['/', '?']).next())
            .is_some_and(|authority| authority.contains('@'))
        {
            // The stream URL is logged and put on spans; credentials travel in headers. The
            // value is not quoted for the same reason.
            self.errors.push(format!(
                "{loc}: {p}.api_base: credentials in the URL are not allowed (use api_key, api_key_file or session_cookie)"
            ));
        }
        value.trim_end_matches('/').to_string()
    }

    /// `api_token_file:`, read now: a missing or empty file stops the start, naming the file
    /// (never the token).
    fn api_token(&mut self, raw: &RawConfig) -> Option<Secret> {
        let f = raw.api_token_file.as_ref()?;
        let token = self.secret_file(&raw.api_token_file, "api_token_file")?;
        if token.expose().is_empty() {
            self.errors.push(format!(
                "{}: api_token_file: {} is empty",
                self.at(f),
                f.value
            ));
            return None;
        }
        Some(token)
    }

    fn secret_file(&mut self, field: &Option<Spanned<String>>, path: &str) -> Option<Secret> {
        let f = field.as_ref()?;
        read_secret_file(&f.value)
            .map_err(|e| self.errors.push(format!("{}: {path}: {e}", self.at(f))))
            .ok()
    }

    fn auth(&mut self, p: &str, ra: &RawAccount, is_target: bool) -> Auth {
        let (flags, origin) = (self.flags, self.origin);
        let header = match ra.api_key_header.as_ref() {
            None => KeyHeader::XApiKey,
            Some(h) => match h.value.to_ascii_lowercase().as_str() {
                "x-api-key" => KeyHeader::XApiKey,
                "bearer" | "authorization" => KeyHeader::Bearer,
                other => {
                    self.errors.push(format!(
                        "{}: {p}.api_key_header: {other:?} is not one of x-api-key, bearer",
                        self.at(h)
                    ));
                    KeyHeader::XApiKey
                }
            },
        };
        // Later sources win: the file's key, its key file, then the flags.
        let mut key = ra.api_key.clone();
        if let Some(k) = self.secret_file(&ra.api_key_file, &format!("{p}.api_key_file")) {
            key = Some(k);
        }
        if is_target {
            if let Some(f) = &flags.api_key_file {
                match read_secret_file(&f.display().to_string()) {
                    Ok(s) => key = Some(s),
                    Err(e) => self.errors.push(format!("--api-key-file: {e}")),
                }
            }
            if let Some(k) = &flags.api_key {
                key = Some(k.clone());
            }
        }
        let mut cookie = ra.session_cookie.clone();
        if let Some(c) =
            self.secret_file(&ra.session_cookie_file, &format!("{p}.session_cookie_file"))
        {
            cookie = Some(c);
        }
        // A key pasted with a trailing newline would not fit in a header and read as a
        // mysterious 401; whitespace is never part of a key or a cookie.
        let trim = |s: Option<Secret>| s.map(|s| Secret(s.expose().trim().to_string()));
        match (trim(key), trim(cookie)) {
            (Some(k), None) if k.expose().is_empty() => {
                self.errors.push(format!("{origin}: {p}.api_key: is empty"));
                Auth::None
            }
            (Some(key), None) => Auth::ApiKey { key, header },
            (None, Some(value)) => Auth::Cookie {
                name: ra
                    .cookie_name
                    .as_ref()
                    .map(|c| c.value.clone())
                    .unwrap_or_else(|| DEFAULT_COOKIE_NAME.to_string()),
                value,
            },
            (None, None) => Auth::None,
            (Some(_), Some(_)) => {
                self.errors.push(format!(
                    "{origin}: {p}: set either an API key or a session cookie, not both"
                ));
                Auth::None
            }
        }
    }
}

#[cfg(test)]
mod tests;
