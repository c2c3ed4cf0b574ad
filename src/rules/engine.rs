//! The live rule engine: the loaded groups with their state and schedule, the history of their outputs, and the series that show them in `/metrics`.
//!
//! No IO and no waiting: the caller (`rules::runner`) reads the files, passes the time and
//! decides when to evaluate. The engine reads the series store through [`LiveStore`] and writes
//! its own series (`ocx_sentinel_rule_*`, `ocx_sentinel_alerts`) to the same store, so rules can
//! read those too.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::alert::{ALERTS_FOR_STATE_METRIC, ALERTS_METRIC, Alert, AlertState};
use super::file::{Rule, RuleFile, RuleGroup};
use super::group::{
    self, AlertTransition, EvalContext, GroupState, History, RulePick, RuleStatus, Scope, Want,
};
use super::live::{ChangeLog, LiveStore, Needs};
use super::persist::StoredAlert;
use super::promql::LOOKBACK_DELTA;
use super::promql::{FastMap, Labels};
use crate::notify::dispatch::NotifyAlert;
use crate::telemetry::TraceIds;
use crate::telemetry::{APPLY_FAMILIES, Counter, Gauge, Histogram, Telemetry, names};

/// Samples of the sidecar's own series and of rule outputs are kept this far apart (the newest
/// always current): evaluations after every event would otherwise store every event.
pub const HISTORY_RESOLUTION: Duration = Duration::from_secs(1);

/// One group as the engine runs it.
pub struct LiveGroup {
    pub group: RuleGroup,
    pub state: GroupState,
    /// The group's `interval`, or the engine's default.
    pub interval: Duration,
    /// When the next timer evaluation is due, on the timer clock (see [`Engine::evaluate_at`]).
    next_due_ms: i64,
    /// Unix ms of the latest evaluation of the whole group (a change-driven pass that runs
    /// some of its rules sets each rule's own status instead).
    pub last_eval_ms: Option<i64>,
    /// How long the latest evaluation of the whole group took.
    pub last_seconds: f64,
    metrics: GroupMetrics,
    /// Per rule, what a change-driven pass needs to know about it.
    watch: Vec<RuleWatch>,
}

/// What one rule reads and writes, and when it last ran, for change-driven passes.
#[derive(Debug, Clone, Default)]
struct RuleWatch {
    /// The metric names its selectors read that a change can move: the account families and
    /// rule outputs. Names of other series (stream health, the sidecar's own) are left out:
    /// they move with time and are read on the group's timer.
    reads: Vec<String>,
    /// A selector without a fixed metric name: any change may concern it.
    reads_any: bool,
    /// What it writes: its recorded name, or `ALERTS` and `ALERTS_FOR_STATE`.
    writes: Vec<String>,
    /// The engine's change sequence number when it was last evaluated (0: never).
    evaluated_seq: u64,
    /// Labels its expression narrows to (see `Expr::narrowing`), if any of [`PARTS`]: a
    /// change pass then evaluates it over only the values of these labels that changed.
    part: Option<&'static [&'static str]>,
    /// Per name of `reads`, the labels of `part` every selector of it is narrowed by: a
    /// change to a series of it concerns the outputs with the series' values of these labels
    /// and any value of the others (a change to `y` in `x unless on(account) y`, every market
    /// of the account).
    narrowed_by: Vec<Vec<&'static str>>,
}

/// The label sets a change pass may narrow a rule to, tried in order: one market of one
/// account (what a fill or a position change moves), then one account.
const PARTS: [&[&str]; 2] = [&["account", "market"], &["account"]];

/// A change pass narrows a rule to what changed only up to this many values of each label;
/// beyond, one pass over every series is cheaper.
const MAX_SCOPE: usize = 16;

impl RuleWatch {
    fn of(rule: &Rule, limit: usize, watched: &HashSet<String>) -> RuleWatch {
        let mut w = RuleWatch::default();
        // A group limit counts every output; rule labels may overwrite the part's labels.
        let label_names: Vec<&str> = match rule {
            Rule::Recording(r) => r.labels.iter().map(|(k, _)| k).collect(),
            Rule::Alerting(a) => a.labels.iter().map(|(k, _)| k.as_str()).collect(),
        };
        let narrowing = PARTS.into_iter().find_map(|part| {
            let narrowable = limit == 0 && !part.iter().any(|l| label_names.contains(l));
            narrowable
                .then(|| rule.expr().narrowing(part))
                .flatten()
                .map(|sels| (part, sels))
        });
        for sel in rule.expr().selectors() {
            match sel.name {
                Some(n) if watched.contains(&n) => {
                    if !w.reads.contains(&n) {
                        w.reads.push(n);
                    }
                }
                Some(_) => {}
                None => w.reads_any = true,
            }
        }
        if let Some((part, sels)) = narrowing {
            w.part = Some(part);
            w.narrowed_by = w
                .reads
                .iter()
                .map(|name| {
                    let mut by = part.to_vec();
                    for (_, labels) in sels.iter().filter(|(n, _)| n.as_ref() == Some(name)) {
                        by.retain(|l| labels.iter().any(|x| x == l));
                    }
                    by
                })
                .collect();
        }
        w.writes = match rule {
            Rule::Recording(r) => vec![r.name.clone()],
            Rule::Alerting(_) => vec![ALERTS_METRIC.into(), ALERTS_FOR_STATE_METRIC.into()],
        };
        w
    }
}

/// Picks, rule by rule, what a pass evaluates, and keeps the change bookkeeping: every
/// evaluated rule takes a fresh sequence number, and outputs that changed are marked with a
/// later one, so a rule reading them (later in this pass, or in the next change-driven one)
/// sees that it has not run since.
struct Changes<'a> {
    watch: &'a mut [RuleWatch],
    /// Change-driven: only rules reading something that changed since they last ran.
    only_changed: bool,
    live: &'a LiveStore,
    outputs_changed: &'a mut HashMap<String, u64>,
    /// Per rule output name, which of its series changed lately.
    output_logs: &'a mut HashMap<String, ChangeLog>,
    seq: &'a mut u64,
    /// The latest change to any watched name (for selectors without a fixed name).
    latest_any: &'a mut u64,
    /// Rules before this one were evaluated earlier in the same (resumed) timer pass.
    from: usize,
    /// Asked before each rule once the pass has evaluated one: `true` stops it there (see
    /// [`Engine::evaluate_preemptible`]).
    stop: Option<&'a dyn Fn() -> bool>,
    /// Whether the pass has evaluated a rule yet: it always evaluates one before it may stop,
    /// so a resumed pass makes progress whatever the stream does.
    progressed: &'a mut bool,
    /// The rule the pass stopped at, if it stopped.
    stopped_at: Option<usize>,
    /// A rule given up once in this timer pass already (the one it goes on from): it is
    /// evaluated to the end this time, so a busy stream costs a timer pass at most one
    /// evaluation per rule more, and never starves it.
    finish: Option<usize>,
    /// Whether the pass stopped by giving up the rule it stopped at.
    gave_up: bool,
    /// The picked rule's `evaluated_seq` and `progressed` before it was picked, put back if
    /// it is given up.
    picked_from: (u64, bool),
}

impl Changes<'_> {
    fn changed_at(&self, name: &str) -> u64 {
        let out = self.outputs_changed.get(name).copied().unwrap_or(0);
        out.max(self.live.changed_at(name))
    }

    /// What a change pass evaluates of a rule that read `changed` names since `since`: the
    /// values of its part that changed, or everything when it has no part, never ran, or the
    /// changes are no longer all known.
    fn scope(&self, w: &RuleWatch, since: u64, changed: &[usize]) -> Want {
        let Some(part) = w.part else {
            return Want::All;
        };
        if since == 0 {
            return Want::All;
        }
        // The labels every changed name narrows by: on the others, a change may concern
        // outputs of any value.
        let mut labels: Vec<&str> = part.to_vec();
        for &r in changed {
            labels.retain(|l| w.narrowed_by[r].contains(l));
        }
        if labels.is_empty() {
            return Want::All;
        }
        // Per label, the values that changed.
        let mut values: Vec<Vec<String>> = vec![Vec::new(); labels.len()];
        let mut add = |l: &Labels| {
            for (label, seen) in labels.iter().zip(values.iter_mut()) {
                let v = l.get(label).unwrap_or("");
                if seen.len() <= MAX_SCOPE && !seen.iter().any(|s| s == v) {
                    seen.push(v.to_string());
                }
            }
        };
        for &r in changed {
            let name = w.reads[r].as_str();
            let live_known = self.live.changes_since(name, since, &mut add);
            let out_known = match self.output_logs.get(name) {
                Some(log) => log.since(since, &mut add),
                None => self.outputs_changed.get(name).is_none_or(|&at| at <= since),
            };
            if !(live_known && out_known) {
                return Want::All;
            }
        }
        if values.iter().any(|v| v.is_empty() || v.len() > MAX_SCOPE) {
            return Want::All;
        }
        Want::Only(Scope::new(
            labels.iter().copied().zip(values.iter().map(Vec::as_slice)),
        ))
    }
}

impl RulePick for Changes<'_> {
    fn wants(&mut self, i: usize) -> Want {
        if i < self.from || self.stopped_at.is_some() {
            return Want::Skip;
        }
        if *self.progressed && self.stop.is_some_and(|stop| stop()) {
            self.stopped_at = Some(i);
            return Want::Skip;
        }
        let Some(w) = self.watch.get(i) else {
            self.picked_from = (0, *self.progressed);
            *self.progressed = true;
            return Want::All;
        };
        let since = w.evaluated_seq;
        self.picked_from = (since, *self.progressed);
        let want = if !self.only_changed || (w.reads_any && *self.latest_any > since) {
            Want::All
        } else {
            let changed: Vec<usize> = (0..w.reads.len())
                .filter(|&r| self.changed_at(&w.reads[r]) > since)
                .collect();
            if changed.is_empty() {
                Want::Skip
            } else {
                self.scope(w, since, &changed)
            }
        };
        if !matches!(want, Want::Skip) {
            *self.progressed = true;
            *self.seq += 1;
            if let Some(w) = self.watch.get_mut(i) {
                w.evaluated_seq = *self.seq;
            }
        }
        want
    }

    /// A timer pass's rule is given up when the pass would stop for a change before the next
    /// one: the change waits for a few series of it, not for all of it (up to a millisecond
    /// or two, over hundreds of markets). A change pass (no `stop`) finishes what it starts.
    fn give_up_when(&self, i: usize) -> Option<&dyn Fn() -> bool> {
        self.stop.filter(|_| self.finish != Some(i))
    }

    fn given_up(&mut self, i: usize) {
        let (since, progressed) = self.picked_from;
        if let Some(w) = self.watch.get_mut(i) {
            w.evaluated_seq = since;
        }
        *self.progressed = progressed;
        self.stopped_at = Some(i);
        self.gave_up = true;
    }

    fn done(&mut self, i: usize, changed: &[Labels]) {
        let Some(w) = self.watch.get(i) else { return };
        if !changed.is_empty() {
            *self.seq += 1;
            *self.latest_any = *self.seq;
            for name in &w.writes {
                self.outputs_changed.insert(name.clone(), *self.seq);
                let log = self.output_logs.entry(name.clone()).or_default();
                for l in changed {
                    log.push(*self.seq, l.clone());
                }
            }
        }
    }
}

/// What a pass evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every group (tests, the first evaluation).
    All,
    /// The groups whose timer has come.
    Due,
    /// After a change: the rules reading a series that changed since they last ran.
    Changed,
}

/// Where a timer pass that stopped for a change goes on (see [`Engine::evaluate_preemptible`]).
#[derive(Debug, Clone, Copy)]
struct Resume {
    /// The timer clock the pass started at: the groups due then are the ones it evaluates.
    tick_ms: i64,
    mode: Mode,
    /// The group and rule it stopped at.
    group: usize,
    rule: usize,
    /// Time spent on that group before it stopped, for its duration series.
    seconds: f64,
    /// Whether that rule was given up (then it is not given up again).
    gave_up: bool,
}

impl LiveGroup {
    /// `file;name`, as Prometheus names groups in its metrics.
    pub fn key(&self) -> String {
        group_key(&self.group)
    }
}

fn group_key(g: &RuleGroup) -> String {
    format!("{};{}", g.file, g.name)
}

struct GroupMetrics {
    evaluations: Counter,
    failures: Counter,
    duration: Histogram,
    last: Gauge,
}

impl GroupMetrics {
    fn new(t: &Telemetry, g: &RuleGroup) -> GroupMetrics {
        let key = group_key(g);
        let l = [("rule_group", key.as_str())];
        t.gauge(names::RULE_GROUP_RULES, &l)
            .set(g.rules.len() as f64);
        GroupMetrics {
            evaluations: t.counter(names::RULE_EVALUATIONS, &l),
            failures: t.counter(names::RULE_EVALUATION_FAILURES, &l),
            duration: t.histogram(names::RULE_EVALUATION_DURATION, &l),
            last: t.gauge(names::RULE_GROUP_LAST_EVALUATION, &l),
        }
    }
}

/// A rule that failed in an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFailure {
    pub group: String,
    pub rule: String,
    pub error: String,
}

/// What one evaluation pass produced, for the caller to log and announce.
#[derive(Debug, Clone, Default)]
pub struct Pass {
    /// The evaluation timestamp (unix ms).
    pub t_ms: i64,
    /// Groups with at least one rule evaluated.
    pub groups: usize,
    /// Rules evaluated.
    pub rules: usize,
    /// Of those, rules a change pass evaluated over only the markets (or accounts) that
    /// changed.
    pub scoped: usize,
    pub transitions: Vec<AlertTransition>,
    /// Rules that failed with an error they did not have at their previous evaluation: what to
    /// log. A rule failing the same way after every event is logged once, not per event (the
    /// failures counter counts every one).
    pub failures: Vec<RuleFailure>,
    /// Rules that evaluated fine again after failing, by (group, rule name).
    pub recovered: Vec<(String, String)>,
    pub seconds: f64,
    /// A timer pass stopped before its last rule (see [`Engine::evaluate_preemptible`]).
    pub stopped: bool,
}

/// The engine of one sidecar. See the module docs.
pub struct Engine {
    telemetry: Telemetry,
    groups: Vec<LiveGroup>,
    outputs: History,
    live: LiveStore,
    default_interval: Duration,
    external_labels: BTreeMap<String, String>,
    external_url: String,
    /// The latest evaluation time: times never repeat or go back, so outputs always append.
    last_t: i64,
    last_prune_ms: i64,
    keep: Duration,
    history_samples: Gauge,
    /// `ocx_sentinel_alerts` series written so far, to zero those no longer held.
    alert_series: HashMap<(String, AlertState), Gauge>,
    /// Times evaluations (for the duration series and the API) when the caller gives one;
    /// evaluation itself never reads a clock.
    clock: Option<fn() -> Instant>,
    /// Numbers observations, rule evaluations and output changes, in the order they happen
    /// (see [`RuleWatch`]).
    seq: u64,
    /// Per rule output name (recorded names, `ALERTS`), the `seq` of its latest change.
    outputs_changed: HashMap<String, u64>,
    /// Per rule output name, which of its series changed lately (what a change pass narrows
    /// the rules reading it to).
    output_logs: HashMap<String, ChangeLog>,
    /// The names a change can move: [`APPLY_FAMILIES`] and the rules' outputs.
    watched: HashSet<String>,
    /// How long the latest pass took (of any kind), when there is a clock.
    last_pass_seconds: f64,
    /// A timer pass that stopped early for a change, to finish before the next one starts.
    resume: Option<Resume>,
    /// Whether the latest pass was a change pass (which read the store): a timer pass
    /// resuming right after it need not read it again.
    observed_since_stop: bool,
    /// The notifiable entries built for the previous snapshot (see [`Engine::notifiable`]).
    notify_cache: RefCell<NotifyCache>,
}

/// Per alerting rule (group, rule), its latest notifiable entries: a snapshot hands the notifier
/// every firing and retained resolved alert, yet one pass changes a few, and building an entry
/// (its label and annotation maps) was most of a snapshot's cost (about 2 ms for a few hundred
/// alerts, on the path from a breach to its notification).
#[derive(Default)]
struct NotifyCache {
    rules: FastMap<(usize, usize), RuleEntries>,
    /// Numbers snapshots, so the entries of rules no longer loaded are dropped.
    round: u64,
}

/// One rule's entries, as of its evaluation numbered `seq` (see [`RuleWatch`]): while the rule
/// is not evaluated again (and no alert is restored), its alerts are as they were.
struct RuleEntries {
    seq: u64,
    round: u64,
    /// The rule's evaluation (`RuleAlerts::evals`) they were built after.
    built_at: u64,
    /// In the order the rule holds its alerts.
    list: Vec<Arc<NotifyAlert>>,
    by_labels: BTreeMap<Labels, Cached>,
}

struct Cached {
    entry: Arc<NotifyAlert>,
    fingerprint: u64,
}

/// Whether `entry` still shows `al` as it is now (labels are the cache key; the generator URL
/// is the rule's).
fn shows(
    entry: &NotifyAlert,
    al: &Alert,
    starts_at_ms: i64,
    ends_at_ms: Option<i64>,
    trigger: Option<TraceIds>,
) -> bool {
    entry.starts_at_ms == starts_at_ms
        && entry.ends_at_ms == ends_at_ms
        && entry.value.to_bits() == al.value.to_bits()
        && entry.trigger == trigger
        && entry.annotations.len() == al.annotations.len()
        && al
            .annotations
            .iter()
            .all(|(k, v)| entry.annotations.get(k) == Some(v))
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("groups", &self.groups.len())
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine with no rules, evaluating groups without an `interval` every
    /// `default_interval`. `external_url` is `$externalURL` in templates.
    pub fn new(telemetry: &Telemetry, default_interval: Duration, external_url: &str) -> Engine {
        Engine {
            telemetry: telemetry.clone(),
            groups: Vec::new(),
            outputs: History::thinned(ms(HISTORY_RESOLUTION)),
            live: LiveStore::new(telemetry.registry().clone(), HISTORY_RESOLUTION),
            default_interval,
            external_labels: BTreeMap::new(),
            external_url: external_url.to_string(),
            last_t: i64::MIN,
            last_prune_ms: i64::MIN,
            keep: LOOKBACK_DELTA,
            history_samples: telemetry.gauge(names::RULE_HISTORY_SAMPLES, &[]),
            alert_series: HashMap::new(),
            clock: None,
            seq: 0,
            outputs_changed: HashMap::new(),
            output_logs: HashMap::new(),
            watched: HashSet::new(),
            last_pass_seconds: 0.0,
            resume: None,
            observed_since_stop: false,
            notify_cache: RefCell::new(NotifyCache::default()),
        }
    }

    /// Measure evaluation durations with `clock` (the runner passes tokio's, pausable in
    /// tests); without one they read 0.
    pub fn set_clock(&mut self, clock: fn() -> Instant) {
        self.clock = Some(clock);
    }

    /// Put `files` in place of the loaded rules, at `now_ms` on the timer clock. A group with the
    /// same file and name as a loaded one keeps the state of each rule that is still there
    /// (alerts keep their `activeAt`); other groups start fresh and are first evaluated at once.
    pub fn load(&mut self, files: Vec<RuleFile>, now_ms: i64) {
        // A timer pass that stopped half-way is not finished over different groups: the new
        // ones are due at once, the kept ones keep their timers.
        self.resume = None;
        // Entries are by group and rule index, and carry the rule's generator URL.
        self.notify_cache.get_mut().rules.clear();
        let mut old: HashMap<String, LiveGroup> = std::mem::take(&mut self.groups)
            .into_iter()
            .map(|g| (g.key(), g))
            .collect();
        for file in files {
            for group in file.groups {
                let key = group_key(&group);
                let interval = group.interval.unwrap_or(self.default_interval);
                let g = match old.remove(&key) {
                    Some(prev) => LiveGroup {
                        state: GroupState::carried(&group, &prev.group, prev.state),
                        metrics: GroupMetrics::new(&self.telemetry, &group),
                        next_due_ms: prev.next_due_ms.min(now_ms.saturating_add(ms(interval))),
                        last_eval_ms: prev.last_eval_ms,
                        last_seconds: prev.last_seconds,
                        interval,
                        group,
                        watch: Vec::new(),
                    },
                    None => LiveGroup {
                        state: GroupState::new(&group),
                        metrics: GroupMetrics::new(&self.telemetry, &group),
                        next_due_ms: now_ms,
                        last_eval_ms: None,
                        last_seconds: 0.0,
                        interval,
                        group,
                        watch: Vec::new(),
                    },
                };
                self.groups.push(g);
            }
        }
        // Groups that are gone take their series with them.
        let registry = self.telemetry.registry();
        for key in old.keys() {
            let l = [("rule_group", key.as_str())];
            for name in [
                names::RULE_EVALUATIONS,
                names::RULE_EVALUATION_FAILURES,
                names::RULE_EVALUATION_DURATION,
                names::RULE_GROUP_LAST_EVALUATION,
                names::RULE_GROUP_RULES,
            ] {
                registry.remove(name, &l);
            }
        }
        // What change-driven passes watch; a reloaded rule starts as never evaluated, so the
        // next change it reads evaluates it.
        self.watched = APPLY_FAMILIES
            .iter()
            .map(|n| n.to_string())
            .chain([ALERTS_METRIC.into(), ALERTS_FOR_STATE_METRIC.into()])
            .chain(
                self.groups
                    .iter()
                    .flat_map(|g| &g.group.rules)
                    .filter_map(|r| match r {
                        Rule::Recording(r) => Some(r.name.clone()),
                        Rule::Alerting(_) => None,
                    }),
            )
            .collect();
        for g in &mut self.groups {
            g.watch = g
                .group
                .rules
                .iter()
                .map(|r| RuleWatch::of(r, g.group.limit, &self.watched))
                .collect();
        }
        let needs = Needs::of(self.groups.iter().map(|g| &g.group));
        // Rule outputs are kept as long as a rule reads them back (ranges over ALERTS or a
        // recorded series), and at least the lookback, for groups on slower timers.
        let outputs = self
            .groups
            .iter()
            .flat_map(|g| &g.group.rules)
            .filter_map(|r| match r {
                Rule::Recording(r) => Some(r.name.as_str()),
                Rule::Alerting(_) => None,
            })
            .chain([ALERTS_METRIC, ALERTS_FOR_STATE_METRIC])
            .filter_map(|name| needs.keep_ms(name))
            .max()
            .unwrap_or(0);
        self.keep = Duration::from_millis(outputs.max(0).unsigned_abs()).max(LOOKBACK_DELTA)
            + HISTORY_RESOLUTION;
        self.live.set_needs(needs);
        self.publish_alerts();
    }

    /// The loaded groups, in file order.
    pub fn groups(&self) -> &[LiveGroup] {
        &self.groups
    }

    /// When the earliest timer evaluation is due (timer clock), if any group is loaded: at once
    /// when a timer pass stopped for a change has rules left.
    pub fn next_due_ms(&self) -> Option<i64> {
        if let Some(r) = self.resume {
            return Some(r.tick_ms);
        }
        self.groups.iter().map(|g| g.next_due_ms).min()
    }

    /// Whether a timer pass stopped for a change and has rules left to evaluate.
    pub fn tick_in_progress(&self) -> bool {
        self.resume.is_some()
    }

    /// [`Engine::evaluate_at`] with one clock for both timestamps and timers.
    pub fn evaluate(&mut self, now_ms: i64, due_only: bool) -> Pass {
        self.evaluate_at(now_ms, now_ms, due_only)
    }

    /// Evaluate every group at unix time `now_ms`, or with `due_only` just those whose timer
    /// has come by `tick_ms` (after a change, see [`Engine::evaluate_changes`]). Timers run on their own monotonic clock
    /// (`tick_ms`, the runner's time since start), so a wall clock stepped back an hour cannot
    /// hold them for an hour; sample timestamps come from `now_ms`, never repeating or going
    /// back. Every evaluated group's timer restarts from `tick_ms`.
    pub fn evaluate_at(&mut self, now_ms: i64, tick_ms: i64, due_only: bool) -> Pass {
        self.run(
            now_ms,
            tick_ms,
            if due_only { Mode::Due } else { Mode::All },
            None,
            None,
        )
    }

    /// [`Engine::evaluate_at`] that may stop for a change: before each rule after the first,
    /// and every few series a rule reads, `stop` is asked, and when it says yes the pass ends
    /// there ([`Pass::stopped`]) so the caller can run a change-driven pass first. A rule it
    /// stopped in is given up: nothing of it is kept, as if it had not been picked. The next
    /// call (whatever its arguments) goes on from that rule, at a fresh timestamp, with the
    /// groups that were due when the pass began. A breach then waits for a few series of a
    /// timer pass, not for its rule in progress (a millisecond or two for a range function
    /// over hundreds of markets) or for all its rules. A rule is given up once per pass at
    /// most, and each call evaluates at least one rule unless it gives one up, so a busy stream
    /// costs a timer pass one more evaluation per rule at most and never starves it (the runner
    /// also lets change passes stop one only as often as its duty bound allows).
    pub fn evaluate_preemptible(
        &mut self,
        now_ms: i64,
        tick_ms: i64,
        due_only: bool,
        stop: &dyn Fn() -> bool,
        on_group: Option<OnGroup<'_>>,
    ) -> Pass {
        self.run(
            now_ms,
            tick_ms,
            if due_only { Mode::Due } else { Mode::All },
            Some(stop),
            on_group,
        )
    }

    /// The pass after a change (an account's epoch moved), at unix time `now_ms`: only the rules
    /// that read a series that changed since they last ran (a value, a series appearing or going
    /// stale) among the account families ([`APPLY_FAMILIES`]) and the rules' own outputs, in
    /// group and rule order, so a rule reading what an earlier rule of the pass recorded (or
    /// `ALERTS`, when an alert changed state) runs too. Groups keep their timers (`tick_ms` is
    /// not used): a group is still evaluated whole every `interval`, which is when rules on
    /// stream health, clocks (`time()`) and sliding windows move; a change pass only brings a
    /// rule's next evaluation forward for the data it reads. Timestamps still never repeat.
    pub fn evaluate_changes(&mut self, now_ms: i64) -> Pass {
        self.run(now_ms, 0, Mode::Changed, None, None)
    }

    /// [`Engine::evaluate_changes`], calling `on_group` with the engine and a group's
    /// transitions as soon as that group's evaluation ends, for each group with a transition.
    pub fn evaluate_changes_with(&mut self, now_ms: i64, on_group: OnGroup<'_>) -> Pass {
        self.run(now_ms, 0, Mode::Changed, None, Some(on_group))
    }

    fn run(
        &mut self,
        now_ms: i64,
        tick_ms: i64,
        mode: Mode,
        stop: Option<&dyn Fn() -> bool>,
        mut on_group: Option<OnGroup<'_>>,
    ) -> Pass {
        let started = self.clock.map(|now| now());
        let t = now_ms.max(self.last_t.saturating_add(1));
        self.last_t = t;
        let mut pass = Pass {
            t_ms: t,
            ..Pass::default()
        };
        // A timer pass goes on where the previous one stopped; a change pass runs in between.
        let resume = match mode {
            Mode::Changed => None,
            Mode::All | Mode::Due => self.resume.take(),
        };
        let (tick_ms, mode) = resume.map_or((tick_ms, mode), |r| (r.tick_ms, r.mode));
        let from_group = resume.map_or(0, |r| r.group);
        let due = |gi: usize, g: &LiveGroup| {
            gi >= from_group
                && match mode {
                    Mode::All | Mode::Changed => true,
                    Mode::Due => g.next_due_ms <= tick_ms,
                }
        };
        if !self.groups.iter().enumerate().any(|(gi, g)| due(gi, g)) {
            return pass;
        }
        let mut progressed = false;
        self.seq += 1;
        // A change pass samples only the series that moved (sampling every series was the bulk
        // of its cost). A timer pass going on after a change pass reads what that pass read a
        // moment ago: reading every series again would buy nothing.
        if mode == Mode::Changed {
            self.live.observe_moved(t, self.seq);
        } else if resume.is_none() || !self.observed_since_stop {
            self.live.observe(t, self.seq);
        }
        self.observed_since_stop = mode == Mode::Changed;
        let ctx = EvalContext {
            external_labels: &self.external_labels,
            external_url: &self.external_url,
            clock: self.clock,
        };
        let clock = self.clock;
        let watched = &self.watched;
        let mut latest_any = self.live.latest_change(|n| watched.contains(n));
        latest_any = latest_any.max(self.outputs_changed.values().copied().max().unwrap_or(0));
        for gi in 0..self.groups.len() {
            let g = &mut self.groups[gi];
            if !due(gi, g) {
                continue;
            }
            let resumed_here = resume.filter(|r| r.group == gi);
            let g_started = clock.map(|now| now());
            let before: Vec<Option<String>> = (0..g.group.rules.len())
                .map(|i| g.state.status(i).and_then(|s| s.last_error.clone()))
                .collect();
            let mut pick = Changes {
                watch: &mut g.watch,
                only_changed: mode == Mode::Changed,
                live: &self.live,
                outputs_changed: &mut self.outputs_changed,
                output_logs: &mut self.output_logs,
                seq: &mut self.seq,
                latest_any: &mut latest_any,
                from: resumed_here.map_or(0, |r| r.rule),
                stop,
                progressed: &mut progressed,
                stopped_at: None,
                finish: resumed_here.filter(|r| r.gave_up).map(|r| r.rule),
                gave_up: false,
                picked_from: (0, false),
            };
            let out = group::eval_group_picked(
                &g.group,
                &mut g.state,
                &self.live,
                &mut self.outputs,
                t,
                &ctx,
                &mut pick,
            );
            let (stopped_at, gave_up) = (pick.stopped_at, pick.gave_up);
            let seconds = elapsed(clock, g_started) + resumed_here.map_or(0.0, |r| r.seconds);
            if let Some(rule) = stopped_at {
                self.resume = Some(Resume {
                    tick_ms,
                    mode,
                    group: gi,
                    rule,
                    seconds,
                    gave_up,
                });
            }
            if out.evaluated == 0 {
                if stopped_at.is_some() {
                    pass.stopped = true;
                    break;
                }
                continue;
            }
            g.metrics.evaluations.increment(out.evaluated as u64);
            g.metrics.failures.increment(out.errors.len() as u64);
            if mode != Mode::Changed && stopped_at.is_none() {
                g.last_eval_ms = Some(t);
                g.last_seconds = seconds;
                g.next_due_ms = tick_ms.saturating_add(ms(g.interval));
                g.metrics.duration.record(seconds);
                g.metrics.last.set(t as f64 / 1000.0);
            }
            pass.groups += 1;
            pass.rules += out.evaluated;
            pass.scoped += out.scoped;
            let key = group_key(&g.group);
            let name = |i: usize| g.group.rules.get(i).map_or("", Rule::name).to_string();
            for (i, error) in out.errors {
                if before.get(i).and_then(Option::as_ref) != Some(&error) {
                    pass.failures.push(RuleFailure {
                        group: key.clone(),
                        rule: name(i),
                        error,
                    });
                }
            }
            for (i, was) in before.iter().enumerate() {
                let now_ok = g.state.status(i).is_some_and(|s| s.last_error.is_none());
                if was.is_some() && now_ok {
                    pass.recovered.push((key.clone(), name(i)));
                }
            }
            let new = pass.transitions.len();
            pass.transitions.extend(out.transitions);
            if let Some(f) = on_group.as_mut()
                && pass.transitions.len() > new
            {
                f(self, &pass.transitions[new..]);
            }
            if stopped_at.is_some() {
                pass.stopped = true;
                break;
            }
        }
        // Not when the pass stopped for a change: that change is waiting.
        if !pass.stopped && t.saturating_sub(self.last_prune_ms) >= ms(HISTORY_RESOLUTION) {
            self.outputs.prune_before(t.saturating_sub(ms(self.keep)));
            self.last_prune_ms = t;
            self.history_samples
                .set((self.live.samples() + self.outputs.sample_count()) as f64);
        }
        if !pass.transitions.is_empty() {
            self.publish_alerts();
        }
        pass.seconds = elapsed(self.clock, started);
        self.last_pass_seconds = pass.seconds;
        pass
    }

    /// How long the latest pass took, timer or change-driven (0 without a clock).
    pub fn last_pass_seconds(&self) -> f64 {
        self.last_pass_seconds
    }

    /// `ocx_sentinel_alerts{alertname, alertstate}`: how many alerts each rule holds per state.
    fn publish_alerts(&mut self) {
        let mut counts: HashMap<(String, AlertState), usize> = HashMap::new();
        for (rule, a) in self.alerts() {
            if a.state != AlertState::Inactive {
                *counts.entry((rule.name.clone(), a.state)).or_default() += 1;
            }
        }
        for ((name, state), gauge) in &self.alert_series {
            if !counts.contains_key(&(name.clone(), *state)) {
                gauge.set(0.0);
            }
        }
        for (key, n) in counts {
            let gauge = self.alert_series.entry(key.clone()).or_insert_with(|| {
                self.telemetry.gauge(
                    names::ALERTS,
                    &[("alertname", &key.0), ("alertstate", key.1.as_str())],
                )
            });
            gauge.set(n as f64);
        }
    }

    /// Every alert held (pending, firing, and resolved ones still retained) with its rule.
    pub fn alerts(&self) -> impl Iterator<Item = (&super::file::AlertingRule, &Alert)> {
        self.groups.iter().flat_map(|g| {
            g.group
                .rules
                .iter()
                .enumerate()
                .filter_map(move |(i, r)| match r {
                    Rule::Alerting(a) => Some((a, g.state.alerts(i)?)),
                    Rule::Recording(_) => None,
                })
                .flat_map(|(a, alerts)| alerts.alerts().map(move |al| (a, al)))
        })
    }

    /// What the notification side must know: every firing alert, and every resolved one still
    /// retained (15 minutes), as Prometheus sends them to Alertmanager; pending alerts are not
    /// sent. `startsAt` is when the alert started firing (Prometheus sends `FiredAt`).
    ///
    /// `triggers` maps an alert's fingerprint to the traced event that made it fire or resolve,
    /// put on its entry. An alert that did not change since the previous snapshot is the same
    /// `Arc` as there, so the notifier can skip it by pointer.
    pub fn notifiable(&self, triggers: Option<&HashMap<u64, TraceIds>>) -> Vec<Arc<NotifyAlert>> {
        let mut cache = self.notify_cache.borrow_mut();
        cache.round += 1;
        let round = cache.round;
        let mut out = Vec::new();
        for (gi, g) in self.groups.iter().enumerate() {
            for (i, rule) in g.group.rules.iter().enumerate() {
                let (Rule::Alerting(a), Some(held)) = (rule, g.state.alerts(i)) else {
                    continue;
                };
                let seq = g.watch.get(i).map_or(u64::MAX, |w| w.evaluated_seq);
                let entries = cache.rules.entry((gi, i)).or_insert_with(|| RuleEntries {
                    seq: u64::MAX,
                    round,
                    built_at: 0,
                    list: Vec::new(),
                    by_labels: BTreeMap::new(),
                });
                entries.round = round;
                // Not evaluated since: the same entries. A trigger is only ever noted for an
                // alert that just fired or resolved, so its rule was evaluated.
                if seq != u64::MAX && entries.seq == seq && triggers.is_none_or(HashMap::is_empty) {
                    out.extend(entries.list.iter().cloned());
                    continue;
                }
                let mut url: Option<String> = None;
                let mut entry_of = |al: &Alert, old: Option<Cached>| -> Option<Cached> {
                    let ends_at_ms = match (al.state, al.resolved_at_ms) {
                        (AlertState::Firing, _) => None,
                        (AlertState::Inactive, Some(r)) => Some(r),
                        _ => return None,
                    };
                    // Prometheus sends `startsAt` as the firing time (`FiredAt`), not `activeAt`.
                    let starts_at_ms = al.fired_at_ms.unwrap_or(al.active_at_ms);
                    let trigger_of = |fp: u64| triggers.and_then(|t| t.get(&fp)).copied();
                    if let Some(c) = old.filter(|c| {
                        shows(
                            &c.entry,
                            al,
                            starts_at_ms,
                            ends_at_ms,
                            trigger_of(c.fingerprint),
                        )
                    }) {
                        return Some(c);
                    }
                    let url = url.get_or_insert_with(|| {
                        format!(
                            "{}/graph?g0.expr={}&g0.tab=1",
                            self.external_url.trim_end_matches('/'),
                            query_escape(a.expr.as_str())
                        )
                    });
                    let mut entry = NotifyAlert {
                        labels: al
                            .labels
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        annotations: al.annotations.iter().cloned().collect(),
                        starts_at_ms,
                        ends_at_ms,
                        value: al.value,
                        generator_url: url.clone(),
                        trigger: None,
                    };
                    let fingerprint = entry.fingerprint();
                    entry.trigger = trigger_of(fingerprint);
                    Some(Cached {
                        entry: Arc::new(entry),
                        fingerprint,
                    })
                };
                // Only the alerts its evaluations since visited may differ (a narrowed one
                // visits a few of the hundreds a rule may hold); otherwise every alert is
                // compared with its entry.
                let mut touched: Vec<Labels> = Vec::new();
                let known = entries.seq != u64::MAX
                    && held.touched_since(entries.built_at, &mut |l| touched.push(l.clone()));
                if known {
                    // And those a trigger is noted for (alerts that just fired or resolved,
                    // which their evaluation visited: this is for safety, not for speed).
                    if let Some(t) = triggers.filter(|t| !t.is_empty()) {
                        touched.extend(
                            entries
                                .by_labels
                                .iter()
                                .filter(|(_, c)| t.contains_key(&c.fingerprint))
                                .map(|(l, _)| l.clone()),
                        );
                    }
                    touched.sort();
                    touched.dedup();
                    for labels in touched {
                        let old = entries.by_labels.remove(&labels);
                        if let Some(c) = held.get(&labels).and_then(|al| entry_of(al, old)) {
                            entries.by_labels.insert(labels, c);
                        }
                    }
                } else {
                    let mut old = std::mem::take(&mut entries.by_labels);
                    for al in held.alerts() {
                        if let Some(c) = entry_of(al, old.remove(&al.labels)) {
                            entries.by_labels.insert(al.labels.clone(), c);
                        }
                    }
                }
                entries.seq = seq;
                entries.built_at = held.evals();
                entries.list.clear();
                entries
                    .list
                    .extend(entries.by_labels.values().map(|c| c.entry.clone()));
                out.extend(entries.list.iter().cloned());
            }
        }
        cache.rules.retain(|_, r| r.round == round);
        out
    }

    /// Every alert held, as data-dir rows (see `rules::persist`).
    pub fn stored_alerts(&self) -> Vec<StoredAlert> {
        let mut out = Vec::new();
        for g in &self.groups {
            let key = g.key();
            for (i, rule) in g.group.rules.iter().enumerate() {
                let (Rule::Alerting(_), Some(held)) = (rule, g.state.alerts(i)) else {
                    continue;
                };
                let rk = group::rule_key(rule);
                out.extend(held.alerts().map(|a| StoredAlert::of(&key, &rk, a)));
            }
        }
        out
    }

    /// [`Engine::stored_alerts`] for the alerts `transitions` name, and the row ids of those no
    /// longer held (a pending alert cleared): what a pass with these transitions changed.
    pub fn stored_alerts_for(
        &self,
        transitions: &[super::group::AlertTransition],
    ) -> (Vec<StoredAlert>, Vec<String>) {
        let (mut held, mut gone) = (Vec::new(), Vec::new());
        for g in &self.groups {
            let mut key = None;
            for (i, rule) in g.group.rules.iter().enumerate() {
                let Rule::Alerting(a) = rule else { continue };
                let mut named = transitions.iter().filter(|t| t.rule == a.name).peekable();
                if named.peek().is_none() {
                    continue;
                }
                let key = key.get_or_insert_with(|| g.key());
                let rk = group::rule_key(rule);
                for t in named {
                    match g.state.alerts(i).and_then(|h| h.get(&t.labels)) {
                        Some(alert) => held.push(StoredAlert::of(key, &rk, alert)),
                        None => gone.push(super::persist::id_of(key, &rk, t.labels.iter())),
                    }
                }
            }
        }
        (held, gone)
    }

    /// Puts stored alerts back under the loaded rule they belong to (same group, same rule
    /// identity); those of rules no longer loaded are left out. Returns how many were restored.
    pub fn restore(&mut self, stored: &[StoredAlert]) -> usize {
        // Restored alerts change rules that were not evaluated (see `RuleEntries`).
        self.notify_cache.get_mut().rules.clear();
        let mut by_rule: HashMap<(&str, &str), Vec<&StoredAlert>> = HashMap::new();
        for a in stored {
            by_rule.entry((&a.group, &a.rule)).or_default().push(a);
        }
        let mut n = 0;
        for g in &mut self.groups {
            let key = group_key(&g.group);
            for (i, rule) in g.group.rules.iter().enumerate() {
                if !matches!(rule, Rule::Alerting(_)) {
                    continue;
                }
                let rk = group::rule_key(rule);
                for a in by_rule
                    .get(&(key.as_str(), rk.as_str()))
                    .into_iter()
                    .flatten()
                {
                    if let Some(alert) = a.alert() {
                        g.state.restore_alert(i, alert);
                        n += 1;
                    }
                }
            }
        }
        self.publish_alerts();
        n
    }

    /// The status of rule `i` of group `g`.
    pub fn status(&self, g: usize, i: usize) -> Option<&RuleStatus> {
        self.groups.get(g)?.state.status(i)
    }

    /// Samples held for range functions and lookback.
    pub fn history_samples(&self) -> usize {
        self.live.samples() + self.outputs.sample_count()
    }
}

/// Called as each group's evaluation ends, with the engine and the transitions of that group.
pub type OnGroup<'a> = &'a mut dyn FnMut(&Engine, &[AlertTransition]);

/// Seconds since `since` on `clock`; 0 without a clock.
fn elapsed(clock: Option<fn() -> Instant>, since: Option<Instant>) -> f64 {
    match (clock, since) {
        (Some(now), Some(since)) => now().duration_since(since).as_secs_f64(),
        _ => 0.0,
    }
}

/// Go's `url.QueryEscape`: unreserved bytes stay, space is `+`, the rest `%XX`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::alert::Transition;
    use crate::rules::file::parse_str;

    const RULES: &str = r#"
groups:
  - name: limits
    rules:
      - alert: InventoryLimitBreached
        expr: abs(ocx_position_quantity) > on(account, market) group_left ocx_inventory_limit
        for: 2s
        labels: {severity: page}
        annotations:
          summary: '{{ $labels.market }} at {{ $value }}'
  - name: stream
    interval: 10s
    rules:
      - record: account:reconnects:increase1m
        expr: sum by (account) (increase(ocx_stream_reconnects_total[1m]))
"#;

    fn setup() -> (Telemetry, Engine) {
        let t = Telemetry::new();
        let mut e = Engine::new(&t, Duration::from_secs(1), "http://sentinel");
        e.load(vec![parse_str(RULES, "rules.yml").unwrap()], 0);
        (t, e)
    }

    /// An engine with one rule, `Big`, firing per market of `ocx_position_quantity` over 5
    /// with its value as an annotation: what the snapshot tests publish.
    fn big_engine(t: &Telemetry) -> Engine {
        let mut e = Engine::new(t, Duration::from_secs(1), "");
        let rules = "groups: [{name: g, rules: [{alert: Big, expr: 'ocx_position_quantity > 5', annotations: {v: '{{ $value }}'}}]}]\n";
        e.load(vec![parse_str(rules, "r.yml").unwrap()], 0);
        e
    }

    /// A snapshot's entries by their `market` label.
    fn by_market(n: &[Arc<NotifyAlert>]) -> BTreeMap<String, Arc<NotifyAlert>> {
        n.iter()
            .map(|x| (x.labels["market"].clone(), x.clone()))
            .collect()
    }

    fn states(e: &Engine) -> Vec<(String, AlertState)> {
        e.alerts()
            .filter(|(_, a)| a.state != AlertState::Inactive)
            .map(|(_, a)| (a.labels.get("market").unwrap_or("").to_string(), a.state))
            .collect()
    }

    /// A pass hands each group's transitions over as that group ends: the alert of the first
    /// group is held (and can be published) before the second group is evaluated.
    #[test]
    fn each_groups_transitions_are_handed_over_when_that_group_ends() {
        let t = Telemetry::new();
        let mut e = Engine::new(&t, Duration::from_secs(1), "");
        let rules = "groups:\n  - name: a\n    rules: [{alert: A, expr: 'ocx_position_quantity > 5'}]\n  - name: b\n    rules: [{alert: B, expr: 'ocx_position_quantity > 1'}]\n";
        e.load(vec![parse_str(rules, "r.yml").unwrap()], 0);
        let q = t.gauge(
            names::POSITION_QUANTITY,
            &[("account", "x"), ("market", "M")],
        );
        q.set(0.0);
        e.evaluate(1_000, false);
        q.set(9.0);
        let mut calls: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        let p = e.evaluate_changes_with(2_000, &mut |engine, ts| {
            let held = engine
                .alerts()
                .filter(|(_, a)| a.state == AlertState::Firing)
                .map(|(r, _)| r.name.clone())
                .collect();
            calls.push((ts.iter().map(|t| t.rule.clone()).collect(), held));
        });
        assert_eq!(p.transitions.len(), 2);
        assert_eq!(
            calls,
            vec![
                (vec!["A".to_string()], vec!["A".to_string()]),
                (
                    vec!["B".to_string()],
                    vec!["A".to_string(), "B".to_string()]
                ),
            ]
        );
    }

    /// The runner writes only the alerts a pass's transitions name; after each pass, comparing
    /// every alert held must find nothing more to write (pending, firing, resolved, a pending
    /// alert cleared and gone, over several markets at once).
    #[test]
    fn the_alerts_transitions_name_are_all_a_pass_changed_in_the_store() {
        let (t, mut e) = setup();
        let mut written = super::super::persist::Written::default();
        let qs: Vec<_> = ["A", "B", "C"]
            .iter()
            .map(|m| {
                let l = [("account", "a"), ("market", *m)];
                t.gauge(names::INVENTORY_LIMIT, &l).set(5.0);
                t.gauge(names::POSITION_QUANTITY, &l)
            })
            .collect();
        // (time, quantities): B goes pending and is cleared before firing; A and C fire and
        // resolve at different times.
        let steps = [
            (1_000, [9.0, 9.0, 0.0]),
            (2_000, [9.0, 0.0, 9.0]),
            (3_500, [9.0, 0.0, 9.0]),
            (4_000, [0.0, 0.0, 9.0]),
            (6_000, [0.0, 9.0, 0.0]),
        ];
        let mut transitions = 0;
        for (at, quantities) in steps {
            for (q, v) in qs.iter().zip(quantities) {
                q.set(v);
            }
            let p = e.evaluate(at, false);
            transitions += p.transitions.len();
            let (held, gone) = e.stored_alerts_for(&p.transitions);
            let _ = written.diff_some(held, gone);
            assert_eq!(written.diff(e.stored_alerts()), vec![], "at {at}");
        }
        assert!(
            transitions >= 8,
            "the steps moved the alerts: {transitions}"
        );
    }

    #[test]
    fn an_alert_goes_pending_fires_and_resolves_on_the_live_series() {
        let (t, mut e) = setup();
        let l = [("account", "a"), ("market", "BTC-PERP")];
        t.gauge(names::INVENTORY_LIMIT, &l).set(5.0);
        let q = t.gauge(names::POSITION_QUANTITY, &l);
        q.set(-7.0);
        let p = e.evaluate(1_000, false);
        assert_eq!(p.groups, 2);
        assert_eq!(p.transitions.len(), 1);
        assert_eq!(p.transitions[0].transition, Transition::Pending);
        assert_eq!(states(&e), vec![("BTC-PERP".into(), AlertState::Pending)]);
        let p = e.evaluate(3_000, false);
        assert_eq!(p.transitions[0].transition, Transition::Firing);
        let (_, alert) = e.alerts().next().unwrap();
        assert_eq!(alert.value, 7.0);
        assert_eq!(alert.active_at_ms, 1_000);
        assert_eq!(
            alert.annotations,
            vec![("summary".to_string(), "BTC-PERP at 7".to_string())]
        );
        assert_eq!(
            t.gauge(
                names::ALERTS,
                &[
                    ("alertname", "InventoryLimitBreached"),
                    ("alertstate", "firing")
                ]
            )
            .get(),
            1.0
        );
        q.set(1.0);
        let p = e.evaluate(3_500, false);
        assert_eq!(p.transitions[0].transition, Transition::Resolved);
        assert!(states(&e).is_empty());
        assert_eq!(
            t.gauge(
                names::ALERTS,
                &[
                    ("alertname", "InventoryLimitBreached"),
                    ("alertstate", "firing")
                ]
            )
            .get(),
            0.0
        );
    }

    #[test]
    fn firing_and_resolved_alerts_are_what_notifications_see() {
        let (t, mut e) = setup();
        let l = [("account", "a"), ("market", "BTC-PERP")];
        t.gauge(names::INVENTORY_LIMIT, &l).set(5.0);
        let q = t.gauge(names::POSITION_QUANTITY, &l);
        q.set(9.0);
        e.evaluate(1_000, false);
        assert!(e.notifiable(None).is_empty(), "pending alerts are not sent");
        e.evaluate(3_000, false);
        let n = e.notifiable(None);
        assert_eq!(n.len(), 1);
        // Pending at 1s, firing at 3s: `startsAt` is the firing time, as Prometheus sends it.
        assert_eq!(n[0].starts_at_ms, 3_000);
        assert_eq!(n[0].ends_at_ms, None);
        assert_eq!(n[0].value, 9.0);
        assert_eq!(n[0].labels["severity"], "page");
        assert_eq!(
            n[0].generator_url,
            "http://sentinel/graph?g0.expr=abs%28ocx_position_quantity%29+%3E+on%28account%2C+market%29+group_left+ocx_inventory_limit&g0.tab=1"
        );
        q.set(1.0);
        e.evaluate(4_000, false);
        let n = e.notifiable(None);
        assert_eq!(n[0].ends_at_ms, Some(4_000));
    }

    /// A snapshot reuses the entry of an alert that did not change (the notifier skips it by
    /// pointer) and builds anew the entry of one whose value, state or trigger changed.
    #[test]
    fn snapshots_share_unchanged_alerts_and_rebuild_changed_ones() {
        let t = Telemetry::new();
        let mut e = big_engine(&t);
        let gauge = |m: &str| t.gauge(names::POSITION_QUANTITY, &[("account", "a"), ("market", m)]);
        let (a, b) = (gauge("A"), gauge("B"));
        a.set(6.0);
        b.set(7.0);
        e.evaluate(1_000, false);
        let first = by_market(&e.notifiable(None));
        assert_eq!(first.len(), 2);

        // B's value moves (and its `$value` annotation with it); A's does not.
        b.set(8.0);
        e.evaluate(2_000, false);
        let second = by_market(&e.notifiable(None));
        assert!(Arc::ptr_eq(&first["A"], &second["A"]), "A did not change");
        assert!(!Arc::ptr_eq(&first["B"], &second["B"]));
        assert_eq!(second["B"].value, 8.0);
        assert_eq!(second["B"].annotations["v"], "8");

        // A resolves: a new entry, with its end.
        a.set(1.0);
        e.evaluate(3_000, false);
        let third = by_market(&e.notifiable(None));
        assert!(!Arc::ptr_eq(&second["A"], &third["A"]));
        assert_eq!(third["A"].ends_at_ms, Some(3_000));
        assert!(Arc::ptr_eq(&second["B"], &third["B"]));

        // A trigger noted for B: a new entry that carries it.
        let ids = TraceIds {
            trace_id: 1,
            span_id: 2,
        };
        let triggers = HashMap::from([(second["B"].fingerprint(), ids)]);
        let fourth = by_market(&e.notifiable(Some(&triggers)));
        assert_eq!(fourth["B"].trigger, Some(ids));
        assert!(Arc::ptr_eq(&third["A"], &fourth["A"]));
        // And the same entry again while nothing changes.
        let fifth = by_market(&e.notifiable(Some(&triggers)));
        assert!(Arc::ptr_eq(&fourth["B"], &fifth["B"]));
    }

    /// A rule a change pass did not evaluate keeps its entries; the one it evaluated shows what
    /// the pass changed.
    #[test]
    fn a_change_pass_rebuilds_only_the_entries_of_the_rules_it_evaluated() {
        let t = Telemetry::new();
        let mut e = Engine::new(&t, Duration::from_secs(1), "");
        let rules = "groups: [{name: g, rules: [{alert: Big, expr: 'ocx_position_quantity > 5'}, {alert: Low, expr: 'ocx_inventory_limit < 3'}]}]\n";
        e.load(vec![parse_str(rules, "r.yml").unwrap()], 0);
        let l = [("account", "a"), ("market", "M")];
        let q = t.gauge(names::POSITION_QUANTITY, &l);
        let limit = t.gauge(names::INVENTORY_LIMIT, &l);
        q.set(6.0);
        limit.set(2.0);
        e.evaluate(1_000, false);
        let by_name = |n: &[Arc<NotifyAlert>]| -> HashMap<String, Arc<NotifyAlert>> {
            n.iter()
                .map(|x| (x.labels["alertname"].clone(), x.clone()))
                .collect()
        };
        let first = by_name(&e.notifiable(None));
        assert_eq!(first.len(), 2);

        q.set(7.0);
        let p = e.evaluate_changes(2_000);
        assert_eq!(p.rules, 1, "only the rule reading the quantity");
        let second = by_name(&e.notifiable(None));
        assert_eq!(second["Big"].value, 7.0);
        assert!(Arc::ptr_eq(&first["Low"], &second["Low"]));

        limit.set(1.0);
        e.evaluate_changes(3_000);
        let third = by_name(&e.notifiable(None));
        assert_eq!(third["Low"].value, 1.0);
        assert!(Arc::ptr_eq(&second["Big"], &third["Big"]));

        // The quantity drops under 5: Big resolves, and its entry says so.
        q.set(1.0);
        e.evaluate_changes(4_000);
        let fourth = by_name(&e.notifiable(None));
        assert_eq!(fourth["Big"].ends_at_ms, Some(4_000));
        assert!(Arc::ptr_eq(&third["Low"], &fourth["Low"]));
    }

    /// A narrowed pass rebuilds the entries of the alerts it visited and shares the others,
    /// resolved ones included, and the snapshot is what building every entry anew gives.
    #[test]
    fn a_narrowed_pass_rebuilds_only_the_entries_of_the_alerts_it_visited() {
        let t = Telemetry::new();
        let mut e = big_engine(&t);
        let markets = ["M0", "M1", "M2", "M3"];
        let q: Vec<_> = markets
            .iter()
            .map(|m| t.gauge(names::POSITION_QUANTITY, &[("account", "a"), ("market", m)]))
            .collect();
        for g in &q {
            g.set(6.0);
        }
        e.evaluate(1_000, false);
        let view = |n: &[Arc<NotifyAlert>]| -> Vec<String> {
            n.iter()
                .map(|x| {
                    format!(
                        "{:?} {:?} {} {:?} {}",
                        x.labels, x.annotations, x.starts_at_ms, x.ends_at_ms, x.value
                    )
                })
                .collect()
        };
        let fresh = |e: &Engine| {
            e.notify_cache.borrow_mut().rules.clear();
            view(&e.notifiable(None))
        };
        assert_eq!(e.notifiable(None).len(), 4);
        // Two resolve, in narrowed passes.
        let mut at = 1_000;
        for i in [1, 2] {
            q[i].set(1.0);
            at += 1_000;
            assert!(e.evaluate_changes(at).scoped > 0);
        }
        let before = by_market(&e.notifiable(None));
        assert_eq!(before["M1"].ends_at_ms, Some(2_000));
        // M0 moves: only its entry is new.
        q[0].set(7.0);
        at += 1_000;
        e.evaluate_changes(at);
        let snap = e.notifiable(None);
        let after = by_market(&snap);
        assert_eq!(after["M0"].value, 7.0);
        assert!(!Arc::ptr_eq(&before["M0"], &after["M0"]));
        for m in ["M1", "M2", "M3"] {
            assert!(Arc::ptr_eq(&before[m], &after[m]), "{m}");
        }
        assert_eq!(view(&snap), fresh(&e));
        // A resolved one fires again; then a whole evaluation.
        q[1].set(9.0);
        at += 1_000;
        e.evaluate_changes(at);
        let snap = e.notifiable(None);
        assert_eq!(by_market(&snap)["M1"].ends_at_ms, None);
        assert_eq!(view(&snap), fresh(&e));
        q[3].set(8.0);
        at += 1_000;
        e.evaluate(at, false);
        let snap = e.notifiable(None);
        assert_eq!(by_market(&snap)["M3"].value, 8.0);
        assert_eq!(view(&snap), fresh(&e));
    }

    #[test]
    fn timers_follow_each_groups_interval() {
        let (t, mut e) = setup();
        assert_eq!(e.next_due_ms(), Some(0));
        assert_eq!(e.evaluate(0, true).groups, 2);
        assert_eq!(e.next_due_ms(), Some(1_000));
        assert_eq!(
            e.evaluate(1_000, true).groups,
            1,
            "the 10s group is not due"
        );
        assert_eq!(e.evaluate(10_000, true).groups, 2);
        // A change evaluates everything and restarts the timers.
        assert_eq!(e.evaluate(10_500, false).groups, 2);
        assert_eq!(e.next_due_ms(), Some(11_500));
        let evals = t
            .counter(
                names::RULE_EVALUATIONS,
                &[("rule_group", "rules.yml;stream")],
            )
            .get();
        assert_eq!(evals, 3.0);
    }

    #[test]
    fn a_rule_failing_the_same_way_is_reported_once_and_its_recovery_too() {
        let t = Telemetry::new();
        let mut e = Engine::new(&t, Duration::from_secs(1), "");
        e.load(
            vec![
                parse_str(
                    "groups: [{name: g, rules: [{record: r, expr: 'ocx_position_quantity * on(account) ocx_inventory_limit'}]}]",
                    "f.yml",
                )
                .unwrap(),
            ],
            0,
        );
        let lim = |m: &str| t.gauge(names::INVENTORY_LIMIT, &[("account", "a"), ("market", m)]);
        t.gauge(
            names::POSITION_QUANTITY,
            &[("account", "a"), ("market", "M")],
        )
        .set(1.0);
        lim("M").set(1.0);
        lim("N").set(1.0); // two limits for one account: many-to-many on `account`
        let first = e.evaluate(1_000, false);
        assert_eq!(first.failures.len(), 1, "{first:?}");
        assert!(
            first.failures[0].error.contains("many-to-many"),
            "{first:?}"
        );
        for at in 2..50 {
            let p = e.evaluate(at * 1_000, false);
            assert!(p.failures.is_empty() && p.recovered.is_empty(), "{p:?}");
        }
        let failures = t
            .counter(
                names::RULE_EVALUATION_FAILURES,
                &[("rule_group", "f.yml;g")],
            )
            .get();
        assert_eq!(failures, 49.0, "every failure is counted");
        assert!(
            t.registry()
                .remove(names::INVENTORY_LIMIT, &[("account", "a"), ("market", "N")])
        );
        let fixed = e.evaluate(60_000, false);
        assert_eq!(
            fixed.recovered,
            vec![("f.yml;g".to_string(), "r".to_string())]
        );
    }

    const CHANGE_RULES: &str = r#"
groups:
  - name: positions
    interval: 10s
    rules:
      - record: account:position_quantity_abs:sum
        expr: sum by (account) (abs(ocx_position_quantity))
      - alert: Fills
        expr: sum by (account) (increase(ocx_fills_total[5m])) > 100
  - name: stream
    interval: 10s
    rules:
      - alert: Quiet
        expr: time() - ocx_stream_last_event_timestamp_seconds > 30
  - name: derived
    interval: 10s
    rules:
      - alert: Heavy
        expr: account:position_quantity_abs:sum > 5
      - record: alerts:count
        expr: count(ALERTS)
"#;

    fn change_setup() -> (Telemetry, Engine) {
        let t = Telemetry::new();
        let mut e = Engine::new(&t, Duration::from_secs(1), "");
        e.load(vec![parse_str(CHANGE_RULES, "c.yml").unwrap()], 0);
        (t, e)
    }

    fn evals(t: &Telemetry, group: &str) -> f64 {
        t.counter(
            names::RULE_EVALUATIONS,
            &[("rule_group", &format!("c.yml;{group}"))],
        )
        .get()
    }

    #[test]
    fn a_change_pass_evaluates_only_the_rules_reading_what_changed() {
        let (t, mut e) = change_setup();
        let q = t.gauge(
            names::POSITION_QUANTITY,
            &[("account", "a"), ("market", "M")],
        );
        let last = t.gauge(names::LAST_EVENT, &[("account", "a"), ("stream", "user")]);
        q.set(1.0);
        last.set(1.0);
        assert_eq!(
            e.evaluate(1_000, true).rules,
            5,
            "the first timer runs everything"
        );
        let due = e.next_due_ms();

        // A position moves (and the stream's clock with it): the rule recording positions runs,
        // then the alert reading what it recorded; the fills rule, the stream group and the
        // `ALERTS` count (no alert changed state) do not.
        q.set(2.0);
        last.set(2.0);
        let p = e.evaluate_changes(2_000);
        assert_eq!((p.groups, p.rules), (2, 2), "{p:?}");
        assert_eq!(evals(&t, "positions"), 3.0);
        assert_eq!(
            evals(&t, "stream"),
            1.0,
            "stream health waits for its timer"
        );
        assert_eq!(evals(&t, "derived"), 3.0);
        assert_eq!(
            e.next_due_ms(),
            due,
            "timers are not moved by change passes"
        );

        // Over 5: `Heavy` fires, so `ALERTS` changed and the rule counting it runs too.
        q.set(6.0);
        let p = e.evaluate_changes(3_000);
        assert_eq!(p.rules, 3, "{p:?}");
        assert_eq!(p.transitions.len(), 1);
        let count = e
            .outputs
            .samples(&crate::rules::promql::Labels::new([(
                "__name__",
                "alerts:count",
            )]))
            .unwrap();
        assert_eq!(count.last().unwrap().1, 1.0);

        // Nothing moved: nothing runs, and the time still moves forward.
        let p = e.evaluate_changes(3_000);
        assert_eq!((p.groups, p.rules), (0, 0));
        assert!(p.t_ms > 3_000);

        // A fill moves the fills counter: only the rule reading it.
        t.counter(
            names::FILLS,
            &[("account", "a"), ("market", "M"), ("side", "buy")],
        )
        .increment(1);
        let p = e.evaluate_changes(4_000);
        assert_eq!(p.rules, 1, "{p:?}");

        // The stream group still runs whole on its timer.
        let p = e.evaluate(11_000, true);
        assert_eq!(p.groups, 3);
        assert_eq!(evals(&t, "stream"), 2.0);
    }

    #[test]
    fn a_series_appearing_or_leaving_is_a_change() {
        let (t, mut e) = change_setup();
        e.evaluate(1_000, true);
        let l = [("account", "a"), ("market", "N")];
        t.gauge(names::POSITION_QUANTITY, &l).set(7.0);
        let p = e.evaluate_changes(2_000);
        assert_eq!(p.transitions.len(), 1, "Heavy fires: {p:?}");
        assert!(t.registry().remove(names::POSITION_QUANTITY, &l));
        let p = e.evaluate_changes(3_000);
        assert_eq!(p.transitions[0].transition, Transition::Resolved, "{p:?}");
    }

    #[test]
    fn a_wall_clock_stepped_back_does_not_hold_the_timers() {
        let (_, mut e) = setup();
        assert_eq!(e.evaluate_at(10_000_000, 0, true).groups, 2);
        // The wall clock goes back an hour; the timer clock goes on.
        let p = e.evaluate_at(10_000_000 - 3_600_000, 1_000, true);
        assert_eq!(p.groups, 1, "the 1s group is due on the timer clock");
        assert!(p.t_ms > 10_000_000, "timestamps still move forward");
        assert_eq!(e.next_due_ms(), Some(2_000));
    }

    #[test]
    fn evaluation_times_never_repeat() {
        let (_, mut e) = setup();
        let a = e.evaluate(5_000, false).t_ms;
        let b = e.evaluate(5_000, false).t_ms;
        let c = e.evaluate(4_000, false).t_ms;
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    #[test]
    fn a_reload_keeps_the_state_of_alerts_that_still_exist() {
        let (t, mut e) = setup();
        let l = [("account", "a"), ("market", "BTC-PERP")];
        t.gauge(names::INVENTORY_LIMIT, &l).set(5.0);
        t.gauge(names::POSITION_QUANTITY, &l).set(9.0);
        e.evaluate(1_000, false);
        e.evaluate(3_000, false);
        // Same rule with another annotation, plus a new group; the `stream` group is dropped.
        let changed = RULES.replace("at {{ $value }}", "is {{ $value }}").replace(
            "  - name: stream\n    interval: 10s",
            "  - name: other\n    interval: 10s",
        );
        e.load(vec![parse_str(&changed, "rules.yml").unwrap()], 4_000);
        let (_, alert) = e.alerts().next().unwrap();
        assert_eq!(alert.state, AlertState::Firing);
        assert_eq!(alert.active_at_ms, 1_000);
        let p = e.evaluate(4_000, false);
        assert!(p.transitions.is_empty(), "{:?}", p.transitions);
        let (_, alert) = e.alerts().next().unwrap();
        assert_eq!(alert.annotations[0].1, "BTC-PERP is 9");
        let registry = t.registry();
        let groups: Vec<String> = registry
            .select(names::RULE_EVALUATIONS)
            .iter()
            .map(|s| s.labels.get("rule_group").unwrap().to_string())
            .collect();
        assert_eq!(groups, vec!["rules.yml;limits", "rules.yml;other"]);
    }

    #[test]
    fn rules_read_recorded_series_and_history_stays_bounded() {
        let (t, mut e) = setup();
        let c = t.counter(names::RECONNECTS, &[("account", "a"), ("stream", "user")]);
        // 10 evaluations a second for 30 minutes, one reconnect every 2s.
        for step in 0..18_000i64 {
            if step % 20 == 0 {
                c.increment(1);
            }
            e.evaluate(step * 100, false);
        }
        let samples = e.history_samples();
        // ~360 samples of the counter, ~306 of the recorded series, a few of the rest.
        assert!(samples < 800, "history grew to {samples} samples");
        let recorded = e
            .outputs
            .samples(&crate::rules::promql::Labels::new([
                ("__name__", "account:reconnects:increase1m"),
                ("account", "a"),
            ]))
            .unwrap();
        let (_, v) = *recorded.last().unwrap();
        assert!((v - 30.0).abs() < 1.5, "increase over 1m: {v}");
    }

    const THREE_GROUPS: &str = r#"
groups:
  - name: first
    rules:
      - record: a:pos:abs
        expr: abs(ocx_position_quantity)
      - alert: Breached
        expr: a:pos:abs > on(account, market) group_left ocx_inventory_limit
  - name: second
    rules:
      - record: a:pos:sum
        expr: sum by (account) (ocx_position_quantity)
"#;

    /// A timer pass stopped between two rules goes on from that rule at the next call, with the
    /// groups that were due when it began; the group's timer and duration are set only when its
    /// last rule ran; a change pass in between sees what changed; and the outcome is the one an
    /// uninterrupted pass gives.
    #[test]
    fn a_timer_pass_stops_for_a_change_and_goes_on_where_it_stopped() {
        let t = Telemetry::new();
        let mut e = Engine::new(&t, Duration::from_secs(1), "http://sentinel");
        e.load(vec![parse_str(THREE_GROUPS, "rules.yml").unwrap()], 0);
        let l = [("account", "a"), ("market", "BTC-PERP")];
        t.gauge(names::INVENTORY_LIMIT, &l).set(5.0);
        let q = t.gauge(names::POSITION_QUANTITY, &l);
        q.set(1.0);
        assert_eq!(e.evaluate(1_000, false).rules, 3);
        assert!(!e.tick_in_progress());

        // The next timer pass is asked to stop before every rule after its first.
        let p = e.evaluate_preemptible(2_000, 2_000, true, &|| true, None);
        assert!(p.stopped);
        assert_eq!(p.rules, 1, "it evaluates one rule before it may stop");
        assert!(e.tick_in_progress());
        assert_eq!(e.next_due_ms(), Some(2_000), "the rest is due at once");
        let first = &e.groups()[0];
        assert_eq!(first.last_eval_ms, Some(1_000), "group not finished yet");

        // A breach arrives: the change pass evaluates what reads it, the timer pass waits.
        q.set(-7.0);
        let p = e.evaluate_changes(2_100);
        assert!(!p.stopped);
        assert_eq!(
            p.rules, 3,
            "the position readers and what reads their outputs"
        );
        assert_eq!(states(&e), vec![("BTC-PERP".into(), AlertState::Firing)]);
        assert!(
            e.tick_in_progress(),
            "a change pass leaves the timer pass where it was"
        );

        // The timer pass goes on from the alert rule, one rule per call while asked to stop.
        let p = e.evaluate_preemptible(2_200, 5_000, true, &|| true, None);
        assert_eq!((p.rules, p.stopped), (1, true));
        assert_eq!(e.groups()[0].last_eval_ms, Some(2_200), "first group done");
        let p = e.evaluate_preemptible(2_300, 5_000, true, &|| true, None);
        assert_eq!((p.rules, p.stopped), (1, false));
        assert!(!e.tick_in_progress());
        assert_eq!(e.groups()[1].last_eval_ms, Some(2_300));
        // Timers restart from the timer clock the pass began at (2 s), not the later calls'.
        assert_eq!(e.next_due_ms(), Some(3_000));
        assert_eq!(states(&e), vec![("BTC-PERP".into(), AlertState::Firing)]);

        // Not asked to stop: one call evaluates every due group, as `evaluate_at` does.
        let p = e.evaluate_preemptible(3_000, 3_000, true, &|| false, None);
        assert_eq!((p.rules, p.groups, p.stopped), (3, 2, false));
        // A reload drops a half-done timer pass (its groups may be gone).
        e.evaluate_preemptible(4_000, 4_000, true, &|| true, None);
        assert!(e.tick_in_progress());
        e.load(vec![parse_str(THREE_GROUPS, "rules.yml").unwrap()], 3_000);
        assert!(!e.tick_in_progress());
    }

    /// A timer pass asked to stop gives up the rule in progress (polled every few series it
    /// reads): nothing of it is kept, a change pass in between evaluates it for what changed,
    /// and when the pass goes on that rule is evaluated to the end (given up once at most), so
    /// the pass still finishes with what an uninterrupted one gives.
    #[test]
    fn a_timer_pass_gives_up_the_rule_in_progress_once_and_keeps_nothing_of_it() {
        let t = Telemetry::new();
        let mut e = Engine::new(&t, Duration::from_secs(1), "");
        let rules = "groups:\n  - name: g\n    rules:\n      - alert: Big\n        expr: abs(ocx_position_quantity) > 5\n      - record: open:count\n        expr: count(ocx_position_quantity)\n";
        e.load(vec![parse_str(rules, "r.yml").unwrap()], 0);
        let qs: Vec<_> = (0..40)
            .map(|m| {
                let market = format!("M{m:02}-PERP");
                let q = t.gauge(
                    names::POSITION_QUANTITY,
                    &[("account", "a"), ("market", market.as_str())],
                );
                q.set(1.0);
                q
            })
            .collect();
        assert_eq!(e.evaluate(1_000, false).rules, 2);
        let count = |e: &Engine| {
            let l = crate::rules::promql::Labels::new([("__name__", "open:count")]);
            e.outputs
                .samples(&l)
                .map(|s| s.iter().map(|&(t, _)| t).collect::<Vec<_>>())
        };
        assert_eq!(count(&e), Some(vec![1_000]));

        // M00 breaches (the first series read); the timer pass is asked to stop at once.
        qs[0].set(9.0);
        let polls = std::cell::Cell::new(0);
        let stop = || {
            polls.set(polls.get() + 1);
            true
        };
        let p = e.evaluate_preemptible(2_000, 2_000, true, &stop, None);
        assert_eq!((p.rules, p.stopped), (0, true), "Big given up");
        assert!(polls.get() >= 1, "polled while Big read its series");
        assert!(
            states(&e).is_empty(),
            "nothing of the given-up rule is kept"
        );
        assert_eq!(e.status(0, 0).unwrap().last_eval_ms, Some(1_000));
        assert!(e.tick_in_progress());

        // The change pass evaluates both rules: giving Big up did not count as having read the
        // change.
        let p = e.evaluate_changes(2_100);
        assert_eq!(p.rules, 2);
        assert_eq!(states(&e), vec![("M00-PERP".into(), AlertState::Firing)]);

        // Going on, Big is not given up again (then the pass stops before the next rule); the
        // recording rule is given up once, then finished.
        let p = e.evaluate_preemptible(2_200, 5_000, true, &stop, None);
        assert_eq!((p.rules, p.stopped), (1, true));
        assert_eq!(e.status(0, 0).unwrap().last_eval_ms, Some(2_200));
        let p = e.evaluate_preemptible(2_300, 5_000, true, &stop, None);
        assert_eq!((p.rules, p.stopped), (0, true), "open:count given up");
        assert_eq!(count(&e), Some(vec![1_000, 2_100]), "nothing recorded");
        let p = e.evaluate_preemptible(2_400, 5_000, true, &stop, None);
        assert_eq!((p.rules, p.stopped), (1, false));
        assert!(!e.tick_in_progress());
        assert_eq!(count(&e), Some(vec![1_000, 2_100, 2_400]));
        assert_eq!(e.groups()[0].last_eval_ms, Some(2_400));
        assert_eq!(e.next_due_ms(), Some(3_000));
        assert_eq!(states(&e), vec![("M00-PERP".into(), AlertState::Firing)]);
    }

    const SCOPED_RULES: &str = r#"
groups:
  - name: positions
    rules:
      - record: market:position:abs
        expr: abs(ocx_position_quantity)
      - alert: Limit
        expr: market:position:abs > on(account, market) group_left ocx_inventory_limit
      - alert: LimitDirect
        expr: abs(ocx_position_quantity) > on(account, market) group_left ocx_inventory_limit
        labels: {severity: page}
      - alert: Short
        expr: ocx_position_quantity < -2 and on(account, market) ocx_inventory_limit > 0
      - alert: AccountTotal
        expr: sum by (account) (abs(ocx_position_quantity)) > 12
      - alert: ManyOpen
        expr: count(abs(ocx_position_quantity) > 3) > 1
      - record: market:alerts_firing:count
        expr: count by (account, market) (ALERTS{alertstate="firing"})
      - alert: Several
        expr: market:alerts_firing:count > 1
      - record: account:position:abs_sum
        expr: sum by (account) (abs(ocx_position_quantity))
      - alert: HeldUnlessAccountBig
        expr: market:position:abs > 2 unless on(account) account:position:abs_sum > 15
      - alert: OverOpenCount
        expr: market:position:abs > on(account) group_left ocx_positions_open
      - alert: OpenCountUnder
        expr: ocx_positions_open < on(account) group_right market:position:abs
      - alert: HeldWhileCounted
        expr: market:position:abs > 1 and on(account) ocx_positions_open > 2
"#;

    /// The live outputs of `name`: each series' latest sample, unless it is a stale marker.
    fn outputs_of(e: &Engine, name: &str, t: i64) -> Vec<(Labels, u64)> {
        let sel = crate::rules::promql::Selector {
            name: Some(name.into()),
            matchers: vec![crate::rules::promql::Matcher::equal("__name__", name)],
        };
        let mut out: Vec<(Labels, u64)> =
            crate::rules::promql::Storage::select(&e.outputs, &sel, t - 300_000, t)
                .into_iter()
                .filter_map(|s| {
                    let &(_, v) = s.samples.last()?;
                    (!crate::rules::promql::is_stale(v)).then(|| (s.labels, v.to_bits()))
                })
                .collect();
        out.sort();
        out
    }

    fn alert_view(e: &Engine) -> Vec<(String, Labels, AlertState, u64, i64)> {
        let mut v: Vec<_> = e
            .alerts()
            .filter(|(_, a)| a.state != AlertState::Inactive)
            .map(|(r, a)| {
                (
                    r.name.clone(),
                    a.labels.clone(),
                    a.state,
                    a.value.to_bits(),
                    a.active_at_ms,
                )
            })
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }

    /// Change passes that narrow rules to the markets that changed give the alerts and recorded
    /// series that evaluating every rule over every series gives, through random position
    /// changes, series appearing and leaving, on two accounts.
    #[test]
    fn scoped_change_passes_agree_with_full_evaluations() {
        let (t1, t2) = (Telemetry::new(), Telemetry::new());
        let mut scoped = Engine::new(&t1, Duration::from_secs(1), "http://sentinel");
        let mut full = Engine::new(&t2, Duration::from_secs(1), "http://sentinel");
        for e in [&mut scoped, &mut full] {
            e.load(vec![parse_str(SCOPED_RULES, "rules.yml").unwrap()], 0);
        }
        let markets = ["BTC-PERP", "ETH-PERP", "SOL-PERP", "XRP-PERP", "DOGE-PERP"];
        let accounts = ["a", "b"];
        for tel in [&t1, &t2] {
            for acc in accounts {
                for m in markets {
                    tel.gauge(names::INVENTORY_LIMIT, &[("account", acc), ("market", m)])
                        .set(5.0);
                }
            }
        }
        scoped.evaluate(1_000, false);
        full.evaluate(1_000, false);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut narrowed = 0;
        for step in 1..=400i64 {
            // Now and then an account-wide series moves, which the rules above read for every
            // market of the account.
            if rng.u8(..4) == 0 {
                let acc = accounts[rng.usize(..accounts.len())];
                let v = f64::from(rng.u8(..5));
                for tel in [&t1, &t2] {
                    tel.gauge(names::POSITIONS_OPEN, &[("account", acc)]).set(v);
                }
            }
            // One to three markets move at a time, as a delta with several position changes.
            for _ in 0..rng.usize(1..=3) {
                let l = [
                    ("account", accounts[rng.usize(..accounts.len())]),
                    ("market", markets[rng.usize(..markets.len())]),
                ];
                let remove = rng.u8(..10) == 0;
                let v = f64::from(rng.i8(-8..=8));
                for tel in [&t1, &t2] {
                    if remove {
                        tel.registry().remove(names::POSITION_QUANTITY, &l);
                    } else {
                        tel.gauge(names::POSITION_QUANTITY, &l).set(v);
                    }
                }
            }
            let at = 1_000 + step * 10;
            let p = scoped.evaluate_changes(at);
            narrowed += p.scoped;
            full.evaluate(at, false);
            assert_eq!(alert_view(&scoped), alert_view(&full), "step {step}");
            for name in ["market:position:abs", "market:alerts_firing:count"] {
                assert_eq!(
                    outputs_of(&scoped, name, at),
                    outputs_of(&full, name, at),
                    "{name} at step {step}"
                );
            }
        }
        // Most passes narrowed the per-market and per-account rules.
        assert!(narrowed > 400 * 3, "only {narrowed} narrowed evaluations");
    }

    /// Each selector's name and the labels it is narrowed by, if the expression narrows.
    fn narrowing(e: &str, part: &[&str]) -> Option<Vec<(String, Vec<String>)>> {
        let sels = crate::rules::promql::Expr::parse(e)
            .unwrap()
            .narrowing(part)?;
        Some(
            sels.into_iter()
                .map(|(n, by)| (n.unwrap_or_default(), by))
                .collect(),
        )
    }

    #[test]
    fn narrowing_of_the_shipped_shapes() {
        // Narrowed with every selector on all of `part`.
        let local = |e: &str, part: &[&str]| {
            narrowing(e, part).is_some_and(|sels| sels.iter().all(|(_, by)| by.len() == part.len()))
        };
        let am: &[&str] = &["account", "market"];
        let by = |sels: &[(&str, &[&str])]| {
            Some(
                sels.iter()
                    .map(|(n, by)| (n.to_string(), by.iter().map(|l| l.to_string()).collect()))
                    .collect::<Vec<_>>(),
            )
        };
        assert!(local(
            "abs(ocx_position_quantity) > on(account, market) group_left ocx_inventory_limit",
            am
        ));
        // The side looked up by the other's match groups is narrowed on the labels matched on.
        let account: &[&str] = &["account"];
        assert_eq!(
            narrowing(
                "time() - ocx_last_fill_timestamp_seconds > 1800 \
                 and on(account, market) ocx_position_quantity != 0 \
                 unless on(account) ocx_stream_up{stream=\"user\"} == 0",
                am
            ),
            by(&[
                ("ocx_last_fill_timestamp_seconds", am),
                ("ocx_position_quantity", am),
                ("ocx_stream_up", account),
            ])
        );
        assert_eq!(
            narrowing("x > on(account) group_left y", am),
            by(&[("x", am), ("y", account)])
        );
        assert_eq!(
            narrowing("y < on(account) group_right x", am),
            by(&[("y", account), ("x", am)])
        );
        assert_eq!(
            narrowing("x and ignoring(market) y", am),
            by(&[("x", am), ("y", account)])
        );
        // The market would come from the "one" side, every market of the account.
        assert_eq!(narrowing("x > on(account) group_left(market) y", am), None);
        // One-to-one and `or` keep right side series by their own labels.
        assert_eq!(narrowing("x + on(account) y", am), None);
        assert_eq!(narrowing("x or on(account) y", am), None);
        assert!(local("x or on(account, market) y", am));
        assert!(local("rate(ocx_fills_total[5m]) > 1", am));
        assert!(local(
            "histogram_quantile(0.99, sum by (account, market, le) (rate(x_bucket[5m])))",
            am
        ));
        assert!(local("sum by (account) (x) > 1", &["account"]));
        assert!(
            !local("sum by (account) (x) > 1", am),
            "markets summed together"
        );
        assert!(!local("sum(x) > 1", &["account"]));
        assert!(local("x > ignoring(side) y", am));
        assert!(!local("x > ignoring(market) y", am));
        assert!(!local("x > scalar(y)", am), "scalar() reads every series");
        assert!(local("x > 2 * 3 + time()", am));
        assert!(!local("absent(x)", am));
        assert!(!local("x or vector(1)", am));
        assert!(local("sum without (side) (x) > 1", am));
        assert!(!local("sum without (market) (x) > 1", am));
    }
}
