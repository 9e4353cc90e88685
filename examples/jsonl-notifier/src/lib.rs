//! # jsonl — append each run's outcome to a JSON-lines file
//!
//! A third-party notifier: loaded by path, it gets only the grants the job gives it.
//!
//! ```json
//! { "id": "history", "type": "jsonl",
//!   "plugin": "jsonl-notifier/target/wasm32-wasip2/release/jsonl_notifier.wasm",
//!   "file": "/var/log/backups/history.jsonl",
//!   "grants": { "write": ["/var/log/backups"] } }
//! ```
//!
//! One line per run: time, job, host, success, and per source its outcome and sizes —
//! easy to `jq`, `tail -f` or ship to a log pipeline. `backups status --notify` adds a
//! line of kind `stale` listing the overdue source/destination pairs.

use backups_sdk::{
    About, Context, Notifier, Outcome, Plugin, PluginError, Report, ReportKind, Result,
};
use serde::Deserialize;
use std::io::Write;

#[derive(Deserialize)]
pub struct Config {
    file: String,
}

pub struct Jsonl {
    file: String,
}

impl Plugin for Jsonl {
    type Config = Config;

    fn about() -> About {
        About::new("jsonl", "append each run's outcome to a JSON-lines file")
            .version(env!("CARGO_PKG_VERSION"))
            .keys(&["file"])
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        if !config.file.starts_with('/') {
            return Err(PluginError::invalid_config(
                "file: must be an absolute path",
            ));
        }
        Ok(Jsonl { file: config.file })
    }
}

impl Notifier for Jsonl {
    fn notify(&mut self, report: &Report) -> Result<()> {
        let sources: Vec<_> = report
            .sources
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.id,
                    "ok": s.outcome == Outcome::Success,
                    "bytes_in": s.bytes_in,
                    "bytes_out": s.bytes_out,
                    "error": s.error,
                })
            })
            .collect();
        // `status --notify` sends a `stale` report: which copies are overdue.
        let overdue: Vec<_> = report
            .freshness
            .iter()
            .filter(|f| f.stale)
            .map(|f| {
                serde_json::json!({
                    "source": f.source_id,
                    "destination": f.destination_id,
                    "newest": f.newest,
                    "max_age_seconds": f.max_age_seconds,
                })
            })
            .collect();
        let line = serde_json::json!({
            "kind": match report.kind {
                ReportKind::Run => "run",
                ReportKind::Stale => "stale",
                ReportKind::Started => "started",
            },
            "finished_at": report.finished_at,
            "job": report.job,
            "hostname": report.hostname,
            "run_id": report.run_id,
            "success": report.success,
            "sources": sources,
            "overdue": overdue,
        });
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .map_err(|e| PluginError::from_io(&e, &self.file))?;
        writeln!(file, "{line}").map_err(|e| PluginError::from_io(&e, &self.file))
    }
}

backups_sdk::export_notifier!(Jsonl);
