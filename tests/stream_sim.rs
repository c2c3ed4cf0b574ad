//! The sidecar against the built-in simulator, one test per fault: every value checked against the simulator's truth.
#![cfg(feature = "sim")] // runs the built-in simulator

mod common;

use std::time::Duration;

use common::*;
use ocx_sentinel::config::{Auth, KeyHeader, Secret};
use ocx_sentinel::sim::Faults;

const LONG: Duration = Duration::from_secs(10);
const U: &str = r#"account="t",stream="user""#;

fn user(m: &std::collections::BTreeMap<String, f64>, name: &str) -> f64 {
    get(m, &format!("{name}{{{U}}}")).unwrap_or(0.0)
}

fn reconnects(m: &std::collections::BTreeMap<String, f64>, reason: &str) -> f64 {
    get(
        m,
        &format!(r#"ocx_stream_reconnects_total{{{U},reason="{reason}"}}"#),
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_stream_matches_the_simulator_exactly() {
    let sim = start_sim(still_sim(11, Faults::default())).await;
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
    // Unrealized PnL only where a mark is known.
    let mid = (book.bids[0].0 + book.asks[0].0) / rust_decimal::Decimal::TWO;
    if let Some(p) = truth.positions.iter().find(|p| p.market == "BTC-PERP") {
        let want = f((mid - p.entry_price) * p.quantity);
        assert_eq!(
            get(
                &m,
                r#"ocx_position_unrealized_pnl{account="t",market="BTC-PERP"}"#
            ),
            Some(want)
        );
    }
    assert!(
        !m.keys()
            .any(|k| k.starts_with("ocx_position_unrealized_pnl{") && k.contains("SOL-PERP"))
    );
    // Heartbeats arrive while the world is still.
    wait_for(&base, LONG, "heartbeats", |m| {
        user(m, "ocx_stream_heartbeats_total") >= 2.0
    })
    .await;
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
    wait_for(&base, LONG, "up", |m| user(m, "ocx_stream_up") == 1.0).await;
    // Emit deltas one at a time until the third skips a sequence number.
    for _ in 0..3 {
        steps(&sim, 3).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let m = wait_for(&base, LONG, "one gap", |m| reconnects(m, "gap") >= 1.0).await;
    assert_eq!(
        user(&m, "ocx_stream_sequence_gaps_total"),
        reconnects(&m, "gap")
    );
    assert_eq!(
        user(&m, "ocx_stream_missed_events_total"),
        reconnects(&m, "gap"),
        "each jump skips exactly one"
    );
    sim.handle.set_faults(Faults::default());
    steps(&sim, 50).await;
    let truth = sim.handle.truth();
    let m = wait_for(&base, LONG, "resynced to the truth", |m| {
        matches_truth(m, &truth).is_ok()
    })
    .await;
    // The re-snapshot repeated trades already counted: visible as replays, not double counts.
    assert!(
        get(
            &m,
            r#"ocx_fills_deduplicated_total{account="t",reason="snapshot_replay"}"#
        )
        .unwrap_or(0.0)
            > 0.0
    );
    assert_eq!(user(&m, "ocx_stream_up"), 1.0);
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
    for _ in 0..8 {
        steps(&sim, 5).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let truth = sim.handle.truth();
    let m = wait_for(&base, LONG, "truth after drops", |m| {
        matches_truth(m, &truth).is_ok() && reconnects(m, "eof") >= 2.0
    })
    .await;
    let replays = get(
        &m,
        r#"ocx_fills_deduplicated_total{account="t",reason="snapshot_replay"}"#,
    )
    .unwrap_or(0.0);
    assert!(
        replays >= truth.trades.len() as f64,
        "every reconnect replays the snapshot's trades: {replays}"
    );
    assert_eq!(
        user(&m, "ocx_stream_connects_total"),
        reconnects(&m, "eof") + 1.0
    );
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
    let car = start_sidecar(s).await;
    let base = car.base_url();
    let started = tokio::time::Instant::now();
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
    assert_eq!(user(&m, "ocx_stream_heartbeats_total"), 0.0);
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
    for _ in 0..6 {
        steps(&sim, 4).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let truth = sim.handle.truth();
    let m = wait_for(&base, LONG, "truth despite malformed frames", |m| {
        matches_truth(m, &truth).is_ok()
            && get(
                m,
                &format!(r#"ocx_stream_decode_errors_total{{{U},kind="json"}}"#),
            )
            .unwrap_or(0.0)
                >= 2.0
    })
    .await;
    assert_eq!(
        reconnects(&m, "gap"),
        0.0,
        "malformed frames consume no sequence number"
    );
    assert_eq!(reconnects(&m, "decode"), 0.0);
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
    for _ in 0..4 {
        steps(&sim, 3).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let m = wait_for(&base, LONG, "retryable error reconnect", |m| {
        reconnects(m, "error_event") >= 1.0
    })
    .await;
    let errors = sum(
        &m,
        "ocx_stream_errors_total",
        &[r#"stream="user""#, r#"retryable="true""#],
    );
    assert!(errors >= reconnects(&m, "error_event"), "{errors}");
    assert!(
        get(
            &m,
            &format!(r#"ocx_stream_events_total{{{U},type="error"}}"#)
        )
        .unwrap_or(0.0)
            >= 1.0
    );

    // Non-retryable errors are counted but keep the connection.
    sim.handle.set_faults(Faults {
        error_every: Some(2),
        error_retryable: false,
        ..Faults::default()
    });
    let before = scrape(&base).await;
    for _ in 0..4 {
        steps(&sim, 3).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let m = wait_for(&base, LONG, "non-retryable errors", |m| {
        sum(
            m,
            "ocx_stream_errors_total",
            &[r#"stream="user""#, r#"retryable="false""#],
        ) >= 1.0
    })
    .await;
    // At most the connection open when the fault changed ends on a retryable error.
    assert!(
        reconnects(&m, "error_event") <= reconnects(&before, "error_event") + 1.0,
        "before {} after {}",
        reconnects(&before, "error_event"),
        reconnects(&m, "error_event")
    );
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
    let car = start_sidecar(settings(&sim.base_url(), auth, &[])).await;
    let base = car.base_url();
    let m = wait_for(&base, LONG, "http_status reconnect", |m| {
        reconnects(m, "http_status") >= 1.0
    })
    .await;
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
    // Backoff alone would retry every <=200ms here; Retry-After: 1 spaces the attempts a second apart.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let attempts = sim.handle.requests();
    assert!((1..=2).contains(&attempts), "{attempts} requests in 1.6s");
    sim.handle.set_faults(Faults::default());
    wait_for(&car.base_url(), LONG, "recovered after 429", |m| {
        user(m, "ocx_stream_up") == 1.0
    })
    .await;
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
    let m = wait_for(&base, LONG, "retries", |m| {
        reconnects(m, "http_status") >= 3.0
    })
    .await;
    assert_eq!(user(&m, "ocx_stream_up"), 0.0);
    sim.handle.set_faults(Faults::default());
    let truth = sim.handle.truth();
    wait_for(&base, LONG, "recovered", |m| {
        matches_truth(m, &truth).is_ok()
    })
    .await;
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
    steps(&sim, 20).await;
    let truth = sim.handle.truth();
    let m = wait_for(&car.base_url(), LONG, "truth", |m| {
        matches_truth(m, &truth).is_ok()
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last_fill = m
        .iter()
        .filter(|(k, _)| k.starts_with("ocx_last_fill_timestamp_seconds{"))
        .map(|(_, v)| *v)
        .fold(0.0, f64::max);
    assert!(
        (now - last_fill).abs() < 60.0,
        "last fill {last_fill} vs now {now}"
    );
    assert!(user(&m, "ocx_stream_event_lag_seconds_count") >= 1.0);
    car.shutdown().await;
}
