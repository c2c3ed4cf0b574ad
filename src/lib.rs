//! ocx-sentinel: the monitoring sidecar for OCX perps market makers, as a library so `tests/` can drive it.

pub mod app;
pub mod config;
pub mod reconcile;
pub mod server;
pub mod sim;
pub mod source;
pub mod state;
pub mod telemetry;
