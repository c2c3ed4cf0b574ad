//! Reconciliation: the pull endpoints as a cross-check on the stream, one task per account.
//!
//! The exchange's page ends with "Reconcile with pull endpoints": the stream is push-first, and a
//! careful market maker checks it against `/perps/positions`, `/perps/trades`,
//! `/perps/orders/open` and `/perps/balances`. This task does so on an interval and after every
//! re-sync of the user stream, with the stream's credentials, and never blocks the stream: it
//! holds the account lock only to compare and to count recovered fills.
//!
//! Architecture invariant: a failing endpoint only delays that endpoint (its own backoff, or
//! `Retry-After` on 429); the others and the stream carry on.

pub mod compare;
pub mod rest;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, RETRY_AFTER};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::account::SharedAccount;
use crate::config::{Auth, Endpoint, ReconcileSettings};
use crate::model::Trade;
use crate::source::backoff::Backoff;
use crate::source::{authorize, error_chain, parse_retry_after, wire};
use crate::state::positions_by_market;
use crate::telemetry::reconcile::{Mismatch, ReconcileMetrics, RunResult};
use compare::DriftTracker;

/// Backoff for a failing endpoint: from 1s, doubling, up to 5 minutes.
const ERROR_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Everything one account's reconciler needs.
pub struct ReconcileTask {
    pub account: String,
    pub api_base: String,
    pub auth: Auth,
    pub settings: ReconcileSettings,
    pub client: reqwest::Client,
    pub shared: SharedAccount,
    pub metrics: ReconcileMetrics,
    /// Notified by the user stream each time it applies a snapshot (a connect or re-sync).
    pub resync: Arc<Notify>,
    /// The user stream is live: comparing before its first snapshot would report everything
    /// as drift.
    pub user_ready: Arc<AtomicBool>,
    /// Markets the account quotes (its events streams): their open-orders series exist even at 0,
    /// so "no resting quotes on one side" is a value a rule can see, not a missing series.
    pub quoted_markets: Vec<String>,
}

/// Why a fetch failed.
#[derive(Debug)]
struct FetchError {
    status: Option<u16>,
    retry_after: Option<Duration>,
    message: String,
}

/// What runs remember of earlier runs.
#[derive(Default)]
struct Memory {
    drift: DriftTracker,
    /// Keys of undated REST trades the stream had not delivered in the last run: an undated
    /// trade counts as missed only when a second run still finds it undelivered.
    undated_unseen: HashSet<String>,
    /// Why the previous trades run refused recovery, if it did: a refusal is logged as a warning
    /// when it starts or changes reason, not on every run while it lasts.
    last_refusal: Option<compare::Refusal>,
    /// Keys of the missing trades of the last run refused for `missing_and_extra`: a later run
    /// still missing one of them is refused for the same reason.
    refused_missing: HashSet<String>,
}

/// A trade's identity for the undated-trade memory: its id, else its content.
fn trade_key(t: &Trade) -> String {
    match &t.id {
        Some(id) => id.to_string(),
        None => format!(
            "{}|{}|{}|{}|{}",
            t.market,
            t.side.as_str(),
            t.price.normalize(),
            t.quantity.normalize(),
            t.liquidity.as_str()
        ),
    }
}

struct EndpointState {
    backoff: Backoff,
    not_before: Option<Instant>,
}

fn unix_now() -> (f64, i64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs_f64(), d.as_millis() as i64)
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

impl ReconcileTask {
    async fn fetch(&mut self, ep: Endpoint) -> Result<String, FetchError> {
        let url = format!("{}{}", self.api_base, ep.path());
        let started = Instant::now();
        let req = authorize(
            self.client
                .get(&url)
                .header(ACCEPT, "application/json")
                .timeout(self.settings.timeout),
            &self.auth,
        );
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.metrics
                    .request(ep.name(), None, started.elapsed().as_secs_f64());
                return Err(FetchError {
                    status: None,
                    retry_after: None,
                    message: error_chain(&e),
                });
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = resp.text().await;
        self.metrics.request(
            ep.name(),
            Some(status.as_u16()),
            started.elapsed().as_secs_f64(),
        );
        match body {
            Ok(b) if status.is_success() => Ok(b),
            Ok(_) => Err(FetchError {
                status: Some(status.as_u16()),
                retry_after: if status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::SERVICE_UNAVAILABLE
                {
                    retry_after
                } else {
                    None
                },
                message: format!("HTTP {status}"),
            }),
            Err(e) => Err(FetchError {
                status: Some(status.as_u16()),
                retry_after: None,
                message: format!("reading the body: {e}"),
            }),
        }
    }

    /// Fetch and reconcile one endpoint. `Err` carries the fetch failure for scheduling.
    async fn run_endpoint(
        &mut self,
        ep: Endpoint,
        memory: &mut Memory,
    ) -> Result<RunResult, FetchError> {
        let body = self.fetch(ep).await?;
        let result = match ep {
            Endpoint::Positions => self.positions(&body, &mut memory.drift),
            Endpoint::Trades => self.trades(&body, memory),
            Endpoint::OrdersOpen => self.orders(&body),
            Endpoint::Balances | Endpoint::Portfolio => self.balances(ep, &body),
        };
        Ok(result)
    }

    /// A parsed list body: unreadable items counted; an unreadable body logged and counted.
    fn read_list<T>(
        &mut self,
        ep: Endpoint,
        parsed: Result<(Vec<T>, u32), wire::WireError>,
    ) -> Option<Vec<T>> {
        match parsed {
            Ok((list, skipped)) => {
                self.metrics.unreadable(ep.name(), u64::from(skipped));
                Some(list)
            }
            Err(e) => {
                warn!(account = %self.account, endpoint = ep.path(), error = %e, "cannot read the body");
                self.metrics.unreadable(ep.name(), 1);
                None
            }
        }
    }

    fn positions(&mut self, body: &str, tracker: &mut DriftTracker) -> RunResult {
        let Some(list) = self.read_list(Endpoint::Positions, wire::parse_position_list(body))
        else {
            return RunResult::Error;
        };
        let rest = positions_by_market(&list);
        let stream: BTreeMap<String, Decimal> = self.shared.read(|account| {
            account
                .markets()
                .chain(rest.keys().map(String::as_str))
                .map(|m| {
                    let q = account
                        .market_position(m)
                        .map(|p| p.quantity)
                        .unwrap_or_default();
                    (m.to_string(), q)
                })
                .collect()
        });
        let (_, now_ms) = unix_now();
        let settle_ms = self.settings.settle.as_millis() as i64;
        let report = tracker.compare_at(&rest, &stream, now_ms, settle_ms);
        let floats = |v: &[(String, Decimal)]| -> Vec<(String, f64)> {
            v.iter().map(|(m, d)| (m.clone(), f(*d))).collect()
        };
        self.metrics.drift_observed(&floats(&report.drift));
        // The main gauge shows confirmed drift only: the instant reading flickers whenever a
        // fill is in flight between the two reads.
        self.metrics.drift(&floats(&report.confirmed_drift));
        self.metrics
            .mismatch(Mismatch::Position, report.confirmed.len() as u64);
        for (market, r, s) in &report.confirmed {
            warn!(
                account = %self.account,
                %market,
                rest = %r,
                stream = %s,
                "position differs between /perps/positions and the stream in two runs in a row"
            );
        }
        if report.drifted() {
            RunResult::Drift
        } else {
            RunResult::Ok
        }
    }

    fn trades(&mut self, body: &str, memory: &mut Memory) -> RunResult {
        let Some(list) = self.read_list(Endpoint::Trades, wire::parse_trade_list(body)) else {
            return RunResult::Error;
        };
        let (_, now_ms) = unix_now();
        // A fill the exchange just made may still be on its way down the stream.
        let settled_before = now_ms - self.settings.settle.as_millis() as i64;
        let undated_unseen = &memory.undated_unseen;
        let (missing, still_unseen) = self.shared.read(|account| {
            // Trades older than what the sidecar has watched predate it: not missed.
            let horizon = account.watch_start_ms();
            let mut still_unseen = HashSet::new();
            let mut keys = HashSet::new();
            let missing: Vec<Trade> = list
                .iter()
                .filter(|t| match (horizon, t.created_at_ms) {
                    (Some(h), Some(at)) => at >= h,
                    _ => true,
                })
                .filter(|t| match t.created_at_ms {
                    Some(at) => at <= settled_before,
                    None => {
                        if account.has_seen(t) {
                            return false;
                        }
                        let key = trade_key(t);
                        let second_sighting = undated_unseen.contains(&key);
                        still_unseen.insert(key);
                        second_sighting
                    }
                })
                .filter(|t| !account.has_seen(t) && keys.insert(trade_key(t)))
                .cloned()
                .collect();
            (missing, still_unseen)
        });
        memory.undated_unseen = still_unseen;
        let extra = self.shared.unlisted_stream_trades(&list);
        // The account reports each unlisted stream fill once, so the run after a refusal sees
        // the same missing trades without their extra counterparts: still the same suspect
        // listing, and it must stay refused rather than be recovered then.
        let carried = missing
            .iter()
            .any(|t| memory.refused_missing.contains(&trade_key(t)));
        let refused = compare::refuse_recovery(
            missing.len(),
            extra.len(),
            list.len(),
            self.settings.max_recovery_share,
            carried,
        );
        memory.refused_missing = match refused {
            Some(compare::Refusal::MissingAndExtra) => missing.iter().map(trade_key).collect(),
            _ => HashSet::new(),
        };
        // Between the read above and this, the stream may deliver a listed trade: the account's
        // dedup memory then skips it here, so it is still counted once.
        let (recovered, refused) = match refused {
            Some(reason) => {
                // What REST calls a trade, for the log: its id, else its content.
                let example = missing.first().map(trade_key).unwrap_or_default();
                (Vec::new(), Some((reason, missing.len(), example)))
            }
            None => (self.shared.apply_recovered(&missing, now_ms), None),
        };
        if let Some((reason, missing, rest_example)) = refused {
            // Every listed trade looking missed and every streamed one extra is what a listing
            // keyed differently from the stream looks like: recovering would count each fill
            // twice, and the mismatch counters would count the same fills as both.
            self.metrics.recovery_refused(reason.as_str(), 1);
            let news = memory.last_refusal != Some(reason);
            memory.last_refusal = Some(reason);
            let stream_example = extra.first().map(String::as_str).unwrap_or("");
            if news {
                warn!(
                    account = %self.account,
                    reason = reason.as_str(),
                    missing,
                    extra = extra.len(),
                    listed = list.len(),
                    max_share = self.settings.max_recovery_share,
                    rest_key_example = %rest_example,
                    unlisted_stream_fill_market = stream_example,
                    "/perps/trades and the stream seem to key trades differently: recovering nothing"
                );
            } else {
                debug!(account = %self.account, reason = reason.as_str(), missing, extra = extra.len(), "fill recovery still refused");
            }
            return RunResult::Drift;
        }
        memory.last_refusal = None;
        for market in &recovered {
            self.metrics.recovered(market);
        }
        self.metrics
            .mismatch(Mismatch::FillMissing, recovered.len() as u64);
        self.metrics
            .mismatch(Mismatch::FillExtra, extra.len() as u64);
        if !recovered.is_empty() {
            info!(
                account = %self.account,
                recovered = recovered.len(),
                "recovered fills listed by /perps/trades that the stream never delivered"
            );
        }
        if !extra.is_empty() {
            warn!(
                account = %self.account,
                count = extra.len(),
                "fills delivered by the stream are missing from /perps/trades"
            );
        }
        if recovered.is_empty() && extra.is_empty() {
            RunResult::Ok
        } else {
            RunResult::Drift
        }
    }

    fn orders(&mut self, body: &str) -> RunResult {
        match rest::open_orders(body) {
            Ok(c) => {
                self.metrics
                    .unreadable(Endpoint::OrdersOpen.name(), c.skipped);
                let mut counts = c.counts;
                let present: BTreeSet<(String, &str)> =
                    counts.iter().map(|(m, s, _)| (m.clone(), *s)).collect();
                for m in &self.quoted_markets {
                    for side in ["buy", "sell"] {
                        if !present.contains(&(m.clone(), side)) {
                            counts.push((m.clone(), side, 0));
                        }
                    }
                }
                self.metrics.open_orders(&counts);
                RunResult::Ok
            }
            Err(e) => {
                warn!(account = %self.account, error = %e, "cannot read /perps/orders/open");
                self.metrics.unreadable(Endpoint::OrdersOpen.name(), 1);
                RunResult::Error
            }
        }
    }

    fn balances(&mut self, ep: Endpoint, body: &str) -> RunResult {
        match rest::balances(body) {
            Ok(b) => {
                self.metrics.balances(&b);
                RunResult::Ok
            }
            Err(e) => {
                warn!(account = %self.account, endpoint = ep.path(), error = %e, "cannot read balances");
                self.metrics.unreadable(ep.name(), 1);
                RunResult::Error
            }
        }
    }
}

/// Run the reconciler until `shutdown` flips to true.
pub async fn run(mut task: ReconcileTask, mut shutdown: watch::Receiver<bool>) {
    let mut states: HashMap<Endpoint, EndpointState> = task
        .settings
        .endpoints
        .iter()
        .map(|e| {
            (
                *e,
                EndpointState {
                    backoff: Backoff::new(ERROR_BACKOFF_INITIAL, ERROR_BACKOFF_MAX),
                    not_before: None,
                },
            )
        })
        .collect();
    let mut memory = Memory::default();
    if task.settings.endpoints.contains(&Endpoint::Trades) {
        // Present at 0 from the start, so `increase()` sees the first refusal.
        for r in compare::Refusal::ALL {
            task.metrics.recovery_refused(r.as_str(), 0);
        }
    }
    let mut pending: BTreeSet<Endpoint> = BTreeSet::new();
    let mut tick = tokio::time::interval(task.settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let resync = task.resync.clone();
    loop {
        let ready = task.user_ready.load(Ordering::Relaxed);
        // A retry is of use only while the user stream is live. While it is not, owed endpoints
        // wait for its notification: a retry deadline already past would fire at once on every
        // turn and spin the loop for as long as the exchange stays down.
        let retry_at = if ready {
            pending
                .iter()
                .filter_map(|e| states.get(e).and_then(|s| s.not_before))
                .min()
        } else {
            None
        };
        tokio::select! {
            _ = tick.tick() => pending.extend(task.settings.endpoints.iter().copied()),
            // While the stream is down its next snapshot is what we wait for, whether or not
            // every re-sync also triggers a run.
            _ = resync.notified(), if task.settings.after_reconnect || !ready => {
                if task.settings.after_reconnect {
                    pending.extend(task.settings.endpoints.iter().copied());
                }
            }
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        if !task.user_ready.load(Ordering::Relaxed) {
            // Keep what is owed; the next snapshot's notification brings us back.
            continue;
        }
        let now = Instant::now();
        let due: Vec<Endpoint> = pending
            .iter()
            .copied()
            .filter(|e| {
                states
                    .get(e)
                    .and_then(|s| s.not_before)
                    .is_none_or(|t| t <= now)
            })
            .collect();
        for ep in due {
            let started = Instant::now();
            let outcome = tokio::select! {
                r = task.run_endpoint(ep, &mut memory) => r,
                _ = shutdown.changed() => return,
            };
            let (now_unix, _) = unix_now();
            let elapsed = started.elapsed().as_secs_f64();
            let Some(state) = states.get_mut(&ep) else {
                continue;
            };
            match outcome {
                Ok(result) => {
                    state.backoff.reset();
                    state.not_before = None;
                    pending.remove(&ep);
                    // An unreadable body is an error run too, but retrying at once would read
                    // the same body: it waits for the next interval like a success.
                    task.metrics.run(ep.name(), result, elapsed, now_unix);
                }
                Err(e) => {
                    task.metrics
                        .run(ep.name(), RunResult::Error, elapsed, now_unix);
                    if ep == Endpoint::Portfolio && matches!(e.status, Some(401 | 403 | 404)) {
                        // `/portfolio/me` comes from the second doc set and may not exist, or not
                        // for API keys: read it where reachable, and stop asking where not.
                        info!(
                            account = %task.account,
                            status = e.status,
                            "/portfolio/me is not reachable with these credentials; not asking again"
                        );
                        task.settings
                            .endpoints
                            .retain(|x| *x != Endpoint::Portfolio);
                        pending.remove(&ep);
                        continue;
                    }
                    let backoff = state.backoff.next_delay(fastrand::f64());
                    // Retry-After is what the server asked for; backoff otherwise.
                    let wait = e
                        .retry_after
                        .unwrap_or(backoff)
                        .max(Duration::from_millis(100));
                    state.not_before = Some(Instant::now() + wait);
                    warn!(
                        account = %task.account,
                        endpoint = ep.path(),
                        status = e.status,
                        error = %e.message,
                        retry_in_ms = wait.as_millis() as u64,
                        "reconciliation request failed"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
