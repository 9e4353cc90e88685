//! # gs — a Google Cloud Storage bucket (type `gs`)
//!
//! ```json
//! { "id": "gcs-backup", "type": "gs", "bucket": "my-backup-bucket",
//!   "gcs_creds_path": "/etc/backups/gcs-service-account.json",
//!   "retention_copies": 7, "retention_days": 30 }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `bucket` | the bucket (it must exist) |
//! | `gcs_creds_path` | the service account's JSON key file (`client_email`, `private_key`, `token_uri`); the account needs Storage Object Admin on the bucket |
//! | `prefix` | a folder inside the bucket to keep the backups under |
//! | `chunk_size_mib` | resumable upload chunk size (default 16; 1 to 1024) |
//! | `endpoint_url` | a GCS-compatible JSON API endpoint instead of `https://storage.googleapis.com` (an emulator such as fake-gcs-server) |
//! | `token_uri` | the OAuth2 token endpoint, instead of the key file's own |
//!
//! Authentication is the OAuth2 JWT-bearer flow for service accounts: an RS256-signed
//! assertion from the key file is exchanged at the token endpoint for an access token
//! (scope `devstorage.read_write`), which is reused until shortly before it expires. A key
//! file that cannot be read or parsed fails the entry as `invalid-config` naming
//! `gcs_creds_path`; a refused assertion (wrong key, unknown or disabled account) is `auth`.
//!
//! Every object is stored with the JSON API's resumable upload: a session is opened, the
//! bytes go in chunks of `chunk_size_mib` (only the chunk in flight is in memory), and the
//! object exists only once the last chunk is acknowledged. A chunk that fails on the
//! network is resumed from what the server persisted; any other failure cancels the
//! session, so a failed upload leaves nothing under the name. Objects are read back with
//! `alt=media`, streamed. Listing pages through `pageToken`. Deletion rules (for
//! `backups status`) are read from the bucket's lifecycle configuration (`Delete` rules
//! with an `age`).
//!
//! Grants derived from these keys: `read` of `gcs_creds_path`; `net` to
//! `https://storage.googleapis.com` (or `endpoint_url`'s host) and to
//! `https://oauth2.googleapis.com` (or `token_uri`'s host).

use backups_google_auth::{TokenSource, Upload, http, required, unix_seconds};
use backups_sdk::{
    About, CleanupRule, Context, DeletionRule, Destination, Grants, ObjectInfo, ObjectReader,
    ObjectWriter, Plugin, PluginError, Result,
};
use serde::Deserialize;

const GCS_API: &str = "https://storage.googleapis.com";
/// Objects only: create, read, list, delete.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

#[derive(Deserialize)]
pub struct Config {
    bucket: Option<String>,
    gcs_creds_path: Option<String>,
    #[serde(default)]
    prefix: String,
    #[serde(default = "sixteen")]
    chunk_size_mib: u64,
    endpoint_url: Option<String>,
    token_uri: Option<String>,
}

fn sixteen() -> u64 {
    16
}

impl Config {
    fn api(&self) -> &str {
        self.endpoint_url
            .as_deref()
            .unwrap_or(GCS_API)
            .trim_end_matches('/')
    }

    fn creds_path(&self) -> Result<&str> {
        required(
            &self.gcs_creds_path,
            "gcs_creds_path",
            "the service account's JSON key file",
        )
    }

    /// Bucket names are lowercase letters, digits, `-`, `_` and `.`; checking that here
    /// keeps the name safe to put in a URL path as it is.
    fn bucket(&self) -> Result<&str> {
        let bucket = required(&self.bucket, "bucket", "the bucket's name")?;
        let valid = bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !valid {
            return Err(PluginError::invalid_config(format!(
                "bucket: {bucket:?} is not a bucket name (lowercase letters, digits, -, _ and .)"
            )));
        }
        Ok(bucket)
    }
}

pub struct Gcs {
    auth: TokenSource,
    /// `{api}/storage/v1/b/{bucket}`, where objects are read, listed and deleted.
    bucket_url: String,
    /// `{api}/upload/storage/v1/b/{bucket}/o`, where uploads start.
    upload_url: String,
    prefix: String,
    chunk_size: u64,
}

impl Plugin for Gcs {
    type Config = Config;

    fn about() -> About {
        About::new(
            "gs",
            "a Google Cloud Storage bucket (JSON API, resumable uploads)",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(&[
            "bucket",
            "gcs_creds_path",
            "prefix",
            "chunk_size_mib",
            "endpoint_url",
            "token_uri",
        ])
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        backups_google_auth::derived_grants(
            config.creds_path()?,
            config.api(),
            "endpoint_url",
            config.token_uri.as_deref(),
        )
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        let bucket = config.bucket()?;
        let api = config.api();
        backups_google_auth::origin(api, "endpoint_url")?;
        let chunk_size = backups_google_auth::chunk_size(config.chunk_size_mib, "chunk_size_mib")?;
        let auth = backups_google_auth::token_source(
            config.creds_path()?,
            "gcs_creds_path",
            SCOPE,
            config.token_uri.clone(),
            None,
        )?;
        let prefix = config.prefix.trim_matches('/');
        Ok(Gcs {
            auth,
            bucket_url: format!("{api}/storage/v1/b/{bucket}"),
            upload_url: format!("{api}/upload/storage/v1/b/{bucket}/o"),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            chunk_size,
        })
    }
}

/// One page of `objects.list`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectPage {
    #[serde(default)]
    items: Vec<StoredObject>,
    next_page_token: Option<String>,
}

/// The fields of an object resource that listing uses (`size` is a decimal string).
#[derive(Deserialize)]
struct StoredObject {
    name: String,
    size: Option<String>,
    updated: Option<String>,
}

/// `buckets.get?fields=lifecycle`.
#[derive(Deserialize, Default)]
struct BucketLifecycle {
    #[serde(default)]
    lifecycle: Lifecycle,
}

#[derive(Deserialize, Default)]
struct Lifecycle {
    #[serde(default)]
    rule: Vec<LifecycleRule>,
}

#[derive(Deserialize)]
struct LifecycleRule {
    action: LifecycleAction,
    #[serde(default)]
    condition: LifecycleCondition,
}

#[derive(Deserialize)]
struct LifecycleAction {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LifecycleCondition {
    age: Option<u32>,
    #[serde(default)]
    matches_prefix: Vec<String>,
    /// `false`: the rule only touches noncurrent versions, never the live copies.
    is_live: Option<bool>,
    num_newer_versions: Option<u32>,
    days_since_noncurrent_time: Option<u32>,
}

impl Gcs {
    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// `{bucket_url}/o/{name}`: the object's resource URL (the name percent-encoded,
    /// slashes included, as the JSON API requires).
    fn object_url(&self, name: &str) -> String {
        format!("{}/o/{}", self.bucket_url, http::encode(name))
    }
}

impl Destination for Gcs {
    fn put(&mut self, key: &str, data: &mut ObjectReader, size: u64) -> Result<()> {
        let name = self.name(key);
        let start_url = format!(
            "{}?uploadType=resumable&name={}",
            self.upload_url,
            http::encode(&name)
        );
        let what = format!("storing {name}");
        let upload = Upload {
            start_url: &start_url,
            metadata: None,
            size,
            chunk_size: self.chunk_size,
            what: &what,
        };
        upload.run(&mut self.auth, data).map(|_| ())
    }

    fn get(&mut self, key: &str, sink: &mut ObjectWriter) -> Result<()> {
        let name = self.name(key);
        let authorization = self.auth.authorization()?;
        let url = format!("{}?alt=media", self.object_url(&name));
        http::download(
            &url,
            &[("authorization", &authorization)],
            sink,
            &format!("fetching {name}"),
        )
        .map(|_| ())
    }

    fn list(&mut self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let full = self.name(prefix);
        let what = format!("listing {full}");
        let mut out = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/o?prefix={}&fields={}",
                self.bucket_url,
                http::encode(&full),
                http::encode("items(name,size,updated),nextPageToken")
            );
            if let Some(token) = &page_token {
                url += &format!("&pageToken={}", http::encode(token));
            }
            let authorization = self.auth.authorization()?;
            let page: ObjectPage =
                http::send("GET", &url, &[("authorization", &authorization)], "")?
                    .success(&what)?
                    .json(&what)?;
            for object in page.items {
                let Some(key) = object.name.strip_prefix(&self.prefix) else {
                    continue;
                };
                out.push(ObjectInfo {
                    key: key.to_string(),
                    size: object.size.and_then(|s| s.parse().ok()).unwrap_or(0),
                    modified: object.updated.as_deref().and_then(unix_seconds),
                });
            }
            page_token = page.next_page_token.filter(|t| !t.is_empty());
            if page_token.is_none() {
                return Ok(out);
            }
        }
    }

    fn delete(&mut self, key: &str) -> Result<()> {
        let name = self.name(key);
        let authorization = self.auth.authorization()?;
        let response = http::send(
            "DELETE",
            &self.object_url(&name),
            &[("authorization", &authorization)],
            "",
        )?;
        if response.status == 404 {
            return Ok(()); // already gone
        }
        response.success(&format!("deleting {name}")).map(|_| ())
    }

    fn deletion_rules(&mut self) -> Result<Vec<DeletionRule>> {
        let what = "reading the bucket's lifecycle rules";
        let authorization = self.auth.authorization()?;
        let url = format!("{}?fields=lifecycle", self.bucket_url);
        let bucket: BucketLifecycle =
            http::send("GET", &url, &[("authorization", &authorization)], "")?
                .success(what)?
                .json(what)?;
        let mut rules = Vec::new();
        for (number, rule) in bucket.lifecycle.rule.iter().enumerate() {
            let c = &rule.condition;
            let only_old_versions = c.is_live == Some(false)
                || c.num_newer_versions.is_some()
                || c.days_since_noncurrent_time.is_some();
            let Some(days) = c.age else { continue };
            if rule.action.kind != "Delete" || only_old_versions {
                continue;
            }
            let prefixes = if c.matches_prefix.is_empty() {
                vec![String::new()]
            } else {
                c.matches_prefix.clone()
            };
            for prefix in prefixes {
                // A rule for another folder of the bucket does not touch ours.
                if !(prefix.starts_with(&self.prefix) || self.prefix.starts_with(&prefix)) {
                    continue;
                }
                rules.push(DeletionRule {
                    // GCS rules have no names: call them by their place in the list.
                    id: format!("lifecycle rule {}", number + 1),
                    // Relative to where this destination keeps its objects.
                    prefix: prefix.strip_prefix(&self.prefix).unwrap_or("").to_string(),
                    expire_after_days: days,
                });
            }
        }
        Ok(rules)
    }

    /// Resumable upload sessions cannot be listed; GCS expires an unfinished one a week
    /// after it began, and it never becomes an object.
    fn self_cleaning(&mut self) -> Result<CleanupRule> {
        Ok(CleanupRule::ExpiresAfterDays(7))
    }
}

backups_sdk::export_destination!(Gcs);
