//! Task supervision: a task that ends other than by shutdown (a panic or a return) is logged, counted, set down and built again after a backoff.
//!
//! Without it a panic inside a spawned task is silent: the task is gone, and whatever it last
//! published (`ocx_stream_up` 1, `/-/ready` 200) stays true for ever.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info};

use crate::source::backoff::Backoff;
use crate::telemetry::{Telemetry, names};

/// How a supervised task is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The delay before the first restart; it doubles on every restart up to `max`, so a task
    /// that fails at once does not spin.
    pub initial: Duration,
    pub max: Duration,
    /// A task that ran at least this long before it ended was healthy: the next delay starts
    /// from `initial` again.
    pub healthy_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(60),
        }
    }
}

/// Run the future `factory` builds until `shutdown` flips to true (or its sender is gone),
/// building it again whenever it ends otherwise. `task` is the `task` label of
/// `ocx_sentinel_task_restarts_total` (a constant: stream, reconcile, server, health); `on_down` runs
/// after each unexpected end, before the restart delay, to set the task's series down.
///
/// The future runs inside the supervisor's own task, so aborting the supervisor drops it.
pub fn supervise<F, Fut, D>(
    task: &'static str,
    telemetry: &Telemetry,
    policy: RestartPolicy,
    mut shutdown: watch::Receiver<bool>,
    mut factory: F,
    mut on_down: D,
) -> impl Future<Output = ()> + use<F, Fut, D>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
    D: FnMut(),
{
    let restarts = telemetry.counter(names::TASK_RESTARTS, &[("task", task)]);
    async move {
        let mut backoff = Backoff::new(policy.initial, policy.max);
        loop {
            let started = Instant::now();
            // AssertUnwindSafe: after a panic the future is dropped, never polled again, and
            // the factory builds the next one from its own (unshared) inputs.
            let outcome = AssertUnwindSafe(factory()).catch_unwind().await;
            // A closed channel means the owner is gone: as good as a shutdown.
            if *shutdown.borrow() || shutdown.has_changed().is_err() {
                return;
            }
            on_down();
            restarts.increment(1);
            let ran_for = started.elapsed();
            if ran_for >= policy.healthy_after {
                backoff.reset();
            }
            // No jitter: there is one of each task, nothing to spread out.
            let delay = backoff.next_delay(1.0);
            let how = match &outcome {
                Ok(()) => "returned".to_string(),
                Err(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
            };
            error!(
                task,
                ran_ms = ran_for.as_millis() as u64,
                restart_in_ms = delay.as_millis() as u64,
                "task {how}; restarting"
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
            info!(task, "task restarted");
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(not a string)"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn restarts(t: &Telemetry, task: &str) -> f64 {
        t.counter(names::TASK_RESTARTS, &[("task", task)]).get()
    }

    // Regression: tasks were spawned unsupervised, so a panic in one was silent and left its
    // series up. A task that panics is restarted after `initial`, counted once, and set down
    // in between.
    #[tokio::test(start_paused = true)]
    async fn a_task_that_panics_once_is_set_down_counted_and_restarted() {
        let telemetry = Telemetry::new();
        let (stop, rx) = watch::channel(false);
        let builds = Arc::new(AtomicU32::new(0));
        let downs = Arc::new(AtomicU32::new(0));
        let (b, d, task_rx) = (builds.clone(), downs.clone(), rx.clone());
        let policy = RestartPolicy {
            initial: Duration::from_secs(2),
            ..RestartPolicy::default()
        };
        let started = Instant::now();
        let sup = tokio::spawn(supervise(
            "stream",
            &telemetry,
            policy,
            rx,
            move || {
                let n = b.fetch_add(1, Ordering::SeqCst);
                let mut rx = task_rx.clone();
                async move {
                    if n == 0 {
                        panic!("the first build dies");
                    }
                    let _ = rx.wait_for(|v| *v).await;
                }
            },
            move || {
                d.fetch_add(1, Ordering::SeqCst);
            },
        ));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        assert_eq!(
            downs.load(Ordering::SeqCst),
            1,
            "set down right after the panic"
        );
        assert_eq!(restarts(&telemetry, "stream"), 1.0);
        // Restarted after the policy's first delay, not before.
        tokio::time::sleep_until(started + Duration::from_millis(1999)).await;
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        tokio::time::sleep_until(started + Duration::from_millis(2001)).await;
        assert_eq!(builds.load(Ordering::SeqCst), 2);
        // A shutdown ends the second build and the supervisor, and is not a restart.
        let _ = stop.send(true);
        sup.await.unwrap();
        assert_eq!(restarts(&telemetry, "stream"), 1.0);
        assert_eq!(downs.load(Ordering::SeqCst), 1);
    }

    // A task that returns at once every time must not spin: the delays double from `initial` to
    // `max` (1, 2, 4, 8, 8, ... seconds here), so its first minute holds exactly 10 restarts.
    #[tokio::test(start_paused = true)]
    async fn a_task_that_keeps_returning_is_restarted_with_a_growing_delay() {
        let telemetry = Telemetry::new();
        let (stop, rx) = watch::channel(false);
        let policy = RestartPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(8),
            healthy_after: Duration::from_secs(60),
        };
        let sup = tokio::spawn(supervise(
            "reconcile",
            &telemetry,
            policy,
            rx,
            || async {},
            || {},
        ));
        // It ends at 0, 1, 3, 7, 15, 23, 31, 39, 47 and 55 seconds; the next build is at 63.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(restarts(&telemetry, "reconcile"), 10.0);
        let _ = stop.send(true);
        sup.await.unwrap();
    }
}
