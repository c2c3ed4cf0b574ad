//! ocx-sentinel: the monitoring sidecar for OCX perps market makers, as a library so `tests/` can drive it.

pub mod account;
pub mod app;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod model;
pub mod notify;
pub mod reconcile;
pub mod rules;
pub mod server;
// The simulator is the default `sim` feature: a production build leaves it out (Cargo.toml).
#[cfg(feature = "sim")]
pub mod sim;
pub mod source;
pub mod state;
pub mod supervise;
pub mod telemetry;
#[cfg(test)]
mod testdata;
pub mod traces;
pub mod web;
