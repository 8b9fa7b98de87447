//! IMAP dates: `date` (SEARCH, `1-Feb-1994`) and `date-time` (INTERNALDATE, APPEND,
//! `"17-Jul-1996 02:44:25 -0700"`), converted to and from seconds since the Unix epoch. UTC
//! throughout; no I/O, no time-zone database.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `dd-Mon-yyyy hh:mm:ss +0000` for INTERNALDATE.
pub fn format_internal(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mon = MONTHS.get(m as usize - 1).copied().unwrap_or("Jan");
    format!(
        "{d:02}-{mon}-{y:04} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn month(s: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(s))
        .map(|i| i as u32 + 1)
}

/// Parses a SEARCH `date` (`1-Feb-1994` or `01-Feb-1994`) into a day number.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.split('-');
    let (d, m, y) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || d.is_empty() || d.len() > 2 || y.len() != 4 {
        return None;
    }
    let d: u32 = d.parse().ok()?;
    let y: i64 = y.parse().ok()?;
    let m = month(m)?;
    if !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Parses an APPEND `date-time` (`17-Jul-1996 02:44:25 -0700`, day possibly space-padded)
/// into seconds since the epoch.
pub fn parse_date_time(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let (date, rest) = s.split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    let day = parse_date(date)?;
    let t: Vec<&str> = time.split(':').collect();
    if t.len() != 3 || t.iter().any(|p| p.len() != 2) {
        return None;
    }
    let (h, mi, se): (i64, i64, i64) = (t[0].parse().ok()?, t[1].parse().ok()?, t[2].parse().ok()?);
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let zb = zone.as_bytes();
    if zb.len() != 5 || !matches!(zb[0], b'+' | b'-') || !zb[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let zh: i64 = zone[1..3].parse().ok()?;
    let zm: i64 = zone[3..5].parse().ok()?;
    let offset = (zh * 3600 + zm * 60) * if zb[0] == b'-' { -1 } else { 1 };
    Some(day * 86_400 + h * 3600 + mi * 60 + se - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_table() {
        assert_eq!(parse_date("1-Jan-1970"), Some(0));
        assert_eq!(parse_date("01-feb-1994"), Some(8797));
        assert_eq!(parse_date("29-Feb-2024"), Some(19782));
        for bad in ["1-Foo-1994", "1-Feb-94", "32-Jan-2000", "x", "1-Feb-1994-1"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert_eq!(
            parse_date_time("17-Jul-1996 02:44:25 -0700"),
            Some(837_596_665)
        );
        assert_eq!(
            parse_date_time(" 7-Jul-1996 02:44:25 +0000"),
            Some(836_707_465)
        );
        assert_eq!(parse_date_time("17-Jul-1996 02:44 -0700"), None);
        assert_eq!(format_internal(837_596_665), "17-Jul-1996 09:44:25 +0000");
        for d in [-1000, 0, 19782, 60000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
