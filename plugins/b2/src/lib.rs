//! # b2 — a Backblaze B2 bucket, over the native B2 API
//!
//! ```json
//! { "id": "b2-backup", "type": "b2", "bucket": "my-backup-bucket",
//!   "credentials": { "application_key_id": "…", "application_key": "…" },
//!   "retention_copies": 5, "retention_days": 30 }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `bucket` | the bucket's name (it must exist) |
//! | `credentials.application_key_id`, `credentials.application_key` | an application key with read, write, list and delete access to the bucket; without them `B2_APPLICATION_KEY_ID` / `B2_APPLICATION_KEY`, if the job grants those variables (`grants.env`) |
//! | `prefix` | a folder inside the bucket to keep the backups under |
//! | `part_size_mib` | large-file part size (default 16, at least 5; grows for very large artifacts) |
//! | `api_url` | where `b2_authorize_account` is called (default `https://api.backblazeb2.com`; tests point it at a local server) |
//!
//! The API (version 2) is used as Backblaze publishes it: `b2_authorize_account` gives the
//! account's API and download URLs and a token, `b2_list_buckets` the bucket's id.
//! An artifact of up to one part is one `b2_upload_file` (to a URL from
//! `b2_get_upload_url`); a larger one is a large file: `b2_start_large_file`, one
//! `b2_upload_part` per part, `b2_finish_large_file` — and `b2_cancel_large_file` on any
//! failure, so a partial upload never becomes a file. Only the part being sent is in
//! memory, which is also what lets every upload carry its SHA-1 in `X-Bz-Content-Sha1`
//! (B2 checks it; no `do_not_verify`, no trailing checksum needed). Objects are listed
//! with `b2_list_file_names`, fetched with a download by name, and deleted with
//! `b2_delete_file_version` — every version of the name, so an older version never
//! resurfaces. The bucket's lifecycle rules (days from uploading to hiding) are reported
//! for `backups status`. Retention (`retention_copies`, `retention_days`) is decided by
//! the host.
//!
//! Failures: 5xx, 408, 429, an expired token and network errors are `transient` (the host
//! retries the upload, which authorizes again and gets a fresh upload URL, as Backblaze
//! asks); a bad key is `auth`; a missing bucket or file `not-found`.
//!
//! Grants derived from these keys: `net` to `api.backblazeb2.com` and to the hosts
//! Backblaze hands out after authorizing — API and download URLs under
//! `*.backblazeb2.com`, upload URLs under `*.backblaze.com` (all https). With another
//! `api_url`, only that URL's host: the URLs it hands out must be on it too, or be
//! granted in `grants.net`. `env` for the B2 variables when `credentials` is absent.

mod api;

use api::Session;
use backups_sdk::{
    About, CleanupRule, Context, DeletionRule, Destination, ErrorKind, Grants, Leftover,
    ObjectInfo, ObjectReader, ObjectWriter, Plugin, PluginError, Result,
};
use backups_storage_http as http;
use serde::Deserialize;

const MIB: u64 = 1 << 20;
/// B2 allows 10 000 parts per large file.
const MAX_PARTS: u64 = 10_000;
const DEFAULT_API_URL: &str = "https://api.backblazeb2.com";
/// Where Backblaze's API and download URLs live, and where its upload pods live.
const PROVIDER_HOSTS: [&str; 3] = [
    DEFAULT_API_URL,
    "https://*.backblazeb2.com",
    "https://*.backblaze.com",
];
const KEY_ENV: [&str; 2] = ["B2_APPLICATION_KEY_ID", "B2_APPLICATION_KEY"];

#[derive(Deserialize)]
pub struct Config {
    bucket: String,
    #[serde(default)]
    credentials: Credentials,
    #[serde(default)]
    prefix: String,
    #[serde(default = "default_api_url")]
    api_url: String,
    #[serde(default = "sixteen")]
    part_size_mib: u64,
}

fn default_api_url() -> String {
    DEFAULT_API_URL.into()
}
fn sixteen() -> u64 {
    16
}

#[derive(Deserialize, Default)]
struct Credentials {
    application_key_id: Option<String>,
    application_key: Option<String>,
}

impl Config {
    fn api_url(&self) -> String {
        self.api_url.trim_end_matches('/').to_string()
    }

    fn peers(&self) -> Result<Vec<String>> {
        if self.api_url() == DEFAULT_API_URL {
            Ok(PROVIDER_HOSTS.map(String::from).to_vec())
        } else {
            Ok(vec![http::grant_for("api_url", &self.api_url)?])
        }
    }

    fn key_pair(&self) -> Result<(String, String)> {
        let c = &self.credentials;
        match (&c.application_key_id, &c.application_key) {
            (Some(id), Some(key)) => Ok((id.clone(), key.clone())),
            (None, None) => match KEY_ENV.map(std::env::var) {
                [Ok(id), Ok(key)] => Ok((id, key)),
                _ => Err(PluginError::auth(
                    "no credentials: set credentials.application_key_id and application_key, \
                     or grant env B2_APPLICATION_KEY_ID and B2_APPLICATION_KEY",
                )),
            },
            _ => Err(PluginError::invalid_config(
                "credentials: give both application_key_id and application_key",
            )),
        }
    }
}

pub struct B2 {
    api_url: String,
    key_id: String,
    key: String,
    bucket: String,
    /// `""` or `folder/`.
    prefix: String,
    part_size: u64,
    /// Authorized on first use (not in `configure`: `--dry-run` must not call out), and
    /// again after a transient failure.
    session: Option<Session>,
}

impl Plugin for B2 {
    type Config = Config;

    fn about() -> About {
        About::new("b2", "a Backblaze B2 bucket, over the native B2 API")
            .version(env!("CARGO_PKG_VERSION"))
            .keys(&[
                "bucket",
                "credentials",
                "prefix",
                "part_size_mib",
                "api_url",
            ])
            .secrets(&["credentials.application_key"])
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        let c = &config.credentials;
        let has_keys = c.application_key_id.is_some() || c.application_key.is_some();
        Ok(Grants {
            net: config.peers()?,
            env: if has_keys {
                Vec::new()
            } else {
                KEY_ENV.map(String::from).to_vec()
            },
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        if config.bucket.is_empty() {
            return Err(PluginError::invalid_config("bucket: missing"));
        }
        if config.part_size_mib < 5 {
            return Err(PluginError::invalid_config(
                "part_size_mib: B2 parts are at least 5 MB",
            ));
        }
        config.peers()?;
        let (key_id, key) = config.key_pair()?;
        let prefix = config.prefix.trim_matches('/');
        Ok(B2 {
            api_url: config.api_url(),
            key_id,
            key,
            bucket: config.bucket.clone(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            part_size: config.part_size_mib * MIB,
            session: None,
        })
    }
}

impl B2 {
    fn session(&mut self) -> Result<&Session> {
        if self.session.is_none() {
            self.session = Some(Session::open(
                &self.api_url,
                &self.key_id,
                &self.key,
                &self.bucket,
            )?);
        }
        Ok(self.session.as_ref().expect("just opened"))
    }

    /// Runs `f` on the session; a transient failure drops the session, so the host's
    /// retry authorizes again (a new token, fresh upload URLs).
    fn with_session<T>(&mut self, f: impl FnOnce(&Session) -> Result<T>) -> Result<T> {
        let result = self.session().and_then(f);
        if matches!(&result, Err(e) if e.kind == ErrorKind::Transient) {
            self.session = None;
        }
        result
    }

    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn part_size_for(&self, size: u64) -> u64 {
        let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        self.part_size.max(needed)
    }
}

/// Sends `size` bytes as a large file in parts of `part_size`; the file exists only once
/// `b2_finish_large_file` succeeded, and is cancelled on any failure before that.
fn upload_large(
    session: &Session,
    name: &str,
    data: &mut ObjectReader,
    size: u64,
    part_size: u64,
) -> Result<()> {
    let part_size = part_size.max(session.account.absolute_minimum_part_size);
    let file_id = session.start_large_file(name)?;
    let sent = (|| {
        let target = session.upload_part_url(&file_id)?;
        let mut sha1s = Vec::new();
        let mut total = 0u64;
        for number in 1.. {
            let part = http::read_part(data, part_size)?;
            if part.is_empty() {
                break;
            }
            total += part.len() as u64;
            sha1s.push(session.upload_part(&target, number, part)?);
        }
        http::check_length(total, size)?;
        session.finish_large_file(&file_id, &sha1s)
    })();
    if sent.is_err() {
        // Never leave the parts behind: they cost storage and no listing shows them.
        let _ = session.cancel_large_file(&file_id);
    }
    sent
}

impl Destination for B2 {
    fn put(&mut self, key: &str, data: &mut ObjectReader, size: u64) -> Result<()> {
        let name = self.name(key);
        if size <= self.part_size {
            let body = http::read_whole(data, size)?;
            return self.with_session(|s| {
                let target = s.upload_url()?;
                s.upload_file(&target, &name, body)
            });
        }
        let part_size = self.part_size_for(size);
        self.with_session(|s| upload_large(s, &name, data, size, part_size))
    }

    fn get(&mut self, key: &str, sink: &mut ObjectWriter) -> Result<()> {
        let name = self.name(key);
        self.with_session(|s| s.download(&name, sink))
    }

    fn list(&mut self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let full = self.name(prefix);
        let own = self.prefix.clone();
        self.with_session(|s| {
            let mut out = Vec::new();
            let mut start: Option<String> = None;
            loop {
                let page = s.list_file_names(&full, start.as_deref())?;
                for file in page.files {
                    let Some(key) = file.file_name.strip_prefix(&own) else {
                        continue;
                    };
                    if file.action == "upload" {
                        out.push(ObjectInfo {
                            key: key.to_string(),
                            size: file.content_length,
                            modified: Some(file.upload_timestamp / 1000),
                        });
                    }
                }
                match page.next_file_name {
                    Some(next) => start = Some(next),
                    None => return Ok(out),
                }
            }
        })
    }

    fn delete(&mut self, key: &str) -> Result<()> {
        let name = self.name(key);
        self.with_session(|s| {
            // Every version of the name: deleting only the newest would bring back an
            // older one (a retried upload can leave two).
            let mut start: (String, Option<String>) = (name.clone(), None);
            loop {
                let page = s.list_file_versions(&name, (&start.0, start.1.as_deref()))?;
                for version in page.files.iter().filter(|f| f.file_name == name) {
                    match s.delete_file_version(&name, &version.file_id) {
                        Err(e) if e.kind == ErrorKind::NotFound => {}
                        other => other?,
                    }
                }
                match (page.next_file_name, page.next_file_id) {
                    (Some(next), id) if next == name => start = (next, id),
                    _ => return Ok(()),
                }
            }
        })
    }

    fn deletion_rules(&mut self) -> Result<Vec<DeletionRule>> {
        let own = self.prefix.clone();
        self.with_session(|s| {
            Ok(s.lifecycle_rules
                .iter()
                .filter_map(|rule| {
                    let days = rule.days_from_uploading_to_hiding?;
                    // Relative to where this destination keeps its objects; a rule for
                    // another folder of the bucket does not touch them.
                    let prefix = if let Some(inner) = rule.file_name_prefix.strip_prefix(&own) {
                        inner.to_string()
                    } else if own.starts_with(&rule.file_name_prefix) {
                        String::new()
                    } else {
                        return None;
                    };
                    Some(DeletionRule {
                        id: format!("lifecycle rule for {:?}", rule.file_name_prefix),
                        prefix,
                        expire_after_days: days,
                    })
                })
                .collect())
        })
    }

    /// Large files a killed run started and never finished: B2 keeps (and bills) their
    /// parts until they are cancelled, and no file listing shows them.
    fn list_leftovers(&mut self, prefix: &str) -> Result<Vec<Leftover>> {
        let full = self.name(prefix);
        let own = self.prefix.clone();
        self.with_session(|s| {
            let mut out = Vec::new();
            let mut start: Option<String> = None;
            loop {
                let page = s.list_unfinished_large_files(&full, start.as_deref())?;
                for file in page.files {
                    let Some(key) = file.file_name.strip_prefix(&own) else {
                        continue;
                    };
                    // Its cost as far as B2 says; one it cannot size is still listed (the
                    // host may not even count it as this job's).
                    let size = s.uploaded_bytes(&file.file_id).unwrap_or_else(|e| {
                        backups_sdk::debug!("sizing {}: {}", file.file_name, e.message);
                        0
                    });
                    out.push(Leftover {
                        key: key.to_string(),
                        size,
                        id: file.file_id,
                        modified: file.upload_timestamp / 1000,
                    });
                }
                match page.next_file_id {
                    Some(next) => start = Some(next),
                    None => return Ok(out),
                }
            }
        })
    }

    fn remove_leftover(&mut self, leftover: &Leftover) -> Result<()> {
        self.with_session(|s| match s.cancel_large_file(&leftover.id) {
            // Finished or cancelled meanwhile: nothing left.
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::InvalidConfig) => {
                backups_sdk::debug!("{}: already gone ({})", leftover.id, e.message);
                Ok(())
            }
            other => other,
        })
    }

    /// A lifecycle rule over this destination's prefix that cancels unfinished large files.
    fn self_cleaning(&mut self) -> Result<CleanupRule> {
        let own = self.prefix.clone();
        self.with_session(|s| {
            let days = s
                .lifecycle_rules
                .iter()
                .filter(|rule| own.starts_with(&rule.file_name_prefix))
                .filter_map(|rule| rule.days_from_starting_to_canceling_unfinished_large_files)
                .min();
            Ok(match days {
                Some(d) => CleanupRule::AfterDays(d),
                None => CleanupRule::Absent,
            })
        })
    }
}

backups_sdk::export_destination!(B2);
