//! `time_intervals:` — when a route is muted or active: times of day, weekdays, days of the month, months and years in a zone, checked against an instant with Alertmanager's `ContainsTime` semantics.
//!
//! The parsers here turn one YAML scalar into a range and say what is wrong in Alertmanager's
//! words; the builder adds the file location.

use crate::rules::gofmt::civil_from_days;

use super::tz::{Zone, days_in_month};

/// A named list of intervals (`time_intervals[].name`); an instant is in it when it is in any.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTimeInterval {
    pub name: String,
    pub intervals: Vec<TimeInterval>,
}

impl NamedTimeInterval {
    /// Whether the instant (Unix milliseconds) falls in any of the intervals; an empty list never
    /// contains anything, as in Alertmanager.
    pub fn contains(&self, unix_ms: i64) -> bool {
        self.intervals.iter().any(|i| i.contains(unix_ms))
    }
}

/// One interval. A `None` field does not constrain; a field given as an empty list contains
/// nothing (Alertmanager tells a missing list from an empty one).
#[derive(Debug, Clone, PartialEq)]
pub struct TimeInterval {
    pub times: Option<Vec<TimeRange>>,
    /// 0 = Sunday … 6 = Saturday.
    pub weekdays: Option<Vec<InclusiveRange>>,
    /// 1..=31, or -1 (the last day) ..= -31.
    pub days_of_month: Option<Vec<InclusiveRange>>,
    /// 1..=12.
    pub months: Option<Vec<InclusiveRange>>,
    pub years: Option<Vec<InclusiveRange>>,
    pub location: Zone,
}

/// Minutes since midnight, start inclusive, end exclusive (`24:00` is 1440).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start_minute: u32,
    pub end_minute: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InclusiveRange {
    pub begin: i64,
    pub end: i64,
}

impl InclusiveRange {
    fn has(&self, v: i64) -> bool {
        self.begin <= v && v <= self.end
    }
}

/// The calendar fields of an instant in a zone.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    weekday: i64,
    minute: u32,
}

fn civil(unix_ms: i64, zone: &Zone) -> Civil {
    let secs = unix_ms.div_euclid(1000);
    let local = secs + i64::from(zone.offset_at(secs));
    let days = local.div_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        // 1970-01-01 was a Thursday; Sunday is 0, as Go's time.Weekday.
        weekday: (days + 4).rem_euclid(7),
        minute: (local.rem_euclid(86_400) / 60) as u32,
    }
}

impl TimeInterval {
    /// Alertmanager's `TimeInterval.ContainsTime` for an instant in Unix milliseconds.
    pub fn contains(&self, unix_ms: i64) -> bool {
        let t = civil(unix_ms, &self.location);
        let any = |list: &Option<Vec<InclusiveRange>>, v: i64| {
            list.as_ref().is_none_or(|l| l.iter().any(|r| r.has(v)))
        };
        let in_times = self.times.as_ref().is_none_or(|l| {
            l.iter()
                .any(|r| t.minute >= r.start_minute && t.minute < r.end_minute)
        });
        let in_days = self.days_of_month.as_ref().is_none_or(|l| {
            let dim = i64::from(days_in_month(t.year, t.month));
            l.iter().any(|r| {
                // Negative days count from the month's end: -1 is its last day.
                let begin = if r.begin < 0 {
                    dim + r.begin + 1
                } else {
                    r.begin
                };
                let end = if r.end < 0 { dim + r.end + 1 } else { r.end };
                // A range starting after this month's last day (31 in April) is skipped; one
                // ending after it is cut to it.
                if begin > dim {
                    return false;
                }
                let (begin, end) = (begin.clamp(-dim, dim), end.clamp(-dim, dim));
                (begin..=end).contains(&i64::from(t.day))
            })
        });
        in_times
            && in_days
            && any(&self.months, i64::from(t.month))
            && any(&self.weekdays, t.weekday)
            && any(&self.years, t.year)
    }
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Go's `strconv.Atoi`: optional sign, decimal digits.
fn atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {s:?}: invalid syntax"));
    }
    s.parse()
        .map_err(|_| format!("strconv.Atoi: parsing {s:?}: value out of range"))
}

/// `a` or `a:b`, case-insensitive, each member read by `member`.
fn range(s: &str, member: impl Fn(&str) -> Result<i64, String>) -> Result<InclusiveRange, String> {
    let s = s.to_lowercase();
    match s.split_once(':') {
        Some((a, b)) => {
            if b.contains(':') {
                return Err(format!("couldn't parse range {s}, invalid format"));
            }
            Ok(InclusiveRange {
                begin: member(a)?,
                end: member(b)?,
            })
        }
        None => {
            let v = member(&s)?;
            Ok(InclusiveRange { begin: v, end: v })
        }
    }
}

/// `monday`, `monday:friday`. A range may not wrap past Saturday (`saturday:sunday` is an error).
pub(crate) fn parse_weekdays(s: &str) -> Result<InclusiveRange, String> {
    let r = range(s, |m| {
        WEEKDAYS
            .iter()
            .position(|d| *d == m)
            .map(|i| i as i64)
            .ok_or_else(|| format!("{m} is not a valid weekday"))
    })?;
    if r.begin > r.end {
        return Err("start day cannot be before end day".into());
    }
    Ok(r)
}

/// `1`, `1:15`, `-1`, `-7:-1`, `20:-1`; never 0, never beyond ±31.
pub(crate) fn parse_days_of_month(s: &str) -> Result<InclusiveRange, String> {
    let r = range(s, atoi)?;
    for v in [r.begin, r.end] {
        if v == 0 || !(-31..=31).contains(&v) {
            return Err(format!("{v} is not a valid day of the month: out of range"));
        }
    }
    if r.begin < 0 && r.end > 0 {
        return Err("end day must be negative if start day is negative".into());
    }
    // Alertmanager compares the ends as if in a 28-day month.
    let check = |v: i64| if v < 0 { 28 + v } else { v };
    if check(r.begin) > check(r.end) {
        return Err(format!(
            "end day {} is always before start day {}",
            r.end, r.begin
        ));
    }
    Ok(r)
}

/// `january`, `1`, `march:may`, `10:12`.
///
/// Alertmanager accepts any number here (`13` simply never matches); we refuse what is not a month.
pub(crate) fn parse_months(s: &str) -> Result<InclusiveRange, String> {
    let r = range(s, |m| match MONTHS.iter().position(|n| *n == m) {
        Some(i) => Ok(i as i64 + 1),
        None => atoi(m).map_err(|_| format!("{m} is not a valid month")),
    })?;
    for v in [r.begin, r.end] {
        if !(1..=12).contains(&v) {
            return Err(format!("{v} is not a valid month: out of range"));
        }
    }
    if r.begin > r.end {
        return Err(format!(
            "end month {} is before start month {}",
            MONTHS[(r.end - 1) as usize],
            MONTHS[(r.begin - 1) as usize]
        ));
    }
    Ok(r)
}

/// `2024`, `2024:2026`.
pub(crate) fn parse_years(s: &str) -> Result<InclusiveRange, String> {
    let r = range(s, atoi)?;
    if r.begin > r.end {
        return Err(format!(
            "end year {} is before start year {}",
            r.end, r.begin
        ));
    }
    Ok(r)
}

/// `HH:MM`, two-digit hours 00..=23, or exactly `24:00`; in minutes.
pub(crate) fn parse_clock(s: &str) -> Result<u32, String> {
    let bad = || format!("couldn't parse timestamp {s}, invalid format");
    if s == "24:00" {
        return Ok(1440);
    }
    let b = s.as_bytes();
    if b.len() != 5
        || b[2] != b':'
        || !s[..2]
            .bytes()
            .chain(s[3..].bytes())
            .all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (
        s[..2].parse().map_err(|_| bad())?,
        s[3..].parse().map_err(|_| bad())?,
    );
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// A `times:` entry; both ends required, start strictly before end.
pub(crate) fn parse_time_range(
    start: Option<&str>,
    end: Option<&str>,
) -> Result<TimeRange, String> {
    let (Some(start), Some(end)) = (
        start.filter(|s| !s.is_empty()),
        end.filter(|s| !s.is_empty()),
    ) else {
        return Err("both start and end times must be provided".into());
    };
    let (s, e) = (parse_clock(start)?, parse_clock(end)?);
    if s >= e {
        return Err("start time cannot be equal or greater than end time".into());
    }
    Ok(TimeRange {
        start_minute: s,
        end_minute: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC date and time.
    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        (super::super::tz::days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60) * 1000
    }

    fn interval() -> TimeInterval {
        TimeInterval {
            times: None,
            weekdays: None,
            days_of_month: None,
            months: None,
            years: None,
            location: Zone::utc(),
        }
    }

    #[test]
    fn weekdays_ranges_and_their_boundaries() {
        let i = TimeInterval {
            weekdays: Some(vec![parse_weekdays("Monday:FRIDAY").unwrap()]),
            ..interval()
        };
        // 2024-06-03 is a Monday, 2024-06-08 a Saturday.
        assert!(
            !i.contains(at(2024, 6, 2, 23, 59) + 59_999),
            "Sunday's last ms"
        );
        assert!(i.contains(at(2024, 6, 3, 0, 0)), "Monday's first ms");
        assert!(i.contains(at(2024, 6, 7, 23, 59)));
        assert!(!i.contains(at(2024, 6, 8, 0, 0)));
        assert!(parse_weekdays("saturday:sunday").is_err());
        assert!(parse_weekdays("mon").is_err());
        assert!(parse_weekdays("monday:tuesday:friday").is_err());
        // Before 1970 too: 1969-12-28 was a Sunday.
        let sunday = TimeInterval {
            weekdays: Some(vec![parse_weekdays("sunday").unwrap()]),
            ..interval()
        };
        assert!(sunday.contains(at(1969, 12, 28, 12, 0)));
    }

    #[test]
    fn end_time_is_exclusive_and_24_00_ends_the_day() {
        let i = TimeInterval {
            times: Some(vec![
                parse_time_range(Some("09:00"), Some("17:30")).unwrap(),
                parse_time_range(Some("23:00"), Some("24:00")).unwrap(),
            ]),
            ..interval()
        };
        assert!(!i.contains(at(2024, 1, 1, 8, 59)));
        assert!(i.contains(at(2024, 1, 1, 9, 0)));
        assert!(i.contains(at(2024, 1, 1, 17, 29) + 59_999));
        assert!(!i.contains(at(2024, 1, 1, 17, 30)), "end is exclusive");
        assert!(i.contains(at(2024, 1, 1, 23, 59)));
        assert!(!i.contains(at(2024, 1, 2, 0, 0)));
        for (s, e) in [
            ("10:00", "10:00"),
            ("11:00", "10:00"),
            ("9:00", "10:00"),
            ("24:01", "24:00"),
        ] {
            assert!(parse_time_range(Some(s), Some(e)).is_err(), "{s}-{e}");
        }
        assert!(parse_time_range(Some("10:00"), None).is_err());
        assert!(parse_clock("23:60").is_err());
    }

    #[test]
    fn negative_days_count_from_the_months_end() {
        let last_week = TimeInterval {
            days_of_month: Some(vec![parse_days_of_month("-7:-1").unwrap()]),
            ..interval()
        };
        // February 2024 has 29 days: the last seven are 23..=29.
        assert!(!last_week.contains(at(2024, 2, 22, 12, 0)));
        assert!(last_week.contains(at(2024, 2, 23, 0, 0)));
        assert!(last_week.contains(at(2024, 2, 29, 23, 59)));
        // February 2023 has 28: 22..=28.
        assert!(last_week.contains(at(2023, 2, 22, 0, 0)));
        // January: 25..=31.
        assert!(!last_week.contains(at(2024, 1, 24, 0, 0)));
        assert!(last_week.contains(at(2024, 1, 31, 0, 0)));

        let to_end = TimeInterval {
            days_of_month: Some(vec![parse_days_of_month("20:-1").unwrap()]),
            ..interval()
        };
        assert!(to_end.contains(at(2024, 4, 30, 0, 0)));
        assert!(!to_end.contains(at(2024, 4, 19, 0, 0)));
        // The 31st in a 30-day month: skipped; 28:31 is cut to the month's end.
        let thirty_first = TimeInterval {
            days_of_month: Some(vec![parse_days_of_month("31").unwrap()]),
            ..interval()
        };
        assert!(!thirty_first.contains(at(2024, 4, 30, 0, 0)));
        assert!(thirty_first.contains(at(2024, 5, 31, 0, 0)));
        let to_31 = TimeInterval {
            days_of_month: Some(vec![parse_days_of_month("28:31").unwrap()]),
            ..interval()
        };
        assert!(to_31.contains(at(2023, 2, 28, 0, 0)));

        for bad in ["0", "32", "-32", "-1:5", "10:5", "-1:-7", "x"] {
            assert!(parse_days_of_month(bad).is_err(), "{bad}");
        }
        // Alertmanager allows this one (checked as if the month had 28 days).
        assert!(parse_days_of_month("1:-1").is_ok());
    }

    #[test]
    fn months_years_and_empty_lists() {
        let i = TimeInterval {
            months: Some(vec![
                parse_months("December").unwrap(),
                parse_months("1:february").unwrap(),
            ]),
            years: Some(vec![parse_years("2024:2025").unwrap()]),
            ..interval()
        };
        assert!(i.contains(at(2024, 12, 31, 0, 0)));
        assert!(i.contains(at(2025, 2, 28, 0, 0)));
        assert!(!i.contains(at(2025, 3, 1, 0, 0)));
        assert!(!i.contains(at(2026, 1, 1, 0, 0)));
        assert!(parse_months("march:january").is_err());
        assert!(parse_months("13").is_err());
        assert!(parse_years("2025:2024").is_err());
        let empty = TimeInterval {
            weekdays: Some(vec![]),
            ..interval()
        };
        assert!(!empty.contains(0), "an empty list contains nothing");
        assert!(interval().contains(0), "no constraint contains everything");
        let none = NamedTimeInterval {
            name: "n".into(),
            intervals: vec![],
        };
        assert!(!none.contains(0));
    }

    #[test]
    fn location_shifts_the_calendar() {
        let Ok(ny) = Zone::load("America/New_York") else {
            return;
        };
        let i = TimeInterval {
            times: Some(vec![
                parse_time_range(Some("09:00"), Some("17:00")).unwrap(),
            ]),
            weekdays: Some(vec![parse_weekdays("monday:friday").unwrap()]),
            location: ny,
            ..interval()
        };
        // 2024-06-03 (Monday) 13:00Z is 09:00 EDT; 2024-01-08 (Monday) 13:00Z is 08:00 EST.
        assert!(i.contains(at(2024, 6, 3, 13, 0)));
        assert!(!i.contains(at(2024, 6, 3, 12, 59)));
        assert!(!i.contains(at(2024, 1, 8, 13, 0)));
        assert!(i.contains(at(2024, 1, 8, 14, 0)));
        // Saturday 02:00Z is still Friday evening in New York.
        assert!(!i.contains(at(2024, 6, 8, 2, 0)), "outside hours");
    }
}
