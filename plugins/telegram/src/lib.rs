//! # telegram — a message through the Telegram Bot API
//!
//! ```json
//! { "type": "telegram", "api_token": "295432120:…", "chat_id": "38123456",
//!   "notify_on_success": 0, "notify_on_failure": 1 }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `api_token` | the bot's token (a secret: redacted everywhere) |
//! | `chat_id` | the chat to post in (a number, or `@channelname`) |
//! | `api_url` | the Bot API server, default `https://api.telegram.org` (a local Bot API server, or a test emulator) |
//!
//! `POST {api_url}/bot{api_token}/sendMessage` with `{"chat_id", "text"}`: the run's
//! headline, and the summary table for failures and stale alerts (cut to Telegram's 4096
//! characters). As in the legacy tool, it sends nothing unless `notify_on_success` /
//! `notify_on_failure` say so. Grant derived from `api_url`.

use backups_notify_http::{good_news, grant_for, headline, post_json};
use backups_sdk::{About, Context, Grants, Notifier, Plugin, PluginError, Report, Result};
use serde::Deserialize;

/// Telegram refuses longer messages.
const TEXT_LIMIT: usize = 4096;

#[derive(Deserialize)]
pub struct Config {
    api_token: String,
    chat_id: serde_json::Value,
    #[serde(default = "official")]
    api_url: String,
}

fn official() -> String {
    "https://api.telegram.org".into()
}

pub struct Telegram {
    config: Config,
}

impl Plugin for Telegram {
    type Config = Config;

    fn about() -> About {
        About::new("telegram", "a Telegram message through the Bot API")
            .version(env!("CARGO_PKG_VERSION"))
            .keys(&["api_token", "chat_id", "api_url"])
            .secrets(&["api_token"])
            .notify_by_default(false, false)
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        Ok(Grants {
            net: vec![grant_for(&config.api_url)?],
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        grant_for(&config.api_url)?;
        if config.api_token.is_empty() || config.api_token.contains(['/', '?', '#']) {
            return Err(PluginError::invalid_config(
                "api_token: missing or malformed",
            ));
        }
        if !(config.chat_id.is_string() || config.chat_id.is_i64()) {
            return Err(PluginError::invalid_config(
                "chat_id: must be a number or a string",
            ));
        }
        Ok(Telegram { config })
    }
}

impl Notifier for Telegram {
    fn notify(&mut self, report: &Report) -> Result<()> {
        let mut text = if good_news(report) {
            headline(report)
        } else {
            format!("{}\n\n{}", headline(report), report.summary)
        };
        if text.chars().count() > TEXT_LIMIT {
            text = format!("{}…", text.chars().take(TEXT_LIMIT - 1).collect::<String>());
        }
        let url = format!(
            "{}/bot{}/sendMessage",
            self.config.api_url.trim_end_matches('/'),
            self.config.api_token
        );
        let body = serde_json::json!({"chat_id": self.config.chat_id, "text": text});
        let response = post_json(&url, &body, &[])?;
        // The Bot API answers 200 with {"ok": false, "description": …} for some refusals.
        match serde_json::from_str::<serde_json::Value>(&response.body) {
            Ok(v) if v["ok"] == serde_json::Value::Bool(false) => {
                Err(PluginError::permanent(format!(
                    "Telegram refused the message: {}",
                    v["description"].as_str().unwrap_or("no reason given")
                )))
            }
            _ => Ok(()),
        }
    }
}

backups_sdk::export_notifier!(Telegram);
