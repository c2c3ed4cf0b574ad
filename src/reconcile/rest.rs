//! Lenient readers for the pull endpoints whose shapes the exchange does not publish: open orders and balances.
//!
//! Trades and positions go through `source::wire` (the same item rules as the stream). These two
//! have no stream counterpart, so they are read here from a `serde_json::Value`: REST bodies
//! arrive every few seconds at most, and a tree makes the fallbacks easy to state.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::Value;

use crate::telemetry::reconcile::BalanceFigures;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("invalid json: {0}")]
    Json(String),
    #[error("unexpected shape: {0}")]
    Shape(&'static str),
}

/// Resting orders counted per (market, side), plus the number of items that could not be read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OrderCounts {
    pub counts: Vec<(String, &'static str, u64)>,
    pub skipped: u64,
}

/// Statuses that mean an order is no longer resting, if an endpoint named "open" lists one anyway.
const DONE: [&str; 7] = [
    "filled",
    "cancelled",
    "canceled",
    "rejected",
    "expired",
    "closed",
    "done",
];

fn list<'a>(v: &'a Value, names: &[&str]) -> Option<&'a Vec<Value>> {
    match v {
        Value::Array(a) => Some(a),
        Value::Object(o) => ["data", "items", "results"]
            .iter()
            .chain(names)
            .find_map(|k| o.get(*k).and_then(Value::as_array)),
        _ => None,
    }
}

fn parse(body: &str) -> Result<Value, BodyError> {
    serde_json::from_str(body).map_err(|e| BodyError::Json(e.to_string()))
}

/// `GET /perps/orders/open`: an array of orders (or an object wrapping one), each with
/// `marketId` and `side` (`buy`/`sell`, also `bid`/`ask`, any case).
pub fn open_orders(body: &str) -> Result<OrderCounts, BodyError> {
    let v = parse(body)?;
    let items = list(&v, &["orders"]).ok_or(BodyError::Shape("no list of orders"))?;
    let mut per: std::collections::BTreeMap<(String, &'static str), u64> = Default::default();
    let mut skipped = 0;
    for item in items {
        let market = item
            .get("marketId")
            .or_else(|| item.get("market"))
            .and_then(Value::as_str);
        let side = item
            .get("side")
            .and_then(Value::as_str)
            .map(|s| s.to_ascii_lowercase());
        let side = match side.as_deref() {
            Some("buy") | Some("bid") => Some("buy"),
            Some("sell") | Some("ask") => Some("sell"),
            _ => None,
        };
        let done = item
            .get("status")
            .and_then(Value::as_str)
            .is_some_and(|s| DONE.contains(&s.to_ascii_lowercase().as_str()));
        match (market, side) {
            (Some(m), Some(s)) if !m.is_empty() => {
                if !done {
                    *per.entry((m.to_string(), s)).or_default() += 1;
                }
            }
            _ => skipped += 1,
        }
    }
    Ok(OrderCounts {
        counts: per.into_iter().map(|((m, s), n)| (m, s, n)).collect(),
        skipped,
    })
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => s.trim().parse::<Decimal>().ok().and_then(|d| d.to_f64()),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn first(o: &serde_json::Map<String, Value>, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| o.get(*k).and_then(number))
}

/// `GET /perps/balances` or `GET /portfolio/me`: equity and margin figures, under the names either
/// doc set uses, at the top level or inside `margin`. Margin usage is computed as
/// initial margin / equity when the body does not give it.
pub fn balances(body: &str) -> Result<BalanceFigures, BodyError> {
    let v = parse(body)?;
    let o = match &v {
        Value::Object(o) => match o.get("data") {
            Some(Value::Object(inner)) => inner,
            _ => o,
        },
        _ => return Err(BodyError::Shape("balances body is not an object")),
    };
    let empty = serde_json::Map::new();
    let margin = o.get("margin").and_then(Value::as_object).unwrap_or(&empty);
    let pick = |keys: &[&str]| first(o, keys).or_else(|| first(margin, keys));
    let mut b = BalanceFigures {
        equity: pick(&["equity", "totalEquity", "accountEquity"]),
        available: pick(&[
            "availableBalance",
            "available",
            "tradableBalance",
            "freeCollateral",
        ]),
        initial_margin: pick(&["initialMargin", "initialMarginRequirement"]),
        maintenance_margin: pick(&["maintenanceMargin", "maintenanceMarginRequirement"]),
        margin_usage: pick(&["marginUsage", "marginUsageRatio"]),
    };
    if b.margin_usage.is_none()
        && let (Some(im), Some(eq)) = (b.initial_margin, b.equity)
        && eq > 0.0
    {
        b.margin_usage = Some(im / eq);
    }
    if b == BalanceFigures::default() {
        return Err(BodyError::Shape("no equity or margin figures"));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_counted_per_market_and_side_in_any_wrapper() {
        let body = r#"[{"id":"o1","marketId":"BTC-PERP","side":"buy","price":"1","quantity":"1","status":"open"},
                      {"id":"o2","marketId":"BTC-PERP","side":"BUY"},
                      {"id":"o3","marketId":"BTC-PERP","side":"ask"},
                      {"id":"o4","marketId":"ETH-PERP","side":"sell","status":"FILLED"},
                      {"id":"o5","side":"sell"},
                      {"id":"o6","marketId":"ETH-PERP","side":"sideways"}]"#;
        let got = open_orders(body).unwrap();
        assert_eq!(
            got.counts,
            vec![
                ("BTC-PERP".into(), "buy", 2),
                ("BTC-PERP".into(), "sell", 1)
            ]
        );
        assert_eq!(got.skipped, 2);
        let wrapped = r#"{"orders":[{"marketId":"SOL-PERP","side":"sell"}]}"#;
        assert_eq!(
            open_orders(wrapped).unwrap().counts,
            vec![("SOL-PERP".into(), "sell", 1)]
        );
        let data = r#"{"data":[]}"#;
        assert_eq!(open_orders(data).unwrap(), OrderCounts::default());
        assert_eq!(
            open_orders("{}"),
            Err(BodyError::Shape("no list of orders"))
        );
        assert!(matches!(open_orders("{"), Err(BodyError::Json(_))));
    }

    #[test]
    fn balances_read_either_doc_sets_names() {
        let perps = r#"{"equity":"12450.75","availableBalance":"4820.5","initialMargin":"2010","maintenanceMargin":"1340","marginUsage":"0.161437"}"#;
        let b = balances(perps).unwrap();
        assert_eq!(b.equity, Some(12450.75));
        assert_eq!(b.available, Some(4820.5));
        assert_eq!(b.initial_margin, Some(2010.0));
        assert_eq!(b.maintenance_margin, Some(1340.0));
        assert_eq!(b.margin_usage, Some(0.161437));
        let portfolio = r#"{"equity":"1000","tradableBalance":"800","margin":{"initialMargin":"200","maintenanceMargin":"100","marginUsage":"0.2"},"positions":[]}"#;
        let b = balances(portfolio).unwrap();
        assert_eq!(
            (b.available, b.initial_margin, b.margin_usage),
            (Some(800.0), Some(200.0), Some(0.2))
        );
    }

    #[test]
    fn margin_usage_is_derived_when_absent_and_empty_bodies_are_errors() {
        let b = balances(r#"{"data":{"equity":400,"initialMargin":100}}"#).unwrap();
        assert_eq!(b.margin_usage, Some(0.25));
        assert_eq!(
            balances(r#"{"foo":1}"#),
            Err(BodyError::Shape("no equity or margin figures"))
        );
        assert_eq!(
            balances("[]"),
            Err(BodyError::Shape("balances body is not an object"))
        );
    }
}
