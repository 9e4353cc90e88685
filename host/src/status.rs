//! The dead-man's switch: how old is the newest complete copy of each source at each
//! destination, and is that older than the job allows?
//!
//! It reads the destinations themselves (their listings), never local state, so it runs
//! just as well from a monitoring host that has only the job file and the destinations'
//! credentials — and it keeps working when the backup job itself has stopped running,
//! which is the failure it exists to catch.

use crate::plan::{JobPlan, Planned};
use crate::report::LeftoverSweep;
use crate::runtime::Instance;
use crate::schedule::human_duration;
use crate::session::Session;
use crate::store::{leftovers, objects};
use jiff::Timestamp;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "lowercase", tag = "state", content = "reason")]
pub enum State {
    Fresh,
    /// The newest copy is older than allowed.
    Stale,
    /// No complete copy at all.
    Missing,
    /// The destination could not be listed.
    Unreachable(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Freshness {
    pub source_id: String,
    pub destination_id: String,
    pub newest: Option<Timestamp>,
    pub newest_object: Option<String>,
    pub copies: usize,
    /// Of those, copies the legacy Python tool stored (its layouts, no manifest): counted,
    /// so that `status` is right on the first night after migrating, and never deleted.
    pub legacy_copies: usize,
    #[serde(serialize_with = "secs")]
    pub age: Option<Duration>,
    #[serde(serialize_with = "secs_plain")]
    pub max_age: Duration,
    /// Which setting decided `max_age`.
    pub max_age_from: String,
    #[serde(flatten)]
    pub state: State,
}

fn secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(d.as_secs()),
        None => s.serialize_none(),
    }
}
fn secs_plain<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl Freshness {
    pub fn ok(&self) -> bool {
        self.state == State::Fresh
    }
}

/// What `status` found: freshness per pair, and warnings about the destinations' own
/// deletion rules.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub freshness: Vec<Freshness>,
    pub warnings: Vec<String>,
    /// A destination rule deletes copies before the next backup is even due.
    pub rule_loses_copies: bool,
    /// What each destination holds of killed runs' uploads (`removed`: what the next run
    /// would remove, being older than `leftover_age`).
    pub leftovers: Vec<LeftoverSweep>,
}

impl StatusReport {
    pub fn ok(&self) -> bool {
        self.freshness.iter().all(Freshness::ok) && !self.rule_loses_copies
    }
}

/// An incremental source whose newest full is past twice `full_every` (by age, or by the
/// increments made on it): fulls are failing, and every increment carries all the changes
/// since the old one. Copies are newest first.
fn old_full(
    every: crate::config::FullEvery,
    copies: &[objects::StoredCopy],
    now: Timestamp,
) -> Option<String> {
    let newest_full = copies.iter().position(|c| c.base.is_none())?;
    let full = &copies[newest_full];
    let age = Duration::try_from(now.duration_since(full.created)).unwrap_or_default();
    let late = match every {
        crate::config::FullEvery::Age(every) => age > every * 2,
        crate::config::FullEvery::Runs(n) => newest_full as u64 > 2 * u64::from(n),
    };
    late.then(|| {
        format!(
            "the newest full ({}, {} old, with {newest_full} increments on it) is past twice \
             full_every: fulls are not being stored, and each increment carries every \
             change since it",
            full.object,
            human_duration(age)
        )
    })
}

/// Warnings for a destination's own age-based deletion rules that reach our objects.
fn audit_rules(
    plan: &JobPlan,
    dest_id: &str,
    rules: &[crate::runtime::DeletionRule],
    report: &mut StatusReport,
) {
    let ours = format!("{}/", plan.job.hostname);
    let shortest_due = plan
        .sources
        .iter()
        .map(|s| plan.job.max_age_for(&s.entry).0)
        .max()
        .unwrap_or(crate::schedule::DEFAULT_MAX_AGE);
    for rule in rules {
        if !(ours.starts_with(&rule.prefix) || rule.prefix.starts_with(&ours)) {
            continue;
        }
        let lifetime = Duration::from_secs(u64::from(rule.expire_after_days) * 86_400);
        if lifetime <= shortest_due {
            report.rule_loses_copies = true;
            report.warnings.push(format!(
                "{dest_id}: its rule {:?} deletes objects under {:?} after {} days, before the next backup is \
                 even due ({} allowed): copies will be lost. Remove the rule or make it much longer.",
                rule.id,
                rule.prefix,
                rule.expire_after_days,
                human_duration(shortest_due)
            ));
        } else {
            report.warnings.push(format!(
                "{dest_id}: its rule {:?} deletes objects under {:?} after {} days: if backups stop for {} days, \
                 every copy there is gone, whatever this tool's retention keeps. Remove the rule (retention here \
                 never deletes the last copies) or make it longer than backups could stop unnoticed.",
                rule.id, rule.prefix, rule.expire_after_days, rule.expire_after_days
            ));
        }
    }
}

/// What killed runs left at one destination (a dry sweep: nothing is removed) and whether
/// the backend cleans up by itself; warnings where an operator should act.
async fn look_for_leftovers(
    plan: &JobPlan,
    dest: &Planned,
    instance: &mut Instance,
    now: Timestamp,
    report: &mut StatusReport,
) {
    let entry = &dest.entry;
    let sweep = leftovers::sweep(
        instance,
        &entry.id,
        &plan.job.hostname,
        entry.leftover_age,
        now,
        true,
        // A killed run's journal of copies is the next run's to act on, not status's.
        None,
        &plan.redactor,
    )
    .await;
    if sweep.error.is_some() || sweep.found > 0 {
        let line = sweep.describe(true).unwrap_or_default();
        report.warnings.push(format!(
            "{}: {line} (the next run removes those older than leftover_age, {})",
            entry.id,
            human_duration(entry.leftover_age)
        ));
    }
    match instance.self_cleaning().await {
        Ok(Some(cleaning)) => {
            if let Some(advice) = leftovers::self_cleaning_advice(&cleaning) {
                report.warnings.push(format!("{}: {advice}", entry.id));
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(
            "{}: cannot say whether it removes unfinished uploads itself: {}",
            entry.label(),
            plan.redactor.redact(&e.to_string())
        ),
    }
    report.leftovers.push(sweep);
}

impl Freshness {
    /// A row for `source` at destination `destination_id` before any copy is seen.
    fn nothing_seen(
        job: &crate::config::Job,
        source: &crate::config::Entry,
        destination_id: &str,
        state: State,
    ) -> Freshness {
        let (max_age, max_age_from) = job.max_age_for(source);
        Freshness {
            source_id: source.id.clone(),
            destination_id: destination_id.to_string(),
            newest: None,
            newest_object: None,
            copies: 0,
            legacy_copies: 0,
            age: None,
            max_age,
            max_age_from,
            state,
        }
    }
}

/// Lists every destination once and judges every source there, as of `now`; audits each
/// destination's own deletion rules.
pub async fn check(plan: &JobPlan, session: &Session<'_>) -> StatusReport {
    let job = &plan.job;
    let now = session.started();
    let mut report = StatusReport {
        freshness: Vec::new(),
        warnings: Vec::new(),
        rule_loses_copies: false,
        leftovers: Vec::new(),
    };
    for dest in &plan.destinations {
        let mut rules = Vec::new();
        // The legacy tool's copies of each source, by id: its layout under `{id}/` needs a
        // listing of its own; a failed one only means none are seen.
        let mut legacy: Vec<(String, Vec<objects::LegacyCopy>)> = Vec::new();
        let listing = match session.open(dest).await {
            Ok(mut instance) => {
                let listing = instance
                    .list(&format!("{}/", job.hostname))
                    .await
                    .map_err(|e| plan.redactor.redact(&e.to_string()));
                if let Ok(by_host) = &listing {
                    for source in &job.sources {
                        let [by_id, _] = objects::legacy_prefixes(&job.hostname, &source.id);
                        let mut seen = instance.list(&by_id).await.unwrap_or_default();
                        seen.extend(by_host.iter().cloned());
                        let found = objects::legacy_copies_of(&job.hostname, &source.id, &seen);
                        legacy.push((source.id.clone(), found));
                    }
                }
                match instance.deletion_rules().await {
                    Ok(r) => rules = r,
                    Err(e) => tracing::warn!(
                        "{}: cannot read its deletion rules: {e}",
                        dest.entry.label()
                    ),
                }
                look_for_leftovers(plan, dest, &mut instance, now, &mut report).await;
                listing
            }
            Err(e) => Err(e),
        };
        for source in &job.sources {
            let mut f = Freshness::nothing_seen(job, source, &dest.entry.id, State::Missing);
            match &listing {
                Err(e) => f.state = State::Unreachable(e.clone()),
                Ok(listing) => {
                    let copies = objects::copies_of(&job.hostname, &source.id, listing);
                    // A copy dated in the future proves nothing about the last night.
                    let (copies, future) = crate::store::retention::split_future(copies, now);
                    if !future.is_empty() {
                        tracing::warn!(
                            "{}: {} copies of {} are dated in the future and are not counted",
                            dest.entry.label(),
                            future.len(),
                            source.id
                        );
                    }
                    if let Some(every) = source.incremental
                        && let Some(warning) = old_full(every, &copies, now)
                    {
                        report
                            .warnings
                            .push(format!("{}: {}: {warning}", dest.entry.id, source.id));
                    }
                    f.copies = copies.len();
                    let old: Vec<(Timestamp, &str)> = legacy
                        .iter()
                        .filter(|(id, _)| *id == source.id)
                        .flat_map(|(_, found)| found)
                        .filter(|c| c.created <= now + crate::store::retention::CLOCK_SKEW)
                        .map(|c| (c.created, c.object.as_str()))
                        .collect();
                    f.legacy_copies = old.len();
                    f.copies += old.len();
                    let newest = copies
                        .iter()
                        .map(|c| (c.created, c.object.as_str()))
                        .chain(old)
                        .max_by_key(|(created, _)| *created);
                    if let Some((created, object)) = newest {
                        let age =
                            Duration::try_from(now.duration_since(created)).unwrap_or_default();
                        f.newest = Some(created);
                        f.newest_object = Some(object.to_string());
                        f.age = Some(age);
                        f.state = if age <= f.max_age {
                            State::Fresh
                        } else {
                            State::Stale
                        };
                    }
                }
            }
            report.freshness.push(f);
        }
        audit_rules(plan, &dest.entry.id, &rules, &mut report);
    }
    // A destination whose plugin did not start: every source is unknown there.
    for unstarted in plan
        .unstarted
        .iter()
        .filter(|u| u.entry.role == crate::config::Role::Destination)
    {
        for source in &job.sources {
            let state = State::Unreachable(unstarted.error.clone());
            report.freshness.push(Freshness::nothing_seen(
                job,
                source,
                &unstarted.entry.id,
                state,
            ));
        }
    }
    report
}

/// The table printed by `backups status`.
pub fn table(results: &[Freshness]) -> String {
    let mut rows = vec![[
        "source".to_string(),
        "destination".into(),
        "newest copy".into(),
        "age".into(),
        "allowed".into(),
        "copies".into(),
        "state".into(),
    ]];
    for f in results {
        rows.push([
            f.source_id.clone(),
            f.destination_id.clone(),
            f.newest
                .map_or("-".into(), |t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string()),
            f.age.map_or("-".into(), human_duration),
            human_duration(f.max_age),
            f.copies.to_string(),
            match &f.state {
                State::Fresh => "fresh".into(),
                State::Stale => "STALE".into(),
                State::Missing => "MISSING".into(),
                State::Unreachable(e) => format!("UNREACHABLE: {e}"),
            },
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        for (cell, w) in row.iter().take(6).zip(widths) {
            let _ = write!(out, "{cell:<w$}  ");
        }
        out += &row[6];
        out.push('\n');
    }
    out
}

/// Prometheus text exposition format, for node_exporter's textfile collector or a
/// pushgateway. Written by hand: four gauges do not need a metrics library.
pub fn prometheus(plan: &JobPlan, results: &[Freshness]) -> String {
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let labels = |f: &Freshness| {
        format!(
            "job=\"{}\",hostname=\"{}\",source=\"{}\",destination=\"{}\"",
            esc(&plan.job.name),
            esc(&plan.job.hostname),
            esc(&f.source_id),
            esc(&f.destination_id)
        )
    };
    let mut out = String::new();
    out += "# HELP backups_last_success_timestamp_seconds Creation time of the newest complete copy.\n";
    out += "# TYPE backups_last_success_timestamp_seconds gauge\n";
    for f in results.iter().filter(|f| f.newest.is_some()) {
        let t = f.newest.expect("filtered").as_second();
        let _ = writeln!(
            out,
            "backups_last_success_timestamp_seconds{{{}}} {t}",
            labels(f)
        );
    }
    out += "# HELP backups_max_age_seconds How old the newest copy may get.\n";
    out += "# TYPE backups_max_age_seconds gauge\n";
    for f in results {
        let _ = writeln!(
            out,
            "backups_max_age_seconds{{{}}} {}",
            labels(f),
            f.max_age.as_secs()
        );
    }
    out += "# HELP backups_copies Complete copies stored.\n";
    out += "# TYPE backups_copies gauge\n";
    for f in results {
        let _ = writeln!(out, "backups_copies{{{}}} {}", labels(f), f.copies);
    }
    out += "# HELP backups_stale 1 when the newest copy is too old, missing or unreachable.\n";
    out += "# TYPE backups_stale gauge\n";
    for f in results {
        let _ = writeln!(out, "backups_stale{{{}}} {}", labels(f), u8::from(!f.ok()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FullEvery;
    use objects::StoredCopy;

    fn copy(at: &str, base: Option<&str>) -> StoredCopy {
        StoredCopy {
            object: format!("h/{at}"),
            manifest: format!("h/{at}.manifest.json"),
            created: at.parse().unwrap(),
            size: 1,
            base: base.map(|b| b.parse().unwrap()),
        }
    }

    #[test]
    fn a_newest_full_past_twice_full_every_is_warned_about() {
        let now: Timestamp = "2026-12-20T00:00:00Z".parse().unwrap();
        let full = "2026-12-01T00:00:00Z";
        // Newest first, as `copies_of` gives them: an increment of a 19-day-old full.
        let copies = [copy("2026-12-19T00:00:00Z", Some(full)), copy(full, None)];
        let week = FullEvery::Age(Duration::from_secs(7 * 86_400));
        let warning = old_full(week, &copies, now).expect("19 days > 2 × 7");
        assert!(warning.contains("h/2026-12-01T00:00:00Z"), "{warning}");
        let fortnight = FullEvery::Age(Duration::from_secs(14 * 86_400));
        assert_eq!(old_full(fortnight, &copies, now), None);
        // By count: one increment on the full is not past twice one run.
        assert_eq!(old_full(FullEvery::Runs(1), &copies, now), None);
        assert!(
            old_full(
                FullEvery::Runs(1),
                &[
                    copies[0].clone(),
                    copies[0].clone(),
                    copies[0].clone(),
                    copies[1].clone()
                ],
                now
            )
            .is_some()
        );
    }
}
