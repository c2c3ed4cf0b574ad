//! The HTTP surface on one listener: `/metrics`, `/-/healthy`, `/-/ready` and a small status page.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::telemetry::Telemetry;

/// One stream as the HTTP surface sees it.
#[derive(Debug, Clone)]
pub struct StreamStatus {
    pub account: String,
    pub stream: &'static str,
    pub market: Option<String>,
    pub ready: Arc<AtomicBool>,
}

impl StreamStatus {
    fn name(&self) -> String {
        match &self.market {
            Some(m) => format!("{}/{}/{}", self.account, self.stream, m),
            None => format!("{}/{}", self.account, self.stream),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub telemetry: Telemetry,
    pub streams: Arc<Vec<StreamStatus>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/", get(index))
        .with_state(state)
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.telemetry.render(),
    )
        .into_response()
}

async fn healthy() -> &'static str {
    "OK\n"
}

/// Ready once every configured stream has applied a snapshot, like Prometheus's own `/-/ready`
/// (200 or 503); the body names the streams still waiting.
async fn ready(State(s): State<AppState>) -> Response {
    let waiting: Vec<String> = s
        .streams
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

async fn index(State(s): State<AppState>) -> Html<String> {
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ocx-sentinel</title></head><body>\
         <h1>ocx-sentinel</h1><p><a href=\"/metrics\">/metrics</a> · <a href=\"/-/healthy\">/-/healthy</a> · \
         <a href=\"/-/ready\">/-/ready</a></p><table border=\"1\" cellpadding=\"4\"><tr><th>stream</th><th>state</th></tr>",
    );
    for st in s.streams.iter() {
        let state = if st.ready.load(Ordering::Relaxed) {
            "live"
        } else {
            "connecting"
        };
        // Names come from config (account names are validated to [A-Za-z0-9._-]); markets are
        // escaped anyway.
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{state}</td></tr>",
            escape(&st.name())
        );
    }
    page.push_str("</table></body></html>");
    Html(page)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
