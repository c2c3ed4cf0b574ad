//! The built-in OCX simulator: a seeded market world served over the exchange's SSE streams and
//! REST reads, with fault knobs, for `simulate`, `demo` and the integration tests.
//!
//! `world` is the pure market model, `feed` turns it into wire payloads, `server` is the axum
//! surface (auth, faults, per-connection streams). This file holds the public handle and the
//! only wall-clock reads (timestamps).

mod feed;
mod server;
mod world;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rust_decimal::Decimal;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use feed::{Change, ChangeLog};
pub use world::Excursion;
use world::World;

/// Log entries kept for connections to catch up from (about a day at the default tick).
const LOG_CAP: usize = 100_000;

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Default `["BTC-PERP", "ETH-PERP", "SOL-PERP"]`.
    pub markets: Vec<String>,
    /// None: no auth required.
    pub api_key: Option<String>,
    /// A `:heartbeat` comment goes out when nothing was sent for this long (default 15s).
    pub heartbeat_interval: Duration,
    /// World step period (default 200ms).
    pub tick: Duration,
    /// Steps simulated before serving, so the first snapshot already has positions and trades (default 40).
    pub warmup_steps: u32,
    /// Trades included in a snapshot (default 50).
    pub recent_trades: usize,
    /// How `engineTs`, `sourceTs` and `createdAt` are written.
    pub timestamps: TsFormat,
    pub faults: Faults,
    /// A scripted inventory excursion (`demo` runs one; default none).
    pub excursion: Option<Excursion>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 1,
            markets: ["BTC-PERP", "ETH-PERP", "SOL-PERP"]
                .map(String::from)
                .to_vec(),
            api_key: None,
            heartbeat_interval: Duration::from_secs(15),
            tick: Duration::from_millis(200),
            warmup_steps: 40,
            recent_trades: 50,
            timestamps: TsFormat::Iso,
            faults: Faults::default(),
            excursion: None,
        }
    }
}

/// How timestamps are written: ISO-8601 strings with milliseconds, or unix milliseconds as numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TsFormat {
    #[default]
    Iso,
    Millis,
}

/// Misbehaviour to inject. Counts are per connection (except `drop_fill_every`); `Some(0)`
/// disables the `*_every` knobs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Close each stream connection after it has sent N events (the snapshot counts).
    pub drop_every: Option<u64>,
    /// Every Nth delta on a connection skips one sequence number (eventSeq jumps by 2).
    pub skip_seq_every: Option<u64>,
    /// Send no `:heartbeat` comments.
    pub stop_heartbeats: bool,
    /// After N events send nothing at all (no events, no heartbeats) and keep the connection open.
    pub silent_after: Option<u64>,
    /// Every Nth event slot sends an `error` event instead; it does not consume an eventSeq and the
    /// event it displaced goes out at the next emit.
    pub error_every: Option<u64>,
    pub error_retryable: bool,
    /// Every Nth event slot sends a `delta` whose data is malformed JSON (no eventSeq consumed).
    pub malformed_every: Option<u64>,
    /// Answer stream and REST requests with this status and a JSON error body.
    pub http_status: Option<u16>,
    /// `Retry-After` seconds sent with 429/503 (a 429 says 1 when unset).
    pub retry_after_secs: Option<u64>,
    /// Every Nth trade of the world (by trade number over its whole life: t-000003, t-000006 for
    /// 3) is never streamed, in snapshots or deltas, yet `GET /perps/trades` returns it; the
    /// position change it causes streams as usual. Decided when each trade is created, so changing
    /// this affects later trades only. Unlike the other `*_every` knobs it is not per connection.
    pub drop_fill_every: Option<u64>,
    /// REST positions (`/perps/positions`, `/portfolio/me`, and the balances computed from them)
    /// report this market's quantity plus this signed offset; streams are unaffected. Without a
    /// world position there, a REST-only `p-<market>-rest` appears (side from the sign, entry at the
    /// current mid, realized 0); a sum of exactly zero removes the position from REST.
    pub rest_position_offset: Option<(String, Decimal)>,
    /// Answer the REST reads (not the streams) with this status, body and `Retry-After` as
    /// `http_status` does. `http_status` still applies to both and wins.
    pub rest_status: Option<u16>,
    /// When non-empty, `rest_status` applies only to these paths (e.g. `/perps/balances`).
    pub rest_status_endpoints: Vec<String>,
}

/// Ground truth for tests.
#[derive(Clone, Debug, PartialEq)]
pub struct Truth {
    /// Every trade the world ever generated, in order (warmup included), stream-hidden ones too.
    pub trades: Vec<TruthTrade>,
    /// Ids of the trades never streamed (`drop_fill_every`), in order.
    pub hidden_trade_ids: Vec<String>,
    /// Open positions now, in market order, as the streams report them.
    pub positions: Vec<TruthPosition>,
    /// Exactly what `GET /perps/positions` returns now (`rest_position_offset` applied).
    pub rest_positions: Vec<TruthPosition>,
    /// Exactly what `GET /perps/balances` returns now.
    pub balances: TruthBalances,
    pub books: BTreeMap<String, TruthBook>,
}

/// The `/perps/balances` body; see `feed::Account` for the formulas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruthBalances {
    pub equity: Decimal,
    pub available_balance: Decimal,
    pub initial_margin: Decimal,
    pub maintenance_margin: Decimal,
    pub margin_usage: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruthTrade {
    pub id: String,
    pub market: String,
    /// `buy` | `sell`
    pub side: &'static str,
    /// `maker` | `taker`
    pub liquidity: &'static str,
    pub price: Decimal,
    pub quantity: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruthPosition {
    pub id: String,
    pub market: String,
    /// Signed, long > 0.
    pub quantity: Decimal,
    pub entry_price: Decimal,
    pub realized_pnl: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruthBook {
    /// (price, size), best first.
    pub bids: Vec<(Decimal, Decimal)>,
    pub asks: Vec<(Decimal, Decimal)>,
    /// The mark price REST uses (entry of a REST-only position, `markPrice` in `/portfolio/me`).
    pub mid: Decimal,
}

/// Mutable state behind one lock: the tick task and every connection take it briefly.
struct Shared {
    world: World,
    log: ChangeLog,
    faults: Faults,
}

struct Inner {
    cfg: SimConfig,
    shared: Mutex<Shared>,
    stream_connections: AtomicU64,
    requests: AtomicU64,
    /// Per `server::REST_PATHS` entry: requests answered, any status.
    rest_requests: [AtomicU64; server::REST_PATHS.len()],
    /// Streams opened so far; each starts its eventSeq at `seq_base` plus a million per earlier stream.
    streams_opened: AtomicU64,
    seq_base: u64,
    /// Set when `serve` shuts down, so open streams end and graceful shutdown can finish.
    closing: watch::Sender<bool>,
    /// When the first stream opened: every stream's ticks fall on multiples of its interval
    /// from here (see `server::open_stream`).
    stream_epoch: std::sync::OnceLock<tokio::time::Instant>,
}

/// A built simulator. Cheap to clone; all clones share one world.
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

/// Build the world (warmup included), bind nothing yet.
pub fn build(cfg: SimConfig) -> SimHandle {
    let now = now_ms();
    let mut world = World::new(cfg.seed, &cfg.markets).with_excursion(cfg.excursion.clone());
    let mut log = ChangeLog::new(LOG_CAP);
    let tick_ms = cfg.tick.as_millis() as i64;
    let warmup = i64::from(cfg.warmup_steps);
    // Warmup steps get timestamps in the recent past, one tick apart, ending now.
    for i in 1..=warmup {
        let at = now - (warmup - i) * tick_ms;
        apply_step(&mut world, &mut log, at, cfg.faults.drop_fill_every);
    }
    if warmup == 0 {
        world.last_step_ms = now;
    }
    let seq_base = fastrand::Rng::with_seed(cfg.seed ^ 0x5eed_5eed).u64(1_000..100_000);
    let shared = Shared {
        world,
        log,
        faults: cfg.faults.clone(),
    };
    SimHandle {
        inner: Arc::new(Inner {
            cfg,
            shared: Mutex::new(shared),
            stream_connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            rest_requests: Default::default(),
            streams_opened: AtomicU64::new(0),
            seq_base,
            closing: watch::channel(false).0,
            stream_epoch: std::sync::OnceLock::new(),
        }),
    }
}

fn apply_step(world: &mut World, log: &mut ChangeLog, now_ms: i64, drop_fill_every: Option<u64>) {
    if let Some(fill) = world.step(now_ms) {
        let trade = &mut world.trades[fill.trade];
        trade.stream_hidden = every(drop_fill_every, trade.n);
        log.push(Change::Trade(fill.trade));
        log.push(Change::Position(fill.position));
    }
}

impl SimHandle {
    /// All routes, for embedding. The world only moves while `serve` runs or `step` is called.
    pub fn router(&self) -> axum::Router {
        server::router(self.clone())
    }

    /// Takes effect for new events and connections immediately.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Un-hide every trade hidden by `drop_fill_every`: later snapshots include them again (if
    /// recent enough), as an exchange would after repairing its feed. Tests use it to check that
    /// a fill recovered through REST is not counted twice when the stream repeats it.
    pub fn reveal_hidden_trades(&self) {
        for t in self.lock().world.trades.iter_mut() {
            t.stream_hidden = false;
        }
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Advance the world by one step now (what the tick task does every `tick`).
    pub fn step(&self) {
        let shared = &mut *self.lock();
        let hide = shared.faults.drop_fill_every;
        apply_step(&mut shared.world, &mut shared.log, now_ms(), hide);
    }

    /// Ground truth for tests.
    pub fn truth(&self) -> Truth {
        let shared = self.lock();
        let w = &shared.world;
        let trades = w
            .trades
            .iter()
            .map(|t| {
                let m = &w.markets[t.market];
                TruthTrade {
                    id: world::trade_id(t.n),
                    market: m.id.clone(),
                    side: if t.buy { "buy" } else { "sell" },
                    liquidity: if t.maker { "maker" } else { "taker" },
                    price: m.price(t.price),
                    quantity: m.qty(t.qty),
                }
            })
            .collect();
        let hidden_trade_ids = w
            .trades
            .iter()
            .filter(|t| t.stream_hidden)
            .map(|t| world::trade_id(t.n))
            .collect();
        let positions = w
            .positions
            .iter()
            .zip(&w.markets)
            .filter_map(|(p, m)| {
                p.as_ref().map(|p| TruthPosition {
                    id: world::position_id(&m.id, p.n),
                    market: m.id.clone(),
                    quantity: m.qty(p.qty),
                    entry_price: p.entry,
                    realized_pnl: p.realized,
                })
            })
            .collect();
        let rest = feed::rest_positions(w, shared.faults.rest_position_offset.as_ref());
        let b = feed::account(w, &rest).balances;
        let balances = TruthBalances {
            equity: b.equity,
            available_balance: b.available_balance,
            initial_margin: b.initial_margin,
            maintenance_margin: b.maintenance_margin,
            margin_usage: b.margin_usage,
        };
        let rest_positions = rest
            .into_iter()
            .map(|p| TruthPosition {
                id: p.id,
                market: w.markets[p.market].id.clone(),
                quantity: p.qty,
                entry_price: p.entry,
                realized_pnl: p.realized,
            })
            .collect();
        let books = w
            .markets
            .iter()
            .map(|m| {
                let side = |bid| {
                    m.top(bid, usize::MAX)
                        .into_iter()
                        .map(|(p, s)| (m.price(p), m.qty(s)))
                        .collect()
                };
                (
                    m.id.clone(),
                    TruthBook {
                        bids: side(true),
                        asks: side(false),
                        mid: m.price(m.mid),
                    },
                )
            })
            .collect();
        Truth {
            trades,
            hidden_trade_ids,
            positions,
            rest_positions,
            balances,
            books,
        }
    }

    /// Stream requests answered 200 so far.
    pub fn stream_connections(&self) -> u64 {
        self.inner.stream_connections.load(Ordering::Relaxed)
    }

    /// All HTTP requests so far.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Requests to one REST path (e.g. `/perps/balances`) answered so far, any status; 0 for a
    /// path that is not a REST read.
    pub fn rest_requests(&self, path: &str) -> u64 {
        server::REST_PATHS
            .iter()
            .position(|p| *p == path)
            .map_or(0, |i| self.inner.rest_requests[i].load(Ordering::Relaxed))
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves the world consistent enough for a simulator.
        self.inner
            .shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Start the world's tick task and serve on `listener` until `shutdown` resolves.
pub async fn serve(
    handle: SimHandle,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    handle.inner.closing.send_replace(false);
    let ticker = tokio::spawn(tick(handle.clone()));
    let inner = handle.inner.clone();
    let result = axum::serve(listener, handle.router())
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Streams never end by themselves; tell them to, or graceful shutdown waits forever.
            inner.closing.send_replace(true);
        })
        .await;
    ticker.abort();
    result
}

async fn tick(handle: SimHandle) {
    let mut closing = handle.inner.closing.subscribe();
    let mut interval = tokio::time::interval(handle.inner.cfg.tick.max(Duration::from_millis(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once; warmup already covered "now".
    interval.tick().await;
    loop {
        tokio::select! {
            _ = closing.wait_for(|c| *c) => return,
            _ = interval.tick() => handle.step(),
        }
    }
}

/// A simulator served on a bound address (see `start`). Dropping it aborts the server task.
pub struct RunningSim {
    pub addr: SocketAddr,
    pub handle: SimHandle,
    task: Option<JoinHandle<std::io::Result<()>>>,
    stop: Option<oneshot::Sender<()>>,
}

/// Convenience for tests and demo: bind `addr` (e.g. 127.0.0.1:0), spawn serve, return the bound address.
pub async fn start(cfg: SimConfig, addr: SocketAddr) -> std::io::Result<RunningSim> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let handle = build(cfg);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(handle.clone(), listener, async move {
        // A dropped sender also means stop.
        let _ = stopped.await;
    }));
    Ok(RunningSim {
        addr,
        handle,
        task: Some(task),
        stop: Some(stop),
    })
}

impl RunningSim {
    /// `http://addr`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting, end open streams and wait for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// True on every `n`th count; `Some(0)` never fires.
fn every(n: Option<u64>, count: u64) -> bool {
    n.is_some_and(|n| n > 0 && count.is_multiple_of(n))
}

/// Wall-clock now in unix milliseconds: used for timestamps only.
use crate::clock::unix_ms as now_ms;
