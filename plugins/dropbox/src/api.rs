//! The Dropbox API v2 calls this destination makes, each with its errors typed for the
//! host. Shapes follow Dropbox's published definitions: RPC endpoints take and return
//! JSON on the API host; content endpoints take their arguments in the
//! `Dropbox-API-Arg` header and the bytes as the body, on the content host.

use backups_sdk::{PluginError, Result};
use backups_storage_http::{self as http, Reply};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::io::Write;

/// Dropbox's error body: `{"error_summary": "path/not_found/..", "error": {…}}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error_summary: String,
}

/// A failed answer as an error the host can act on. 409 is Dropbox's "the endpoint's
/// own error": `not-found` when the path does not exist, `permanent` otherwise.
fn failure(what: &str, reply: &Reply) -> PluginError {
    let summary = serde_json::from_slice::<ErrorBody>(&reply.body)
        .map(|b| b.error_summary)
        .unwrap_or_default();
    let detail = if summary.is_empty() {
        reply.text()
    } else {
        summary.clone()
    };
    let message = format!("{what}: {detail} (HTTP {})", reply.status);
    match reply.status {
        409 if is_not_found(&summary) => PluginError::not_found(message),
        409 if summary.starts_with("too_many_write_operations") => PluginError::transient(message),
        _ => reply.error(message),
    }
}

/// `path/not_found/…` (download, list) or `path_lookup/not_found/…` (delete).
fn is_not_found(summary: &str) -> bool {
    summary.starts_with("path/not_found") || summary.starts_with("path_lookup/not_found")
}

/// One file or folder of a listing.
#[derive(Deserialize)]
pub struct Entry {
    #[serde(rename = ".tag")]
    pub tag: String,
    pub path_display: String,
    #[serde(default)]
    pub size: u64,
    /// `2026-11-22T02:00:00Z`.
    pub server_modified: Option<String>,
}

#[derive(Deserialize)]
pub struct Listing {
    pub entries: Vec<Entry>,
    pub cursor: String,
    pub has_more: bool,
}

#[derive(Deserialize)]
struct Session {
    session_id: String,
}

/// Where an upload session stands: the next byte Dropbox expects.
pub struct Cursor {
    session_id: String,
    pub offset: u64,
}

/// How the destination gets its access token.
pub enum Credentials {
    /// A token from the app console (the legacy `access_token`).
    Token(String),
    /// A refresh token: short-lived access tokens are asked for at `oauth2/token`.
    Refresh {
        refresh_token: String,
        app_key: String,
        app_secret: Option<String>,
    },
}

/// An account reached through its access token.
pub struct Dropbox {
    pub api_url: String,
    pub content_url: String,
    pub credentials: Credentials,
    /// The access token in use; `None` until a refresh token was exchanged for one, and
    /// again once Dropbox said it expired.
    token: RefCell<Option<String>>,
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
}

impl Dropbox {
    pub fn new(api_url: String, content_url: String, credentials: Credentials) -> Self {
        let token = match &credentials {
            Credentials::Token(t) => Some(t.clone()),
            Credentials::Refresh { .. } => None,
        };
        Dropbox {
            api_url,
            content_url,
            credentials,
            token: RefCell::new(token),
        }
    }

    fn bearer(&self) -> Result<(&'static str, String)> {
        if self.token.borrow().is_none() {
            *self.token.borrow_mut() = Some(self.refreshed_token()?);
        }
        let token = self.token.borrow();
        Ok((
            "authorization",
            format!("Bearer {}", token.as_deref().unwrap_or_default()),
        ))
    }

    /// `oauth2/token` with `grant_type=refresh_token`: a fresh short-lived access token.
    fn refreshed_token(&self) -> Result<String> {
        let Credentials::Refresh {
            refresh_token,
            app_key,
            app_secret,
        } = &self.credentials
        else {
            return Err(PluginError::auth("the access token was refused"));
        };
        let mut form = format!(
            "grant_type=refresh_token&refresh_token={}&client_id={}",
            http::encode_path(refresh_token),
            http::encode_path(app_key)
        );
        if let Some(secret) = app_secret {
            form.push_str(&format!("&client_secret={}", http::encode_path(secret)));
        }
        let url = format!("{}/oauth2/token", self.api_url);
        let headers = [(
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        )];
        let reply = http::send("POST", &url, &headers, form.into_bytes())?;
        match reply.status {
            200..=299 => Ok(reply.json::<Token>("oauth2/token")?.access_token),
            // `invalid_grant`: the refresh token was revoked, or the app key is wrong.
            400 | 401 => Err(PluginError::auth(format!(
                "refreshing the access token: {} (HTTP {})",
                reply.text(),
                reply.status
            ))),
            _ => Err(reply.error(format!(
                "refreshing the access token: {} (HTTP {})",
                reply.text(),
                reply.status
            ))),
        }
    }

    /// One request with the bearer token; a failure typed for the host. A 401 with a
    /// refresh token at hand drops the access token and is worth a retry (the next
    /// request refreshes it).
    fn call(
        &self,
        url: &str,
        mut headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        sink: Option<&mut dyn Write>,
        what: &str,
    ) -> Result<Reply> {
        headers.push(self.bearer()?);
        let reply = match sink {
            Some(sink) => http::send_to("POST", url, &headers, body, sink)?,
            None => http::send("POST", url, &headers, body)?,
        };
        if reply.is_success() {
            return Ok(reply);
        }
        let error = failure(what, &reply);
        if reply.status == 401 && matches!(self.credentials, Credentials::Refresh { .. }) {
            self.token.replace(None);
            return Err(PluginError::transient(error.message));
        }
        Err(error)
    }

    /// An RPC endpoint: JSON in, JSON out.
    fn rpc<T: DeserializeOwned>(&self, endpoint: &str, arg: Value, what: &str) -> Result<T> {
        let url = format!("{}/2/{endpoint}", self.api_url);
        let headers = vec![("content-type", "application/json".to_string())];
        self.call(&url, headers, arg.to_string().into_bytes(), None, what)?
            .json(endpoint)
    }

    /// A content-upload endpoint: the argument in `Dropbox-API-Arg`, the bytes as body.
    fn upload<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        arg: Value,
        body: Vec<u8>,
        what: &str,
    ) -> Result<T> {
        let url = format!("{}/2/{endpoint}", self.content_url);
        let headers = vec![
            ("dropbox-api-arg", header_json(&arg)),
            ("content-type", "application/octet-stream".to_string()),
        ];
        self.call(&url, headers, body, None, what)?.json(endpoint)
    }

    /// `files/upload`: a whole file in one request (Dropbox takes up to 150 MB so).
    pub fn upload_file(&self, path: &str, body: Vec<u8>) -> Result<()> {
        self.upload::<Value>(
            "files/upload",
            commit(path),
            body,
            &format!("uploading {path}"),
        )
        .map(drop)
    }

    /// `files/upload_session/start` with the first chunk.
    pub fn start_session(&self, first: Vec<u8>) -> Result<Cursor> {
        let offset = first.len() as u64;
        let session: Session = self.upload(
            "files/upload_session/start",
            json!({"close": false}),
            first,
            "starting an upload session",
        )?;
        Ok(Cursor {
            session_id: session.session_id,
            offset,
        })
    }

    /// `files/upload_session/append_v2` with the next chunk, at the cursor's offset.
    pub fn append(&self, cursor: &mut Cursor, chunk: Vec<u8>) -> Result<()> {
        let len = chunk.len() as u64;
        self.upload::<Value>(
            "files/upload_session/append_v2",
            json!({"cursor": cursor_json(cursor), "close": false}),
            chunk,
            &format!("appending at offset {}", cursor.offset),
        )?;
        cursor.offset += len;
        Ok(())
    }

    /// `files/upload_session/finish` with the last chunk: only now does the file appear.
    pub fn finish(&self, cursor: &Cursor, last: Vec<u8>, path: &str) -> Result<()> {
        self.upload::<Value>(
            "files/upload_session/finish",
            json!({"cursor": cursor_json(cursor), "commit": commit(path)}),
            last,
            &format!("finishing the upload of {path}"),
        )
        .map(drop)
    }

    /// `files/download`, streamed to `sink`.
    pub fn download(&self, path: &str, sink: &mut dyn Write) -> Result<()> {
        let url = format!("{}/2/files/download", self.content_url);
        let headers = vec![("dropbox-api-arg", header_json(&json!({"path": path})))];
        self.call(
            &url,
            headers,
            Vec::new(),
            Some(sink),
            &format!("downloading {path}"),
        )
        .map(drop)
    }

    /// Every entry under `path`, recursively (`files/list_folder` and its `/continue`
    /// pages). A missing folder is an empty listing.
    pub fn list_folder(&self, path: &str) -> Result<Vec<Entry>> {
        let what = format!("listing {path:?}");
        let first = self.rpc::<Listing>(
            "files/list_folder",
            json!({"path": path, "recursive": true, "include_deleted": false}),
            &what,
        );
        let mut page = match first {
            Err(e) if e.kind == backups_sdk::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other?,
        };
        let mut entries = std::mem::take(&mut page.entries);
        while page.has_more {
            page = self.rpc(
                "files/list_folder/continue",
                json!({"cursor": page.cursor}),
                &what,
            )?;
            entries.append(&mut page.entries);
        }
        Ok(entries)
    }

    /// Whether `path` is a folder with nothing in it (a missing one is not).
    pub fn is_empty_folder(&self, path: &str) -> Result<bool> {
        match self.rpc::<Listing>(
            "files/list_folder",
            json!({"path": path, "recursive": false, "limit": 1}),
            &format!("listing {path:?}"),
        ) {
            Err(e) if e.kind == backups_sdk::ErrorKind::NotFound => Ok(false),
            other => Ok(other?.entries.is_empty()),
        }
    }

    /// `files/delete_v2`; a path that is already gone is fine.
    pub fn delete(&self, path: &str) -> Result<()> {
        match self.rpc::<Value>(
            "files/delete_v2",
            json!({"path": path}),
            &format!("deleting {path}"),
        ) {
            Err(e) if e.kind == backups_sdk::ErrorKind::NotFound => Ok(()),
            other => other.map(drop),
        }
    }
}

/// Where and how a finished upload lands: under its final name, replacing a copy a
/// retried run may have left there, never renamed.
fn commit(path: &str) -> Value {
    json!({"path": path, "mode": "overwrite", "autorename": false, "mute": true})
}

fn cursor_json(cursor: &Cursor) -> Value {
    json!({"session_id": cursor.session_id, "offset": cursor.offset})
}

/// JSON for an HTTP header: Dropbox asks for every character above 0x7E to be escaped
/// (`\uXXXX`, surrogate pairs beyond the BMP), as headers are ASCII.
pub fn header_json(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        if (c as u32) < 0x7F {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}
