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
    /// The processor and the receiving end for [`run`]; `capacity` spans may wait.
    pub fn new(capacity: usize, telemetry: &Telemetry) -> (Self, mpsc::Receiver<SpanData>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let full = telemetry.counter(names::TRACE_SPANS_DROPPED, &[("reason", "queue_full")]);
        (Self { tx, full }, rx)
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
        let ok = export(
            &exporter,
            &mut batch,
            batching.timeout,
            &series,
            failures == 0,
        )
        .await;
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
    // What is queued gets one export, bounded: a collector that is down must not hold the
    // process's exit.
    while let Ok(s) = rx.try_recv() {
        batch.push(s);
        if batch.len() >= max {
            export(&exporter, &mut batch, SHUTDOWN_EXPORT, &series, false).await;
        }
    }
    export(&exporter, &mut batch, SHUTDOWN_EXPORT, &series, false).await;
    rx.close();
}

/// The wait after `failures` failed exports in a row: `delay` doubled per failure, at most
/// [`MAX_BACKOFF`].
fn backoff(delay: Duration, failures: u32) -> Duration {
    let base = delay.max(Duration::from_millis(100));
    base.saturating_mul(1u32 << failures.min(16))
        .min(MAX_BACKOFF)
}

/// Exports and empties `batch`; true when the collector took it. `warn` logs a failure (the first
/// of a run of failures; later ones are only counted).
async fn export<E: SpanExporter>(
    exporter: &E,
    batch: &mut Vec<SpanData>,
    timeout: Duration,
    series: &Series,
    warn: bool,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let spans = std::mem::take(batch);
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
