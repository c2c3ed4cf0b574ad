//! Property tests over the whole wire parser: it never panics, on arbitrary bytes or on random JSON built from the real field names, and what it returns keeps the documented invariants.

use proptest::prelude::*;

use super::{
    parse_envelope, parse_error_event, parse_position_list, parse_trade_list,
    read_envelope_with_serde,
};

/// Every field name the parser looks at, plus wrapper keys and one it ignores.
const FIELDS: &[&str] = &[
    "eventId",
    "eventType",
    "eventSeq",
    "engineTs",
    "sourceTs",
    "payload",
    "trades",
    "positions",
    "upserts",
    "removedIds",
    "orderbook",
    "book",
    "bids",
    "asks",
    "id",
    "tradeId",
    "positionId",
    "marketId",
    "side",
    "liquidity",
    "price",
    "size",
    "quantity",
    "createdAt",
    "entryPrice",
    "avgPrice",
    "realizedPnl",
    "status",
    "code",
    "error",
    "message",
    "retryable",
    "fills",
    "data",
    "items",
    "results",
    "unknownField",
];

/// String values that mean something to some field, so random documents reach the builders'
/// success paths too, not only their rejections.
const WORDS: &[&str] = &[
    "",
    "buy",
    "SELL",
    "long",
    "short",
    "maker",
    "Taker",
    "closed",
    "open",
    "PerpStreamSnapshot",
    "PerpStreamDelta",
    "update",
    "BTC-PERP",
    "68200.5",
    "-3",
    "0",
    "1e-3",
    " 7 ",
    "1.5E+400",
    "79228162514264337593543950336",
    "2026-04-24T12:00:00.123Z",
    "2026-02-29T00:00:00Z",
    "1714000000000",
    "99999999999999999999999",
    "true",
    "x",
];

fn json_string(s: &str) -> String {
    // UNWRAP: serializing a str cannot fail.
    serde_json::to_string(s).unwrap()
}

/// A JSON scalar as text, of every type and several spellings (escapes, exponents, huge and
/// negative numbers, `-0`).
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|u| u.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        prop::sample::select(
            &[
                "-0",
                "0.0",
                "1e400",
                "-1e-400",
                "68200.50",
                "18446744073709551616",
                "-9223372036854775809",
                "1.7976931348623157e308",
            ][..]
        )
        .prop_map(str::to_string),
        prop::sample::select(WORDS).prop_map(json_string),
        // Escaped spellings of meaningful words must read like the plain ones.
        prop::sample::select(WORDS).prop_map(|w| {
            let escaped: String = w.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
            format!("\"{escaped}\"")
        }),
        ".{0,12}".prop_map(|s| json_string(&s)),
    ]
}

/// Random JSON text: objects keyed by the real field names (duplicates allowed, as the wire
/// may repeat a key) and arrays, nested a few levels, over [`scalar`] leaves.
fn json_value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec((prop::sample::select(FIELDS), inner), 0..8).prop_map(|fields| {
                let body: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", json_string(k)))
                    .collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

/// A plausible value for a field (most of the time), else any scalar or nested junk.
fn value_for(field: &'static str) -> BoxedStrategy<String> {
    let good: &'static [&'static str] = match field {
        "side" => &["\"buy\"", "\"SELL\"", "\"long\"", "\"Short\"", "\"flat\""],
        "liquidity" => &["\"maker\"", "\"TAKER\"", "\"both\"", "null"],
        "marketId" => &["\"BTC-PERP\"", "\"ETH-PERP\"", "\"\"", "7"],
        "id" | "tradeId" | "positionId" => &["\"t-1\"", "\"t-2\"", "42", "\"\""],
        "price" | "size" | "quantity" | "entryPrice" | "avgPrice" | "realizedPnl" => &[
            "\"68200.5\"",
            "\"0\"",
            "\"-2\"",
            "1.5",
            "3",
            "\"1e-3\"",
            "\"abc\"",
        ],
        "createdAt" => &["\"2026-04-24T12:00:00Z\"", "1714000000000", "\"junk\""],
        "status" => &["\"closed\"", "\"OPEN\""],
        _ => WORDS_JSON,
    };
    prop_oneof![
        7 => prop::sample::select(good).prop_map(str::to_string),
        2 => scalar(),
        1 => json_value(),
    ]
    .boxed()
}

const WORDS_JSON: &[&str] = &["\"x\"", "1", "null"];

/// An object with a random subset of `fields`, each with a [`value_for`] it, in random order.
fn record(fields: &'static [&'static str]) -> BoxedStrategy<String> {
    let each: Vec<_> = fields
        .iter()
        .map(|&f| prop::option::weighted(0.85, value_for(f)).prop_map(move |v| (f, v)))
        .collect();
    (each, any::<prop::sample::Index>())
        .prop_map(|(mut fields, rotate)| {
            let n = fields.len();
            fields.rotate_left(rotate.index(n));
            let body: Vec<String> = fields
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| format!("{}:{v}", json_string(k))))
                .collect();
            format!("{{{}}}", body.join(","))
        })
        .boxed()
}

fn list_of(item: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop_oneof![
        8 => prop::collection::vec(prop_oneof![9 => item, 1 => json_value()], 0..4)
            .prop_map(|v| format!("[{}]", v.join(","))),
        1 => json_value(),
    ]
    .boxed()
}

const TRADE: &[&str] = &[
    "id",
    "tradeId",
    "marketId",
    "side",
    "liquidity",
    "price",
    "quantity",
    "createdAt",
];
const POSITION: &[&str] = &[
    "id",
    "positionId",
    "marketId",
    "side",
    "quantity",
    "entryPrice",
    "avgPrice",
    "realizedPnl",
    "status",
];
const LEVEL: &[&str] = &["price", "size"];

/// A payload with trades, positions (either form) and a book, each part present at random.
fn payload() -> impl Strategy<Value = String> {
    let level = prop_oneof![
        record(LEVEL),
        (value_for("price"), value_for("size")).prop_map(|(p, s)| format!("[{p},{s}]")),
    ]
    .boxed();
    let book = (
        value_for("marketId"),
        list_of(level.clone()),
        list_of(level),
    )
        .prop_map(|(m, b, a)| format!(r#"{{"marketId":{m},"bids":{b},"asks":{a}}}"#));
    let positions = prop_oneof![
        list_of(record(POSITION)),
        (list_of(record(POSITION)), list_of(value_for("id")))
            .prop_map(|(u, r)| format!(r#"{{"upserts":{u},"removedIds":{r}}}"#)),
    ];
    (
        prop::option::of(list_of(record(TRADE))),
        prop::option::of(positions),
        prop::option::of((prop::sample::select(&["orderbook", "book"][..]), book)),
    )
        .prop_map(|(trades, positions, book)| {
            let mut fields = Vec::new();
            if let Some(t) = trades {
                fields.push(format!(r#""trades":{t}"#));
            }
            if let Some(p) = positions {
                fields.push(format!(r#""positions":{p}"#));
            }
            if let Some((key, b)) = book {
                fields.push(format!(r#""{key}":{b}"#));
            }
            format!("{{{}}}", fields.join(","))
        })
}

/// An envelope-shaped document: a valid `eventSeq` most of the time, so the parse goes all the
/// way through a random payload.
fn envelope() -> impl Strategy<Value = String> {
    (
        prop_oneof![4 => Just("1".to_string()), 1 => scalar()],
        prop_oneof![4 => payload().boxed(), 1 => json_value().boxed()],
        prop::collection::vec((prop::sample::select(FIELDS), json_value()), 0..3),
    )
        .prop_map(|(seq, payload, extra)| {
            let mut fields = vec![
                format!(r#""eventSeq":{seq}"#),
                format!(r#""payload":{payload}"#),
            ];
            fields.extend(extra.iter().map(|(k, v)| format!("{}:{v}", json_string(k))));
            format!("{{{}}}", fields.join(","))
        })
}

/// Runs every entry point; asserts what holds whenever one succeeds.
fn parse_all(data: &str) {
    if let Ok(env) = parse_envelope(data) {
        for t in &env.payload.trades {
            assert!(!t.market.is_empty(), "{data}");
            assert!(t.id.as_deref() != Some(""), "{data}");
        }
        if let Some(p) = &env.payload.positions {
            for pos in &p.upserts {
                assert!(!pos.market.is_empty() && !pos.id.is_empty(), "{data}");
            }
            assert!(p.removed_ids.iter().all(|id| !id.is_empty()), "{data}");
        }
        if let Some(b) = &env.payload.book {
            for (_, size) in b.bids.iter().chain(&b.asks) {
                assert!(!size.is_sign_negative() || size.is_zero(), "{data}");
            }
        }
    }
    if let Ok(e) = parse_error_event(data) {
        assert!(!e.code.is_empty(), "{data}");
    }
    if let Ok((trades, _)) = parse_trade_list(data) {
        assert!(trades.iter().all(|t| !t.market.is_empty()), "{data}");
    }
    if let Ok((positions, _)) = parse_position_list(data) {
        assert!(positions.iter().all(|p| !p.id.is_empty()), "{data}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        parse_all(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_strings_never_panic(s in ".{0,64}") {
        parse_all(&s);
    }

    #[test]
    fn random_json_never_panics(doc in json_value()) {
        parse_all(&doc);
    }

    #[test]
    fn random_envelopes_never_panic(doc in envelope()) {
        parse_all(&doc);
        // A truncated document is invalid JSON at every cut, never a panic.
        for cut in (0..doc.len()).step_by(7).filter(|&i| doc.is_char_boundary(i)) {
            parse_all(&doc[..cut]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// The fast reader either declines or reads exactly what serde reads, errors included.
    #[test]
    fn fast_reader_agrees_with_serde(doc in prop_oneof![envelope(), json_value()]) {
        prop_assert_eq!(parse_envelope(&doc), read_envelope_with_serde(&doc), "{}", doc);
        // Whitespace anywhere between tokens changes nothing.
        let spaced = doc.replace(',', " ,\n\t").replace(':', "\r: ");
        prop_assert_eq!(parse_envelope(&spaced), read_envelope_with_serde(&spaced), "{}", spaced);
    }

    #[test]
    fn fast_reader_agrees_with_serde_on_any_text(s in "[{}\\[\\]\":,0-9a-z .eE+-]{0,40}") {
        prop_assert_eq!(parse_envelope(&s), read_envelope_with_serde(&s), "{}", s);
    }
}

#[test]
fn envelope_strategy_reaches_the_builders_and_the_fast_reader() {
    // Guard against a generator that only ever produces rejected documents, or documents the
    // fast reader always declines (which would make the agreement test vacuous): a fixed seed's
    // sample must include envelopes that parse, carry trades or positions, and read fast.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = envelope();
    let (mut parsed, mut with_items, mut fast) = (0, 0, 0);
    for _ in 0..2000 {
        let doc = strategy.new_tree(&mut runner).unwrap().current();
        if let Ok(env) = parse_envelope(&doc) {
            parsed += 1;
            let p = &env.payload;
            if !p.trades.is_empty() || p.positions.as_ref().is_some_and(|p| !p.upserts.is_empty()) {
                with_items += 1;
            }
        }
        fast += usize::from(super::fast::envelope(&doc).is_some());
    }
    assert!(parsed > 1000, "only {parsed} of 2000 envelopes parsed");
    assert!(
        with_items > 100,
        "only {with_items} random envelopes carried a readable item"
    );
    assert!(fast > 1500, "the fast reader read only {fast} of 2000");
}
