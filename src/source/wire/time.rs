//! Timestamps on the wire: ISO-8601 / RFC 3339 or unix milliseconds to unix milliseconds, with the calendar arithmetic it needs.

/// Parses a timestamp to unix milliseconds.
///
/// Accepts all-digit unix milliseconds, or ISO-8601 / RFC 3339
/// `YYYY-MM-DD[(T|t| )HH:MM[:SS[.fraction]]][Z|z|±HH:MM|±HHMM]`. A missing offset is taken as
/// UTC, a missing time as midnight; fraction digits beyond milliseconds are truncated; second 60
/// (a leap second) is accepted. Invalid calendar dates (`2026-02-30`) are rejected.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.is_empty() {
        return None;
    }
    canonical_ms(b).or_else(|| general_ms(s))
}

/// [`parse_timestamp_ms`] by the general reader, any accepted spelling.
fn general_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.iter().all(u8::is_ascii_digit) {
        return s.parse().ok();
    }
    let mut c = Cursor { b, i: 0 };
    let year = c.digits(4)? as i64;
    c.eat(b'-')?;
    let month = c.digits(2)?;
    c.eat(b'-')?;
    let day = c.digits(2)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let (mut hour, mut minute, mut second, mut millis) = (0, 0, 0, 0);
    let mut offset_min: i64 = 0;
    if let Some(&sep) = c.peek() {
        if !matches!(sep, b'T' | b't' | b' ') {
            return None;
        }
        c.i += 1;
        hour = c.digits(2)?;
        c.eat(b':')?;
        minute = c.digits(2)?;
        if c.peek() == Some(&b':') {
            c.i += 1;
            second = c.digits(2)?;
            if matches!(c.peek(), Some(b'.' | b',')) {
                c.i += 1;
                let start = c.i;
                while c.peek().is_some_and(u8::is_ascii_digit) {
                    c.i += 1;
                }
                let frac = &b[start..c.i];
                if frac.is_empty() {
                    return None;
                }
                for k in 0..3 {
                    millis = millis * 10 + frac.get(k).map_or(0, |d| u32::from(d - b'0'));
                }
            }
        }
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        match c.peek() {
            None => {}
            Some(b'Z' | b'z') => c.i += 1,
            Some(&sign @ (b'+' | b'-')) => {
                c.i += 1;
                let oh = c.digits(2)?;
                if c.peek() == Some(&b':') {
                    c.i += 1;
                }
                let om = c.digits(2)?;
                if oh > 23 || om > 59 {
                    return None;
                }
                offset_min = i64::from(oh * 60 + om);
                if sign == b'-' {
                    offset_min = -offset_min;
                }
            }
            Some(_) => return None,
        }
    }
    if c.i != b.len() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_min * 60;
    Some(secs * 1000 + i64::from(millis))
}

/// The exchange's own spelling, `YYYY-MM-DDTHH:MM:SS.mmmZ`, read at fixed offsets: three of
/// these come with every event. `None` for anything else (including an invalid date or time in
/// this shape), which the general reader above then reads, or refuses, exactly as before.
fn canonical_ms(b: &[u8]) -> Option<i64> {
    let &[
        y0,
        y1,
        y2,
        y3,
        b'-',
        mo0,
        mo1,
        b'-',
        d0,
        d1,
        b'T',
        h0,
        h1,
        b':',
        mi0,
        mi1,
        b':',
        s0,
        s1,
        b'.',
        f0,
        f1,
        f2,
        b'Z',
    ] = b
    else {
        return None;
    };
    let digit = |c: u8| c.is_ascii_digit().then(|| u32::from(c - b'0'));
    let two = |a: u8, b: u8| Some(digit(a)? * 10 + digit(b)?);
    let year = i64::from(two(y0, y1)? * 100 + two(y2, y3)?);
    let (month, day) = (two(mo0, mo1)?, two(d0, d1)?);
    let (hour, minute, second) = (two(h0, h1)?, two(mi0, mi1)?, two(s0, s1)?);
    let millis = two(f0, f1)? * 10 + digit(f2)?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(secs * 1000 + i64::from(millis))
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<&u8> {
        self.b.get(self.i)
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(&byte)).then(|| self.i += 1)
    }

    fn digits(&mut self, n: usize) -> Option<u32> {
        let run = self.b.get(self.i..self.i + n)?;
        let mut v = 0u32;
        for &d in run {
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(d - b'0');
        }
        self.i += n;
        Some(v)
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::wire::tests::T0;

    // ---- timestamps ----

    #[test]
    fn iso_timestamps_with_z_offsets_and_fractions() {
        let p = parse_timestamp_ms;
        assert_eq!(p("2026-04-24T12:00:00Z"), Some(T0));
        assert_eq!(p("2026-04-24T12:00:00.000Z"), Some(T0));
        assert_eq!(p("2026-04-24T12:00:00.1Z"), Some(T0 + 100));
        assert_eq!(p("2026-04-24T12:00:00.12Z"), Some(T0 + 120));
        assert_eq!(p("2026-04-24T12:00:00.123456789Z"), Some(T0 + 123));
        assert_eq!(p("2026-04-24T14:00:00+02:00"), Some(T0));
        assert_eq!(p("2026-04-24T06:30:00.5-05:30"), Some(T0 + 500));
        assert_eq!(p("2026-04-24T14:00:00+0200"), Some(T0));
        assert_eq!(p("2026-04-24t12:00:00z"), Some(T0));
        assert_eq!(p("2026-04-24 12:00:00"), Some(T0));
        assert_eq!(p("2026-04-24T12:00"), Some(T0));
        assert_eq!(p("2026-04-24"), Some(T0 - 12 * 3_600_000));
    }

    #[test]
    fn unix_ms_and_calendar_edges() {
        let p = parse_timestamp_ms;
        assert_eq!(p("1714000000000"), Some(1_714_000_000_000));
        assert_eq!(p("0"), Some(0));
        assert_eq!(p("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(p("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(p("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(p("2024-12-31T23:59:59Z"), Some(1_735_689_599_000));
        assert_eq!(p("2025-01-01T00:00:00+00:00"), Some(1_735_689_600_000));
        assert_eq!(p("2016-12-31T23:59:60Z"), Some(1_483_228_800_000));
    }

    /// Howard Hinnant's `civil_from_days`, the inverse of the function under test.
    fn civil_from_days(z: i64) -> (i64, u32, u32) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (yoe + era * 400 + i64::from(month <= 2), month, day)
    }

    proptest::proptest! {
        #[test]
        fn iso_round_trips_any_instant(ms in 0i64..253_402_300_800_000, off in -(23 * 60 + 59)..(23i64 * 60 + 59)) {
            let local = ms + off * 60_000;
            let days = local.div_euclid(86_400_000);
            let rem = local.rem_euclid(86_400_000);
            let (y, mo, d) = civil_from_days(days);
            if (0..=9999).contains(&y) {
                let sign = if off < 0 { '-' } else { '+' };
                let s = format!(
                    "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}{sign}{:02}:{:02}",
                    rem / 3_600_000,
                    rem / 60_000 % 60,
                    rem / 1000 % 60,
                    rem % 1000,
                    off.abs() / 60,
                    off.abs() % 60
                );
                proptest::prop_assert_eq!(parse_timestamp_ms(&s), Some(ms), "{}", s);
            }
        }
    }

    proptest::proptest! {
        /// The fixed-offset reader of the exchange's spelling agrees with the general one,
        /// valid or not (month 13, February 30th, second 61...).
        #[test]
        fn the_canonical_spelling_reads_as_the_general_reader_reads_it(
            y in 0u32..10_000, mo in 0u32..14, d in 0u32..33, h in 0u32..26, mi in 0u32..62,
            sec in 0u32..62, f in 0u32..1000
        ) {
            let s = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}.{f:03}Z");
            proptest::prop_assert_eq!(canonical_ms(s.as_bytes()), general_ms(&s), "{}", s);
            proptest::prop_assert_eq!(parse_timestamp_ms(&s), general_ms(&s), "{}", s);
        }
    }

    #[test]
    fn invalid_timestamps_are_none() {
        for bad in [
            "",
            "-5",
            "1.5",
            "2026-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-04-24T24:00:00Z",
            "2026-04-24T12:60:00Z",
            "2026-04-24T12:00:00.Z",
            "2026-04-24T12:00:00+2:00",
            "2026-04-24T12:00:00Zjunk",
            "2026-04-24X12:00:00Z",
            "26-04-24T12:00:00Z",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_timestamp_ms(bad), None, "{bad}");
        }
    }
}
