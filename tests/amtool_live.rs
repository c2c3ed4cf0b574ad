//! The real `amtool` against a running sidecar: a scripted breach lists as a live alert with its receivers, silences and inhibitions show on it, the routing config reads back masked, and with `api_token_file` changes (silences, `/-/reload`) need the token while reads stay open.
//!
//! Needs `amtool` (Debian's 0.25); skipped when missing unless `OCX_REQUIRE_PEERS=1`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::scripted::{envelope, position, scripted_exchange};
use common::{amtool, amtool_ok, peer, start_sidecar};
use ocx_sentinel::config::Secret;
use serde_json::{Value, json};

const TOKEN: &str = "live-t0ken";

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ocx-sentinel-amlive-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const RULES: &str = r#"
groups:
  - name: limits
    rules:
      - alert: InventoryLimitBreached
        expr: abs(ocx_position_quantity) > on(account, market) group_left ocx_inventory_limit
        labels: {severity: page}
        annotations: {summary: '{{ $labels.market }} at {{ $value }}'}
      - alert: InventoryHuge
        expr: abs(ocx_position_quantity) > on(account, market) group_left() (10 * ocx_inventory_limit)
        labels: {severity: page}
"#;

/// Pages go to `pager`, grouped by alertname and market; the global HTTP password must never
/// show in `/api/v2/status`. The receivers have no webhooks: a webhook's `url` would be masked
/// too, and amtool 0.25 cannot read a masked URL back to test routes (Alertmanager 0.25 itself
/// shows webhook URLs in the clear).
const ALERTING: &str = r#"global:
  http_config:
    basic_auth: {username: u, password: sekrit-pw}
route:
  receiver: team
  group_by: [alertname]
  group_wait: 1h
  routes:
    - receiver: pager
      matchers: [severity="page"]
      group_by: [alertname, market]
receivers:
  - name: team
  - name: pager
inhibit_rules:
  - source_matchers: [alertname="InventoryHuge"]
    target_matchers: [alertname="InventoryLimitBreached"]
    equal: [account, market]
"#;

fn delta(seq: u64, qty: &str) -> String {
    envelope(
        "delta",
        seq,
        &format!(
            r#"{{"positions":{{"upserts":[{}],"removedIds":[]}}}}"#,
            position(qty)
        ),
    )
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("amtool -o json prints JSON")
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .expect("a list")
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

/// `amtool alert query -o json <args>` until `cond` holds (the engine evaluates right after
/// the delta, but the test cannot know when the delta arrived).
async fn query_until(url: &str, args: &[&str], what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut all = vec!["alert", "query", "-o", "json"];
    all.extend_from_slice(args);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = parse(&amtool_ok(url, &all).await);
        if cond(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {what}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_sees_the_live_alerts_silences_inhibitions_and_needs_the_token_to_change() {
    if !peer("amtool") {
        return;
    }
    let d = dir("live");
    std::fs::write(d.join("rules.yml"), RULES).unwrap();
    std::fs::write(d.join("alerting.yml"), ALERTING).unwrap();
    let http_config = d.join("http.yml");
    std::fs::write(
        &http_config,
        format!("authorization:\n  type: Bearer\n  credentials: {TOKEN}\n"),
    )
    .unwrap();
    let with_token = format!("--http.config.file={}", http_config.display());
    let (api_base, exchange) = scripted_exchange().await;
    let mut s = common::alert_settings(&api_base, &d, true);
    s.api_token = Some(Secret::new(TOKEN));
    let sidecar = start_sidecar(s).await;
    let url = sidecar.base_url();
    let client = reqwest::Client::new();

    exchange
        .send(envelope(
            "snapshot",
            1,
            &format!(r#"{{"positions":[{}],"trades":[]}}"#, position("0.5")),
        ))
        .unwrap();
    exchange.send(delta(2, "3")).unwrap();
    let firing = query_until(&url, &[], "the breach fires", |v| {
        names(v) == ["InventoryLimitBreached"]
    })
    .await;
    let a = &firing[0];
    assert_eq!(
        a["labels"],
        json!({"alertname": "InventoryLimitBreached", "account": "t", "market": "BTC-PERP", "severity": "page"})
    );
    assert_eq!(a["annotations"]["summary"], "BTC-PERP at 3");
    assert_eq!(a["receivers"], json!([{"name": "pager"}]));
    assert_eq!(
        a["status"],
        json!({"state": "active", "silencedBy": [], "inhibitedBy": []})
    );
    assert!(a["generatorURL"].as_str().unwrap().starts_with(&url));
    let breach_fp = a["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(breach_fp.len(), 16);

    // Matchers filter on the live labels.
    let by_name = parse(
        &amtool_ok(
            &url,
            &[
                "alert",
                "query",
                "-o",
                "json",
                "alertname=InventoryLimitBreached",
            ],
        )
        .await,
    );
    assert_eq!(names(&by_name), ["InventoryLimitBreached"]);
    let none = parse(&amtool_ok(&url, &["alert", "query", "-o", "json", "alertname=Nope"]).await);
    assert_eq!(names(&none), Vec::<String>::new());
    let simple = amtool_ok(&url, &["alert", "query"]).await;
    assert!(
        simple.contains("InventoryLimitBreached") && simple.contains("BTC-PERP at 3"),
        "{simple}"
    );

    // Changes need the token; reads do not.
    let add = [
        "silence",
        "add",
        "alertname=InventoryLimitBreached",
        "-c",
        "hedging",
        "-a",
        "ops",
        "-d",
        "1h",
    ];
    let refused = amtool(&url, &add).await;
    assert!(!refused.status.success());
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        shown.contains("401") || shown.to_lowercase().contains("unauthorized"),
        "{shown}"
    );
    let mut add_with = vec![with_token.as_str()];
    add_with.extend_from_slice(&add);
    let id = amtool_ok(&url, &add_with).await.trim().to_string();
    assert!(ocx_sentinel::notify::silence::is_uuid(&id), "{id}");
    query_until(
        &url,
        &[],
        "the silenced alert leaves the default listing",
        |v| names(v).is_empty(),
    )
    .await;
    let silenced = parse(&amtool_ok(&url, &["alert", "query", "-o", "json", "--silenced"]).await);
    assert_eq!(names(&silenced), ["InventoryLimitBreached"]);
    assert_eq!(silenced[0]["status"]["state"], "suppressed");
    assert_eq!(silenced[0]["status"]["silencedBy"], json!([id]));
    let expire = amtool(&url, &["silence", "expire", &id]).await;
    assert!(!expire.status.success(), "expiring is a change too");
    amtool_ok(&url, &[with_token.as_str(), "silence", "expire", &id]).await;

    // One fill past ten times the limit: InventoryHuge fires and inhibits the breach.
    exchange.send(delta(3, "25")).unwrap();
    let active = query_until(&url, &[], "only the huge alert is active", |v| {
        names(v) == ["InventoryHuge"]
    })
    .await;
    let huge_fp = active[0]["fingerprint"].as_str().unwrap().to_string();
    let inhibited = parse(&amtool_ok(&url, &["alert", "query", "-o", "json", "--inhibited"]).await);
    assert_eq!(names(&inhibited), ["InventoryLimitBreached"]);
    assert_eq!(inhibited[0]["fingerprint"], breach_fp.as_str());
    assert_eq!(inhibited[0]["status"]["state"], "suppressed");
    assert_eq!(inhibited[0]["status"]["inhibitedBy"], json!([huge_fp]));

    // Groups by the route's group_by (the API lists inhibited alerts unless asked not to);
    // receivers in config order.
    let groups = |query: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let text = client
                .get(format!("{url}/api/v2/alerts/groups{query}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            let mut shown: Vec<(String, Value)> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|g| {
                    (
                        g["receiver"]["name"].as_str().unwrap().to_string(),
                        g["labels"].clone(),
                    )
                })
                .collect();
            shown.sort_by_key(|(_, l)| l.to_string());
            shown
        }
    };
    let huge_group = (
        "pager".to_string(),
        json!({"alertname": "InventoryHuge", "market": "BTC-PERP"}),
    );
    let breach_group = (
        "pager".to_string(),
        json!({"alertname": "InventoryLimitBreached", "market": "BTC-PERP"}),
    );
    assert_eq!(groups("").await, [huge_group.clone(), breach_group]);
    assert_eq!(groups("?inhibited=false").await, [huge_group]);
    let receivers: Value = serde_json::from_str(
        &client
            .get(format!("{url}/api/v2/receivers"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(receivers, json!([{"name": "team"}, {"name": "pager"}]));

    // The configuration reads back with its secrets masked, and is one amtool can route with.
    let status: Value = serde_json::from_str(
        &client
            .get(format!("{url}/api/v2/status"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let original = status["config"]["original"].as_str().unwrap();
    assert!(!original.contains("sekrit"), "{original}");
    assert!(original.contains("<secret>"), "{original}");
    let shown = amtool_ok(&url, &["config", "show"]).await;
    assert!(
        !shown.contains("sekrit") && shown.contains("pager"),
        "{shown}"
    );
    let routed = amtool_ok(&url, &["config", "routes", "test", "severity=page"]).await;
    assert_eq!(routed.trim(), "pager");
    let routed = amtool_ok(&url, &["config", "routes", "test", "severity=info"]).await;
    assert_eq!(routed.trim(), "team");

    // `/-/reload` is a change: the token is needed there too.
    let r = client.post(format!("{url}/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(!r.text().await.unwrap().contains(TOKEN));
    let r = client
        .post(format!("{url}/-/reload"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .put(format!("{url}/-/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // Reads stay open.
    let r = client
        .get(format!("{url}/api/v2/silences"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_changes_are_open_and_without_routing_alerts_still_list() {
    if !peer("amtool") {
        return;
    }
    let d = dir("open");
    std::fs::write(d.join("rules.yml"), RULES).unwrap();
    let (api_base, exchange) = scripted_exchange().await;
    let s = common::alert_settings(&api_base, &d, false);
    let sidecar = start_sidecar(s).await;
    let url = sidecar.base_url();
    exchange
        .send(envelope(
            "snapshot",
            1,
            &format!(r#"{{"positions":[{}],"trades":[]}}"#, position("3")),
        ))
        .unwrap();
    let v = query_until(&url, &[], "the breach lists unrouted", |v| {
        names(v) == ["InventoryLimitBreached"]
    })
    .await;
    assert_eq!(v[0]["receivers"], json!([]));
    assert_eq!(v[0]["status"]["state"], "active");
    let id = amtool_ok(
        &url,
        &[
            "silence",
            "add",
            "market=BTC-PERP",
            "-c",
            "c",
            "-a",
            "a",
            "-d",
            "1h",
        ],
    )
    .await;
    assert!(ocx_sentinel::notify::silence::is_uuid(id.trim()));
    query_until(&url, &["--silenced"], "the silence mutes it", |v| {
        v[0]["status"]["silencedBy"] == json!([id.trim()])
    })
    .await;
    let r = reqwest::Client::new()
        .post(format!("{url}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&d);
}
