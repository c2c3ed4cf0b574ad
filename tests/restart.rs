//! Restarts of the real binary with a data dir: SIGKILL and restart neither recounts a fill nor
//! loses one made while it was down, counters continue (Prometheus sees no reset), and a store
//! that is garbage is moved aside with a log line and a counter instead of a crash.
#![cfg(feature = "sim")] // runs the built-in simulator
#![allow(clippy::disallowed_methods)] // timing a real child process by the wall clock is the point here

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ocx_sentinel::sim::{Faults, RunningSim, SimConfig};
use ocx_sentinel::telemetry::exposition;

const BIN: &str = env!("CARGO_BIN_EXE_ocx-sentinel");
/// The simulator's snapshot carries only this many recent trades: fills older than that can be
/// known after a restart only from the data dir.
const RECENT: usize = 50;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ocx-restart-{tag}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// `run` against the simulator with this data dir; reconciliation off so only the stream counts.
fn spawn(sim: &RunningSim, data_dir: &Path, port: u16, log: Stdio) -> Child {
    let config = data_dir.with_extension("yml");
    std::fs::write(
        &config,
        format!(
            "api_base: {}\nlisten: 127.0.0.1:{port}\nreconcile:\n  enabled: false\nstream:\n  backoff_initial: 10ms\n  backoff_max: 200ms\n",
            sim.base_url()
        ),
    )
    .expect("write config");
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("sidecar starts")
}

async fn try_scrape(port: u16) -> Option<BTreeMap<String, f64>> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?;
    Some(exposition::parse(&r.text().await.ok()?))
}

/// Poll until `cond` holds on a scrape; every scrape on the way is passed to `each`.
async fn poll(
    port: u16,
    what: &str,
    mut each: impl FnMut(&BTreeMap<String, f64>),
    cond: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let start = Instant::now();
    let mut last = BTreeMap::new();
    while start.elapsed() < Duration::from_secs(15) {
        if let Some(m) = try_scrape(port).await {
            each(&m);
            if cond(&m) {
                return m;
            }
            last = m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fills: Vec<String> = last
        .iter()
        .filter(|(k, _)| k.contains("fills"))
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    panic!(
        "timed out waiting for {what}; last scrape:\n{}",
        fills.join("\n")
    );
}

fn fills(m: &BTreeMap<String, f64>) -> f64 {
    sum(m, "ocx_fills_total", &[])
}

fn replays(m: &BTreeMap<String, f64>) -> f64 {
    sum(
        m,
        "ocx_fills_deduplicated_total",
        &[r#"reason="snapshot_replay""#],
    )
}

/// Steps the simulator until it has made at least one new trade; returns how many it made.
fn step_for_trades(sim: &RunningSim) -> usize {
    let before = sim.handle.truth().trades.len();
    for _ in 0..200 {
        sim.handle.step();
        let now = sim.handle.truth().trades.len();
        if now > before {
            return now - before;
        }
    }
    panic!("the simulator made no trade in 200 steps");
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_recounts_nothing_and_loses_nothing() {
    let sim = start_sim(SimConfig {
        recent_trades: RECENT,
        ..still_sim(11, Faults::default())
    })
    .await;
    // More trades than a snapshot carries, so a restart without memory would undercount.
    while sim.handle.truth().trades.len() <= RECENT {
        sim.handle.step();
    }
    let t0 = sim.handle.truth().trades.len();
    let dir = temp_dir("kill");

    // First life: the snapshot's recent trades, then every trade made while it runs.
    let port = free_port();
    let mut first = spawn(&sim, &dir, port, Stdio::null());
    poll(
        port,
        "the first snapshot",
        |_| {},
        |m| fills(m) == RECENT as f64,
    )
    .await;
    let mut made = 0;
    for _ in 0..3 {
        made += step_for_trades(&sim);
    }
    let counted = (RECENT + made) as f64;
    let before_kill = poll(port, "the new fills", |_| {}, |m| fills(m) == counted).await;
    assert_eq!(sim.handle.truth().trades.len(), t0 + made);
    let replays_before = replays(&before_kill);
    // Give the writer time to make the last fills durable (it commits right after each event;
    // a fill on /metrics is already committed: that is the invariant under test).
    first.kill().expect("SIGKILL");
    let _ = first.wait();

    // While it is down the exchange fills more (fewer than a snapshot carries).
    let down = step_for_trades(&sim);
    assert!(
        down < RECENT,
        "the test needs the downtime fills inside one snapshot"
    );

    // Second life, same data dir: from its first answer on, the counter never reads lower than
    // before the kill (Prometheus would take that for a reset and count everything again).
    let mut second = spawn(&sim, &dir, port, Stdio::null());
    let mut lowest = f64::INFINITY;
    let after = poll(
        port,
        "the fills made while down",
        |m| {
            if m.keys().any(|k| k.starts_with("ocx_fills_total{")) {
                lowest = lowest.min(fills(m));
            }
        },
        |m| fills(m) == counted + down as f64,
    )
    .await;
    assert!(
        lowest >= counted,
        "after the restart the fill counter read {lowest}, below {counted} before the kill"
    );
    // The snapshot after the restart repeated RECENT trades: all but the new ones were counted
    // by the first life, and are deduplicated, not counted again.
    assert_eq!(
        replays(&after),
        replays_before + (RECENT - down) as f64,
        "snapshot replays continue from the first life's total"
    );
    // Amounts continue too, exactly: the counted trades are the truth's last (RECENT + made +
    // down) ones, the snapshot's at the first connect and all after.
    let truth = sim.handle.truth();
    let counted_trades = &truth.trades[truth.trades.len() - (RECENT + made + down)..];
    let want_qty: rust_decimal::Decimal = counted_trades.iter().map(|t| t.quantity).sum();
    let got_qty = sum(&after, "ocx_fill_quantity_total", &[]);
    assert!(
        (got_qty - f(want_qty)).abs() < 1e-9 * f(want_qty).abs().max(1.0),
        "quantity {got_qty} != {want_qty}"
    );
    assert_eq!(
        sum(&after, "ocx_sentinel_data_dir_persistent", &[]),
        1.0,
        "the second life persists too"
    );
    second.kill().expect("SIGKILL");
    let _ = second.wait();
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_store_is_moved_aside_with_a_log_line_and_a_counter() {
    let sim = start_sim(still_sim(3, Faults::default())).await;
    let dir = temp_dir("garbage");
    std::fs::write(dir.join("sentinel.redb"), vec![0xAB; 64 * 1024]).expect("garbage");
    let port = free_port();
    let mut child = spawn(&sim, &dir, port, Stdio::piped());
    let m = poll(port, "a started sidecar", |_| {}, |m| fills(m) > 0.0).await;
    assert_eq!(sum(&m, "ocx_sentinel_data_dir_moved_aside_total", &[]), 1.0);
    assert_eq!(sum(&m, "ocx_sentinel_data_dir_persistent", &[]), 1.0);
    let moved: Vec<String> = std::fs::read_dir(&dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sentinel.redb.corrupt-"))
        .collect();
    assert_eq!(
        moved.len(),
        1,
        "the garbage is kept aside for a post-mortem"
    );
    assert_eq!(
        std::fs::read(dir.join(&moved[0])).expect("read moved"),
        vec![0xAB; 64 * 1024]
    );
    let status = {
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        child.wait().expect("wait")
    };
    assert!(status.success(), "exits cleanly: {status}");
    let log = stderr_of(&mut child);
    assert!(
        log.contains("moved it aside"),
        "the log says what happened:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_held_by_another_process_is_a_clear_startup_error() {
    let sim = start_sim(still_sim(5, Faults::default())).await;
    let dir = temp_dir("held");
    let port = free_port();
    let mut first = spawn(&sim, &dir, port, Stdio::null());
    poll(port, "the first sidecar", |_| {}, |m| fills(m) > 0.0).await;
    let mut second = spawn(&sim, &dir, free_port(), Stdio::piped());
    let status = second.wait().expect("second exits");
    assert!(!status.success());
    let log = stderr_of(&mut second);
    assert!(
        log.contains("in use by another ocx-sentinel process"),
        "{log}"
    );
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
}
