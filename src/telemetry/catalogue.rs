//! Every metric the sidecar exports: name, type (with a histogram's buckets) and HELP text (with its unit), defined once.

/// How a metric is exposed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A monotonically increasing total: an integer count, or an exact decimal amount set from a
    /// running total (the store's counters are f64, so both are native).
    Counter,
    Gauge,
    /// Observations counted into these upper bounds (strictly increasing, finite; `+Inf` is
    /// implicit).
    Histogram(&'static [f64]),
}

impl Kind {
    /// The name in `# TYPE` lines and in README's table.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram(_) => "histogram",
        }
    }
}

/// Event lag: 1ms to 10s, roughly ×2.5 per step.
pub const LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// REST requests and reconciliation runs: 5ms to 10s.
pub const REST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Data-dir commits (an fsync each): 0.5ms to 2.5s.
pub const COMMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// One rule group's evaluation: 10µs (a few rules over a few series) to 1s.
pub const EVAL_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
    1.0,
];
/// Heartbeat interval: 1s to 60s around the documented ~15s cadence.
pub const HEARTBEAT_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0];

#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static str,
    pub help: &'static str,
}

pub mod names {
    pub const STREAM_UP: &str = "ocx_stream_up";
    pub const CONNECTS: &str = "ocx_stream_connects_total";
    pub const RECONNECTS: &str = "ocx_stream_reconnects_total";
    pub const EVENTS: &str = "ocx_stream_events_total";
    pub const RECEIVED_BYTES: &str = "ocx_stream_received_bytes_total";
    pub const HEARTBEATS: &str = "ocx_stream_heartbeats_total";
    pub const HEARTBEAT_INTERVAL: &str = "ocx_stream_heartbeat_interval_seconds";
    pub const LAST_HEARTBEAT: &str = "ocx_stream_last_heartbeat_timestamp_seconds";
    pub const LAST_EVENT: &str = "ocx_stream_last_event_timestamp_seconds";
    pub const LAST_FILL: &str = "ocx_last_fill_timestamp_seconds";
    pub const FILL_TIME_CLAMPED: &str = "ocx_fill_time_clamped_total";
    pub const INVENTORY_LIMIT: &str = "ocx_inventory_limit";
    pub const NOTIONAL_LIMIT: &str = "ocx_notional_limit";
    pub const DATA_DIR_PERSISTENT: &str = "ocx_sentinel_data_dir_persistent";
    pub const DATA_DIR_COMMITS: &str = "ocx_sentinel_data_dir_commits_total";
    pub const DATA_DIR_COMMIT_ERRORS: &str = "ocx_sentinel_data_dir_commit_errors_total";
    pub const DATA_DIR_COMMIT_DURATION: &str = "ocx_sentinel_data_dir_commit_duration_seconds";
    pub const DATA_DIR_MOVED_ASIDE: &str = "ocx_sentinel_data_dir_moved_aside_total";
    pub const DATA_DIR_UNREADABLE: &str = "ocx_sentinel_data_dir_unreadable_rows_total";
    pub const LAST_SEQUENCE: &str = "ocx_stream_last_sequence";
    pub const SEQUENCE_GAPS: &str = "ocx_stream_sequence_gaps_total";
    pub const MISSED_EVENTS: &str = "ocx_stream_missed_events_total";
    pub const DUPLICATE_EVENTS: &str = "ocx_stream_duplicate_events_total";
    pub const EVENT_LAG: &str = "ocx_stream_event_lag_seconds";
    pub const CLOCK_SKEW_EVENTS: &str = "ocx_stream_clock_skew_events_total";
    pub const STREAM_ERRORS: &str = "ocx_stream_errors_total";
    pub const DECODE_ERRORS: &str = "ocx_stream_decode_errors_total";
    pub const RETRY_CAPPED: &str = "ocx_stream_retry_capped_total";
    pub const FILLS: &str = "ocx_fills_total";
    pub const FILL_QUANTITY: &str = "ocx_fill_quantity_total";
    pub const FILL_NOTIONAL: &str = "ocx_fill_notional_total";
    pub const FILLS_DEDUPLICATED: &str = "ocx_fills_deduplicated_total";
    pub const POSITION_QUANTITY: &str = "ocx_position_quantity";
    pub const POSITION_ENTRY_PRICE: &str = "ocx_position_entry_price";
    pub const POSITION_REALIZED_PNL: &str = "ocx_position_realized_pnl";
    pub const POSITION_UNREALIZED_PNL: &str = "ocx_position_unrealized_pnl";
    pub const POSITION_NOTIONAL: &str = "ocx_position_notional";
    pub const POSITIONS_OPEN: &str = "ocx_positions_open";
    pub const REALIZED_PROFIT: &str = "ocx_realized_profit_total";
    pub const REALIZED_LOSS: &str = "ocx_realized_loss_total";
    pub const BOOK_BEST_BID: &str = "ocx_book_best_bid_price";
    pub const BOOK_BEST_ASK: &str = "ocx_book_best_ask_price";
    pub const BOOK_LEVELS: &str = "ocx_book_levels";
    pub const RECONCILE_RUNS: &str = "ocx_reconcile_runs_total";
    pub const RECONCILE_DURATION: &str = "ocx_reconcile_duration_seconds";
    pub const RECONCILE_LAST_SUCCESS: &str = "ocx_reconcile_last_success_timestamp_seconds";
    pub const RECONCILE_POSITION_DRIFT: &str = "ocx_reconcile_position_drift";
    pub const RECONCILE_POSITION_DRIFT_OBSERVED: &str = "ocx_reconcile_position_drift_observed";
    pub const RECONCILE_MISMATCHES: &str = "ocx_reconcile_mismatches_total";
    pub const RECONCILE_UNREADABLE: &str = "ocx_reconcile_unreadable_items_total";
    pub const FILLS_RECOVERED: &str = "ocx_fills_recovered_total";
    pub const RECONCILE_RECOVERY_REFUSED: &str = "ocx_reconcile_recovery_refused_total";
    pub const OPEN_ORDERS: &str = "ocx_open_orders";
    pub const ACCOUNT_EQUITY: &str = "ocx_account_equity";
    pub const ACCOUNT_AVAILABLE: &str = "ocx_account_available_balance";
    pub const ACCOUNT_INITIAL_MARGIN: &str = "ocx_account_initial_margin";
    pub const ACCOUNT_MAINTENANCE_MARGIN: &str = "ocx_account_maintenance_margin";
    pub const ACCOUNT_MARGIN_USAGE: &str = "ocx_account_margin_usage_ratio";
    pub const REST_REQUESTS: &str = "ocx_rest_requests_total";
    pub const REST_DURATION: &str = "ocx_rest_request_duration_seconds";
    pub const BUILD_INFO: &str = "ocx_sentinel_build_info";
    pub const LABEL_VALUES_FOLDED: &str = "ocx_sentinel_label_values_folded_total";
    pub const TASK_RESTARTS: &str = "ocx_sentinel_task_restarts_total";
    pub const ALERTS: &str = "ocx_sentinel_alerts";
    pub const RULE_EVALUATIONS: &str = "ocx_sentinel_rule_evaluations_total";
    pub const RULE_EVALUATION_FAILURES: &str = "ocx_sentinel_rule_evaluation_failures_total";
    pub const RULE_EVALUATION_DURATION: &str = "ocx_sentinel_rule_evaluation_duration_seconds";
    pub const RULE_GROUP_LAST_EVALUATION: &str =
        "ocx_sentinel_rule_group_last_evaluation_timestamp_seconds";
    pub const RULE_GROUP_RULES: &str = "ocx_sentinel_rule_group_rules";
    pub const RULE_HISTORY_SAMPLES: &str = "ocx_sentinel_rule_history_samples";
    pub const NOTIFICATIONS: &str = "ocx_sentinel_notifications_total";
    pub const NOTIFICATIONS_FAILED: &str = "ocx_sentinel_notifications_failed_total";
    pub const NOTIFICATION_REQUESTS: &str = "ocx_sentinel_notification_requests_total";
    pub const NOTIFICATION_LATENCY: &str = "ocx_sentinel_notification_latency_seconds";
    pub const NOTIFICATION_LOG_WRITES: &str = "ocx_sentinel_notification_log_writes_total";
    pub const OUTBOX_PENDING: &str = "ocx_sentinel_outbox_pending";
    pub const OUTBOX_OLDEST: &str = "ocx_sentinel_outbox_oldest_timestamp_seconds";
    pub const SILENCES: &str = "ocx_sentinel_silences";
    pub const ALERTS_INHIBITED: &str = "ocx_sentinel_alerts_inhibited";
    pub const ALERTMANAGER_SENT: &str = "ocx_sentinel_alertmanager_notifications_total";
    pub const ALERTMANAGER_ERRORS: &str = "ocx_sentinel_alertmanager_notifications_errors_total";
    pub const ALERTMANAGER_DROPPED: &str = "ocx_sentinel_alertmanager_notifications_dropped_total";
    pub const ALERTMANAGER_LATENCY: &str =
        "ocx_sentinel_alertmanager_notifications_latency_seconds";
    pub const ALERTMANAGER_QUEUE: &str = "ocx_sentinel_alertmanager_notifications_queue_length";
    pub const NOTIFICATION_TEMPLATE_ERRORS: &str =
        "ocx_sentinel_notification_template_errors_total";
    pub const CONFIG_RELOAD_SUCCESSFUL: &str = "ocx_sentinel_config_last_reload_successful";
    pub const CONFIG_RELOAD_SUCCESS_TIMESTAMP: &str =
        "ocx_sentinel_config_last_reload_success_timestamp_seconds";
    pub const HTTP_CONNECTIONS: &str = "ocx_sentinel_http_connections";
    pub const HTTP_CONNECTIONS_CLOSED: &str = "ocx_sentinel_http_connections_closed_total";
    pub const HTTP_REQUESTS_REFUSED: &str = "ocx_sentinel_http_requests_refused_total";
    pub const WEB_CONFIG_RELOAD_SUCCESSFUL: &str = "ocx_sentinel_web_config_last_reload_successful";
    pub const TRACE_SPANS_EXPORTED: &str = "ocx_trace_spans_exported_total";
    pub const TRACE_SPANS_DROPPED: &str = "ocx_trace_spans_dropped_total";
    pub const TRACE_EXPORT_DURATION: &str = "ocx_trace_export_duration_seconds";
}

use Kind::*;
use names::*;

const S: &str = "account, stream";

/// The catalogue. README.md lists the same table (a test keeps the two in step).
pub const CATALOGUE: &[MetricDef] = &[
    MetricDef {
        name: STREAM_UP,
        kind: Gauge,
        labels: S,
        help: "1 while the stream is connected and has applied a snapshot, else 0",
    },
    MetricDef {
        name: CONNECTS,
        kind: Counter,
        labels: S,
        help: "Stream connections established (HTTP 200 received)",
    },
    MetricDef {
        name: RECONNECTS,
        kind: Counter,
        labels: "account, stream, reason",
        help: "Stream connections ended and retried, by reason (gap, heartbeat_timeout, eof, error_event, http_status, io, decode, response_timeout)",
    },
    MetricDef {
        name: EVENTS,
        kind: Counter,
        labels: "account, stream, type",
        help: "SSE events received, by type (snapshot, delta, error, unknown)",
    },
    MetricDef {
        name: RECEIVED_BYTES,
        kind: Counter,
        labels: S,
        help: "Bytes received on the stream body, in bytes",
    },
    MetricDef {
        name: HEARTBEATS,
        kind: Counter,
        labels: S,
        help: "':heartbeat' comments received",
    },
    MetricDef {
        name: HEARTBEAT_INTERVAL,
        kind: Histogram(HEARTBEAT_BUCKETS),
        labels: S,
        help: "Interval between consecutive heartbeats on one connection, in seconds",
    },
    MetricDef {
        name: LAST_HEARTBEAT,
        kind: Gauge,
        labels: S,
        help: "Time of the last heartbeat, in unix seconds",
    },
    MetricDef {
        name: LAST_EVENT,
        kind: Gauge,
        labels: S,
        help: "Time the last snapshot or delta was applied, in unix seconds",
    },
    MetricDef {
        name: LAST_FILL,
        kind: Gauge,
        labels: "account, market",
        help: "Time of the newest fill (the trade's createdAt, else receipt time), in unix seconds",
    },
    MetricDef {
        name: INVENTORY_LIMIT,
        kind: Gauge,
        labels: "account, market",
        help: "Configured limit of the absolute position size (limits.inventory; the market's own, else default), for alert rules",
    },
    MetricDef {
        name: NOTIONAL_LIMIT,
        kind: Gauge,
        labels: "account, market",
        help: "Configured limit of the absolute position notional (limits.notional; the market's own, else default), for alert rules",
    },
    MetricDef {
        name: FILL_TIME_CLAMPED,
        kind: Counter,
        labels: "account",
        help: "Fills dated after their receipt, whose time was clamped to the receipt time for ocx_last_fill_timestamp_seconds",
    },
    MetricDef {
        name: LAST_SEQUENCE,
        kind: Gauge,
        labels: S,
        help: "eventSeq of the last applied event",
    },
    MetricDef {
        name: SEQUENCE_GAPS,
        kind: Counter,
        labels: S,
        help: "eventSeq jumps detected (each triggers a reconnect and re-sync)",
    },
    MetricDef {
        name: MISSED_EVENTS,
        kind: Counter,
        labels: S,
        help: "Events skipped over by sequence jumps, in events",
    },
    MetricDef {
        name: DUPLICATE_EVENTS,
        kind: Counter,
        labels: S,
        help: "Deltas skipped because their eventSeq was at or below the last applied one, or no snapshot had been applied yet",
    },
    MetricDef {
        name: EVENT_LAG,
        kind: Histogram(LAG_BUCKETS),
        labels: S,
        help: "Receipt time minus the event's engineTs, in seconds (negative skew recorded as 0)",
    },
    MetricDef {
        name: CLOCK_SKEW_EVENTS,
        kind: Counter,
        labels: S,
        help: "Events whose engineTs was later than their receipt time (clock skew)",
    },
    MetricDef {
        name: STREAM_ERRORS,
        kind: Counter,
        labels: "account, stream, code, retryable",
        help: "'error' events received, by code (first 32 distinct codes, then 'other') and retryable",
    },
    MetricDef {
        name: DECODE_ERRORS,
        kind: Counter,
        labels: "account, stream, kind",
        help: "Stream data that could not be read and was skipped, by kind (sse, json, schema)",
    },
    MetricDef {
        name: RETRY_CAPPED,
        kind: Counter,
        labels: S,
        help: "Reconnects whose server-sent SSE retry: exceeded stream.backoff_max and was capped to it",
    },
    MetricDef {
        name: FILLS,
        kind: Counter,
        labels: "account, market, side, liquidity",
        help: "Fills counted once each by trade id",
    },
    MetricDef {
        name: FILL_QUANTITY,
        kind: Counter,
        labels: "account, market, side, liquidity",
        help: "Filled quantity, in contracts of the market's base asset",
    },
    MetricDef {
        name: FILL_NOTIONAL,
        kind: Counter,
        labels: "account, market, side, liquidity",
        help: "Filled notional (price times quantity), in quote currency",
    },
    MetricDef {
        name: FILLS_DEDUPLICATED,
        kind: Counter,
        labels: "account, reason",
        help: "Trades received again and not counted, by reason (snapshot_replay, duplicate)",
    },
    MetricDef {
        name: POSITION_QUANTITY,
        kind: Gauge,
        labels: "account, market",
        help: "Signed position size (long positive, short negative), in contracts; 0 once removed",
    },
    MetricDef {
        name: POSITION_ENTRY_PRICE,
        kind: Gauge,
        labels: "account, market",
        help: "Position entry price, in quote currency; 0 once removed",
    },
    MetricDef {
        name: POSITION_REALIZED_PNL,
        kind: Gauge,
        labels: "account, market",
        help: "Realized PnL of the open position as the exchange reports it, in quote currency",
    },
    MetricDef {
        name: POSITION_UNREALIZED_PNL,
        kind: Gauge,
        labels: "account, market",
        help: "Unrealized PnL at the book mid, in quote currency (only where the market's book is streamed)",
    },
    MetricDef {
        name: POSITION_NOTIONAL,
        kind: Gauge,
        labels: "account, market",
        help: "Absolute position size times the book mid, in quote currency (only where the market's book is streamed)",
    },
    MetricDef {
        name: POSITIONS_OPEN,
        kind: Gauge,
        labels: "account",
        help: "Open positions (non-zero quantity)",
    },
    MetricDef {
        name: REALIZED_PROFIT,
        kind: Counter,
        labels: "account, market",
        help: "Sum of increases of positions' realizedPnl while watched, in quote currency",
    },
    MetricDef {
        name: REALIZED_LOSS,
        kind: Counter,
        labels: "account, market",
        help: "Sum of decreases of positions' realizedPnl while watched, in quote currency",
    },
    MetricDef {
        name: BOOK_BEST_BID,
        kind: Gauge,
        labels: "account, market",
        help: "Best bid price of the streamed book, in quote currency (0 when the side is empty)",
    },
    MetricDef {
        name: BOOK_BEST_ASK,
        kind: Gauge,
        labels: "account, market",
        help: "Best ask price of the streamed book, in quote currency (0 when the side is empty)",
    },
    MetricDef {
        name: BOOK_LEVELS,
        kind: Gauge,
        labels: "account, market, side",
        help: "Price levels in the streamed book, by side (bid, ask)",
    },
    MetricDef {
        name: RECONCILE_RUNS,
        kind: Counter,
        labels: "account, endpoint, result",
        help: "Reconciliation runs against the pull endpoints, by endpoint and result (ok, drift, error)",
    },
    MetricDef {
        name: RECONCILE_DURATION,
        kind: Histogram(REST_BUCKETS),
        labels: "account, endpoint",
        help: "Duration of one endpoint's reconciliation (request, parse, compare), in seconds",
    },
    MetricDef {
        name: RECONCILE_LAST_SUCCESS,
        kind: Gauge,
        labels: "account, endpoint",
        help: "Time of the endpoint's last successful reconciliation, in unix seconds",
    },
    MetricDef {
        name: RECONCILE_POSITION_DRIFT,
        kind: Gauge,
        labels: "account, market",
        help: "Confirmed position drift: quantity on /perps/positions minus the stream's, in contracts, as two consecutive runs found it (0 when consistent)",
    },
    MetricDef {
        name: RECONCILE_POSITION_DRIFT_OBSERVED,
        kind: Gauge,
        labels: "account, market",
        help: "Position quantity on /perps/positions minus the stream's in the latest run, in contracts, fills in flight included (0 when consistent)",
    },
    MetricDef {
        name: RECONCILE_MISMATCHES,
        kind: Counter,
        labels: "account, kind",
        help: "Disagreements found between REST and the stream, by kind (position, fill_missing, fill_extra)",
    },
    MetricDef {
        name: RECONCILE_UNREADABLE,
        kind: Counter,
        labels: "account, endpoint",
        help: "Items or bodies from the pull endpoints that could not be read and were skipped",
    },
    MetricDef {
        name: FILLS_RECOVERED,
        kind: Counter,
        labels: "account, market",
        help: "Fills listed by /perps/trades that the stream never delivered, counted into the fill metrics once",
    },
    MetricDef {
        name: RECONCILE_RECOVERY_REFUSED,
        kind: Counter,
        labels: "account, reason",
        help: "Trade runs that recovered nothing because REST and the stream seem to key trades differently, by reason (missing_and_extra, too_many_missing)",
    },
    MetricDef {
        name: OPEN_ORDERS,
        kind: Gauge,
        labels: "account, market, side",
        help: "Resting orders on /perps/orders/open, by market and side (buy, sell)",
    },
    MetricDef {
        name: ACCOUNT_EQUITY,
        kind: Gauge,
        labels: "account",
        help: "Account equity from /perps/balances (or /portfolio/me), in quote currency",
    },
    MetricDef {
        name: ACCOUNT_AVAILABLE,
        kind: Gauge,
        labels: "account",
        help: "Balance available for new margin, in quote currency",
    },
    MetricDef {
        name: ACCOUNT_INITIAL_MARGIN,
        kind: Gauge,
        labels: "account",
        help: "Initial margin in use, in quote currency",
    },
    MetricDef {
        name: ACCOUNT_MAINTENANCE_MARGIN,
        kind: Gauge,
        labels: "account",
        help: "Maintenance margin (the liquidation threshold), in quote currency",
    },
    MetricDef {
        name: ACCOUNT_MARGIN_USAGE,
        kind: Gauge,
        labels: "account",
        help: "Initial margin divided by equity, as a ratio (0 to 1; above 1 is over-used)",
    },
    MetricDef {
        name: REST_REQUESTS,
        kind: Counter,
        labels: "account, endpoint, code",
        help: "Requests to the pull endpoints, by endpoint and status class (2xx, 4xx, 5xx, or error for no answer)",
    },
    MetricDef {
        name: REST_DURATION,
        kind: Histogram(REST_BUCKETS),
        labels: "account, endpoint",
        help: "Pull endpoint request duration until the body is read, in seconds",
    },
    MetricDef {
        name: BUILD_INFO,
        kind: Gauge,
        labels: "version",
        help: "Always 1; the version label says which build runs",
    },
    MetricDef {
        name: DATA_DIR_PERSISTENT,
        kind: Gauge,
        labels: "",
        help: "1 while fills, counters and their dedup memory are persisted in the data dir, 0 when the sidecar runs from memory only",
    },
    MetricDef {
        name: DATA_DIR_COMMITS,
        kind: Counter,
        labels: "",
        help: "Transactions committed to the data dir (each holds every change queued since the previous one)",
    },
    MetricDef {
        name: DATA_DIR_COMMIT_ERRORS,
        kind: Counter,
        labels: "",
        help: "Data-dir commits that failed (disk full, IO error); the changes are kept in memory and retried",
    },
    MetricDef {
        name: DATA_DIR_COMMIT_DURATION,
        kind: Histogram(COMMIT_BUCKETS),
        labels: "",
        help: "Time to commit one group of changes to the data dir, fsync included, in seconds",
    },
    MetricDef {
        name: DATA_DIR_MOVED_ASIDE,
        kind: Counter,
        labels: "",
        help: "Unreadable data-dir stores moved aside at startup (a fresh store was created in their place)",
    },
    MetricDef {
        name: DATA_DIR_UNREADABLE,
        kind: Counter,
        labels: "",
        help: "Rows of the data dir that could not be read at startup and were skipped",
    },
    MetricDef {
        name: LABEL_VALUES_FOLDED,
        kind: Counter,
        labels: "label",
        help: "Label values replaced by 'other' because the label reached its cap (market: max_markets; code: 32)",
    },
    MetricDef {
        name: TASK_RESTARTS,
        kind: Counter,
        labels: "task",
        help: "Sidecar tasks restarted after ending other than by shutdown (a panic or a return), by task (stream, reconcile, server, health, rules, notifier, forward)",
    },
    MetricDef {
        name: ALERTS,
        kind: Gauge,
        labels: "alertname, alertstate",
        help: "Alerts by rule name and state (pending, firing), as the rule engine holds them",
    },
    MetricDef {
        name: RULE_EVALUATIONS,
        kind: Counter,
        labels: "rule_group",
        help: "Rule evaluations (one per rule evaluated: every rule of a group on its timer, and each rule a pass after a change runs), by group (file;name)",
    },
    MetricDef {
        name: RULE_EVALUATION_FAILURES,
        kind: Counter,
        labels: "rule_group",
        help: "Rule evaluations that failed (query error, duplicate labelset, limit), by group (file;name)",
    },
    MetricDef {
        name: RULE_EVALUATION_DURATION,
        kind: Histogram(EVAL_BUCKETS),
        labels: "rule_group",
        help: "Time to evaluate every rule of a group once (its timer evaluations), in seconds",
    },
    MetricDef {
        name: RULE_GROUP_LAST_EVALUATION,
        kind: Gauge,
        labels: "rule_group",
        help: "Unix time of the group's latest whole evaluation (on its timer), in seconds",
    },
    MetricDef {
        name: RULE_GROUP_RULES,
        kind: Gauge,
        labels: "rule_group",
        help: "Rules in the group as loaded",
    },
    MetricDef {
        name: RULE_HISTORY_SAMPLES,
        kind: Gauge,
        labels: "",
        help: "Samples the rule engine keeps for range functions and lookback (own series and rule outputs), as its rules can read them",
    },
    MetricDef {
        name: NOTIFICATIONS,
        kind: Counter,
        labels: "integration",
        help: "Notifications delivered (the webhook answered 2xx, the SMTP server accepted the mail), by integration (webhook, email, alertmanager)",
    },
    MetricDef {
        name: NOTIFICATIONS_FAILED,
        kind: Counter,
        labels: "integration, reason",
        help: "Notification attempts that failed, by integration and reason (network, timeout, rate_limited, server_error, client_error; email also transient, rejected, tls, protocol, template, config)",
    },
    MetricDef {
        name: NOTIFICATION_REQUESTS,
        kind: Counter,
        labels: "integration",
        help: "Notification attempts (requests sent, retries included), by integration",
    },
    MetricDef {
        name: NOTIFICATION_LATENCY,
        kind: Histogram(REST_BUCKETS),
        labels: "integration",
        help: "Time from the alert change that triggered a notification (the evaluation right after the event) to the receiver's acknowledgement, retries and restarts included; repeats are not measured; in seconds",
    },
    MetricDef {
        name: NOTIFICATION_LOG_WRITES,
        kind: Counter,
        labels: "",
        help: "Notification log entries committed to the data dir: a delivery counted here is not sent again after a restart (a kill between the acknowledgement and this commit sends it again)",
    },
    MetricDef {
        name: OUTBOX_PENDING,
        kind: Gauge,
        labels: "integration",
        help: "Notifications written to the outbox and not yet acknowledged by their receiver (sent again after a restart)",
    },
    MetricDef {
        name: OUTBOX_OLDEST,
        kind: Gauge,
        labels: "",
        help: "Creation time of the oldest notification in the outbox, in unix seconds; 0 when the outbox is empty",
    },
    MetricDef {
        name: SILENCES,
        kind: Gauge,
        labels: "state",
        help: "Silences by state (active, pending, expired), as Alertmanager's alertmanager_silences",
    },
    MetricDef {
        name: ALERTS_INHIBITED,
        kind: Gauge,
        labels: "",
        help: "Firing alerts muted by an inhibit rule, as of the latest evaluation that changed the alerts",
    },
    MetricDef {
        name: ALERTMANAGER_SENT,
        kind: Counter,
        labels: "alertmanager",
        help: "Alerts posted to an Alertmanager and accepted (2xx), counted per alert, by alertmanager (its push URL)",
    },
    MetricDef {
        name: ALERTMANAGER_ERRORS,
        kind: Counter,
        labels: "alertmanager",
        help: "Alerts in posts to an Alertmanager that failed (network error, timeout or non-2xx answer), counted per alert",
    },
    MetricDef {
        name: ALERTMANAGER_DROPPED,
        kind: Counter,
        labels: "alertmanager",
        help: "Alerts dropped for an Alertmanager because their post failed or its queue was full (oldest first); the next resend carries firing ones again",
    },
    MetricDef {
        name: ALERTMANAGER_LATENCY,
        kind: Histogram(REST_BUCKETS),
        labels: "alertmanager",
        help: "Time to post one batch of alerts to an Alertmanager and read its answer, accepted posts only, in seconds",
    },
    MetricDef {
        name: ALERTMANAGER_QUEUE,
        kind: Gauge,
        labels: "alertmanager",
        help: "Alerts waiting to be posted to an Alertmanager",
    },
    MetricDef {
        name: NOTIFICATION_TEMPLATE_ERRORS,
        kind: Counter,
        labels: "integration",
        help: "Notification templates that failed to render (the notification is sent with the error in its text), by integration",
    },
    MetricDef {
        name: CONFIG_RELOAD_SUCCESSFUL,
        kind: Gauge,
        labels: "",
        help: "1 if the latest load of the rule files succeeded, 0 if it failed (the previous rules keep running)",
    },
    MetricDef {
        name: CONFIG_RELOAD_SUCCESS_TIMESTAMP,
        kind: Gauge,
        labels: "",
        help: "Unix time of the latest successful load of the rule files, in seconds",
    },
    MetricDef {
        name: HTTP_CONNECTIONS,
        kind: Gauge,
        labels: "listener",
        help: "Connections open, by listener (main; health when health_listen is set), each at most listener.max_connections; more wait in the kernel's backlog",
    },
    MetricDef {
        name: HTTP_CONNECTIONS_CLOSED,
        kind: Counter,
        labels: "listener, reason",
        help: "Connections a listener closed itself, by listener (main, health) and reason (header_timeout, idle_timeout, tls_handshake_timeout, tls_handshake_failed)",
    },
    MetricDef {
        name: HTTP_REQUESTS_REFUSED,
        kind: Counter,
        labels: "reason",
        help: "Requests refused before reaching an endpoint, by reason (unauthorized: no or wrong basic auth credentials, 401; rate_limited: over the web config's rate_limit, 429)",
    },
    MetricDef {
        name: WEB_CONFIG_RELOAD_SUCCESSFUL,
        kind: Gauge,
        labels: "",
        help: "1 if the web config file loaded when it last changed, 0 if the change failed to load (the last good configuration stays in force); absent without a web config file",
    },
    MetricDef {
        name: TRACE_SPANS_EXPORTED,
        kind: Counter,
        labels: "",
        help: "Sampled spans the OTLP collector accepted (only with tracing on)",
    },
    MetricDef {
        name: TRACE_SPANS_DROPPED,
        kind: Counter,
        labels: "reason",
        help: "Sampled spans lost, by reason: queue_full (the export queue was full: the collector is slow or down), export_failed (the collector refused the batch or did not answer within tracing.otlp.timeout) or shutdown (still queued when the last export's 2s ran out)",
    },
    MetricDef {
        name: TRACE_EXPORT_DURATION,
        kind: Histogram(REST_BUCKETS),
        labels: "",
        help: "Time to export one batch of spans to the OTLP collector, failed exports included, in seconds",
    },
];
