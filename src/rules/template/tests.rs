//! Template unit tests. Expected strings are Prometheus's output; the ones marked "promtool" were
//! confirmed through `exp_annotations` in `tests/rules/templates*.yml`.

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn render_with(text: &str, value: f64, l: &[(&str, &str)]) -> String {
    let l = labels(l);
    let ext = labels(&[("cluster", "eu1")]);
    let t = Template::parse("A", text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    t.expand(&TemplateData {
        labels: &l,
        external_labels: &ext,
        external_url: "http://prom.example:9090/prefix",
        value,
        query: None,
    })
}

fn render(text: &str, value: f64) -> String {
    render_with(
        text,
        value,
        &[("instance", "host-1.example.com:9100"), ("job", "node")],
    )
}

#[test]
fn variables_and_fields() {
    assert_eq!(
        render("{{ $labels.job }}/{{ .Labels.instance }}", 1.0),
        "node/host-1.example.com:9100"
    );
    assert_eq!(render("{{ $value }} {{ .Value }}", 1.5), "1.5 1.5");
    assert_eq!(render("{{ $value }}", 1234567.0), "1.234567e+06");
    assert_eq!(render("{{ $externalLabels.cluster }}", 0.0), "eu1");
    assert_eq!(
        render("{{ $externalURL }}", 0.0),
        "http://prom.example:9090/prefix"
    );
    assert_eq!(render("[{{ $labels.missing }}]", 0.0), "[]");
    assert_eq!(
        render("{{ $labels }}", 0.0),
        "map[instance:host-1.example.com:9100 job:node]"
    );
    assert_eq!(render("no actions at all", 0.0), "no actions at all");
}

#[test]
fn humanize_family_matches_prometheus() {
    let h = |f: &str, v: f64| render(&format!("{{{{ {f} $value }}}}"), v);
    assert_eq!(h("humanize", 1234567.0), "1.235M"); // promtool
    assert_eq!(h("humanize", 0.0), "0");
    assert_eq!(h("humanize", 0.001234), "1.234m");
    assert_eq!(h("humanize", -1500.0), "-1.5k");
    assert_eq!(h("humanize", 1e30), "1e+06Y");
    assert_eq!(h("humanize", f64::INFINITY), "+Inf");
    assert_eq!(h("humanize1024", 1048576.0), "1Mi");
    assert_eq!(h("humanize1024", 1.0), "1");
    assert_eq!(h("humanize1024", 1536.0), "1.5ki");
    assert_eq!(h("humanizeDuration", 3661.0), "1h 1m 1s"); // promtool
    assert_eq!(h("humanizeDuration", 90061.0), "1d 1h 1m 1s");
    assert_eq!(h("humanizeDuration", 0.0), "0s");
    assert_eq!(h("humanizeDuration", 1.5), "1.5s");
    assert_eq!(h("humanizeDuration", 0.25), "250ms");
    assert_eq!(h("humanizeDuration", -61.0), "-1m 1s");
    assert_eq!(h("humanizePercentage", 0.1234), "12.34%"); // promtool
    assert_eq!(h("humanizePercentage", 1.0), "100%");
    assert_eq!(
        h("humanizeTimestamp", 1_257_894_000.0),
        "2009-11-10 23:00:00 +0000 UTC"
    );
    assert_eq!(
        h("humanizeTimestamp", 1.5),
        "1970-01-01 00:00:01.5 +0000 UTC"
    );
    assert_eq!(render("{{ humanize \"2048\" }}", 0.0), "2.048k");
}

/// Each expected string is promtool's rendering of the same template.
#[test]
fn rounding_matches_promtool() {
    assert_eq!(
        render(
            "{{ humanize 999.95 }} {{ humanize 0.125 }} {{ humanize 12345 }} {{ printf \"%.0f %.1f %g %e\" 2.5 0.25 0.00001234 0.0 }} {{ humanize1024 1.0 }} {{ humanizeDuration -61 }} {{ humanize 1e30 }}",
            0.0
        ),
        "1000 125m 12.35k 2 0.2 1.234e-05 0.000000e+00 1 -1m 1s 1e+06Y"
    );
}

#[test]
fn printf_verbs() {
    assert_eq!(render("{{ printf \"%.2f\" $value }}", 1.23456), "1.23");
    assert_eq!(render("{{ $value | printf \"%.1f%%\" }}", 99.95), "100.0%");
    assert_eq!(
        render("{{ printf \"%s=%v\" $labels.job $value }}", 2.0),
        "node=2"
    );
    assert_eq!(render("{{ printf \"%d\" 42 }}", 0.0), "42");
    assert_eq!(
        render("{{ printf \"%d\" $value }}", 1.5),
        "%!d(float64=1.5)"
    );
    assert_eq!(
        render("{{ printf \"%s\" $value }}", 1.5),
        "%!s(float64=1.5)"
    );
    assert_eq!(
        render("{{ printf \"%g|%e|%f\" $value $value $value }}", 1e6),
        "1e+06|1.000000e+06|1000000.000000"
    );
    assert_eq!(
        render("{{ printf \"%5.1f|%-4s|%05d\" $value \"ab\" 42 }}", 2.25),
        "  2.2|ab  |00042"
    );
    assert_eq!(render("{{ printf \"%q\" $labels.job }}", 0.0), "\"node\"");
    assert_eq!(render("{{ printf \"%d %d\" 1 }}", 0.0), "1 %!d(MISSING)");
    assert_eq!(render("{{ printf \"%d\" 1 2 }}", 0.0), "1%!(EXTRA int=2)");
}

#[test]
fn string_functions() {
    assert_eq!(render("{{ $labels.job | toUpper }}", 0.0), "NODE");
    assert_eq!(render("{{ \"MiXed\" | toLower }}", 0.0), "mixed");
    assert_eq!(
        render("{{ title \"hello wide_world-x\" }}", 0.0),
        "Hello Wide_world-X"
    );
    assert_eq!(
        render(
            "{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }}",
            0.0
        ),
        "host-1.example.com"
    );
    assert_eq!(
        render("{{ $labels.instance | stripPort }}", 0.0),
        "host-1.example.com"
    );
    assert_eq!(
        render("{{ $labels.instance | stripDomain }}", 0.0),
        "host-1:9100"
    );
    assert_eq!(
        render("{{ stripDomain \"10.0.0.1:80\" }}", 0.0),
        "10.0.0.1:80"
    );
    assert_eq!(
        render("{{ if match \"^node$\" $labels.job }}yes{{ end }}", 0.0),
        "yes"
    );
    assert_eq!(render("{{ parseDuration \"1h30m\" }}", 0.0), "5400");
    assert_eq!(
        render("{{ graphLink \"up == 0\" }}", 0.0),
        "/graph?g0.expr=up+%3D%3D+0&g0.tab=0"
    );
    assert_eq!(render("{{ pathPrefix }}", 0.0), "/prefix");
    assert_eq!(
        render("{{ len $labels }} {{ index $labels \"job\" }}", 0.0),
        "2 node"
    );
    assert_eq!(
        render("{{ toTime 60 }}", 0.0),
        "1970-01-01 00:01:00 +0000 UTC"
    );
}

#[test]
fn control_flow_and_comparisons() {
    let t = "{{ if gt $value 100.0 }}high{{ else if gt $value 10.0 }}mid{{ else }}low{{ end }}";
    assert_eq!(render(t, 500.0), "high");
    assert_eq!(render(t, 50.0), "mid");
    assert_eq!(render(t, 5.0), "low");
    assert_eq!(
        render("{{ if eq $labels.job \"node\" \"other\" }}y{{ end }}", 0.0),
        "y"
    );
    assert_eq!(
        render("{{ if ne $labels.job \"node\" }}y{{ else }}n{{ end }}", 0.0),
        "n"
    );
    assert_eq!(
        render(
            "{{ if and (ge $value 1.0) (le $value 2.0) }}in{{ end }}",
            1.0
        ),
        "in"
    );
    assert_eq!(
        render(
            "{{ if or (lt $value 0.0) (not $labels.job) }}a{{ else }}b{{ end }}",
            1.0
        ),
        "b"
    );
    assert_eq!(
        render("{{ or $labels.missing \"default\" }}", 0.0),
        "default"
    );
    assert_eq!(render("{{ and $labels.job $labels.missing }}|", 0.0), "|");
    assert_eq!(
        render("{{ with $labels.job }}job={{ . }}{{ end }}", 0.0),
        "job=node"
    );
    assert_eq!(
        render("{{ with $labels.nope }}x{{ else }}none{{ end }}", 0.0),
        "none"
    );
    assert_eq!(
        render(
            "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
            0.0
        ),
        "instance=host-1.example.com:9100;job=node;"
    );
    assert_eq!(
        render("{{ $x := humanize $value }}[{{ $x }}]", 2048.0),
        "[2.048k]"
    );
    assert_eq!(render("{{/* a comment */}}ok", 0.0), "ok");
    // NaN is neither less than nor equal, so Go's gt (= not le) is true.
    assert_eq!(render("{{ if gt $value 1.0 }}t{{ end }}", f64::NAN), "t");
}

#[test]
fn whitespace_trimming() {
    assert_eq!(render("a  {{- $labels.job -}}  b", 0.0), "anodeb");
    assert_eq!(render("a\n{{- /* c */ -}}\nb", 0.0), "ab");
    assert_eq!(render("{{ if true -}}\n  x\n{{- end }}", 0.0), "x");
    assert_eq!(render("{{ -3 }}", 0.0), "-3");
}

#[test]
fn parse_errors_match_go() {
    let err = |t: &str| Template::parse("A b", t).unwrap_err().to_string();
    assert_eq!(
        err("{{ humanise $value }}"),
        "template: __alert_A b:1: function \"humanise\" not defined"
    );
    assert_eq!(
        err("{{ $nope }}"),
        "template: __alert_A b:1: undefined variable \"$nope\""
    );
    assert_eq!(
        err("{{ if $value }}x"),
        "template: __alert_A b:1: unexpected EOF"
    );
    assert_eq!(
        err("{{ end }}"),
        "template: __alert_A b:1: unexpected {{end}}"
    );
    assert_eq!(
        err("{{ $value "),
        "template: __alert_A b:1: unclosed action"
    );
    assert_eq!(
        err("{{ }}"),
        "template: __alert_A b:1: missing value for command"
    );
    assert_eq!(
        err("{{ \"x }}"),
        "template: __alert_A b:1: unterminated quoted string"
    );
    assert_eq!(
        err("{{ $value | 3 }}"),
        "template: __alert_A b:1: non executable command in pipeline stage 2"
    );
    assert_eq!(
        err("line1\n{{ nope }}"),
        "template: __alert_A b:2: function \"nope\" not defined"
    );
    assert!(err("{{ js \"x\" }}").contains("not supported by ocx-sentinel"));
    assert!(err("{{ template \"x\" }}").contains("not supported"));
}

#[test]
fn execution_errors_are_rendered_inline_like_prometheus() {
    // Positions count the 112 bytes of definitions Prometheus prepends.
    assert_eq!(
        render("{{ humanize $labels.job }}", 0.0),
        "<error expanding template: error executing template __alert_A: template: __alert_A:1:115: \
         executing \"__alert_A\" at <humanize $labels.job>: error calling humanize: \
         strconv.ParseFloat: parsing \"node\": invalid syntax>"
    );
    assert_eq!(
        render("{{ if gt $value 10 }}x{{ end }}", 0.0),
        "<error expanding template: error executing template __alert_A: template: __alert_A:1:118: \
         executing \"__alert_A\" at <gt $value 10>: error calling gt: incompatible types for comparison>"
    );
    assert_eq!(
        render("{{ toUpper $value }}", 0.0),
        "<error expanding template: error executing template __alert_A: template: __alert_A:1:123: \
         executing \"__alert_A\" at <$value>: wrong type for value; expected string; got float64>"
    );
    assert_eq!(
        render("{{ $labels.job.x }}", 0.0),
        "<error expanding template: error executing template __alert_A: template: __alert_A:1:122: \
         executing \"__alert_A\" at <$labels.job.x>: can't evaluate field x in type string>"
    );
    assert_eq!(
        render("{{ query \"up\" }}", 0.0),
        "<error expanding template: error executing template __alert_A: template: __alert_A:1:115: \
         executing \"__alert_A\" at <query \"up\">: error calling query: queries are not available here>"
    );
}

/// Every message below is what `promtool check rules` printed for the template (Go 1.19).
#[test]
fn parse_errors_match_promtool_check_rules() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "eof",
            "{{ if $value }}x",
            "template: __alert_eof:1: unexpected EOF",
        ),
        (
            "end",
            "{{ end }}",
            "template: __alert_end:1: unexpected {{end}}",
        ),
        (
            "unclosed",
            "{{ $value ",
            "template: __alert_unclosed:1: unclosed action",
        ),
        (
            "empty",
            "{{ }}",
            "template: __alert_empty:1: missing value for command",
        ),
        (
            "quote",
            "{{ \"x }}",
            "template: __alert_quote:1: unterminated quoted string",
        ),
        (
            "stage",
            "{{ $value | 3 }}",
            "template: __alert_stage:1: non executable command in pipeline stage 2",
        ),
        (
            "line2",
            "line1\n{{ nope }}",
            "template: __alert_line2:2: function \"nope\" not defined",
        ),
        (
            "undef",
            "{{ $nope }}",
            "template: __alert_undef:1: undefined variable \"$nope\"",
        ),
        (
            "paren",
            "{{ (humanize $value }}",
            "template: __alert_paren:1: unclosed left paren",
        ),
        (
            "rparen",
            "{{ humanize $value) }}",
            "template: __alert_rparen:1: unexpected \")\" in command",
        ),
        (
            "badchar",
            "{{ $value# }}",
            "template: __alert_badchar:1: bad character U+0023 '#'",
        ),
        (
            "else",
            "{{ else }}",
            "template: __alert_else:1: unexpected {{else}}",
        ),
        (
            "elsewith",
            "{{ with $value }}a{{ else if true }}b{{ end }}",
            "template: __alert_elsewith:1: unexpected <if> in input",
        ),
        (
            "dot",
            "{{ \"a\".b }}",
            "template: __alert_dot:1: unexpected . after term \"\\\"a\\\"\"",
        ),
        (
            "num",
            "{{ 1x }}",
            "template: __alert_num:1: bad number syntax: \"1x\"",
        ),
        (
            "comment",
            "{{/* x */ }}",
            "template: __alert_comment:1: comment ends before closing delimiter",
        ),
        (
            "colon",
            "{{ $x : 1 }}",
            "template: __alert_colon:1: undefined variable \"$x\"",
        ),
        (
            "range2",
            "{{ range $a, $b, $c := $labels }}{{ end }}",
            "template: __alert_range2:1: too many declarations in range",
        ),
        (
            "unexpected",
            "{{ humanize , }}",
            "template: __alert_unexpected:1: unexpected \",\" in operand",
        ),
        (
            "multiline",
            "{{ humanize\n $value ",
            "template: __alert_multiline:2: unclosed action started at __alert_multiline:1",
        ),
    ];
    let mut wrong = Vec::new();
    for (alert, text, want) in cases {
        match Template::parse(alert, text) {
            Ok(_) => wrong.push(format!("{alert}: parsed, want {want}")),
            Err(e) if e.to_string() != *want => {
                wrong.push(format!("{alert}:\n  got  {e}\n  want {want}"))
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

struct FakeQuery;

impl TemplateQuery for FakeQuery {
    fn query(&self, expr: &str) -> Result<Vec<QuerySample>, String> {
        match expr {
            "up" => Ok(vec![
                QuerySample {
                    labels: labels(&[("__name__", "up"), ("job", "b")]),
                    value: 0.0,
                },
                QuerySample {
                    labels: labels(&[("__name__", "up"), ("job", "a")]),
                    value: 1.0,
                },
            ]),
            "none" => Ok(Vec::new()),
            other => Err(format!("bad query {other}")),
        }
    }
}

#[test]
fn query_functions() {
    let l = labels(&[]);
    let q = FakeQuery;
    let data = TemplateData {
        labels: &l,
        external_labels: &l,
        external_url: "",
        value: 0.0,
        query: Some(&q),
    };
    let r = |t: &str| Template::parse("Q", t).unwrap().expand(&data);
    assert_eq!(r("{{ query \"up\" | first | value }}"), "0");
    assert_eq!(
        r("{{ with query \"up\" }}{{ . | first | label \"job\" }}{{ end }}"),
        "b"
    );
    assert_eq!(
        r("{{ range query \"up\" | sortByLabel \"job\" }}{{ .Labels.job }}={{ .Value }} {{ end }}"),
        "a=1 b=0 "
    );
    assert_eq!(
        r("{{ with query \"none\" }}x{{ else }}empty{{ end }}"),
        "empty"
    );
    assert!(
        r("{{ query \"none\" | first }}").contains("first() called on vector with no elements")
    );
}
