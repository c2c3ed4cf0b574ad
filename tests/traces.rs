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
use otlp::{Received, attrs, grpc_collector, hex, http_collector};
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

/// A collector that accepts connections and never answers; returns its address.
async fn silent_collector() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    addr.to_string()
}

// A collector that refuses every connection, or accepts and never answers: the events are
// applied as without tracing (the sidecar's totals match the simulator's), the lost spans are
// counted, and the shutdown is not held by the last export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_refuses_or_never_answers_costs_counted_spans_not_events() {
    let closed = format!("127.0.0.1:{}", common::free_port());
    let silent = silent_collector().await;
    for (protocol, addr) in [
        (OtlpProtocol::Grpc, &closed),
        (OtlpProtocol::HttpProtobuf, &closed),
        (OtlpProtocol::Grpc, &silent),
        (OtlpProtocol::HttpProtobuf, &silent),
    ] {
        let sim = start_sim(still_sim(11, Faults::default())).await;
        let mut s = settings(&sim.base_url(), Auth::None, &[]);
        let endpoint = match protocol {
            OtlpProtocol::Grpc => format!("http://{addr}"),
            OtlpProtocol::HttpProtobuf => format!("http://{addr}/v1/traces"),
        };
        s.tracing = Some(TraceSettings {
            max_queue_size: 64,
            max_export_batch_size: 16,
            timeout: Duration::from_millis(300),
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
        // The last export is bounded (2s), so is the shutdown.
        tokio::time::timeout(Duration::from_secs(10), sidecar.shutdown())
            .await
            .unwrap_or_else(|_| panic!("shutdown held by the collector at {addr}"));
    }
}

/// A webhook receiver that keeps each request's `traceparent` header and body.
async fn tracing_webhook() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(Option<String>, serde_json::Value)>,
) {
    use axum::http::HeaderMap;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let tp = headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let _ = tx.send((tp, serde_json::from_slice(&body).unwrap_or_default()));
                ""
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

// The path from a fill to a page: the delta that breaches the limit is traced; the rule pass it
// triggers is its child, with the alert's transition under it; the notification's span links to
// the delta's span, and the webhook gets that notification span as its `traceparent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_links_to_the_event_that_fired_its_alert_and_sends_traceparent() {
    use common::scripted::{envelope, position, scripted_exchange};

    let received = Received::default();
    let endpoint = grpc_collector(received.clone()).await;
    let (hook, mut requests) = tracing_webhook().await;
    let dir = common::work_dir("traces-notify");
    std::fs::write(
        dir.join("rules.yml"),
        "groups:\n  - name: limits\n    rules:\n      - alert: InventoryLimitBreached\n        expr: abs(ocx_position_quantity) > on(account, market) group_left ocx_inventory_limit\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("alerting.yml"),
        format!(
            "route:\n  receiver: team\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: team\n    webhook_configs:\n      - url: '{hook}'\n"
        ),
    )
    .unwrap();
    let (api_base, exchange) = scripted_exchange().await;
    let mut s = common::alert_settings(&api_base, &dir, true);
    s.tracing = Some(trace_settings(endpoint, OtlpProtocol::Grpc));
    let sidecar = start_sidecar(s).await;
    exchange
        .send(envelope(
            "snapshot",
            1,
            &format!(r#"{{"positions":[{}],"trades":[]}}"#, position("0.5")),
        ))
        .unwrap();
    exchange
        .send(envelope(
            "delta",
            2,
            &format!(
                r#"{{"positions":{{"upserts":[{}],"removedIds":[]}}}}"#,
                position("3")
            ),
        ))
        .unwrap();
    let (traceparent, body) = tokio::time::timeout(Duration::from_secs(20), requests.recv())
        .await
        .expect("a notification within 20s")
        .unwrap();
    assert_eq!(body["status"], "firing");
    // The receiver saw the request before the sidecar read the answer: the attempt's span ends
    // (and is queued) once the sidecar counts the delivery.
    let base = format!("http://{}", sidecar.addr);
    common::wait_for(
        &base,
        Duration::from_secs(20),
        "the delivery counted",
        |m| sum(m, "ocx_sentinel_notifications_total", &[]) >= 1.0,
    )
    .await;
    sidecar.shutdown().await;

    // traceparent: 00-<trace id>-<span id>-01, the notify.send span of that request.
    let traceparent = traceparent.expect("a traceparent header");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(
        (parts.len(), parts[0], parts[3]),
        (4, "00", "01"),
        "{traceparent}"
    );
    let send = received
        .named("notify.send")
        .into_iter()
        .find(|s| hex(&s.span_id) == parts[2])
        .expect("the notify.send span the traceparent names");
    assert_eq!(hex(&send.trace_id), parts[1]);
    let a = attrs(&send.attributes);
    assert_eq!(a["ocx.notify.receiver"], "team");
    assert_eq!(a["ocx.notify.integration"], "webhook");
    assert_eq!(a["ocx.notify.outcome"], "delivered");
    assert_eq!(a["ocx.notify.attempt"], "1");

    // Its link: the delta's event span.
    let delta = received
        .named("stream.event")
        .into_iter()
        .find(|s| {
            let a = attrs(&s.attributes);
            a.get("ocx.event.seq").map(String::as_str) == Some("2")
                && a.get("ocx.event.type").map(String::as_str) == Some("delta")
        })
        .expect("the delta's span");
    let linked: Vec<String> = received
        .spans()
        .into_iter()
        .filter(|(_, s)| send.links.iter().any(|l| l.span_id == s.span_id))
        .map(|(_, s)| format!("{} {:?}", s.name, attrs(&s.attributes)))
        .collect();
    assert_eq!(send.links.len(), 1, "{:?} {linked:?}", send.links);
    assert_eq!(send.links[0].span_id, delta.span_id, "linked to {linked:?}");
    assert_eq!(
        (&send.links[0].trace_id, &send.links[0].span_id),
        (&delta.trace_id, &delta.span_id)
    );

    // The rule pass that saw the delta, and the transition under it. The snapshot and the delta
    // arrive back to back, so the pass the snapshot started may read the delta's position too:
    // it ends after the delta was applied and is the delta's child, and the delta's own pass
    // then finds the alert firing already (seen once in CI). Either way exactly one child pass
    // of the delta holds the transition.
    let passes: Vec<_> = received
        .named("rules.evaluate")
        .into_iter()
        .filter(|s| s.parent_span_id == delta.span_id)
        .collect();
    assert!(!passes.is_empty(), "a rules.evaluate child of the delta");
    assert!(passes.iter().all(|p| p.trace_id == delta.trace_id));
    let transitions: Vec<_> = received
        .named("alert.transition")
        .into_iter()
        .filter(|s| passes.iter().any(|p| s.parent_span_id == p.span_id))
        .collect();
    assert_eq!(
        transitions.len(),
        1,
        "one alert.transition under the passes"
    );
    let transition = &transitions[0];
    let t = attrs(&transition.attributes);
    assert_eq!(t["ocx.alert.name"], "InventoryLimitBreached");
    assert_eq!(t["ocx.alert.state"], "firing");
    assert!(
        t["ocx.alert.labels"].contains("market=\"BTC-PERP\""),
        "{t:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// What goes wrong on the stream shows on its spans: a malformed delta is a `decode_error` event
// on its event's span; a gap is a `sequence_gap` event (expected, received, missed) and ends the
// connection; the reconnect's `stream.connect` span links to the previous connection's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_decode_errors_and_reconnects_show_on_the_spans() {
    let received = Received::default();
    let endpoint = grpc_collector(received.clone()).await;
    let sim = start_sim(still_sim(
        3,
        Faults {
            skip_seq_every: Some(4),
            malformed_every: Some(3),
            ..Faults::default()
        },
    ))
    .await;
    let mut s = settings(&sim.base_url(), Auth::None, &[]);
    s.tracing = Some(trace_settings(endpoint, OtlpProtocol::Grpc));
    let sidecar = start_sidecar(s).await;
    let base = format!("http://{}", sidecar.addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        steps(&sim, 5).await;
        let m = scrape(&base).await;
        if sum(&m, "ocx_stream_connects_total", &["stream=\"user\""]) >= 2.0
            && sum(&m, "ocx_stream_decode_errors_total", &["kind=\"json\""]) >= 1.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a gap, a reconnect and a malformed delta within 20s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sidecar.shutdown().await;

    let connects: Vec<Span> = received
        .named("stream.connect")
        .into_iter()
        .filter(|s| attrs(&s.attributes)["ocx.stream"] == "user")
        .collect();
    let attempt = |n: &str| {
        connects
            .iter()
            .find(|s| attrs(&s.attributes)["ocx.connect.attempt"] == n)
            .unwrap_or_else(|| {
                panic!(
                    "no attempt {n}: {:?}",
                    connects
                        .iter()
                        .map(|s| attrs(&s.attributes))
                        .collect::<Vec<_>>()
                )
            })
    };
    let (first, second) = (attempt("1"), attempt("2"));
    assert!(attrs(&second.attributes).contains_key("ocx.connect.backoff_ms"));
    assert_eq!(second.links.len(), 1);
    assert_eq!(
        second.links[0].span_id, first.span_id,
        "linked to the previous attempt"
    );
    assert!(first.links.is_empty());

    let events = received.named("stream.event");
    let with_event = |name: &str| {
        events
            .iter()
            .find(|s| s.events.iter().any(|e| e.name == name))
            .unwrap_or_else(|| panic!("no stream.event with a {name} event"))
    };
    let bad = with_event("decode_error");
    let e = bad
        .events
        .iter()
        .find(|e| e.name == "decode_error")
        .unwrap();
    assert_eq!(attrs(&e.attributes)["ocx.decode.kind"], "json");
    assert_eq!(
        bad.status.as_ref().map(|s| s.code),
        Some(2),
        "STATUS_CODE_ERROR"
    );
    let gap = with_event("sequence_gap");
    let e = gap
        .events
        .iter()
        .find(|e| e.name == "sequence_gap")
        .unwrap();
    let g = attrs(&e.attributes);
    let n = |k: &str| g[k].parse::<u64>().unwrap();
    assert_eq!(
        n("ocx.gap.missed"),
        n("ocx.gap.received_seq") - n("ocx.gap.expected_seq")
    );
    assert!(n("ocx.gap.missed") >= 1);
    assert_eq!(attrs(&gap.attributes)["ocx.reconnect.reason"], "gap");
    assert_eq!(gap.status.as_ref().map(|s| s.code), Some(2));
}

// `demo` has no config file: the standard variables turn its tracing on (`--log-format json`
// too), and a bad one stops it, naming the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_exports_traces_when_the_otel_variables_name_a_collector() {
    use std::process::{Command, Stdio};
    const BIN: &str = env!("CARGO_BIN_EXE_ocx-sentinel");

    let received = Received::default();
    let endpoint = grpc_collector(received.clone()).await;
    let port = common::free_port();
    let child = Command::new(BIN)
        .args([
            "demo",
            "--log-format",
            "json",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_SERVICE_NAME", "demo-sentinel")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo starts");
    let _demo = common::Killed(child);
    wait_until("the demo's event spans", || {
        received.spans().iter().any(|(r, s)| {
            s.name == "stream.event"
                && r["service.name"] == "demo-sentinel"
                && r["ocx.account"] == "demo"
        })
    })
    .await;

    let out = Command::new(BIN)
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{}", common::free_port()),
        ])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_TRACES_SAMPLER", "sometimes")
        .output()
        .expect("demo runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OTEL_TRACES_SAMPLER"), "{err}");
}
