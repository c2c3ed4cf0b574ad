//! Notifications: Alertmanager-format routing, receivers, silences and inhibition for the alerts the rule engine produces.

pub mod amapi;
pub mod config;
pub mod dispatch;
pub mod email;
pub mod forward;
pub mod keeper;
pub mod listing;
pub mod matcher;
pub mod outbox;
pub mod pipeline;
pub mod silence;
pub mod webhook;
pub mod wire;
