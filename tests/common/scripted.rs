//! A hand-driven exchange for tests: its user stream writes whatever the test sends, when it sends it.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// An exchange whose user stream writes whatever the test sends, when it sends it.
pub async fn scripted_exchange() -> (String, mpsc::UnboundedSender<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        // One connection is all a test needs; later ones are held open and silent.
        let mut held = Vec::new();
        let mut first = true;
        loop {
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
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
            let _ = sock.write_all(head.as_bytes()).await;
            if !std::mem::take(&mut first) {
                held.push(sock);
                continue;
            }
            // Heartbeats keep the connection alive through a test's pauses (the tests'
            // heartbeat timeout is 2s), as the exchange's do.
            let mut beat = tokio::time::interval(std::time::Duration::from_millis(500));
            loop {
                let text = tokio::select! {
                    t = rx.recv() => match t {
                        Some(t) => t,
                        None => break,
                    },
                    _ = beat.tick() => ":heartbeat\n\n".to_string(),
                };
                if sock.write_all(text.as_bytes()).await.is_err() {
                    return;
                }
                let _ = sock.flush().await;
            }
            held.push(sock);
        }
    });
    (base, tx)
}

pub fn envelope(kind: &str, seq: u64, payload: &str) -> String {
    let ty = if kind == "snapshot" {
        "PerpStreamSnapshot"
    } else {
        "PerpStreamDelta"
    };
    let data = format!(
        r#"{{"eventId":"e{seq}","eventType":"{ty}","eventSeq":{seq},"engineTs":"2026-04-24T12:00:06.000Z","sourceTs":null,"payload":{payload}}}"#
    );
    format!("event: {kind}\ndata: {data}\n\n")
}

pub fn position(qty: &str) -> String {
    format!(
        r#"{{"id":"p1","marketId":"BTC-PERP","side":"long","quantity":"{qty}","entryPrice":"68000","realizedPnl":"0","status":"open"}}"#
    )
}

/// How a [`webhook`] answers one request.
pub enum Answer {
    /// 200, and the body goes to the test.
    Ok,
    /// This status line (e.g. `"500 Internal Server Error"`); the body is not handed over.
    Status(&'static str),
    /// Never answer; the connection is held until the client goes away.
    Hang,
}

/// A webhook receiver on 127.0.0.1: every request's body (JSON, `null` when it is not) and its
/// number (from 1) go to `answer`, which says what to do with it; bodies answered 200 reach
/// the returned channel.
pub async fn webhook(
    answer: impl Fn(usize, &serde_json::Value) -> Answer + Send + Sync + 'static,
) -> (String, mpsc::UnboundedReceiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let answer = std::sync::Arc::new(answer);
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (tx, answer, count) = (tx.clone(), answer.clone(), count.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(body) = read_request(&mut sock, &mut buf).await {
                    let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let status = match answer(n, &body) {
                        Answer::Ok => {
                            let _ = tx.send(body);
                            "200 OK"
                        }
                        Answer::Status(s) => s,
                        Answer::Hang => {
                            let _ = sock.read(&mut [0u8; 1]).await;
                            return;
                        }
                    };
                    let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                    if sock.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

/// Reads one HTTP/1.1 request (head and `content-length` body) from `sock`, keeping what
/// follows in `buf` for the next; `None` once the peer is gone.
pub async fn read_request(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                return Some(body);
            }
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A webhook receiver that answers 200 and hands every body to the test.
pub async fn recorder() -> (String, mpsc::UnboundedReceiver<serde_json::Value>) {
    webhook(|_, _| Answer::Ok).await
}
