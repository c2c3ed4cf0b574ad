//! The health listener over real sockets on loopback beside a main listener with TLS and basic auth: the probes answer without credentials and exactly as the main listener does, every other path is 404, and the main listener's deadlines and cap hold on it too.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::*;
use crate::server::AppState;
use crate::telemetry::names;
use crate::web::config::parse_str;

const USER: &str = "prometheus";
const PASSWORD: &str = "s3cret";

fn testdata() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/testdata")
}

/// TLS and one user: the main listener as a hardened deployment runs it.
fn guarded() -> WebState {
    let yaml = format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  {USER}: {}\n",
        bcrypt::hash(PASSWORD, 4).unwrap()
    );
    let c = parse_str(&yaml, "web.yml", &testdata()).unwrap();
    WebState::new(None, Some(Arc::new(c)))
}

fn streams() -> Streams {
    Arc::new(
        [("user", None), ("events", Some("BTC-PERP"))]
            .into_iter()
            .map(|(stream, market)| StreamStatus {
                account: "mm".into(),
                stream,
                market: market.map(str::to_string),
                ready: Arc::new(AtomicBool::new(false)),
            })
            .collect(),
    )
}

struct Both {
    main: SocketAddr,
    health: SocketAddr,
    telemetry: Telemetry,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Both {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("a listener outlived its stop")
                .unwrap();
        }
    }

    fn series(&self, name: &'static str, labels: &[(&str, &str)]) -> f64 {
        self.telemetry.counter(name, labels).get()
    }
}

/// The main listener (`server::router` behind `web`) and the health listener, sharing the
/// streams, the limits and the telemetry, as `app` starts them.
async fn start(web: WebState, streams: &Streams, limits: ListenerLimits) -> Both {
    let telemetry = Telemetry::new();
    let (stop, rx) = watch::channel(false);
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (main_addr, health_addr) = (main.local_addr().unwrap(), health.local_addr().unwrap());
    let router = crate::server::router(AppState {
        telemetry: telemetry.clone(),
        streams: streams.clone(),
        rules: None,
        am: None,
    });
    let (t, main_rx) = (telemetry.clone(), rx.clone());
    let web = Arc::new(web);
    let main_task = tokio::spawn(async move {
        crate::web::serve(main, router, web, limits, &t, main_rx).await;
    });
    let (t, s) = (telemetry.clone(), streams.clone());
    let health_task = tokio::spawn(async move {
        serve(health, s, limits, &t, rx).await;
    });
    Both {
        main: main_addr,
        health: health_addr,
        telemetry,
        stop,
        tasks: vec![main_task, health_task],
    }
}

fn https_client() -> reqwest::Client {
    let ca = std::fs::read(testdata().join("ca.pem")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
}

async fn answer(req: reqwest::RequestBuilder) -> (u16, String) {
    let r = req.send().await.expect("an answer");
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn probes_answer_on_the_health_listener_while_basic_auth_guards_the_main_one() {
    let streams = streams();
    let b = start(guarded(), &streams, ListenerLimits::default()).await;
    let main = format!("https://localhost:{}", b.main.port());
    let health = format!("http://{}", b.health);
    let (tls, plain) = (https_client(), reqwest::Client::new());
    let authed = |path: &str| {
        tls.get(format!("{main}{path}"))
            .basic_auth(USER, Some(PASSWORD))
    };

    // The main listener: every path needs the user, the health paths too.
    for path in ["/-/healthy", "/-/ready", "/metrics"] {
        let (code, _) = answer(tls.get(format!("{main}{path}"))).await;
        assert_eq!(code, 401, "main {path} without credentials");
    }
    // The health listener: no credentials, plain HTTP, the main listener's answers.
    assert_eq!(
        answer(plain.get(format!("{health}/-/healthy"))).await,
        (200, "OK\n".into())
    );
    assert_eq!(answer(authed("/-/healthy")).await, (200, "OK\n".into()));
    let head = plain
        .head(format!("{health}/-/healthy"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200, "HEAD, as a probe may send");
    let not_ready = (
        503,
        "not ready: waiting for a snapshot on mm/user, mm/events/BTC-PERP\n".to_string(),
    );
    assert_eq!(
        answer(plain.get(format!("{health}/-/ready"))).await,
        not_ready
    );
    assert_eq!(answer(authed("/-/ready")).await, not_ready);
    streams[0].ready.store(true, Ordering::Relaxed);
    let one_left = answer(plain.get(format!("{health}/-/ready"))).await;
    assert_eq!(one_left.0, 503);
    assert_eq!(one_left, answer(authed("/-/ready")).await);
    streams[1].ready.store(true, Ordering::Relaxed);
    assert_eq!(
        answer(plain.get(format!("{health}/-/ready"))).await,
        (200, "ready\n".into())
    );
    assert_eq!(answer(authed("/-/ready")).await, (200, "ready\n".into()));

    // Nothing else, with or without the credentials: no metrics, status page or API.
    for path in [
        "/metrics",
        "/",
        "/api/v1/alerts",
        "/api/v1/rules",
        "/api/v2/silences",
        "/api/v2/status",
        "/-/healthy/",
        "/-/readyz",
    ] {
        for creds in [false, true] {
            let mut req = plain.get(format!("{health}{path}"));
            if creds {
                req = req.basic_auth(USER, Some(PASSWORD));
            }
            let (code, body) = answer(req).await;
            assert_eq!(code, 404, "health {path} (credentials: {creds}): {body}");
            assert!(!body.contains("ocx_"), "{path}: {body}");
        }
    }
    let (code, _) = answer(plain.post(format!("{health}/-/reload"))).await;
    assert_eq!(code, 404, "no /-/reload on the health listener");
    let (code, _) = answer(plain.post(format!("{health}/-/healthy"))).await;
    assert_eq!(code, 405, "GET and HEAD only");
    // Never TLS, whatever the main listener's file says.
    assert!(
        tls.get(format!("https://localhost:{}/-/healthy", b.health.port()))
            .send()
            .await
            .is_err(),
        "the health listener spoke TLS"
    );
    // The main listener's answers all needed the user; the probes were never refused.
    assert_eq!(
        b.series(names::HTTP_REQUESTS_REFUSED, &[("reason", "unauthorized")]),
        3.0
    );
    b.stop().await;
}

/// A probe connection lives under the same deadlines and cap as a scrape's: a half request is
/// closed at the header deadline, and past `max_connections` the next waits in the backlog.
#[tokio::test]
async fn the_health_listener_keeps_the_main_listeners_deadlines_and_cap() {
    let limits = ListenerLimits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(30),
        tls_handshake_timeout: Duration::from_millis(300),
        max_connections: 1,
    };
    let b = start(guarded(), &streams(), limits).await;
    const PROBE: &[u8] = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n";
    async fn response(s: &mut TcpStream, within: Duration) -> Option<String> {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let deadline = Instant::now() + within;
        while !got.ends_with(b"\r\n\r\nOK\n") {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => return None,
            }
        }
        Some(String::from_utf8_lossy(&got).into_owned())
    }

    // The one slot: a served keep-alive connection holds it (idle deadline 30s).
    let mut held = TcpStream::connect(b.health).await.unwrap();
    held.write_all(PROBE).await.unwrap();
    assert!(response(&mut held, Duration::from_secs(5)).await.is_some());
    let mut next = TcpStream::connect(b.health).await.unwrap();
    next.write_all(PROBE).await.unwrap();
    assert!(
        response(&mut next, Duration::from_millis(500))
            .await
            .is_none(),
        "served past max_connections 1"
    );
    drop(held);
    let got = response(&mut next, Duration::from_secs(5)).await;
    assert!(got.is_some_and(|r| r.starts_with("HTTP/1.1 200")));
    drop(next);

    // Half a request line: closed at the 300ms header deadline, counted as the health
    // listener's.
    let mut half = TcpStream::connect(b.health).await.unwrap();
    half.write_all(b"GET /-/heal").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), half.read(&mut buf))
        .await
        .expect("still open 5s after a 300ms header deadline")
        .unwrap_or(0);
    assert_eq!(n, 0, "a timed-out head gets no answer");
    let closed = |listener| {
        b.series(
            names::HTTP_CONNECTIONS_CLOSED,
            &[("listener", listener), ("reason", "header_timeout")],
        )
    };
    assert_eq!(closed("health"), 1.0);
    assert_eq!(closed("main"), 0.0);
    b.stop().await;
}
