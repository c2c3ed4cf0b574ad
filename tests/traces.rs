//! Traces over OTLP from the sidecar running against the simulator, received by in-process collectors (gRPC: opentelemetry-proto's tonic service; HTTP/protobuf: a `/v1/traces` handler): span names, attributes, parent/child relations and the resource; and a collector that refuses connections costs counted spans, not events.
#![cfg(feature = "sim")]

mod common;
#[path = "common/otlp.rs"]
mod otlp;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{ACC, scrape, settings, start_sidecar, start_sim, steps, still_sim, sum};
use ocx_sentinel::config::{Auth, OtlpProtocol, Sampling, TraceSettings};
use ocx_sentinel::sim::Faults;
use opentelemetry_proto::tonic::trace::v1::Span;
use otlp::{Received, attrs, grpc_collector, http_collector};
use tokio::time::Instant;

fn trace_settings(endpoint: String, protocol: OtlpProtocol) -> TraceSettings {
    TraceSettings {
        endpoint,
        protocol,
        headers: Vec::new(),
        timeout: Duration::from_secs(2),
        sampling: Sampling::ParentBasedAlwaysOn,
        service_name: "ocx-sentinel".into(),
        resource: vec![("deployment.environment".into(), "test".into())],
        max_queue_size: 4096,
        max_export_batch_size: 256,
        schedule_delay: Duration::from_millis(100),
    }
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within 20s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the sidecar with tracing to `endpoint` against a still simulator moved `n` steps, until
/// fills' spans arrived; returns its last OpenMetrics scrape.
async fn traced_run(received: &Received, endpoint: String, protocol: OtlpProtocol) -> String {
    let sim = start_sim(still_sim(7, Faults::default())).await;
    let mut s = settings(&sim.base_url(), Auth::None, &["BTC-PERP"]);
    s.tracing = Some(trace_settings(endpoint, protocol));
    let sidecar = start_sidecar(s).await;
    let base = format!("http://{}", sidecar.addr);
    // The snapshot first, then deltas with fills.
    common::wait_for(
        &base,
        Duration::from_secs(20),
        "the user stream is up",
        |m| {
            common::get(
                m,
                &format!("ocx_stream_up{{account=\"{ACC}\",stream=\"user\"}}"),
            ) == Some(1.0)
        },
    )
    .await;
    steps(&sim, 20).await;
    wait_until("fill spans from deltas", || {
        received.named("ocx.fill").len() >= 3
            && received.named("stream.event").iter().any(|s| {
                attrs(&s.attributes)
                    .get("ocx.event.type")
                    .map(String::as_str)
                    == Some("delta")
            })
    })
    .await;
    let openmetrics = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .header("accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sidecar.shutdown().await;
    openmetrics
}

/// The `(trace_id, span_id)` of the exemplar on each line of `family` that carries one.
fn exemplars(text: &str, family: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| l.starts_with(family))
        .filter_map(|l| l.split_once(" # {").map(|(_, e)| e.to_string()))
        .map(|e| {
            let id = |k: &str| {
                let at = e.find(&format!("{k}=\"")).unwrap() + k.len() + 2;
                e[at..at + e[at..].find('"').unwrap()].to_string()
            };
            (id("trace_id"), id("span_id"))
        })
        .collect()
}

/// Each exemplar of `family` names a `stream.event` span the collector received (after the
/// shutdown's last export, every sampled span is there).
fn exemplars_name_event_spans(received: &Received, text: &str, family: &str) {
    let found = exemplars(text, family);
    assert!(!found.is_empty(), "no exemplar on {family}:\n{text}");
    let events: Vec<(String, String)> = received
        .named("stream.event")
        .iter()
        .map(|s| (hex(&s.trace_id), hex(&s.span_id)))
        .collect();
    for ids in &found {
        assert!(
            events.contains(ids),
            "{family}'s exemplar {ids:?} is no event span"
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What both protocols must deliver: the spans, their attributes and their family tree.
fn check_spans(received: &Received) {
    let all = received.spans();
    let (resource, _) = &all[0];
    assert_eq!(resource["service.name"], "ocx-sentinel");
    assert_eq!(resource["service.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(resource["ocx.account"], ACC);
    assert_eq!(resource["deployment.environment"], "test");
    assert_eq!(resource["service.instance.id"].len(), 36, "a UUID");

    let connects = received.named("stream.connect");
    let user = connects
        .iter()
        .map(|s| attrs(&s.attributes))
        .find(|a| a["ocx.stream"] == "user")
        .expect("a user stream connection span");
    assert!(
        user["url.full"].ends_with("/perps/stream/user?openOnly=true&intervalMs=100"),
        "{user:?}"
    );
    assert_eq!(user["http.response.status_code"], "200");
    assert_eq!(user["ocx.connect.outcome"], "connected");
    assert_eq!(user["ocx.connect.attempt"], "1");
    assert_eq!(user["ocx.account"], ACC);
    assert!(
        connects.iter().any(
            |s| attrs(&s.attributes).get("ocx.market").map(String::as_str) == Some("BTC-PERP")
        )
    );

    let events = received.named("stream.event");
    let by_id: BTreeMap<Vec<u8>, &Span> = events.iter().map(|s| (s.span_id.clone(), s)).collect();
    let snapshot = events
        .iter()
        .map(|s| attrs(&s.attributes))
        .find(|a| a["ocx.event.type"] == "snapshot" && a["ocx.stream"] == "user")
        .expect("the user snapshot's span");
    assert!(snapshot["ocx.event.seq"].parse::<u64>().is_ok());
    assert!(snapshot.contains_key("ocx.event.lag_ms"));
    assert!(snapshot.contains_key("ocx.event.trades"));
    assert!(snapshot.contains_key("ocx.event.position_changes"));
    for e in &events {
        assert!(
            e.parent_span_id.is_empty(),
            "each event is a trace of its own"
        );
        assert_eq!(e.kind, 5, "SPAN_KIND_CONSUMER");
    }

    // Every state.apply and ocx.fill is a child of an event span, in its trace.
    let applies = received.named("state.apply");
    assert!(!applies.is_empty());
    for child in applies.iter().chain(received.named("ocx.fill").iter()) {
        let parent = by_id
            .get(&child.parent_span_id)
            .unwrap_or_else(|| panic!("{} without its stream.event parent", child.name));
        assert_eq!(child.trace_id, parent.trace_id);
    }
    let fill = received.named("ocx.fill");
    let a = attrs(&fill[0].attributes);
    for key in [
        "ocx.market",
        "ocx.fill.side",
        "ocx.fill.liquidity",
        "ocx.fill.price",
        "ocx.fill.quantity",
        "ocx.trade.id",
        "ocx.fill.latency_ms",
    ] {
        assert!(a.contains_key(key), "ocx.fill lacks {key}: {a:?}");
    }
    assert!(["buy", "sell"].contains(&a["ocx.fill.side"].as_str()));
    assert!(a["ocx.fill.price"].parse::<f64>().unwrap() > 0.0);
    // The fill's event says how many fills it counted.
    let parent = by_id[&fill[0].parent_span_id];
    let apply = applies
        .iter()
        .find(|s| s.parent_span_id == parent.span_id)
        .expect("the fill's event has a state.apply");
    let counted: usize = attrs(&apply.attributes)["ocx.fills.new"].parse().unwrap();
    let siblings = fill
        .iter()
        .filter(|f| f.parent_span_id == parent.span_id)
        .count();
    assert_eq!(
        counted,
        siblings,
        "one ocx.fill per new fill of {}",
        hex(&parent.span_id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_grpc_collector_with_their_attributes_and_parents() {
    let received = Received::default();
    let endpoint = grpc_collector(received.clone()).await;
    let text = traced_run(&received, endpoint, OtlpProtocol::Grpc).await;
    check_spans(&received);
    // Grafana's jump from a panel to the trace: the fills' counter and the lag histogram carry
    // the ids of a sampled event's span.
    exemplars_name_event_spans(&received, &text, "ocx_fills_total{");
    exemplars_name_event_spans(&received, &text, "ocx_stream_event_lag_seconds_bucket{");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_http_protobuf_collector_with_their_attributes_and_parents() {
    let received = Received::default();
    let endpoint = http_collector(received.clone()).await;
    let text = traced_run(&received, endpoint, OtlpProtocol::HttpProtobuf).await;
    exemplars_name_event_spans(&received, &text, "ocx_fills_total{");
    check_spans(&received);
}

// A collector that refuses every connection: the events are applied as without tracing (the
// sidecar's totals match the simulator's), and the lost spans are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_refuses_connections_costs_counted_spans_not_events() {
    let closed = common::free_port();
    for protocol in [OtlpProtocol::Grpc, OtlpProtocol::HttpProtobuf] {
        let sim = start_sim(still_sim(11, Faults::default())).await;
        let mut s = settings(&sim.base_url(), Auth::None, &[]);
        let endpoint = match protocol {
            OtlpProtocol::Grpc => format!("http://127.0.0.1:{closed}"),
            OtlpProtocol::HttpProtobuf => format!("http://127.0.0.1:{closed}/v1/traces"),
        };
        s.tracing = Some(TraceSettings {
            max_queue_size: 64,
            max_export_batch_size: 16,
            ..trace_settings(endpoint, protocol)
        });
        let sidecar = start_sidecar(s).await;
        let base = format!("http://{}", sidecar.addr);
        for _ in 0..5 {
            steps(&sim, 20).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let truth = sim.handle.truth();
        common::wait_for(
            &base,
            Duration::from_secs(20),
            "the sidecar's totals match the simulator's",
            |m| common::matches_truth(m, &truth).is_ok(),
        )
        .await;
        common::wait_for(&base, Duration::from_secs(20), "lost spans counted", |m| {
            sum(m, "ocx_trace_spans_dropped_total", &[]) > 0.0
        })
        .await;
        let m = scrape(&base).await;
        assert_eq!(sum(&m, "ocx_trace_spans_exported_total", &[]), 0.0);
        sidecar.shutdown().await;
    }
}
