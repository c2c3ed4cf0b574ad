//! REST list bodies (`GET /perps/trades`, `GET /perps/positions`): the bare array, `null`, or the array under a wrapper key, read without a `Value` tree.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::WireError;
use super::lenient::{List, Obj, Scalar};

/// Reads a REST list body without building a `Value` tree: the array itself, or the value of
/// the highest-priority wrapper key in `keys` that holds an array or `null`.
pub(super) fn parse_rest_list<'de, T: Deserialize<'de>>(
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

pub(super) enum RestList<E> {
    List(List<E>),
    /// An object without a usable wrapper key.
    NoList,
    /// Neither array, object nor `null`.
    NotList,
}

/// The seed carrying the wrapper keys a list may hide under.
pub(super) struct RestBody<T> {
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

#[cfg(test)]
mod tests {
    use crate::model::Position;
    use crate::source::wire::tests::{d, env};
    use crate::source::wire::{WireError, parse_position_list, parse_trade_list};

    // ---- REST lists ----

    const TRADE_A: &str =
        r#"{"id":"a","marketId":"M","side":"buy","liquidity":"maker","price":"1","quantity":"1"}"#;
    const TRADE_B: &str = r#"{"tradeId":"b","marketId":"N","side":"sell","liquidity":"taker","price":2,"quantity":"3"}"#;

    fn trade_ids(json: &str) -> (Vec<String>, u32) {
        let (trades, skipped) = parse_trade_list(json).unwrap();
        let ids = trades
            .into_iter()
            .map(|t| t.id.unwrap().to_string())
            .collect();
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
