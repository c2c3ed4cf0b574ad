//! The stream loop against hand-written misbehaving servers on 127.0.0.1: a day-long `retry:`, a
//! server that accepts and never answers, and one that sends a snapshot and hangs up.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::routing;
use common::*;
use ocx_sentinel::account::AccountCell;
use ocx_sentinel::config::{Auth, StreamSettings};
use ocx_sentinel::source::session::StreamKind;
use ocx_sentinel::source::{self, StreamTask};
use ocx_sentinel::state::Account;
use ocx_sentinel::telemetry::{Telemetry, names};
use tokio::sync::watch;
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(10);
const U: &str = r#"account="t",stream="user""#;

const SNAPSHOT: &str = r#"{"eventId":"e1","eventType":"PerpStreamSnapshot","eventSeq":1,"engineTs":"2026-04-24T12:00:03Z","payload":{"positions":[],"trades":[]}}"#;

/// A user stream that answers every request with `body`, holds the connection open for `hold`,
/// and then ends the response; the arrival time of each request is recorded.
async fn scripted_stream(body: String, hold: Duration) -> (String, Arc<Mutex<Vec<Instant>>>) {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    let app = Router::new().route(
        "/perps/stream/user",
        routing::get(move || {
            seen.lock().unwrap().push(Instant::now());
            let head = futures::stream::once(futures::future::ready(Ok::<_, std::io::Error>(
                bytes::Bytes::from(body.clone()),
            )));
            let end = futures::stream::once(async move {
                tokio::time::sleep(hold).await;
                Ok(bytes::Bytes::new())
            });
            let body = Body::from_stream(futures::StreamExt::chain(head, end));
            async move { ([("content-type", "text/event-stream")], body).into_response() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, arrivals)
}

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

// Regression: the SSE `retry:` field was a floor under the backoff with no upper bound, so
// `retry: 86400000` silenced the stream for a day. It is now capped at `backoff_max` (200ms
// here) and each capped use is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_long_sse_retry_is_capped_at_backoff_max_and_counted() {
    let body = format!("retry: 86400000\nevent: snapshot\ndata: {SNAPSHOT}\n\n");
    let (base, arrivals) = scripted_stream(body, Duration::ZERO).await;
    let car = start_sidecar(settings(&base, Auth::None, &[])).await;
    let m = wait_for(&car.base_url(), LONG, "three connections", |m| {
        user(m, "ocx_stream_connects_total") >= 3.0
            && user(m, "ocx_stream_retry_capped_total") >= 2.0
            && user(m, "ocx_stream_retry_capped_total") == reconnects(m, "eof")
    })
    .await;
    assert_eq!(
        user(&m, "ocx_stream_retry_capped_total"),
        reconnects(&m, "eof")
    );
    // The capped floor is the cap itself: each reconnect waits at least backoff_max.
    let times = arrivals.lock().unwrap().clone();
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(200),
            "reconnected after {:?}",
            w[1] - w[0]
        );
    }
    car.shutdown().await;
}

// Regression: only `connect_timeout` bounded a request, so a server that accepted the
// connection and never answered held `send()` forever: no reconnect, no counter, the stream
// silently down. The time to the response headers is now bounded by `response_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out_and_is_retried() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        // Keep every connection open and write nothing.
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    let mut s = settings(&base, Auth::None, &[]);
    s.stream.response_timeout = Duration::from_millis(300);
    let car = start_sidecar(s).await;
    let url = car.base_url();
    let m = wait_for(&url, LONG, "two response timeouts", |m| {
        reconnects(m, "response_timeout") >= 2.0
    })
    .await;
    assert!(accepted.load(Ordering::SeqCst) >= 2);
    assert_eq!(user(&m, "ocx_stream_up"), 0.0);
    assert_eq!(user(&m, "ocx_stream_connects_total"), 0.0);
    assert_eq!(reconnects(&m, "io"), 0.0);
    let ready = reqwest::get(format!("{url}/-/ready")).await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    car.shutdown().await;
}

/// Run `source::run` without jitter (every delay is the backoff's ceiling) against `base` until
/// `n` connections arrived, and return the gaps between them.
async fn reconnect_gaps(
    base: &str,
    arrivals: &Mutex<Vec<Instant>>,
    settings: StreamSettings,
    n: usize,
) -> Vec<Duration> {
    let telemetry = Telemetry::new();
    let account = AccountCell::new(
        "t",
        Account::new(1000),
        telemetry.account("t", 10),
        &[],
        None,
    );
    let task = StreamTask {
        kind: StreamKind::User,
        url: format!("{base}/perps/stream/user"),
        auth: Auth::None,
        settings,
        client: reqwest::Client::new(),
        account,
        metrics: telemetry.stream("t", "user", None),
        ready: Arc::new(AtomicBool::new(false)),
        resync: None,
        retry_capped: telemetry
            .counter(names::RETRY_CAPPED, &[("account", "t"), ("stream", "user")]),
        // No jitter: every delay is the backoff's ceiling.
        jitter: || 1.0,
        traces: ocx_sentinel::traces::Traces::off(),
    };
    let (stop, rx) = watch::channel(false);
    let run = tokio::spawn(source::run(task, rx));
    let deadline = Instant::now() + LONG;
    while arrivals.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "{n} connections within {LONG:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    run.await.unwrap();
    let times = arrivals.lock().unwrap().clone();
    times.windows(2).map(|w| w[1] - w[0]).take(n - 1).collect()
}

// Regression: the backoff started over after any connection that applied a snapshot, so a
// server that sends a snapshot and closes got a reconnect storm, each with a full snapshot.
// Now only a connection live for `backoff_reset_after` resets it: the delays keep doubling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_then_eof_does_not_reset_the_backoff() {
    let body = format!("event: snapshot\ndata: {SNAPSHOT}\n\n");
    let (base, arrivals) = scripted_stream(body, Duration::ZERO).await;
    let settings = StreamSettings {
        backoff_initial: Duration::from_millis(25),
        backoff_max: Duration::from_secs(10),
        backoff_reset_after: Duration::from_secs(30),
        ..StreamSettings::default()
    };
    let gaps = reconnect_gaps(&base, &arrivals, settings, 6).await;
    for (k, gap) in gaps.iter().enumerate() {
        let want = Duration::from_millis(25 << k);
        assert!(
            *gap >= want,
            "reconnect {} came after {gap:?}, not at least {want:?}",
            k + 1
        );
    }
}

// The other side of the same rule: a connection that stayed live for `backoff_reset_after`
// (100ms here; it lasts 300ms) was healthy, so the next reconnect starts from `backoff_initial`
// again. Without the reset the fifth gap would be 300ms + 1.6s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_live_for_backoff_reset_after_resets_the_backoff() {
    let body = format!("event: snapshot\ndata: {SNAPSHOT}\n\n");
    let (base, arrivals) = scripted_stream(body, Duration::from_millis(300)).await;
    let settings = StreamSettings {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(10),
        backoff_reset_after: Duration::from_millis(100),
        ..StreamSettings::default()
    };
    let gaps = reconnect_gaps(&base, &arrivals, settings, 6).await;
    for gap in &gaps {
        assert!(*gap >= Duration::from_millis(400), "{gaps:?}");
    }
    assert!(gaps[4] < Duration::from_millis(1200), "{gaps:?}");
}
