//! The live rule engine in a running sidecar: a breach is firing in `/api/v1/alerts` within 100ms of its event's arrival, a stalled stream fires on the timer, and a reload with a broken file keeps the old rules.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use common::scripted::{envelope, position, scripted_exchange};
use common::*;
use ocx_sentinel::config::{Auth, RuleSettings};
use ocx_sentinel::rules::runner::RuleSource;
use serde_json::Value;

fn rules_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ocx-sentinel-rules-live-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const LIMIT_RULE: &str = r#"
groups:
  - name: limits
    rules:
      - alert: InventoryLimitBreached
        expr: abs(ocx_position_quantity) > on(account, market) group_left ocx_inventory_limit
        for: 0s
        annotations:
          summary: '{{ $labels.market }} at {{ $value }}'
"#;

async fn alerts(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let v: Value = client
        .get(format!("{base}/api/v1/alerts"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(v["status"], "success");
    v["data"]["alerts"].as_array().unwrap().clone()
}

fn firing(alerts: &[Value], name: &str) -> bool {
    alerts
        .iter()
        .any(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
}

async fn until<F: Fn() -> bool>(what: &str, timeout: Duration, cond: F) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every stream of `sidecar` has applied its snapshot.
async fn snapshot_applied(sidecar: &ocx_sentinel::app::Sidecar) {
    let ready = sidecar.streams.clone();
    until("the snapshot", Duration::from_secs(10), || {
        ready
            .iter()
            .all(|s| s.ready.load(std::sync::atomic::Ordering::Relaxed))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_is_firing_in_the_api_within_100ms_of_its_arrival() {
    let dir = rules_dir("breach");
    let file = write(&dir, "limits.yml", LIMIT_RULE);
    let (api_base, exchange) = scripted_exchange().await;
    let mut s = settings(&api_base, Auth::None, &[]);
    s.accounts[0].limits.inventory.default = Some(1.0);
    s.rules = RuleSettings {
        source: RuleSource::Paths(vec![file]),
        // The timer must not be what finds the breach.
        evaluation_interval: Duration::from_secs(3600),
    };
    let sidecar = start_sidecar(s).await;
    let base = sidecar.base_url();
    let client = reqwest::Client::new();
    exchange
        .send(envelope(
            "snapshot",
            1,
            &format!(r#"{{"positions":[{}],"trades":[]}}"#, position("0.5")),
        ))
        .unwrap();
    snapshot_applied(&sidecar).await;
    assert!(alerts(&client, &base).await.is_empty());

    let mut worst = Duration::ZERO;
    let mut seq = 1;
    for round in 0..10 {
        // Over the limit: firing at once (for: 0s).
        seq += 1;
        let sent = Instant::now();
        exchange
            .send(envelope(
                "delta",
                seq,
                &format!(
                    r#"{{"positions":{{"upserts":[{}],"removedIds":[]}}}}"#,
                    position(&format!("{}.5", 2 + round))
                ),
            ))
            .unwrap();
        loop {
            if firing(&alerts(&client, &base).await, "InventoryLimitBreached") {
                break;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(5),
                "breach {round} never fired"
            );
        }
        worst = worst.max(sent.elapsed());
        let a = alerts(&client, &base).await;
        let value: f64 = a[0]["value"].as_str().unwrap().parse().unwrap();
        assert_eq!(value, 2.5 + f64::from(round));
        assert_eq!(
            a[0]["annotations"]["summary"],
            format!("BTC-PERP at {}.5", 2 + round)
        );
        // Back under: resolved.
        seq += 1;
        exchange
            .send(envelope(
                "delta",
                seq,
                &format!(
                    r#"{{"positions":{{"upserts":[{}],"removedIds":[]}}}}"#,
                    position("0.5")
                ),
            ))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !alerts(&client, &base).await.is_empty() {
            assert!(Instant::now() < deadline, "breach {round} never resolved");
        }
    }
    assert!(
        worst < Duration::from_millis(100),
        "slowest breach took {worst:?} from the exchange's write to firing in /api/v1/alerts"
    );
    let m = scrape(&base).await;
    assert_eq!(
        get(
            &m,
            r#"ocx_sentinel_alerts{alertname="InventoryLimitBreached",alertstate="firing"}"#
        ),
        Some(0.0)
    );
    sidecar.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_fires_on_the_timer() {
    let dir = rules_dir("stall");
    let file = write(
        &dir,
        "stall.yml",
        r#"
groups:
  - name: stall
    interval: 100ms
    rules:
      - alert: StreamStale
        expr: time() - ocx_stream_last_event_timestamp_seconds > 1
"#,
    );
    let (api_base, exchange) = scripted_exchange().await;
    let mut s = settings(&api_base, Auth::None, &[]);
    s.rules = RuleSettings {
        source: RuleSource::Paths(vec![file]),
        evaluation_interval: Duration::from_secs(3600),
    };
    let sidecar = start_sidecar(s).await;
    let base = sidecar.base_url();
    let client = reqwest::Client::new();
    exchange
        .send(envelope("snapshot", 1, r#"{"positions":[],"trades":[]}"#))
        .unwrap();
    snapshot_applied(&sidecar).await;
    let epoch = sidecar.accounts[0].1.epoch();
    let since = Instant::now();
    assert!(!firing(&alerts(&client, &base).await, "StreamStale"));
    // Nothing arrives from here on: only the group's 100ms timer can notice.
    loop {
        if firing(&alerts(&client, &base).await, "StreamStale") {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "the stall never fired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        since.elapsed() >= Duration::from_millis(900),
        "fired before the stream was stale"
    );
    assert_eq!(
        sidecar.accounts[0].1.epoch(),
        epoch,
        "no change woke the engine"
    );
    let m = scrape(&base).await;
    // Ten evaluations a second on the timer; at least the second it took to go stale.
    let evaluations = sum(&m, "ocx_sentinel_rule_evaluations_total", &[";stall\""]);
    assert!(evaluations >= 9.0, "timer evaluations: {evaluations}");
    sidecar.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_broken_file_keeps_the_old_rules_running() {
    let dir = rules_dir("reload");
    let file = write(
        &dir,
        "r.yml",
        "groups: [{name: g, rules: [{alert: Always, expr: vector(1), labels: {n: one}}]}]\n",
    );
    let (api_base, _exchange) = scripted_exchange().await;
    let mut s = settings(&api_base, Auth::None, &[]);
    s.rules = RuleSettings {
        source: RuleSource::Paths(vec![dir.join("*.yml")]),
        evaluation_interval: Duration::from_millis(50),
    };
    let sidecar = start_sidecar(s).await;
    let base = sidecar.base_url();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !firing(&alerts(&client, &base).await, "Always") {
        assert!(Instant::now() < deadline, "Always never fired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let active_at = alerts(&client, &base).await[0]["activeAt"].clone();

    std::fs::write(
        &file,
        "groups: [{name: g, rules: [{alert: Always, expr: 'vector(1', labels: {n: one}}]}]\n",
    )
    .unwrap();
    let r = client
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("r.yml:1:"),
        "the error names the file and line: {body}"
    );
    let m = scrape(&base).await;
    assert_eq!(
        get(&m, "ocx_sentinel_config_last_reload_successful"),
        Some(0.0)
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    let a = alerts(&client, &base).await;
    assert!(firing(&a, "Always"), "the old rule keeps running");
    assert_eq!(a[0]["activeAt"], active_at);

    // Fixed, and a second file: both load; the alert that still exists keeps its state.
    std::fs::write(
        &file,
        "groups: [{name: g, rules: [{alert: Always, expr: vector(1), labels: {n: one}, annotations: {note: edited}}]}]\n",
    )
    .unwrap();
    write(
        &dir,
        "s.yml",
        "groups: [{name: h, rules: [{record: one, expr: vector(1)}]}]\n",
    );
    let r = client.put(format!("{base}/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let m = scrape(&base).await;
    assert_eq!(
        get(&m, "ocx_sentinel_config_last_reload_successful"),
        Some(1.0)
    );
    let rules: Value = client
        .get(format!("{base}/api/v1/rules"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[1]["rules"][0]["type"], "recording");
    tokio::time::sleep(Duration::from_millis(120)).await;
    let a = alerts(&client, &base).await;
    assert_eq!(a[0]["activeAt"], active_at);
    assert_eq!(a[0]["annotations"]["note"], "edited");
    sidecar.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
