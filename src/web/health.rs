//! The health endpoints (`/-/healthy`, `/-/ready`) and the health-only listener (`health_listen:`, `--health-listen`) that serves them and nothing else: plain HTTP without auth, for probes that carry no credentials.
//!
//! Basic auth covers every path of the main listener, health included, as in the
//! exporter-toolkit. A kubelet probe or the image's busybox `wget` HEALTHCHECK has no
//! credentials, and writing a password into a pod spec or a Dockerfile would hand `/metrics`
//! to whoever can read those. So the probes get a listener of their own: it answers exactly what
//! the main listener answers on the two health paths (the main router merges [`router`]), 404
//! on every other path, never TLS and never a challenge, because it gives nothing away: no
//! metric, alert, rule, silence or status page. It runs the same accept loop as the main
//! listener ([`super::listener`]), so the same header-read, idle and handshake deadlines and the
//! same connection cap hold, counted under `listener="health"`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::WebState;
use super::listener::{ListenerLimits, Role, serve_as};
use crate::server::StreamStatus;
use crate::telemetry::Telemetry;

/// The streams `/-/ready` reports on.
type Streams = Arc<Vec<StreamStatus>>;

/// `GET` (and so `HEAD`) `/-/healthy` and `/-/ready`; nothing else is routed (404).
pub fn router(streams: Streams) -> Router {
    Router::new()
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .with_state(streams)
}

/// Serves [`router`] on `listener` until `stop` turns true, with `limits` (the main listener's).
/// No web configuration, ever: not its users (the point of this listener), nor its TLS (a probe
/// would need the CA, and the answers hold nothing to protect), nor its rate limit (a scrape
/// flood on the main port must not fail the liveness probe and get the pod killed).
pub async fn serve(
    listener: TcpListener,
    streams: Streams,
    limits: ListenerLimits,
    telemetry: &Telemetry,
    stop: watch::Receiver<bool>,
) {
    let plain = Arc::new(WebState::new(None, None));
    serve_as(
        Role::Health,
        listener,
        router(streams),
        plain,
        limits,
        telemetry,
        stop,
    )
    .await;
}

async fn healthy() -> &'static str {
    "OK\n"
}

/// Ready once every configured stream has applied a snapshot, like Prometheus's own `/-/ready`
/// (200 or 503); the body names the streams still waiting.
async fn ready(State(streams): State<Streams>) -> Response {
    let waiting: Vec<String> = streams
        .iter()
        .filter(|st| !st.ready.load(Ordering::Relaxed))
        .map(StreamStatus::name)
        .collect();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n".to_string()).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: waiting for a snapshot on {}\n",
                waiting.join(", ")
            ),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests;
