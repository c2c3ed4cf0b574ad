//! The rule engine's task: read the rule files, evaluate right after account changes (coalesced) and on each group's timer, reload on request, log alert transitions.
//!
//! Evaluation is event-driven so an alert is known within milliseconds of the fill behind it,
//! yet bounded: while events keep arriving, evaluations are spaced so that they take at most
//! [`MAX_DUTY`] of one core; changes that arrive meanwhile are folded into the next one.
//! A pass after a change evaluates only the rules that read a series the change moved (the
//! account's families, and what rules record from them; `Engine::evaluate_changes`); every group
//! is still evaluated whole on its own timer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};

use super::alert::{AlertState, Transition};
use super::engine::{Engine, Pass};
use super::file::{self, RuleFile, RuleFileError};
use super::group::AlertTransition;
use super::persist::{self, StoredAlert, Written};
use crate::clock::unix_ms;
use crate::datadir::{Row, WriterHandle};
use crate::notify::dispatch::Notifiable;
use crate::telemetry::{Gauge, Telemetry, names};
use crate::traces::log::in_span;
use crate::traces::{TraceIds, TraceSpan, Traces, ids_of};
use opentelemetry::trace::{SpanContext, SpanKind};
use std::collections::HashMap;

/// The largest share of one core that evaluations after changes may take under a sustained
/// stream of events; isolated events are evaluated at once.
pub const MAX_DUTY: f64 = 0.1;

/// After restoring alerts, the first evaluation waits (at most this long) until every account
/// has applied its first snapshot: evaluated on an empty store, every restored alert would
/// resolve (and notify) and fire again moments later with its `for` clock reset.
pub const RESTORE_HOLD: Duration = Duration::from_secs(30);
/// The data-dir row kind and id of the time of the latest evaluation, for the downtime.
const CLOCK_KIND: &str = "alert_clock";
const CLOCK_ID: &str = "last_eval_ms";
/// That time is written at most this often: the downtime is known to within it.
const CLOCK_EVERY: Duration = Duration::from_secs(10);
/// Alert states are compared with the last written ones after every pass with a transition, and
/// at least this often (a `keep_firing_for` clock starting, resolved alerts ageing out).
const DIFF_EVERY: Duration = Duration::from_secs(60);

/// The data dir's side of the runner: where alert states go and what was last written.
struct Persist {
    writer: WriterHandle,
    written: Written,
    last_diff: Instant,
    last_clock: Option<Instant>,
}

/// Where rule files come from.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleSource {
    /// Paths or glob patterns, read again on each reload. A pattern that matches nothing loads
    /// nothing (as in Prometheus); a plain path that does not exist is an error.
    Paths(Vec<PathBuf>),
    /// Files compiled into the binary (`demo`'s shipped rules): `(name, text)`.
    Embedded(Vec<(String, &'static str)>),
}

impl Default for RuleSource {
    fn default() -> Self {
        RuleSource::Paths(Vec::new())
    }
}

/// Why the rule files could not be loaded; the loaded rules (if any) stay in place.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{pattern}: invalid glob pattern: {message}")]
    Pattern { pattern: String, message: String },
    #[error("{path}: no such rule file")]
    Missing { path: String },
    #[error(transparent)]
    File(#[from] RuleFileError),
    #[error("{count} rule files have errors:\n{all}")]
    Many { count: usize, all: String },
}

/// Expand `patterns` into files, sorted within each pattern and without repeats.
pub fn expand(patterns: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in patterns {
        let text = p.to_string_lossy();
        let is_glob = text.contains(['*', '?', '[']);
        if !is_glob {
            if !p.exists() {
                return Err(LoadError::Missing {
                    path: text.into_owned(),
                });
            }
            if !out.contains(p) {
                out.push(p.clone());
            }
            continue;
        }
        let paths = glob::glob(&text).map_err(|e| LoadError::Pattern {
            pattern: text.to_string(),
            message: e.to_string(),
        })?;
        let mut matched: Vec<PathBuf> = paths
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        matched.sort();
        for m in matched {
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    Ok(out)
}

/// Read, parse and validate every rule file of `source`; all errors are reported at once.
pub fn load(source: &RuleSource) -> Result<Vec<RuleFile>, LoadError> {
    let loaded: Vec<Result<RuleFile, RuleFileError>> = match source {
        RuleSource::Paths(patterns) => expand(patterns)?
            .iter()
            .map(|p| file::load_file(p))
            .collect(),
        RuleSource::Embedded(files) => files
            .iter()
            .map(|(name, text)| file::parse_str(text, name))
            .collect(),
    };
    let (ok, errors): (Vec<_>, Vec<_>) = loaded.into_iter().partition(Result::is_ok);
    let mut errors: Vec<RuleFileError> = errors.into_iter().filter_map(Result::err).collect();
    match errors.len() {
        0 => Ok(ok.into_iter().filter_map(Result::ok).collect()),
        1 => Err(LoadError::File(errors.remove(0))),
        count => Err(LoadError::Many {
            count,
            all: errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }),
    }
}

/// What a successful (re)load loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub files: usize,
    pub groups: usize,
    pub rules: usize,
}

type ReloadReply = oneshot::Sender<Result<Loaded, String>>;

/// Something reloaded together with the rule files; its error text is the reload's.
pub type ReloadHook = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The handle the HTTP API, the signal handler and tests hold.
#[derive(Clone)]
pub struct RulesHandle {
    engine: Arc<Mutex<Engine>>,
    reload: mpsc::Sender<ReloadReply>,
    alerts: watch::Receiver<u64>,
    notifiable: watch::Receiver<Notifiable>,
}

impl std::fmt::Debug for RulesHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesHandle").finish_non_exhaustive()
    }
}

impl RulesHandle {
    /// Read access to the engine (the API renders from it). Evaluations hold the lock for as
    /// long as they take (a few hundred µs for the shipped rules over a few markets, tens of ms
    /// for 100 rules over 200 markets), so a reader may wait that long.
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        lock(&self.engine)
    }

    /// Reload the rule files; the answer says what was loaded or why nothing changed.
    pub async fn reload(&self) -> Result<Loaded, String> {
        let (tx, rx) = oneshot::channel();
        self.reload
            .send(tx)
            .await
            .map_err(|_| "the rule engine is not running".to_string())?;
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the rule engine stopped during the reload".into()),
            Err(_) => Err("the reload did not finish within 30s".into()),
        }
    }

    /// Bumped after every evaluation that changed an alert's state.
    pub fn alert_changes(&self) -> watch::Receiver<u64> {
        self.alerts.clone()
    }

    /// The firing and resolved alerts, published after every evaluation that fired or resolved
    /// one: what the notifier consumes.
    pub fn notifiable(&self) -> watch::Receiver<Notifiable> {
        self.notifiable.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // An evaluation that panicked leaves at worst one group half-evaluated, which the next
    // evaluation completes: the engine stays usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything the task needs; built once, shared by its restarts.
pub struct Runner {
    engine: Arc<Mutex<Engine>>,
    source: RuleSource,
    reload_rx: tokio::sync::Mutex<mpsc::Receiver<ReloadReply>>,
    alerts_tx: watch::Sender<u64>,
    notifiable_tx: watch::Sender<Notifiable>,
    reload_ok: Gauge,
    reload_ts: Gauge,
    /// Zero of the timer clock (`tick_ms`): monotonic, so wall-clock steps move no timer.
    started: Instant,
    persist: Mutex<Option<Persist>>,
    /// What else a reload reloads (the notification routing): run after the rule files loaded;
    /// its error fails the reload, and whatever it reloads keeps its previous state.
    also: Mutex<Option<ReloadHook>>,
    /// Alerts restored from the data dir: the first evaluation waits for the accounts.
    restored: std::sync::atomic::AtomicUsize,
    /// Spans for change passes and alert transitions (off unless [`Runner::trace_with`]).
    traces: std::sync::OnceLock<Traces>,
    /// Per alert (fingerprint): the span of the traced event that made it fire or resolve, put
    /// on its notifiable entry so notifications link to it.
    triggers: Mutex<HashMap<u64, TraceIds>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// Load `source` once (an error here is a startup error) and build the engine.
    pub fn start(
        telemetry: &Telemetry,
        source: RuleSource,
        default_interval: Duration,
        external_url: &str,
    ) -> Result<(Arc<Runner>, RulesHandle), LoadError> {
        let files = load(&source)?;
        let mut engine = Engine::new(telemetry, default_interval, external_url);
        engine.set_clock(|| Instant::now().into_std());
        engine.load(files, 0);
        let (reload_tx, reload_rx) = mpsc::channel(8);
        let (alerts_tx, alerts) = watch::channel(0);
        let (notifiable_tx, notifiable) = watch::channel(Arc::new(engine.notifiable(None)));
        let runner = Runner {
            engine: Arc::new(Mutex::new(engine)),
            source,
            reload_rx: tokio::sync::Mutex::new(reload_rx),
            alerts_tx,
            notifiable_tx,
            reload_ok: telemetry.gauge(names::CONFIG_RELOAD_SUCCESSFUL, &[]),
            reload_ts: telemetry.gauge(names::CONFIG_RELOAD_SUCCESS_TIMESTAMP, &[]),
            started: Instant::now(),
            persist: Mutex::new(None),
            also: Mutex::new(None),
            restored: std::sync::atomic::AtomicUsize::new(0),
            traces: std::sync::OnceLock::new(),
            triggers: Mutex::new(HashMap::new()),
        };
        runner.reload_ok.set(1.0);
        runner.reload_ts.set(unix_ms() as f64 / 1000.0);
        let handle = RulesHandle {
            engine: runner.engine.clone(),
            reload: reload_tx,
            alerts,
            notifiable,
        };
        Ok((Arc::new(runner), handle))
    }

    /// Records a `rules.evaluate` span for each pass that follows a traced event, with an
    /// `alert.transition` child per alert that changed state. Set once, before `run`.
    pub fn trace_with(&self, traces: Traces) {
        let _ = self.traces.set(traces);
    }

    fn traces(&self) -> Option<&Traces> {
        self.traces.get().filter(|t| t.is_on())
    }

    /// The engine's notifiable alerts, each with the span that made it fire or resolve; the
    /// links of alerts no longer listed are forgotten.
    fn notifiable_of(&self, engine: &Engine) -> Notifiable {
        if self.traces().is_none() {
            return Arc::new(engine.notifiable(None));
        }
        let mut triggers = lock(&self.triggers);
        let out = engine.notifiable(Some(&triggers));
        if !triggers.is_empty() {
            let seen: std::collections::HashSet<u64> =
                out.iter().map(|a| a.fingerprint()).collect();
            triggers.retain(|fp, _| seen.contains(fp));
        }
        Arc::new(out)
    }

    /// Also reload `hook` with the rules (see [`ReloadHook`]).
    pub fn also_reload(&self, hook: ReloadHook) {
        *lock(&self.also) = Some(hook);
    }

    fn reload(&self) -> Result<Loaded, String> {
        let rules = self.reload_rules();
        let also = lock(&self.also).as_ref().map(|hook| hook());
        match (rules, also) {
            (Err(e), _) => Err(e),
            (Ok(_), Some(Err(e))) => {
                self.reload_ok.set(0.0);
                tracing::error!(error = %e, "alerting configuration not reloaded: the previous one stays in force");
                Err(e)
            }
            (Ok(loaded), _) => Ok(loaded),
        }
    }

    fn reload_rules(&self) -> Result<Loaded, String> {
        match load(&self.source) {
            Ok(files) => {
                let loaded = Loaded {
                    files: files.len(),
                    groups: files.iter().map(|f| f.groups.len()).sum(),
                    rules: files
                        .iter()
                        .flat_map(|f| &f.groups)
                        .map(|g| g.rules.len())
                        .sum(),
                };
                lock(&self.engine).load(files, self.tick_ms());
                self.reload_ok.set(1.0);
                self.reload_ts.set(unix_ms() as f64 / 1000.0);
                tracing::info!(
                    files = loaded.files,
                    groups = loaded.groups,
                    rules = loaded.rules,
                    "rule files reloaded"
                );
                Ok(loaded)
            }
            Err(e) => {
                self.reload_ok.set(0.0);
                tracing::error!(error = %e, "rule files not reloaded: the previous rules keep running");
                Err(e.to_string())
            }
        }
    }

    /// Restore the alert states a previous process left in the data dir (`rows` of kind
    /// [`persist::KIND`], `clock` of its latest evaluation) and write changes there from now on.
    /// A pending alert's `for` clock does not count the downtime (its `activeAt` moves forward
    /// by it), as Prometheus restores `for` state; firing alerts stay firing, so the notification
    /// log decides whether they are sent again; resolved ones still retained keep their resolve
    /// to be notified. Returns (restored, rows that could not be read).
    pub fn restore(
        &self,
        writer: WriterHandle,
        rows: &[(String, String)],
        clock: &[(String, String)],
    ) -> (usize, u64) {
        let (mut stored, bad) = persist::decode(rows);
        let now = unix_ms();
        let last_eval = clock
            .iter()
            .find(|(id, _)| id == CLOCK_ID)
            .and_then(|(_, v)| v.parse::<i64>().ok());
        if let Some(last) = last_eval {
            let downtime = (now - last).max(0);
            for a in stored
                .iter_mut()
                .filter(|a| a.state == AlertState::Pending.as_str())
            {
                a.active_at_ms = a.active_at_ms.saturating_add(downtime);
            }
        }
        let n = {
            let mut engine = lock(&self.engine);
            let n = engine.restore(&stored);
            self.notifiable_tx.send_replace(self.notifiable_of(&engine));
            n
        };
        if n > 0 {
            self.alerts_tx.send_modify(|v| *v = v.wrapping_add(1));
        }
        self.restored.store(n, std::sync::atomic::Ordering::Relaxed);
        *lock(&self.persist) = Some(Persist {
            writer,
            written: Written::from_restored(&stored),
            last_diff: Instant::now(),
            last_clock: None,
        });
        (n, bad)
    }

    /// Writes what changed in the alert states (after a pass with transitions, or now and then),
    /// and the evaluation clock. Fire and forget: a failed commit is retried by the writer, and
    /// the states stay live here.
    fn persist(&self, engine: &Engine, transitions: &[AlertTransition]) {
        let mut guard = lock(&self.persist);
        let Some(p) = guard.as_mut() else { return };
        let now = Instant::now();
        let mut rows: Vec<Row> = Vec::new();
        if now.duration_since(p.last_diff) >= DIFF_EVERY {
            p.last_diff = now;
            let stored: Vec<StoredAlert> = engine.stored_alerts();
            rows = p.written.diff(stored);
        } else if !transitions.is_empty() {
            // Only what the transitions name; the minute's full comparison catches the rest (a
            // `keep_firing_for` clock starting, resolved alerts ageing out).
            let (held, gone) = engine.stored_alerts_for(transitions);
            rows = p.written.diff_some(held, gone);
        }
        if p.last_clock
            .is_none_or(|t| now.duration_since(t) >= CLOCK_EVERY)
            || !rows.is_empty()
        {
            p.last_clock = Some(now);
            rows.push(Row {
                kind: CLOCK_KIND,
                id: CLOCK_ID.into(),
                value: Some(unix_ms().to_string()),
            });
        }
        if !rows.is_empty() {
            p.writer.put(rows, Box::new(|_| {}));
        }
    }

    /// Rows kinds this runner reads back with [`Runner::restore`].
    pub const ROW_KINDS: (&'static str, &'static str) = (persist::KIND, CLOCK_KIND);

    fn tick_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// One pass: after a change (the rules that read what changed), or on the timer (the groups
    /// due, or the rest of a timer pass that stopped for a change), which stops between two
    /// rules when `stop` says so.
    fn evaluate(&self, after_change: bool, stop: &dyn Fn() -> bool) -> Pass {
        // A change pass after a traced event is that event's child; timer passes are not
        // traced (no event behind them). The event is the latest one applied by the end of the
        // pass: the pass reads the series as it goes, so an event applied while it ran is what
        // its transitions saw (taken at the start, a breach that arrived meanwhile was pinned on
        // the event before).
        let started = (after_change && self.traces().is_some()).then(std::time::SystemTime::now);
        let mut pass_span: Option<SpanContext> = None;
        // The states are queued on the writer before the notifier hears of them: its outbox row,
        // which a notification waits for before it is sent, then commits with them or after
        // them (one writer, in order). A receiver told "firing" can count on the restarted
        // process knowing the alert, so it is told "resolved" too; queued after the outbox row,
        // a kill between the two commits left the firing alert unknown after the restart (seen
        // once in CI: the redelivered firing notification, never its resolve).
        //
        // Each group that fires or resolves an alert publishes as it ends (Prometheus sends an
        // alerting rule's alerts right after that rule, sooner still): a breach does not wait
        // for the groups evaluated after it (with 100 rules over 200 markets, milliseconds).
        // Per group, not per rule: an alert fired by the same event as an alert of its group
        // that inhibits it reaches the notifier with it, and is held rather than sent first
        // (with `group_wait: 0s`); per rule bought no measurable time.
        let pass = {
            let mut engine = lock(&self.engine);
            let mut on_group = |engine: &Engine, ts: &[AlertTransition]| {
                self.persist(engine, ts);
                if ts.iter().any(fires_or_resolves) {
                    self.publish(engine, ts);
                } else if ts
                    .iter()
                    .any(|t| t.transition != Transition::PendingCleared)
                {
                    // A new pending alert: nothing for the notifier, news for the API's readers.
                    self.alerts_tx.send_modify(|v| *v = v.wrapping_add(1));
                }
            };
            let pass = if after_change {
                engine.evaluate_changes_with(unix_ms(), &mut on_group)
            } else {
                engine.evaluate_preemptible(
                    unix_ms(),
                    self.tick_ms(),
                    true,
                    stop,
                    Some(&mut on_group),
                )
            };
            if let (Some(start), Some(t)) = (started, self.traces())
                && let Some(event) = t.recent()
            {
                let mut span = t.span_since(
                    "rules.evaluate",
                    SpanKind::Internal,
                    Some(&event),
                    &[],
                    Some(start),
                );
                self.trace_pass(&mut span, &pass);
                pass_span = span.context();
            }
            // The clock row, and every minute the full comparison (see `persist`).
            self.persist(&engine, &[]);
            // A timer pass evaluates its rules whole, after which the next snapshot compares
            // every alert they hold with its entry (~3.5 µs each: a millisecond with a few
            // hundred held). Done here, the next breach's publication rebuilds only what its
            // own pass visited; left to it, the first breach after each tick paid for the tick.
            // Not when the pass stopped for a change: that change is waiting. The snapshot is
            // built as a publication would build it, and not published: the notifier hears of
            // alerts when they fire or resolve, not of every evaluation.
            if !after_change && pass.rules > 0 && !pass.stopped {
                drop(self.notifiable_of(&engine));
            }
            pass
        };
        // The pass's log lines (alerts firing, rules failing) carry its span's ids.
        in_span(pass_span.as_ref(), || log_pass(&pass));
        pass
    }

    /// [`Runner::evaluate`] without holding a runtime worker's queue: on a multi-threaded
    /// runtime the worker's other tasks move to another thread first. A pass is synchronous CPU
    /// work (up to tens of ms); on a worker, each task it wakes (the notifier, told of an alert
    /// it published) waits in that worker's LIFO slot, which other workers do not steal, until
    /// the pass ends.
    fn evaluate_off_worker(&self, after_change: bool, stop: &dyn Fn() -> bool) -> Pass {
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi {
            tokio::task::block_in_place(|| self.evaluate(after_change, stop))
        } else {
            self.evaluate(after_change, stop)
        }
    }

    /// Hands the notifier the alerts as they are now (after `transitions`, which fired or
    /// resolved some), each alert that fired or resolved linked to the traced event behind it,
    /// and wakes whoever waits for alert changes.
    fn publish(&self, engine: &Engine, transitions: &[AlertTransition]) {
        self.note_triggers(transitions);
        self.notifiable_tx.send_replace(self.notifiable_of(engine));
        // Notifications first, so whoever wakes on `alerts_tx` finds them published.
        self.alerts_tx.send_modify(|v| *v = v.wrapping_add(1));
        // Let whoever that woke (the notifier) have this CPU now if the kernel queued it here:
        // otherwise it often waited for the rest of the pass (1–3 ms with 100 rules over 200
        // markets) while the other core was busy or slow to wake. Measured: the p90 from a
        // breach to a woken waiter went from 3.3 ms to 1.6 ms (see the README's Benchmark).
        std::thread::yield_now();
    }

    /// The latest traced event as the trigger of each alert `transitions` fired or resolved.
    fn note_triggers(&self, transitions: &[AlertTransition]) {
        let Some(link) = self
            .traces()
            .and_then(|t| t.recent())
            .and_then(|e| ids_of(&e))
        else {
            return;
        };
        let mut triggers = lock(&self.triggers);
        for t in transitions.iter().filter(|t| fires_or_resolves(t)) {
            let labels: crate::notify::dispatch::LabelSet = t
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            triggers.insert(crate::notify::dispatch::fingerprint(&labels), link);
        }
    }

    /// The pass's attributes and an `alert.transition` span per transition.
    fn trace_pass(&self, span: &mut TraceSpan, pass: &Pass) {
        span.set("ocx.rules.evaluated", pass.rules as i64);
        span.set("ocx.rules.scoped", pass.scoped as i64);
        span.set("ocx.alerts.transitions", pass.transitions.len() as i64);
        if !pass.failures.is_empty() {
            span.error(format!("{} rules failed", pass.failures.len()));
        }
        let (Some(traces), Some(parent)) = (self.traces(), span.context()) else {
            return;
        };
        for t in &pass.transitions {
            let mut s = traces.span("alert.transition", SpanKind::Internal, Some(&parent), &[]);
            let state = match t.transition {
                Transition::Pending => "pending",
                Transition::Firing => "firing",
                Transition::Resolved => "resolved",
                Transition::PendingCleared => "inactive",
            };
            s.set("ocx.alert.name", t.rule.clone());
            s.set("ocx.alert.state", state);
            s.set("ocx.alert.labels", t.labels.to_string());
        }
    }

    /// Run until `shutdown` turns true. `changes` are the accounts' epochs.
    ///
    /// A change is evaluated at once when the duty bound allows, even in the middle of a timer
    /// pass: the timer pass stops before its next rule or gives up the one in progress, the change
    /// pass runs, and the timer pass goes on. Otherwise a breach arriving during a full timer pass (tens of ms with hundreds
    /// of markets) waited for all of it.
    pub async fn run(
        self: Arc<Self>,
        mut changes: Vec<watch::Receiver<u64>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut reload_rx = self.reload_rx.lock().await;
        if self.restored.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            let ready = async {
                for c in &mut changes {
                    let _ = c.wait_for(|epoch| *epoch > 0).await;
                }
            };
            if tokio::time::timeout(RESTORE_HOLD, ready).await.is_err() {
                tracing::warn!(
                    "restored alerts: not every account applied a snapshot within {RESTORE_HOLD:?}; evaluating anyway"
                );
            }
        }
        // Where the next change-driven evaluation may start (the duty-cycle bound).
        let mut not_before = Instant::now();
        // A change seen (its notification consumed) but not evaluated yet.
        let mut pending = false;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let in_tick = lock(&self.engine).tick_in_progress();
            if in_tick {
                pending |= any_unseen(&changes);
                if !(pending && Instant::now() >= not_before) {
                    // Go on with the timer pass; it stops again for a change once the duty
                    // bound allows one.
                    self.evaluate_off_worker(false, &|| change_due(&changes, pending, not_before));
                    continue;
                }
            }
            if pending {
                pending = false;
                tokio::time::sleep_until(not_before).await;
                // Everything up to here is covered by this evaluation.
                for c in &mut changes {
                    c.borrow_and_update();
                }
                let started = Instant::now();
                let pass = self.evaluate_off_worker(true, &|| false);
                let spent = Duration::from_secs_f64(pass.seconds);
                not_before = started + spent.mul_f64(1.0 / MAX_DUTY - 1.0) + spent;
                continue;
            }
            let next_due = lock(&self.engine).next_due_ms();
            let timer = async {
                match next_due {
                    Some(due) => {
                        let due = Duration::from_millis(due.max(0).unsigned_abs());
                        tokio::time::sleep_until(self.started + due).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
                req = reload_rx.recv() => {
                    let Some(reply) = req else { continue };
                    let _ = reply.send(self.reload());
                }
                () = any_changed(&mut changes) => pending = true,
                () = timer => {
                    self.evaluate_off_worker(false, &|| change_due(&changes, false, not_before));
                }
            }
        }
    }
}

fn fires_or_resolves(t: &AlertTransition) -> bool {
    matches!(t.transition, Transition::Firing | Transition::Resolved)
}

/// Whether any account's epoch moved since it was last seen.
fn any_unseen(changes: &[watch::Receiver<u64>]) -> bool {
    changes.iter().any(|c| c.has_changed().unwrap_or(false))
}

/// Whether a change (seen before, `pending`, or not yet) waits for a pass that the duty bound
/// allows now: a timer pass stops for it.
fn change_due(changes: &[watch::Receiver<u64>], pending: bool, not_before: Instant) -> bool {
    Instant::now() >= not_before && (pending || any_unseen(changes))
}

/// Resolves when any receiver sees a new value; receivers whose account is gone are dropped.
async fn any_changed(changes: &mut Vec<watch::Receiver<u64>>) {
    loop {
        if changes.is_empty() {
            return std::future::pending().await;
        }
        let (res, i, _) =
            futures::future::select_all(changes.iter_mut().map(|c| Box::pin(c.changed()))).await;
        match res {
            Ok(()) => return,
            Err(_) => {
                changes.swap_remove(i);
            }
        }
    }
}

fn log_pass(pass: &Pass) {
    for t in &pass.transitions {
        let labels = t.labels.to_string();
        match t.transition {
            Transition::Pending => {
                tracing::info!(alertname = %t.rule, labels = %labels, "alert pending");
            }
            Transition::Firing => {
                tracing::warn!(alertname = %t.rule, labels = %labels, "alert firing");
            }
            Transition::Resolved => {
                tracing::info!(alertname = %t.rule, labels = %labels, "alert resolved");
            }
            Transition::PendingCleared => {
                tracing::debug!(alertname = %t.rule, labels = %labels, "pending alert cleared before firing");
            }
        }
    }
    for f in &pass.failures {
        tracing::warn!(group = %f.group, rule = %f.rule, error = %f.error, "rule evaluation failed (logged again only when the error changes)");
    }
    for (group, rule) in &pass.recovered {
        tracing::info!(%group, %rule, "rule evaluation recovered");
    }
}

/// Resolve rule-file patterns from a config file relative to the file's directory, as
/// Prometheus does; absolute patterns stay.
pub fn relative_to(config: &Path, pattern: &str) -> PathBuf {
    let p = Path::new(pattern);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match config.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const GOOD: &str = "groups: [{name: g, rules: [{alert: A, expr: vector(1)}]}]\n";

    #[test]
    fn globs_expand_sorted_and_plain_paths_must_exist() {
        let dir = tempdir("expand");
        write(&dir, "b.yml", GOOD);
        write(&dir, "a.yml", GOOD);
        write(&dir, "c.txt", GOOD);
        let got = expand(&[dir.join("*.yml"), dir.join("a.yml")]).unwrap();
        assert_eq!(got, vec![dir.join("a.yml"), dir.join("b.yml")]);
        assert!(expand(&[dir.join("none-*.yml")]).unwrap().is_empty());
        let e = expand(&[dir.join("missing.yml")]).unwrap_err();
        assert!(
            e.to_string().ends_with("missing.yml: no such rule file"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_broken_file_is_reported_at_once() {
        let dir = tempdir("broken");
        write(
            &dir,
            "a.yml",
            "groups: [{name: g, rules: [{alert: A, expr: 'sum(('}]}]\n",
        );
        write(
            &dir,
            "b.yml",
            "groups: [{name: g, rules: [{alert: B, expr: 'vector(1)', for: 'x'}]}]\n",
        );
        write(&dir, "c.yml", GOOD);
        let e = load(&RuleSource::Paths(vec![dir.join("*.yml")])).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("2 rule files have errors:"), "{text}");
        assert!(text.contains("a.yml:1:"), "{text}");
        assert!(text.contains("b.yml:1:"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn config_patterns_are_relative_to_the_config_file() {
        assert_eq!(
            relative_to(Path::new("/etc/ocx/sentinel.yml"), "rules/*.yml"),
            PathBuf::from("/etc/ocx/rules/*.yml")
        );
        assert_eq!(
            relative_to(Path::new("sentinel.yml"), "rules/*.yml"),
            PathBuf::from("rules/*.yml")
        );
        assert_eq!(
            relative_to(Path::new("/etc/x.yml"), "/opt/r.yml"),
            PathBuf::from("/opt/r.yml")
        );
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ocx-sentinel-runner-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The alert a pass's first group fires reaches a task waiting for it while the rest of the
    /// pass still runs: the evaluation does not hold the runtime worker that task is queued on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_published_alert_reaches_its_reader_before_the_pass_ends() {
        let dir = tempdir("worker");
        let mut text = String::from(
            "groups:\n  - name: first\n    rules: [{alert: Big, expr: 'ocx_position_quantity > 5'}]\n  - name: slow\n    rules:\n",
        );
        for i in 0..2000 {
            text.push_str(&format!(
                "      - record: slow:q{i}\n        expr: ocx_position_quantity * {i}\n"
            ));
        }
        let path = write(&dir, "r.yml", &text);
        let t = Telemetry::new();
        let (runner, handle) = Runner::start(
            &t,
            RuleSource::Paths(vec![path]),
            Duration::from_secs(3600),
            "",
        )
        .unwrap();
        let q = t.gauge(
            names::POSITION_QUANTITY,
            &[("account", "a"), ("market", "M")],
        );
        q.set(1.0);
        let (epoch_tx, epoch_rx) = watch::channel(0u64);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(runner.run(vec![epoch_rx], stop_rx));
        // The first (timer) pass, over every rule, is over once it has timed itself.
        let deadline = Instant::now() + Duration::from_secs(60);
        while handle.engine().last_pass_seconds() == 0.0 {
            assert!(Instant::now() < deadline, "no first pass");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let mut notifiable = handle.notifiable();
        notifiable.borrow_and_update();
        let reader = tokio::spawn(async move {
            notifiable.changed().await.unwrap();
            Instant::now()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.set(6.0);
        epoch_tx.send_modify(|e| *e += 1);
        let woke = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .unwrap()
            .unwrap();
        // The engine's lock is free once the pass is over.
        let (ended, pass) = {
            let engine = handle.engine();
            (Instant::now(), engine.last_pass_seconds())
        };
        assert!(pass > 0.005, "the slow group makes a long pass ({pass}s)");
        let waited = ended.duration_since(woke).as_secs_f64();
        assert!(
            waited > pass / 4.0,
            "the reader woke {waited}s before a {pass}s pass ended: it waited for the pass"
        );
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .unwrap()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The task itself: a change is evaluated at once, the timer runs, a bad reload keeps the
    /// rules and says why, shutdown ends it.
    #[tokio::test]
    async fn the_task_evaluates_on_change_and_on_reload_keeps_old_rules_when_broken() {
        let dir = tempdir("task");
        let path = write(
            &dir,
            "r.yml",
            "groups: [{name: g, rules: [{alert: Big, expr: 'ocx_position_quantity > 5'}]}]\n",
        );
        let t = Telemetry::new();
        let (runner, handle) = Runner::start(
            &t,
            RuleSource::Paths(vec![path.clone()]),
            Duration::from_secs(3600),
            "",
        )
        .unwrap();
        let (epoch_tx, epoch_rx) = watch::channel(0u64);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(runner.run(vec![epoch_rx], stop_rx));
        let mut alerts = handle.alert_changes();
        let q = t.gauge(
            names::POSITION_QUANTITY,
            &[("account", "a"), ("market", "M")],
        );
        q.set(6.0);
        epoch_tx.send_modify(|e| *e += 1);
        tokio::time::timeout(Duration::from_secs(5), alerts.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(handle.engine().alerts().count(), 1);

        std::fs::write(
            &path,
            "groups: [{name: g, rules: [{alert: Big, expr: 'sum(('}]}]\n",
        )
        .unwrap();
        let e = handle.reload().await.unwrap_err();
        assert!(e.contains("r.yml:1:"), "{e}");
        assert_eq!(t.gauge(names::CONFIG_RELOAD_SUCCESSFUL, &[]).get(), 0.0);
        assert_eq!(
            handle.engine().alerts().count(),
            1,
            "the old rule still holds its alert"
        );

        std::fs::write(&path, "groups: [{name: g, rules: [{alert: Big, expr: 'ocx_position_quantity > 5'}, {alert: Huge, expr: 'ocx_position_quantity > 100'}]}]\n").unwrap();
        let loaded = handle.reload().await.unwrap();
        assert_eq!(
            loaded,
            Loaded {
                files: 1,
                groups: 1,
                rules: 2
            }
        );
        assert_eq!(t.gauge(names::CONFIG_RELOAD_SUCCESSFUL, &[]).get(), 1.0);

        q.set(1.0);
        epoch_tx.send_modify(|e| *e += 1);
        tokio::time::timeout(Duration::from_secs(5), alerts.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            handle
                .engine()
                .alerts()
                .filter(|(_, a)| a.state != crate::rules::alert::AlertState::Inactive)
                .count(),
            0
        );
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
