//! The Alertmanager receiver: the rule engine's firing and resolved alerts posted to real Alertmanagers' `/api/v2/alerts`, as Prometheus's rule manager and notifier send them (on every change, again every resend delay, resolved ones for 15 minutes, in batches through a bounded queue per Alertmanager).
//!
//! Prometheus's semantics, read from `rules/alerting.go` and `notifier/`: an alert is sent when
//! it is new or has changed (fired, resolved, fired again), and again once `resend_delay` has
//! passed since it was last sent; a firing alert's `endsAt` is four resend delays ahead, so an
//! Alertmanager that hears nothing more (this sidecar gone) resolves it by itself, while one or
//! two lost posts do not; a resolved alert carries its resolution time and is re-sent for
//! [`RESOLVED_RETENTION`]. A failed post is not retried: its alerts are counted as dropped, and
//! the next resend carries them again, so an Alertmanager that is down costs one request per
//! resend delay (no loop spins) and gets everything within a resend delay of coming back.
//!
//! Two sidecars in HA post the same alerts (same rules, same labels) to the same
//! Alertmanagers, which deduplicate them by label set: one notification per group.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use reqwest::header::{self, HeaderValue};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::amapi::format_time;
use super::dispatch::{LabelSet, Notifiable, NotifyAlert};
use crate::clock::unix_ms;
use crate::config::{ForwardAuth, ForwardSettings, Secret};
use crate::rules::alert::RESOLVED_RETENTION;
use crate::telemetry::{Counter, Gauge, Histogram, Telemetry, names};

/// Alerts per request (Prometheus 2's `maxBatchSize`).
pub const MAX_BATCH: usize = 64;
/// Alerts waiting per Alertmanager before the oldest are dropped (Prometheus's
/// `--alertmanager.notification-queue-capacity` default).
pub const QUEUE_CAPACITY: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot build the HTTP client for the Alertmanagers: {0}")]
    Client(String),
    /// Names the Alertmanager, never the credentials.
    #[error("{url}: the authorization credentials cannot be sent in a header")]
    Header { url: String },
}

/// The forwarding task's state: one target (queue and sender) per Alertmanager.
pub struct Forwarder {
    targets: Vec<Target>,
    resend_delay: Duration,
    client: reqwest::Client,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field(
                "alertmanagers",
                &self.targets.iter().map(|t| &t.url).collect::<Vec<_>>(),
            )
            .field("resend_delay", &self.resend_delay)
            .finish_non_exhaustive()
    }
}

/// How a request authenticates, built once.
enum Auth {
    None,
    Basic {
        username: String,
        password: Secret,
    },
    /// The whole `Authorization` value, marked sensitive.
    Header(HeaderValue),
}

/// One Alertmanager: its queue, its send loop's wake-up and its series.
struct Target {
    url: String,
    timeout: Duration,
    auth: Auth,
    capacity: usize,
    /// Alerts as JSON objects, oldest first; shared across the Alertmanagers.
    queue: Mutex<VecDeque<Arc<str>>>,
    work: Notify,
    sent: Counter,
    errors: Counter,
    dropped: Counter,
    latency: Histogram,
    queue_length: Gauge,
}

/// Prometheus's `postableAlert`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PostableAlert<'a> {
    labels: &'a LabelSet,
    annotations: &'a LabelSet,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "str::is_empty")]
    generator_url: &'a str,
}

/// What was last sent of one alert, and when.
struct Sent {
    alert: NotifyAlert,
    at: Instant,
}

/// Whether `a` goes out now: never sent, changed since (resolved, fired again, new
/// annotations), or last sent `resend` ago (Prometheus's `needsSending`).
fn due(prev: Option<&Sent>, a: &NotifyAlert, now: Instant, resend: Duration) -> bool {
    match prev {
        None => true,
        Some(s) => {
            s.alert.ends_at_ms != a.ends_at_ms
                || s.alert.starts_at_ms != a.starts_at_ms
                || s.alert.annotations != a.annotations
                || s.at + resend <= now
        }
    }
}

/// The alerts that are forwarded at `now_ms`: firing ones, and resolved ones until
/// [`RESOLVED_RETENTION`] after they resolved.
fn forwardable(snapshot: &[Arc<NotifyAlert>], now_ms: i64) -> impl Iterator<Item = &NotifyAlert> {
    let retention = i64::try_from(RESOLVED_RETENTION.as_millis()).unwrap_or(i64::MAX);
    snapshot.iter().map(Arc::as_ref).filter(move |a| {
        a.ends_at_ms
            .is_none_or(|e| now_ms.saturating_sub(e) <= retention)
    })
}

/// One alert as posted at `now_ms`: a firing one ends four resend delays ahead.
fn postable(a: &NotifyAlert, now_ms: i64, resend: Duration) -> Arc<str> {
    let valid_for = i64::try_from((resend * 4).as_millis()).unwrap_or(i64::MAX);
    let p = PostableAlert {
        labels: &a.labels,
        annotations: &a.annotations,
        starts_at: format_time(a.starts_at_ms),
        ends_at: format_time(
            a.ends_at_ms
                .unwrap_or_else(|| now_ms.saturating_add(valid_for)),
        ),
        generator_url: &a.generator_url,
    };
    // UNWRAP: string maps and strings always serialize.
    serde_json::to_string(&p).unwrap().into()
}

impl Forwarder {
    pub fn new(
        settings: &ForwardSettings,
        telemetry: &Telemetry,
    ) -> Result<Forwarder, ForwardError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("ocx-sentinel/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ForwardError::Client(e.to_string()))?;
        let mut targets = Vec::new();
        for am in &settings.alertmanagers {
            let auth = match &am.auth {
                ForwardAuth::None => Auth::None,
                ForwardAuth::Basic { username, password } => Auth::Basic {
                    username: username.clone(),
                    password: password.clone(),
                },
                ForwardAuth::Authorization {
                    scheme,
                    credentials,
                } => {
                    let mut v =
                        HeaderValue::from_str(&format!("{scheme} {}", credentials.expose()))
                            .map_err(|_| ForwardError::Header {
                                url: am.url.clone(),
                            })?;
                    v.set_sensitive(true);
                    Auth::Header(v)
                }
            };
            targets.push(Target::new(
                &am.url,
                am.timeout,
                auth,
                QUEUE_CAPACITY,
                telemetry,
            ));
        }
        Ok(Forwarder {
            targets,
            resend_delay: settings.resend_delay,
            client,
        })
    }

    /// Run until `shutdown`. `alerts` is the rules runner's firing and resolved alerts.
    /// Queued alerts are not drained at shutdown: the Alertmanagers resolve firing ones at
    /// their `endsAt`, and a restarted sidecar sends them again.
    pub async fn run(
        self: Arc<Self>,
        mut alerts: watch::Receiver<Notifiable>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let sends =
            futures::future::join_all(self.targets.iter().map(|t| t.send_loop(&self.client)));
        tokio::select! {
            biased;
            () = async { let _ = shutdown.wait_for(|s| *s).await; } => {}
            _ = futures::future::join(self.produce(&mut alerts), sends) => {}
        }
    }

    /// Decides what goes out when, and queues it for every Alertmanager.
    async fn produce(&self, alerts: &mut watch::Receiver<Notifiable>) {
        let mut sent: HashMap<u64, Sent> = HashMap::new();
        let mut snapshot = alerts.borrow_and_update().clone();
        loop {
            self.pass(&snapshot, &mut sent, Instant::now(), unix_ms());
            let next = sent.values().map(|s| s.at + self.resend_delay).min();
            tokio::select! {
                changed = alerts.changed() => match changed {
                    Ok(()) => snapshot = alerts.borrow_and_update().clone(),
                    // The engine is gone: stop sending, so the Alertmanagers resolve what it
                    // had firing at its `endsAt` rather than hear stale news for ever.
                    Err(_) => return std::future::pending().await,
                },
                () = async {
                    match next {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    /// Queues every alert of `snapshot` that is due at `now`, and forgets alerts no longer
    /// forwarded.
    fn pass(
        &self,
        snapshot: &[Arc<NotifyAlert>],
        sent: &mut HashMap<u64, Sent>,
        now: Instant,
        now_ms: i64,
    ) {
        let current: Vec<&NotifyAlert> = forwardable(snapshot, now_ms).collect();
        let live: HashSet<u64> = current.iter().map(|a| a.fingerprint()).collect();
        sent.retain(|fp, _| live.contains(fp));
        let mut batch = Vec::new();
        for a in current {
            let fp = a.fingerprint();
            if due(sent.get(&fp), a, now, self.resend_delay) {
                batch.push(postable(a, now_ms, self.resend_delay));
                sent.insert(
                    fp,
                    Sent {
                        alert: a.clone(),
                        at: now,
                    },
                );
            }
        }
        if !batch.is_empty() {
            for t in &self.targets {
                t.push(&batch);
            }
        }
    }
}

impl Target {
    fn new(
        url: &str,
        timeout: Duration,
        auth: Auth,
        capacity: usize,
        telemetry: &Telemetry,
    ) -> Target {
        let l = [("alertmanager", url)];
        Target {
            url: url.to_string(),
            timeout,
            auth,
            capacity,
            queue: Mutex::new(VecDeque::new()),
            work: Notify::new(),
            sent: telemetry.counter(names::ALERTMANAGER_SENT, &l),
            errors: telemetry.counter(names::ALERTMANAGER_ERRORS, &l),
            dropped: telemetry.counter(names::ALERTMANAGER_DROPPED, &l),
            latency: telemetry.histogram(names::ALERTMANAGER_LATENCY, &l),
            queue_length: telemetry.gauge(names::ALERTMANAGER_QUEUE, &l),
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Arc<str>>> {
        // Every mutation is one push or drain: a panic elsewhere leaves a usable queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `items`; when the queue would exceed its capacity the oldest go first.
    fn push(&self, items: &[Arc<str>]) {
        let over = {
            let mut q = self.queue();
            q.extend(items.iter().cloned());
            let over = q.len().saturating_sub(self.capacity);
            q.drain(..over);
            self.queue_length.set(q.len() as f64);
            over
        };
        if over > 0 {
            self.dropped.increment(over as u64);
            tracing::warn!(alertmanager = %self.url, dropped = over, "Alertmanager queue full: oldest alerts dropped");
        }
        self.work.notify_one();
    }

    fn next_batch(&self) -> Vec<Arc<str>> {
        let mut q = self.queue();
        let n = q.len().min(MAX_BATCH);
        let batch = q.drain(..n).collect();
        self.queue_length.set(q.len() as f64);
        batch
    }

    /// Posts batches while the queue has alerts, then sleeps until it has more.
    async fn send_loop(&self, client: &reqwest::Client) {
        loop {
            self.work.notified().await;
            loop {
                let batch = self.next_batch();
                if batch.is_empty() {
                    break;
                }
                self.post(client, &batch).await;
            }
        }
    }

    /// One POST of `batch`, within the timeout. A failure is counted and logged, not retried.
    async fn post(&self, client: &reqwest::Client, batch: &[Arc<str>]) {
        let n = batch.len() as u64;
        let len: usize = batch.iter().map(|a| a.len() + 1).sum();
        let mut body = String::with_capacity(len + 2);
        body.push('[');
        for (i, a) in batch.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(a);
        }
        body.push(']');
        let mut req = client
            .post(&self.url)
            .timeout(self.timeout)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        req = match &self.auth {
            Auth::None => req,
            Auth::Basic { username, password } => req.basic_auth(username, Some(password.expose())),
            Auth::Header(v) => req.header(header::AUTHORIZATION, v.clone()),
        };
        let started = Instant::now();
        let outcome = async {
            let resp = req.send().await?;
            let status = resp.status();
            // Read to the end so the connection can be reused.
            resp.bytes().await?;
            Ok::<_, reqwest::Error>(status)
        }
        .await;
        let failure = match outcome {
            Ok(status) if status.is_success() => {
                self.sent.increment(n);
                self.latency.record(started.elapsed().as_secs_f64());
                return;
            }
            Ok(status) => format!("answered {status}"),
            Err(e) if e.is_timeout() => format!("no answer within {:?}", self.timeout),
            Err(e) => e.without_url().to_string(),
        };
        self.errors.increment(n);
        self.dropped.increment(n);
        tracing::warn!(alertmanager = %self.url, alerts = n, error = %failure, "posting alerts to the Alertmanager failed; the next resend carries the firing ones again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AlertmanagerTarget;
    use axum::extract::State;
    use axum::http::HeaderMap;
    use serde_json::Value;
    use tokio::sync::mpsc;

    fn alert(name: &str, resolved_at: Option<i64>) -> NotifyAlert {
        NotifyAlert {
            labels: [("alertname".to_string(), name.to_string())].into(),
            annotations: [("summary".to_string(), "s".to_string())].into(),
            starts_at_ms: 1_000,
            ends_at_ms: resolved_at,
            value: 1.0,
            generator_url: String::new(),
            trigger: None,
        }
    }

    #[test]
    fn alerts_go_when_new_changed_or_a_resend_delay_old() {
        let t0 = Instant::now();
        let r = Duration::from_secs(60);
        let a = alert("A", None);
        assert!(due(None, &a, t0, r));
        let sent = Sent {
            alert: a.clone(),
            at: t0,
        };
        assert!(!due(Some(&sent), &a, t0 + Duration::from_secs(59), r));
        assert!(due(Some(&sent), &a, t0 + r, r));
        let resolved = alert("A", Some(5_000));
        assert!(due(Some(&sent), &resolved, t0 + Duration::from_secs(1), r));
        let mut annotated = a.clone();
        annotated.annotations.insert("summary".into(), "t".into());
        assert!(due(Some(&sent), &annotated, t0 + Duration::from_secs(1), r));
    }

    #[test]
    fn resolved_alerts_are_forwarded_for_the_retention_then_not() {
        let ret = i64::try_from(RESOLVED_RETENTION.as_millis()).unwrap();
        let snap = [
            Arc::new(alert("A", None)),
            Arc::new(alert("B", Some(10_000))),
        ];
        let names = |now: i64| -> Vec<String> {
            forwardable(&snap, now)
                .map(|a| a.labels["alertname"].clone())
                .collect()
        };
        assert_eq!(names(10_000 + ret), ["A", "B"]);
        assert_eq!(names(10_001 + ret), ["A"]);
    }

    #[test]
    fn the_payload_is_prometheus_postable_alert() {
        let v: Value = serde_json::from_str(&postable(
            &alert("A", None),
            1_000_000,
            Duration::from_secs(60),
        ))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "labels": {"alertname": "A"},
                "annotations": {"summary": "s"},
                "startsAt": "1970-01-01T00:00:01.000Z",
                "endsAt": "1970-01-01T00:20:40.000Z",
            })
        );
        let mut resolved = alert("A", Some(2_000));
        resolved.generator_url = "http://x/graph".into();
        let v: Value =
            serde_json::from_str(&postable(&resolved, 1_000_000, Duration::from_secs(60))).unwrap();
        assert_eq!(v["endsAt"], "1970-01-01T00:00:02.000Z");
        assert_eq!(v["generatorURL"], "http://x/graph");
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_them() {
        let t = Telemetry::new();
        let target = Target::new(
            "http://am/api/v2/alerts",
            Duration::from_secs(1),
            Auth::None,
            100,
            &t,
        );
        let items: Vec<Arc<str>> = (0..130).map(|i| Arc::from(i.to_string())).collect();
        target.push(&items);
        assert_eq!(target.dropped.get(), 30.0);
        assert_eq!(target.queue_length.get(), 100.0);
        let first = target.next_batch();
        assert_eq!(first.len(), MAX_BATCH);
        assert_eq!(&*first[0], "30", "the oldest went");
        assert_eq!(target.next_batch().len(), 36);
        assert!(target.next_batch().is_empty());
        assert_eq!(target.queue_length.get(), 0.0);
    }

    /// An Alertmanager stand-in on loopback: answers `status` and hands over every body with
    /// its `Authorization` header.
    async fn fake_am(status: u16) -> (String, mpsc::UnboundedReceiver<(Value, Option<String>)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = axum::Router::new()
            .route(
                "/prefix/api/v2/alerts",
                axum::routing::post(
                    move |State(tx): State<mpsc::UnboundedSender<(Value, Option<String>)>>,
                          headers: HeaderMap,
                          body: String| async move {
                        let auth = headers
                            .get(header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        let _ = tx.send((serde_json::from_str(&body).unwrap(), auth));
                        axum::http::StatusCode::from_u16(status).unwrap()
                    },
                ),
            )
            .with_state(tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/prefix/api/v2/alerts",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, rx)
    }

    fn settings(url: &str, auth: ForwardAuth, resend: Duration) -> ForwardSettings {
        ForwardSettings {
            alertmanagers: vec![AlertmanagerTarget {
                url: url.to_string(),
                timeout: Duration::from_millis(500),
                auth,
            }],
            resend_delay: resend,
        }
    }

    async fn next(
        rx: &mut mpsc::UnboundedReceiver<(Value, Option<String>)>,
    ) -> (Value, Option<String>) {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a post arrives")
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_go_at_once_in_batches_and_firing_alerts_are_resent() {
        let (url, mut rx) = fake_am(200).await;
        let t = Telemetry::new();
        let fwd = Arc::new(
            Forwarder::new(
                &settings(
                    &url,
                    ForwardAuth::Authorization {
                        scheme: "Bearer".into(),
                        credentials: Secret::new("tok"),
                    },
                    Duration::from_millis(700),
                ),
                &t,
            )
            .unwrap(),
        );
        assert!(!format!("{fwd:?}").contains("tok"));
        let many: Vec<NotifyAlert> = (0..130).map(|i| alert(&format!("A{i:03}"), None)).collect();
        let (tx, alerts) = watch::channel(Arc::new(many.iter().cloned().map(Arc::new).collect()));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(fwd.run(alerts, stop_rx));
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let (body, auth) = next(&mut rx).await;
            assert_eq!(auth.as_deref(), Some("Bearer tok"));
            sizes.push(body.as_array().unwrap().len());
        }
        assert_eq!(sizes, [64, 64, 2], "at most {MAX_BATCH} per post");
        let sent = t.counter(names::ALERTMANAGER_SENT, &[("alertmanager", &url)]);
        // One resolves: only it goes at once, with its resolution time.
        let mut changed = many.clone();
        changed[0].ends_at_ms = Some(unix_ms());
        let started = Instant::now();
        tx.send(Arc::new(changed.into_iter().map(Arc::new).collect()))
            .unwrap();
        let (body, _) = next(&mut rx).await;
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a change is not held back"
        );
        assert_eq!(body.as_array().unwrap().len(), 1);
        assert_eq!(body[0]["labels"]["alertname"], "A000");
        assert!(
            crate::source::wire::parse_timestamp_ms(body[0]["endsAt"].as_str().unwrap()).unwrap()
                <= unix_ms()
        );
        // Then everything again at the resend delay: all 130, the resolved one included.
        let mut again = 0;
        while again < 130 {
            again += next(&mut rx).await.0.as_array().unwrap().len();
        }
        assert_eq!(again, 130);
        let deadline = Instant::now() + Duration::from_secs(5);
        while sent.get() < 261.0 {
            assert!(
                Instant::now() < deadline,
                "accepted posts are counted per alert"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_and_hung_alertmanagers_are_counted_not_retried_in_a_loop() {
        // Refuses with 500.
        let (url, mut rx) = fake_am(500).await;
        // Accepts connections and never answers.
        let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hung_url = format!("http://{}/api/v2/alerts", hung.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = hung.accept().await {
                held.push(s);
            }
        });
        let t = Telemetry::new();
        let mut s = settings(&url, ForwardAuth::None, Duration::from_secs(3600));
        s.alertmanagers.push(AlertmanagerTarget {
            url: hung_url.clone(),
            timeout: Duration::from_millis(300),
            auth: ForwardAuth::Basic {
                username: "u".into(),
                password: Secret::new("p"),
            },
        });
        let fwd = Arc::new(Forwarder::new(&s, &t).unwrap());
        let (_tx, alerts) = watch::channel(Arc::new(vec![
            Arc::new(alert("A", None)),
            Arc::new(alert("B", None)),
        ]));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(fwd.run(alerts, stop_rx));
        next(&mut rx).await;
        let c = |name: &'static str, u: &str| t.counter(name, &[("alertmanager", u)]).get();
        let deadline = Instant::now() + Duration::from_secs(5);
        while c(names::ALERTMANAGER_ERRORS, &hung_url) < 2.0 {
            assert!(Instant::now() < deadline, "the hung post times out");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        for u in [&url, &hung_url] {
            assert_eq!(
                c(names::ALERTMANAGER_ERRORS, u),
                2.0,
                "one post, not retried: {u}"
            );
            assert_eq!(c(names::ALERTMANAGER_DROPPED, u), 2.0);
            assert_eq!(c(names::ALERTMANAGER_SENT, u), 0.0);
        }
        assert!(rx.try_recv().is_err(), "no retry before the resend delay");
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}
