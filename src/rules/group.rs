//! Evaluating a rule group at `t` against a `Storage`, as Prometheus's `Group.Eval` does: rules in
//! order, each rule's output (recorded series, `ALERTS`, `ALERTS_FOR_STATE`) written to a
//! [`History`] that later rules, later groups and later evaluations read through [`Layered`];
//! series a rule stops producing get a staleness marker; per-rule health and last error.
//!
//! No IO and no clock: time, storage and history are arguments. Evaluation duration is left to
//! the caller (it owns the clock).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};

use super::alert::{AlertContext, AlertError, RuleAlerts, Transition};
use super::file::{Rule, RuleGroup};
use super::promql::{
    self, Expr, InPlace, Labels, METRIC_NAME, Sample, Selector, SeriesData, Storage, Value,
};
use super::template::{QuerySample, TemplateQuery};

/// Rule outputs over time: an append-only, prunable store that is also a [`Storage`].
#[derive(Debug, Clone)]
pub struct History {
    series: HashMap<Labels, Vec<(i64, f64)>>,
    by_name: HashMap<String, HashSet<Labels>>,
    /// 0 keeps every sample (unit tests); a live engine evaluating after every event keeps
    /// samples this far apart, the newest always replaced by the latest.
    resolution_ms: i64,
    /// Samples before this are pruned: no reader sees them, though a series drops them from
    /// memory only once they are a quarter of it (see [`History::prune_before`]).
    cutoff_ms: i64,
}

/// Why a sample was not written; `Display` is the TSDB's message Prometheus reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("out of order sample")]
    OutOfOrder,
    #[error("duplicate sample for timestamp")]
    Duplicate,
}

impl Default for History {
    fn default() -> History {
        History {
            series: HashMap::new(),
            by_name: HashMap::new(),
            resolution_ms: 0,
            cutoff_ms: i64::MIN,
        }
    }
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// A history keeping samples about `resolution_ms` apart (see the field).
    pub fn thinned(resolution_ms: i64) -> History {
        History {
            resolution_ms,
            ..History::default()
        }
    }

    /// Samples held, over all series (those past the cutoff: what readers see).
    pub fn sample_count(&self) -> usize {
        self.series.values().map(|s| self.live(s).len()).sum()
    }

    /// The samples of `s` readers see: those at or after the cutoff.
    fn live<'s>(&self, s: &'s [(i64, f64)]) -> &'s [(i64, f64)] {
        &s[s.partition_point(|&(t, _)| t < self.cutoff_ms)..]
    }

    /// Append one sample. A repeat of the last sample (same time, same bits) is accepted and
    /// ignored; a different value at the same time, or an older time, is refused. `Ok(true)`
    /// when the series is new or its value differs from its latest sample's: what readers see
    /// changed.
    pub fn append(&mut self, labels: &Labels, t_ms: i64, v: f64) -> Result<bool, AppendError> {
        let samples = match self.series.get_mut(labels) {
            Some(s) => s,
            None => {
                let name = labels.metric_name().unwrap_or("").to_string();
                self.by_name.entry(name).or_default().insert(labels.clone());
                self.series.entry(labels.clone()).or_default()
            }
        };
        let changed = samples
            .last()
            .is_none_or(|&(_, lv)| lv.to_bits() != v.to_bits());
        match samples.last() {
            Some(&(lt, lv)) if lt == t_ms && lv.to_bits() == v.to_bits() => Ok(false),
            Some(&(lt, _)) if lt == t_ms => Err(AppendError::Duplicate),
            Some(&(lt, _)) if lt > t_ms => Err(AppendError::OutOfOrder),
            Some(&(lt, _))
                if samples.len() >= 2 && lt - samples[samples.len() - 2].0 < self.resolution_ms =>
            {
                if let Some(last) = samples.last_mut() {
                    *last = (t_ms, v);
                }
                Ok(changed)
            }
            _ => {
                samples.push((t_ms, v));
                Ok(changed)
            }
        }
    }

    /// Drop samples older than `t_ms`, and series left empty: a live engine keeps only what its
    /// rules can still read (the longest range plus the lookback).
    ///
    /// A series keeps its expired samples in memory until they are a quarter of it, then drops
    /// them at once: dropping a second's worth every second moved every sample kept (hundreds
    /// per series over thousands of recorded series, 5–8 ms per timer pass); this way each
    /// sample is moved about three times in its life, for at most a third more memory.
    pub fn prune_before(&mut self, t_ms: i64) {
        self.cutoff_ms = self.cutoff_ms.max(t_ms);
        let cutoff = self.cutoff_ms;
        self.series.retain(|_, s| {
            let expired = s.partition_point(|&(t, _)| t < cutoff);
            if expired == s.len() {
                return false;
            }
            if expired * 4 >= s.len() {
                s.drain(..expired);
            }
            true
        });
        let series = &self.series;
        self.by_name.retain(|_, set| {
            set.retain(|l| series.contains_key(l));
            !set.is_empty()
        });
    }

    /// How many series are held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The samples of one series, if held.
    pub fn samples(&self, labels: &Labels) -> Option<&[(i64, f64)]> {
        self.series.get(labels).map(|s| self.live(s))
    }
}

impl InPlace for History {
    fn each(&self, sel: &Selector, f: &mut promql::VisitFn<'_>) {
        let one = |l: &Labels| {
            if sel.matches(l)
                && let Some(s) = self.series.get(l)
            {
                f(l, self.live(s));
            }
        };
        match &sel.name {
            Some(name) => self.by_name.get(name).into_iter().flatten().for_each(one),
            None => self.series.keys().for_each(one),
        }
    }
}

/// Base storage (scraped or test input series) with rule outputs on top. Where both hold the
/// same series, their samples are merged by time, the base's winning a tie.
#[derive(Clone, Copy)]
pub struct Layered<'a> {
    pub base: &'a dyn Storage,
    pub overlay: &'a History,
}

impl Storage for Layered<'_> {
    fn select(&self, sel: &Selector, start_ms: i64, end_ms: i64) -> Vec<SeriesData> {
        let mut out = self.base.select(sel, start_ms, end_ms);
        let extra = self.overlay.select(sel, start_ms, end_ms);
        if extra.is_empty() {
            return out;
        }
        let index: HashMap<Labels, usize> = out
            .iter()
            .enumerate()
            .map(|(i, s)| (s.labels.clone(), i))
            .collect();
        for s in extra {
            match index.get(&s.labels) {
                Some(&i) => {
                    let o = &mut out[i];
                    for (t, v) in s.samples {
                        if let Err(at) = o.samples.binary_search_by_key(&t, |&(t, _)| t) {
                            o.samples.insert(at, (t, v));
                        }
                    }
                }
                None => out.push(s),
            }
        }
        out
    }

    fn select_latest(&self, sel: &Selector, start_ms: i64, end_ms: i64) -> Vec<SeriesData> {
        let mut out = self.base.select_latest(sel, start_ms, end_ms);
        let extra = self.overlay.select_latest(sel, start_ms, end_ms);
        if extra.is_empty() {
            return out;
        }
        let index: HashMap<Labels, usize> = out
            .iter()
            .enumerate()
            .map(|(i, s)| (s.labels.clone(), i))
            .collect();
        for s in extra {
            match index.get(&s.labels) {
                // The later sample wins; the base's on a tie, as in `select`.
                Some(&i) => {
                    if s.samples[0].0 > out[i].samples[0].0 {
                        out[i].samples = s.samples;
                    }
                }
                None => out.push(s),
            }
        }
        out
    }

    // Where the rule outputs hold none of the selected series (a selector of a scraped metric,
    // nearly always), the base is read in place; otherwise the merged copies.
    fn visit(&self, sel: &Selector, start_ms: i64, end_ms: i64, f: &mut promql::VisitFn<'_>) {
        if self.overlay.select(sel, start_ms, end_ms).is_empty() {
            return self.base.visit(sel, start_ms, end_ms, f);
        }
        for s in self.select(sel, start_ms, end_ms) {
            f(&s.labels, &s.samples);
        }
    }

    fn visit_latest(
        &self,
        sel: &Selector,
        start_ms: i64,
        end_ms: i64,
        f: &mut dyn FnMut(&Labels, (i64, f64)),
    ) {
        if self.overlay.select_latest(sel, start_ms, end_ms).is_empty() {
            return self.base.visit_latest(sel, start_ms, end_ms, f);
        }
        for s in self.select_latest(sel, start_ms, end_ms) {
            if let Some(&last) = s.samples.last() {
                f(&s.labels, last);
            }
        }
    }
}

/// A rule's health, as Prometheus's rules API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    /// Not evaluated yet.
    #[default]
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// One rule's status after its latest evaluation.
#[derive(Debug, Clone, Default)]
pub struct RuleStatus {
    pub health: Health,
    pub last_error: Option<String>,
    pub last_eval_ms: Option<i64>,
    /// Samples the latest successful evaluation wrote.
    pub samples: usize,
    /// How long the latest evaluation took, when the context had a clock.
    pub eval_seconds: f64,
}

#[derive(Debug, Clone, Default)]
struct RuleSlot {
    status: RuleStatus,
    alerts: RuleAlerts,
    /// Series written by the previous evaluation, to mark stale when they stop.
    previous: HashSet<Labels>,
    /// The `query` template function's expressions, parsed (see [`Query`]).
    queries: HashMap<String, Expr>,
}

/// A rule keeps at most this many parsed template queries; beyond, it starts over.
const MAX_QUERIES: usize = 1024;

/// A group's state across evaluations: rule statuses and alerts.
#[derive(Debug, Clone, Default)]
pub struct GroupState {
    rules: Vec<RuleSlot>,
}

impl GroupState {
    pub fn new(group: &RuleGroup) -> GroupState {
        GroupState {
            rules: vec![RuleSlot::default(); group.rules.len()],
        }
    }

    /// Status of rule `i` (in file order).
    pub fn status(&self, i: usize) -> Option<&RuleStatus> {
        self.rules.get(i).map(|r| &r.status)
    }

    /// Alerts of rule `i`, empty for recording rules.
    pub fn alerts(&self, i: usize) -> Option<&RuleAlerts> {
        self.rules.get(i).map(|r| &r.alerts)
    }

    /// Puts a restored alert back under rule `i` (see `rules::persist`).
    pub fn restore_alert(&mut self, i: usize, alert: super::alert::Alert) {
        if let Some(slot) = self.rules.get_mut(i) {
            slot.alerts.restore(alert);
        }
    }

    /// The state for `new`, a reloaded version of `old_group`: every rule of `new` that has a
    /// rule of the same kind, name and labels in `old_group` takes over its state (alerts with
    /// their `activeAt`, health, the series it wrote), as Prometheus's `CopyState` does on a
    /// reload. Rules that repeat a key are paired in order.
    pub fn carried(new: &RuleGroup, old_group: &RuleGroup, old: GroupState) -> GroupState {
        let mut pool: HashMap<String, Vec<RuleSlot>> = HashMap::new();
        for (rule, slot) in old_group.rules.iter().zip(old.rules).rev() {
            pool.entry(rule_key(rule)).or_default().push(slot);
        }
        GroupState {
            rules: new
                .rules
                .iter()
                .map(|r| {
                    pool.get_mut(&rule_key(r))
                        .and_then(Vec::pop)
                        .unwrap_or_default()
                })
                .collect(),
        }
    }
}

/// What identifies a rule across reloads: kind, name and labels (templates by their source).
pub(crate) fn rule_key(rule: &Rule) -> String {
    match rule {
        Rule::Recording(r) => format!("record\0{}\0{:?}", r.name, r.labels),
        Rule::Alerting(a) => {
            let mut k = format!("alert\0{}", a.name);
            for (name, t) in &a.labels {
                k.push('\0');
                k.push_str(name);
                k.push('=');
                k.push_str(t.source());
            }
            k
        }
    }
}

/// What the caller passes to every evaluation.
#[derive(Clone, Copy)]
pub struct EvalContext<'a> {
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    /// Times each rule's evaluation (`RuleStatus::eval_seconds`) when given; the evaluation
    /// itself never reads a clock.
    pub clock: Option<fn() -> std::time::Instant>,
}

/// A transition of one alert, for logging.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertTransition {
    pub rule: String,
    pub labels: Labels,
    pub transition: Transition,
    pub at_ms: i64,
}

/// What one group evaluation produced besides the state and history it updated.
#[derive(Debug, Clone, Default)]
pub struct GroupEval {
    pub transitions: Vec<AlertTransition>,
    /// (rule index, error) for every rule that failed this time.
    pub errors: Vec<(usize, String)>,
    /// How many rules were evaluated (all of them, unless a [`RulePick`] left some out).
    pub evaluated: usize,
    /// How many of those over only the series of a [`Scope`].
    pub scoped: usize,
}

/// Which rules of a group an evaluation runs, decided rule by rule in order, so a rule can
/// depend on what the rules before it in the same evaluation wrote.
pub trait RulePick {
    /// Whether rule `i` is evaluated now, and over which series.
    fn wants(&mut self, i: usize) -> Want;
    /// Rule `i` was evaluated; `changed` are the output series that changed: a recorded value
    /// that differs from the series' previous sample, a new series or a staleness marker, or
    /// (an alerting rule) an `ALERTS` / `ALERTS_FOR_STATE` series of an alert that changed
    /// state. Empty when nothing changed.
    fn done(&mut self, i: usize, changed: &[Labels]);
    /// While rule `i` (which [`RulePick::wants`] just picked) is evaluated: what is polled,
    /// every few series it reads, to give it up. `None`: it is evaluated to the end.
    fn give_up_when(&self, _i: usize) -> Option<&dyn Fn() -> bool> {
        None
    }
    /// Rule `i` was given up when [`RulePick::give_up_when`] asked: nothing of it was kept
    /// (its alerts, outputs and status are as they were), and it is as if never picked.
    fn given_up(&mut self, _i: usize) {}
}

/// What a [`RulePick`] asks of one rule.
#[derive(Debug, Clone)]
pub enum Want {
    Skip,
    /// Evaluate it over every series.
    All,
    /// Evaluate it over only the series with these values of some labels, for a rule whose
    /// expression narrows to them (see `Expr::narrowing`): its outputs with other values
    /// are left as they are (alerts keep their state, recorded series are not marked stale).
    Only(Scope),
}

/// Some values of some labels: the outputs a scoped evaluation replaces, and the series it
/// reads (every selector's narrowed by the labels `Expr::narrowing` gives it). A series is in
/// scope when each of the labels has one of its values (a missing label is the empty value).
/// With several values per label that is every combination of them, possibly more than
/// changed: a rule narrowing to those labels evaluates the extra ones just as correctly, and
/// one set of matchers then serves both the selection and the test.
#[derive(Debug, Clone)]
pub struct Scope {
    /// One per label: `label="v"`, or `label=~"v1|v2"` for several values.
    matchers: Vec<promql::Matcher>,
}

impl Scope {
    /// The scope of `values` per label.
    pub fn new<'a>(values: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Scope {
        Scope {
            matchers: values
                .into_iter()
                .map(|(label, vals)| promql::Matcher::one_of(label, vals))
                .collect(),
        }
    }

    /// Whether a series with `labels` is in scope.
    pub fn contains(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches(labels.get(m.name()).unwrap_or("")))
    }
}

/// Every rule.
struct EveryRule;

impl RulePick for EveryRule {
    fn wants(&mut self, _: usize) -> Want {
        Want::All
    }
    fn done(&mut self, _: usize, _: &[Labels]) {}
}

/// The `query` template function: an instant query at the evaluation time. A rule's queries
/// are parsed once: an annotation runs its query for every alert on every evaluation, and
/// parsing it (tens of µs, up to 250 on a busy machine) cost more than the rest of the alert.
struct Query<'a> {
    storage: &'a dyn Storage,
    t_ms: i64,
    parsed: RefCell<&'a mut HashMap<String, Expr>>,
}

impl TemplateQuery for Query<'_> {
    fn query(&self, expr: &str) -> Result<Vec<QuerySample>, String> {
        let mut parsed = self.parsed.borrow_mut();
        if !parsed.contains_key(expr) {
            let e = Expr::parse(expr).map_err(|e| e.to_string())?;
            if parsed.len() >= MAX_QUERIES {
                parsed.clear();
            }
            parsed.insert(expr.to_string(), e);
        }
        let e = &parsed[expr];
        Ok(
            vector(promql::eval(e, self.storage, self.t_ms).map_err(|e| e.to_string())?)
                .into_iter()
                .map(|s| QuerySample {
                    labels: s
                        .labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    value: s.value,
                })
                .collect(),
        )
    }
}

/// A rule query's result as a vector: a scalar becomes one sample with no labels, as
/// Prometheus's `EngineQueryFunc` does.
fn vector(v: Value) -> Vec<Sample> {
    match v {
        Value::Vector(v) => v,
        Value::Scalar(f) => vec![Sample {
            labels: Labels::empty(),
            value: f,
        }],
    }
}

/// Evaluate every rule of `group` at `t_ms`, in order. Each rule reads `base` plus everything in
/// `history` (including what earlier rules of this evaluation just wrote) at `t - query_offset`,
/// and writes its output there.
pub fn eval_group(
    group: &RuleGroup,
    state: &mut GroupState,
    base: &dyn Storage,
    history: &mut History,
    t_ms: i64,
    ctx: &EvalContext<'_>,
) -> GroupEval {
    eval_group_picked(group, state, base, history, t_ms, ctx, &mut EveryRule)
}

/// [`eval_group`] for the rules `pick` wants, in order; the others keep their state and their
/// outputs (which stay readable through the lookback, as between two timer evaluations).
pub fn eval_group_picked(
    group: &RuleGroup,
    state: &mut GroupState,
    base: &dyn Storage,
    history: &mut History,
    t_ms: i64,
    ctx: &EvalContext<'_>,
    pick: &mut dyn RulePick,
) -> GroupEval {
    if state.rules.len() != group.rules.len() {
        *state = GroupState::new(group);
    }
    let offset_ms = i64::try_from(group.query_offset.as_millis()).unwrap_or(i64::MAX);
    let q_ms = t_ms.saturating_sub(offset_ms);
    let mut out = GroupEval::default();
    for (i, rule) in group.rules.iter().enumerate() {
        let scope = match pick.wants(i) {
            Want::Skip => continue,
            Want::All => None,
            Want::Only(scope) => Some(scope),
        };
        let transitions_before = out.transitions.len();
        let slot = &mut state.rules[i];
        let started = ctx.clock.map(|now| now());
        let produced = {
            let storage = Layered {
                base,
                overlay: history,
            };
            let interrupt = pick.give_up_when(i).map(promql::Interrupt::new);
            eval_rule(
                group,
                rule,
                slot,
                (&storage, scope.as_ref(), interrupt.as_ref()),
                (t_ms, q_ms),
                ctx,
                &mut out,
            )
        };
        let produced = match produced {
            Err(Unfinished::GivenUp) => {
                pick.given_up(i);
                break;
            }
            Err(Unfinished::Failed(e)) => Err(e),
            Ok(samples) => Ok(samples),
        };
        out.evaluated += 1;
        out.scoped += usize::from(scope.is_some());
        slot.status.last_eval_ms = Some(t_ms);
        if let (Some(now), Some(started)) = (ctx.clock, started) {
            slot.status.eval_seconds = now().duration_since(started).as_secs_f64();
        }
        let samples = match produced {
            Ok(s) => s,
            Err(e) => {
                slot.status.health = Health::Err;
                slot.status.last_error = Some(e.clone());
                out.errors.push((i, e));
                // Nothing written: its series age out through the lookback as in Prometheus,
                // and rules reading them see what they saw before.
                pick.done(i, &[]);
                continue;
            }
        };
        slot.status.health = Health::Ok;
        slot.status.last_error = None;
        slot.status.samples = samples.len();
        let mut written = HashSet::with_capacity(samples.len());
        let mut append_error = None;
        let mut changed = Vec::new();
        for (labels, v) in samples {
            match history.append(&labels, q_ms, v) {
                Ok(moved) => {
                    if moved {
                        changed.push(labels.clone());
                    }
                    written.insert(labels);
                }
                Err(e) => append_error = Some(e.to_string()),
            }
        }
        // Series this rule wrote last time and not now are stale from now on (of those in
        // scope: the others were not evaluated, and keep their place without a rehash).
        // Refusals are expected here (another rule may write the series) and ignored, as
        // Prometheus does.
        slot.previous.retain(|prev| {
            if scope.as_ref().is_some_and(|s| !s.contains(prev)) || written.contains(prev) {
                return true;
            }
            let _ = history.append(prev, q_ms, promql::stale_nan());
            changed.push(prev.clone());
            false
        });
        slot.previous.extend(written);
        if let Some(e) = append_error {
            slot.status.health = Health::Err;
            slot.status.last_error = Some(e.clone());
            out.errors.push((i, e));
        }
        // An alert that changed state but writes the same series (a firing alert kept by
        // `keep_firing_for`) still changed what `ALERTS` readers see over time.
        if changed.is_empty() && out.transitions.len() > transitions_before {
            changed.extend(
                out.transitions[transitions_before..]
                    .iter()
                    .map(|t| t.labels.clone()),
            );
        }
        pick.done(i, &changed);
    }
    out
}

/// Why a rule produced no samples.
enum Unfinished {
    /// Its evaluation failed: the rule's error.
    Failed(String),
    /// Its evaluation was given up when the pass asked (see [`RulePick::give_up_when`]).
    GivenUp,
}

impl From<String> for Unfinished {
    fn from(e: String) -> Self {
        Unfinished::Failed(e)
    }
}

fn eval_rule(
    group: &RuleGroup,
    rule: &Rule,
    slot: &mut RuleSlot,
    // What the rule reads, the part of it a change pass narrows it to, and what may give the
    // evaluation up.
    (storage, scope, interrupt): (&Layered<'_>, Option<&Scope>, Option<&promql::Interrupt<'_>>),
    // The evaluation time, and the time queried (less the group's query offset).
    (t_ms, q_ms): (i64, i64),
    ctx: &EvalContext<'_>,
    out: &mut GroupEval,
) -> Result<Vec<(Labels, f64)>, Unfinished> {
    let narrow = scope.map_or(&[][..], |s| &s.matchers);
    // Given up only ever here, before anything of the rule's state changed.
    let evaluated = match promql::eval_interruptible(rule.expr(), storage, q_ms, narrow, interrupt)
    {
        Err(promql::EvalError::Interrupted) => return Err(Unfinished::GivenUp),
        other => other,
    };
    let result = vector(evaluated.map_err(|e| e.to_string())?);
    match rule {
        Rule::Recording(r) => {
            let mut seen = HashSet::with_capacity(result.len());
            let mut samples = Vec::with_capacity(result.len());
            for s in result {
                let mut labels = s.labels.with(METRIC_NAME, &r.name);
                for (k, v) in r.labels.iter() {
                    labels = labels.with(k, v);
                }
                if !seen.insert(labels.clone()) {
                    return Err(Unfinished::Failed(
                        "vector contains metrics with the same labelset after applying rule labels"
                            .into(),
                    ));
                }
                samples.push((labels, s.value));
            }
            if group.limit > 0 && samples.len() > group.limit {
                return Err(Unfinished::Failed(format!(
                    "exceeded limit of {} with {} series",
                    group.limit,
                    samples.len()
                )));
            }
            Ok(samples)
        }
        Rule::Alerting(a) => {
            // Templates' `query` sees every series, whatever the scope.
            let query = Query {
                storage,
                t_ms,
                parsed: RefCell::new(&mut slot.queries),
            };
            let actx = AlertContext {
                external_labels: ctx.external_labels,
                external_url: ctx.external_url,
                limit: group.limit,
                query: Some(&query),
            };
            let o = slot
                .alerts
                .eval(a, &result, t_ms, &actx, scope)
                .map_err(|e: AlertError| e.to_string())?;
            out.transitions
                .extend(
                    o.transitions
                        .into_iter()
                        .map(|(labels, transition)| AlertTransition {
                            rule: a.name.clone(),
                            labels,
                            transition,
                            at_ms: t_ms,
                        }),
                );
            Ok(o.samples)
        }
    }
}

#[cfg(test)]
mod tests;
