//! A hand-written exchange, independent of the simulator: exact bytes (CRLF, multi-line data, comments, a
//! malformed frame, an error event, a gap, a re-snapshot repeating trades), and every resulting value checked.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use ocx_sentinel::config::Auth;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn trade(
    id: &str,
    market: &str,
    side: &str,
    liq: &str,
    price: &str,
    qty: &str,
    at: &str,
) -> String {
    format!(
        r#"{{"id":"{id}","marketId":"{market}","side":"{side}","price":"{price}","quantity":"{qty}","liquidity":"{liq}","createdAt":"{at}"}}"#
    )
}

fn t1() -> String {
    trade(
        "T1",
        "BTC-PERP",
        "buy",
        "maker",
        "68000.5",
        "0.2",
        "2026-04-24T12:00:00.000Z",
    )
}
fn t2() -> String {
    trade(
        "T2",
        "BTC-PERP",
        "buy",
        "maker",
        "68001.5",
        "0.3",
        "2026-04-24T12:00:01.000Z",
    )
}
fn t3() -> String {
    trade(
        "T3",
        "BTC-PERP",
        "sell",
        "taker",
        "68010",
        "0.1",
        "2026-04-24T12:00:02.000Z",
    )
}
fn t4() -> String {
    trade(
        "T4",
        "ETH-PERP",
        "sell",
        "maker",
        "3500.25",
        "1",
        "2026-04-24T12:00:03.000Z",
    )
}
fn t5() -> String {
    trade(
        "T5",
        "ETH-PERP",
        "sell",
        "taker",
        "3499.75",
        "0.5",
        "2026-04-24T12:00:04.000Z",
    )
}
fn t6() -> String {
    trade(
        "T6",
        "BTC-PERP",
        "buy",
        "maker",
        "68020",
        "0.25",
        "2026-04-24T12:00:05.000Z",
    )
}

fn envelope(kind: &str, seq: u64, payload: &str) -> String {
    let ty = if kind == "snapshot" {
        "PerpStreamSnapshot"
    } else {
        "PerpStreamDelta"
    };
    format!(
        r#"{{"eventId":"e{seq}","eventType":"{ty}","eventSeq":{seq},"engineTs":"2026-04-24T12:00:06.000Z","sourceTs":null,"payload":{payload}}}"#
    )
}

/// One SSE event with CRLF line ends; `split_after` breaks the data over two `data:` lines at the
/// first comma after that offset (the joining newline must fall between JSON tokens, not inside
/// a string).
fn event(name: &str, data: &str, split_after: Option<usize>) -> String {
    let split = split_after.and_then(|i| data[i..].find(',').map(|j| i + j + 1));
    match split {
        Some(i) => format!(
            "event: {name}\r\ndata: {}\r\ndata: {}\r\n\r\n",
            &data[..i],
            &data[i..]
        ),
        None => format!("event: {name}\r\ndata: {data}\r\n\r\n"),
    }
}

fn first_connection() -> String {
    let p1 = r#"{"id":"p1","marketId":"BTC-PERP","side":"long","quantity":"0.5","entryPrice":"68000","realizedPnl":"10","status":"open"}"#;
    let snap = envelope(
        "snapshot",
        100,
        &format!(r#"{{"positions":[{p1}],"trades":[{},{}]}}"#, t1(), t2()),
    );
    let p1b = r#"{"id":"p1","marketId":"BTC-PERP","side":"LONG","quantity":"0.7","entryPrice":"68100","realizedPnl":"12.5","status":"open"}"#;
    let d101 = envelope(
        "delta",
        101,
        &format!(
            r#"{{"trades":[{}],"positions":{{"upserts":[{p1b}],"removedIds":[]}}}}"#,
            t3()
        ),
    );
    let d102 = envelope("delta", 102, &format!(r#"{{"trades":[{}]}}"#, t4()));
    let d105 = envelope("delta", 105, &format!(r#"{{"trades":[{}]}}"#, t5()));
    let mut s = String::new();
    s.push_str(":heartbeat\r\n\r\n");
    s.push_str(&event("snapshot", &snap, Some(40)));
    s.push_str(": just a comment\r\n");
    s.push_str(&event("delta", &d101, Some(60)));
    s.push_str("event: delta\r\ndata: {\"eventSeq\": 102, \"payload\": {\r\n\r\n"); // malformed JSON
    s.push_str(":heartbeat\r\n\r\n");
    s.push_str(&event(
        "error",
        r#"{"code":"UPSTREAM_SLOW","message":"book lagging","retryable":false}"#,
        None,
    ));
    s.push_str(&event("update", &d102, None)); // `update` is the streaming page's name for delta
    s.push_str(&event("delta", &d105, None)); // 103 and 104 never arrive
    s.push_str(":heartbeat\r\n\r\n"); // after the gap: never read
    s
}

fn second_connection() -> String {
    let p1 = r#"{"id":"p1","marketId":"BTC-PERP","side":"long","quantity":"0.7","entryPrice":"68100","realizedPnl":"12.5","status":"open"}"#;
    let p2 = r#"{"id":"p2","marketId":"ETH-PERP","side":"short","quantity":"1.5","entryPrice":"3500","realizedPnl":"-3","status":"open"}"#;
    let trades = [t1(), t2(), t3(), t4(), t5()].join(",");
    let snap = envelope(
        "snapshot",
        500,
        &format!(r#"{{"positions":[{p1},{p2}],"trades":[{trades}]}}"#),
    );
    let d501 = envelope(
        "delta",
        501,
        &format!(r#"{{"trades":[{},{}]}}"#, t5(), t6()),
    );
    let mut s = String::new();
    s.push_str(&event("snapshot", &snap, Some(100)));
    s.push_str(":heartbeat\r\n\r\n");
    s.push_str(&event("delta", &d501, None));
    s
}

/// Serve the two scripts on consecutive connections; the second stays open.
async fn serve(listener: TcpListener, scripts: Vec<String>) {
    let mut held = Vec::new();
    for (i, script) in scripts.into_iter().enumerate() {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let mut buf = vec![0u8; 4096];
        let mut req = Vec::new();
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
        }
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
        let _ = sock.write_all(head.as_bytes()).await;
        // Write in small pieces so frames straddle reads, as on a real network.
        for chunk in script.as_bytes().chunks(37) {
            let _ = sock.write_all(chunk).await;
            let _ = sock.flush().await;
        }
        if i == 0 {
            let _ = sock.shutdown().await;
        } else {
            held.push(sock);
        }
    }
    // Keep the last connection open until the test ends; refuse nothing else.
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_of_a_scripted_session_is_exact() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let scripts = vec![first_connection(), second_connection()];
    let bytes: usize = scripts.iter().map(String::len).sum();
    let server = tokio::spawn(serve(listener, scripts));
    let car = start_sidecar(settings(&base, Auth::None, &[])).await;
    let url = car.base_url();
    let u = r#"account="t",stream="user""#;
    let m = wait_for(
        &url,
        Duration::from_secs(10),
        "second connection's delta applied",
        |m| get(m, &format!("ocx_stream_last_sequence{{{u}}}")) == Some(501.0),
    )
    .await;

    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    let mut w = |k: &str, v: f64| {
        want.insert(k.to_string(), v);
    };
    w(&format!("ocx_stream_up{{{u}}}"), 1.0);
    w(&format!("ocx_stream_connects_total{{{u}}}"), 2.0);
    w(
        &format!(r#"ocx_stream_reconnects_total{{{u},reason="gap"}}"#),
        1.0,
    );
    w(
        &format!(r#"ocx_stream_reconnects_total{{{u},reason="eof"}}"#),
        0.0,
    );
    w(
        &format!(r#"ocx_stream_events_total{{{u},type="snapshot"}}"#),
        2.0,
    );
    w(
        &format!(r#"ocx_stream_events_total{{{u},type="delta"}}"#),
        5.0,
    );
    w(
        &format!(r#"ocx_stream_events_total{{{u},type="error"}}"#),
        1.0,
    );
    w(
        &format!(r#"ocx_stream_events_total{{{u},type="unknown"}}"#),
        0.0,
    );
    w(
        &format!("ocx_stream_received_bytes_total{{{u}}}"),
        bytes as f64,
    );
    w(&format!("ocx_stream_heartbeats_total{{{u}}}"), 3.0);
    w(&format!("ocx_stream_last_sequence{{{u}}}"), 501.0);
    w(&format!("ocx_stream_sequence_gaps_total{{{u}}}"), 1.0);
    w(&format!("ocx_stream_missed_events_total{{{u}}}"), 2.0);
    w(&format!("ocx_stream_duplicate_events_total{{{u}}}"), 0.0);
    w(
        &format!(r#"ocx_stream_errors_total{{{u},code="UPSTREAM_SLOW",retryable="false"}}"#),
        1.0,
    );
    w(
        &format!(r#"ocx_stream_decode_errors_total{{{u},kind="json"}}"#),
        1.0,
    );
    w(
        &format!(r#"ocx_stream_decode_errors_total{{{u},kind="schema"}}"#),
        0.0,
    );
    w(
        &format!(r#"ocx_stream_decode_errors_total{{{u},kind="sse"}}"#),
        0.0,
    );
    w(&format!("ocx_stream_event_lag_seconds_count{{{u}}}"), 5.0);
    let a = r#"account="t""#;
    let fl = |m: &str, s: &str, l: &str| format!(r#"{a},market="{m}",side="{s}",liquidity="{l}""#);
    w(
        &format!("ocx_fills_total{{{}}}", fl("BTC-PERP", "buy", "maker")),
        3.0,
    );
    w(
        &format!("ocx_fills_total{{{}}}", fl("BTC-PERP", "sell", "taker")),
        1.0,
    );
    w(
        &format!("ocx_fills_total{{{}}}", fl("ETH-PERP", "sell", "maker")),
        1.0,
    );
    w(
        &format!("ocx_fills_total{{{}}}", fl("ETH-PERP", "sell", "taker")),
        1.0,
    );
    w(
        &format!(
            "ocx_fill_quantity_total{{{}}}",
            fl("BTC-PERP", "buy", "maker")
        ),
        0.75,
    );
    // 68000.5*0.2 + 68001.5*0.3 + 68020*0.25 = 13600.1 + 20400.45 + 17005
    w(
        &format!(
            "ocx_fill_notional_total{{{}}}",
            fl("BTC-PERP", "buy", "maker")
        ),
        51005.55,
    );
    w(
        &format!(
            "ocx_fill_notional_total{{{}}}",
            fl("BTC-PERP", "sell", "taker")
        ),
        6801.0,
    );
    w(
        &format!(
            "ocx_fill_notional_total{{{}}}",
            fl("ETH-PERP", "sell", "maker")
        ),
        3500.25,
    );
    w(
        &format!(
            "ocx_fill_notional_total{{{}}}",
            fl("ETH-PERP", "sell", "taker")
        ),
        1749.875,
    );
    w(
        &format!(r#"ocx_fills_deduplicated_total{{{a},reason="snapshot_replay"}}"#),
        4.0,
    );
    w(
        &format!(r#"ocx_fills_deduplicated_total{{{a},reason="duplicate"}}"#),
        1.0,
    );
    w(
        &format!(r#"ocx_last_fill_timestamp_seconds{{{a},market="BTC-PERP"}}"#),
        1_777_032_005.0,
    );
    w(
        &format!(r#"ocx_last_fill_timestamp_seconds{{{a},market="ETH-PERP"}}"#),
        1_777_032_004.0,
    );
    w(
        &format!(r#"ocx_position_quantity{{{a},market="BTC-PERP"}}"#),
        0.7,
    );
    w(
        &format!(r#"ocx_position_quantity{{{a},market="ETH-PERP"}}"#),
        -1.5,
    );
    w(
        &format!(r#"ocx_position_entry_price{{{a},market="BTC-PERP"}}"#),
        68100.0,
    );
    w(
        &format!(r#"ocx_position_entry_price{{{a},market="ETH-PERP"}}"#),
        3500.0,
    );
    w(
        &format!(r#"ocx_position_realized_pnl{{{a},market="BTC-PERP"}}"#),
        12.5,
    );
    w(
        &format!(r#"ocx_position_realized_pnl{{{a},market="ETH-PERP"}}"#),
        -3.0,
    );
    w(&format!("ocx_positions_open{{{a}}}"), 2.0);
    // p1 was in the first snapshot (baseline 10) and rose to 12.5; p2 appeared later at -3.
    w(
        &format!(r#"ocx_realized_profit_total{{{a},market="BTC-PERP"}}"#),
        2.5,
    );
    w(
        &format!(r#"ocx_realized_loss_total{{{a},market="ETH-PERP"}}"#),
        3.0,
    );
    w(
        r#"ocx_sentinel_label_values_folded_total{label="market"}"#,
        0.0,
    );

    let mut wrong = Vec::new();
    for (k, v) in &want {
        match get(&m, k) {
            Some(got) if got == *v => {}
            got => wrong.push(format!("{k}: want {v}, got {got:?}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // No unrealized PnL without a book; a market with realized changes has both counters.
    assert!(
        !m.keys()
            .any(|k| k.starts_with("ocx_position_unrealized_pnl"))
    );
    assert_eq!(
        get(
            &m,
            r#"ocx_realized_loss_total{account="t",market="BTC-PERP"}"#
        ),
        Some(0.0)
    );
    car.shutdown().await;
    server.abort();
}
