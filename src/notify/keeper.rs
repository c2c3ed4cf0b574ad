//! The silences' upkeep task: writes the store to the data dir after every change and keeps `ocx_sentinel_silences{state}` current as silences start and end.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::amapi::AmApi;
use super::silence::SilenceState;
use crate::clock::unix_ms;
use crate::datadir::{Row, WriterHandle};
use crate::telemetry::{Telemetry, names};

/// Without a silence starting or ending, the series are still refreshed this often (a wall
/// clock stepped forward moves states without an event).
const REFRESH: Duration = Duration::from_secs(60);

/// Where the store goes: the writer, and the row's kind and id.
pub type SilenceRow = (WriterHandle, &'static str, &'static str);

/// Runs until `shutdown`. A write happens within milliseconds of the API's answer (the
/// writer commits it with the next group); a failed commit is retried by the writer.
pub async fn keep_silences(
    am: Arc<AmApi>,
    store: Option<SilenceRow>,
    telemetry: Telemetry,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = am.subscribe();
    // Restored silences are already on disk: only later versions are written.
    let mut written = Some(*changes.borrow_and_update());
    loop {
        let now = unix_ms();
        let (counts, next, version, bytes) = {
            let s = am.silences();
            let mut counts = [0usize; 3];
            for sil in s.iter() {
                counts[match sil.state(now) {
                    SilenceState::Active => 0,
                    SilenceState::Pending => 1,
                    SilenceState::Expired => 2,
                }] += 1;
            }
            let version = s.version();
            let bytes = (written != Some(version)).then(|| s.encode());
            (counts, s.next_change(now), version, bytes)
        };
        for (state, n) in ["active", "pending", "expired"].into_iter().zip(counts) {
            telemetry
                .gauge(names::SILENCES, &[("state", state)])
                .set(n as f64);
        }
        if let Some(bytes) = bytes {
            written = Some(version);
            if let Some((w, kind, id)) = &store {
                w.put(
                    vec![Row {
                        kind,
                        id: id.to_string(),
                        value: Some(String::from_utf8_lossy(&bytes).into_owned()),
                    }],
                    Box::new(|_| {}),
                );
            }
        }
        let wait = next
            .map(|t| Duration::from_millis((t - now).max(1).unsigned_abs()))
            .unwrap_or(REFRESH)
            .min(REFRESH);
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}
