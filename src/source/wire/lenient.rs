//! Lenient JSON primitives: [`Scalar`] (any JSON value, judged later: decimals and timestamps from strings or numbers, ids from strings or integers), [`Obj`] (an object or the wrong shape) and [`List`] (an array, `null`, or one malformed item).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::time::parse_timestamp_ms;
use crate::model::ShortStr;

/// Any JSON value, judged later: strings stay borrowed unless they contained escapes; arrays
/// and objects are skipped over and recorded as `Other`.
#[derive(Debug, Default, PartialEq)]
pub(super) enum Scalar<'a> {
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
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A decimal from a string (plain or scientific) or a JSON number.
    pub(super) fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Scalar::Str(s) => plain_decimal(s).or_else(|| {
                let s = s.trim();
                Decimal::from_str(s)
                    .ok()
                    .or_else(|| Decimal::from_scientific(s).ok())
            }),
            Scalar::Int(i) => Some(Decimal::from(*i)),
            Scalar::UInt(u) => Some(Decimal::from(*u)),
            Scalar::Float(f) => decimal_from_f64(*f),
            _ => None,
        }
    }

    /// [`Scalar::to_id`] by value: one short enough (most ids, every market) is kept inline,
    /// with no allocation (see [`ShortStr`]).
    pub(super) fn to_short_id(&self) -> Option<ShortStr> {
        match self {
            Scalar::Str(s) if !s.is_empty() => Some(ShortStr::new(s)),
            Scalar::Int(i) => Some(i.to_string().into()),
            Scalar::UInt(u) => Some(u.to_string().into()),
            _ => None,
        }
    }

    /// A non-empty identifier; numeric ids are accepted and written in decimal.
    pub(super) fn to_id(&self) -> Option<String> {
        match self {
            Scalar::Str(s) if !s.is_empty() => Some(s.as_ref().to_owned()),
            Scalar::Int(i) => Some(i.to_string()),
            Scalar::UInt(u) => Some(u.to_string()),
            _ => None,
        }
    }

    pub(super) fn as_u64(&self) -> Option<u64> {
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

    pub(super) fn as_timestamp_ms(&self) -> Option<i64> {
        match self {
            Scalar::Str(s) => parse_timestamp_ms(s.trim()),
            Scalar::Int(i) => Some(*i),
            Scalar::UInt(u) => i64::try_from(*u).ok(),
            Scalar::Float(f) if f.is_finite() && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }

    pub(super) fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            Scalar::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Scalar::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }
}

/// The common spelling of a decimal, `[-]digits[.digits]` with at most 18 digits, read straight
/// into mantissa and scale: exactly what `Decimal::from_str` makes of it (sign and scale
/// included), without its generality. `None` for anything else, which goes the general way.
fn plain_decimal(s: &str) -> Option<Decimal> {
    let b = s.as_bytes();
    let (negative, digits) = match b.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, b),
    };
    let (mut mantissa, mut count, mut scale) = (0i64, 0u32, None);
    for (i, &c) in digits.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                count += 1;
                if count > 18 {
                    return None;
                }
                mantissa = mantissa * 10 + i64::from(c - b'0');
            }
            // One point, with digits on both sides.
            b'.' if scale.is_none() && i > 0 && i + 1 < digits.len() => {
                scale = Some((digits.len() - i - 1) as u32);
            }
            _ => return None,
        }
    }
    // `-0` keeps its sign in `from_str`; leave that oddity to it.
    if count == 0 || (negative && mantissa == 0) {
        return None;
    }
    let mantissa = if negative { -mantissa } else { mantissa };
    Some(Decimal::new(mantissa, scale.unwrap_or(0)))
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
pub(super) enum Obj<T> {
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

/// A value that should be an array: `null` reads as empty, any other non-array as `malformed`
/// (one skipped item).
pub(super) struct List<E> {
    pub(super) items: Vec<E>,
    pub(super) malformed: bool,
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
    pub(super) fn from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error>
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

    pub(super) fn malformed() -> Self {
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

    fn general(s: &str) -> Option<Decimal> {
        Decimal::from_str(s.trim())
            .ok()
            .or_else(|| Decimal::from_scientific(s.trim()).ok())
    }

    #[test]
    fn plain_decimals_read_as_from_str_reads_them() {
        for s in [
            "0",
            "7",
            "-3",
            "68200.5",
            "0.50",
            "000.5",
            "-0.001",
            "999999999999999999",
            "-99999999999.9999999",
            "1.00000000000000000",
        ] {
            let fast = plain_decimal(s);
            assert!(fast.is_some(), "{s}");
            assert_eq!(
                fast.map(|d| d.serialize()),
                general(s).map(|d| d.serialize()),
                "{s}"
            );
        }
        // Left to the general way: more digits, `-0`, other spellings.
        for s in [
            "1234567890123456789",
            "-0",
            "-0.00",
            "1.",
            ".5",
            "1e3",
            " 1",
            "+1",
            "1_000",
            "--1",
            "",
            "-",
            "1.2.3",
        ] {
            assert_eq!(plain_decimal(s), None, "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn plain_decimal_agrees_with_from_str(s in "-?[0-9]{0,12}(\\.[0-9]{0,9})?") {
            if let Some(fast) = plain_decimal(&s) {
                proptest::prop_assert_eq!(Some(fast.serialize()), general(&s).map(|d| d.serialize()), "{}", s);
            }
            proptest::prop_assert_eq!(
                Scalar::Str(Cow::Borrowed(&s)).as_decimal().map(|d| d.serialize()),
                general(&s).map(|d| d.serialize())
            );
        }
    }
}
