//! Time zones for `time_intervals[].location`: UTC, the machine's `Local`, and named IANA zones read from the system's zoneinfo (TZif files and their POSIX-TZ footer), as Go's `time.LoadLocation` does.
//!
//! Everything is read once at config load; [`Zone::offset_at`] is pure arithmetic, so checking an
//! interval needs no I/O and no clock.

use std::path::{Path, PathBuf};

/// Where Go (and so Alertmanager) looks first on Unix; the others follow it.
const ZONEINFO_DIRS: [&str; 3] = [
    "/usr/share/zoneinfo",
    "/usr/share/lib/zoneinfo",
    "/usr/lib/locale/TZ",
];

/// A zone: UTC offsets in effect from each transition on, and the rule for after the last one.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    name: String,
    /// (first second it applies, UTC offset in seconds east), ascending.
    transitions: Vec<(i64, i32)>,
    /// The offset before the first transition.
    initial: i32,
    /// The footer's rule, for instants after the last transition.
    rule: Option<PosixRule>,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone::fixed("UTC", 0)
    }

    fn fixed(name: &str, offset: i32) -> Zone {
        Zone {
            name: name.to_string(),
            transitions: Vec::new(),
            initial: offset,
            rule: None,
        }
    }

    /// The name it was loaded by (`UTC`, `Local`, `Europe/Berlin`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Go's `time.LoadLocation`: `""` and `UTC` are UTC, `Local` is the machine's zone (`$TZ`,
    /// else `/etc/localtime`), anything else a file under the zoneinfo directories.
    pub fn load(name: &str) -> Result<Zone, String> {
        match name {
            "" | "UTC" => return Ok(Zone::utc()),
            "Local" => return Ok(Zone::local()),
            _ => {}
        }
        if name.contains("..") || name.starts_with('/') || name.starts_with('\\') {
            return Err(format!("unknown time zone {name}: invalid location name"));
        }
        let mut z = Zone::from_dirs(name).ok_or_else(|| format!("unknown time zone {name}"))?;
        z.name = name.to_string();
        Ok(z)
    }

    fn from_dirs(name: &str) -> Option<Zone> {
        let dirs = std::env::var_os("ZONEINFO")
            .map(PathBuf::from)
            .into_iter()
            .chain(ZONEINFO_DIRS.iter().map(PathBuf::from));
        dirs.filter_map(|d| std::fs::read(d.join(name)).ok())
            .find_map(|b| parse_tzif(&b).ok())
    }

    /// The machine's zone as Go finds it; UTC when nothing says otherwise or it cannot be read.
    fn local() -> Zone {
        let found = match std::env::var("TZ") {
            Ok(tz) => {
                let tz = tz.strip_prefix(':').unwrap_or(&tz).to_string();
                if tz.is_empty() || tz == "UTC" {
                    None
                } else if Path::new(&tz).is_absolute() {
                    std::fs::read(&tz).ok().and_then(|b| parse_tzif(&b).ok())
                } else {
                    Zone::from_dirs(&tz)
                }
            }
            Err(_) => std::fs::read("/etc/localtime")
                .ok()
                .and_then(|b| parse_tzif(&b).ok()),
        };
        let mut z = found.unwrap_or_else(Zone::utc);
        z.name = "Local".to_string();
        z
    }

    /// Seconds east of UTC in effect at `unix_secs`.
    pub fn offset_at(&self, unix_secs: i64) -> i32 {
        let idx = self.transitions.partition_point(|&(at, _)| at <= unix_secs);
        if idx == 0 {
            return self.initial;
        }
        if idx == self.transitions.len()
            && let Some(rule) = &self.rule
        {
            return rule.offset_at(unix_secs);
        }
        self.transitions[idx - 1].1
    }
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// RFC 8536: the version-2+ (64-bit) block when there is one, and its footer.
fn parse_tzif(b: &[u8]) -> Result<Zone, String> {
    let bad = || "not a TZif file".to_string();
    let header = |b: &[u8]| -> Result<[usize; 6], String> {
        if b.len() < 44 || &b[..4] != b"TZif" {
            return Err(bad());
        }
        let mut c = [0usize; 6];
        for (i, slot) in c.iter_mut().enumerate() {
            *slot = usize::try_from(be_i32(&b[20 + 4 * i..])).map_err(|_| bad())?;
        }
        Ok(c)
    };
    let v1 = header(b)?;
    let version = b[4];
    let block_len = |c: &[usize; 6], tsize: usize| {
        let [isut, isstd, leap, time, typ, chars] = *c;
        time * tsize + time + typ * 6 + chars + leap * (tsize + 4) + isstd + isut
    };
    let (data, counts, tsize, rest) = if version >= b'2' {
        let second = 44 + block_len(&v1, 4);
        let b2 = b.get(second..).ok_or_else(bad)?;
        let c2 = header(b2)?;
        let end = 44 + block_len(&c2, 8);
        (
            b2.get(44..end).ok_or_else(bad)?,
            c2,
            8,
            b2.get(end..).unwrap_or(&[]),
        )
    } else {
        let end = 44 + block_len(&v1, 4);
        (b.get(44..end).ok_or_else(bad)?, v1, 4, &[][..])
    };
    let [_, _, _, timecnt, typecnt, _] = counts;
    if typecnt == 0 {
        return Err(bad());
    }
    let times = &data[..timecnt * tsize];
    let idxs = &data[timecnt * tsize..timecnt * tsize + timecnt];
    let types = &data[timecnt * tsize + timecnt..timecnt * tsize + timecnt + typecnt * 6];
    let ttinfo = |i: usize| -> Result<(i32, bool), String> {
        let t = types.get(i * 6..i * 6 + 6).ok_or_else(bad)?;
        Ok((be_i32(t), t[4] != 0))
    };
    let mut transitions = Vec::with_capacity(timecnt);
    for i in 0..timecnt {
        let at = if tsize == 8 {
            let mut a = [0u8; 8];
            a.copy_from_slice(&times[i * 8..i * 8 + 8]);
            i64::from_be_bytes(a)
        } else {
            i64::from(be_i32(&times[i * 4..]))
        };
        transitions.push((at, ttinfo(usize::from(idxs[i]))?.0));
    }
    // Before the first transition: the first standard-time type, as Go's lookupFirstZone.
    let initial = (0..typecnt)
        .map(ttinfo)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .find(|&(_, dst)| !dst)
        .map_or(ttinfo(0)?.0, |(off, _)| off);
    let footer = std::str::from_utf8(rest)
        .ok()
        .and_then(|s| s.strip_prefix('\n'))
        .and_then(|s| s.split('\n').next())
        .filter(|s| !s.is_empty());
    let rule = footer.and_then(PosixRule::parse);
    Ok(Zone {
        name: String::new(),
        transitions,
        initial,
        rule,
    })
}

/// A POSIX TZ string such as `CET-1CEST,M3.5.0,M10.5.0/3`.
#[derive(Debug, Clone, PartialEq)]
struct PosixRule {
    /// Standard offset, seconds east.
    std: i32,
    /// Daylight offset, and when daylight time starts and ends (each in local standard/daylight
    /// wall time respectively, as POSIX says).
    dst: Option<(i32, DateRule, i32, DateRule, i32)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DateRule {
    /// `Jn`: day 1..=365, February 29 never counted.
    Julian1(i64),
    /// `n`: day 0..=365, counting February 29.
    Julian0(i64),
    /// `Mm.w.d`: day `d` (0 = Sunday) of week `w` (5 = last) of month `m`.
    Month(u32, u32, u32),
}

struct Cursor<'a>(&'a str);

impl Cursor<'_> {
    fn name(&mut self) -> Option<()> {
        if let Some(r) = self.0.strip_prefix('<') {
            let end = r.find('>')?;
            self.0 = &r[end + 1..];
        } else {
            let end = self
                .0
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(self.0.len());
            if end < 3 {
                return None;
            }
            self.0 = &self.0[end..];
        }
        Some(())
    }

    /// `[+-]hh[:mm[:ss]]` in seconds.
    fn hms(&mut self) -> Option<i32> {
        let (sign, r) = match self.0.as_bytes().first() {
            Some(b'-') => (-1, &self.0[1..]),
            Some(b'+') => (1, &self.0[1..]),
            _ => (1, self.0),
        };
        let end = r
            .find(|c: char| !(c.is_ascii_digit() || c == ':'))
            .unwrap_or(r.len());
        let mut total = 0i32;
        let mut parts = 0;
        for (i, p) in r[..end].split(':').enumerate() {
            let n: i32 = p.parse().ok()?;
            total += n * [3600, 60, 1].get(i)?;
            parts += 1;
        }
        if parts == 0 {
            return None;
        }
        self.0 = &r[end..];
        Some(sign * total)
    }

    fn number(&mut self) -> Option<i64> {
        let end = self
            .0
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(self.0.len());
        let n = self.0[..end].parse().ok()?;
        self.0 = &self.0[end..];
        Some(n)
    }

    fn eat(&mut self, c: char) -> bool {
        match self.0.strip_prefix(c) {
            Some(r) => {
                self.0 = r;
                true
            }
            None => false,
        }
    }

    fn date(&mut self) -> Option<(DateRule, i32)> {
        let rule = if self.eat('J') {
            DateRule::Julian1(self.number()?)
        } else if self.eat('M') {
            let m = self.number()?;
            self.eat('.').then_some(())?;
            let w = self.number()?;
            self.eat('.').then_some(())?;
            let d = self.number()?;
            DateRule::Month(
                u32::try_from(m).ok()?,
                u32::try_from(w).ok()?,
                u32::try_from(d).ok()?,
            )
        } else {
            DateRule::Julian0(self.number()?)
        };
        let time = if self.eat('/') { self.hms()? } else { 7200 };
        Some((rule, time))
    }
}

impl PosixRule {
    fn parse(s: &str) -> Option<PosixRule> {
        let mut c = Cursor(s);
        c.name()?;
        // POSIX offsets are west of UTC.
        let std = -c.hms()?;
        if c.0.is_empty() {
            return Some(PosixRule { std, dst: None });
        }
        c.name()?;
        let dst_off = if c.0.starts_with(',') {
            std + 3600
        } else {
            -c.hms()?
        };
        if !c.eat(',') {
            // No rule given: POSIX leaves it to the implementation; treat as standard time.
            return Some(PosixRule { std, dst: None });
        }
        let (start, start_t) = c.date()?;
        c.eat(',').then_some(())?;
        let (end, end_t) = c.date()?;
        Some(PosixRule {
            std,
            dst: Some((dst_off, start, start_t, end, end_t)),
        })
    }

    fn offset_at(&self, unix_secs: i64) -> i32 {
        let Some((dst, start, start_t, end, end_t)) = self.dst else {
            return self.std;
        };
        // The year as standard local time sees it; no transition falls near New Year, so that
        // year's two transitions decide.
        let (year, _, _) = crate::rules::gofmt::civil_from_days(
            (unix_secs + i64::from(self.std)).div_euclid(86_400),
        );
        // Start is given in standard time, end in daylight time.
        let s = rule_day(start, year) * 86_400 + i64::from(start_t) - i64::from(self.std);
        let e = rule_day(end, year) * 86_400 + i64::from(end_t) - i64::from(dst);
        let in_dst = if s < e {
            unix_secs >= s && unix_secs < e
        } else {
            // Southern hemisphere: daylight time spans New Year.
            !(unix_secs >= e && unix_secs < s)
        };
        if in_dst { dst } else { self.std }
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days in month `m` (1..=12) of year `y`.
pub(crate) fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The day (since the epoch) a rule names in `year`.
fn rule_day(rule: DateRule, year: i64) -> i64 {
    let jan1 = days_from_civil(year, 1, 1);
    match rule {
        DateRule::Julian1(n) => {
            // Day n of 1..=365 never counts February 29.
            let skip = i64::from(is_leap(year) && n >= 60);
            jan1 + n - 1 + skip
        }
        DateRule::Julian0(n) => jan1 + n,
        DateRule::Month(m, w, d) => {
            let first = days_from_civil(year, m, 1);
            // 1970-01-01 was a Thursday (4).
            let wd_first = (first + 4).rem_euclid(7);
            let mut day = first + (i64::from(d) - wd_first).rem_euclid(7) + 7 * (i64::from(w) - 1);
            let last = first + i64::from(days_in_month(year, m)) - 1;
            while day > last {
                day -= 7;
            }
            day
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips() {
        for days in [-800_000, -1, 0, 1, 59, 11_016, 20_000, 800_000] {
            let (y, m, d) = crate::rules::gofmt::civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    }

    #[test]
    fn posix_rules_give_european_and_southern_dst() {
        let cet = PosixRule::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        // 2024-03-31 01:00:00Z is the switch to CEST; a second before it is still CET.
        assert_eq!(cet.offset_at(1_711_846_799), 3600);
        assert_eq!(cet.offset_at(1_711_846_800), 7200);
        // 2024-10-27 01:00:00Z back to CET.
        assert_eq!(cet.offset_at(1_729_990_799), 7200);
        assert_eq!(cet.offset_at(1_729_990_800), 3600);
        let aest = PosixRule::parse("AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap();
        // January is summer (daylight) in Sydney, July is not.
        assert_eq!(aest.offset_at(1_704_067_200), 11 * 3600);
        assert_eq!(aest.offset_at(1_719_792_000), 10 * 3600);
        assert_eq!(PosixRule::parse("<+0530>-5:30").unwrap().std, 19_800);
        assert_eq!(
            PosixRule::parse("EST5EDT,M3.2.0,M11.1.0").unwrap().std,
            -5 * 3600
        );
    }

    #[test]
    fn loads_utc_and_rejects_bad_names() {
        assert_eq!(Zone::load("UTC").unwrap().offset_at(0), 0);
        assert_eq!(Zone::load("").unwrap().offset_at(0), 0);
        assert!(Zone::load("../etc/passwd").is_err());
        assert!(Zone::load("Not/AZone").is_err());
    }

    #[test]
    fn reads_system_zoneinfo_when_present() {
        let Ok(berlin) = Zone::load("Europe/Berlin") else {
            eprintln!("no system zoneinfo: named zones untested here");
            return;
        };
        assert_eq!(berlin.offset_at(1_711_846_799), 3600);
        assert_eq!(berlin.offset_at(1_711_846_800), 7200);
        // Far past the file's last transition, the footer rule answers.
        assert_eq!(berlin.offset_at(4_102_444_800 + 180 * 86_400), 7200);
        let ny = Zone::load("America/New_York").unwrap();
        assert_eq!(ny.offset_at(1_704_067_200), -5 * 3600);
        assert_eq!(ny.offset_at(1_719_792_000), -4 * 3600);
    }
}
