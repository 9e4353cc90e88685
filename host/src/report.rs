//! What a run did: one structure, printed as a table for humans, written as JSON for
//! machines, and handed to notifiers. Built from values the host already redacted.

use crate::runtime::bindings::report_types as wit;
use jiff::Timestamp;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub job: String,
    pub hostname: String,
    pub run_id: String,
    pub started: Timestamp,
    pub finished: Timestamp,
    pub sources: Vec<SourceResult>,
    pub destinations: Vec<DestinationResult>,
    pub notifications: Vec<NotifierResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceResult {
    pub id: String,
    pub name: String,
    pub ok: bool,
    pub error: Option<String>,
    pub warnings: Vec<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    pub object: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DestinationResult {
    pub destination_id: String,
    pub source_id: String,
    pub ok: bool,
    pub object: Option<String>,
    pub error: Option<String>,
    /// Copies of the source kept there after retention (`None`: not known).
    pub retained: Option<u32>,
    pub deleted: Vec<String>,
    /// Retention could not run; nothing was deleted.
    pub retention_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotifierResult {
    pub id: String,
    pub sent: bool,
    pub error: Option<String>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl RunReport {
    /// True only when every source was dumped and stored at every destination.
    pub fn success(&self) -> bool {
        !self.sources.is_empty()
            && self.sources.iter().all(|s| s.ok)
            && self.destinations.iter().all(|d| d.ok)
    }

    /// The end-of-run table.
    pub fn summary(&self) -> String {
        let mut rows: Vec<[String; 5]> = vec![[
            "source".into(),
            "destination".into(),
            "result".into(),
            "size".into(),
            "detail".into(),
        ]];
        for s in &self.sources {
            let dests: Vec<&DestinationResult> = self
                .destinations
                .iter()
                .filter(|d| d.source_id == s.id)
                .collect();
            if !s.ok || dests.is_empty() {
                rows.push([
                    s.id.clone(),
                    "-".into(),
                    if s.ok {
                        "dumped".into()
                    } else {
                        "FAILED".into()
                    },
                    human_bytes(s.bytes_out),
                    s.error.clone().unwrap_or_default(),
                ]);
                continue;
            }
            for d in dests {
                let mut detail = match (&d.error, d.retained) {
                    (Some(e), _) => e.clone(),
                    (None, Some(n)) => format!("{n} kept, {} deleted", d.deleted.len()),
                    (None, None) => String::new(),
                };
                if let Some(e) = &d.retention_error {
                    detail += &format!(" (retention skipped: {e})");
                }
                rows.push([
                    s.id.clone(),
                    d.destination_id.clone(),
                    if d.ok { "ok".into() } else { "FAILED".into() },
                    human_bytes(s.bytes_out),
                    detail,
                ]);
            }
            for w in &s.warnings {
                rows.push([
                    s.id.clone(),
                    String::new(),
                    "warning".into(),
                    String::new(),
                    w.clone(),
                ]);
            }
        }
        for n in &self.notifications {
            if let Some(e) = &n.error {
                rows.push([
                    format!("notify {}", n.id),
                    String::new(),
                    "FAILED".into(),
                    String::new(),
                    e.clone(),
                ]);
            }
        }
        let mut widths = [0usize; 4];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row.iter()) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &rows {
            for (cell, w) in row.iter().take(4).zip(widths) {
                out += &format!("{cell:<w$}  ");
            }
            out += row[4].as_str();
            out = out.trim_end().to_string();
            out.push('\n');
        }
        let verdict = if self.success() {
            "every source reached every destination"
        } else {
            "BACKUP INCOMPLETE: see the rows marked FAILED"
        };
        out += &format!(
            "{} — job {} on {}, run {}, {}s\n",
            verdict,
            self.job,
            self.hostname,
            self.run_id,
            self.finished.duration_since(self.started).as_secs()
        );
        out
    }

    /// The record handed to notifier plugins.
    pub fn to_wit(&self) -> wit::Report {
        let outcome = |ok: bool| {
            if ok {
                wit::Outcome::Success
            } else {
                wit::Outcome::Failure
            }
        };
        wit::Report {
            kind: wit::ReportKind::Run,
            job: self.job.clone(),
            hostname: self.hostname.clone(),
            run_id: self.run_id.clone(),
            started_at: self.started.as_second().max(0) as u64,
            finished_at: self.finished.as_second().max(0) as u64,
            success: self.success(),
            sources: self
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
            destinations: self
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
            summary: self.summary(),
        }
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

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
