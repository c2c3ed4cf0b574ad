//! The HTTP listener: an accept loop with a cap on open connections, TLS with a handshake deadline, per-connection header-read and idle deadlines, and the web configuration's checks (rate limit, basic auth, extra headers) in front of the router.
//!
//! `axum::serve` has no timeouts and no cap: a client that opened a connection and sent half a
//! request held it for ever, and thousands of them held thousands of sockets and tasks. Here:
//!
//! - **Cap.** A slot (a semaphore permit) is taken *before* `accept`: with every slot in use,
//!   new connections wait in the kernel's listen backlog rather than being accepted and closed.
//!   A scrape that arrives while the cap is reached is served late instead of failing, and the
//!   deadlines below guarantee slots come free; when the backlog itself is full the kernel
//!   drops the SYNs and clients retry.
//! - **TLS handshake deadline**, from the accept.
//! - **Header-read deadline.** The first request's head must be complete within it from the
//!   start of the connection (after the handshake); later ones from their first byte.
//! - **Idle deadline.** A keep-alive connection with no request for that long (counted from when
//!   the last response was ready) is closed, and so is one whose request is in progress but moves
//!   no byte for that long; a response still being sent after that long is cut off, so a client
//!   that stops reading frees its slot.
//!
//! The deadlines are kept by a watchdog beside each connection, fed by the connection's
//! reads and writes and by the start and end of each request, because hyper's own
//! `header_read_timeout` also runs while a keep-alive connection waits for its next request,
//! which would make the idle deadline no longer than the header one.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::WebState;
use crate::telemetry::{Counter, Gauge, Telemetry, names};

/// The listener's limits (`listener:` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// A request's head (request line and headers) must be complete within this.
    pub header_read_timeout: Duration,
    /// A connection with no request, or whose request moves no byte, for this long is closed.
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// Open connections at most; more wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            // Longer than Prometheus's default 1m scrape interval, so its keep-alive connection
            // is reused from one scrape to the next.
            idle_timeout: Duration::from_secs(120),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

/// Which listener a connection came in on: the `listener` label of the connection metrics, so
/// the main listener's count stays comparable with its own `max_connections` however often the
/// probes knock on the health listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The HTTP surface (`listen`), behind the web configuration.
    Main,
    /// The health-only listener (`health_listen`, [`super::health`]).
    Health,
}

impl Role {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Health => "health",
        }
    }
}

/// Why the listener closed a connection itself (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    HeaderTimeout,
    IdleTimeout,
    TlsHandshakeTimeout,
    TlsHandshakeFailed,
}

impl Closed {
    const ALL: [Closed; 4] = [
        Self::HeaderTimeout,
        Self::IdleTimeout,
        Self::TlsHandshakeTimeout,
        Self::TlsHandshakeFailed,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::TlsHandshakeTimeout => "tls_handshake_timeout",
            Self::TlsHandshakeFailed => "tls_handshake_failed",
        }
    }
}

/// Everything a connection task needs, shared.
struct Shared {
    router: Router,
    web: Arc<WebState>,
    limits: ListenerLimits,
    open: Gauge,
    closed: [Counter; 4],
    unauthorized: Counter,
    rate_limited: Counter,
}

impl Shared {
    fn count(&self, why: Closed) {
        // `closed` was built from `Closed::ALL`, which lists the variants in declaration order.
        self.closed[why as usize].increment(1);
    }
}

/// Serves `router` on `listener` behind `web`'s configuration until `stop` turns true; then
/// stops accepting, lets requests in progress finish, and closes idle connections. The main
/// listener (`listener="main"` on the connection metrics).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web: Arc<WebState>,
    limits: ListenerLimits,
    telemetry: &Telemetry,
    stop: watch::Receiver<bool>,
) {
    serve_as(Role::Main, listener, router, web, limits, telemetry, stop).await;
}

/// [`serve`], counting its connections under `role`.
pub(crate) async fn serve_as(
    role: Role,
    listener: TcpListener,
    router: Router,
    web: Arc<WebState>,
    limits: ListenerLimits,
    telemetry: &Telemetry,
    mut stop: watch::Receiver<bool>,
) {
    let which = ("listener", role.label());
    let shared = Arc::new(Shared {
        router,
        web,
        limits,
        open: telemetry.gauge(names::HTTP_CONNECTIONS, &[which]),
        closed: Closed::ALL.map(|c| {
            telemetry.counter(
                names::HTTP_CONNECTIONS_CLOSED,
                &[which, ("reason", c.label())],
            )
        }),
        unauthorized: telemetry
            .counter(names::HTTP_REQUESTS_REFUSED, &[("reason", "unauthorized")]),
        rate_limited: telemetry
            .counter(names::HTTP_REQUESTS_REFUSED, &[("reason", "rate_limited")]),
    });
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let mut conns = JoinSet::new();
    let stop_rx = stop.clone();
    let mut stopping = pin!(async move {
        let _ = stop.wait_for(|v| *v).await;
    });
    loop {
        // The slot first: at the cap, connections stay in the kernel's backlog (see above).
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
            _ = &mut stopping => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    accept_error(&e).await;
                    continue;
                }
            },
            _ = &mut stopping => break,
        };
        conns.spawn(connection(
            stream,
            peer,
            shared.clone(),
            stop_rx.clone(),
            permit,
        ));
        // Reap finished connections so the set does not grow; a panic in one is logged.
        while let Some(done) = conns.try_join_next() {
            if let Err(e) = done
                && e.is_panic()
            {
                tracing::error!(error = %e, "an HTTP connection task panicked");
            }
        }
    }
    drop(listener);
    // Requests in progress finish; each connection saw `stop` and winds itself down.
    while conns.join_next().await.is_some() {}
}

/// Per-connection errors (the client gave up before the accept) are nothing; others (out of
/// file descriptors) are logged and the loop pauses, so it does not spin on them.
async fn accept_error(e: &io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "HTTP listener cannot accept; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Counts an open connection while it lives.
struct OpenGuard<'a>(&'a Gauge);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    shared.open.increment(1.0);
    let _open = OpenGuard(&shared.open);
    // Responses are written whole; waiting for more to coalesce only adds latency.
    let _ = stream.set_nodelay(true);
    let config = shared.web.current();
    let Some(tls) = config.tls.clone() else {
        return serve_io(stream, false, peer, &shared, stop).await;
    };
    let accept = TlsAcceptor::from(tls).accept(stream);
    match tokio::time::timeout(shared.limits.tls_handshake_timeout, accept).await {
        Err(_) => {
            shared.count(Closed::TlsHandshakeTimeout);
            tracing::debug!(%peer, "TLS handshake timed out: connection closed");
        }
        Ok(Err(e)) => {
            shared.count(Closed::TlsHandshakeFailed);
            // A plain-HTTP client, a rejected client certificate, no common version: the
            // rustls error says which (never a secret).
            tracing::debug!(%peer, error = %e, "TLS handshake failed: connection closed");
        }
        Ok(Ok(tls)) => {
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_io(tls, h2, peer, &shared, stop).await;
        }
    }
}

/// Serves HTTP/1.1 (or HTTP/2 when TLS negotiated it) on `io` under the watchdog.
async fn serve_io<S>(
    io: S,
    h2: bool,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new(!h2));
    let io = TokioIo::new(Watched {
        inner: io,
        activity: activity.clone(),
    });
    let service = {
        let (shared, activity) = (shared.clone(), activity.clone());
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let (shared, request) = (shared.clone(), activity.begin());
            async move {
                let response = handle(req, &shared).await;
                drop(request);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let limits = shared.limits;
    if h2 {
        let conn = http2::Builder::new(TokioExecutor::new()).serve_connection(io, service);
        watchdog(
            conn,
            http2::Connection::graceful_shutdown,
            &activity,
            shared,
            limits,
            peer,
            stop,
        )
        .await;
    } else {
        // No hyper timer: the watchdog keeps the header-read deadline (see the module doc).
        let conn = http1::Builder::new().serve_connection(io, service);
        watchdog(
            conn,
            http1::Connection::graceful_shutdown,
            &activity,
            shared,
            limits,
            peer,
            stop,
        )
        .await;
    }
}

/// Drives `conn` until it ends, a deadline passes (the connection is dropped: closed), or
/// shutdown (a connection with no request in progress is closed at once; one with requests
/// finishes them first).
async fn watchdog<C>(
    conn: C,
    graceful: fn(Pin<&mut C>),
    activity: &Activity,
    shared: &Shared,
    limits: ListenerLimits,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut conn = pin!(conn);
    let mut stopping = pin!(async move {
        let _ = stop.wait_for(|v| *v).await;
    });
    let mut shutting = false;
    loop {
        let (deadline, _) = activity.deadline(&limits);
        let woken = activity.wake.notified();
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline) => {
                let (deadline, why) = activity.deadline(&limits);
                if deadline <= Instant::now() {
                    shared.count(why);
                    tracing::debug!(%peer, reason = why.label(), "HTTP connection closed by its deadline");
                    return;
                }
            }
            _ = woken => {}
            _ = &mut stopping, if !shutting => {
                if activity.in_flight() == 0 {
                    return;
                }
                graceful(conn.as_mut());
                shutting = true;
            }
        }
    }
}

/// The rate limit, basic auth and extra headers around the router.
async fn handle(req: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let config = shared.web.current();
    let mut response = if !shared.web.limiter.allow(config.rate_limit, Instant::now()) {
        shared.rate_limited.increment(1);
        plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n")
    } else if config.basic_auth() && !shared.web.auth.check(&config, req.headers()).await {
        shared.unauthorized.increment(1);
        let mut r = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        r
    } else {
        let mut router = shared.router.clone();
        match tower_service::Service::call(&mut router, req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    };
    // On every answer, refusals included, as the toolkit does.
    for (name, value) in &config.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Beyond any real deadline: what a deadline too far to represent becomes.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// A connection's progress, as the watchdog needs it; times are offsets from its start.
struct Activity {
    start: Instant,
    /// HTTP/1: a byte read while no request is in progress starts a request head. (HTTP/2
    /// clients send pings and window updates between requests; there only the idle deadline
    /// applies after the first request.)
    h1: bool,
    state: Mutex<Progress>,
    wake: Notify,
}

#[derive(Default)]
struct Progress {
    in_flight: usize,
    /// A request has started (its head was complete).
    served: bool,
    /// When the last request ended.
    idle_since: Duration,
    /// When the head of the next request started arriving (HTTP/1).
    head_since: Option<Duration>,
    /// Bytes came in while a request was in progress: the start of a pipelined request, or a
    /// request body; the head deadline applies when it ends, to be safe.
    read_while_busy: bool,
    /// The last byte read or written.
    last_io: Duration,
}

impl Activity {
    fn new(h1: bool) -> Self {
        Self {
            start: Instant::now(),
            h1,
            state: Mutex::new(Progress::default()),
            wake: Notify::new(),
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn since_start(&self) -> Duration {
        Instant::now().saturating_duration_since(self.start)
    }

    fn in_flight(&self) -> usize {
        self.progress().in_flight
    }

    fn on_read(&self) {
        let now = self.since_start();
        let mut p = self.progress();
        p.last_io = now;
        if p.in_flight > 0 {
            p.read_while_busy = true;
        } else if self.h1 && p.served && p.head_since.is_none() {
            p.head_since = Some(now);
            drop(p);
            // The header deadline is likely sooner than the idle one being waited for.
            self.wake.notify_one();
        }
    }

    fn on_write(&self) {
        let now = self.since_start();
        self.progress().last_io = now;
    }

    /// A request's head is complete and the service is called; the guard ends it.
    fn begin(self: &Arc<Self>) -> RequestGuard {
        let mut p = self.progress();
        p.in_flight += 1;
        p.served = true;
        p.head_since = None;
        RequestGuard(self.clone())
    }

    /// When the connection must be closed if nothing changes, and which deadline that is.
    fn deadline(&self, limits: &ListenerLimits) -> (Instant, Closed) {
        let p = self.progress();
        let (from, limit, why) = if p.in_flight > 0 {
            (p.last_io, limits.idle_timeout, Closed::IdleTimeout)
        } else if !p.served {
            (
                Duration::ZERO,
                limits.header_read_timeout,
                Closed::HeaderTimeout,
            )
        } else if let Some(h) = p.head_since {
            (h, limits.header_read_timeout, Closed::HeaderTimeout)
        } else {
            (p.idle_since, limits.idle_timeout, Closed::IdleTimeout)
        };
        // A timeout of centuries (the config allows `1000y`) must not overflow the clock.
        let at = self
            .start
            .checked_add(from.saturating_add(limit))
            .unwrap_or_else(|| Instant::now() + FAR_FUTURE);
        (at, why)
    }
}

/// Ends a request when dropped: when its response is ready, or when the connection dropped it.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        let now = a.since_start();
        let mut p = a.progress();
        p.in_flight = p.in_flight.saturating_sub(1);
        if p.in_flight == 0 {
            p.idle_since = now;
            if a.h1 && p.read_while_busy {
                p.head_since = Some(now);
            }
            p.read_while_busy = false;
        }
        drop(p);
        a.wake.notify_one();
    }
}

/// The connection's stream, reporting each read and write to its [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
