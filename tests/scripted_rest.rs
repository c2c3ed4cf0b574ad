//! A hand-written exchange whose pull endpoints disagree with its stream on purpose: a fill only on REST,
//! a position only on REST, and a 429 with Retry-After; the reconciler's values must follow exactly.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing;
use common::*;
use ocx_sentinel::config::{Auth, ReconcileSettings};
use tokio::time::Instant;

const T1: &str = r#"{"id":"T1","marketId":"BTC-PERP","side":"buy","price":"100","quantity":"1","liquidity":"maker","createdAt":"2026-04-24T12:00:00Z"}"#;
const T2: &str = r#"{"id":"T2","marketId":"BTC-PERP","side":"sell","price":"101","quantity":"0.5","liquidity":"taker","createdAt":"2026-04-24T12:00:01Z"}"#;
/// Only on REST: the stream dropped it.
const T9: &str = r#"{"id":"T9","marketId":"SOL-PERP","side":"buy","price":"150","quantity":"2","liquidity":"maker","createdAt":"2026-04-24T12:00:02Z"}"#;
const P1: &str = r#"{"id":"p1","marketId":"BTC-PERP","side":"long","quantity":"0.5","entryPrice":"100","realizedPnl":"0","status":"open"}"#;
/// Only on REST: a position the stream never sent.
const P2: &str =
    r#"{"marketId":"ETH-PERP","side":"short","quantity":"2","avgPrice":"3500","realizedPnl":"0"}"#;

fn stream_body() -> Body {
    let snap = format!(
        r#"{{"eventId":"e1","eventType":"PerpStreamSnapshot","eventSeq":1,"engineTs":"2026-04-24T12:00:03Z","payload":{{"positions":[{P1}],"trades":[{T1},{T2}]}}}}"#
    );
    let first = format!("event: snapshot\ndata: {snap}\n\n");
    let beats = futures::stream::unfold(0u32, |n| async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b":heartbeat\n\n")),
            n + 1,
        ))
    });
    let head = futures::stream::once(async move { Ok(bytes::Bytes::from(first)) });
    Body::from_stream(futures::StreamExt::chain(head, beats))
}

fn json(body: String) -> Response {
    ([("content-type", "application/json")], body).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_values_follow_exactly_from_the_disagreements() {
    // When each `/perps/balances` request arrived.
    let balance_calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let calls = balance_calls.clone();
    let app = Router::new()
        .route(
            "/perps/stream/user",
            routing::get(|| async { ([("content-type", "text/event-stream")], stream_body()).into_response() }),
        )
        .route("/perps/trades", routing::get(|| async { json(format!(r#"{{"trades":[{T1},{T2},{T9}]}}"#)) }))
        .route("/perps/positions", routing::get(|| async { json(format!("[{P1},{P2}]")) }))
        .route(
            "/perps/orders/open",
            routing::get(|| async { json(r#"[{"marketId":"BTC-PERP","side":"buy"},{"marketId":"BTC-PERP","side":"buy"}]"#.into()) }),
        )
        .route(
            "/perps/balances",
            routing::get(move || {
                let calls = calls.clone();
                async move {
                    let first = {
                        let mut calls = calls.lock().unwrap();
                        calls.push(Instant::now());
                        calls.len() == 1
                    };
                    if first {
                        let mut r = (StatusCode::TOO_MANY_REQUESTS, r#"{"error":"RATE_LIMITED"}"#).into_response();
                        r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
                        return r;
                    }
                    json(r#"{"equity":"1000","availableBalance":"750","initialMargin":"250","maintenanceMargin":"125"}"#.into())
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut s = settings(&base, Auth::None, &[]);
    s.reconcile = ReconcileSettings {
        enabled: true,
        interval: Duration::from_millis(150),
        // A drift is confirmed once it has lasted this long (and two runs read it).
        settle: Duration::from_millis(300),
        // The default endpoints: all five. This exchange has no /portfolio/me (axum answers 404).
        ..ReconcileSettings::default()
    };
    let car = start_sidecar(s).await;
    let url = car.base_url();
    // Runs come every 150ms of wall clock, so how many have drifted by a scrape cannot be exact:
    // the wait is for "at least three"; the values it gates are exact.
    let m = wait_for(
        &url,
        Duration::from_secs(10),
        "balances after the 429 and several runs",
        |m| {
            get(m, r#"ocx_account_equity{account="t"}"#).is_some()
                && get(
                    m,
                    r#"ocx_reconcile_runs_total{account="t",endpoint="positions",result="drift"}"#,
                )
                .unwrap_or(0.0)
                    >= 3.0
                && get(
                    m,
                    r#"ocx_reconcile_mismatches_total{account="t",kind="position"}"#,
                )
                .unwrap_or(0.0)
                    >= 1.0
        },
    )
    .await;
    // Retry-After: 1 was honoured: the retry came a second after the 429 (its own backoff would
    // have drawn 0..1s), and not much later.
    let calls = balance_calls.lock().unwrap().clone();
    assert!(calls.len() >= 2, "{} balances requests", calls.len());
    let gap = calls[1] - calls[0];
    assert!(
        Duration::from_secs(1) <= gap && gap < Duration::from_secs(2),
        "retried after {gap:?}"
    );
    let v = |k: &str| get(&m, k).unwrap_or(f64::NAN);
    // The fill only on REST: recovered once, into the fill metrics.
    assert_eq!(
        v(r#"ocx_fills_recovered_total{account="t",market="SOL-PERP"}"#),
        1.0
    );
    assert_eq!(
        v(r#"ocx_fills_total{account="t",market="SOL-PERP",side="buy",liquidity="maker"}"#),
        1.0
    );
    assert_eq!(
        v(r#"ocx_fill_notional_total{account="t",market="SOL-PERP",side="buy",liquidity="maker"}"#),
        300.0
    );
    assert_eq!(sum(&m, "ocx_fills_total", &[]), 3.0);
    assert_eq!(
        v(r#"ocx_reconcile_mismatches_total{account="t",kind="fill_missing"}"#),
        1.0
    );
    assert_eq!(
        v(r#"ocx_reconcile_mismatches_total{account="t",kind="fill_extra"}"#),
        0.0
    );
    // The position only on REST: drift -2 (short), the shared one 0, one confirmed mismatch.
    assert_eq!(
        v(r#"ocx_reconcile_position_drift{account="t",market="ETH-PERP"}"#),
        -2.0
    );
    assert_eq!(
        v(r#"ocx_reconcile_position_drift{account="t",market="BTC-PERP"}"#),
        0.0
    );
    assert_eq!(
        v(r#"ocx_reconcile_mismatches_total{account="t",kind="position"}"#),
        1.0
    );
    // The 429, then the balances.
    assert_eq!(
        v(r#"ocx_rest_requests_total{account="t",endpoint="balances",code="4xx"}"#),
        1.0
    );
    assert_eq!(v(r#"ocx_account_equity{account="t"}"#), 1000.0);
    assert_eq!(v(r#"ocx_account_available_balance{account="t"}"#), 750.0);
    assert_eq!(v(r#"ocx_account_initial_margin{account="t"}"#), 250.0);
    assert_eq!(v(r#"ocx_account_maintenance_margin{account="t"}"#), 125.0);
    assert_eq!(v(r#"ocx_account_margin_usage_ratio{account="t"}"#), 0.25);
    assert_eq!(
        v(r#"ocx_open_orders{account="t",market="BTC-PERP",side="buy"}"#),
        2.0
    );
    // /portfolio/me answered 404 once and was not asked again.
    assert_eq!(
        v(r#"ocx_rest_requests_total{account="t",endpoint="portfolio",code="4xx"}"#),
        1.0
    );
    assert_eq!(
        v(r#"ocx_reconcile_runs_total{account="t",endpoint="portfolio",result="error"}"#),
        1.0
    );
    car.shutdown().await;
    server.abort();
}
