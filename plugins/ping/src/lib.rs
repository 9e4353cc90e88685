//! # ping — healthchecks-style pings
//!
//! ```json
//! { "type": "ping", "url": "https://hc-ping.com/0f0c…" }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `url` | the check's ping URL: a successful run pings it, a failed one pings `url/fail` (the healthchecks.io convention) |
//! | `success_url`, `fail_url`, `start_url` | explicit URLs instead (other monitoring services) |
//!
//! With `"notify_on_start": 1`, the run's start pings `url/start` (or `start_url`): the
//! service then measures the run's duration and alerts on a run that never finishes.
//!
//! The monitoring service alerts when a success ping does not arrive in time, so this is
//! a dead-man's switch outside this machine: if cron, the daemon or the machine itself
//! stops, the pings stop. A failed run pings `fail` at once; a `stale` report from
//! `backups status --notify` pings `fail` too. The body is the run's summary table (the
//! service shows it as the ping's log). The URLs carry the check's secret: they are
//! redacted everywhere. Sends on success and on failure by default. Grants derived from
//! the URLs: their scheme, host and port.

use backups_notify_http::{grant_for, send};
use backups_sdk::{
    About, Context, Grants, Notifier, Plugin, PluginError, Report, ReportKind, Result,
};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Config {
    url: Option<String>,
    success_url: Option<String>,
    fail_url: Option<String>,
    start_url: Option<String>,
}

pub struct Ping {
    success: String,
    fail: String,
    start: Option<String>,
}

impl Config {
    fn urls(&self) -> Result<(String, String)> {
        let base = self
            .url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_string());
        let success = self.success_url.clone().or(base.clone());
        let fail = self.fail_url.clone().or(base.map(|b| format!("{b}/fail")));
        match (success, fail) {
            (Some(s), Some(f)) => Ok((s, f)),
            _ => Err(PluginError::invalid_config(
                "url: missing (or give success_url and fail_url)",
            )),
        }
    }
}

impl Plugin for Ping {
    type Config = Config;

    fn about() -> About {
        About::new(
            "ping",
            "healthchecks-style pings: success URL after a good run, fail URL otherwise",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(&["url", "success_url", "fail_url", "start_url"])
        .secrets(&["url", "success_url", "fail_url", "start_url"])
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        let (success, fail) = config.urls()?;
        let mut net = vec![grant_for(&success)?];
        let other = grant_for(&fail)?;
        if !net.contains(&other) {
            net.push(other);
        }
        Ok(Grants {
            net,
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        let (success, fail) = config.urls()?;
        grant_for(&success)?;
        grant_for(&fail)?;
        let start = config.start_url.clone().or(config
            .url
            .as_deref()
            .map(|u| format!("{}/start", u.trim_end_matches('/'))));
        Ok(Ping {
            success,
            fail,
            start,
        })
    }
}

impl Notifier for Ping {
    fn notify(&mut self, report: &Report) -> Result<()> {
        let url = match report.kind {
            ReportKind::Started => match &self.start {
                Some(start) => start,
                None => return Ok(()),
            },
            _ if report.success => &self.success,
            _ => &self.fail,
        };
        let headers = [("content-type", "text/plain; charset=utf-8".to_string())];
        send("POST", url, &headers, report.summary.clone().into_bytes()).map(|_| ())
    }
}

backups_sdk::export_notifier!(Ping);
