//! Which copies a destination keeps. Decided here, once, for every destination; plugins
//! only delete what this names.
//!
//! The rules, in order of strength:
//! 1. Never delete the newest copy, and never go below `min_copies`, however old the
//!    copies are: backups that stop arriving must not be followed by backups that vanish.
//! 2. The legacy keys, as the legacy tool applied them: a copy beyond the newest
//!    `retention_copies` *or* older than `retention_days` goes (with both set, a copy is
//!    kept when it is among the newest N *and* at most D days old).
//! 3. The newest copy of each of the last `keep_daily` days, `keep_weekly` ISO weeks and
//!    `keep_monthly` months (UTC) is kept: a copy these or the legacy keys keep is kept.
//! 4. With none of these keys set, keep everything.
//!
//! `min_copies` defaults to 3, or to `retention_copies` when that asks for fewer.
//!
//! Increments (see `objects`): every copy here is a restorable point (an increment whose
//! full is missing is not a copy at all), the rules count points, and a full that a kept
//! increment needs is kept with it, whatever the rules say of the full alone: a full
//! outlives its last increment.
//!
//! Retention runs at a destination only after this run stored a new copy there (seen
//! stored), and only on a listing that succeeded. A listing is the destination's word, so:
//! - this run's copy is never deleted, whatever else is listed;
//! - copies dated after now (+ [`CLOCK_SKEW`]) are ignored: neither counted nor deleted;
//! - only copies the host confirmed as its own ([`Safeguards::confirmed`]: a manifest that
//!   reads back and matches) count towards the newest-copy and `min_copies` floor.

use super::objects::StoredCopy;
use jiff::{SignedDuration, Timestamp};
use std::collections::HashSet;

/// How far ahead of this machine's clock a listed copy may be dated and still be believed.
pub const CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);

/// What retention must hold to, whatever the listing says.
pub struct Safeguards<'a> {
    /// This run's copy: never deleted.
    pub current: &'a str,
    /// Copies confirmed as the host's own: only these make up the floor.
    pub confirmed: &'a HashSet<String>,
}

/// Splits off the copies dated after `now` + [`CLOCK_SKEW`]: (believable, future).
pub fn split_future(copies: Vec<StoredCopy>, now: Timestamp) -> (Vec<StoredCopy>, Vec<StoredCopy>) {
    let latest = now + CLOCK_SKEW;
    copies.into_iter().partition(|c| c.created <= latest)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    pub copies: Option<u32>,
    pub days: Option<u32>,
    pub min_copies: u32,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
}

impl Policy {
    /// A destination entry's policy, from its legacy and new keys.
    pub fn for_entry(entry: &crate::config::Entry) -> Policy {
        Policy {
            copies: entry.retention_copies,
            days: entry.retention_days,
            min_copies: entry.min_copies,
            daily: entry.keep_daily,
            weekly: entry.keep_weekly,
            monthly: entry.keep_monthly,
        }
    }

    /// The effective policy in words, for `check`: "keeps the newest 7 copies that are at
    /// most 30 days old, never fewer than 3".
    pub fn in_words(&self) -> String {
        if self.is_keep_all() {
            return "keep every copy (no retention_copies / retention_days)".into();
        }
        let plural = |n: u32, one: &str, many: &str| {
            if n == 1 {
                format!("1 {one}")
            } else {
                format!("{n} {many}")
            }
        };
        let mut rules = Vec::new();
        match (self.copies, self.days) {
            (Some(n), Some(d)) => rules.push(format!(
                "the newest {} that are at most {} old",
                plural(n, "copy", "copies"),
                plural(d, "day", "days")
            )),
            (Some(n), None) => rules.push(format!("the newest {}", plural(n, "copy", "copies"))),
            (None, Some(d)) => rules.push(format!(
                "the copies at most {} old",
                plural(d, "day", "days")
            )),
            (None, None) => {}
        }
        for (n, period) in [
            (self.daily, ("day", "days")),
            (self.weekly, ("week", "weeks")),
            (self.monthly, ("month", "months")),
        ] {
            if let Some(n) = n {
                rules.push(format!(
                    "the newest copy of each of the last {}",
                    plural(n, period.0, period.1)
                ));
            }
        }
        format!(
            "keeps {}, never fewer than {} nor the newest",
            rules.join(", and "),
            self.min_copies.max(1)
        )
    }

    pub fn is_keep_all(&self) -> bool {
        self.copies.is_none()
            && self.days.is_none()
            && self.daily.is_none()
            && self.weekly.is_none()
            && self.monthly.is_none()
    }
}

/// Indices (into newest-first `copies`) of the newest copy in each of the first `n`
/// distinct periods, as named by `period`.
fn newest_per_period<K: PartialEq>(
    copies: &[StoredCopy],
    n: Option<u32>,
    period: impl Fn(Timestamp) -> K,
) -> Vec<usize> {
    let Some(n) = n else { return Vec::new() };
    let mut seen: Vec<K> = Vec::new();
    let mut keep = Vec::new();
    for (i, c) in copies.iter().enumerate() {
        let p = period(c.created);
        if !seen.contains(&p) {
            if seen.len() == n as usize {
                break;
            }
            seen.push(p);
            keep.push(i);
        }
    }
    keep
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub keep: Vec<StoredCopy>,
    pub delete: Vec<StoredCopy>,
}

/// Splits `copies` (any order, none from the future: see [`split_future`]) into kept and
/// deleted, as of `now`.
pub fn decide(
    policy: &Policy,
    mut copies: Vec<StoredCopy>,
    now: Timestamp,
    safeguards: &Safeguards,
) -> Decision {
    copies.sort_by(|a, b| b.created.cmp(&a.created).then(b.object.cmp(&a.object)));
    if policy.is_keep_all() {
        return Decision {
            keep: copies,
            delete: Vec::new(),
        };
    }
    let floor = policy.min_copies.max(1) as usize;
    let by_count = policy.copies.map_or(0, |c| c as usize);
    let utc = |t: Timestamp| t.to_zoned(jiff::tz::TimeZone::UTC).date();
    let mut by_period = newest_per_period(&copies, policy.daily, utc);
    by_period.extend(newest_per_period(&copies, policy.weekly, |t| {
        let w = utc(t).iso_week_date();
        (w.year(), w.week())
    }));
    by_period.extend(newest_per_period(&copies, policy.monthly, |t| {
        let d = utc(t);
        (d.year(), d.month())
    }));
    let mut decision = Decision::default();
    let mut floor_kept = 0;
    for (i, copy) in copies.into_iter().enumerate() {
        let in_floor = floor_kept < floor && safeguards.confirmed.contains(&copy.object);
        if in_floor {
            floor_kept += 1;
        }
        let within_floor = in_floor || by_period.contains(&i) || copy.object == safeguards.current;
        // The legacy keys: each set one must keep the copy (a missing one does not vote).
        let within_count = policy.copies.map(|_| i < by_count);
        let within_days = policy
            .days
            .map(|d| now.duration_since(copy.created) < SignedDuration::from_hours(24 * d as i64));
        let legacy_keeps = match (within_count, within_days) {
            (None, None) => false,
            (count, days) => count.unwrap_or(true) && days.unwrap_or(true),
        };
        if within_floor || legacy_keeps {
            decision.keep.push(copy);
        } else {
            decision.delete.push(copy);
        }
    }
    // The fulls the kept increments need come back from the deleted.
    let needed: HashSet<Timestamp> = decision.keep.iter().filter_map(|c| c.base).collect();
    let (needed, delete): (Vec<StoredCopy>, Vec<StoredCopy>) = std::mem::take(&mut decision.delete)
        .into_iter()
        .partition(|c| c.base.is_none() && needed.contains(&c.created));
    decision.delete = delete;
    decision.keep.extend(needed);
    decision
        .keep
        .sort_by(|a, b| b.created.cmp(&a.created).then(b.object.cmp(&a.object)));
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(days_ago: i64, now: Timestamp) -> StoredCopy {
        let created = now - SignedDuration::from_hours(24 * days_ago);
        StoredCopy {
            object: format!("h/{days_ago}/etc.tar.gz.gpg"),
            manifest: format!("h/{days_ago}/etc.tar.gz.gpg.manifest.json"),
            created,
            size: 1,
            base: None,
        }
    }

    /// `decide` with every copy confirmed as ours and no current copy.
    fn decide_all(policy: &Policy, copies: Vec<StoredCopy>, now: Timestamp) -> Decision {
        let confirmed = copies.iter().map(|c| c.object.clone()).collect();
        let safeguards = Safeguards {
            current: "",
            confirmed: &confirmed,
        };
        decide(policy, copies, now, &safeguards)
    }

    #[test]
    fn a_full_outlives_the_last_increment_kept_on_it() {
        let now: Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        // Day 9: a full, days 8..=5 increments of it; day 4: a full, days 3..=0 increments.
        let copies: Vec<StoredCopy> = (0..10)
            .map(|days_ago| {
                let mut c = copy(days_ago, now);
                let full = if days_ago >= 5 { 9 } else { 4 };
                if days_ago != full {
                    c.base = Some(now - SignedDuration::from_hours(24 * full));
                }
                c
            })
            .collect();
        let policy = Policy {
            copies: Some(6),
            min_copies: 1,
            ..Policy::default()
        };
        let d = decide_all(&policy, copies, now);
        // Days 0..=5 by count; day 5 is an increment of day 9's full, which stays;
        // days 6..=8 go.
        assert_eq!(ages(&d.keep, now), [0, 1, 2, 3, 4, 5, 9]);
        assert_eq!(ages(&d.delete, now), [6, 7, 8]);
    }

    #[test]
    fn future_copies_are_set_aside_and_the_current_copy_is_never_deleted() {
        let now = Timestamp::now();
        let mut copies: Vec<StoredCopy> = (1..=4).map(|i| copy(-30 * i, now)).collect();
        copies.push(copy(0, now));
        let (believed, future) = split_future(copies, now);
        assert_eq!(ages(&future, now).len(), 4);
        assert_eq!(ages(&believed, now), [0]);
        // Even if a listing slipped a future copy past the split, the current one stays.
        let current = copy(0, now);
        let confirmed: HashSet<String> = [current.object.clone()].into();
        let d = decide(
            &Policy {
                copies: Some(1),
                min_copies: 1,
                ..Policy::default()
            },
            vec![copy(-1, now), current.clone()],
            now,
            &Safeguards {
                current: &current.object,
                confirmed: &confirmed,
            },
        );
        assert!(d.keep.contains(&current), "{d:?}");
    }

    #[test]
    fn only_confirmed_copies_make_up_the_floor() {
        // Three made-up copies newer than the real ones: the floor (3) reaches past them.
        let now = Timestamp::now();
        let copies: Vec<StoredCopy> = [1, 2, 3, 40, 41, 42, 43].map(|a| copy(a, now)).to_vec();
        let confirmed: HashSet<String> = copies[3..].iter().map(|c| c.object.clone()).collect();
        let d = decide(
            &Policy {
                days: Some(7),
                min_copies: 3,
                ..Policy::default()
            },
            copies,
            now,
            &Safeguards {
                current: "",
                confirmed: &confirmed,
            },
        );
        assert_eq!(ages(&d.keep, now), [1, 2, 3, 40, 41, 42]);
        assert_eq!(ages(&d.delete, now), [43]);
    }

    fn ages(copies: &[StoredCopy], now: Timestamp) -> Vec<i64> {
        copies
            .iter()
            .map(|c| now.duration_since(c.created).as_hours() / 24)
            .collect()
    }

    #[test]
    fn keeps_everything_without_a_policy() {
        let now = Timestamp::now();
        let d = decide_all(
            &Policy {
                copies: None,
                days: None,
                min_copies: 1,
                ..Policy::default()
            },
            (0..5).map(|i| copy(i * 30, now)).collect(),
            now,
        );
        assert_eq!(d.keep.len(), 5);
        assert!(d.delete.is_empty());
    }

    #[test]
    fn keeps_the_newest_n() {
        let now = Timestamp::now();
        let d = decide_all(
            &Policy {
                copies: Some(2),
                days: None,
                min_copies: 1,
                ..Policy::default()
            },
            (0..5).map(|i| copy(i, now)).collect(),
            now,
        );
        assert_eq!(ages(&d.keep, now), [0, 1]);
        assert_eq!(ages(&d.delete, now), [2, 3, 4]);
    }

    #[test]
    fn keeps_what_is_younger_than_days() {
        let now = Timestamp::now();
        let d = decide_all(
            &Policy {
                copies: None,
                days: Some(7),
                min_copies: 1,
                ..Policy::default()
            },
            [0, 3, 6, 8, 20].into_iter().map(|a| copy(a, now)).collect(),
            now,
        );
        assert_eq!(ages(&d.keep, now), [0, 3, 6]);
        assert_eq!(ages(&d.delete, now), [8, 20]);
    }

    #[test]
    fn never_deletes_the_newest_even_when_all_are_too_old() {
        // Backups stopped a month ago under a 14-day policy: the last copies stay.
        let now = Timestamp::now();
        let d = decide_all(
            &Policy {
                copies: None,
                days: Some(14),
                min_copies: 1,
                ..Policy::default()
            },
            [30, 31, 32].into_iter().map(|a| copy(a, now)).collect(),
            now,
        );
        assert_eq!(ages(&d.keep, now), [30]);
        let d = decide_all(
            &Policy {
                copies: Some(0),
                days: Some(14),
                min_copies: 3,
                ..Policy::default()
            },
            [30, 31, 32, 33].into_iter().map(|a| copy(a, now)).collect(),
            now,
        );
        assert_eq!(ages(&d.keep, now), [30, 31, 32]);
        assert_eq!(ages(&d.delete, now), [33]);
    }

    #[test]
    fn keeps_the_newest_copy_of_each_day_week_and_month() {
        let now: Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        // Two copies a day for 90 days.
        let copies: Vec<StoredCopy> = (0..180)
            .map(|i| {
                let created = now - SignedDuration::from_hours(12 * i);
                StoredCopy {
                    object: format!("h/{i}"),
                    manifest: format!("h/{i}.m"),
                    created,
                    size: 1,
                    base: None,
                }
            })
            .collect();
        let policy = Policy {
            daily: Some(7),
            weekly: Some(4),
            monthly: Some(3),
            min_copies: 1,
            ..Policy::default()
        };
        let d = decide_all(&policy, copies, now);
        // 7 daily (the newest of each of the last 7 days), weekly and monthly picks overlap
        // them or add older ones; each kept copy is the newest of its period.
        let days: std::collections::HashSet<_> = d
            .keep
            .iter()
            .map(|c| c.created.to_zoned(jiff::tz::TimeZone::UTC).date())
            .collect();
        assert_eq!(
            days.len(),
            d.keep.len(),
            "one copy per period kept: {:?}",
            d.keep.len()
        );
        assert!(
            d.keep.len() >= 7 && d.keep.len() <= 7 + 4 + 3,
            "{}",
            d.keep.len()
        );
        assert!(
            d.keep
                .iter()
                .any(|c| now.duration_since(c.created) > SignedDuration::from_hours(24 * 50))
        );
        assert_eq!(d.keep.len() + d.delete.len(), 180);
    }

    #[test]
    fn the_legacy_keys_together_keep_what_both_keep() {
        // The legacy tool deleted a copy beyond the newest N *or* older than D days.
        let now = Timestamp::now();
        let d = decide_all(
            &Policy {
                copies: Some(3),
                days: Some(2),
                min_copies: 1,
                ..Policy::default()
            },
            [0, 1, 5, 9, 12].into_iter().map(|a| copy(a, now)).collect(),
            now,
        );
        assert_eq!(ages(&d.keep, now), [0, 1]);
        // A nightly job with 7 copies / 30 days keeps 7, not 30.
        let d = decide_all(
            &Policy {
                copies: Some(7),
                days: Some(30),
                min_copies: 3,
                ..Policy::default()
            },
            (0..30).map(|a| copy(a, now)).collect(),
            now,
        );
        assert_eq!(d.keep.len(), 7);
        // The floor still holds when both would delete everything.
        let d = decide_all(
            &Policy {
                copies: Some(7),
                days: Some(30),
                min_copies: 3,
                ..Policy::default()
            },
            (40..50).map(|a| copy(a, now)).collect(),
            now,
        );
        assert_eq!(ages(&d.keep, now), [40, 41, 42]);
    }

    #[test]
    fn the_policy_reads_as_it_acts() {
        let p = Policy {
            copies: Some(7),
            days: Some(30),
            min_copies: 3,
            ..Policy::default()
        };
        assert_eq!(
            p.in_words(),
            "keeps the newest 7 copies that are at most 30 days old, never fewer than 3 nor the newest"
        );
    }

    #[test]
    fn a_copy_the_new_keys_keep_is_kept_whatever_the_legacy_keys_say() {
        let now = Timestamp::now();
        let d = decide_all(
            &Policy {
                copies: Some(1),
                monthly: Some(3),
                min_copies: 1,
                ..Policy::default()
            },
            [0, 1, 40, 75].into_iter().map(|a| copy(a, now)).collect(),
            now,
        );
        assert!(ages(&d.keep, now).contains(&0));
        assert!(ages(&d.keep, now).len() >= 2, "{:?}", ages(&d.keep, now));
    }
}
