//! Telling notifiers: the report records a run, a run's start and a stale `status` hand to
//! notifier plugins (the WIT's `report`), and sending one to one notifier. The host's own
//! reports (`report.rs`, `status.rs`) stay free of generated types; this is where they
//! meet the contract.

use crate::plan::{JobPlan, Planned};
use crate::report::RunReport;
use crate::runtime::CallError;
use crate::runtime::bindings::{ReportDetails, SourceTiming, report_types as wit};
use crate::session::Session;
use crate::status::{Freshness, table};
use jiff::Timestamp;

/// The record a run hands to notifier plugins.
pub fn run_report(report: &RunReport) -> wit::Report {
    let outcome = |ok: bool| {
        if ok {
            wit::Outcome::Success
        } else {
            wit::Outcome::Failure
        }
    };
    wit::Report {
        kind: wit::ReportKind::Run,
        job: report.job.clone(),
        hostname: report.hostname.clone(),
        run_id: report.run_id.clone(),
        started_at: report.started.as_second().max(0) as u64,
        finished_at: report.finished.as_second().max(0) as u64,
        success: report.success(),
        sources: report
            .sources
            .iter()
            .map(|s| wit::SourceReport {
                id: s.id.clone(),
                name: s.name.clone(),
                outcome: outcome(s.ok),
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                duration_ms: s.duration.as_millis() as u64,
                error: s.error.clone(),
                warnings: s.warnings.clone(),
            })
            .collect(),
        destinations: report
            .destinations
            .iter()
            .map(|d| wit::DestinationReport {
                id: d.destination_id.clone(),
                source_id: d.source_id.clone(),
                outcome: outcome(d.ok),
                object: d.object.clone(),
                error: d.error.clone(),
                retained: d.retained.unwrap_or(0),
                deleted: d.deleted.clone(),
            })
            .collect(),
        freshness: Vec::new(),
        summary: report.summary(),
    }
}

/// What a run's report cannot say (contract 0.1.4's `report-details`): the run's time in
/// milliseconds and each dumped source's upload time.
pub fn run_details(report: &RunReport) -> ReportDetails {
    let run = report.finished.duration_since(report.started);
    ReportDetails {
        run_ms: run.as_millis().max(0) as u64,
        sources: report
            .sources
            .iter()
            .filter(|s| s.ok)
            .map(|s| SourceTiming {
                source_id: s.id.clone(),
                upload_ms: s.upload.as_millis() as u64,
            })
            .collect(),
    }
}

/// The report notifiers with `notify_on_start` get when a run begins.
pub fn started(job: &str, hostname: &str, run_id: &str, at: Timestamp) -> wit::Report {
    let at = at.as_second().max(0) as u64;
    wit::Report {
        kind: wit::ReportKind::Started,
        job: job.to_string(),
        hostname: hostname.to_string(),
        run_id: run_id.to_string(),
        started_at: at,
        finished_at: at,
        success: false,
        sources: Vec::new(),
        destinations: Vec::new(),
        freshness: Vec::new(),
        summary: format!("Backup of job {job} on {hostname} started (run {run_id})."),
    }
}

/// The report notifiers get when something is stale, missing or unreachable.
pub fn stale_report(plan: &JobPlan, results: &[Freshness], now: Timestamp) -> wit::Report {
    let bad: Vec<&Freshness> = results.iter().filter(|f| !f.ok()).collect();
    let summary = format!(
        "BACKUPS OVERDUE for job {} on {}: {} of {} source/destination pairs have no fresh copy.\n\n{}",
        plan.job.name,
        plan.job.hostname,
        bad.len(),
        results.len(),
        table(results)
    );
    wit::Report {
        kind: wit::ReportKind::Stale,
        job: plan.job.name.clone(),
        hostname: plan.job.hostname.clone(),
        run_id: format!("status-{}", now.as_second()),
        started_at: now.as_second().max(0) as u64,
        finished_at: now.as_second().max(0) as u64,
        success: bad.is_empty(),
        sources: Vec::new(),
        destinations: Vec::new(),
        freshness: results
            .iter()
            .map(|f| wit::Freshness {
                source_id: f.source_id.clone(),
                destination_id: f.destination_id.clone(),
                newest: f.newest.map(|t| t.as_second().max(0) as u64),
                max_age_seconds: f.max_age.as_secs(),
                stale: !f.ok(),
            })
            .collect(),
        summary,
    }
}

/// Sends one report (and, for a run's, its details) to one notifier; the error comes
/// back redacted.
pub async fn send(
    plan: &JobPlan,
    session: &Session<'_>,
    planned: &Planned,
    report: &wit::Report,
    details: Option<ReportDetails>,
) -> Result<(), String> {
    let sent = async {
        let mut instance = session.open(planned).await?;
        instance
            .notify(report, details)
            .await
            .map_err(|e: CallError| e.to_string())
    }
    .await;
    sent.map_err(|e| plan.redactor.redact(&e))
}

/// Sends the stale report to every notifier that wants failures; returns their results.
pub async fn alert(
    plan: &JobPlan,
    session: &Session<'_>,
    report: &wit::Report,
) -> Vec<(String, Result<(), String>)> {
    let mut out = Vec::new();
    for planned in &plan.notifications {
        if !planned.notifies(false) {
            continue;
        }
        let sent = send(plan, session, planned, report, None).await;
        out.push((planned.entry.label(), sent));
    }
    out
}
