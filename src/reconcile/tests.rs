//! The reconciler's comparisons on fixed bodies, without HTTP: what each run sets and counts.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::*;
use crate::account::AccountCell;
use crate::model::EventKind;
use crate::state::{Account, Scope};
use crate::telemetry::{Telemetry, exposition};

fn task(telemetry: &Telemetry) -> ReconcileTask {
    let shared = AccountCell::new(
        "t",
        Account::new(1000),
        telemetry.account("t", 10),
        &[],
        None,
    );
    ReconcileTask {
        account: "t".into(),
        api_base: "http://127.0.0.1:1".into(),
        auth: Auth::None,
        // Runs here follow each other at once: no minimum age for a drift to be confirmed.
        settings: ReconcileSettings {
            settle: std::time::Duration::ZERO,
            ..ReconcileSettings::default()
        },
        client: reqwest::Client::new(),
        shared,
        metrics: telemetry.reconcile("t", 10),
        resync: Arc::new(Notify::new()),
        user_ready: Arc::new(AtomicBool::new(true)),
        quoted_markets: Vec::new(),
    }
}

/// Apply a user-stream snapshot with these positions (JSON objects) to the task's account.
fn stream_snapshot(task: &ReconcileTask, positions: &str) {
    let env = wire::parse_envelope(&format!(
        r#"{{"eventType":"PerpStreamSnapshot","eventSeq":1,"engineTs":"2026-04-24T12:00:00Z","payload":{{"positions":[{positions}],"trades":[]}}}}"#
    ))
    .unwrap();
    task.shared
        .apply_event(EventKind::Snapshot, Scope::User, &env.payload, None, 0);
}

fn value(t: &Telemetry, series: &str) -> Option<f64> {
    exposition::parse(&t.render())
        .get(&exposition::normalize(series))
        .copied()
}

fn rest_btc(quantity: &str) -> String {
    format!(
        r#"[{{"id":"p1","marketId":"BTC-PERP","side":"long","quantity":"{quantity}","entryPrice":"100"}}]"#
    )
}

const DRIFT: &str = r#"ocx_reconcile_position_drift{account="t",market="BTC-PERP"}"#;
const OBSERVED: &str = r#"ocx_reconcile_position_drift_observed{account="t",market="BTC-PERP"}"#;
const MISMATCHES: &str = r#"ocx_reconcile_mismatches_total{account="t",kind="position"}"#;

// Regression: `ocx_reconcile_position_drift` showed every run's instant difference, so a fill
// in flight between the two reads flickered it (0.001, -0.03) in a healthy demo though no
// mismatch was confirmed. The gauge now shows confirmed drift (the same amount in two runs in a
// row, what the mismatch counter counts); the instant reading has its own series.
#[test]
fn the_drift_gauge_shows_only_confirmed_drift_and_the_instant_reading_has_its_own_series() {
    let telemetry = Telemetry::new();
    let mut task = task(&telemetry);
    stream_snapshot(
        &task,
        r#"{"id":"p1","marketId":"BTC-PERP","side":"long","quantity":"1","entryPrice":"100"}"#,
    );
    let mut tracker = DriftTracker::default();
    let mut run = |rest: &str| {
        let result = task.positions(&rest_btc(rest), &mut tracker);
        (
            result,
            value(&telemetry, DRIFT),
            value(&telemetry, OBSERVED),
            value(&telemetry, MISMATCHES),
        )
    };
    // A fill in flight: REST already has it, the stream not yet. Seen once, then gone.
    assert_eq!(
        run("1.5"),
        (RunResult::Drift, Some(0.0), Some(0.5), Some(0.0))
    );
    assert_eq!(run("1"), (RunResult::Ok, Some(0.0), Some(0.0), Some(0.0)));
    // A real drift: the same amount in two runs in a row is confirmed, shown, counted once.
    assert_eq!(
        run("3"),
        (RunResult::Drift, Some(0.0), Some(2.0), Some(0.0))
    );
    assert_eq!(
        run("3"),
        (RunResult::Drift, Some(2.0), Some(2.0), Some(1.0))
    );
    assert_eq!(
        run("3"),
        (RunResult::Drift, Some(2.0), Some(2.0), Some(1.0))
    );
    // One run that agrees does not clear a confirmed drift; the second does.
    assert_eq!(run("1"), (RunResult::Ok, Some(2.0), Some(0.0), Some(1.0)));
    assert_eq!(run("1"), (RunResult::Ok, Some(0.0), Some(0.0), Some(1.0)));
}
