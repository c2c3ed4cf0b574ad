//! The Alertmanager v2 API (`notify::amapi`) driven by the real `amtool`, and its JSON compared with a real Alertmanager's: silences added, listed, filtered, expired and imported; alerts listed and filtered; writes refused without the bearer token.
//!
//! Needs `amtool` and `prometheus-alertmanager` (Debian's packages, 0.25); each test is skipped
//! with a message when its peer is missing, unless `OCX_REQUIRE_PEERS=1` makes that a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ocx_sentinel::config::Secret;
use ocx_sentinel::notify::amapi::{
    AlertSource, AlertState, AlertStatus, AmAlert, AmAlertGroup, AmApi, router, wall_clock_ms,
};
use ocx_sentinel::notify::silence::{Silences, is_uuid};
use serde_json::{Value, json};

const TOKEN: &str = "t0ken-for-tests";

/// Whether `bin` runs; when it does not, the test is skipped, or fails under OCX_REQUIRE_PEERS=1.
fn peer(bin: &str) -> bool {
    let required = std::env::var("OCX_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    match Command::new(bin).arg("--version").output() {
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

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A fixed set of alerts, grouped by `alertname`: Foo pages (receiver `pager`), Bar is plain,
/// Baz is inhibited, Qux is not processed yet.
struct FixedAlerts {
    alerts: Vec<AmAlert>,
}

impl FixedAlerts {
    fn new() -> FixedAlerts {
        let now = wall_clock_ms();
        let alert = |name: &str, extra: &[(&str, &str)], receiver: &str, fp: &str| {
            let mut l = labels(&[("alertname", name)]);
            l.extend(labels(extra));
            AmAlert {
                labels: l,
                annotations: labels(&[("summary", &format!("{name} happened"))]),
                starts_at: now - 60_000,
                ends_at: now + 3_600_000,
                updated_at: now - 1_000,
                generator_url: String::new(),
                fingerprint: fp.to_string(),
                receivers: vec![receiver.to_string()],
                status: AlertStatus {
                    state: AlertState::Active,
                    silenced_by: vec![],
                    inhibited_by: vec![],
                },
            }
        };
        let mut paged = alert(
            "Foo",
            &[("market", "BTC-PERP"), ("severity", "page")],
            "pager",
            "1000000000000001",
        );
        paged.generator_url = "http://sidecar/graph?g0.expr=up".into();
        let bar = alert(
            "Bar",
            &[("market", "ETH-PERP")],
            "default",
            "2000000000000002",
        );
        let mut inhibited = alert("Baz", &[], "default", "3000000000000003");
        inhibited.status.state = AlertState::Suppressed;
        inhibited.status.inhibited_by = vec!["1000000000000001".into()];
        let mut qux = alert("Qux", &[], "default", "4000000000000004");
        qux.status.state = AlertState::Unprocessed;
        FixedAlerts {
            alerts: vec![paged, bar, inhibited, qux],
        }
    }
}

impl AlertSource for FixedAlerts {
    fn alerts(&self) -> Vec<AmAlert> {
        self.alerts.clone()
    }
    fn groups(&self) -> Vec<AmAlertGroup> {
        self.alerts
            .iter()
            .map(|a| AmAlertGroup {
                labels: labels(&[("alertname", &a.labels["alertname"])]),
                receiver: a.receivers[0].clone(),
                alerts: vec![a.clone()],
            })
            .collect()
    }
    fn receivers(&self) -> Vec<String> {
        vec!["default".into(), "pager".into()]
    }
    fn config_original(&self) -> String {
        "route:\n  receiver: default\n".into()
    }
}

/// The API on 127.0.0.1:<free port>; returns its base URL and the state.
async fn serve(token: Option<&str>) -> (String, Arc<AmApi>) {
    let api = Arc::new(AmApi::new(
        Silences::default(),
        Arc::new(FixedAlerts::new()),
        token.map(Secret::new),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(api.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), api)
}

/// Runs amtool against `url` off the async threads (it blocks until the server answers).
async fn amtool(url: &str, args: &[&str]) -> Output {
    let mut all = vec![format!("--alertmanager.url={url}")];
    all.extend(args.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        Command::new("amtool")
            .args(&all)
            .stdin(Stdio::null())
            .output()
            .expect("amtool runs")
    })
    .await
    .unwrap()
}

/// amtool's stdout, asserting it succeeded.
async fn amtool_ok(url: &str, args: &[&str]) -> String {
    let out = amtool(url, args).await;
    assert!(
        out.status.success(),
        "amtool {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ids_in(json_text: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(json_text).expect("amtool -o json prints JSON");
    v.as_array()
        .expect("a list")
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn alertnames(json_text: &str) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(json_text).expect("amtool -o json prints JSON");
    v.as_array()
        .expect("a list")
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_adds_lists_filters_and_expires_silences() {
    if !peer("amtool") {
        return;
    }
    let (url, api) = serve(None).await;
    let mut changes = api.subscribe();

    let added = amtool_ok(
        &url,
        &[
            "silence",
            "add",
            "alertname=Foo",
            r#"market=~"BTC.*""#,
            "-c",
            "comment",
            "-a",
            "author",
            "-d",
            "1h",
        ],
    )
    .await;
    let id = added.trim().to_string();
    assert!(is_uuid(&id), "amtool printed the new id: {added:?}");
    assert!(changes.has_changed().unwrap(), "the change is signalled");
    changes.mark_unchanged();

    let simple = amtool_ok(&url, &["silence", "query"]).await;
    assert!(simple.contains(&id), "{simple}");
    assert!(
        simple.contains("author") && simple.contains("comment"),
        "{simple}"
    );
    let quiet = amtool_ok(&url, &["silence", "query", "-q"]).await;
    assert_eq!(quiet.trim(), id);

    let json_out = amtool_ok(&url, &["silence", "query", "-o", "json"]).await;
    let v: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(ids_in(&json_out), std::slice::from_ref(&id));
    let s = &v[0];
    assert_eq!(s["status"]["state"], "active");
    assert_eq!(
        (s["createdBy"].as_str(), s["comment"].as_str()),
        (Some("author"), Some("comment"))
    );
    assert_eq!(
        s["matchers"],
        json!([
            {"isEqual": true, "isRegex": false, "name": "alertname", "value": "Foo"},
            {"isEqual": true, "isRegex": true, "name": "market", "value": "BTC.*"},
        ])
    );

    // The filter selects silences having that very matcher (`Foo` alone means alertname=Foo).
    let hit = amtool_ok(&url, &["silence", "query", "-q", "alertname=Foo"]).await;
    assert_eq!(hit.trim(), id);
    let hit = amtool_ok(&url, &["silence", "query", "-q", "Foo"]).await;
    assert_eq!(hit.trim(), id);
    let hit = amtool_ok(&url, &["silence", "query", "-q", r#"market=~"BTC.*""#]).await;
    assert_eq!(hit.trim(), id);
    let miss = amtool_ok(&url, &["silence", "query", "-q", "alertname=Bar"]).await;
    assert_eq!(miss.trim(), "");

    // The silenced alert leaves the default (active) alert listing and shows as silenced.
    let active = amtool_ok(&url, &["alert", "query", "-o", "json"]).await;
    assert_eq!(alertnames(&active), BTreeSet::from(["Bar".to_string()]));
    let silenced = amtool_ok(&url, &["alert", "query", "-s", "-o", "json"]).await;
    let v: Value = serde_json::from_str(&silenced).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["labels"]["alertname"], "Foo");
    assert_eq!(v[0]["status"]["state"], "suppressed");
    assert_eq!(v[0]["status"]["silencedBy"], json!([id]));

    let exported = amtool_ok(&url, &["silence", "query", "-o", "json"]).await;

    amtool_ok(&url, &["silence", "expire", &id]).await;
    assert!(changes.has_changed().unwrap());
    let after = amtool_ok(&url, &["silence", "query", "-q"]).await;
    assert_eq!(
        after.trim(),
        "",
        "an expired silence is not listed by default"
    );
    let expired = amtool_ok(&url, &["silence", "query", "--expired", "-q"]).await;
    assert_eq!(expired.trim(), id);
    let active = amtool_ok(&url, &["alert", "query", "-o", "json"]).await;
    assert_eq!(
        alertnames(&active),
        BTreeSet::from(["Bar".to_string(), "Foo".to_string()]),
        "the expired silence no longer mutes Foo"
    );
    // Expiring an unknown silence fails.
    let unknown = amtool(
        &url,
        &["silence", "expire", "00000000-0000-4000-8000-000000000000"],
    )
    .await;
    assert!(!unknown.status.success());

    // Importing the export: the id is now an expired silence, so a new one replaces it.
    let file = std::env::temp_dir().join(format!("ocx-amtool-export-{}.json", std::process::id()));
    std::fs::write(&file, &exported).unwrap();
    let imported = amtool_ok(&url, &["silence", "import", file.to_str().unwrap()]).await;
    let new_id = imported.trim().to_string();
    assert!(is_uuid(&new_id) && new_id != id, "{imported:?}");
    let listed = amtool_ok(&url, &["silence", "query", "-o", "json"]).await;
    assert_eq!(ids_in(&listed), std::slice::from_ref(&new_id));
    let v: Value = serde_json::from_str(&listed).unwrap();
    let orig: Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(v[0]["matchers"], orig[0]["matchers"]);
    assert_eq!(v[0]["endsAt"], orig[0]["endsAt"]);

    // Into an empty store: the unknown id is answered 404 and amtool re-creates it without one.
    let (url2, api2) = serve(None).await;
    let imported = amtool_ok(&url2, &["silence", "import", file.to_str().unwrap()]).await;
    assert!(is_uuid(imported.trim()), "{imported:?}");
    assert_eq!(api2.silences().len(), 1);
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_lists_and_filters_alerts() {
    if !peer("amtool") {
        return;
    }
    let (url, _api) = serve(None).await;
    let names = |args: &'static [&'static str]| {
        let url = url.clone();
        async move {
            let mut a = vec!["alert", "query", "-o", "json"];
            a.extend_from_slice(args);
            alertnames(&amtool_ok(&url, &a).await)
        }
    };
    let set = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(names(&[]).await, set(&["Foo", "Bar"]));
    assert_eq!(names(&["-i"]).await, set(&["Baz"]));
    assert_eq!(names(&["-u"]).await, set(&["Qux"]));
    assert_eq!(
        names(&["-a", "-i", "-u"]).await,
        set(&["Foo", "Bar", "Baz", "Qux"])
    );
    assert_eq!(names(&["alertname=Bar"]).await, set(&["Bar"]));
    assert_eq!(names(&["Foo"]).await, set(&["Foo"]));
    assert_eq!(names(&[r#"market=~".*-PERP""#]).await, set(&["Foo", "Bar"]));
    assert_eq!(names(&["-r", "pager"]).await, set(&["Foo"]));
    assert_eq!(names(&["-r", "pag.*|nope"]).await, set(&["Foo"]));

    let simple = amtool_ok(&url, &["alert", "query"]).await;
    assert!(
        simple.contains("Foo") && simple.contains("Bar happened"),
        "{simple}"
    );

    let bad = amtool(&url, &["alert", "query", r#"a=""#]).await;
    assert!(!bad.status.success(), "an unparsable matcher fails");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_bearer_token_reads_do_not() {
    if !peer("amtool") {
        return;
    }
    let (url, api) = serve(Some(TOKEN)).await;
    let add = [
        "silence",
        "add",
        "alertname=Foo",
        "-c",
        "c",
        "-a",
        "a",
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
    assert!(!shown.contains(TOKEN));
    assert!(api.silences().is_empty());

    // amtool 0.25 has --http.config.file (Prometheus's http_config).
    let cfg = std::env::temp_dir().join(format!("ocx-amtool-http-{}.yml", std::process::id()));
    std::fs::write(
        &cfg,
        format!("authorization:\n  type: Bearer\n  credentials: {TOKEN}\n"),
    )
    .unwrap();
    let flag = format!("--http.config.file={}", cfg.display());
    let mut with_token = vec![flag.as_str()];
    with_token.extend_from_slice(&add);
    let id = amtool_ok(&url, &with_token).await.trim().to_string();
    assert!(is_uuid(&id));

    // Reads are open.
    let listed = amtool_ok(&url, &["silence", "query", "-q"]).await;
    assert_eq!(listed.trim(), id);
    let expire = amtool(&url, &["silence", "expire", &id]).await;
    assert!(!expire.status.success(), "expire needs the token too");
    amtool_ok(&url, &[flag.as_str(), "silence", "expire", &id]).await;
    assert_eq!(
        amtool_ok(&url, &["silence", "query", "-q"]).await.trim(),
        ""
    );

    // The same with a plain client: a wrong token is 401 and not echoed.
    let client = reqwest::Client::new();
    let r = client
        .delete(format!("{url}/api/v2/silence/{id}"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!r.text().await.unwrap().contains("wrong"));
    let _ = std::fs::remove_file(&cfg);
}

// ---- against a real Alertmanager ----

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

struct Killed(Child, PathBuf);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// A real Alertmanager routing `severity=page` to `pager`, the rest to `default`, grouped by
/// alertname — the grouping the fixed alerts above have.
async fn start_alertmanager() -> (String, Killed) {
    let dir = std::env::temp_dir().join(format!(
        "ocx-sentinel-am-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("am.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: default\n  group_by: [alertname]\n  routes:\n    - receiver: pager\n      matchers: [severity=\"page\"]\nreceivers:\n  - name: default\n  - name: pager\n",
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("alertmanager starts");
    let guard = Killed(child, dir);
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{url}/-/ready")).send().await
            && r.status().is_success()
        {
            return (url, guard);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("alertmanager did not become ready");
}

/// Every object's keys and every value's JSON type, by path (array elements share one path);
/// label and annotation names are data, not shape. Times must be millisecond RFC 3339 in both.
fn shape(v: &Value, path: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                out.insert(format!("{path}.{k}"));
                if k != "labels" && k != "annotations" && k != "original" {
                    shape(child, &format!("{path}.{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            out.insert(format!("{path}: array"));
            for i in items {
                shape(i, &format!("{path}[]"), out);
            }
        }
        Value::String(s) => {
            let time = s.len() == 24
                && s.as_bytes()[10] == b'T'
                && s.ends_with('Z')
                && s.as_bytes()[19] == b'.';
            out.insert(format!("{path}: {}", if time { "time" } else { "string" }));
        }
        Value::Bool(_) => {
            out.insert(format!("{path}: bool"));
        }
        Value::Number(_) => {
            out.insert(format!("{path}: number"));
        }
        Value::Null => {
            out.insert(format!("{path}: null"));
        }
    }
}

fn shape_of(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    shape(v, "", &mut out);
    out
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let r = client.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post(client: &reqwest::Client, url: &str, body: &str) -> (u16, String) {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_shapes_and_errors_match_a_real_alertmanager() {
    if !peer("amtool") || !peer("prometheus-alertmanager") {
        return;
    }
    let (am, _guard) = start_alertmanager().await;
    let (ours, _api) = serve(None).await;
    let client = reqwest::Client::new();

    // Foo (paged, with a generator URL) and Bar into the real one, as the fixed source has them.
    let (code, _) = post(
        &client,
        &format!("{am}/api/v2/alerts"),
        r#"[{"labels":{"alertname":"Foo","market":"BTC-PERP","severity":"page"},"annotations":{"summary":"Foo happened"},"generatorURL":"http://sidecar/graph?g0.expr=up"},
            {"labels":{"alertname":"Bar","market":"ETH-PERP"},"annotations":{"summary":"Bar happened"}}]"#,
    )
    .await;
    assert_eq!(code, 200);
    let mut ids = Vec::new();
    for base in [&am, &ours] {
        let id = amtool_ok(
            base,
            &[
                "silence",
                "add",
                "alertname=Foo",
                r#"market=~"BTC.*""#,
                "-c",
                "c",
                "-a",
                "a",
                "-d",
                "1h",
            ],
        )
        .await;
        ids.push(id.trim().to_string());
    }

    // Same keys and types, endpoint by endpoint; alerts compared as the Foo/Bar pair.
    // Alerts and groups alike: keep Foo's and Bar's, by alertname (fingerprints differ).
    let only_foo_bar = |v: Value| -> Value {
        let mut items: Vec<Value> = v
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| matches!(a["labels"]["alertname"].as_str(), Some("Foo" | "Bar")))
            .cloned()
            .collect();
        items.sort_by_key(|a| a["labels"]["alertname"].as_str().unwrap_or("").to_string());
        Value::Array(items)
    };
    // The real one takes a moment to route the posted alerts into groups.
    for _ in 0..50 {
        let (_, g) = get(&client, &format!("{am}/api/v2/alerts/groups")).await;
        let groups: Value = serde_json::from_str(&g).unwrap();
        if groups.as_array().is_some_and(|a| a.len() == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (path, filter) in [
        ("/api/v2/status", false),
        ("/api/v2/receivers", false),
        ("/api/v2/silences", false),
        ("/api/v2/alerts", true),
        ("/api/v2/alerts?silenced=false", true),
        ("/api/v2/alerts/groups", true),
    ] {
        let (c1, theirs) = get(&client, &format!("{am}{path}")).await;
        let (c2, mine) = get(&client, &format!("{ours}{path}")).await;
        assert_eq!((c1, c2), (200, 200), "{path}");
        let (mut theirs, mut mine): (Value, Value) = (
            serde_json::from_str(&theirs).unwrap(),
            serde_json::from_str(&mine).unwrap(),
        );
        if filter {
            theirs = only_foo_bar(theirs);
            mine = only_foo_bar(mine);
            assert_eq!(
                theirs.as_array().unwrap().len(),
                mine.as_array().unwrap().len(),
                "{path}: {theirs}\n{mine}"
            );
            for (t, m) in theirs
                .as_array()
                .unwrap()
                .iter()
                .zip(mine.as_array().unwrap())
            {
                assert_eq!(t["labels"], m["labels"], "{path}");
                assert_eq!(shape_of(t), shape_of(m), "{path}:\n{t}\n{m}");
                if let Some(st) = t.get("status") {
                    assert_eq!(st["state"], m["status"]["state"], "{path}");
                    assert_eq!(
                        st["silencedBy"].as_array().map(Vec::len),
                        m["status"]["silencedBy"].as_array().map(Vec::len)
                    );
                }
            }
        } else {
            assert_eq!(
                shape_of(&theirs),
                shape_of(&mine),
                "{path}:\n{theirs}\n{mine}"
            );
        }
    }
    let (_, t) = get(&client, &format!("{am}/api/v2/silence/{}", ids[0])).await;
    let (_, m) = get(&client, &format!("{ours}/api/v2/silence/{}", ids[1])).await;
    let (t, m): (Value, Value) = (
        serde_json::from_str(&t).unwrap(),
        serde_json::from_str(&m).unwrap(),
    );
    assert_eq!(shape_of(&t), shape_of(&m));
    assert_eq!(t["matchers"], m["matchers"]);

    // Errors: same status and same body.
    let body = |fields: &str| {
        format!(r#"{{"matchers":[{{"name":"a","value":"b","isRegex":false}}]{fields}}}"#)
    };
    let future = "2999-01-01T00:00:00Z";
    let posts = [
        String::new(),
        "{bad".to_string(),
        body(r#","startsAt":"2020-01-01T00:00:00Z","endsAt":"2999-01-01T00:00:00Z","createdBy":"a""#),
        body(r#","startsAt":"2020-01-01T00:00:00Z","createdBy":"a","comment":"c""#),
        r#"{"matchers":[],"startsAt":"2020-01-01T00:00:00Z","endsAt":"2999-01-01T00:00:00Z","createdBy":"a","comment":"c"}"#.to_string(),
        r#"{"matchers":[{"name":"a","value":"b"}],"startsAt":"2020-01-01T00:00:00Z","endsAt":"2999-01-01T00:00:00Z","createdBy":"a","comment":"c"}"#.to_string(),
        r#"{"matchers":[{"name":"a","value":"","isRegex":false}],"startsAt":"2020-01-01T00:00:00Z","endsAt":"2999-01-01T00:00:00Z","createdBy":"a","comment":"c"}"#.to_string(),
        r#"{"matchers":[{"name":"a-b","value":"x","isRegex":false}],"startsAt":"2020-01-01T00:00:00Z","endsAt":"2999-01-01T00:00:00Z","createdBy":"a","comment":"c"}"#.to_string(),
        body(&format!(r#","startsAt":"{future}","endsAt":"2998-01-01T00:00:00Z","createdBy":"a","comment":"c""#)),
        body(r#","startsAt":"2020-01-01T00:00:00Z","endsAt":"2021-01-01T00:00:00Z","createdBy":"a","comment":"c""#),
        body(&format!(r#","id":"00000000-0000-4000-8000-000000000000","startsAt":"2020-01-01T00:00:00Z","endsAt":"{future}","createdBy":"a","comment":"c""#)),
    ];
    for p in &posts {
        let t = post(&client, &format!("{am}/api/v2/silences"), p).await;
        let m = post(&client, &format!("{ours}/api/v2/silences"), p).await;
        if p.starts_with("{bad") {
            // Go's and serde's JSON syntax errors are worded differently; the frame is the same.
            assert_eq!(t.0, m.0, "POST {p}");
            let (t, m): (Value, Value) = (
                serde_json::from_str(&t.1).unwrap(),
                serde_json::from_str(&m.1).unwrap(),
            );
            assert_eq!(t["code"], m["code"]);
            let prefix = "parsing silence body from \"\" failed, because ";
            assert!(t["message"].as_str().unwrap().starts_with(prefix));
            assert!(m["message"].as_str().unwrap().starts_with(prefix));
        } else {
            assert_eq!(t, m, "POST {p}");
        }
    }
    for path in [
        "/api/v2/silence/00000000-0000-4000-8000-000000000000",
        "/api/v2/silence/notauuid",
        "/api/v2/silences?filter=a",
        "/api/v2/alerts?filter=a",
    ] {
        let t = get(&client, &format!("{am}{path}")).await;
        let m = get(&client, &format!("{ours}{path}")).await;
        assert_eq!(t, m, "GET {path}");
    }
}
