//! Notification templates in Alertmanager's dialect: named templates (`define`, `template`, `block`) gathered in a [`TemplateSet`], Alertmanager's template data (`.Alerts.Firing`, `.CommonLabels.SortedPairs`, …) and functions, and an HTML mode that escapes what it prints.
//!
//! The engine is the rule templates' (Go's `text/template` semantics, Go's error text); this
//! module adds what Alertmanager's `template` package puts on top. The HTML mode stands in for
//! Go's `html/template`, in part: every printed value is HTML-escaped (`safeHtml` values are
//! not), and a value printed into a URL attribute (`href`, `src`, …) is filtered (a scheme other
//! than http, https or mailto becomes `#ZgotmplZ`) and percent-normalised as Go does. Values in
//! `<script>` or `<style>` get no JavaScript or CSS escaping: templates that need them are not
//! supported.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use base64::Engine as _;

use super::{
    AlertVal, CallErr, Dialect, Env, NoteVal, PType, Template, TemplateData, TemplateError, Val,
    gofmt,
};

/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix milliseconds: a firing alert's `EndsAt`.
pub const GO_ZERO_TIME_MS: i64 = -62_135_596_800_000;

/// One alert as a notification template sees it (Alertmanager's `template.Alert`, plus `Value`).
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationAlert {
    /// `firing` or `resolved`.
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at_ms: i64,
    /// None while firing (the template sees Go's zero time).
    pub ends_at_ms: Option<i64>,
    pub generator_url: String,
    pub fingerprint: String,
    /// The sample that fired the alert (ocx-sentinel's addition, `.Value`).
    pub value: f64,
}

/// What a notification template renders (Alertmanager's `template.Data`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationData {
    pub receiver: String,
    /// `firing` while any alert fires, else `resolved`.
    pub status: String,
    pub alerts: Vec<NotificationAlert>,
    pub group_labels: BTreeMap<String, String>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    pub external_url: String,
}

/// The named templates notification templates may call: the built-in defaults, then the
/// configuration's `templates:` files.
#[derive(Debug, Clone, Default)]
pub struct TemplateSet {
    templates: HashMap<String, Template>,
}

impl TemplateSet {
    /// Parse a file of definitions into the set. As in Go, a definition replaces an earlier one
    /// of the same name unless it is empty, and the file's own top-level text is a template
    /// named after the file.
    pub fn add_file(&mut self, file_name: &str, text: &str) -> Result<(), TemplateError> {
        let parsed = Template::parse_in(
            file_name,
            file_name,
            text.to_string(),
            Dialect::Alertmanager,
        )?;
        for t in std::iter::once(parsed.main).chain(parsed.defines) {
            insert(&mut self.templates, t);
        }
        Ok(())
    }

    /// Whether `name` is defined.
    pub fn contains(&self, name: &str) -> bool {
        self.templates.contains_key(name)
    }
}

fn insert(map: &mut HashMap<String, Template>, t: Template) {
    if t.is_empty() && map.contains_key(&t.name) {
        return;
    }
    map.insert(t.name.clone(), t);
}

/// A configured notification template (an email's `html`, `text`, `to`, a header) with the set
/// it may call into.
#[derive(Debug, Clone)]
pub struct NotificationTemplate {
    main: Template,
    /// What the text itself `define`s; looked up before the set.
    local: HashMap<String, Template>,
    /// The text when it has no action: rendering is a copy.
    literal: Option<String>,
    set: Arc<TemplateSet>,
}

impl NotificationTemplate {
    /// Parse `text`; `name` names it in errors (`template: html:3: …`).
    pub fn parse(
        set: &Arc<TemplateSet>,
        name: &str,
        text: &str,
    ) -> Result<NotificationTemplate, TemplateError> {
        let parsed = Template::parse_in(name, name, text.to_string(), Dialect::Alertmanager)?;
        let mut local = HashMap::new();
        for t in parsed.defines {
            insert(&mut local, t);
        }
        Ok(NotificationTemplate {
            main: parsed.main,
            local,
            literal: (!text.contains("{{")).then(|| text.to_string()),
            set: set.clone(),
        })
    }

    /// Whether the text is empty (an empty `text` or `html` means no such part).
    pub fn is_empty(&self) -> bool {
        self.literal.as_deref() == Some("")
    }

    /// Render with `data`; `html` escapes printed values as `html/template` would (see the
    /// module). `now_ms` is what `now` returns. A failure is Go's execution error text.
    pub fn render(
        &self,
        data: &NotificationData,
        html: bool,
        now_ms: i64,
    ) -> Result<String, TemplateError> {
        if let Some(l) = &self.literal {
            return Ok(l.clone());
        }
        let root = Val::Note(Rc::new(note_val(data)));
        let empty = BTreeMap::new();
        // The rule-template context is unused here: its functions are not in this dialect.
        let unused = TemplateData {
            labels: &empty,
            external_labels: &empty,
            external_url: &data.external_url,
            value: 0.0,
            query: None,
        };
        let env = Env {
            local: Some(&self.local),
            set: Some(&self.set.templates),
            html,
            now_ms,
        };
        self.main
            .execute(root, &unused, env)
            .map_err(|f| TemplateError(f.0))
    }
}

fn note_val(d: &NotificationData) -> NoteVal {
    let alerts = d
        .alerts
        .iter()
        .map(|a| {
            Rc::new(AlertVal {
                status: Rc::from(a.status.as_str()),
                labels: Rc::new(a.labels.clone()),
                annotations: Rc::new(a.annotations.clone()),
                starts_at: a.starts_at_ms,
                ends_at: a.ends_at_ms.unwrap_or(GO_ZERO_TIME_MS),
                generator_url: Rc::from(a.generator_url.as_str()),
                fingerprint: Rc::from(a.fingerprint.as_str()),
                value: a.value,
            })
        })
        .collect();
    NoteVal {
        receiver: Rc::from(d.receiver.as_str()),
        status: Rc::from(d.status.as_str()),
        alerts: Rc::new(alerts),
        group_labels: Rc::new(d.group_labels.clone()),
        common_labels: Rc::new(d.common_labels.clone()),
        common_annotations: Rc::new(d.common_annotations.clone()),
        external_url: Rc::from(d.external_url.as_str()),
    }
}

/// A field of `template.Alert`.
pub(super) fn alert_field(a: &AlertVal, name: &str) -> Option<Val> {
    Some(match name {
        "Status" => Val::Str(a.status.clone()),
        "Labels" => Val::Kv(a.labels.clone()),
        "Annotations" => Val::Kv(a.annotations.clone()),
        "StartsAt" => Val::GoTime(a.starts_at),
        "EndsAt" => Val::GoTime(a.ends_at),
        "GeneratorURL" => Val::Str(a.generator_url.clone()),
        "Fingerprint" => Val::Str(a.fingerprint.clone()),
        "Value" => Val::Float(a.value),
        _ => return None,
    })
}

/// A field of `template.Data`.
pub(super) fn note_field(n: &NoteVal, name: &str) -> Option<Val> {
    Some(match name {
        "Receiver" => Val::Str(n.receiver.clone()),
        "Status" => Val::Str(n.status.clone()),
        "Alerts" => Val::Alerts(n.alerts.clone(), true),
        "GroupLabels" => Val::Kv(n.group_labels.clone()),
        "CommonLabels" => Val::Kv(n.common_labels.clone()),
        "CommonAnnotations" => Val::Kv(n.common_annotations.clone()),
        "ExternalURL" => Val::Str(n.external_url.clone()),
        _ => return None,
    })
}

/// `KV.SortedPairs`: `alertname` first, then by name.
pub(super) fn sorted_pairs(m: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let first = m.get_key_value("alertname");
    first
        .into_iter()
        .chain(m.iter().filter(|(k, _)| *k != "alertname"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `Pairs.String`: `a=1, b=2`.
pub(super) fn pairs_string(p: &[(String, String)]) -> String {
    let items: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
    items.join(", ")
}

/// The methods of Alertmanager's template types (and of `time.Time`) a template may call.
#[derive(Debug, Clone, Copy)]
pub(super) enum Method {
    SortedPairs,
    Remove,
    KvNames,
    KvValues,
    PairsNames,
    PairsValues,
    Join,
    Firing,
    Resolved,
    Format,
    Unix,
    UnixMilli,
    Utc,
    IsZero,
}

impl Method {
    /// The method `name` of the receiver's type, if it has one (Go looks methods up before
    /// fields and map keys).
    pub(super) fn of(receiver: &Val, name: &str) -> Option<Method> {
        use Method::*;
        Some(match (receiver, name) {
            (Val::Kv(_), "SortedPairs") => SortedPairs,
            (Val::Kv(_), "Remove") => Remove,
            (Val::Kv(_), "Names") => KvNames,
            (Val::Kv(_), "Values") => KvValues,
            (Val::Pairs(_), "Names") => PairsNames,
            (Val::Pairs(_), "Values") => PairsValues,
            (Val::Strings(_, true), "Join") => Join,
            (Val::Alerts(_, true), "Firing") => Firing,
            (Val::Alerts(_, true), "Resolved") => Resolved,
            (Val::Time(_) | Val::GoTime(_), "Format") => Format,
            (Val::Time(_) | Val::GoTime(_), "Unix") => Unix,
            (Val::Time(_) | Val::GoTime(_), "UnixMilli") => UnixMilli,
            (Val::Time(_) | Val::GoTime(_), "UTC") => Utc,
            (Val::Time(_) | Val::GoTime(_), "IsZero") => IsZero,
            _ => return None,
        })
    }

    pub(super) fn name(self) -> &'static str {
        use Method::*;
        match self {
            SortedPairs => "SortedPairs",
            Remove => "Remove",
            KvNames | PairsNames => "Names",
            KvValues | PairsValues => "Values",
            Join => "Join",
            Firing => "Firing",
            Resolved => "Resolved",
            Format => "Format",
            Unix => "Unix",
            UnixMilli => "UnixMilli",
            Utc => "UTC",
            IsZero => "IsZero",
        }
    }

    pub(super) fn params(self) -> &'static [PType] {
        match self {
            Method::Remove => &[PType::Strings],
            Method::Join | Method::Format => &[PType::Str],
            _ => &[],
        }
    }

    pub(super) fn call(self, receiver: &Val, args: &[Val]) -> Result<Val, CallErr> {
        use Method::*;
        let strings = |v: Vec<String>| Val::Strings(Rc::new(v), true);
        let arg_str = || match args.first() {
            Some(Val::Str(s)) => s.to_string(),
            _ => String::new(),
        };
        Ok(match (self, receiver) {
            (SortedPairs, Val::Kv(m)) => Val::Pairs(Rc::new(sorted_pairs(m))),
            (Remove, Val::Kv(m)) => {
                let drop: &[String] = match args.first() {
                    Some(Val::Strings(v, _)) => v,
                    _ => &[],
                };
                let mut out = m.as_ref().clone();
                out.retain(|k, _| !drop.contains(k));
                Val::Kv(Rc::new(out))
            }
            (KvNames, Val::Kv(m)) => strings(sorted_pairs(m).into_iter().map(|p| p.0).collect()),
            (KvValues, Val::Kv(m)) => strings(sorted_pairs(m).into_iter().map(|p| p.1).collect()),
            (PairsNames, Val::Pairs(p)) => strings(p.iter().map(|p| p.0.clone()).collect()),
            (PairsValues, Val::Pairs(p)) => strings(p.iter().map(|p| p.1.clone()).collect()),
            (Join, Val::Strings(v, _)) => Val::str(&v.join(&arg_str())),
            (Firing | Resolved, Val::Alerts(v, _)) => {
                let want = if matches!(self, Firing) {
                    "firing"
                } else {
                    "resolved"
                };
                let picked = v.iter().filter(|a| &*a.status == want).cloned().collect();
                Val::Alerts(Rc::new(picked), false)
            }
            (Format, t) => Val::str(&gofmt::go_time_format(time_of(t)?, &arg_str())),
            (Unix, t) => Val::Int(time_of(t)?.div_euclid(1000)),
            (UnixMilli, t) => Val::Int(time_of(t)?),
            (Utc, t) => Val::GoTime(time_of(t)?),
            (IsZero, t) => Val::Bool(time_of(t)? == GO_ZERO_TIME_MS),
            _ => return Err(CallErr(format!("{} called on the wrong type", self.name()))),
        })
    }
}

fn time_of(v: &Val) -> Result<i64, CallErr> {
    v.time_ms()
        .ok_or_else(|| CallErr(format!("not a time: {}", v.go_type())))
}

/// `cases.Title` (golang.org/x/text): each word's first letter upper-cased, the rest lower-cased.
/// Words are runs of letters, digits, `_` and `'` (x/text follows Unicode word breaking; the
/// difference shows only around other punctuation inside words).
pub(super) fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_word = false;
    for c in s.chars() {
        if c.is_alphanumeric() || c == '_' || c == '\'' {
            if in_word {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            in_word = true;
        } else {
            out.push(c);
            in_word = false;
        }
    }
    out
}

/// Go's `url.QueryUnescape`.
pub(super) fn query_unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (
                    b.get(i + 1).and_then(|&c| hex(c)),
                    b.get(i + 2).and_then(|&c| hex(c)),
                ) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => {
                        let bad: String = s[i..].chars().take(3).collect();
                        return Err(format!("invalid URL escape {}", gofmt::quote(&bad)));
                    }
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `base64encode`: URL-safe alphabet, padded (Go's `base64.URLEncoding`).
pub(super) fn base64_url_encode(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(b)
}

/// `base64decode`, with Go's error text.
pub(super) fn base64_url_decode(s: &str) -> Result<String, String> {
    match base64::engine::general_purpose::URL_SAFE.decode(s) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(
            base64::DecodeError::InvalidByte(at, _)
            | base64::DecodeError::InvalidLastSymbol { offset: at, .. },
        ) => Err(format!("illegal base64 data at input byte {at}")),
        Err(_) => Err(format!("illegal base64 data at input byte {}", s.len())),
    }
}

/// `toJson`: Go's `json.Marshal` of the value: struct fields in declaration order under
/// Alertmanager's JSON names, map keys sorted, floats as Go writes them, `<`, `>` and `&`
/// escaped as Go escapes them.
pub(super) fn to_json(v: &Val) -> Result<String, CallErr> {
    let mut out = String::new();
    write_json(&mut out, v)?;
    Ok(out)
}

fn json_str(out: &mut String, s: &str) {
    // serde_json escapes what JSON requires; Go also escapes these for HTML safety.
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    out.push_str(
        &quoted
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029"),
    );
}

fn json_float(out: &mut String, f: f64) -> Result<(), CallErr> {
    if !f.is_finite() {
        return Err(CallErr(format!(
            "json: unsupported value: {}",
            gofmt::format_v(f)
        )));
    }
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        // Go: exponent form, `e-7` not `e-07`, a sign on positive exponents.
        let e = format!("{f:e}");
        match e.split_once('e') {
            Some((m, x)) if !x.starts_with('-') => out.push_str(&format!("{m}e+{x}")),
            _ => out.push_str(&e),
        }
    } else {
        // Rust's Display is the shortest round-trip decimal without exponent, as Go's 'f', -1.
        out.push_str(&f.to_string());
    }
    Ok(())
}

fn json_object<'a>(
    out: &mut String,
    fields: impl IntoIterator<Item = (&'a str, Val)>,
) -> Result<(), CallErr> {
    out.push('{');
    for (i, (k, v)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, k);
        out.push(':');
        write_json(out, &v)?;
    }
    out.push('}');
    Ok(())
}

fn json_array(out: &mut String, items: impl IntoIterator<Item = Val>) -> Result<(), CallErr> {
    out.push('[');
    for (i, v) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json(out, &v)?;
    }
    out.push(']');
    Ok(())
}

fn alert_fields(a: &Rc<AlertVal>) -> Vec<(&'static str, Val)> {
    vec![
        ("status", Val::Str(a.status.clone())),
        ("labels", Val::Kv(a.labels.clone())),
        ("annotations", Val::Kv(a.annotations.clone())),
        ("startsAt", Val::GoTime(a.starts_at)),
        ("endsAt", Val::GoTime(a.ends_at)),
        ("generatorURL", Val::Str(a.generator_url.clone())),
        ("fingerprint", Val::Str(a.fingerprint.clone())),
        ("value", Val::Float(a.value)),
    ]
}

fn write_json(out: &mut String, v: &Val) -> Result<(), CallErr> {
    match v {
        Val::Invalid | Val::Sample(None) => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Int(i) | Val::Duration(i) => out.push_str(&i.to_string()),
        Val::Float(f) => json_float(out, *f)?,
        Val::Str(s) | Val::Html(s) | Val::Url(s) => json_str(out, s),
        Val::Map(m) | Val::Kv(m) => {
            json_object(out, m.iter().map(|(k, v)| (k.as_str(), Val::str(v))))?;
        }
        Val::Pairs(p) => json_array(out, p.iter().map(|p| Val::Pair(Rc::new(p.clone()))))?,
        Val::Pair(p) => json_object(out, [("Name", Val::str(&p.0)), ("Value", Val::str(&p.1))])?,
        Val::Strings(v, _) => json_array(out, v.iter().map(|s| Val::str(s)))?,
        Val::Alerts(v, _) => json_array(out, v.iter().map(|a| Val::Alert(a.clone())))?,
        Val::Alert(a) => json_object(out, alert_fields(a))?,
        Val::Note(n) => json_object(
            out,
            [
                ("receiver", Val::Str(n.receiver.clone())),
                ("status", Val::Str(n.status.clone())),
                ("alerts", Val::Alerts(n.alerts.clone(), true)),
                ("groupLabels", Val::Kv(n.group_labels.clone())),
                ("commonLabels", Val::Kv(n.common_labels.clone())),
                ("commonAnnotations", Val::Kv(n.common_annotations.clone())),
                ("externalURL", Val::Str(n.external_url.clone())),
            ],
        )?,
        Val::Time(ms) | Val::GoTime(ms) => json_str(out, &gofmt::go_time_json(Some(*ms))),
        Val::List(v) => json_array(out, v.iter().cloned())?,
        Val::Dict(m) => json_object(out, m.iter().map(|(k, v)| (k.as_str(), v.clone())))?,
        Val::Data(_) | Val::Vector(_) | Val::Sample(Some(_)) => {
            return Err(CallErr(format!("json: unsupported type: {}", v.go_type())));
        }
    }
    Ok(())
}

/// Print `v` in the HTML mode: escaped for where it lands in `out` (see the module).
pub(super) fn write_html(out: &mut String, v: &Val) {
    match v {
        Val::Html(s) => out.push_str(s),
        // html/template skips untyped nil arguments rather than printing them.
        Val::Invalid => {}
        _ => {
            let text = v.print();
            match url_attribute(out) {
                Some(at_start) => {
                    let filtered = if at_start && !matches!(v, Val::Url(_)) && !safe_url(&text) {
                        "#ZgotmplZ".to_string()
                    } else {
                        text
                    };
                    escape_html(out, &normalize_url(&filtered));
                }
                None => escape_html(out, &text),
            }
        }
    }
}

/// Attributes whose value is a URL (as `html/template` types them), lower-case.
const URL_ATTRIBUTES: &[&str] = &[
    "action",
    "background",
    "cite",
    "codebase",
    "data",
    "formaction",
    "href",
    "icon",
    "longdesc",
    "manifest",
    "poster",
    "profile",
    "src",
    "usemap",
];

/// Whether `out` ends inside a quoted URL attribute value (`<a href="…`), and if so whether at
/// the value's start (where the scheme is).
fn url_attribute(out: &str) -> Option<bool> {
    let tag = &out[out.rfind('<')? + 1..];
    if !tag.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let b = tag.as_bytes();
    let mut i = b.iter().position(|c| c.is_ascii_whitespace())?;
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        if i >= b.len() || b[i] == b'>' {
            return None;
        }
        let name_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let name = tag[name_start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        let quote = b[i];
        if quote != b'"' && quote != b'\'' {
            // An unquoted value: skip it; printing into one is escaped as text.
            while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                i += 1;
            }
            if i >= b.len() {
                return None;
            }
            continue;
        }
        let value_start = i + 1;
        match b[value_start..].iter().position(|&c| c == quote) {
            Some(len) => i = value_start + len + 1,
            None => {
                return URL_ATTRIBUTES
                    .contains(&name.as_str())
                    .then_some(value_start == b.len());
            }
        }
    }
}

/// `html/template`'s URL filter: no scheme, or http, https or mailto.
fn safe_url(s: &str) -> bool {
    match s.find(':') {
        Some(i) if !s[..i].contains('/') => {
            let scheme = s[..i].to_ascii_lowercase();
            matches!(scheme.as_str(), "http" | "https" | "mailto")
        }
        _ => true,
    }
}

/// `html/template`'s URL normaliser: bytes a URL may not hold are percent-encoded; reserved
/// characters and valid escapes are kept.
fn normalize_url(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in b.iter().enumerate() {
        let keep = match c {
            b'!' | b'#' | b'$' | b'&' | b'*' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?'
            | b'@' | b'[' | b']' | b'-' | b'.' | b'_' | b'~' => true,
            b'%' => {
                b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
            }
            c => c.is_ascii_alphanumeric(),
        };
        if keep {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02x}"));
        }
    }
    out
}

/// `html/template`'s HTML escaper, for text and attribute values alike.
fn escape_html(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\0' => out.push('\u{FFFD}'),
            '"' => out.push_str("&#34;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '+' => out.push_str("&#43;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

/// Go's `regexp.QuoteMeta`, which Alertmanager applies to `.Receiver`.
pub fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
