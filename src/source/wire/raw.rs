//! The lenient raw shapes of the wire objects (envelope, payload, trade, position, book, error), read without judging any value.
//!
//! Every leaf is a [`Scalar`], so a wrongly typed field never fails the envelope; it just fails
//! validation of its own item in [`super::build`]. serde reads them through the derives and
//! impls here; [`super::fast`] reads stream envelopes into the same structs.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::lenient::{List, Obj, Scalar};

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct RawEnvelope<'a> {
    #[serde(borrow)]
    pub(super) event_id: Scalar<'a>,
    #[serde(borrow)]
    pub(super) event_type: Scalar<'a>,
    #[serde(borrow)]
    pub(super) event_seq: Scalar<'a>,
    #[serde(borrow)]
    pub(super) engine_ts: Scalar<'a>,
    #[serde(borrow)]
    pub(super) source_ts: Scalar<'a>,
    #[serde(borrow)]
    pub(super) payload: Obj<RawPayload<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawPayload<'a> {
    #[serde(borrow)]
    pub(super) trades: List<Obj<RawTrade<'a>>>,
    #[serde(borrow)]
    pub(super) positions: RawPositions<'a>,
    #[serde(borrow)]
    pub(super) orderbook: Obj<RawBook<'a>>,
    #[serde(borrow)]
    pub(super) book: Obj<RawBook<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct RawTrade<'a> {
    #[serde(borrow)]
    pub(super) id: Scalar<'a>,
    #[serde(borrow)]
    pub(super) trade_id: Scalar<'a>,
    #[serde(borrow)]
    pub(super) market_id: Scalar<'a>,
    #[serde(borrow)]
    pub(super) side: Scalar<'a>,
    #[serde(borrow)]
    pub(super) liquidity: Scalar<'a>,
    #[serde(borrow)]
    pub(super) price: Scalar<'a>,
    #[serde(borrow)]
    pub(super) quantity: Scalar<'a>,
    #[serde(borrow)]
    pub(super) created_at: Scalar<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct RawPosition<'a> {
    #[serde(borrow)]
    pub(super) id: Scalar<'a>,
    #[serde(borrow)]
    pub(super) position_id: Scalar<'a>,
    #[serde(borrow)]
    pub(super) market_id: Scalar<'a>,
    #[serde(borrow)]
    pub(super) side: Scalar<'a>,
    #[serde(borrow)]
    pub(super) quantity: Scalar<'a>,
    #[serde(borrow)]
    pub(super) entry_price: Scalar<'a>,
    #[serde(borrow)]
    pub(super) avg_price: Scalar<'a>,
    #[serde(borrow)]
    pub(super) realized_pnl: Scalar<'a>,
    #[serde(borrow)]
    pub(super) status: Scalar<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct RawPositionsObject<'a> {
    #[serde(borrow)]
    pub(super) upserts: List<Obj<RawPosition<'a>>>,
    #[serde(borrow)]
    pub(super) removed_ids: List<Scalar<'a>>,
}

/// `positions`: an object `{upserts, removedIds}` or a bare array of upserts.
#[derive(Default)]
pub(super) enum RawPositions<'a> {
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
pub(super) struct RawBook<'a> {
    #[serde(borrow)]
    pub(super) market_id: Scalar<'a>,
    #[serde(borrow)]
    pub(super) bids: List<RawLevel<'a>>,
    #[serde(borrow)]
    pub(super) asks: List<RawLevel<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawLevelObject<'a> {
    #[serde(borrow)]
    pub(super) price: Scalar<'a>,
    #[serde(borrow)]
    pub(super) size: Scalar<'a>,
}

/// A book level: `{price, size, ...}` or `[price, size, ...]`.
pub(super) enum RawLevel<'a> {
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
pub(super) struct RawErrorBody<'a> {
    #[serde(borrow)]
    pub(super) code: Scalar<'a>,
    #[serde(borrow)]
    pub(super) error: Scalar<'a>,
    #[serde(borrow)]
    pub(super) message: Scalar<'a>,
    #[serde(borrow)]
    pub(super) retryable: Scalar<'a>,
}

impl RawErrorBody<'_> {
    pub(super) fn has_code(&self) -> bool {
        self.code.to_id().is_some() || self.error.to_id().is_some()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawErrorEvent<'a> {
    #[serde(borrow)]
    pub(super) code: Scalar<'a>,
    #[serde(borrow)]
    pub(super) error: Scalar<'a>,
    #[serde(borrow)]
    pub(super) message: Scalar<'a>,
    #[serde(borrow)]
    pub(super) retryable: Scalar<'a>,
    #[serde(borrow)]
    pub(super) payload: Obj<RawErrorBody<'a>>,
}
