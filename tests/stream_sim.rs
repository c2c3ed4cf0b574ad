//! The sidecar against the built-in simulator, one test per fault: every value checked against the simulator's truth.
//!
//! The simulator is still (its world moves only when a test steps it) and a connection sends at
//! most one event per poll, so a test that makes one fill at a time and waits for the sidecar to
//! take it in knows which event every connection carried, and so exactly what each counter reads.
#![cfg(feature = "sim")] // runs the built-in simulator

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use ocx_sentinel::config::{Auth, KeyHeader, Secret};
use ocx_sentinel::sim::{Faults, RunningSim, Truth};
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(10);
const U: &str = r#"account="t",stream="user""#;

type Metrics = BTreeMap<String, f64>;

fn user(m: &Metrics, name: &str) -> f64 {
    get(m, &format!("{name}{{{U}}}")).unwrap_or(0.0)
}

fn reconnects(m: &Metrics, reason: &str) -> f64 {
    get(
        m,
        &format!(r#"ocx_stream_reconnects_total{{{U},reason="{reason}"}}"#),
    )
    .unwrap_or(0.0)
}

/// Reconnects of the user stream for any reason.
fn all_reconnects(m: &Metrics) -> f64 {
    sum(m, "ocx_stream_reconnects_total", &[r#"stream="user""#])
}

fn events(m: &Metrics, ty: &str) -> f64 {
    get(m, &format!(r#"ocx_stream_events_total{{{U},type="{ty}"}}"#)).unwrap_or(0.0)
}

fn replays(m: &Metrics) -> f64 {
    get(
        m,
        r#"ocx_fills_deduplicated_total{account="t",reason="snapshot_replay"}"#,
    )
    .unwrap_or(0.0)
}

fn duplicates(m: &Metrics) -> f64 {
    get(
        m,
        r#"ocx_fills_deduplicated_total{account="t",reason="duplicate"}"#,
    )
    .unwrap_or(0.0)
}

fn stream_errors(m: &Metrics, retryable: bool) -> f64 {
    sum(
        m,
        "ocx_stream_errors_total",
        &[
            r#"stream="user""#,
            r#"code="UPSTREAM_UNAVAILABLE""#,
            &format!(r#"retryable="{retryable}""#),
        ],
    )
}

/// What the user stream has seen so far: connections opened, snapshots and deltas received
/// (malformed deltas included).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    connects: f64,
    snapshots: f64,
    deltas: f64,
}

fn seen(m: &Metrics) -> Seen {
    Seen {
        connects: user(m, "ocx_stream_connects_total"),
        snapshots: events(m, "snapshot"),
        deltas: events(m, "delta"),
    }
}

/// Step the still world until it makes one fill (most steps only move the books), so the next
/// poll of a live connection has exactly one delta to send. The truth right after.
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

/// Wait until the sidecar equals `truth`, its user stream live on a connection whose snapshot it
/// applied, having seen exactly `want`.
async fn settled(base: &str, truth: &Truth, want: Seen, what: &str) -> Metrics {
    wait_for(base, LONG, &format!("{what}: {want:?}"), |m| {
        user(m, "ocx_stream_up") == 1.0 && seen(m) == want && matches_truth(m, truth).is_ok()
    })
    .await
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_stream_matches_the_simulator_exactly() {
    let sim = start_sim(still_sim(11, Faults::default())).await;
    let sidecar_started = Instant::now();
    let car = start_sidecar(settings(&sim.base_url(), Auth::None, &["BTC-PERP"])).await;
    let base = car.base_url();
    wait_for(&base, LONG, "user stream up", |m| {
        user(m, "ocx_stream_up") == 1.0
    })
    .await;
    steps(&sim, 200).await;
    let truth = sim.handle.truth();
    let m = wait_for(&base, LONG, "state equals the simulator's", |m| {
        matches_truth(m, &truth).is_ok()
    })
    .await;
    assert_eq!(reconnects(&m, "gap"), 0.0);
    assert_eq!(user(&m, "ocx_stream_sequence_gaps_total"), 0.0);
    assert_eq!(sum(&m, "ocx_fills_deduplicated_total", &[]), 0.0);
    // The book of the market whose events stream we follow, against the simulator's top of book.
    let book = &truth.books["BTC-PERP"];
    let m = wait_for(&base, LONG, "book", |m| {
        get(
            m,
            r#"ocx_book_best_bid_price{account="t",market="BTC-PERP"}"#,
        ) == Some(f(book.bids[0].0))
    })
    .await;
    assert_eq!(
        get(
            &m,
            r#"ocx_book_best_ask_price{account="t",market="BTC-PERP"}"#
        ),
        Some(f(book.asks[0].0))
    );
    assert_eq!(
        get(
            &m,
            r#"ocx_book_levels{account="t",market="BTC-PERP",side="bid"}"#
        ),
        Some(25.0)
    );
    // Unrealized PnL only where a mark is known: the followed market's, not the others' (seed 11
    // holds positions in both kinds of market after these steps).
    let mid = (book.bids[0].0 + book.asks[0].0) / rust_decimal::Decimal::TWO;
    let Some(p) = truth.positions.iter().find(|p| p.market == "BTC-PERP") else {
        panic!("seed 11 holds a BTC-PERP position: {:?}", truth.positions);
    };
    let want = f((mid - p.entry_price) * p.quantity);
    assert_eq!(
        get(
            &m,
            r#"ocx_position_unrealized_pnl{account="t",market="BTC-PERP"}"#
        ),
        Some(want)
    );
    assert!(
        truth.positions.iter().any(|p| p.market != "BTC-PERP"),
        "seed 11 holds a position without a mark: {:?}",
        truth.positions
    );
    let unrealized: Vec<&String> = m
        .keys()
        .filter(|k| k.starts_with("ocx_position_unrealized_pnl{"))
        .collect();
    assert_eq!(unrealized.len(), 1, "{unrealized:?}");
    // Heartbeats arrive while the world is still. How many by now depends on the clock, not on
    // the script (one per 100ms of quiet on a connection), so this is a range: at least two, and
    // at most one per 100ms since the sidecar started, since every connection opened after that.
    let m = wait_for(&base, LONG, "heartbeats", |m| {
        user(m, "ocx_stream_heartbeats_total") >= 2.0
    })
    .await;
    let most = (sidecar_started.elapsed().as_millis() / 100) as f64;
    let beats = user(&m, "ocx_stream_heartbeats_total");
    assert!(beats <= most, "{beats} heartbeats, at most {most}");
    car.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_gap_reconnects_once_and_resyncs_cleanly() {
    let faults = Faults {
        skip_seq_every: Some(3),
        ..Faults::default()
    };
    let sim = start_sim(still_sim(12, faults)).await;
    let car = start_sidecar(settings(&sim.base_url(), Auth::None, &[])).await;
    let base = car.base_url();
    let truth = sim.handle.truth();
    let mut want = Seen {
        connects: 1.0,
        snapshots: 1.0,
        deltas: 0.0,
    };
    settled(&base, &truth, want, "up").await;
    // Deltas one at a time: the first two in sequence, the third skips one sequence number.
    for _ in 0..2 {
        let truth = fill_once(&sim);
        want.deltas += 1.0;
        settled(&base, &truth, want, "delta in sequence").await;
    }
    let truth = fill_once(&sim);
    // The third delta is counted as received but not applied; the re-snapshot brings its fill.
    want.deltas += 1.0;
    want.connects += 1.0;
    want.snapshots += 1.0;
    let m = settled(&base, &truth, want, "one gap, re-synced").await;
    assert_eq!(reconnects(&m, "gap"), 1.0);
    assert_eq!(all_reconnects(&m), 1.0);
    assert_eq!(user(&m, "ocx_stream_sequence_gaps_total"), 1.0);
    assert_eq!(
        user(&m, "ocx_stream_missed_events_total"),
        1.0,
        "the jump skips exactly one"
    );
    // The re-snapshot repeated every trade already counted (all but the gapped delta's): visible
    // as replays, not double counts.
    let replayed = (truth.trades.len() - 1) as f64;
    assert_eq!(replays(&m), replayed);
    assert_eq!(duplicates(&m), 0.0);

    sim.handle.set_faults(Faults::default());
    steps(&sim, 50).await;
    let truth = sim.handle.truth();
    let m = wait_for(&base, LONG, "resynced to the truth", |m| {
        matches_truth(m, &truth).is_ok()
    })
    .await;
    assert_eq!(user(&m, "ocx_stream_up"), 1.0);
    assert_eq!(user(&m, "ocx_stream_connects_total"), 2.0);
    assert_eq!(all_reconnects(&m), 1.0);
    assert_eq!(user(&m, "ocx_stream_sequence_gaps_total"), 1.0);
    assert_eq!(replays(&m), replayed);
    assert_eq!(duplicates(&m), 0.0);
    car.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_resnapshot_and_trades_count_once() {
    let faults = Faults {
        drop_every: Some(3),
        ..Faults::default()
    };
    let sim = start_sim(still_sim(13, faults)).await;
    let car = start_sidecar(settings(&sim.base_url(), Auth::None, &[])).await;
    let base = car.base_url();
    let truth = sim.handle.truth();
    let mut want = Seen {
        connects: 1.0,
        snapshots: 1.0,
        deltas: 0.0,
    };
    settled(&base, &truth, want, "up").await;
    // Each connection sends three events, its snapshot and two deltas, then closes: every second
    // fill ends a connection, and the next one's snapshot repeats every trade made so far.
    let mut replayed = 0;
    for i in 1..=6 {
        let truth = fill_once(&sim);
        want.deltas += 1.0;
        if i % 2 == 0 {
            want.connects += 1.0;
            want.snapshots += 1.0;
            replayed += truth.trades.len();
        }
        settled(&base, &truth, want, &format!("fill {i}")).await;
    }
    let truth = sim.handle.truth();
    let m = settled(&base, &truth, want, "truth after drops").await;
    assert_eq!(reconnects(&m, "eof"), 3.0);
    assert_eq!(all_reconnects(&m), 3.0);
    assert_eq!(
        replays(&m),
        replayed as f64,
        "every reconnect replays the snapshot's trades"
    );
    assert_eq!(duplicates(&m), 0.0);
    car.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_trips_the_heartbeat_watchdog() {
    let faults = Faults {
        silent_after: Some(1),
        ..Faults::default()
    };
    let sim = start_sim(still_sim(14, faults)).await;
    let mut s = settings(&sim.base_url(), Auth::None, &[]);
    s.stream.heartbeat_timeout = Duration::from_millis(400);
    let before_start = Instant::now();
    let car = start_sidecar(s).await;
    let base = car.base_url();
    let started = Instant::now();
    // Every connection goes silent after its snapshot and is declared dead 400ms later, again and
    // again: how many have ended by the time of a scrape depends on the clock, not on the script.
    let m = wait_for(&base, LONG, "heartbeat timeout", |m| {
        reconnects(m, "heartbeat_timeout") >= 1.0
    })
    .await;
    // The first connection is declared dead after ~400ms, far sooner than any other timeout.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let timeouts = reconnects(&m, "heartbeat_timeout");
    // Each connection lived at least the 400ms timeout, all of them after the sidecar started.
    let most = (before_start.elapsed().as_millis() / 400) as f64;
    assert!(timeouts <= most, "{timeouts} timeouts, at most {most}");
    assert_eq!(all_reconnects(&m), timeouts, "no other reason");
    // Every connection but the one open now (if any) ended on the watchdog.
    let open = user(&m, "ocx_stream_connects_total") - timeouts;
    assert!(open == 0.0 || open == 1.0, "{open} connections open");
    assert_eq!(user(&m, "ocx_stream_heartbeats_total"), 0.0);
    assert_eq!(events(&m, "delta"), 0.0);
    car.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_counted_and_skipped_without_losing_state() {
    let faults = Faults {
        malformed_every: Some(2),
        ..Faults::default()
    };
    let sim = start_sim(still_sim(15, faults)).await;
    let car = start_sidecar(settings(&sim.base_url(), Auth::None, &[])).await;
    let base = car.base_url();
    let truth = sim.handle.truth();
    let mut want = Seen {
        connects: 1.0,
        snapshots: 1.0,
        deltas: 0.0,
    };
    settled(&base, &truth, want, "up").await;
    // The snapshot took event slot 1. Each fill's delta then meets an even slot, which sends a
    // malformed delta instead, and goes out whole in the odd slot after it.
    let json_errors = |m: &Metrics| {
        get(
            m,
            &format!(r#"ocx_stream_decode_errors_total{{{U},kind="json"}}"#),
        )
        .unwrap_or(0.0)
    };
    for i in 1..=4 {
        let truth = fill_once(&sim);
        want.deltas += 2.0;
        let m = settled(&base, &truth, want, &format!("fill {i}")).await;
        assert_eq!(json_errors(&m), f64::from(i));
    }
    let truth = sim.handle.truth();
    let m = settled(&base, &truth, want, "truth despite malformed frames").await;
    assert_eq!(json_errors(&m), 4.0);
    assert_eq!(
        get(
            &m,
            &format!(r#"ocx_stream_decode_errors_total{{{U},kind="schema"}}"#),
        )
        .unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        reconnects(&m, "gap"),
        0.0,
        "malformed frames consume no sequence number"
    );
    assert_eq!(reconnects(&m, "decode"), 0.0);
    assert_eq!(all_reconnects(&m), 0.0);
    assert_eq!(sum(&m, "ocx_fills_deduplicated_total", &[]), 0.0);
    car.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_events_are_counted_and_retryable_ones_reconnect() {
    let faults = Faults {
        error_every: Some(2),
        error_retryable: true,
        ..Faults::default()
    };
    let sim = start_sim(still_sim(16, faults)).await;
    let car = start_sidecar(settings(&sim.base_url(), Auth::None, &[])).await;
    let base = car.base_url();
    let truth = sim.handle.truth();
    let mut want = Seen {
        connects: 1.0,
        snapshots: 1.0,
        deltas: 0.0,
    };
    settled(&base, &truth, want, "up").await;
    // Event slot 1 of every connection is its snapshot; slot 2, the next fill's delta, is an
    // error event instead, and a retryable one ends the connection: the fill comes with the next
    // snapshot, which repeats every trade made before it.
    let mut replayed = 0;
    for i in 1..=3 {
        let truth = fill_once(&sim);
        replayed += truth.trades.len() - 1;
        want.connects += 1.0;
        want.snapshots += 1.0;
        let m = settled(&base, &truth, want, &format!("retryable error {i}")).await;
        assert_eq!(reconnects(&m, "error_event"), f64::from(i));
    }
    let m = scrape(&base).await;
    assert_eq!(stream_errors(&m, true), 3.0);
    assert_eq!(stream_errors(&m, false), 0.0);
    assert_eq!(events(&m, "error"), 3.0);
    assert_eq!(reconnects(&m, "error_event"), 3.0);
    assert_eq!(all_reconnects(&m), 3.0);
    assert_eq!(replays(&m), replayed as f64);

    // Non-retryable errors are counted but keep the connection. The open one sent its snapshot
    // only, so each fill again meets an error slot first and goes out in the slot after it.
    sim.handle.set_faults(Faults {
        error_every: Some(2),
        error_retryable: false,
        ..Faults::default()
    });
    for i in 1..=3 {
        let truth = fill_once(&sim);
        want.deltas += 1.0;
        let m = settled(&base, &truth, want, &format!("non-retryable error {i}")).await;
        assert_eq!(stream_errors(&m, false), f64::from(i));
    }
    let m = scrape(&base).await;
    assert_eq!(stream_errors(&m, true), 3.0);
    assert_eq!(stream_errors(&m, false), 3.0);
    assert_eq!(events(&m, "error"), 6.0);
    assert_eq!(reconnects(&m, "error_event"), 3.0);
    assert_eq!(all_reconnects(&m), 3.0);
    assert_eq!(replays(&m), replayed as f64);
    assert_eq!(duplicates(&m), 0.0);
    car.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_leaves_the_stream_down_and_the_process_serving() {
    let cfg = ocx_sentinel::sim::SimConfig {
        api_key: Some("right-key".into()),
        ..still_sim(17, Faults::default())
    };
    let sim = start_sim(cfg).await;
    let auth = Auth::ApiKey {
        key: Secret::new("wrong-key"),
        header: KeyHeader::XApiKey,
    };
    let before_start = Instant::now();
    let car = start_sidecar(settings(&sim.base_url(), auth, &[])).await;
    let base = car.base_url();
    wait_for(&base, LONG, "http_status reconnect", |m| {
        reconnects(m, "http_status") >= 1.0
    })
    .await;
    // How many attempts by now depends on the clock; each one is a request the simulator
    // answered 401 and then one reconnect, so the two counts agree up to one request in flight.
    let asked_before = sim.handle.requests();
    let m = scrape(&base).await;
    let asked = sim.handle.requests();
    let elapsed = before_start.elapsed();
    let rejected = reconnects(&m, "http_status");
    assert!(
        asked_before.saturating_sub(1) as f64 <= rejected && rejected <= asked as f64,
        "{rejected} reconnects, {asked_before}..{asked} requests"
    );
    assert_eq!(all_reconnects(&m), rejected);
    // A 401 retries at the backoff cap (200ms here), not the 10ms initial backoff.
    let most = 1 + (elapsed.as_millis() / 200) as u64;
    assert!(asked <= most, "{asked} requests in {elapsed:?}");
    assert_eq!(user(&m, "ocx_stream_up"), 0.0);
    assert_eq!(user(&m, "ocx_stream_connects_total"), 0.0);
    let ready = reqwest::get(format!("{base}/-/ready")).await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let healthy = reqwest::get(format!("{base}/-/healthy")).await.unwrap();
    assert_eq!(healthy.status().as_u16(), 200);
    car.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_auth_form_is_accepted() {
    let cfg = ocx_sentinel::sim::SimConfig {
        api_key: Some("k-123".into()),
        ..still_sim(18, Faults::default())
    };
    let sim = start_sim(cfg).await;
    for auth in [
        Auth::ApiKey {
            key: Secret::new("k-123"),
            header: KeyHeader::XApiKey,
        },
        Auth::ApiKey {
            key: Secret::new("k-123"),
            header: KeyHeader::Bearer,
        },
        Auth::Cookie {
            name: "astra_session".into(),
            value: Secret::new("k-123"),
        },
    ] {
        let car = start_sidecar(settings(&sim.base_url(), auth.clone(), &[])).await;
        wait_for(&car.base_url(), LONG, &format!("{auth:?} accepted"), |m| {
            user(m, "ocx_stream_up") == 1.0
        })
        .await;
        let ready = reqwest::get(format!("{}/-/ready", car.base_url()))
            .await
            .unwrap();
        assert_eq!(ready.status().as_u16(), 200);
        car.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_waits_as_retry_after_says() {
    let faults = Faults {
        http_status: Some(429),
        retry_after_secs: Some(1),
        ..Faults::default()
    };
    let sim = start_sim(still_sim(19, faults)).await;
    let car = start_sidecar(settings(&sim.base_url(), Auth::None, &[])).await;
    // Backoff alone would retry every <=200ms here; Retry-After: 1 spaces the attempts a second
    // apart. Whether the second attempt falls inside this wall-clock window depends on how soon
    // the first went out, so the count is a range.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let attempts = sim.handle.requests();
    assert!((1..=2).contains(&attempts), "{attempts} requests in 1.6s");
    sim.handle.set_faults(Faults::default());
    let m = wait_for(&car.base_url(), LONG, "recovered after 429", |m| {
        user(m, "ocx_stream_up") == 1.0
    })
    .await;
    // Every request but the last was answered 429 and counted as one reconnect.
    let asked = sim.handle.requests();
    assert_eq!(reconnects(&m, "http_status"), (asked - 1) as f64);
    assert_eq!(all_reconnects(&m), (asked - 1) as f64);
    assert_eq!(user(&m, "ocx_stream_connects_total"), 1.0);
    car.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_back_off_and_recover() {
    let faults = Faults {
        http_status: Some(500),
        ..Faults::default()
    };
    let sim = start_sim(still_sim(20, faults)).await;
    let car = start_sidecar(settings(&sim.base_url(), Auth::None, &[])).await;
    let base = car.base_url();
    // Several retries; how many by the time of a scrape depends on the clock (jittered backoff).
    let m = wait_for(&base, LONG, "retries", |m| {
        reconnects(m, "http_status") >= 3.0
    })
    .await;
    assert_eq!(user(&m, "ocx_stream_up"), 0.0);
    assert_eq!(user(&m, "ocx_stream_connects_total"), 0.0);
    sim.handle.set_faults(Faults::default());
    let truth = sim.handle.truth();
    let m = wait_for(&base, LONG, "recovered", |m| {
        matches_truth(m, &truth).is_ok() && user(m, "ocx_stream_up") == 1.0
    })
    .await;
    // Every request but the last was answered 500 and counted as one reconnect.
    let asked = sim.handle.requests();
    assert_eq!(reconnects(&m, "http_status"), (asked - 1) as f64);
    assert_eq!(all_reconnects(&m), (asked - 1) as f64);
    assert_eq!(user(&m, "ocx_stream_connects_total"), 1.0);
    car.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn millisecond_timestamps_are_read_too() {
    let cfg = ocx_sentinel::sim::SimConfig {
        timestamps: ocx_sentinel::sim::TsFormat::Millis,
        ..still_sim(21, Faults::default())
    };
    let sim = start_sim(cfg).await;
    let car = start_sidecar(settings(&sim.base_url(), Auth::None, &[])).await;
    let base = car.base_url();
    let truth = sim.handle.truth();
    let mut want = Seen {
        connects: 1.0,
        snapshots: 1.0,
        deltas: 0.0,
    };
    settled(&base, &truth, want, "up").await;
    // Fills one at a time, each dated by the simulator's clock between the two readings around it.
    let mut last_fill: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for i in 1..=4 {
        let before = unix_ms();
        let truth = fill_once(&sim);
        let after = unix_ms();
        let market = truth.trades.last().unwrap().market.clone();
        last_fill.insert(market, (before, after));
        want.deltas += 1.0;
        settled(&base, &truth, want, &format!("fill {i}")).await;
    }
    let m = scrape(&base).await;
    assert!(!last_fill.is_empty());
    for (market, (before, after)) in &last_fill {
        let got = get(
            &m,
            &format!(r#"ocx_last_fill_timestamp_seconds{{account="t",market="{market}"}}"#),
        )
        .unwrap_or(f64::NAN);
        let (lo, hi) = (*before as f64 / 1000.0, *after as f64 / 1000.0);
        assert!(
            lo <= got && got <= hi,
            "{market}: last fill at {got}, made between {lo} and {hi}"
        );
    }
    assert_eq!(
        get(&m, r#"ocx_fill_time_clamped_total{account="t"}"#),
        Some(0.0)
    );
    // One lag observation per applied event: the snapshot and the four deltas.
    assert_eq!(user(&m, "ocx_stream_event_lag_seconds_count"), 5.0);
    car.shutdown().await;
}
