//! Notifications across restarts of the real binary with a data dir: a notification written to the outbox but not acknowledged when the process was SIGKILLed is delivered once after the restart (before the resolve that followed); one that was delivered is not sent again; an alert that was firing keeps its start and, once its condition clears after the restart, its resolve is notified.
#![allow(clippy::disallowed_methods)] // timing a real child process by the wall clock is the point here

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::scripted::{Answer, envelope, position, read_request, webhook};
use common::{Killed, free_port};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_ocx-sentinel");

/// An exchange whose user stream sends, on every connection, a snapshot with the position
/// quantity the test set last, then heartbeats.
async fn exchange(qty: Arc<Mutex<String>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut seq = 0u64;
        while let Ok((mut sock, _)) = listener.accept().await {
            seq += 10;
            let q = qty.lock().unwrap().clone();
            tokio::spawn(async move {
                if read_request(&mut sock, &mut Vec::new()).await.is_none() {
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
                let snap = envelope(
                    "snapshot",
                    seq,
                    &format!(r#"{{"positions":[{}],"trades":[]}}"#, position(&q)),
                );
                if sock.write_all(head.as_bytes()).await.is_err()
                    || sock.write_all(snap.as_bytes()).await.is_err()
                {
                    return;
                }
                loop {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if sock.write_all(b":heartbeat\n\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    base
}

/// A webhook receiver on a fixed port. While `hang` is set it reads each request, reports it
/// on `seen` and never answers; otherwise it answers 200 and reports the body on `acked`.
struct Hook {
    url: String,
    hang: Arc<AtomicBool>,
    seen: mpsc::UnboundedReceiver<Value>,
    acked: mpsc::UnboundedReceiver<Value>,
    requests: Arc<AtomicUsize>,
}

async fn hook() -> Hook {
    let hang = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let (h, r) = (hang.clone(), requests.clone());
    let (url, acked) = webhook(move |_, body| {
        r.fetch_add(1, Ordering::SeqCst);
        if h.load(Ordering::SeqCst) {
            let _ = seen_tx.send(body.clone());
            Answer::Hang
        } else {
            Answer::Ok
        }
    })
    .await;
    Hook {
        url,
        hang,
        seen,
        acked,
        requests,
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ocx-notify-restart-{tag}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Config, rules and routing in `dir`; the data dir is `dir/data`.
fn write_config(dir: &Path, api_base: &str, hook: &str, port: u16) -> PathBuf {
    std::fs::write(
        dir.join("rules.yml"),
        "groups:\n  - name: limits\n    rules:\n      - alert: InventoryLimitBreached\n        expr: abs(ocx_position_quantity) > on(account, market) group_left ocx_inventory_limit\n        labels: {severity: page}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("alerting.yml"),
        format!(
            "route:\n  receiver: team\n  group_by: [alertname, market]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: team\n    webhook_configs:\n      - url: '{hook}'\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "api_base: {api_base}\nlisten: 127.0.0.1:{port}\nreconcile:\n  enabled: false\nstream:\n  backoff_initial: 10ms\n  backoff_max: 200ms\nlimits:\n  inventory:\n    default: 1\nrule_files: [rules.yml]\nalerting_file: alerting.yml\n"
        ),
    )
    .unwrap();
    config
}

/// Starts the sidecar; its log goes to `dir/sidecar-N.log` (N counts the starts), which a
/// failing wait prints.
fn start(config: &Path, dir: &Path) -> Killed {
    let n = logs(dir).len();
    let log = std::fs::File::create(dir.join(format!("sidecar-{n}.log"))).unwrap();
    Killed(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sidecar starts"),
    )
}

/// The sidecar logs in `dir`, in start order.
fn logs(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    found.sort();
    found
}

/// The last lines of every sidecar log in `dir`, for a failure message.
fn log_tails(dir: &Path) -> String {
    let mut out = String::new();
    for path in logs(dir) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!("--- {}\n", path.display()));
        for line in &lines[lines.len().saturating_sub(25)..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

async fn next(
    rx: &mut mpsc::UnboundedReceiver<Value>,
    within: Duration,
    what: &str,
    dir: &Path,
) -> Value {
    tokio::time::timeout(within, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} within {within:?}\n{}", log_tails(dir)))
        .unwrap()
}

/// Waits until the sidecar on `port` has committed `n` notification log entries: from then on
/// a restart knows those deliveries (a kill before that commit sends them again, by design).
async fn logged(port: u16, n: f64, dir: &Path) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let writes = text
            .lines()
            .find_map(|l| l.strip_prefix("ocx_sentinel_notification_log_writes_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if writes >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} notification log entries not committed within 20s (at {writes})\n{}",
            log_tails(dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn quiet(rx: &mut mpsc::UnboundedReceiver<Value>, for_: Duration) -> Vec<Value> {
    let mut got = Vec::new();
    let until = tokio::time::Instant::now() + for_;
    while let Ok(Some(v)) = tokio::time::timeout_at(until, rx.recv()).await {
        got.push(v);
    }
    got
}

fn kill(mut child: Killed) {
    child.0.kill().expect("SIGKILL");
    let _ = child.0.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_unacknowledged_at_sigkill_is_delivered_once_after_the_restart() {
    let dir = temp_dir("outbox");
    let qty = Arc::new(Mutex::new("3".to_string()));
    let api = exchange(qty.clone()).await;
    let mut hook = hook().await;
    hook.hang.store(true, Ordering::SeqCst);
    let config = write_config(&dir, &api, &hook.url, free_port());

    let first = start(&config, &dir);
    // The breach fires at once; its notification reaches the receiver, which never answers.
    let sent = next(
        &mut hook.seen,
        Duration::from_secs(20),
        "notification",
        &dir,
    )
    .await;
    assert_eq!(sent["status"], "firing");
    kill(first);

    // While it is down the position shrinks: the restored alert resolves at the first
    // evaluation, so only the outbox still knows of the firing notification. Alertmanager's
    // rule would send nothing at all (a resolve whose firing was never delivered is not sent);
    // here the receiver gets the firing notification, once, and then its resolve.
    *qty.lock().unwrap() = "0.5".to_string();
    hook.hang.store(false, Ordering::SeqCst);
    let second = start(&config, &dir);
    let delivered = next(&mut hook.acked, Duration::from_secs(20), "redelivery", &dir).await;
    assert_eq!(delivered["status"], "firing");
    assert_eq!(delivered["groupKey"], sent["groupKey"]);
    assert_eq!(
        delivered["alerts"][0]["startsAt"], sent["alerts"][0]["startsAt"],
        "the notification the first process wrote, not a new one"
    );
    let resolved = next(
        &mut hook.acked,
        Duration::from_secs(20),
        "resolved notification",
        &dir,
    )
    .await;
    assert_eq!(resolved["status"], "resolved", "{resolved:#?}");
    let more = quiet(&mut hook.acked, Duration::from_secs(3)).await;
    assert!(more.is_empty(), "delivered once, not again: {more:#?}");
    assert_eq!(hook.requests.load(Ordering::SeqCst), 3);
    kill(second);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_notification_is_not_resent_and_a_resolve_after_restart_is_notified() {
    let dir = temp_dir("nflog");
    let qty = Arc::new(Mutex::new("3".to_string()));
    let api = exchange(qty.clone()).await;
    let mut hook = hook().await;
    let port = free_port();
    let config = write_config(&dir, &api, &hook.url, port);

    let first = start(&config, &dir);
    let fired = next(
        &mut hook.acked,
        Duration::from_secs(20),
        "firing notification",
        &dir,
    )
    .await;
    assert_eq!(fired["status"], "firing");
    // The log entry is committed right after the acknowledgement; killed before that commit,
    // the sidecar would send it again (at least once, as Alertmanager).
    logged(port, 1.0, &dir).await;
    kill(first);

    // Still breached after the restart: already notified within repeat_interval, so nothing.
    let second = start(&config, &dir);
    let again = quiet(&mut hook.acked, Duration::from_secs(5)).await;
    assert!(again.is_empty(), "not sent again: {again:#?}");
    kill(second);

    // The position shrank while the sidecar was down: the restored firing alert resolves at the
    // first evaluation after the snapshot, and that is notified, once.
    *qty.lock().unwrap() = "0.5".to_string();
    let third = start(&config, &dir);
    let resolved = next(
        &mut hook.acked,
        Duration::from_secs(20),
        "resolved notification",
        &dir,
    )
    .await;
    assert_eq!(resolved["status"], "resolved", "{resolved:#?}");
    assert_eq!(
        resolved["alerts"][0]["startsAt"],
        fired["alerts"][0]["startsAt"]
    );
    let more = quiet(&mut hook.acked, Duration::from_secs(3)).await;
    assert!(more.is_empty(), "one resolved notification: {more:#?}");
    kill(third);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn wait_up(port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("http://127.0.0.1:{port}/-/healthy"))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sidecar did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_survives_a_sigkill_and_its_series_count_it() {
    let dir = temp_dir("silence");
    let api = exchange(Arc::new(Mutex::new("0.5".to_string()))).await;
    let hook = hook().await;
    let port = free_port();
    let config = write_config(&dir, &api, &hook.url, port);
    let first = start(&config, &dir);
    wait_up(port).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = serde_json::json!({
        "matchers": [{"name": "market", "value": "BTC-PERP", "isRegex": false, "isEqual": true}],
        "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": httpdate_iso(now + 3600),
        "createdBy": "test",
        "comment": "maintenance",
    });
    let created: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v2/silences"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    let id = created["silenceID"].as_str().expect("an id").to_string();
    // On disk within milliseconds of the answer (the writer's next commit).
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(first);

    let second = start(&config, &dir);
    wait_up(port).await;
    let listed: Value = reqwest::get(format!("http://127.0.0.1:{port}/api/v2/silence/{id}"))
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(listed["status"]["state"], "active", "{listed:#?}");
    assert_eq!(listed["comment"], "maintenance");
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ocx_sentinel_silences{state=\"active\"} 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("silences"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    kill(second);
    let _ = std::fs::remove_dir_all(&dir);
}

/// RFC 3339 in UTC for unix seconds (days to civil date, as the proleptic Gregorian calendar).
fn httpdate_iso(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
