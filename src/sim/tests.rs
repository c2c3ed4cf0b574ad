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
    for path in ["/perps/stream/user", "/perps/positions", "/portfolio/me"] {
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
    assert_eq!(h.rest_requests("/portfolio/me"), 5);
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
    assert_eq!(dec(&b["marginUsage"]), (im / equity).round_dp(6));
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

fn trade_number(id: &str) -> u64 {
    id.strip_prefix("t-").unwrap().parse().unwrap()
}

fn ids_of(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

/// A `/perps/positions` body (or a snapshot's positions) in truth form.
fn positions_of(v: &Value) -> Vec<TruthPosition> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let qty = dec(&p["quantity"]);
            assert_eq!(p["status"], "open");
            TruthPosition {
                id: p["id"].as_str().unwrap().to_string(),
                market: p["marketId"].as_str().unwrap().to_string(),
                quantity: if p["side"] == "long" { qty } else { -qty },
                entry_price: dec(&p["entryPrice"]),
                realized_pnl: dec(&p["realizedPnl"]),
            }
        })
        .collect()
}

async fn get_json(url: &str, path: &str) -> Value {
    let r = reqwest::get(format!("{url}{path}")).await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    body_json(r).await
}

/// Steps the world until it holds at least `n` more trades than now.
fn step_trades(h: &SimHandle, n: usize) {
    let target = h.truth().trades.len() + n;
    while h.truth().trades.len() < target {
        h.step();
    }
}

/// Reads deltas, checking each streamed trade against `expected` in order, until all of them came
/// and the folded positions equal `want`.
async fn read_until(
    raw: &mut Raw,
    expected: &[String],
    positions: &mut Folded,
    want: &Folded,
) -> Vec<String> {
    let mut streamed = Vec::new();
    while streamed.len() < expected.len() || positions != want {
        let d = raw.next_event().await;
        assert_eq!(d.event.as_deref(), Some("delta"));
        let p = &d.json()["payload"];
        for t in p["trades"].as_array().into_iter().flatten() {
            let id = t["id"].as_str().unwrap().to_string();
            assert_eq!(
                Some(&id),
                expected.get(streamed.len()),
                "streamed {streamed:?}"
            );
            streamed.push(id);
        }
        for u in p["positions"]["upserts"].as_array().into_iter().flatten() {
            fold_position(positions, u);
        }
        for r in p["positions"]["removedIds"]
            .as_array()
            .into_iter()
            .flatten()
        {
            positions.remove(r.as_str().unwrap());
        }
    }
    streamed
}

#[tokio::test]
async fn drop_fill_every_hides_fills_from_every_stream_but_not_from_rest_trades() {
    let (url, h) = still(SimConfig {
        seed: 21,
        faults: Faults {
            drop_fill_every: Some(3),
            ..Faults::default()
        },
        ..cfg()
    })
    .await;
    let truth = h.truth();
    let ids = |t: &Truth| t.trades.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
    let every_third: Vec<String> = ids(&truth)
        .into_iter()
        .filter(|id| trade_number(id).is_multiple_of(3))
        .collect();
    assert!(every_third.len() >= 3, "warmup hides some fills already");
    assert_eq!(truth.hidden_trade_ids, every_third);
    let visible = |t: &Truth, from: usize| -> Vec<String> {
        t.trades[from..]
            .iter()
            .filter(|x| !t.hidden_trade_ids.contains(&x.id))
            .map(|x| x.id.clone())
            .collect()
    };

    let mut user = Raw::open(&format!("{url}/perps/stream/user?intervalMs=100")).await;
    let snap = user.next().await.json();
    assert_eq!(ids_of(&snap["payload"]["trades"]), visible(&truth, 0));
    let mut positions = Folded::new();
    for p in snap["payload"]["positions"].as_array().unwrap() {
        fold_position(&mut positions, p);
    }
    assert_eq!(positions, truth_positions(&truth));
    let mut btc = Raw::open(&format!(
        "{url}/perps/stream/events?marketId=BTC-PERP&depth=5&intervalMs=100"
    ))
    .await;
    let btc_visible = |t: &Truth, from: usize| -> Vec<String> {
        let v = visible(t, from);
        t.trades
            .iter()
            .filter(|x| x.market == "BTC-PERP" && v.contains(&x.id))
            .map(|x| x.id.clone())
            .collect()
    };
    let snap = btc.next().await.json();
    assert_eq!(ids_of(&snap["payload"]["trades"]), btc_visible(&truth, 0));

    // New fills: the hidden ones never arrive, but the positions they moved do.
    let before = truth.trades.len();
    step_trades(&h, 12);
    let target = h.truth();
    assert!(target.hidden_trade_ids.len() >= every_third.len() + 4);
    let want = truth_positions(&target);
    let streamed = read_until(&mut user, &visible(&target, before), &mut positions, &want).await;
    assert_eq!(streamed.len(), target.trades.len() - before - 4);
    let mut btc_streamed = Vec::new();
    let btc_expected = btc_visible(&target, before);
    assert!(!btc_expected.is_empty());
    assert!(
        target.trades[before..]
            .iter()
            .any(|t| t.market == "BTC-PERP" && target.hidden_trade_ids.contains(&t.id)),
        "a BTC fill is hidden too"
    );
    while btc_streamed.len() < btc_expected.len() {
        let d = btc.next_event().await.json();
        btc_streamed.extend(ids_of(&d["payload"]["trades"]));
    }
    assert_eq!(btc_streamed, btc_expected);

    // REST has every fill, hidden ones included, newest last.
    let rest = get_json(&url, "/perps/trades").await;
    assert!(target.trades.len() < 200);
    assert_eq!(ids_of(&rest), ids(&target));

    // Turning the fault off hides nothing new, and what was hidden stays hidden.
    h.set_faults(Faults::default());
    let before = target.trades.len();
    step_trades(&h, 6);
    let after = h.truth();
    assert_eq!(after.hidden_trade_ids, target.hidden_trade_ids);
    let all_new: Vec<String> = ids(&after)[before..].to_vec();
    let want = truth_positions(&after);
    let streamed = read_until(&mut user, &all_new, &mut positions, &want).await;
    assert_eq!(streamed, all_new);
}

#[tokio::test]
async fn rest_position_offset_moves_rest_positions_only_and_creates_and_removes_the_rest_one() {
    let (url, h) = still(SimConfig {
        seed: 22,
        warmup_steps: 0,
        ..cfg()
    })
    .await;
    assert!(h.truth().positions.is_empty());
    let offset = Decimal::from_str("-0.25").unwrap();
    h.set_faults(Faults {
        rest_position_offset: Some(("BTC-PERP".into(), offset)),
        ..Faults::default()
    });
    let truth = h.truth();
    let mid = truth.books["BTC-PERP"].mid;
    let rest_only = TruthPosition {
        id: "p-BTC-PERP-rest".into(),
        market: "BTC-PERP".into(),
        quantity: offset,
        entry_price: mid,
        realized_pnl: Decimal::ZERO,
    };
    assert_eq!(truth.rest_positions, vec![rest_only]);
    assert_eq!(
        get_json(&url, "/perps/positions").await,
        serde_json::json!([{"id":"p-BTC-PERP-rest","marketId":"BTC-PERP","side":"short",
            "quantity":"0.25","entryPrice":mid.to_string(),"realizedPnl":"0","status":"open"}])
    );
    let me = get_json(&url, "/portfolio/me").await;
    assert_eq!(
        me["positions"],
        serde_json::json!([{"marketId":"BTC-PERP","side":"short","quantity":"0.25",
            "avgPrice":mid.to_string(),"markPrice":mid.to_string(),"unrealizedPnl":"0",
            "realizedPnl":"0","fundingPayment":"0","marginMode":"cross"}])
    );
    let stream_positions = |url: String| async move {
        let mut raw = Raw::open(&format!("{url}/perps/stream/user")).await;
        positions_of(&raw.next().await.json()["payload"]["positions"])
    };
    assert_eq!(stream_positions(url.clone()).await, vec![]);

    // Once the world holds BTC, the offset applies to that position under its own id.
    while !h.truth().positions.iter().any(|p| p.market == "BTC-PERP") {
        h.step();
    }
    let truth = h.truth();
    let mut expected = truth.positions.clone();
    let btc = expected
        .iter()
        .position(|p| p.market == "BTC-PERP")
        .unwrap();
    expected[btc].quantity += offset;
    if expected[btc].quantity.is_zero() {
        expected.remove(btc);
    }
    assert_eq!(truth.rest_positions, expected);
    assert_eq!(
        positions_of(&get_json(&url, "/perps/positions").await),
        expected
    );
    assert_eq!(stream_positions(url.clone()).await, truth.positions);

    // An offset cancelling the position exactly removes it from REST, and from REST only.
    let world_btc = truth.positions[btc].clone();
    h.set_faults(Faults {
        rest_position_offset: Some(("BTC-PERP".into(), -world_btc.quantity)),
        ..Faults::default()
    });
    let truth = h.truth();
    let without: Vec<_> = truth
        .positions
        .iter()
        .filter(|p| p.market != "BTC-PERP")
        .cloned()
        .collect();
    assert_eq!(truth.rest_positions, without);
    assert_eq!(
        positions_of(&get_json(&url, "/perps/positions").await),
        without
    );
    let me = get_json(&url, "/portfolio/me").await;
    assert!(
        me["positions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["marketId"] != "BTC-PERP")
    );
    assert!(stream_positions(url.clone()).await.contains(&world_btc));
}

#[tokio::test]
async fn rest_status_answers_rest_reads_only_and_only_the_listed_endpoints() {
    let (url, h) = still(cfg()).await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{url}{path}")).send();
    h.set_faults(Faults {
        rest_status: Some(429),
        ..Faults::default()
    });
    for path in server::REST_PATHS {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 429, "{path}");
        assert_eq!(r.headers()["retry-after"], "1");
        let body = body_json(r).await;
        assert_eq!(body["error"], "RATE_LIMITED");
        assert_eq!(body["retryAfterMs"], 1000);
        assert_eq!(h.rest_requests(path), 1);
    }
    let mut user = Raw::open(&format!("{url}/perps/stream/user")).await;
    assert_eq!(user.next().await.event.as_deref(), Some("snapshot"));
    let mut ev = Raw::open(&format!("{url}/perps/stream/events?marketId=SOL-PERP")).await;
    assert_eq!(ev.next().await.event.as_deref(), Some("snapshot"));
    assert_eq!(h.stream_connections(), 2);
    assert_eq!(h.rest_requests("/perps/stream/user"), 0);

    h.set_faults(Faults {
        rest_status: Some(503),
        retry_after_secs: Some(4),
        rest_status_endpoints: vec!["/perps/balances".into()],
        ..Faults::default()
    });
    let r = get("/perps/balances").await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "4");
    assert_eq!(body_json(r).await["error"], "UPSTREAM_UNAVAILABLE");
    for path in [
        "/perps/positions",
        "/perps/trades",
        "/perps/orders/open",
        "/portfolio/me",
    ] {
        assert_eq!(get(path).await.unwrap().status(), 200, "{path}");
    }

    h.set_faults(Faults {
        rest_status: Some(500),
        retry_after_secs: Some(4),
        rest_status_endpoints: vec!["/perps/trades".into(), "/portfolio/me".into()],
        ..Faults::default()
    });
    for (path, status) in [
        ("/perps/trades", 500),
        ("/portfolio/me", 500),
        ("/perps/balances", 200),
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert!(r.headers().get("retry-after").is_none());
    }
    h.set_faults(Faults {
        rest_status: Some(401),
        ..Faults::default()
    });
    let r = get("/perps/positions").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(body_json(r).await["error"], "UNAUTHORIZED");

    // http_status still answers both sides, and wins over rest_status.
    h.set_faults(Faults {
        http_status: Some(500),
        rest_status: Some(429),
        ..Faults::default()
    });
    assert_eq!(get("/perps/stream/user").await.unwrap().status(), 500);
    assert_eq!(get("/perps/positions").await.unwrap().status(), 500);
    assert_eq!(h.stream_connections(), 2);
    let counts: Vec<u64> = server::REST_PATHS
        .iter()
        .map(|p| h.rest_requests(p))
        .collect();
    // positions, trades, orders/open, balances, portfolio/me
    assert_eq!(counts, [4, 3, 2, 3, 3]);
    assert_eq!(h.rest_requests("/nope"), 0);
}

#[tokio::test]
async fn portfolio_me_agrees_with_balances_positions_and_the_truth() {
    let (url, h) = still(SimConfig {
        seed: 12,
        warmup_steps: 600,
        ..cfg()
    })
    .await;
    let world = h.truth();
    let first = &world.positions[0];
    // Doubling a position on REST keeps it non-zero and moves the margins.
    h.set_faults(Faults {
        rest_position_offset: Some((first.market.clone(), first.quantity)),
        ..Faults::default()
    });
    let truth = h.truth();
    assert_ne!(truth.rest_positions, truth.positions);
    assert_eq!(
        truth.rest_positions[0].quantity,
        first.quantity * Decimal::TWO
    );

    let b = get_json(&url, "/perps/balances").await;
    let me = get_json(&url, "/portfolio/me").await;
    let positions = get_json(&url, "/perps/positions").await;
    assert_eq!(positions_of(&positions), truth.rest_positions);
    let tb = &truth.balances;
    assert_eq!(
        b,
        serde_json::json!({
            "equity": tb.equity.to_string(),
            "availableBalance": tb.available_balance.to_string(),
            "initialMargin": tb.initial_margin.to_string(),
            "maintenanceMargin": tb.maintenance_margin.to_string(),
            "marginUsage": tb.margin_usage.to_string(),
        })
    );
    assert_eq!(tb.available_balance, tb.equity - tb.initial_margin);
    assert_eq!(tb.margin_usage, (tb.initial_margin / tb.equity).round_dp(6));

    assert_eq!(me["equity"], b["equity"]);
    assert_eq!(me["tradableBalance"], b["availableBalance"]);
    for key in ["initialMargin", "maintenanceMargin", "marginUsage"] {
        assert_eq!(me["margin"][key], b[key], "{key}");
    }
    assert_eq!(me["optionPositions"], serde_json::json!([]));
    assert_eq!(dec(&me["balances"]["walletBalance"]), Decimal::ZERO);
    assert_eq!(dec(&me["balances"]["optionsBalance"]), Decimal::ZERO);
    assert_eq!(
        dec(&me["balances"]["perpsBalance"]) + dec(&me["pnl"]["unrealized"]),
        tb.equity
    );
    assert!(me["pnl"]["realized24h"].is_string());

    let mut notional = Decimal::ZERO;
    let mut unrealized = Decimal::ZERO;
    let rows = me["positions"].as_array().unwrap();
    assert_eq!(rows.len(), truth.rest_positions.len());
    for (row, p) in rows.iter().zip(&truth.rest_positions) {
        let mark = truth.books[&p.market].mid;
        assert_eq!(row["marketId"].as_str(), Some(p.market.as_str()));
        assert_eq!(
            row["side"],
            if p.quantity > Decimal::ZERO {
                "long"
            } else {
                "short"
            }
        );
        assert_eq!(dec(&row["quantity"]), p.quantity.abs());
        assert_eq!(dec(&row["avgPrice"]), p.entry_price);
        assert_eq!(dec(&row["markPrice"]), mark);
        let pnl = (p.quantity * (mark - p.entry_price)).round_dp(2);
        assert_eq!(dec(&row["unrealizedPnl"]), pnl);
        assert_eq!(dec(&row["realizedPnl"]), p.realized_pnl);
        assert_eq!(row["fundingPayment"], "0");
        assert_eq!(row["marginMode"], "cross");
        notional += p.quantity.abs() * mark;
        unrealized += pnl;
    }
    assert_eq!(dec(&me["pnl"]["unrealized"]), unrealized);
    assert_eq!(tb.initial_margin, (notional / Decimal::TEN).round_dp(2));
    assert_eq!(
        tb.maintenance_margin,
        (notional / Decimal::from(20)).round_dp(2)
    );
}

#[tokio::test]
async fn streams_opened_at_different_times_get_the_same_change_at_the_same_instant() {
    let (url, h) = still(cfg()).await;
    let stream = format!("{url}/perps/stream/user?intervalMs=200");
    let mut a = Raw::open(&stream).await;
    assert_eq!(a.next_event().await.event.as_deref(), Some("snapshot"));
    // Opened 130 ms into A's period: with a phase per connection the two would see each change
    // 70 or 130 ms apart.
    tokio::time::sleep(Duration::from_millis(130)).await;
    let mut b = Raw::open(&stream).await;
    assert_eq!(b.next_event().await.event.as_deref(), Some("snapshot"));
    for round in 0..3 {
        step_trades(&h, 1);
        let ((ta, da), (tb, db)) = tokio::join!(arrival(&mut a), arrival(&mut b));
        assert_eq!(da.event.as_deref(), Some("delta"));
        assert_eq!(db.event.as_deref(), Some("delta"));
        assert_eq!(
            da.json()["data"],
            db.json()["data"],
            "round {round}: the same change"
        );
        let apart = if ta > tb { ta - tb } else { tb - ta };
        assert!(
            apart < Duration::from_millis(40),
            "round {round}: the two streams got the change {apart:?} apart"
        );
    }
}

/// The next event and when it arrived.
async fn arrival(raw: &mut Raw) -> (tokio::time::Instant, Block) {
    let block = raw.next_event().await;
    (tokio::time::Instant::now(), block)
}
