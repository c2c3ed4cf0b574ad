//! Email notifications against a real SMTP server (Python's aiosmtpd, `tests/smtp_server.py`): a firing alert mailed over STARTTLS with the password from a file, LOGIN over implicit TLS with a broken template still delivered, a wrong password refused and never shown, and a server that is down retried, then mailed once. Without aiosmtpd (or openssl, for the certificate) a test is skipped with a message, unless `OCX_REQUIRE_PEERS=1` makes that a failure.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{Killed, free_port};
use ocx_sentinel::clock::unix_ms;
use ocx_sentinel::notify::config::parse_in;
use ocx_sentinel::notify::dispatch::NotifyAlert;
use ocx_sentinel::notify::pipeline::{NoMute, Notifier, Routing};
use ocx_sentinel::notify::wire::{ConfigRouter, integrations};
use ocx_sentinel::telemetry::{Telemetry, names};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

fn required() -> bool {
    std::env::var("OCX_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// A Python with aiosmtpd (Debian's python3-aiosmtpd lands in /usr/bin/python3, which another
/// `python3` on the PATH may not see), or None: the test is skipped, or fails when required.
fn python() -> Option<&'static str> {
    for py in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(py)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(py);
        }
    }
    assert!(
        !required(),
        "aiosmtpd is required (OCX_REQUIRE_PEERS=1): apt-get install python3-aiosmtpd"
    );
    eprintln!("aiosmtpd not installed: test skipped (CI runs it)");
    None
}

/// A scratch directory, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!(
            "ocx-sentinel-email-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("mail")).unwrap();
        Dir(d)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn mail(&self) -> PathBuf {
        self.0.join("mail")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server's certificate and key from [`common::test_certificates`] (its CA is `ca.pem`
/// in `dir`), or None when openssl is missing (skipped, or a failure when required).
fn certificate(dir: &Path) -> Option<Certs> {
    common::test_certificates(dir)?;
    Some(Certs {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    })
}

struct Certs {
    cert: PathBuf,
    key: PathBuf,
}

/// `tests/smtp_server.py` on `port`, writing mails into `out`; killed when dropped.
fn smtp(py: &str, port: u16, out: &Path, args: &[&str]) -> Killed {
    let mut child = Command::new(py)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_server.py"))
        .args(["--port", &port.to_string()])
        .arg("--out")
        .arg(out)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the SMTP server starts");
    let stdout = child.stdout.take().unwrap();
    let guard = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the SMTP server says READY");
    assert_eq!(line.trim(), "READY", "the SMTP server did not start");
    guard
}

/// The mails received so far, in order.
fn mails(out: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(25);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; logs:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn header<'a>(mail: &'a Value, name: &str) -> Option<&'a str> {
    mail["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
        .and_then(|h| h[1].as_str())
}

fn part(mail: &Value, content_type: &str) -> Option<String> {
    mail["parts"]
        .as_array()?
        .iter()
        .find(|p| p["content_type"] == content_type)
        .and_then(|p| p["body"].as_str())
        // The parts travel with CRLF line ends; Python leaves 7bit text as it came.
        .map(|b| b.replace("\r\n", "\n"))
}

/// Everything this test binary logged (every test's), to check what it never says.
fn logs() -> String {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    let buf = LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || Sink(sink.clone()))
            .try_init();
        buf
    });
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The route every test uses: one group per alertname, flushed at once, retried for 30s.
const ROUTE: &str = "route:
  receiver: mail
  group_by: [alertname]
  group_wait: 0s
  group_interval: 30s
  repeat_interval: 1h
";

struct Running {
    telemetry: Telemetry,
    receivers: String,
    _alerts: watch::Sender<Arc<Vec<Arc<NotifyAlert>>>>,
    stop: watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Running {
    fn counter(&self, name: &'static str, labels: &[(&str, &str)]) -> f64 {
        self.telemetry.counter(name, labels).get()
    }
}

/// A notifier for the Alertmanager file `yaml` (relative paths in `dir`), handed one firing
/// alert.
fn start(yaml: &str, dir: &Path) -> Running {
    logs();
    let cfg = Arc::new(parse_in(yaml, "alerting.yml", dir).unwrap_or_else(|e| panic!("{e}")));
    let receivers = integrations(&cfg).unwrap();
    let telemetry = Telemetry::new();
    let notifier = Arc::new(Notifier::new(
        Routing {
            router: Arc::new(ConfigRouter(cfg)),
            muter: Arc::new(NoMute),
            receivers: receivers.clone(),
        },
        reqwest::Client::new(),
        telemetry.clone(),
        "http://sentinel:9477".into(),
        None,
    ));
    let alert = NotifyAlert {
        labels: [
            ("alertname", "InventoryLimitBreached"),
            ("market", "BTC-PERP"),
            ("severity", "page"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        annotations: [
            ("summary", "BTC-PERP inventory 7.5 over 5"),
            ("runbook_url", "https://runbooks.example/inventory"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        starts_at_ms: unix_ms(),
        ends_at_ms: None,
        value: 7.5,
        generator_url: "http://sentinel:9477/".into(),
        trigger: None,
    };
    let (alerts, alerts_rx) = watch::channel(Arc::new(Vec::new()));
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(notifier.run(alerts_rx, stop_rx));
    alerts.send(Arc::new(vec![Arc::new(alert)])).unwrap();
    Running {
        telemetry,
        receivers: format!("{receivers:?}"),
        _alerts: alerts,
        stop,
    }
}

const EMAIL: [(&str, &str); 1] = [("integration", "email")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_is_mailed_over_starttls_with_the_password_from_a_file() {
    let Some(py) = python() else { return };
    let dir = Dir::new("starttls");
    let Some(Certs { cert, key }) = certificate(dir.path()) else {
        return;
    };
    let password = "s3cret-from-file-Zq9";
    std::fs::write(dir.path().join("smtp-password"), format!("{password}\n")).unwrap();
    let port = free_port();
    let _server = smtp(
        py,
        port,
        &dir.mail(),
        &[
            "--tls",
            "starttls",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--user",
            "sentinel",
            "--password-file",
            dir.path().join("smtp-password").to_str().unwrap(),
        ],
    );
    // require_tls is on by default: STARTTLS, the server's certificate checked against ca_file.
    let run = start(
        &format!(
            "global:
  smtp_smarthost: '127.0.0.1:{port}'
  smtp_from: 'Sentinel <alerts@ocx.example>'
  smtp_auth_username: sentinel
  smtp_auth_password_file: smtp-password
{ROUTE}receivers:
  - name: mail
    email_configs:
      - to: 'ops@ocx.example, Desk <desk@ocx.example>'
        tls_config: {{ca_file: ca.pem}}
"
        ),
        dir.path(),
    );
    wait_until("the mail", || !mails(&dir.mail()).is_empty()).await;
    let mail = &mails(&dir.mail())[0];
    assert_eq!(mail["mail_from"], "alerts@ocx.example");
    assert_eq!(
        mail["rcpt_tos"],
        serde_json::json!(["ops@ocx.example", "desk@ocx.example"])
    );
    assert_eq!(mail["tls"], true, "delivered over STARTTLS");
    assert_eq!(
        mail["login"], "sentinel",
        "authenticated with the file's password"
    );
    assert_eq!(header(mail, "From"), Some("Sentinel <alerts@ocx.example>"));
    assert_eq!(
        header(mail, "To"),
        Some("ops@ocx.example, Desk <desk@ocx.example>")
    );
    assert_eq!(
        header(mail, "Subject"),
        Some("[FIRING:1] InventoryLimitBreached (BTC-PERP page)")
    );
    let id = header(mail, "Message-ID").expect("a Message-ID");
    assert!(id.starts_with('<') && id.ends_with("@ocx.example>"), "{id}");
    assert!(header(mail, "Date").is_some());
    assert_eq!(mail["content_type"], "multipart/alternative");
    let text = part(mail, "text/plain").expect("a text part");
    for s in [
        "* InventoryLimitBreached: BTC-PERP inventory 7.5 over 5",
        "Value:       7.5",
        "Runbook:     https://runbooks.example/inventory",
        "market = BTC-PERP",
        "severity = page",
    ] {
        assert!(text.contains(s), "{s:?} missing from\n{text}");
    }
    let html = part(mail, "text/html").expect("an HTML part");
    assert!(html.contains(r#"<a href="https://runbooks.example/inventory">"#));
    assert!(html.contains(">7.5</td>"));

    wait_until("the delivery to be counted", || {
        run.counter(names::NOTIFICATIONS, &EMAIL) == 1.0
    })
    .await;
    assert_eq!(run.counter(names::NOTIFICATION_REQUESTS, &EMAIL), 1.0);
    assert!(!run.receivers.contains(password), "{}", run.receivers);
    assert!(!logs().contains(password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_over_implicit_tls_and_a_broken_template_still_mails() {
    let Some(py) = python() else { return };
    let dir = Dir::new("implicit");
    let Some(Certs { cert, key }) = certificate(dir.path()) else {
        return;
    };
    std::fs::write(dir.path().join("pw"), "implicit-pw-W4k").unwrap();
    let port = free_port();
    let _server = smtp(
        py,
        port,
        &dir.mail(),
        &[
            "--tls",
            "implicit",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--user",
            "sentinel",
            "--password-file",
            dir.path().join("pw").to_str().unwrap(),
            "--login-only",
        ],
    );
    let run = start(
        &format!(
            "{ROUTE}receivers:
  - name: mail
    email_configs:
      - to: ops@ocx.example
        from: alerts@ocx.example
        smarthost: '127.0.0.1:{port}'
        force_implicit_tls: true
        tls_config: {{insecure_skip_verify: true}}
        auth_username: sentinel
        auth_password_file: pw
        headers: {{X-Broken: '{{{{ .Nope }}}}'}}
"
        ),
        dir.path(),
    );
    wait_until("the mail", || !mails(&dir.mail()).is_empty()).await;
    let mail = &mails(&dir.mail())[0];
    assert_eq!(mail["tls"], true);
    assert_eq!(
        mail["login"], "sentinel",
        "LOGIN, the only mechanism offered"
    );
    assert!(header(mail, "X-Broken").is_none());
    let text = part(mail, "text/plain").expect("a text part");
    assert!(
        text.starts_with("ocx-sentinel could not render this notification as configured:\n  - X-Broken header: template: headers.X-Broken:1:3:"),
        "{text}"
    );
    assert!(text.contains("* InventoryLimitBreached: BTC-PERP inventory 7.5 over 5"));
    assert!(part(mail, "text/html").is_none());
    wait_until("the delivery to be counted", || {
        run.counter(names::NOTIFICATIONS, &EMAIL) == 1.0
    })
    .await;
    assert_eq!(
        run.counter(names::NOTIFICATION_TEMPLATE_ERRORS, &EMAIL),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_counted_and_never_shown() {
    let Some(py) = python() else { return };
    let dir = Dir::new("wrong");
    std::fs::write(dir.path().join("right"), "the-right-one").unwrap();
    let password = "wrong-Hx7-password";
    std::fs::write(dir.path().join("pw"), password).unwrap();
    let port = free_port();
    let _server = smtp(
        py,
        port,
        &dir.mail(),
        &[
            "--user",
            "sentinel",
            "--password-file",
            dir.path().join("right").to_str().unwrap(),
        ],
    );
    let run = start(
        &format!(
            "global:
  smtp_smarthost: '127.0.0.1:{port}'
  smtp_from: alerts@ocx.example
  smtp_require_tls: false
{ROUTE}receivers:
  - name: mail
    email_configs:
      - to: ops@ocx.example
        auth_username: sentinel
        auth_password_file: pw
"
        ),
        dir.path(),
    );
    let rejected = [("integration", "email"), ("reason", "rejected")];
    wait_until("the refusal to be counted", || {
        run.counter(names::NOTIFICATIONS_FAILED, &rejected) == 1.0
    })
    .await;
    // A 535 is permanent: not retried within the flush.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(run.counter(names::NOTIFICATION_REQUESTS, &EMAIL), 1.0);
    assert_eq!(run.counter(names::NOTIFICATIONS, &EMAIL), 0.0);
    assert!(mails(&dir.mail()).is_empty());
    let logs = logs();
    assert!(
        logs.contains("notification refused; not retried") && logs.contains("535"),
        "the refusal is logged with the server's answer:\n{logs}"
    );
    assert!(!logs.contains(password));
    assert!(!run.receivers.contains(password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_is_retried_then_mailed_once() {
    let Some(py) = python() else { return };
    let dir = Dir::new("down");
    let port = free_port();
    let run = start(
        &format!(
            "global:
  smtp_smarthost: '127.0.0.1:{port}'
  smtp_from: alerts@ocx.example
{ROUTE}receivers:
  - name: mail
    email_configs:
      - to: ops@ocx.example
        require_tls: false
"
        ),
        dir.path(),
    );
    let refused = [("integration", "email"), ("reason", "network")];
    wait_until("two refused attempts", || {
        run.counter(names::NOTIFICATIONS_FAILED, &refused) >= 2.0
    })
    .await;
    assert!(mails(&dir.mail()).is_empty());
    let _server = smtp(py, port, &dir.mail(), &[]);
    wait_until("the mail", || !mails(&dir.mail()).is_empty()).await;
    wait_until("the delivery to be counted", || {
        run.counter(names::NOTIFICATIONS, &EMAIL) == 1.0
    })
    .await;
    let attempts = run.counter(names::NOTIFICATION_REQUESTS, &EMAIL);
    let failed = run.counter(names::NOTIFICATIONS_FAILED, &refused);
    assert_eq!(attempts, failed + 1.0, "every attempt but the last refused");
    // Delivered once: nothing more within the group interval.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(mails(&dir.mail()).len(), 1);
    assert_eq!(run.counter(names::NOTIFICATIONS, &EMAIL), 1.0);
    assert_eq!(
        header(&mails(&dir.mail())[0], "Subject"),
        Some("[FIRING:1] InventoryLimitBreached (BTC-PERP page)")
    );
}
