//! # gdrive — a Google Drive folder (type `gdrive`)
//!
//! ```json
//! { "id": "gdrive-backup", "type": "gdrive",
//!   "creds_file": "/etc/backups/gdrive-service-account.json",
//!   "folder_id": "your-google-drive-folder-id", "retention_copies": 10 }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `creds_file` | the service account's JSON key file (`client_email`, `private_key`, `token_uri`) |
//! | `folder_id` | the Drive folder to store backups in (from its URL); share it with the service account's e-mail as Editor, or use a folder on a shared drive |
//! | `subject` | optional: a Workspace user the account acts for (domain-wide delegation), whose storage the files then use |
//! | `chunk_size_mib` | resumable upload chunk size (default 16; 1 to 1024) |
//! | `api_url` | the API's base URL instead of `https://www.googleapis.com` (tests) |
//! | `token_uri` | the OAuth2 token endpoint, instead of the key file's own |
//!
//! Authentication is the OAuth2 JWT-bearer flow for service accounts (scope `drive`): an
//! RS256-signed assertion from the key file is exchanged for an access token, reused until
//! shortly before it expires. A key file that cannot be read or parsed fails the entry as
//! `invalid-config` naming `creds_file`; a refused assertion or a 401/403 from Drive is
//! `auth`. Service accounts have no storage of their own on My Drive: use a shared drive,
//! or `subject`.
//!
//! Objects are files directly in the folder, named by the whole object key
//! (`host/2026-11-22/020000Z/etc.tar.gz.gpg`: Drive names may contain `/`). Uploads use
//! Drive v3's resumable protocol: a session is opened with the file's name and parent,
//! the bytes go in chunks of `chunk_size_mib` (only the chunk in flight is in memory),
//! and the file exists only once the last chunk is acknowledged; any failure cancels the
//! session, so nothing partial appears. Listing pages through `nextPageToken`; reading
//! (`alt=media`, streamed) and deleting go by file id, looked up by name in the folder.
//! Shared drives are supported (`supportsAllDrives`). Retention deletes files for good
//! (not to the trash).
//!
//! Grants derived from these keys: `read` of `creds_file`; `net` to
//! `https://www.googleapis.com` (or `api_url`'s host) and to `https://oauth2.googleapis.com`
//! (or `token_uri`'s host).

use backups_google_auth::{TokenSource, Upload, http, required, unix_seconds};
use backups_sdk::{
    About, CleanupRule, Context, Destination, Grants, ObjectInfo, ObjectReader, ObjectWriter,
    Plugin, PluginError, Result,
};
use serde::Deserialize;
use std::collections::BTreeMap;

const DRIVE_API: &str = "https://www.googleapis.com";
const SCOPE: &str = "https://www.googleapis.com/auth/drive";
/// The most files a page of `files.list` may hold.
const PAGE_SIZE: u32 = 1000;

#[derive(Deserialize)]
pub struct Config {
    creds_file: Option<String>,
    folder_id: Option<String>,
    subject: Option<String>,
    #[serde(default = "sixteen")]
    chunk_size_mib: u64,
    api_url: Option<String>,
    token_uri: Option<String>,
}

fn sixteen() -> u64 {
    16
}

impl Config {
    fn api(&self) -> &str {
        self.api_url
            .as_deref()
            .unwrap_or(DRIVE_API)
            .trim_end_matches('/')
    }

    fn creds_path(&self) -> Result<&str> {
        required(
            &self.creds_file,
            "creds_file",
            "the service account's JSON key file",
        )
    }

    /// Drive ids are letters, digits, `-` and `_`: checked, so the id can go into a query
    /// string literal as it is.
    fn folder_id(&self) -> Result<&str> {
        let id = required(&self.folder_id, "folder_id", "the Drive folder's id")?;
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(PluginError::invalid_config(format!(
                "folder_id: {id:?} is not a Drive id (the last part of the folder's URL)"
            )));
        }
        Ok(id)
    }
}

pub struct Drive {
    auth: TokenSource,
    api: String,
    folder_id: String,
    chunk_size: u64,
}

impl Plugin for Drive {
    type Config = Config;

    fn about() -> About {
        About::new(
            "gdrive",
            "a Google Drive folder (Drive API v3, resumable uploads)",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(&[
            "creds_file",
            "folder_id",
            "subject",
            "chunk_size_mib",
            "api_url",
            "token_uri",
        ])
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        backups_google_auth::derived_grants(
            config.creds_path()?,
            config.api(),
            "api_url",
            config.token_uri.as_deref(),
        )
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        let folder_id = config.folder_id()?.to_string();
        backups_google_auth::origin(config.api(), "api_url")?;
        let chunk_size = backups_google_auth::chunk_size(config.chunk_size_mib, "chunk_size_mib")?;
        let auth = backups_google_auth::token_source(
            config.creds_path()?,
            "creds_file",
            SCOPE,
            config.token_uri.clone(),
            config.subject.clone(),
        )?;
        Ok(Drive {
            auth,
            api: config.api().to_string(),
            folder_id,
            chunk_size,
        })
    }
}

/// One page of `files.list`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilePage {
    #[serde(default)]
    files: Vec<DriveFile>,
    next_page_token: Option<String>,
}

/// The fields of a file resource we ask for (`size` is a decimal string).
#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct DriveFile {
    id: String,
    name: String,
    size: Option<String>,
    modified_time: Option<String>,
}

impl DriveFile {
    fn modified(&self) -> Option<u64> {
        self.modified_time.as_deref().and_then(unix_seconds)
    }
}

/// A string literal in a Drive query: `'` and `\` escaped with `\`.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl Drive {
    fn file_url(&self, id: &str) -> String {
        format!("{}/drive/v3/files/{}", self.api, http::encode(id))
    }

    /// Every file in the folder that is not in the trash, or only those named `name`.
    fn files(&mut self, name: Option<&str>) -> Result<Vec<DriveFile>> {
        let mut query = format!("{} in parents and trashed=false", quoted(&self.folder_id));
        if let Some(name) = name {
            query += &format!(" and name = {}", quoted(name));
        }
        let what = format!("listing the files in folder {}", self.folder_id);
        let mut files = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/drive/v3/files?q={}&fields={}&pageSize={PAGE_SIZE}\
                 &supportsAllDrives=true&includeItemsFromAllDrives=true",
                self.api,
                http::encode(&query),
                http::encode("nextPageToken,files(id,name,size,modifiedTime)"),
            );
            if let Some(token) = &page_token {
                url += &format!("&pageToken={}", http::encode(token));
            }
            let authorization = self.auth.authorization()?;
            let page: FilePage = http::send("GET", &url, &[("authorization", &authorization)], "")?
                .success(&what)?
                .json(&what)?;
            files.extend(page.files);
            page_token = page.next_page_token.filter(|t| !t.is_empty());
            if page_token.is_none() {
                return Ok(files);
            }
        }
    }
}

impl Destination for Drive {
    fn put(&mut self, key: &str, data: &mut ObjectReader, size: u64) -> Result<()> {
        let start_url = format!(
            "{}/upload/drive/v3/files?uploadType=resumable&supportsAllDrives=true&fields=id",
            self.api
        );
        let what = format!("storing {key}");
        let upload = Upload {
            start_url: &start_url,
            metadata: Some(serde_json::json!({"name": key, "parents": [self.folder_id]})),
            size,
            chunk_size: self.chunk_size,
            what: &what,
        };
        upload.run(&mut self.auth, data).map(|_| ())
    }

    fn get(&mut self, key: &str, sink: &mut ObjectWriter) -> Result<()> {
        // Names are not unique in Drive: should a retried upload have stored one twice,
        // the newest is the object.
        let file = self
            .files(Some(key))?
            .into_iter()
            .max_by_key(DriveFile::modified)
            .ok_or_else(|| {
                PluginError::not_found(format!("{key}: no such file in folder {}", self.folder_id))
            })?;
        let authorization = self.auth.authorization()?;
        let url = format!(
            "{}?alt=media&supportsAllDrives=true",
            self.file_url(&file.id)
        );
        http::download(
            &url,
            &[("authorization", &authorization)],
            sink,
            &format!("fetching {key}"),
        )
        .map(|_| ())
    }

    fn list(&mut self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        // One entry per name (the newest), however many files carry it.
        let mut newest: BTreeMap<String, DriveFile> = BTreeMap::new();
        for file in self.files(None)? {
            if !file.name.starts_with(prefix) {
                continue;
            }
            match newest.get(&file.name) {
                Some(seen) if seen.modified() >= file.modified() => {}
                _ => {
                    newest.insert(file.name.clone(), file);
                }
            }
        }
        Ok(newest
            .into_values()
            .map(|file| ObjectInfo {
                size: file
                    .size
                    .as_deref()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                modified: file.modified(),
                key: file.name,
            })
            .collect())
    }

    fn delete(&mut self, key: &str) -> Result<()> {
        for file in self.files(Some(key))? {
            let authorization = self.auth.authorization()?;
            let url = format!("{}?supportsAllDrives=true", self.file_url(&file.id));
            let response = http::send("DELETE", &url, &[("authorization", &authorization)], "")?;
            if response.status != 404 {
                response.success(&format!("deleting {key} (file {})", file.id))?;
            }
        }
        Ok(())
    }

    /// Resumable upload sessions cannot be listed; Drive expires an unfinished one a week
    /// after it began, and it never becomes a file the account's quota counts.
    fn self_cleaning(&mut self) -> Result<CleanupRule> {
        Ok(CleanupRule::ExpiresAfterDays(7))
    }
}

backups_sdk::export_destination!(Drive);
