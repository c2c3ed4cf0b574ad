//! The alert lifecycle of one alerting rule, pure: given the expression's result at `t`, move each
//! alert inactive → pending → firing → resolved as Prometheus's `rules/alerting.go` does, and
//! produce the `ALERTS` / `ALERTS_FOR_STATE` samples and the transitions to log.
//!
//! No IO and no clock: the caller evaluates the expression, passes the time, and writes the
//! samples. Identity is the alert's label set (the result's labels without `__name__`, plus the
//! expanded rule labels, plus `alertname`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::file::AlertingRule;
use super::group::Scope;
use super::promql::{Labels, METRIC_NAME, Sample};
use super::template::{TemplateData, TemplateQuery};

/// How long a resolved alert is kept (and would be re-sent as resolved), as Prometheus does.
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);

pub const ALERTS_METRIC: &str = "ALERTS";
pub const ALERTS_FOR_STATE_METRIC: &str = "ALERTS_FOR_STATE";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertState {
    /// Resolved: was firing, its series went away; kept for [`RESOLVED_RETENTION`].
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    /// The `alertstate` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert instance of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Identity: result labels without `__name__`, expanded rule labels, `alertname`.
    pub labels: Labels,
    /// Expanded annotations, by name; updated every evaluation.
    pub annotations: Vec<(String, String)>,
    pub state: AlertState,
    /// The expression's value at the latest evaluation that returned this series.
    pub value: f64,
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    /// Set while a firing alert's series is absent and `keep_firing_for` holds it.
    pub keep_firing_since_ms: Option<i64>,
}

/// What changed for one alert in an evaluation, for the caller to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// New; waiting out `for`.
    Pending,
    /// Started firing (straight from nothing when `for` is 0).
    Firing,
    /// Was firing; its series is gone (and `keep_firing_for` has passed).
    Resolved,
    /// Was pending; its series went away before `for` passed. Prometheus forgets it silently.
    PendingCleared,
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertOutput {
    /// `ALERTS{…, alertstate}` = 1 and `ALERTS_FOR_STATE{…}` = active-since seconds, for every
    /// pending or firing alert, to be written at the evaluation's (offset) timestamp.
    pub samples: Vec<(Labels, f64)>,
    pub transitions: Vec<(Labels, Transition)>,
}

/// Why an evaluation failed; `Display` is Prometheus's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error("vector contains metrics with the same labelset after applying alert labels")]
    DuplicateLabelset,
    /// More pending/firing alerts than the group's `limit`: every alert of the rule is dropped.
    #[error("exceeded limit of {limit} with {count} alerts")]
    Limit { limit: usize, count: usize },
}

/// What templates may read besides the alert itself.
#[derive(Clone, Copy)]
pub struct AlertContext<'a> {
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    /// The group's limit; 0 is none.
    pub limit: usize,
    /// Backs the `query` template function, at the evaluation time.
    pub query: Option<&'a dyn TemplateQuery>,
}

/// The alerts of one alerting rule, across evaluations.
#[derive(Debug, Clone, Default)]
pub struct RuleAlerts {
    active: BTreeMap<Labels, Alert>,
    /// The labels of the pending and firing ones: an evaluation narrowed to a scope visits
    /// these and its results, not every alert held. Resolved alerts are kept for 15 minutes
    /// (one per market that ever breached, say), and visiting each of them cost a change pass
    /// about as much as the rest of it.
    live: BTreeSet<Labels>,
    /// Evaluations so far (and restores), numbered from 1.
    evals: u64,
    /// The latest that may have changed any alert (a whole one, a restore, a limit error).
    whole_at: u64,
    /// The alerts each later narrowed evaluation visited (what it may have changed), oldest
    /// first, at most [`MAX_TOUCHED`]: the notifier's snapshot rebuilds only those.
    touched: VecDeque<(u64, Labels)>,
    /// The log is complete for evaluations after this one.
    touched_from: u64,
}

/// Entries [`RuleAlerts`] keeps of the alerts its narrowed evaluations visited.
const MAX_TOUCHED: usize = 4096;

impl RuleAlerts {
    /// Every alert held: pending, firing, and resolved ones still retained.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.active.values()
    }

    /// The alert held for `labels`, if any.
    pub fn get(&self, labels: &Labels) -> Option<&Alert> {
        self.active.get(labels)
    }

    /// Pending and firing alerts (what Prometheus calls active).
    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.active.values().filter(|a| a.resolved_at_ms.is_none())
    }

    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.active
            .values()
            .filter(|a| a.state == AlertState::Firing)
    }

    /// The highest state of any alert (firing > pending > inactive).
    pub fn state(&self) -> AlertState {
        self.active
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }

    /// Holds `alert` as if earlier evaluations had produced it (a restart's restore).
    pub fn restore(&mut self, alert: Alert) {
        self.touched_all();
        if alert.state != AlertState::Inactive {
            self.live.insert(alert.labels.clone());
        }
        self.active.insert(alert.labels.clone(), alert);
    }

    /// The number of the latest evaluation (0: none yet).
    pub fn evals(&self) -> u64 {
        self.evals
    }

    /// Calls `f` with the labels of every alert that may have changed in the evaluations
    /// after the one numbered `since` (some more than once); `false`, calling nothing, when
    /// that is not known (any alert may have changed).
    pub fn touched_since(&self, since: u64, f: &mut dyn FnMut(&Labels)) -> bool {
        if since < self.whole_at || since < self.touched_from {
            return false;
        }
        let first = self.touched.partition_point(|(e, _)| *e <= since);
        self.touched.range(first..).for_each(|(_, l)| f(l));
        true
    }

    /// A new evaluation number, after which any alert may have changed.
    fn touched_all(&mut self) {
        self.evals += 1;
        self.whole_at = self.evals;
        self.touched_from = self.evals;
        self.touched.clear();
    }

    /// One evaluation at `t_ms` with the expression's result vector. With a `scope`, the
    /// result covers only the alerts in it: the others keep their state untouched and write no
    /// `ALERTS` samples (their series keep the ones the last whole evaluation wrote, well within
    /// the lookback), as if this evaluation had not concerned them. Rewriting them cost two label
    /// sets and two history appends per alert held, which made a change pass narrowed to one
    /// market cost as much as the rule's every alert.
    pub fn eval(
        &mut self,
        rule: &AlertingRule,
        result: &[Sample],
        t_ms: i64,
        ctx: &AlertContext<'_>,
        scope: Option<&Scope>,
    ) -> Result<AlertOutput, AlertError> {
        // Expand labels and annotations for each result series.
        let mut current: BTreeMap<Labels, Alert> = BTreeMap::new();
        for smpl in result {
            let template_labels: BTreeMap<String, String> = smpl
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let data = TemplateData {
                labels: &template_labels,
                external_labels: ctx.external_labels,
                external_url: ctx.external_url,
                value: smpl.value,
                query: ctx.query,
            };
            let mut labels = smpl.labels.without_metric_name();
            for (name, t) in &rule.labels {
                // An empty expansion removes the label, as Prometheus's label builder does.
                labels = labels.with(name, &t.expand(&data));
            }
            labels = labels.with("alertname", &rule.name);
            let annotations = rule
                .annotations
                .iter()
                .map(|(name, t)| (name.clone(), t.expand(&data)))
                .collect();
            if current.contains_key(&labels) {
                return Err(AlertError::DuplicateLabelset);
            }
            current.insert(
                labels.clone(),
                Alert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value: smpl.value,
                    active_at_ms: t_ms,
                    fired_at_ms: None,
                    resolved_at_ms: None,
                    keep_firing_since_ms: None,
                },
            );
        }

        let mut out = AlertOutput::default();
        // Existing pending/firing alerts keep their state and take the new value and
        // annotations; anything else (new, or resolved and back) starts pending now.
        for (labels, a) in &current {
            match self.active.get_mut(labels) {
                Some(existing) if existing.state != AlertState::Inactive => {
                    existing.value = a.value;
                    existing.annotations = a.annotations.clone();
                }
                _ => {
                    self.active.insert(labels.clone(), a.clone());
                    out.transitions.push((labels.clone(), Transition::Pending));
                }
            }
        }

        let hold_ms = duration_ms(rule.hold);
        let keep_ms = duration_ms(rule.keep_firing_for);
        let retention_ms = duration_ms(RESOLVED_RETENTION);
        // What this evaluation decides about: every alert held, or (narrowed to a scope) the
        // pending and firing ones in it and the results. A resolved alert in scope with no
        // result stays as it is until a whole evaluation (the group's timer, seconds away)
        // drops it after its retention.
        let visit: Vec<Labels> = match scope {
            None => self.active.keys().cloned().collect(),
            Some(s) => {
                let mut v: Vec<Labels> = self
                    .live
                    .iter()
                    .filter(|l| s.contains(l))
                    .chain(current.keys())
                    .cloned()
                    .collect();
                v.sort();
                v.dedup();
                v
            }
        };
        // Pending and firing alerts outside the scope count towards the limit as they are.
        let mut active_pending = match scope {
            None => 0,
            Some(_) => self.live.len() - visit.iter().filter(|l| self.live.contains(*l)).count(),
        };
        if scope.is_none() {
            self.live.clear();
            self.touched_all();
        } else {
            self.evals += 1;
            while self.touched.len() + visit.len() > MAX_TOUCHED {
                match self.touched.pop_front() {
                    Some((e, _)) => self.touched_from = e,
                    None => break,
                }
            }
            if visit.len() > MAX_TOUCHED {
                self.touched_from = self.evals;
            } else {
                let e = self.evals;
                self.touched.extend(visit.iter().map(|l| (e, l.clone())));
            }
        }
        let mut remove = Vec::new();
        for labels in &visit {
            let Some(a) = self.active.get_mut(labels) else {
                continue;
            };
            if !current.contains_key(labels) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && keep_ms > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(t_ms);
                    keep_firing = t_ms - since < keep_ms;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at_ms.is_some_and(|r| t_ms - r > retention_ms)
                {
                    remove.push(labels.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    out.transitions.push((
                        labels.clone(),
                        if a.state == AlertState::Firing {
                            Transition::Resolved
                        } else {
                            Transition::PendingCleared
                        },
                    ));
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(t_ms);
                }
                if !keep_firing {
                    self.live.remove(labels);
                    continue;
                }
            } else {
                a.keep_firing_since_ms = None;
            }
            active_pending += 1;
            self.live.insert(labels.clone());
            if a.state == AlertState::Pending && t_ms - a.active_at_ms >= hold_ms {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(t_ms);
                // A brand-new alert with `for: 0` goes straight to firing: one transition.
                match out.transitions.last_mut() {
                    Some((l, t)) if l == labels && *t == Transition::Pending => {
                        *t = Transition::Firing;
                    }
                    _ => out.transitions.push((labels.clone(), Transition::Firing)),
                }
            }
            out.samples.push((alerts_series(rule, a), 1.0));
            out.samples.push((
                for_state_series(rule, a),
                a.active_at_ms.div_euclid(1000) as f64,
            ));
        }
        for l in remove {
            self.active.remove(&l);
        }
        if ctx.limit > 0 && active_pending > ctx.limit {
            self.active.clear();
            self.live.clear();
            self.touched_all();
            return Err(AlertError::Limit {
                limit: ctx.limit,
                count: active_pending,
            });
        }
        out.samples.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The rule's labels as written (unexpanded), under the alert's labels: Prometheus builds the
/// `ALERTS` series this way, so a label whose template expands to nothing shows its source.
fn series_base(rule: &AlertingRule, alert: &Alert) -> Vec<(String, String)> {
    let mut pairs: BTreeMap<String, String> = rule
        .labels
        .iter()
        .map(|(k, t)| (k.clone(), t.source().to_string()))
        .collect();
    for (k, v) in alert.labels.iter() {
        pairs.insert(k.to_string(), v.to_string());
    }
    pairs.into_iter().collect()
}

fn alerts_series(rule: &AlertingRule, alert: &Alert) -> Labels {
    let mut pairs = series_base(rule, alert);
    pairs.push((METRIC_NAME.into(), ALERTS_METRIC.into()));
    pairs.push(("alertname".into(), rule.name.clone()));
    pairs.push(("alertstate".into(), alert.state.as_str().into()));
    Labels::new(pairs)
}

fn for_state_series(rule: &AlertingRule, alert: &Alert) -> Labels {
    let mut pairs = series_base(rule, alert);
    pairs.push((METRIC_NAME.into(), ALERTS_FOR_STATE_METRIC.into()));
    pairs.push(("alertname".into(), rule.name.clone()));
    Labels::new(pairs)
}

#[cfg(test)]
mod tests;
