//! The Alertmanager receiver (`notify::forward`) against a real Alertmanager 0.25: a scripted breach shows up there with the sidecar's labels (and the same fingerprint, receivers and shape as the sidecar's own `/api/v2/alerts`), notifies its webhook firing and then resolved; an Alertmanager that is down costs one failed post per resend delay, no busy loop, and gets the alert once it is up.
//!
//! Needs Debian's `prometheus-alertmanager`; skipped when missing unless `OCX_REQUIRE_PEERS=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::scripted::{envelope, position, recorder, scripted_exchange};
use common::{Killed, free_port, json_shape, peer, scrape, start_sidecar};
use ocx_sentinel::config::{AlertingSource, AlertmanagerTarget, ForwardAuth, ForwardSettings};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The tests here measure the process's CPU time and count requests: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const RULES: &str = r#"
groups:
  - name: limits
    rules:
      - alert: InventoryLimitBreached
        expr: abs(ocx_position_quantity) > on(account, market) group_left ocx_inventory_limit
        labels: {severity: page}
        annotations: {summary: '{{ $labels.market }} at {{ $value }}'}
"#;

/// The same routing on both sides; only the real Alertmanager's receiver has a webhook.
fn routing(webhook: Option<&str>) -> String {
    let hook = webhook.map_or(String::new(), |u| {
        format!("    webhook_configs:\n      - url: '{u}'\n        send_resolved: true\n")
    });
    format!(
        "route:\n  receiver: team\n  group_by: [alertname, market]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: team\n{hook}"
    )
}

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ocx-sentinel-forward-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A real Alertmanager on 127.0.0.1:`port` with `config`, ready.
async fn alertmanager(dir: &Path, port: u16, config: &str) -> Killed {
    std::fs::write(dir.join("am.yml"), config).unwrap();
    let child = Killed(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", dir.join("am.yml").display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("alertmanager starts"),
    );
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/-/ready"))
            .send()
            .await
            && r.status().is_success()
        {
            return child;
        }
        assert!(
            Instant::now() < deadline,
            "alertmanager did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get_json(url: &str) -> Value {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
}

/// `GET url` until `cond` holds on the JSON body.
async fn until(url: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = get_json(url).await;
        if cond(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}: {v:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn delta(seq: u64, qty: &str) -> String {
    envelope(
        "delta",
        seq,
        &format!(
            r#"{{"positions":{{"upserts":[{}],"removedIds":[]}}}}"#,
            position(qty)
        ),
    )
}

/// Everything the webhook gets within `quiet` of the last body.
async fn drain(rx: &mut mpsc::UnboundedReceiver<Value>, quiet: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(Some(v)) = tokio::time::timeout(quiet, rx.recv()).await {
        out.push(v);
    }
    out
}

/// The sidecar's settings: the rules above, limit 1, forwarding to `am_url`.
fn sidecar_settings(
    api_base: &str,
    dir: &Path,
    am_url: &str,
    resend: Duration,
) -> ocx_sentinel::config::Settings {
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    let mut s = common::alert_settings(api_base, dir, false);
    s.forward = ForwardSettings {
        alertmanagers: vec![AlertmanagerTarget {
            url: am_url.to_string(),
            timeout: Duration::from_secs(2),
            auth: ForwardAuth::None,
        }],
        resend_delay: resend,
    };
    s
}

fn labels(a: &Value) -> &Value {
    &a["labels"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_fires_and_resolves_in_a_real_alertmanager() {
    if !peer("prometheus-alertmanager") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let dir = workdir("live");
    let (hook, mut bodies) = recorder().await;
    let port = free_port();
    let _am = alertmanager(&dir, port, &routing(Some(&hook))).await;
    let am = format!("http://127.0.0.1:{port}");
    let (api_base, exchange) = scripted_exchange().await;
    let mut s = sidecar_settings(
        &api_base,
        &dir,
        &format!("{am}/api/v2/alerts"),
        Duration::from_secs(1),
    );
    std::fs::write(dir.join("alerting.yml"), routing(None)).unwrap();
    s.alerting = Some(AlertingSource::File(dir.join("alerting.yml")));
    let sidecar = start_sidecar(s).await;
    let ours = sidecar.base_url();
    exchange
        .send(envelope(
            "snapshot",
            1,
            &format!(r#"{{"positions":[{}],"trades":[]}}"#, position("0.5")),
        ))
        .unwrap();
    exchange.send(delta(2, "3")).unwrap();

    let theirs = until(
        &format!("{am}/api/v2/alerts"),
        "the breach reaches the Alertmanager",
        |v| v.as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
    let t = &theirs[0];
    assert_eq!(
        labels(t),
        &json!({"alertname": "InventoryLimitBreached", "account": "t", "market": "BTC-PERP", "severity": "page"})
    );
    assert_eq!(t["annotations"], json!({"summary": "BTC-PERP at 3"}));
    assert!(
        t["generatorURL"].as_str().unwrap().starts_with(&ours),
        "{t}"
    );
    assert_eq!(t["status"]["state"], "active");
    assert_eq!(t["receivers"], json!([{"name": "team"}]));

    // The sidecar's own listing of the same alert: same identity, routing and shape.
    let mine = get_json(&format!("{ours}/api/v2/alerts")).await;
    let m = &mine[0];
    for key in [
        "labels",
        "annotations",
        "fingerprint",
        "receivers",
        "startsAt",
        "generatorURL",
    ] {
        assert_eq!(t[key], m[key], "{key}:\n{t}\n{m}");
    }
    assert_eq!(t["status"], m["status"]);
    let data = ["labels", "annotations"];
    assert_eq!(json_shape(&theirs, &data), json_shape(&mine, &data));
    let (tg, mg) = (
        get_json(&format!("{am}/api/v2/alerts/groups")).await,
        get_json(&format!("{ours}/api/v2/alerts/groups")).await,
    );
    assert_eq!(tg[0]["labels"], mg[0]["labels"]);
    assert_eq!(tg[0]["receiver"], mg[0]["receiver"]);
    assert_eq!(json_shape(&tg, &data), json_shape(&mg, &data));

    let got = drain(&mut bodies, Duration::from_millis(2500)).await;
    assert_eq!(got.len(), 1, "one firing notification: {got:#?}");
    assert_eq!(got[0]["status"], "firing");
    assert_eq!(got[0]["alerts"][0]["labels"], *labels(t));

    // Resends keep it active there without a second notification (repeat_interval 1h).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let still = get_json(&format!("{am}/api/v2/alerts")).await;
    assert_eq!(still.as_array().unwrap().len(), 1);
    assert!(
        drain(&mut bodies, Duration::from_millis(200))
            .await
            .is_empty()
    );

    exchange.send(delta(3, "0.5")).unwrap();
    until(
        &format!("{am}/api/v2/alerts"),
        "the Alertmanager resolves it",
        |v| v.as_array().is_some_and(Vec::is_empty),
    )
    .await;
    let got = drain(&mut bodies, Duration::from_millis(2500)).await;
    assert_eq!(got.len(), 1, "one resolved notification: {got:#?}");
    assert_eq!(got[0]["status"], "resolved");
    assert_eq!(got[0]["alerts"][0]["labels"], *labels(t));

    let m = scrape(&ours).await;
    let series = |name: &str| {
        common::get(
            &m,
            &format!(r#"{name}{{alertmanager="{am}/api/v2/alerts"}}"#),
        )
        .unwrap_or(-1.0)
    };
    assert!(
        series("ocx_sentinel_alertmanager_notifications_total") >= 3.0,
        "firing, resent, resolved"
    );
    assert_eq!(
        series("ocx_sentinel_alertmanager_notifications_errors_total"),
        0.0
    );
    assert_eq!(
        series("ocx_sentinel_alertmanager_notifications_dropped_total"),
        0.0
    );
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// CPU time of this process (every thread), from /proc: utime + stime in clock ticks of 10ms
/// (Linux's USER_HZ everywhere it runs).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of the line; `rest` starts at field 3.
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alertmanager_that_is_down_costs_one_post_per_resend_and_gets_the_alert_when_up() {
    if !peer("prometheus-alertmanager") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let dir = workdir("down");
    let port = free_port();
    let am = format!("http://127.0.0.1:{port}");
    let push = format!("{am}/api/v2/alerts");
    let resend = Duration::from_millis(300);
    let (api_base, exchange) = scripted_exchange().await;
    let sidecar = start_sidecar(sidecar_settings(&api_base, &dir, &push, resend)).await;
    let ours = sidecar.base_url();
    let errors = |m: &std::collections::BTreeMap<String, f64>| {
        common::get(
            m,
            &format!(
                r#"ocx_sentinel_alertmanager_notifications_errors_total{{alertmanager="{push}"}}"#
            ),
        )
        .unwrap_or(0.0)
    };
    exchange
        .send(envelope(
            "snapshot",
            1,
            &format!(r#"{{"positions":[{}],"trades":[]}}"#, position("3")),
        ))
        .unwrap();
    common::wait_for(&ours, Duration::from_secs(10), "a failed post", |m| {
        errors(m) >= 1.0
    })
    .await;

    // Down for 3s: one post per resend delay (about 10), not a loop, and an idle process.
    let (before, cpu_before, t0) = (errors(&scrape(&ours).await), cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (after, cpu_after, spent) = (errors(&scrape(&ours).await), cpu_seconds(), t0.elapsed());
    let posts = after - before;
    let most = spent.as_secs_f64() / resend.as_secs_f64() + 2.0;
    assert!(
        (1.0..=most).contains(&posts),
        "{posts} failed posts in {spent:?} with a {resend:?} resend delay"
    );
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        assert!(
            b - a < 0.5,
            "{}s of CPU in {spent:?} while the Alertmanager was down",
            b - a
        );
    }
    let m = scrape(&ours).await;
    assert_eq!(
        common::get(
            &m,
            &format!(
                r#"ocx_sentinel_alertmanager_notifications_dropped_total{{alertmanager="{push}"}}"#
            )
        ),
        Some(errors(&m)),
        "a failed post's alerts are dropped (the next resend carries them)"
    );

    // Up: the next resend delivers it.
    let _am = alertmanager(&dir, port, &routing(None)).await;
    let theirs = until(&push, "delivered once the Alertmanager is up", |v| {
        v.as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    assert_eq!(theirs[0]["labels"]["alertname"], "InventoryLimitBreached");
    let m = scrape(&ours).await;
    assert!(
        common::get(
            &m,
            &format!(r#"ocx_sentinel_alertmanager_notifications_total{{alertmanager="{push}"}}"#)
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
