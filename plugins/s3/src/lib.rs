//! # s3 — an S3 bucket, or any S3-compatible service (type `s3` or `minio`)
//!
//! ```json
//! { "id": "s3-backup", "type": "s3", "bucket": "my-backup-bucket", "region": "eu-west-1",
//!   "credentials": { "aws_access_key_id": "…", "aws_secret_access_key": "…" },
//!   "retention_copies": 7, "retention_days": 30 }
//!
//! { "id": "minio-backup", "type": "minio", "endpoint": "localhost:9000", "secure": false,
//!   "bucket": "my-backup-bucket",
//!   "credentials": { "access_key": "…", "secret_key": "…" } }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `bucket` | the bucket (it must exist) |
//! | `region` | AWS region (default `us-east-1`) |
//! | `credentials.aws_access_key_id`, `credentials.aws_secret_access_key` | `s3` credentials; without them `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, if the job grants those variables (`grants.env`) |
//! | `endpoint_url` | `s3`: an S3-compatible endpoint, e.g. `https://s3.wasabisys.com` (then path-style requests) |
//! | `endpoint`, `secure` | `minio`: `host[:port]` without scheme; `secure` (default true) chooses https |
//! | `credentials.access_key`, `credentials.secret_key` | `minio` credentials |
//! | `prefix` | a folder inside the bucket to keep the backups under |
//! | `path_style` | force path-style (`true`) or virtual-hosted (`false`) requests |
//! | `part_size_mib` | multipart part size (default 16; grows for very large artifacts) |
//!
//! Artifacts up to one part are one `PutObject`; larger ones a multipart upload, aborted
//! on any failure so a partial upload never becomes an object. Only the part being sent
//! is in memory. A run killed mid-upload cannot abort its upload; the next run's sweep
//! lists the bucket's unfinished uploads under the prefix (`ListMultipartUploads`, sized
//! by `ListParts`) and aborts those of this job older than `leftover_age`. `backups
//! status` says whether the bucket has an `AbortIncompleteMultipartUpload` rule of its own. Deletion rules (for `backups status`) are read from the bucket's
//! lifecycle configuration (expiration rules).
//!
//! Grants derived from these keys: `net` to the endpoint (the regional S3 endpoint and the
//! bucket's virtual-hosted name on AWS); `env` for the AWS variables when `credentials`
//! is absent.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, LifecycleRule};
use backups_sdk::config::flag;
use backups_sdk::{
    About, CleanupRule, Context, DeletionRule, Destination, Grants, Leftover, ObjectInfo,
    ObjectReader, ObjectWriter, Plugin, PluginError, Result, error_chain,
};
use serde::Deserialize;
use std::io::{Read, Write};

const MIB: u64 = 1 << 20;
/// S3 allows 10 000 parts; stay under it with room to spare.
const MAX_PARTS: u64 = 9_000;

#[derive(Deserialize)]
pub struct Config {
    #[serde(rename = "type")]
    kind: String,
    bucket: String,
    region: Option<String>,
    #[serde(default)]
    credentials: KeyPair,
    endpoint_url: Option<String>,
    endpoint: Option<String>,
    #[serde(default = "yes", deserialize_with = "flag")]
    secure: bool,
    #[serde(default)]
    prefix: String,
    path_style: Option<bool>,
    #[serde(default = "sixteen")]
    part_size_mib: u64,
}

fn yes() -> bool {
    true
}
fn sixteen() -> u64 {
    16
}

/// `s3` writes its keys as AWS names them (`aws_access_key_id`…), `minio` as MinIO does
/// (`access_key`, `secret_key`).
#[derive(Deserialize, Default)]
struct KeyPair {
    #[serde(flatten)]
    aws: backups_aws::KeyPair,
    access_key: Option<String>,
    secret_key: Option<String>,
}

impl Config {
    fn region(&self) -> String {
        self.region.clone().unwrap_or_else(|| "us-east-1".into())
    }

    /// The endpoint URL, when not AWS's own.
    fn endpoint(&self) -> Result<Option<String>> {
        match (self.kind.as_str(), &self.endpoint_url, &self.endpoint) {
            ("minio", _, Some(host)) => {
                if host.contains("://") || host.contains('/') {
                    return Err(PluginError::invalid_config(format!(
                        "endpoint: {host:?} must be host or host:port, without scheme (use secure)"
                    )));
                }
                Ok(Some(format!(
                    "{}://{host}",
                    if self.secure { "https" } else { "http" }
                )))
            }
            ("minio", _, None) => Err(PluginError::invalid_config(
                "endpoint: missing (host:port of the server)",
            )),
            (_, Some(url), _) => backups_aws::endpoint(Some(url), "s3", "").map(Some),
            _ => Ok(None),
        }
    }

    /// Hosts this destination talks to, for its derived `net` grant.
    fn peers(&self) -> Result<Vec<String>> {
        Ok(match self.endpoint()? {
            Some(url) => vec![url],
            None => {
                let region = self.region();
                vec![
                    format!("https://s3.{region}.amazonaws.com"),
                    format!("https://{}.s3.{region}.amazonaws.com", self.bucket),
                ]
            }
        })
    }

    /// This entry's keys in the shape `backups_aws` reads them.
    fn key_pair(&self) -> backups_aws::KeyPair {
        let c = &self.credentials;
        match self.kind.as_str() {
            "minio" => backups_aws::KeyPair {
                aws_access_key_id: c.access_key.clone(),
                aws_secret_access_key: c.secret_key.clone(),
                aws_session_token: None,
            },
            _ => c.aws.clone(),
        }
    }
}

pub struct S3 {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    part_size: u64,
}

impl Plugin for S3 {
    type Config = Config;

    fn about() -> About {
        About::new(
            "s3",
            "an S3 bucket or an S3-compatible service (types s3 and minio)",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(&[
            "bucket",
            "region",
            "credentials",
            "endpoint_url",
            "endpoint",
            "secure",
            "prefix",
            "path_style",
            "part_size_mib",
        ])
        .secrets(&[
            "credentials.aws_secret_access_key",
            "credentials.secret_key",
            // The variables' values, when the job grants them instead.
            "env:AWS_SECRET_ACCESS_KEY",
            "env:AWS_SESSION_TOKEN",
        ])
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        Ok(Grants {
            net: config.peers()?,
            env: backups_aws::env_grants(config.key_pair().is_set()),
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        if config.bucket.is_empty() {
            return Err(PluginError::invalid_config("bucket: missing"));
        }
        if config.part_size_mib < 5 {
            return Err(PluginError::invalid_config(
                "part_size_mib: S3 parts are at least 5 MiB",
            ));
        }
        let keys = backups_aws::keys(&[&config.key_pair()])?;
        let endpoint = config.endpoint()?;
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region()))
            .credentials_provider(Credentials::new(
                keys.access_key_id,
                keys.secret_access_key,
                keys.session_token,
                None,
                "backups job",
            ))
            .http_client(aws_smithy_wasm::wasi::WasiHttpClientBuilder::new().build())
            .sleep_impl(aws_smithy_wasm::wasi::WasiSleep)
            .interceptor(ContentLength)
            // Checksums only where S3 requires them: S3-compatible servers vary in their
            // support for the newer streaming-checksum trailers. Integrity is the
            // manifest's sha256, checked by `backups verify`.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
        let path_style = config.path_style.unwrap_or(endpoint.is_some());
        if let Some(url) = endpoint {
            builder = builder.endpoint_url(url);
        }
        builder = builder.force_path_style(path_style);
        let prefix = config.prefix.trim_matches('/');
        Ok(S3 {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            part_size: config.part_size_mib * MIB,
        })
    }
}

/// Turns an SDK error into one the host can act on.
fn failed<E>(what: &str, err: SdkError<E>) -> PluginError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &err {
        SdkError::ServiceError(e) => backups_aws::error_for(
            what,
            e.err().code().unwrap_or("(no code)"),
            e.err().message().unwrap_or(""),
            e.raw().status().as_u16(),
        ),
        // No answer: the host refused the peer (denied), or the network failed (transient).
        other => backups_aws::no_answer(what, &error_chain(other)),
    }
}

/// Sends `Content-Length` whenever the body's length is known, including 0 for the empty
/// bodies of `CreateMultipartUpload` and friends: the wasi:http path does not add it, and
/// S3 servers may answer 411 Length Required without it.
#[derive(Debug)]
struct ContentLength;

impl aws_sdk_s3::config::Intercept for ContentLength {
    fn name(&self) -> &'static str {
        "ContentLength"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), aws_sdk_s3::error::BoxError> {
        let request = context.request_mut();
        if request.headers().get("content-length").is_none()
            && request.headers().get("transfer-encoding").is_none()
            && let Some(len) = request.body().content_length()
        {
            request
                .headers_mut()
                .insert("content-length", len.to_string());
        }
        Ok(())
    }
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    wstd::runtime::block_on(future)
}

/// Reads up to `limit` bytes (less only at the end of the stream).
fn read_part(data: &mut ObjectReader, limit: u64) -> Result<Vec<u8>> {
    let mut part = Vec::with_capacity(limit as usize);
    data.take(limit)
        .read_to_end(&mut part)
        .map_err(|e| PluginError::from_io(&e, "reading the artifact"))?;
    Ok(part)
}

impl S3 {
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn part_size_for(&self, size: u64) -> u64 {
        let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        self.part_size.max(needed)
    }

    fn put_multipart(&self, key: &str, data: &mut ObjectReader, size: u64) -> Result<()> {
        let part_size = self.part_size_for(size);
        let upload = run(self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send())
        .map_err(|e| failed("starting the multipart upload", e))?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| PluginError::permanent("the server returned no upload id"))?
            .to_string();
        let sent = (|| -> Result<Vec<CompletedPart>> {
            let mut parts = Vec::new();
            let mut total = 0u64;
            for number in 1.. {
                let chunk = read_part(data, part_size)?;
                if chunk.is_empty() {
                    break;
                }
                total += chunk.len() as u64;
                let out = run(self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(chunk))
                    .send())
                .map_err(|e| failed(&format!("uploading part {number}"), e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .build(),
                );
            }
            if total != size {
                return Err(PluginError::transient(format!(
                    "read {total} bytes of the artifact, expected {size}"
                )));
            }
            Ok(parts)
        })();
        let completed = sent.and_then(|parts| {
            run(self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send())
            .map(|_| ())
            .map_err(|e| failed("completing the multipart upload", e))
        });
        if completed.is_err() {
            // Never leave the parts behind (they cost storage and are invisible to list).
            let _ = run(self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send());
        }
        completed
    }
}

impl Destination for S3 {
    fn put(&mut self, key: &str, data: &mut ObjectReader, size: u64) -> Result<()> {
        let key = self.key(key);
        if size > self.part_size {
            return self.put_multipart(&key, data, size);
        }
        let body = read_part(data, size + 1)?;
        if body.len() as u64 != size {
            return Err(PluginError::transient(format!(
                "read {} bytes of the artifact, expected {size}",
                body.len()
            )));
        }
        run(self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(body))
            .send())
        .map(|_| ())
        .map_err(|e| failed(&format!("storing {key}"), e))
    }

    fn get(&mut self, key: &str, sink: &mut ObjectWriter) -> Result<()> {
        let key = self.key(key);
        run(async {
            let mut object = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| failed(&format!("fetching {key}"), e))?;
            while let Some(chunk) = object.body.try_next().await.map_err(|e| {
                PluginError::transient(format!("fetching {key}: {}", error_chain(&e)))
            })? {
                sink.write_all(&chunk)
                    .map_err(|e| PluginError::from_io(&e, "writing to the host"))?;
            }
            Ok(())
        })
    }

    fn list(&mut self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let full = self.key(prefix);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = run(self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_continuation_token(token.clone())
                .send())
            .map_err(|e| failed(&format!("listing {full}"), e))?;
            for o in page.contents() {
                let Some(key) = o.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                out.push(ObjectInfo {
                    key: key.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified: o.last_modified().map(|t| t.secs().max(0) as u64),
                });
            }
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() || page.is_truncated() != Some(true) {
                return Ok(out);
            }
        }
    }

    fn delete(&mut self, key: &str) -> Result<()> {
        let key = self.key(key);
        run(self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send())
        .map(|_| ())
        .map_err(|e| failed(&format!("deleting {key}"), e))
    }

    fn deletion_rules(&mut self) -> Result<Vec<DeletionRule>> {
        let mut rules = Vec::new();
        for rule in self.lifecycle_rules()? {
            let Some(days) = rule.expiration().and_then(|e| e.days()) else {
                continue;
            };
            let prefix = rule_prefix(&rule);
            rules.push(DeletionRule {
                id: rule.id().unwrap_or("(unnamed)").to_string(),
                // Report it relative to where this destination keeps its objects.
                prefix: prefix
                    .strip_prefix(&self.prefix)
                    .unwrap_or(prefix)
                    .to_string(),
                expire_after_days: days.max(0) as u32,
            });
        }
        Ok(rules)
    }

    /// Multipart uploads a killed run never completed nor aborted: S3 keeps (and bills)
    /// their parts until they are aborted, and no object listing shows them.
    fn list_leftovers(&mut self, prefix: &str) -> Result<Vec<Leftover>> {
        let full = self.key(prefix);
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = match run(self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send())
            {
                Ok(page) => page,
                // Some S3-compatible servers do not implement it: nothing can be swept
                // there, which the operator should know, but it is no failure of the run.
                Err(SdkError::ServiceError(e)) if e.err().code() == Some("NotImplemented") => {
                    backups_sdk::warn!(
                        "this server does not list unfinished multipart uploads \
                         (ListMultipartUploads: NotImplemented): the parts of an upload \
                         a killed run left stay until the server removes them"
                    );
                    return Ok(out);
                }
                Err(e) => {
                    return Err(failed(
                        &format!("listing unfinished uploads under {full}"),
                        e,
                    ));
                }
            };
            for upload in page.uploads() {
                let (Some(full_key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let Some(key) = full_key.strip_prefix(&self.prefix) else {
                    continue;
                };
                out.push(Leftover {
                    key: key.to_string(),
                    id: id.to_string(),
                    // Its cost, as far as the server says; an upload it cannot size is
                    // still listed (the host may not even count it as this job's).
                    size: self.uploaded_bytes(full_key, id).unwrap_or_else(|e| {
                        backups_sdk::debug!("sizing {full_key}: {}", e.message);
                        0
                    }),
                    modified: upload.initiated().map_or(0, |t| t.secs().max(0) as u64),
                });
            }
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(out);
            }
        }
    }

    fn remove_leftover(&mut self, leftover: &Leftover) -> Result<()> {
        let key = self.key(&leftover.key);
        match run(self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .upload_id(&leftover.id)
            .send())
        {
            Ok(_) => Ok(()),
            // Aborted or completed meanwhile: nothing left.
            Err(SdkError::ServiceError(e)) if e.err().code() == Some("NoSuchUpload") => Ok(()),
            Err(e) => Err(failed(
                &format!("aborting the unfinished upload of {key}"),
                e,
            )),
        }
    }

    /// An enabled `AbortIncompleteMultipartUpload` rule covering this destination's
    /// prefix, if the bucket has one.
    fn self_cleaning(&mut self) -> Result<CleanupRule> {
        let days = self
            .lifecycle_rules()?
            .iter()
            .filter(|rule| {
                let prefix = rule_prefix(rule);
                self.prefix.starts_with(prefix)
            })
            .filter_map(|rule| {
                rule.abort_incomplete_multipart_upload()
                    .and_then(|a| a.days_after_initiation())
            })
            .min();
        Ok(match days {
            Some(d) => CleanupRule::AfterDays(d.max(0) as u32),
            None => CleanupRule::Absent,
        })
    }
}

impl S3 {
    /// The bucket's enabled lifecycle rules; none when it has no configuration (or the
    /// server does not implement lifecycles).
    fn lifecycle_rules(&self) -> Result<Vec<LifecycleRule>> {
        let lifecycle = match run(self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .send())
        {
            Ok(l) => l,
            Err(SdkError::ServiceError(e))
                if matches!(
                    e.err().code(),
                    Some("NoSuchLifecycleConfiguration" | "NotImplemented")
                ) =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(failed("reading the bucket's lifecycle rules", e)),
        };
        Ok(lifecycle
            .rules()
            .iter()
            .filter(|rule| rule.status().as_str() == "Enabled")
            .cloned()
            .collect())
    }

    /// The bytes of the parts an unfinished upload holds.
    fn uploaded_bytes(&self, key: &str, upload_id: &str) -> Result<u64> {
        let mut total = 0u64;
        let mut marker: Option<String> = None;
        loop {
            let page = run(self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send())
            .map_err(|e| failed(&format!("listing the parts of {key}"), e))?;
            total += page
                .parts()
                .iter()
                .map(|p| p.size().unwrap_or(0).max(0) as u64)
                .sum::<u64>();
            marker = page.next_part_number_marker().map(str::to_string);
            if page.is_truncated() != Some(true) || marker.is_none() {
                return Ok(total);
            }
        }
    }
}

/// The prefix a lifecycle rule applies to. Rules written before the Filter element carry a
/// top-level Prefix; S3 still applies them, so they count.
fn rule_prefix(rule: &LifecycleRule) -> &str {
    #[allow(deprecated)]
    let legacy_prefix = rule.prefix();
    rule.filter()
        .and_then(|f| f.prefix())
        .or(legacy_prefix)
        .unwrap_or("")
}

backups_sdk::export_destination!(S3);
