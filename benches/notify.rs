//! Notification benchmark: from a limit-breaching delta written to the sidecar's stream socket to the webhook request arriving at a receiver on 127.0.0.1, with `group_wait: 0s`, with and without the data dir (whose outbox write is fsync'd before each send).
//!
//! Run with `cargo bench --bench notify`. A real `Sidecar` (config built from YAML, as `run`
//! builds it) follows a scripted exchange; one alert rule (`abs(position) > limit`, `for: 0s`);
//! routing `group_by: [market]`, `group_wait: 0s`, `send_resolved: true`, to a webhook that
//! timestamps each request as its body is complete. Each breach takes the next of `MARKETS`
//! markets over its limit (a new group, so `group_wait` applies, not `group_interval`), waits for
//! the firing notification, and sends the delta back under the limit (its resolve is notified at
//! the group's next `group_interval`, and is awaited before that market breaches again). Up to
//! `BREACHES` breaches (default 1000) or `SECS` seconds (default 60) per mode, `GAP_MS` (default
//! 30) apart after each resolve, so each breach is an isolated event (the rule runner spaces
//! evaluations under sustained load, which back-to-back breaches would measure instead). `DATA_DIR=on|off`
//! runs one mode (default both). The table gives p50/p90/p99/max of the firing notifications.
#![allow(clippy::disallowed_methods)] // a benchmark times with the wall clock

// The integration tests' HTTP request reader, so the receiver parses requests as they do.
#[path = "../tests/common/scripted.rs"]
#[allow(dead_code)] // the bench uses only the request reader
mod scripted;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ocx_sentinel::app::Sidecar;
use ocx_sentinel::clock::unix_ms as now_ms;
use ocx_sentinel::config::{Overrides, Settings, parse_str};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

fn env<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn envelope(kind: &str, seq: u64, payload: &str) -> String {
    let ty = if kind == "snapshot" {
        "PerpStreamSnapshot"
    } else {
        "PerpStreamDelta"
    };
    let ms = now_ms();
    format!(
        "event: {kind}\ndata: {{\"eventId\":\"e{seq}\",\"eventType\":\"{ty}\",\"eventSeq\":{seq},\"engineTs\":{ms},\"sourceTs\":null,\"payload\":{payload}}}\n\n"
    )
}

fn position(market: &str, qty: &str) -> String {
    format!(
        r#"{{"id":"p-{market}","marketId":"{market}","side":"long","quantity":"{qty}","entryPrice":"100","realizedPnl":"0","status":"open"}}"#
    )
}

/// An exchange whose user stream writes what the bench sends; other connections stay silent.
async fn exchange() -> (String, mpsc::UnboundedSender<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let feed = Arc::new(Mutex::new(Some(rx)));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let _ = sock.set_nodelay(true);
            let feed = feed.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let rx = feed.lock().unwrap_or_else(|p| p.into_inner()).take();
                let Some(mut rx) = rx else {
                    let _ = sock.read(&mut buf).await;
                    return;
                };
                while let Some(text) = rx.recv().await {
                    if sock.write_all(text.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (base, tx)
}

/// A webhook receiver: (arrival, status, market) per request, as soon as its body is complete.
async fn webhook() -> (String, mpsc::UnboundedReceiver<(Instant, String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("bound"));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve_hook(sock, tx.clone()));
        }
    });
    (url, rx)
}

async fn serve_hook(mut sock: TcpStream, tx: mpsc::UnboundedSender<(Instant, String, String)>) {
    let _ = sock.set_nodelay(true);
    let mut buf = Vec::new();
    while let Some(body) = scripted::read_request(&mut sock, &mut buf).await {
        // Timed as the body completes.
        let at = Instant::now();
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        let status = body["status"].as_str().unwrap_or("").to_string();
        let market = body["groupLabels"]["market"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let _ = tx.send((at, status, market));
        if sock
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    }
}

struct Stats {
    n: usize,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let q = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    Stats {
        n: v.len(),
        p50: q(0.50),
        p90: q(0.90),
        p99: q(0.99),
        max: v[v.len() - 1],
    }
}

async fn run(
    data_dir: bool,
    markets: usize,
    breaches: usize,
    budget: Duration,
    gap: Duration,
) -> Stats {
    let dir = std::env::temp_dir().join(format!(
        "ocx-bench-notify-{}-{}",
        std::process::id(),
        data_dir
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (hook, mut arrivals) = webhook().await;
    let (api, feed) = exchange().await;
    let rules = dir.join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: limits\n    rules:\n      - alert: InventoryLimitBreached\n        expr: abs(ocx_position_quantity) > on(account, market) group_left ocx_inventory_limit\n",
    )
    .expect("rules");
    let alerting = dir.join("alerting.yml");
    std::fs::write(
        &alerting,
        format!(
            "route:\n  receiver: hook\n  group_by: [market]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: '{hook}'\n        send_resolved: true\n"
        ),
    )
    .expect("alerting");
    let data = if data_dir {
        format!("data_dir: {}\n", dir.join("data").display())
    } else {
        String::new()
    };
    let yaml = format!(
        "api_base: {api}\nlisten: 127.0.0.1:0\nreconcile:\n  enabled: false\nlimits:\n  inventory:\n    default: 1\nevaluation_interval: 1h\nrule_files: [{}]\nalerting_file: {}\n{data}",
        rules.display(),
        alerting.display()
    );
    let raw = parse_str(&yaml, "bench").expect("config parses");
    let mut settings = Settings::build(raw, Overrides::default(), "bench").expect("config builds");
    if !data_dir {
        settings.data_dir = None;
    }
    let listener = TcpListener::bind(settings.listen).await.expect("bind");
    let sidecar = Sidecar::start_on(settings, listener)
        .await
        .expect("sidecar starts");
    let names: Vec<String> = (0..markets).map(|i| format!("M{i:03}-PERP")).collect();
    let flat: Vec<String> = names.iter().map(|m| position(m, "0.5")).collect();
    let mut seq = 1u64;
    feed.send(envelope(
        "snapshot",
        seq,
        &format!(r#"{{"positions":[{}],"trades":[]}}"#, flat.join(",")),
    ))
    .expect("exchange");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut fire = Vec::new();
    let mut to_alert = Vec::new();
    let mut changes = sidecar.rules.alert_changes();
    let mut epochs = sidecar.accounts[0].1.subscribe();
    let mut to_apply = Vec::new();
    // Markets whose resolve has not arrived yet.
    let mut open: HashMap<String, ()> = HashMap::new();
    let started = Instant::now();
    for b in 0..breaches {
        if b >= 100 && started.elapsed() > budget {
            break;
        }
        let m = &names[b % markets];
        // The previous breach of this market must be resolved (and its group gone).
        let deadline = Instant::now() + Duration::from_secs(5);
        while open.contains_key(m) {
            let (_, status, market) = tokio::time::timeout_at(deadline, arrivals.recv())
                .await
                .expect("resolved notifications arrive")
                .expect("webhook running");
            if status == "resolved" {
                open.remove(&market);
            }
        }
        let delta = |qty: &str| {
            format!(
                r#"{{"positions":{{"upserts":[{}],"removedIds":[]}}}}"#,
                position(m, qty)
            )
        };
        seq += 1;
        let text = envelope("delta", seq, &delta("3"));
        changes.borrow_and_update();
        epochs.borrow_and_update();
        let sent = Instant::now();
        feed.send(text).expect("exchange");
        if tokio::time::timeout(Duration::from_secs(5), epochs.changed())
            .await
            .is_ok()
        {
            to_apply.push(sent.elapsed());
        }
        if tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .is_ok()
        {
            to_alert.push(sent.elapsed());
        }
        loop {
            let (at, status, market) =
                tokio::time::timeout(Duration::from_secs(5), arrivals.recv())
                    .await
                    .expect("the firing notification arrives")
                    .expect("webhook running");
            if status == "resolved" {
                open.remove(&market);
                continue;
            }
            if &market == m {
                fire.push(at - sent);
                break;
            }
        }
        seq += 1;
        feed.send(envelope("delta", seq, &delta("0.5")))
            .expect("exchange");
        open.insert(m.clone(), ());
        // Isolated breaches: the rule runner spaces change-driven passes under sustained load
        // (to at most 10% of a core), which back-to-back events would measure instead.
        tokio::time::sleep(gap).await;
    }
    let p = stats(to_apply);
    let a = stats(to_alert);
    println!(
        "  data dir {}: delta -> applied (account epoch) p50 {:.2} ms p99 {:.2} ms; delta -> alert firing p50 {:.2} ms p99 {:.2} ms",
        if data_dir { "on" } else { "off" },
        p.p50.as_secs_f64() * 1e3,
        p.p99.as_secs_f64() * 1e3,
        a.p50.as_secs_f64() * 1e3,
        a.p99.as_secs_f64() * 1e3
    );
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    stats(fire)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let markets: usize = env("MARKETS", 200);
    let breaches: usize = env("BREACHES", 1000);
    let budget = Duration::from_secs(env("SECS", 60));
    let gap = Duration::from_millis(env("GAP_MS", 30));
    let mode = std::env::var("DATA_DIR").unwrap_or_default();
    let modes: Vec<bool> = match mode.as_str() {
        "on" => vec![true],
        "off" => vec![false],
        _ => vec![false, true],
    };
    println!(
        "notify bench: breach delta on the stream socket -> webhook request at a receiver on 127.0.0.1, group_wait 0s, {markets} markets"
    );
    let mut rows = Vec::new();
    for dd in modes {
        let s = run(dd, markets, breaches, budget, gap).await;
        rows.push((dd, s));
    }
    println!("| data dir | breaches | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    for (dd, s) in rows {
        println!(
            "| {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            if dd {
                "on (outbox row in the file before each send)"
            } else {
                "off"
            },
            s.n,
            s.p50.as_secs_f64() * 1e3,
            s.p90.as_secs_f64() * 1e3,
            s.p99.as_secs_f64() * 1e3,
            s.max.as_secs_f64() * 1e3
        );
    }
}
