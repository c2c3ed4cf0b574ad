//! Go's number, string and duration formatting and number parsing (`fmt`, `strconv`,
//! `time.Duration`, Prometheus's `model.Duration`), reproduced exactly where Prometheus's output shows it: template expansion
//! (`humanize`, `printf`, `{{ $value }}`) and promtool's unit-test failure text.
//!
//! Rust and Go both round correctly (half to even on exact ties) and both find the shortest
//! round-tripping digits, so the digits come from Rust's formatter and only the layout is Go's.

/// Decimal digits of |v|: `0.d[0]d[1]… × 10^dp`, no trailing zeros; empty for zero.
struct Digits {
    d: Vec<u8>,
    dp: i32,
}

/// Split Rust's `{:e}` rendering (`1.2345e6`, `5e-1`, `0e0`) into digits and a decimal point.
fn digits_of(rendered: &str) -> Digits {
    let (mantissa, exp) = rendered.split_once('e').unwrap_or((rendered, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while d.last() == Some(&b'0') {
        d.pop();
    }
    if d.is_empty() {
        return Digits { d, dp: 0 };
    }
    Digits { d, dp: exp + 1 }
}

/// The shortest digits that round-trip (Go's precision -1).
fn shortest(v: f64) -> Digits {
    digits_of(&format!("{:e}", v.abs()))
}

/// `sig` significant digits, correctly rounded.
fn significant(v: f64, sig: usize) -> Digits {
    let sig = sig.max(1);
    digits_of(&format!("{:.*e}", sig - 1, v.abs()))
}

fn special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        None
    }
}

fn fmt_e_digits(out: &mut String, digs: &Digits, prec: usize, letter: char) {
    out.push(digs.d.first().map_or('0', |&c| c as char));
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            out.push(digs.d.get(i).map_or('0', |&c| c as char));
        }
    }
    out.push(letter);
    let exp = if digs.d.is_empty() { 0 } else { digs.dp - 1 };
    out.push(if exp < 0 { '-' } else { '+' });
    let exp = exp.unsigned_abs();
    if exp < 10 {
        out.push('0');
    }
    out.push_str(&exp.to_string());
}

fn fmt_f_digits(out: &mut String, digs: &Digits, prec: usize) {
    if digs.dp > 0 {
        for i in 0..digs.dp as usize {
            out.push(digs.d.get(i).map_or('0', |&c| c as char));
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 0..prec as i32 {
            let j = digs.dp + i;
            let c = if j >= 0 {
                digs.d.get(j as usize).map_or('0', |&c| c as char)
            } else {
                '0'
            };
            out.push(c);
        }
    }
}

/// Go's `%g` layout (strconv `formatDigits` for 'g'): `prec` is the requested precision, or
/// `None` for shortest.
fn fmt_g_digits(neg: bool, digs: &Digits, prec: Option<usize>, letter: char) -> String {
    let nd = digs.d.len() as i32;
    let (mut p, shortest) = match prec {
        Some(p) => (p.max(1) as i32, false),
        None => (nd, true),
    };
    let mut eprec = p;
    if eprec > nd && nd >= digs.dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = digs.dp - 1;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if exp < -4 || exp >= eprec {
        if p > nd {
            p = nd;
        }
        fmt_e_digits(&mut out, digs, (p - 1).max(0) as usize, letter);
        return out;
    }
    if p > digs.dp {
        p = nd;
    }
    fmt_f_digits(&mut out, digs, (p - digs.dp).max(0) as usize);
    out
}

/// `fmt.Sprint(v)` / `%v` / `strconv.FormatFloat(v, 'g', -1, 64)`.
pub fn format_v(v: f64) -> String {
    special(v).unwrap_or_else(|| fmt_g_digits(v.is_sign_negative(), &shortest(v), None, 'e'))
}

/// `%.{prec}g` (and `%g` when `prec` is `None`).
pub fn format_g(v: f64, prec: Option<usize>) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let digs = match prec {
        Some(p) => significant(v, p),
        None => shortest(v),
    };
    fmt_g_digits(v.is_sign_negative(), &digs, prec, 'e')
}

/// `%.{prec}e` (`prec` `None`: shortest, as `strconv.FormatFloat(v, 'e', -1, 64)`); `upper` for 'E'.
pub fn format_e(v: f64, prec: Option<usize>, upper: bool) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let digs = match prec {
        Some(p) => significant(v, p + 1),
        None => shortest(v),
    };
    let prec = prec.unwrap_or_else(|| digs.d.len().saturating_sub(1));
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    fmt_e_digits(&mut out, &digs, prec, if upper { 'E' } else { 'e' });
    out
}

/// `%.{prec}f`.
pub fn format_f(v: f64, prec: usize) -> String {
    special(v).unwrap_or_else(|| format!("{v:.prec$}"))
}

/// Go's `strconv.Quote`: double quotes, Go escapes, printable Unicode kept as is.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_print(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` (letters, marks, numbers, punctuation, symbols and
/// the ASCII space): controls, non-ASCII spaces and the common format characters are not.
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF)
}

/// Prometheus's `model.Duration.String()`: `1h30m`, `90d` (years and weeks only when exact), `0s`.
pub fn model_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    if rest < 0 {
        out.push('-');
        rest = -rest;
    }
    const DAY: i64 = 86_400_000;
    for (unit, mult, exact) in [
        ("y", 365 * DAY, true),
        ("w", 7 * DAY, true),
        ("d", DAY, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1_000, false),
        ("ms", 1, false),
    ] {
        if exact && rest % mult != 0 {
            continue;
        }
        let v = rest / mult;
        if v > 0 {
            out.push_str(&format!("{v}{unit}"));
            rest -= v * mult;
        }
    }
    out
}

/// Go's `time.Duration.String()` for whole milliseconds: `0s`, `500ms`, `1.5s`, `5m0s`, `1h0m0s`.
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    if ms < 1000 {
        return format!("{sign}{ms}ms");
    }
    let h = ms / 3_600_000;
    let m = (ms / 60_000) % 60;
    let s_ms = ms % 60_000;
    let mut secs = format!("{}", s_ms / 1000);
    if !s_ms.is_multiple_of(1000) {
        let frac = format!("{:03}", s_ms % 1000);
        secs.push('.');
        secs.push_str(frac.trim_end_matches('0'));
    }
    if h > 0 {
        format!("{sign}{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{sign}{m}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

/// Go's `time.Time.String()` in UTC for a Unix time in milliseconds:
/// `2009-11-10 23:00:00.5 +0000 UTC` (fraction trimmed of zeros).
pub fn go_time_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        tod / 3600,
        (tod / 60) % 60,
        tod % 60
    );
    if frac != 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// A Unix time in milliseconds as Go's JSON encoding of a UTC `time.Time` (RFC 3339 with the
/// fraction trimmed of zeros): `2026-11-25T17:48:33.12Z`. `None` is Go's zero time, which
/// Prometheus's API shows for a rule never evaluated.
pub fn go_time_json(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "0001-01-01T00:00:00Z".to_string();
    };
    let t = go_time_utc(ms);
    // `2009-11-10 23:00:00.5 +0000 UTC` → `2009-11-10T23:00:00.5Z`
    let t = t.strip_suffix(" +0000 UTC").unwrap_or(&t);
    format!("{}Z", t.replacen(' ', "T", 1))
}

/// Go's `time.Time.Format(layout)` for a UTC time in Unix milliseconds: the reference time
/// `Mon Jan 2 15:04:05 MST 2006` spelled in `layout` stands for the time's fields (Go's
/// `nextStdChunk` rules, fractions to nanoseconds; the zone is UTC, so `MST` is `UTC` and the
/// offsets are `+0000` or `Z`).
pub fn go_time_format(ms: i64, layout: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    let secs = ms.div_euclid(1000);
    let nanos = ms.rem_euclid(1000) * 1_000_000;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (tod / 3600, (tod / 60) % 60, tod % 60);
    let weekday = (days + 4).rem_euclid(7) as usize;
    let yday = days - days_from_civil_utc(year, 1, 1) + 1;
    let month_name = MONTHS[(month - 1) as usize];
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    let mut out = String::new();
    let b = layout.as_bytes();
    let at = |i: usize, p: &str| layout[i..].starts_with(p);
    let mut i = 0;
    while i < b.len() {
        // Each arm pushes the chunk the reference spelling stands for and says how long it was.
        let used = match b[i] {
            b'J' if at(i, "January") => {
                out.push_str(month_name);
                7
            }
            b'J' if at(i, "Jan") => {
                out.push_str(&month_name[..3]);
                3
            }
            b'M' if at(i, "Monday") => {
                out.push_str(DAYS[weekday]);
                6
            }
            b'M' if at(i, "Mon") => {
                out.push_str(&DAYS[weekday][..3]);
                3
            }
            b'M' if at(i, "MST") => {
                out.push_str("UTC");
                3
            }
            b'0' if at(i, "002") => {
                out.push_str(&format!("{yday:03}"));
                3
            }
            b'0' if i + 1 < b.len() && (b'1'..=b'6').contains(&b[i + 1]) => {
                let v = match b[i + 1] {
                    b'1' => i64::from(month),
                    b'2' => i64::from(day),
                    b'3' => hour12,
                    b'4' => minute,
                    b'5' => second,
                    _ => year.rem_euclid(100),
                };
                out.push_str(&format!("{v:02}"));
                2
            }
            b'1' if at(i, "15") => {
                out.push_str(&format!("{hour:02}"));
                2
            }
            b'1' => {
                out.push_str(&month.to_string());
                1
            }
            b'2' if at(i, "2006") => {
                out.push_str(&format!("{year:04}"));
                4
            }
            b'2' => {
                out.push_str(&day.to_string());
                1
            }
            b'_' if at(i, "_2006") => {
                // Go reads `_2006` as a literal `_` then the year.
                out.push('_');
                1
            }
            b'_' if at(i, "__2") => {
                out.push_str(&format!("{yday:>3}"));
                3
            }
            b'_' if at(i, "_2") => {
                out.push_str(&format!("{day:>2}"));
                2
            }
            b'3' => {
                out.push_str(&hour12.to_string());
                1
            }
            b'4' => {
                out.push_str(&minute.to_string());
                1
            }
            b'5' => {
                out.push_str(&second.to_string());
                1
            }
            b'P' if at(i, "PM") => {
                out.push_str(if hour >= 12 { "PM" } else { "AM" });
                2
            }
            b'p' if at(i, "pm") => {
                out.push_str(if hour >= 12 { "pm" } else { "am" });
                2
            }
            b'-' | b'Z' => {
                let iso = b[i] == b'Z';
                let rest = &layout[i + 1..];
                match ["070000", "07:00:00", "0700", "07:00", "07"]
                    .iter()
                    .find(|p| rest.starts_with(**p))
                {
                    Some(p) => {
                        if iso {
                            out.push('Z');
                        } else {
                            // UTC: every offset field is zero, in the spelled shape.
                            out.push('+');
                            out.push_str(&p.replace('7', "0"));
                        }
                        1 + p.len()
                    }
                    None => {
                        out.push(b[i] as char);
                        1
                    }
                }
            }
            c @ (b'.' | b',') if i + 1 < b.len() && matches!(b[i + 1], b'0' | b'9') => {
                let digit = b[i + 1];
                let mut j = i + 1;
                while j < b.len() && b[j] == digit {
                    j += 1;
                }
                if j < b.len() && b[j].is_ascii_digit() {
                    out.push(c as char);
                    1
                } else {
                    let n = (j - i - 1).min(9);
                    let frac = format!("{nanos:09}");
                    let frac = &frac[..n];
                    if digit == b'0' {
                        out.push(c as char);
                        out.push_str(frac);
                    } else {
                        let trimmed = frac.trim_end_matches('0');
                        if !trimmed.is_empty() {
                            out.push(c as char);
                            out.push_str(trimmed);
                        }
                    }
                    j - i
                }
            }
            _ => {
                // A whole character of literal text (the layout may hold any UTF-8).
                let ch = layout[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                ch.len_utf8()
            }
        };
        i += used;
    }
    out
}

/// Days since 1970-01-01 of a civil date (the inverse of [`civil_from_days`]).
fn days_from_civil_utc(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Go's `strconv.ParseInt(s, 0, 64)`: sign, `0x`/`0o`/`0b`/legacy octal, underscores between digits.
pub(crate) fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.strip_prefix('_').unwrap_or(d))
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.strip_prefix('_').unwrap_or(d))
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.strip_prefix('_').unwrap_or(d))
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    let v = i128::from_str_radix(&clean, radix).ok()?;
    i64::try_from(if neg { -v } else { v }).ok()
}

/// Go's `strconv.ParseFloat(s, 64)` for the decimal forms, `Inf` and `NaN`; `None` when Go would
/// fail (syntax or range).
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim_start_matches(['+', '-']);
    let lower = t.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return s.parse::<f64>().ok();
    }
    if t.is_empty()
        || !t
            .chars()
            .all(|c| c.is_ascii_digit() || ".eE+-_".contains(c))
    {
        return None;
    }
    let clean: String = s.chars().filter(|&c| c != '_').collect();
    let v = clean.parse::<f64>().ok()?;
    // Go reports a range error (and templates fail) where Rust quietly gives infinity.
    if v.is_infinite() { None } else { Some(v) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_matches_go_print() {
        // Each right-hand side is what Go's fmt.Sprint prints for the float64.
        for (v, go) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (1.5, "1.5"),
            (100000.0, "100000"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e21, "1e+21"),
            (-2.5e-7, "-2.5e-07"),
            (123456.789, "123456.789"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (1e100, "1e+100"),
        ] {
            assert_eq!(format_v(v), go, "{v}");
        }
    }

    #[test]
    fn precision_g_matches_go() {
        for (v, go) in [
            (1.234567, "1.235"),
            (1.5, "1.5"),
            (100.0, "100"),
            (0.0, "0"),
            (12345.0, "1.234e+04"),
            (1.0, "1"),
            (999.95, "1000"), // 999.95 is stored just above the tie
            (0.00001234, "1.234e-05"),
            (0.125, "0.125"),
        ] {
            assert_eq!(format_g(v, Some(4)), go, "{v}");
        }
    }

    #[test]
    fn e_and_f_match_go() {
        assert_eq!(format_e(1.0, None, true), "1E+00");
        assert_eq!(format_e(1.5, None, true), "1.5E+00");
        assert_eq!(format_e(1234567.0, None, true), "1.234567E+06");
        assert_eq!(format_e(0.0, None, true), "0E+00");
        assert_eq!(format_e(-0.001, None, true), "-1E-03");
        assert_eq!(format_e(1.0, Some(6), false), "1.000000e+00");
        assert_eq!(format_f(2.5, 0), "2");
        assert_eq!(format_f(0.125, 2), "0.12");
        assert_eq!(format_f(1.0 / 3.0, 6), "0.333333");
        assert_eq!(format_f(f64::INFINITY, 2), "+Inf");
    }

    #[test]
    fn quote_matches_go() {
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(quote("héllo"), "\"héllo\"");
        assert_eq!(quote("\u{1}"), "\"\\x01\"");
        assert_eq!(quote("\u{a0}"), "\"\\u00a0\"");
    }

    #[test]
    fn durations_match_go_and_prometheus() {
        assert_eq!(model_duration(0), "0s");
        assert_eq!(model_duration(5_400_000), "1h30m");
        assert_eq!(model_duration(86_400_000), "1d");
        assert_eq!(model_duration(14 * 86_400_000), "2w");
        assert_eq!(model_duration(90 * 86_400_000), "90d");
        assert_eq!(model_duration(1500), "1s500ms");
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(300_000), "5m0s");
        assert_eq!(go_duration(3_600_000), "1h0m0s");
        assert_eq!(go_duration(1500), "1.5s");
        assert_eq!(go_duration(250), "250ms");
        assert_eq!(go_time_utc(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            go_time_utc(1_257_894_000_500),
            "2009-11-10 23:00:00.5 +0000 UTC"
        );
        assert_eq!(go_time_utc(-1000), "1969-12-31 23:59:59 +0000 UTC");
    }

    #[test]
    fn time_layouts_format_as_go_does() {
        // 2009-11-10 23:00:00.5 UTC, a Tuesday, day 314 of the year. Right-hand sides are
        // what Go's time.Time.Format gives for the layout.
        let t = 1_257_894_000_500;
        let f = |layout| go_time_format(t, layout);
        assert_eq!(f("2006-01-02 15:04:05 MST"), "2009-11-10 23:00:00 UTC");
        assert_eq!(
            f("Mon, 02 Jan 2006 15:04:05 -0700"),
            "Tue, 10 Nov 2009 23:00:00 +0000"
        );
        assert_eq!(
            f("2006-01-02T15:04:05.999999999Z07:00"),
            "2009-11-10T23:00:00.5Z"
        );
        assert_eq!(f("3:04PM"), "11:00PM");
        assert_eq!(f("Jan _2 15:04:05.000"), "Nov 10 23:00:00.500");
        assert_eq!(f("January Monday 002 __2"), "November Tuesday 314 314");
        assert_eq!(f("06 1 2 3 4 5 pm"), "09 11 10 11 0 0 pm");
        assert_eq!(f("_2006 -07:00:00 Z0700 -07"), "_2009 +00:00:00 Z +00");
        assert_eq!(f("05,000 05.9 05.99 05.0"), "00,500 00.5 00.5 00.5");
        // A fraction followed by another digit is not one: `.0`, then `01` (the month).
        assert_eq!(f(".001"), ".011");
        assert_eq!(f("at 15h — ok"), "at 23h — ok");
        assert_eq!(go_time_format(0, ".999 Z07:00"), " Z");
        // Go's zero time, a firing alert's EndsAt, was a Monday.
        assert_eq!(
            go_time_format(-62_135_596_800_000, "2006-01-02 Mon"),
            "0001-01-01 Mon"
        );
    }
}
