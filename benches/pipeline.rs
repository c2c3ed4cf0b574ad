//! Throughput benchmark: a recorded stream of deltas through decode + fold + metrics, against serde_json alone.
//!
//! Run with `cargo bench`. It builds a stream of one snapshot and 100,000 deltas (trades,
//! position upserts and removals across 20 markets, in the wire format the simulator sends),
//! then times, over the same bytes:
//!   1. `serde_json` alone: each event's `data` parsed into a `serde_json::Value` (the ceiling);
//!   2. SSE decode only;
//!   3. the full pipeline: SSE decode, envelope parse, sequence check, fold, metric updates.
//!
//! It prints events/s for each and the ratio of the pipeline to the ceiling.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ocx_sentinel::account::AccountCell;
use ocx_sentinel::datadir::{DataDir, start_writer};
use ocx_sentinel::source::session::{Now, Session, StreamKind};
use ocx_sentinel::source::sse::{SseDecoder, SseItem};
use ocx_sentinel::state::Account;
use ocx_sentinel::telemetry::Telemetry;

const DELTAS: u64 = 100_000;
const MARKETS: usize = 20;
const CHUNK: usize = 16 * 1024;

fn record() -> (Vec<u8>, Vec<String>) {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut out = String::new();
    let mut datas = Vec::new();
    let ts = "2026-11-25T12:00:00.000Z";
    let mut push = |name: &str, data: String, out: &mut String| {
        out.push_str("event: ");
        out.push_str(name);
        out.push_str("\ndata: ");
        out.push_str(&data);
        out.push_str("\n\n");
        datas.push(data);
    };
    let snap = format!(
        r#"{{"eventId":"e0","eventType":"PerpStreamSnapshot","eventSeq":0,"engineTs":"{ts}","sourceTs":"{ts}","payload":{{"positions":[],"trades":[]}}}}"#
    );
    push("snapshot", snap, &mut out);
    for seq in 1..=DELTAS {
        let m = rng.usize(0..MARKETS);
        let side = if rng.bool() { "buy" } else { "sell" };
        let liq = if rng.bool() { "maker" } else { "taker" };
        let price = 1000 + rng.u32(0..1000);
        let qty = rng.u32(1..50);
        let pos_qty = rng.i32(-100..100);
        let payload = if seq % 50 == 0 {
            format!(r#"{{"positions":{{"upserts":[],"removedIds":["p-M{m}"]}}}}"#)
        } else {
            format!(
                r#"{{"trades":[{{"id":"t-{seq}","marketId":"M{m}","side":"{side}","price":"{price}.5","quantity":"0.{qty}","liquidity":"{liq}","createdAt":"{ts}"}}],"positions":{{"upserts":[{{"id":"p-M{m}","marketId":"M{m}","side":"long","quantity":"{pos_qty}.25","entryPrice":"{price}.0","realizedPnl":"{seq}.5","status":"open"}}],"removedIds":[]}}}}"#
            )
        };
        let data = format!(
            r#"{{"eventId":"e{seq}","eventType":"PerpStreamDelta","eventSeq":{seq},"engineTs":"{ts}","sourceTs":"{ts}","payload":{payload}}}"#
        );
        push("delta", data, &mut out);
        if seq % 1000 == 0 {
            out.push_str(":heartbeat\n\n");
        }
    }
    (out.into_bytes(), datas)
}

// A benchmark measures wall time by definition; the ban on Instant::now is for the product's core.
#[allow(clippy::disallowed_methods)]
fn best_of<F: FnMut() -> u64>(runs: usize, mut f: F) -> (Duration, u64) {
    let mut best = Duration::MAX;
    let mut n = 0;
    for _ in 0..runs {
        let t = Instant::now();
        n = f();
        best = best.min(t.elapsed());
    }
    (best, n)
}

fn main() {
    let (bytes, datas) = record();
    let events = datas.len() as u64;
    println!(
        "recorded stream: {} events, {:.1} MiB, {} markets, fed in {} KiB chunks",
        events,
        bytes.len() as f64 / 1048576.0,
        MARKETS,
        CHUNK / 1024
    );

    // PIPELINE_ONLY=1 runs the full pipeline alone (data dir off), for profiling it
    // (`perf record`).
    let only = std::env::var("PIPELINE_ONLY").is_ok_and(|v| v == "1");
    let runs = if only { 0 } else { 3 };
    let (t_json, _) = best_of(runs, || {
        let mut n = 0;
        for d in &datas {
            let v: serde_json::Value = serde_json::from_str(d).expect("recorded data is JSON");
            black_box(&v);
            n += 1;
        }
        n
    });

    let (t_sse, _) = best_of(runs, || {
        let mut dec = SseDecoder::default();
        let mut items = Vec::new();
        let mut n = 0;
        for chunk in bytes.chunks(CHUNK) {
            dec.feed(chunk, &mut items);
            n += items.len() as u64;
            items.clear();
        }
        n
    });

    // The pipeline, with the data dir off (`persist = false`) or on: fills and counters are then
    // journaled to a redb file by the group-commit writer thread, and the run ends when the last
    // commit is durable.
    let pipeline = |persist: bool| {
        let dir = std::env::temp_dir().join(format!("ocx-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let t = Telemetry::new();
        let writer = persist.then(|| {
            let (dd, _) = DataDir::open(&dir).expect("bench data dir opens");
            start_writer(dd, Arc::new(|_| {})).expect("writer starts")
        });
        let account = AccountCell::new(
            "bench",
            Account::new(100_000),
            t.account("bench", 500),
            &[],
            writer.clone(),
        );
        let mut m = t.stream("bench", "user", None);
        let mut s = Session::new(StreamKind::User);
        let mut dec = SseDecoder::default();
        let mut items = Vec::new();
        let now = Now {
            unix_ms: 1_795_000_000_000,
            mono: Duration::ZERO,
        };
        let mut n = 0;
        for chunk in bytes.chunks(CHUNK) {
            dec.feed(chunk, &mut items);
            for item in items.drain(..) {
                if matches!(item, SseItem::Event(_)) {
                    n += 1;
                }
                black_box(s.on_item(item, now, &account, &mut m));
            }
        }
        if let Some(w) = writer {
            w.stop(Duration::from_secs(60));
        }
        black_box(t.render().len());
        let _ = std::fs::remove_dir_all(&dir);
        n
    };
    let (t_full, applied) = best_of(3, || pipeline(false));
    assert_eq!(applied, events, "every event went through the pipeline");
    if only {
        println!(
            "pipeline: {:.0} events/s",
            events as f64 / t_full.as_secs_f64()
        );
        return;
    }

    let (t_persist, persisted) = best_of(3, || pipeline(true));
    assert_eq!(
        persisted, events,
        "every event went through the persisted pipeline"
    );

    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    println!();
    println!("| stage                                        | events/s   | µs/event |");
    println!("|----------------------------------------------|------------|----------|");
    for (name, d) in [
        ("serde_json::Value alone (ceiling)", t_json),
        ("SSE decode only", t_sse),
        ("decode + parse + seq + fold + metrics", t_full),
        ("the same, data dir on (redb, group commit)", t_persist),
    ] {
        println!(
            "| {name:<44} | {:>10.0} | {:>8.2} |",
            rate(d),
            d.as_secs_f64() * 1e6 / events as f64
        );
    }
    println!();
    println!(
        "pipeline / serde_json ceiling = {:.2} (1.00 means as fast as parsing JSON alone)",
        rate(t_full) / rate(t_json)
    );
    println!(
        "with the data dir on: {:.2} of the ceiling, {:.1}% slower than without",
        rate(t_persist) / rate(t_json),
        (t_persist.as_secs_f64() / t_full.as_secs_f64() - 1.0) * 100.0
    );
}
