//! Exemplars against a real Prometheus: a registry served by the sidecar's own `/metrics` router and listener, scraped every second by `prometheus --enable-feature=exemplar-storage`, must come back from `/api/v1/query_exemplars` with the trace and span ids, values and timestamps served, for a counter and for histogram buckets (`+Inf` included); the latest exemplar wins, and one served unchanged is stored once. Without prometheus the test is skipped with a message, unless `OCX_REQUIRE_PEERS=1` makes that a failure.

mod common;
#[cfg(feature = "sim")]
#[path = "common/otlp.rs"]
mod otlp;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{peer, start_prometheus};
use ocx_sentinel::server::{AppState, router};
use ocx_sentinel::telemetry::{Telemetry, TraceIds, names};
use ocx_sentinel::web::{ListenerLimits, WebState};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

/// What Prometheus 2.x sends on a scrape: OpenMetrics first.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const FILLS_LABELS: [(&str, &str); 4] = [
    ("account", "t"),
    ("market", "BTC-PERP"),
    ("side", "buy"),
    ("liquidity", "maker"),
];
const LAG_LABELS: [(&str, &str); 2] = [("account", "t"), ("stream", "user")];

/// Served before Prometheus starts, then replaced by `SERVED`: never scraped.
const REPLACED: TraceIds = TraceIds {
    trace_id: 0x1111_1111_1111_1111_1111_1111_1111_1111,
    span_id: 0x2222_2222_2222_2222,
};
/// The W3C trace-context example (a span id with a leading zero).
const SERVED: TraceIds = TraceIds {
    trace_id: 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c,
    span_id: 0x00f0_67aa_0ba9_02b7,
};
/// Leading zeros in both ids.
const SMALL: TraceIds = TraceIds {
    trace_id: 0xbeef,
    span_id: 0x7,
};
/// Recorded once Prometheus has stored `SERVED`.
const LATER: TraceIds = TraceIds {
    trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
    span_id: 0xa2fb_4a1d_1a96_d312,
};

/// The exemplar labels as Prometheus returns them.
fn labels_of(ids: TraceIds) -> Value {
    serde_json::json!({
        "trace_id": format!("{:032x}", ids.trace_id),
        "span_id": format!("{:016x}", ids.span_id),
    })
}

/// The exemplar served on the line that starts with `series`: (labels text, value, unix ms).
fn served_exemplar(text: &str, series: &str) -> (String, String, i64) {
    let line = text
        .lines()
        .find(|l| l.starts_with(series))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    let (_, exemplar) = line
        .split_once(" # ")
        .unwrap_or_else(|| panic!("no exemplar on {line:?}"));
    let (labels, rest) = exemplar.rsplit_once("} ").unwrap();
    let (value, ts) = rest.split_once(' ').unwrap();
    // Seconds with exactly three decimals: the milliseconds as written, no float involved.
    let (secs, ms) = ts.split_once('.').unwrap();
    assert_eq!(ms.len(), 3, "{line:?}");
    let unix_ms = secs.parse::<i64>().unwrap() * 1000 + ms.parse::<i64>().unwrap();
    (format!("{labels}}}"), value.to_string(), unix_ms)
}

async fn scrape(base: &str, accept: Option<&str>) -> (String, String) {
    let mut req = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.expect("scrape");
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    (ct, resp.text().await.unwrap())
}

/// Each series `/api/v1/query_exemplars` returns for `query`: its labels and its exemplars as
/// (labels, value, unix ms), oldest first.
type Stored = Vec<(Value, Vec<(Value, String, i64)>)>;

async fn query_exemplars(prom: &str, query: &str) -> Option<Stored> {
    let now = ocx_sentinel::clock::unix_ms() / 1000;
    let url = format!(
        "{prom}/api/v1/query_exemplars?query={query}&start={}&end={}",
        now - 3600,
        now + 3600
    );
    let body: Value =
        serde_json::from_str(&reqwest::get(url).await.ok()?.text().await.ok()?).ok()?;
    let series = body["data"].as_array()?;
    Some(
        series
            .iter()
            .map(|s| {
                let exemplars = s["exemplars"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        // A float of seconds with at most three decimals: exact after rounding.
                        let ts = e["timestamp"].as_f64().unwrap_or(f64::NAN);
                        (
                            e["labels"].clone(),
                            e["value"].as_str().unwrap_or_default().to_string(),
                            (ts * 1000.0).round() as i64,
                        )
                    })
                    .collect();
                (s["seriesLabels"].clone(), exemplars)
            })
            .collect(),
    )
}

/// The exemplars of the one returned series whose labels include `label=value`.
fn of<'a>(stored: &'a Stored, label: &str, value: &str) -> Option<&'a [(Value, String, i64)]> {
    stored
        .iter()
        .find(|(l, _)| l[label] == value)
        .map(|(_, e)| e.as_slice())
}

/// Poll `query` until `done` holds, or fail with what was last stored and Prometheus' log.
async fn wait_until(
    prom: &str,
    query: &str,
    dir: &Path,
    what: &str,
    done: impl Fn(&Stored) -> bool,
) -> Stored {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = query_exemplars(prom, query).await;
        if let Some(s) = &stored
            && done(s)
        {
            return stored.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last answer: {stored:?}\nprometheus log:\n{}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Scrapes Prometheus has made of the target so far.
async fn scrapes(prom: &str) -> Option<f64> {
    let url = format!("{prom}/api/v1/query?query=count_over_time(up%5B1h%5D)");
    let body: Value =
        serde_json::from_str(&reqwest::get(url).await.ok()?.text().await.ok()?).ok()?;
    body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stores_the_counter_and_bucket_exemplars_served() {
    if !peer("prometheus") {
        return;
    }
    let dir = common::work_dir("exemplars");
    let telemetry = Telemetry::new();
    let fills = telemetry.counter(names::FILLS, &FILLS_LABELS);
    fills.increment(2);
    fills.increment_with_exemplar(3, REPLACED);
    fills.increment_with_exemplar(1, SERVED);
    let lag = telemetry.histogram(names::EVENT_LAG, &LAG_LABELS);
    lag.record(0.003);
    lag.record_with_exemplar(0.004, SMALL); // le="0.005"
    lag.record(0.02);
    lag.record_with_exemplar(42.0, SERVED); // le="+Inf"

    // `/metrics` as the sidecar serves it: its router on its listener.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let state = AppState {
        telemetry: telemetry.clone(),
        streams: Arc::new(Vec::new()),
        rules: None,
        am: None,
    };
    let served = {
        let telemetry = telemetry.clone();
        tokio::spawn(async move {
            ocx_sentinel::web::serve(
                listener,
                router(state),
                Arc::new(WebState::new(None, None)),
                ListenerLimits::default(),
                &telemetry,
                stop_rx,
            )
            .await;
        })
    };
    let base = format!("http://{addr}");

    // What Prometheus will read: OpenMetrics with the exemplars; the 0.0.4 text has none.
    let (ct, text) = scrape(&base, Some(PROMETHEUS_ACCEPT)).await;
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let fills_line =
        "ocx_fills_total{account=\"t\",liquidity=\"maker\",market=\"BTC-PERP\",side=\"buy\"} 6 # ";
    assert!(text.contains(fills_line), "{text}");
    let (_, _, fills_ms) = served_exemplar(&text, fills_line);
    let bucket = |le: &str| {
        format!("ocx_stream_event_lag_seconds_bucket{{account=\"t\",stream=\"user\",le=\"{le}\"}}")
    };
    let (small_labels, small_value, small_ms) = served_exemplar(&text, &bucket("0.005"));
    assert_eq!(
        (small_labels.as_str(), small_value.as_str()),
        (
            "{trace_id=\"0000000000000000000000000000beef\",span_id=\"0000000000000007\"}",
            "0.004"
        )
    );
    let (_, _, inf_ms) = served_exemplar(&text, &bucket("+Inf"));
    assert_eq!(
        text.matches(" # {").count(),
        3,
        "one exemplar per slot that holds one:\n{text}"
    );
    let (ct, plain) = scrape(&base, None).await;
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert!(!plain.contains(" # {"), "{plain}");

    let (_prometheus, prom) = start_prometheus(
        &dir,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sentinel\n    static_configs: [{{targets: ['{addr}']}}]\n"
        ),
        &["--enable-feature=exemplar-storage"],
    );

    // The counter: the latest exemplar as served, with its own timestamp (not the scrape's).
    let stored = wait_until(
        &prom,
        "ocx_fills_total",
        &dir,
        "the counter's exemplar",
        |s| !s.is_empty(),
    )
    .await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let (series, exemplars) = &stored[0];
    for (k, v) in FILLS_LABELS {
        assert_eq!(series[k], v, "{series}");
    }
    assert_eq!(series["job"], "sentinel", "{series}");
    assert_eq!(
        exemplars.as_slice(),
        &[(labels_of(SERVED), "1".to_string(), fills_ms)]
    );

    // The histogram: exemplars on the two buckets that hold one, no other bucket.
    let stored = wait_until(
        &prom,
        "ocx_stream_event_lag_seconds_bucket",
        &dir,
        "the buckets' exemplars",
        |s| s.len() >= 2,
    )
    .await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(
        of(&stored, "le", "0.005"),
        Some(&[(labels_of(SMALL), "0.004".to_string(), small_ms)][..])
    );
    assert_eq!(
        of(&stored, "le", "+Inf"),
        Some(&[(labels_of(SERVED), "42".to_string(), inf_ms)][..])
    );
    for (series, _) in &stored {
        for (k, v) in LAG_LABELS {
            assert_eq!(series[k], v, "{series}");
        }
    }

    // An exemplar served unchanged is stored once, however many scrapes read it: it carries
    // its own timestamp, so Prometheus sees the same exemplar again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = scrapes(&prom).await.unwrap_or(0.0);
    while scrapes(&prom).await.unwrap_or(0.0) < first + 3.0 {
        assert!(Instant::now() < deadline, "Prometheus stopped scraping");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stored = query_exemplars(&prom, "ocx_fills_total").await.unwrap();
    assert_eq!(stored[0].1.len(), 1, "{stored:?}");

    // A new exemplar is stored after the old one: Prometheus keeps both, oldest first.
    fills.increment_with_exemplar(2, LATER);
    let (_, text) = scrape(&base, Some(PROMETHEUS_ACCEPT)).await;
    let (_, later_value, later_ms) = served_exemplar(&text, "ocx_fills_total{");
    assert_eq!(later_value, "2");
    assert!(later_ms > fills_ms, "{later_ms} <= {fills_ms}");
    let stored = wait_until(
        &prom,
        "ocx_fills_total",
        &dir,
        "the counter's new exemplar",
        |s| s.first().is_some_and(|(_, e)| e.len() >= 2),
    )
    .await;
    assert_eq!(
        stored[0].1,
        vec![
            (labels_of(SERVED), "1".to_string(), fills_ms),
            (labels_of(LATER), "2".to_string(), later_ms),
        ]
    );

    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), served).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The whole path: the sidecar with tracing on, against the simulator, scraped by a real
/// Prometheus; the exemplars Prometheus stores for `ocx_fills_total` name spans of events the
/// collector received (the trace of the fill behind a panel's spike).
#[cfg(feature = "sim")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scraping_a_traced_sidecar_stores_its_fills_trace_ids() {
    use ocx_sentinel::config::{Auth, OtlpProtocol, Sampling, TraceSettings};
    use ocx_sentinel::sim::Faults;

    if !peer("prometheus") {
        return;
    }
    let dir = common::work_dir("exemplars");
    let received = otlp::Received::default();
    let endpoint = otlp::grpc_collector(received.clone()).await;
    let sim = common::start_sim(common::still_sim(5, Faults::default())).await;
    let mut s = common::settings(&sim.base_url(), Auth::None, &[]);
    s.tracing = Some(TraceSettings {
        endpoint,
        protocol: OtlpProtocol::Grpc,
        headers: Vec::new(),
        timeout: Duration::from_secs(2),
        sampling: Sampling::AlwaysOn,
        service_name: "ocx-sentinel".into(),
        resource: Vec::new(),
        max_queue_size: 4096,
        max_export_batch_size: 256,
        schedule_delay: Duration::from_millis(100),
    });
    let sidecar = common::start_sidecar(s).await;
    let (_prometheus, prom) = start_prometheus(
        &dir,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sentinel\n    static_configs: [{{targets: ['{}']}}]\n",
            sidecar.addr
        ),
        &["--enable-feature=exemplar-storage"],
    );
    // Fills keep coming while Prometheus starts and scrapes.
    let stepping = {
        let handle = sim.handle.clone();
        tokio::spawn(async move {
            loop {
                for _ in 0..3 {
                    handle.step();
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let stored = wait_until(
        &prom,
        "ocx_fills_total",
        &dir,
        "the fills' exemplars",
        |s| s.iter().any(|(_, e)| !e.is_empty()),
    )
    .await;
    stepping.abort();
    sidecar.shutdown().await;
    let events: Vec<(String, String)> = received
        .named("stream.event")
        .iter()
        .map(|s| (otlp::hex(&s.trace_id), otlp::hex(&s.span_id)))
        .collect();
    let mut checked = 0;
    for (series, exemplars) in &stored {
        assert_eq!(series["__name__"], "ocx_fills_total", "{series}");
        for (labels, value, _) in exemplars {
            let ids = (
                labels["trace_id"].as_str().unwrap().to_string(),
                labels["span_id"].as_str().unwrap().to_string(),
            );
            assert!(
                events.contains(&ids),
                "{ids:?} is no event span the collector got"
            );
            assert_eq!(value, "1");
            checked += 1;
        }
    }
    assert!(checked > 0);
    let _ = std::fs::remove_dir_all(&dir);
}
