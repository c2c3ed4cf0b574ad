//! Unit tests of the Alertmanager config: each construct, and the data-driven cases in `testdata/`.
//!
//! A case's leading comment lines say what must happen (`# expect: ok` or one `# expect-error:`
//! per problem, in order); `# route:` and `# amtool:` lines are for the differential test in
//! tests/alertmanager_config.rs. `_file` paths in cases are relative to `testdata/`.

use super::*;

const TESTDATA: &str = "src/notify/config/testdata";

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(name: &str) -> AlertingConfig {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(TESTDATA);
    load_file(&dir.join(name)).unwrap()
}

fn cfg(yaml: &str) -> AlertingConfig {
    parse_str(yaml, "t.yml").unwrap_or_else(|e| panic!("{e}"))
}

fn errors(yaml: &str) -> Vec<String> {
    parse_str(yaml, "t.yml")
        .expect_err("an error")
        .to_string()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_testdata_case_gives_exactly_its_expected_result() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join(TESTDATA);
    crate::testdata::check_dir(TESTDATA, 40, |text, name| {
        parse_in(text, name, &base)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}

#[test]
fn the_routing_cases_in_testdata_route_as_stated() {
    // The same `# route:` lines the differential test gives amtool.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(TESTDATA);
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().take_while(|l| l.starts_with('#')) {
            let Some(spec) = line.strip_prefix("# route:") else {
                continue;
            };
            let (ls, want) = spec.split_once("->").unwrap();
            let l: BTreeMap<String, String> = ls
                .split_whitespace()
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            let c = load_file(&path).unwrap();
            assert_eq!(
                c.route.receivers_for(&l).join(","),
                want.trim(),
                "{}: {line}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} routing cases");
}

#[test]
fn defaults_match_alertmanager() {
    let c = load("ok_minimal.yml");
    assert_eq!(c.global.resolve_timeout, Duration::from_secs(300));
    assert!(c.global.smtp_require_tls);
    assert_eq!(c.global.smtp_hello, "localhost");
    let root = c.route.root();
    assert_eq!(root.receiver, "default");
    assert_eq!(root.group_wait, Duration::from_secs(30));
    assert_eq!(root.group_interval, Duration::from_secs(300));
    assert_eq!(root.repeat_interval, Duration::from_secs(4 * 3600));
    assert_eq!(root.group_by, GroupBy::Labels(Default::default()));
    assert_eq!(root.key, "{}");
    assert!(c.receiver("default").unwrap().is_blackhole());
}

#[test]
fn children_inherit_receiver_grouping_and_timers_but_not_time_intervals() {
    let c = load("ok_full.yml");
    let nodes = c.route.nodes();
    let by_receiver = |r: &str| nodes.iter().find(|n| n.receiver == r).unwrap();
    let pager = by_receiver("pager");
    assert_eq!(pager.group_by, GroupBy::All);
    assert_eq!(pager.group_wait, Duration::from_secs(10));
    assert_eq!(pager.repeat_interval, Duration::from_secs(7200));
    assert!(pager.continue_matching);
    let eth = by_receiver("eth");
    assert_eq!(
        eth.group_by,
        GroupBy::Labels(["alertname".to_string(), "market".to_string()].into())
    );
    assert_eq!(eth.mute_time_intervals, ["weekends"]);
    assert_eq!(eth.key, r#"{}/{team="ops"}/{market=~"ETH-.*"}"#);
    assert_eq!(eth.id, r#"{}/{team="ops"}/1/{market=~"ETH-.*"}/0"#);
    assert_eq!(eth.parent, Some(by_receiver("team-ops").index));
    // A child of `eth` would not inherit `weekends`: only group_by, receiver, timers pass down.
    let c = cfg("
route:
  receiver: r
  group_by: ['...']
  routes:
    - matchers: [a=b]
      mute_time_intervals: [t]
      routes:
        - matchers: [c=d]
          group_by: []
        - matchers: [e=f]
          group_by: [x]
receivers: [{name: r}]
time_intervals: [{name: t, time_intervals: []}]
");
    let n = c.route.nodes();
    assert!(n[2].mute_time_intervals.is_empty());
    assert_eq!(n[2].group_by, GroupBy::All, "an empty list inherits");
    assert_eq!(n[3].group_by, GroupBy::Labels(["x".to_string()].into()));
    assert_eq!(n[2].receiver, "r");
}

#[test]
fn matchers_are_sorted_and_keyed_as_alertmanager_prints_them() {
    let c = cfg(r#"
route:
  receiver: r
  routes:
    - matchers: ['b="2"', 'a=~"x|y"', 'a!="z"']
      match: {c: "3"}
    - matchers: ['a="q\"uote"']
receivers: [{name: r}]
"#);
    let n = &c.route.nodes()[1];
    assert_eq!(n.key, r#"{}/{a=~"x|y",a!="z",b="2",c="3"}"#);
    let q = &c.route.nodes()[2];
    assert_eq!(q.key, r#"{}/{a="q\"uote"}"#);
    assert_eq!(q.id, r#"{}/{a="q\"uote"}/1"#);
}

#[test]
fn group_labels_pick_the_grouping_labels() {
    let alert = labels(&[("alertname", "A"), ("market", "BTC"), ("x", "1")]);
    let g = GroupBy::Labels(["market".to_string(), "absent".to_string()].into());
    assert_eq!(g.group_labels(&alert), labels(&[("market", "BTC")]));
    assert_eq!(GroupBy::All.group_labels(&alert), alert);
}

#[test]
fn receivers_take_their_defaults_and_secrets_never_print() {
    let c = load("ok_full.yml");
    let pager = &c.receiver("pager").unwrap().webhooks[0];
    assert!(pager.send_resolved);
    assert_eq!(pager.max_alerts, 10);
    let auth = pager.http_config.authorization.as_ref().unwrap();
    assert_eq!(auth.scheme, "Bearer");
    assert_eq!(auth.credentials.as_ref().unwrap().expose(), "s3cret");
    let ops = &c.receiver("team-ops").unwrap().webhooks;
    assert!(!ops[0].send_resolved);
    assert_eq!(
        ops[0]
            .http_config
            .basic_auth
            .as_ref()
            .unwrap()
            .password
            .as_ref()
            .unwrap()
            .expose(),
        "p"
    );
    assert_eq!(
        ops[1]
            .http_config
            .authorization
            .as_ref()
            .unwrap()
            .credentials
            .as_ref()
            .unwrap()
            .expose(),
        "tok"
    );
    assert!(ops[1].http_config.tls.insecure_skip_verify);
    // The webhook without its own http_config takes the global one (follow_redirects: false).
    let eth_mail = &c.receiver("eth").unwrap().emails[0];
    assert_eq!(eth_mail.from, "alerts@example.com");
    assert_eq!(eth_mail.smarthost.to_string(), "smtp.example.com:587");
    assert_eq!(eth_mail.hello, "sentinel.example.com");
    assert_eq!(eth_mail.auth_password.as_ref().unwrap().expose(), "hunter2");
    assert!(!eth_mail.require_tls, "from global smtp_require_tls");
    assert!(!eth_mail.send_resolved);
    assert_eq!(eth_mail.html, r#"{{ template "email.default.html" . }}"#);
    let db = &c.receiver("db-mail").unwrap().emails[0];
    assert_eq!(db.smarthost.host, "mail.example.com");
    assert!(db.require_tls && db.send_resolved);
    assert_eq!(db.headers.keys().collect::<Vec<_>>(), ["Subject", "X-Team"]);
    let shown = format!("{c:?}");
    for secret in ["s3cret", "hunter2", "tok", "token=abc"] {
        assert!(!shown.contains(secret), "{secret} leaked into Debug");
    }

    let c = load("ok_global_defaults_email.yml");
    let mails = &c.receiver("mail").unwrap().emails;
    assert_eq!(mails[0].smarthost.to_string(), "[::1]:2525");
    assert_eq!(
        mails[0].auth_password.as_ref().unwrap().expose(),
        "pw-from-file"
    );
    assert_eq!(mails[1].auth_password.as_ref().unwrap().expose(), "own");
    let c = load("ok_newer_webhook_fields.yml");
    let w = &c.receiver("a").unwrap().webhooks[0];
    assert_eq!(w.url.expose(), "https://hooks.example.com/secret-path");
    assert_eq!(w.timeout, Some(Duration::from_secs(10)));
    assert!(w.http_config.follow_redirects, "the default http_config");
}

#[test]
fn global_http_config_is_the_default_of_webhooks() {
    let c = cfg("
global:
  http_config:
    bearer_token: g
route: {receiver: r}
receivers:
  - name: r
    webhook_configs:
      - url: http://a.example/
      - url: http://b.example/
        http_config: {follow_redirects: false}
");
    let w = &c.receiver("r").unwrap().webhooks;
    let cred = |i: usize| {
        w[i].http_config
            .authorization
            .as_ref()
            .and_then(|a| a.credentials.as_ref())
            .map(|s| s.expose().to_string())
    };
    assert_eq!(cred(0).as_deref(), Some("g"));
    assert_eq!(cred(1), None, "replaced whole, not merged");
}

#[test]
fn inhibition_follows_alertmanager() {
    let c = load("ok_full.yml");
    let rule = &c.inhibit_rules[0];
    let page = labels(&[("severity", "page"), ("market", "BTC")]);
    let warn = labels(&[("severity", "warning"), ("market", "BTC")]);
    let warn_eth = labels(&[("severity", "warning"), ("market", "ETH")]);
    assert!(rule.inhibits(&page, &warn));
    assert!(!rule.inhibits(&page, &warn_eth), "equal label differs");
    assert!(!rule.inhibits(&warn, &page));
    // A label missing on both sides, or missing on one and empty on the other, is equal.
    let page_no_market = labels(&[("severity", "page")]);
    let warn_no_market = labels(&[("severity", "warning"), ("market", "")]);
    assert!(rule.inhibits(&page_no_market, &warn_no_market));
    assert!(!rule.inhibits(&page_no_market, &warn));

    // An alert matching both sides never mutes another that does (nor itself).
    let both = cfg("
route: {receiver: r}
receivers: [{name: r}]
inhibit_rules:
  - source_matchers: [a=1]
    target_matchers: [b=1]
");
    let r = &both.inhibit_rules[0];
    let ab = labels(&[("a", "1"), ("b", "1")]);
    assert!(!r.inhibits(&ab, &ab));
    assert!(r.inhibits(&labels(&[("a", "1")]), &ab));
    assert!(r.inhibits(&ab, &labels(&[("b", "1")])));

    let legacy = &c.inhibit_rules[1];
    assert!(legacy.inhibits(
        &labels(&[("alertname", "ExchangeDown")]),
        &labels(&[("alertname", "PositionsStale")])
    ));
    assert!(!legacy.inhibits(
        &labels(&[("alertname", "ExchangeDown")]),
        &labels(&[("alertname", "Stale")])
    ));
}

#[test]
fn routes_are_muted_by_mute_intervals_and_outside_active_ones() {
    let c = load("ok_full.yml");
    let n = c.route.nodes();
    let eth = n.iter().find(|x| x.receiver == "eth").unwrap();
    let db = n.iter().find(|x| x.receiver == "db-mail").unwrap();
    // 2024-06-08 is a Saturday, 2024-06-10 a Monday.
    let sat_noon = 1_717_848_000_000;
    let mon_noon = 1_718_020_800_000;
    let mon_night = 1_718_056_800_000; // 22:00Z
    assert!(c.route_muted_at(eth, sat_noon));
    assert!(!c.route_muted_at(eth, mon_noon));
    assert!(c.route_muted_at(db, sat_noon), "outside office hours");
    assert!(!c.route_muted_at(db, mon_noon));
    assert!(c.route_muted_at(db, mon_night));
    assert!(!c.route_muted_at(c.route.root(), sat_noon));
    let t = c.time_interval("office-hours").unwrap();
    assert!(t.contains(mon_noon) && !t.contains(sat_noon));
}

#[test]
fn time_intervals_keep_both_lists_and_their_locations() {
    let c = load("ok_time_intervals.yml");
    let names: Vec<&str> = c.time_intervals.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["old", "nights", "business"]);
    let b = c.time_interval("business").unwrap();
    assert_eq!(b.intervals[0].location.name(), "Local");
    assert_eq!(
        b.intervals[0].months.as_ref().unwrap()[2],
        InclusiveRange { begin: 4, end: 6 }
    );
    assert_eq!(b.intervals[1].location.name(), "Europe/Berlin");
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let e = errors(
        "
route:
  receiver: missing
  routes:
    - group_interval: 0s
receivers:
  - name: a
    slack_configs: [{channel: x}]
  - name: a
",
    );
    assert_eq!(
        e,
        [
            r#"t.yml:3:13: route.receiver: undefined receiver "missing" used in route"#,
            "t.yml:5:23: route.routes[0].group_interval: group_interval cannot be zero",
            r#"t.yml:8:20: receivers[0].slack_configs: not supported (receiver "a"): ocx-sentinel sends only webhook_configs and email_configs"#,
            r#"t.yml:9:11: receivers[1].name: notification config name "a" is not unique"#,
        ]
    );
    assert_eq!(
        errors(""),
        ["t.yml: no route provided in config"],
        "an empty file"
    );
}

#[test]
fn load_file_reports_a_missing_file_and_resolves_relative_paths() {
    let e = load_file(Path::new("/nonexistent/am.yml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/am.yml: cannot read")
    );
    let c = load("ok_full.yml");
    assert!(c.templates[0].ends_with("testdata/templates/*.tmpl"));
}

// `fallback_receiver` (ours, not Alertmanager's): inherited with its delay like the receiver,
// `fallback_after` defaulting to 5m, and checked like a receiver name.
#[test]
fn fallback_receivers_are_inherited_checked_and_default_to_five_minutes() {
    let c = cfg(r#"
route:
  receiver: team
  fallback_receiver: phone
  routes:
    - matchers: [severity="page"]
      fallback_after: 30s
    - matchers: [severity="info"]
      receiver: phone
receivers: [{name: team}, {name: phone}]
"#);
    let nodes = c.route.nodes();
    assert_eq!(
        nodes[0].fallback,
        Some(("phone".into(), Duration::from_secs(300)))
    );
    assert_eq!(
        nodes[1].fallback,
        Some(("phone".into(), Duration::from_secs(30)))
    );
    assert_eq!(
        nodes[2].fallback,
        Some(("phone".into(), Duration::from_secs(300)))
    );
    let e = errors(
        "route:\n  receiver: team\n  fallback_receiver: nobody\nreceivers: [{name: team}]\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("t.yml:3")
            && e[0].contains("undefined receiver \"nobody\" used as fallback_receiver"),
        "{e:?}"
    );
    let e = errors("route:\n  receiver: team\n  fallback_after: 1m\nreceivers: [{name: team}]\n");
    assert!(
        e[0].contains("fallback_after without a fallback_receiver"),
        "{e:?}"
    );
}
