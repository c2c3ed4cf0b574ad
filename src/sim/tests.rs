//! End-to-end tests of the simulator over HTTP: the raw stream bytes, every fault knob, auth and REST.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::Value;

use super::*;

/// One SSE block as it came off the wire.
#[derive(Debug, Default)]
struct Block {
    event: Option<String>,
    id: Option<u64>,
    data: Option<String>,
    comment: Option<String>,
}

impl Block {
    fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().unwrap()).unwrap()
    }

    fn seq(&self) -> u64 {
        self.json()["eventSeq"].as_u64().unwrap()
    }

    fn is_event(&self) -> bool {
        self.event.is_some()
    }
}

/// Reads a raw SSE body block by block.
struct Raw {
    resp: reqwest::Response,
    buf: String,
}

impl Raw {
    async fn open(url: &str) -> Raw {
        let resp = reqwest::get(url).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Raw {
            resp,
            buf: String::new(),
        }
    }

    /// Next block, None at end of body, Err on timeout.
    async fn try_next(&mut self, wait: Duration) -> Result<Option<Block>, ()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let text: String = self.buf.drain(..end + 2).collect();
                return Ok(Some(parse_block(&text)));
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Err(_) => return Err(()),
                Ok(chunk) => match chunk.unwrap() {
                    Some(bytes) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                    None => {
                        assert!(self.buf.is_empty(), "body ended mid-block: {:?}", self.buf);
                        return Ok(None);
                    }
                },
            }
        }
    }

    async fn next(&mut self) -> Block {
        self.try_next(Duration::from_millis(1500))
            .await
            .expect("timed out")
            .expect("body ended")
    }

    /// Next block that is an event (skipping heartbeats).
    async fn next_event(&mut self) -> Block {
        loop {
            let b = self.next().await;
            if b.is_event() {
                return b;
            }
        }
    }
}

fn parse_block(text: &str) -> Block {
    let mut b = Block::default();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(c) = line.strip_prefix(':') {
            b.comment = Some(c.to_string());
        } else if let Some(v) = line.strip_prefix("event: ") {
            b.event = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("id: ") {
            b.id = Some(v.parse().unwrap());
        } else if let Some(v) = line.strip_prefix("data: ") {
            assert!(b.data.is_none(), "one data line per event");
            b.data = Some(v.to_string());
        } else {
            panic!("unexpected line {line:?}");
        }
    }
    b
}

fn cfg() -> SimConfig {
    SimConfig {
        tick: Duration::from_millis(5),
        heartbeat_interval: Duration::from_secs(30),
        ..SimConfig::default()
    }
}

/// Serves `cfg` without the tick task: the world moves only on `handle.step()`.
async fn still(cfg: SimConfig) -> (String, SimHandle) {
    let handle = build(cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = handle.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, handle)
}

async fn body_json(r: reqwest::Response) -> Value {
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap()).unwrap()
}

/// Positions folded from the stream, by id: (market, signed quantity, entry, realized).
type Folded = BTreeMap<String, (String, Decimal, Decimal, Decimal)>;

fn fold_position(into: &mut Folded, p: &Value) {
    let qty = dec(&p["quantity"]);
    let signed = if p["side"] == "long" { qty } else { -qty };
    assert_eq!(p["status"], "open");
    into.insert(
        p["id"].as_str().unwrap().to_string(),
        (
            p["marketId"].as_str().unwrap().to_string(),
            signed,
            dec(&p["entryPrice"]),
            dec(&p["realizedPnl"]),
        ),
    );
}

fn truth_positions(t: &Truth) -> Folded {
    t.positions
        .iter()
        .map(|p| {
            (
                p.id.clone(),
                (p.market.clone(), p.quantity, p.entry_price, p.realized_pnl),
            )
        })
        .collect()
}

#[test]
fn same_seed_builds_the_same_world_and_other_seeds_differ() {
    let a = build(SimConfig {
        seed: 9,
        warmup_steps: 200,
        ..cfg()
    });
    let b = build(SimConfig {
        seed: 9,
        warmup_steps: 200,
        ..cfg()
    });
    let c = build(SimConfig {
        seed: 10,
        warmup_steps: 200,
        ..cfg()
    });
    for _ in 0..50 {
        a.step();
        b.step();
    }
    let (ta, tb, tc) = (a.truth(), b.truth(), c.truth());
    assert!(ta.trades.len() > 50);
    assert_eq!(ta, tb);
    assert_ne!(ta.trades[..20], tc.trades[..20]);
    assert_ne!(ta.books, tc.books);
    assert_eq!(ta.books.len(), 3);
    assert!(ta.books["BTC-PERP"].bids.len() >= 36);
}

#[tokio::test]
async fn user_stream_snapshot_then_contiguous_deltas_fold_to_the_truth() {
    let (url, h) = still(SimConfig { seed: 4, ..cfg() }).await;
    let mut raw = Raw::open(&format!(
        "{url}/perps/stream/user?openOnly=true&intervalMs=100"
    ))
    .await;
    let snap = raw.next().await;
    assert_eq!(snap.event.as_deref(), Some("snapshot"));
    let env = snap.json();
    assert_eq!(env["eventType"], "PerpStreamSnapshot");
    assert_eq!(Some(env["eventSeq"].as_u64().unwrap()), snap.id);
    assert_eq!(env["eventId"], format!("evt-{}", snap.id.unwrap()));
    assert!(env["engineTs"].as_str().unwrap().ends_with('Z'));
    assert!(env["payload"].get("orderbook").is_none());

    let truth = h.truth();
    let mut positions = Folded::new();
    for p in env["payload"]["positions"].as_array().unwrap() {
        fold_position(&mut positions, p);
    }
    assert!(!positions.is_empty(), "warmup leaves positions open");
    assert_eq!(positions, truth_positions(&truth));
    let trade_ids: Vec<String> = env["payload"]["trades"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = truth
        .trades
        .iter()
        .rev()
        .take(50)
        .rev()
        .map(|t| t.id.clone())
        .collect();
    assert!(!trade_ids.is_empty());
    assert_eq!(trade_ids, expected);

    let mut seen_trades = truth.trades.len();
    let mut seq = snap.id.unwrap();
    let mut removals = 0;
    for _ in 0..6 {
        for _ in 0..15 {
            h.step();
        }
        let target = h.truth();
        // Read deltas until the folded state catches up with what the world now holds.
        while seen_trades < target.trades.len() {
            let d = raw.next_event().await;
            assert_eq!(d.event.as_deref(), Some("delta"));
            seq += 1;
            assert_eq!(d.seq(), seq);
            assert_eq!(d.id, Some(seq));
            let p = &d.json()["payload"];
            for t in p["trades"].as_array().into_iter().flatten() {
                let want = &target.trades[seen_trades];
                assert_eq!(t["id"].as_str(), Some(want.id.as_str()));
                assert_eq!(t["marketId"].as_str(), Some(want.market.as_str()));
                assert_eq!(t["side"].as_str(), Some(want.side));
                assert_eq!(t["liquidity"].as_str(), Some(want.liquidity));
                assert_eq!(dec(&t["price"]), want.price);
                assert_eq!(dec(&t["quantity"]), want.quantity);
                seen_trades += 1;
            }
            for u in p["positions"]["upserts"].as_array().into_iter().flatten() {
                fold_position(&mut positions, u);
            }
            for r in p["positions"]["removedIds"]
                .as_array()
                .into_iter()
                .flatten()
            {
                removals += 1;
                positions.remove(r.as_str().unwrap());
            }
        }
        assert_eq!(positions, truth_positions(&target));
    }
    assert!(removals > 0, "positions close over 90 steps");
}

#[tokio::test]
async fn events_stream_book_deltas_keep_the_client_book_equal_to_the_top_levels() {
    let (url, h) = still(SimConfig { seed: 5, ..cfg() }).await;
    let depth = 5;
    let mut raw = Raw::open(&format!(
        "{url}/perps/stream/events?marketId=ETH-PERP&depth={depth}&intervalMs=100"
    ))
    .await;
    let snap = raw.next().await.json();
    let book = &snap["payload"]["orderbook"];
    assert_eq!(book["marketId"], "ETH-PERP");
    let mut bids: BTreeMap<Decimal, Decimal> = BTreeMap::new();
    let mut asks: BTreeMap<Decimal, Decimal> = BTreeMap::new();
    let apply = |side: &mut BTreeMap<Decimal, Decimal>, levels: &Value| {
        for l in levels.as_array().into_iter().flatten() {
            let (p, s) = (dec(&l["price"]), dec(&l["size"]));
            if s.is_zero() {
                side.remove(&p)
            } else {
                side.insert(p, s)
            };
        }
    };
    apply(&mut bids, &book["bids"]);
    apply(&mut asks, &book["asks"]);
    let first = &book["bids"][0];
    assert_eq!(dec(&first["size"]), dec(&first["total"]));
    for t in snap["payload"]["trades"].as_array().unwrap() {
        assert_eq!(t["marketId"], "ETH-PERP");
    }
    let mut seq = snap["eventSeq"].as_u64().unwrap();
    let mut deltas = 0;
    for _ in 0..40 {
        h.step();
        // A step need not touch the top levels; then nothing is sent.
        let Ok(d) = raw.try_next(Duration::from_millis(250)).await else {
            continue;
        };
        let d = d.unwrap();
        deltas += 1;
        seq += 1;
        assert_eq!(d.seq(), seq);
        let p = &d.json()["payload"];
        apply(&mut bids, &p["orderbook"]["bids"]);
        apply(&mut asks, &p["orderbook"]["asks"]);
        for t in p["trades"].as_array().into_iter().flatten() {
            assert_eq!(t["marketId"], "ETH-PERP");
        }
        let truth = &h.truth().books["ETH-PERP"];
        let got_bids: Vec<_> = bids.iter().rev().map(|(p, s)| (*p, *s)).collect();
        let got_asks: Vec<_> = asks.iter().map(|(p, s)| (*p, *s)).collect();
        assert_eq!(got_bids, truth.bids[..depth]);
        assert_eq!(got_asks, truth.asks[..depth]);
        if deltas == 5 {
            break;
        }
    }
    assert_eq!(deltas, 5);
}

#[tokio::test]
async fn events_stream_needs_a_known_market() {
    let (url, _h) = still(cfg()).await;
    for q in ["", "?marketId=DOGE-PERP", "?marketId=BTC-PERP&depth=abc"] {
        let r = reqwest::get(format!("{url}/perps/stream/events{q}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let body: Value = body_json(r).await;
        assert_eq!(body["error"], "BAD_REQUEST");
    }
}

#[tokio::test]
async fn idle_connections_get_exact_heartbeats_until_they_are_stopped() {
    let (url, h) = still(SimConfig {
        heartbeat_interval: Duration::from_millis(200),
        ..cfg()
    })
    .await;
    let mut raw = Raw::open(&format!("{url}/perps/stream/user?intervalMs=100")).await;
    let started = tokio::time::Instant::now();
    assert_eq!(raw.next().await.event.as_deref(), Some("snapshot"));
    for _ in 0..2 {
        let b = raw.next().await;
        assert_eq!(b.comment.as_deref(), Some("heartbeat"));
        assert!(b.event.is_none() && b.data.is_none());
    }
    assert!(started.elapsed() >= Duration::from_millis(390));
    assert!(raw.buf.is_empty());
    h.set_faults(Faults {
        stop_heartbeats: true,
        ..Faults::default()
    });
    // One heartbeat may already be on its way; after that, silence.
    let mut extra = 0;
    while let Ok(b) = raw.try_next(Duration::from_millis(450)).await {
        extra += 1;
        assert!(b.unwrap().comment.is_some());
    }
    assert!(extra <= 1);
    // Stopping heartbeats does not stop events.
    let trades = h.truth().trades.len();
    while h.truth().trades.len() == trades {
        h.step();
    }
    assert_eq!(raw.next().await.event.as_deref(), Some("delta"));
}

#[tokio::test]
async fn drop_every_closes_the_body_after_n_events() {
    let sim = start(
        SimConfig {
            faults: Faults {
                drop_every: Some(3),
                ..Faults::default()
            },
            ..cfg()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .unwrap();
    let mut raw = Raw::open(&format!(
        "{}/perps/stream/user?intervalMs=100",
        sim.base_url()
    ))
    .await;
    let mut events = Vec::new();
    while let Some(b) = raw.try_next(Duration::from_millis(1500)).await.unwrap() {
        if b.is_event() {
            events.push(b);
        }
    }
    let names: Vec<_> = events.iter().map(|b| b.event.as_deref().unwrap()).collect();
    assert_eq!(names, ["snapshot", "delta", "delta"]);
    assert_eq!(sim.handle.stream_connections(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn skip_seq_every_makes_every_nth_delta_jump_by_two() {
    let sim = start(
        SimConfig {
            faults: Faults {
                skip_seq_every: Some(2),
                ..Faults::default()
            },
            ..cfg()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .unwrap();
    let mut raw = Raw::open(&format!(
        "{}/perps/stream/user?intervalMs=100",
        sim.base_url()
    ))
    .await;
    let s = raw.next_event().await.seq();
    let seqs = [
        raw.next_event().await.seq(),
        raw.next_event().await.seq(),
        raw.next_event().await.seq(),
    ];
    assert_eq!(seqs, [s + 1, s + 3, s + 4]);
    sim.shutdown().await;
}

#[tokio::test]
async fn error_every_injects_error_events_without_consuming_a_seq() {
    let faults = Faults {
        error_every: Some(2),
        error_retryable: true,
        ..Faults::default()
    };
    let sim = start(SimConfig { faults, ..cfg() }, ([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let mut raw = Raw::open(&format!(
        "{}/perps/stream/user?intervalMs=100",
        sim.base_url()
    ))
    .await;
    let snap = raw.next_event().await;
    let err = raw.next_event().await;
    assert_eq!(err.event.as_deref(), Some("error"));
    assert_eq!(err.id, None);
    assert_eq!(
        err.json(),
        serde_json::json!({"code":"UPSTREAM_UNAVAILABLE","message":"simulated upstream failure","retryable":true})
    );
    let delta = raw.next_event().await;
    assert_eq!(delta.event.as_deref(), Some("delta"));
    assert_eq!(delta.seq(), snap.seq() + 1);
    sim.handle.set_faults(Faults {
        error_every: Some(1),
        error_retryable: false,
        ..Faults::default()
    });
    let err = raw.next_event().await;
    assert_eq!(err.json()["retryable"], false);
    sim.shutdown().await;
}

#[tokio::test]
async fn malformed_every_sends_unparseable_deltas_without_consuming_a_seq() {
    let faults = Faults {
        malformed_every: Some(2),
        ..Faults::default()
    };
    let sim = start(SimConfig { faults, ..cfg() }, ([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let mut raw = Raw::open(&format!(
        "{}/perps/stream/user?intervalMs=100",
        sim.base_url()
    ))
    .await;
    let snap = raw.next_event().await;
    let bad = raw.next_event().await;
    assert_eq!(bad.event.as_deref(), Some("delta"));
    assert_eq!(bad.id, None);
    assert!(serde_json::from_str::<Value>(bad.data.as_deref().unwrap()).is_err());
    let good = raw.next_event().await;
    assert_eq!(good.seq(), snap.seq() + 1);
    let bad = raw.next_event().await;
    assert!(serde_json::from_str::<Value>(bad.data.as_deref().unwrap()).is_err());
    sim.shutdown().await;
}

#[tokio::test]
async fn silent_after_goes_quiet_but_keeps_the_connection_open() {
    let faults = Faults {
        silent_after: Some(2),
        ..Faults::default()
    };
    let sim = start(
        SimConfig {
            faults,
            heartbeat_interval: Duration::from_millis(100),
            ..cfg()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .unwrap();
    let mut raw = Raw::open(&format!(
        "{}/perps/stream/user?intervalMs=100",
        sim.base_url()
    ))
    .await;
    assert_eq!(raw.next_event().await.event.as_deref(), Some("snapshot"));
    assert_eq!(raw.next_event().await.event.as_deref(), Some("delta"));
    // Neither events nor heartbeats, and no end of body either.
    assert!(raw.try_next(Duration::from_millis(600)).await.is_err());
    // Clearing the fault resumes the same connection.
    sim.handle.set_faults(Faults::default());
    assert_eq!(raw.next_event().await.event.as_deref(), Some("delta"));
    sim.shutdown().await;
}

#[tokio::test]
async fn http_status_fault_answers_streams_and_rest_with_retry_after() {
    let (url, h) = still(cfg()).await;
    let client = reqwest::Client::new();
    h.set_faults(Faults {
        http_status: Some(429),
        retry_after_secs: Some(7),
        ..Faults::default()
    });
    for path in [
        "/perps/stream/user",
        "/perps/stream/events?marketId=BTC-PERP",
        "/perps/positions",
        "/perps/balances",
    ] {
        let r = client.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 429, "{path}");
        assert_eq!(r.headers()["retry-after"], "7");
        let body: Value = body_json(r).await;
        assert_eq!(body["error"], "RATE_LIMITED");
        assert!(body["message"].is_string());
    }
    h.set_faults(Faults {
        http_status: Some(503),
        retry_after_secs: Some(2),
        ..Faults::default()
    });
    let r = client
        .get(format!("{url}/perps/trades"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
    h.set_faults(Faults {
        http_status: Some(500),
        retry_after_secs: Some(2),
        ..Faults::default()
    });
    let r = client
        .get(format!("{url}/perps/stream/user"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.headers().get("retry-after").is_none());
    assert_eq!(h.stream_connections(), 0);
    assert_eq!(h.requests(), 6);
}

#[tokio::test]
async fn api_key_is_required_in_one_of_three_forms() {
    let (url, h) = still(SimConfig {
        api_key: Some("ocx_sk_secret".into()),
        ..cfg()
    })
    .await;
    let client = reqwest::Client::new();
    for path in ["/perps/stream/user", "/perps/positions"] {
        let r = client.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let body: Value = body_json(r).await;
        assert_eq!(
            body,
            serde_json::json!({"error":"UNAUTHORIZED","message":"missing or invalid API key"})
        );
        let r = client
            .get(format!("{url}{path}"))
            .header("x-api-key", "nope")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        for (name, value) in [
            ("x-api-key", "ocx_sk_secret"),
            ("authorization", "Bearer ocx_sk_secret"),
            ("cookie", "theme=dark; astra_session=ocx_sk_secret"),
        ] {
            let r = client
                .get(format!("{url}{path}"))
                .header(name, value)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path} {name}");
        }
    }
    assert_eq!(h.stream_connections(), 3);
    // The index page is public.
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("/perps/stream/events"));
}

#[tokio::test]
async fn rest_endpoints_agree_with_the_truth() {
    let (url, h) = still(SimConfig {
        seed: 12,
        warmup_steps: 600,
        ..cfg()
    })
    .await;
    let truth = h.truth();
    let get = |path: &str| {
        let url = format!("{url}{path}");
        async move { body_json(reqwest::get(url).await.unwrap()).await }
    };
    let mut positions = Folded::new();
    for p in get("/perps/positions").await.as_array().unwrap() {
        fold_position(&mut positions, p);
    }
    assert_eq!(positions, truth_positions(&truth));

    let trades = get("/perps/trades").await;
    let trades = trades.as_array().unwrap();
    assert!(truth.trades.len() > 200);
    assert_eq!(trades.len(), 200);
    assert_eq!(
        trades.last().unwrap()["id"].as_str(),
        Some(truth.trades.last().unwrap().id.as_str())
    );

    let orders = get("/perps/orders/open").await;
    let orders = orders.as_array().unwrap();
    assert_eq!(orders.len(), 12);
    let btc_buy = &orders[0];
    assert_eq!(btc_buy["marketId"], "BTC-PERP");
    assert_eq!(btc_buy["side"], "buy");
    assert_eq!(btc_buy["status"], "open");
    assert_eq!(dec(&btc_buy["price"]), truth.books["BTC-PERP"].bids[0].0);

    let b = get("/perps/balances").await;
    let (equity, im, mm) = (
        dec(&b["equity"]),
        dec(&b["initialMargin"]),
        dec(&b["maintenanceMargin"]),
    );
    assert_eq!(dec(&b["availableBalance"]), equity - im);
    assert!(mm < im && im > Decimal::ZERO);
    assert_eq!(dec(&b["marginUsage"]), (im / equity).round_dp(4));
}

#[tokio::test]
async fn millis_timestamps_are_numbers() {
    let (url, _h) = still(SimConfig {
        timestamps: TsFormat::Millis,
        ..cfg()
    })
    .await;
    let mut raw = Raw::open(&format!("{url}/perps/stream/user")).await;
    let env = raw.next().await.json();
    let engine = env["engineTs"].as_i64().unwrap();
    assert!(engine > 1_700_000_000_000);
    assert!(env["sourceTs"].as_i64().unwrap() <= engine);
    assert!(env["payload"]["trades"][0]["createdAt"].is_i64());
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_a_reconnect_gets_a_fresh_snapshot_and_seq() {
    let sim = start(cfg(), ([127, 0, 0, 1], 0).into()).await.unwrap();
    let url = format!("{}/perps/stream/user?intervalMs=100", sim.base_url());
    let mut first = Raw::open(&url).await;
    let mut second = Raw::open(&url).await;
    let (a, b) = (first.next().await, second.next().await);
    assert_eq!(b.event.as_deref(), Some("snapshot"));
    assert!(
        b.seq() > a.seq() + 1000,
        "each connection starts its own sequence"
    );
    assert_eq!(sim.handle.stream_connections(), 2);
    tokio::time::timeout(Duration::from_secs(1), sim.shutdown())
        .await
        .expect("shutdown finishes");
    while let Some(_block) = first
        .try_next(Duration::from_secs(1))
        .await
        .expect("body ends")
    {}
}
