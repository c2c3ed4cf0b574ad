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
    Dispatcher, Flush, LabelSet, LogEntry, Notifiable, NotifyAlert, Reason, RoutePlan, needs_update,
};
use super::email::Email;
use super::outbox::{LogKey, OutboxEntry, Restored, delete_outbox, log_row, outbox_id};
use super::webhook::{Outcome, Webhook, payload};
use crate::clock::unix_ms;
use crate::datadir::{Row, WriterHandle};
use crate::telemetry::{Telemetry, names};
use crate::traces::Traces;
use opentelemetry::trace::{SpanContext, SpanKind};

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
    fn muted(&self, alert: &NotifyAlert, firing: &[Arc<NotifyAlert>], now_ms: i64) -> bool;

    /// Whether inhibition alone mutes it (for `ocx_sentinel_alerts_inhibited`).
    fn inhibited(&self, _alert: &NotifyAlert, _firing: &[Arc<NotifyAlert>]) -> bool {
        false
    }
}

/// Mutes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMute;

impl Muter for NoMute {
    fn muted(&self, _: &NotifyAlert, _: &[Arc<NotifyAlert>], _: i64) -> bool {
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

/// What the configuration decides: routes, muting, and the integrations of each receiver.
/// Replaced as a whole on reload ([`Notifier::reload`]).
pub struct Routing {
    pub router: Arc<dyn Router>,
    pub muter: Arc<dyn Muter>,
    pub receivers: HashMap<String, Vec<Integration>>,
}

/// Everything the notifier runs with.
pub struct Notifier {
    routing: std::sync::RwLock<Arc<Routing>>,
    /// Moves on every reload: the loop rebuilds its groups under the new routes.
    reloads: watch::Sender<u64>,
    client: reqwest::Client,
    telemetry: Telemetry,
    external_url: String,
    /// The data dir's writer, for the outbox and the notification log; `None` runs from memory.
    store: Option<WriterHandle>,
    /// Per receiver integration: no request before this (a `Retry-After` it sent), across
    /// flushes, so a later flush does not knock again early.
    holds: Holds,
    /// A `notify.send` span per delivery attempt (off unless [`Notifier::traced`]).
    traces: Traces,
}

type Holds = Arc<std::sync::Mutex<HashMap<(String, usize), Instant>>>;

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field(
                "receivers",
                &self.routing().receivers.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// How one delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Delivered,
    /// Refused for good (a 4xx other than 429): not retried, not kept.
    Refused,
    /// Still failing when the group's next flush came: kept in the outbox.
    Failed,
}

/// A delivery's end, reported to the loop.
struct Done {
    /// When the notification was made (wall ms).
    started_ms: i64,
    flush: Flush,
    integration: usize,
    firing: BTreeSet<u64>,
    resolved: BTreeSet<u64>,
    delivery: Delivery,
}

/// The loop's state a flush reads and updates.
struct FlushCtx<'a> {
    firing: &'a [Arc<NotifyAlert>],
    /// When each alert (by fingerprint) last changed state as the notifier saw it.
    changed: &'a HashMap<u64, i64>,
    log: &'a HashMap<LogKey, LogEntry>,
    done_tx: &'a mpsc::UnboundedSender<Done>,
    pending: &'a mut HashMap<String, Pending>,
    outbox: &'a mut Outbox,
}

/// The outbox as the loop tracks it: every row written and not yet deleted, by id.
#[derive(Default)]
struct Outbox {
    rows: HashMap<String, OutboxRow>,
}

/// What the loop keeps of an outbox row: its integration kind and creation time (for the
/// pending and oldest series), and its group and firing alerts (a receiver is being told those
/// fire, so their resolves must not be dropped).
struct OutboxRow {
    kind: &'static str,
    created_ms: i64,
    group_key: String,
    firing: BTreeSet<u64>,
}

impl Outbox {
    fn add(&mut self, entry: &OutboxEntry, kind: &'static str) {
        self.rows.insert(
            entry.id(),
            OutboxRow {
                kind,
                created_ms: entry.created_ms,
                group_key: entry.flush.group_key.clone(),
                firing: entry.firing.clone(),
            },
        );
    }
}

/// Per group key: integrations of the current flush still in flight, and whether all so far
/// delivered.
struct Pending {
    left: usize,
    ok: bool,
}

impl Notifier {
    /// `external_url` is the payload's `externalURL`; `store` the data dir's writer (outbox and
    /// notification log), `None` to run from memory.
    pub fn new(
        routing: Routing,
        client: reqwest::Client,
        telemetry: Telemetry,
        external_url: String,
        store: Option<WriterHandle>,
    ) -> Notifier {
        Notifier {
            routing: std::sync::RwLock::new(Arc::new(routing)),
            reloads: watch::channel(0).0,
            client,
            telemetry,
            external_url,
            store,
            holds: Holds::default(),
            traces: Traces::off(),
        }
    }

    /// Records a `notify.send` span for each delivery attempt, linked to the spans of the
    /// events that made its alerts fire or resolve, and sends its `traceparent` to webhooks.
    pub fn traced(mut self, traces: Traces) -> Notifier {
        self.traces = traces;
        self
    }

    /// The routing in force.
    pub fn routing(&self) -> Arc<Routing> {
        // A poisoned lock still holds a whole Arc: assignments to it cannot tear.
        self.routing
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts `routing` in force, as Alertmanager applies a reloaded configuration: the groups are
    /// rebuilt from the alerts held (each waits its new `group_wait`), and the notification log
    /// keeps them from re-sending what was delivered. Deliveries in flight finish as they were.
    pub fn reload(&self, routing: Routing) {
        *self
            .routing
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(routing);
        self.reloads.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Run until `shutdown`. `alerts` carries the engine's firing and resolved alerts after each
    /// evaluation that changed them.
    pub async fn run(
        self: Arc<Self>,
        alerts: watch::Receiver<Notifiable>,
        shutdown: watch::Receiver<bool>,
    ) {
        self.run_restored(alerts, shutdown, Restored::default())
            .await;
    }

    /// [`Notifier::run`], starting from what a previous process left in the data dir: its
    /// notification log, and the notifications it had not had acknowledged, which are sent
    /// again first (a flush of the same group waits for them).
    pub async fn run_restored(
        self: Arc<Self>,
        mut alerts: watch::Receiver<Notifiable>,
        mut shutdown: watch::Receiver<bool>,
        restored: Restored,
    ) {
        let mut dispatcher = Dispatcher::new();
        let mut reloads = self.reloads.subscribe();
        // Per alert: when it last fired or resolved (wall ms): where a notification's latency is
        // measured from.
        let mut changed_at: HashMap<u64, i64> = HashMap::new();
        // The previous snapshot, by fingerprint: an alert that did not change since is not
        // routed and inserted again (a no-op for the groups, and the snapshot carries every
        // resolved alert for 15 minutes, so re-inserting all made each change cost O(alerts)).
        let mut previous: HashMap<u64, Arc<NotifyAlert>> = HashMap::new();
        // Per receiver integration and group: since when its deliveries have failed (the
        // fallback receiver's clock).
        let mut failing: HashMap<LogKey, i64> = HashMap::new();
        let mut log: HashMap<LogKey, LogEntry> = restored.log.into_iter().collect();
        let mut outbox = Outbox::default();
        self.store_rows(restored.stale);
        let mut firing: Vec<Arc<NotifyAlert>> = Vec::new();
        let mut pending: HashMap<String, Pending> = HashMap::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let started = Instant::now();
        let wall_at_start = unix_ms();
        // Dispatcher times are wall ms, moved by the monotonic clock, so group timers are not
        // held by a wall clock stepped back.
        let clock =
            move || wall_at_start + i64::try_from(started.elapsed().as_millis()).unwrap_or(0);
        for entry in restored.outbox {
            self.resend(entry, &done_tx, &mut pending, &mut outbox);
        }
        self.outbox_series(&outbox);
        // The snapshot held at the start is routed too: the restored firing alerts get their
        // groups (so their repeats go out, and their resolves are known), and a notification
        // the previous process sent without a log entry goes out again.
        // Its alerts changed before this start, not now (unless the value is a change made
        // since the receiver was made): no latency is measured from them.
        let mut initial = !alerts.has_changed().unwrap_or(false);
        alerts.mark_changed();
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
                    let id = outbox_id(&done.flush.id, done.integration);
                    let mut rows = Vec::new();
                    if done.delivery != Delivery::Failed && outbox.rows.remove(&id).is_some() {
                        rows.push(delete_outbox(id));
                    }
                    let delivered = done.delivery == Delivery::Delivered;
                    if delivered {
                        failing.remove(&key);
                    } else {
                        let since = *failing.entry(key.clone()).or_insert(done.started_ms);
                        let mut ctx = FlushCtx { firing: &firing, changed: &changed_at, log: &log, done_tx: &done_tx, pending: &mut pending, outbox: &mut outbox };
                        self.fall_back(&done.flush, since, clock(), &mut ctx);
                    }
                    if delivered {
                        let entry = LogEntry { firing: done.firing, resolved: done.resolved, at_ms: clock() };
                        rows.push(log_row(&key, &entry));
                        log.insert(key, entry);
                    }
                    // The log entry and the outbox deletion in one commit: a restart finds
                    // either the notification still to send or its record, never both or none.
                    if delivered {
                        let written = self.telemetry.counter(names::NOTIFICATION_LOG_WRITES, &[]);
                        self.store_rows_then(rows, Box::new(move |ok| if ok { written.increment(1) }));
                    } else {
                        self.store_rows(rows);
                    }
                    self.outbox_series(&outbox);
                    let finished = match pending.get_mut(&done.flush.id) {
                        Some(p) => {
                            p.left = p.left.saturating_sub(1);
                            p.ok &= delivered;
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
                    let wall = unix_ms();
                    let routing = self.routing();
                    let inhibited = firing.iter().filter(|a| routing.muter.inhibited(a, &firing)).count();
                    self.telemetry.gauge(names::ALERTS_INHIBITED, &[]).set(inhibited as f64);
                    // One fingerprint per alert per snapshot; only what changed since the
                    // previous one is routed, inserted and (if its resolved state flipped)
                    // re-timed.
                    let mut current = HashMap::with_capacity(snapshot.len());
                    let notified = |key: &str, fp: u64| notified(&log, &outbox, key, fp);
                    for a in snapshot.iter() {
                        let fp = a.fingerprint();
                        let old = previous.remove(&fp);
                        // The engine hands over an unchanged alert as the same `Arc`.
                        if old.as_ref().is_none_or(|o| !Arc::ptr_eq(o, a) && o != a) {
                            // What the start found did not change now: no latency from it.
                            if !initial && old.is_none_or(|o| o.resolved() != a.resolved()) {
                                changed_at.insert(fp, wall);
                            }
                            let plans = routing.router.routes(&a.labels);
                            dispatcher.insert(a, &plans, now, &notified);
                        }
                        current.insert(fp, a.clone());
                    }
                    initial = false;
                    // Alerts gone from the snapshot take their change times with them.
                    for fp in previous.keys() {
                        changed_at.remove(fp);
                    }
                    previous = current;
                    // Groups due at once (`group_wait: 0s`) go out now, not a timer tick later.
                    if dispatcher.next_due_ms().is_some_and(|due| due <= now) {
                        let mut ctx = FlushCtx { firing: &firing, changed: &changed_at, log: &log, done_tx: &done_tx, pending: &mut pending, outbox: &mut outbox };
                        self.flush_due(&mut dispatcher, now, &mut ctx);
                    }
                }
                Ok(()) = reloads.changed() => {
                    // New routes: new groups from the alerts held, as Alertmanager's reload
                    // starts a new dispatcher.
                    reloads.borrow_and_update();
                    dispatcher = Dispatcher::new();
                    let snapshot = alerts.borrow().clone();
                    let now = clock();
                    let routing = self.routing();
                    let notified = |key: &str, fp: u64| notified(&log, &outbox, key, fp);
                    for a in snapshot.iter() {
                        dispatcher.insert(a, &routing.router.routes(&a.labels), now, &notified);
                    }
                    self.outbox_series(&outbox);
                }
                () = timer => {
                    let now = clock();
                    let mut ctx = FlushCtx { firing: &firing, changed: &changed_at, log: &log, done_tx: &done_tx, pending: &mut pending, outbox: &mut outbox };
                    self.flush_due(&mut dispatcher, now, &mut ctx);
                }
            }
        }
    }

    /// After a failed delivery of `flush`, failing since `since`: once that is `fallback_after`
    /// ago, the same notification goes to the route's fallback receiver (deduplicated by its own
    /// log entries, so a primary failing at every flush does not repeat it).
    fn fall_back(&self, flush: &Flush, since: i64, now: i64, ctx: &mut FlushCtx<'_>) {
        let Some(fb) = &flush.fallback else { return };
        let after = i64::try_from(fb.after.as_millis()).unwrap_or(i64::MAX);
        if fb.receiver == flush.receiver || now - since < after {
            return;
        }
        let to = Flush {
            id: format!("{}\u{1f}fallback", flush.id),
            receiver: fb.receiver.clone(),
            fallback: None,
            ..flush.clone()
        };
        if ctx.pending.contains_key(&to.id) {
            return;
        }
        tracing::warn!(receiver = %flush.receiver, fallback = %fb.receiver, group = %flush.group_key, failing_for_s = (now - since) / 1000, "receiver failing: notification sent to the fallback receiver");
        self.flush(&to, now, ctx);
    }

    /// Flushes every group due at `now`.
    fn flush_due(&self, dispatcher: &mut Dispatcher, now: i64, ctx: &mut FlushCtx<'_>) {
        let routing = self.routing();
        for flush in dispatcher.due(now) {
            if ctx.pending.contains_key(&flush.id) || routing.router.route_muted(&flush.route, now)
            {
                // The previous flush is still being delivered; the next timer carries these
                // alerts again.
                continue;
            }
            if self.flush(&flush, now, ctx) {
                dispatcher.delivered(&flush);
            }
        }
        self.outbox_series(ctx.outbox);
    }

    /// Writes `rows` to the data dir, if there is one (fire and forget: the writer retries a
    /// failed commit, and the values stay live here).
    fn store_rows(&self, rows: Vec<Row>) {
        self.store_rows_then(rows, Box::new(|_| {}));
    }

    /// Queues `rows`; `then` runs once they are committed (`true`) or the attempt failed.
    fn store_rows_then(&self, rows: Vec<Row>, then: crate::datadir::Then) {
        if let (Some(w), false) = (&self.store, rows.is_empty()) {
            w.put(rows, then);
        }
    }

    /// Writes the outbox row of a notification about to be sent; the returned receiver says
    /// when it is in the store's file (`true`: a process killed from then on sends it after the
    /// restart; the commit's fsync may still be running) or could not be written (`false`: sent
    /// from memory anyway).
    fn write_outbox(&self, entry: &OutboxEntry) -> Option<tokio::sync::oneshot::Receiver<bool>> {
        let w = self.store.as_ref()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        w.put_written(
            vec![entry.row()],
            Box::new(move |ok| {
                let _ = tx.send(ok);
            }),
        );
        Some(rx)
    }

    fn outbox_series(&self, outbox: &Outbox) {
        let routing = self.routing();
        let kinds: BTreeSet<&str> = routing
            .receivers
            .values()
            .flatten()
            .map(|i| i.kind())
            .collect();
        for integration in kinds {
            let n = outbox
                .rows
                .values()
                .filter(|r| r.kind == integration)
                .count();
            self.telemetry
                .gauge(names::OUTBOX_PENDING, &[("integration", integration)])
                .set(n as f64);
        }
        let oldest = outbox.rows.values().map(|r| r.created_ms).min();
        self.telemetry
            .gauge(names::OUTBOX_OLDEST, &[])
            .set(oldest.map_or(0.0, |t| t as f64 / 1000.0));
    }

    /// Sends a notification a previous process left in the outbox, to the same integration if
    /// the configuration still has it.
    fn resend(
        &self,
        entry: OutboxEntry,
        done_tx: &mpsc::UnboundedSender<Done>,
        pending: &mut HashMap<String, Pending>,
        outbox: &mut Outbox,
    ) {
        let routing = self.routing();
        let integration = routing
            .receivers
            .get(&entry.flush.receiver)
            .and_then(|v| v.get(entry.integration))
            .filter(|i| i.kind() == entry.kind);
        let Some(integration) = integration else {
            tracing::warn!(receiver = %entry.flush.receiver, integration = %entry.kind, "a notification left in the outbox has no receiver integration in this configuration: dropped");
            self.store_rows(vec![delete_outbox(entry.id())]);
            return;
        };
        tracing::info!(receiver = %entry.flush.receiver, integration = %entry.kind, group = %entry.flush.group_key, "sending a notification left in the outbox by the previous process");
        outbox.add(&entry, integration.kind());
        pending
            .entry(entry.flush.id.clone())
            .or_insert(Pending { left: 0, ok: true })
            .left += 1;
        self.spawn_delivery(integration.clone(), entry, None, done_tx.clone());
    }

    fn spawn_delivery(
        &self,
        integration: Integration,
        entry: OutboxEntry,
        durable: Option<tokio::sync::oneshot::Receiver<bool>>,
        tx: mpsc::UnboundedSender<Done>,
    ) {
        let (client, telemetry, url, deadline, holds, traces) = (
            self.client.clone(),
            self.telemetry.clone(),
            self.external_url.clone(),
            Instant::now() + entry.flush.group_interval,
            self.holds.clone(),
            self.traces.clone(),
        );
        tokio::spawn(async move {
            // Written before it is sent: a process killed from here on sends it after restart.
            if let Some(rx) = durable
                && !rx.await.unwrap_or(false)
            {
                tracing::warn!(receiver = %entry.flush.receiver, "notification could not be written to the outbox (see the data dir errors); sending it from memory");
            }
            // Only resolved alerts left for an integration that does not send them: the log
            // still records the resolution (Alertmanager does the same), nothing is sent.
            let delivery = if entry.alerts.is_empty() {
                Delivery::Delivered
            } else {
                let to = Target {
                    client: &client,
                    telemetry: &telemetry,
                    external_url: &url,
                    holds: &holds,
                    traces: &traces,
                };
                deliver(&integration, &to, &entry, deadline).await
            };
            let _ = tx.send(Done {
                started_ms: entry.created_ms,
                flush: entry.flush,
                integration: entry.integration,
                firing: entry.firing,
                resolved: entry.resolved,
                delivery,
            });
        });
    }

    /// Start the deliveries `flush` needs. Returns true when none was needed and its resolved
    /// alerts are done with (the receivers never heard of them, or all were muted).
    fn flush(&self, flush: &Flush, now: i64, ctx: &mut FlushCtx<'_>) -> bool {
        let FlushCtx {
            firing,
            changed,
            log,
            done_tx,
            pending,
            outbox,
        } = ctx;
        let routing = self.routing();
        let Some(integrations) = routing.receivers.get(&flush.receiver) else {
            tracing::error!(receiver = %flush.receiver, "no such receiver: notification dropped");
            return true;
        };
        let unmuted: Vec<NotifyAlert> = flush
            .alerts
            .iter()
            .filter(|a| !routing.muter.muted(a, firing, now))
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
            tracing::debug!(group = %flush.group_key, receiver = %flush.receiver, integration = i, firing = fired.len(), resolved = resolved.len(), ?reason, "group flushed");
            if !reason.notify() {
                continue;
            }
            let alerts: Vec<NotifyAlert> = if send_resolved {
                unmuted.clone()
            } else {
                unmuted.iter().filter(|a| !a.resolved()).cloned().collect()
            };
            started += 1;
            // A repeat has no triggering change: its latency is not a notification latency.
            let trigger_ms = (reason != Reason::RepeatIntervalElapsed)
                .then(|| {
                    alerts
                        .iter()
                        .filter_map(|a| changed.get(&a.fingerprint()).copied())
                        .max()
                })
                .flatten();
            let entry = OutboxEntry {
                trigger_ms,
                flush: flush.clone(),
                integration: i,
                kind: integration.kind().to_string(),
                alerts,
                firing: fired,
                resolved,
                created_ms: unix_ms(),
            };
            let durable = if entry.alerts.is_empty() {
                None
            } else {
                outbox.add(&entry, integration.kind());
                self.write_outbox(&entry)
            };
            self.spawn_delivery(integration.clone(), entry, durable, done_tx.clone());
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

/// Whether a receiver of group `key` was told alert `fp` was firing (the log says so) or is
/// being told (a notification in the outbox, such as one the previous process left).
fn notified(log: &HashMap<LogKey, LogEntry>, outbox: &Outbox, key: &str, fp: u64) -> bool {
    log.iter()
        .any(|((group, _, _), entry)| group == key && entry.firing.contains(&fp))
        || outbox
            .rows
            .values()
            .any(|row| row.group_key == key && row.firing.contains(&fp))
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

/// What a delivery uses besides its integration.
#[derive(Clone, Copy)]
struct Target<'a> {
    client: &'a reqwest::Client,
    telemetry: &'a Telemetry,
    external_url: &'a str,
    holds: &'a Holds,
    traces: &'a Traces,
}

/// One integration's delivery of one flush, retried until `deadline`. Counts every attempt.
async fn deliver(
    integration: &Integration,
    to: &Target<'_>,
    entry: &OutboxEntry,
    deadline: Instant,
) -> Delivery {
    let Target {
        client,
        telemetry,
        external_url,
        holds,
        traces,
    } = *to;
    // The events behind the alerts: each attempt's span links to them.
    let mut links: Vec<SpanContext> = Vec::new();
    if traces.is_on() {
        for link in entry.alerts.iter().filter_map(|a| a.trigger) {
            let cx = crate::traces::context_of(link);
            if !links.contains(&cx) {
                links.push(cx);
            }
        }
    }
    let mut attempt: i64 = 0;
    let (flush, alerts) = (&entry.flush, entry.alerts.as_slice());
    let kind = integration.kind();
    let mut delay = RETRY_INITIAL;
    let hold_key = (flush.receiver.clone(), entry.integration);
    let held = |holds: &Holds| {
        holds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&hold_key)
            .copied()
    };
    loop {
        // The receiver asked for a pause (Retry-After): no request before it ends; past this
        // delivery's deadline, the next flush tries.
        if let Some(until) = held(holds).filter(|t| *t > Instant::now()) {
            if until > deadline {
                return Delivery::Failed;
            }
            tokio::time::sleep_until(until).await;
        }
        telemetry
            .counter(names::NOTIFICATION_REQUESTS, &[("integration", kind)])
            .increment(1);
        attempt += 1;
        let mut span = traces.span("notify.send", SpanKind::Client, None, &links);
        if span.is_recording() {
            let firing = alerts.iter().filter(|a| !a.resolved()).count();
            span.set("ocx.notify.receiver", flush.receiver.clone());
            span.set("ocx.notify.integration", kind);
            span.set("ocx.notify.group_key", flush.group_key.clone());
            span.set("ocx.notify.attempt", attempt);
            span.set("ocx.notify.alerts_firing", firing as i64);
            span.set("ocx.notify.alerts_resolved", (alerts.len() - firing) as i64);
        }
        let traceparent = span.context().map(|cx| crate::traces::traceparent(&cx));
        let outcome = match integration {
            Integration::Webhook(w) => {
                w.send_traced(
                    client,
                    &payload(flush, alerts, external_url, w.max_alerts),
                    traceparent.as_deref(),
                )
                .await
            }
            Integration::Email(e) => e.send(flush, alerts, external_url, telemetry).await,
            Integration::Stdout => {
                print_notification(flush, alerts);
                Outcome::Delivered
            }
        };
        match &outcome {
            Outcome::Delivered => span.set("ocx.notify.outcome", "delivered"),
            Outcome::GiveUp { reason, detail } => {
                span.set("ocx.notify.outcome", "refused");
                span.set("ocx.notify.reason", *reason);
                span.error(detail.clone());
            }
            Outcome::Retry { reason, detail, .. } => {
                span.set("ocx.notify.outcome", "failed");
                span.set("ocx.notify.reason", *reason);
                span.error(detail.clone());
            }
        }
        let cx = span.context();
        span.end();
        match outcome {
            Outcome::Delivered => {
                telemetry
                    .counter(names::NOTIFICATIONS, &[("integration", kind)])
                    .increment(1);
                if let Some(since) = entry.trigger_ms {
                    telemetry
                        .histogram(names::NOTIFICATION_LATENCY, &[("integration", kind)])
                        .record((unix_ms() - since).max(0) as f64 / 1000.0);
                }
                return Delivery::Delivered;
            }
            Outcome::GiveUp { reason, detail } => {
                telemetry
                    .counter(
                        names::NOTIFICATIONS_FAILED,
                        &[("integration", kind), ("reason", reason)],
                    )
                    .increment(1);
                crate::traces::log::in_span(cx.as_ref(), || {
                    tracing::error!(receiver = %flush.receiver, integration = kind, %detail, "notification refused; not retried");
                });
                return Delivery::Refused;
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
                if let Some(after) = after {
                    holds
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(hold_key.clone(), Instant::now() + after);
                }
                let wait = after.unwrap_or(delay).min(RETRY_MAX);
                if Instant::now() + wait > deadline {
                    crate::traces::log::in_span(cx.as_ref(), || {
                        tracing::warn!(receiver = %flush.receiver, integration = kind, %detail, "notification failed; the group's next flush will try again");
                    });
                    return Delivery::Failed;
                }
                crate::traces::log::in_span(cx.as_ref(), || {
                    tracing::debug!(receiver = %flush.receiver, integration = kind, %detail, retry_in = ?wait, "notification failed; retrying");
                });
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
    use crate::notify::outbox::{OutboxEntry, Restored};
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
                fallback: None,
                repeat_interval: Duration::from_secs(3600),
            }]
        }
    }

    /// A webhook that fails its first `fail` requests with 500, then records bodies.
    async fn receiver(fail: usize) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        let (url, got, _) = receiver_with(move |n| {
            if n <= fail {
                "500 Internal Server Error"
            } else {
                "200 OK"
            }
        })
        .await;
        (url, got)
    }

    /// A webhook answering request `n` (from 1) with the status line `answer(n)` (plus a
    /// `retry-after: 2` header on a 429); bodies answered 200 are recorded, and every request's
    /// arrival time.
    #[allow(clippy::type_complexity)] // reason: two recordings, read by the tests at once
    async fn receiver_with(
        answer: impl Fn(usize) -> &'static str + Send + Sync + 'static,
    ) -> (
        String,
        Arc<Mutex<Vec<serde_json::Value>>>,
        Arc<Mutex<Vec<Instant>>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (got, times) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        );
        let (seen, at) = (got.clone(), times.clone());
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (seen, at, answer) = (seen.clone(), at.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        let k = sock.read(&mut chunk).await.unwrap_or(0);
                        if k == 0 {
                            return;
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
                        let n = {
                            let mut t = at.lock().unwrap();
                            t.push(Instant::now());
                            t.len()
                        };
                        let status = answer(n);
                        if status.starts_with("200")
                            && let Ok(v) = serde_json::from_slice(&buf[end + 4..end + 4 + len])
                        {
                            seen.lock().unwrap().push(v);
                        }
                        buf.drain(..end + 4 + len);
                        let extra = if status.starts_with("429") {
                            "retry-after: 2\r\n"
                        } else {
                            ""
                        };
                        let _ = sock
                            .write_all(
                                format!("HTTP/1.1 {status}\r\n{extra}content-length: 0\r\n\r\n")
                                    .as_bytes(),
                            )
                            .await;
                    }
                });
            }
        });
        (url, got, times)
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
            trigger: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_firing_and_one_resolved_notification_with_a_retry_in_between() {
        let (url, got) = receiver(1).await;
        let t = Telemetry::new();
        let notifier = notifier_to(url, &t);
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
        alerts_tx
            .send(Arc::new(vec![Arc::new(alert(false))]))
            .unwrap();
        wait(1).await;
        // Firing again in later snapshots: no new notification within repeat_interval.
        alerts_tx
            .send(Arc::new(vec![Arc::new(alert(false))]))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(got.lock().unwrap().len(), 1);
        alerts_tx
            .send(Arc::new(vec![Arc::new(alert(true))]))
            .unwrap();
        wait(2).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let bodies = got.lock().unwrap().clone();
        assert_eq!(bodies.len(), 2, "{bodies:#?}");
        assert_eq!(bodies[0]["status"], "firing");
        assert_eq!(bodies[1]["status"], "resolved");
        assert_eq!(bodies[1]["alerts"][0]["status"], "resolved");
        let c = |name: &'static str, labels: &[(&str, &str)]| t.counter(name, labels).get();
        assert_eq!(c(names::NOTIFICATIONS, &[("integration", "webhook")]), 2.0);
        // Both were triggered by a change (no repeat): both latencies measured, from the change.
        let latency = t.histogram(names::NOTIFICATION_LATENCY, &[("integration", "webhook")]);
        assert_eq!(latency.count(), 2);
        assert!(
            latency.sum() < 20.0,
            "from the change, not from some old start"
        );
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

    fn notifier_to(url: String, t: &Telemetry) -> Arc<Notifier> {
        let routing = Routing {
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
        };
        Arc::new(Notifier::new(
            routing,
            reqwest::Client::new(),
            t.clone(),
            "http://sentinel".into(),
            None,
        ))
    }

    // What a previous process left: a notification in the outbox with no alert behind it any
    // more (its rule is gone) is still delivered, once; one for a receiver the configuration no
    // longer has is dropped; and a group the log says was notified is not notified again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_outbox_is_sent_once_and_the_restored_log_holds_repeats_back() {
        let (url, got) = receiver(0).await;
        let t = Telemetry::new();
        let notifier = notifier_to(url, &t);
        let firing = alert(false);
        let flush = Flush {
            id: "{}:{alertname=\"Old\"}".into(),
            route: "{}".into(),
            group_key: "{}:{alertname=\"Old\"}".into(),
            receiver: "team".into(),
            group_labels: LabelSet::new(),
            repeat_interval: Duration::from_secs(3600),
            group_interval: Duration::from_millis(300),
            alerts: vec![firing.clone()],
            fallback: None,
        };
        let entry = OutboxEntry {
            flush: flush.clone(),
            integration: 0,
            kind: "webhook".into(),
            alerts: vec![firing.clone()],
            firing: BTreeSet::from([firing.fingerprint()]),
            resolved: BTreeSet::new(),
            created_ms: 1,
            trigger_ms: None,
        };
        let gone = OutboxEntry {
            flush: Flush {
                receiver: "nobody".into(),
                ..flush.clone()
            },
            ..entry.clone()
        };
        // The group the current alert falls in (grouped by alertname) was notified just now.
        let key = ("{}:{alertname=\"Inv\"}".to_string(), "team".to_string(), 0);
        let log = LogEntry {
            firing: BTreeSet::from([firing.fingerprint()]),
            resolved: BTreeSet::new(),
            at_ms: unix_ms(),
        };
        let restored = Restored {
            log: vec![(key, log)],
            outbox: vec![entry, gone],
            ..Restored::default()
        };
        let (alerts_tx, alerts_rx) = watch::channel(Arc::new(Vec::new()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(notifier.run_restored(alerts_rx, stop_rx, restored));
        alerts_tx.send(Arc::new(vec![Arc::new(firing)])).unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let bodies = got.lock().unwrap().clone();
        assert_eq!(bodies.len(), 1, "{bodies:#?}");
        assert_eq!(bodies[0]["groupKey"], "{}:{alertname=\"Old\"}");
        assert_eq!(
            t.gauge(names::OUTBOX_PENDING, &[("integration", "webhook")])
                .get(),
            0.0
        );
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }

    // After a restart the notifier starts from the alerts the engine restored, which need not
    // change again: a firing one whose repeat_interval elapsed is repeated, and a resolved one
    // the log says was notified firing has its resolve sent (though no group held it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_alerts_held_at_start_are_routed_so_repeats_and_resolves_go_out() {
        let key = ("{}:{alertname=\"Inv\"}".to_string(), "team".to_string(), 0);
        for (resolved, logged_ago_ms, expect) in
            [(false, 2 * 3600 * 1000, "firing"), (true, 1000, "resolved")]
        {
            let (url, got) = receiver(0).await;
            let t = Telemetry::new();
            let notifier = notifier_to(url, &t);
            let held = alert(resolved);
            let log = LogEntry {
                firing: BTreeSet::from([held.fingerprint()]),
                resolved: BTreeSet::new(),
                at_ms: unix_ms() - logged_ago_ms,
            };
            let restored = Restored {
                log: vec![(key.clone(), log)],
                ..Restored::default()
            };
            // The snapshot is the channel's first value: no change is ever sent.
            let (_alerts_tx, alerts_rx) = watch::channel(Arc::new(vec![Arc::new(held)]));
            let (stop_tx, stop_rx) = watch::channel(false);
            let task = tokio::spawn(notifier.run_restored(alerts_rx, stop_rx, restored));
            let deadline = Instant::now() + Duration::from_secs(10);
            while got.lock().unwrap().is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
            let bodies = got.lock().unwrap().clone();
            assert_eq!(bodies.len(), 1, "{expect}: {bodies:#?}");
            assert_eq!(bodies[0]["status"], expect);
            assert_eq!(bodies[0]["groupKey"], key.0);
            stop_tx.send(true).unwrap();
            task.await.unwrap();
        }
    }

    /// `team` fails every request; the plan falls back to `phone` at once.
    struct FallbackRoute;

    impl Router for FallbackRoute {
        fn routes(&self, labels: &LabelSet) -> Vec<RoutePlan> {
            let mut plans = OneRoute.routes(labels);
            plans[0].fallback = Some(crate::notify::dispatch::Fallback {
                receiver: "phone".into(),
                after: Duration::ZERO,
            });
            plans
        }
    }

    // A receiver that keeps failing hands the group's notification to the route's fallback
    // receiver, once: the primary's failure at every later flush does not repeat it there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_receiver_falls_back_once_to_the_fallback_receiver() {
        let (team, tried) = receiver(usize::MAX).await;
        let (phone, got) = receiver(0).await;
        let hook = |url: String| {
            vec![Integration::Webhook(Webhook {
                url,
                auth: WebhookAuth::None,
                timeout: Duration::from_secs(5),
                max_alerts: 0,
                send_resolved: true,
            })]
        };
        let routing = Routing {
            router: Arc::new(FallbackRoute),
            muter: Arc::new(NoMute),
            receivers: [
                ("team".to_string(), hook(team)),
                ("phone".to_string(), hook(phone)),
            ]
            .into_iter()
            .collect(),
        };
        let t = Telemetry::new();
        let notifier = Arc::new(Notifier::new(
            routing,
            reqwest::Client::new(),
            t.clone(),
            "http://sentinel".into(),
            None,
        ));
        let (alerts_tx, alerts_rx) = watch::channel(Arc::new(Vec::new()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(notifier.run(alerts_rx, stop_rx));
        alerts_tx
            .send(Arc::new(vec![Arc::new(alert(false))]))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let bodies = got.lock().unwrap().clone();
        assert_eq!(bodies.len(), 1, "{bodies:#?}");
        assert_eq!(bodies[0]["receiver"], "phone");
        assert_eq!(bodies[0]["status"], "firing");
        assert!(tried.lock().unwrap().is_empty(), "team never accepted one");
        assert!(
            t.counter(
                names::NOTIFICATIONS_FAILED,
                &[("integration", "webhook"), ("reason", "server_error")]
            )
            .get()
                >= 3.0,
            "the primary kept being tried"
        );
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }

    // A 429 with `Retry-After: 2` holds the receiver for 2s, across flushes (here every 300ms):
    // the second request comes no earlier, and there is no third.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_429_with_retry_after_waits_as_told_across_flushes() {
        let (url, _, times) = receiver_with(|n| {
            if n == 1 {
                "429 Too Many Requests"
            } else {
                "200 OK"
            }
        })
        .await;
        let t = Telemetry::new();
        let notifier = notifier_to(url, &t);
        let (alerts_tx, alerts_rx) = watch::channel(Arc::new(Vec::new()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(notifier.run(alerts_rx, stop_rx));
        alerts_tx
            .send(Arc::new(vec![Arc::new(alert(false))]))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let times = times.lock().unwrap().clone();
        assert_eq!(times.len(), 2, "one 429, then one delivery");
        let waited = times[1] - times[0];
        assert!(
            waited >= Duration::from_millis(1950) && waited < Duration::from_millis(2800),
            "waited {waited:?}"
        );
        assert_eq!(
            t.counter(names::NOTIFICATIONS, &[("integration", "webhook")])
                .get(),
            1.0
        );
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }

    // A full disk: the outbox row cannot be written, the failure is reported (the data dir's
    // error counter), and the notification goes out from memory all the same, once; when the
    // disk recovers, the writer's retry commits what was queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_is_reported_and_notifications_go_out_from_memory() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let dir = std::env::temp_dir().join(format!(
            "ocx-notify-full-disk-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let (mut dd, _) = crate::datadir::DataDir::open(&dir).unwrap();
        let full = Arc::new(AtomicBool::new(true));
        dd.fail_when(full.clone());
        let failures = Arc::new(AtomicUsize::new(0));
        let seen = failures.clone();
        let writer = crate::datadir::start_writer(
            dd,
            Arc::new(move |e| {
                if let crate::datadir::WriterEvent::Failed { .. } = e {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
            }),
        )
        .unwrap();
        let (url, got) = receiver(0).await;
        let t = Telemetry::new();
        let plain = notifier_to(url, &t);
        let notifier = Arc::new(Notifier::new(
            Routing {
                router: Arc::new(OneRoute),
                muter: Arc::new(NoMute),
                receivers: plain.routing().receivers.clone(),
            },
            reqwest::Client::new(),
            t.clone(),
            "http://sentinel".into(),
            Some(writer.clone()),
        ));
        let (alerts_tx, alerts_rx) = watch::channel(Arc::new(Vec::new()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(notifier.run(alerts_rx, stop_rx));
        alerts_tx
            .send(Arc::new(vec![Arc::new(alert(false))]))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(got.lock().unwrap().len(), 1, "sent from memory");
        assert!(
            failures.load(Ordering::SeqCst) >= 1,
            "the failure was reported"
        );
        full.store(false, Ordering::SeqCst);
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        writer.stop(Duration::from_secs(5));
        assert_eq!(got.lock().unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
