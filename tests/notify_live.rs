//! Notifications from a running sidecar: a scripted inventory breach gives exactly one firing and, once the position shrinks, one resolved webhook notification; an inhibited alert never notifies.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::scripted::{Answer, envelope, position, recorder, scripted_exchange, webhook};
use common::*;
use serde_json::Value;
use tokio::sync::mpsc;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ocx-sentinel-notify-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const RULES: &str = r#"
groups:
  - name: limits
    rules:
      - alert: InventoryLimitBreached
        expr: abs(ocx_position_quantity) > on(account, market) group_left ocx_inventory_limit
        labels: {severity: page}
        annotations: {summary: '{{ $labels.market }} at {{ $value }}'}
      - alert: InventoryHuge
        expr: abs(ocx_position_quantity) > on(account, market) group_left() (10 * ocx_inventory_limit)
        labels: {severity: page}
"#;

/// Everything that arrives within `quiet` after the last notification.
async fn drain(rx: &mut mpsc::UnboundedReceiver<Value>, quiet: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(Some(v)) = tokio::time::timeout(quiet, rx.recv()).await {
        out.push(v);
    }
    out
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_notifies_once_firing_and_once_resolved_and_inhibition_holds_the_lesser() {
    let d = dir("breach");
    let (hook, mut bodies) = recorder().await;
    std::fs::write(d.join("rules.yml"), RULES).unwrap();
    std::fs::write(
        d.join("alerting.yml"),
        format!(
            r#"route:
  receiver: team
  group_by: [alertname, market]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: team
    webhook_configs:
      - url: '{hook}'
inhibit_rules:
  # A huge position pages once, as InventoryHuge; the plain breach is implied.
  - source_matchers: [alertname="InventoryHuge"]
    target_matchers: [alertname="InventoryLimitBreached"]
    equal: [account, market]
"#
        ),
    )
    .unwrap();
    let (api_base, exchange) = scripted_exchange().await;
    let s = alert_settings(&api_base, &d, true);
    let sidecar = start_sidecar(s).await;
    exchange
        .send(envelope(
            "snapshot",
            1,
            &format!(r#"{{"positions":[{}],"trades":[]}}"#, position("0.5")),
        ))
        .unwrap();
    assert!(
        drain(&mut bodies, Duration::from_millis(800))
            .await
            .is_empty()
    );

    exchange.send(delta(2, "3")).unwrap();
    let got = drain(&mut bodies, Duration::from_millis(2500)).await;
    assert_eq!(got.len(), 1, "exactly one notification: {got:#?}");
    assert_eq!(got[0]["status"], "firing");
    assert_eq!(got[0]["receiver"], "team");
    assert_eq!(
        got[0]["alerts"][0]["labels"]["alertname"],
        "InventoryLimitBreached"
    );
    assert_eq!(
        got[0]["alerts"][0]["annotations"]["summary"],
        "BTC-PERP at 3"
    );
    assert_eq!(got[0]["alerts"][0]["value"], 3.0);
    assert_eq!(
        got[0]["groupKey"],
        r#"{}:{alertname="InventoryLimitBreached", market="BTC-PERP"}"#
    );

    exchange.send(delta(3, "0.5")).unwrap();
    let got = drain(&mut bodies, Duration::from_millis(2500)).await;
    assert_eq!(got.len(), 1, "exactly one resolved notification: {got:#?}");
    assert_eq!(got[0]["status"], "resolved");
    assert_ne!(got[0]["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");

    // One fill takes the position past both limits: InventoryHuge inhibits the breach in the
    // same evaluation round, so only InventoryHuge notifies.
    exchange.send(delta(4, "25")).unwrap();
    let got = drain(&mut bodies, Duration::from_millis(2500)).await;
    let names: Vec<&str> = got
        .iter()
        .map(|b| b["alerts"][0]["labels"]["alertname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["InventoryHuge"], "{got:#?}");

    let m = scrape(&sidecar.base_url()).await;
    assert_eq!(
        get(
            &m,
            r#"ocx_sentinel_notifications_total{integration="webhook"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        get(&m, "ocx_sentinel_alerts_inhibited"),
        Some(1.0),
        "the breach, held by InventoryHuge"
    );
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&d);
}

fn routing_to(hook: &str) -> String {
    format!(
        "route:\n  receiver: team\n  group_by: [alertname, market]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: team\n    webhook_configs:\n      - url: '{hook}'\n"
    )
}

fn position_in(market: &str, qty: &str) -> String {
    format!(
        r#"{{"id":"p-{market}","marketId":"{market}","side":"long","quantity":"{qty}","entryPrice":"100","realizedPnl":"0","status":"open"}}"#
    )
}

// The alerting file reloads with the rules (`/-/reload`, SIGHUP): new routes take the next
// notification; a file that no longer loads is refused with its problem and the routes in
// force stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alerting_file_reloads_with_the_rules_and_a_broken_one_keeps_the_old_routes() {
    let d = dir("reload");
    let (first_hook, mut first) = recorder().await;
    let (second_hook, mut second) = recorder().await;
    std::fs::write(d.join("rules.yml"), RULES).unwrap();
    std::fs::write(d.join("alerting.yml"), routing_to(&first_hook)).unwrap();
    let (api_base, exchange) = scripted_exchange().await;
    let s = alert_settings(&api_base, &d, true);
    let sidecar = start_sidecar(s).await;
    let base = sidecar.base_url();
    let snapshot = format!(
        r#"{{"positions":[{},{}],"trades":[]}}"#,
        position_in("BTC-PERP", "0.5"),
        position_in("ETH-PERP", "0.5")
    );
    exchange.send(envelope("snapshot", 1, &snapshot)).unwrap();
    let up = |seq: u64, market: &str| {
        envelope(
            "delta",
            seq,
            &format!(
                r#"{{"positions":{{"upserts":[{}],"removedIds":[]}}}}"#,
                position_in(market, "3")
            ),
        )
    };
    exchange.send(up(2, "BTC-PERP")).unwrap();
    let got = drain(&mut first, Duration::from_millis(2000)).await;
    assert_eq!(got.len(), 1, "{got:#?}");

    std::fs::write(d.join("alerting.yml"), routing_to(&second_hook)).unwrap();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    exchange.send(up(3, "ETH-PERP")).unwrap();
    let got = drain(&mut second, Duration::from_millis(2000)).await;
    let markets: Vec<&str> = got
        .iter()
        .map(|b| b["groupLabels"]["market"].as_str().unwrap())
        .collect();
    // The reload rebuilt the groups; the log keeps BTC-PERP, already delivered by the same
    // receiver name, from going out again.
    assert_eq!(markets, ["ETH-PERP"], "{got:#?}");
    assert!(
        drain(&mut first, Duration::from_millis(200))
            .await
            .is_empty()
    );

    std::fs::write(
        d.join("alerting.yml"),
        "route:\n  receiver: nobody\nreceivers:\n  - name: team\n",
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
        body.contains("alerting.yml") && body.contains("nobody"),
        "the problem, with its file: {body}"
    );
    let m = scrape(&base).await;
    assert_eq!(
        get(&m, "ocx_sentinel_config_last_reload_successful"),
        Some(0.0)
    );
    // Still routed to the second receiver.
    exchange
        .send(envelope(
            "delta",
            4,
            &format!(
                r#"{{"positions":{{"upserts":[{}],"removedIds":[]}}}}"#,
                position_in("SOL-PERP", "3")
            ),
        ))
        .unwrap();
    let got = drain(&mut second, Duration::from_millis(2000)).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&d);
}

// A silence added with the real `amtool` holds the breach's notification back; expired (also
// with amtool), the group's next flush sends it. A receiver failing three times in a row then
// gets it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amtool_silence_suppresses_and_a_thrice_failing_receiver_gets_it_once() {
    if !peer("amtool") {
        return;
    }
    let d = dir("silence");
    let (hook, mut bodies, fail) = failing_recorder().await;
    std::fs::write(d.join("rules.yml"), RULES).unwrap();
    std::fs::write(d.join("alerting.yml"), routing_to(&hook)).unwrap();
    let (api_base, exchange) = scripted_exchange().await;
    let s = alert_settings(&api_base, &d, true);
    let sidecar = start_sidecar(s).await;
    let url = sidecar.base_url();
    let id = amtool_ok(
        &url,
        &[
            "silence",
            "add",
            "market=BTC-PERP",
            "-c",
            "hedging",
            "-a",
            "ops",
            "-d",
            "1h",
        ],
    )
    .await
    .trim()
    .to_string();
    exchange
        .send(envelope(
            "snapshot",
            1,
            &format!(r#"{{"positions":[{}],"trades":[]}}"#, position("3")),
        ))
        .unwrap();
    let held = drain(&mut bodies, Duration::from_millis(2500)).await;
    assert!(held.is_empty(), "silenced: {held:#?}");

    // The receiver now fails its next three requests (5xx), then recovers.
    fail.store(3, std::sync::atomic::Ordering::SeqCst);
    amtool_ok(&url, &["silence", "expire", &id]).await;
    let got = drain(&mut bodies, Duration::from_secs(6)).await;
    assert_eq!(got.len(), 1, "once, after three failures: {got:#?}");
    assert_eq!(got[0]["status"], "firing");
    assert_eq!(fail.load(std::sync::atomic::Ordering::SeqCst), 0);
    let m = scrape(&url).await;
    assert_eq!(
        get(
            &m,
            r#"ocx_sentinel_notifications_failed_total{integration="webhook",reason="server_error"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        get(&m, r#"ocx_sentinel_silences{state="expired"}"#),
        Some(1.0)
    );
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&d);
}

/// A webhook receiver that answers 500 while its counter is above zero (counting it down),
/// then 200, handing delivered bodies to the test.
async fn failing_recorder() -> (
    String,
    mpsc::UnboundedReceiver<Value>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let fail = std::sync::Arc::new(AtomicUsize::new(0));
    let f = fail.clone();
    let (url, rx) = webhook(move |_, _| {
        if f.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            Answer::Status("500 Internal Server Error")
        } else {
            Answer::Ok
        }
    })
    .await;
    (url, rx, fail)
}
