//! Traces: the OpenTelemetry tracer the sidecar's work is recorded with (stream connections, events, fills, rule passes, alert transitions, notifications), built from `tracing:` and exported over OTLP; off, every call here is a no-op.
//!
//! Spans are made with the OpenTelemetry API directly, not bridged from `tracing`: the stream
//! task decides per event whether a span is recorded (the sampler), and a span's context is
//! handed between tasks as a value (the event that made an alert fire, linked from the
//! notification sent for it), which a bridge would hide behind `tracing`'s span stack.

pub mod export;
pub mod http;
pub mod log;

use std::borrow::Cow;
use std::sync::Arc;

use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use tokio::sync::watch;

use crate::config::{OtlpProtocol, Sampling, TraceSettings};
use crate::telemetry::Telemetry;

/// Why the exporter could not be built (the endpoint or a header is unusable).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("tracing.otlp: {0}")]
    Exporter(String),
    #[error("tracing.otlp.headers: {0:?} is not a valid header name")]
    Header(String),
}

/// The tracer, or nothing when tracing is off. Cheap to clone.
#[derive(Clone, Default)]
pub struct Traces(Option<Arc<Inner>>);

struct Inner {
    tracer: SdkTracer,
    /// The latest applied event's span, if sampled: the rule pass that follows is its child.
    recent: std::sync::Mutex<Option<SpanContext>>,
    /// Which new traces are recorded, decided here before the SDK is asked for anything (see
    /// [`Head`]); `None` leaves it to the SDK's sampler (the `*_always_off` samplers).
    head: Option<Head>,
    /// A span of a recorded trace that would find the queue full is not started at all (and
    /// counted as dropped): under overload, tracing costs the stream almost nothing.
    gate: export::Gate,
    // Held so the processor lives as long as any tracer handle.
    _provider: SdkTracerProvider,
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Traces(on)"
        } else {
            "Traces(off)"
        })
    }
}

impl Traces {
    /// Tracing off: every span is a no-op.
    pub fn off() -> Traces {
        Traces(None)
    }

    /// Builds the exporter and the tracer, and spawns the export task (which ends after
    /// `shutdown`, exporting what is queued within a short deadline). Must run inside the Tokio
    /// runtime (the gRPC channel is made here).
    pub fn start(
        settings: &TraceSettings,
        accounts: &[String],
        telemetry: &Telemetry,
        client: reqwest::Client,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Traces, tokio::task::JoinHandle<()>), TraceError> {
        let mut exporter = build_exporter(settings, client)?;
        let resource = resource(settings, accounts);
        opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
        let (processor, gate, rx) = export::QueueProcessor::new(settings.max_queue_size, telemetry);
        let head = Head::of(settings.sampling);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(match head {
                // The decision is made before the SDK sees the span: it records what it gets.
                Some(_) => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
                None => sampler(settings.sampling),
            })
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("ocx-sentinel");
        let task = tokio::spawn(export::run(
            rx,
            exporter,
            export::Batching {
                max_batch: settings.max_export_batch_size,
                delay: settings.schedule_delay,
                timeout: settings.timeout,
            },
            telemetry.clone(),
            shutdown,
        ));
        Ok((
            Traces(Some(Arc::new(Inner {
                tracer,
                recent: std::sync::Mutex::new(None),
                head,
                gate,
                _provider: provider,
            }))),
            task,
        ))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Remembers the span of the event about to be applied (`None`: not sampled), for
    /// [`Traces::recent`].
    pub fn note_event(&self, cx: Option<SpanContext>) {
        if let Some(inner) = &self.0
            && let Ok(mut r) = inner.recent.lock()
        {
            *r = cx;
        }
    }

    /// The span of the latest event applied, when it was sampled: what a rule pass that
    /// evaluated its change is a child of. Not consumed: two passes may see the same event.
    pub fn recent(&self) -> Option<SpanContext> {
        self.0
            .as_ref()
            .and_then(|inner| inner.recent.lock().ok().and_then(|r| r.clone()))
    }

    /// Starts span `name`, a child of `parent` (a root when `None`), linked to `links`. With
    /// tracing off, or not sampled, the span records nothing and its [`TraceSpan::context`] is
    /// `None`.
    pub fn span(
        &self,
        name: &'static str,
        kind: SpanKind,
        parent: Option<&SpanContext>,
        links: &[SpanContext],
    ) -> TraceSpan {
        self.span_since(name, kind, parent, links, None)
    }

    /// [`Traces::span`] that started at `start` (now when `None`): for work whose parent is
    /// known only once it is done.
    pub fn span_since(
        &self,
        name: &'static str,
        kind: SpanKind,
        parent: Option<&SpanContext>,
        links: &[SpanContext],
        start: Option<std::time::SystemTime>,
    ) -> TraceSpan {
        let Some(inner) = &self.0 else {
            return TraceSpan(None);
        };
        if let Some(head) = inner.head {
            // Only a new trace is drawn for: a child's parent was recorded (the contexts handed
            // around are sampled ones), so the child is too.
            if parent.is_none() && !head.records() {
                return TraceSpan(None);
            }
            if inner.gate.shed() {
                return TraceSpan(None);
            }
        }
        let cx = match parent {
            Some(p) if p.is_valid() => Context::new().with_remote_span_context(p.clone()),
            _ => Context::new(),
        };
        let mut builder = inner
            .tracer
            .span_builder(Cow::Borrowed(name))
            .with_kind(kind);
        if let Some(t) = start {
            builder = builder.with_start_time(t);
        }
        if !links.is_empty() {
            builder = builder.with_links(
                links
                    .iter()
                    .filter(|l| l.is_valid())
                    .map(|l| Link::with_context(l.clone()))
                    .collect(),
            );
        }
        let span = inner.tracer.build_with_context(builder, &cx);
        TraceSpan(Some(span))
    }
}

/// One span; ended when dropped (or by [`TraceSpan::end`]). Every method is a no-op on a span
/// that does not record.
pub struct TraceSpan(Option<opentelemetry_sdk::trace::Span>);

impl std::fmt::Debug for TraceSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TraceSpan").field(&self.context()).finish()
    }
}

impl TraceSpan {
    /// A span that records nothing.
    pub fn none() -> TraceSpan {
        TraceSpan(None)
    }

    /// Whether attributes set now are kept: the caller skips building costly ones otherwise.
    pub fn is_recording(&self) -> bool {
        use opentelemetry::trace::Span as _;
        self.0.as_ref().is_some_and(|s| s.is_recording())
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        use opentelemetry::trace::Span as _;
        if let Some(s) = self.0.as_mut().filter(|s| s.is_recording()) {
            s.set_attribute(KeyValue::new(key, value));
        }
    }

    /// A span event (a gap, a decode error, an error event) with its details.
    pub fn event(&mut self, name: &'static str, attributes: Vec<KeyValue>) {
        use opentelemetry::trace::Span as _;
        if let Some(s) = self.0.as_mut().filter(|s| s.is_recording()) {
            s.add_event(name, attributes);
        }
    }

    /// Marks the span failed with `message`.
    pub fn error(&mut self, message: impl Into<Cow<'static, str>>) {
        use opentelemetry::trace::Span as _;
        if let Some(s) = self.0.as_mut().filter(|s| s.is_recording()) {
            s.set_status(Status::error(message));
        }
    }

    /// The span's context when it is sampled: what a child, a link or an exemplar refers to.
    pub fn context(&self) -> Option<SpanContext> {
        use opentelemetry::trace::Span as _;
        self.0
            .as_ref()
            .map(|s| s.span_context().clone())
            .filter(|c| c.is_sampled())
    }

    pub fn end(self) {}
}

/// A sampled span's ids: what an exemplar points at, and what an alert keeps (in the data dir
/// too) of the event that made it fire or resolve, which its notifications link to.
pub use crate::telemetry::TraceIds;

/// The ids of `cx`, when it is a valid span.
pub fn ids_of(cx: &SpanContext) -> Option<TraceIds> {
    cx.is_valid().then(|| TraceIds {
        trace_id: u128::from_be_bytes(cx.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(cx.span_id().to_bytes()),
    })
}

/// A sampled context for `ids` (only sampled spans are ever kept), to link to or parent on.
pub fn context_of(ids: TraceIds) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(ids.trace_id.to_be_bytes()),
        SpanId::from_bytes(ids.span_id.to_be_bytes()),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    )
}

/// The W3C `traceparent` header value for `cx`.
pub fn traceparent(cx: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        cx.trace_id(),
        cx.span_id(),
        cx.trace_flags().to_u8()
    )
}

/// The sampling decision for a new trace, made with one random draw before the SDK builds a span:
/// an unsampled span from the SDK still costs ids, a sampler call and an allocation, which at 1%
/// was most of tracing's cost per event. The ratio samplers' draw is random rather than read
/// from the trace id: the sidecar's traces start here (no upstream service shares their ids), so
/// the two decide alike.
#[derive(Debug, Clone, Copy)]
struct Head(f64);

impl Head {
    fn of(s: Sampling) -> Option<Head> {
        match s {
            Sampling::AlwaysOn | Sampling::ParentBasedAlwaysOn => Some(Head(1.0)),
            Sampling::Ratio(r) | Sampling::ParentBasedRatio(r) => Some(Head(r)),
            Sampling::AlwaysOff | Sampling::ParentBasedAlwaysOff => None,
        }
    }

    fn records(self) -> bool {
        self.0 >= 1.0 || fastrand::f64() < self.0
    }
}

fn sampler(s: Sampling) -> Sampler {
    match s {
        Sampling::AlwaysOn => Sampler::AlwaysOn,
        Sampling::AlwaysOff => Sampler::AlwaysOff,
        Sampling::Ratio(r) => Sampler::TraceIdRatioBased(r),
        Sampling::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        Sampling::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        Sampling::ParentBasedRatio(r) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
        }
    }
}

/// `service.name`, `service.version`, `service.instance.id` (new per process) and
/// `ocx.account` (one name, or the list), over `OTEL_RESOURCE_ATTRIBUTES`.
fn resource(settings: &TraceSettings, accounts: &[String]) -> Resource {
    let instance = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        0x8000 | fastrand::u16(..0x4000),
        fastrand::u64(..1 << 48)
    );
    let account: Value = match accounts {
        [one] => one.clone().into(),
        many => Value::Array(
            many.iter()
                .map(|a| opentelemetry::StringValue::from(a.clone()))
                .collect::<Vec<_>>()
                .into(),
        ),
    };
    let mut attrs: Vec<KeyValue> = settings
        .resource
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    attrs.push(KeyValue::new("service.name", settings.service_name.clone()));
    attrs.push(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    attrs.push(KeyValue::new("service.instance.id", instance));
    attrs.push(KeyValue::new("ocx.account", account));
    Resource::builder_empty().with_attributes(attrs).build()
}

fn build_exporter(
    settings: &TraceSettings,
    client: reqwest::Client,
) -> Result<opentelemetry_otlp::SpanExporter, TraceError> {
    let built = match settings.protocol {
        OtlpProtocol::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (k, v) in &settings.headers {
                let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes())
                    .map_err(|_| TraceError::Header(k.clone()))?;
                // The value is a secret: the error names the header, not the value.
                let value = v
                    .expose()
                    .parse()
                    .map_err(|_| TraceError::Header(k.clone()))?;
                metadata.insert(key, value);
            }
            let mut b = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.timeout)
                .with_metadata(metadata);
            if settings.endpoint.starts_with("https://") {
                b = b.with_tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots());
            }
            b.build()
        }
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(settings.endpoint.clone())
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(settings.timeout)
            .with_headers(
                settings
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_string()))
                    .collect(),
            )
            .with_http_client(http::ReqwestClient(client))
            .build(),
    };
    built.map_err(|e| TraceError::Exporter(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_round_trips_through_hex_and_a_context() {
        let link = TraceIds {
            trace_id: 0x0af7651916cd43dd8448eb211c80319c,
            span_id: 0xb7ad6b7169203331,
        };
        let json = serde_json::to_string(&link).unwrap();
        assert_eq!(
            json,
            r#"{"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331"}"#
        );
        assert_eq!(serde_json::from_str::<TraceIds>(&json).unwrap(), link);
        let cx = context_of(link);
        assert_eq!(ids_of(&cx), Some(link));
        assert_eq!(
            traceparent(&cx),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
    }

    fn settings(sampling: Sampling) -> TraceSettings {
        TraceSettings {
            endpoint: "http://127.0.0.1:1".into(),
            protocol: OtlpProtocol::Grpc,
            headers: Vec::new(),
            timeout: std::time::Duration::from_secs(1),
            sampling,
            service_name: "t".into(),
            resource: Vec::new(),
            max_queue_size: 10_000,
            max_export_batch_size: 512,
            schedule_delay: std::time::Duration::from_secs(60),
        }
    }

    // The ratio picks new traces; a child of a recorded span is recorded; always_off records
    // nothing.
    #[tokio::test]
    async fn the_ratio_decides_new_traces_and_children_follow_their_parent() {
        let t = Telemetry::new();
        let (_stop, rx) = watch::channel(false);
        let client = reqwest::Client::new();
        let (half, _task) = Traces::start(
            &settings(Sampling::ParentBasedRatio(0.5)),
            &["a".into()],
            &t,
            client.clone(),
            rx.clone(),
        )
        .unwrap();
        let mut recorded = 0;
        for _ in 0..2000 {
            let root = half.span("stream.event", SpanKind::Consumer, None, &[]);
            if let Some(cx) = root.context() {
                recorded += 1;
                let child = half.span("state.apply", SpanKind::Internal, Some(&cx), &[]);
                assert!(child.is_recording(), "a recorded trace's child is recorded");
            }
        }
        assert!(
            (850..=1150).contains(&recorded),
            "{recorded} of 2000 at 0.5"
        );
        let (off, _task) = Traces::start(
            &settings(Sampling::ParentBasedAlwaysOff),
            &["a".into()],
            &t,
            client,
            rx,
        )
        .unwrap();
        assert!(
            !off.span("stream.event", SpanKind::Consumer, None, &[])
                .is_recording()
        );
    }

    #[test]
    fn off_spans_record_nothing_and_have_no_context() {
        let t = Traces::off();
        let mut s = t.span("stream.event", SpanKind::Consumer, None, &[]);
        assert!(!s.is_recording());
        s.set("ocx.event.seq", 1i64);
        assert!(s.context().is_none());
    }
}
