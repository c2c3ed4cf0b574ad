//! Alertmanager's HTTP API v2, the part `amtool` and Grafana use: status, receivers, silences (create, update, list, get, expire) and the alert and alert-group listings, the alerts coming from an [`AlertSource`] the dispatcher plugs in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;

use super::matcher::{MatchType, Matcher};
use super::silence::{Silence, SilenceError, Silences, is_uuid};
use crate::config::Secret;
use crate::source::wire::parse_timestamp_ms;

/// Where an alert is in the notification pipeline (Alertmanager's `AlertState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertState {
    /// Received, not yet looked at by the dispatcher.
    Unprocessed,
    /// Routed and not muted.
    Active,
    /// Muted by a silence or an inhibition.
    Suppressed,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Unprocessed => "unprocessed",
            AlertState::Active => "active",
            AlertState::Suppressed => "suppressed",
        }
    }
}

/// An alert's `status` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertStatus {
    pub state: AlertState,
    /// Overwritten by the API from the live silences (see [`AlertSource`]).
    pub silenced_by: Vec<String>,
    pub inhibited_by: Vec<String>,
}

/// One alert as the dispatcher holds it. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: i64,
    /// When the alert resolves (for a firing alert, its current timeout); alerts that ended
    /// before now are not listed, as in Alertmanager.
    pub ends_at: i64,
    pub updated_at: i64,
    /// Omitted from the JSON when empty, as Alertmanager does.
    pub generator_url: String,
    /// 16 lower-case hex digits, Alertmanager's label-set fingerprint.
    pub fingerprint: String,
    /// The receivers the routing tree sends it to.
    pub receivers: Vec<String>,
    pub status: AlertStatus,
}

/// One aggregation group: a route's receiver and the `group_by` labels, with its alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmAlertGroup {
    pub labels: BTreeMap<String, String>,
    pub receiver: String,
    pub alerts: Vec<AmAlert>,
}

/// What the alert side (dispatcher, routing config) gives this API.
///
/// The API applies Alertmanager's query filters, ordering and JSON shapes itself. It also
/// recomputes each alert's `silencedBy` from the live silences when answering (as Alertmanager's
/// API re-runs the silencer on every listing), so a silence shows on the alerts at once; the
/// state is then `suppressed` when silenced or inhibited, else the source's state (`active` for
/// an alert the source had marked suppressed by silences that no longer apply).
pub trait AlertSource: Send + Sync {
    /// Every alert currently held.
    fn alerts(&self) -> Vec<AmAlert>;
    /// The aggregation groups, an alert appearing in each group it was routed to.
    fn groups(&self) -> Vec<AmAlertGroup>;
    /// The configured receivers' names, in configuration order.
    fn receivers(&self) -> Vec<String>;
    /// The notification configuration as text (`/api/v2/status`'s `config.original`). Must not
    /// hold secrets in the clear.
    fn config_original(&self) -> String;
}

/// No alerts, no receivers: the API with silences only.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAlerts;

impl AlertSource for NoAlerts {
    fn alerts(&self) -> Vec<AmAlert> {
        Vec::new()
    }
    fn groups(&self) -> Vec<AmAlertGroup> {
        Vec::new()
    }
    fn receivers(&self) -> Vec<String> {
        Vec::new()
    }
    fn config_original(&self) -> String {
        String::new()
    }
}

/// `/api/v2/status`'s `versionInfo`. amtool warns (and goes on) when its major.minor differs
/// from `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub branch: String,
    pub build_date: String,
    pub build_user: String,
    pub go_version: String,
    pub revision: String,
    pub version: String,
}

impl Default for VersionInfo {
    fn default() -> Self {
        VersionInfo {
            branch: String::new(),
            build_date: String::new(),
            build_user: "ocx-sentinel".into(),
            go_version: "none (Rust)".into(),
            revision: String::new(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The API's state: the silence store, the alert source, the write token and the change signal.
pub struct AmApi {
    silences: Mutex<Silences>,
    alerts: Arc<dyn AlertSource>,
    token: Option<Secret>,
    version_info: VersionInfo,
    started_at: i64,
    clock: fn() -> i64,
    changes: watch::Sender<u64>,
}

impl std::fmt::Debug for AmApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmApi")
            .field("token", &self.token) // Secret's Debug is a placeholder
            .field("version_info", &self.version_info)
            .field("started_at", &self.started_at)
            .finish_non_exhaustive()
    }
}

/// Unix milliseconds from the wall clock: silences and alerts are wall-clock objects (their
/// times are shown to and set by people), so this edge reads it.
pub use crate::clock::unix_ms as wall_clock_ms;

impl AmApi {
    /// Writes (POST and DELETE) need `Authorization: Bearer <token>` when `token` is set.
    pub fn new(silences: Silences, alerts: Arc<dyn AlertSource>, token: Option<Secret>) -> AmApi {
        let (changes, _) = watch::channel(silences.version());
        AmApi {
            silences: Mutex::new(silences),
            alerts,
            token,
            version_info: VersionInfo::default(),
            started_at: wall_clock_ms(),
            clock: wall_clock_ms,
            changes,
        }
    }

    pub fn with_version_info(mut self, v: VersionInfo) -> AmApi {
        self.version_info = v;
        self
    }

    /// The wall clock the handlers read (tests pin it).
    pub fn with_clock(mut self, clock: fn() -> i64) -> AmApi {
        self.started_at = clock();
        self.clock = clock;
        self
    }

    /// Receives the store's version after every change made through the API or
    /// [`update`](AmApi::update): the dispatcher re-checks muting, persistence re-encodes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The store, read-only in spirit: for `mutes` and `encode`. Changes go through
    /// [`update`](AmApi::update) so subscribers hear of them.
    pub fn silences(&self) -> MutexGuard<'_, Silences> {
        // A panic while holding the lock leaves a consistent store (every mutation is a single
        // assignment or push), so a poisoned lock is still usable.
        self.silences.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the store and signals subscribers if it changed anything (GC, loading a
    /// persisted store). Silences expired longer than the retention are collected first: every
    /// write goes through here, and only writes add silences, so the store stays bounded without
    /// a timer of its own.
    pub fn update<R>(&self, f: impl FnOnce(&mut Silences) -> R) -> R {
        let mut s = self.silences();
        let before = s.version();
        s.gc(self.now());
        let r = f(&mut s);
        let after = s.version();
        drop(s);
        if after != before {
            self.changes.send_replace(after);
        }
        r
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Whether the request may change something: no token configured, or
    /// `Authorization: Bearer <token>`. The server asks it for `/-/reload` too.
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| {
                let (scheme, cred) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(cred.trim())
            })
            .any(|cred| constant_time_eq(cred.as_bytes(), token.expose().as_bytes()))
    }
}

/// Compares without stopping at the first difference, so response timing does not reveal how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The Alertmanager v2 routes, under `/api/v2`, to be merged into the sidecar's server.
pub fn router(api: Arc<AmApi>) -> Router {
    Router::new()
        .route("/api/v2/status", get(status))
        .route("/api/v2/receivers", get(receivers))
        .route("/api/v2/silences", get(list_silences).post(post_silence))
        .route(
            "/api/v2/silence/{id}",
            get(get_silence).delete(delete_silence),
        )
        .route("/api/v2/alerts", get(list_alerts))
        .route("/api/v2/alerts/groups", get(list_groups))
        .with_state(api)
}

/// A unix-milliseconds time as go-openapi's `strfmt.DateTime`: RFC 3339, UTC, always three
/// fraction digits (`2026-11-25T18:27:22.180Z`).
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, tod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::rules::gofmt::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        tod / 3600,
        (tod / 60) % 60,
        tod % 60,
        ms.rem_euclid(1000)
    )
}

/// A handler's JSON body as go-openapi writes it (Go's `json.Encoder`: a trailing newline).
fn json_ok(status: StatusCode, body: &impl Serialize) -> Response {
    // UNWRAP: the bodies are plain strings, maps and lists, which always serialize.
    let mut text = serde_json::to_vec(body).unwrap();
    text.push(b'\n');
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// A refused request, in one of the two forms Alertmanager answers with.
#[derive(Debug)]
enum ApiError {
    /// A handler's error: the message as a JSON string.
    Text(StatusCode, String),
    /// go-openapi's request validation error: `{"code":…,"message":…}` (422 for a schema
    /// violation, 400 for a body that does not parse), written without the trailing newline.
    Coded(StatusCode, u16, String),
    /// A write without the configured bearer token.
    Unauthorized,
}

impl ApiError {
    #[cfg(test)]
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Text(s, _) | ApiError::Coded(s, _, _) => *s,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Text(status, msg) => json_ok(status, &msg),
            ApiError::Coded(status, code, msg) => {
                (status, Json(json!({"code": code, "message": msg}))).into_response()
            }
            ApiError::Unauthorized => {
                let mut r = json_ok(
                    StatusCode::UNAUTHORIZED,
                    &"unauthorized: this change needs a valid bearer token (api_token_file)",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                r
            }
        }
    }
}

fn error_text(code: StatusCode, msg: impl Into<String>) -> ApiError {
    ApiError::Text(code, msg.into())
}

fn error_coded(status: StatusCode, code: u16, msg: impl Into<String>) -> ApiError {
    ApiError::Coded(status, code, msg.into())
}

/// The 401 a change without the configured bearer token gets (with `WWW-Authenticate: Bearer`).
pub fn unauthorized() -> Response {
    ApiError::Unauthorized.into_response()
}

#[derive(Serialize)]
struct Receiver<'a> {
    name: &'a str,
}

async fn status(State(api): State<Arc<AmApi>>) -> Response {
    json_ok(
        StatusCode::OK,
        &json!({
            "cluster": {"peers": [], "status": "disabled"},
            "config": {"original": api.alerts.config_original()},
            "uptime": format_time(api.started_at),
            "versionInfo": api.version_info,
        }),
    )
}

async fn receivers(State(api): State<Arc<AmApi>>) -> Response {
    let names = api.alerts.receivers();
    json_ok(
        StatusCode::OK,
        &names
            .iter()
            .map(|n| Receiver { name: n })
            .collect::<Vec<_>>(),
    )
}

// ---- silences ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MatcherJson<'a> {
    is_equal: bool,
    is_regex: bool,
    name: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct SilenceStatusJson {
    state: &'static str,
}

/// `gettableSilence`, keys in Alertmanager's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GettableSilence<'a> {
    id: &'a str,
    status: SilenceStatusJson,
    updated_at: String,
    comment: &'a str,
    created_by: &'a str,
    ends_at: String,
    matchers: Vec<MatcherJson<'a>>,
    starts_at: String,
}

fn silence_json(s: &Silence, now: i64) -> GettableSilence<'_> {
    GettableSilence {
        id: &s.id,
        status: SilenceStatusJson {
            state: s.state(now).as_str(),
        },
        updated_at: format_time(s.updated_at),
        comment: &s.comment,
        created_by: &s.created_by,
        ends_at: format_time(s.ends_at),
        matchers: s
            .matchers
            .iter()
            .map(|m| MatcherJson {
                is_equal: m.op.is_equal(),
                is_regex: m.op.is_regex(),
                name: &m.name,
                value: &m.value,
            })
            .collect(),
        starts_at: format_time(s.starts_at),
    }
}

/// The repeated `filter` parameters as matchers, or Alertmanager's 400.
fn parse_filter(pairs: &[(String, String)]) -> Result<Vec<Matcher>, ApiError> {
    pairs
        .iter()
        .filter(|(k, _)| k == "filter")
        .map(|(_, v)| Matcher::parse(v).map_err(|e| error_text(StatusCode::BAD_REQUEST, e.0)))
        .collect()
}

async fn list_silences(
    State(api): State<Arc<AmApi>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let filter = match parse_filter(&pairs) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let now = api.now();
    let store = api.silences();
    let list: Vec<GettableSilence<'_>> = store
        .query(&filter, now)
        .into_iter()
        .map(|s| silence_json(s, now))
        .collect();
    json_ok(StatusCode::OK, &list)
}

/// A path id that is not a UUID is refused before lookup, as go-openapi does.
fn check_id(id: &str) -> Result<(), ApiError> {
    if is_uuid(id) {
        Ok(())
    } else {
        Err(error_coded(
            StatusCode::UNPROCESSABLE_ENTITY,
            601,
            format!("silenceID in path must be of type uuid: {id:?}"),
        ))
    }
}

async fn get_silence(State(api): State<Arc<AmApi>>, Path(id): Path<String>) -> Response {
    if let Err(e) = check_id(&id) {
        return e.into_response();
    }
    let now = api.now();
    let store = api.silences();
    match store.get(&id) {
        Some(s) => json_ok(StatusCode::OK, &silence_json(s, now)),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Expires the silence. An unknown id is 404, as in current Alertmanager (0.25 answered 500).
async fn delete_silence(
    State(api): State<Arc<AmApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !api.authorized(&headers) {
        return unauthorized();
    }
    if let Err(e) = check_id(&id) {
        return e.into_response();
    }
    let now = api.now();
    match api.update(|s| s.expire(&id, now)) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(SilenceError::NotFound) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => error_text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `postableSilence` as sent; every field optional here so a missing one gets go-openapi's
/// "… in body is required" rather than a parse error.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableSilence {
    id: Option<String>,
    matchers: Option<Vec<PostableMatcher>>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    created_by: Option<String>,
    comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableMatcher {
    name: Option<String>,
    value: Option<String>,
    is_regex: Option<bool>,
    is_equal: Option<bool>,
}

fn body_parse_error(reason: impl std::fmt::Display) -> ApiError {
    error_coded(
        StatusCode::BAD_REQUEST,
        400,
        format!("parsing silence body from \"\" failed, because {reason}"),
    )
}

fn required(what: &str) -> ApiError {
    error_coded(
        StatusCode::UNPROCESSABLE_ENTITY,
        602,
        format!("{what} in body is required"),
    )
}

/// The request body as a silence, with go-openapi's checks in its order (fields alphabetically).
fn silence_from_body(body: &[u8]) -> Result<Silence, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(required("silence"));
    }
    let p: PostableSilence = serde_json::from_slice(body).map_err(body_parse_error)?;
    let comment = p.comment.ok_or_else(|| required("comment"))?;
    let created_by = p.created_by.ok_or_else(|| required("createdBy"))?;
    let ends_at = p.ends_at.ok_or_else(|| required("endsAt"))?;
    let matchers = p.matchers.ok_or_else(|| required("matchers"))?;
    if matchers.is_empty() {
        return Err(error_coded(
            StatusCode::UNPROCESSABLE_ENTITY,
            612,
            "matchers in body should have at least 1 items",
        ));
    }
    let mut parsed = Vec::with_capacity(matchers.len());
    for (i, m) in matchers.into_iter().enumerate() {
        let name = m
            .name
            .ok_or_else(|| required(&format!("matchers.{i}.name")))?;
        let value = m
            .value
            .ok_or_else(|| required(&format!("matchers.{i}.value")))?;
        let is_regex = m
            .is_regex
            .ok_or_else(|| required(&format!("matchers.{i}.isRegex")))?;
        let op = MatchType::from_flags(is_regex, m.is_equal.unwrap_or(true));
        let matcher = Matcher::new(op, &name, &value).map_err(|e| {
            error_text(
                StatusCode::BAD_REQUEST,
                format!(
                    "silence invalid: invalid label matcher {i}: invalid regular expression {value:?}: {e}"
                ),
            )
        })?;
        parsed.push(matcher);
    }
    let starts_at = p.starts_at.ok_or_else(|| required("startsAt"))?;
    let time = |s: &str| {
        parse_timestamp_ms(s)
            .filter(|_| !s.bytes().all(|b| b.is_ascii_digit())) // a date-time, not a number
            .ok_or_else(|| {
                body_parse_error(format!("parsing time {s:?}: not an RFC 3339 date-time"))
            })
    };
    Ok(Silence {
        id: p.id.unwrap_or_default(),
        matchers: parsed,
        starts_at: time(&starts_at)?,
        ends_at: time(&ends_at)?,
        updated_at: 0,
        created_by,
        comment,
    })
}

/// Creates a silence, or updates the one named by `id` (see [`Silences::set`]).
async fn post_silence(State(api): State<Arc<AmApi>>, headers: HeaderMap, body: Bytes) -> Response {
    if !api.authorized(&headers) {
        return unauthorized();
    }
    let sil = match silence_from_body(&body) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if sil.starts_at >= sil.ends_at {
        return error_text(
            StatusCode::BAD_REQUEST,
            "Failed to create silence: start time must be before end time",
        )
        .into_response();
    }
    let now = api.now();
    if sil.ends_at < now {
        return error_text(
            StatusCode::BAD_REQUEST,
            "Failed to create silence: end time can't be in the past",
        )
        .into_response();
    }
    match api.update(|s| s.set(sil, now)) {
        Ok(id) => json_ok(StatusCode::OK, &json!({"silenceID": id})),
        Err(e @ SilenceError::NotFound) => {
            error_text(StatusCode::NOT_FOUND, e.to_string()).into_response()
        }
        Err(e) => error_text(StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

// ---- alerts ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertStatusJson<'a> {
    inhibited_by: &'a [String],
    silenced_by: &'a [String],
    state: &'static str,
}

/// `gettableAlert`, keys in Alertmanager's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GettableAlert<'a> {
    annotations: &'a BTreeMap<String, String>,
    ends_at: String,
    fingerprint: &'a str,
    receivers: Vec<Receiver<'a>>,
    starts_at: String,
    status: AlertStatusJson<'a>,
    updated_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "str::is_empty")]
    generator_url: &'a str,
    labels: &'a BTreeMap<String, String>,
}

fn alert_json<'a>(a: &'a AmAlert, receivers: &'a [String]) -> GettableAlert<'a> {
    GettableAlert {
        annotations: &a.annotations,
        ends_at: format_time(a.ends_at),
        fingerprint: &a.fingerprint,
        receivers: receivers.iter().map(|n| Receiver { name: n }).collect(),
        starts_at: format_time(a.starts_at),
        status: AlertStatusJson {
            inhibited_by: &a.status.inhibited_by,
            silenced_by: &a.status.silenced_by,
            state: a.status.state.as_str(),
        },
        updated_at: format_time(a.updated_at),
        generator_url: &a.generator_url,
        labels: &a.labels,
    }
}

/// The query parameters of `/alerts` and `/alerts/groups`.
struct AlertFilter {
    matchers: Vec<Matcher>,
    receiver: Option<Regex>,
    active: bool,
    silenced: bool,
    inhibited: bool,
    unprocessed: bool,
}

/// go-openapi's boolean query parameter (swag.ConvertBool): a few words are true, anything
/// else false; absent is the default, true.
fn query_bool(pairs: &[(String, String)], key: &str) -> bool {
    match pairs.iter().rev().find(|(k, _)| k == key) {
        None => true,
        Some((_, v)) => matches!(
            v.to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "ok" | "y" | "on" | "selected" | "checked" | "t" | "enabled"
        ),
    }
}

impl AlertFilter {
    fn parse(pairs: &[(String, String)]) -> Result<AlertFilter, ApiError> {
        let matchers = parse_filter(pairs)?;
        let receiver = match pairs.iter().rev().find(|(k, _)| k == "receiver") {
            None => None,
            Some((_, r)) => Some(Regex::new(&format!("^(?:{r})$")).map_err(|e| {
                error_text(
                    StatusCode::BAD_REQUEST,
                    format!("failed to parse receiver param: {e}"),
                )
            })?),
        };
        Ok(AlertFilter {
            matchers,
            receiver,
            active: query_bool(pairs, "active"),
            silenced: query_bool(pairs, "silenced"),
            inhibited: query_bool(pairs, "inhibited"),
            unprocessed: query_bool(pairs, "unprocessed"),
        })
    }

    /// Alertmanager's `alertFilter`: not ended, state flags, label matchers. (Alertmanager 0.25
    /// accepts `unprocessed` but ignores it; here it hides unprocessed alerts as documented.)
    fn keeps(&self, a: &AmAlert, now: i64) -> bool {
        if a.ends_at != 0 && a.ends_at < now {
            return false;
        }
        let st = &a.status;
        (self.active || st.state != AlertState::Active)
            && (self.unprocessed || st.state != AlertState::Unprocessed)
            && (self.silenced || st.silenced_by.is_empty())
            && (self.inhibited || st.inhibited_by.is_empty())
            && self.matchers.iter().all(|m| m.matches(&a.labels))
    }

    fn receiver_ok(&self, name: &str) -> bool {
        self.receiver.as_ref().is_none_or(|re| re.is_match(name))
    }
}

/// The alert's status with `silencedBy` from the live silences.
fn refresh_status(a: &mut AmAlert, silences: &Silences, now: i64) {
    a.status.silenced_by = silences.mutes(&a.labels, now);
    let muted = !a.status.silenced_by.is_empty() || !a.status.inhibited_by.is_empty();
    a.status.state = match (muted, a.status.state) {
        (true, _) => AlertState::Suppressed,
        (false, AlertState::Suppressed) => AlertState::Active,
        (false, s) => s,
    };
}

async fn list_alerts(
    State(api): State<Arc<AmApi>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let f = match AlertFilter::parse(&pairs) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let now = api.now();
    let mut alerts = api.alerts.alerts();
    {
        let store = api.silences();
        for a in &mut alerts {
            refresh_status(a, &store, now);
        }
    }
    alerts.retain(|a| f.receiver.is_none() || a.receivers.iter().any(|r| f.receiver_ok(r)));
    alerts.retain(|a| f.keeps(a, now));
    alerts.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    let body: Vec<GettableAlert<'_>> = alerts.iter().map(|a| alert_json(a, &a.receivers)).collect();
    json_ok(StatusCode::OK, &body)
}

/// Alertmanager's order of alerts in a group: by `job`, then `instance` (an alert having the
/// label first), then the whole label set.
fn alert_order(a: &AmAlert, b: &AmAlert) -> std::cmp::Ordering {
    for key in ["job", "instance"] {
        match (a.labels.get(key), b.labels.get(key)) {
            (None, None) => continue,
            (None, Some(_)) => return std::cmp::Ordering::Greater,
            (Some(_), None) => return std::cmp::Ordering::Less,
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => {}
        }
    }
    a.labels.cmp(&b.labels)
}

async fn list_groups(
    State(api): State<Arc<AmApi>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let f = match AlertFilter::parse(&pairs) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let now = api.now();
    let mut groups = api.alerts.groups();
    {
        let store = api.silences();
        for a in groups.iter_mut().flat_map(|g| g.alerts.iter_mut()) {
            refresh_status(a, &store, now);
        }
    }
    groups.retain(|g| f.receiver_ok(&g.receiver));
    for g in &mut groups {
        g.alerts.retain(|a| f.keeps(a, now));
        g.alerts.sort_by(alert_order);
    }
    groups.retain(|g| !g.alerts.is_empty());
    groups.sort_by(|a, b| (&a.labels, &a.receiver).cmp(&(&b.labels, &b.receiver)));
    // As in Alertmanager, an alert's receivers here are those of the listed groups holding it.
    let mut by_fp: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for g in &groups {
        for a in &g.alerts {
            by_fp.entry(&a.fingerprint).or_default().insert(&g.receiver);
        }
    }
    let receivers: BTreeMap<&str, Vec<String>> = by_fp
        .into_iter()
        .map(|(fp, rs)| (fp, rs.into_iter().map(String::from).collect()))
        .collect();
    let body: Vec<serde_json::Value> = groups
        .iter()
        .map(|g| {
            let alerts: Vec<GettableAlert<'_>> = g
                .alerts
                .iter()
                .map(|a| alert_json(a, &receivers[a.fingerprint.as_str()]))
                .collect();
            json!({
                "alerts": alerts,
                "labels": g.labels,
                "receiver": {"name": g.receiver},
            })
        })
        .collect();
    json_ok(StatusCode::OK, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_with_milliseconds() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_795_631_242_180), "2026-11-25T18:27:22.180Z");
        assert_eq!(format_time(951_782_400_005), "2000-02-29T00:00:00.005Z");
        for ms in [0, 1_795_631_242_180, 951_782_400_005, 4_102_444_799_999] {
            assert_eq!(parse_timestamp_ms(&format_time(ms)), Some(ms));
        }
    }

    #[test]
    fn bearer_tokens_are_checked_exactly() {
        let api = AmApi::new(
            Silences::default(),
            Arc::new(NoAlerts),
            Some(Secret::new("s3cret")),
        );
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            api.authorized(&h)
        };
        assert!(with("Bearer s3cret"));
        assert!(with("bearer  s3cret "));
        assert!(!with("Bearer s3cre"));
        assert!(!with("Bearer s3cret2"));
        assert!(!with("Basic s3cret"));
        assert!(!api.authorized(&HeaderMap::new()));
        let open = AmApi::new(Silences::default(), Arc::new(NoAlerts), None);
        assert!(open.authorized(&HeaderMap::new()));
        assert!(!format!("{api:?}").contains("s3cret"));
    }

    #[test]
    fn alert_status_follows_the_live_silences_and_filters_apply() {
        let now = 1_800_000_000_000;
        let labels: BTreeMap<String, String> = [("alertname", "Foo"), ("job", "x")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut a = AmAlert {
            labels: labels.clone(),
            annotations: BTreeMap::new(),
            starts_at: now - 1000,
            ends_at: now + 1000,
            updated_at: now,
            generator_url: String::new(),
            fingerprint: "0000000000000001".into(),
            receivers: vec!["default".into()],
            status: AlertStatus {
                state: AlertState::Suppressed,
                silenced_by: vec!["gone".into()],
                inhibited_by: vec![],
            },
        };
        let mut store = Silences::default();
        refresh_status(&mut a, &store, now);
        assert_eq!(
            a.status.state,
            AlertState::Active,
            "the silence it had is gone"
        );
        assert!(a.status.silenced_by.is_empty());
        let id = store
            .set(
                Silence {
                    id: String::new(),
                    matchers: Matcher::parse_list("alertname=Foo").unwrap(),
                    starts_at: now,
                    ends_at: now + 1000,
                    updated_at: 0,
                    created_by: String::new(),
                    comment: String::new(),
                },
                now,
            )
            .unwrap();
        refresh_status(&mut a, &store, now);
        assert_eq!(a.status.state, AlertState::Suppressed);
        assert_eq!(a.status.silenced_by, [id]);

        let filter = |q: &str| {
            let pairs: Vec<(String, String)> = q
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            AlertFilter::parse(&pairs).unwrap()
        };
        assert!(filter("").keeps(&a, now));
        assert!(!filter("silenced=false").keeps(&a, now));
        assert!(filter("active=0").keeps(&a, now), "suppressed, not active");
        assert!(!filter("filter=job=y").keeps(&a, now));
        assert!(
            !filter("").keeps(&a, now + 1001),
            "ended alerts are not listed"
        );
        a.status = AlertStatus {
            state: AlertState::Unprocessed,
            silenced_by: vec![],
            inhibited_by: vec![],
        };
        assert!(!filter("unprocessed=false").keeps(&a, now));
        assert!(filter("unprocessed=yes&active=false").keeps(&a, now));
        let bad_receiver = AlertFilter::parse(&[("receiver".into(), "(".into())]);
        assert_eq!(
            bad_receiver.err().map(|e| e.status()),
            Some(StatusCode::BAD_REQUEST)
        );

        // Group order: `job` first (an alert with it before one without), then the labels.
        let mut b = a.clone();
        b.labels.remove("job");
        b.labels.insert("alertname".into(), "Aaa".into());
        assert_eq!(alert_order(&a, &b), std::cmp::Ordering::Less);
    }

    #[test]
    fn post_body_errors_are_go_openapis() {
        let err = |b: &str| silence_from_body(b.as_bytes()).err().map(|r| r.status());
        assert_eq!(err(""), Some(StatusCode::UNPROCESSABLE_ENTITY));
        assert_eq!(err("{bad"), Some(StatusCode::BAD_REQUEST));
        let full = r#"{"matchers":[{"name":"a","value":"b","isRegex":false}],"startsAt":"2026-11-25T18:00:00Z","endsAt":"2030-01-01T00:00:00.5Z","createdBy":"","comment":""}"#;
        let s = silence_from_body(full.as_bytes()).unwrap();
        assert_eq!(s.matchers[0].op, MatchType::Equal);
        assert_eq!(format_time(s.ends_at), "2030-01-01T00:00:00.500Z");
        assert_eq!(
            err(&full.replace(r#","comment":"""#, "")),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        assert_eq!(
            err(&full.replace(r#","isRegex":false"#, "")),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        assert_eq!(
            err(&full.replace("2026-11-25T18:00:00Z", "yesterday")),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            err(&full.replace(
                r#""value":"b","isRegex":false"#,
                r#""value":"(","isRegex":true"#
            )),
            Some(StatusCode::BAD_REQUEST)
        );
    }
}
