//! The simulator's HTTP surface: routes, the auth and fault gate, and one SSE body per stream
//! connection, written byte for byte (axum's `Event::comment` would write `: heartbeat`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::feed::{self, Delta, Kind, Scope, View};
use super::{SimHandle, every, now_ms};

/// Stream sequence numbers of successive connections start this far apart, so a reconnect never
/// reuses the previous connection's ids.
const SEQ_STRIDE: u64 = 1_000_000;
/// Trades returned by `GET /perps/trades`.
const REST_TRADES: usize = 200;
/// The REST reads: what `rest_status` answers and `SimHandle::rest_requests` counts.
pub(super) const REST_PATHS: [&str; 5] = [
    "/perps/positions",
    "/perps/trades",
    "/perps/orders/open",
    "/perps/balances",
    "/portfolio/me",
];

const INDEX: &str = "OCX simulator\n\n\
GET /perps/stream/user?openOnly=true&intervalMs=250                 SSE: fills and positions, all markets\n\
GET /perps/stream/events?marketId=BTC-PERP&depth=25&intervalMs=500  SSE: one market's fills, positions and book\n\
GET /perps/positions                                                open positions\n\
GET /perps/trades                                                   recent fills (last 200, newest last)\n\
GET /perps/orders/open                                              resting orders\n\
GET /perps/balances                                                 equity and margin\n\
GET /portfolio/me                                                   equity, pnl, margin and positions\n";

pub(super) fn router(handle: SimHandle) -> Router {
    Router::new()
        .route("/", get(|| async { INDEX }))
        .route("/perps/stream/user", get(user_stream))
        .route("/perps/stream/events", get(events_stream))
        .route("/perps/positions", get(positions))
        .route("/perps/trades", get(trades))
        .route("/perps/orders/open", get(open_orders))
        .route("/perps/balances", get(balances))
        .route("/portfolio/me", get(portfolio))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint") })
        .layer(middleware::from_fn_with_state(handle.clone(), gate))
        .with_state(handle)
}

/// Counts every request, then applies the `http_status` and `rest_status` faults and the API key
/// to `/perps/*` and `/portfolio/*`.
async fn gate(State(h): State<SimHandle>, req: Request, next: Next) -> Response {
    h.inner.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path();
    if let Some(i) = REST_PATHS.iter().position(|p| *p == path) {
        h.inner.rest_requests[i].fetch_add(1, Ordering::Relaxed);
    }
    let stream = path.starts_with("/perps/stream/");
    if stream || path.starts_with("/perps/") || path.starts_with("/portfolio/") {
        let fault = {
            let shared = h.lock();
            let f = &shared.faults;
            let rest = || {
                f.rest_status.filter(|_| {
                    !stream
                        && (f.rest_status_endpoints.is_empty()
                            || f.rest_status_endpoints.iter().any(|e| e == path))
                })
            };
            f.http_status
                .or_else(rest)
                .map(|status| (status, f.retry_after_secs))
        };
        if let Some((status, retry_after)) = fault {
            return fault_response(status, retry_after);
        }
        if let Some(key) = &h.inner.cfg.api_key
            && !authorized(req.headers(), key)
        {
            return error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "missing or invalid API key",
            );
        }
    }
    next.run(req).await
}

/// `x-api-key: KEY`, `Authorization: Bearer KEY`, or any cookie whose value is KEY.
fn authorized(headers: &HeaderMap, key: &str) -> bool {
    let key = key.as_bytes();
    if headers
        .get_all("x-api-key")
        .iter()
        .any(|v| v.as_bytes() == key)
    {
        return true;
    }
    let bearer = headers.get_all(header::AUTHORIZATION).iter().any(|v| {
        let v = v.as_bytes();
        v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") && v[7..].trim_ascii() == key
    });
    if bearer {
        return true;
    }
    headers.get_all(header::COOKIE).iter().any(|v| {
        v.as_bytes().split(|b| *b == b';').any(|pair| {
            let pair = pair.trim_ascii();
            pair.iter().position(|b| *b == b'=').is_some_and(|eq| {
                let value = pair[eq + 1..].trim_ascii();
                let value = value
                    .strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(value);
                value == key
            })
        })
    })
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": code, "message": message });
    (status, axum::Json(body)).into_response()
}

fn fault_response(status: u16, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (code, message) = match status.as_u16() {
        401 => ("UNAUTHORIZED", "missing or invalid API key"),
        403 => ("FORBIDDEN", "key lacks the required scope"),
        429 => ("RATE_LIMITED", "rate limit exceeded"),
        503 => ("UPSTREAM_UNAVAILABLE", "upstream degraded; retry shortly"),
        500 => ("INTERNAL_ERROR", "internal server error"),
        _ => ("SIMULATED_FAULT", "simulated fault"),
    };
    let retry_after = match status {
        StatusCode::TOO_MANY_REQUESTS => Some(retry_after.unwrap_or(1)),
        StatusCode::SERVICE_UNAVAILABLE => retry_after,
        _ => None,
    };
    let mut body = serde_json::json!({ "error": code, "message": message });
    if let (Some(secs), StatusCode::TOO_MANY_REQUESTS) = (retry_after, status) {
        body["retryAfterMs"] = serde_json::json!(secs * 1000);
    }
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

type Params = Query<HashMap<String, String>>;

/// An optional numeric query parameter, clamped into `min..=max`; a non-number is an error message.
fn number(
    q: &HashMap<String, String>,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, String> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(|n| n.clamp(min, max))
            .map_err(|_| format!("{name} must be a non-negative integer")),
    }
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
}

async fn user_stream(State(h): State<SimHandle>, Query(q): Params) -> Response {
    match number(&q, "intervalMs", 250, 100, 5000) {
        Ok(ms) => open_stream(h, Scope::User, Duration::from_millis(ms)),
        Err(message) => bad_request(&message),
    }
}

async fn events_stream(State(h): State<SimHandle>, Query(q): Params) -> Response {
    let Some(id) = q.get("marketId") else {
        return bad_request("marketId is required");
    };
    let Some(market) = h.inner.cfg.markets.iter().position(|m| m == id) else {
        return bad_request("unknown marketId");
    };
    let params = number(&q, "depth", 25, 1, 250)
        .and_then(|d| Ok((d, number(&q, "intervalMs", 500, 100, 5000)?)));
    match params {
        Ok((depth, ms)) => {
            let scope = Scope::Market {
                market,
                depth: depth as usize,
            };
            open_stream(h, scope, Duration::from_millis(ms))
        }
        Err(message) => bad_request(&message),
    }
}

fn open_stream(h: SimHandle, scope: Scope, every: Duration) -> Response {
    h.inner.stream_connections.fetch_add(1, Ordering::Relaxed);
    let opened = h.inner.streams_opened.fetch_add(1, Ordering::Relaxed);
    // Streams with the same interval tick at the same instants (multiples of it since the first
    // stream opened), as an exchange broadcasting one delta to every subscriber does. With a
    // phase per connection, two clients of one stream saw the same change up to a whole interval
    // apart, which is what the end-to-end check's side-by-side measured instead of the sidecar.
    // The snapshot still goes out at once (`Conn::next`).
    let now = Instant::now();
    let epoch = *h.inner.stream_epoch.get_or_init(|| now);
    let periods = now.duration_since(epoch).as_nanos() / every.as_nanos().max(1) + 1;
    let first = epoch + every * u32::try_from(periods).unwrap_or(u32::MAX);
    let mut interval = tokio::time::interval_at(first, every);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let conn = Conn {
        closing: h.inner.closing.subscribe(),
        heartbeat: h
            .inner
            .cfg
            .heartbeat_interval
            .max(Duration::from_millis(10)),
        seq: h.inner.seq_base + opened * SEQ_STRIDE,
        handle: h,
        scope,
        interval,
        view: None,
        opening: true,
        events: 0,
        deltas: 0,
        last_write: Instant::now(),
    };
    let body = futures::stream::unfold(conn, |mut conn| async move {
        conn.next()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), conn))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// One stream connection: what it has sent and what it owes.
struct Conn {
    handle: SimHandle,
    scope: Scope,
    interval: Interval,
    closing: watch::Receiver<bool>,
    heartbeat: Duration,
    /// None until the snapshot went out.
    view: Option<View>,
    /// True until the first event slot, which comes at once rather than on an aligned tick.
    opening: bool,
    /// eventSeq of the next real event.
    seq: u64,
    /// Events written (snapshot, deltas, injected errors and malformed ones); heartbeats excluded.
    events: u64,
    deltas: u64,
    last_write: Instant,
}

enum Wake {
    Closing,
    Tick,
    Heartbeat,
}

enum Poll {
    Send(String),
    Idle,
    Close,
}

impl Conn {
    /// The next chunk of the body, or None to end it.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            // Copy the three knobs out rather than clone `Faults`, which holds strings.
            let (drop_every, silent_after, stop_heartbeats) = {
                let f = &self.handle.lock().faults;
                (f.drop_every, f.silent_after, f.stop_heartbeats)
            };
            if drop_every.is_some_and(|n| self.events >= n) {
                return None;
            }
            let silent = silent_after.is_some_and(|n| self.events >= n);
            let heartbeats = !silent && !stop_heartbeats;
            let heartbeat_at = self.last_write + self.heartbeat;
            let wake = if std::mem::take(&mut self.opening) && !silent && !*self.closing.borrow() {
                // The snapshot is owed at once, not at the first aligned tick.
                Wake::Tick
            } else {
                tokio::select! {
                    biased;
                    _ = self.closing.wait_for(|c| *c) => Wake::Closing,
                    _ = self.interval.tick() => Wake::Tick,
                    _ = tokio::time::sleep_until(heartbeat_at), if heartbeats => Wake::Heartbeat,
                }
            };
            match wake {
                Wake::Closing => return None,
                Wake::Heartbeat => {
                    self.last_write = Instant::now();
                    return Some(Bytes::from_static(feed::HEARTBEAT_FRAME.as_bytes()));
                }
                Wake::Tick if silent => {}
                Wake::Tick => match self.poll() {
                    Poll::Send(text) => {
                        self.last_write = Instant::now();
                        return Some(Bytes::from(text));
                    }
                    Poll::Close => return None,
                    Poll::Idle => {}
                },
            }
        }
    }

    /// Build the event this connection owes now, if any, and apply the event-slot faults.
    fn poll(&mut self) -> Poll {
        let inner = &self.handle.inner;
        let fmt = inner.cfg.timestamps;
        let shared = self.handle.lock();
        let (kind, payload, view) = match &self.view {
            None => {
                let (payload, view) = feed::snapshot(
                    &shared.world,
                    &shared.log,
                    self.scope,
                    inner.cfg.recent_trades,
                    fmt,
                );
                (Kind::Snapshot, payload, view)
            }
            Some(view) => match feed::delta(&shared.world, &shared.log, self.scope, view, fmt) {
                // Too far behind to catch up: close, the client reconnects to a fresh snapshot.
                Delta::Lagged => return Poll::Close,
                Delta::Nothing(view) => {
                    self.view = Some(view);
                    return Poll::Idle;
                }
                Delta::Changes(payload, view) => (Kind::Delta, payload, view),
            },
        };
        let source_ms = shared.world.last_step_ms;
        let f = &shared.faults;
        let (error_every, error_retryable, malformed_every, skip_seq_every) = (
            f.error_every,
            f.error_retryable,
            f.malformed_every,
            f.skip_seq_every,
        );
        drop(shared);
        self.events += 1;
        // An injected event takes this slot; the real one stays owed and goes out next time.
        if every(error_every, self.events) {
            return Poll::Send(feed::error_frame(error_retryable));
        }
        if every(malformed_every, self.events) {
            return Poll::Send(feed::MALFORMED_FRAME.to_string());
        }
        if kind == Kind::Delta {
            self.deltas += 1;
            if every(skip_seq_every, self.deltas) {
                self.seq += 1;
            }
        }
        let seq = self.seq;
        self.seq += 1;
        self.view = Some(view);
        Poll::Send(feed::frame(kind, seq, now_ms(), source_ms, fmt, &payload))
    }
}

async fn positions(State(h): State<SimHandle>) -> Response {
    let shared = h.lock();
    let world = &shared.world;
    let rest = feed::rest_positions(world, shared.faults.rest_position_offset.as_ref());
    let body: Vec<_> = rest
        .iter()
        .map(|p| feed::rest_position_json(world, p))
        .collect();
    json(feed::to_json(&body))
}

async fn trades(State(h): State<SimHandle>) -> Response {
    let fmt = h.inner.cfg.timestamps;
    let body = feed::to_json(&feed::recent_trades(
        &h.lock().world,
        Scope::User,
        REST_TRADES,
        fmt,
        true,
    ));
    json(body)
}

async fn open_orders(State(h): State<SimHandle>) -> Response {
    let body = feed::to_json(&feed::open_orders(&h.lock().world));
    json(body)
}

async fn balances(State(h): State<SimHandle>) -> Response {
    let shared = h.lock();
    let world = &shared.world;
    let rest = feed::rest_positions(world, shared.faults.rest_position_offset.as_ref());
    json(feed::to_json(&feed::account(world, &rest).balances))
}

async fn portfolio(State(h): State<SimHandle>) -> Response {
    let shared = h.lock();
    let world = &shared.world;
    let rest = feed::rest_positions(world, shared.faults.rest_position_offset.as_ref());
    let account = feed::account(world, &rest);
    json(feed::to_json(&feed::portfolio(world, &rest, &account)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn auth_accepts_the_three_forms_and_nothing_else() {
        let key = "ocx_sk_test";
        assert!(authorized(&headers(&[("x-api-key", key)]), key));
        assert!(authorized(
            &headers(&[("authorization", "Bearer ocx_sk_test")]),
            key
        ));
        assert!(authorized(
            &headers(&[("authorization", "bearer ocx_sk_test")]),
            key
        ));
        assert!(authorized(
            &headers(&[("cookie", "a=b; astra_session=ocx_sk_test")]),
            key
        ));
        assert!(authorized(
            &headers(&[("cookie", "x=1"), ("cookie", "s=\"ocx_sk_test\"")]),
            key
        ));
        assert!(!authorized(&headers(&[]), key));
        assert!(!authorized(&headers(&[("x-api-key", "wrong")]), key));
        assert!(!authorized(
            &headers(&[("authorization", "Basic ocx_sk_test")]),
            key
        ));
        assert!(!authorized(&headers(&[("cookie", "ocx_sk_test=1")]), key));
        assert!(!authorized(
            &headers(&[("cookie", "s=ocx_sk_test_longer")]),
            key
        ));
    }

    #[test]
    fn every_counts_and_zero_disables() {
        assert!(every(Some(3), 6));
        assert!(!every(Some(3), 7));
        assert!(!every(Some(0), 0));
        assert!(!every(None, 5));
    }
}
