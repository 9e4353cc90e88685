//! # elasticsearch — one document per run in an Elasticsearch / OpenSearch index
//!
//! ```json
//! { "id": "logging", "type": "elasticsearch", "url": "https://logging-es-http.elasticsearch:9200",
//!   "credentials": { "username": "backups", "password": "…" }, "indexpattern": "backups-%Y" }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `url` | the cluster; credentials may be in it (`https://user:pass@host:9200`) |
//! | `credentials.username`, `credentials.password` | HTTP basic auth |
//! | `indexpattern` | the index, with strftime fields of the run's finish time in UTC: `%Y`, `%m`, `%d`, `%H` (default `backups-%Y.%m`) |
//!
//! Each run (and each `stale` alert from `backups status --notify`) is
//! `POST {url}/{index}/_doc`: the whole report — job, host, times, success, every source
//! and destination with sizes and errors — plus `@timestamp`, so dashboards can chart
//! sizes and durations and alert on missing documents. Sends on success and on failure
//! by default. Grant derived from `url`.

use backups_notify_http::{basic_auth, civil_from_days, grant_for, post_json, report_json};
use backups_sdk::{About, Context, Grants, Notifier, Plugin, PluginError, Report, Result};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Config {
    url: String,
    #[serde(default)]
    credentials: Credentials,
    #[serde(default = "default_pattern")]
    indexpattern: String,
}

#[derive(Deserialize, Default)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

fn default_pattern() -> String {
    "backups-%Y.%m".into()
}

pub struct Elasticsearch {
    url: String,
    auth: Option<(String, String)>,
    pattern: String,
}

/// Splits `https://user:pass@host:9200/` into the URL without credentials and them.
fn split_credentials(url: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (
                format!("{scheme}://{host}/{path}"),
                Some((user.to_string(), pass.to_string())),
            )
        }
        None => (url.to_string(), None),
    }
}

/// The index name for a time: `%Y`, `%m`, `%d`, `%H` and `%%`, UTC.
fn index_name(pattern: &str, unix: u64) -> String {
    let (year, month, day) = civil_from_days((unix / 86_400) as i64);
    let hour = (unix % 86_400) / 3600;
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out += &format!("{year:04}"),
            Some('m') => out += &format!("{month:02}"),
            Some('d') => out += &format!("{day:02}"),
            Some('H') => out += &format!("{hour:02}"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    // Index names are lower case.
    out.to_lowercase()
}

fn rfc3339(unix: u64) -> String {
    let (year, month, day) = civil_from_days((unix / 86_400) as i64);
    let s = unix % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        (s % 3600) / 60,
        s % 60
    )
}

impl Plugin for Elasticsearch {
    type Config = Config;

    fn about() -> About {
        About::new(
            "elasticsearch",
            "one document per run in an Elasticsearch or OpenSearch index",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(&["url", "credentials", "indexpattern"])
        // Only the password a URL may carry: its host is what `check` shows in the grant.
        .secrets(&["credentials.password", "url@userinfo"])
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        Ok(Grants {
            net: vec![grant_for(&config.url)?],
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        grant_for(&config.url)?;
        if config.indexpattern.is_empty() || config.indexpattern.contains(['/', ' ', '#', '?']) {
            return Err(PluginError::invalid_config(format!(
                "indexpattern: {:?} is not a valid index name",
                config.indexpattern
            )));
        }
        let (url, in_url) = split_credentials(&config.url);
        let auth = match (config.credentials.username, config.credentials.password) {
            (Some(u), Some(p)) => Some((u, p)),
            _ => in_url,
        };
        Ok(Elasticsearch {
            url: url.trim_end_matches('/').to_string(),
            auth,
            pattern: config.indexpattern,
        })
    }
}

impl Notifier for Elasticsearch {
    fn notify(&mut self, report: &Report) -> Result<()> {
        let mut doc = report_json(report);
        doc["@timestamp"] = serde_json::Value::String(rfc3339(report.finished_at));
        let index = index_name(&self.pattern, report.finished_at);
        let headers: Vec<(&str, String)> =
            self.auth.iter().map(|(u, p)| basic_auth(u, p)).collect();
        post_json(&format!("{}/{index}/_doc", self.url), &doc, &headers).map(|_| ())
    }
}

backups_sdk::export_notifier!(Elasticsearch);
