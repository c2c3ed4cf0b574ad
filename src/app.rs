//! Wiring: build the streams, state and HTTP server from validated settings, run them under supervision, and stop them cleanly.

use std::collections::HashMap;
use std::net::SocketAddr;
#[cfg(feature = "sim")]
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::account::{AccountCell, SharedAccount};
#[cfg(feature = "sim")]
use crate::config::WebSettings;
use crate::config::{AccountSettings, AlertingSource, Settings, StreamSettings};
#[cfg(feature = "sim")]
use crate::config::{Auth, ReconcileSettings, RuleSettings};
use crate::datadir::{DataDir, DataDirError, Opened, WriterEvent, WriterHandle, start_writer};
use crate::notify;
use crate::notify::amapi::AmApi;
use crate::notify::config::AlertingConfig;
use crate::notify::config::AmConfigError;
use crate::notify::forward::{ForwardError, Forwarder};
use crate::notify::listing::LiveAlerts;
use crate::notify::pipeline::{Integration, Notifier, Routing};
use crate::notify::silence::Silences;
use crate::notify::wire::{self, ConfigMuter, ConfigRouter, Unsupported};
use crate::reconcile::{self, ReconcileTask};
#[cfg(feature = "sim")]
use crate::rules::runner::RuleSource;
use crate::rules::runner::{LoadError, RulesHandle, Runner};
use crate::server::{self, AppState, StreamStatus};
#[cfg(feature = "sim")]
use crate::sim::{self, RunningSim, SimConfig};
use crate::source::session::StreamKind;
use crate::source::{self, StreamTask};
use crate::state::Account;
use crate::state::durable::DurableImage;
use crate::supervise::{RestartPolicy, supervise};
use crate::telemetry::{Telemetry, names};
use crate::traces::Traces;
use crate::web::WebState;

/// `demo`'s routing: every alert, grouped by name, to a receiver printing to stdout.
const DEMO_ALERTING: &str = "route:\n  receiver: demo-stdout\n  group_by: [alertname]\n  group_wait: 2s\n  group_interval: 10s\n  repeat_interval: 1h\nreceivers:\n  - name: demo-stdout\n";

/// How long shutdown waits for tasks before aborting them; the process must be gone within 2s
/// of SIGTERM, so this leaves room for the runtime to wind down.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);
/// What is left of the 2s for the last data-dir commit (one fsync is a few ms).
const WRITER_STOP_GRACE: Duration = Duration::from_millis(400);

/// The data-dir row kind and id of the silences (one row: the whole store, a few kB).
const SILENCES_KIND: &str = "silences";
const SILENCES_ID: &str = "all";

/// The alerting side's rows in the data dir, by owner, as read at start.
#[derive(Debug, Default)]
struct AlertingRows {
    alerts: Vec<(String, String)>,
    clock: Vec<(String, String)>,
    nflog: Vec<(String, String)>,
    outbox: Vec<(String, String)>,
    silences: Vec<(String, String)>,
}

/// Opens the data dir, loads every account's durable image and starts the writer. Problems other
/// than a store held by another process are logged and leave the sidecar running from memory
/// (`ocx_sentinel_data_dir_persistent` 0): monitoring must start even on a broken disk.
#[allow(clippy::type_complexity)] // reason: one call site destructures it at once
fn open_data_dir(
    settings: &Settings,
    telemetry: &Telemetry,
) -> Result<
    (
        HashMap<String, DurableImage>,
        Option<WriterHandle>,
        AlertingRows,
    ),
    AppError,
> {
    let persistent = telemetry.gauge(names::DATA_DIR_PERSISTENT, &[]);
    persistent.set(0.0);
    let Some(dir) = &settings.data_dir else {
        return Ok((HashMap::new(), None, AlertingRows::default()));
    };
    let (dd, opened) = match DataDir::open(dir) {
        Ok(v) => v,
        Err(e @ DataDirError::InUse { .. }) => return Err(AppError::DataDirInUse(e)),
        Err(e) => {
            tracing::error!(error = %e, "data dir unusable: running from memory only; fills after a restart will be counted again");
            return Ok((HashMap::new(), None, AlertingRows::default()));
        }
    };
    match &opened {
        Opened::MovedAside { to, reason } => {
            tracing::error!(moved_to = %to.display(), %reason, "data dir store could not be read: moved it aside and started a fresh one (counters restart from 0)");
            telemetry
                .counter(names::DATA_DIR_MOVED_ASIDE, &[])
                .increment(1);
        }
        Opened::Fresh => tracing::info!(path = %dd.path().display(), "data dir created"),
        Opened::Existing => tracing::info!(path = %dd.path().display(), "data dir opened"),
    }
    let mut images = HashMap::new();
    for acc in &settings.accounts {
        match dd.load_account(&acc.name) {
            Ok((image, unreadable)) => {
                if unreadable > 0 {
                    tracing::warn!(account = %acc.name, unreadable, "rows in the data dir could not be read and were skipped");
                    telemetry
                        .counter(names::DATA_DIR_UNREADABLE, &[])
                        .increment(unreadable);
                }
                images.insert(acc.name.clone(), image);
            }
            Err(e) => {
                tracing::error!(account = %acc.name, error = %e, "cannot read the data dir: running from memory only");
                return Ok((HashMap::new(), None, AlertingRows::default()));
            }
        }
    }
    let mut alerting = AlertingRows::default();
    for (kind, into) in [
        (crate::rules::persist::KIND, &mut alerting.alerts),
        (Runner::ROW_KINDS.1, &mut alerting.clock),
        (notify::outbox::NFLOG, &mut alerting.nflog),
        (notify::outbox::OUTBOX, &mut alerting.outbox),
        (SILENCES_KIND, &mut alerting.silences),
    ] {
        match dd.load_rows(kind) {
            Ok(rows) => *into = rows,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the data dir: running from memory only");
                return Ok((HashMap::new(), None, AlertingRows::default()));
            }
        }
    }
    let commits = telemetry.counter(names::DATA_DIR_COMMITS, &[]);
    let errors = telemetry.counter(names::DATA_DIR_COMMIT_ERRORS, &[]);
    let duration = telemetry.histogram(names::DATA_DIR_COMMIT_DURATION, &[]);
    let observe = Arc::new(move |event: WriterEvent| match event {
        WriterEvent::Committed { seconds, .. } => {
            commits.increment(1);
            duration.record(seconds);
        }
        WriterEvent::Failed { error, pending } => {
            errors.increment(1);
            tracing::error!(%error, pending_accounts = pending, "data dir commit failed: values stay live in memory; retrying");
        }
    });
    match start_writer(dd, observe) {
        Ok(w) => {
            persistent.set(1.0);
            Ok((images, Some(w), alerting))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start the data dir writer: running from memory only");
            Ok((HashMap::new(), None, AlertingRows::default()))
        }
    }
}

/// An alerting source loaded: its configuration checked, its receivers' integrations built, and
/// its text (which `/api/v2/status` shows masked).
struct LoadedAlerting {
    config: Arc<AlertingConfig>,
    receivers: HashMap<String, Vec<Integration>>,
    text: String,
}

impl LoadedAlerting {
    /// The notifier's routing; silences from `am` mute.
    fn routing(&self, am: &Arc<AmApi>) -> Routing {
        Routing {
            router: Arc::new(ConfigRouter(self.config.clone())),
            muter: Arc::new(ConfigMuter {
                config: self.config.clone(),
                silences: am.clone(),
            }),
            receivers: self.receivers.clone(),
        }
    }
}

fn load_alerting(source: &AlertingSource) -> Result<LoadedAlerting, AppError> {
    match source {
        AlertingSource::File(path) => {
            let (config, text) = notify::config::load_file_with_text(path)?;
            let config = Arc::new(config);
            let receivers = wire::integrations(&config)?;
            Ok(LoadedAlerting {
                config,
                receivers,
                text,
            })
        }
        AlertingSource::Demo => Ok(LoadedAlerting {
            config: Arc::new(notify::config::parse_str(DEMO_ALERTING, "demo")?),
            receivers: [("demo-stdout".to_string(), vec![Integration::Stdout])]
                .into_iter()
                .collect(),
            text: DEMO_ALERTING.to_string(),
        }),
    }
}

/// Puts back what the data dir held for the alerting side: alert states into the rule engine,
/// silences into the API; returns the notifier's part (its log and outbox) to start it with.
/// Unreadable rows are logged and counted, never fatal.
fn restore_alerting(
    stored: &AlertingRows,
    writer: Option<&WriterHandle>,
    runner: &Runner,
    am: &AmApi,
    telemetry: &Telemetry,
) -> notify::outbox::Restored {
    let Some(writer) = writer else {
        return notify::outbox::Restored::default();
    };
    let unreadable = telemetry.counter(names::DATA_DIR_UNREADABLE, &[]);
    let (alerts, bad) = runner.restore(writer.clone(), &stored.alerts, &stored.clock);
    if alerts > 0 {
        tracing::info!(alerts, "alert states restored from the data dir");
    }
    if bad > 0 {
        tracing::warn!(
            rows = bad,
            "alert states in the data dir could not be read and were skipped"
        );
        unreadable.increment(bad);
    }
    if let Some((_, bytes)) = stored.silences.iter().find(|(id, _)| id == SILENCES_ID) {
        match am.update(|s| s.decode(bytes.as_bytes())) {
            Ok(()) => tracing::info!(
                silences = am.silences().len(),
                "silences restored from the data dir"
            ),
            Err(error) => {
                tracing::warn!(%error, "the silences in the data dir could not be read: starting without them");
                unreadable.increment(1);
            }
        }
    }
    let restored =
        notify::outbox::Restored::decode(&stored.nflog, &stored.outbox, crate::clock::unix_ms());
    if restored.unreadable > 0 {
        tracing::warn!(
            rows = restored.unreadable,
            "notification log or outbox rows in the data dir could not be read and were dropped"
        );
        unreadable.increment(restored.unreadable);
    }
    restored
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Named apart from `Listen`: with two listeners, which one could not bind matters.
    #[error(
        "cannot listen on {addr} for the health probes (health_listen, --health-listen): {source}"
    )]
    HealthListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[cfg(feature = "sim")]
    #[error("cannot start the simulator on {addr}: {source}")]
    Simulator {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Only a store another live process holds stops the start; every other data-dir problem
    /// is logged and the sidecar runs from memory.
    #[error(transparent)]
    DataDirInUse(DataDirError),
    /// Rule files that do not load stop the start (as in Prometheus); on a reload they only
    /// keep the previous rules.
    #[error("cannot load the rule files")]
    Rules(#[from] LoadError),
    #[error("cannot load the alerting configuration")]
    Alerting(#[from] AmConfigError),
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error(transparent)]
    Traces(#[from] crate::traces::TraceError),
}

/// A running sidecar: its streams, its HTTP listener and its metrics.
pub struct Sidecar {
    pub addr: SocketAddr,
    /// Where the health-only listener is bound (`health_listen`), if it is.
    pub health_addr: Option<SocketAddr>,
    /// `http://addr`, or `https://addr` when the web configuration file turns TLS on.
    base_url: String,
    pub telemetry: Telemetry,
    pub streams: Arc<Vec<StreamStatus>>,
    pub accounts: Vec<(String, SharedAccount)>,
    /// The rule engine: its alerts, reloads and alert-change notifications.
    pub rules: RulesHandle,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    writer: Option<WriterHandle>,
    /// The span export task and its own stop signal: it stops after everything else, so the
    /// spans of the last events still go out.
    trace_export: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar").field("addr", &self.addr).finish()
    }
}

fn http_client(stream: &StreamSettings) -> Result<reqwest::Client, AppError> {
    // No overall timeout: it would be a deadline for the whole (endless) SSE response. The
    // heartbeat watchdog in `source::run` covers silent connections instead.
    reqwest::Client::builder()
        .connect_timeout(stream.connect_timeout)
        .user_agent(concat!("ocx-sentinel/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AppError::Client(e.to_string()))
}

/// The client for the sidecar's own requests to its receivers and collectors (notifications,
/// spans): a connect deadline, and each request's own timeout set where it is sent.
fn outbound_client() -> Result<reqwest::Client, AppError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("ocx-sentinel/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AppError::Client(e.to_string()))
}

impl Sidecar {
    /// Bind `settings.listen` and start everything.
    pub async fn start(settings: Settings) -> Result<Sidecar, AppError> {
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| AppError::Listen {
                    addr: settings.listen,
                    source,
                })?;
        Self::start_on(settings, listener).await
    }

    /// Start on an already bound listener (tests bind 127.0.0.1:0).
    pub async fn start_on(settings: Settings, listener: TcpListener) -> Result<Sidecar, AppError> {
        let addr = listener.local_addr().map_err(|source| AppError::Listen {
            addr: settings.listen,
            source,
        })?;
        // Bound before anything else starts, so a taken port stops the start with nothing to
        // undo; and bound here, not in `start`, so tests that hand in the main socket get it too.
        let health = match settings.web.health_listen {
            Some(at) => {
                let bound = TcpListener::bind(at)
                    .await
                    .and_then(|l| Ok((l.local_addr()?, l.into_std()?)))
                    .map_err(|source| AppError::HealthListen { addr: at, source })?;
                Some(bound)
            }
            None => None,
        };
        let telemetry = Telemetry::new();
        let (traces, trace_export) = match &settings.tracing {
            Some(t) => {
                let (stop, stop_rx) = watch::channel(false);
                let client = outbound_client()?;
                let names: Vec<String> = settings.accounts.iter().map(|a| a.name.clone()).collect();
                let (traces, task) = Traces::start(t, &names, &telemetry, client, stop_rx)?;
                tracing::info!(endpoint = %t.endpoint, protocol = t.protocol.as_str(), sampling = ?t.sampling, "exporting traces over OTLP");
                (traces, Some((stop, task)))
            }
            None => (Traces::off(), None),
        };
        let web = Arc::new(match &settings.web.config {
            Some(f) => WebState::new(Some(f.path.clone()), Some(f.loaded.clone())),
            None => WebState::new(None, None),
        });
        // The sidecar's own URL (alerts' generator links, notifications): https once TLS is on.
        let base_url = format!(
            "{}://{addr}",
            if web.current().tls() { "https" } else { "http" }
        );
        // Rules first: a broken rule file must stop the start before anything else opens.
        let (runner, rules) = Runner::start(
            &telemetry,
            settings.rules.source.clone(),
            settings.rules.evaluation_interval,
            &base_url,
        )?;
        runner.trace_with(traces.clone());
        let (mut images, writer, stored) = open_data_dir(&settings, &telemetry)?;
        let alerting = match &settings.alerting {
            Some(source) => Some(load_alerting(source)?),
            None => None,
        };
        let listing = Arc::new(LiveAlerts::new(
            rules.notifiable(),
            alerting
                .as_ref()
                .map(|a| (a.config.clone(), a.text.as_str())),
        ));
        // Silences and the Alertmanager API exist with or without a notification config, so
        // `amtool` works against any sidecar; what they mute matters once notifications go out.
        let am = Arc::new(AmApi::new(
            Silences::default(),
            listing.clone(),
            settings.api_token.clone(),
        ));
        let restored = restore_alerting(&stored, writer.as_ref(), &runner, &am, &telemetry);
        let notifier = match (alerting, &settings.alerting) {
            (Some(loaded), Some(source)) => {
                let notifier = Arc::new(
                    Notifier::new(
                        loaded.routing(&am),
                        outbound_client()?,
                        telemetry.clone(),
                        base_url.clone(),
                        writer.clone(),
                    )
                    .traced(traces.clone()),
                );
                // SIGHUP and `/-/reload` reload the alerting file with the rules; a file that no
                // longer loads keeps the previous routing (and API listing) in force.
                let (source, am, n, listing) = (
                    source.clone(),
                    am.clone(),
                    notifier.clone(),
                    listing.clone(),
                );
                runner.also_reload(Box::new(move || {
                    let loaded = load_alerting(&source).map_err(|e| match e {
                        // The problems themselves (file:line: what), not just the summary.
                        AppError::Alerting(ref inner) => format!("{e}: {inner}"),
                        other => other.to_string(),
                    })?;
                    listing.reload(loaded.config.clone(), &loaded.text);
                    n.reload(loaded.routing(&am));
                    tracing::info!("alerting configuration reloaded");
                    Ok(())
                }));
                Some(notifier)
            }
            _ => None,
        };
        let client = http_client(&settings.stream)?;
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut statuses = Vec::new();
        let mut accounts = Vec::new();

        for acc in &settings.accounts {
            let (state, markets) = match images.remove(&acc.name) {
                Some(image) => {
                    let markets = image.markets.clone();
                    let (state, skipped) = Account::restore(settings.dedup_capacity, image);
                    if skipped > 0 {
                        tracing::warn!(account = %acc.name, skipped, "trade keys in the data dir could not be read and were skipped");
                        telemetry
                            .counter(names::DATA_DIR_UNREADABLE, &[])
                            .increment(skipped);
                    }
                    (state, markets)
                }
                None => (Account::new(settings.dedup_capacity), Vec::new()),
            };
            let mut metrics = telemetry.account(&acc.name, settings.max_markets);
            metrics.set_limits(acc.limits.clone());
            let shared = AccountCell::new(&acc.name, state, metrics, &markets, writer.clone());
            accounts.push((acc.name.clone(), shared.clone()));
            let resync = Arc::new(Notify::new());
            let user_ready = Arc::new(AtomicBool::new(false));
            let mut kinds = vec![StreamKind::User];
            kinds.extend(
                acc.markets
                    .iter()
                    .map(|m| StreamKind::Events { market: m.clone() }),
            );
            for kind in kinds {
                let is_user = kind == StreamKind::User;
                let ready = if is_user {
                    user_ready.clone()
                } else {
                    Arc::new(AtomicBool::new(false))
                };
                statuses.push(StreamStatus {
                    account: acc.name.clone(),
                    stream: kind.label(),
                    market: kind.market().map(str::to_string),
                    ready: ready.clone(),
                });
                let spec = StreamSpec {
                    acc: acc.clone(),
                    kind,
                    stream: settings.stream.clone(),
                    client: client.clone(),
                    shared: shared.clone(),
                    telemetry: telemetry.clone(),
                    ready,
                    resync: is_user.then(|| resync.clone()),
                    traces: traces.clone(),
                };
                tasks.push(tokio::spawn(supervised_stream(
                    spec,
                    RestartPolicy::default(),
                    &rx,
                )));
            }
            if settings.reconcile.enabled && !settings.reconcile.endpoints.is_empty() {
                let (acc, reconcile, client, shared, t, max_markets) = (
                    acc.clone(),
                    settings.reconcile.clone(),
                    client.clone(),
                    shared.clone(),
                    telemetry.clone(),
                    settings.max_markets,
                );
                // Built afresh on every (re)start: a restarted reconciler starts from empty
                // memory, which costs at most one run's confirmation of a drift.
                let build = move || ReconcileTask {
                    account: acc.name.clone(),
                    api_base: acc.api_base.clone(),
                    auth: acc.auth.clone(),
                    settings: reconcile.clone(),
                    client: client.clone(),
                    shared: shared.clone(),
                    metrics: t.reconcile(&acc.name, max_markets),
                    resync: resync.clone(),
                    user_ready: user_ready.clone(),
                    quoted_markets: acc.markets.clone(),
                };
                let run_rx = rx.clone();
                tasks.push(tokio::spawn(supervise(
                    "reconcile",
                    &telemetry,
                    RestartPolicy::default(),
                    rx.clone(),
                    move || reconcile::run(build(), run_rx.clone()),
                    // It publishes no liveness of its own: its runs and timestamps say it.
                    || {},
                )));
            }
        }

        // The rule engine wakes on every account's epoch: right after each applied change.
        let changes: Vec<watch::Receiver<u64>> =
            accounts.iter().map(|(_, a)| a.subscribe()).collect();
        let rules_rx = rx.clone();
        tasks.push(tokio::spawn(supervise(
            "rules",
            &telemetry,
            RestartPolicy::default(),
            rx.clone(),
            move || runner.clone().run(changes.clone(), rules_rx.clone()),
            || {},
        )));

        if let Some(notifier) = notifier {
            let (alerts, notify_rx) = (rules.notifiable(), rx.clone());
            // The first start sends what the previous process left; a restart after a panic
            // starts from memory (its log entries were written as they were made, so only
            // this process's are lost, and those go out again at most once).
            let restored = Arc::new(std::sync::Mutex::new(Some(restored)));
            tasks.push(tokio::spawn(supervise(
                "notifier",
                &telemetry,
                RestartPolicy::default(),
                rx.clone(),
                move || {
                    let first = restored
                        .lock()
                        .ok()
                        .and_then(|mut r| r.take())
                        .unwrap_or_default();
                    notifier
                        .clone()
                        .run_restored(alerts.clone(), notify_rx.clone(), first)
                },
                || {},
            )));
        }
        tasks.push(tokio::spawn(notify::keeper::keep_silences(
            am.clone(),
            writer
                .as_ref()
                .map(|w| (w.clone(), SILENCES_KIND, SILENCES_ID)),
            telemetry.clone(),
            rx.clone(),
        )));

        if !settings.forward.alertmanagers.is_empty() {
            let forwarder = Arc::new(Forwarder::new(&settings.forward, &telemetry)?);
            let (alerts, forward_rx) = (rules.notifiable(), rx.clone());
            tasks.push(tokio::spawn(supervise(
                "forward",
                &telemetry,
                RestartPolicy::default(),
                rx.clone(),
                move || forwarder.clone().run(alerts.clone(), forward_rx.clone()),
                || {},
            )));
        }

        let streams = Arc::new(statuses);
        let state = AppState {
            telemetry: telemetry.clone(),
            streams: streams.clone(),
            rules: Some(rules.clone()),
            am: Some(am),
        };
        let listener = listener
            .into_std()
            .map_err(|source| AppError::Listen { addr, source })?;
        let limits = settings.web.limits;
        let (main_web, main_t, main_rx) = (web.clone(), telemetry.clone(), rx.clone());
        tasks.push(tokio::spawn(supervised_listener(
            "server",
            listener,
            &telemetry,
            &rx,
            move |l| {
                let (router, web, t, rx) = (
                    server::router(state.clone()),
                    main_web.clone(),
                    main_t.clone(),
                    main_rx.clone(),
                );
                async move { crate::web::serve(l, router, web, limits, &t, rx).await }
            },
        )));
        let health_addr = health.as_ref().map(|(a, _)| *a);
        if let Some((health_addr, health)) = health {
            tracing::info!(addr = %health_addr, "health listener: /-/healthy and /-/ready only, plain HTTP without auth");
            let (streams, t, health_rx) = (streams.clone(), telemetry.clone(), rx.clone());
            tasks.push(tokio::spawn(supervised_listener(
                "health",
                health,
                &telemetry,
                &rx,
                move |l| {
                    let (streams, t, rx) = (streams.clone(), t.clone(), health_rx.clone());
                    async move { crate::web::health::serve(l, streams, limits, &t, rx).await }
                },
            )));
        }
        if let Some(f) = &settings.web.config {
            tracing::info!(file = %f.path.display(), config = %f.loaded.describe(), "web config file loaded");
            tasks.push(tokio::spawn(crate::web::watch_file(
                web.clone(),
                telemetry.clone(),
                rx.clone(),
            )));
        }
        Ok(Sidecar {
            addr,
            health_addr,
            base_url,
            telemetry,
            streams,
            accounts,
            rules,
            shutdown,
            tasks,
            writer,
            trace_export,
        })
    }

    /// Where the sidecar serves: `http://addr`, or `https://addr` with TLS.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Stop the streams and the server; tasks that do not finish within the grace are aborted.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                abort.abort();
            }
        }
        // The streams are stopped: commit what is queued and close the store, so a restarted
        // sidecar (or a test's next one) can open it at once.
        if let Some(w) = self.writer {
            let _ = tokio::task::spawn_blocking(move || w.stop(WRITER_STOP_GRACE)).await;
        }
        // Last: the spans of everything above. The task bounds its final export itself; this
        // deadline is for a task that is somehow stuck.
        if let Some((stop, task)) = self.trace_export {
            let _ = stop.send(true);
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// One HTTP listener under supervision until shutdown: `serve` runs on a duplicate of the bound
/// socket, so the socket stays bound across restarts of the task and connections arriving
/// meanwhile wait in its backlog instead of being refused. Both listeners (the HTTP surface
/// through `web::serve`, the probes through `web::health::serve`) are started this one way,
/// so they are restarted, counted and stopped alike.
fn supervised_listener<F, Fut>(
    task: &'static str,
    listener: std::net::TcpListener,
    telemetry: &Telemetry,
    rx: &watch::Receiver<bool>,
    serve: F,
) -> impl Future<Output = ()> + use<F, Fut>
where
    F: Fn(TcpListener) -> Fut,
    Fut: Future<Output = ()>,
{
    supervise(
        task,
        telemetry,
        RestartPolicy::default(),
        rx.clone(),
        move || {
            // `into_std` left the socket non-blocking, and a duplicate shares that: what
            // `from_std` needs.
            let serving = listener
                .try_clone()
                .and_then(TcpListener::from_std)
                .map(&serve);
            async move {
                match serving {
                    Ok(serving) => serving.await,
                    Err(e) => tracing::error!(task, error = %e, "cannot serve on the bound socket"),
                }
            }
        },
        || {},
    )
}

/// Everything one stream's task is built from, so it can be built again after it died.
#[derive(Clone)]
struct StreamSpec {
    acc: AccountSettings,
    kind: StreamKind,
    stream: StreamSettings,
    client: reqwest::Client,
    shared: SharedAccount,
    telemetry: Telemetry,
    ready: Arc<AtomicBool>,
    /// The user stream's notification to the reconciler.
    resync: Option<Arc<Notify>>,
    traces: Traces,
}

impl StreamSpec {
    fn labels(&self) -> Vec<(&str, &str)> {
        let mut labels = vec![
            ("account", self.acc.name.as_str()),
            ("stream", self.kind.label()),
        ];
        if let Some(m) = self.kind.market() {
            labels.push(("market", m));
        }
        labels
    }

    fn task(&self) -> StreamTask {
        let (acc, kind) = (&self.acc, &self.kind);
        let url = source::stream_url(
            &acc.api_base,
            kind,
            acc.open_only,
            acc.interval_ms,
            acc.depth,
        );
        StreamTask {
            kind: kind.clone(),
            url,
            auth: acc.auth.clone(),
            settings: self.stream.clone(),
            client: self.client.clone(),
            account: self.shared.clone(),
            metrics: self
                .telemetry
                .stream(&acc.name, kind.label(), kind.market()),
            ready: self.ready.clone(),
            resync: self.resync.clone(),
            retry_capped: self.telemetry.counter(names::RETRY_CAPPED, &self.labels()),
            jitter: fastrand::f64,
            traces: self.traces.clone(),
        }
    }

    /// The task died: whatever it last said about the stream no longer holds.
    fn down(&self) {
        self.ready.store(false, Ordering::Relaxed);
        self.telemetry
            .gauge(names::STREAM_UP, &self.labels())
            .set(0.0);
    }
}

/// One stream under supervision: built from `spec`, set down and built again if it dies.
fn supervised_stream(
    spec: StreamSpec,
    policy: RestartPolicy,
    rx: &watch::Receiver<bool>,
) -> impl Future<Output = ()> + use<> {
    let (down, run_rx) = (spec.clone(), rx.clone());
    supervise(
        "stream",
        &spec.telemetry.clone(),
        policy,
        rx.clone(),
        move || source::run(spec.task(), run_rx.clone()),
        move || down.down(),
    )
}

/// Settings for `demo`: one account against the local simulator, with the book of two markets
/// so unrealized PnL and the book gauges have data too.
#[cfg(feature = "sim")]
pub fn demo_settings(listen: SocketAddr, sim_base: &str) -> Settings {
    Settings {
        listen,
        stream: StreamSettings::default(),
        dedup_capacity: 100_000,
        max_markets: 500,
        reconcile: ReconcileSettings {
            interval: Duration::from_secs(10),
            ..ReconcileSettings::default()
        },
        accounts: vec![AccountSettings {
            name: "demo".into(),
            api_base: sim_base.to_string(),
            auth: Auth::None,
            markets: vec!["BTC-PERP".into(), "ETH-PERP".into()],
            open_only: true,
            interval_ms: Some(250),
            depth: Some(25),
            limits: demo_limits(),
        }],
        data_dir: None,
        alerting: Some(AlertingSource::Demo),
        api_token: None,
        forward: Default::default(),
        web: Default::default(),
        tracing: None,
        rules: RuleSettings {
            source: RuleSource::Embedded(
                SHIPPED_RULES
                    .iter()
                    .map(|(name, text)| (name.to_string(), *text))
                    .collect(),
            ),
            evaluation_interval: Duration::from_secs(1),
        },
    }
}

/// The shipped `rules/`, compiled in so `demo` shows them from any working directory.
#[cfg(feature = "sim")]
pub const SHIPPED_RULES: &[(&str, &str)] = &[
    ("rules/fills.yml", include_str!("../rules/fills.yml")),
    ("rules/meta.yml", include_str!("../rules/meta.yml")),
    (
        "rules/positions.yml",
        include_str!("../rules/positions.yml"),
    ),
    (
        "rules/reconcile.yml",
        include_str!("../rules/reconcile.yml"),
    ),
    ("rules/stream.yml", include_str!("../rules/stream.yml")),
];

/// Inventory limits for the demo's markets. The simulated positions (SOL-PERP in 0.1 steps)
/// cross them now and then at random; the scripted excursion ([`demo_excursion`]) crosses
/// SOL-PERP's on a schedule.
#[cfg(feature = "sim")]
fn demo_limits() -> crate::config::Limits {
    let mut l = crate::config::Limits::default();
    for (market, limit) in [("BTC-PERP", 0.05), ("ETH-PERP", 0.5), ("SOL-PERP", 0.5)] {
        l.inventory.per_market.insert(market.to_string(), limit);
    }
    l.inventory.default = Some(1.0);
    l
}

/// The demo's scripted SOL-PERP excursion, so a newcomer sees every alert state on a known
/// schedule: 2s after the simulator starts the position jumps to 0.8 (limit 0.5), is held for
/// 40s and closed, then the market stays flat for 20s; again every 2 minutes. So
/// `OcxInventoryLimitBreached` fires at once and resolves at ~42s, and `OcxInventorySkewHeld`
/// (2m average over half the limit, `for: 30s`) goes pending within seconds and fires at ~33s.
#[cfg(feature = "sim")]
fn demo_excursion(cfg: &SimConfig) -> crate::sim::Excursion {
    demo_excursion_on(cfg, "SOL-PERP", 8, Duration::from_secs(2))
}

/// The demo's excursion shape (held 40s, flat 20s more, every 2 minutes) on `market`, to
/// `steps` quantity steps, first `after` the start; `simulate --excursion` runs one.
#[cfg(feature = "sim")]
pub fn demo_excursion_on(
    cfg: &SimConfig,
    market: &str,
    steps: i64,
    after: Duration,
) -> crate::sim::Excursion {
    let ticks = |d: Duration| (d.as_millis() / cfg.tick.as_millis().max(1)) as u64;
    crate::sim::Excursion {
        market: market.into(),
        steps,
        first_step: u64::from(cfg.warmup_steps) + ticks(after),
        hold: ticks(Duration::from_secs(40)),
        quiet: ticks(Duration::from_secs(20)),
        period: ticks(Duration::from_secs(120)),
    }
}

/// `ocx-sentinel demo`: the simulator on an ephemeral loopback port and the sidecar against it.
#[cfg(feature = "sim")]
pub async fn start_demo(
    listen: SocketAddr,
    seed: u64,
    data_dir: Option<PathBuf>,
    web: WebSettings,
    tracing: Option<crate::config::TraceSettings>,
) -> Result<(RunningSim, Sidecar), AppError> {
    let sim_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut cfg = SimConfig {
        seed,
        ..SimConfig::default()
    };
    cfg.excursion = Some(demo_excursion(&cfg));
    let running = sim::start(cfg, sim_addr)
        .await
        .map_err(|source| AppError::Simulator {
            addr: sim_addr,
            source,
        })?;
    let settings = Settings {
        data_dir,
        web,
        tracing,
        ..demo_settings(listen, &running.base_url())
    };
    let sidecar = Sidecar::start(settings).await?;
    Ok((running, sidecar))
}

// These tests run the stream task against the simulator.
#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;

    // Regression: stream tasks were spawned unsupervised, so one that died (a panic) left
    // `ocx_stream_up` at 1 and `/-/ready` at 200 for ever, silently. Here the real stream task
    // against the simulator is made to panic once it is live (the test's only hook, wrapped
    // around the first build): it must be set down, counted, and rebuilt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_task_that_panics_is_set_down_counted_and_restarted() {
        let cfg = SimConfig {
            heartbeat_interval: Duration::from_millis(100),
            ..SimConfig::default()
        };
        let sim = sim::start(cfg, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let settings = crate::config::Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..demo_settings(SocketAddr::from(([127, 0, 0, 1], 0)), &sim.base_url())
        };
        let telemetry = Telemetry::new();
        let acc = settings.accounts[0].clone();
        let spec = StreamSpec {
            shared: AccountCell::new(
                &acc.name,
                Account::new(1000),
                telemetry.account(&acc.name, 10),
                &[],
                None,
            ),
            acc,
            kind: StreamKind::User,
            stream: settings.stream.clone(),
            client: http_client(&settings.stream).unwrap(),
            telemetry: telemetry.clone(),
            ready: Arc::new(AtomicBool::new(false)),
            resync: None,
            traces: Traces::off(),
        };
        let up = telemetry.gauge(names::STREAM_UP, &spec.labels());
        let restarts = telemetry.counter(names::TASK_RESTARTS, &[("task", "stream")]);
        let (stop, rx) = watch::channel(false);
        let (build, down, run_rx, ready) =
            (spec.clone(), spec.clone(), rx.clone(), spec.ready.clone());
        let mut first = true;
        let policy = RestartPolicy {
            initial: Duration::from_secs(1),
            ..RestartPolicy::default()
        };
        let sup = tokio::spawn(supervise(
            "stream",
            &telemetry,
            policy,
            rx,
            move || {
                let run = source::run(build.task(), run_rx.clone());
                let (dies, live) = (std::mem::take(&mut first), build.ready.clone());
                async move {
                    if !dies {
                        return run.await;
                    }
                    tokio::select! {
                        _ = run => {}
                        _ = async {
                            while !live.load(Ordering::Relaxed) {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        } => panic!("test hook: the stream task dies once it is live"),
                    }
                }
            },
            move || down.down(),
        ));
        let wait = |what: &'static str, cond: Box<dyn Fn() -> bool + Send>| async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !cond() {
                assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let r = restarts.clone();
        wait("the panic", Box::new(move || r.get() == 1.0)).await;
        // Within the 1s restart delay: down, although the task had set both up before dying.
        assert_eq!(up.get(), 0.0);
        assert!(!ready.load(Ordering::Relaxed));
        let (u, l) = (up.clone(), ready.clone());
        wait(
            "live again",
            Box::new(move || u.get() == 1.0 && l.load(Ordering::Relaxed)),
        )
        .await;
        assert_eq!(restarts.get(), 1.0);
        let _ = stop.send(true);
        sup.await.unwrap();
        assert_eq!(restarts.get(), 1.0, "a shutdown is not a restart");
    }

    /// The sidecar binds `health_listen` beside its main listener, serves the probes there, and
    /// closes it with everything else at shutdown; a taken address stops the start, named.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_health_listener_starts_with_the_sidecar_and_stops_with_it() {
        let sim = sim::start(SimConfig::default(), SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut settings = demo_settings(loopback, &sim.base_url());
        settings.web.health_listen = Some(loopback);
        let main = TcpListener::bind(loopback).await.unwrap();
        let sidecar = Sidecar::start_on(settings.clone(), main).await.unwrap();
        let health = sidecar.health_addr.expect("bound");
        assert_ne!(health, sidecar.addr);
        let url = format!("http://{health}/-/healthy");
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 200);
        let r = reqwest::get(format!("http://{health}/metrics"))
            .await
            .unwrap();
        assert_eq!(r.status(), 404);

        // The same address again, while it is held: a clear error naming it.
        settings.web.health_listen = Some(health);
        let main = TcpListener::bind(loopback).await.unwrap();
        let err = Sidecar::start_on(settings, main).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot listen on {health} for the health probes")),
            "{err}"
        );

        sidecar.shutdown().await;
        assert!(
            tokio::net::TcpStream::connect(health).await.is_err(),
            "the health listener outlived the shutdown"
        );
        let _ = tokio::time::timeout(Duration::from_millis(300), sim.shutdown()).await;
    }
}
