//! # prometheus — run metrics pushed to a Prometheus pushgateway
//!
//! ```json
//! { "type": "prometheus", "url": "http://pushgw:9091/",
//!   "credentials": { "username": "prometheus", "password": "…" } }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `url` | the pushgateway, without `/metrics` |
//! | `credentials.username`, `credentials.password` | HTTP basic auth (also accepted flat) |
//!
//! Pushed after a successful run (and after a failed one too with `notify_on_failure`), to
//! the group `job=<job>`, `hostname=<hostname>` — the labels `backups status --prometheus`
//! writes, so one alert rule reads both — with POST, so a metric missing from a push keeps
//! its previous value, which is how the last success survives a failed run:
//!
//! | metric | meaning |
//! |---|---|
//! | `backups_last_run_timestamp_seconds` | when the run finished |
//! | `backups_last_run_success` | 1 if every source reached every destination |
//! | `backups_last_success_timestamp_seconds` | pushed only by successful runs |
//! | `backups_run_duration_seconds` | how long the run took (milliseconds precision) |
//! | `backups_source_success{source}` | per source, 1 or 0 |
//! | `backups_source_bytes_in{source}`, `backups_source_bytes_out{source}` | dumped and stored sizes |
//! | `backups_retained_copies{source,destination}` | copies kept after retention |
//!
//! Alert on `time() - backups_last_success_timestamp_seconds > …`: that alert fires even
//! when the backups stop running altogether.
//!
//! The legacy tool's metrics are pushed too, unchanged, for the alerts and dashboards built
//! on them: for each source stored everywhere, a push (PUT, replacing the group, as its
//! `push_to_gateway` did) to the group `job=<source id>` of
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `backup_size` | summary (`_count` 1, `_sum`) | bytes stored, compressed and encrypted |
//! | `backup_dumptime` | summary | seconds to dump, compress and encrypt |
//! | `backup_uploadtime` | summary | seconds to store at every destination, retention included |
//! | `backup_retained_copies` | gauge | copies kept, summed over the destinations |
//! | `backup_timestamp` | gauge | when the run finished |
//!
//! Grant derived from `url`.

use backups_notify_http::{base64_url, basic_auth, grant_for, send};
use backups_sdk::{
    About, Context, Grants, Notifier, Outcome, Plugin, PluginError, Report, ReportDetails,
    ReportKind, Result, SourceReport,
};
use serde::Deserialize;
use std::fmt::Write as _;

#[derive(Deserialize)]
pub struct Config {
    url: String,
    #[serde(default)]
    credentials: Credentials,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize, Default)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

pub struct Prometheus {
    url: String,
    auth: Option<(String, String)>,
}

impl Plugin for Prometheus {
    type Config = Config;

    fn about() -> About {
        About::new(
            "prometheus",
            "run metrics pushed to a Prometheus pushgateway",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(&["url", "credentials", "username", "password"])
        .secrets(&["credentials.password", "password"])
        // As the legacy tool: pushed after a successful run only (a failed run's push of
        // `backups_last_run_success 0` needs `"notify_on_failure": 1`).
        .notify_by_default(true, false)
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        Ok(Grants {
            net: vec![grant_for(&config.url)?],
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        grant_for(&config.url)?;
        let user = config.credentials.username.or(config.username);
        let pass = config.credentials.password.or(config.password);
        let auth = match (user, pass) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => {
                return Err(PluginError::invalid_config(
                    "credentials: give both username and password",
                ));
            }
        };
        Ok(Prometheus {
            url: config
                .url
                .trim_end_matches('/')
                .trim_end_matches("/metrics")
                .to_string(),
            auth,
        })
    }
}

/// A label value in the text format: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A path segment of the pushgateway's grouping key (base64 form when it needs escaping).
fn segment(name: &str, value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        format!("{name}/{value}")
    } else {
        format!("{name}@base64/{}", base64_url(value.as_bytes()))
    }
}

fn metrics(report: &Report, details: Option<&ReportDetails>) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    gauge(
        "backups_last_run_timestamp_seconds",
        "When the last run finished.",
        vec![(String::new(), report.finished_at.to_string())],
    );
    gauge(
        "backups_last_run_success",
        "1 if every source reached every destination.",
        vec![(String::new(), u8::from(report.success).to_string())],
    );
    if report.success {
        gauge(
            "backups_last_success_timestamp_seconds",
            "When the last fully successful run finished.",
            vec![(String::new(), report.finished_at.to_string())],
        );
    }
    let run_seconds = match details {
        Some(d) => seconds(d.run_ms),
        None => report
            .finished_at
            .saturating_sub(report.started_at)
            .to_string(),
    };
    gauge(
        "backups_run_duration_seconds",
        "How long the last run took.",
        vec![(String::new(), run_seconds)],
    );
    let per_source = |f: &dyn Fn(&SourceReport) -> String| -> Vec<(String, String)> {
        report
            .sources
            .iter()
            .map(|s| (format!("{{source=\"{}\"}}", label(&s.id)), f(s)))
            .collect()
    };
    gauge(
        "backups_source_success",
        "1 if the source was dumped.",
        per_source(&|s| u8::from(s.outcome == Outcome::Success).to_string()),
    );
    gauge(
        "backups_source_bytes_in",
        "Bytes the source produced.",
        per_source(&|s| s.bytes_in.to_string()),
    );
    gauge(
        "backups_source_bytes_out",
        "Bytes stored (compressed and encrypted).",
        per_source(&|s| s.bytes_out.to_string()),
    );
    gauge(
        "backups_retained_copies",
        "Copies kept at the destination after retention.",
        report
            .destinations
            .iter()
            .filter(|d| d.outcome == Outcome::Success)
            .map(|d| {
                (
                    format!(
                        "{{source=\"{}\",destination=\"{}\"}}",
                        label(&d.source_id),
                        label(&d.id)
                    ),
                    d.retained.to_string(),
                )
            })
            .collect(),
    );
    out
}

/// Milliseconds as seconds in the text format: `1.5`, `0.007`.
fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The legacy tool's metrics for one source, as its `prometheus_client` registry wrote
/// them: three summaries of one observation each, two gauges.
fn legacy_metrics(report: &Report, source: &SourceReport, upload_ms: Option<u64>) -> String {
    let mut out = String::new();
    let mut summary = |name: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} summary\n{name}_count 1\n{name}_sum {value}"
        );
    };
    summary(
        "backup_size",
        "Size of backup file in bytes",
        source.bytes_out.to_string(),
    );
    summary(
        "backup_dumptime",
        "Time taken to dump and compress/encrypt backup in seconds",
        seconds(source.duration_ms),
    );
    if let Some(ms) = upload_ms {
        summary(
            "backup_uploadtime",
            "Time taken to upload backup in seconds",
            seconds(ms),
        );
    }
    let retained: u32 = report
        .destinations
        .iter()
        .filter(|d| d.source_id == source.id)
        .map(|d| d.retained)
        .sum();
    let _ = writeln!(
        out,
        "# HELP backup_retained_copies Number of retained backups found on destination\n\
         # TYPE backup_retained_copies gauge\nbackup_retained_copies {retained}\n\
         # HELP backup_timestamp Time backup completed as seconds-since-the-epoch\n\
         # TYPE backup_timestamp gauge\nbackup_timestamp {}",
        report.finished_at
    );
    out
}

/// The sources the legacy tool would have reported a success for: dumped, and stored at
/// every destination.
fn stored_everywhere(report: &Report) -> impl Iterator<Item = &SourceReport> {
    report.sources.iter().filter(|s| {
        s.outcome == Outcome::Success
            && report
                .destinations
                .iter()
                .filter(|d| d.source_id == s.id)
                .all(|d| d.outcome == Outcome::Success)
    })
}

impl Prometheus {
    fn push(&self, method: &str, group: &str, body: String) -> Result<()> {
        let url = format!("{}/metrics/{group}", self.url);
        let mut headers = vec![("content-type", "text/plain; version=0.0.4".to_string())];
        if let Some((u, p)) = &self.auth {
            headers.push(basic_auth(u, p));
        }
        send(method, &url, &headers, body.into_bytes()).map(|_| ())
    }
}

impl Notifier for Prometheus {
    fn notify(&mut self, report: &Report) -> Result<()> {
        if report.kind != ReportKind::Run {
            // `status` exports its own metrics (--prometheus); a stale report adds nothing here.
            return Ok(());
        }
        let details = backups_sdk::report_details();
        let group = format!(
            "{}/{}",
            segment("job", &report.job),
            segment("hostname", &report.hostname)
        );
        self.push("POST", &group, metrics(report, details.as_ref()))?;
        for source in stored_everywhere(report) {
            let upload_ms = details.as_ref().and_then(|d| {
                d.sources
                    .iter()
                    .find(|t| t.source_id == source.id)
                    .map(|t| t.upload_ms)
            });
            let body = legacy_metrics(report, source, upload_ms);
            self.push("PUT", &segment("job", &source.id), body)?;
        }
        Ok(())
    }
}

backups_sdk::export_notifier!(Prometheus);
