//! The stream source: SSE decoding, wire parsing, the per-connection session, backoff, and the IO loop that ties them.
//!
//! Architecture invariant: this loop never exits because the exchange misbehaves. Every failure
//! (refused connection, HTTP status, silence, gap, malformed data) ends in a counted reconnect.

pub mod backoff;
pub mod session;
pub mod sse;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, COOKIE, HeaderValue, RETRY_AFTER};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::account::SharedAccount;
use crate::config::{Auth, KeyHeader, StreamSettings};
use crate::telemetry::{Counter, ReconnectReason, StreamMetrics};
use crate::traces::Traces;
use crate::traces::log::in_span;
use backoff::Backoff;
use opentelemetry::trace::{SpanContext, SpanKind};
use session::{Now, Session, StreamKind, Verdict};
use sse::SseDecoder;

/// A server-sent `Retry-After` longer than this is treated as this: a typo upstream must not
/// silence monitoring for a day.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// Everything one stream task needs.
pub struct StreamTask {
    pub kind: StreamKind,
    pub url: String,
    pub auth: Auth,
    pub settings: StreamSettings,
    pub client: reqwest::Client,
    pub account: SharedAccount,
    pub metrics: StreamMetrics,
    /// Set while the stream is live (snapshot applied): drives `/-/ready`.
    pub ready: Arc<AtomicBool>,
    /// Notified when a connection applies its snapshot (connect or re-sync): the reconciler
    /// cross-checks right after, when drift is most likely.
    pub resync: Option<Arc<Notify>>,
    /// `ocx_stream_retry_capped_total` of this stream.
    pub retry_capped: Counter,
    /// A uniform random number in `[0, 1]` for the backoff's jitter: `fastrand::f64` in
    /// production, a constant in tests that need exact delays.
    pub jitter: fn() -> f64,
    /// Spans for connection attempts and events (a no-op when tracing is off).
    pub traces: Traces,
}

/// Build the stream URL for an account's API base.
pub fn stream_url(
    api_base: &str,
    kind: &StreamKind,
    open_only: bool,
    interval_ms: Option<u64>,
    depth: Option<u64>,
) -> String {
    let mut url = match kind {
        StreamKind::User => format!("{api_base}/perps/stream/user?"),
        StreamKind::Events { market } => {
            format!(
                "{api_base}/perps/stream/events?marketId={}&",
                encode(market)
            )
        }
    };
    if open_only {
        url.push_str("openOnly=true&");
    }
    if let Some(iv) = interval_ms {
        url.push_str(&format!("intervalMs={iv}&"));
    }
    if let (StreamKind::Events { .. }, Some(d)) = (kind, depth) {
        url.push_str(&format!("depth={d}&"));
    }
    url.pop();
    url
}

/// Percent-encode a query value (market ids are symbols, but be safe).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Attach credentials. The key goes only into headers, never into the URL, so it cannot
/// appear in any log line that names the URL.
pub fn authorize(req: reqwest::RequestBuilder, auth: &Auth) -> reqwest::RequestBuilder {
    let sensitive = |v: String| {
        HeaderValue::from_str(&v).map(|mut h| {
            h.set_sensitive(true);
            h
        })
    };
    match auth {
        Auth::None => req,
        Auth::ApiKey { key, header } => {
            let value = match header {
                KeyHeader::XApiKey => sensitive(key.expose().to_string()),
                KeyHeader::Bearer => sensitive(format!("Bearer {}", key.expose())),
            };
            match (value, header) {
                (Ok(v), KeyHeader::XApiKey) => req.header("x-api-key", v),
                (Ok(v), KeyHeader::Bearer) => req.header(AUTHORIZATION, v),
                // A key with bytes a header cannot carry: send nothing and let the server say
                // 401, which our log explains, rather than echo the key in an error.
                (Err(_), _) => req,
            }
        }
        Auth::Cookie { name, value } => match sensitive(format!("{name}={}", value.expose())) {
            Ok(v) => req.header(COOKIE, v),
            Err(_) => req,
        },
    }
}

/// How one connection ended.
struct Ended {
    reason: ReconnectReason,
    /// When the connection applied its snapshot and went live, if it did.
    live_since: Option<Instant>,
    retry_after: Option<Duration>,
    retry_floor: Option<Duration>,
    unauthorized: bool,
    /// The attempt's span, when sampled: the next attempt links to it.
    span: Option<SpanContext>,
}

fn now(start: Instant) -> Now {
    Now {
        unix_ms: crate::clock::unix_ms(),
        mono: start.elapsed(),
    }
}

/// An error and its causes on one line ("error sending request: connection refused"): reqwest's
/// own Display stops at the outermost layer.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// Parse `Retry-After`, capped at what the stream accepts (15 minutes).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    retry_after_delay(value, now).map(|d| d.min(MAX_RETRY_AFTER))
}

/// `Retry-After` as a delay from `now`: delta-seconds or an HTTP date (a past date is no delay).
/// Uncapped: each caller bounds it by what it can afford to wait.
pub fn retry_after_delay(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    Some(if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    })
}

/// Whether a connection that was live for `live_for` (None: never live) earns a fresh backoff.
/// Applying a snapshot is not enough: a server that sends one and hangs up would otherwise get
/// a reconnect storm with a full snapshot each time.
fn resets_backoff(live_for: Option<Duration>, reset_after: Duration) -> bool {
    live_for.is_some_and(|d| d >= reset_after)
}

/// Run one stream until `shutdown` flips to true: connect, decode, fold, and reconnect forever.
pub async fn run(mut task: StreamTask, mut shutdown: watch::Receiver<bool>) {
    let start = Instant::now();
    let mut backoff = Backoff::new(task.settings.backoff_initial, task.settings.backoff_max);
    let mut attempt: u64 = 0;
    // For the connection span: the previous attempt's span (linked) and the backoff waited.
    let mut previous: Option<SpanContext> = None;
    let mut waited = Duration::ZERO;
    loop {
        if *shutdown.borrow() {
            break;
        }
        attempt += 1;
        let ended = tokio::select! {
            e = connect_once(&mut task, start, Attempt { n: attempt, waited, previous: previous.take() }) => e,
            _ = shutdown.changed() => break,
        };
        previous = ended.span.clone();
        task.metrics.up.set(0.0);
        task.ready.store(false, Ordering::Relaxed);
        if *shutdown.borrow() {
            break;
        }
        task.metrics.reconnect(ended.reason);
        let live_for = ended.live_since.map(|t| t.elapsed());
        if resets_backoff(live_for, task.settings.backoff_reset_after) {
            backoff.reset();
        }
        let mut delay = backoff.next_delay((task.jitter)());
        if ended.unauthorized {
            // Credentials do not fix themselves quickly: keep trying, but at the cap.
            delay = backoff.cap();
        }
        if let Some(ra) = ended.retry_after {
            delay = delay.max(ra);
        }
        if let Some(floor) = ended.retry_floor {
            // The server's `retry:` is a floor, but never above our own cap: `retry: 86400000`
            // would otherwise silence monitoring for a day.
            let cap = backoff.cap();
            if floor > cap {
                task.retry_capped.increment(1);
                warn!(
                    stream = task.kind.label(),
                    market = task.kind.market().unwrap_or(""),
                    retry_ms = floor.as_millis() as u64,
                    cap_ms = cap.as_millis() as u64,
                    "the server's SSE retry exceeds stream.backoff_max: capped"
                );
            }
            delay = delay.max(floor.min(cap));
        }
        info!(
            stream = task.kind.label(),
            market = task.kind.market().unwrap_or(""),
            reason = ended.reason.as_str(),
            attempt,
            delay_ms = delay.as_millis() as u64,
            "stream disconnected, reconnecting"
        );
        waited = delay;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => break,
        }
    }
    task.metrics.up.set(0.0);
    task.ready.store(false, Ordering::Relaxed);
}

/// Which connection attempt this is, for its span.
struct Attempt {
    n: u64,
    /// The backoff waited before it.
    waited: Duration,
    /// The previous attempt's span, linked from this one's.
    previous: Option<SpanContext>,
}

async fn connect_once(task: &mut StreamTask, start: Instant, attempt: Attempt) -> Ended {
    let mut ended = Ended {
        reason: ReconnectReason::Io,
        live_since: None,
        retry_after: None,
        retry_floor: None,
        unauthorized: false,
        span: None,
    };
    let links: Vec<SpanContext> = attempt.previous.into_iter().collect();
    let mut span = task
        .traces
        .span("stream.connect", SpanKind::Client, None, &links);
    if span.is_recording() {
        // The URL carries the stream's parameters only: credentials travel in headers.
        span.set("url.full", task.url.clone());
        span.set("ocx.stream", task.kind.label());
        if let Some(m) = task.kind.market() {
            span.set("ocx.market", m.to_string());
        }
        span.set("ocx.account", task.account.name().to_string());
        span.set("ocx.connect.attempt", attempt.n as i64);
        span.set("ocx.connect.backoff_ms", attempt.waited.as_millis() as i64);
    }
    ended.span = span.context();
    let req = task
        .client
        .get(&task.url)
        .header(ACCEPT, "text/event-stream")
        .header(CACHE_CONTROL, "no-cache");
    let req = authorize(req, &task.auth);
    // `connect_timeout` bounds only the TCP connect: a server that accepts and never answers
    // would hold this await forever, the stream down and nothing counted.
    let resp = match tokio::time::timeout(task.settings.response_timeout, req.send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            // reqwest's error names the URL (no secrets in it) and the cause.
            let cause = error_chain(&e);
            in_span(ended.span.as_ref(), || {
                warn!(url = %task.url, error = %cause, "stream connection failed");
            });
            span.set("ocx.connect.outcome", "io");
            span.error(cause);
            return ended;
        }
        Err(_) => {
            warn!(
                url = %task.url,
                timeout_ms = task.settings.response_timeout.as_millis() as u64,
                "no response headers within stream.response_timeout"
            );
            ended.reason = ReconnectReason::ResponseTimeout;
            span.set("ocx.connect.outcome", "response_timeout");
            span.error("no response headers within stream.response_timeout");
            return ended;
        }
    };
    let status = resp.status();
    span.set("http.response.status_code", i64::from(status.as_u16()));
    if status != StatusCode::OK {
        span.set("ocx.connect.outcome", "http_status");
        span.error(format!("HTTP {status}"));
        ended.reason = ReconnectReason::HttpStatus;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            ended.unauthorized = true;
            error!(
                status = status.as_u16(),
                url = %task.url,
                "stream rejected with HTTP {status}: check the API key or session cookie (retrying at the backoff cap)"
            );
        } else {
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            {
                ended.retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
            }
            in_span(ended.span.as_ref(), || {
                warn!(
                    status = status.as_u16(),
                    url = %task.url,
                    retry_after_ms = ended.retry_after.map(|d| d.as_millis() as u64),
                    "stream answered HTTP {status}"
                );
            });
        }
        return ended;
    }
    task.metrics.connects.increment(1);
    span.set("ocx.connect.outcome", "connected");
    // The span is the attempt, not the connection's life (hours): it ends with the headers.
    span.end();
    info!(stream = task.kind.label(), url = %task.url, "stream connected");

    let mut body = resp.bytes_stream();
    let mut decoder = SseDecoder::new(task.settings.max_event_bytes);
    let mut session =
        Session::new(task.kind.clone()).traced(task.traces.clone(), task.account.name());
    let mut items = Vec::new();
    let timeout = task.settings.heartbeat_timeout;
    let watchdog = tokio::time::sleep(timeout);
    tokio::pin!(watchdog);
    loop {
        let chunk = tokio::select! {
            c = body.next() => c,
            _ = &mut watchdog => {
                warn!(stream = task.kind.label(), timeout_ms = timeout.as_millis() as u64, "no heartbeat or event within the timeout: treating the stream as dead");
                ended.reason = ReconnectReason::HeartbeatTimeout;
                break;
            }
        };
        let eof = match chunk {
            Some(Ok(bytes)) => {
                task.metrics.received_bytes.increment(bytes.len() as u64);
                decoder.feed(&bytes, &mut items);
                false
            }
            Some(Err(e)) => {
                warn!(stream = task.kind.label(), error = %error_chain(&e), "stream read failed");
                ended.reason = ReconnectReason::Io;
                break;
            }
            None => {
                decoder.finish(&mut items);
                true
            }
        };
        if !items.is_empty() {
            // Any complete message proves the connection alive.
            watchdog.as_mut().reset(Instant::now() + timeout);
        }
        let t = now(start);
        let mut verdict = Verdict::Continue;
        for item in items.drain(..) {
            verdict = session.on_item(item, t, &task.account, &mut task.metrics);
            if session.synced() && ended.live_since.is_none() {
                ended.live_since = Some(Instant::now());
                task.ready.store(true, Ordering::Relaxed);
                if let Some(n) = &task.resync {
                    n.notify_one();
                }
            }
            if verdict != Verdict::Continue {
                break;
            }
        }
        if let Verdict::Reconnect(reason) = verdict {
            ended.reason = reason;
            break;
        }
        if eof {
            ended.reason = ReconnectReason::Eof;
            break;
        }
    }
    items.clear();
    ended.retry_floor = session.retry_floor;
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_urls_carry_the_documented_parameters() {
        assert_eq!(
            stream_url("https://x", &StreamKind::User, true, Some(250), Some(10)),
            "https://x/perps/stream/user?openOnly=true&intervalMs=250"
        );
        assert_eq!(
            stream_url("https://x", &StreamKind::User, false, None, None),
            "https://x/perps/stream/user"
        );
        let ev = StreamKind::Events {
            market: "BTC PERP".into(),
        };
        assert_eq!(
            stream_url("https://x", &ev, false, None, Some(50)),
            "https://x/perps/stream/events?marketId=BTC%20PERP&depth=50"
        );
    }

    #[test]
    fn only_a_connection_live_for_backoff_reset_after_resets_the_backoff() {
        let min = Duration::from_secs(30);
        assert!(!resets_backoff(None, min));
        assert!(!resets_backoff(Some(Duration::from_millis(29_999)), min));
        assert!(resets_backoff(Some(min), min));
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates_and_is_capped() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(20));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(20)));
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
