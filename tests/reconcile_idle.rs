//! The reconciler while the exchange is down and the user stream not live: it must sleep, not spin.
//!
//! Time is paused: tokio then jumps the clock to the next timer whenever every task is waiting,
//! so an hour passes in microseconds, but only if no task stays runnable. A busy loop keeps the
//! runtime busy, the clock never moves, and the test's own sleep never ends; a real-time guard
//! turns that hang into a failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ocx_sentinel::account::AccountCell;
use ocx_sentinel::config::{Auth, Endpoint, ReconcileSettings};
use ocx_sentinel::reconcile::{self, ReconcileTask};
use ocx_sentinel::state::Account;
use ocx_sentinel::telemetry::{Telemetry, exposition};
use tokio::sync::{Notify, watch};

/// Run `body` on a current-thread runtime with paused time, failing if it takes more than
/// `real` wall-clock time (which only happens when something keeps the runtime busy).
fn on_paused_runtime<F>(real: Duration, body: F)
where
    F: FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + 'static,
{
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(body());
        let _ = done.send(());
    });
    match finished.recv_timeout(real) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
            "paused time could not advance within {real:?} of real time: a task kept the runtime busy (a busy loop)"
        ),
        Err(e) => panic!("the test body panicked: {e}"),
    }
}

fn series(t: &Telemetry, key: &str) -> f64 {
    exposition::parse(&t.render())
        .get(&exposition::normalize(key))
        .copied()
        .unwrap_or(0.0)
}

const ERRORS: &str = r#"ocx_rest_requests_total{account="t",endpoint="positions",code="error"}"#;

// Regression: a failed endpoint kept a `not_before` in the past while the user stream was not
// live, so `sleep_until` fired at once and the loop spun a full core for as long as the
// exchange stayed down.
#[test]
fn a_failed_endpoint_does_not_busy_loop_while_the_user_stream_is_down() {
    down_for_an_hour(true);
}

// The same with `after_reconnect: false`: the stream's snapshot must still bring the owed retry
// back, without a re-sync triggering runs of its own.
#[test]
fn without_after_reconnect_the_owed_retry_still_waits_for_the_stream() {
    down_for_an_hour(false);
}

/// One endpoint fails, the user stream goes down for an hour of paused time, then comes back.
fn down_for_an_hour(after_reconnect: bool) {
    on_paused_runtime(Duration::from_secs(20), move || {
        Box::pin(async move {
            let telemetry = Telemetry::new();
            let shared = AccountCell::new(
                "t",
                Account::new(1000),
                telemetry.account("t", 10),
                &[],
                None,
            );
            let user_ready = Arc::new(AtomicBool::new(true));
            let resync = Arc::new(Notify::new());
            let task = ReconcileTask {
                account: "t".into(),
                // Not a URL: every request fails at once, without touching the network.
                api_base: "http://exchange down".into(),
                auth: Auth::None,
                settings: ReconcileSettings {
                    interval: Duration::from_secs(600),
                    endpoints: vec![Endpoint::Positions],
                    after_reconnect,
                    ..ReconcileSettings::default()
                },
                client: reqwest::Client::new(),
                shared,
                metrics: telemetry.reconcile("t", 10),
                resync: resync.clone(),
                user_ready: user_ready.clone(),
                quoted_markets: Vec::new(),
            };
            let (stop, rx) = watch::channel(false);
            let handle = tokio::spawn(reconcile::run(task, rx));
            // The first run fails and schedules its retry (within the first backoff step, 1s).
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(series(&telemetry, ERRORS), 1.0);

            // The user stream goes down: the retry is owed, but nothing may run until it is back.
            user_ready.store(false, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            assert_eq!(
                series(&telemetry, ERRORS),
                1.0,
                "no request while the stream is down"
            );

            // Back: the owed retry runs at once, and only once.
            user_ready.store(true, Ordering::Relaxed);
            resync.notify_one();
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(series(&telemetry, ERRORS), 2.0);
            let _ = stop.send(true);
            handle.await.unwrap();
        })
    });
}
