//! A reader for the Prometheus text format, enough to look series up by name and labels (tests, `check`).

use std::collections::BTreeMap;

/// Parse exposition text into `series -> value`, where a series is written
/// `name{k1="v1",k2="v2"}` with labels sorted by name (or just `name` without labels), so
/// lookups do not depend on the order the exporter printed them in.
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rfind(' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => continue,
        };
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => match v.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        out.insert(normalize(series), value);
    }
    out
}

/// Sort the labels of a series name so `a{y="1",x="2"}` and `a{x="2",y="1"}` compare equal.
pub fn normalize(series: &str) -> String {
    let Some(open) = series.find('{') else {
        return series.to_string();
    };
    let name = &series[..open];
    let body = series[open + 1..].trim_end_matches('}');
    let mut labels = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let Some(eq) = rest.find("=\"") else { break };
        let key = rest[..eq].trim_start_matches(',').trim();
        let mut i = eq + 2;
        let bytes = rest.as_bytes();
        let mut val = String::new();
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if i + 1 < bytes.len() => {
                    val.push('\\');
                    val.push(bytes[i + 1] as char);
                    i += 2;
                }
                b'"' => break,
                _ => {
                    let ch = rest[i..].chars().next().unwrap_or('?');
                    val.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        labels.push((key.to_string(), val));
        rest = rest.get(i + 1..).unwrap_or("");
    }
    labels.sort();
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_and_values_parsed() {
        let m = parse("# HELP x y\nx{b=\"2\",a=\"1\"} 3.5\ny 1\nz{le=\"+Inf\"} +Inf\n");
        assert_eq!(m.get("x{a=\"1\",b=\"2\"}"), Some(&3.5));
        assert_eq!(m.get("y"), Some(&1.0));
        assert_eq!(m.get("z{le=\"+Inf\"}"), Some(&f64::INFINITY));
    }
}
