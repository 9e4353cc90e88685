//! # matrix — a message in a Matrix room
//!
//! ```json
//! { "type": "matrix", "url": "https://matrix.org", "access_token": "…",
//!   "room_id": "!roomidstringofchars:matrix.org", "notify_on_success": 0, "notify_on_failure": 1 }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `url` | the homeserver |
//! | `access_token` | a pre-obtained access token of the bot user (a secret: redacted everywhere) |
//! | `room_id` | the room to post in (the bot must have joined it) |
//!
//! `PUT {url}/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}` with an
//! `m.text` body: the headline, and the summary table for failures
//! and stale alerts. The transaction id is the run id and report kind, so a retried
//! request is not posted twice. As in the legacy tool, it sends nothing unless
//! `notify_on_success` / `notify_on_failure` say so. Grant derived from `url`.

use backups_notify_http::{good_news, grant_for, headline, kind_name, send};
use backups_sdk::{About, Context, Grants, Notifier, Plugin, PluginError, Report, Result};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Config {
    url: String,
    access_token: String,
    room_id: String,
}

pub struct Matrix {
    config: Config,
}

/// Percent-encodes a path segment (room ids contain `!` and `:`).
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl Plugin for Matrix {
    type Config = Config;

    fn about() -> About {
        About::new(
            "matrix",
            "a message in a Matrix room through the client-server API",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(&["url", "access_token", "room_id"])
        .secrets(&["access_token"])
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
        if !config.room_id.starts_with('!') {
            return Err(PluginError::invalid_config(format!(
                "room_id: {:?} is not a room id (they start with '!')",
                config.room_id
            )));
        }
        if config.access_token.is_empty() {
            return Err(PluginError::invalid_config("access_token: missing"));
        }
        Ok(Matrix { config })
    }
}

impl Notifier for Matrix {
    fn notify(&mut self, report: &Report) -> Result<()> {
        let text = if good_news(report) {
            headline(report)
        } else {
            format!("{}\n\n{}", headline(report), report.summary)
        };
        let kind = kind_name(report);
        let url = format!(
            "{}/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            self.config.url.trim_end_matches('/'),
            segment(&self.config.room_id),
            segment(&format!("backups-{}-{kind}", report.run_id))
        );
        let body = serde_json::json!({"msgtype": "m.text", "body": text});
        let headers = [
            ("content-type", "application/json".to_string()),
            (
                "authorization",
                format!("Bearer {}", self.config.access_token),
            ),
        ];
        send("PUT", &url, &headers, body.to_string().into_bytes()).map(|_| ())
    }
}

backups_sdk::export_notifier!(Matrix);
