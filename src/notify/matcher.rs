//! Alertmanager's label matchers: `name="value"`, `!=`, `=~`, `!~`, parsed as Alertmanager's classic parser does (optional braces, quoted or bare values), and matched against an alert's labels.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchType {
    Equal,
    NotEqual,
    Regexp,
    NotRegexp,
}

impl MatchType {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regexp => "=~",
            MatchType::NotRegexp => "!~",
        }
    }

    pub fn is_regex(self) -> bool {
        matches!(self, MatchType::Regexp | MatchType::NotRegexp)
    }

    pub fn is_equal(self) -> bool {
        matches!(self, MatchType::Equal | MatchType::Regexp)
    }

    /// From the API's `isRegex` and `isEqual` flags.
    pub fn from_flags(is_regex: bool, is_equal: bool) -> MatchType {
        match (is_regex, is_equal) {
            (false, true) => MatchType::Equal,
            (false, false) => MatchType::NotEqual,
            (true, true) => MatchType::Regexp,
            (true, false) => MatchType::NotRegexp,
        }
    }
}

/// One label matcher. Regexes are anchored at both ends, as in Alertmanager.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchType,
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Matcher) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

impl Eq for Matcher {}

/// Why a matcher is invalid; the text is Alertmanager's where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MatcherError(pub String);

/// The regex crate's error on one line, the way Go words it: `error parsing regexp: unclosed
/// group: `^(?:()$``. Its own rendering spans lines (pattern, caret, message), which a config
/// error cannot.
fn regex_error(e: &regex::Error, value: &str) -> MatcherError {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or("").trim();
    let reason = last.strip_prefix("error: ").unwrap_or(last);
    MatcherError(format!("error parsing regexp: {reason}: `^(?:{value})$`"))
}

impl Matcher {
    pub fn new(op: MatchType, name: &str, value: &str) -> Result<Matcher, MatcherError> {
        let re = if op.is_regex() {
            Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| regex_error(&e, value))?)
        } else {
            None
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// Whether `value` (the label's value, "" when the label is absent) satisfies the matcher.
    pub fn matches_value(&self, value: &str) -> bool {
        match (self.op, &self.re) {
            (MatchType::Equal, _) => value == self.value,
            (MatchType::NotEqual, _) => value != self.value,
            (MatchType::Regexp, Some(re)) => re.is_match(value),
            (MatchType::NotRegexp, Some(re)) => !re.is_match(value),
            (_, None) => false,
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_value(labels.get(&self.name).map_or("", String::as_str))
    }

    /// One matcher, `name op value` with the value quoted or bare (Alertmanager's
    /// `labels.ParseMatcher`).
    pub fn parse(s: &str) -> Result<Matcher, MatcherError> {
        let bad = || MatcherError(format!("bad matcher format: {s}"));
        let t = s.trim();
        let name_end = t
            .char_indices()
            .find(|&(i, c)| {
                !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
            })
            .map_or(t.len(), |(i, _)| i);
        if name_end == 0 {
            return Err(bad());
        }
        let name = &t[..name_end];
        let rest = t[name_end..].trim_start();
        let (op, raw) = if let Some(r) = rest.strip_prefix("=~") {
            (MatchType::Regexp, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (MatchType::NotRegexp, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (MatchType::NotEqual, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (MatchType::Equal, r)
        } else {
            return Err(bad());
        };
        let raw = raw.trim();
        let (raw, quoted) = match raw.strip_prefix('"') {
            Some(r) => (r, true),
            None => (raw, false),
        };
        let unescaped_quote = || {
            MatcherError(format!(
                "matcher value contains unescaped double quote: {}",
                raw
            ))
        };
        let mut value = String::new();
        let mut expect_quote = quoted;
        let mut chars = raw.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' if chars.peek().is_some() => {
                    let (_, n) = chars.next().unwrap_or((0, '\\'));
                    match n {
                        'n' => value.push('\n'),
                        '"' | '\\' => value.push(n),
                        other => {
                            value.push('\\');
                            value.push(other);
                        }
                    }
                }
                '"' => {
                    if !expect_quote || i + 1 < raw.len() {
                        return Err(unescaped_quote());
                    }
                    expect_quote = false;
                }
                c => value.push(c),
            }
        }
        if expect_quote {
            return Err(unescaped_quote());
        }
        Matcher::new(op, name, &value)
    }

    /// A list, `{a="b", c=~"d"}` or without braces (Alertmanager's `labels.ParseMatchers`).
    pub fn parse_list(s: &str) -> Result<Vec<Matcher>, MatcherError> {
        let s = s.trim();
        let s = s.strip_prefix('{').unwrap_or(s);
        let s = s.strip_suffix('}').unwrap_or(s);
        let mut tokens = Vec::new();
        let (mut inside, mut escaped, mut token) = (false, false, String::new());
        for c in s.chars() {
            match c {
                ',' if !inside => {
                    tokens.push(std::mem::take(&mut token));
                    continue;
                }
                '"' => {
                    if escaped {
                        escaped = false;
                    } else {
                        inside = !inside;
                    }
                }
                '\\' => escaped = !escaped,
                _ => escaped = false,
            }
            token.push(c);
        }
        if !token.trim().is_empty() {
            tokens.push(token);
        }
        tokens.iter().map(|t| Matcher::parse(t)).collect()
    }
}

impl fmt::Display for Matcher {
    /// `name="value"` with the value quoted and escaped, as Alertmanager prints matchers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escaped = self
            .value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        write!(f, "{}{}\"{}\"", self.name, self.op.as_str(), escaped)
    }
}

/// Whether every matcher accepts `labels`.
pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_the_forms_alertmanager_accepts() {
        let ms = Matcher::parse_list(r#"{severity="page", market=~"BTC-.*",team!=ops, x!~"a|b"}"#)
            .unwrap();
        let shown: Vec<String> = ms.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                r#"severity="page""#,
                r#"market=~"BTC-.*""#,
                r#"team!="ops""#,
                r#"x!~"a|b""#
            ]
        );
        let m = Matcher::parse(r#"a="with \"quotes\", commas""#).unwrap();
        assert_eq!(m.value, r#"with "quotes", commas"#);
        assert_eq!(Matcher::parse_list("a=b,c=d").unwrap().len(), 2);
        assert!(Matcher::parse("=x").is_err());
        assert!(Matcher::parse("a").is_err());
        assert!(Matcher::parse(r#"a="b"c""#).is_err());
        assert!(Matcher::parse(r#"a="unterminated"#).is_err());
        assert!(Matcher::parse(r#"a=~"(""#).is_err());
    }

    #[test]
    fn matching_is_anchored_and_an_absent_label_is_empty() {
        let l = labels(&[("market", "BTC-PERP"), ("severity", "page")]);
        let m = |s: &str| Matcher::parse(s).unwrap().matches(&l);
        assert!(m(r#"market=~"BTC-.*""#));
        assert!(!m(r#"market=~"BTC""#), "anchored");
        assert!(m(r#"team="""#), "absent is empty");
        assert!(m(r#"team!="ops""#));
        assert!(!m(r#"severity!~"page|ticket""#));
    }
}
