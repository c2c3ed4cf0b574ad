//! Log lines as text or JSON, each carrying the trace and span ids of the span active when it was written (the event being applied, the notification being sent), so a log line leads to its trace.
//!
//! The active span is OpenTelemetry's current context, which the sidecar sets around the sync
//! work of a sampled span ([`in_span`]); a line written outside one carries no ids.

use std::fmt;

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Runs `f` with `cx` as the active span (when there is one): the log lines `f` writes carry
/// its ids. Sync only: the guard must not live across an `.await`.
pub fn in_span<R>(cx: Option<&SpanContext>, f: impl FnOnce() -> R) -> R {
    match cx {
        Some(cx) if cx.is_valid() => {
            let _guard = Context::new().with_remote_span_context(cx.clone()).attach();
            f()
        }
        _ => f(),
    }
}

/// The active span's ids, as hex.
fn active_ids() -> Option<(String, String)> {
    let cx = Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-11-26T03:04:05.678901Z  WARN target: message key=value trace_id=… span_id=…`
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `fields` (with `message`), and
    /// `trace_id`/`span_id` when a span is active.
    Json,
}

/// The formatter for both formats.
#[derive(Debug, Clone, Copy)]
pub struct TraceAware(pub LogFormat);

impl<S, N> FormatEvent<S, N> for TraceAware
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        match self.0 {
            LogFormat::Text => text(ctx, &mut writer, event),
            LogFormat::Json => json(&mut writer, event),
        }
    }
}

fn text<S, N>(ctx: &FmtContext<'_, S, N>, w: &mut Writer<'_>, event: &Event<'_>) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let meta = event.metadata();
    SystemTime.format_time(w)?;
    let level = *meta.level();
    if w.has_ansi_escapes() {
        let color = match level {
            Level::ERROR => "31",
            Level::WARN => "33",
            Level::INFO => "32",
            Level::DEBUG => "34",
            Level::TRACE => "35",
        };
        write!(w, " \x1b[{color}m{level:>5}\x1b[0m ")?;
    } else {
        write!(w, " {level:>5} ")?;
    }
    write!(w, "{}: ", meta.target())?;
    ctx.format_fields(w.by_ref(), event)?;
    if let Some((trace, span)) = active_ids() {
        write!(w, " trace_id={trace} span_id={span}")?;
    }
    writeln!(w)
}

fn json(w: &mut Writer<'_>, event: &Event<'_>) -> fmt::Result {
    let meta = event.metadata();
    let mut fields = JsonFields(serde_json::Map::new());
    event.record(&mut fields);
    let mut stamp = String::new();
    SystemTime.format_time(&mut Writer::new(&mut stamp))?;
    let mut line = serde_json::Map::new();
    line.insert("timestamp".into(), stamp.into());
    line.insert("level".into(), meta.level().as_str().into());
    line.insert("target".into(), meta.target().into());
    line.insert("fields".into(), serde_json::Value::Object(fields.0));
    if let Some((trace, span)) = active_ids() {
        line.insert("trace_id".into(), trace.into());
        line.insert("span_id".into(), span.into());
    }
    let text = serde_json::to_string(&serde_json::Value::Object(line)).map_err(|_| fmt::Error)?;
    w.write_str(&text)?;
    writeln!(w)
}

/// An event's fields as JSON values (numbers and booleans as such, the rest as text).
struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::{TraceIds, context_of};
    use std::sync::{Arc, Mutex};

    /// Everything written, for a test subscriber.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .event_format(TraceAware(format))
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    const LINK: TraceIds = TraceIds {
        trace_id: 0x0af7651916cd43dd8448eb211c80319c,
        span_id: 0xb7ad6b7169203331,
    };

    #[test]
    fn a_line_in_a_span_carries_its_ids_and_one_outside_does_not() {
        let cx = context_of(LINK);
        let text = logged(LogFormat::Text, || {
            in_span(Some(&cx), || tracing::warn!(code = 7, "inside"));
            tracing::info!("outside");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with(
                "WARN ocx_sentinel::traces::log::tests: inside code=7 trace_id=0af7651916cd43dd8448eb211c80319c span_id=b7ad6b7169203331"
            ),
            "{text}"
        );
        assert!(
            lines[1].ends_with("INFO ocx_sentinel::traces::log::tests: outside"),
            "{text}"
        );
    }

    #[test]
    fn json_lines_are_objects_with_the_fields_and_the_ids() {
        let cx = context_of(LINK);
        let text = logged(LogFormat::Json, || {
            in_span(Some(&cx), || {
                tracing::warn!(code = 7, ok = true, stream = "user", "inside");
            });
            tracing::info!("outside");
        });
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["target"], "ocx_sentinel::traces::log::tests");
        assert_eq!(lines[0]["fields"]["message"], "inside");
        assert_eq!(lines[0]["fields"]["code"], 7);
        assert_eq!(lines[0]["fields"]["ok"], true);
        assert_eq!(lines[0]["fields"]["stream"], "user");
        assert_eq!(lines[0]["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(lines[0]["span_id"], "b7ad6b7169203331");
        assert!(lines[0]["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(lines[1].get("trace_id").is_none());
    }
}
