//! RFC 3339 timestamps (`2026-11-22T17:39:51.470Z`, as both APIs write them) to seconds
//! since the epoch, without a date library.

/// Seconds since 1970-01-01T00:00:00Z, or `None` for anything that is not RFC 3339.
pub fn unix_seconds(timestamp: &str) -> Option<u64> {
    let (date, time) = timestamp.split_once(['T', 't'])?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    // The offset: `Z`, or `+hh:mm` / `-hh:mm` after the seconds.
    let (clock, offset_secs) = match time.find(['Z', 'z', '+', '-']) {
        Some(at) => {
            let (clock, zone) = time.split_at(at);
            let offset = match zone.as_bytes()[0] {
                b'Z' | b'z' => 0,
                sign => {
                    let (h, m) = zone[1..].split_once(':')?;
                    let secs = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
                    if sign == b'-' { -secs } else { secs }
                }
            };
            (clock, offset)
        }
        None => return None,
    };
    let mut hms = clock.splitn(3, ':');
    let hour: i64 = hms.next()?.parse().ok()?;
    let minute: i64 = hms.next()?.parse().ok()?;
    // Fractions of a second are dropped.
    let second: i64 = hms.next()?.split('.').next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    u64::try_from(secs).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
