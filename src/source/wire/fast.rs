//! The fast reader of stream envelopes: straight from the bytes to the raw items serde would read, each built as soon as it is read; whatever it is not sure of goes back to serde.
//!
//! Every event of the stream goes through here, so it is worth a reader without serde's
//! generic machinery: one pass over the bytes, strings borrowed from the input, no intermediate
//! values, and no list of raw items: each trade, position and removed id goes to the shared
//! [`PayloadBuilder`] as soon as it is read. It is exact by construction rather than by
//! imitation. The rare tokens whose reading is subtle (a string with escapes, a number that is
//! not a short plain integer) are decoded by serde_json itself, token alone. Whatever else it is
//! not sure of — a duplicate field (serde's derive refuses one), nesting deeper than
//! [`MAX_DEPTH`], a top level that is not an object, and any JSON error — makes it return
//! `None`, and [`super::parse_envelope`] reads the event with serde instead, which gives the one
//! answer (and the one error message) for it. Each item it accepts is the raw struct serde
//! would build, and the builders behind both readers are the same; a property test holds the
//! two readers to the same results.

use std::borrow::Cow;

use super::Head;
use super::build::PayloadBuilder;
use super::lenient::{List, Obj, Scalar};
use super::raw::{RawBook, RawLevel, RawPosition, RawTrade};
use crate::model::Payload;

/// Deeper nesting is left to serde (which has its own recursion limit); stream events nest
/// about five levels.
const MAX_DEPTH: u32 = 64;

/// Reads a whole stream envelope: its head, and its payload built (with the count of unreadable
/// items) as it is read; or `None` to have serde read it.
pub(super) fn envelope(data: &str) -> Option<(Head<'_>, Obj<(Payload, u32)>)> {
    let mut r = Reader {
        s: data,
        b: data.as_bytes(),
        i: 0,
        depth: 0,
    };
    if r.peek()? != b'{' {
        // Not an object: an error either way, and serde words it.
        return None;
    }
    let env = r.envelope()?;
    // Only whitespace may follow.
    match r.peek() {
        None => Some(env),
        Some(_) => None,
    }
}

/// The bytes that end a plain (borrowable) string: its closing quote, an escape, or a control
/// character (which serde_json refuses).
const ENDS_PLAIN_STRING: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The position of the first byte of `b` that ends a plain string (see [`ENDS_PLAIN_STRING`]),
/// eight bytes at a time while eight remain.
fn plain_run(b: &[u8]) -> Option<usize> {
    let mut k = 0;
    while let Some(chunk) = b.get(k..k + 8) {
        let mut le = [0u8; 8];
        le.copy_from_slice(chunk);
        if let Some(j) = first_string_end(u64::from_le_bytes(le)) {
            return Some(k + j);
        }
        k += 8;
    }
    let rest = b.get(k..)?;
    let j = rest
        .iter()
        .position(|&c| ENDS_PLAIN_STRING[usize::from(c)])?;
    Some(k + j)
}

/// The first byte (in little-endian order) of `w` that is `"`, `\\` or below 0x20, by the
/// classic bit tricks: `(x - 0x01..) & !x & 0x80..` flags the bytes of `x` that are zero, and
/// `(x - n * 0x01..) & !x & 0x80..` those below `n`. Either may also flag a byte above a flagged
/// one (a borrow), never below, so the lowest flag is exact.
fn first_string_end(w: u64) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let quote = w ^ (ONES * u64::from(b'"'));
    let escape = w ^ (ONES * u64::from(b'\\'));
    let flags = (quote.wrapping_sub(ONES) & !quote)
        | (escape.wrapping_sub(ONES) & !escape)
        | (w.wrapping_sub(ONES * 0x20) & !w);
    let flags = flags & HIGHS;
    (flags != 0).then(|| (flags.trailing_zeros() / 8) as usize)
}

/// A cursor over the input. Every method returns `None` to abandon the fast read.
struct Reader<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: u32,
}

/// Bit per known field of a struct, to refuse a repeated field (serde's derive rejects it).
#[derive(Default)]
struct Seen(u16);

impl Seen {
    fn first(&mut self, bit: u8) -> Option<()> {
        let mask = 1u16 << bit;
        if self.0 & mask != 0 {
            return None;
        }
        self.0 |= mask;
        Some(())
    }
}

impl<'a> Reader<'a> {
    /// The next byte after JSON whitespace, without consuming it.
    fn peek(&mut self) -> Option<u8> {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(c);
            }
            self.i += 1;
        }
        None
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// The string the cursor is on (at its `"`), borrowed, when it is plain (no escape, no
    /// control character); `None`, the cursor unmoved, when it is not (or never ends).
    ///
    /// Kept apart from [`Reader::escaped_string`] so the common case returns a bare `&str`:
    /// returning the two cases as one `Cow` cost a store-forwarding stall per string.
    fn plain_string(&mut self) -> Option<&'a str> {
        let start = self.i + 1;
        let rest = self.b.get(start..)?;
        let len = plain_run(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        // The bounds are ASCII quotes, so they are char boundaries.
        self.s.get(start..start + len)
    }

    /// Any string the cursor is on (at its `"`), decoded by serde_json (so escapes, surrogates
    /// and control characters read exactly as serde reads them).
    fn escaped_string(&mut self) -> Option<String> {
        // Find the closing quote, stepping over each escaped character.
        let mut j = self.i + 1;
        loop {
            match *self.b.get(j)? {
                b'"' => break,
                b'\\' => j += 2,
                _ => j += 1,
            }
        }
        let token = self.s.get(self.i..=j)?;
        self.i = j + 1;
        serde_json::from_str::<String>(token).ok()
    }

    /// A number, as serde_json reports it: a plain integer is read here (non-negative as
    /// `u64`, negative as `i64`); a fraction, an exponent, `-0` or a long integer is handed to
    /// serde_json, token alone, for the same `f64` (or error) it gives inside a document.
    fn number(&mut self) -> Option<Scalar<'a>> {
        let start = self.i;
        let negative = self.b.get(start) == Some(&b'-');
        let digits_at = start + usize::from(negative);
        let digits = self
            .b
            .get(digits_at..)?
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let end = digits_at + digits;
        let plain = (1..=18).contains(&digits)
            && (digits == 1 || self.b[digits_at] != b'0')
            && !matches!(self.b.get(end), Some(b'.' | b'e' | b'E'));
        if plain {
            let v = self.b[digits_at..end]
                .iter()
                .fold(0u64, |v, &d| v * 10 + u64::from(d - b'0'));
            if !negative {
                self.i = end;
                return Some(Scalar::UInt(v));
            }
            if v != 0 {
                self.i = end;
                // Under 10^18, so it fits.
                return Some(Scalar::Int(-(v as i64)));
            }
        }
        self.skip_number()?;
        let token = self.s.get(start..self.i)?;
        serde_json::from_str::<Scalar<'a>>(token).ok()
    }

    /// Any JSON number, validated and skipped (what serde does with an ignored value).
    fn skip_number(&mut self) -> Option<()> {
        let b = self.b;
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return None;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return None;
            }
        }
        self.i = i;
        Some(())
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// Any JSON value, validated and skipped.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => match self.plain_string() {
                Some(_) => Some(()),
                None => self.escaped_string().map(drop),
            },
            b'{' => self.members(|_, _| Some(false)),
            b'[' => self.elements(|r| r.skip_value()),
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            _ => self.skip_number(),
        }
    }

    /// A value in the wrong shape for its place, which serde reads whole before disregarding:
    /// as [`Reader::skip_value`], except that a number is read (serde_json range-checks it
    /// then, and `1e400` is an error, unlike in a value it ignores).
    fn skip_read(&mut self) -> Option<()> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number().map(drop),
            _ => self.skip_value(),
        }
    }

    /// An object's members; the cursor is on its `{`. `field` reads the value of a key it
    /// knows and returns `true`, or returns `false` to have the value skipped.
    fn members(&mut self, mut field: impl FnMut(&mut Self, &str) -> Option<bool>) -> Option<()> {
        self.enter()?;
        self.i += 1;
        if self.peek()? == b'}' {
            self.i += 1;
        } else {
            loop {
                if self.peek()? != b'"' {
                    return None;
                }
                let escaped;
                let key = match self.plain_string() {
                    Some(key) => key,
                    None => {
                        escaped = self.escaped_string()?;
                        escaped.as_str()
                    }
                };
                self.eat(b':')?;
                if !field(self, key)? {
                    self.skip_value()?;
                }
                match self.peek()? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// An array's elements, each read by `element`; the cursor is on its `[`.
    fn elements(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.enter()?;
        self.i += 1;
        if self.peek()? == b']' {
            self.i += 1;
        } else {
            loop {
                element(self)?;
                match self.peek()? {
                    b',' => self.i += 1,
                    b']' => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// [`Scalar`]: any value; arrays and objects are skipped and recorded as `Other`.
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        Some(match self.peek()? {
            b'"' => match self.plain_string() {
                Some(s) => Scalar::Str(Cow::Borrowed(s)),
                None => Scalar::Str(Cow::Owned(self.escaped_string()?)),
            },
            b'n' => {
                self.literal(b"null")?;
                Scalar::Null
            }
            b't' => {
                self.literal(b"true")?;
                Scalar::Bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                Scalar::Bool(false)
            }
            b'[' | b'{' => {
                self.skip_value()?;
                Scalar::Other
            }
            _ => self.number()?,
        })
    }

    /// A field of a struct: the value read into `slot`, once.
    fn field(&mut self, seen: &mut Seen, bit: u8, slot: &mut Scalar<'a>) -> Option<bool> {
        seen.first(bit)?;
        *slot = self.scalar()?;
        Some(true)
    }

    /// [`Obj`]: an object read by `read` (cursor on its `{`), `null`, or the wrong shape.
    fn obj<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Obj<T>> {
        Some(match self.peek()? {
            b'{' => Obj::Ok(read(self)?),
            b'n' => {
                self.literal(b"null")?;
                Obj::Null
            }
            _ => {
                self.skip_read()?;
                Obj::NotObject
            }
        })
    }

    /// [`List`]: an array of items read by `item`, `null` (empty), or one malformed item.
    fn list<E>(&mut self, mut item: impl FnMut(&mut Self) -> Option<E>) -> Option<List<E>> {
        Some(match self.peek()? {
            b'[' => {
                let mut items = Vec::new();
                self.elements(|r| {
                    items.push(item(r)?);
                    Some(())
                })?;
                List {
                    items,
                    malformed: false,
                }
            }
            b'n' => {
                self.literal(b"null")?;
                List::default()
            }
            _ => {
                self.skip_read()?;
                List::malformed()
            }
        })
    }

    fn envelope(&mut self) -> Option<(Head<'a>, Obj<(Payload, u32)>)> {
        let mut h = Head::default();
        let mut payload = Obj::Absent;
        let mut seen = Seen::default();
        self.members(|r, key| match key {
            "eventId" => r.field(&mut seen, 0, &mut h.event_id),
            "eventType" => r.field(&mut seen, 1, &mut h.event_type),
            "eventSeq" => r.field(&mut seen, 2, &mut h.event_seq),
            "engineTs" => r.field(&mut seen, 3, &mut h.engine_ts),
            "sourceTs" => r.field(&mut seen, 4, &mut h.source_ts),
            "payload" => {
                seen.first(5)?;
                payload = r.obj(Self::payload)?;
                Some(true)
            }
            _ => Some(false),
        })?;
        Some((h, payload))
    }

    /// A [`List`]'s elements, each read by `item`: `Some(false)` for an array or `null`,
    /// `Some(true)` for a malformed list (any other value, read and disregarded).
    fn each(&mut self, item: impl FnMut(&mut Self) -> Option<()>) -> Option<bool> {
        match self.peek()? {
            b'[' => self.elements(item).map(|()| false),
            b'n' => self.literal(b"null").map(|()| false),
            _ => self.skip_read().map(|()| true),
        }
    }

    /// The payload, built item by item without collecting raw items.
    fn payload(&mut self) -> Option<(Payload, u32)> {
        let mut b = PayloadBuilder::default();
        let mut seen = Seen::default();
        self.members(|r, key| {
            match key {
                "trades" => {
                    seen.first(0)?;
                    let malformed = r.each(|r| {
                        let item = r.obj(Self::trade)?;
                        b.trade(&item);
                        Some(())
                    })?;
                    if malformed {
                        b.malformed();
                    }
                }
                "positions" => {
                    seen.first(1)?;
                    r.positions(&mut b)?;
                }
                "orderbook" => {
                    seen.first(2)?;
                    let book = r.obj(Self::book)?;
                    b.orderbook(book);
                }
                "book" => {
                    seen.first(3)?;
                    let book = r.obj(Self::book)?;
                    b.book(book);
                }
                _ => return Some(false),
            }
            Some(true)
        })?;
        Some(b.finish())
    }

    /// Upserts into `b`, one by one.
    fn upserts(&mut self, b: &mut PayloadBuilder<'a>) -> Option<()> {
        let malformed = self.each(|r| {
            let item = r.obj(Self::position)?;
            b.position(&item);
            Some(())
        })?;
        if malformed {
            b.malformed();
        }
        Some(())
    }

    /// `positions`: `{upserts, removedIds}`, a bare array of upserts, `null`, or malformed.
    fn positions(&mut self, b: &mut PayloadBuilder<'a>) -> Option<()> {
        match self.peek()? {
            b'[' => {
                b.positions();
                self.upserts(b)
            }
            b'{' => {
                b.positions();
                let mut seen = Seen::default();
                self.members(|r, key| {
                    match key {
                        "upserts" => {
                            seen.first(0)?;
                            r.upserts(b)?;
                        }
                        "removedIds" => {
                            seen.first(1)?;
                            let malformed = r.each(|r| {
                                let id = r.scalar()?;
                                b.removed_id(&id);
                                Some(())
                            })?;
                            if malformed {
                                b.malformed();
                            }
                        }
                        _ => return Some(false),
                    }
                    Some(true)
                })
            }
            b'n' => self.literal(b"null"),
            _ => {
                self.skip_read()?;
                b.malformed();
                Some(())
            }
        }
    }

    fn trade(&mut self) -> Option<RawTrade<'a>> {
        let mut t = RawTrade::default();
        let mut seen = Seen::default();
        self.members(|r, key| match key {
            "id" => r.field(&mut seen, 0, &mut t.id),
            "tradeId" => r.field(&mut seen, 1, &mut t.trade_id),
            "marketId" => r.field(&mut seen, 2, &mut t.market_id),
            "side" => r.field(&mut seen, 3, &mut t.side),
            "liquidity" => r.field(&mut seen, 4, &mut t.liquidity),
            "price" => r.field(&mut seen, 5, &mut t.price),
            "quantity" => r.field(&mut seen, 6, &mut t.quantity),
            "createdAt" => r.field(&mut seen, 7, &mut t.created_at),
            _ => Some(false),
        })?;
        Some(t)
    }

    fn position(&mut self) -> Option<RawPosition<'a>> {
        let mut p = RawPosition::default();
        let mut seen = Seen::default();
        self.members(|r, key| match key {
            "id" => r.field(&mut seen, 0, &mut p.id),
            "positionId" => r.field(&mut seen, 1, &mut p.position_id),
            "marketId" => r.field(&mut seen, 2, &mut p.market_id),
            "side" => r.field(&mut seen, 3, &mut p.side),
            "quantity" => r.field(&mut seen, 4, &mut p.quantity),
            "entryPrice" => r.field(&mut seen, 5, &mut p.entry_price),
            "avgPrice" => r.field(&mut seen, 6, &mut p.avg_price),
            "realizedPnl" => r.field(&mut seen, 7, &mut p.realized_pnl),
            "status" => r.field(&mut seen, 8, &mut p.status),
            _ => Some(false),
        })?;
        Some(p)
    }

    fn book(&mut self) -> Option<RawBook<'a>> {
        let mut b = RawBook::default();
        let mut seen = Seen::default();
        self.members(|r, key| {
            match key {
                "marketId" => return r.field(&mut seen, 0, &mut b.market_id),
                "bids" => {
                    seen.first(1)?;
                    b.bids = r.list(Self::level)?;
                }
                "asks" => {
                    seen.first(2)?;
                    b.asks = r.list(Self::level)?;
                }
                _ => return Some(false),
            }
            Some(true)
        })?;
        Some(b)
    }

    /// [`RawLevel`]: `[price, size, ...]` or `{price, size, ...}`; anything else is `Bad`.
    fn level(&mut self) -> Option<RawLevel<'a>> {
        Some(match self.peek()? {
            b'[' => {
                let (mut price, mut size, mut n) = (Scalar::Null, Scalar::Null, 0);
                self.elements(|r| {
                    match n {
                        0 => price = r.scalar()?,
                        1 => size = r.scalar()?,
                        _ => r.skip_value()?,
                    }
                    n += 1;
                    Some(())
                })?;
                if n >= 2 {
                    RawLevel::Pair(price, size)
                } else {
                    RawLevel::Bad
                }
            }
            b'{' => {
                let (mut price, mut size) = (Scalar::Null, Scalar::Null);
                let mut seen = Seen::default();
                self.members(|r, key| match key {
                    "price" => r.field(&mut seen, 0, &mut price),
                    "size" => r.field(&mut seen, 1, &mut size),
                    _ => Some(false),
                })?;
                RawLevel::Pair(price, size)
            }
            b'n' => {
                self.literal(b"null")?;
                RawLevel::Bad
            }
            _ => {
                self.skip_read()?;
                RawLevel::Bad
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the fast reader takes `data`; either way the result must be serde's.
    fn reads(data: &str) -> bool {
        assert_eq!(
            super::super::parse_envelope(data),
            super::super::read_envelope_with_serde(data),
            "{data}"
        );
        envelope(data).is_some()
    }

    #[test]
    fn the_common_shapes_are_read_fast() {
        for data in [
            r#"{"eventId":"e1","eventType":"PerpStreamDelta","eventSeq":1,"engineTs":"2026-04-24T12:00:00.000Z","sourceTs":null,
                "payload":{"trades":[{"id":"t-1","marketId":"BTC-PERP","side":"buy","price":"68200.5","quantity":"0.5",
                "liquidity":"maker","createdAt":"2026-04-24T12:00:00.000Z","fee":{"amount":"0.1","rate":1.5e-4}}],
                "positions":{"upserts":[{"id":"p","marketId":"BTC-PERP","side":"long","quantity":"0.5","entryPrice":"68000",
                "realizedPnl":"-2","status":"open"}],"removedIds":["q", 7]}}}"#,
            r#" { "eventSeq" : 18446744073709 , "payload" : { "positions" : [ ] , "orderbook" :
                { "marketId" : "M" , "bids" : [ [ "1" , "2" , 3.5 ] , { "price" : "1" , "size" : "0" } ] , "asks" : null } } } "#,
            r#"{"eventSeq":-5,"payload":null,"x":[true,false,null,{},[],-0.5e+3,"ü"]}"#,
            r#"{"eventSeq":1,"payload":[1,2]}"#,
            r#"{}"#,
            // Escapes and non-integer numbers, decoded by serde_json token alone.
            r#"{"eventSeq":1,"eventId":"a\"b\u00e9\\"}"#,
            r#"{"eventSeq":1.0}"#,
            r#"{"eventSeq":-0}"#,
            r#"{"eventSeq":1e3}"#,
            r#"{"eventSeq":12345678901234567890123}"#,
            r#"{"eventSeq":1,"payload":{"trades":[{"price":68200.5}]}}"#,
            // ...but not where it is ignored.
            r#"{"eventSeq":1,"x":1e400,"payload":{"trades":[{"fee":[1e400]}],"book":{"bids":[["1","1",1e400]]}}}"#,
        ] {
            assert!(reads(data), "{data}");
        }
    }

    #[test]
    fn anything_unsure_is_left_to_serde() {
        for data in [
            // Duplicates, which serde refuses.
            r#"{"eventSeq":1,"eventSeq":2}"#,
            r#"{"eventSeq":1,"\u0065ventSeq":2}"#,
            r#"{"eventSeq":1,"payload":{"book":{},"book":{}}}"#,
            // Not an object at the top, and invalid JSON of every kind.
            "[]",
            "null",
            "",
            r#"{"eventSeq":1"#,
            r#"{"eventSeq":1} x"#,
            r#"{"eventSeq":01}"#,
            r#"{"eventSeq":1e400}"#,
            // A number in the wrong shape for its place is still range-checked by serde...
            r#"{"eventSeq":1,"payload":1e400}"#,
            r#"{"eventSeq":1,"payload":{"trades":-1e999}}"#,
            r#"{"eventSeq":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":nul}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\ud800"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a" 1}"#,
            r#"{1:1}"#,
        ] {
            assert!(!reads(data), "{data}");
        }
        // Deep nesting too.
        let deep = format!(r#"{{"x":{}{}}}"#, "[".repeat(70), "]".repeat(70));
        assert!(!reads(&deep));
        let shallow = format!(r#"{{"x":{}{}}}"#, "[".repeat(50), "]".repeat(50));
        assert!(reads(&shallow));
    }

    #[test]
    fn string_ends_are_found_in_every_position() {
        for stop in [b'"', b'\\', 0x00, 0x1f] {
            for at in 0..20 {
                let mut bytes = vec![b'a'; 20];
                // Bytes that must not count: above 0x20, and non-ASCII.
                bytes[at / 2] = 0xc3;
                bytes[at] = stop;
                assert_eq!(plain_run(&bytes), Some(at), "{stop:#x} at {at}");
            }
        }
        assert_eq!(plain_run(b"abcdefghijklmnop\x20\x7f"), None);
        assert_eq!(plain_run(b""), None);
        // Only the first of several counts.
        assert_eq!(plain_run(b"ab\\cd\"ef"), Some(2));
        assert_eq!(plain_run(b"abcdefgh\x01\"\\"), Some(8));
    }

    proptest::proptest! {
        #[test]
        fn plain_run_agrees_with_a_byte_by_byte_scan(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![0x20u8..=0x7e, proptest::num::u8::ANY],
                0..40,
            )
        ) {
            let naive = bytes.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            proptest::prop_assert_eq!(plain_run(&bytes), naive);
        }
    }

    #[test]
    fn integers_read_as_serde_reports_them() {
        fn seq(data: &str) -> Option<Scalar<'_>> {
            envelope(data).map(|(h, _)| h.event_seq)
        }
        assert_eq!(seq(r#"{"eventSeq":0}"#), Some(Scalar::UInt(0)));
        assert_eq!(
            seq(r#"{"eventSeq":999999999999999999}"#),
            Some(Scalar::UInt(999_999_999_999_999_999))
        );
        assert_eq!(seq(r#"{"eventSeq":-42}"#), Some(Scalar::Int(-42)));
        assert_eq!(
            seq(r#"{"eventSeq":"7"}"#),
            Some(Scalar::Str(Cow::Borrowed("7")))
        );
        assert_eq!(seq(r#"{"eventSeq":{"a":[1]}}"#), Some(Scalar::Other));
        assert_eq!(seq(r#"{"eventSeq":true}"#), Some(Scalar::Bool(true)));
        assert_eq!(seq(r#"{"eventSeq":-0}"#), Some(Scalar::Float(-0.0)));
        assert_eq!(seq(r#"{"eventSeq":2.5E1}"#), Some(Scalar::Float(25.0)));
        assert_eq!(
            seq(r#"{"eventSeq":18446744073709551615}"#),
            Some(Scalar::UInt(u64::MAX))
        );
        assert_eq!(
            seq(r#"{"eventSeq":-9223372036854775808}"#),
            Some(Scalar::Int(i64::MIN))
        );
        // An escaped key is the key it spells.
        assert_eq!(
            seq(r#"{"\u0065ventSeq":"\u0037"}"#),
            Some(Scalar::Str(Cow::Borrowed("7")))
        );
    }
}
