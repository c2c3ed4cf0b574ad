//! Alert state as data-dir rows: what a restart restores so `for` clocks, firing alerts and resolves still to be notified survive it, and the diff that writes only what changed.
//!
//! A row is one alert of one rule of one group, keyed by the group (file and name), the rule's
//! identity across reloads (kind, name and label templates) and the alert's labels: the same
//! keys a reload carries state by, so a restart is a reload from disk. The value is JSON; the
//! sample value is text so NaN and infinities round-trip.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::alert::{Alert, AlertState};
use super::promql::Labels;
use crate::datadir::Row;

/// The data-dir row kind of alert states.
pub const KIND: &str = "alert";

/// One alert as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAlert {
    pub group: String,
    pub rule: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: Vec<(String, String)>,
    pub state: String,
    pub value: String,
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub keep_firing_since_ms: Option<i64>,
}

impl StoredAlert {
    pub fn of(group: &str, rule: &str, a: &Alert) -> StoredAlert {
        StoredAlert {
            group: group.to_string(),
            rule: rule.to_string(),
            labels: a
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: a.annotations.clone(),
            state: a.state.as_str().to_string(),
            value: a.value.to_string(),
            active_at_ms: a.active_at_ms,
            fired_at_ms: a.fired_at_ms,
            resolved_at_ms: a.resolved_at_ms,
            keep_firing_since_ms: a.keep_firing_since_ms,
        }
    }

    /// The row id: group, rule and labels, separated by a byte no name contains.
    pub fn id(&self) -> String {
        id_of(
            &self.group,
            &self.rule,
            self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    /// What a write is needed for: the state and its clocks. The value and annotations change
    /// with every evaluation and are written along when the state does (a restart recomputes
    /// them at its first evaluation).
    fn core(&self) -> (&str, i64, Option<i64>, Option<i64>, Option<i64>) {
        (
            &self.state,
            self.active_at_ms,
            self.fired_at_ms,
            self.resolved_at_ms,
            self.keep_firing_since_ms,
        )
    }

    /// Back to an alert; `None` for a state this build does not know.
    pub fn alert(&self) -> Option<Alert> {
        let state = match self.state.as_str() {
            "pending" => AlertState::Pending,
            "firing" => AlertState::Firing,
            "inactive" => AlertState::Inactive,
            _ => return None,
        };
        Some(Alert {
            labels: Labels::new(self.labels.iter()),
            annotations: self.annotations.clone(),
            state,
            value: self.value.parse().ok()?,
            active_at_ms: self.active_at_ms,
            fired_at_ms: self.fired_at_ms,
            resolved_at_ms: self.resolved_at_ms,
            keep_firing_since_ms: self.keep_firing_since_ms,
        })
    }
}

/// The rows last written, to write only what changed.
#[derive(Debug, Default)]
pub struct Written {
    rows: BTreeMap<String, StoredAlert>,
}

impl Written {
    /// Starts from what was restored, so an unchanged alert is not written again.
    pub fn from_restored(alerts: &[StoredAlert]) -> Written {
        Written {
            rows: alerts.iter().map(|a| (a.id(), a.clone())).collect(),
        }
    }

    /// The rows to write to go from the last written state to `now`, which becomes the last.
    pub fn diff(&mut self, now: Vec<StoredAlert>) -> Vec<Row> {
        let held: std::collections::HashSet<String> = now.iter().map(StoredAlert::id).collect();
        let gone = self
            .rows
            .keys()
            .filter(|id| !held.contains(*id))
            .cloned()
            .collect();
        self.diff_some(now, gone)
    }

    /// [`Written::diff`] for some alerts only: `now` as they are, `gone` (ids) no longer held.
    /// What a pass changed is the alerts its transitions name; comparing every alert held
    /// after each of them cost a millisecond with thousands held, on the way to a notification.
    /// Rows not written keep their old value (and annotations) here, so the next comparison is
    /// against what is on disk.
    pub fn diff_some(&mut self, now: Vec<StoredAlert>, gone: Vec<String>) -> Vec<Row> {
        let mut rows = Vec::new();
        for a in now {
            let id = a.id();
            if self.rows.get(&id).is_none_or(|old| old.core() != a.core()) {
                rows.push(Row {
                    kind: KIND,
                    id: id.clone(),
                    // UNWRAP: a struct of strings and integers always serializes.
                    value: Some(serde_json::to_string(&a).unwrap()),
                });
                self.rows.insert(id, a);
            }
        }
        for id in gone {
            if self.rows.remove(&id).is_some() {
                rows.push(Row {
                    kind: KIND,
                    id,
                    value: None,
                });
            }
        }
        rows
    }
}

/// The row id of the alert with `labels` (in name order) under `rule` of `group`.
pub fn id_of<'a>(
    group: &str,
    rule: &str,
    labels: impl Iterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut id = format!("{group}\u{1f}{rule}\u{1f}");
    for (k, v) in labels {
        id.push_str(k);
        id.push('=');
        id.push_str(v);
        id.push('\u{1e}');
    }
    id
}

/// Decodes stored rows; undecodable ones are counted, not fatal.
pub fn decode(rows: &[(String, String)]) -> (Vec<StoredAlert>, u64) {
    let mut out = Vec::new();
    let mut bad = 0;
    for (_, v) in rows {
        match serde_json::from_str::<StoredAlert>(v) {
            Ok(a) if a.alert().is_some() => out.push(a),
            _ => bad += 1,
        }
    }
    (out, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(state: AlertState, value: f64) -> Alert {
        Alert {
            labels: Labels::new([("alertname", "A"), ("market", "SOL-PERP")]),
            annotations: vec![("summary".into(), format!("at {value}"))],
            state,
            value,
            active_at_ms: 1_000,
            fired_at_ms: (state == AlertState::Firing).then_some(31_000),
            resolved_at_ms: None,
            keep_firing_since_ms: None,
        }
    }

    #[test]
    fn an_alert_round_trips_through_its_row_with_nan_values() {
        let a = StoredAlert::of("f.yml;g", "alert\0A", &alert(AlertState::Firing, f64::NAN));
        let json = serde_json::to_string(&a).unwrap();
        let (back, bad) = decode(&[(a.id(), json)]);
        assert_eq!(bad, 0);
        let b = back[0].alert().unwrap();
        assert!(b.value.is_nan());
        assert_eq!(b.state, AlertState::Firing);
        assert_eq!(b.labels.get("market"), Some("SOL-PERP"));
        assert_eq!((b.active_at_ms, b.fired_at_ms), (1_000, Some(31_000)));
        let (none, bad) = decode(&[("x".into(), "{garbage".into())]);
        assert!(none.is_empty());
        assert_eq!(bad, 1);
    }

    #[test]
    fn only_state_changes_are_written_and_gone_alerts_are_deleted() {
        let mut w = Written::default();
        let of = |s, v| StoredAlert::of("g", "r", &alert(s, v));
        let first = w.diff(vec![of(AlertState::Pending, 1.0)]);
        assert_eq!(first.len(), 1);
        // A new value alone is not worth a write.
        assert!(w.diff(vec![of(AlertState::Pending, 2.0)]).is_empty());
        let fired = w.diff(vec![of(AlertState::Firing, 3.0)]);
        assert_eq!(fired.len(), 1);
        let v: StoredAlert = serde_json::from_str(fired[0].value.as_ref().unwrap()).unwrap();
        assert_eq!((v.state.as_str(), v.value.as_str()), ("firing", "3"));
        let gone = w.diff(vec![]);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].value, None);
        assert!(w.diff(vec![]).is_empty());
    }
}
