//! Reconciliation against a simulator that disagrees with itself on purpose: exact drift, recovered fills and mismatches.
#![cfg(feature = "sim")] // runs the built-in simulator

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use ocx_sentinel::config::{Auth, Endpoint, ReconcileSettings, Settings};
use ocx_sentinel::sim::{Faults, RunningSim, Truth};
use rust_decimal::Decimal;
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(10);

fn reconciling(api_base: &str, markets: &[&str], endpoints: &[Endpoint]) -> Settings {
    let mut s = settings(api_base, Auth::None, markets);
    s.reconcile = ReconcileSettings {
        enabled: true,
        interval: Duration::from_millis(200),
        after_reconnect: true,
        endpoints: endpoints.to_vec(),
        timeout: Duration::from_secs(2),
        settle: Duration::from_millis(300),
        max_recovery_share: 0.5,
    };
    s
}

fn all() -> Vec<Endpoint> {
    vec![
        Endpoint::Positions,
        Endpoint::Trades,
        Endpoint::OrdersOpen,
        Endpoint::Balances,
    ]
}

fn val(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    get(m, series).unwrap_or(0.0)
}

fn mismatches(m: &BTreeMap<String, f64>, kind: &str) -> f64 {
    val(
        m,
        &format!(r#"ocx_reconcile_mismatches_total{{account="t",kind="{kind}"}}"#),
    )
}

fn user(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    val(m, &format!(r#"{name}{{account="t",stream="user"}}"#))
}

fn requests(m: &BTreeMap<String, f64>, endpoint: &str, code: &str) -> f64 {
    val(
        m,
        &format!(r#"ocx_rest_requests_total{{account="t",endpoint="{endpoint}",code="{code}"}}"#),
    )
}

/// The simulator's path of a reconciled endpoint.
fn path(endpoint: &str) -> &'static str {
    match endpoint {
        "positions" => "/perps/positions",
        "trades" => "/perps/trades",
        "orders_open" => "/perps/orders/open",
        "balances" => "/perps/balances",
        other => panic!("no path for {other}"),
    }
}

/// Step the still world until it makes one fill (most steps only move the books); the truth
/// right after.
fn fill_once(sim: &RunningSim) -> Truth {
    let before = sim.handle.truth().trades.len();
    for _ in 0..1000 {
        sim.handle.step();
        let truth = sim.handle.truth();
        if truth.trades.len() > before {
            assert_eq!(truth.trades.len(), before + 1, "a step makes one fill");
            return truth;
        }
    }
    panic!("no fill in 1000 steps");
}

fn runs(m: &BTreeMap<String, f64>, endpoint: &str, result: &str) -> f64 {
    val(
        m,
        &format!(
            r#"ocx_reconcile_runs_total{{account="t",endpoint="{endpoint}",result="{result}"}}"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_dropped_from_the_stream_is_recovered_once_and_not_again_on_replay() {
    let faults = Faults {
        drop_fill_every: Some(4),
        ..Faults::default()
    };
    let sim = start_sim(still_sim(41, faults)).await;
    steps(&sim, 40).await;
    let car = start_sidecar(reconciling(&sim.base_url(), &[], &[Endpoint::Trades])).await;
    let base = car.base_url();
    let truth = sim.handle.truth();
    // Trade number n (from 1, warmup included) is hidden when 4 divides it.
    let every_fourth: Vec<String> = truth
        .trades
        .iter()
        .skip(3)
        .step_by(4)
        .map(|t| t.id.clone())
        .collect();
    assert!(!every_fourth.is_empty(), "the seed must hide some fills");
    assert_eq!(truth.hidden_trade_ids, every_fourth);
    let hidden = every_fourth.len() as f64;
    let m = wait_for(&base, LONG, "hidden fills recovered", |m| {
        sum(m, "ocx_fills_total", &[]) == truth.trades.len() as f64
            && sum(m, "ocx_fills_recovered_total", &[]) == hidden
    })
    .await;
    matches_truth(&m, &truth).unwrap();
    assert_eq!(mismatches(&m, "fill_missing"), hidden);
    assert_eq!(mismatches(&m, "fill_extra"), 0.0);
    // Recovered per market, as the hidden trades fell.
    for market in ["BTC-PERP", "ETH-PERP", "SOL-PERP"] {
        let want = truth
            .trades
            .iter()
            .filter(|t| t.market == market && truth.hidden_trade_ids.contains(&t.id))
            .count() as f64;
        let got = val(
            &m,
            &format!(r#"ocx_fills_recovered_total{{account="t",market="{market}"}}"#),
        );
        assert_eq!(got, want, "{market}");
    }

    // The exchange repairs its feed and a re-snapshot repeats the recovered trades: counted once.
    // The open connection has sent its snapshot only (the world stood still since it opened), so
    // with `drop_every: 2` the next fill's delta is its last event, and the one reconnect's
    // snapshot repeats every trade, the recovered ones included.
    assert_eq!(user(&m, "ocx_stream_connects_total"), 1.0);
    sim.handle.reveal_hidden_trades();
    sim.handle.set_faults(Faults {
        drop_every: Some(2),
        ..Faults::default()
    });
    let truth = fill_once(&sim);
    let m = wait_for(&base, LONG, "one reconnect, replayed", |m| {
        user(m, "ocx_stream_up") == 1.0
            && user(m, "ocx_stream_connects_total") == 2.0
            && val(
                m,
                r#"ocx_stream_events_total{account="t",stream="user",type="snapshot"}"#,
            ) == 2.0
            && matches_truth(m, &truth).is_ok()
    })
    .await;
    sim.handle.set_faults(Faults::default());
    assert_eq!(
        val(
            &m,
            r#"ocx_stream_reconnects_total{account="t",stream="user",reason="eof"}"#,
        ),
        1.0
    );
    assert_eq!(
        sum(&m, "ocx_stream_reconnects_total", &[r#"stream="user""#]),
        1.0
    );
    assert_eq!(
        val(
            &m,
            r#"ocx_fills_deduplicated_total{account="t",reason="snapshot_replay"}"#,
        ),
        truth.trades.len() as f64
    );
    assert_eq!(
        val(
            &m,
            r#"ocx_fills_deduplicated_total{account="t",reason="duplicate"}"#,
        ),
        0.0
    );
    assert_eq!(sum(&m, "ocx_fills_recovered_total", &[]), hidden);
    assert_eq!(mismatches(&m, "fill_missing"), hidden);
    assert_eq!(mismatches(&m, "fill_extra"), 0.0);
    car.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_position_shows_the_exact_difference_counted_once_and_returns_to_zero() {
    let sim = start_sim(still_sim(42, Faults::default())).await;
    let car = start_sidecar(reconciling(&sim.base_url(), &[], &[Endpoint::Positions])).await;
    let base = car.base_url();
    // Runs come every 200ms of wall clock: how many by a given scrape cannot be exact, so the
    // waits here are for "at least"; the values they gate are exact.
    wait_for(&base, LONG, "consistent", |m| {
        runs(m, "positions", "ok") >= 1.0
    })
    .await;
    // One market where the stream has a position, one where it has none (fixed by the seed).
    let truth = sim.handle.truth();
    let markets = ["BTC-PERP", "ETH-PERP", "SOL-PERP"];
    let held = markets
        .into_iter()
        .find(|m| truth.positions.iter().any(|p| p.market == *m))
        .expect("seed 42 holds a position");
    let flat = markets
        .into_iter()
        .find(|m| !truth.positions.iter().any(|p| p.market == *m))
        .expect("seed 42 leaves one market flat");
    let held_series = format!(r#"ocx_reconcile_position_drift{{account="t",market="{held}"}}"#);
    let flat_series = format!(r#"ocx_reconcile_position_drift{{account="t",market="{flat}"}}"#);

    let half: Decimal = "0.5".parse().unwrap();
    sim.handle.set_faults(Faults {
        rest_position_offset: Some((held.into(), half)),
        ..Faults::default()
    });
    let m = wait_for(&base, LONG, "drift seen three times", |m| {
        runs(m, "positions", "drift") >= 3.0
    })
    .await;
    assert_eq!(val(&m, &held_series), 0.5);
    assert_eq!(val(&m, &flat_series), 0.0);
    // The same drift in three runs is one mismatch, however often reconciliation runs.
    assert_eq!(mismatches(&m, "position"), 1.0);

    // A position only REST reports, on a market where the stream has none.
    let minus_two: Decimal = "-2".parse().unwrap();
    sim.handle.set_faults(Faults {
        rest_position_offset: Some((flat.into(), minus_two)),
        ..Faults::default()
    });
    // Counted when a second run confirms it: a fill in flight never is.
    let m = wait_for(&base, LONG, "rest-only position confirmed", |m| {
        val(m, &flat_series) == -2.0 && mismatches(m, "position") == 2.0
    })
    .await;
    assert_eq!(val(&m, &held_series), 0.0);

    // The two sides agree again: drift back to 0, runs ok.
    sim.handle.set_faults(Faults::default());
    let ok_before = runs(&m, "positions", "ok");
    let m = wait_for(&base, LONG, "consistent again", |m| {
        val(m, &flat_series) == 0.0 && runs(m, "positions", "ok") > ok_before
    })
    .await;
    assert_eq!(mismatches(&m, "position"), 2.0);
    car.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_on_one_endpoint_waits_as_told_while_others_run() {
    let faults = Faults {
        rest_status: Some(429),
        retry_after_secs: Some(2),
        rest_status_endpoints: vec!["/perps/positions".into()],
        ..Faults::default()
    };
    let sim = start_sim(still_sim(43, faults)).await;
    let car = start_sidecar(reconciling(&sim.base_url(), &[], &all())).await;
    let base = car.base_url();
    wait_for(&base, LONG, "first 429", |m| {
        runs(m, "positions", "error") >= 1.0
    })
    .await;
    let t0 = Instant::now();
    let p0 = sim.handle.rest_requests("/perps/positions");
    let b0 = sim.handle.rest_requests("/perps/balances");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let positions = sim.handle.rest_requests("/perps/positions") - p0;
    let balances = sim.handle.rest_requests("/perps/balances") - b0;
    let window = t0.elapsed();
    // Counts in a wall-clock window depend on where the window falls, so these are ranges.
    // Retry-After: 2 allows at most two attempts in 3s; the 200ms interval would make 15.
    assert!(
        (1..=2).contains(&positions),
        "{positions} positions requests in 3s"
    );
    // The other endpoints keep their 200ms interval: one run per tick, ticks at least 200ms
    // apart (missed ticks are delayed, not burst).
    let most = 1 + (window.as_millis() / 200) as u64;
    assert!(
        (8..=most).contains(&balances),
        "the other endpoints keep their 200ms interval: {balances} in {window:?}"
    );
    // Every request the simulator answered is counted once by the sidecar, under its status
    // class, and is one run: equal once none is in flight.
    let m = wait_for(&base, LONG, "requests counted as answered", |m| {
        let p = sim.handle.rest_requests("/perps/positions") as f64;
        let b = sim.handle.rest_requests("/perps/balances") as f64;
        requests(m, "positions", "4xx") == p
            && runs(m, "positions", "error") == p
            && requests(m, "balances", "2xx") == b
            && runs(m, "balances", "ok") == b
    })
    .await;
    assert!(
        requests(&m, "positions", "4xx") >= 2.0,
        "the first 429 and the retry"
    );
    assert_eq!(requests(&m, "positions", "2xx"), 0.0);
    assert_eq!(runs(&m, "positions", "ok"), 0.0);
    assert_eq!(requests(&m, "balances", "4xx"), 0.0);
    assert_eq!(runs(&m, "balances", "error"), 0.0);
    car.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_endpoint_never_stalls_the_stream() {
    let faults = Faults {
        rest_status: Some(500),
        ..Faults::default()
    };
    let sim = start_sim(still_sim(44, faults)).await;
    let car = start_sidecar(reconciling(&sim.base_url(), &[], &all())).await;
    let base = car.base_url();
    wait_for(&base, LONG, "errors", |m| runs(m, "trades", "error") >= 1.0).await;
    for _ in 0..5 {
        steps(&sim, 10).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let truth = sim.handle.truth();
    wait_for(&base, LONG, "stream still applied", |m| {
        matches_truth(m, &truth).is_ok()
    })
    .await;
    let eps = ["positions", "trades", "orders_open", "balances"];
    // Each run is one request, answered 500: equal to the simulator's count once none is in flight.
    let m = wait_for(&base, LONG, "every request an error run", |m| {
        eps.iter().all(|ep| {
            let asked = sim.handle.rest_requests(path(ep)) as f64;
            runs(m, ep, "error") == asked && requests(m, ep, "5xx") == asked
        })
    })
    .await;
    for ep in eps {
        assert!(runs(&m, ep, "error") >= 1.0, "{ep} was tried");
        assert_eq!(runs(&m, ep, "ok"), 0.0, "{ep}");
        assert_eq!(runs(&m, ep, "drift"), 0.0, "{ep}");
        assert!(
            get(
                &m,
                &format!(
                    r#"ocx_reconcile_last_success_timestamp_seconds{{account="t",endpoint="{ep}"}}"#
                )
            )
            .is_none()
        );
    }
    assert_eq!(val(&m, r#"ocx_stream_up{account="t",stream="user"}"#), 1.0);
    car.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_and_open_orders_become_the_account_gauges() {
    let sim = start_sim(still_sim(45, Faults::default())).await;
    let mut endpoints = all();
    endpoints.push(Endpoint::Portfolio);
    let car = start_sidecar(reconciling(
        &sim.base_url(),
        &["BTC-PERP", "DOGE-PERP"],
        &endpoints,
    ))
    .await;
    let base = car.base_url();
    let b = sim.handle.truth().balances;
    let m = wait_for(&base, LONG, "balances", |m| {
        runs(m, "balances", "ok") >= 1.0
            && runs(m, "portfolio", "ok") >= 1.0
            && runs(m, "orders_open", "ok") >= 1.0
    })
    .await;
    assert_eq!(val(&m, r#"ocx_account_equity{account="t"}"#), f(b.equity));
    assert_eq!(
        val(&m, r#"ocx_account_available_balance{account="t"}"#),
        f(b.available_balance)
    );
    assert_eq!(
        val(&m, r#"ocx_account_initial_margin{account="t"}"#),
        f(b.initial_margin)
    );
    assert_eq!(
        val(&m, r#"ocx_account_maintenance_margin{account="t"}"#),
        f(b.maintenance_margin)
    );
    assert_eq!(
        val(&m, r#"ocx_account_margin_usage_ratio{account="t"}"#),
        f(b.margin_usage)
    );

    let body = reqwest::get(format!("{}/perps/orders/open", sim.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let orders: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let mut want: BTreeMap<(String, String), f64> = BTreeMap::new();
    for o in &orders {
        let key = (
            o["marketId"].as_str().unwrap().to_string(),
            o["side"].as_str().unwrap().to_string(),
        );
        *want.entry(key).or_default() += 1.0;
    }
    // Every simulated market rests orders on both sides.
    assert_eq!(want.len(), 6, "{want:?}");
    for ((market, side), n) in &want {
        let series = format!(r#"ocx_open_orders{{account="t",market="{market}",side="{side}"}}"#);
        assert_eq!(get(&m, &series), Some(*n), "{series}");
    }
    // A quoted market with no resting orders reads 0 on both sides, so a rule can see it.
    for side in ["buy", "sell"] {
        let series = format!(r#"ocx_open_orders{{account="t",market="DOGE-PERP",side="{side}"}}"#);
        assert_eq!(get(&m, &series), Some(0.0), "{series}");
    }
    car.shutdown().await;
}

/// Regression: the first demo run counted fills still on their way down the stream as
/// "recovered", and a position read between a fill and its delta as a mismatch. A healthy,
/// busy exchange must produce no mismatch at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_healthy_exchange_reports_no_mismatches() {
    let cfg = ocx_sentinel::sim::SimConfig {
        tick: Duration::from_millis(40),
        ..still_sim(46, Faults::default())
    };
    let sim = start_sim(cfg).await;
    let mut s = reconciling(&sim.base_url(), &[], &all());
    s.reconcile.interval = Duration::from_millis(150);
    s.reconcile.settle = Duration::from_secs(1);
    let car = start_sidecar(s).await;
    let base = car.base_url();
    let start = sim.handle.truth().trades.len();
    // Enough runs and trades to have met fills in flight: how many by a scrape depends on the
    // clock, so the wait is for "at least"; the values checked after are exact.
    let handle = sim.handle.clone();
    let m = wait_for(
        &base,
        Duration::from_secs(20),
        "many runs while trading",
        |m| {
            runs(m, "trades", "ok") + runs(m, "trades", "drift") >= 15.0
                && handle.truth().trades.len() >= start + 30
        },
    )
    .await;
    assert_eq!(sum(&m, "ocx_fills_recovered_total", &[]), 0.0);
    for kind in ["position", "fill_missing", "fill_extra"] {
        assert_eq!(mismatches(&m, kind), 0.0, "{kind}");
    }
    car.shutdown().await;
}
