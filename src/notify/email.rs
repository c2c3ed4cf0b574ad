//! The email integration: Alertmanager's `email_configs` over SMTP with lettre (STARTTLS, implicit TLS on port 465, or plain to a local relay; PLAIN or LOGIN auth), each mail built from notification templates with built-in defaults, its delivery classified into the pipeline's retry rules.
//!
//! One connection per notification, as Alertmanager's notifier does: connect (TLS at once on
//! port 465), EHLO with `hello`, STARTTLS when `require_tls`, AUTH when a username is set and
//! the server offers AUTH, MAIL/RCPT/DATA, QUIT. Every step has a deadline. The mail is rendered
//! before connecting, so a template that fails at run time still sends: the text part carries
//! the error above the default body, and the error is counted
//! (`ocx_sentinel_notification_template_errors_total`). Only a `to` or `from` that cannot be
//! rendered or parsed stops a mail, as nobody could be addressed.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use lettre::address::Envelope;
use lettre::message::header::{self, HeaderName, HeaderValue};
use lettre::message::{Mailboxes, Message, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, Identity, TlsParameters, TlsVersion,
};
use lettre::transport::smtp::extension::ClientId;

use super::config::{EmailConfig, TlsConfig};
use super::dispatch::{Flush, NotifyAlert};
use super::webhook::{Outcome, common};
use crate::config::Secret;
use crate::rules::template::TemplateError;
use crate::rules::template::notification::{
    NotificationAlert, NotificationData, NotificationTemplate, TemplateSet, quote_meta,
};
use crate::telemetry::{Telemetry, names};

/// The built-in templates (`email.default.subject`, `email.default.html`,
/// `email.default.text` and Alertmanager's helper names), parsed before `templates:` files.
pub const DEFAULT_TEMPLATES: &str = include_str!("email.tmpl");

/// Alertmanager's default `Subject` header.
const DEFAULT_SUBJECT: &str = r#"{{ template "email.default.subject" . }}"#;

/// The body of the text part when the configured one cannot be rendered.
const FALLBACK_TEXT: &str = r#"{{ template "email.default.text" . }}"#;

/// Each SMTP step (connect and greeting, STARTTLS, AUTH, the transaction, QUIT) may take this
/// long. Alertmanager's email config has no timeout field; a relay slower than this is down.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The set every email template may call: the built-in defaults, then each file the
/// configuration's `templates:` globs match (in name order; a later definition replaces an
/// earlier one of its name, so a file can override a default).
pub fn template_set(patterns: &[PathBuf]) -> Result<Arc<TemplateSet>, EmailSetupError> {
    let mut set = TemplateSet::default();
    set.add_file("email.tmpl", DEFAULT_TEMPLATES)
        .map_err(|e| EmailSetupError::Templates(format!("built-in templates: {e}")))?;
    for pattern in patterns {
        let shown = pattern.display().to_string();
        let paths =
            glob::glob(&shown).map_err(|e| EmailSetupError::Templates(format!("{shown}: {e}")))?;
        for path in paths {
            let path = path.map_err(|e| EmailSetupError::Templates(format!("{shown}: {e}")))?;
            let text = std::fs::read_to_string(&path).map_err(|e| {
                EmailSetupError::Templates(format!("cannot read {}: {e}", path.display()))
            })?;
            // Go names a parsed file's template (and its positions) by the file's base name.
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            );
            set.add_file(&name, &text)
                .map_err(|e| EmailSetupError::Templates(e.to_string()))?;
        }
    }
    Ok(Arc::new(set))
}

/// Why an email configuration cannot be used; found at start, never at send time.
#[derive(Debug, thiserror::Error)]
pub enum EmailSetupError {
    #[error("templates: {0}")]
    Templates(String),
    #[error("{field}: {source}")]
    Template {
        field: String,
        source: TemplateError,
    },
    #[error("header {0:?} is not a valid header name")]
    HeaderName(String),
    #[error("smarthost {0}: the port must be a number")]
    Port(String),
    #[error("tls_config: {0}")]
    Tls(String),
    #[error(
        "auth_secret without auth_password: CRAM-MD5 is not supported, only PLAIN and LOGIN (set auth_password or auth_password_file)"
    )]
    CramMd5,
}

/// SMTP credentials. The password never prints.
#[derive(Clone)]
struct SmtpAuth {
    username: String,
    password: Option<Secret>,
    /// PLAIN's authorization identity (`auth_identity`); empty acts as the username.
    identity: String,
}

/// One email integration, ready to send. Cheap to clone (the pipeline clones it per delivery).
#[derive(Clone)]
pub struct Email(Arc<Inner>);

#[derive(Clone)]
struct Inner {
    to: NotificationTemplate,
    from: NotificationTemplate,
    /// `Subject`, `To`, `From` (Alertmanager's defaults) and the configured ones, by canonical
    /// name.
    headers: Vec<(String, NotificationTemplate)>,
    text: Option<NotificationTemplate>,
    html: Option<NotificationTemplate>,
    fallback_text: NotificationTemplate,
    fallback_subject: NotificationTemplate,
    hello: String,
    host: String,
    port: u16,
    /// `host:port`, for messages.
    smarthost: String,
    /// TLS from the first byte rather than STARTTLS: `force_implicit_tls`, else port 465 (as
    /// Alertmanager decides).
    implicit_tls: bool,
    require_tls: bool,
    tls: TlsParameters,
    auth: Option<SmtpAuth>,
    send_resolved: bool,
    step_timeout: Duration,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.0;
        f.debug_struct("Email")
            .field("smarthost", &i.smarthost)
            .field("implicit_tls", &i.implicit_tls)
            .field("require_tls", &i.require_tls)
            .field(
                "auth_username",
                &i.auth.as_ref().map(|a| a.username.as_str()),
            )
            .field("send_resolved", &i.send_resolved)
            .finish_non_exhaustive()
    }
}

impl Email {
    /// Check and prepare `cfg`: every template parsed, TLS settings read, the port a number.
    pub fn new(cfg: &EmailConfig, templates: &Arc<TemplateSet>) -> Result<Email, EmailSetupError> {
        let parse = |field: &str, text: &str| {
            NotificationTemplate::parse(templates, field, text).map_err(|source| {
                EmailSetupError::Template {
                    field: field.to_string(),
                    source,
                }
            })
        };
        // Alertmanager's notifier adds these three unless the configuration sets them.
        let mut headers: BTreeMap<String, String> = cfg.headers.clone();
        headers
            .entry("Subject".into())
            .or_insert_with(|| DEFAULT_SUBJECT.into());
        headers.entry("To".into()).or_insert_with(|| cfg.to.clone());
        headers
            .entry("From".into())
            .or_insert_with(|| cfg.from.clone());
        let mut parsed_headers = Vec::with_capacity(headers.len());
        for (name, text) in &headers {
            if HeaderName::new_from_ascii(name.clone()).is_err() {
                return Err(EmailSetupError::HeaderName(name.clone()));
            }
            parsed_headers.push((name.clone(), parse(&format!("headers.{name}"), text)?));
        }
        let optional =
            |field: &str, text: &str| parse(field, text).map(|t| (!t.is_empty()).then_some(t));
        let port: u16 = cfg
            .smarthost
            .port
            .parse()
            .map_err(|_| EmailSetupError::Port(cfg.smarthost.to_string()))?;
        let auth = match &cfg.auth_username {
            Some(username) if !username.is_empty() => {
                if cfg.auth_password.is_none() && cfg.auth_secret.is_some() {
                    return Err(EmailSetupError::CramMd5);
                }
                Some(SmtpAuth {
                    username: username.clone(),
                    password: cfg.auth_password.clone(),
                    identity: cfg.auth_identity.clone().unwrap_or_default(),
                })
            }
            _ => None,
        };
        Ok(Email(Arc::new(Inner {
            to: parse("to", &cfg.to)?,
            from: parse("from", &cfg.from)?,
            headers: parsed_headers,
            text: optional("text", &cfg.text)?,
            html: optional("html", &cfg.html)?,
            fallback_text: parse("text", FALLBACK_TEXT)?,
            fallback_subject: parse("headers.Subject", DEFAULT_SUBJECT)?,
            hello: cfg.hello.clone(),
            host: cfg.smarthost.host.clone(),
            port,
            smarthost: cfg.smarthost.to_string(),
            implicit_tls: cfg.force_implicit_tls.unwrap_or(port == 465),
            require_tls: cfg.require_tls,
            tls: tls_parameters(&cfg.smarthost.host, &cfg.tls)?,
            auth,
            send_resolved: cfg.send_resolved,
            step_timeout: STEP_TIMEOUT,
        })))
    }

    /// The same integration with another per-step deadline (tests use short ones).
    #[cfg(test)]
    fn with_step_timeout(self, step_timeout: Duration) -> Email {
        let mut inner = Arc::unwrap_or_clone(self.0);
        inner.step_timeout = step_timeout;
        Email(Arc::new(inner))
    }

    pub fn send_resolved(&self) -> bool {
        self.0.send_resolved
    }

    /// Render and send one notification. Template errors are counted here; the caller counts
    /// the attempt and its outcome.
    pub async fn send(
        &self,
        flush: &Flush,
        alerts: &[NotifyAlert],
        external_url: &str,
        telemetry: &Telemetry,
    ) -> Outcome {
        let data = notification_data(flush, alerts, external_url);
        let composed = self.compose(&data, SystemTime::now());
        if !composed.template_errors.is_empty() {
            telemetry
                .counter(
                    names::NOTIFICATION_TEMPLATE_ERRORS,
                    &[("integration", "email")],
                )
                .increment(composed.template_errors.len() as u64);
            tracing::warn!(receiver = %flush.receiver, errors = ?composed.template_errors, "email template failed; the mail says so in its text");
        }
        let mail = match composed.mail {
            Ok(m) => m,
            Err(outcome) => return outcome,
        };
        match self.transmit(&mail).await {
            Ok(()) => Outcome::Delivered,
            Err(f) => f.outcome(),
        }
    }

    /// The mail for `data`: templates rendered (errors collected, not fatal unless `to` or
    /// `from` fail), headers, `Message-ID`, `Date`, and a multipart/alternative body.
    pub fn compose(&self, data: &NotificationData, now: SystemTime) -> Composed {
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let rendered = self.render(data, now_ms);
        Composed {
            mail: self.message(&rendered, now),
            template_errors: rendered.errors,
        }
    }

    /// Every template of the mail rendered. A failed header is left out (a failed `Subject`
    /// falls back to the default one); when anything failed, the text part leads with the
    /// errors (over the default text if the configured one failed) and the HTML part, which a
    /// mail client would show instead, is left out.
    pub fn render(&self, data: &NotificationData, now_ms: i64) -> Rendered {
        let i = &*self.0;
        let mut errors = Vec::new();
        let mut run = |t: &NotificationTemplate, what: &str, html: bool| {
            t.render(data, html, now_ms).map_err(|e| {
                let line = format!("{what}: {e}");
                errors.push(line.clone());
                line
            })
        };
        let from = run(&i.from, "from", false);
        let to = run(&i.to, "to", false);
        let mut headers = Vec::with_capacity(i.headers.len());
        for (name, t) in &i.headers {
            match run(t, &format!("{name} header"), false) {
                Ok(v) => headers.push((name.clone(), v)),
                // The default subject has no configured template in it to fail.
                Err(_) if name == "Subject" => headers.push((
                    name.clone(),
                    i.fallback_subject
                        .render(data, false, now_ms)
                        .unwrap_or_else(|_| "[ocx-sentinel] notification".into()),
                )),
                Err(_) => {}
            }
        }
        let mut text = i.text.as_ref().and_then(|t| run(t, "text", false).ok());
        let mut html = i.html.as_ref().and_then(|t| run(t, "html", true).ok());
        if !errors.is_empty() {
            let body = match (&i.text, text.take()) {
                (Some(_), Some(t)) => t,
                _ => i
                    .fallback_text
                    .render(data, false, now_ms)
                    .unwrap_or_default(),
            };
            let mut t =
                String::from("ocx-sentinel could not render this notification as configured:\n");
            for e in &errors {
                t.push_str(&format!("  - {e}\n"));
            }
            t.push('\n');
            t.push_str(&body);
            text = Some(t);
            html = None;
        }
        Rendered {
            from,
            to,
            headers,
            text,
            html,
            errors,
        }
    }

    /// The mail from what was rendered: addresses parsed (exactly one sender), lettre's
    /// message with `Date`, `Message-ID` and the headers, and the envelope.
    fn message(&self, r: &Rendered, now: SystemTime) -> Result<Mail, Outcome> {
        let give_up = |reason: &'static str, detail: String| Outcome::GiveUp { reason, detail };
        let (from, to) = match (&r.from, &r.to) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => return Err(give_up("template", e.clone())),
        };
        let from: Vec<_> = from
            .parse::<Mailboxes>()
            .map_err(|e| give_up("config", format!("parse 'from' addresses {from:?}: {e}")))?
            .into_iter()
            .collect();
        let [sender] = from.as_slice() else {
            return Err(give_up(
                "config",
                format!("must be exactly one 'from' address (got: {})", from.len()),
            ));
        };
        let to: Mailboxes = to
            .parse()
            .map_err(|e| give_up("config", format!("parse 'to' addresses {to:?}: {e}")))?;
        let envelope = Envelope::new(
            Some(sender.email.clone()),
            to.iter().map(|m| m.email.clone()).collect(),
        )
        .map_err(|e| give_up("config", format!("envelope: {e}")))?;

        let mut builder = Message::builder()
            .envelope(envelope)
            .date(now)
            .message_id(Some(message_id(now, sender.email.domain())));
        for (name, value) in &r.headers {
            // A value is one header line: a template must not be able to add headers.
            let value = value.replace(['\r', '\n'], " ");
            let mailboxes = matches!(name.as_str(), "From" | "To" | "Cc" | "Reply-To")
                .then(|| value.parse::<Mailboxes>().ok())
                .flatten();
            builder = match (name.as_str(), mailboxes) {
                ("From", Some(m)) => builder.header(header::From::from(m)),
                ("To", Some(m)) => builder.header(header::To::from(m)),
                ("Cc", Some(m)) => builder.header(header::Cc::from(m)),
                ("Reply-To", Some(m)) => builder.header(header::ReplyTo::from(m)),
                _ => builder.raw_header(raw_header(name, value)),
            };
        }
        let mut body = MultiPart::alternative().build();
        if let Some(t) = &r.text {
            body = body.singlepart(SinglePart::plain(t.clone()));
        }
        // The preferred alternative last (RFC 2046 §5.1.4).
        if let Some(h) = &r.html {
            body = body.singlepart(SinglePart::html(h.clone()));
        }
        let message = builder
            .multipart(body)
            .map_err(|e| give_up("config", format!("build the message: {e}")))?;
        Ok(Mail {
            envelope: message.envelope().clone(),
            bytes: message.formatted(),
        })
    }

    /// One SMTP session delivering `mail`.
    async fn transmit(&self, mail: &Mail) -> Result<(), SmtpFailure> {
        let i = &*self.0;
        let hello = ClientId::Domain(i.hello.clone());
        let limit = i.step_timeout;
        let mut conn = step(
            "connect",
            limit,
            AsyncSmtpConnection::connect_tokio1(
                (i.host.as_str(), i.port),
                Some(limit),
                &hello,
                i.implicit_tls.then(|| i.tls.clone()),
                None,
            ),
        )
        .await?;
        if i.require_tls && !i.implicit_tls {
            if !conn.can_starttls() {
                return Err(SmtpFailure::NoStartTls(i.smarthost.clone()));
            }
            step("STARTTLS", limit, conn.starttls(i.tls.clone(), &hello)).await?;
        }
        if let Some(auth) = &i.auth {
            authenticate(&mut conn, auth, limit).await?;
        }
        step("send", limit, conn.send(&mail.envelope, &mail.bytes)).await?;
        // The mail is accepted; a slow or failed goodbye changes nothing.
        let _ = tokio::time::timeout(limit, conn.quit()).await;
        Ok(())
    }
}

/// A header that is not an address list, encoded by lettre (RFC 2047 for non-ASCII, folded).
fn raw_header(name: &str, value: String) -> HeaderValue {
    // UNWRAP: names were checked with `new_from_ascii` in `Email::new`.
    HeaderValue::new(HeaderName::new_from_ascii(name.to_string()).unwrap(), value)
}

/// `<unix-nanos.random@domain>`: unique per mail, in the sender's domain (Alertmanager uses the
/// machine's host name; the sender's domain is one the mail already names and needs no lookup).
fn message_id(now: SystemTime, domain: &str) -> String {
    let nanos = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("<{nanos}.{}@{domain}>", fastrand::u64(..))
}

/// A mail's templates rendered: `from` and `to` (or why not), the headers by canonical name,
/// the parts, and every template error (one line each).
#[derive(Debug, Clone)]
pub struct Rendered {
    pub from: Result<String, String>,
    pub to: Result<String, String>,
    pub headers: Vec<(String, String)>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub errors: Vec<String>,
}

/// What `compose` made: the mail (or why none can be sent) and the template errors met.
#[derive(Debug)]
pub struct Composed {
    pub template_errors: Vec<String>,
    pub mail: Result<Mail, Outcome>,
}

/// A formatted mail and its envelope.
#[derive(Debug)]
pub struct Mail {
    pub envelope: Envelope,
    pub bytes: Vec<u8>,
}

/// Alertmanager's template data for a notification of `alerts` (already filtered for
/// `send_resolved`) from `flush`.
pub fn notification_data(
    flush: &Flush,
    alerts: &[NotifyAlert],
    external_url: &str,
) -> NotificationData {
    let status = |firing: bool| if firing { "firing" } else { "resolved" }.to_string();
    NotificationData {
        // Alertmanager quotes regexp metacharacters of the receiver's name in its data.
        receiver: quote_meta(&flush.receiver),
        status: status(alerts.iter().any(|a| !a.resolved())),
        alerts: alerts
            .iter()
            .map(|a| NotificationAlert {
                status: status(!a.resolved()),
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at_ms: a.starts_at_ms,
                ends_at_ms: a.ends_at_ms,
                generator_url: a.generator_url.clone(),
                fingerprint: format!("{:016x}", a.fingerprint()),
                value: a.value,
            })
            .collect(),
        group_labels: flush.group_labels.clone(),
        common_labels: common(alerts, |a| &a.labels),
        common_annotations: common(alerts, |a| &a.annotations),
        external_url: external_url.to_string(),
    }
}

/// lettre's TLS parameters from `tls_config`: `ca_file` replaces the built-in roots (Mozilla's,
/// from webpki-roots), `cert_file`/`key_file` identify the client, `server_name` is checked
/// instead of the smarthost's host, `insecure_skip_verify` accepts any certificate.
fn tls_parameters(host: &str, tls: &TlsConfig) -> Result<TlsParameters, EmailSetupError> {
    let err = |what: String| EmailSetupError::Tls(what);
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| err(format!("cannot read {}: {e}", p.display())))
    };
    let domain = tls
        .server_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| host.to_string());
    let mut b = TlsParameters::builder(domain)
        .dangerous_accept_invalid_certs(tls.insecure_skip_verify)
        .dangerous_accept_invalid_hostnames(tls.insecure_skip_verify);
    if let Some(ca) = &tls.ca_file {
        let cert = Certificate::from_pem(&read(ca)?)
            .map_err(|e| err(format!("ca_file {}: {e}", ca.display())))?;
        b = b
            .certificate_store(CertificateStore::None)
            .add_root_certificate(cert);
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => {
            let id = Identity::from_pem(&read(c)?, &read(k)?)
                .map_err(|e| err(format!("cert_file/key_file: {e}")))?;
            b = b.identify_with(id);
        }
        (None, None) => {}
        _ => return Err(err("cert_file and key_file must be set together".into())),
    }
    // rustls speaks TLS 1.2 and 1.3 only, so a minimum of 1.0 or 1.1 is met by 1.2.
    b = match tls.min_version.as_deref() {
        None | Some("" | "TLS10" | "TLS11" | "TLS12") => b.set_min_tls_version(TlsVersion::Tlsv12),
        Some("TLS13") => b.set_min_tls_version(TlsVersion::Tlsv13),
        Some(v) => return Err(err(format!("unknown TLS version: {v}"))),
    };
    b.build_rustls().map_err(|e| err(e.to_string()))
}

/// AUTH as Alertmanager does it: only when the server offers AUTH (else the mail goes without,
/// and a server that needs it refuses MAIL), PLAIN if offered (with `auth_identity` as the
/// authorization identity), else LOGIN.
async fn authenticate(
    conn: &mut AsyncSmtpConnection,
    auth: &SmtpAuth,
    limit: Duration,
) -> Result<(), SmtpFailure> {
    let info = conn.server_info();
    let plain = info.supports_auth_mechanism(Mechanism::Plain);
    let login = info.supports_auth_mechanism(Mechanism::Login);
    if !plain && !login {
        return Ok(());
    }
    let Some(password) = auth.password.as_ref().filter(|p| !p.expose().is_empty()) else {
        return Err(SmtpFailure::Auth(format!(
            "missing password for {} auth mechanism",
            if plain { "PLAIN" } else { "LOGIN" }
        )));
    };
    if plain {
        // lettre's PLAIN has no authorization identity, so the command is written here.
        let response = format!(
            "{}\0{}\0{}",
            auth.identity,
            auth.username,
            password.expose()
        );
        let command = format!(
            "AUTH PLAIN {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(response)
        );
        step("AUTH", limit, conn.command(command)).await?;
    } else {
        let credentials = Credentials::new(auth.username.clone(), password.expose().to_string());
        step("AUTH", limit, conn.auth(&[Mechanism::Login], &credentials)).await?;
    }
    Ok(())
}

/// One step of the session under its deadline.
async fn step<T>(
    phase: &'static str,
    limit: Duration,
    fut: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, SmtpFailure> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(SmtpFailure::Smtp { phase, source }),
        Err(_) => Err(SmtpFailure::Timeout { phase, limit }),
    }
}

/// Why a session failed. The text never holds credentials: lettre's errors carry the server's
/// reply or the IO error, not the commands sent.
#[derive(Debug, thiserror::Error)]
enum SmtpFailure {
    #[error("{phase}: no answer within {limit:?}")]
    Timeout {
        phase: &'static str,
        limit: Duration,
    },
    #[error("{phase}: {source}")]
    Smtp {
        phase: &'static str,
        source: lettre::transport::smtp::Error,
    },
    #[error("'require_tls' is true (default) but {0:?} does not advertise the STARTTLS extension")]
    NoStartTls(String),
    #[error("AUTH: {0}")]
    Auth(String),
}

impl SmtpFailure {
    /// Alertmanager retries every SMTP failure; here a permanent (5xx) reply and what needs a
    /// configuration change are not retried within the flush (sending the same mail again at
    /// once gets the same answer). The group's next flush carries the alerts again either way.
    fn outcome(&self) -> Outcome {
        let detail = self.to_string();
        let retry = |reason| Outcome::Retry {
            reason,
            after: None,
            detail: detail.clone(),
        };
        let give_up = |reason| Outcome::GiveUp {
            reason,
            detail: detail.clone(),
        };
        match self {
            SmtpFailure::Timeout { .. } => retry("timeout"),
            SmtpFailure::NoStartTls(_) => give_up("tls"),
            SmtpFailure::Auth(_) => give_up("config"),
            SmtpFailure::Smtp { source: e, .. } => {
                if e.is_permanent() {
                    give_up("rejected")
                } else if e.is_transient() {
                    retry("transient")
                } else if e.is_timeout() {
                    retry("timeout")
                } else if e.is_tls() {
                    retry("tls")
                } else if e.is_client() {
                    give_up("config")
                } else if e.is_response() {
                    retry("protocol")
                } else {
                    retry("network")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
