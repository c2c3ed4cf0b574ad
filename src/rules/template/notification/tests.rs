//! Notification template tests: Alertmanager's data, methods and functions, named templates, the two dialects kept apart, and the HTML mode's escaping. Expected text is what Alertmanager's Go templates give for the same data (checked by hand against its template package's rules).

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const STARTS: i64 = 1_764_092_913_120; // 2025-11-25T17:48:33.12Z

fn data() -> NotificationData {
    NotificationData {
        receiver: "team-mail".into(),
        status: "firing".into(),
        alerts: vec![
            NotificationAlert {
                status: "firing".into(),
                labels: labels(&[
                    ("severity", "page"),
                    ("market", "BTC-PERP"),
                    ("alertname", "InventoryLimitBreached"),
                ]),
                annotations: labels(&[
                    ("summary", "BTC-PERP over limit"),
                    ("runbook_url", "https://runbooks.example/inventory"),
                ]),
                starts_at_ms: STARTS,
                ends_at_ms: None,
                generator_url: "http://sentinel:9477/".into(),
                fingerprint: "0123456789abcdef".into(),
                value: 7.5,
            },
            NotificationAlert {
                status: "resolved".into(),
                labels: labels(&[
                    ("severity", "page"),
                    ("market", "ETH-PERP"),
                    ("alertname", "InventoryLimitBreached"),
                ]),
                annotations: labels(&[("summary", "ETH-PERP over limit")]),
                starts_at_ms: STARTS,
                ends_at_ms: Some(1_764_092_973_000),
                generator_url: String::new(),
                fingerprint: "fedcba9876543210".into(),
                value: 1.25,
            },
        ],
        group_labels: labels(&[("alertname", "InventoryLimitBreached")]),
        common_labels: labels(&[
            ("alertname", "InventoryLimitBreached"),
            ("severity", "page"),
        ]),
        common_annotations: BTreeMap::new(),
        external_url: "http://sentinel:9477".into(),
    }
}

fn set() -> Arc<TemplateSet> {
    let mut s = TemplateSet::default();
    s.add_file(
        "defs.tmpl",
        r#"{{ define "hello" }}Hello {{ .Receiver }}{{ end }}
{{ define "bad" }}{{ .Nope }}{{ end }}"#,
    )
    .unwrap();
    Arc::new(s)
}

fn try_render(text: &str, html: bool) -> Result<String, TemplateError> {
    let t = NotificationTemplate::parse(&set(), "t", text)?;
    t.render(&data(), html, STARTS + 90_000)
}

fn render(text: &str) -> String {
    try_render(text, false).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn html(text: &str) -> String {
    try_render(text, true).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn error(text: &str) -> String {
    match try_render(text, false) {
        Ok(out) => panic!("{text:?} rendered {out:?}"),
        Err(e) => e.0,
    }
}

#[test]
fn alertmanagers_data_fields_and_methods() {
    assert_eq!(
        render("{{ .Receiver }} {{ .Status | toUpper }}"),
        "team-mail FIRING"
    );
    assert_eq!(
        render("{{ len .Alerts }} {{ len .Alerts.Firing }} {{ .Alerts.Resolved | len }}"),
        "2 1 1"
    );
    assert_eq!(
        render(r#"{{ .GroupLabels.SortedPairs.Values | join " " }}"#),
        "InventoryLimitBreached"
    );
    assert_eq!(render("{{ .CommonLabels.Names }}"), "[alertname severity]");
    // KV and Pairs print through their String methods.
    assert_eq!(
        render("{{ .CommonLabels }} | {{ .GroupLabels.SortedPairs }}"),
        "alertname=InventoryLimitBreached, severity=page | alertname=InventoryLimitBreached"
    );
    assert_eq!(
        render(
            r#"{{ with .CommonLabels.Remove .GroupLabels.Names }}{{ .Values | join "," }}{{ end }}"#
        ),
        "page"
    );
    assert_eq!(
        render(r#"{{ .CommonLabels.Values.Join ", " }}"#),
        "InventoryLimitBreached, page"
    );
    assert_eq!(
        render("{{ range .Alerts }}{{ .Labels.market }}:{{ .Status }} {{ end }}"),
        "BTC-PERP:firing ETH-PERP:resolved "
    );
    assert_eq!(
        render(
            "{{ range $i, $a := .Alerts.Firing }}{{ $i }}={{ $a.Value }} {{ $a.Fingerprint }}{{ end }}"
        ),
        "0=7.5 0123456789abcdef"
    );
    // `alertname` leads the sorted pairs; the rest by name.
    assert_eq!(
        render(
            "{{ range (index .Alerts 0).Labels.SortedPairs }}{{ .Name }}={{ .Value }};{{ end }}"
        ),
        "alertname=InventoryLimitBreached;market=BTC-PERP;severity=page;"
    );
    // missingkey=zero: an absent label is empty, not `<no value>`.
    assert_eq!(render("[{{ .CommonAnnotations.summary }}]"), "[]");
    assert_eq!(render(r#"[{{ index .CommonLabels "nope" }}]"#), "[]");
    assert_eq!(render("{{ .ExternalURL }}"), "http://sentinel:9477");
    assert_eq!(
        error("{{ .Alerts.Firing.Firing }}"),
        "template: t:1:10: executing \"t\" at <.Alerts.Firing.Firing>: can't evaluate field Firing in type []template.Alert"
    );
    assert_eq!(
        error("{{ .Nope }}"),
        "template: t:1:3: executing \"t\" at <.Nope>: can't evaluate field Nope in type *template.Data"
    );
    assert!(
        error("{{ .CommonLabels.Remove }}")
            .contains("wrong number of args for Remove: want 1 got 0")
    );
}

#[test]
fn times_and_durations() {
    assert_eq!(
        render(r#"{{ (index .Alerts 0).StartsAt.Format "2006-01-02T15:04:05Z07:00" }}"#),
        "2025-11-25T17:48:33Z"
    );
    assert_eq!(
        render("{{ (index .Alerts 0).StartsAt }}"),
        "2025-11-25 17:48:33.12 +0000 UTC"
    );
    // A firing alert ends at Go's zero time, as in Alertmanager's data.
    assert_eq!(
        render("{{ (index .Alerts 0).EndsAt.IsZero }} {{ (index .Alerts 0).EndsAt }}"),
        "true 0001-01-01 00:00:00 +0000 UTC"
    );
    assert_eq!(render("{{ (index .Alerts 1).EndsAt.Unix }}"), "1764092973");
    assert_eq!(
        render(r#"{{ date "15:04 MST" (index .Alerts 0).StartsAt }}"#),
        "17:48 UTC"
    );
    // `now` is the render time given (90 s after the start here).
    assert_eq!(render("{{ since (index .Alerts 0).StartsAt }}"), "1m30s");
    assert_eq!(render("{{ now.UnixMilli }}"), (STARTS + 90_000).to_string());
    assert_eq!(render("{{ humanizeDuration 3725 }}"), "1h 2m 5s");
    assert_eq!(
        render("{{ if gt (since (index .Alerts 0).StartsAt) 60000000000 }}over a minute{{ end }}"),
        "over a minute"
    );
}

#[test]
fn alertmanagers_functions() {
    assert_eq!(
        render(r#"{{ title "hELLO wORLD foo_bar" }}"#),
        "Hello World Foo_bar"
    );
    assert_eq!(
        render(r#"{{ toLower "ABC" }}|{{ trimSpace "  x  " }}|"#),
        "abc|x|"
    );
    assert_eq!(render(r#"{{ stringSlice "a" "b" | join "+" }}"#), "a+b");
    assert_eq!(render(r#"{{ "a b&c" | urlquery }}"#), "a+b%26c");
    assert_eq!(render(r#"{{ urlUnescape "a%20b+c" }}"#), "a b c");
    assert!(
        error(r#"{{ urlUnescape "%zz" }}"#)
            .ends_with(r#"error calling urlUnescape: invalid URL escape "%zz""#)
    );
    assert_eq!(
        render(r#"{{ base64encode "???" }}|{{ base64decode "Pz8_" }}"#),
        "Pz8_|???"
    );
    assert!(error(r#"{{ base64decode "!!" }}"#).ends_with("illegal base64 data at input byte 0"));
    assert_eq!(
        render(r#"{{ toJson .GroupLabels }} {{ toJson (stringSlice "a" "<b>") }}"#),
        r#"{"alertname":"InventoryLimitBreached"} ["a","\u003cb\u003e"]"#
    );
    assert_eq!(
        render("{{ (index .Alerts 1) | toJson }}"),
        r#"{"status":"resolved","labels":{"alertname":"InventoryLimitBreached","market":"ETH-PERP","severity":"page"},"annotations":{"summary":"ETH-PERP over limit"},"startsAt":"2025-11-25T17:48:33.12Z","endsAt":"2025-11-25T17:49:33Z","generatorURL":"","fingerprint":"fedcba9876543210","value":1.25}"#
    );
    assert_eq!(
        render(
            r#"{{ $d := dict "name" "x" "n" 2 }}{{ $d.name }}-{{ index $d "n" }}-{{ len (list 1 2 3) }}-{{ append (list 1) "b" }}"#
        ),
        "x-2-3-[1 b]"
    );
    assert!(error(r#"{{ dict "a" }}"#).ends_with("dict requires an even number of arguments"));
    assert_eq!(
        render(r#"{{ toJson (list 7.0 0.5 1e21 1e-7 "a&b") }}"#),
        r#"[7,0.5,1e+21,1e-7,"a\u0026b"]"#
    );
    assert_eq!(
        render(
            r#"{{ if match "^BTC" (index .Alerts 0).Labels.market }}yes{{ end }} {{ reReplaceAll "-PERP" "" "BTC-PERP" }}"#
        ),
        "yes BTC"
    );
}

#[test]
fn named_templates_are_defined_called_and_overridden() {
    assert_eq!(render(r#"{{ template "hello" . }}!"#), "Hello team-mail!");
    // The text's own definition comes before the set's.
    assert_eq!(
        render(r#"{{ define "hello" }}Hi{{ end }}{{ template "hello" . }}"#),
        "Hi"
    );
    assert_eq!(
        render(r#"{{ define "x" }}[{{ . }}]{{ end }}{{ template "x" }}"#),
        "[<no value>]"
    );
    assert_eq!(
        render(r#"{{ block "b" .Receiver }}<{{ . }}>{{ end }}"#),
        "<team-mail>"
    );
    // A called template sees its dot as `$`, and none of the caller's variables.
    assert_eq!(
        render(r#"{{ define "s" }}{{ $.Status }}{{ end }}{{ template "s" . }}"#),
        "firing"
    );
    assert!(
        error(r#"{{ $v := 1 }}{{ define "y" }}{{ $v }}{{ end }}"#)
            .contains(r#"undefined variable "$v""#)
    );

    let mut s = TemplateSet::default();
    s.add_file("a.tmpl", r#"{{ define "greet" }}A{{ end }}"#)
        .unwrap();
    // An empty definition keeps the earlier one; a non-empty one replaces it (Go's rule).
    s.add_file("b.tmpl", r#"{{ define "greet" }}  {{ end }}"#)
        .unwrap();
    let s = Arc::new(s);
    let t = NotificationTemplate::parse(&s, "t", r#"{{ template "greet" . }}"#).unwrap();
    assert_eq!(t.render(&data(), false, 0).unwrap(), "A");
    let mut s2 = (*s).clone();
    s2.add_file("c.tmpl", r#"{{ define "greet" }}C{{ end }}"#)
        .unwrap();
    let t = NotificationTemplate::parse(&Arc::new(s2), "t", r#"{{ template "greet" . }}"#).unwrap();
    assert_eq!(t.render(&data(), false, 0).unwrap(), "C");
    assert!(s.contains("greet") && !s.contains("nope"));
}

#[test]
fn errors_in_named_templates_say_where() {
    assert_eq!(
        error(r#"{{ template "nope" . }}"#),
        r#"template: t:1:12: executing "t" at <{{template "nope" .}}>: template "nope" not defined"#
    );
    assert_eq!(
        error(r#"{{ template "bad" . }}"#),
        r#"template: defs.tmpl:2:21: executing "bad" at <.Nope>: can't evaluate field Nope in type *template.Data"#
    );
    assert!(
        error(r#"{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}"#)
            .ends_with("exceeded maximum template depth (100)")
    );
    match NotificationTemplate::parse(&set(), "html", "{{ define \"x\" }}{{ else }}{{ end }}") {
        Err(e) => assert_eq!(
            e.0,
            "template: html:1: unexpected {{else}} in define clause"
        ),
        Ok(_) => panic!("parsed"),
    }
}

#[test]
fn each_dialect_has_its_own_functions() {
    let parse_err = |text: &str| match NotificationTemplate::parse(&set(), "t", text) {
        Err(e) => e.0,
        Ok(_) => panic!("{text:?} parsed"),
    };
    assert_eq!(
        parse_err("{{ humanize 1 }}"),
        r#"template: t:1: function "humanize" not defined"#
    );
    assert_eq!(
        parse_err("{{ tz \"UTC\" now }}"),
        r#"template: t:1: function "tz" is not supported by ocx-sentinel"#
    );
    let rule = |text: &str| match Template::parse("A", text) {
        Err(e) => e.0,
        Ok(_) => panic!("{text:?} parsed"),
    };
    assert!(rule(r#"{{ join "," . }}"#).ends_with(r#"function "join" not defined"#));
    assert!(rule(r#"{{ template "x" . }}"#).ends_with("{{template}} is not supported"));
    assert!(rule(r#"{{ define "x" }}{{ end }}"#).ends_with("{{define}} is not supported"));
    // Prometheus's `title` (strings.Title) leaves the rest of a word alone.
    let t = Template::parse("A", r#"{{ title "hELLO" }}"#).unwrap();
    let l = BTreeMap::new();
    let out = t.expand(&TemplateData {
        labels: &l,
        external_labels: &l,
        external_url: "",
        value: 0.0,
        query: None,
    });
    assert_eq!(out, "HELLO");
}

#[test]
fn the_html_mode_escapes_values_by_where_they_land() {
    assert_eq!(
        html(r#"<p>{{ .CommonLabels.severity }} {{ "<b>&'\"+" }}</p>"#),
        "<p>page &lt;b&gt;&amp;&#39;&#34;&#43;</p>"
    );
    assert_eq!(render(r#"{{ "<b>" }}"#), "<b>", "text mode leaves it");
    assert_eq!(html(r#"{{ "<b>x</b>" | safeHtml }}"#), "<b>x</b>");
    assert_eq!(
        html(r#"<a href="{{ "javascript:alert(1)" }}">x</a>"#),
        r##"<a href="#ZgotmplZ">x</a>"##
    );
    assert_eq!(
        html(r#"<a class="l" href='{{ "https://x.example/a b?q=1&r=<2>" }}'>"#),
        "<a class=\"l\" href='https://x.example/a%20b?q=1&amp;r=%3c2%3e'>"
    );
    assert_eq!(
        html(r#"<a href="{{ "tel:123" | safeUrl }}">"#),
        r#"<a href="tel:123">"#
    );
    // Later in a URL the scheme is settled: only normalised.
    assert_eq!(
        html(r#"<a href="{{ .ExternalURL }}/?r={{ .Receiver | urlquery }}">"#),
        r#"<a href="http://sentinel:9477/?r=team-mail">"#
    );
    assert_eq!(
        html(r#"<span title="{{ "a\"b javascript:x" }}">"#),
        r#"<span title="a&#34;b javascript:x">"#
    );
    // html/template prints nothing for nil, where text/template prints `<no value>`.
    assert_eq!(
        html(r#"{{ define "x" }}[{{ . }}]{{ end }}{{ template "x" }}"#),
        "[]"
    );
    // A called template's values are escaped where they land in the caller's output.
    assert_eq!(
        html(r#"{{ define "u" }}{{ "javascript:x" }}{{ end }}<a href="{{ template "u" }}">"#),
        r##"<a href="#ZgotmplZ">"##
    );
}

#[test]
fn quote_meta_is_gos() {
    assert_eq!(quote_meta("team-x.mail(1)"), r"team-x\.mail\(1\)");
}
