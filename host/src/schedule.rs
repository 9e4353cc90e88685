//! When a job is expected to run, and how old its newest backup may get.
//!
//! `schedule` is a cron expression in the machine's local time zone: five fields as in
//! crontab (`0 2 * * *`), or six with seconds first. `max_age` is a duration: a number of
//! seconds, or a number with a unit (`90m`, `36h`, `2d`, `1w`).

use anyhow::{Result, bail};
use chrono::{Local, TimeZone};
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// Without a schedule or `max_age`, a job is assumed to run daily, with half a day's grace.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(36 * 3600);

#[derive(Clone, Debug)]
pub struct Schedule {
    text: String,
    cron: croner::Cron,
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(text)
            .map_err(|e| anyhow::anyhow!("{text:?} is not a cron expression: {e}"))?;
        Ok(Schedule {
            text: text.to_string(),
            cron,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let local = Local.timestamp_opt(t.as_second(), 0).single()?;
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        Timestamp::from_second(next.timestamp()).ok()
    }

    /// The last scheduled time at or before `t`.
    pub fn previous_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let local = Local.timestamp_opt(t.as_second(), 0).single()?;
        let prev = self.cron.find_previous_occurrence(&local, true).ok()?;
        Timestamp::from_second(prev.timestamp()).ok()
    }

    /// The longest gap between consecutive runs over the coming year (a schedule of
    /// weekdays only has a three-day gap over the weekend).
    pub fn longest_gap(&self, from: Timestamp) -> Option<Duration> {
        let mut longest = Duration::ZERO;
        let mut t = self.next_after(from)?;
        let horizon = from + SignedDuration::from_hours(24 * 366);
        for _ in 0..2000 {
            let next = self.next_after(t)?;
            let gap = Duration::try_from(next.duration_since(t)).ok()?;
            longest = longest.max(gap);
            if next > horizon {
                break;
            }
            t = next;
        }
        Some(longest)
    }

    /// How old the newest copy may be before the job counts as stale: the longest gap
    /// between runs plus half of it, for the run's own duration and a late start.
    pub fn max_age(&self, now: Timestamp) -> Option<Duration> {
        self.longest_gap(now).map(|gap| gap + gap / 2)
    }
}

/// The current time, or the time `BACKUPS_NOW` (RFC 3339) pretends it is: for drills
/// ("what would status say after a month without backups?") and for tests that need a
/// clock they control. A pretended time is logged as a warning every time it is read.
pub fn now() -> Timestamp {
    match std::env::var("BACKUPS_NOW") {
        Ok(text) => match text.parse::<Timestamp>() {
            Ok(t) => {
                tracing::warn!("BACKUPS_NOW is set: pretending it is {t}");
                t
            }
            Err(e) => {
                tracing::error!(
                    "BACKUPS_NOW={text:?} is not an RFC 3339 time ({e}); using the real time"
                );
                Timestamp::now()
            }
        },
        Err(_) => Timestamp::now(),
    }
}

/// `3600`, `90m`, `36h`, `2d`, `1w`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a duration such as 36h, 2d or 90m"))?;
    let seconds = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => bail!("{text:?}: unknown unit {other:?} (use s, m, h, d or w)"),
    };
    if n == 0 {
        bail!("{text:?} must be more than zero");
    }
    Ok(Duration::from_secs(n * seconds))
}

/// `1d 12h`, `45m`, `12s`: for tables.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("3600").unwrap(), Duration::from_secs(3600));
        assert_eq!(
            parse_duration("36h").unwrap(),
            Duration::from_secs(36 * 3600)
        );
        assert_eq!(
            parse_duration("2d").unwrap(),
            Duration::from_secs(2 * 86_400)
        );
        assert!(parse_duration("2 fortnights").is_err());
        assert!(parse_duration("0h").is_err());
    }

    #[test]
    fn a_daily_schedule_allows_a_day_and_a_half() {
        let s = Schedule::parse("0 2 * * *").unwrap();
        let now: Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        assert_eq!(s.longest_gap(now), Some(Duration::from_secs(86_400)));
        assert_eq!(s.max_age(now), Some(Duration::from_secs(36 * 3600)));
    }

    #[test]
    fn weekday_schedules_count_the_weekend_gap() {
        let s = Schedule::parse("30 1 * * 1-5").unwrap();
        let now: Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        assert_eq!(s.longest_gap(now), Some(Duration::from_secs(3 * 86_400)));
    }

    #[test]
    fn previous_and_next_bracket_now() {
        let s = Schedule::parse("0 * * * *").unwrap();
        let now: Timestamp = "2026-11-22T12:30:00Z".parse().unwrap();
        let prev = s.previous_at_or_before(now).unwrap();
        let next = s.next_after(now).unwrap();
        assert!(prev <= now && next > now);
        assert_eq!(next.duration_since(prev), SignedDuration::from_hours(1));
        assert!(Schedule::parse("not cron").is_err());
    }
}
