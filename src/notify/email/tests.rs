//! Email tests: the default templates' text and HTML, the message lettre builds (headers, Message-ID, multipart/alternative), template errors that still send, setup checks, and how SMTP replies and silences become pipeline outcomes (against scripted SMTP servers on loopback).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;
use crate::notify::config::{AlertingConfig, parse_str};
use crate::notify::dispatch::LabelSet;

fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An Alertmanager file with one email receiver; `extra` is more keys of its email config.
fn config(smarthost: &str, extra: &str) -> AlertingConfig {
    let text = format!(
        r#"global:
  smtp_smarthost: '{smarthost}'
  smtp_from: 'Sentinel <alerts@ocx.example>'
  smtp_require_tls: false
route: {{receiver: mail}}
receivers:
  - name: mail
    email_configs:
      - to: 'ops@ocx.example, Desk <desk@ocx.example>'
{extra}"#
    );
    parse_str(&text, "t.yml").unwrap_or_else(|e| panic!("{text}\n{e}"))
}

fn email_with(smarthost: &str, extra: &str) -> Result<Email, EmailSetupError> {
    let cfg = config(smarthost, extra);
    let set = template_set(&cfg.templates)?;
    Email::new(&cfg.receivers[0].emails[0], &set)
}

fn email(extra: &str) -> Email {
    email_with("localhost:2525", extra).unwrap()
}

const STARTS: i64 = 1_764_092_913_120; // 2025-11-25T17:48:33.12Z

fn alerts() -> Vec<NotifyAlert> {
    vec![
        NotifyAlert {
            labels: labels(&[
                ("alertname", "InventoryLimitBreached"),
                ("market", "BTC-PERP"),
                ("severity", "page"),
            ]),
            annotations: labels(&[
                ("summary", "BTC-PERP inventory 7.5 over 5"),
                ("description", "Position grew past the limit."),
                (
                    "runbook_url",
                    "https://runbooks.example/inventory?m=BTC-PERP&x=1",
                ),
                ("dashboard", "https://grafana.example/d/inv"),
            ]),
            starts_at_ms: STARTS,
            ends_at_ms: None,
            value: 7.5,
            generator_url: "http://sentinel:9477/".into(),
            trigger: None,
        },
        NotifyAlert {
            labels: labels(&[
                ("alertname", "InventoryLimitBreached"),
                ("market", "ETH-PERP"),
                ("severity", "page"),
            ]),
            annotations: labels(&[("summary", "ETH-PERP inventory <back>")]),
            starts_at_ms: STARTS,
            ends_at_ms: Some(STARTS + 60_000),
            value: 1.25,
            generator_url: String::new(),
            trigger: None,
        },
    ]
}

fn flush(alerts: Vec<NotifyAlert>) -> Flush {
    Flush {
        id: "g".into(),
        route: "{}".into(),
        group_key: r#"{}:{alertname="InventoryLimitBreached"}"#.into(),
        receiver: "mail".into(),
        group_labels: labels(&[("alertname", "InventoryLimitBreached")]),
        repeat_interval: Duration::from_secs(3600),
        group_interval: Duration::from_secs(300),
        alerts,
        fallback: None,
    }
}

fn data() -> NotificationData {
    let f = flush(alerts());
    notification_data(&f, &f.alerts, "http://sentinel:9477")
}

/// The header section of a formatted mail, folded lines joined.
fn head(bytes: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(bytes);
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            out.last_mut().unwrap().1.push_str(line);
        } else {
            let (k, v) = line.split_once(':').unwrap();
            out.push((k.to_string(), v.trim().to_string()));
        }
    }
    out
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn the_default_text_shows_each_alert() {
    let r = email("").render(&data(), STARTS + 90_000);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let expected = "\
[FIRING:1] InventoryLimitBreached (page)

Firing (1):

* InventoryLimitBreached: BTC-PERP inventory 7.5 over 5
  Value:       7.5
  Started:     2025-11-25 17:48:33 UTC
  Description: Position grew past the limit.
  Runbook:     https://runbooks.example/inventory?m=BTC-PERP&x=1
  Labels:
    alertname = InventoryLimitBreached
    market = BTC-PERP
    severity = page
  Annotations:
    dashboard = https://grafana.example/d/inv
  Source:      http://sentinel:9477/

Resolved (1):

* InventoryLimitBreached: ETH-PERP inventory <back>
  Value:       1.25
  Started:     2025-11-25 17:48:33 UTC
  Resolved:    2025-11-25 17:49:33 UTC
  Labels:
    alertname = InventoryLimitBreached
    market = ETH-PERP
    severity = page

Sent by ocx-sentinel: http://sentinel:9477/
";
    assert_eq!(r.text.as_deref(), Some(expected));
    assert_eq!(
        r.headers,
        [
            (
                "From".to_string(),
                "Sentinel <alerts@ocx.example>".to_string()
            ),
            (
                "Subject".into(),
                "[FIRING:1] InventoryLimitBreached (page)".into()
            ),
            (
                "To".into(),
                "ops@ocx.example, Desk <desk@ocx.example>".into()
            ),
        ]
    );
}

#[test]
fn the_default_html_shows_each_alert_escaped_with_its_runbook_linked() {
    let r = email("").render(&data(), STARTS);
    let html = r.html.unwrap();
    for part in [
        "<title>[FIRING:1] InventoryLimitBreached (page)</title>",
        "2 alerts for alertname=InventoryLimitBreached",
        "<h3 style=\"margin: 0 0 12px;\">Firing (1)</h3>",
        "InventoryLimitBreached: BTC-PERP inventory 7.5 over 5</td>",
        ">7.5</td>",
        ">2025-11-25 17:48:33 UTC</td>",
        ">Position grew past the limit.</td>",
        // The link's `&` is escaped in the attribute and in the text.
        "<a href=\"https://runbooks.example/inventory?m=BTC-PERP&amp;x=1\">https://runbooks.example/inventory?m=BTC-PERP&amp;x=1</a>",
        "market = BTC-PERP<br>",
        "dashboard = https://grafana.example/d/inv<br>",
        "Resolved (1)</h3>",
        "ETH-PERP inventory &lt;back&gt;",
        ">2025-11-25 17:49:33 UTC</td>",
        "<a href=\"http://sentinel:9477/\" style=\"color: #348eda;\">View in ocx-sentinel</a>",
    ] {
        assert!(html.contains(part), "{part:?} missing from\n{html}");
    }
    assert!(!html.contains("<back>"));
}

#[test]
fn a_resolved_only_notification_says_so() {
    let f = flush(vec![alerts().remove(1)]);
    let d = notification_data(&f, &f.alerts, "http://s");
    assert_eq!(d.status, "resolved");
    let r = email("").render(&d, STARTS);
    assert_eq!(
        header(&r.headers, "Subject"),
        Some("[RESOLVED] InventoryLimitBreached (ETH-PERP page)")
    );
    assert!(!r.text.unwrap().contains("Firing ("));
}

#[test]
fn the_message_has_alertmanagers_headers_a_message_id_and_both_parts() {
    let e = email("        headers: {x-team: '{{ .CommonLabels.severity }}'}");
    let now = UNIX_EPOCH + Duration::from_millis(STARTS as u64);
    let c = e.compose(&data(), now);
    assert!(c.template_errors.is_empty());
    let mail = c.mail.unwrap();
    assert_eq!(
        mail.envelope.from().map(ToString::to_string).as_deref(),
        Some("alerts@ocx.example")
    );
    let to: Vec<String> = mail.envelope.to().iter().map(ToString::to_string).collect();
    assert_eq!(to, ["ops@ocx.example", "desk@ocx.example"]);
    let h = head(&mail.bytes);
    assert_eq!(header(&h, "From"), Some("Sentinel <alerts@ocx.example>"));
    assert_eq!(
        header(&h, "To"),
        Some("ops@ocx.example, Desk <desk@ocx.example>")
    );
    assert_eq!(
        header(&h, "Subject"),
        Some("[FIRING:1] InventoryLimitBreached (page)")
    );
    assert_eq!(header(&h, "X-Team"), Some("page"));
    assert_eq!(header(&h, "Date"), Some("Tue, 25 Nov 2025 17:48:33 +0000"));
    assert_eq!(header(&h, "MIME-Version"), Some("1.0"));
    let id = header(&h, "Message-ID").unwrap();
    let inner = id
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix(">"))
        .unwrap();
    let (unique, domain) = inner.split_once('@').unwrap();
    assert_eq!(domain, "ocx.example");
    let (nanos, random) = unique.split_once('.').unwrap();
    assert_eq!(nanos, format!("{}", STARTS as u128 * 1_000_000));
    assert!(random.parse::<u64>().is_ok(), "{id}");
    let again = head(&e.compose(&data(), now).mail.unwrap().bytes);
    assert_ne!(header(&again, "Message-ID"), Some(id), "unique per mail");

    let ct = header(&h, "Content-Type").unwrap();
    let boundary = ct
        .strip_prefix("multipart/alternative; boundary=\"")
        .and_then(|b| b.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{ct}"));
    let body = String::from_utf8_lossy(&mail.bytes);
    let parts: Vec<&str> = body.split(&format!("--{boundary}")).collect();
    // Preamble, text, html, closing `--`.
    assert_eq!(parts.len(), 4, "{body}");
    assert!(
        parts[1].contains("Content-Type: text/plain; charset=utf-8"),
        "{}",
        parts[1]
    );
    assert!(
        parts[2].contains("Content-Type: text/html; charset=utf-8"),
        "{}",
        parts[2]
    );
    assert!(parts[3].starts_with("--"));
}

#[test]
fn a_header_cannot_smuggle_another_header() {
    let e = email("        headers: {X-Market: '{{ .CommonAnnotations.summary }}'}");
    let mut a = alerts();
    a.truncate(1);
    a[0].annotations
        .insert("summary".into(), "x\r\nBcc: evil@attacker.example".into());
    let f = flush(a);
    let c = e.compose(&notification_data(&f, &f.alerts, ""), SystemTime::now());
    let h = head(&c.mail.unwrap().bytes);
    assert!(header(&h, "Bcc").is_none(), "{h:?}");
    assert_eq!(
        header(&h, "X-Market"),
        Some("x  Bcc: evil@attacker.example")
    );
}

#[test]
fn a_failing_template_still_sends_with_the_error_in_the_text() {
    let e = email(
        "        text: '{{ .Nope }}'\n        headers: {Subject: '{{ template \"nope\" . }}', X-Bad: '{{ .Nope }}'}",
    );
    let c = e.compose(&data(), SystemTime::now());
    assert_eq!(c.template_errors.len(), 3, "{:?}", c.template_errors);
    let mail = c.mail.unwrap();
    let h = head(&mail.bytes);
    // The subject falls back to the default one; the broken custom header is left out.
    assert_eq!(
        header(&h, "Subject"),
        Some("[FIRING:1] InventoryLimitBreached (page)")
    );
    assert!(header(&h, "X-Bad").is_none());
    let r = e.render(&data(), 0);
    let text = r.text.unwrap();
    assert!(
        text.starts_with(
            "ocx-sentinel could not render this notification as configured:\n  - Subject header: template: headers.Subject:1:12: executing \"headers.Subject\" at <{{template \"nope\" .}}>: template \"nope\" not defined\n"
        ),
        "{text}"
    );
    assert!(text.contains(
        "  - text: template: text:1:3: executing \"text\" at <.Nope>: can't evaluate field Nope in type *template.Data\n"
    ));
    // Under the errors, the default text: the alerts are still there to read.
    assert!(text.contains("* InventoryLimitBreached: BTC-PERP inventory 7.5 over 5"));
    assert!(r.html.is_none(), "the HTML part would hide the errors");
    let body = String::from_utf8_lossy(&mail.bytes);
    assert!(!body.contains("text/html"));
}

#[test]
fn unaddressable_mail_is_given_up() {
    let c = email("        from: '{{ .Nope }}'").compose(&data(), SystemTime::now());
    // The envelope's sender and the From header (which defaults to `from`) both fail.
    assert_eq!(c.template_errors.len(), 2, "{:?}", c.template_errors);
    assert!(matches!(
        c.mail,
        Err(Outcome::GiveUp {
            reason: "template",
            ..
        })
    ));
    let c = email("        from: 'a@x.example, b@x.example'").compose(&data(), SystemTime::now());
    match c.mail {
        Err(Outcome::GiveUp { reason, detail }) => {
            assert_eq!(reason, "config");
            assert_eq!(detail, "must be exactly one 'from' address (got: 2)");
        }
        other => panic!("{other:?}"),
    }
    // `to` rendered empty: nobody to send to.
    let mut cfg = config("localhost:25", "");
    cfg.receivers[0].emails[0].to = "{{ .CommonLabels.nope }}".into();
    let e = Email::new(&cfg.receivers[0].emails[0], &template_set(&[]).unwrap()).unwrap();
    let c = e.compose(&data(), SystemTime::now());
    assert!(c.template_errors.is_empty());
    assert!(
        matches!(
            c.mail,
            Err(Outcome::GiveUp {
                reason: "config",
                ..
            })
        ),
        "{:?}",
        c.mail
    );
}

#[test]
fn setup_refuses_what_could_never_send() {
    let err = |extra: &str| email_with("localhost:2525", extra).unwrap_err().to_string();
    assert_eq!(
        err("        html: '{{ humanize 1 }}'"),
        "html: template: html:1: function \"humanize\" not defined"
    );
    assert!(
        err("        auth_username: u\n        auth_secret: s")
            .contains("CRAM-MD5 is not supported")
    );
    assert!(
        err("        tls_config: {ca_file: /nonexistent/ca.pem}")
            .starts_with("tls_config: cannot read /nonexistent/ca.pem")
    );
    assert!(err("        tls_config: {min_version: TLS99}").contains("unknown TLS version"));
    assert_eq!(
        email_with("localhost:smtp", "").unwrap_err().to_string(),
        "smarthost localhost:smtp: the port must be a number"
    );
    assert!(email_with("localhost:465", "").unwrap().0.implicit_tls);
    assert!(!email("").0.implicit_tls);
    assert!(email("        force_implicit_tls: true").0.implicit_tls);
    assert!(
        !email_with("localhost:465", "        force_implicit_tls: false")
            .unwrap()
            .0
            .implicit_tls
    );
    // Credentials never print.
    let e = email("        auth_username: ops\n        auth_password: hunter2-secret");
    assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
    assert!(format!("{e:?}").contains("ops"));
}

#[test]
fn templates_files_override_the_defaults() {
    let dir = std::env::temp_dir().join(format!("ocx-email-tmpl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("a.tmpl"),
        r#"{{ define "email.default.subject" }}custom {{ .Status }}{{ end }}"#,
    )
    .unwrap();
    std::fs::write(dir.join("bad.other"), "{{ nope }}").unwrap();
    let set = template_set(&[dir.join("*.tmpl")]).unwrap();
    let cfg = config("localhost:25", "");
    let e = Email::new(&cfg.receivers[0].emails[0], &set).unwrap();
    assert_eq!(
        header(&e.render(&data(), 0).headers, "Subject"),
        Some("custom firing")
    );
    let err = template_set(&[dir.join("*.other")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        r#"templates: template: bad.other:1: function "nope" not defined"#
    );
    // A glob matching nothing is no error (Alertmanager allows it).
    assert!(template_set(&[dir.join("none-*.tmpl")]).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A loopback SMTP server that greets, answers EHLO, then gives `replies` one per command, then
/// says nothing more (but answers QUIT, which lettre sends after an error reply); `None` as the
/// greeting means it never speaks.
async fn scripted(greeting: Option<&'static str>, replies: Vec<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let (r, mut w) = sock.into_split();
        let mut lines = BufReader::new(r).lines();
        let Some(g) = greeting else {
            // Hold the connection open, silent.
            let _ = lines.next_line().await;
            return;
        };
        let _ = w.write_all(g.as_bytes()).await;
        let _ = lines.next_line().await; // EHLO
        let _ = w.write_all(b"250-localhost\r\n250 8BITMIME\r\n").await;
        let mut replies = replies.into_iter();
        while let Ok(Some(line)) = lines.next_line().await {
            if line == "QUIT" {
                let _ = w.write_all(b"221 bye\r\n").await;
                return;
            }
            if let Some(reply) = replies.next() {
                let _ = w.write_all(reply.as_bytes()).await;
            }
        }
    });
    addr.to_string()
}

async fn outcome(smarthost: &str) -> (Outcome, Telemetry) {
    let e = email_with(smarthost, "        text: '{{ .Nope }}'")
        .unwrap()
        .with_step_timeout(Duration::from_millis(300));
    let f = flush(alerts());
    let t = Telemetry::new();
    (e.send(&f, &f.alerts, "http://s", &t).await, t)
}

#[tokio::test]
async fn smtp_replies_become_outcomes() {
    let host = scripted(Some("220 hi\r\n"), vec!["451 4.3.0 try again later\r\n"]).await;
    let (o, t) = outcome(&host).await;
    assert!(
        matches!(&o, Outcome::Retry { reason: "transient", detail, .. } if detail.contains("451")),
        "{o:?}"
    );
    // The mail was rendered (with its broken text) before the server refused it.
    assert_eq!(
        t.counter(
            names::NOTIFICATION_TEMPLATE_ERRORS,
            &[("integration", "email")]
        )
        .get(),
        1.0
    );
    let host = scripted(
        Some("220 hi\r\n"),
        vec!["250 ok\r\n", "550 5.1.1 no such user\r\n"],
    )
    .await;
    let (o, _) = outcome(&host).await;
    assert!(
        matches!(&o, Outcome::GiveUp { reason: "rejected", detail } if detail.contains("no such user")),
        "{o:?}"
    );
    let host = scripted(Some("554 go away\r\n"), vec![]).await;
    assert!(matches!(
        outcome(&host).await.0,
        Outcome::GiveUp {
            reason: "rejected",
            ..
        }
    ));
    let host = scripted(
        Some("220 hi\r\n"),
        vec!["250 ok\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n"],
    )
    .await;
    // DATA accepted, then the server never confirms the message: the step's deadline.
    let (o, _) = outcome(&host).await;
    assert!(
        matches!(
            &o,
            Outcome::Retry {
                reason: "timeout",
                ..
            }
        ),
        "{o:?}"
    );
}

#[tokio::test]
async fn silence_and_refusal_are_retried() {
    let host = scripted(None, vec![]).await;
    let (o, _) = outcome(&host).await;
    match o {
        Outcome::Retry { reason, detail, .. } => {
            assert_eq!(reason, "timeout");
            assert_eq!(detail, "connect: no answer within 300ms");
        }
        other => panic!("{other:?}"),
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (o, _) = outcome(&format!("127.0.0.1:{port}")).await;
    assert!(
        matches!(
            o,
            Outcome::Retry {
                reason: "network",
                ..
            }
        ),
        "{o:?}"
    );
}

#[tokio::test]
async fn require_tls_needs_starttls() {
    let host = scripted(Some("220 hi\r\n"), vec![]).await;
    let e = email_with(&host, "        require_tls: true")
        .unwrap()
        .with_step_timeout(Duration::from_secs(2));
    let f = flush(alerts());
    match e.send(&f, &f.alerts, "", &Telemetry::new()).await {
        Outcome::GiveUp { reason, detail } => {
            assert_eq!(reason, "tls");
            assert_eq!(
                detail,
                format!(
                    "'require_tls' is true (default) but \"{host}\" does not advertise the STARTTLS extension"
                )
            );
        }
        other => panic!("{other:?}"),
    }
}
