//! Our webhook payload against the one a real Alertmanager sends for the same alert: same fields, same values, same fingerprint (plus our `value`).
//!
//! Needs Debian's `prometheus-alertmanager`; skipped when missing unless `OCX_REQUIRE_PEERS=1`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::scripted::recorder;
use common::{Killed, free_port, json_shape};
use ocx_sentinel::notify::dispatch::{Flush, NotifyAlert};
use ocx_sentinel::notify::webhook::payload;
use serde_json::{Value, json};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_webhook_payload_is_alertmanagers() {
    let required = std::env::var("OCX_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    if Command::new("prometheus-alertmanager")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            !required,
            "prometheus-alertmanager is required (OCX_REQUIRE_PEERS=1)"
        );
        eprintln!("prometheus-alertmanager not installed: skipped (CI runs it)");
        return;
    }
    let (hook, mut bodies) = recorder().await;
    let work = std::env::temp_dir().join(format!(
        "ocx-sentinel-am-webhook-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        work.join("am.yml"),
        format!(
            "route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n\
             receivers:\n  - name: team\n    webhook_configs:\n      - url: '{hook}'\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let _am = Killed(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", work.join("am.yml").display()))
            .arg(format!("--storage.path={}", work.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("alertmanager starts"),
    );
    let labels = json!({"alertname": "OcxInventoryLimitBreached", "account": "mm", "market": "BTC-PERP", "severity": "page"});
    let annotations = json!({"summary": "mm holds 7.5 contracts of BTC-PERP"});
    let starts = "2026-11-25T17:48:33.120Z";
    let posted = json!([{
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts,
        "generatorURL": "http://sentinel:9477/",
    }]);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client
            .post(format!("http://127.0.0.1:{port}/api/v2/alerts"))
            .header("content-type", "application/json")
            .body(posted.to_string())
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alertmanager never accepted the alert"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let theirs = tokio::time::timeout(Duration::from_secs(20), bodies.recv())
        .await
        .expect("alertmanager notified")
        .unwrap();

    let to_map = |v: &Value| {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect()
    };
    let alert = NotifyAlert {
        labels: to_map(&labels),
        annotations: to_map(&annotations),
        starts_at_ms: 1_795_628_913_120,
        ends_at_ms: None,
        value: 7.5,
        generator_url: "http://sentinel:9477/".into(),
        trigger: None,
    };
    let flush = Flush {
        id: r#"{}:{alertname="OcxInventoryLimitBreached"}"#.into(),
        route: "{}".into(),
        group_key: r#"{}:{alertname="OcxInventoryLimitBreached"}"#.into(),
        receiver: "team".into(),
        group_labels: [(
            "alertname".to_string(),
            "OcxInventoryLimitBreached".to_string(),
        )]
        .into_iter()
        .collect(),
        repeat_interval: Duration::from_secs(3600),
        group_interval: Duration::from_secs(300),
        alerts: vec![alert],
        fallback: None,
    };
    let ours = payload(
        &flush,
        &flush.alerts,
        theirs["externalURL"].as_str().unwrap(),
        0,
    );
    let data = [
        "labels",
        "annotations",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
    ];
    let (mut a, b) = (json_shape(&ours, &data), json_shape(&theirs, &data));
    // Our one addition.
    a.get_mut(".alerts[]").unwrap().remove("value");
    assert_eq!(a, b, "payload shapes differ");
    for key in [
        "receiver",
        "status",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "version",
        "groupKey",
        "truncatedAlerts",
    ] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
    for key in [
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    ] {
        assert_eq!(
            ours["alerts"][0][key], theirs["alerts"][0][key],
            "alerts[0].{key}"
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}
