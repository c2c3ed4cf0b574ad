//! Rule engine benchmark: the cost of one evaluation of 100 alert rules over 200 markets, the time from a limit-breaching delta on the wire to the alert in a running sidecar, and the memory that takes.
//!
//! Run with `cargo bench --bench rules`. Three measurements, one table at the end:
//!   1. `Engine::evaluate` over a series store filled through the real fold and stream paths
//!      (`AccountCell` + `Session`, as the sidecar does): one account with `MARKETS` positions,
//!      limits, fills, realized profit/loss, a user stream and `EVENTS_STREAMS` book streams
//!      (lag histograms, heartbeats, reconnects). The rules are the shipped `rules/*.yml` plus
//!      generated ones up to `RULES`. The history is warmed over `WARM_MINUTES` simulated minutes
//!      at one evaluation a second with the counters moving; then up to `ITERS` evaluations after
//!      one position change (`evaluate_changes(t)`, the runner's pass after an event: the rules
//!      reading what changed), and up to `ITERS` timer
//!      ticks with every group due (`evaluate(t, true)`), timed one by one, each phase stopping
//!      after `ENGINE_SECS`.
//!   2. A real `Sidecar` against a scripted exchange on 127.0.0.1 with the same rules and
//!      markets: up to `BREACHES` times (stopping after `SIDECAR_SECS`), a delta takes one market
//!      over its inventory limit and the time from its write to the socket until the alerts the
//!      rule engine publishes
//!      (`RulesHandle::notifiable`, what the notifier routes; woken by `alert_changes`) show
//!      `OcxInventoryLimitBreached` firing is recorded, then a delta back under it and the time
//!      until it is resolved. Events are isolated: each waits until the previous evaluation is at
//!      least `SPACING_MS` and 15 times its own duration past, so the runner's `MAX_DUTY` spacing
//!      (evaluations take at most 10% of a core under sustained load) never delays one.
//!      `SIDECAR_WARM_SECS` first sends fills for that long, so the sidecar's history is as full
//!      as a running one's (by default its history is only as old as the run).
//!   3. VmRSS of this process after (2), and the rule history the engine holds.
//!
//! (2) runs first, in a fresh process, so (3) is not inflated by (1)'s store. The defaults keep
//! a run near 90s on two cores; with evaluations costing tens of ms (see the table), that is a
//! few hundred evaluations and a few dozen breaches. For the full counts:
//! `ITERS=1000 ENGINE_SECS=1000 WARM_MINUTES=10` and `BREACHES=1000 SIDECAR_SECS=100000`.
//! Other overrides: `MARKETS`, `RULES` (0: the shipped rules alone), `EVENTS_STREAMS`,
//! `SPACING_MS`, `SKIP_ENGINE=1`, `SKIP_SIDECAR=1`, `SHOW_ALERTS=1` (the alerts held after the
//! warm-up, by rule).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ocx_sentinel::account::{AccountCell, SharedAccount};
use ocx_sentinel::app::Sidecar;
use ocx_sentinel::clock::unix_ms as now_ms;
use ocx_sentinel::config::{
    AccountSettings, Auth, Limits, ReconcileSettings, RuleSettings, Settings, StreamSettings,
};
use ocx_sentinel::rules::alert::AlertState;
use ocx_sentinel::rules::engine::Engine;
use ocx_sentinel::rules::file::{RuleFile, parse_str};
use ocx_sentinel::rules::runner::{MAX_DUTY, RuleSource};
use ocx_sentinel::source::session::{Now, Session, StreamKind};
use ocx_sentinel::source::sse::{SseDecoder, SseItem};
use ocx_sentinel::state::Account;
use ocx_sentinel::telemetry::store::Handle;
use ocx_sentinel::telemetry::{ReconnectReason, StreamMetrics, Telemetry, names};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

const ACC: &str = "bench";
const LIMIT_ALERT: &str = "OcxInventoryLimitBreached";
/// The inventory limit of every market without its own.
const INVENTORY_LIMIT: f64 = 10.0;
const NOTIONAL_LIMIT: f64 = 400.0;

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1" || v == "true")
}

fn env<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy)]
struct Config {
    markets: usize,
    rules: usize,
    events_streams: usize,
    warm_minutes: u64,
    iters: usize,
    /// Each engine phase stops after this long (and at least `MIN_SAMPLES`), whatever `iters`.
    engine_budget: Duration,
    breaches: usize,
    /// The breach loop stops after this long (and at least `MIN_SAMPLES` breaches).
    sidecar_budget: Duration,
    /// Real seconds of fills through the sidecar before the breaches, to grow its history.
    sidecar_warm: Duration,
    spacing: Duration,
}

impl Config {
    fn from_env() -> Config {
        let markets = env("MARKETS", 200usize).max(10);
        Config {
            markets,
            rules: env("RULES", 100),
            events_streams: env("EVENTS_STREAMS", 20usize).min(markets),
            warm_minutes: env("WARM_MINUTES", 6),
            iters: env("ITERS", 1_000usize).max(1),
            engine_budget: Duration::from_secs(env("ENGINE_SECS", 15)),
            breaches: env("BREACHES", 1_000usize).max(1),
            sidecar_budget: Duration::from_secs(env("SIDECAR_SECS", 30)),
            sidecar_warm: Duration::from_secs(env("SIDECAR_WARM_SECS", 0)),
            spacing: Duration::from_millis(env("SPACING_MS", 5)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The account: markets, limits, positions, books, and the wire text that moves them.

fn market(i: usize) -> String {
    format!("M{i:03}-PERP")
}

/// One account's exchange-side state, and the wire text for its snapshots and deltas.
struct World {
    markets: Vec<String>,
    qty: Vec<f64>,
    realized: Vec<f64>,
    /// Book mid in cents, per market (books exist for the first `events_streams` markets).
    mid_c: Vec<i64>,
    limits: Limits,
    trade_n: u64,
    rng: fastrand::Rng,
}

impl World {
    fn new(n: usize, books: usize) -> World {
        let mut rng = fastrand::Rng::with_seed(7);
        let markets: Vec<String> = (0..n).map(market).collect();
        // Mostly small positions (within +-5, half of the limit), a few set near or over it.
        let mut qty: Vec<f64> = (0..n)
            .map(|_| ((rng.f64() + rng.f64() - 1.0) * 50.0).round() / 10.0)
            .collect();
        let mut limits = Limits::default();
        limits.inventory.default = Some(INVENTORY_LIMIT);
        // Notional limits where the book is streamed (a notional limit without a book is
        // `OcxNotionalLimitUnchecked`, a configuration the shipped rules warn about).
        for i in 0..books {
            limits.notional.per_market.insert(market(i), NOTIONAL_LIMIT);
        }
        // A few markets with their own limit, a few near the default, one chronically over it.
        limits.inventory.per_market.insert(market(1), 20.0);
        limits.inventory.per_market.insert(market(2), 3.0);
        qty[2] = 1.0;
        for (i, q) in [(n / 5, 9.0), (2 * n / 5, -9.2), (3 * n / 5, 8.7)] {
            qty[i] = q;
        }
        qty[n - 1] = 11.0;
        World {
            mid_c: (0..n).map(|i| 5_000 + 200 * i as i64).collect(),
            realized: vec![0.0; n],
            qty,
            markets,
            limits,
            trade_n: 0,
            rng,
        }
    }

    fn limit(&self, i: usize) -> f64 {
        self.limits
            .inventory
            .get(&self.markets[i])
            .unwrap_or(INVENTORY_LIMIT)
    }

    /// The market that is over its limit all along.
    fn chronic(&self) -> usize {
        self.markets.len() - 1
    }

    fn position(&self, i: usize) -> String {
        let q = self.qty[i];
        let side = if q < 0.0 { "short" } else { "long" };
        format!(
            r#"{{"id":"p-{m}","marketId":"{m}","side":"{side}","quantity":"{:.1}","entryPrice":"{:.2}","realizedPnl":"{:.2}","status":"open"}}"#,
            q.abs(),
            self.mid_c[i] as f64 / 100.0,
            self.realized[i],
            m = self.markets[i],
        )
    }

    fn user_snapshot(&self) -> String {
        let positions: Vec<String> = (0..self.markets.len()).map(|i| self.position(i)).collect();
        format!(r#"{{"positions":[{}],"trades":[]}}"#, positions.join(","))
    }

    fn position_delta(&self, i: usize) -> String {
        format!(
            r#"{{"positions":{{"upserts":[{}],"removedIds":[]}}}}"#,
            self.position(i)
        )
    }

    /// A fill in a random market that moves its position (a random walk within +-5, away from
    /// the markets whose level is set) and its realized PnL.
    fn fill_delta(&mut self, at_ms: i64) -> String {
        let n = self.markets.len();
        let special =
            |i: usize| i <= 2 || i == n / 5 || i == 2 * n / 5 || i == 3 * n / 5 || i == n - 1;
        let mut i = self.rng.usize(0..n);
        while special(i) {
            i = self.rng.usize(0..n);
        }
        let buy = self.rng.bool();
        let step = (self.rng.u32(1..6) as f64) / 10.0;
        let q = self.qty[i] + if buy { step } else { -step };
        self.qty[i] = (q.clamp(-5.0, 5.0) * 10.0).round() / 10.0;
        self.realized[i] += (self.rng.f64() - 0.45) * 10.0;
        self.trade_n += 1;
        // A maker account: a taker fill (a hedge, a late cancel) is rare.
        let liquidity = if self.rng.u32(0..1_000) == 0 {
            "taker"
        } else {
            "maker"
        };
        let trade = format!(
            r#"{{"id":"t-{}","marketId":"{}","side":"{}","price":"{:.2}","quantity":"{step:.1}","liquidity":"{liquidity}","createdAt":"{at_ms}"}}"#,
            self.trade_n,
            self.markets[i],
            if buy { "buy" } else { "sell" },
            self.mid_c[i] as f64 / 100.0,
        );
        format!(
            r#"{{"trades":[{trade}],"positions":{{"upserts":[{}],"removedIds":[]}}}}"#,
            self.position(i)
        )
    }

    fn book_snapshot(&self, i: usize) -> String {
        let (bid, ask) = (self.mid_c[i] - 5, self.mid_c[i] + 5);
        format!(
            r#"{{"positions":[],"trades":[],"orderbook":{{"marketId":"{}","bids":[{{"price":"{}","size":"1"}}],"asks":[{{"price":"{}","size":"1"}}]}}}}"#,
            self.markets[i],
            cents(bid),
            cents(ask)
        )
    }

    /// The touch moves by a few cents: the new levels set, the old ones removed.
    fn book_delta(&mut self, i: usize) -> String {
        let old = self.mid_c[i];
        let mv = self.rng.i64(1..6) * if self.rng.bool() { 1 } else { -1 };
        self.mid_c[i] = old + mv;
        let new = self.mid_c[i];
        format!(
            r#"{{"orderbook":{{"marketId":"{}","bids":[{{"price":"{}","size":"1"}},{{"price":"{}","size":"0"}}],"asks":[{{"price":"{}","size":"1"}},{{"price":"{}","size":"0"}}]}}}}"#,
            self.markets[i],
            cents(new - 5),
            cents(old - 5),
            cents(new + 5),
            cents(old + 5)
        )
    }
}

fn cents(c: i64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

/// One SSE event in the exchange's envelope; `engineTs` in unix ms.
fn envelope(snapshot: bool, seq: u64, engine_ms: i64, payload: &str) -> String {
    let (kind, ty) = if snapshot {
        ("snapshot", "PerpStreamSnapshot")
    } else {
        ("delta", "PerpStreamDelta")
    };
    format!(
        "event: {kind}\ndata: {{\"eventId\":\"e{seq}\",\"eventType\":\"{ty}\",\"eventSeq\":{seq},\"engineTs\":\"{engine_ms}\",\"sourceTs\":null,\"payload\":{payload}}}\n\n"
    )
}

// ---------------------------------------------------------------------------------------------
// The rules: the shipped files, plus generated ones in the same spirit.

fn shipped_rule_paths() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("rules/ is readable")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    paths.sort();
    paths
}

fn shipped_rules() -> Vec<RuleFile> {
    shipped_rule_paths()
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).expect("shipped rule file is readable");
            parse_str(&text, &p.display().to_string()).expect("shipped rules load")
        })
        .collect()
}

fn rule_count(files: &[RuleFile]) -> usize {
    files
        .iter()
        .flat_map(|f| &f.groups)
        .map(|g| g.rules.len())
        .sum()
}

/// One generated rule: `(record name or None for an alert, expr, for)`.
type Gen = (Option<String>, String, &'static str);

/// Rule `k` of the generated set: the templates in turn, each variant with other thresholds,
/// ranges or markets. Per-market thresholds, `group_left` joins against the limits,
/// `increase`/`rate` over 1m to 1h, `histogram_quantile` over the lag histograms, aggregations,
/// recording rules and alerts on what they record.
fn generated_rule(k: usize, markets: usize) -> Gen {
    const TEMPLATES: usize = 31;
    let (t, v) = (k % TEMPLATES, k / TEMPLATES);
    let f = v as f64;
    let alert = |expr: String, for_: &'static str| (None, expr, for_);
    match t {
        0 => alert(
            format!(
                "abs(ocx_position_quantity) > on(account, market) group_left ocx_inventory_limit * {}",
                0.7 + 0.1 * f
            ),
            "0s",
        ),
        1 => alert(
            format!(
                "abs(ocx_position_quantity) / on(account, market) group_left ocx_inventory_limit > {}",
                0.5 + 0.1 * f
            ),
            "1m",
        ),
        2 => alert(
            format!(
                "ocx_position_notional > on(account, market) group_left ocx_notional_limit * {}",
                0.8 + 0.05 * f
            ),
            "0s",
        ),
        3 => alert(format!("ocx_position_quantity > {}", 5.0 + f), "30s"),
        4 => alert(format!("ocx_position_quantity < -{}", 5.0 + f), "30s"),
        5 => alert(
            format!(
                r#"abs(ocx_position_quantity{{market="{}"}}) > {}"#,
                market((7 * v + 3) % markets),
                3.0 + f
            ),
            "0s",
        ),
        6 => alert(
            format!("abs(ocx_position_unrealized_pnl) > {}", 50.0 * (f + 1.0)),
            "1m",
        ),
        7 => alert(
            format!("ocx_position_realized_pnl < -{}", 100.0 * (f + 1.0)),
            "0s",
        ),
        8 => alert(
            format!(
                "sum by (account, market) (increase(ocx_fills_total[5m])) > {}",
                20.0 + 10.0 * f
            ),
            "0s",
        ),
        9 => alert(
            format!(
                "sum by (account, market, side) (rate(ocx_fills_total[1m])) > {}",
                0.2 + 0.1 * f
            ),
            "1m",
        ),
        10 => alert(
            format!(
                "sum by (account) (rate(ocx_fill_notional_total[1m])) > {}",
                100.0 * (f + 1.0)
            ),
            "0s",
        ),
        11 => alert(
            format!(
                "sum by (account, market) (increase(ocx_realized_loss_total[5m])) > {}",
                30.0 * (f + 1.0)
            ),
            "0s",
        ),
        12 => alert(
            format!(
                "sum by (account) (increase(ocx_realized_loss_total[1h]) - increase(ocx_realized_profit_total[1h])) > {}",
                1000.0 * (f + 1.0)
            ),
            "0s",
        ),
        13 => alert(
            format!(
                r#"sum by (account, market) (rate(ocx_fills_total{{liquidity="taker"}}[5m])) / sum by (account, market) (rate(ocx_fills_total[5m])) > {}"#,
                0.3 + 0.1 * f
            ),
            "5m",
        ),
        14 => alert(
            format!(
                "time() - ocx_last_fill_timestamp_seconds > {} and on(account, market) abs(ocx_position_quantity) > 1",
                300.0 * (f + 1.0)
            ),
            "0s",
        ),
        15 => alert(
            format!(
                "sum by (account, market) (increase(ocx_fill_quantity_total[5m])) > on(account, market) group_left ocx_inventory_limit * {}",
                0.5 + f
            ),
            "0s",
        ),
        16 => alert(
            format!(
                "histogram_quantile(0.99, sum by (le, account) (rate(ocx_stream_event_lag_seconds_bucket[5m]))) > {}",
                0.25 * (f + 1.0)
            ),
            "5m",
        ),
        17 => alert(
            format!(
                "histogram_quantile(0.9, sum by (le, account, stream) (rate(ocx_stream_event_lag_seconds_bucket[1m]))) > {}",
                0.05 * (f + 1.0)
            ),
            "1m",
        ),
        18 => alert(
            format!(
                "sum by (account, stream) (rate(ocx_stream_event_lag_seconds_sum[5m])) / sum by (account, stream) (rate(ocx_stream_event_lag_seconds_count[5m])) > {}",
                0.02 * (f + 1.0)
            ),
            "0s",
        ),
        19 => alert(
            format!(
                "sum by (account, stream) (increase(ocx_stream_reconnects_total[5m])) > {}",
                1.0 + f
            ),
            "0s",
        ),
        20 => alert(
            format!(
                "time() - ocx_stream_last_event_timestamp_seconds > {} and ocx_stream_up == 1",
                10.0 * (f + 1.0)
            ),
            "0s",
        ),
        21 => alert(format!("count by (account) (ocx_stream_up == 0) > {v}"), "1m"),
        22 => alert(
            format!(
                r#"sum by (account, stream) (rate(ocx_stream_events_total{{type="delta"}}[1m])) > {}"#,
                5.0 * (f + 1.0)
            ),
            "0s",
        ),
        23 => (
            Some(format!("account:position_quantity_abs:sum_v{v}")),
            "sum by (account) (abs(ocx_position_quantity))".to_string(),
            "0s",
        ),
        24 => (
            Some(format!("account:inventory_usage:max_v{v}")),
            "max by (account) (abs(ocx_position_quantity) / on(account, market) group_left ocx_inventory_limit)".to_string(),
            "0s",
        ),
        25 => (
            Some(format!("account_side_liquidity:fills:rate1m_v{v}")),
            "sum by (account, side, liquidity) (rate(ocx_fills_total[1m]))".to_string(),
            "0s",
        ),
        26 => alert(
            format!(
                "account:inventory_usage:max_v{v} > {}",
                0.9 + 0.05 * f
            ),
            "0s",
        ),
        27 => alert(
            format!("max by (account) (abs(ocx_position_quantity)) > {}", 7.0 + f),
            "0s",
        ),
        28 => alert(
            format!(
                "count by (account) (abs(ocx_position_quantity) > on(account, market) group_left ocx_inventory_limit * 0.5) > {}",
                20 + 5 * v
            ),
            "0s",
        ),
        29 => alert(
            format!(
                "avg without (market) (abs(ocx_position_quantity)) > {}",
                5.0 + f
            ),
            "0s",
        ),
        _ => alert(
            format!(
                "avg by (account) (ocx_position_notional) > {}",
                200.0 * (f + 1.0)
            ),
            "0s",
        ),
    }
}

/// `n` generated rules as one rule file, ten rules a group (the first group on a 1s interval).
fn generated_rules_yaml(n: usize, markets: usize) -> String {
    let mut out = String::from("# Generated by benches/rules.rs.\ngroups:\n");
    for k in 0..n {
        if k % 10 == 0 {
            out.push_str(&format!("  - name: bench-{}\n", k / 10));
            if k == 0 {
                out.push_str("    interval: 1s\n");
            }
            out.push_str("    rules:\n");
        }
        let (record, expr, for_) = generated_rule(k, markets);
        match record {
            Some(name) => {
                out.push_str(&format!("      - record: {name}\n        expr: '{expr}'\n"));
            }
            None => {
                out.push_str(&format!(
                    "      - alert: BenchRule{k:03}\n        expr: '{expr}'\n        for: {for_}\n        labels:\n          severity: ticket\n        annotations:\n          summary: '{{{{ $labels.account }}}} {{{{ $labels.market }}}} at {{{{ $value | humanize }}}}'\n"
                ));
            }
        }
    }
    out
}

/// The shipped files plus as many generated rules as make `cfg.rules`.
fn all_rules(cfg: &Config) -> (Vec<RuleFile>, String, usize) {
    let mut files = shipped_rules();
    let shipped = rule_count(&files);
    let yaml = generated_rules_yaml(cfg.rules.saturating_sub(shipped), cfg.markets);
    files.push(parse_str(&yaml, "bench/generated.yml").expect("generated rules load"));
    (files, yaml, shipped)
}

// ---------------------------------------------------------------------------------------------
// Measurements.

#[derive(Clone, Copy)]
struct Stats {
    n: usize,
    mean: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

fn stats(samples: &[Duration]) -> Stats {
    let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    let n = us.len();
    let at = |p: f64| us[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    Stats {
        n,
        mean: us.iter().sum::<f64>() / n as f64,
        p50: at(0.50),
        p99: at(0.99),
        max: us[n - 1],
    }
}

/// A field of `/proc/self/status` (or `thread-self`), in its own unit; Linux only.
fn proc_status(file: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(file).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn rss_mib() -> Option<f64> {
    proc_status("/proc/self/status", "VmRSS").map(|kb| kb as f64 / 1024.0)
}

/// This thread's time on a CPU and time spent waiting for one, from Linux's
/// `/proc/thread-self/schedstat` (ns). The kernel brings the running thread's figure up to date
/// at each scheduler tick and switch, so it resolves a few ms: good for means over many
/// evaluations, not for one.
fn sched() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
    Some((it.next()??, it.next()??))
}

/// Wall time of `f`, plus this thread's CPU time and wait for a CPU meanwhile (when known).
fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration, Option<(Duration, Duration)>) {
    let before = sched();
    let started = Instant::now();
    let r = f();
    let wall = started.elapsed();
    let sched = before.zip(sched()).map(|((c0, w0), (c1, w1))| {
        (
            Duration::from_nanos(c1.saturating_sub(c0)),
            Duration::from_nanos(w1.saturating_sub(w0)),
        )
    });
    (r, wall, sched)
}

/// Mean CPU time and mean wait for a CPU over timed runs, in µs.
fn sched_means(s: &[Option<(Duration, Duration)>]) -> Option<(f64, f64)> {
    let known: Vec<(Duration, Duration)> = s.iter().flatten().copied().collect();
    if known.is_empty() || known.len() < s.len() {
        return None;
    }
    let n = known.len() as f64;
    let cpu = known.iter().map(|k| k.0.as_secs_f64()).sum::<f64>() * 1e6 / n;
    let wait = known.iter().map(|k| k.1.as_secs_f64()).sum::<f64>() * 1e6 / n;
    Some((cpu, wait))
}

/// Fewest samples a phase takes, whatever its time budget.
const MIN_SAMPLES: usize = 20;

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// One stream connection of the in-process fold: its protocol state and series.
struct Feed {
    session: Session,
    metrics: StreamMetrics,
    decoder: SseDecoder,
    items: Vec<SseItem>,
    seq: u64,
}

impl Feed {
    fn new(t: &Telemetry, kind: StreamKind) -> Feed {
        let metrics = t.stream(ACC, kind.label(), kind.market());
        Feed {
            session: Session::new(kind),
            metrics,
            decoder: SseDecoder::default(),
            items: Vec::new(),
            seq: 0,
        }
    }

    /// The SSE text through the decoder and the session, into the account and the series.
    fn feed(&mut self, text: &str, now_ms: i64, t0: i64, account: &SharedAccount) {
        let now = Now {
            unix_ms: now_ms,
            mono: Duration::from_millis((now_ms - t0).max(0).unsigned_abs()),
        };
        self.decoder.feed(text.as_bytes(), &mut self.items);
        for item in std::mem::take(&mut self.items) {
            let verdict = self.session.on_item(item, now, account, &mut self.metrics);
            assert_eq!(
                verdict,
                ocx_sentinel::source::session::Verdict::Continue,
                "the scripted stream is well-formed"
            );
        }
    }

    /// An event received at `now_ms`, stamped by the engine `lag_ms` earlier.
    fn event(&mut self, payload: &str, now_ms: i64, lag_ms: i64, t0: i64, acc: &SharedAccount) {
        self.seq += 1;
        let text = envelope(self.seq == 1, self.seq, now_ms - lag_ms, payload);
        self.feed(&text, now_ms, t0, acc);
    }
}

/// The in-process account of measurement 1 and its streams.
struct Fold {
    t0: i64,
    account: SharedAccount,
    user: Feed,
    books: Vec<(usize, Feed)>,
    world: World,
}

impl Fold {
    fn new(t: &Telemetry, cfg: &Config, t0: i64) -> Fold {
        let world = World::new(cfg.markets, cfg.events_streams);
        let mut metrics = t.account(ACC, 500);
        metrics.set_limits(world.limits.clone());
        let account = AccountCell::new(ACC, Account::new(100_000), metrics, &[], None);
        let mut fold = Fold {
            t0,
            account,
            user: Feed::new(t, StreamKind::User),
            books: (0..cfg.events_streams)
                .map(|i| {
                    let kind = StreamKind::Events { market: market(i) };
                    (i, Feed::new(t, kind))
                })
                .collect(),
            world,
        };
        let snap = fold.world.user_snapshot();
        fold.user.event(&snap, t0, 20, t0, &fold.account);
        for (i, b) in &mut fold.books {
            let snap = fold.world.book_snapshot(*i);
            b.event(&snap, t0, 20, t0, &fold.account);
        }
        fold
    }

    /// Event lag as the exchange's engine stamps it: mostly 5-40ms, now and then much more.
    fn lag(&mut self) -> i64 {
        if self.world.rng.u32(0..100) == 0 {
            self.world.rng.i64(200..800)
        } else {
            self.world.rng.i64(5..40)
        }
    }

    /// One simulated second ending at `end_ms`: five fills on the user stream, a book change
    /// on every events stream, heartbeats every 15s, a reconnect somewhere every minute.
    fn second(&mut self, end_ms: i64) {
        for j in 0..5 {
            let at = end_ms - 1_000 + 200 * j + 100;
            let payload = self.world.fill_delta(at);
            let lag = self.lag();
            self.user.event(&payload, at, lag, self.t0, &self.account);
        }
        for k in 0..self.books.len() {
            let at = end_ms - 500;
            let i = self.books[k].0;
            let payload = self.world.book_delta(i);
            let lag = self.lag();
            self.books[k]
                .1
                .event(&payload, at, lag, self.t0, &self.account);
            if (end_ms - self.t0) % 15_000 < 1_000 {
                self.books[k]
                    .1
                    .feed(":heartbeat\n\n", end_ms - 100, self.t0, &self.account);
            }
        }
        if (end_ms - self.t0) % 60_000 < 1_000 && !self.books.is_empty() {
            let k = self.world.rng.usize(0..self.books.len());
            self.books[k].1.metrics.reconnect(ReconnectReason::Eof);
        }
    }

    /// One position change (no fill): the quantity of a random ordinary market steps.
    fn one_position_change(&mut self, at_ms: i64) {
        let n = self.world.markets.len();
        let i = 3 + self.world.rng.usize(0..n - 4);
        let step = if self.world.rng.bool() { 0.1 } else { -0.1 };
        self.world.qty[i] = ((self.world.qty[i] + step).clamp(-5.0, 5.0) * 10.0).round() / 10.0;
        let payload = self.world.position_delta(i);
        let lag = self.lag();
        self.user
            .event(&payload, at_ms, lag, self.t0, &self.account);
    }
}

struct EngineResult {
    per_event: Stats,
    /// Mean rules evaluated by a pass after one position change.
    per_event_rules: f64,
    /// Of those, the mean evaluated over only the market that changed.
    per_event_scoped: f64,
    per_tick: Stats,
    /// Mean CPU time and wait for a CPU per evaluation (µs), per phase.
    per_event_sched: Option<(f64, f64)>,
    per_tick_sched: Option<(f64, f64)>,
    groups: usize,
    rules: usize,
    shipped: usize,
    store_series: usize,
    history_samples: usize,
    active_alerts: (usize, usize),
    /// Mean seconds per tick of each rule, with its name and whether it reads a range.
    rule_seconds: Vec<(String, f64, bool)>,
    /// Mean seconds per tick outside the rules (reading the store into the history, pruning).
    observe_seconds: f64,
    warm_seconds: f64,
}

fn engine_bench(cfg: &Config) -> EngineResult {
    let t = Telemetry::new();
    let t0 = now_ms() / 1000 * 1000;
    let mut fold = Fold::new(&t, cfg, t0);
    let (files, _, shipped) = all_rules(cfg);
    let rules = rule_count(&files);
    let mut engine = Engine::new(&t, Duration::from_secs(1), "http://127.0.0.1:9000");
    // The clock the runner hands it, so each rule's and group's duration is measured as in the
    // sidecar (for the breakdown below; the bench times `evaluate` itself).
    engine.set_clock(|| Instant::now().into_std());
    engine.load(files, t0);
    let groups = engine.groups().len();
    let check = |pass: &ocx_sentinel::rules::engine::Pass| {
        assert!(
            pass.failures.is_empty(),
            "rule failures: {:?}",
            pass.failures
        );
    };

    // History: WARM_MINUTES at one evaluation a second, the account and streams moving.
    let warm = Instant::now();
    let mut clock = t0;
    for _ in 0..cfg.warm_minutes * 60 {
        clock += 1_000;
        fold.second(clock);
        check(&engine.evaluate(clock, true));
    }
    let warm_seconds = warm.elapsed().as_secs_f64();
    if flag("SHOW_ALERTS") {
        let mut by_rule: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (rule, a) in engine.alerts() {
            *by_rule
                .entry((rule.name.clone(), format!("{:?}", a.state)))
                .or_default() += 1;
        }
        println!("active alerts after warm-up, by rule: {by_rule:?}");
    }

    // Per event: one position change, then every group evaluated at once, 50ms apart.
    let (mut per_event, mut per_event_sched) = (Vec::new(), Vec::new());
    let mut per_event_rules = 0;
    let mut per_event_scoped = 0;
    let phase = Instant::now();
    for i in 0..cfg.iters {
        if i >= MIN_SAMPLES && phase.elapsed() > cfg.engine_budget {
            break;
        }
        clock += 50;
        fold.one_position_change(clock);
        let (pass, wall, sched) = timed(|| engine.evaluate_changes(clock));
        per_event.push(wall);
        per_event_sched.push(sched);
        per_event_rules += pass.rules;
        per_event_scoped += pass.scoped;
        check(&pass);
    }

    // Per tick: a second of activity, then the timer with every group due.
    let (mut per_tick, mut per_tick_sched) = (Vec::new(), Vec::new());
    let mut rule_seconds: Vec<f64> = vec![0.0; rules];
    let mut observe_seconds = 0.0;
    let phase = Instant::now();
    for i in 0..cfg.iters {
        if i >= MIN_SAMPLES && phase.elapsed() > cfg.engine_budget {
            break;
        }
        clock += 1_000;
        fold.second(clock);
        let (pass, wall, sched) = timed(|| engine.evaluate(clock, true));
        per_tick.push(wall);
        per_tick_sched.push(sched);
        assert_eq!(pass.groups, groups, "every group is due");
        check(&pass);
        let mut k = 0;
        let mut in_groups = 0.0;
        for (gi, g) in engine.groups().iter().enumerate() {
            in_groups += g.last_seconds;
            for ri in 0..g.group.rules.len() {
                rule_seconds[k] += engine.status(gi, ri).map_or(0.0, |s| s.eval_seconds);
                k += 1;
            }
        }
        observe_seconds += pass.seconds - in_groups;
    }
    let names: Vec<(String, bool)> = engine
        .groups()
        .iter()
        .flat_map(|g| {
            g.group
                .rules
                .iter()
                .map(|r| (r.name().to_string(), !r.expr().max_range().is_zero()))
        })
        .collect();
    let n = per_tick.len() as f64;
    let active = engine
        .alerts()
        .fold((0, 0), |(p, f), (_, a)| match a.state {
            AlertState::Pending => (p + 1, f),
            AlertState::Firing => (p, f + 1),
            _ => (p, f),
        });
    EngineResult {
        per_event_rules: per_event_rules as f64 / per_event.len() as f64,
        per_event_scoped: per_event_scoped as f64 / per_event.len() as f64,
        per_event: stats(&per_event),
        per_tick: stats(&per_tick),
        per_event_sched: sched_means(&per_event_sched),
        per_tick_sched: sched_means(&per_tick_sched),
        groups,
        rules,
        shipped,
        store_series: t.registry().families().iter().map(|f| f.series.len()).sum(),
        history_samples: engine.history_samples(),
        active_alerts: active,
        rule_seconds: names
            .into_iter()
            .zip(rule_seconds)
            .map(|((name, range), s)| (name, s / n, range))
            .collect(),
        observe_seconds: observe_seconds / n,
        warm_seconds,
    }
}

// ---------------------------------------------------------------------------------------------
// The sidecar against a scripted exchange.

/// Read a request's head; `None` when the peer left first.
async fn request_path(sock: &mut TcpStream) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let mut req = Vec::new();
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&req);
    head.split_whitespace().nth(1).map(str::to_string)
}

/// When the user stream's latest event was written to the socket: on loopback the bytes are in
/// the sidecar's receive queue when `write` returns, so this is the event's arrival there (the
/// bench's own hop, from its loop to the exchange task, is left out).
type WrittenAt = Arc<Mutex<Option<std::time::Instant>>>;

/// An exchange on 127.0.0.1: the (first) user stream writes what the bench sends, when it
/// sends it, and notes when each event was written; each events stream sends its book
/// snapshot, then a heartbeat every 15s.
async fn scripted_exchange(
    books: Vec<(String, String)>,
) -> (String, mpsc::UnboundedSender<String>, WrittenAt) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let user = Arc::new(Mutex::new(Some(rx)));
    let written: WrittenAt = Arc::default();
    let books: Arc<BTreeMap<String, String>> = Arc::new(books.into_iter().collect());
    let at = written.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let _ = sock.set_nodelay(true);
            tokio::spawn(serve_stream(sock, user.clone(), books.clone(), at.clone()));
        }
    });
    (base, tx, written)
}

type UserFeed = Arc<Mutex<Option<mpsc::UnboundedReceiver<String>>>>;

async fn serve_stream(
    mut sock: TcpStream,
    user: UserFeed,
    books: Arc<BTreeMap<String, String>>,
    written: WrittenAt,
) {
    let Some(path) = request_path(&mut sock).await else {
        return;
    };
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
    if sock.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    const HEARTBEAT: Duration = Duration::from_secs(15);
    if path.starts_with("/perps/stream/user") {
        let rx = user.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut rx) = rx else {
            // A second user connection (none is expected): held open and silent.
            let _ = sock.read(&mut [0u8; 1]).await;
            return;
        };
        loop {
            // Heartbeats only on an idle connection, as the exchange sends them.
            let text = match tokio::time::timeout(HEARTBEAT, rx.recv()).await {
                Ok(Some(text)) => text,
                Ok(None) => return,
                Err(_) => ":heartbeat\n\n".to_string(),
            };
            // Noted just before the write (a few µs early), so it is there before the sidecar
            // can have read the event.
            #[allow(clippy::disallowed_methods)] // the bench's clock, in this process
            let now = std::time::Instant::now();
            *written.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
            if sock.write_all(text.as_bytes()).await.is_err() {
                return;
            }
        }
    }
    let market = path
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("marketId="))
        .unwrap_or("");
    let Some(snapshot) = books.get(market) else {
        return;
    };
    let snap = envelope(true, 1, now_ms(), snapshot);
    if sock.write_all(snap.as_bytes()).await.is_err() {
        return;
    }
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        if sock.write_all(b":heartbeat\n\n").await.is_err() {
            return;
        }
    }
}

fn sidecar_settings(api_base: &str, cfg: &Config, world: &World, rules: RuleSource) -> Settings {
    Settings {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        stream: StreamSettings {
            heartbeat_timeout: Duration::from_secs(45),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            backoff_reset_after: Duration::from_secs(30),
            max_event_bytes: 4 * 1024 * 1024,
        },
        dedup_capacity: 100_000,
        // Every market labelled (the default of 500 folds the rest into `other`, where a
        // breach of one market is not its own alert).
        max_markets: cfg.markets.max(500),
        reconcile: ReconcileSettings {
            enabled: false,
            ..ReconcileSettings::default()
        },
        accounts: vec![AccountSettings {
            name: ACC.into(),
            api_base: api_base.to_string(),
            auth: Auth::None,
            markets: (0..cfg.events_streams).map(market).collect(),
            open_only: true,
            interval_ms: Some(100),
            depth: Some(25),
            limits: world.limits.clone(),
        }],
        data_dir: None,
        alerting: None,
        api_token: None,
        forward: Default::default(),
        web: Default::default(),
        tracing: None,
        rules: RuleSettings {
            source: rules,
            // The timer must not be what finds a breach: only the change-driven evaluation.
            evaluation_interval: Duration::from_secs(3600),
        },
    }
}

struct LatencyResult {
    fire: Stats,
    resolve: Stats,
    pass: Stats,
    gap: Stats,
    rule_evaluations: f64,
    passes: f64,
    changes_sent: usize,
    rules: usize,
    breaches: usize,
    history_at_start: usize,
    history_gauge: f64,
    history_samples: usize,
    rss_before: Option<f64>,
    rss_after: Option<f64>,
    run_seconds: f64,
    store_series: usize,
}

fn counter_sum(t: &Telemetry, name: &str) -> Vec<(String, f64)> {
    t.registry()
        .select(name)
        .into_iter()
        .map(|s| {
            let v = match s.handle {
                Handle::Counter(c) => c.get(),
                Handle::Gauge(g) => g.get(),
                Handle::Histogram(h) => h.count() as f64,
            };
            (s.labels.get("rule_group").unwrap_or("").to_string(), v)
        })
        .collect()
}

/// Whether the alert is firing in what the rule engine has published: the notifier's view, read
/// without the engine's lock (a pass holds it until its last group, after the alert's group has
/// published).
fn firing(sidecar: &Sidecar, m: &str) -> bool {
    sidecar.rules.notifiable().borrow().iter().any(|a| {
        a.labels.get("alertname").map(String::as_str) == Some(LIMIT_ALERT)
            && a.labels.get("market").map(String::as_str) == Some(m)
            && !a.resolved()
    })
}

/// The latest evaluation pass's duration, change-driven or timer.
fn last_pass(sidecar: &Sidecar) -> Duration {
    let e = sidecar.rules.engine();
    Duration::from_secs_f64(e.last_pass_seconds())
}

/// Waits until `cond` holds after an alert change, and returns when this task was woken for
/// the change it holds after: the time the alert reached a task waiting for it, without the
/// bench's own look for it (a scan of every alert published, 0.1–0.3 ms with hundreds held,
/// which counted as latency before).
async fn await_alert(
    rx: &mut watch::Receiver<u64>,
    what: &str,
    cond: impl Fn() -> bool,
) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("the rule engine stopped while waiting for {what}"),
            Err(_) => panic!("{what}: no alert change within 5s"),
        }
        let woken = Instant::now();
        if cond() {
            return woken;
        }
    }
}

async fn latency_bench(cfg: &Config) -> LatencyResult {
    let rss_before = rss_mib();
    let mut world = World::new(cfg.markets, cfg.events_streams);
    let (files, yaml, _) = all_rules(cfg);
    let rules = rule_count(&files);
    let dir = std::env::temp_dir().join(format!("ocx-bench-rules-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let generated = dir.join("generated.yml");
    std::fs::write(&generated, yaml).expect("write generated rules");
    let mut paths = shipped_rule_paths();
    paths.push(generated);

    let books = (0..cfg.events_streams)
        .map(|i| (market(i), world.book_snapshot(i)))
        .collect();
    let (api_base, exchange, written) = scripted_exchange(books).await;
    let settings = sidecar_settings(&api_base, cfg, &world, RuleSource::Paths(paths));
    let listener = TcpListener::bind(settings.listen)
        .await
        .expect("bind loopback");
    let sidecar = Sidecar::start_on(settings, listener)
        .await
        .expect("sidecar starts");
    let loaded = sidecar
        .rules
        .engine()
        .groups()
        .iter()
        .map(|g| g.group.rules.len())
        .sum::<usize>();
    assert_eq!(loaded, rules, "the sidecar loaded every rule");

    let mut seq = 1;
    exchange
        .send(envelope(true, seq, now_ms(), &world.user_snapshot()))
        .expect("exchange running");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sidecar
        .streams
        .iter()
        .all(|s| s.ready.load(std::sync::atomic::Ordering::Relaxed))
    {
        assert!(
            Instant::now() < deadline,
            "the streams never got their snapshots"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Optionally, fills for a while (five a second, as in the engine's warm-up), so the history
    // the rules read back over is not just the run's own.
    let warm = Instant::now();
    while warm.elapsed() < cfg.sidecar_warm {
        seq += 1;
        let text = envelope(false, seq, now_ms(), &world.fill_delta(now_ms()));
        exchange.send(text).expect("exchange running");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the start-up evaluations (snapshots, first pending alerts) settle, and the duty-cycle
    // spacing of the last one pass.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settle = cfg.spacing.max(last_pass(&sidecar).mul_f64(1.5 / MAX_DUTY));
    tokio::time::sleep(settle).await;
    let history_at_start = sidecar.rules.engine().history_samples();
    let evals_before: f64 = counter_sum(&sidecar.telemetry, names::RULE_EVALUATIONS)
        .iter()
        .map(|(_, v)| v)
        .sum();

    let chronic = world.chronic();
    let mut rx = sidecar.rules.alert_changes();
    let (mut fire, mut resolve, mut passes, mut gaps) = (vec![], vec![], vec![], vec![]);
    let started = Instant::now();
    for b in 0..cfg.breaches {
        if b >= MIN_SAMPLES && started.elapsed() > cfg.sidecar_budget {
            break;
        }
        let i = 3 + b % (cfg.markets - 4);
        debug_assert_ne!(i, chronic);
        let m = world.markets[i].clone();
        let before = world.qty[i];
        for over in [true, false] {
            world.qty[i] = if over { world.limit(i) + 1.5 } else { before };
            seq += 1;
            let text = envelope(false, seq, now_ms(), &world.position_delta(i));
            rx.borrow_and_update();
            *written.lock().unwrap_or_else(|p| p.into_inner()) = None;
            exchange.send(text).expect("exchange running");
            let woken = if over {
                await_alert(&mut rx, &format!("{m} firing"), || firing(&sidecar, &m)).await
            } else {
                await_alert(&mut rx, &format!("{m} resolved"), || !firing(&sidecar, &m)).await
            };
            let took = woken.into_std().saturating_duration_since(
                written
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .expect("the exchange wrote the delta"),
            );
            if over {
                fire.push(took);
            } else {
                resolve.push(took);
            }
            // Isolated events: past the runner's duty-cycle spacing of this evaluation.
            let pass = last_pass(&sidecar);
            passes.push(pass);
            let gap = cfg.spacing.max(pass.mul_f64(1.5 / MAX_DUTY));
            gaps.push(gap);
            tokio::time::sleep(gap).await;
        }
    }
    let run_seconds = started.elapsed().as_secs_f64();
    let by_group = counter_sum(&sidecar.telemetry, names::RULE_EVALUATIONS);
    let rule_evaluations: f64 = by_group.iter().map(|(_, v)| v).sum::<f64>() - evals_before;
    let history_gauge = counter_sum(&sidecar.telemetry, names::RULE_HISTORY_SAMPLES)
        .first()
        .map_or(f64::NAN, |(_, v)| *v);
    let history_samples = sidecar.rules.engine().history_samples();
    let store_series = sidecar
        .telemetry
        .registry()
        .families()
        .iter()
        .map(|f| f.series.len())
        .sum();
    let rss_after = rss_mib();
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    LatencyResult {
        breaches: fire.len(),
        rules,
        fire: stats(&fire),
        resolve: stats(&resolve),
        pass: stats(&passes),
        gap: stats(&gaps),
        rule_evaluations,
        passes: rule_evaluations / rules as f64,
        changes_sent: fire.len() + resolve.len(),
        history_at_start,
        history_gauge,
        history_samples,
        rss_before,
        rss_after,
        run_seconds,
        store_series,
    }
}

// ---------------------------------------------------------------------------------------------

fn row(name: &str, s: &Stats, sched: Option<(f64, f64)>) {
    let (cpu, wait) = sched.map_or(("-".to_string(), "-".to_string()), |(c, w)| {
        (format!("{c:.0}"), format!("{w:.0}"))
    });
    println!(
        "| {name:<56} | {:>5} | {:>9.0} | {:>9.0} | {:>9.0} | {:>9.0} | {cpu:>9} | {wait:>9} |",
        s.n, s.mean, s.p50, s.p99, s.max
    );
}

fn main() {
    let cfg = Config::from_env();
    // Alert transitions are logged as in the binary (`info`), formatted and then discarded.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .init();
    let load_start = loadavg();
    println!(
        "rules bench: {} markets, rules/*.yml plus generated rules up to {} in all, {} events streams; load average at start {load_start}",
        cfg.markets, cfg.rules, cfg.events_streams
    );

    let latency = (!flag("SKIP_SIDECAR")).then(|| {
        println!(
            "sidecar: up to {} breaches (or {}s), each fired and resolved...",
            cfg.breaches,
            cfg.sidecar_budget.as_secs()
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(latency_bench(&cfg))
    });
    let engine = (!flag("SKIP_ENGINE")).then(|| {
        println!(
            "engine: warming {} simulated minutes, then up to {} evaluations (or {}s) of each kind...",
            cfg.warm_minutes,
            cfg.iters,
            cfg.engine_budget.as_secs()
        );
        engine_bench(&cfg)
    });
    let load_end = loadavg();

    println!();
    println!(
        "| {:<56} | {:>5} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} |",
        "wall time, µs (CPU and wait for a CPU: means, µs)",
        "n",
        "mean",
        "p50",
        "p99",
        "max",
        "CPU",
        "waited"
    );
    println!(
        "|{:-<58}|{:-<7}|{:-<11}|{:-<11}|{:-<11}|{:-<11}|{:-<11}|{:-<11}|",
        "", "", "", "", "", "", "", ""
    );
    if let Some(e) = &engine {
        row(
            &format!(
                "engine: pass after a position change ({:.0} rules, {:.0} one market)",
                e.per_event_rules, e.per_event_scoped
            ),
            &e.per_event,
            e.per_event_sched,
        );
        row(
            &format!("engine: evaluate(t, true), all {} groups due", e.groups),
            &e.per_tick,
            e.per_tick_sched,
        );
    }
    if let Some(l) = &latency {
        row(
            "sidecar: delta on the socket -> alert firing (published)",
            &l.fire,
            None,
        );
        row(
            "sidecar: delta on the socket -> alert resolved",
            &l.resolve,
            None,
        );
        row(
            "sidecar: the latest evaluation pass after it fired",
            &l.pass,
            None,
        );
        row(
            "sidecar: pause before the next event (isolation)",
            &l.gap,
            None,
        );
    }
    println!();
    if let Some(e) = &engine {
        println!(
            "engine: {} rules ({} shipped from rules/*.yml, {} generated) in {} groups over {} series; warm-up: {} simulated minutes at 1 evaluation/s took {:.1}s",
            e.rules,
            e.shipped,
            e.rules - e.shipped,
            e.groups,
            e.store_series,
            cfg.warm_minutes,
            e.warm_seconds,
        );
        println!(
            "engine: {} history samples at the end; {} alerts pending, {} firing; ranges longer than the warm-up (15m, 1h, 1d) were not full, so those rules cost more in a long-running sidecar",
            e.history_samples, e.active_alerts.0, e.active_alerts.1,
        );
        let total: f64 = e.rule_seconds.iter().map(|(_, s, _)| s).sum::<f64>() + e.observe_seconds;
        println!(
            "engine: where a tick's time goes (mean of {}, {:.0} µs by the engine's own clock): reading the store into the history {:.0} µs ({:.0}%); the rules:",
            e.per_tick.n,
            total * 1e6,
            e.observe_seconds * 1e6,
            100.0 * e.observe_seconds / total
        );
        for (label, range) in [("with a range selector", true), ("instant only", false)] {
            let (n, sum) = e
                .rule_seconds
                .iter()
                .filter(|r| r.2 == range)
                .fold((0, 0.0), |(n, sum), r| (n + 1, sum + r.1));
            println!(
                "    {:>8.0} µs {:>5.1}%  the {n} rules {label}",
                sum * 1e6,
                100.0 * sum / total
            );
        }
        let mut by_cost = e.rule_seconds.clone();
        by_cost.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (name, s, _) in by_cost.iter().take(8) {
            println!(
                "    {:>8.0} µs {:>5.1}%  {name}",
                s * 1e6,
                100.0 * s / total
            );
        }
    }
    if let Some(l) = &latency {
        let target = if l.fire.p99 < 1_000.0 {
            "met"
        } else {
            "NOT met"
        };
        println!(
            "sidecar: p99 delta-to-firing {:.0} µs, target < 1000 µs: {target}. Isolated events: each written only after max({} ms, 15x the last pass), so the runner's MAX_DUTY = {MAX_DUTY} spacing never delayed one",
            l.fire.p99,
            cfg.spacing.as_millis()
        );
        println!(
            "sidecar: {} breaches in {:.1}s; ocx_sentinel_rule_evaluations_total rose by {:.0} = {:.1} passes of all {} rules for {} account changes sent; {} series in its store",
            l.breaches,
            l.run_seconds,
            l.rule_evaluations,
            l.passes,
            l.rules,
            l.changes_sent,
            l.store_series
        );
        let mib = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.1} MiB"));
        println!(
            "memory: VmRSS {} before the sidecar started, {} after the latency run; ocx_sentinel_rule_history_samples {} (engine: {}; {} when the breaches began: the sidecar's history is only as old as the run)",
            mib(l.rss_before),
            mib(l.rss_after),
            l.history_gauge,
            l.history_samples,
            l.history_at_start
        );
    }
    println!("load average: {load_start} at start, {load_end} at end (2 cores)");
}
