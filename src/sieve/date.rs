//! Dates for the `date` and `currentdate` tests (RFC 5260): RFC 5322 date parsing, zones and
//! date parts, on plain civil-calendar arithmetic (no clock, no tz database).

use super::ast::DatePart;

/// An instant and the zone it is seen in: `run`'s notion of "now", and parsed header dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SieveTime {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix: i64,
    /// Offset of the zone, in minutes east of UTC (the recipient's zone for "now").
    pub offset_minutes: i32,
}

impl SieveTime {
    /// The same instant seen in another zone.
    pub fn in_zone(self, offset_minutes: i32) -> SieveTime {
        SieveTime {
            unix: self.unix,
            offset_minutes,
        }
    }
}

/// `+hhmm` / `-hhmm` to minutes east of UTC.
pub(crate) fn parse_zone(z: &str) -> Option<i32> {
    let b = z.as_bytes();
    if b.len() != 5 || !b[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h = i32::from(b[1] - b'0') * 10 + i32::from(b[2] - b'0');
    let m = i32::from(b[3] - b'0') * 10 + i32::from(b[4] - b'0');
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h * 60 + m))
}

pub(crate) fn parse_part(p: &str) -> Option<DatePart> {
    Some(match p.to_ascii_lowercase().as_str() {
        "year" => DatePart::Year,
        "month" => DatePart::Month,
        "day" => DatePart::Day,
        "date" => DatePart::Date,
        "julian" => DatePart::Julian,
        "hour" => DatePart::Hour,
        "minute" => DatePart::Minute,
        "second" => DatePart::Second,
        "time" => DatePart::Time,
        "iso8601" => DatePart::Iso8601,
        "std11" => DatePart::Std11,
        "zone" => DatePart::Zone,
        "weekday" => DatePart::Weekday,
        _ => return None,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// An RFC 5322 `date-time` (`[Tue, ]1 Jul 2003 10:52:37 +0200`), obsolete zone names included.
pub(crate) fn parse_rfc5322(s: &str) -> Option<SieveTime> {
    // Drop comments such as "(CEST)".
    let s = match s.find('(') {
        Some(i) => &s[..i],
        None => s,
    };
    // Received fields carry their date after the last `;` (RFC 5260 §4.2 uses it there too).
    let s = s.rsplit_once(';').map_or(s, |(_, r)| r);
    let s = s.split_once(',').map_or(s, |(_, r)| r);
    let mut it = s.split_whitespace();
    let day: u32 = it.next()?.parse().ok()?;
    let mon = it.next()?.to_ascii_lowercase();
    let month = MONTHS.iter().position(|m| mon.starts_with(m))? as u32 + 1;
    let mut year: i64 = it.next()?.parse().ok()?;
    if year < 50 {
        year += 2000;
    } else if year < 1000 {
        year += 1900;
    }
    let time = it.next()?;
    let mut hms = time.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let mi: i64 = hms.next()?.parse().ok()?;
    let sec: i64 = hms.next().map_or(Some(0), |x| x.parse().ok())?;
    let zone = it.next().unwrap_or("-0000");
    let offset = parse_zone(zone).or(match zone.to_ascii_uppercase().as_str() {
        "UT" | "GMT" | "Z" => Some(0),
        "EDT" => Some(-4 * 60),
        "EST" | "CDT" => Some(-5 * 60),
        "CST" | "MDT" => Some(-6 * 60),
        "MST" | "PDT" => Some(-7 * 60),
        "PST" => Some(-8 * 60),
        _ => Some(0),
    })?;
    if !(1..=9999).contains(&year) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let local = days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + sec;
    Some(SieveTime {
        unix: local - i64::from(offset) * 60,
        offset_minutes: offset,
    })
}

/// The text of a date part (RFC 5260 §4.2 table).
pub(crate) fn extract(t: SieveTime, part: DatePart) -> String {
    let local = t.unix + i64::from(t.offset_minutes) * 60;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let off = t.offset_minutes;
    let zone = format!(
        "{}{:02}{:02}",
        if off < 0 { '-' } else { '+' },
        off.abs() / 60,
        off.abs() % 60
    );
    match part {
        DatePart::Year => format!("{y:04}"),
        DatePart::Month => format!("{m:02}"),
        DatePart::Day => format!("{d:02}"),
        DatePart::Date => format!("{y:04}-{m:02}-{d:02}"),
        // Modified Julian Day: days since 1858-11-17.
        DatePart::Julian => (days + 40_587).to_string(),
        DatePart::Hour => format!("{h:02}"),
        DatePart::Minute => format!("{mi:02}"),
        DatePart::Second => format!("{s:02}"),
        DatePart::Time => format!("{h:02}:{mi:02}:{s:02}"),
        DatePart::Iso8601 => {
            let z = format!(
                "{}{:02}:{:02}",
                if off < 0 { '-' } else { '+' },
                off.abs() / 60,
                off.abs() % 60
            );
            format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}{z}")
        }
        DatePart::Std11 => {
            let wd = DAYS[(days + 4).rem_euclid(7) as usize];
            let mon = MONTHS[(m - 1) as usize];
            let mon = format!("{}{}", mon[..1].to_ascii_uppercase(), &mon[1..]);
            format!("{wd}, {d} {mon} {y:04} {h:02}:{mi:02}:{s:02} {zone}")
        }
        DatePart::Zone => zone,
        DatePart::Weekday => (days + 4).rem_euclid(7).to_string(),
    }
}
