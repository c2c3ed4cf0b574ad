//! Wiring: build the streams, state and HTTP server from validated settings, run them, and stop them cleanly.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::{AccountSettings, Auth, ReconcileSettings, Settings, StreamSettings};
use crate::reconcile::{self, ReconcileTask};
use crate::server::{self, AppState, StreamStatus};
use crate::sim::{self, RunningSim, SimConfig};
use crate::source::session::StreamKind;
use crate::source::{self, StreamTask};
use crate::state::Account;
use crate::telemetry::{SharedAccount, Telemetry, names};

/// How long shutdown waits for tasks before aborting them; the process must be gone within 2s
/// of SIGTERM, so this leaves room for the runtime to wind down.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("cannot start the simulator on {addr}: {source}")]
    Simulator {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running sidecar: its streams, its HTTP listener and its metrics.
pub struct Sidecar {
    pub addr: SocketAddr,
    pub telemetry: Telemetry,
    pub streams: Arc<Vec<StreamStatus>>,
    pub accounts: Vec<(String, SharedAccount)>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
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
        let telemetry = Telemetry::new();
        let client = http_client(&settings.stream)?;
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut statuses = Vec::new();
        let mut accounts = Vec::new();

        for acc in &settings.accounts {
            let shared: SharedAccount = Arc::new(Mutex::new((
                Account::new(settings.dedup_capacity),
                telemetry.account(&acc.name, settings.max_markets),
            )));
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
                let mut task =
                    stream_task(acc, kind, &settings, &client, &shared, &telemetry, ready);
                if is_user {
                    task.resync = Some(resync.clone());
                }
                tasks.push(tokio::spawn(source::run(task, rx.clone())));
            }
            if settings.reconcile.enabled && !settings.reconcile.endpoints.is_empty() {
                let task = ReconcileTask {
                    account: acc.name.clone(),
                    api_base: acc.api_base.clone(),
                    auth: acc.auth.clone(),
                    settings: settings.reconcile.clone(),
                    client: client.clone(),
                    shared: shared.clone(),
                    metrics: telemetry.reconcile(&acc.name, settings.max_markets),
                    resync,
                    user_ready,
                    quoted_markets: acc.markets.clone(),
                };
                tasks.push(tokio::spawn(reconcile::run(task, rx.clone())));
            }
        }

        let streams = Arc::new(statuses);
        let app = server::router(AppState {
            telemetry: telemetry.clone(),
            streams: streams.clone(),
        });
        let mut srx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let stop = async move {
                let _ = srx.wait_for(|v| *v).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }));
        Ok(Sidecar {
            addr,
            telemetry,
            streams,
            accounts,
            shutdown,
            tasks,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
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
    }
}

fn stream_task(
    acc: &AccountSettings,
    kind: StreamKind,
    settings: &Settings,
    client: &reqwest::Client,
    shared: &SharedAccount,
    telemetry: &Telemetry,
    ready: Arc<AtomicBool>,
) -> StreamTask {
    let url = source::stream_url(
        &acc.api_base,
        &kind,
        acc.open_only,
        acc.interval_ms,
        acc.depth,
    );
    let metrics = telemetry.stream(&acc.name, kind.label(), kind.market());
    let mut labels = vec![("account", acc.name.as_str()), ("stream", kind.label())];
    if let Some(m) = kind.market() {
        labels.push(("market", m));
    }
    let retry_capped = telemetry.counter(names::RETRY_CAPPED, &labels);
    StreamTask {
        kind,
        url,
        auth: acc.auth.clone(),
        settings: settings.stream.clone(),
        client: client.clone(),
        account: shared.clone(),
        metrics,
        ready,
        resync: None,
        retry_capped,
        jitter: fastrand::f64,
    }
}

/// Settings for `demo`: one account against the local simulator, with the book of two markets
/// so unrealized PnL and the book gauges have data too.
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
        }],
    }
}

/// `ocx-sentinel demo`: the simulator on an ephemeral loopback port and the sidecar against it.
pub async fn start_demo(listen: SocketAddr, seed: u64) -> Result<(RunningSim, Sidecar), AppError> {
    let sim_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let cfg = SimConfig {
        seed,
        ..SimConfig::default()
    };
    let running = sim::start(cfg, sim_addr)
        .await
        .map_err(|source| AppError::Simulator {
            addr: sim_addr,
            source,
        })?;
    let sidecar = Sidecar::start(demo_settings(listen, &running.base_url())).await?;
    Ok((running, sidecar))
}
