//! The notifier's rows in the data dir: the outbox (every notification before it is sent, until its receiver acknowledges it) and the notification log (what each receiver integration last got for each group), with their ids, encodings and what a restart reads back.
//!
//! One outbox row per (group, receiver integration): a newer notification of the same group
//! replaces an older one not yet acknowledged, since it carries the group's current state (as
//! Alertmanager never sends a group's stale state either). A row is deleted when its receiver
//! acknowledged it (in the same commit as the log entry that records it) or refused it for good;
//! one that failed past its retries stays, for the group's next flush to replace or a restart to
//! send.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::dispatch::{Flush, LogEntry, NotifyAlert};
use crate::datadir::Row;

pub const OUTBOX: &str = "outbox";
pub const NFLOG: &str = "nflog";

/// Log entries older than this are dropped at start (Alertmanager's `--data.retention`).
pub const NFLOG_RETENTION: Duration = Duration::from_secs(120 * 3600);

/// One notification waiting for its receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub flush: Flush,
    /// Index of the integration in its receiver, and its kind (a restart with a changed
    /// configuration sends only to an integration of the same kind at the same place).
    pub integration: usize,
    pub kind: String,
    /// What is sent (muted alerts and, without `send_resolved`, resolved ones left out).
    pub alerts: Vec<NotifyAlert>,
    /// What the log records once it is acknowledged.
    pub firing: BTreeSet<u64>,
    pub resolved: BTreeSet<u64>,
    pub created_ms: i64,
    /// When the alert change that triggered it happened (wall ms; none for a repeat): the
    /// notification latency is measured from here to the acknowledgement.
    #[serde(default)]
    pub trigger_ms: Option<i64>,
}

impl OutboxEntry {
    pub fn id(&self) -> String {
        outbox_id(&self.flush.id, self.integration)
    }

    pub fn row(&self) -> Row {
        Row {
            kind: OUTBOX,
            id: self.id(),
            // UNWRAP: strings, integers and sets of integers always serialize.
            value: Some(serde_json::to_string(self).unwrap()),
        }
    }
}

pub fn outbox_id(flush_id: &str, integration: usize) -> String {
    format!("{flush_id}\u{1f}{integration}")
}

pub fn delete_outbox(id: String) -> Row {
    Row {
        kind: OUTBOX,
        id,
        value: None,
    }
}

/// The notification log's key: group key, receiver, integration index.
pub type LogKey = (String, String, usize);

pub fn log_row(key: &LogKey, entry: &LogEntry) -> Row {
    Row {
        kind: NFLOG,
        id: log_id(key),
        // UNWRAP: sets of integers and an integer always serialize.
        value: Some(serde_json::to_string(entry).unwrap()),
    }
}

fn log_id(key: &LogKey) -> String {
    format!("{}\u{1f}{}\u{1f}{}", key.0, key.1, key.2)
}

/// What the data dir held for the notifier at start.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    pub log: Vec<(LogKey, LogEntry)>,
    pub outbox: Vec<OutboxEntry>,
    /// Rows to delete: those that could not be read, and log entries past retention.
    pub stale: Vec<Row>,
    /// How many of them could not be read.
    pub unreadable: u64,
}

impl Restored {
    /// Decodes the stored rows; log entries older than [`NFLOG_RETENTION`] at `now_ms` are
    /// dropped (and deleted).
    pub fn decode(log: &[(String, String)], outbox: &[(String, String)], now_ms: i64) -> Restored {
        let mut r = Restored::default();
        let retention = i64::try_from(NFLOG_RETENTION.as_millis()).unwrap_or(i64::MAX);
        for (id, v) in log {
            let mut parts = id.split('\u{1f}');
            let key = match (
                parts.next(),
                parts.next(),
                parts.next().map(str::parse::<usize>),
            ) {
                (Some(g), Some(rcv), Some(Ok(i))) => Some((g.to_string(), rcv.to_string(), i)),
                _ => None,
            };
            let stale = Row {
                kind: NFLOG,
                id: id.clone(),
                value: None,
            };
            match (key, serde_json::from_str::<LogEntry>(v)) {
                (Some(k), Ok(e)) if now_ms - e.at_ms <= retention => r.log.push((k, e)),
                (Some(_), Ok(_)) => r.stale.push(stale),
                _ => {
                    r.stale.push(stale);
                    r.unreadable += 1;
                }
            }
        }
        for (id, v) in outbox {
            match serde_json::from_str::<OutboxEntry>(v) {
                Ok(e) if &e.id() == id => r.outbox.push(e),
                _ => {
                    r.stale.push(delete_outbox(id.clone()));
                    r.unreadable += 1;
                }
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entry() -> OutboxEntry {
        let alert = NotifyAlert {
            labels: BTreeMap::from([("alertname".into(), "A".into())]),
            annotations: BTreeMap::new(),
            starts_at_ms: 1,
            ends_at_ms: None,
            value: f64::INFINITY,
            generator_url: "http://x/graph".into(),
            trigger: None,
        };
        OutboxEntry {
            flush: Flush {
                id: "{}:{alertname=\"A\"}".into(),
                route: "{}".into(),
                group_key: "{}:{alertname=\"A\"}".into(),
                receiver: "team".into(),
                group_labels: BTreeMap::new(),
                repeat_interval: Duration::from_secs(3600),
                group_interval: Duration::from_secs(300),
                alerts: vec![alert.clone()],
                fallback: None,
            },
            integration: 1,
            kind: "webhook".into(),
            alerts: vec![alert],
            firing: BTreeSet::from([7]),
            resolved: BTreeSet::new(),
            created_ms: 5,
            trigger_ms: Some(4),
        }
    }

    #[test]
    fn outbox_and_log_rows_round_trip_and_old_or_garbled_ones_are_dropped() {
        let e = entry();
        let row = e.row();
        let key: LogKey = ("{}:{}".into(), "team".into(), 1);
        let fresh = LogEntry {
            firing: BTreeSet::from([7]),
            resolved: BTreeSet::new(),
            at_ms: 1_000_000,
        };
        let old = LogEntry {
            at_ms: 0,
            ..fresh.clone()
        };
        let old_key: LogKey = ("{}:{x}".into(), "team".into(), 0);
        let log =
            [log_row(&key, &fresh), log_row(&old_key, &old)].map(|r| (r.id, r.value.unwrap()));
        let now = NFLOG_RETENTION.as_millis() as i64 + 500_000;
        let outbox = [
            (row.id.clone(), row.value.clone().unwrap()),
            ("bad".into(), "{".into()),
        ];
        let r = Restored::decode(&log, &outbox, now);
        assert_eq!(r.outbox, vec![e]);
        assert!(r.outbox[0].alerts[0].value.is_infinite());
        assert_eq!(r.log, vec![(key, fresh)]);
        assert_eq!(r.stale.len(), 2, "{:?}", r.stale);
        assert!(r.stale.iter().all(|r| r.value.is_none()));
        assert_eq!(r.unreadable, 1, "only the garbled row was unreadable");
    }
}
