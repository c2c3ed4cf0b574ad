//! Shared helpers for integration tests: a still simulator, a sidecar against it, scraping and waiting.
//!
//! The simulator helpers exist only with the `sim` feature; the rest serves the tests against
//! hand-written exchanges too, which run in a build without the simulator.
#![allow(dead_code)] // each test binary uses a different subset

pub mod scripted;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ocx_sentinel::app::Sidecar;
use ocx_sentinel::config::{AccountSettings, Auth, ReconcileSettings, Settings, StreamSettings};
#[cfg(feature = "sim")]
use ocx_sentinel::sim::{self, Faults, RunningSim, SimConfig, Truth};
use ocx_sentinel::telemetry::exposition;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

pub const ACC: &str = "t";

/// A simulator whose world only moves when the test calls `step()`; every trade it ever made
/// fits in a snapshot, so the sidecar can be compared with the simulator's ground truth.
#[cfg(feature = "sim")]
pub fn still_sim(seed: u64, faults: Faults) -> SimConfig {
    SimConfig {
        seed,
        tick: Duration::from_secs(3600),
        heartbeat_interval: Duration::from_millis(100),
        warmup_steps: 30,
        recent_trades: 10_000,
        faults,
        ..SimConfig::default()
    }
}

#[cfg(feature = "sim")]
pub async fn start_sim(cfg: SimConfig) -> RunningSim {
    sim::start(cfg, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("simulator starts on loopback")
}

pub fn settings(api_base: &str, auth: Auth, markets: &[&str]) -> Settings {
    Settings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        stream: StreamSettings {
            heartbeat_timeout: Duration::from_secs(2),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            backoff_reset_after: Duration::from_secs(30),
            max_event_bytes: 4 * 1024 * 1024,
        },
        dedup_capacity: 100_000,
        max_markets: 500,
        // Off unless a test turns it on: its REST requests would disturb request counts.
        reconcile: ReconcileSettings {
            enabled: false,
            ..ReconcileSettings::default()
        },
        accounts: vec![AccountSettings {
            name: ACC.into(),
            api_base: api_base.to_string(),
            auth,
            markets: markets.iter().map(|m| m.to_string()).collect(),
            open_only: true,
            interval_ms: Some(100),
            depth: Some(25),
            limits: Default::default(),
        }],
        data_dir: None,
        rules: Default::default(),
        alerting: None,
        api_token: None,
        forward: Default::default(),
        web: Default::default(),
        tracing: None,
    }
}

/// [`settings`] for a test of alerts: an inventory limit of 1 on every market, the rules in
/// `dir/rules.yml` (evaluated after every change; their timer an hour away, so a test sees only
/// what events cause) and, when `alerting` is set, the routing in `dir/alerting.yml`.
pub fn alert_settings(api_base: &str, dir: &std::path::Path, alerting: bool) -> Settings {
    let mut s = settings(api_base, Auth::None, &[]);
    s.accounts[0].limits.inventory.default = Some(1.0);
    s.rules = ocx_sentinel::config::RuleSettings {
        source: ocx_sentinel::rules::runner::RuleSource::Paths(vec![dir.join("rules.yml")]),
        evaluation_interval: Duration::from_secs(3600),
    };
    if alerting {
        s.alerting = Some(ocx_sentinel::config::AlertingSource::File(
            dir.join("alerting.yml"),
        ));
    }
    s
}

pub async fn start_sidecar(settings: Settings) -> Sidecar {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .expect("bind loopback");
    Sidecar::start_on(settings, listener)
        .await
        .expect("sidecar starts")
}

/// Scrape `/metrics` over HTTP, as Prometheus would.
pub async fn scrape(base: &str) -> BTreeMap<String, f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("scrape body");
    exposition::parse(&text)
}

pub fn get(m: &BTreeMap<String, f64>, series: &str) -> Option<f64> {
    m.get(&exposition::normalize(series)).copied()
}

/// Sum of every series of `name` whose labels include all of `labels` (`k="v"` fragments).
pub fn sum(m: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) || k.as_str() == name)
        .filter(|(k, _)| labels.iter().all(|l| k.contains(l)))
        .map(|(_, v)| *v)
        .sum()
}

/// Poll `/metrics` until `cond` holds, or panic with the last scrape after `timeout`.
pub async fn wait_for<F>(
    base: &str,
    timeout: Duration,
    what: &str,
    cond: F,
) -> BTreeMap<String, f64>
where
    F: Fn(&BTreeMap<String, f64>) -> bool,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let m = scrape(base).await;
        if cond(&m) {
            return m;
        }
        if tokio::time::Instant::now() > deadline {
            let dump: Vec<String> = m
                .iter()
                .filter(|(k, _)| !k.contains("_bucket"))
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            panic!(
                "timed out waiting for: {what}\nlast scrape:\n{}",
                dump.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// Every fill the simulator made, per (market, side, liquidity): (count, quantity, notional).
#[cfg(feature = "sim")]
pub fn truth_fills(t: &Truth) -> BTreeMap<(String, String, String), (u64, Decimal, Decimal)> {
    let mut out: BTreeMap<(String, String, String), (u64, Decimal, Decimal)> = BTreeMap::new();
    for tr in &t.trades {
        let e = out
            .entry((
                tr.market.clone(),
                tr.side.to_string(),
                tr.liquidity.to_string(),
            ))
            .or_default();
        e.0 += 1;
        e.1 += tr.quantity;
        e.2 += tr.price * tr.quantity;
    }
    out
}

/// True when the sidecar's fills and positions equal the simulator's truth exactly.
#[cfg(feature = "sim")]
pub fn matches_truth(m: &BTreeMap<String, f64>, t: &Truth) -> Result<(), String> {
    for ((market, side, liq), (count, qty, notional)) in truth_fills(t) {
        let l = format!(r#"account="{ACC}",market="{market}",side="{side}",liquidity="{liq}""#);
        let got = get(m, &format!("ocx_fills_total{{{l}}}"));
        if got != Some(count as f64) {
            return Err(format!(
                "fills {market}/{side}/{liq}: want {count}, got {got:?}"
            ));
        }
        let got = get(m, &format!("ocx_fill_quantity_total{{{l}}}"));
        if got != Some(f(qty)) {
            return Err(format!(
                "quantity {market}/{side}/{liq}: want {qty}, got {got:?}"
            ));
        }
        let got = get(m, &format!("ocx_fill_notional_total{{{l}}}"));
        if got != Some(f(notional)) {
            return Err(format!(
                "notional {market}/{side}/{liq}: want {notional}, got {got:?}"
            ));
        }
    }
    let total: f64 = sum(m, "ocx_fills_total", &[]);
    if total != t.trades.len() as f64 {
        return Err(format!("total fills: want {}, got {total}", t.trades.len()));
    }
    let open = get(m, &format!(r#"ocx_positions_open{{account="{ACC}"}}"#));
    if open != Some(t.positions.len() as f64) {
        return Err(format!(
            "open positions: want {}, got {open:?}",
            t.positions.len()
        ));
    }
    for p in &t.positions {
        let l = format!(r#"account="{ACC}",market="{}""#, p.market);
        let q = get(m, &format!("ocx_position_quantity{{{l}}}"));
        if q != Some(f(p.quantity)) {
            return Err(format!(
                "position {}: want {}, got {q:?}",
                p.market, p.quantity
            ));
        }
        let e = get(m, &format!("ocx_position_entry_price{{{l}}}"));
        if e != Some(f(p.entry_price)) {
            return Err(format!(
                "entry {}: want {}, got {e:?}",
                p.market, p.entry_price
            ));
        }
        let r = get(m, &format!("ocx_position_realized_pnl{{{l}}}"));
        if r != Some(f(p.realized_pnl)) {
            return Err(format!(
                "realized {}: want {}, got {r:?}",
                p.market, p.realized_pnl
            ));
        }
    }
    // Markets without an open position must read 0, not a stale size.
    for (k, v) in m
        .iter()
        .filter(|(k, _)| k.starts_with("ocx_position_quantity{"))
    {
        let open = t
            .positions
            .iter()
            .any(|p| k.contains(&format!("market=\"{}\"", p.market)));
        if !open && *v != 0.0 {
            return Err(format!(
                "{k} is {v} but the simulator has no open position there"
            ));
        }
    }
    Ok(())
}

#[cfg(feature = "sim")]
pub async fn steps(sim: &RunningSim, n: usize) {
    for _ in 0..n {
        sim.handle.step();
    }
}

/// A loopback port nobody listens on (now): for child processes that must bind it themselves.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A child process (a real Prometheus or Alertmanager) killed and reaped when the test ends,
/// passing or failing.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh directory under the system's temp dir, unique to this process and call.
pub fn work_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ocx-sentinel-{tag}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A real Prometheus on a free loopback port with `config` as its `prometheus.yml`, its TSDB and
/// its log (`prometheus.log`) in `dir`, and `flags` added; returns it (killed when dropped) and
/// its URL.
pub fn start_prometheus(dir: &std::path::Path, config: &str, flags: &[&str]) -> (Killed, String) {
    let port = free_port();
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let child = std::process::Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(flags)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus starts");
    (Killed(child), format!("http://127.0.0.1:{port}"))
}

/// The keys of every JSON object in `v`, by path (array elements share one path): an API's
/// shape, to compare with a real Prometheus's or Alertmanager's. Keys in `data` (label and
/// annotation maps) hold data, not shape, and are not descended into.
pub fn json_shape(
    v: &serde_json::Value,
    data: &[&str],
) -> BTreeMap<String, std::collections::BTreeSet<String>> {
    fn walk(
        v: &serde_json::Value,
        path: &str,
        data: &[&str],
        out: &mut BTreeMap<String, std::collections::BTreeSet<String>>,
    ) {
        match v {
            serde_json::Value::Object(m) => {
                out.entry(path.to_string())
                    .or_default()
                    .extend(m.keys().cloned());
                for (k, child) in m {
                    if !data.contains(&k.as_str()) {
                        walk(child, &format!("{path}.{k}"), data, out);
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for i in items {
                    walk(i, &format!("{path}[]"), data, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk(v, "", data, &mut out);
    out
}

/// Whether the peer program `bin` (a real amtool, Alertmanager, promtool) runs; when it does
/// not, the calling test is skipped, or fails under `OCX_REQUIRE_PEERS=1` (as CI sets it).
pub fn peer(bin: &str) -> bool {
    let required = std::env::var("OCX_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    match std::process::Command::new(bin).arg("--version").output() {
        Ok(_) => true,
        Err(e) => {
            assert!(
                !required,
                "{bin} is required (OCX_REQUIRE_PEERS=1) but cannot run: {e}"
            );
            eprintln!("{bin} not installed: test skipped (CI runs it)");
            false
        }
    }
}

/// Runs amtool against the Alertmanager API at `url`, off the async threads (it blocks until
/// the server answers).
pub async fn amtool(url: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec![format!("--alertmanager.url={url}")];
    all.extend(args.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("amtool")
            .args(&all)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("amtool runs")
    })
    .await
    .expect("amtool's thread")
}

/// amtool's stdout, asserting it succeeded.
pub async fn amtool_ok(url: &str, args: &[&str]) -> String {
    let out = amtool(url, args).await;
    assert!(
        out.status.success(),
        "amtool {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("amtool prints UTF-8")
}

/// A test CA, a server certificate it signed for 127.0.0.1 and localhost, and a client
/// certificate it signed (`ca.pem`, `server.pem`/`server.key`, `client.pem`/`client.key` in
/// `dir`; rustls refuses a CA certificate as the server's own, so a self-signed one will not
/// do), or None when openssl is missing (skipped, or a failure when required).
pub fn test_certificates(dir: &std::path::Path) -> Option<()> {
    test_certificates_for(dir, &[])
}

/// [`test_certificates`] with more names in the server certificate's subjectAltName
/// (`DNS:name`, `IP:addr`), for a deployment that has Prometheus check a name of its own.
pub fn test_certificates_for(dir: &std::path::Path, server_names: &[&str]) -> Option<()> {
    if !peer("openssl") {
        return None;
    }
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let sans: Vec<&str> = ["IP:127.0.0.1", "DNS:localhost"]
        .into_iter()
        .chain(server_names.iter().copied())
        .collect();
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            sans.join(",")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "subjectAltName=DNS:prometheus\nbasicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=ocx test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    );
    for who in ["server", "client"] {
        let (key, csr, pem, ext) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.pem"),
            format!("{who}.ext"),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-subj",
                    &format!("/CN={who}"),
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                ],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ]);
    }
    Some(())
}
