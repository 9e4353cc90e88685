//! What a run did: one structure, printed as a table for humans, written as JSON for
//! machines, and handed to notifiers. Built from values the host already redacted.

use crate::text::human_bytes;
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
    /// What each destination held of earlier killed runs' uploads, and what was removed.
    pub leftovers: Vec<LeftoverSweep>,
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
    /// Dump, compression and encryption.
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    /// Storing the copy at every destination (at the same time), retention included.
    #[serde(serialize_with = "millis", rename = "upload_duration")]
    pub upload: Duration,
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

/// What one destination held, and what a sweep did about it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LeftoverSweep {
    pub destination_id: String,
    /// Leftovers of this job found there (count, bytes).
    pub found: usize,
    pub found_bytes: u64,
    /// The object names of those removed (or, on a dry run, that would be).
    pub removed: Vec<String>,
    pub removed_bytes: u64,
    /// Found but younger than `leftover_age`: left alone.
    pub young: usize,
    /// The plugin was built against a contract (before 0.1.2) that cannot list leftovers.
    pub unsupported: bool,
    /// Listing or removing failed; what was removed before stays removed.
    pub error: Option<String>,
}

impl LeftoverSweep {
    /// One line for logs and the report, or `None` when there was nothing to say.
    pub fn describe(&self, dry_run: bool) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(format!("leftovers of interrupted uploads: {e}"));
        }
        if self.found == 0 {
            return None;
        }
        let verb = if dry_run { "would remove" } else { "removed" };
        Some(format!(
            "leftovers of interrupted uploads: {} ({}); {verb} {} ({}){}",
            self.found,
            human_bytes(self.found_bytes),
            self.removed.len(),
            human_bytes(self.removed_bytes),
            if self.young > 0 {
                format!(", {} younger than leftover_age left alone", self.young)
            } else {
                String::new()
            }
        ))
    }
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
        for sweep in &self.leftovers {
            if let Some(line) = sweep.describe(false) {
                rows.push([
                    "-".into(),
                    sweep.destination_id.clone(),
                    if sweep.error.is_some() {
                        "warning".into()
                    } else {
                        "cleanup".into()
                    },
                    human_bytes(sweep.removed_bytes),
                    line,
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
}
