//! The one place an account's state changes: fold the event, publish its series, journal what
//! must survive a restart, and bump the epoch that watchers (the rule engine) await.
//!
//! Rules:
//! - **One apply path.** Stream events ([`AccountCell::apply_event`]) and fills recovered from
//!   REST ([`AccountCell::apply_recovered`]) both go through here, under the account's one lock,
//!   so an account's streams and its reconciler never interleave inside a fold.
//! - **Durable before visible.** Gauges (positions, book, valuation) are set at once. Counters
//!   (fills, amounts, realized profit/loss, deduplicated trades) are set to their new totals only
//!   once the data dir has committed the change: a counter `/metrics` shows is one a restart
//!   continues from, never one it takes back (which Prometheus would read as a reset and count
//!   again). Without a data dir, counters are set at once.
//! - **One journal per burst.** With a data dir, the cell keeps accumulating the journal and
//!   tells the writer once that there is one; the writer takes it (and the counter totals as of
//!   then) when it is ready for another commit (`crate::datadir::Pending`). So a burst of
//!   events costs one message and one commit, and a slow disk only makes the bursts longer: the
//!   stream never waits for it.
//! - **The epoch** goes up after every applied change (and again, by the number of changes,
//!   when their counters become visible), so a watcher wakes once per change or burst of changes
//!   and never polls.
//! - The lock is held for microseconds: nothing inside it awaits or does IO (the writer takes
//!   the journal under it, and commits outside it).

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::watch;

use crate::datadir::{Job, Pending, WriterHandle};
use crate::model::{EventKind, Fill, Payload, Trade};
use crate::state::durable::TakenJournal;
use crate::state::{Account, Applied, Scope};
use crate::telemetry::{AccountMetrics, Counter, TraceIds};

/// Shared handle to one account.
pub type SharedAccount = Arc<AccountCell>;

struct Inner {
    state: Account,
    metrics: AccountMetrics,
    /// Changes applied since the writer last took the journal that wait for its commit.
    waiting: u64,
    /// The writer was told there is a journal to take, and has not taken it yet.
    queued: bool,
    /// What the last event changed, kept for its vectors' capacity.
    applied: Applied,
}

/// One account: its folded state and series, behind one lock. See the module docs.
pub struct AccountCell {
    name: Arc<str>,
    inner: Mutex<Inner>,
    epoch: Arc<watch::Sender<u64>>,
    writer: Option<WriterHandle>,
    /// This cell, for telling the writer where to take the journal from.
    me: Weak<AccountCell>,
}

impl AccountCell {
    /// The account's name (the `account` label).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for AccountCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountCell")
            .field("name", &self.name)
            .finish()
    }
}

/// What applying an event did, for the caller's own bookkeeping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Fills newly counted.
    pub fills: usize,
}

fn publish(updates: Vec<(Counter, f64)>) {
    for (c, v) in updates {
        c.absolute(v);
    }
}

/// Adds `n` to the epoch, waking watchers only when there are any: waking none still took each
/// of the channel's notifier locks, on every event. A watcher subscribing later reads the
/// value as it is then.
fn bump(epoch: &watch::Sender<u64>, n: u64) {
    let watched = epoch.receiver_count() > 0;
    epoch.send_if_modified(|e| {
        *e = e.wrapping_add(n);
        watched
    });
}

impl AccountCell {
    /// An account cell. `markets` is the first-seen order of a restored account's markets
    /// (empty for a new one); with a `writer`, the state must be journaling
    /// ([`Account::start_journal`] or [`Account::restore`]) and counters wait for commits.
    pub fn new(
        name: &str,
        mut state: Account,
        mut metrics: AccountMetrics,
        markets: &[String],
        writer: Option<WriterHandle>,
    ) -> SharedAccount {
        if writer.is_some() {
            state.start_journal();
        } else {
            // A restored state journals; without a writer nobody would take it.
            state.stop_journal();
        }
        // Restored totals are already durable: show them at once.
        publish(metrics.restore(&state, markets));
        let (epoch, _) = watch::channel(0u64);
        Arc::new_cyclic(|me| AccountCell {
            name: name.into(),
            inner: Mutex::new(Inner {
                state,
                metrics,
                waiting: 0,
                queued: false,
                applied: Applied::default(),
            }),
            epoch: Arc::new(epoch),
            writer,
            me: me.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic mid-update elsewhere (its task is restarted by the
        // supervisor); the state is still the best there is, so keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one stream event. `engine_ts_ms` is the envelope's `engineTs` (a user-stream
    /// snapshot's marks where the account starts watching); `now_unix_ms` the receipt time.
    pub fn apply_event(
        &self,
        kind: EventKind,
        scope: Scope<'_>,
        payload: &Payload,
        engine_ts_ms: Option<i64>,
        now_unix_ms: i64,
    ) -> Outcome {
        self.apply_event_traced(kind, scope, payload, engine_ts_ms, now_unix_ms, None)
    }

    /// [`AccountCell::apply_event`] for a sampled event (`traced`: its span's ids, and where to
    /// copy each new fill with its index in `payload.trades`, for the fills' spans): its trace
    /// also becomes the exemplar of the fills' `ocx_fills_total` series.
    pub fn apply_event_traced(
        &self,
        kind: EventKind,
        scope: Scope<'_>,
        payload: &Payload,
        engine_ts_ms: Option<i64>,
        now_unix_ms: i64,
        traced: Option<(TraceIds, &mut Vec<(usize, Fill)>)>,
    ) -> Outcome {
        let mut inner = self.lock();
        let mut applied = std::mem::take(&mut inner.applied);
        inner
            .state
            .apply_event_into(kind, scope, payload, &mut applied);
        if let Some((ids, out)) = traced {
            out.extend(
                applied
                    .fill_trades
                    .iter()
                    .zip(&applied.fills)
                    .map(|(i, f)| (*i as usize, f.clone())),
            );
            inner.metrics.fill_exemplars(applied.fills.iter(), ids);
        }
        if kind == EventKind::Snapshot && scope == Scope::User {
            // Where the sidecar starts watching: REST trades older than this predate it. The
            // snapshot's own trades set it when they carry times (in the fold).
            inner
                .state
                .note_watch_start(engine_ts_ms.unwrap_or(now_unix_ms));
        }
        let outcome = self.finish(&mut inner, &applied, now_unix_ms);
        inner.applied = applied;
        outcome
    }

    /// Counts trades read from REST that the stream never delivered, through the same dedup
    /// memory as stream fills (see [`Account::apply_recovered`]). Returns the markets of the
    /// fills counted, in order.
    pub fn apply_recovered(&self, trades: &[Trade], now_unix_ms: i64) -> Vec<Arc<str>> {
        let mut inner = self.lock();
        let applied = inner.state.apply_recovered(trades);
        self.finish(&mut inner, &applied, now_unix_ms);
        applied
            .fills
            .iter()
            .map(|f| Arc::from(f.market.as_str()))
            .collect()
    }

    fn finish(&self, inner: &mut Inner, applied: &Applied, now_unix_ms: i64) -> Outcome {
        let Inner { state, metrics, .. } = inner;
        metrics.observe_live(applied, state, now_unix_ms as f64 / 1000.0);
        metrics.note_counters(applied);
        match &self.writer {
            None => metrics.publish_counters(state),
            // Nothing durable changed: no counter either (every counter is a durable total).
            Some(_) if !state.take_touched() => {}
            Some(writer) => {
                inner.waiting += 1;
                let told = if inner.queued {
                    // The writer will take this change with the earlier ones, unless it stopped.
                    !writer.is_closed()
                } else {
                    self.me
                        .upgrade()
                        .is_some_and(|me| writer.notify(me as Arc<dyn Pending>))
                };
                if told {
                    inner.queued = true;
                } else {
                    // The writer has stopped: nothing will be committed, and the values are
                    // live in memory, so show them.
                    inner.queued = false;
                    let _ = inner.state.take_journal_rows();
                    let shown = self.release(inner);
                    shown();
                }
            }
        }
        bump(&self.epoch, 1);
        Outcome {
            fills: applied.fills.len(),
        }
    }

    /// The counter totals of the changes waiting for a commit, as of now, and the epoch bumps
    /// they owe: what runs once the journal taken with them is committed.
    fn release(&self, inner: &mut Inner) -> impl FnOnce() + Send + 'static {
        let updates = inner.metrics.take_changed(&inner.state);
        let changes = std::mem::take(&mut inner.waiting);
        let epoch = Arc::clone(&self.epoch);
        move || {
            for (c, v) in updates {
                c.absolute(v.value());
            }
            bump(&epoch, changes);
        }
    }

    /// Reads the state under the lock (comparisons with REST listings). Keep `f` short.
    pub fn read<R>(&self, f: impl FnOnce(&Account) -> R) -> R {
        f(&self.lock().state)
    }

    /// Stream-delivered fills a REST trade listing omits; see
    /// [`Account::unlisted_stream_trades`].
    pub fn unlisted_stream_trades(&self, rest: &[Trade]) -> Vec<String> {
        self.lock().state.unlisted_stream_trades(rest)
    }

    /// A receiver whose value goes up after every applied change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        *self.epoch.borrow()
    }
}

/// The writer takes the journal accumulated since its last take, with the counter totals as of
/// now: they become visible once that journal is committed.
impl Pending for AccountCell {
    fn take(&self) -> Option<Job> {
        // Under the lock, copies only: the stream waits for this lock. The journal's maps are
        // built after it is released.
        let mut inner = self.lock();
        inner.queued = false;
        let rows = inner.state.take_journal_rows();
        let shown = self.release(&mut inner);
        drop(inner);
        let journal = rows.map(TakenJournal::into_journal).unwrap_or_default();
        if journal.is_empty() {
            // Nothing to commit (cannot happen while every counter is a durable total): show.
            shown();
            return None;
        }
        Some(Job {
            account: Arc::clone(&self.name),
            journal,
            // Committed, or the disk failed (reported and retried by the writer): either way
            // the values are live in memory and must be shown.
            then: Box::new(move |_committed| shown()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::datadir::{DataDir, start_writer};
    use crate::model::{Liquidity, Side};
    use crate::telemetry::{Telemetry, exposition};

    fn trade(id: &str) -> Trade {
        Trade {
            id: Some(id.into()),
            market: "BTC-PERP".into(),
            side: Side::Sell,
            liquidity: Liquidity::Taker,
            price: "100".parse().unwrap(),
            quantity: "0.5".parse().unwrap(),
            created_at_ms: Some(1_000),
        }
    }

    fn snapshot(ids: &[&str]) -> Payload {
        Payload {
            trades: ids.iter().map(|i| trade(i)).collect(),
            ..Payload::default()
        }
    }

    const FILLS: &str =
        r#"ocx_fills_total{account="a",market="BTC-PERP",side="sell",liquidity="taker"}"#;

    fn value(t: &Telemetry, series: &str) -> Option<f64> {
        exposition::parse(&t.render())
            .get(&exposition::normalize(series))
            .copied()
    }

    fn tmp() -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "ocx-account-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ))
    }

    #[test]
    fn without_a_data_dir_counters_are_set_at_once_and_the_epoch_moves() {
        let t = Telemetry::new();
        let cell = AccountCell::new("a", Account::new(100), t.account("a", 10), &[], None);
        let epoch = cell.subscribe();
        let out = cell.apply_event(
            EventKind::Snapshot,
            Scope::User,
            &snapshot(&["1", "2"]),
            None,
            5,
        );
        assert_eq!(out.fills, 2);
        assert_eq!(value(&t, FILLS), Some(2.0));
        assert!(epoch.has_changed().unwrap());
        assert_eq!(cell.epoch(), 1);
        let recovered = cell.apply_recovered(&[trade("2"), trade("3")], 6);
        assert_eq!(
            recovered.len(),
            1,
            "only the trade the stream never delivered"
        );
        assert_eq!(value(&t, FILLS), Some(3.0));
    }

    #[test]
    fn with_a_data_dir_what_was_shown_is_what_a_restart_starts_from() {
        let dir = tmp();
        {
            let t = Telemetry::new();
            let (dd, _) = DataDir::open(&dir).unwrap();
            let writer = start_writer(dd, Arc::new(|_| {})).unwrap();
            let cell = AccountCell::new(
                "a",
                Account::new(100),
                t.account("a", 10),
                &[],
                Some(writer.clone()),
            );
            cell.apply_event(
                EventKind::Snapshot,
                Scope::User,
                &snapshot(&["1", "2"]),
                None,
                5,
            );
            cell.apply_event(EventKind::Delta, Scope::User, &snapshot(&["3"]), None, 6);
            // Stopping the writer commits what is queued and runs the continuations.
            writer.stop(Duration::from_secs(10));
            assert_eq!(value(&t, FILLS), Some(3.0));
            assert_eq!(cell.epoch(), 4, "one bump per event and one per commit");
        }
        let (dd, _) = DataDir::open(&dir).unwrap();
        let (image, unreadable) = dd.load_account("a").unwrap();
        assert_eq!(unreadable, 0);
        let markets = image.markets.clone();
        let (state, skipped) = Account::restore(100, image);
        assert_eq!(skipped, 0);
        let t = Telemetry::new();
        let cell = AccountCell::new("a", state, t.account("a", 10), &markets, None);
        // Before any event: the counters continue.
        assert_eq!(value(&t, FILLS), Some(3.0));
        let out = cell.apply_event(
            EventKind::Snapshot,
            Scope::User,
            &snapshot(&["2", "3", "4"]),
            None,
            7,
        );
        assert_eq!(out.fills, 1);
        assert_eq!(value(&t, FILLS), Some(4.0));
        assert_eq!(
            value(
                &t,
                r#"ocx_fills_deduplicated_total{account="a",reason="snapshot_replay"}"#
            ),
            Some(2.0)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
