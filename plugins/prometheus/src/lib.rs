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
//! Pushed after every run, good or bad, to the group `job=backups_<job>`,
//! `instance=<hostname>`, with POST, so a metric missing from a push keeps its previous
//! value — which is how the last success survives a failed run:
//!
//! | metric | meaning |
//! |---|---|
//! | `backups_last_run_timestamp_seconds` | when the run finished |
//! | `backups_last_run_success` | 1 if every source reached every destination |
//! | `backups_last_success_timestamp_seconds` | pushed only by successful runs |
//! | `backups_run_duration_seconds` | how long the run took |
//! | `backups_source_success{source}` | per source, 1 or 0 |
//! | `backups_source_bytes_in{source}`, `backups_source_bytes_out{source}` | dumped and stored sizes |
//! | `backups_retained_copies{source,destination}` | copies kept after retention (the legacy tool always pushed 0) |
//!
//! Alert on `time() - backups_last_success_timestamp_seconds > …`: that alert fires even
//! when the backups stop running altogether. Grant derived from `url`.

use backups_notify_http::{base64_url, basic_auth, grant_for, send};
use backups_sdk::{
    About, Context, Grants, Notifier, Outcome, Plugin, PluginError, Report, ReportKind, Result,
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

fn metrics(report: &Report) -> String {
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
    gauge(
        "backups_run_duration_seconds",
        "How long the last run took.",
        vec![(
            String::new(),
            report
                .finished_at
                .saturating_sub(report.started_at)
                .to_string(),
        )],
    );
    let per_source = |f: &dyn Fn(&backups_sdk::SourceReport) -> String| -> Vec<(String, String)> {
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

impl Notifier for Prometheus {
    fn notify(&mut self, report: &Report) -> Result<()> {
        if report.kind != ReportKind::Run {
            // `status` exports its own metrics (--prometheus); a stale report adds nothing here.
            return Ok(());
        }
        let job = format!("backups_{}", report.job);
        let url = format!(
            "{}/metrics/{}/{}",
            self.url,
            segment("job", &job),
            segment("instance", &report.hostname)
        );
        let mut headers = vec![("content-type", "text/plain; version=0.0.4".to_string())];
        if let Some((u, p)) = &self.auth {
            headers.push(basic_auth(u, p));
        }
        send("POST", &url, &headers, metrics(report).into_bytes()).map(|_| ())
    }
}

backups_sdk::export_notifier!(Prometheus);
