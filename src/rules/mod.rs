//! Alert and recording rules: PromQL evaluation, rule files, the alert lifecycle, promtool-format unit tests.

pub mod promql;
mod gofmt;
pub mod template;
pub mod file;
pub mod alert;
pub mod group;
pub mod unittest;
