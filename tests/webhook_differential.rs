//! Our webhook payload against the one a real Alertmanager sends for the same alert: same fields, same values, same fingerprint (plus our `value`).
//!
//! Needs Debian's `prometheus-alertmanager`; skipped when missing unless `OCX_REQUIRE_PEERS=1`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ocx_sentinel::notify::dispatch::{Flush, NotifyAlert};
use ocx_sentinel::notify::webhook::payload;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A webhook receiver that answers 200 and hands every body to the test.
async fn recorder() -> (String, mpsc::UnboundedReceiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    let body = &buf[end + 4..end + 4 + len];
                    if let Ok(v) = serde_json::from_slice(body) {
                        let _ = tx.send(v);
                    }
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    buf.drain(..end + 4 + len);
                }
            });
        }
    });
    (url, rx)
}

fn shape(v: &Value, path: &str, out: &mut BTreeMap<String, BTreeSet<String>>) {
    match v {
        Value::Object(m) => {
            out.entry(path.to_string())
                .or_default()
                .extend(m.keys().cloned());
            for (k, c) in m {
                if !matches!(
                    k.as_str(),
                    "labels" | "annotations" | "groupLabels" | "commonLabels" | "commonAnnotations"
                ) {
                    shape(c, &format!("{path}.{k}"), out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|c| shape(c, &format!("{path}[]"), out)),
        _ => {}
    }
}

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
    };
    let ours = payload(
        &flush,
        &flush.alerts,
        theirs["externalURL"].as_str().unwrap(),
        0,
    );
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    shape(&ours, "", &mut a);
    shape(&theirs, "", &mut b);
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
