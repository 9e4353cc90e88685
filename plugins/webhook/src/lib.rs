//! # webhook, slack, discord, hipchat — a JSON POST per run
//!
//! ```json
//! { "type": "slack", "url": "https://hooks.slack.com/services/…",
//!   "notify_on_success": 0, "notify_on_failure": 1 }
//! ```
//!
//! | type | body posted to `url` |
//! |---|---|
//! | `webhook` | the whole report as JSON (job, host, times, success, every source and destination, freshness, summary) |
//! | `slack` | an incoming-webhook message: `{"username": "Backup Agent", "icon_emoji": …, "text": …}` |
//! | `discord` | an execute-webhook message: `{"username": "Backup Agent", "content": …}` (at most 2000 characters) |
//! | `hipchat` | a v2 room notification: `{"color": "green"/"red", "message": …, "notify": true, "message_format": "text"}` |
//!
//! `headers` (webhook only) adds request headers, e.g. an `authorization` token. The URL
//! is a secret (webhook URLs carry their token): it is redacted everywhere, and messages
//! name only its host. As in the legacy tool, these send nothing unless
//! `notify_on_success` / `notify_on_failure` say so (`--dry-run` shows what applies).
//! Grant derived from `url`: its scheme, host and port.

use backups_notify_http::{good_news, grant_for, headline, post_json, report_json};
use backups_sdk::{About, Context, Grants, Notifier, Plugin, PluginError, Report, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
pub struct Config {
    #[serde(rename = "type")]
    kind: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

pub struct Webhook {
    config: Config,
}

/// Discord refuses longer messages.
const DISCORD_LIMIT: usize = 2000;

impl Plugin for Webhook {
    type Config = Config;

    fn about() -> About {
        About::new(
            "webhook",
            "a JSON POST per run: generic, Slack, Discord or HipChat",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(&["url", "headers"])
        .secrets(&["url"])
        .notify_by_default(false, false)
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        Ok(Grants {
            net: vec![grant_for(&config.url)?],
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        grant_for(&config.url)?;
        if !matches!(
            config.kind.as_str(),
            "webhook" | "slack" | "discord" | "hipchat"
        ) {
            return Err(PluginError::invalid_config(format!(
                "type: {:?} is not served here",
                config.kind
            )));
        }
        Ok(Webhook { config })
    }
}

/// The message text: the headline, and for failures and stale reports the table.
fn text(report: &Report) -> String {
    if good_news(report) {
        headline(report)
    } else {
        format!("{}\n```\n{}```", headline(report), report.summary)
    }
}

impl Notifier for Webhook {
    fn notify(&mut self, report: &Report) -> Result<()> {
        let good = good_news(report);
        let body = match self.config.kind.as_str() {
            "slack" => serde_json::json!({
                "username": "Backup Agent",
                "icon_emoji": if good { ":+1:" } else { ":imp:" },
                "text": text(report),
            }),
            "discord" => {
                let mut content = text(report);
                if content.chars().count() > DISCORD_LIMIT {
                    content = format!(
                        "{}…",
                        content.chars().take(DISCORD_LIMIT - 1).collect::<String>()
                    );
                }
                serde_json::json!({"username": "Backup Agent", "content": content})
            }
            "hipchat" => serde_json::json!({
                "color": if good { "green" } else { "red" },
                "message": text(report),
                "notify": true,
                "message_format": "text",
            }),
            _ => report_json(report),
        };
        let headers: Vec<(&str, String)> = self
            .config
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        post_json(&self.config.url, &body, &headers).map(|_| ())
    }
}

backups_sdk::export_notifier!(Webhook);
