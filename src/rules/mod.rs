//! Alert and recording rules: PromQL evaluation, rule files, the alert lifecycle, promtool-format unit tests.

pub mod alert;
pub mod api;
pub mod engine;
pub mod file;
pub(crate) mod gofmt;
pub mod group;
pub mod live;
pub mod persist;
pub mod promql;
pub mod runner;
pub mod template;
pub mod unittest;
