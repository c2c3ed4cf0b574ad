//! The real binary as a process: `demo` scraped within 2 seconds, linted by promtool, stopped by SIGTERM; a wrong key logged as 401, never echoed; `simulate --excursion` jumping a position on schedule.
#![cfg(feature = "sim")] // runs the built-in simulator
#![allow(clippy::disallowed_methods)] // timing a real child process by the wall clock is the point here

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ocx_sentinel::sim::{Faults, SimConfig};
use ocx_sentinel::telemetry::exposition;

const BIN: &str = env!("CARGO_BIN_EXE_ocx-sentinel");

async fn fetch(url: &str) -> Option<String> {
    let r = reqwest::get(url).await.ok()?;
    r.text().await.ok()
}

/// SIGTERM the child and wait for it; returns the exit status and how long it took.
fn terminate(child: &mut Child) -> (std::process::ExitStatus, Duration) {
    let pid = child.id().to_string();
    let ok = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(ok.success());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return (status, start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("process did not exit within 5s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// promtool is the reference linter of the exposition format. CI installs it and sets
/// OCX_REQUIRE_PEERS=1, so there this check cannot be skipped.
fn promtool_check(text: &str) {
    let required = std::env::var("OCX_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                !required,
                "promtool is required (OCX_REQUIRE_PEERS=1) but cannot run: {e}"
            );
            eprintln!("promtool not installed: exposition lint skipped (CI runs it)");
            return;
        }
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_fills_and_positions_within_two_seconds_and_stops_on_sigterm() {
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("demo starts");
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut text = String::new();
    while started.elapsed() < Duration::from_secs(2) {
        if let Some(t) = fetch(&url).await {
            let m = exposition::parse(&t);
            let fills = m.keys().any(|k| k.starts_with("ocx_fills_total{"));
            let positions = m.keys().any(|k| k.starts_with("ocx_position_quantity{"));
            if fills && positions {
                text = t;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !text.is_empty(),
        "no fills and positions on /metrics within 2s"
    );
    promtool_check(&text);
    let (status, took) = terminate(&mut child);
    assert!(status.success(), "demo exited with {status}");
    assert!(took < Duration::from_secs(2), "took {took:?} to stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_logged_as_401_keeps_serving_and_is_never_echoed() {
    let key = "ocx_sk_WRONG_do_not_print_7f3a";
    let sim = start_sim(SimConfig {
        api_key: Some("ocx_sk_right".into()),
        ..still_sim(30, Faults::default())
    })
    .await;
    let port = free_port();
    let work = std::env::temp_dir().join(format!("ocx-binary-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--api-base",
            &sim.base_url(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("OCX_API_KEY", key)
        .env("RUST_LOG", "debug")
        // `run` keeps its data dir in ./data by default: not in the repo.
        .current_dir(&work)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run starts");
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut m = Default::default();
    while Instant::now() < deadline {
        if let Some(t) = fetch(&url).await {
            m = exposition::parse(&t);
            let rejected = get(
                &m,
                r#"ocx_stream_reconnects_total{account="default",stream="user",reason="http_status"}"#,
            );
            if rejected.unwrap_or(0.0) >= 1.0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get(&m, r#"ocx_stream_up{account="default",stream="user"}"#),
        Some(0.0)
    );
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the process must stay up"
    );
    let (status, _) = terminate(&mut child);
    assert!(status.success());
    let log = stderr_of(&mut child);
    assert!(log.contains("401"), "log must say 401:\n{log}");
    assert!(!log.contains(key), "the key leaked into the log:\n{log}");
    assert!(
        !log.contains("WRONG_do_not_print"),
        "part of the key leaked into the log"
    );
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn check_reports_config_errors_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("ocx-sentinel-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yml");
    std::fs::write(
        &file,
        "listen: 127.0.0.1:1\nstream:\n  heartbeat_timeout: soon\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:3:22: stream.heartbeat_timeout: invalid duration \"soon\"",
            file.display()
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `run` with rule files: a broken one stops the start naming file:line (as Prometheus does);
/// SIGHUP reloads them, and a broken reload keeps the previous rules and says so in the log
/// and in `ocx_sentinel_config_last_reload_successful`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_files_stop_a_bad_start_and_reload_on_sighup() {
    let port = free_port();
    let work = std::env::temp_dir().join(format!("ocx-binary-rules-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let rules = work.join("alerts.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: 'vector(1'\n",
    )
    .unwrap();
    // Nothing listens on the API base: the rules are what is under test.
    let api_base = format!("http://127.0.0.1:{}", free_port());
    let args = [
        "run",
        "--api-base",
        &api_base,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--rules",
        &work.join("*.yml").display().to_string(),
    ];
    let out = Command::new(BIN)
        .args(args)
        .current_dir(&work)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot load the rule files") && err.contains("alerts.yml:5:"),
        "{err}"
    );

    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: vector(1)\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(&work)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run starts");
    let base = format!("http://127.0.0.1:{port}");
    let names = |body: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    let wait_rules = |want: Vec<&'static str>| {
        let base = base.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(b) = fetch(&format!("{base}/api/v1/rules")).await
                    && names(&b) == want
                {
                    return;
                }
                assert!(Instant::now() < deadline, "rules never became {want:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_rules(vec!["A"]).await;
    let hup = |pid: u32| {
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    std::fs::write(
        work.join("more.yml"),
        "groups: [{name: h, rules: [{alert: B, expr: vector(2)}]}]\n",
    )
    .unwrap();
    hup(child.id());
    wait_rules(vec!["A", "B"]).await;

    std::fs::write(
        work.join("more.yml"),
        "groups: [{name: h, rules: [{alert: B}]}]\n",
    )
    .unwrap();
    hup(child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = exposition::parse(&fetch(&format!("{base}/metrics")).await.unwrap_or_default());
        if get(&m, "ocx_sentinel_config_last_reload_successful") == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broken reload was not reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_rules(vec!["A", "B"]).await;
    let (status, _) = terminate(&mut child);
    assert!(status.success());
    let log = stderr_of(&mut child);
    assert!(
        log.contains("rule files not reloaded") && log.contains("more.yml:1:"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&work);
}

// `simulate --excursion MARKET:STEPS:AFTER` (the end-to-end script's scripted breach): the
// position jumps to exactly STEPS quantity steps, visible on the pull endpoint; a malformed value
// or an unknown market stops the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_runs_a_scripted_excursion_and_rejects_a_bad_one() {
    for (bad, says) in [
        ("SOL-PERP:0:1", "expected MARKET:STEPS:AFTER_SECS"),
        ("SOL-PERP:20", "expected MARKET:STEPS:AFTER_SECS"),
        ("DOGE-PERP:20:1", "no market \"DOGE-PERP\""),
    ] {
        let port = free_port();
        let out = Command::new(BIN)
            .args(["simulate", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--excursion", bad])
            .output()
            .expect("simulate runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}: started");
        assert!(stderr.contains(says), "{bad}: {stderr}");
    }
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["simulate", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--excursion", "SOL-PERP:200:1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("simulate starts");
    let url = format!("http://127.0.0.1:{port}/perps/positions");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    let jumped = loop {
        if let Some(body) = fetch(&url).await {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let sol = v
                .as_array()
                .or_else(|| v["positions"].as_array())
                .or_else(|| v["data"].as_array())
                .into_iter()
                .flatten()
                .find(|p| p["marketId"] == "SOL-PERP")
                .and_then(|p| p["quantity"].as_str().map(str::to_owned));
            if sol.as_deref().and_then(|q| q.parse::<f64>().ok()) == Some(20.0) {
                break true;
            }
            last = body;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, _) = terminate(&mut child);
    assert!(
        jumped,
        "SOL-PERP never held 20 contracts within 10s; last /perps/positions: {last}; stderr: {}",
        stderr_of(&mut child)
    );
    assert!(status.success());
}
