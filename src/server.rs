//! The HTTP surface on one listener: `/metrics` (Prometheus text or OpenMetrics, by `Accept`), `/-/healthy`, `/-/ready` (from `web::health`, shared with the health-only listener) and a small status page.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::Query;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::notify::amapi::AmApi;
use crate::rules::alert::AlertState;
use crate::rules::api;
use crate::rules::runner::RulesHandle;
use crate::telemetry::{Format, Telemetry};

/// One stream as the HTTP surface sees it.
#[derive(Debug, Clone)]
pub struct StreamStatus {
    pub account: String,
    pub stream: &'static str,
    pub market: Option<String>,
    pub ready: Arc<AtomicBool>,
}

impl StreamStatus {
    pub(crate) fn name(&self) -> String {
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
    /// The rule engine; `None` serves empty rule and alert lists.
    pub rules: Option<RulesHandle>,
    /// Alertmanager's API v2 (silences, for `amtool`); `None` serves none.
    pub am: Option<Arc<AmApi>>,
}

pub fn router(state: AppState) -> Router {
    let am = state.am.clone();
    // The health routes are the health listener's own router, so both listeners give the same
    // answers by construction.
    let health = crate::web::health::router(state.streams.clone());
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/rules", get(api_rules))
        .route("/api/v1/alerts", get(api_alerts))
        .route("/-/reload", post(reload).put(reload))
        .route("/", get(index))
        .with_state(state)
        .merge(health);
    match am {
        Some(am) => app.merge(crate::notify::amapi::router(am)),
        None => app,
    }
}

/// Text 0.0.4 by default; OpenMetrics when `Accept` prefers it, as Prometheus's does.
async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Response {
    // Repeated Accept headers are one list (RFC 9110 §5.3).
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let format = Format::negotiate((!accept.is_empty()).then(|| accept.join(",")).as_deref());
    (
        [(header::CONTENT_TYPE, format.content_type())],
        s.telemetry.render_as(format),
    )
        .into_response()
}

/// `GET /api/v1/rules` in Prometheus's shape, with its `type`, `rule_name[]`, `rule_group[]`,
/// `file[]` and `exclude_alerts` filters.
async fn api_rules(
    State(s): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let q = match api::RulesQuery::parse(&pairs) {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, Json(api::bad_data(&e))).into_response(),
    };
    let data = match &s.rules {
        Some(r) => api::rules(&r.engine(), &q),
        None => serde_json::json!({"groups": []}),
    };
    Json(api::success(data)).into_response()
}

/// `GET /api/v1/alerts`: every pending and firing alert.
async fn api_alerts(State(s): State<AppState>) -> Response {
    let data = match &s.rules {
        Some(r) => api::alerts(&r.engine()),
        None => serde_json::json!({"alerts": []}),
    };
    Json(api::success(data)).into_response()
}

/// `POST /-/reload` (or PUT), as Prometheus's: 200 when the rule files loaded, 500 with the
/// error when not (the previous rules keep running). A change: it needs the API's bearer token
/// when one is configured.
async fn reload(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(am) = &s.am
        && !am.authorized(&headers)
    {
        return crate::notify::amapi::unauthorized();
    }
    let Some(r) = &s.rules else {
        return (StatusCode::OK, "no rule engine\n").into_response();
    };
    match r.reload().await {
        Ok(l) => (
            StatusCode::OK,
            format!(
                "reloaded: {} file(s), {} group(s), {} rule(s)\n",
                l.files, l.groups, l.rules
            ),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
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
    page.push_str("</table>");
    alerts_section(&mut page, s.rules.as_ref());
    page.push_str("</body></html>");
    Html(page)
}

/// The firing and pending alerts, firing first, each with its age and value.
fn alerts_section(page: &mut String, rules: Option<&RulesHandle>) {
    let Some(rules) = rules else { return };
    let now = crate::clock::unix_ms();
    let mut rows: Vec<(AlertState, String, String, i64, f64)> = {
        let engine = rules.engine();
        engine
            .alerts()
            .filter(|(_, a)| a.state != AlertState::Inactive)
            .map(|(r, a)| {
                let labels = a
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "alertname")
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                (a.state, r.name.clone(), labels, a.active_at_ms, a.value)
            })
            .collect()
    };
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.3.cmp(&b.3)));
    let firing = rows.iter().filter(|r| r.0 == AlertState::Firing).count();
    let _ = write!(
        page,
        "<h2>Alerts</h2><p>{firing} firing, {} pending · <a href=\"/api/v1/alerts\">/api/v1/alerts</a> · \
         <a href=\"/api/v1/rules\">/api/v1/rules</a></p>",
        rows.len() - firing
    );
    if rows.is_empty() {
        page.push_str("<p>No pending or firing alerts.</p>");
        return;
    }
    page.push_str(
        "<table border=\"1\" cellpadding=\"4\"><tr><th>alert</th><th>labels</th><th>state</th>\
         <th>active for</th><th>value</th></tr>",
    );
    for (state, name, labels, since, value) in rows {
        let age = crate::rules::template::humanize_duration(
            (now.saturating_sub(since)).max(0) as f64 / 1000.0,
        );
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&name),
            escape(&labels),
            state.as_str(),
            escape(&age),
            escape(&crate::rules::template::humanize(value)),
        );
    }
    page.push_str("</table>");
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/metrics` over real HTTP: the content type and body follow the `Accept` header.
    #[tokio::test]
    async fn metrics_negotiates_text_or_openmetrics() {
        let telemetry = Telemetry::new();
        telemetry
            .counter(
                crate::telemetry::names::FILLS,
                &[("account", "a"), ("market", "M")],
            )
            .increment(2);
        let app = router(AppState {
            telemetry,
            streams: Arc::new(Vec::new()),
            rules: None,
            am: None,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        let get = |accept: Option<&'static str>| {
            let mut req = client.get(format!("{base}/metrics"));
            if let Some(a) = accept {
                req = req.header(header::ACCEPT, a);
            }
            async move {
                let r = req.send().await.unwrap();
                let ct = r.headers()[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .to_string();
                (ct, r.text().await.unwrap())
            }
        };
        let (ct, body) = get(None).await;
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
        assert!(body.contains(
            "# TYPE ocx_fills_total counter\nocx_fills_total{account=\"a\",market=\"M\"} 2\n"
        ));
        assert!(!body.contains("# EOF"));
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,\
             application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        let (ct, body) = get(Some(prometheus)).await;
        assert_eq!(
            ct,
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        // The counter family is named without `_total` in OpenMetrics; its sample keeps it.
        assert!(body.contains("# TYPE ocx_fills counter\n# HELP ocx_fills "));
        assert!(body.contains("\nocx_fills_total{account=\"a\",market=\"M\"} 2\n"));
        assert!(body.ends_with("\n# EOF\n"));
        let (ct, _) = get(Some("text/plain;version=0.0.4")).await;
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
        server.abort();
    }
}
