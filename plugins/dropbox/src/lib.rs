//! # dropbox — a folder in a Dropbox account, over the Dropbox API v2
//!
//! ```json
//! { "id": "dropbox-backup", "type": "dropbox", "access_token": "…",
//!   "folder": "/backups", "retention_copies": 7 }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `access_token` | an access token of a Dropbox app with `files.content.write` and `files.content.read` (a secret: `{"env": "…"}` or `{"file": "…"}` work too) |
//! | `refresh_token`, `app_key`, `app_secret` | instead of `access_token`: the app's refresh token and key (and secret, unless the token came from PKCE); short-lived access tokens are then fetched from `oauth2/token` as needed (the console's tokens of new apps expire after a few hours) |
//! | `folder` | the folder the backups go under (default `/backups`) |
//! | `chunk_size_mib` | artifacts up to this size are one upload; larger ones an upload session in chunks of this size (default 16, at most 150) |
//! | `api_url`, `content_url` | the API and content hosts (default `https://api.dropboxapi.com`, `https://content.dropboxapi.com`; tests point them at a local server) |
//!
//! An object `host/2026-11-22/020000Z/etc.tar.gz.gpg` becomes the file
//! `{folder}/host/2026-11-22/020000Z/etc.tar.gz.gpg`. An artifact of up to one chunk is
//! one `files/upload`; a larger one an upload session: `upload_session/start` with the
//! first chunk, `upload_session/append_v2` for the next ones, `upload_session/finish`
//! with the last one. The file appears only at `finish`, so a failed upload leaves
//! nothing under the final name (the unfinished session expires at Dropbox; the API has
//! no call to drop it). Only one chunk is in memory: the 150 MB Dropbox allows per
//! request would be 150 MB of memory, so the default is smaller, and anything over 150 MB
//! always goes through a session. Uploads overwrite (a retry may find its own earlier
//! copy) and never rename. Objects are listed with `files/list_folder` (recursive, with
//! `/continue`), fetched with `files/download` and deleted with `files/delete_v2`; a
//! dated folder emptied by a delete is deleted too (Dropbox keeps empty folders).
//! Retention (`retention_copies`, `retention_days`) is decided by the host.
//!
//! Failures: 401 (bad or expired token) and 403 are `auth` (with a refresh token, a 401
//! is `transient`: the retry fetches a new access token); 409 with `path/not_found`
//! is `not-found`; 429 and 5xx and network errors are `transient` (the host retries the
//! upload); other answers `permanent`.
//!
//! Grants derived from these keys: `net` to the API and content hosts
//! (`api.dropboxapi.com`, `content.dropboxapi.com`, https).

mod api;

use api::{Credentials, Dropbox};
use backups_sdk::{
    About, CleanupRule, Context, Destination, Grants, ObjectInfo, ObjectReader, ObjectWriter,
    Plugin, PluginError, Result,
};
use backups_storage_http as http;
use serde::Deserialize;

const MIB: u64 = 1 << 20;
/// Dropbox's limit for one request's body.
const MAX_CHUNK_MIB: u64 = 150;

#[derive(Deserialize)]
pub struct Config {
    access_token: Option<String>,
    refresh_token: Option<String>,
    app_key: Option<String>,
    app_secret: Option<String>,
    #[serde(default = "default_folder")]
    folder: String,
    #[serde(default = "sixteen")]
    chunk_size_mib: u64,
    #[serde(default = "default_api_url")]
    api_url: String,
    #[serde(default = "default_content_url")]
    content_url: String,
}

fn default_folder() -> String {
    "/backups".into()
}
fn sixteen() -> u64 {
    16
}
fn default_api_url() -> String {
    "https://api.dropboxapi.com".into()
}
fn default_content_url() -> String {
    "https://content.dropboxapi.com".into()
}

/// A key that is present and not blank.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl Config {
    fn credentials(&self) -> Result<Credentials> {
        match (
            given(&self.access_token),
            given(&self.refresh_token),
            given(&self.app_key),
        ) {
            (Some(token), None, _) => Ok(Credentials::Token(token.to_string())),
            (None, Some(refresh), Some(key)) => Ok(Credentials::Refresh {
                refresh_token: refresh.to_string(),
                app_key: key.to_string(),
                app_secret: given(&self.app_secret).map(str::to_string),
            }),
            (None, Some(_), None) => Err(PluginError::invalid_config(
                "app_key: needed with refresh_token",
            )),
            (Some(_), Some(_), _) => Err(PluginError::invalid_config(
                "access_token: give it or refresh_token, not both",
            )),
            (None, None, _) => Err(PluginError::invalid_config(
                "access_token: missing (or give refresh_token and app_key)",
            )),
        }
    }
}

pub struct DropboxFolder {
    api: Dropbox,
    /// `""` (the account's root) or `/folder`, without a trailing slash.
    folder: String,
    chunk_size: u64,
}

impl Plugin for DropboxFolder {
    type Config = Config;

    fn about() -> About {
        About::new("dropbox", "a folder in a Dropbox account, over the API v2")
            .version(env!("CARGO_PKG_VERSION"))
            .keys(&[
                "access_token",
                "refresh_token",
                "app_key",
                "app_secret",
                "folder",
                "chunk_size_mib",
                "api_url",
                "content_url",
            ])
            .secrets(&["access_token", "refresh_token", "app_secret"])
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        Ok(Grants {
            net: vec![
                http::grant_for("api_url", &config.api_url)?,
                http::grant_for("content_url", &config.content_url)?,
            ],
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        let credentials = config.credentials()?;
        if !config.folder.starts_with('/') {
            return Err(PluginError::invalid_config(format!(
                "folder: {:?} must start with /",
                config.folder
            )));
        }
        if !(1..=MAX_CHUNK_MIB).contains(&config.chunk_size_mib) {
            return Err(PluginError::invalid_config(format!(
                "chunk_size_mib: {} is not between 1 and {MAX_CHUNK_MIB} (Dropbox's limit per request)",
                config.chunk_size_mib
            )));
        }
        http::grant_for("api_url", &config.api_url)?;
        http::grant_for("content_url", &config.content_url)?;
        Ok(DropboxFolder {
            api: Dropbox::new(
                config.api_url.trim_end_matches('/').to_string(),
                config.content_url.trim_end_matches('/').to_string(),
                credentials,
            ),
            folder: config.folder.trim_end_matches('/').to_string(),
            chunk_size: config.chunk_size_mib * MIB,
        })
    }
}

impl DropboxFolder {
    fn path(&self, key: &str) -> String {
        format!("{}/{key}", self.folder)
    }

    /// An upload session: the file appears only when the last chunk is committed.
    fn put_in_chunks(&self, path: &str, data: &mut ObjectReader, size: u64) -> Result<()> {
        let mut cursor = self
            .api
            .start_session(http::read_part(data, self.chunk_size)?)?;
        loop {
            let chunk = http::read_part(data, self.chunk_size)?;
            let end = cursor.offset + chunk.len() as u64;
            if chunk.is_empty() || end == size {
                http::check_length(end, size)?;
                return self.api.finish(&cursor, chunk, path);
            }
            self.api.append(&mut cursor, chunk)?;
        }
    }

    /// Like a directory on disk: the dated folders whose last object retention deleted go
    /// too (Dropbox keeps empty folders), up to but not including `folder`.
    fn remove_emptied_folders(&self, key: &str) -> Result<()> {
        let mut dir = key;
        while let Some((parent, _)) = dir.rsplit_once('/') {
            let path = self.path(parent);
            if !self.api.is_empty_folder(&path)? {
                return Ok(());
            }
            self.api.delete(&path)?;
            dir = parent;
        }
        Ok(())
    }
}

impl Destination for DropboxFolder {
    fn put(&mut self, key: &str, data: &mut ObjectReader, size: u64) -> Result<()> {
        let path = self.path(key);
        if size <= self.chunk_size {
            return self.api.upload_file(&path, http::read_whole(data, size)?);
        }
        self.put_in_chunks(&path, data, size)
    }

    fn get(&mut self, key: &str, sink: &mut ObjectWriter) -> Result<()> {
        self.api.download(&self.path(key), sink)
    }

    fn list(&mut self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        // Dropbox lists folders: the one the prefix names, filtered by the full prefix.
        let dir = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
        let root = if dir.is_empty() {
            self.folder.clone()
        } else {
            self.path(dir)
        };
        let base = format!("{}/", self.folder).to_lowercase();
        let mut out = Vec::new();
        for entry in self.api.list_folder(&root)? {
            if entry.tag != "file" {
                continue;
            }
            // Dropbox paths are case-insensitive: compare the folder part that way.
            let Some(key) = strip_prefix_ignoring_case(&entry.path_display, &base) else {
                continue;
            };
            if key.starts_with(prefix) {
                out.push(ObjectInfo {
                    key: key.to_string(),
                    size: entry.size,
                    modified: entry.server_modified.as_deref().and_then(unix_seconds),
                });
            }
        }
        Ok(out)
    }

    fn delete(&mut self, key: &str) -> Result<()> {
        self.api.delete(&self.path(key))?;
        if let Err(e) = self.remove_emptied_folders(key) {
            // The object is gone, which is what was asked; an empty folder is clutter.
            backups_sdk::warn!("{key} deleted, but not its emptied folder: {}", e.message);
        }
        Ok(())
    }

    /// Upload sessions cannot be listed; Dropbox expires an unfinished one 7 days after it
    /// began, and it never becomes a file the account's quota counts.
    fn self_cleaning(&mut self) -> Result<CleanupRule> {
        Ok(CleanupRule::ExpiresAfterDays(7))
    }
}

fn strip_prefix_ignoring_case<'a>(text: &'a str, prefix_lower: &str) -> Option<&'a str> {
    let head = text.get(..prefix_lower.len())?;
    (head.to_lowercase() == prefix_lower).then(|| &text[prefix_lower.len()..])
}

/// `2026-11-22T02:00:00Z` → seconds since 1970 (Dropbox's timestamps are always UTC).
fn unix_seconds(stamp: &str) -> Option<u64> {
    let number = |range: std::ops::Range<usize>| stamp.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hh, mm, ss) = (number(11..13)?, number(14..16)?, number(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

backups_sdk::export_destination!(DropboxFolder);
