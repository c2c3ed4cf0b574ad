//! Validation and building: Alertmanager's load-time checks (config.go, notifiers.go, timeinterval.go, prometheus/common's HTTP client config) on the raw file, every problem collected with its location.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Spanned;

use super::raw::{
    RawAuthorization, RawConfig, RawEmail, RawGlobal, RawHttpConfig, RawInhibitRule,
    RawNamedInterval, RawReceiver, RawRoute, RawTlsConfig, RawWebhook,
};
use super::route::{GroupBy, Route, RouteNode, matchers_string, sort_matchers};
use super::timeinterval::{
    self, InclusiveRange, NamedTimeInterval, TimeInterval, parse_days_of_month, parse_months,
    parse_weekdays, parse_years,
};
use super::tz::Zone;
use super::{
    AlertingConfig, Authorization, BasicAuth, EmailConfig, Global, HostPort, HttpConfig,
    InhibitRule, Problem, Receiver, TlsConfig, WebhookConfig,
};
use crate::config::{Secret, parse_duration};
use crate::notify::matcher::{MatchType, Matcher};

/// `fallback_after` when unset: a receiver failing this long is down, not flaky.
const DEFAULT_FALLBACK_AFTER: Duration = Duration::from_secs(300);

/// Alertmanager's default email body.
const DEFAULT_EMAIL_HTML: &str = r#"{{ template "email.default.html" . }}"#;

/// ocx-sentinel's default text part (Alertmanager sends none unless `text` is set): plain-text
/// readers get the alerts too, and a template error has a plain body to be reported in.
/// `text: ''` turns it off.
const DEFAULT_EMAIL_TEXT: &str = r#"{{ template "email.default.text" . }}"#;

pub(crate) fn build(
    raw: RawConfig,
    origin: &str,
    base: &Path,
) -> Result<AlertingConfig, Vec<Problem>> {
    let mut b = Builder {
        origin,
        base,
        problems: Vec::new(),
    };
    let global = match &raw.global {
        Some(g) => b.global(g),
        None => Global::default(),
    };
    let time_intervals = b.time_intervals(&raw);
    let receivers = b.receivers(raw.receivers.as_deref().unwrap_or(&[]), &global);
    let receiver_names: BTreeSet<&str> = receivers.iter().map(|r| r.name.as_str()).collect();
    let interval_names: BTreeSet<&str> = time_intervals.iter().map(|t| t.name.as_str()).collect();
    let route = match &raw.route {
        Some(r) => b.route_tree(r, &receiver_names, &interval_names),
        None => {
            b.file_problem("no route provided in config".into());
            None
        }
    };
    let inhibit_rules = raw
        .inhibit_rules
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, r)| b.inhibit_rule(i, r))
        .collect();
    let templates = raw
        .templates
        .iter()
        .flatten()
        .map(|t| b.resolve(&t.value))
        .collect();
    let mut problems = b.problems;
    if !problems.is_empty() {
        // File order: problems of the whole file first, then by line and column.
        problems.sort_by_key(|(pos, _)| *pos);
        return Err(problems.into_iter().map(|(_, p)| p).collect());
    }
    Ok(AlertingConfig {
        global,
        // UNWRAP: no problems means the route was built.
        route: route.unwrap(),
        receivers,
        inhibit_rules,
        time_intervals,
        templates,
    })
}

/// Label names as Prometheus's `model.LabelNameRE` has them.
fn valid_label_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Builder<'a> {
    origin: &'a str,
    base: &'a Path,
    /// With (line, column) to sort by; (0, 0) for the whole file.
    problems: Vec<((u64, u64), Problem)>,
}

impl Builder<'_> {
    fn problem<T>(&mut self, at: &Spanned<T>, path: &str, message: impl std::fmt::Display) {
        let (line, col) = (at.referenced.line(), at.referenced.column());
        self.problems.push((
            (line, col),
            Problem {
                location: format!("{}:{line}:{col}", self.origin),
                message: format!("{path}: {message}"),
            },
        ));
    }

    fn file_problem(&mut self, message: String) {
        self.problems.push((
            (0, 0),
            Problem {
                location: self.origin.to_string(),
                message,
            },
        ));
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// A `_file` secret, read now and trimmed (as Alertmanager trims them when it reads them).
    fn secret_file(&mut self, f: &Spanned<String>, path: &str) -> Option<Secret> {
        let full = self.resolve(&f.value);
        match std::fs::read_to_string(&full) {
            Ok(s) => Some(Secret::new(s.trim())),
            Err(e) => {
                self.problem(f, path, format!("cannot read {}: {e}", full.display()));
                None
            }
        }
    }

    /// The inline secret or the file's, never both (`what` names the pair in the error).
    fn secret_pair(
        &mut self,
        inline: &Option<Spanned<Secret>>,
        file: &Option<Spanned<String>>,
        path: &str,
        what: &str,
    ) -> Option<Secret> {
        match (inline, file) {
            (Some(s), Some(_)) => {
                self.problem(s, path, format!("at most one of {what} must be configured"));
                None
            }
            (Some(s), None) => Some(s.value.clone()),
            (None, Some(f)) => self.secret_file(f, &format!("{path}_file")),
            (None, None) => None,
        }
    }

    fn duration(&mut self, v: &Option<Spanned<String>>, path: &str) -> Option<Duration> {
        let v = v.as_ref()?;
        match parse_duration(&v.value) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(v, path, e);
                None
            }
        }
    }

    fn host_port(&mut self, v: &Spanned<String>, path: &str) -> Option<HostPort> {
        let s = v.value.as_str();
        // Go's net.SplitHostPort: `host:port` or `[v6]:port`.
        let split = if let Some(rest) = s.strip_prefix('[') {
            rest.split_once("]:")
                .filter(|(h, p)| !h.contains(']') && !p.contains(':'))
        } else {
            s.rsplit_once(':').filter(|(h, _)| !h.contains(':'))
        };
        match split {
            _ if s.is_empty() => None,
            Some((_, "")) => {
                self.problem(v, path, format!("address {s:?}: port cannot be empty"));
                None
            }
            Some((h, p)) => Some(HostPort {
                host: h.to_string(),
                port: p.to_string(),
            }),
            None => {
                self.problem(v, path, format!("address {s}: missing port in address"));
                None
            }
        }
    }

    /// Alertmanager's `parseURL`: http or https, with a host.
    fn check_url(&mut self, at: &Spanned<impl Sized>, url: &str, path: &str) -> bool {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        if scheme != "http" && scheme != "https" {
            self.problem(at, path, format!("unsupported scheme {scheme:?} for URL"));
            return false;
        }
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        if host.is_empty() {
            self.problem(at, path, "missing host for URL");
            return false;
        }
        true
    }

    fn global(&mut self, g: &Spanned<RawGlobal>) -> Global {
        let g = &g.value;
        let mut out = Global::default();
        for (name, at) in g.unsupported() {
            self.problem(
                at,
                &format!("global.{name}"),
                "not supported: ocx-sentinel sends only webhook and email notifications",
            );
        }
        if let Some(d) = self.duration(&g.resolve_timeout, "global.resolve_timeout") {
            out.resolve_timeout = d;
        }
        if let Some(h) = &g.http_config {
            out.http_config = self.http_config(h, "global.http_config");
        }
        let s = |v: &Option<Spanned<String>>| v.as_ref().map(|v| v.value.clone());
        out.smtp_from = s(&g.smtp_from).filter(|v| !v.is_empty());
        if let Some(h) = s(&g.smtp_hello).filter(|v| !v.is_empty()) {
            out.smtp_hello = h;
        }
        out.smtp_smarthost = g
            .smtp_smarthost
            .as_ref()
            .and_then(|v| self.host_port(v, "global.smtp_smarthost"));
        out.smtp_auth_username = s(&g.smtp_auth_username).filter(|v| !v.is_empty());
        out.smtp_auth_password = self.secret_pair(
            &g.smtp_auth_password,
            &g.smtp_auth_password_file,
            "global.smtp_auth_password",
            "smtp_auth_password & smtp_auth_password_file",
        );
        out.smtp_auth_secret = g.smtp_auth_secret.as_ref().map(|v| v.value.clone());
        out.smtp_auth_identity = s(&g.smtp_auth_identity).filter(|v| !v.is_empty());
        out.smtp_require_tls = g.smtp_require_tls.unwrap_or(true);
        out
    }

    fn tls(&self, t: &Option<RawTlsConfig>) -> TlsConfig {
        let Some(t) = t else {
            return TlsConfig::default();
        };
        let path = |v: &Option<Spanned<String>>| v.as_ref().map(|v| self.resolve(&v.value));
        TlsConfig {
            ca_file: path(&t.ca_file),
            cert_file: path(&t.cert_file),
            key_file: path(&t.key_file),
            server_name: t.server_name.as_ref().map(|v| v.value.clone()),
            insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
            min_version: t.min_version.as_ref().map(|v| v.value.clone()),
        }
    }

    /// prometheus/common's `HTTPClientConfig.Validate`, then the secrets read.
    fn http_config(&mut self, h: &Spanned<RawHttpConfig>, path: &str) -> HttpConfig {
        let raw = &h.value;
        let mut out = HttpConfig {
            tls: self.tls(&raw.tls_config),
            proxy_url: raw.proxy_url.as_ref().map(|v| v.value.clone()),
            follow_redirects: raw.follow_redirects.unwrap_or(true),
            enable_http2: raw.enable_http2.unwrap_or(true),
            ..HttpConfig::default()
        };
        if let Some(o) = &raw.oauth2 {
            self.problem(o, &format!("{path}.oauth2"), "not supported");
        }
        let bearer = raw.bearer_token.is_some() || raw.bearer_token_file.is_some();
        if let (Some(t), Some(_)) = (&raw.bearer_token, &raw.bearer_token_file) {
            self.problem(
                t,
                path,
                "at most one of bearer_token & bearer_token_file must be configured",
            );
        } else if let (Some(b), true) = (&raw.basic_auth, bearer) {
            self.problem(
                b,
                path,
                "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured",
            );
        }
        if let Some(a) = &raw.authorization {
            if bearer {
                self.problem(
                    a,
                    path,
                    "authorization is not compatible with bearer_token & bearer_token_file",
                );
            } else if raw.basic_auth.is_some() {
                self.problem(
                    a,
                    path,
                    "at most one of basic_auth, oauth2 & authorization must be configured",
                );
            }
            out.authorization = self.authorization(a, &format!("{path}.authorization"));
        } else if bearer && !(raw.bearer_token.is_some() && raw.bearer_token_file.is_some()) {
            let credentials = self.secret_pair(
                &raw.bearer_token,
                &raw.bearer_token_file,
                &format!("{path}.bearer_token"),
                "bearer_token & bearer_token_file",
            );
            out.authorization = Some(Authorization {
                scheme: "Bearer".into(),
                credentials,
            });
        }
        if let Some(ba) = &raw.basic_auth {
            let p = format!("{path}.basic_auth");
            let password = self.secret_pair(
                &ba.value.password,
                &ba.value.password_file,
                &format!("{p}.password"),
                "basic_auth password & password_file",
            );
            out.basic_auth = Some(BasicAuth {
                username: ba
                    .value
                    .username
                    .as_ref()
                    .map(|u| u.value.clone())
                    .unwrap_or_default(),
                password,
            });
        }
        out
    }

    fn authorization(
        &mut self,
        a: &Spanned<RawAuthorization>,
        path: &str,
    ) -> Option<Authorization> {
        let raw = &a.value;
        let scheme = raw
            .kind
            .as_ref()
            .map(|k| k.value.trim().to_string())
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "Bearer".into());
        if scheme.eq_ignore_ascii_case("basic") {
            let at = raw.kind.as_ref().map_or(a.referenced, |k| k.referenced);
            let at = Spanned::new((), at, at);
            self.problem(
                &at,
                &format!("{path}.type"),
                r#"authorization type cannot be set to "basic", use "basic_auth" instead"#,
            );
        }
        let credentials = self.secret_pair(
            &raw.credentials,
            &raw.credentials_file,
            &format!("{path}.credentials"),
            "authorization credentials & credentials_file",
        );
        Some(Authorization {
            scheme,
            credentials,
        })
    }

    fn time_intervals(&mut self, raw: &RawConfig) -> Vec<NamedTimeInterval> {
        let mut out: Vec<NamedTimeInterval> = Vec::new();
        let lists = [
            (
                "mute_time_intervals",
                "mute time interval",
                &raw.mute_time_intervals,
            ),
            ("time_intervals", "time interval", &raw.time_intervals),
        ];
        for (key, what, list) in lists {
            for (i, ni) in list.iter().flatten().enumerate() {
                let path = format!("{key}[{i}]");
                let Some(named) = self.named_interval(ni, &path, what) else {
                    continue;
                };
                if out.iter().any(|o| o.name == named.name) {
                    let at = ni
                        .value
                        .name
                        .as_ref()
                        .map_or(ni.referenced, |n| n.referenced);
                    self.problem(
                        &Spanned::new((), at, at),
                        &format!("{path}.name"),
                        format!("{what} {:?} is not unique", named.name),
                    );
                    continue;
                }
                out.push(named);
            }
        }
        out
    }

    fn named_interval(
        &mut self,
        ni: &Spanned<RawNamedInterval>,
        path: &str,
        what: &str,
    ) -> Option<NamedTimeInterval> {
        let raw = &ni.value;
        let name = match &raw.name {
            Some(n) if !n.value.is_empty() => n.value.clone(),
            _ => {
                self.problem(ni, path, format!("missing name in {what}"));
                return None;
            }
        };
        let mut intervals = Vec::new();
        for (j, ti) in raw.time_intervals.iter().flatten().enumerate() {
            if let Some(t) = self.interval(ti, &format!("{path}.time_intervals[{j}]")) {
                intervals.push(t);
            }
        }
        Some(NamedTimeInterval { name, intervals })
    }

    fn interval(
        &mut self,
        ti: &Spanned<super::raw::RawTimeInterval>,
        path: &str,
    ) -> Option<TimeInterval> {
        let raw = &ti.value;
        let before = self.problems.len();
        let times = raw.times.as_ref().map(|list| {
            list.iter()
                .enumerate()
                .filter_map(|(k, tr)| {
                    let start = tr.value.start_time.as_ref().map(|v| v.value.as_str());
                    let end = tr.value.end_time.as_ref().map(|v| v.value.as_str());
                    timeinterval::parse_time_range(start, end)
                        .map_err(|e| self.problem(tr, &format!("{path}.times[{k}]"), e))
                        .ok()
                })
                .collect()
        });
        let mut ranges =
            |list: &Option<Vec<Spanned<String>>>,
             field: &str,
             parse: fn(&str) -> Result<InclusiveRange, String>| {
                list.as_ref().map(|l| {
                    l.iter()
                        .enumerate()
                        .filter_map(|(k, v)| {
                            parse(&v.value)
                                .map_err(|e| self.problem(v, &format!("{path}.{field}[{k}]"), e))
                                .ok()
                        })
                        .collect::<Vec<_>>()
                })
            };
        let weekdays = ranges(&raw.weekdays, "weekdays", parse_weekdays);
        let days_of_month = ranges(&raw.days_of_month, "days_of_month", parse_days_of_month);
        let months = ranges(&raw.months, "months", parse_months);
        let years = ranges(&raw.years, "years", parse_years);
        let location = match &raw.location {
            None => Zone::utc(),
            Some(l) => match Zone::load(&l.value) {
                Ok(z) => z,
                Err(e) => {
                    self.problem(l, &format!("{path}.location"), e);
                    Zone::utc()
                }
            },
        };
        (self.problems.len() == before).then_some(TimeInterval {
            times,
            weekdays,
            days_of_month,
            months,
            years,
            location,
        })
    }

    fn receivers(&mut self, list: &[Spanned<RawReceiver>], global: &Global) -> Vec<Receiver> {
        let mut out: Vec<Receiver> = Vec::new();
        for (i, r) in list.iter().enumerate() {
            let path = format!("receivers[{i}]");
            let raw = &r.value;
            let name = match &raw.name {
                Some(n) if !n.value.is_empty() => n,
                _ => {
                    self.problem(r, &path, "missing name in receiver");
                    continue;
                }
            };
            if out.iter().any(|o| o.name == name.value) {
                self.problem(
                    name,
                    &format!("{path}.name"),
                    format!("notification config name {:?} is not unique", name.value),
                );
            }
            for (kind, at) in raw.unsupported() {
                self.problem(
                    at,
                    &format!("{path}.{kind}"),
                    format!(
                        "not supported (receiver {:?}): ocx-sentinel sends only webhook_configs and email_configs",
                        name.value
                    ),
                );
            }
            let webhooks = raw
                .webhook_configs
                .iter()
                .flatten()
                .enumerate()
                .filter_map(|(j, w)| {
                    self.webhook(w, &format!("{path}.webhook_configs[{j}]"), global)
                })
                .collect();
            let emails = raw
                .email_configs
                .iter()
                .flatten()
                .enumerate()
                .filter_map(|(j, e)| self.email(e, &format!("{path}.email_configs[{j}]"), global))
                .collect();
            out.push(Receiver {
                name: name.value.clone(),
                webhooks,
                emails,
            });
        }
        out
    }

    fn webhook(
        &mut self,
        w: &Spanned<RawWebhook>,
        path: &str,
        global: &Global,
    ) -> Option<WebhookConfig> {
        let raw = &w.value;
        let url = match (&raw.url, &raw.url_file) {
            (None, None) => {
                self.problem(w, path, "one of url or url_file must be configured");
                None
            }
            (Some(u), Some(_)) => {
                self.problem(u, path, "at most one of url & url_file must be configured");
                None
            }
            (Some(u), None) => self
                .check_url(u, u.value.expose(), &format!("{path}.url"))
                .then(|| u.value.clone()),
            (None, Some(f)) => {
                let p = format!("{path}.url_file");
                self.secret_file(f, &p)
                    .filter(|u| self.check_url(f, u.expose(), &p))
            }
        };
        let timeout = self.duration(&raw.timeout, &format!("{path}.timeout"));
        let http_config = match &raw.http_config {
            Some(h) => self.http_config(h, &format!("{path}.http_config")),
            None => global.http_config.clone(),
        };
        Some(WebhookConfig {
            url: url?,
            send_resolved: raw.send_resolved.unwrap_or(true),
            max_alerts: raw.max_alerts.as_ref().map_or(0, |m| m.value),
            // Zero means no timeout, as in Alertmanager.
            timeout: timeout.filter(|d| !d.is_zero()),
            http_config,
        })
    }

    fn email(&mut self, e: &Spanned<RawEmail>, path: &str, global: &Global) -> Option<EmailConfig> {
        let raw = &e.value;
        let text = |v: &Option<Spanned<String>>| {
            v.as_ref()
                .map(|v| v.value.clone())
                .filter(|v| !v.is_empty())
        };
        let to = text(&raw.to);
        if to.is_none() {
            self.problem(e, path, "missing to address in email config");
        }
        let mut headers = BTreeMap::new();
        for (k, v) in raw.headers.iter().flatten() {
            let canonical = canonical_mime_header(k);
            if headers.insert(canonical.clone(), v.value.clone()).is_some() {
                self.problem(
                    v,
                    &format!("{path}.headers"),
                    format!("duplicate header {canonical:?} in email config"),
                );
            }
        }
        let smarthost = match &raw.smarthost {
            Some(s) if !s.value.is_empty() => self.host_port(s, &format!("{path}.smarthost")),
            _ => global.smtp_smarthost.clone().or_else(|| {
                self.problem(e, path, "no global SMTP smarthost set");
                None
            }),
        };
        let from = text(&raw.from).or_else(|| global.smtp_from.clone());
        if from.is_none() {
            self.problem(e, path, "no global SMTP from set");
        }
        let auth_password = if raw.auth_password.is_none() && raw.auth_password_file.is_none() {
            global.smtp_auth_password.clone()
        } else {
            self.secret_pair(
                &raw.auth_password,
                &raw.auth_password_file,
                &format!("{path}.auth_password"),
                "auth_password & auth_password_file",
            )
        };
        Some(EmailConfig {
            to: to?,
            from: from?,
            hello: text(&raw.hello).unwrap_or_else(|| global.smtp_hello.clone()),
            smarthost: smarthost?,
            auth_username: text(&raw.auth_username).or_else(|| global.smtp_auth_username.clone()),
            auth_password,
            auth_secret: raw
                .auth_secret
                .as_ref()
                .map(|s| s.value.clone())
                .or_else(|| global.smtp_auth_secret.clone()),
            auth_identity: text(&raw.auth_identity).or_else(|| global.smtp_auth_identity.clone()),
            require_tls: raw.require_tls.unwrap_or(global.smtp_require_tls),
            force_implicit_tls: raw.force_implicit_tls,
            send_resolved: raw.send_resolved.unwrap_or(false),
            headers,
            html: raw
                .html
                .clone()
                .unwrap_or_else(|| DEFAULT_EMAIL_HTML.into()),
            text: raw
                .text
                .clone()
                .unwrap_or_else(|| DEFAULT_EMAIL_TEXT.into()),
            tls: self.tls(&raw.tls_config),
        })
    }

    /// `{prefix}match`, `{prefix}match_re` and `{prefix}matchers` of a route (no prefix) or one
    /// side of an inhibit rule (`source_`, `target_`), together and sorted.
    fn matchers(
        &mut self,
        eq: &Option<BTreeMap<String, Spanned<String>>>,
        re: &Option<BTreeMap<String, Spanned<String>>>,
        list: &Option<Vec<Spanned<String>>>,
        path: &str,
        prefix: &str,
    ) -> Vec<Matcher> {
        let mut out = Vec::new();
        let (eq_key, re_key) = (format!("{prefix}match"), format!("{prefix}match_re"));
        for (key, map, op) in [
            (eq_key, eq, MatchType::Equal),
            (re_key, re, MatchType::Regexp),
        ] {
            for (name, v) in map.iter().flatten() {
                let p = format!("{path}.{key}.{name}");
                if !valid_label_name(name) {
                    self.problem(v, &p, format!("invalid label name {name:?}"));
                    continue;
                }
                match Matcher::new(op, name, &v.value) {
                    Ok(m) => out.push(m),
                    Err(e) => self.problem(v, &p, e),
                }
            }
        }
        for (k, line) in list.iter().flatten().enumerate() {
            match Matcher::parse_list(&line.value) {
                Ok(ms) => out.extend(ms),
                Err(e) => self.problem(line, &format!("{path}.{prefix}matchers[{k}]"), e),
            }
        }
        sort_matchers(&mut out);
        out
    }

    fn route_tree(
        &mut self,
        root: &Spanned<RawRoute>,
        receivers: &BTreeSet<&str>,
        intervals: &BTreeSet<&str>,
    ) -> Option<Route> {
        let r = &root.value;
        match &r.receiver {
            Some(n) if !n.value.is_empty() => {}
            _ => self.problem(root, "route", "root route must specify a default receiver"),
        }
        let first = |l: &Option<Vec<Spanned<String>>>| {
            l.as_ref().and_then(|l| l.first()).map(|v| v.referenced)
        };
        let map_first = |m: &Option<BTreeMap<String, Spanned<String>>>| {
            m.as_ref()
                .and_then(|m| m.values().next())
                .map(|v| v.referenced)
        };
        if let Some(at) = first(&r.matchers)
            .or(map_first(&r.match_))
            .or(map_first(&r.match_re))
        {
            self.problem(
                &Spanned::new((), at, at),
                "route",
                "root route must not have any matchers",
            );
        }
        if let Some(at) = first(&r.mute_time_intervals) {
            self.problem(
                &Spanned::new((), at, at),
                "route",
                "root route must not have any mute time intervals",
            );
        }
        if let Some(at) = first(&r.active_time_intervals) {
            self.problem(
                &Spanned::new((), at, at),
                "route",
                "root route must not have any active time intervals",
            );
        }
        if let Some(c) = r.continue_.as_ref().filter(|c| c.value) {
            self.problem(c, "route", "cannot have continue in root route");
        }
        let mut nodes = Vec::new();
        let before = self.problems.len();
        self.route(root, None, "route", &mut nodes, receivers, intervals);
        (self.problems.len() == before).then(|| Route::from_nodes(nodes))
    }

    /// Builds `raw` and its children into `nodes` (preorder); returns its index.
    fn route(
        &mut self,
        raw: &Spanned<RawRoute>,
        parent: Option<usize>,
        path: &str,
        nodes: &mut Vec<RouteNode>,
        receivers: &BTreeSet<&str>,
        intervals: &BTreeSet<&str>,
    ) -> usize {
        let r = &raw.value;
        let matchers = self.matchers(&r.match_, &r.match_re, &r.matchers, path, "");
        let inherited = parent.map(|p| &nodes[p]);
        let receiver = match &r.receiver {
            Some(n) if !n.value.is_empty() => {
                if !receivers.contains(n.value.as_str()) {
                    self.problem(
                        n,
                        &format!("{path}.receiver"),
                        format!("undefined receiver {:?} used in route", n.value),
                    );
                }
                n.value.clone()
            }
            _ => inherited.map(|p| p.receiver.clone()).unwrap_or_default(),
        };
        let group_by = self.group_by(r, path, inherited.map(|p| &p.group_by));
        let mut timer =
            |v: &Option<Spanned<String>>, name: &str, default: Duration, zero_ok: bool| {
                let p = format!("{path}.{name}");
                match self.duration(v, &p) {
                    Some(d) if d.is_zero() && !zero_ok => {
                        // UNWRAP: a parsed duration came from a value.
                        self.problem(v.as_ref().unwrap(), &p, format!("{name} cannot be zero"));
                        default
                    }
                    Some(d) => d,
                    None => default,
                }
            };
        let (gw, gi, ri) = match inherited {
            Some(p) => (p.group_wait, p.group_interval, p.repeat_interval),
            None => (
                Duration::from_secs(30),
                Duration::from_secs(300),
                Duration::from_secs(4 * 3600),
            ),
        };
        let group_wait = timer(&r.group_wait, "group_wait", gw, true);
        let group_interval = timer(&r.group_interval, "group_interval", gi, false);
        let repeat_interval = timer(&r.repeat_interval, "repeat_interval", ri, false);
        let mut names = |list: &Option<Vec<Spanned<String>>>, key: &str| -> Vec<String> {
            list.iter()
                .flatten()
                .map(|n| {
                    if !intervals.contains(n.value.as_str()) {
                        self.problem(
                            n,
                            &format!("{path}.{key}"),
                            format!("undefined time interval {:?} used in route", n.value),
                        );
                    }
                    n.value.clone()
                })
                .collect()
        };
        let mute_time_intervals = names(&r.mute_time_intervals, "mute_time_intervals");
        let active_time_intervals = names(&r.active_time_intervals, "active_time_intervals");
        let fallback = self.fallback(
            r,
            path,
            receivers,
            inherited.and_then(|p| p.fallback.clone()),
        );
        let index = nodes.len();
        let (key, id) = match inherited {
            None => (matchers_string(&matchers), matchers_string(&matchers)),
            Some(p) => {
                let position = p.children.len();
                (
                    format!("{}/{}", p.key, matchers_string(&matchers)),
                    format!("{}/{}/{position}", p.id, matchers_string(&matchers)),
                )
            }
        };
        if let Some(p) = parent {
            nodes[p].children.push(index);
        }
        nodes.push(RouteNode {
            index,
            parent,
            children: Vec::new(),
            matchers,
            continue_matching: r.continue_.as_ref().is_some_and(|c| c.value),
            receiver,
            group_by,
            group_wait,
            group_interval,
            repeat_interval,
            mute_time_intervals,
            active_time_intervals,
            fallback,
            key,
            id,
        });
        for (i, child) in r.routes.iter().flatten().enumerate() {
            self.route(
                child,
                Some(index),
                &format!("{path}.routes[{i}]"),
                nodes,
                receivers,
                intervals,
            );
        }
        index
    }

    /// `fallback_receiver` (must name a receiver) and `fallback_after` (default 5m; zero: as soon
    /// as a delivery has failed), both inherited when unset; `fallback_after` alone changes the
    /// inherited delay.
    fn fallback(
        &mut self,
        r: &RawRoute,
        path: &str,
        receivers: &BTreeSet<&str>,
        inherited: Option<(String, Duration)>,
    ) -> Option<(String, Duration)> {
        let after_path = format!("{path}.fallback_after");
        let after = self.duration(&r.fallback_after, &after_path);
        let receiver = match &r.fallback_receiver {
            Some(n) => {
                if !receivers.contains(n.value.as_str()) {
                    self.problem(
                        n,
                        &format!("{path}.fallback_receiver"),
                        format!("undefined receiver {:?} used as fallback_receiver", n.value),
                    );
                }
                Some(n.value.clone())
            }
            None => inherited.as_ref().map(|(r, _)| r.clone()),
        };
        if receiver.is_none()
            && let Some(a) = &r.fallback_after
        {
            self.problem(a, &after_path, "fallback_after without a fallback_receiver");
        }
        let after = after
            .or(inherited.map(|(_, a)| a))
            .unwrap_or(DEFAULT_FALLBACK_AFTER);
        receiver.map(|r| (r, after))
    }

    /// `group_by` as Alertmanager's `NewRoute` applies it: labels replace the parent's; `...`
    /// alone means all labels; absent or empty inherits.
    fn group_by(&mut self, r: &RawRoute, path: &str, parent: Option<&GroupBy>) -> GroupBy {
        let inherited = parent
            .cloned()
            .unwrap_or_else(|| GroupBy::Labels(BTreeSet::new()));
        let Some(list) = &r.group_by else {
            return inherited;
        };
        let p = format!("{path}.group_by");
        let mut labels = BTreeSet::new();
        let mut all = false;
        for l in list {
            if l.value == "..." {
                all = true;
            } else if !valid_label_name(&l.value) {
                self.problem(
                    l,
                    &p,
                    format!("invalid label name {:?} in group_by list", l.value),
                );
            } else if !labels.insert(l.value.clone()) {
                self.problem(l, &p, format!("duplicated label {:?} in group_by", l.value));
            }
        }
        if all && !labels.is_empty() {
            // UNWRAP: `all` means the list has an entry.
            self.problem(
                &list[0],
                &p,
                "cannot have wildcard group_by (`...`) and other labels at the same time",
            );
        }
        if !labels.is_empty() {
            GroupBy::Labels(labels)
        } else if all {
            GroupBy::All
        } else {
            inherited
        }
    }

    fn inhibit_rule(&mut self, i: usize, r: &Spanned<RawInhibitRule>) -> Option<InhibitRule> {
        let raw = &r.value;
        let path = format!("inhibit_rules[{i}]");
        let before = self.problems.len();
        let mut source_matchers = self.matchers(
            &raw.source_match,
            &raw.source_match_re,
            &raw.source_matchers,
            &path,
            "source_",
        );
        let mut target_matchers = self.matchers(
            &raw.target_match,
            &raw.target_match_re,
            &raw.target_matchers,
            &path,
            "target_",
        );
        source_matchers.dedup();
        target_matchers.dedup();
        let mut equal = Vec::new();
        for l in raw.equal.iter().flatten() {
            if valid_label_name(&l.value) {
                if !equal.contains(&l.value) {
                    equal.push(l.value.clone());
                }
            } else {
                self.problem(
                    l,
                    &format!("{path}.equal"),
                    format!("{:?} is not a valid label name", l.value),
                );
            }
        }
        (self.problems.len() == before).then_some(InhibitRule {
            source_matchers,
            target_matchers,
            equal,
        })
    }
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: `x-team` → `X-Team`; a key with a character that
/// may not appear in a header name is returned unchanged.
fn canonical_mime_header(k: &str) -> String {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !k.chars().all(token) {
        return k.to_string();
    }
    let mut upper = true;
    k.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}
