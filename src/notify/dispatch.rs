//! Aggregation groups and the notification log, pure: which alerts go out together and when, as Alertmanager's dispatcher (`group_wait`, `group_interval`, resolved alerts dropped after a successful flush) and its dedup stage (`repeat_interval`, `send_resolved`) decide.
//!
//! No IO and no clock: the caller passes alert updates and the time, asks which groups are due,
//! mutes (silences, inhibition, time intervals), sends, and reports each receiver integration's
//! outcome back. A group is keyed by its route and the values of its `group_by` labels.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Label set of an alert, sorted by name.
pub type LabelSet = BTreeMap<String, String>;

/// What the rule engine publishes after an evaluation that fired or resolved an alert: every
/// firing alert and every resolved one still retained. An alert unchanged since the previous
/// snapshot is the same `Arc` there.
pub type Notifiable = std::sync::Arc<Vec<std::sync::Arc<NotifyAlert>>>;

/// One alert as the notification side sees it. Serializable for the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyAlert {
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub starts_at_ms: i64,
    /// Set once the alert resolved.
    pub ends_at_ms: Option<i64>,
    /// The sample value that fired it (as text in the outbox: NaN and infinities round-trip).
    #[serde(with = "float_text")]
    pub value: f64,
    pub generator_url: String,
    /// The span of the event that made it fire (or resolve), when that event was traced: each
    /// notification about it links there. Kept in the outbox, so a notification sent after a
    /// restart still links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<crate::telemetry::TraceIds>,
}

impl NotifyAlert {
    /// Alertmanager's fingerprint: a hash of the label set, identity across updates.
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.labels)
    }

    pub fn resolved(&self) -> bool {
        self.ends_at_ms.is_some()
    }
}

/// FNV-1a over `name \xff value \xff` pairs in name order: stable across processes and
/// versions (unlike `std`'s hasher), so notification-log entries survive restarts.
pub fn fingerprint(labels: &LabelSet) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Which labels group alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// `group_by: ['...']`: every label, so each alert is its own group.
    All,
    Labels(Vec<String>),
}

/// What routing decided for an alert: one per matching route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    /// Identifies the route uniquely in the tree (Alertmanager's `Route.ID()`): groups of
    /// different routes never merge.
    pub route: String,
    /// Alertmanager's `Route.Key()`, the prefix of the group key receivers see.
    pub key: String,
    pub receiver: String,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    /// The route's `fallback_receiver` (an ocx-sentinel extension), if any.
    pub fallback: Option<Fallback>,
}

/// Where a group's notifications also go once its receiver has failed for `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fallback {
    pub receiver: String,
    pub after: Duration,
}

struct Group {
    plan: RoutePlan,
    labels: LabelSet,
    alerts: BTreeMap<u64, NotifyAlert>,
    next_flush_ms: i64,
}

/// One group's batch, due for notification. Serializable for the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flush {
    /// The group's identity here: route id and group labels.
    pub id: String,
    /// The route's id ([`RoutePlan::route`]), to look its time intervals up.
    pub route: String,
    /// Alertmanager's group key, as receivers see it: `{route key}:{group labels}`.
    pub group_key: String,
    pub receiver: String,
    pub group_labels: LabelSet,
    pub repeat_interval: Duration,
    /// Until the next flush of the group: how long a delivery of this one may retry.
    pub group_interval: Duration,
    /// Firing and resolved alerts, sorted by labels (resolved ones carry `ends_at_ms`).
    pub alerts: Vec<NotifyAlert>,
    /// The route's fallback receiver (none for a flush to the fallback itself).
    #[serde(default)]
    pub fallback: Option<Fallback>,
}

/// The aggregation groups of every route.
#[derive(Default)]
pub struct Dispatcher {
    groups: HashMap<String, Group>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("groups", &self.groups.len())
            .finish()
    }
}

/// The labels that name an alert's aggregation group under `by`.
pub fn group_labels(by: &GroupBy, labels: &LabelSet) -> LabelSet {
    match by {
        GroupBy::All => labels.clone(),
        GroupBy::Labels(names) => names
            .iter()
            .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
            .collect(),
    }
}

fn group_key(route: &str, labels: &LabelSet) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{route}:{{{}}}", inner.join(", "))
}

impl Dispatcher {
    pub fn new() -> Dispatcher {
        Dispatcher::default()
    }

    /// Put `alert` into the group of each route it matched (`plans`), at `now_ms`. A new group
    /// waits `group_wait` before its first flush; an alert that is already older than that when
    /// its group is created is flushed at once (it was delayed, not new).
    ///
    /// A resolved alert a group does not hold is dropped unless `notified(group_key, fingerprint)`
    /// says a receiver was told it was firing (the notification log knows it, but this
    /// dispatcher does not: after a restart or a reload): that one is held, so its resolve goes
    /// out.
    pub fn insert(
        &mut self,
        alert: &NotifyAlert,
        plans: &[RoutePlan],
        now_ms: i64,
        notified: &dyn Fn(&str, u64) -> bool,
    ) {
        let fp = alert.fingerprint();
        for plan in plans {
            let labels = group_labels(&plan.group_by, &alert.labels);
            let key = group_key(&plan.route, &labels);

            let group = self.groups.entry(key.clone()).or_insert_with(|| {
                let wait = ms(plan.group_wait);
                let first = if alert.starts_at_ms.saturating_add(wait) <= now_ms {
                    now_ms
                } else {
                    now_ms.saturating_add(wait)
                };
                Group {
                    plan: plan.clone(),
                    labels,
                    alerts: BTreeMap::new(),
                    next_flush_ms: first,
                }
            });
            // A resolved alert the group never held, and no receiver heard of, has nothing to
            // say to its receivers (and a group made just for it goes again).
            if alert.resolved() && !group.alerts.contains_key(&fp) && !notified(&key, fp) {
                if group.alerts.is_empty() {
                    self.groups.remove(&key);
                }
                continue;
            }
            group.alerts.insert(fp, alert.clone());
        }
    }

    /// When the next group is due, if any.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.groups.values().map(|g| g.next_flush_ms).min()
    }

    /// Every group due at `now_ms`, each with its alerts; their timers restart at
    /// `group_interval`.
    pub fn due(&mut self, now_ms: i64) -> Vec<Flush> {
        let mut out = Vec::new();
        for (key, g) in &mut self.groups {
            if g.next_flush_ms > now_ms {
                continue;
            }
            g.next_flush_ms = now_ms.saturating_add(ms(g.plan.group_interval));
            let mut alerts: Vec<NotifyAlert> = g.alerts.values().cloned().collect();
            alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
            out.push(Flush {
                id: key.clone(),
                route: g.plan.route.clone(),
                group_key: group_key(&g.plan.key, &g.labels),
                receiver: g.plan.receiver.clone(),
                group_labels: g.labels.clone(),
                repeat_interval: g.plan.repeat_interval,
                group_interval: g.plan.group_interval,
                alerts,
                fallback: g.plan.fallback.clone(),
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// A flush of `group_key` was delivered to every integration of its receiver: the resolved
    /// alerts it carried are dropped, unless they fired again meanwhile (their version in the
    /// group is then no longer the one sent). An empty group is removed.
    pub fn delivered(&mut self, flush: &Flush) {
        let Some(g) = self.groups.get_mut(&flush.id) else {
            return;
        };
        for sent in flush.alerts.iter().filter(|a| a.resolved()) {
            let fp = sent.fingerprint();
            if g.alerts.get(&fp) == Some(sent) {
                g.alerts.remove(&fp);
            }
        }
        if g.alerts.is_empty() {
            self.groups.remove(&flush.id);
        }
    }

    /// Alerts held, over all groups (an alert in two routes counts twice).
    pub fn alert_count(&self) -> usize {
        self.groups.values().map(|g| g.alerts.len()).sum()
    }
}

/// What was last delivered to one receiver integration for one group (Alertmanager's nflog
/// entry). Serializable for the data dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub firing: BTreeSet<u64>,
    pub resolved: BTreeSet<u64>,
    pub at_ms: i64,
}

/// Why a batch is (not) sent to an integration, as Alertmanager's dedup stage decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    DoNotNotify,
    FirstNotification,
    NewAlertsInGroup,
    AllAlertsResolved,
    NewResolvedAlerts,
    RepeatIntervalElapsed,
}

impl Reason {
    pub fn notify(self) -> bool {
        self != Reason::DoNotNotify
    }
}

/// Whether a batch with these `firing` and `resolved` fingerprints (after muting) goes to an
/// integration whose last delivery for the group was `entry`.
pub fn needs_update(
    entry: Option<&LogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat: Duration,
    now_ms: i64,
) -> Reason {
    let Some(entry) = entry else {
        return if firing.is_empty() {
            Reason::DoNotNotify
        } else {
            Reason::FirstNotification
        };
    };
    // New firing alerts (not in the log) mean a notification; fewer do not, by themselves.
    if !firing.is_subset(&entry.firing) {
        return if entry.firing.is_empty() {
            Reason::FirstNotification
        } else {
            Reason::NewAlertsInGroup
        };
    }
    if firing.is_empty() {
        // Sent irrespective of `send_resolved`, so the log's firing set is cleared; when the
        // log had nothing firing, the receiver never heard of these alerts.
        return if entry.firing.is_empty() {
            Reason::DoNotNotify
        } else {
            Reason::AllAlertsResolved
        };
    }
    if send_resolved && !resolved.is_subset(&entry.resolved) {
        return Reason::NewResolvedAlerts;
    }
    if entry.at_ms < now_ms.saturating_sub(ms(repeat)) {
        return Reason::RepeatIntervalElapsed;
    }
    Reason::DoNotNotify
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000;

    fn alert(pairs: &[(&str, &str)], starts: i64) -> NotifyAlert {
        NotifyAlert {
            labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: LabelSet::new(),
            starts_at_ms: starts,
            ends_at_ms: None,
            value: 1.0,
            generator_url: String::new(),
            trigger: None,
        }
    }

    fn plan(group_by: GroupBy) -> RoutePlan {
        RoutePlan {
            route: "{}".into(),
            key: "{}".into(),
            receiver: "team".into(),
            group_by,
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            fallback: None,
            repeat_interval: Duration::from_secs(4 * 3600),
        }
    }

    fn names(f: &Flush) -> Vec<String> {
        f.alerts
            .iter()
            .map(|a| {
                format!(
                    "{}{}",
                    a.labels["market"],
                    if a.resolved() { " (resolved)" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn alerts_group_by_labels_and_wait_group_wait_then_group_interval() {
        let mut d = Dispatcher::new();
        let p = [plan(GroupBy::Labels(vec!["alertname".into()]))];
        insert(
            &mut d,
            &alert(&[("alertname", "Inv"), ("market", "BTC")], 0),
            &p,
            0,
        );
        insert(
            &mut d,
            &alert(&[("alertname", "Inv"), ("market", "ETH")], 10 * S),
            &p,
            10 * S,
        );
        insert(
            &mut d,
            &alert(&[("alertname", "Lag"), ("market", "BTC")], 10 * S),
            &p,
            10 * S,
        );
        assert!(d.due(29 * S).is_empty());
        let f = d.due(30 * S);
        assert_eq!(f.len(), 1, "only the first group has waited group_wait");
        assert_eq!(f[0].group_key, r#"{}:{alertname="Inv"}"#);
        assert_eq!(names(&f[0]), ["BTC", "ETH"]);
        d.delivered(&f[0]);
        assert_eq!(d.due(40 * S).len(), 1, "the Lag group's own group_wait");
        assert_eq!(d.next_due_ms(), Some(330 * S));
        assert!(d.due(329 * S).is_empty());
        assert_eq!(d.due(330 * S).len(), 1);
    }

    #[test]
    fn resolved_alerts_are_sent_once_then_dropped_and_an_empty_group_goes() {
        let mut d = Dispatcher::new();
        let p = [plan(GroupBy::All)];
        let mut a = alert(&[("alertname", "Inv"), ("market", "BTC")], 0);
        insert(&mut d, &a, &p, 0);
        let f = d.due(30 * S);
        d.delivered(&f[0]);
        a.ends_at_ms = Some(40 * S);
        insert(&mut d, &a, &p, 40 * S);
        let f = d.due(330 * S);
        assert_eq!(names(&f[0]), ["BTC (resolved)"]);
        d.delivered(&f[0]);
        assert_eq!(d.alert_count(), 0);
        assert_eq!(d.next_due_ms(), None);
    }

    #[test]
    fn a_resolved_alert_that_fired_again_during_the_flush_is_kept() {
        let mut d = Dispatcher::new();
        let p = [plan(GroupBy::All)];
        let mut a = alert(&[("alertname", "Inv"), ("market", "BTC")], 0);
        insert(&mut d, &a, &p, 0);
        a.ends_at_ms = Some(10 * S);
        insert(&mut d, &a, &p, 10 * S);
        let f = d.due(30 * S);
        let again = alert(&[("alertname", "Inv"), ("market", "BTC")], 31 * S);
        insert(&mut d, &again, &p, 31 * S);
        d.delivered(&f[0]);
        assert_eq!(d.alert_count(), 1);
    }

    #[test]
    fn a_resolved_alert_unknown_to_its_group_creates_nothing() {
        let mut d = Dispatcher::new();
        let mut a = alert(&[("alertname", "Inv")], 0);
        a.ends_at_ms = Some(1);
        insert(&mut d, &a, &[plan(GroupBy::All)], 5);
        assert_eq!(d.next_due_ms(), None);
    }

    /// Inserts as the notifier does when its log knows of nothing.
    fn insert(d: &mut Dispatcher, a: &NotifyAlert, p: &[RoutePlan], now: i64) {
        d.insert(a, p, now, &|_, _| false);
    }

    #[test]
    fn a_resolved_alert_the_log_says_was_notified_is_held_for_its_resolve() {
        // After a restart (or a reload) the new group never held the alert, but a receiver was
        // told it fired: its resolve is flushed like any other.
        let mut d = Dispatcher::new();
        let mut a = alert(&[("alertname", "Inv"), ("market", "BTC")], 0);
        a.ends_at_ms = Some(50 * S);
        let fp = a.fingerprint();
        let asked = std::cell::RefCell::new(Vec::new());
        d.insert(&a, &[plan(GroupBy::All)], 60 * S, &|key, f| {
            asked.borrow_mut().push(key.to_string());
            f == fp
        });
        let f = d.due(60 * S);
        assert_eq!(
            f.len(),
            1,
            "flushed at once: the alert is older than group_wait"
        );
        assert_eq!(names(&f[0]), ["BTC (resolved)"]);
        assert_eq!(
            asked.into_inner(),
            [f[0].group_key.clone()],
            "asked about its own group"
        );
    }

    #[test]
    fn a_late_alert_in_a_new_group_is_flushed_at_once() {
        let mut d = Dispatcher::new();
        // Restored after a restart: it started long before its group exists.
        insert(
            &mut d,
            &alert(&[("alertname", "Inv")], 0),
            &[plan(GroupBy::All)],
            600 * S,
        );
        assert_eq!(d.next_due_ms(), Some(600 * S));
    }

    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn dedup_follows_alertmanagers_reasons() {
        let h4 = Duration::from_secs(4 * 3600);
        let entry = LogEntry {
            firing: set(&[1, 2]),
            resolved: set(&[]),
            at_ms: 1_000 * S,
        };
        let e = Some(&entry);
        let n = |firing: &[u64], resolved: &[u64], send_resolved: bool, now: i64| {
            needs_update(e, &set(firing), &set(resolved), send_resolved, h4, now)
        };
        assert_eq!(
            needs_update(None, &set(&[1]), &set(&[]), true, h4, 0),
            Reason::FirstNotification
        );
        assert_eq!(
            needs_update(None, &set(&[]), &set(&[1]), true, h4, 0),
            Reason::DoNotNotify
        );
        assert_eq!(
            n(&[1, 2, 3], &[], false, 1_001 * S),
            Reason::NewAlertsInGroup
        );
        assert_eq!(n(&[1, 2], &[], true, 1_001 * S), Reason::DoNotNotify);
        assert_eq!(n(&[1], &[2], false, 1_001 * S), Reason::DoNotNotify);
        assert_eq!(n(&[1], &[2], true, 1_001 * S), Reason::NewResolvedAlerts);
        assert_eq!(n(&[], &[1, 2], false, 1_001 * S), Reason::AllAlertsResolved);
        assert_eq!(
            n(&[1, 2], &[], false, 1_000 * S + 4 * 3600 * S + 1),
            Reason::RepeatIntervalElapsed
        );
        let cleared = LogEntry {
            firing: set(&[]),
            resolved: set(&[1, 2]),
            at_ms: 0,
        };
        assert_eq!(
            needs_update(Some(&cleared), &set(&[1]), &set(&[]), true, h4, 1),
            Reason::FirstNotification
        );
    }

    #[test]
    fn fingerprints_are_stable_and_label_sensitive() {
        let a = alert(&[("alertname", "Inv"), ("market", "BTC")], 0);
        let b = alert(&[("alertname", "Inv"), ("market", "ETH")], 0);
        assert_ne!(a.fingerprint(), b.fingerprint());
        // Pinned: entries in a notification log written by an earlier version must still match.
        assert_eq!(a.fingerprint(), fingerprint(&a.labels));
        assert_eq!(format!("{:016x}", a.fingerprint()), "99e00e9c338eacb8");
    }
}

/// An `f64` as its text (`NaN`, `inf` included), where JSON numbers cannot hold every value.
mod float_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
