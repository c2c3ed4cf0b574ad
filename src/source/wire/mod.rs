//! The OCX stream wire format: one SSE `data` string (or REST list body) in, typed [`crate::model`] values out.
//!
//! Parse, then validate, then build: the JSON is read into lenient raw structs (`raw`; every
//! leaf is a `lenient::Scalar` that accepts any JSON type, strings borrowed from the input when
//! unescaped), then `build` validates each item into its typed value. An item that cannot be
//! read is skipped and counted in [`Envelope::skipped_items`] instead of failing the whole event;
//! only a missing `eventSeq`, a non-object envelope or payload, or invalid JSON fail it. No
//! `serde_json::Value` tree is built.
//!
//! Two readers fill the raw structs. serde (derives on `raw`) reads everything: REST bodies,
//! error events, and any envelope the other one declines. `fast` reads stream envelopes, every
//! event of the stream, in one pass without serde's generic machinery; it declines whatever it
//! is not sure of, so both always give the same result (a property test holds them to it).
//!
//! # Leniency rules
//!
//! What the exchange's documents and observed traffic disagree on, read every way it is written:
//!
//! - **Decimals** (prices, quantities, sizes, PnL) as strings (plain or scientific, surrounding
//!   whitespace ignored) or JSON numbers. A JSON number has already gone through `f64` inside
//!   serde_json; its shortest round-trip form is used, so `68200.5` stays `68200.5`, but digits
//!   beyond f64 precision are lost: the exchange sends strings for that reason.
//! - **Timestamps** (`engineTs`, `sourceTs`, `createdAt`) as ISO-8601 / RFC 3339 (see
//!   [`parse_timestamp_ms`]) or unix milliseconds, as a JSON number or a numeric string. An
//!   unreadable timestamp is absent, never an error.
//! - **`eventSeq`** as a non-negative integer or an all-digit string; it is the one required
//!   field.
//! - **`eventType`** `PerpStreamSnapshot`/`snapshot` or `PerpStreamDelta`/`delta`/`update`, any
//!   case; anything else leaves the kind to the SSE event name.
//! - **Ids** (`eventId`, trade and position ids, `removedIds`, `marketId` of a book) as non-empty
//!   strings or integers (written in decimal).
//! - **Trades**: id `id`, else `tradeId`, else none (dedup then keys on content); `side`
//!   `buy`/`sell` in any case, required; `liquidity` `maker`/`taker` in any case, and anything
//!   else or nothing reads as [`Liquidity::Unknown`](crate::model::Liquidity::Unknown) (the fill
//!   still counts); `marketId` (a non-empty string), `price` and `quantity` required.
//! - **Positions** as `{upserts, removedIds}` or a bare array of upserts; id `id`, else
//!   `positionId`, else the `marketId`; `entryPrice`, else `avgPrice`; `status` `closed` in any
//!   case marks it closed (and a closed position may omit `quantity`: it reads as zero); `side`
//!   `long|buy` or `short|sell` in any case signs a positive quantity, a negative quantity is
//!   already signed, no side takes the quantity as signed, and an unknown side is only readable
//!   for a zero quantity.
//! - **Books** under `orderbook`, else its alias `book` (`orderbook` wins when both are there);
//!   levels as `{price, size, ...}` objects or `[price, size, ...]` arrays; a zero size is kept
//!   (it removes the level), a negative one is unreadable.
//! - **Error events** as `{code, message, retryable}` bare or wrapped in an envelope's `payload`;
//!   the code is `code`, else `error`; `retryable` a boolean or `"true"`/`"false"`, default false.
//! - **Lists** that are `null` read as empty; any other non-array is one unreadable item.
//!   Unknown fields are ignored everywhere.
//!
//! REST list bodies (`GET /perps/trades`, `GET /perps/positions`; shapes unpublished) go through
//! the same raw structs and builders (`rest`), so a REST item reads exactly as the same stream
//! item would.

mod build;
mod fast;
mod lenient;
mod raw;
mod rest;
mod time;

#[cfg(test)]
mod proptests;

use crate::model::{Envelope, Payload, Position, StreamError, Trade};
use build::{build_payload, build_positions, build_trades, parse_kind};
use lenient::{Obj, Scalar};
use raw::{RawEnvelope, RawErrorBody, RawErrorEvent, RawPosition, RawTrade};
use rest::parse_rest_list;

pub use time::parse_timestamp_ms;

/// Why a `data` string could not be decoded at all.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("invalid json: {0}")]
    Json(String),
    #[error("schema: {0}")]
    Schema(String),
}

/// Decodes one snapshot/delta `data` string.
///
/// Fails only on invalid JSON, a non-object envelope or payload, or a missing/invalid `eventSeq`;
/// unreadable items are skipped and counted in `skipped_items`.
pub fn parse_envelope(data: &str) -> Result<Envelope, WireError> {
    // The fast reader takes the common case; it declines whatever it is not sure of, and serde
    // reads that (see `fast`). Both feed the same builders (`build`).
    match fast::envelope(data) {
        Some((head, payload)) => envelope_from_parts(&head, payload),
        None => read_envelope_with_serde(data),
    }
}

/// [`parse_envelope`] with serde alone: the reference the fast reader must agree with.
fn read_envelope_with_serde(data: &str) -> Result<Envelope, WireError> {
    match serde_json::from_str::<Obj<RawEnvelope<'_>>>(data) {
        Ok(Obj::Ok(raw)) => envelope_from_raw(raw),
        Ok(_) => Err(WireError::Schema("envelope is not a json object".into())),
        Err(e) => Err(WireError::Json(e.to_string())),
    }
}

/// An envelope's fields other than its payload, as read.
#[derive(Default)]
struct Head<'a> {
    event_id: Scalar<'a>,
    event_type: Scalar<'a>,
    event_seq: Scalar<'a>,
    engine_ts: Scalar<'a>,
    source_ts: Scalar<'a>,
}

fn envelope_from_raw(raw: RawEnvelope<'_>) -> Result<Envelope, WireError> {
    let head = Head {
        event_id: raw.event_id,
        event_type: raw.event_type,
        event_seq: raw.event_seq,
        engine_ts: raw.engine_ts,
        source_ts: raw.source_ts,
    };
    let payload = match raw.payload {
        Obj::Ok(p) => Obj::Ok(build_payload(p)),
        Obj::Absent => Obj::Absent,
        Obj::Null => Obj::Null,
        Obj::NotObject => Obj::NotObject,
    };
    envelope_from_parts(&head, payload)
}

/// The envelope from its head and its built payload (with the count of unreadable items).
fn envelope_from_parts(
    head: &Head<'_>,
    payload: Obj<(Payload, u32)>,
) -> Result<Envelope, WireError> {
    let seq = match &head.event_seq {
        Scalar::Null => return Err(WireError::Schema("missing eventSeq".into())),
        s => s
            .as_u64()
            .ok_or_else(|| WireError::Schema("eventSeq is not a non-negative integer".into()))?,
    };
    let kind = head.event_type.as_str().and_then(parse_kind);
    let (payload, skipped) = match payload {
        Obj::Ok(p) => p,
        Obj::Absent | Obj::Null => (Payload::default(), 0),
        Obj::NotObject => return Err(WireError::Schema("payload is not a json object".into())),
    };
    Ok(Envelope {
        kind,
        event_id: head.event_id.to_id(),
        seq,
        engine_ts_ms: head.engine_ts.as_timestamp_ms(),
        source_ts_ms: head.source_ts.as_timestamp_ms(),
        payload,
        skipped_items: skipped,
    })
}

/// Decodes an `error` event's `data`: `{code, message, retryable}` bare or wrapped in an
/// envelope's `payload`. The code is `code`, else `error` (the older REST error shape names the
/// stable code `error`); `message` defaults to empty and `retryable` to false. No code at all is
/// a schema error.
pub fn parse_error_event(data: &str) -> Result<StreamError, WireError> {
    let raw = match serde_json::from_str::<Obj<RawErrorEvent<'_>>>(data) {
        Ok(Obj::Ok(raw)) => raw,
        Ok(_) => return Err(WireError::Schema("error event is not a json object".into())),
        Err(e) => return Err(WireError::Json(e.to_string())),
    };
    let body = match raw.payload {
        Obj::Ok(inner) if inner.has_code() => inner,
        _ => RawErrorBody {
            code: raw.code,
            error: raw.error,
            message: raw.message,
            retryable: raw.retryable,
        },
    };
    let code = body
        .code
        .to_id()
        .or_else(|| body.error.to_id())
        .ok_or_else(|| WireError::Schema("error event without code".into()))?;
    Ok(StreamError {
        code,
        message: body.message.as_str().unwrap_or_default().to_owned(),
        retryable: body.retryable.as_bool().unwrap_or(false),
    })
}

/// Decodes a `GET /perps/trades` body: a JSON array of trades, `null` (no trades), or an
/// object wrapping the array under `trades`, `fills`, `data`, `items` or `results` (the first of
/// those, in that order, that holds an array or `null`; one level only).
///
/// Items that cannot be read are skipped and counted in the returned `u32`. Any other body is
/// [`WireError::Schema`]: an object without such a list must not read as "no trades". Invalid
/// JSON is [`WireError::Json`].
pub fn parse_trade_list(json: &str) -> Result<(Vec<Trade>, u32), WireError> {
    const KEYS: &[&str] = &["trades", "fills", "data", "items", "results"];
    let list = parse_rest_list::<RawTrade<'_>>(json, KEYS, "trades")?;
    let mut skipped = 0;
    let trades = build_trades(list, &mut skipped);
    Ok((trades, skipped))
}

/// Decodes a `GET /perps/positions` body, like [`parse_trade_list`] with the wrapper keys
/// `positions`, `data`, `items`, `results` (so a `/portfolio/me` body reads too). Positions
/// follow the stream's rules: id from `id`, else `positionId`, else the `marketId`; `entryPrice`,
/// else `avgPrice`; `side` `long|short|buy|sell`.
pub fn parse_position_list(json: &str) -> Result<(Vec<Position>, u32), WireError> {
    const KEYS: &[&str] = &["positions", "data", "items", "results"];
    let list = parse_rest_list::<RawPosition<'_>>(json, KEYS, "positions")?;
    let mut skipped = 0;
    let positions = build_positions(list, &mut skipped);
    Ok((positions, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventKind;
    use rust_decimal::Decimal;

    pub(super) fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    pub(super) fn env(payload: &str) -> Envelope {
        parse_envelope(&format!(r#"{{"eventSeq":1,"payload":{payload}}}"#)).unwrap()
    }

    pub(super) const T0: i64 = 1_777_032_000_000; // 2026-04-24T12:00:00Z

    // ---- envelope ----

    #[test]
    fn canonical_envelope() {
        let e = parse_envelope(
            r#"{"eventId":"evt-10432","eventType":"PerpStreamSnapshot","eventSeq":10432,
                "engineTs":"2026-04-24T12:00:00.000Z","sourceTs":"2026-04-24T12:00:00.123Z",
                "correlationId":"c","causationId":null,"payload":{}}"#,
        )
        .unwrap();
        assert_eq!(e.kind, Some(EventKind::Snapshot));
        assert_eq!(e.event_id.as_deref(), Some("evt-10432"));
        assert_eq!(e.seq, 10432);
        assert_eq!(e.engine_ts_ms, Some(T0));
        assert_eq!(e.source_ts_ms, Some(T0 + 123));
        assert_eq!(e.payload, Payload::default());
        assert_eq!(e.skipped_items, 0);
    }

    #[test]
    fn event_type_kinds() {
        let kind = |t: &str| {
            parse_envelope(&format!(r#"{{"eventSeq":1,"eventType":{t}}}"#))
                .unwrap()
                .kind
        };
        assert_eq!(kind(r#""PerpStreamDelta""#), Some(EventKind::Delta));
        assert_eq!(kind(r#""PerpStreamSnapshot""#), Some(EventKind::Snapshot));
        assert_eq!(kind(r#""SomethingElse""#), None);
        assert_eq!(kind("7"), None);
        assert_eq!(parse_envelope(r#"{"eventSeq":1}"#).unwrap().kind, None);
    }

    #[test]
    fn event_seq_as_number_or_numeric_string() {
        assert_eq!(parse_envelope(r#"{"eventSeq":"42"}"#).unwrap().seq, 42);
        assert_eq!(parse_envelope(r#"{"eventSeq":42}"#).unwrap().seq, 42);
    }

    #[test]
    fn missing_or_bad_event_seq_is_a_schema_error() {
        assert_eq!(
            parse_envelope(r#"{"eventType":"PerpStreamDelta","payload":{}}"#),
            Err(WireError::Schema("missing eventSeq".into()))
        );
        assert_eq!(
            parse_envelope(r#"{"eventSeq":null}"#),
            Err(WireError::Schema("missing eventSeq".into()))
        );
        for bad in [r#""-1""#, "-1", r#""12a""#, "1.5", "{}", r#""""#] {
            assert_eq!(
                parse_envelope(&format!(r#"{{"eventSeq":{bad}}}"#)),
                Err(WireError::Schema(
                    "eventSeq is not a non-negative integer".into()
                )),
                "{bad}"
            );
        }
    }

    #[test]
    fn non_object_envelope_or_payload_is_a_schema_error() {
        for bad in ["[1,2]", "42", r#""x""#, "null"] {
            assert_eq!(
                parse_envelope(bad),
                Err(WireError::Schema("envelope is not a json object".into()))
            );
        }
        assert_eq!(
            parse_envelope(r#"{"eventSeq":1,"payload":[1]}"#),
            Err(WireError::Schema("payload is not a json object".into()))
        );
        // A null payload is an empty one.
        assert_eq!(env("null").payload, Payload::default());
    }

    #[test]
    fn invalid_json_is_a_json_error() {
        assert!(matches!(
            parse_envelope(r#"{"eventSeq":1"#),
            Err(WireError::Json(_))
        ));
        assert!(matches!(parse_envelope(""), Err(WireError::Json(_))));
        assert!(matches!(
            parse_envelope(r#"{"eventSeq":1} x"#),
            Err(WireError::Json(_))
        ));
    }

    #[test]
    fn timestamps_as_ms_number_or_string_and_null() {
        let e =
            parse_envelope(r#"{"eventSeq":1,"engineTs":1714000000000,"sourceTs":null}"#).unwrap();
        assert_eq!(
            (e.engine_ts_ms, e.source_ts_ms),
            (Some(1_714_000_000_000), None)
        );
        let e = parse_envelope(r#"{"eventSeq":1,"engineTs":"1714000000000","sourceTs":"junk"}"#)
            .unwrap();
        assert_eq!(
            (e.engine_ts_ms, e.source_ts_ms),
            (Some(1_714_000_000_000), None)
        );
    }

    #[test]
    fn unknown_fields_and_nested_junk_are_ignored() {
        let e = env(
            r#"{"extra":{"deep":[1,{"x":null}]},"trades":[{"id":"t","marketId":"M","side":"buy",
                "liquidity":"maker","price":"1","quantity":"1","fee":{"amount":"0.1"},"tags":["a"]}]}"#,
        );
        assert_eq!(e.payload.trades.len(), 1);
        assert_eq!(e.skipped_items, 0);
    }

    // ---- error events ----

    #[test]
    fn error_event_bare() {
        assert_eq!(
            parse_error_event(
                r#"{"code":"UPSTREAM_UNAVAILABLE","message":"engine down","retryable":true}"#
            ),
            Ok(StreamError {
                code: "UPSTREAM_UNAVAILABLE".into(),
                message: "engine down".into(),
                retryable: true,
            })
        );
    }

    #[test]
    fn error_event_wrapped_in_an_envelope() {
        assert_eq!(
            parse_error_event(
                r#"{"eventId":"e","eventSeq":5,"payload":{"code":"X","message":"m","retryable":false}}"#
            ),
            Ok(StreamError {
                code: "X".into(),
                message: "m".into(),
                retryable: false,
            })
        );
    }

    #[test]
    fn error_code_falls_back_to_error_and_retryable_defaults_false() {
        assert_eq!(
            parse_error_event(r#"{"error":"UNAUTHORIZED","message":"no"}"#),
            Ok(StreamError {
                code: "UNAUTHORIZED".into(),
                message: "no".into(),
                retryable: false,
            })
        );
        // `code` wins over `error` (the family, in the older error shape).
        let e = parse_error_event(r#"{"error":"MarginError","code":"INSUFFICIENT_MARGIN"}"#);
        assert_eq!(e.unwrap().code, "INSUFFICIENT_MARGIN");
        let e = parse_error_event(r#"{"payload":{"error":"E"},"retryable":true}"#).unwrap();
        assert_eq!(
            (e.code.as_str(), e.message.as_str(), e.retryable),
            ("E", "", false)
        );
    }

    #[test]
    fn error_event_schema_errors() {
        assert_eq!(
            parse_error_event(r#"{"message":"m"}"#),
            Err(WireError::Schema("error event without code".into()))
        );
        assert_eq!(
            parse_error_event("[]"),
            Err(WireError::Schema("error event is not a json object".into()))
        );
        assert!(matches!(parse_error_event("{"), Err(WireError::Json(_))));
    }
}
