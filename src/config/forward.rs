//! `alertmanagers:` and `alert_resend_delay:`: where firing alerts are forwarded to real Alertmanagers, in the shape of Prometheus's `alerting.alertmanagers` (static targets only).
//!
//! The key is `alertmanagers:` at the top level, not Prometheus's `alerting:`, because
//! `alerting_file:` (and the `alerting` name in the code and the flags) already means the
//! Alertmanager-format notification configuration the sidecar runs itself; the list's entries
//! are Prometheus's `alertmanager_config` with the keys a static setup uses.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Builder, Secret, read_secret_file};

/// Prometheus's `--rules.alert.resend-delay` default.
pub const DEFAULT_RESEND_DELAY: Duration = Duration::from_secs(60);
/// Prometheus's `alertmanager_config.timeout` default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One `alertmanagers:` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertmanager {
    pub static_configs: Option<Vec<RawStaticConfig>>,
    /// `http` (default) or `https`.
    pub scheme: Option<Spanned<String>>,
    /// Put in front of `/api/v2/alerts`, for an Alertmanager behind a path.
    pub path_prefix: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    /// Only `v2` (Alertmanager 0.16 and later; v1 is gone from both sides).
    pub api_version: Option<Spanned<String>>,
    pub basic_auth: Option<Spanned<RawBasicAuth>>,
    pub authorization: Option<Spanned<RawAuthorization>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStaticConfig {
    pub targets: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthorization {
    /// `Bearer` unless set.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub credentials: Option<Secret>,
    pub credentials_file: Option<Spanned<String>>,
}

/// How requests to an Alertmanager authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardAuth {
    None,
    Basic {
        username: String,
        password: Secret,
    },
    /// `Authorization: <scheme> <credentials>`.
    Authorization {
        scheme: String,
        credentials: Secret,
    },
}

/// One Alertmanager alerts are posted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertmanagerTarget {
    /// The full push URL (`scheme://target/prefix/api/v2/alerts`); also the `alertmanager`
    /// label, as in Prometheus. Never holds credentials (targets with `@` are refused).
    pub url: String,
    pub timeout: Duration,
    pub auth: ForwardAuth,
}

/// Alert forwarding: none when `alertmanagers` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSettings {
    pub alertmanagers: Vec<AlertmanagerTarget>,
    /// How long a sent alert waits before it is sent again while it fires (or, resolved, while
    /// it is retained).
    pub resend_delay: Duration,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        ForwardSettings {
            alertmanagers: Vec::new(),
            resend_delay: DEFAULT_RESEND_DELAY,
        }
    }
}

/// `path.Join("/", prefix, "/api/v2/alerts")`: one leading slash, no doubled or trailing ones.
fn push_path(prefix: &str) -> String {
    let mut out = String::new();
    for part in prefix.split('/').chain(["api", "v2", "alerts"]) {
        if !part.is_empty() && part != "." {
            out.push('/');
            out.push_str(part);
        }
    }
    out
}

/// Whether `t` is a plain `host:port` (or `host`, or `[v6]:port`), as Prometheus's
/// `CheckTargetAddress` wants it: no scheme, path or credentials.
fn valid_target(t: &str) -> bool {
    !t.is_empty()
        && !t
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '/' | '@' | '?' | '#'))
        && reqwest::Url::parse(&format!("http://{t}/")).is_ok_and(|u| u.host().is_some())
}

impl Builder<'_> {
    /// `alertmanagers:` and `alert_resend_delay:`.
    pub(super) fn forward(&mut self, raw: &super::RawConfig) -> ForwardSettings {
        let mut out = ForwardSettings::default();
        if let Some(d) = self.duration(
            &raw.alert_resend_delay,
            "alert_resend_delay",
            Duration::from_millis(100),
        ) {
            out.resend_delay = d;
        }
        for (i, am) in raw.alertmanagers.iter().flatten().enumerate() {
            let p = format!("alertmanagers[{i}]");
            self.alertmanager(&p, &am.value, &mut out.alertmanagers);
            if am.value.static_configs.iter().flatten().count() == 0 {
                self.errors.push(format!(
                    "{}: {p}: needs static_configs with targets (service discovery is not supported)",
                    self.at(am)
                ));
            }
        }
        out
    }

    /// One entry's targets, appended to `out` (the earlier entries' targets).
    fn alertmanager(&mut self, p: &str, am: &RawAlertmanager, out: &mut Vec<AlertmanagerTarget>) {
        let scheme = match &am.scheme {
            None => "http".to_string(),
            Some(s) if s.value == "http" || s.value == "https" => s.value.clone(),
            Some(s) => {
                self.errors.push(format!(
                    "{}: {p}.scheme: {:?} is not http or https",
                    self.at(s),
                    s.value
                ));
                "http".to_string()
            }
        };
        if let Some(v) = &am.api_version
            && v.value != "v2"
        {
            self.errors.push(format!(
                "{}: {p}.api_version: {:?} is not supported (only v2)",
                self.at(v),
                v.value
            ));
        }
        let timeout = self
            .duration(
                &am.timeout,
                &format!("{p}.timeout"),
                Duration::from_millis(1),
            )
            .unwrap_or(DEFAULT_TIMEOUT);
        let path = push_path(am.path_prefix.as_ref().map_or("", |s| s.value.as_str()));
        let auth = self.forward_auth(p, am);
        for (j, sc) in am.static_configs.iter().flatten().enumerate() {
            for t in sc.targets.iter().flatten() {
                if !valid_target(&t.value) {
                    self.errors.push(format!(
                        "{}: {p}.static_configs[{j}].targets: {:?} is not a host:port",
                        self.at(t),
                        t.value
                    ));
                    continue;
                }
                let url = format!("{scheme}://{}{path}", t.value);
                // Twice would post every alert twice, under one `alertmanager` series.
                if out.iter().any(|o| o.url == url) {
                    self.errors.push(format!(
                        "{}: {p}.static_configs[{j}].targets: {url} is listed twice",
                        self.at(t)
                    ));
                    continue;
                }
                out.push(AlertmanagerTarget {
                    url,
                    timeout,
                    auth: auth.clone(),
                });
            }
        }
    }

    fn forward_auth(&mut self, p: &str, am: &RawAlertmanager) -> ForwardAuth {
        match (&am.basic_auth, &am.authorization) {
            (Some(b), Some(_)) => {
                self.errors.push(format!(
                    "{}: {p}: at most one of basic_auth and authorization may be set",
                    self.at(b)
                ));
                ForwardAuth::None
            }
            (Some(b), None) => {
                let password = self.secret_or_file(
                    &b.value.password,
                    &b.value.password_file,
                    &format!("{p}.basic_auth"),
                    "password",
                );
                ForwardAuth::Basic {
                    username: b.value.username.clone().unwrap_or_default(),
                    password: password.unwrap_or_else(|| Secret::new("")),
                }
            }
            (None, Some(a)) => {
                let scheme = a.value.kind.clone().unwrap_or_else(|| "Bearer".into());
                if scheme.eq_ignore_ascii_case("basic") {
                    self.errors.push(format!(
                        "{}: {p}.authorization.type: Basic is not allowed here (use basic_auth)",
                        self.at(a)
                    ));
                }
                if a.value.credentials.is_none() && a.value.credentials_file.is_none() {
                    self.errors.push(format!(
                        "{}: {p}.authorization: needs credentials or credentials_file",
                        self.at(a)
                    ));
                }
                match self.secret_or_file(
                    &a.value.credentials,
                    &a.value.credentials_file,
                    &format!("{p}.authorization"),
                    "credentials",
                ) {
                    Some(credentials) => ForwardAuth::Authorization {
                        scheme,
                        credentials,
                    },
                    None => ForwardAuth::None,
                }
            }
            (None, None) => ForwardAuth::None,
        }
    }

    /// `key` or `key_file` of the section at `path` (the file read now, trimmed), not both;
    /// `None` when neither is set or on an error (reported).
    fn secret_or_file(
        &mut self,
        inline: &Option<Secret>,
        file: &Option<Spanned<String>>,
        path: &str,
        key: &str,
    ) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(f)) => {
                self.errors.push(format!(
                    "{}: {path}: set {key} or {key}_file, not both",
                    self.at(f)
                ));
                None
            }
            (Some(s), None) => Some(Secret::new(s.expose().trim())),
            (None, Some(f)) => match read_secret_file(&f.value) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.errors
                        .push(format!("{}: {path}.{key}_file: {e}", self.at(f)));
                    None
                }
            },
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_paths_join_like_go() {
        assert_eq!(push_path(""), "/api/v2/alerts");
        assert_eq!(push_path("/"), "/api/v2/alerts");
        assert_eq!(push_path("am"), "/am/api/v2/alerts");
        assert_eq!(push_path("/am/"), "/am/api/v2/alerts");
        assert_eq!(push_path("//a//b/"), "/a/b/api/v2/alerts");
    }

    #[test]
    fn targets_are_plain_host_ports() {
        for ok in ["127.0.0.1:9093", "am", "am.example:9093", "[::1]:9093"] {
            assert!(valid_target(ok), "{ok}");
        }
        for bad in [
            "",
            "http://am:9093",
            "am:9093/x",
            "user:pw@am:9093",
            "am :9093",
            "am:port",
        ] {
            assert!(!valid_target(bad), "{bad}");
        }
    }
}
