//! ocx-sentinel: the monitoring sidecar for OCX perps market makers, as a library so `tests/` can drive it.

/// The one apply path of an account: fold, series, durable journal, epoch.
pub mod account;
pub mod app;
pub mod config;
/// The data dir: one embedded store for what must survive a restart, and its group-commit writer.
pub mod datadir;
/// Domain values (trades, fills, positions, books, stream events) shared by source, state, reconcile and telemetry.
pub mod model;
pub mod reconcile;
/// Alert and recording rules: PromQL evaluation, rule files, the alert lifecycle, promtool-format unit tests.
pub mod rules;
pub mod server;
// The simulator is the default `sim` feature: a production build leaves it out (Cargo.toml).
#[cfg(feature = "sim")]
pub mod sim;
pub mod source;
pub mod state;
/// Restarting tasks that end other than by shutdown (a panic or a return), counted and set down meanwhile.
pub mod supervise;
pub mod telemetry;
