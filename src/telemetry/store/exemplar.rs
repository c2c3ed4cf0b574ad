//! Exemplars: the trace of one observation (its ids, value and wall-clock time) kept beside a counter's total or a histogram bucket, the latest replacing the one before; rendered in OpenMetrics only.

use std::sync::{Mutex, PoisonError};

/// The trace and span an exemplar points at: the W3C trace-context ids as plain integers, so the
/// store depends on no tracing library's types. Rendered as the labels `trace_id` (32 lowercase
/// hex digits) and `span_id` (16), the names Grafana and Prometheus' exemplar docs use; stored
/// (an alert's trigger, in the outbox) as the same hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TraceIds {
    #[serde(with = "hex128")]
    pub trace_id: u128,
    #[serde(with = "hex64")]
    pub span_id: u64,
}

mod hex128 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:032x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        u128::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}

mod hex64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}

/// The two label names and their values' fixed widths.
pub(super) const TRACE_ID_LABEL: &str = "trace_id";
pub(super) const SPAN_ID_LABEL: &str = "span_id";

// OpenMetrics caps an exemplar's label names and values at 128 UTF-8 characters together (and
// Prometheus drops an exemplar over it); ours are always 8 + 32 + 7 + 16 = 63.
const _: () = assert!(TRACE_ID_LABEL.len() + 32 + SPAN_ID_LABEL.len() + 16 <= 128);

/// One exemplar as held and rendered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Exemplar {
    pub ids: TraceIds,
    /// A counter's increment, or the observation a histogram counted into the bucket.
    pub value: f64,
    /// When it was observed, unix milliseconds (OpenMetrics renders seconds with ms precision).
    pub unix_ms: i64,
}

/// Where a counter's total or a histogram bucket keeps its latest exemplar.
///
/// A mutex rather than a seqlock: only the exemplar path (sampled traces, a small share of
/// events) and the renderer (once a scrape) take it, so it is all but never contended, and a
/// mutex needs no retry loop or unsafe copy of a 48-byte value. The exemplar is boxed on first
/// use so the slot is 16 bytes and costs no allocation when it is created: every counter and
/// histogram bucket has one, and most never hold an exemplar. The plain `increment`/`record`
/// paths never touch it.
#[derive(Debug, Default)]
pub(crate) struct ExemplarSlot(Mutex<Option<Box<Exemplar>>>);

impl ExemplarSlot {
    /// Replace the held exemplar: the latest wins.
    pub(super) fn set(&self, e: Exemplar) {
        // A panic cannot happen while the lock is held (plain stores), so poisoning never
        // leaves a half-written exemplar.
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_mut() {
            Some(b) => **b = e,
            None => *held = Some(Box::new(e)),
        }
    }

    /// The held exemplar, if any.
    pub(crate) fn get(&self) -> Option<Exemplar> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_deref()
            .copied()
    }
}
