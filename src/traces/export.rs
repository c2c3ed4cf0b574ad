//! The span pipeline's edge: a bounded queue that ended spans enter without ever waiting, and the task that batches them to the OTLP exporter with a deadline and a capped backoff.
//!
//! The SDK's own batch processor runs a thread of its own and blocks in `force_flush` and
//! `shutdown` (which stalls a one-worker runtime); and it reports dropped spans only in its own
//! log. This one is a Tokio task under the app's shutdown signal, and every lost span is counted
//! in `ocx_trace_spans_dropped_total`, by reason.

use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::telemetry::{Counter, Histogram, Telemetry, names};

/// After this many failed exports in a row, the next waits this long at most.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// What a shutdown leaves the last export.
const SHUTDOWN_EXPORT: Duration = Duration::from_secs(2);

/// The span processor the tracer provider calls: a sampled span that ended goes into the queue,
/// or is counted as dropped when the queue is full. Never blocks the caller (the stream task).
pub struct QueueProcessor {
    tx: mpsc::Sender<SpanData>,
    full: Counter,
}

impl std::fmt::Debug for QueueProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueProcessor")
            .field("capacity", &self.tx.max_capacity())
            .finish()
    }
}

impl QueueProcessor {
    /// The processor, a [`Gate`] on its queue, and the receiving end for [`run`]; `capacity`
    /// spans may wait.
    pub fn new(capacity: usize, telemetry: &Telemetry) -> (Self, Gate, mpsc::Receiver<SpanData>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let full = telemetry.counter(names::TRACE_SPANS_DROPPED, &[("reason", "queue_full")]);
        let gate = Gate {
            tx: tx.clone(),
            full: full.clone(),
        };
        (Self { tx, full }, gate, rx)
    }
}

/// Whether the queue is full, for shedding spans before they are built: a span that would only
/// be dropped at the queue costs the stream task its attributes, clock reads and allocations
/// for nothing.
#[derive(Clone)]
pub struct Gate {
    tx: mpsc::Sender<SpanData>,
    full: Counter,
}

impl Gate {
    /// True (and the span counted as dropped) when a span started now would find the queue
    /// full.
    pub fn shed(&self) -> bool {
        let full = self.tx.capacity() == 0;
        if full {
            self.full.increment(1);
        }
        full
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        // A closed queue (the export task has stopped at shutdown) loses the span as a full one
        // does: counted, never waited for.
        if self.tx.try_send(span).is_err() {
            self.full.increment(1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// How the export task batches.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub max_batch: usize,
    /// How long a partial batch waits for more spans.
    pub delay: Duration,
    /// Each export's deadline (the exporter has its own; this one also bounds a collector that
    /// accepts the connection and never answers).
    pub timeout: Duration,
}

struct Series {
    exported: Counter,
    failed: Counter,
    duration: Histogram,
}

/// Batches spans from `rx` to `exporter` until `shutdown`, then exports what is queued once,
/// within a short deadline. A failed export drops its batch (counted) and the next export waits
/// a doubling backoff (up to 30s): a collector that is down costs a full queue and a counter,
/// not CPU and not the stream.
pub async fn run<E: SpanExporter>(
    mut rx: mpsc::Receiver<SpanData>,
    exporter: E,
    batching: Batching,
    telemetry: Telemetry,
    mut shutdown: watch::Receiver<bool>,
) {
    let series = Series {
        exported: telemetry.counter(names::TRACE_SPANS_EXPORTED, &[]),
        failed: telemetry.counter(names::TRACE_SPANS_DROPPED, &[("reason", "export_failed")]),
        duration: telemetry.histogram(names::TRACE_EXPORT_DURATION, &[]),
    };
    let max = batching.max_batch.max(1);
    let mut failures: u32 = 0;
    let mut batch: Vec<SpanData> = Vec::with_capacity(max);
    // When the shutdown came during an export: the last exports' 2s count from then.
    let mut stopped_at: Option<Instant> = None;
    loop {
        // Wait for the first span of a batch, then for more until the batch is full or
        // `delay` has passed since that first span.
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            first = rx.recv() => match first {
                Some(s) => batch.push(s),
                None => break,
            },
        }
        let until = Instant::now() + batching.delay;
        while batch.len() < max {
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|s| *s) => break,
                more = tokio::time::timeout_at(until, rx.recv()) => match more {
                    Ok(Some(s)) => batch.push(s),
                    Ok(None) | Err(_) => break,
                },
            }
        }
        // Already stopping: the batch goes with the shutdown's export, below.
        if *shutdown.borrow() {
            break;
        }
        // An export in flight when the shutdown comes may finish within the shutdown's 2s
        // (with the 10s default timeout, waiting for all of it would hold the exit); past them
        // it is abandoned, its spans counted.
        let spans = std::mem::take(&mut batch);
        let n = spans.len() as u64;
        let sending = export(&exporter, spans, batching.timeout, &series, failures == 0);
        tokio::pin!(sending);
        // The watch's read guard must not live across the await below (the task is `Send`).
        let stopping = async {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        let ok = tokio::select! {
            biased;
            ok = &mut sending => ok,
            () = stopping => {
                stopped_at = Some(Instant::now());
                if tokio::time::timeout(SHUTDOWN_EXPORT, &mut sending).await.is_err() {
                    telemetry
                        .counter(names::TRACE_SPANS_DROPPED, &[("reason", "shutdown")])
                        .increment(n);
                }
                break;
            }
        };
        if ok {
            failures = 0;
        } else {
            failures = failures.saturating_add(1);
            let wait = backoff(batching.delay, failures);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
    }
    // What is queued gets exported within one deadline for all of it: a collector that is down
    // must not hold the process's exit (batch by batch, each with its own deadline, a full
    // queue took four of them). What the deadline leaves is counted, not sent.
    rx.close();
    let deadline = stopped_at.unwrap_or_else(Instant::now) + SHUTDOWN_EXPORT;
    let unsent = telemetry.counter(names::TRACE_SPANS_DROPPED, &[("reason", "shutdown")]);
    loop {
        while batch.len() < max
            && let Ok(s) = rx.try_recv()
        {
            batch.push(s);
        }
        if batch.is_empty() {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = batch.len() as u64;
        let spans = std::mem::take(&mut batch);
        if left.is_zero() || !export(&exporter, spans, left, &series, false).await {
            // A failed export counted its own spans as export_failed.
            if left.is_zero() {
                unsent.increment(n);
            }
            let mut rest = 0;
            while rx.try_recv().is_ok() {
                rest += 1;
            }
            unsent.increment(rest);
            break;
        }
    }
}

/// The wait after `failures` failed exports in a row: `delay` doubled per failure, at most
/// [`MAX_BACKOFF`].
fn backoff(delay: Duration, failures: u32) -> Duration {
    let base = delay.max(Duration::from_millis(100));
    base.saturating_mul(1u32 << failures.min(16))
        .min(MAX_BACKOFF)
}

/// Exports `spans`; true when the collector took them. `warn` logs a failure (the first of a run
/// of failures; later ones are only counted).
async fn export<E: SpanExporter>(
    exporter: &E,
    spans: Vec<SpanData>,
    timeout: Duration,
    series: &Series,
    warn: bool,
) -> bool {
    if spans.is_empty() {
        return true;
    }
    let n = spans.len() as u64;
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, exporter.export(spans)).await;
    series.duration.record(started.elapsed().as_secs_f64());
    let error = match result {
        Ok(Ok(())) => {
            series.exported.increment(n);
            return true;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {}ms", timeout.as_millis()),
    };
    series.failed.increment(n);
    if warn {
        // The exporter's error names the endpoint and the cause, never the headers.
        tracing::warn!(spans = n, error = %error, "trace export failed: spans dropped (later failures are only counted until an export succeeds)");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Tracer, TracerProvider};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// A collector that takes the connection and never answers.
    #[derive(Debug)]
    struct Silent;

    impl SpanExporter for Silent {
        fn export(
            &self,
            _batch: Vec<SpanData>,
        ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
            std::future::pending()
        }
    }

    // A collector that never answers: every export ends at its deadline, the spans are counted
    // as lost, and the shutdown's last export is bounded for all that is queued (not per batch).
    #[tokio::test(start_paused = true)]
    async fn a_silent_collector_costs_counted_spans_and_a_bounded_shutdown() {
        let t = Telemetry::new();
        let (processor, gate, rx) = QueueProcessor::new(100, &t);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        let tracer = provider.tracer("test");
        // 130 spans into a queue of 100: 30 find it full.
        for _ in 0..130 {
            drop(tracer.start("s"));
        }
        assert!(
            gate.shed(),
            "the gate sees the full queue (and counts one more)"
        );
        let (stop, stop_rx) = watch::channel(false);
        let batching = Batching {
            max_batch: 10,
            delay: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
        };
        let task = tokio::spawn(run(rx, Silent, batching, t.clone(), stop_rx));
        // One export runs into its deadline; then the backoff.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let started = Instant::now();
        stop.send(true).unwrap();
        task.await.unwrap();
        assert!(
            started.elapsed() <= SHUTDOWN_EXPORT + Duration::from_millis(50),
            "the shutdown took {:?}",
            started.elapsed()
        );
        let c = |reason: &str| {
            t.counter(names::TRACE_SPANS_DROPPED, &[("reason", reason)])
                .get()
        };
        assert_eq!(c("queue_full"), 31.0);
        // The first batch timed out at 1s; the second, in flight at the shutdown, ran into its
        // own 1s; the next one ran into what was left of the shutdown's 2s; the rest were never
        // sent.
        assert_eq!(c("export_failed"), 30.0);
        assert_eq!(c("shutdown"), 70.0);
        assert_eq!(
            c("queue_full") - 1.0 + c("export_failed") + c("shutdown"),
            130.0,
            "every span is accounted for"
        );
        assert_eq!(t.counter(names::TRACE_SPANS_EXPORTED, &[]).get(), 0.0);
    }

    #[test]
    fn the_backoff_doubles_from_the_delay_and_is_capped() {
        let d = Duration::from_secs(1);
        assert_eq!(backoff(d, 1), Duration::from_secs(2));
        assert_eq!(backoff(d, 3), Duration::from_secs(8));
        assert_eq!(backoff(d, 10), MAX_BACKOFF);
        assert_eq!(backoff(d, u32::MAX), MAX_BACKOFF);
        // A tiny schedule delay still backs off from 100ms: a down collector is not hammered.
        assert_eq!(
            backoff(Duration::from_millis(1), 1),
            Duration::from_millis(200)
        );
    }
}
