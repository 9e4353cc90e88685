//! The calls of the B2 native API (version 2) this destination makes, each with its
//! errors typed for the host. Shapes follow Backblaze's published definitions.

use backups_sdk::{PluginError, Result};
use backups_storage_http::{self as http, Reply};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::io::Write;

const VERSION: &str = "b2api/v2";

/// B2's error body: `{"status": 401, "code": "bad_auth_token", "message": "…"}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A failed answer as an error the host can act on, by B2's error code first.
fn failure(what: &str, reply: &Reply) -> PluginError {
    let body: ErrorBody = serde_json::from_slice(&reply.body).unwrap_or_default();
    let detail = if body.code.is_empty() {
        reply.text()
    } else {
        format!("{}: {}", body.code, body.message)
    };
    let message = format!("{what}: {detail} (HTTP {})", reply.status);
    match body.code.as_str() {
        // An expired token is renewed by authorizing again: worth a retry.
        "expired_auth_token" => PluginError::transient(message),
        "bad_auth_token" | "unauthorized" | "access_denied" => PluginError::auth(message),
        "not_found" | "no_such_file" | "file_not_present" => PluginError::not_found(message),
        // The account's own caps: only its owner can lift them.
        "cap_exceeded" | "storage_cap_exceeded" | "transaction_cap_exceeded" => {
            PluginError::permanent(message)
        }
        _ => reply.error(message),
    }
}

/// `b2_authorize_account`'s answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    account_id: String,
    authorization_token: String,
    api_url: String,
    download_url: String,
    pub absolute_minimum_part_size: u64,
    #[serde(default)]
    allowed: Allowed,
}

/// What a restricted application key may touch.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Allowed {
    bucket_name: Option<String>,
}

/// A bucket lifecycle rule: files under the prefix are hidden (no longer listed) N days
/// after upload.
#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleRule {
    #[serde(default)]
    pub file_name_prefix: String,
    pub days_from_uploading_to_hiding: Option<u32>,
    /// B2 cancels unfinished large files this many days after they were started.
    #[serde(default)]
    pub days_from_starting_to_canceling_unfinished_large_files: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bucket {
    bucket_id: String,
    bucket_name: String,
    #[serde(default)]
    lifecycle_rules: Vec<LifecycleRule>,
}

/// Where one upload (a small file, or the parts of one large file) goes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadTarget {
    upload_url: String,
    authorization_token: String,
}

/// One file version, as `b2_list_file_names` / `b2_list_file_versions` show it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileVersion {
    pub file_id: String,
    pub file_name: String,
    /// `upload` for a file; `start` (unfinished large file), `hide` or `folder` otherwise.
    pub action: String,
    #[serde(default)]
    pub content_length: u64,
    /// Milliseconds since 1970.
    #[serde(default)]
    pub upload_timestamp: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub files: Vec<FileVersion>,
    pub next_file_name: Option<String>,
    #[serde(default)]
    pub next_file_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartedFile {
    file_id: String,
}

/// An authorized account and the bucket it works on.
pub struct Session {
    pub account: Account,
    bucket_id: String,
    bucket_name: String,
    pub lifecycle_rules: Vec<LifecycleRule>,
}

impl Session {
    /// `b2_authorize_account` (Basic auth with the key id and key), then the bucket's id
    /// from `b2_list_buckets`.
    pub fn open(api_url: &str, key_id: &str, key: &str, bucket: &str) -> Result<Session> {
        let url = format!("{api_url}/{VERSION}/b2_authorize_account");
        let reply = http::send("GET", &url, &[basic_auth(key_id, key)], Vec::new())?;
        if !reply.is_success() {
            return Err(failure("authorizing the application key", &reply));
        }
        let account: Account = reply.json("b2_authorize_account")?;
        if let Some(allowed) = &account.allowed.bucket_name
            && allowed != bucket
        {
            return Err(PluginError::auth(format!(
                "the application key is restricted to bucket {allowed:?}, not {bucket:?}"
            )));
        }
        let mut session = Session {
            account,
            bucket_id: String::new(),
            bucket_name: bucket.to_string(),
            lifecycle_rules: Vec::new(),
        };
        #[derive(Deserialize)]
        struct Buckets {
            buckets: Vec<Bucket>,
        }
        let listed: Buckets = session.call(
            "b2_list_buckets",
            json!({"accountId": session.account.account_id, "bucketName": bucket}),
            "finding the bucket",
        )?;
        let found = listed
            .buckets
            .into_iter()
            .find(|b| b.bucket_name == bucket)
            .ok_or_else(|| {
                PluginError::not_found(format!(
                    "bucket: no bucket {bucket:?} in this account (or the key may not list it)"
                ))
            })?;
        session.bucket_id = found.bucket_id;
        session.lifecycle_rules = found.lifecycle_rules;
        Ok(session)
    }

    /// One JSON call on the account's API URL.
    fn call<T: DeserializeOwned>(&self, operation: &str, body: Value, what: &str) -> Result<T> {
        let url = format!("{}/{VERSION}/{operation}", self.account.api_url);
        let headers = [
            ("authorization", self.account.authorization_token.clone()),
            ("content-type", "application/json".to_string()),
        ];
        let reply = http::send("POST", &url, &headers, body.to_string().into_bytes())?;
        if !reply.is_success() {
            return Err(failure(what, &reply));
        }
        reply.json(operation)
    }

    pub fn upload_url(&self) -> Result<UploadTarget> {
        self.call(
            "b2_get_upload_url",
            json!({"bucketId": self.bucket_id}),
            "getting an upload URL",
        )
    }

    /// `b2_upload_file`: one whole file, with its SHA-1 checked by B2.
    pub fn upload_file(&self, to: &UploadTarget, name: &str, body: Vec<u8>) -> Result<()> {
        let headers = [
            ("authorization", to.authorization_token.clone()),
            ("x-bz-file-name", http::encode_path(name)),
            ("content-type", "b2/x-auto".to_string()),
            ("x-bz-content-sha1", sha1_hex(&body)),
        ];
        let reply = http::send("POST", &to.upload_url, &headers, body)?;
        if reply.is_success() {
            Ok(())
        } else {
            Err(failure(&format!("uploading {name}"), &reply))
        }
    }

    pub fn start_large_file(&self, name: &str) -> Result<String> {
        let started: StartedFile = self.call(
            "b2_start_large_file",
            json!({"bucketId": self.bucket_id, "fileName": name, "contentType": "b2/x-auto"}),
            &format!("starting the large file {name}"),
        )?;
        Ok(started.file_id)
    }

    pub fn upload_part_url(&self, file_id: &str) -> Result<UploadTarget> {
        self.call(
            "b2_get_upload_part_url",
            json!({"fileId": file_id}),
            "getting an upload URL for parts",
        )
    }

    /// `b2_upload_part`; returns the part's SHA-1 for `b2_finish_large_file`.
    pub fn upload_part(&self, to: &UploadTarget, number: u32, body: Vec<u8>) -> Result<String> {
        let sha1 = sha1_hex(&body);
        let headers = [
            ("authorization", to.authorization_token.clone()),
            ("x-bz-part-number", number.to_string()),
            ("x-bz-content-sha1", sha1.clone()),
        ];
        let reply = http::send("POST", &to.upload_url, &headers, body)?;
        if reply.is_success() {
            Ok(sha1)
        } else {
            Err(failure(&format!("uploading part {number}"), &reply))
        }
    }

    /// Makes the large file a file, from its parts in order.
    pub fn finish_large_file(&self, file_id: &str, part_sha1s: &[String]) -> Result<()> {
        self.call::<Value>(
            "b2_finish_large_file",
            json!({"fileId": file_id, "partSha1Array": part_sha1s}),
            "finishing the large file",
        )
        .map(drop)
    }

    /// Discards an unfinished large file and its parts.
    pub fn cancel_large_file(&self, file_id: &str) -> Result<()> {
        self.call::<Value>(
            "b2_cancel_large_file",
            json!({"fileId": file_id}),
            "cancelling the large file",
        )
        .map(drop)
    }

    /// One page of the newest version of each file under `prefix`, from `start` on.
    pub fn list_file_names(&self, prefix: &str, start: Option<&str>) -> Result<Page> {
        self.call(
            "b2_list_file_names",
            json!({"bucketId": self.bucket_id, "prefix": prefix, "startFileName": start,
                   "maxFileCount": 1000}),
            &format!("listing {prefix:?}"),
        )
    }

    /// One page of every version of the files under `prefix`, from `start` (name, id) on.
    pub fn list_file_versions(&self, prefix: &str, start: (&str, Option<&str>)) -> Result<Page> {
        self.call(
            "b2_list_file_versions",
            json!({"bucketId": self.bucket_id, "prefix": prefix, "startFileName": start.0,
                   "startFileId": start.1, "maxFileCount": 100}),
            &format!("listing the versions of {prefix:?}"),
        )
    }

    /// One page of the large files started under `prefix` and never finished nor
    /// cancelled, from `start` (a file id) on.
    pub fn list_unfinished_large_files(&self, prefix: &str, start: Option<&str>) -> Result<Page> {
        self.call(
            "b2_list_unfinished_large_files",
            json!({"bucketId": self.bucket_id, "namePrefix": prefix, "startFileId": start,
                   "maxFileCount": 100}),
            &format!("listing the unfinished large files under {prefix:?}"),
        )
    }

    /// The bytes of the parts an unfinished large file holds.
    pub fn uploaded_bytes(&self, file_id: &str) -> Result<u64> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Part {
            content_length: u64,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Parts {
            parts: Vec<Part>,
            next_part_number: Option<u32>,
        }
        let mut total = 0;
        let mut start: Option<u32> = None;
        loop {
            let page: Parts = self.call(
                "b2_list_parts",
                json!({"fileId": file_id, "startPartNumber": start, "maxPartCount": 1000}),
                "listing the parts of an unfinished large file",
            )?;
            total += page.parts.iter().map(|p| p.content_length).sum::<u64>();
            match page.next_part_number {
                Some(next) => start = Some(next),
                None => return Ok(total),
            }
        }
    }

    pub fn delete_file_version(&self, name: &str, file_id: &str) -> Result<()> {
        self.call::<Value>(
            "b2_delete_file_version",
            json!({"fileName": name, "fileId": file_id}),
            &format!("deleting {name}"),
        )
        .map(drop)
    }

    /// Download by name, streamed to `sink`.
    pub fn download(&self, name: &str, sink: &mut dyn Write) -> Result<()> {
        let url = format!(
            "{}/file/{}/{}",
            self.account.download_url,
            http::encode_path(&self.bucket_name),
            http::encode_path(name)
        );
        let headers = [("authorization", self.account.authorization_token.clone())];
        let reply = http::send_to("GET", &url, &headers, Vec::new(), sink)?;
        if reply.is_success() {
            Ok(())
        } else {
            Err(failure(&format!("downloading {name}"), &reply))
        }
    }
}

fn basic_auth(user: &str, password: &str) -> (&'static str, String) {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    ("authorization", format!("Basic {token}"))
}

/// B2 checks every upload and part against the SHA-1 we send.
fn sha1_hex(data: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    Sha1::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
