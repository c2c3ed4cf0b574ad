//! The OCX stream wire format: one SSE `data` string in, typed envelope, payload and error values out.
//!
//! Parse, then validate, then build: serde reads the JSON into lenient raw structs (every field is
//! a `Scalar` that accepts any JSON type, strings borrowed from the input when unescaped), then
//! each item is validated into its typed value. An item that cannot be read is skipped and counted
//! in [`Envelope::skipped_items`] instead of failing the whole event; only a missing `eventSeq`, a
//! non-object envelope or payload, or invalid JSON fail it. No `serde_json::Value` tree is built.
//!
//! Leniencies (see WIRE.md): decimals as strings or JSON numbers (a JSON number has already gone
//! through `f64` inside serde_json; its shortest round-trip form is used, so `68200.5` stays
//! `68200.5`, but digits beyond f64 precision are lost: the exchange sends strings for that
//! reason); timestamps as ISO-8601 or unix ms (number or numeric string); `eventSeq` as a number
//! or numeric string; `book` as an alias of `orderbook`; book levels as objects or
//! `[price, size]` arrays; positions as `{upserts, removedIds}` or a bare array of upserts; trade
//! id `id` else `tradeId`; position id `id` else `positionId` else `marketId`; `entryPrice` else
//! `avgPrice`; sides in any case. Unknown fields are ignored.
//!
//! REST list bodies (`GET /perps/trades`, `GET /perps/positions`; shapes unpublished) go through
//! the same raw structs and builders, so a REST item reads exactly as the same stream item would.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::model::{
    BookUpdate, Envelope, EventKind, Liquidity, Payload, Position, PositionsUpdate, Side,
    StreamError, Trade,
};

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
    let raw = match serde_json::from_str::<Obj<RawEnvelope<'_>>>(data) {
        Ok(Obj::Ok(raw)) => raw,
        Ok(_) => return Err(WireError::Schema("envelope is not a json object".into())),
        Err(e) => return Err(WireError::Json(e.to_string())),
    };
    let seq = match &raw.event_seq {
        Scalar::Null => return Err(WireError::Schema("missing eventSeq".into())),
        s => s
            .as_u64()
            .ok_or_else(|| WireError::Schema("eventSeq is not a non-negative integer".into()))?,
    };
    let kind = raw.event_type.as_str().and_then(parse_kind);
    let mut skipped = 0u32;
    let payload = match raw.payload {
        Obj::Ok(p) => build_payload(p, &mut skipped),
        Obj::Absent | Obj::Null => Payload::default(),
        Obj::NotObject => return Err(WireError::Schema("payload is not a json object".into())),
    };
    Ok(Envelope {
        kind,
        event_id: raw.event_id.to_id(),
        seq,
        engine_ts_ms: raw.engine_ts.as_timestamp_ms(),
        source_ts_ms: raw.source_ts.as_timestamp_ms(),
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

/// Parses a timestamp to unix milliseconds.
///
/// Accepts all-digit unix milliseconds, or ISO-8601 / RFC 3339
/// `YYYY-MM-DD[(T|t| )HH:MM[:SS[.fraction]]][Z|z|±HH:MM|±HHMM]`. A missing offset is taken as
/// UTC, a missing time as midnight; fraction digits beyond milliseconds are truncated; second 60
/// (a leap second) is accepted. Invalid calendar dates (`2026-02-30`) are rejected.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.is_empty() {
        return None;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return s.parse().ok();
    }
    let mut c = Cursor { b, i: 0 };
    let year = c.digits(4)? as i64;
    c.eat(b'-')?;
    let month = c.digits(2)?;
    c.eat(b'-')?;
    let day = c.digits(2)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let (mut hour, mut minute, mut second, mut millis) = (0, 0, 0, 0);
    let mut offset_min: i64 = 0;
    if let Some(&sep) = c.peek() {
        if !matches!(sep, b'T' | b't' | b' ') {
            return None;
        }
        c.i += 1;
        hour = c.digits(2)?;
        c.eat(b':')?;
        minute = c.digits(2)?;
        if c.peek() == Some(&b':') {
            c.i += 1;
            second = c.digits(2)?;
            if matches!(c.peek(), Some(b'.' | b',')) {
                c.i += 1;
                let start = c.i;
                while c.peek().is_some_and(u8::is_ascii_digit) {
                    c.i += 1;
                }
                let frac = &b[start..c.i];
                if frac.is_empty() {
                    return None;
                }
                for k in 0..3 {
                    millis = millis * 10 + frac.get(k).map_or(0, |d| u32::from(d - b'0'));
                }
            }
        }
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        match c.peek() {
            None => {}
            Some(b'Z' | b'z') => c.i += 1,
            Some(&sign @ (b'+' | b'-')) => {
                c.i += 1;
                let oh = c.digits(2)?;
                if c.peek() == Some(&b':') {
                    c.i += 1;
                }
                let om = c.digits(2)?;
                if oh > 23 || om > 59 {
                    return None;
                }
                offset_min = i64::from(oh * 60 + om);
                if sign == b'-' {
                    offset_min = -offset_min;
                }
            }
            Some(_) => return None,
        }
    }
    if c.i != b.len() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_min * 60;
    Some(secs * 1000 + i64::from(millis))
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<&u8> {
        self.b.get(self.i)
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(&byte)).then(|| self.i += 1)
    }

    fn digits(&mut self, n: usize) -> Option<u32> {
        let run = self.b.get(self.i..self.i + n)?;
        let mut v = 0u32;
        for &d in run {
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(d - b'0');
        }
        self.i += n;
        Some(v)
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A trade side in any case; `None` for anything else (the trade is then unreadable).
fn parse_side(s: &str) -> Option<Side> {
    if s.eq_ignore_ascii_case("buy") {
        Some(Side::Buy)
    } else if s.eq_ignore_ascii_case("sell") {
        Some(Side::Sell)
    } else {
        None
    }
}

/// `maker`/`taker` in any case; any other spelling is [`Liquidity::Unknown`].
fn parse_liquidity(s: &str) -> Liquidity {
    if s.eq_ignore_ascii_case("maker") {
        Liquidity::Maker
    } else if s.eq_ignore_ascii_case("taker") {
        Liquidity::Taker
    } else {
        Liquidity::Unknown
    }
}

fn parse_kind(s: &str) -> Option<EventKind> {
    if s.eq_ignore_ascii_case("PerpStreamSnapshot") || s.eq_ignore_ascii_case("snapshot") {
        Some(EventKind::Snapshot)
    } else if s.eq_ignore_ascii_case("PerpStreamDelta")
        || s.eq_ignore_ascii_case("delta")
        || s.eq_ignore_ascii_case("update")
    {
        Some(EventKind::Delta)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Build: raw structs to typed values.

fn build_payload(raw: RawPayload<'_>, skipped: &mut u32) -> Payload {
    let trades = build_trades(raw.trades, skipped);

    let positions = match raw.positions {
        RawPositions::Absent => None,
        RawPositions::Malformed => {
            *skipped += 1;
            None
        }
        RawPositions::Array(list) => Some(PositionsUpdate {
            upserts: build_positions(list, skipped),
            removed_ids: Vec::new(),
        }),
        RawPositions::Object(obj) => {
            let mut removed_ids = Vec::with_capacity(obj.removed_ids.items.len());
            for id in &obj.removed_ids.items {
                match id.to_id() {
                    Some(id) => removed_ids.push(id),
                    None => *skipped += 1,
                }
            }
            *skipped += u32::from(obj.removed_ids.malformed);
            Some(PositionsUpdate {
                upserts: build_positions(obj.upserts, skipped),
                removed_ids,
            })
        }
    };

    // `orderbook` wins over its alias `book` when both are present.
    let book = match (raw.orderbook, raw.book) {
        (Obj::Ok(b), _) | (_, Obj::Ok(b)) => Some(build_book(b, skipped)),
        (Obj::NotObject, _) | (_, Obj::NotObject) => {
            *skipped += 1;
            None
        }
        _ => None,
    };
    Payload {
        trades,
        positions,
        book,
    }
}

fn build_trades(list: List<Obj<RawTrade<'_>>>, skipped: &mut u32) -> Vec<Trade> {
    let mut out = Vec::with_capacity(list.items.len());
    for item in list.items {
        match item {
            Obj::Ok(t) => match build_trade(&t) {
                Some(trade) => out.push(trade),
                None => *skipped += 1,
            },
            _ => *skipped += 1,
        }
    }
    *skipped += u32::from(list.malformed);
    out
}

fn build_trade(t: &RawTrade<'_>) -> Option<Trade> {
    let id = t.id.to_id().or_else(|| t.trade_id.to_id());
    let market = t.market_id.as_str().filter(|m| !m.is_empty())?;
    let side = parse_side(t.side.as_str()?)?;
    // A fill with an unreadable liquidity is still a fill: counted as unknown, never dropped.
    let liquidity = t
        .liquidity
        .as_str()
        .map_or(Liquidity::Unknown, parse_liquidity);
    let price = t.price.as_decimal()?;
    let quantity = t.quantity.as_decimal()?;
    Some(Trade {
        id,
        market: market.to_owned(),
        side,
        liquidity,
        price,
        quantity,
        created_at_ms: t.created_at.as_timestamp_ms(),
    })
}

fn build_positions(list: List<Obj<RawPosition<'_>>>, skipped: &mut u32) -> Vec<Position> {
    let mut out = Vec::with_capacity(list.items.len());
    for item in list.items {
        match item {
            Obj::Ok(p) => match build_position(&p) {
                Some(pos) => out.push(pos),
                None => *skipped += 1,
            },
            _ => *skipped += 1,
        }
    }
    *skipped += u32::from(list.malformed);
    out
}

/// Sign rule: a negative quantity is already signed; otherwise `long`/`buy` keep it positive and
/// `short`/`sell` negate it; no side means the quantity is taken as signed. An unknown side is
/// only acceptable for a zero quantity (e.g. a flat closed position), as the sign is unknowable.
fn build_position(p: &RawPosition<'_>) -> Option<Position> {
    let market = p.market_id.as_str().filter(|m| !m.is_empty())?;
    let closed = p
        .status
        .as_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("closed"));
    let quantity = match &p.quantity {
        Scalar::Null if closed => Decimal::ZERO,
        q => q.as_decimal()?,
    };
    let quantity = if quantity.is_sign_negative() || quantity.is_zero() {
        quantity
    } else {
        match p.side.as_str() {
            None => quantity,
            Some(s) if s.eq_ignore_ascii_case("long") || s.eq_ignore_ascii_case("buy") => quantity,
            Some(s) if s.eq_ignore_ascii_case("short") || s.eq_ignore_ascii_case("sell") => {
                -quantity
            }
            Some(_) => return None,
        }
    };
    let id =
        p.id.to_id()
            .or_else(|| p.position_id.to_id())
            .unwrap_or_else(|| market.to_owned());
    Some(Position {
        id,
        market: market.to_owned(),
        quantity,
        entry_price: p
            .entry_price
            .as_decimal()
            .or_else(|| p.avg_price.as_decimal()),
        realized_pnl: p.realized_pnl.as_decimal(),
        closed,
    })
}

fn build_book(b: RawBook<'_>, skipped: &mut u32) -> BookUpdate {
    BookUpdate {
        market: b.market_id.to_id(),
        bids: build_levels(&b.bids, skipped),
        asks: build_levels(&b.asks, skipped),
    }
}

fn build_levels(list: &List<RawLevel<'_>>, skipped: &mut u32) -> Vec<(Decimal, Decimal)> {
    let mut out = Vec::with_capacity(list.items.len());
    for level in &list.items {
        let read = match level {
            RawLevel::Pair(p, s) => p.as_decimal().zip(s.as_decimal()),
            RawLevel::Bad => None,
        };
        match read {
            Some((price, size)) if !size.is_sign_negative() || size.is_zero() => {
                out.push((price, size));
            }
            _ => *skipped += 1,
        }
    }
    *skipped += u32::from(list.malformed);
    out
}

// ---------------------------------------------------------------------------------------------
// Parse: lenient raw structs. Every leaf is a `Scalar`, so a wrongly typed field never fails the
// envelope; it just fails validation of its own item.

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    event_id: Scalar<'a>,
    #[serde(borrow)]
    event_type: Scalar<'a>,
    #[serde(borrow)]
    event_seq: Scalar<'a>,
    #[serde(borrow)]
    engine_ts: Scalar<'a>,
    #[serde(borrow)]
    source_ts: Scalar<'a>,
    #[serde(borrow)]
    payload: Obj<RawPayload<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawPayload<'a> {
    #[serde(borrow)]
    trades: List<Obj<RawTrade<'a>>>,
    #[serde(borrow)]
    positions: RawPositions<'a>,
    #[serde(borrow)]
    orderbook: Obj<RawBook<'a>>,
    #[serde(borrow)]
    book: Obj<RawBook<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawTrade<'a> {
    #[serde(borrow)]
    id: Scalar<'a>,
    #[serde(borrow)]
    trade_id: Scalar<'a>,
    #[serde(borrow)]
    market_id: Scalar<'a>,
    #[serde(borrow)]
    side: Scalar<'a>,
    #[serde(borrow)]
    liquidity: Scalar<'a>,
    #[serde(borrow)]
    price: Scalar<'a>,
    #[serde(borrow)]
    quantity: Scalar<'a>,
    #[serde(borrow)]
    created_at: Scalar<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawPosition<'a> {
    #[serde(borrow)]
    id: Scalar<'a>,
    #[serde(borrow)]
    position_id: Scalar<'a>,
    #[serde(borrow)]
    market_id: Scalar<'a>,
    #[serde(borrow)]
    side: Scalar<'a>,
    #[serde(borrow)]
    quantity: Scalar<'a>,
    #[serde(borrow)]
    entry_price: Scalar<'a>,
    #[serde(borrow)]
    avg_price: Scalar<'a>,
    #[serde(borrow)]
    realized_pnl: Scalar<'a>,
    #[serde(borrow)]
    status: Scalar<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawPositionsObject<'a> {
    #[serde(borrow)]
    upserts: List<Obj<RawPosition<'a>>>,
    #[serde(borrow)]
    removed_ids: List<Scalar<'a>>,
}

/// `positions`: an object `{upserts, removedIds}` or a bare array of upserts.
#[derive(Default)]
enum RawPositions<'a> {
    #[default]
    Absent,
    Array(List<Obj<RawPosition<'a>>>),
    Object(RawPositionsObject<'a>),
    Malformed,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawPositions<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawPositions<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("positions array or object")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Ok(RawPositions::Array(List::from_seq(seq)?))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawPositionsObject::deserialize(MapAccessDeserializer::new(map))
                    .map(RawPositions::Object)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawPositions::Absent)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawPositions::Absent)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(RawPositions::Malformed)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(RawPositions::Malformed)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(RawPositions::Malformed)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(RawPositions::Malformed)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(RawPositions::Malformed)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawBook<'a> {
    #[serde(borrow)]
    market_id: Scalar<'a>,
    #[serde(borrow)]
    bids: List<RawLevel<'a>>,
    #[serde(borrow)]
    asks: List<RawLevel<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawLevelObject<'a> {
    #[serde(borrow)]
    price: Scalar<'a>,
    #[serde(borrow)]
    size: Scalar<'a>,
}

/// A book level: `{price, size, ...}` or `[price, size, ...]`.
enum RawLevel<'a> {
    Pair(Scalar<'a>, Scalar<'a>),
    Bad,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawLevel<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawLevel<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("book level")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let price: Option<Scalar<'a>> = seq.next_element()?;
                let size: Option<Scalar<'a>> = seq.next_element()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(match (price, size) {
                    (Some(p), Some(s)) => RawLevel::Pair(p, s),
                    _ => RawLevel::Bad,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let o = RawLevelObject::deserialize(MapAccessDeserializer::new(map))?;
                Ok(RawLevel::Pair(o.price, o.size))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawLevel::Bad)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawLevel::Bad)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(RawLevel::Bad)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(RawLevel::Bad)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(RawLevel::Bad)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(RawLevel::Bad)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(RawLevel::Bad)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawErrorBody<'a> {
    #[serde(borrow)]
    code: Scalar<'a>,
    #[serde(borrow)]
    error: Scalar<'a>,
    #[serde(borrow)]
    message: Scalar<'a>,
    #[serde(borrow)]
    retryable: Scalar<'a>,
}

impl RawErrorBody<'_> {
    fn has_code(&self) -> bool {
        self.code.to_id().is_some() || self.error.to_id().is_some()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawErrorEvent<'a> {
    #[serde(borrow)]
    code: Scalar<'a>,
    #[serde(borrow)]
    error: Scalar<'a>,
    #[serde(borrow)]
    message: Scalar<'a>,
    #[serde(borrow)]
    retryable: Scalar<'a>,
    #[serde(borrow)]
    payload: Obj<RawErrorBody<'a>>,
}

/// Any JSON value, judged later: strings stay borrowed unless they contained escapes; arrays
/// and objects are skipped over and recorded as `Other`.
#[derive(Debug, Default, PartialEq)]
enum Scalar<'a> {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Other,
}

impl Scalar<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A decimal from a string (plain or scientific) or a JSON number.
    fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Scalar::Str(s) => {
                let s = s.trim();
                Decimal::from_str(s)
                    .ok()
                    .or_else(|| Decimal::from_scientific(s).ok())
            }
            Scalar::Int(i) => Some(Decimal::from(*i)),
            Scalar::UInt(u) => Some(Decimal::from(*u)),
            Scalar::Float(f) => decimal_from_f64(*f),
            _ => None,
        }
    }

    /// A non-empty identifier; numeric ids are accepted and written in decimal.
    fn to_id(&self) -> Option<String> {
        match self {
            Scalar::Str(s) if !s.is_empty() => Some(s.as_ref().to_owned()),
            Scalar::Int(i) => Some(i.to_string()),
            Scalar::UInt(u) => Some(u.to_string()),
            _ => None,
        }
    }

    fn as_u64(&self) -> Option<u64> {
        match self {
            Scalar::UInt(u) => Some(*u),
            Scalar::Int(i) => u64::try_from(*i).ok(),
            Scalar::Float(f) if f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64 => {
                Some(*f as u64)
            }
            Scalar::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().ok()
            }
            _ => None,
        }
    }

    fn as_timestamp_ms(&self) -> Option<i64> {
        match self {
            Scalar::Str(s) => parse_timestamp_ms(s.trim()),
            Scalar::Int(i) => Some(*i),
            Scalar::UInt(u) => i64::try_from(*u).ok(),
            Scalar::Float(f) if f.is_finite() && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            Scalar::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Scalar::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }
}

/// serde_json hands JSON numbers with a fraction over as `f64`. Its shortest round-trip text
/// (`{:e}`) recovers the written digits whenever they fit f64 precision.
fn decimal_from_f64(f: f64) -> Option<Decimal> {
    if !f.is_finite() {
        return None;
    }
    Decimal::from_scientific(&format!("{f:e}"))
        .ok()
        .or_else(|| Decimal::from_f64(f))
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any json value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A value that should be an object: read as `T` when it is, remembered as the wrong shape when
/// it is not, so the caller decides whether that is fatal or one skipped item.
#[derive(Default)]
enum Obj<T> {
    #[default]
    Absent,
    Null,
    Ok(T),
    NotObject,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a json object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Obj::Ok)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Obj::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Obj::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Obj::NotObject)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Obj::NotObject)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Obj::NotObject)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Obj::NotObject)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Obj::NotObject)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Obj::NotObject)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Reads a REST list body without building a `Value` tree: the array itself, or the value of
/// the highest-priority wrapper key in `keys` that holds an array or `null`.
fn parse_rest_list<'de, T: Deserialize<'de>>(
    json: &'de str,
    keys: &'static [&'static str],
    what: &str,
) -> Result<List<Obj<T>>, WireError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let body = RestBody {
        keys,
        _item: PhantomData,
    }
    .deserialize(&mut de)
    .and_then(|body| de.end().map(|()| body))
    .map_err(|e| WireError::Json(e.to_string()))?;
    match body {
        RestList::List(list) => Ok(list),
        RestList::NoList => Err(WireError::Schema(format!(
            "{what} body has no {} array",
            keys.join("/")
        ))),
        RestList::NotList => Err(WireError::Schema(format!(
            "{what} body is not a json array or object"
        ))),
    }
}

enum RestList<E> {
    List(List<E>),
    /// An object without a usable wrapper key.
    NoList,
    /// Neither array, object nor `null`.
    NotList,
}

/// The seed carrying the wrapper keys a list may hide under.
struct RestBody<T> {
    keys: &'static [&'static str],
    _item: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for RestBody<T> {
    type Value = RestList<Obj<T>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for RestBody<T> {
    type Value = RestList<Obj<T>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json array or object")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        List::from_seq(seq).map(RestList::List)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // (priority, list): the lowest index in `keys` wins, whatever the key order in the body.
        let mut best: Option<(usize, List<Obj<T>>)> = None;
        while let Some(key) = map.next_key::<Scalar<'de>>()? {
            let rank = key
                .as_str()
                .and_then(|k| self.keys.iter().position(|&w| w == k));
            match rank {
                Some(rank) if best.as_ref().is_none_or(|(b, _)| rank < *b) => {
                    let list: List<Obj<T>> = map.next_value()?;
                    if !list.malformed {
                        best = Some((rank, list));
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(best.map_or(RestList::NoList, |(_, list)| RestList::List(list)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RestList::List(List::default()))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RestList::List(List::default()))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(RestList::NotList)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(RestList::NotList)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(RestList::NotList)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(RestList::NotList)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(RestList::NotList)
    }
}

/// A value that should be an array: `null` reads as empty, any other non-array as `malformed`
/// (one skipped item).
struct List<E> {
    items: Vec<E>,
    malformed: bool,
}

impl<E> Default for List<E> {
    fn default() -> Self {
        List {
            items: Vec::new(),
            malformed: false,
        }
    }
}

impl<E> List<E> {
    fn from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error>
    where
        E: Deserialize<'de>,
    {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(List {
            items,
            malformed: false,
        })
    }

    fn malformed() -> Self {
        List {
            items: Vec::new(),
            malformed: true,
        }
    }
}

impl<'de, E: Deserialize<'de>> Deserialize<'de> for List<E> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<E>(PhantomData<E>);
        impl<'de, E: Deserialize<'de>> Visitor<'de> for V<E> {
            type Value = List<E>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a json array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                List::from_seq(seq)
            }
            fn visit_unit<Er: de::Error>(self) -> Result<Self::Value, Er> {
                Ok(List::default())
            }
            fn visit_none<Er: de::Error>(self) -> Result<Self::Value, Er> {
                Ok(List::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(List::malformed())
            }
            fn visit_bool<Er: de::Error>(self, _: bool) -> Result<Self::Value, Er> {
                Ok(List::malformed())
            }
            fn visit_i64<Er: de::Error>(self, _: i64) -> Result<Self::Value, Er> {
                Ok(List::malformed())
            }
            fn visit_u64<Er: de::Error>(self, _: u64) -> Result<Self::Value, Er> {
                Ok(List::malformed())
            }
            fn visit_f64<Er: de::Error>(self, _: f64) -> Result<Self::Value, Er> {
                Ok(List::malformed())
            }
            fn visit_str<Er: de::Error>(self, _: &str) -> Result<Self::Value, Er> {
                Ok(List::malformed())
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn env(payload: &str) -> Envelope {
        parse_envelope(&format!(r#"{{"eventSeq":1,"payload":{payload}}}"#)).unwrap()
    }

    const T0: i64 = 1_777_032_000_000; // 2026-04-24T12:00:00Z

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

    // ---- timestamps ----

    #[test]
    fn iso_timestamps_with_z_offsets_and_fractions() {
        let p = parse_timestamp_ms;
        assert_eq!(p("2026-04-24T12:00:00Z"), Some(T0));
        assert_eq!(p("2026-04-24T12:00:00.000Z"), Some(T0));
        assert_eq!(p("2026-04-24T12:00:00.1Z"), Some(T0 + 100));
        assert_eq!(p("2026-04-24T12:00:00.12Z"), Some(T0 + 120));
        assert_eq!(p("2026-04-24T12:00:00.123456789Z"), Some(T0 + 123));
        assert_eq!(p("2026-04-24T14:00:00+02:00"), Some(T0));
        assert_eq!(p("2026-04-24T06:30:00.5-05:30"), Some(T0 + 500));
        assert_eq!(p("2026-04-24T14:00:00+0200"), Some(T0));
        assert_eq!(p("2026-04-24t12:00:00z"), Some(T0));
        assert_eq!(p("2026-04-24 12:00:00"), Some(T0));
        assert_eq!(p("2026-04-24T12:00"), Some(T0));
        assert_eq!(p("2026-04-24"), Some(T0 - 12 * 3_600_000));
    }

    #[test]
    fn unix_ms_and_calendar_edges() {
        let p = parse_timestamp_ms;
        assert_eq!(p("1714000000000"), Some(1_714_000_000_000));
        assert_eq!(p("0"), Some(0));
        assert_eq!(p("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(p("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(p("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(p("2024-12-31T23:59:59Z"), Some(1_735_689_599_000));
        assert_eq!(p("2025-01-01T00:00:00+00:00"), Some(1_735_689_600_000));
        assert_eq!(p("2016-12-31T23:59:60Z"), Some(1_483_228_800_000));
    }

    /// Howard Hinnant's `civil_from_days`, the inverse of the function under test.
    fn civil_from_days(z: i64) -> (i64, u32, u32) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (yoe + era * 400 + i64::from(month <= 2), month, day)
    }

    proptest::proptest! {
        #[test]
        fn iso_round_trips_any_instant(ms in 0i64..253_402_300_800_000, off in -(23 * 60 + 59)..(23i64 * 60 + 59)) {
            let local = ms + off * 60_000;
            let days = local.div_euclid(86_400_000);
            let rem = local.rem_euclid(86_400_000);
            let (y, mo, d) = civil_from_days(days);
            if (0..=9999).contains(&y) {
                let sign = if off < 0 { '-' } else { '+' };
                let s = format!(
                    "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}{sign}{:02}:{:02}",
                    rem / 3_600_000,
                    rem / 60_000 % 60,
                    rem / 1000 % 60,
                    rem % 1000,
                    off.abs() / 60,
                    off.abs() % 60
                );
                proptest::prop_assert_eq!(parse_timestamp_ms(&s), Some(ms), "{}", s);
            }
        }
    }

    #[test]
    fn invalid_timestamps_are_none() {
        for bad in [
            "",
            "-5",
            "1.5",
            "2026-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-04-24T24:00:00Z",
            "2026-04-24T12:60:00Z",
            "2026-04-24T12:00:00.Z",
            "2026-04-24T12:00:00+2:00",
            "2026-04-24T12:00:00Zjunk",
            "2026-04-24X12:00:00Z",
            "26-04-24T12:00:00Z",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_timestamp_ms(bad), None, "{bad}");
        }
    }

    // ---- trades ----

    #[test]
    fn canonical_trade() {
        let e = env(
            r#"{"trades":[{"id":"t-000123","marketId":"BTC-PERP","side":"buy","price":"68200.5",
                "quantity":"0.5","liquidity":"maker","createdAt":"2026-04-24T12:00:00.000Z"}]}"#,
        );
        assert_eq!(
            e.payload.trades,
            vec![Trade {
                id: Some("t-000123".into()),
                market: "BTC-PERP".into(),
                side: Side::Buy,
                liquidity: Liquidity::Maker,
                price: d("68200.5"),
                quantity: d("0.5"),
                created_at_ms: Some(T0),
            }]
        );
    }

    #[test]
    fn decimals_as_strings_or_json_numbers() {
        let e = env(
            r#"{"trades":[{"marketId":"M","side":"sell","liquidity":"taker","price":68200.5,"quantity":2},
                {"marketId":"M","side":"sell","liquidity":"taker","price":0.1,"quantity":"1e-3"},
                {"marketId":"M","side":"sell","liquidity":"taker","price":-3,"quantity":1.5e2}]}"#,
        );
        let got: Vec<_> = e
            .payload
            .trades
            .iter()
            .map(|t| (t.price, t.quantity))
            .collect();
        assert_eq!(
            got,
            vec![
                (d("68200.5"), d("2")),
                (d("0.1"), d("0.001")),
                (d("-3"), d("150")),
            ]
        );
    }

    #[test]
    fn created_at_as_iso_or_ms() {
        let e = env(
            r#"{"trades":[{"marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1","createdAt":1714000000000},
                {"marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1","createdAt":"1714000000000"},
                {"marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1","createdAt":"2026-04-24T14:00:00+02:00"},
                {"marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1"}]}"#,
        );
        let got: Vec<_> = e.payload.trades.iter().map(|t| t.created_at_ms).collect();
        assert_eq!(
            got,
            vec![
                Some(1_714_000_000_000),
                Some(1_714_000_000_000),
                Some(T0),
                None
            ]
        );
    }

    #[test]
    fn trade_side_and_liquidity_any_case() {
        let e = env(
            r#"{"trades":[{"marketId":"M","side":"BUY","liquidity":"Maker","price":"1","quantity":"1"},
                {"marketId":"M","side":"Sell","liquidity":"TAKER","price":"1","quantity":"1"}]}"#,
        );
        let got: Vec<_> = e
            .payload
            .trades
            .iter()
            .map(|t| (t.side, t.liquidity))
            .collect();
        assert_eq!(
            got,
            vec![
                (Side::Buy, Liquidity::Maker),
                (Side::Sell, Liquidity::Taker)
            ]
        );
        assert_eq!(
            (Side::Sell.as_str(), Liquidity::Taker.as_str()),
            ("sell", "taker")
        );
    }

    #[test]
    fn trade_id_from_id_else_trade_id_else_none() {
        let e = env(
            r#"{"trades":[{"id":"a","tradeId":"b","marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1"},
                {"tradeId":"b","marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1"},
                {"id":77,"marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1"},
                {"id":"","marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1"}]}"#,
        );
        let got: Vec<_> = e.payload.trades.iter().map(|t| t.id.as_deref()).collect();
        assert_eq!(got, vec![Some("a"), Some("b"), Some("77"), None]);
    }

    #[test]
    fn unreadable_trades_are_skipped_and_counted() {
        let e = env(r#"{"trades":[
                {"side":"buy","liquidity":"maker","price":"1","quantity":"1"},
                {"marketId":"M","liquidity":"maker","price":"1","quantity":"1"},
                {"marketId":"M","side":"buy","liquidity":"maker","quantity":"1"},
                {"marketId":"M","side":"buy","liquidity":"maker","price":"1"},
                {"marketId":"M","side":"long","liquidity":"maker","price":"1","quantity":"1"},
                {"marketId":"M","side":"buy","liquidity":"maker","price":"abc","quantity":"1"},
                {"marketId":"M","side":"buy","liquidity":"maker","price":true,"quantity":"1"},
                {"marketId":["M"],"side":"buy","liquidity":"maker","price":"1","quantity":"1"},
                "not an object", 5, null,
                {"marketId":"OK","side":"buy","liquidity":"maker","price":"1","quantity":"1"}]}"#);
        assert_eq!(e.skipped_items, 11);
        assert_eq!(e.payload.trades.len(), 1);
        assert_eq!(e.payload.trades[0].market, "OK");
    }

    #[test]
    fn unknown_or_missing_liquidity_is_read_as_unknown() {
        let e = env(r#"{"trades":[
                {"id":"a","marketId":"M","side":"buy","price":"1","quantity":"2"},
                {"id":"b","marketId":"M","side":"sell","liquidity":"weird","price":"3","quantity":"4"},
                {"id":"c","marketId":"M","side":"buy","liquidity":null,"price":"1","quantity":"1"},
                {"id":"d","marketId":"M","side":"buy","liquidity":7,"price":"1","quantity":"1"},
                {"id":"e","marketId":"M","side":"buy","liquidity":"MAKER","price":"1","quantity":"1"}]}"#);
        assert_eq!(e.skipped_items, 0);
        let got: Vec<_> = e
            .payload
            .trades
            .iter()
            .map(|t| (t.id.as_deref().unwrap(), t.side, t.liquidity))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", Side::Buy, Liquidity::Unknown),
                ("b", Side::Sell, Liquidity::Unknown),
                ("c", Side::Buy, Liquidity::Unknown),
                ("d", Side::Buy, Liquidity::Unknown),
                ("e", Side::Buy, Liquidity::Maker),
            ]
        );
        assert_eq!(
            (e.payload.trades[1].price, e.payload.trades[1].quantity),
            (d("3"), d("4"))
        );
        assert_eq!(Liquidity::Unknown.as_str(), "unknown");
    }

    #[test]
    fn a_trade_without_side_is_a_schema_error_even_with_liquidity_unknown() {
        let e = env(r#"{"trades":[
                {"id":"a","marketId":"M","liquidity":"maker","price":"1","quantity":"1"},
                {"id":"b","marketId":"M","price":"1","quantity":"1"},
                {"id":"c","marketId":"M","side":null,"liquidity":"weird","price":"1","quantity":"1"},
                {"id":"ok","marketId":"M","side":"sell","price":"1","quantity":"1"}]}"#);
        assert_eq!(e.skipped_items, 3);
        let ids: Vec<_> = e.payload.trades.iter().map(|t| t.id.as_deref()).collect();
        assert_eq!(ids, vec![Some("ok")]);
        // The REST list reads the same way.
        let (trades, skipped) = parse_trade_list(
            r#"[{"id":"a","marketId":"M","price":"1","quantity":"1"},
                {"id":"b","marketId":"M","side":"buy","price":"1","quantity":"1"}]"#,
        )
        .unwrap();
        assert_eq!(skipped, 1);
        assert_eq!((trades.len(), trades[0].liquidity), (1, Liquidity::Unknown));
    }

    #[test]
    fn trades_not_an_array_is_one_skipped_item() {
        assert_eq!(env(r#"{"trades":{"a":1}}"#).skipped_items, 1);
        assert_eq!(env(r#"{"trades":null}"#).skipped_items, 0);
    }

    #[test]
    fn escaped_strings_are_read() {
        let e = env(
            r#"{"trades":[{"id":"t\"1","marketId":"BTC\u002DPERP","side":"b\u0075y","liquidity":"maker",
                "price":"\u0031.5","quantity":"1"}]}"#,
        );
        let t = &e.payload.trades[0];
        assert_eq!(
            (t.id.as_deref(), t.market.as_str()),
            (Some("t\"1"), "BTC-PERP")
        );
        assert_eq!((t.side, t.price), (Side::Buy, d("1.5")));
    }

    // ---- positions ----

    #[test]
    fn positions_object_form() {
        let e = env(
            r#"{"positions":{"upserts":[{"id":"p-BTC-PERP","marketId":"BTC-PERP","side":"long",
                "quantity":"0.5","entryPrice":"68000.0","realizedPnl":"12.5","status":"open"}],
                "removedIds":["p-ETH-PERP", 9]}}"#,
        );
        assert_eq!(
            e.payload.positions,
            Some(PositionsUpdate {
                upserts: vec![Position {
                    id: "p-BTC-PERP".into(),
                    market: "BTC-PERP".into(),
                    quantity: d("0.5"),
                    entry_price: Some(d("68000")),
                    realized_pnl: Some(d("12.5")),
                    closed: false,
                }],
                removed_ids: vec!["p-ETH-PERP".into(), "9".into()],
            })
        );
    }

    #[test]
    fn positions_bare_array_is_upserts() {
        let e = env(r#"{"positions":[{"id":"p","marketId":"M","quantity":"1"}]}"#);
        let p = e.payload.positions.unwrap();
        assert_eq!((p.upserts.len(), p.removed_ids.len()), (1, 0));
        assert_eq!(
            env(r#"{"positions":[]}"#).payload.positions,
            Some(PositionsUpdate::default())
        );
        assert_eq!(env(r#"{}"#).payload.positions, None);
        assert_eq!(env(r#"{"positions":null}"#).payload.positions, None);
        let e = env(r#"{"positions":"x"}"#);
        assert_eq!((e.payload.positions, e.skipped_items), (None, 1));
    }

    #[test]
    fn position_side_and_sign() {
        let e = env(r#"{"positions":[
                {"id":"a","marketId":"M","side":"LONG","quantity":"1"},
                {"id":"b","marketId":"M","side":"Short","quantity":"1"},
                {"id":"c","marketId":"M","side":"buy","quantity":"2"},
                {"id":"d","marketId":"M","side":"SELL","quantity":2},
                {"id":"e","marketId":"M","side":"short","quantity":"-3"},
                {"id":"f","marketId":"M","side":"long","quantity":"-3"},
                {"id":"g","marketId":"M","quantity":"-4"},
                {"id":"h","marketId":"M","side":"flat","quantity":"0"},
                {"id":"i","marketId":"M","side":"sideways","quantity":"1"}]}"#);
        let got: Vec<_> = e
            .payload
            .positions
            .unwrap()
            .upserts
            .iter()
            .map(|p| (p.id.clone(), p.quantity))
            .collect();
        let want: Vec<_> = [
            ("a", "1"),
            ("b", "-1"),
            ("c", "2"),
            ("d", "-2"),
            ("e", "-3"),
            ("f", "-3"),
            ("g", "-4"),
            ("h", "0"),
        ]
        .iter()
        .map(|(i, q)| (i.to_string(), d(q)))
        .collect();
        assert_eq!(got, want);
        assert_eq!(e.skipped_items, 1);
    }

    #[test]
    fn position_id_fallbacks_and_avg_price() {
        let e = env(r#"{"positions":[
                {"id":"a","positionId":"x","marketId":"M1","quantity":"1","entryPrice":"10","avgPrice":"11"},
                {"positionId":"b","marketId":"M2","quantity":"1","avgPrice":"11"},
                {"marketId":"M3","quantity":"1"}]}"#);
        let ups = e.payload.positions.unwrap().upserts;
        let got: Vec<_> = ups.iter().map(|p| (p.id.as_str(), p.entry_price)).collect();
        assert_eq!(
            got,
            vec![("a", Some(d("10"))), ("b", Some(d("11"))), ("M3", None)]
        );
    }

    #[test]
    fn position_closed_status_any_case() {
        let e = env(r#"{"positions":[
                {"id":"a","marketId":"M","quantity":"0","status":"CLOSED","realizedPnl":-2.5},
                {"id":"b","marketId":"M","status":"Closed"},
                {"id":"c","marketId":"M","quantity":"1","status":"open"}]}"#);
        let ups = e.payload.positions.unwrap().upserts;
        let got: Vec<_> = ups.iter().map(|p| (p.closed, p.quantity)).collect();
        assert_eq!(got, vec![(true, d("0")), (true, d("0")), (false, d("1"))]);
        assert_eq!(ups[0].realized_pnl, Some(d("-2.5")));
    }

    #[test]
    fn unreadable_positions_are_skipped() {
        let e = env(r#"{"positions":{"upserts":[
                {"id":"a","quantity":"1"},
                {"id":"b","marketId":"","quantity":"1"},
                {"id":"c","marketId":"M"},
                {"id":"d","marketId":"M","quantity":"x"},
                7,
                {"id":"ok","marketId":"M","quantity":"1"}],
                "removedIds":["r", null, {"x":1}]}}"#);
        assert_eq!(e.skipped_items, 7);
        let p = e.payload.positions.unwrap();
        assert_eq!(p.upserts.len(), 1);
        assert_eq!(p.removed_ids, vec!["r".to_string()]);
    }

    // ---- book ----

    #[test]
    fn orderbook_object_levels_with_zero_size_kept() {
        let e = env(r#"{"orderbook":{"marketId":"BTC-PERP",
                "bids":[{"price":"68200.0","size":"1.2","total":"1.2"},{"price":"68199","size":"0"}],
                "asks":[{"price":"68201.0","size":"0.8","total":"0.8"}]}}"#);
        assert_eq!(
            e.payload.book,
            Some(BookUpdate {
                market: Some("BTC-PERP".into()),
                bids: vec![(d("68200.0"), d("1.2")), (d("68199"), d("0"))],
                asks: vec![(d("68201.0"), d("0.8"))],
            })
        );
    }

    #[test]
    fn book_alias_and_array_levels() {
        let e = env(r#"{"book":{"bids":[["100","1"],[99.5,2,"extra"]],"asks":[]}}"#);
        let b = e.payload.book.unwrap();
        assert_eq!(b.market, None);
        assert_eq!(b.bids, vec![(d("100"), d("1")), (d("99.5"), d("2"))]);
        // `orderbook` wins when both are present.
        let e = env(r#"{"book":{"marketId":"B"},"orderbook":{"marketId":"A"}}"#);
        assert_eq!(e.payload.book.unwrap().market.as_deref(), Some("A"));
    }

    #[test]
    fn unreadable_levels_are_skipped() {
        let e = env(
            r#"{"orderbook":{"bids":[["1"],{"price":"1"},"x",["a","1"],["1","-2"],["2","1"]],
                "asks":{"not":"a list"}}}"#,
        );
        assert_eq!(e.skipped_items, 6);
        assert_eq!(e.payload.book.unwrap().bids, vec![(d("2"), d("1"))]);
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

    // ---- REST lists ----

    const TRADE_A: &str =
        r#"{"id":"a","marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1"}"#;
    const TRADE_B: &str = r#"{"tradeId":"b","marketId":"N","side":"sell","liquidity":"taker","price":2,"quantity":"3"}"#;

    fn trade_ids(json: &str) -> (Vec<String>, u32) {
        let (trades, skipped) = parse_trade_list(json).unwrap();
        let ids = trades.into_iter().map(|t| t.id.unwrap()).collect();
        (ids, skipped)
    }

    #[test]
    fn trade_list_bare_array_reads_like_stream_trades() {
        let (trades, skipped) = parse_trade_list(&format!("[{TRADE_A},{TRADE_B}]")).unwrap();
        assert_eq!(skipped, 0);
        let stream = env(&format!(r#"{{"trades":[{TRADE_A},{TRADE_B}]}}"#));
        assert_eq!(trades, stream.payload.trades);
        assert_eq!(trades[1].id.as_deref(), Some("b"));
    }

    #[test]
    fn trade_list_under_each_wrapper_key() {
        for key in ["trades", "fills", "data", "items", "results"] {
            let body = format!(r#"{{"nextCursor":"x","{key}":[{TRADE_A}],"total":1}}"#);
            assert_eq!(trade_ids(&body), (vec!["a".to_string()], 0), "{key}");
        }
    }

    #[test]
    fn the_resource_name_wins_over_generic_wrappers_in_any_order() {
        let body = format!(r#"{{"data":[{TRADE_A}],"trades":[{TRADE_B}]}}"#);
        assert_eq!(trade_ids(&body).0, vec!["b".to_string()]);
        let body = format!(r#"{{"results":[{TRADE_A}],"items":[{TRADE_B}]}}"#);
        assert_eq!(trade_ids(&body).0, vec!["b".to_string()]);
        // A wrapper key that does not hold a list does not shadow one that does.
        let body = format!(r#"{{"trades":"none","data":[{TRADE_A}]}}"#);
        assert_eq!(trade_ids(&body).0, vec!["a".to_string()]);
    }

    #[test]
    fn null_and_empty_lists_are_empty() {
        for body in ["null", "[]", " [ ] ", r#"{"data":null}"#, r#"{"items":[]}"#] {
            assert_eq!(parse_trade_list(body), Ok((vec![], 0)), "{body}");
            assert_eq!(parse_position_list(body), Ok((vec![], 0)), "{body}");
        }
        assert_eq!(parse_trade_list(r#"{"trades":null}"#), Ok((vec![], 0)));
        assert_eq!(parse_position_list(r#"{"positions":[]}"#), Ok((vec![], 0)));
        // `trades` is no positions wrapper.
        assert_eq!(
            parse_position_list(r#"{"trades":[]}"#),
            Err(WireError::Schema(
                "positions body has no positions/data/items/results array".into()
            ))
        );
    }

    #[test]
    fn a_body_that_is_not_a_list_is_a_schema_error() {
        let no_list =
            || WireError::Schema("trades body has no trades/fills/data/items/results array".into());
        for body in [
            "{}",
            r#"{"error":"UNAUTHORIZED","message":"no"}"#,
            r#"{"data":5}"#,
            r#"{"data":{"a":1}}"#,
            // One level of wrapping only.
            &format!(r#"{{"data":{{"trades":[{TRADE_A}]}}}}"#),
            &format!(r#"{{"Trades":[{TRADE_A}]}}"#),
        ] {
            assert_eq!(parse_trade_list(body), Err(no_list()), "{body}");
        }
        let not_list = || WireError::Schema("trades body is not a json array or object".into());
        for body in ["5", "-1.5", r#""[]""#, "true"] {
            assert_eq!(parse_trade_list(body), Err(not_list()), "{body}");
        }
        assert_eq!(
            parse_position_list("7"),
            Err(WireError::Schema(
                "positions body is not a json array or object".into()
            ))
        );
    }

    #[test]
    fn unreadable_list_items_are_skipped_and_counted() {
        let body = format!(
            r#"{{"trades":[{TRADE_A},{{"marketId":"M","side":"long","liquidity":"maker","price":"1","quantity":"1"}},
                null,"x",[1],{{"id":"c"}},{TRADE_B}]}}"#
        );
        assert_eq!(
            trade_ids(&body),
            (vec!["a".to_string(), "b".to_string()], 5)
        );
        let (positions, skipped) = parse_position_list(
            r#"[{"marketId":"M","quantity":"1"},{"id":"x"},{"marketId":"M","side":"up","quantity":"1"},3]"#,
        )
        .unwrap();
        assert_eq!((positions.len(), skipped), (1, 3));
    }

    #[test]
    fn invalid_list_json_is_a_json_error() {
        for body in ["", "[", "{\"trades\":[}", "[] []", "nul", "[1,]"] {
            assert!(
                matches!(parse_trade_list(body), Err(WireError::Json(_))),
                "{body:?}"
            );
            assert!(
                matches!(parse_position_list(body), Err(WireError::Json(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn position_list_reads_the_portfolio_shape() {
        let body = r#"{"equity":"12450.75","margin":{"marginUsage":"0.42"},
            "positions":[{"marketId":"BTC-PERP","side":"long","quantity":"0.5","avgPrice":"66500.00",
                "markPrice":"67000.00","unrealizedPnl":"250.00","realizedPnl":"0","marginMode":"cross"},
                {"marketId":"ETH-PERP","side":"short","quantity":"2","avgPrice":"3000"}],
            "optionPositions":[]}"#;
        let (positions, skipped) = parse_position_list(body).unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(
            positions,
            vec![
                Position {
                    id: "BTC-PERP".into(),
                    market: "BTC-PERP".into(),
                    quantity: d("0.5"),
                    entry_price: Some(d("66500")),
                    realized_pnl: Some(d("0")),
                    closed: false,
                },
                Position {
                    id: "ETH-PERP".into(),
                    market: "ETH-PERP".into(),
                    quantity: d("-2"),
                    entry_price: Some(d("3000")),
                    realized_pnl: None,
                    closed: false,
                },
            ]
        );
    }

    #[test]
    fn position_list_under_each_wrapper_key_and_bare() {
        let item = r#"{"positionId":"p1","marketId":"M","side":"SELL","quantity":"1","entryPrice":"5","status":"open"}"#;
        let mut bodies = vec![format!("[{item}]")];
        for key in ["positions", "data", "items", "results"] {
            bodies.push(format!(r#"{{"{key}":[{item}]}}"#));
        }
        for body in &bodies {
            let (positions, skipped) = parse_position_list(body).unwrap();
            assert_eq!(skipped, 0, "{body}");
            let p = &positions[..];
            assert_eq!(p.len(), 1, "{body}");
            assert_eq!(
                (p[0].id.as_str(), p[0].quantity, p[0].entry_price),
                ("p1", d("-1"), Some(d("5")))
            );
        }
        // `fills`/`trades` are trade wrappers only.
        assert!(matches!(
            parse_position_list(&format!(r#"{{"fills":[{item}]}}"#)),
            Err(WireError::Schema(_))
        ));
    }
}
