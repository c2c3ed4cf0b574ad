//! Securing the HTTP surface: the exporter-toolkit web configuration file (TLS, basic auth, headers, rate limit) kept current while the sidecar runs, and the hardened listener that serves the router behind it.
//!
//! - `config.rs`: the file's format: parse, validate, build ([`config::WebConfig`]).
//! - `tls.rs`: the client-certificate policies rustls has no verifier for, and SAN matching.
//! - `auth.rs`: basic auth against bcrypt hashes (cached, one bcrypt at a time) and the rate
//!   limit.
//! - `listener.rs`: the accept loop: connection cap, TLS handshake deadline, header-read and
//!   idle deadlines, graceful shutdown.
//! - `health.rs`: `/-/healthy` and `/-/ready`, and the health-only listener (`health_listen:`)
//!   that serves them on the same accept loop without the file: plain HTTP, no auth, nothing
//!   else, for probes that carry no credentials.
//!
//! [`WebState`] holds the configuration in force. The file and every file it names are
//! re-read once a second ([`watch_file`]); a change that loads replaces the configuration for
//! new connections (and new requests, for users and headers), one that does not is logged and
//! the last good configuration stays in force, as a bad rule file keeps the old rules.

pub mod auth;
pub mod config;
pub mod health;
pub mod listener;
mod tls;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::telemetry::{Telemetry, names};
use config::{WebConfig, WebConfigError, content_hash, load_traced};

pub use listener::{ListenerLimits, serve};

/// How often the file (and the certificates, keys and CAs it names) is checked for changes.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The web configuration in force, and what the listener keeps across reloads: the auth cache
/// and the rate limit's bucket.
pub struct WebState {
    current: RwLock<Arc<WebConfig>>,
    /// The file, when one was given; `None` serves plain HTTP with no checks for ever.
    path: Option<PathBuf>,
    /// What the last failed load read (path and content hash): retried only once one of them
    /// changes, so a broken file is logged once, not every second.
    failed: Mutex<Option<Vec<(PathBuf, u64)>>>,
    pub(crate) auth: auth::BasicAuth,
    pub(crate) limiter: auth::Limiter,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState")
            .field("path", &self.path)
            .field("current", &self.current())
            .finish()
    }
}

/// What a check for changes found.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Reloaded,
}

impl WebState {
    /// `loaded` is the configuration read from `path` at start (`None`, `None`: no file).
    pub fn new(path: Option<PathBuf>, loaded: Option<Arc<WebConfig>>) -> Self {
        Self {
            current: RwLock::new(loaded.unwrap_or_default()),
            path,
            failed: Mutex::new(None),
            auth: auth::BasicAuth::default(),
            limiter: auth::Limiter::default(),
        }
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<WebConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&PathBuf> {
        self.path.as_ref()
    }

    /// Re-reads the file when it, or a file it names, changed since it was loaded (or since the
    /// last failed attempt). Blocking file IO: call it off the async threads.
    pub fn check(&self) -> Result<Reload, WebConfigError> {
        let Some(path) = &self.path else {
            return Ok(Reload::Unchanged);
        };
        let changed = |sources: &[(PathBuf, u64)]| {
            sources
                .iter()
                .any(|(p, h)| content_hash(std::fs::read(p).ok().as_deref()) != *h)
        };
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        let stale = match failed.as_ref() {
            Some(sources) => changed(sources),
            None => changed(&self.current().sources),
        };
        if !stale {
            return Ok(Reload::Unchanged);
        }
        let (result, sources) = load_traced(path);
        match result {
            Ok(c) => {
                *failed = None;
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
                Ok(Reload::Reloaded)
            }
            Err(e) => {
                *failed = Some(sources);
                Err(e)
            }
        }
    }
}

/// Checks the web configuration file for changes every [`RELOAD_CHECK_INTERVAL`] until
/// shutdown, logging each reload and each failure, and keeping
/// `ocx_sentinel_web_config_last_reload_successful` up to date.
pub async fn watch_file(
    state: Arc<WebState>,
    telemetry: Telemetry,
    mut stop: watch::Receiver<bool>,
) {
    let Some(path) = state.path().cloned() else {
        return;
    };
    let ok = telemetry.gauge(names::WEB_CONFIG_RELOAD_SUCCESSFUL, &[]);
    ok.set(1.0);
    let mut tick = tokio::time::interval(RELOAD_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        let s = state.clone();
        let Ok(outcome) = tokio::task::spawn_blocking(move || s.check()).await else {
            continue;
        };
        match outcome {
            Ok(Reload::Unchanged) => {}
            Ok(_) => {
                ok.set(1.0);
                tracing::info!(file = %path.display(), config = %state.current().describe(), "web config file reloaded: new connections use it");
            }
            Err(e) => {
                ok.set(0.0);
                // The error names file:line and the field, never a secret.
                tracing::error!(file = %path.display(), error = %e, "web config file changed and no longer loads: the last good one stays in force");
            }
        }
    }
}
