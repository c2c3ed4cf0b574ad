//! What the README promises a newcomer running `demo`: the shipped rules are loaded, and within about a minute an alert goes pending, fires and resolves.
#![cfg(feature = "sim")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use ocx_sentinel::app;
use serde_json::Value;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_an_alert_go_pending_fire_and_resolve() {
    let (sim, sidecar) = app::start_demo(SocketAddr::from(([127, 0, 0, 1], 0)), 1, None)
        .await
        .unwrap();
    let base = sidecar.base_url();
    let client = reqwest::Client::new();
    let rules: Value = serde_json::from_str(
        &client
            .get(format!("{base}/api/v1/rules"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["name"].as_str())
        .collect();
    for shipped in [
        "OcxInventoryLimitBreached",
        "OcxInventorySkewHeld",
        "OcxStreamDown",
        "OcxWatchdog",
    ] {
        assert!(names.contains(&shipped), "{shipped} not loaded: {names:?}");
    }

    // Per alert (by its labels): the states seen, in order, with "gone" once it disappears.
    let mut seen: HashMap<String, Vec<&'static str>> = HashMap::new();
    let started = Instant::now();
    let done = |states: &Vec<&str>| {
        let p = states.iter().position(|s| *s == "pending");
        let f = states.iter().position(|s| *s == "firing");
        let g = states.iter().rposition(|s| *s == "gone");
        matches!((p, f, g), (Some(p), Some(f), Some(g)) if p < f && f < g)
    };
    loop {
        let body: Value = serde_json::from_str(
            &client
                .get(format!("{base}/api/v1/alerts"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        let now: HashMap<String, &'static str> = body["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let state = if a["state"] == "firing" {
                    "firing"
                } else {
                    "pending"
                };
                (a["labels"].to_string(), state)
            })
            .collect();
        for (k, states) in seen.iter_mut() {
            let state = now.get(k).copied().unwrap_or("gone");
            if states.last() != Some(&state) {
                states.push(state);
            }
        }
        for (k, state) in &now {
            seen.entry(k.clone()).or_insert_with(|| vec![*state]);
        }
        if let Some((k, _)) = seen.iter().find(|(_, s)| done(s)) {
            eprintln!(
                "{k} went pending, firing, resolved in {:?}",
                started.elapsed()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "no alert went pending → firing → resolved: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sidecar.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_millis(300), sim.shutdown()).await;
}
