//! One HTTP request from a notifier, with errors the host can act on, and the run report
//! rendered the ways notification services want it.

use backups_sdk::{Outcome, PluginError, Report, ReportKind, Result};
use std::time::Duration;
use wstd::http::Client;

/// Per request: a notification that takes longer is a failed notification, and the run
/// has better things to do than wait for a chat service.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A response with a 2xx status.
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Sends one request; anything but a 2xx answer is an error typed for the host:
/// 401/403 `auth`, 404 `not-found`, other 4xx `invalid-config` (the payload or URL is
/// wrong), 5xx and network failures `transient`.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<Response> {
    let request = backups_storage_http::request_with_length(method, url, headers, body)
        .map_err(|e| PluginError::invalid_config(format!("url: {url:?}: {e}")))?;
    let mut client = Client::new();
    client.set_connect_timeout(TIMEOUT);
    client.set_first_byte_timeout(TIMEOUT);
    client.set_between_bytes_timeout(TIMEOUT);
    wstd::runtime::block_on(async move {
        let response = client
            .send(request)
            .await
            .map_err(|e| PluginError::transient(format!("{method} {}: {e}", redact_url(url))))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let text = body
            .str_contents()
            .await
            .map(|s| s.chars().take(2000).collect::<String>())
            .unwrap_or_default();
        let what = format!(
            "{method} {} answered {status}: {}",
            redact_url(url),
            text.trim()
        );
        match status {
            200..=299 => Ok(Response { status, body: text }),
            401 | 403 => Err(PluginError::auth(what)),
            404 => Err(PluginError::not_found(what)),
            400..=499 => Err(PluginError::invalid_config(what)),
            _ => Err(PluginError::transient(what)),
        }
    })
}

/// `POST url` with a JSON body.
pub fn post_json(
    url: &str,
    value: &serde_json::Value,
    extra: &[(&str, String)],
) -> Result<Response> {
    let mut headers = vec![("content-type", "application/json".to_string())];
    headers.extend(extra.iter().cloned());
    send("POST", url, &headers, value.to_string().into_bytes())
}

/// `Authorization: Basic …`.
pub fn basic_auth(user: &str, password: &str) -> (&'static str, String) {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    ("authorization", format!("Basic {token}"))
}

/// Standard base64 with padding (SMTP AUTH).
pub fn base64_standard(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's
/// civil_from_days). For dates in headers and index names without a date library.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// URL-safe base64 with padding (the pushgateway's `label@base64/value` path form).
pub fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

/// Webhook URLs often carry their secret in the path (Slack, Discord): keep only the
/// scheme and host in messages.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split('/').next().unwrap_or_default();
            let host = host.rsplit('@').next().unwrap_or(host);
            format!("{scheme}://{host}/…")
        }
        None => "(url)".into(),
    }
}

/// `https://hooks.example.com/…` → the grant for it: scheme, host and port.
pub fn grant_for(url: &str) -> Result<String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        PluginError::invalid_config(format!(
            "url: {:?} must start with https:// or http://",
            redact_url(url)
        ))
    })?;
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if authority.is_empty() {
        return Err(PluginError::invalid_config("url: no host"));
    }
    Ok(format!("{scheme}://{authority}"))
}

/// Whether the report is good news: a start, or a run in which everything succeeded.
/// Good news is a headline; bad news also carries the summary table.
pub fn good_news(report: &Report) -> bool {
    match report.kind {
        ReportKind::Started => true,
        ReportKind::Run => report.success,
        ReportKind::Stale => false,
    }
}

/// The report kind as a word, for JSON and identifiers.
pub fn kind_name(report: &Report) -> &'static str {
    match report.kind {
        ReportKind::Run => "run",
        ReportKind::Stale => "stale",
        ReportKind::Started => "started",
    }
}

/// One line: what happened, for chat messages and subjects.
pub fn headline(report: &Report) -> String {
    match report.kind {
        ReportKind::Started => format!(
            "Backup of job {} on {} started",
            report.job, report.hostname
        ),
        ReportKind::Stale => format!(
            "Backups OVERDUE for job {} on {}: {} source/destination pair(s) without a fresh copy",
            report.job,
            report.hostname,
            report.freshness.iter().filter(|f| f.stale).count()
        ),
        ReportKind::Run if report.success => format!(
            "Backup of job {} on {} succeeded: {} source(s), {} written",
            report.job,
            report.hostname,
            report.sources.len(),
            human_bytes(report.sources.iter().map(|s| s.bytes_out).sum())
        ),
        ReportKind::Run => {
            let failed: Vec<&str> = report
                .sources
                .iter()
                .filter(|s| s.outcome == Outcome::Failure)
                .map(|s| s.id.as_str())
                .chain(
                    report
                        .destinations
                        .iter()
                        .filter(|d| d.outcome == Outcome::Failure)
                        .map(|d| d.id.as_str()),
                )
                .collect();
            format!(
                "Backup of job {} on {} FAILED ({})",
                report.job,
                report.hostname,
                failed.join(", ")
            )
        }
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

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Skipped => "skipped",
    }
}

/// The whole report as JSON: the generic webhook's body, and the Elasticsearch document.
pub fn report_json(report: &Report) -> serde_json::Value {
    serde_json::json!({
        "kind": kind_name(report),
        "job": report.job,
        "hostname": report.hostname,
        "run_id": report.run_id,
        "started_at": report.started_at,
        "finished_at": report.finished_at,
        "success": report.success,
        "headline": headline(report),
        "sources": report.sources.iter().map(|s| serde_json::json!({
            "id": s.id, "name": s.name, "outcome": outcome(s.outcome),
            "bytes_in": s.bytes_in, "bytes_out": s.bytes_out, "duration_ms": s.duration_ms,
            "error": s.error, "warnings": s.warnings,
        })).collect::<Vec<_>>(),
        "destinations": report.destinations.iter().map(|d| serde_json::json!({
            "id": d.id, "source_id": d.source_id, "outcome": outcome(d.outcome),
            "object": d.object, "error": d.error, "retained": d.retained, "deleted": d.deleted,
        })).collect::<Vec<_>>(),
        "freshness": report.freshness.iter().map(|f| serde_json::json!({
            "source_id": f.source_id, "destination_id": f.destination_id, "newest": f.newest,
            "max_age_seconds": f.max_age_seconds, "stale": f.stale,
        })).collect::<Vec<_>>(),
        "summary": report.summary,
    })
}
