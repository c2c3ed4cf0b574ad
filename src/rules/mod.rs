//! Alert and recording rules: PromQL evaluation, rule files, the alert lifecycle, promtool-format unit tests.

pub mod promql;
/// Go's number, string and duration formatting, as Prometheus's output shows it.
mod gofmt;
/// Alert label and annotation templates (Go text/template subset, Prometheus's functions).
pub mod template;
/// Rule files: parse with positions, validate as `promtool check rules`, build.
pub mod file;
/// The alert lifecycle of one alerting rule: pending, firing, resolved, `ALERTS` series.
pub mod alert;
/// Evaluating a rule group at `t` over a storage plus the history of rule outputs.
pub mod group;
/// promtool's rule unit-test format (`promtool test rules`), and its runner.
pub mod unittest;
