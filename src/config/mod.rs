//! Configuration: the YAML file's shape, command-line overrides, and validation into a runnable [`Settings`].
//!
//! Parse, then validate, then build: [`RawConfig`] is exactly what the file says (unknown keys are
//! errors, with file:line:column from serde-saphyr), [`Overrides`] is what the flags say, and
//! [`Settings::build`] merges the two and returns every problem at once, each naming its path.

mod duration;

pub use duration::{DurationError, parse_duration};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// Default API base; the GitBook docs name this host (ocx-api-notes.md §2.0).
pub const DEFAULT_API_BASE: &str = "https://api.ocx.global";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9477";
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
    pub api_base: Option<Spanned<String>>,
    pub stream: Option<RawStream>,
    pub dedup_capacity: Option<Spanned<u64>>,
    pub max_markets: Option<Spanned<u64>>,
    pub reconcile: Option<RawReconcile>,
    pub accounts: Option<Vec<RawAccount>>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStream {
    pub heartbeat_timeout: Option<Spanned<String>>,
    pub backoff_initial: Option<Spanned<String>>,
    pub backoff_max: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
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
}

/// What the command line says; every field overrides the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub api_base: Option<String>,
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    pub markets: Vec<String>,
    pub open_only: bool,
    pub interval_ms: Option<u64>,
    pub account: Option<String>,
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

/// Reshape serde-saphyr's "error: line 3 column 1: msg" (followed by a source snippet) into the
/// compiler-style "file:3:1: msg" that editors and people read.
fn parse_error(origin: &str, rendered: &str) -> ConfigError {
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
    let (path, message) = match located {
        Some((line, col, msg)) => (format!("{origin}:{line}:{col}"), msg.to_string()),
        None => (origin.to_string(), first.to_string()),
    };
    ConfigError::Parse { path, message }
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
        let mut errors = Vec::new();
        let mut stream = StreamSettings::default();

        let listen_text = flags
            .listen
            .clone()
            .map(|l| (l, "--listen".to_string()))
            .or_else(|| {
                raw.listen
                    .as_ref()
                    .map(|l| (l.value.clone(), format!("{}: listen", at(origin, l))))
            })
            .unwrap_or_else(|| (DEFAULT_LISTEN.to_string(), "listen".into()));
        let listen = match listen_text.0.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errors.push(format!(
                    "{}: {:?} is not an address like 0.0.0.0:9477",
                    listen_text.1, listen_text.0
                ));
                None
            }
        };

        if let Some(s) = &raw.stream {
            let mut dur = |field: &Option<Spanned<String>>, name: &str, slot: &mut Duration| {
                if let Some(v) = field {
                    match parse_duration(&v.value) {
                        Ok(d) if !d.is_zero() => *slot = d,
                        Ok(_) => errors.push(format!(
                            "{}: stream.{name}: must be greater than 0",
                            at(origin, v)
                        )),
                        Err(e) => errors.push(format!("{}: stream.{name}: {e}", at(origin, v))),
                    }
                }
            };
            dur(
                &s.heartbeat_timeout,
                "heartbeat_timeout",
                &mut stream.heartbeat_timeout,
            );
            dur(
                &s.backoff_initial,
                "backoff_initial",
                &mut stream.backoff_initial,
            );
            dur(&s.backoff_max, "backoff_max", &mut stream.backoff_max);
            dur(
                &s.connect_timeout,
                "connect_timeout",
                &mut stream.connect_timeout,
            );
            if let Some(m) = &s.max_event_bytes {
                if m.value < 1024 {
                    errors.push(format!(
                        "{}: stream.max_event_bytes: must be at least 1024",
                        at(origin, m)
                    ));
                } else {
                    stream.max_event_bytes = m.value as usize;
                }
            }
            if stream.backoff_initial > stream.backoff_max {
                errors.push(format!(
                    "{origin}: stream.backoff_initial ({:?}) must not exceed stream.backoff_max ({:?})",
                    stream.backoff_initial, stream.backoff_max
                ));
            }
        }

        let dedup_capacity = match &raw.dedup_capacity {
            Some(v) if v.value < 1000 => {
                errors.push(format!(
                    "{}: dedup_capacity: must be at least 1000",
                    at(origin, v)
                ));
                100_000
            }
            Some(v) => v.value as usize,
            None => 100_000,
        };
        let max_markets = match &raw.max_markets {
            Some(v) if v.value == 0 => {
                errors.push(format!(
                    "{}: max_markets: must be at least 1",
                    at(origin, v)
                ));
                500
            }
            Some(v) => v.value as usize,
            None => 500,
        };

        let mut reconcile = ReconcileSettings::default();
        if let Some(r) = &raw.reconcile {
            if let Some(e) = r.enabled {
                reconcile.enabled = e;
            }
            if let Some(a) = r.after_reconnect {
                reconcile.after_reconnect = a;
            }
            for (field, name, slot) in [
                (&r.interval, "interval", &mut reconcile.interval),
                (&r.timeout, "timeout", &mut reconcile.timeout),
            ] {
                if let Some(v) = field {
                    match parse_duration(&v.value) {
                        Ok(d) if d >= Duration::from_millis(100) => *slot = d,
                        Ok(_) => errors.push(format!(
                            "{}: reconcile.{name}: must be at least 100ms",
                            at(origin, v)
                        )),
                        Err(e) => errors.push(format!("{}: reconcile.{name}: {e}", at(origin, v))),
                    }
                }
            }
            if let Some(v) = &r.settle {
                match parse_duration(&v.value) {
                    Ok(d) => reconcile.settle = d,
                    Err(e) => errors.push(format!("{}: reconcile.settle: {e}", at(origin, v))),
                }
            }
            if let Some(list) = &r.endpoints {
                let mut endpoints = Vec::new();
                for e in list {
                    match Endpoint::ALL.iter().find(|x| x.name() == e.value) {
                        Some(x) if !endpoints.contains(x) => endpoints.push(*x),
                        Some(_) => errors.push(format!(
                            "{}: reconcile.endpoints: {:?} listed twice",
                            at(origin, e),
                            e.value
                        )),
                        None => errors.push(format!(
                            "{}: reconcile.endpoints: {:?} is not one of positions, trades, orders_open, balances, portfolio",
                            at(origin, e),
                            e.value
                        )),
                    }
                }
                endpoints.sort();
                reconcile.endpoints = endpoints;
            }
        }

        let default_base = flags
            .api_base
            .clone()
            .or_else(|| raw.api_base.as_ref().map(|b| b.value.clone()))
            .unwrap_or_else(|| DEFAULT_API_BASE.to_string());

        let mut raw_accounts = raw.accounts.unwrap_or_default();
        if raw_accounts.is_empty() {
            raw_accounts.push(RawAccount::default());
        }
        // Per-account flags apply to the account named by --account, or to the only one.
        let target = match &flags.account {
            Some(name) if raw_accounts.len() > 1 => {
                let idx = raw_accounts
                    .iter()
                    .position(|a| a.name.as_ref().map(|n| n.value.as_str()) == Some(name.as_str()));
                if idx.is_none() {
                    errors.push(format!("--account {name}: no such account in {origin}"));
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
            errors.push(format!(
                "{origin} defines {} accounts: name the one the flags apply to with --account",
                raw_accounts.len()
            ));
        }

        let mut accounts = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, ra) in raw_accounts.into_iter().enumerate() {
            let is_target = target == Some(i);
            let p = format!("accounts[{i}]");
            let name = if is_target && flags.account.is_some() {
                flags.account.clone().unwrap_or_default()
            } else {
                ra.name
                    .as_ref()
                    .map(|n| n.value.clone())
                    .unwrap_or_else(|| DEFAULT_ACCOUNT.to_string())
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                errors.push(format!(
                    "{origin}: {p}.name: {name:?} must be non-empty and use only letters, digits, '-', '_' or '.'"
                ));
            }
            if !names.insert(name.clone()) {
                let loc = ra
                    .name
                    .as_ref()
                    .map(|n| at(origin, n))
                    .unwrap_or_else(|| origin.to_string());
                errors.push(format!("{loc}: {p}.name: duplicate account name {name:?}"));
            }
            let api_base = if flags.api_base.is_some() {
                default_base.clone()
            } else {
                ra.api_base
                    .as_ref()
                    .map(|b| b.value.clone())
                    .unwrap_or_else(|| default_base.clone())
            };
            if !(api_base.starts_with("http://") || api_base.starts_with("https://")) {
                let loc = if flags.api_base.is_some() {
                    "--api-base".to_string()
                } else {
                    ra.api_base
                        .as_ref()
                        .or(raw.api_base.as_ref())
                        .map(|b| at(origin, b))
                        .unwrap_or_else(|| origin.to_string())
                };
                errors.push(format!(
                    "{loc}: {p}.api_base: {api_base:?} must start with http:// or https://"
                ));
            }
            let api_base = api_base.trim_end_matches('/').to_string();

            let header = match ra
                .api_key_header
                .as_ref()
                .map(|h| h.value.to_ascii_lowercase())
            {
                None => KeyHeader::XApiKey,
                Some(h) if h == "x-api-key" => KeyHeader::XApiKey,
                Some(h) if h == "bearer" || h == "authorization" => KeyHeader::Bearer,
                Some(h) => {
                    let loc = ra
                        .api_key_header
                        .as_ref()
                        .map(|s| at(origin, s))
                        .unwrap_or_default();
                    errors.push(format!(
                        "{loc}: {p}.api_key_header: {h:?} is not one of x-api-key, bearer"
                    ));
                    KeyHeader::XApiKey
                }
            };
            let mut key = ra.api_key.clone();
            if let Some(f) = &ra.api_key_file {
                match read_secret_file(&f.value) {
                    Ok(s) => key = Some(s),
                    Err(e) => errors.push(format!("{}: {p}.api_key_file: {e}", at(origin, f))),
                }
            }
            if is_target {
                if let Some(f) = &flags.api_key_file {
                    match read_secret_file(&f.display().to_string()) {
                        Ok(s) => key = Some(s),
                        Err(e) => errors.push(format!("--api-key-file: {e}")),
                    }
                }
                if let Some(k) = &flags.api_key {
                    key = Some(k.clone());
                }
            }
            let mut cookie = ra.session_cookie.clone();
            if let Some(f) = &ra.session_cookie_file {
                match read_secret_file(&f.value) {
                    Ok(s) => cookie = Some(s),
                    Err(e) => {
                        errors.push(format!("{}: {p}.session_cookie_file: {e}", at(origin, f)))
                    }
                }
            }
            let cookie_name = ra
                .cookie_name
                .as_ref()
                .map(|c| c.value.clone())
                .unwrap_or_else(|| DEFAULT_COOKIE_NAME.to_string());
            // A key pasted with a trailing newline would not fit in a header and read as a
            // mysterious 401; whitespace is never part of a key or a cookie.
            let trim = |s: Option<Secret>| s.map(|s| Secret(s.expose().trim().to_string()));
            let (key, cookie) = (trim(key), trim(cookie));
            let auth = match (key, cookie) {
                (Some(k), None) if k.expose().is_empty() => {
                    errors.push(format!("{origin}: {p}.api_key: is empty"));
                    Auth::None
                }
                (Some(key), None) => Auth::ApiKey { key, header },
                (None, Some(value)) => Auth::Cookie {
                    name: cookie_name,
                    value,
                },
                (None, None) => Auth::None,
                (Some(_), Some(_)) => {
                    errors.push(format!(
                        "{origin}: {p}: set either an API key or a session cookie, not both"
                    ));
                    Auth::None
                }
            };

            let mut markets: Vec<String> = ra
                .markets
                .as_ref()
                .map(|m| m.iter().map(|s| s.value.clone()).collect())
                .unwrap_or_default();
            if is_target && !flags.markets.is_empty() {
                markets = flags.markets.clone();
            }
            for m in &markets {
                if m.is_empty()
                    || m.len() > 64
                    || m.chars().any(|c| c.is_whitespace() || c == '&' || c == '#')
                {
                    errors.push(format!("{origin}: {p}.markets: {m:?} is not a market id"));
                }
            }
            markets.sort();
            markets.dedup();

            let mut interval_ms = ra.interval_ms.as_ref().map(|s| s.value);
            if is_target && flags.interval_ms.is_some() {
                interval_ms = flags.interval_ms;
            }
            if let Some(iv) = interval_ms
                && !(100..=5000).contains(&iv)
            {
                {
                    let loc = ra
                        .interval_ms
                        .as_ref()
                        .filter(|_| !(is_target && flags.interval_ms.is_some()))
                        .map(|s| at(origin, s))
                        .unwrap_or_else(|| "--interval-ms".into());
                    errors.push(format!(
                        "{loc}: {p}.interval_ms: {iv} is outside the exchange's range 100..=5000"
                    ));
                }
            }
            let depth = ra.depth.as_ref().map(|s| s.value);
            if let (Some(d), Some(s)) = (depth, &ra.depth)
                && !(1..=250).contains(&d)
            {
                {
                    errors.push(format!(
                        "{}: {p}.depth: {d} is outside the exchange's range 1..=250",
                        at(origin, s)
                    ));
                }
            }
            let open_only = ra.open_only.unwrap_or(false) || (is_target && flags.open_only);
            accounts.push(AccountSettings {
                name,
                api_base,
                auth,
                markets,
                open_only,
                interval_ms,
                depth,
            });
        }

        if !errors.is_empty() {
            return Err(ConfigError::Invalid(errors));
        }
        Ok(Settings {
            // UNWRAP-free: listen is Some whenever errors is empty.
            listen: listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9477))),
            stream,
            dedup_capacity,
            max_markets,
            reconcile,
            accounts,
        })
    }
}

#[cfg(test)]
mod tests;
