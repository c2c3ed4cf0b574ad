//! The wall clock in unix milliseconds: read only at the IO edges (stream receipt times, rule evaluation timestamps, silence and notification times, exemplar times), never inside the pure core.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 for a clock set before 1970.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
