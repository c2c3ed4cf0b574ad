//! The listener over real sockets on loopback: each deadline closes what it should (and only that), the cap holds extra connections in the backlog, TLS (and HTTP/2 over it) works, shutdown lets a request finish, and the web configuration's checks answer in front of the router.

use super::*;
use crate::web::config::parse_str;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn testdata() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/testdata")
}

fn limits(header_ms: u64, idle_ms: u64) -> ListenerLimits {
    ListenerLimits {
        header_read_timeout: Duration::from_millis(header_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        tls_handshake_timeout: Duration::from_millis(header_ms),
        max_connections: 64,
    }
}

struct Running {
    addr: SocketAddr,
    telemetry: Telemetry,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn closed(&self, reason: &str) -> f64 {
        self.telemetry
            .counter(
                names::HTTP_CONNECTIONS_CLOSED,
                &[("listener", "main"), ("reason", reason)],
            )
            .get()
    }
}

async fn start(web: WebState, limits: ListenerLimits) -> Running {
    let router = Router::new().route("/", get(|| async { "ok\n" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            "slow\n"
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let telemetry = Telemetry::new();
    let (stop, rx) = watch::channel(false);
    let t = telemetry.clone();
    let task = tokio::spawn(async move {
        serve(listener, router, Arc::new(web), limits, &t, rx).await;
    });
    Running {
        addr,
        telemetry,
        stop,
        task,
    }
}

fn no_file() -> WebState {
    WebState::new(None, None)
}

fn with(yaml: &str) -> WebState {
    let c = parse_str(yaml, "web.yml", &testdata()).unwrap();
    WebState::new(None, Some(Arc::new(c)))
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// Reads until the peer closes (true), or `within` passes with the connection still open
/// (false). Whatever arrives before the close is returned too.
async fn until_closed(s: &mut TcpStream, within: Duration) -> (bool, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (false, String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response (up to its `ok\n` body) or fails after `within`.
async fn one_response(s: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    while !got.ends_with(b"\n\nok\n") && !got.ends_with(b"\r\n\r\nok\n") {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// The attack: connections that send half a request line and wait. Each is closed
/// once the header deadline passes, counted, and its slot freed.
#[tokio::test]
async fn half_a_request_line_is_closed_after_the_header_timeout() {
    let r = start(no_file(), limits(300, 10_000)).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        s.write_all(b"GET /metr").await.unwrap();
        held.push(s);
    }
    // One that sends nothing at all is a header timeout too (the first request's deadline
    // runs from the accept).
    held.push(TcpStream::connect(r.addr).await.unwrap());
    for s in &mut held {
        let (closed, got) = until_closed(s, Duration::from_secs(5)).await;
        assert!(closed, "still open long after the 300ms header timeout");
        assert_eq!(got, "", "a timed-out head gets no response");
    }
    assert_eq!(r.closed("header_timeout"), 21.0);
    // Meanwhile a whole request is served as usual.
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    assert!(one_response(&mut s, Duration::from_secs(5)).await.is_some());
    let _ = r.stop.send(true);
    r.task.await.unwrap();
}

/// After a response, a keep-alive connection waits for the idle timeout (not the shorter
/// header one), then is closed; the next request's head, once started, has the header
/// deadline again.
#[tokio::test]
async fn keep_alive_connections_get_the_idle_timeout_and_each_head_the_header_timeout() {
    let r = start(no_file(), limits(300, 1_500)).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    assert!(one_response(&mut s, Duration::from_secs(5)).await.is_some());
    // Longer than the header timeout, well within the idle one: still served.
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.write_all(GET).await.unwrap();
    assert!(
        one_response(&mut s, Duration::from_secs(5)).await.is_some(),
        "a keep-alive connection idle past the header timeout was closed"
    );
    // Then idle: closed by the idle deadline.
    let (closed, _) = until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "an idle keep-alive connection stayed open");
    assert_eq!(r.closed("idle_timeout"), 1.0);
    assert_eq!(r.closed("header_timeout"), 0.0);

    // A second head that starts and stalls: the header deadline, from its first byte.
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    assert!(one_response(&mut s, Duration::from_secs(5)).await.is_some());
    s.write_all(b"GET / HT").await.unwrap();
    let (closed, got) = until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed && got.is_empty(), "{got}");
    assert_eq!(r.closed("header_timeout"), 1.0);
    let _ = r.stop.send(true);
    r.task.await.unwrap();
}

/// With the cap reached, one more connection is not served (it waits in the backlog, its
/// request unread) until a held one closes; then it is.
#[tokio::test]
async fn the_connection_cap_holds_the_next_connection_until_a_slot_frees() {
    let r = start(
        no_file(),
        ListenerLimits {
            max_connections: 3,
            ..limits(30_000, 30_000)
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(r.addr).await.unwrap());
    }
    let open = r
        .telemetry
        .gauge(names::HTTP_CONNECTIONS, &[("listener", "main")]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while open.get() < 3.0 {
        assert!(Instant::now() < deadline, "the three were never accepted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The kernel completes the fourth's handshake; the listener does not accept it.
    let mut extra = TcpStream::connect(r.addr).await.unwrap();
    extra.write_all(GET).await.unwrap();
    assert!(
        one_response(&mut extra, Duration::from_millis(500))
            .await
            .is_none(),
        "served beyond the cap"
    );
    assert_eq!(open.get(), 3.0);
    drop(held.pop());
    assert!(
        one_response(&mut extra, Duration::from_secs(5))
            .await
            .is_some(),
        "not served after a slot freed"
    );
    let _ = r.stop.send(true);
    drop(held);
    drop(extra);
    r.task.await.unwrap();
}

const TLS_FILE: &str = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";

fn tls_client() -> reqwest::Client {
    let ca = std::fs::read(testdata().join("ca.pem")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
}

/// A client that connects and never starts the handshake is closed by the handshake
/// deadline; a real client gets TLS, HTTP/2 by ALPN, and plain HTTP is refused.
#[tokio::test]
async fn tls_handshakes_have_a_deadline_and_http2_is_offered() {
    let r = start(with(TLS_FILE), limits(300, 10_000)).await;
    let mut hung = TcpStream::connect(r.addr).await.unwrap();
    let (closed, _) = until_closed(&mut hung, Duration::from_secs(5)).await;
    assert!(closed, "a hung handshake outlived its 300ms deadline");
    assert_eq!(r.closed("tls_handshake_timeout"), 1.0);

    let url = format!("https://localhost:{}/", r.addr.port());
    let resp = tls_client().get(&url).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.text().await.unwrap(), "ok\n");
    let http1 = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(testdata().join("ca.pem")).unwrap())
                .unwrap(),
        )
        .http1_only()
        .build()
        .unwrap();
    let resp = http1.get(&url).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);

    let plain = reqwest::get(format!("http://127.0.0.1:{}/", r.addr.port())).await;
    assert!(plain.is_err(), "plain HTTP answered on a TLS listener");
    assert!(r.closed("tls_handshake_failed") >= 1.0);
    let _ = r.stop.send(true);
    r.task.await.unwrap();
}

/// Shutdown closes an idle connection at once and lets a request in progress finish.
#[tokio::test]
async fn shutdown_finishes_requests_in_progress_and_closes_idle_connections() {
    let r = start(no_file(), limits(10_000, 10_000)).await;
    let mut idle = TcpStream::connect(r.addr).await.unwrap();
    idle.write_all(GET).await.unwrap();
    assert!(
        one_response(&mut idle, Duration::from_secs(5))
            .await
            .is_some()
    );
    let mut busy = TcpStream::connect(r.addr).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = r.stop.send(true);
    let (closed, got) = until_closed(&mut busy, Duration::from_secs(5)).await;
    assert!(closed, "the connection stayed open after shutdown");
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("slow\n"),
        "{got}"
    );
    let (closed, _) = until_closed(&mut idle, Duration::from_secs(1)).await;
    assert!(closed);
    tokio::time::timeout(Duration::from_secs(5), r.task)
        .await
        .expect("serve returns after shutdown")
        .unwrap();
}

/// Basic auth on every path with `WWW-Authenticate: Basic`, the configured headers on every
/// answer (refusals too), and the rate limit's 429.
#[tokio::test]
async fn basic_auth_headers_and_rate_limit_answer_before_the_router() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let r = start(
        with(&format!(
            "basic_auth_users:\n  prometheus: {hash}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\nrate_limit:\n  interval: 1h\n  burst: 3\n"
        )),
        limits(10_000, 10_000),
    )
    .await;
    let base = format!("http://{}", r.addr);
    let c = reqwest::Client::new();
    let resp = c.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Basic");
    assert_eq!(resp.headers()["x-frame-options"], "deny");
    let resp = c
        .get(format!("{base}/"))
        .basic_auth("prometheus", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .get(format!("{base}/"))
        .basic_auth("prometheus", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-frame-options"], "deny");
    assert_eq!(resp.text().await.unwrap(), "ok\n");
    // The burst of 3 is spent; the next waits an hour.
    let resp = c
        .get(format!("{base}/"))
        .basic_auth("prometheus", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let refused = |reason| {
        r.telemetry
            .counter(names::HTTP_REQUESTS_REFUSED, &[("reason", reason)])
            .get()
    };
    assert_eq!(refused("unauthorized"), 2.0);
    assert_eq!(refused("rate_limited"), 1.0);
    let _ = r.stop.send(true);
    r.task.await.unwrap();
}

fn identity_client(with_identity: bool) -> reqwest::Client {
    let ca = std::fs::read(testdata().join("ca.pem")).unwrap();
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap());
    if with_identity {
        // The fixture's certificate is for clientAuth too, with SANs localhost, 127.0.0.1,
        // ::1, ops@example.com and spiffe://example.org/ops.
        let mut pem = std::fs::read(testdata().join("server.pem")).unwrap();
        pem.extend(std::fs::read(testdata().join("server.key")).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// Each `client_auth_type`, and `client_allowed_sans` matched exactly against the
/// certificate's names.
#[tokio::test]
async fn client_certificate_policies_and_allowed_sans() {
    let cases = [
        (
            "RequireAndVerifyClientCert",
            "[spiffe://example.org/ops]",
            true,
            false,
        ),
        ("RequireAndVerifyClientCert", "[127.0.0.1]", true, false),
        (
            "RequireAndVerifyClientCert",
            "[prometheus, example.org]",
            false,
            false,
        ),
        ("VerifyClientCertIfGiven", "[]", true, true),
        ("RequireAnyClientCert", "[]", true, false),
        ("RequestClientCert", "[]", true, true),
    ];
    for (mode, sans, with_cert_ok, without_cert_ok) in cases {
        let ca = if mode.contains("Verify") {
            "  client_ca_file: ca.pem\n"
        } else {
            ""
        };
        let r = start(
            with(&format!(
                "{TLS_FILE}  client_auth_type: {mode}\n{ca}  client_allowed_sans: {sans}\n"
            )),
            limits(5_000, 5_000),
        )
        .await;
        let url = format!("https://localhost:{}/", r.addr.port());
        for (with_cert, want) in [(true, with_cert_ok), (false, without_cert_ok)] {
            let got = identity_client(with_cert).get(&url).send().await;
            assert_eq!(
                got.is_ok(),
                want,
                "{mode} {sans} with a certificate: {with_cert}: {got:?}"
            );
        }
        let _ = r.stop.send(true);
        r.task.await.unwrap();
    }
}
