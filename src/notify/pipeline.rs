//! The notifier task: alert snapshots in, aggregation groups flushed on their timers, muted alerts left out, each receiver integration deduplicated by the notification log and delivered with retries.
//!
//! Routing, muting and the integrations are given to it (traits and values), so the
//! Alertmanager-format configuration, silences and inhibition plug in without this loop knowing
//! their formats. One task owns the dispatcher and the log; deliveries run as their own tasks and
//! report back, so a slow receiver never holds another's notification.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::dispatch::{
    Dispatcher, Flush, LabelSet, LogEntry, NotifyAlert, RoutePlan, needs_update,
};
use super::email::Email;
use super::webhook::{Outcome, Webhook, payload};
use crate::clock::unix_ms;
use crate::telemetry::{Telemetry, names};

/// Which routes an alert takes.
pub trait Router: Send + Sync {
    fn routes(&self, labels: &LabelSet) -> Vec<RoutePlan>;

    /// Whether the route's notifications are held at `now_ms` (its mute or active time
    /// intervals); the alerts stay in their group for a later flush.
    fn route_muted(&self, _route: &str, _now_ms: i64) -> bool {
        false
    }
}

/// Whether an alert is muted (silenced or inhibited) at a flush. `firing` is every firing alert
/// the notifier holds, which inhibition compares against.
pub trait Muter: Send + Sync {
    fn muted(&self, alert: &NotifyAlert, firing: &[NotifyAlert], now_ms: i64) -> bool;
}

/// Mutes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMute;

impl Muter for NoMute {
    fn muted(&self, _: &NotifyAlert, _: &[NotifyAlert], _: i64) -> bool {
        false
    }
}

/// One way of reaching a receiver.
#[derive(Debug, Clone)]
pub enum Integration {
    Webhook(Webhook),
    Email(Email),
    /// `demo`'s receiver: one line per alert on stdout, so a newcomer sees a notification.
    Stdout,
}

impl Integration {
    /// The `integration` label value.
    pub fn kind(&self) -> &'static str {
        match self {
            Integration::Webhook(_) => "webhook",
            Integration::Email(_) => "email",
            Integration::Stdout => "stdout",
        }
    }

    fn send_resolved(&self) -> bool {
        match self {
            Integration::Webhook(w) => w.send_resolved,
            Integration::Email(e) => e.send_resolved(),
            Integration::Stdout => true,
        }
    }
}

/// Retries of one delivery: from 1s doubling to 1m, until the group's next flush (which
/// carries the same alerts again), as Alertmanager bounds a notification by `group_interval`.
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Everything the notifier runs with.
pub struct Notifier {
    pub router: Arc<dyn Router>,
    pub muter: Arc<dyn Muter>,
    pub receivers: HashMap<String, Vec<Integration>>,
    pub client: reqwest::Client,
    pub telemetry: Telemetry,
    pub external_url: String,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("receivers", &self.receivers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A delivery's end, reported to the loop.
struct Done {
    flush: Flush,
    integration: usize,
    firing: BTreeSet<u64>,
    resolved: BTreeSet<u64>,
    delivered: bool,
}

/// Per group key: integrations of the current flush still in flight, and whether all so far
/// delivered.
struct Pending {
    left: usize,
    ok: bool,
}

impl Notifier {
    /// Run until `shutdown`. `alerts` carries the engine's firing and resolved alerts after each
    /// evaluation that changed them.
    pub async fn run(
        self: Arc<Self>,
        mut alerts: watch::Receiver<Arc<Vec<NotifyAlert>>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut dispatcher = Dispatcher::new();
        let mut log: HashMap<(String, String, usize), LogEntry> = HashMap::new();
        let mut firing: Vec<NotifyAlert> = Vec::new();
        let mut pending: HashMap<String, Pending> = HashMap::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let started = Instant::now();
        let wall_at_start = unix_ms();
        // Dispatcher times are wall ms, moved by the monotonic clock, so group timers are not
        // held by a wall clock stepped back.
        let clock =
            move || wall_at_start + i64::try_from(started.elapsed().as_millis()).unwrap_or(0);
        loop {
            let next = dispatcher.next_due_ms();
            let timer = async {
                match next {
                    Some(due) => {
                        let wait = due.saturating_sub(clock()).max(0).unsigned_abs();
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
                Some(done) = done_rx.recv() => {
                    let key = (done.flush.group_key.clone(), done.flush.receiver.clone(), done.integration);
                    if done.delivered {
                        log.insert(key, LogEntry { firing: done.firing, resolved: done.resolved, at_ms: clock() });
                    }
                    let finished = match pending.get_mut(&done.flush.id) {
                        Some(p) => {
                            p.left = p.left.saturating_sub(1);
                            p.ok &= done.delivered;
                            p.left == 0
                        }
                        None => false,
                    };
                    if finished && pending.remove(&done.flush.id).is_some_and(|p| p.ok) {
                        dispatcher.delivered(&done.flush);
                    }
                }
                changed = alerts.changed() => {
                    if changed.is_err() {
                        // The engine is gone; deliveries in flight finish on their own.
                        std::future::pending::<()>().await;
                    }
                    let snapshot = alerts.borrow_and_update().clone();
                    let now = clock();
                    firing = snapshot.iter().filter(|a| !a.resolved()).cloned().collect();
                    for a in snapshot.iter() {
                        let plans = self.router.routes(&a.labels);
                        dispatcher.insert(a, &plans, now);
                    }
                }
                () = timer => {
                    let now = clock();
                    for flush in dispatcher.due(now) {
                        if pending.contains_key(&flush.id) || self.router.route_muted(&flush.route, now) {
                            // The previous flush is still being delivered; the next timer
                            // carries these alerts again.
                            continue;
                        }
                        if self.flush(&flush, &firing, &log, now, &done_tx, &mut pending) {
                            dispatcher.delivered(&flush);
                        }
                    }
                }
            }
        }
    }

    /// Start the deliveries `flush` needs. Returns true when none was needed and its resolved
    /// alerts are done with (the receivers never heard of them, or all were muted).
    fn flush(
        &self,
        flush: &Flush,
        firing: &[NotifyAlert],
        log: &HashMap<(String, String, usize), LogEntry>,
        now: i64,
        done_tx: &mpsc::UnboundedSender<Done>,
        pending: &mut HashMap<String, Pending>,
    ) -> bool {
        let Some(integrations) = self.receivers.get(&flush.receiver) else {
            tracing::error!(receiver = %flush.receiver, "no such receiver: notification dropped");
            return true;
        };
        let unmuted: Vec<NotifyAlert> = flush
            .alerts
            .iter()
            .filter(|a| !self.muter.muted(a, firing, now))
            .cloned()
            .collect();
        let mut started = 0;
        for (i, integration) in integrations.iter().enumerate() {
            let send_resolved = integration.send_resolved();
            let fired: BTreeSet<u64> = unmuted
                .iter()
                .filter(|a| !a.resolved())
                .map(NotifyAlert::fingerprint)
                .collect();
            let resolved: BTreeSet<u64> = unmuted
                .iter()
                .filter(|a| a.resolved())
                .map(NotifyAlert::fingerprint)
                .collect();
            let entry = log.get(&(flush.group_key.clone(), flush.receiver.clone(), i));
            let reason = needs_update(
                entry,
                &fired,
                &resolved,
                send_resolved,
                flush.repeat_interval,
                now,
            );
            if !reason.notify() {
                continue;
            }
            let alerts: Vec<NotifyAlert> = if send_resolved {
                unmuted.clone()
            } else {
                unmuted.iter().filter(|a| !a.resolved()).cloned().collect()
            };
            started += 1;
            let (integration, client, telemetry, url, tx, flush, deadline) = (
                integration.clone(),
                self.client.clone(),
                self.telemetry.clone(),
                self.external_url.clone(),
                done_tx.clone(),
                flush.clone(),
                Instant::now() + flush.group_interval,
            );
            tokio::spawn(async move {
                // Only resolved alerts left for an integration that does not send them: the log
                // still records the resolution (Alertmanager does the same), nothing is sent.
                let delivered = alerts.is_empty()
                    || deliver(
                        &integration,
                        &client,
                        &telemetry,
                        &url,
                        &flush,
                        &alerts,
                        deadline,
                    )
                    .await;
                let _ = tx.send(Done {
                    flush,
                    integration: i,
                    firing: fired,
                    resolved,
                    delivered,
                });
            });
        }
        if started > 0 {
            pending.insert(
                flush.id.clone(),
                Pending {
                    left: started,
                    ok: true,
                },
            );
            return false;
        }
        true
    }
}

/// `[notification to demo-stdout] FIRING OcxInventoryLimitBreached {account="demo", ...} value=1.2: summary`
fn print_notification(flush: &Flush, alerts: &[NotifyAlert]) {
    use std::io::Write as _;
    let mut out = String::new();
    for a in alerts {
        let labels: Vec<String> = a
            .labels
            .iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        out.push_str(&format!(
            "[notification to {}] {} {} {{{}}} value={}{}\n",
            flush.receiver,
            if a.resolved() { "RESOLVED" } else { "FIRING" },
            a.labels.get("alertname").map_or("", String::as_str),
            labels.join(", "),
            a.value,
            a.annotations
                .get("summary")
                .map(|s| format!(": {s}"))
                .unwrap_or_default(),
        ));
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}

/// One integration's delivery of one flush, retried until `deadline`. Counts every attempt.
async fn deliver(
    integration: &Integration,
    client: &reqwest::Client,
    telemetry: &Telemetry,
    external_url: &str,
    flush: &Flush,
    alerts: &[NotifyAlert],
    deadline: Instant,
) -> bool {
    let kind = integration.kind();
    let started = Instant::now();
    let mut delay = RETRY_INITIAL;
    loop {
        telemetry
            .counter(names::NOTIFICATION_REQUESTS, &[("integration", kind)])
            .increment(1);
        let outcome = match integration {
            Integration::Webhook(w) => {
                w.send(client, &payload(flush, alerts, external_url, w.max_alerts))
                    .await
            }
            Integration::Email(e) => e.send(flush, alerts, external_url, telemetry).await,
            Integration::Stdout => {
                print_notification(flush, alerts);
                Outcome::Delivered
            }
        };
        match outcome {
            Outcome::Delivered => {
                telemetry
                    .counter(names::NOTIFICATIONS, &[("integration", kind)])
                    .increment(1);
                telemetry
                    .histogram(names::NOTIFICATION_LATENCY, &[("integration", kind)])
                    .record(started.elapsed().as_secs_f64());
                return true;
            }
            Outcome::GiveUp { reason, detail } => {
                telemetry
                    .counter(
                        names::NOTIFICATIONS_FAILED,
                        &[("integration", kind), ("reason", reason)],
                    )
                    .increment(1);
                tracing::error!(receiver = %flush.receiver, integration = kind, %detail, "notification refused; not retried");
                return false;
            }
            Outcome::Retry {
                reason,
                after,
                detail,
            } => {
                telemetry
                    .counter(
                        names::NOTIFICATIONS_FAILED,
                        &[("integration", kind), ("reason", reason)],
                    )
                    .increment(1);
                let wait = after.unwrap_or(delay).min(RETRY_MAX);
                if Instant::now() + wait > deadline {
                    tracing::warn!(receiver = %flush.receiver, integration = kind, %detail, "notification failed; the group's next flush will try again");
                    return false;
                }
                tracing::debug!(receiver = %flush.receiver, integration = kind, %detail, retry_in = ?wait, "notification failed; retrying");
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::notify::dispatch::GroupBy;
    use crate::notify::webhook::WebhookAuth;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    struct OneRoute;

    impl Router for OneRoute {
        fn routes(&self, _: &LabelSet) -> Vec<RoutePlan> {
            vec![RoutePlan {
                route: "{}".into(),
                key: "{}".into(),
                receiver: "team".into(),
                group_by: GroupBy::Labels(vec!["alertname".into()]),
                group_wait: Duration::ZERO,
                group_interval: Duration::from_millis(300),
                repeat_interval: Duration::from_secs(3600),
            }]
        }
    }

    /// A webhook that fails its first `fail` requests with 500, then records bodies.
    async fn receiver(fail: usize) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let k = sock.read(&mut chunk).await.unwrap_or(0);
                    if k == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..k]);
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
                    n += 1;
                    let status = if n <= fail {
                        "500 Internal Server Error"
                    } else {
                        if let Ok(v) = serde_json::from_slice(&buf[end + 4..end + 4 + len]) {
                            seen.lock().unwrap().push(v);
                        }
                        "200 OK"
                    };
                    let _ = sock
                        .write_all(
                            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                    buf.drain(..end + 4 + len);
                }
            }
        });
        (url, got)
    }

    fn alert(resolved: bool) -> NotifyAlert {
        NotifyAlert {
            labels: [("alertname", "Inv"), ("market", "BTC-PERP")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: LabelSet::new(),
            starts_at_ms: unix_ms(),
            ends_at_ms: resolved.then(unix_ms),
            value: 7.0,
            generator_url: String::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_firing_and_one_resolved_notification_with_a_retry_in_between() {
        let (url, got) = receiver(1).await;
        let t = Telemetry::new();
        let notifier = Arc::new(Notifier {
            router: Arc::new(OneRoute),
            muter: Arc::new(NoMute),
            receivers: [(
                "team".to_string(),
                vec![Integration::Webhook(Webhook {
                    url,
                    auth: WebhookAuth::None,
                    timeout: Duration::from_secs(5),
                    max_alerts: 0,
                    send_resolved: true,
                })],
            )]
            .into_iter()
            .collect(),
            client: reqwest::Client::new(),
            telemetry: t.clone(),
            external_url: "http://sentinel".into(),
        });
        let (alerts_tx, alerts_rx) = watch::channel(Arc::new(Vec::new()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(notifier.run(alerts_rx, stop_rx));
        let wait = |n: usize| {
            let got = got.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                while got.lock().unwrap().len() < n {
                    assert!(Instant::now() < deadline, "expected {n} notifications");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        alerts_tx.send(Arc::new(vec![alert(false)])).unwrap();
        wait(1).await;
        // Firing again in later snapshots: no new notification within repeat_interval.
        alerts_tx.send(Arc::new(vec![alert(false)])).unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(got.lock().unwrap().len(), 1);
        alerts_tx.send(Arc::new(vec![alert(true)])).unwrap();
        wait(2).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let bodies = got.lock().unwrap().clone();
        assert_eq!(bodies.len(), 2, "{bodies:#?}");
        assert_eq!(bodies[0]["status"], "firing");
        assert_eq!(bodies[1]["status"], "resolved");
        assert_eq!(bodies[1]["alerts"][0]["status"], "resolved");
        let c = |name: &'static str, labels: &[(&str, &str)]| t.counter(name, labels).get();
        assert_eq!(c(names::NOTIFICATIONS, &[("integration", "webhook")]), 2.0);
        assert_eq!(
            c(names::NOTIFICATION_REQUESTS, &[("integration", "webhook")]),
            3.0
        );
        assert_eq!(
            c(
                names::NOTIFICATIONS_FAILED,
                &[("integration", "webhook"), ("reason", "server_error")]
            ),
            1.0
        );
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
