//! Google's resumable upload protocol, which Cloud Storage and Drive share: a POST opens a
//! session (its URI comes back in `Location`), PUTs send the bytes in chunks with
//! `Content-Range`, each answered `308 Resume Incomplete` with the `Range` the server has
//! persisted, and the final chunk's answer (200/201) is the new object. Nothing exists
//! under the name before that; on failure the session is cancelled (DELETE), so a failed
//! upload leaves nothing behind.
//!
//! Only the chunk in flight is in memory. A chunk that fails on the network is resumed
//! from what the server says it persisted (asked with `Content-Range: bytes */SIZE`), a
//! few times, before the upload is given up.

use crate::http::{self, Response};
use crate::token::TokenSource;
use backups_sdk::{ErrorKind, PluginError, Result};
use std::io::Read;
use std::time::Duration;
use wstd::http::body::Bytes;

/// Servers accept chunks in multiples of this (except the last).
pub const CHUNK_GRANULARITY: u64 = 256 * 1024;

/// Waits before resuming a chunk after a transient failure.
const RESUME_DELAYS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(9),
];

/// One upload of `size` bytes from `data`.
pub struct Upload<'a> {
    /// Opens the session: the API's upload URL with `uploadType=resumable`.
    pub start_url: &'a str,
    /// The object's metadata as the API defines it (JSON), if it goes in the body.
    pub metadata: Option<serde_json::Value>,
    pub size: u64,
    /// A multiple of [`CHUNK_GRANULARITY`].
    pub chunk_size: u64,
    /// For messages: what is being uploaded.
    pub what: &'a str,
}

impl Upload<'_> {
    /// Sends everything; returns the final answer (the object's resource). On any failure
    /// after the session opened, the session is cancelled before the error is returned.
    pub fn run(&self, auth: &mut TokenSource, data: &mut impl Read) -> Result<Response> {
        assert!(
            self.chunk_size > 0 && self.chunk_size.is_multiple_of(CHUNK_GRANULARITY),
            "chunk size must be a positive multiple of 256 KiB"
        );
        let session = self.open(auth)?;
        let sent = self.send_chunks(auth, &session, data);
        if sent.is_err() {
            // Best effort: an uncancelled session expires on its own within a week, and
            // it never becomes an object either way.
            if let Ok(authorization) = auth.authorization() {
                let _ = http::send(
                    "DELETE",
                    &session,
                    &[("authorization", &authorization)],
                    Bytes::new(),
                );
            }
        }
        sent
    }

    fn open(&self, auth: &mut TokenSource) -> Result<String> {
        let authorization = auth.authorization()?;
        let size = self.size.to_string();
        let mut headers = vec![
            ("authorization", authorization.as_str()),
            ("x-upload-content-type", "application/octet-stream"),
            ("x-upload-content-length", size.as_str()),
        ];
        let body = match &self.metadata {
            Some(metadata) => {
                headers.push(("content-type", "application/json; charset=UTF-8"));
                metadata.to_string()
            }
            None => String::new(),
        };
        let what = format!("{}: opening a resumable upload", self.what);
        let response = http::send("POST", self.start_url, &headers, body)?.success(&what)?;
        response
            .header("location")
            .map(str::to_string)
            .ok_or_else(|| PluginError::permanent(format!("{what}: the answer has no Location")))
    }

    fn send_chunks(
        &self,
        auth: &mut TokenSource,
        session: &str,
        data: &mut impl Read,
    ) -> Result<Response> {
        let mut offset = 0u64;
        loop {
            let chunk = read_chunk(data, self.chunk_size.min(self.size - offset))?;
            let end = offset + chunk.len() as u64;
            if chunk.is_empty() && self.size > 0 {
                return Err(PluginError::transient(format!(
                    "{}: the artifact ended at byte {offset} of {}",
                    self.what, self.size
                )));
            }
            if let Some(done) = self.send_chunk(auth, session, offset, chunk)? {
                return Ok(done);
            }
            offset = end;
        }
    }

    /// Sends the bytes `offset..offset + chunk.len()` until the server has all of them:
    /// `Some(answer)` when that completed the object, `None` when it wants more.
    fn send_chunk(
        &self,
        auth: &mut TokenSource,
        session: &str,
        offset: u64,
        chunk: Bytes,
    ) -> Result<Option<Response>> {
        let end = offset + chunk.len() as u64;
        let mut persisted = offset;
        let mut failures = 0;
        loop {
            let rest = chunk.slice((persisted - offset) as usize..);
            let range = if self.size == 0 {
                "bytes */0".to_string()
            } else {
                format!("bytes {persisted}-{}/{}", end - 1, self.size)
            };
            let answer = self.put(auth, session, &range, rest);
            let answer = match answer {
                Err(e) if e.kind == ErrorKind::Transient && failures < RESUME_DELAYS.len() => {
                    let delay = RESUME_DELAYS[failures];
                    backups_sdk::warn!(
                        "{}: {} — resuming from what the server has, in {}s",
                        self.what,
                        e.message,
                        delay.as_secs()
                    );
                    wstd::runtime::block_on(async { wstd::task::sleep(delay.into()).await });
                    failures += 1;
                    // Ask what arrived before the failure, and go on from there.
                    let status = format!("bytes */{}", self.size);
                    match self.put(auth, session, &status, Bytes::new()) {
                        Err(e) if e.kind == ErrorKind::Transient => continue,
                        other => other?,
                    }
                }
                other => other?,
            };
            match answer {
                Progress::Complete(response) if end == self.size => return Ok(Some(response)),
                Progress::Complete(_) => {
                    return Err(PluginError::permanent(format!(
                        "{}: the server completed the upload at byte {end} of {}",
                        self.what, self.size
                    )));
                }
                Progress::Persisted(upto) if upto < offset || upto > end => {
                    // Bytes of an earlier chunk are gone, and only this one is in memory.
                    return Err(PluginError::transient(format!(
                        "{}: the server has {upto} bytes, expected {offset} to {end}",
                        self.what
                    )));
                }
                Progress::Persisted(upto) if upto == end && end < self.size => return Ok(None),
                Progress::Persisted(upto) if upto == end => {
                    return Err(PluginError::transient(format!(
                        "{}: the server has all {end} bytes but did not complete the upload",
                        self.what
                    )));
                }
                Progress::Persisted(upto)
                    if upto <= persisted && failures >= RESUME_DELAYS.len() =>
                {
                    return Err(PluginError::transient(format!(
                        "{}: the server keeps the upload at byte {upto}",
                        self.what
                    )));
                }
                Progress::Persisted(upto) => {
                    if upto <= persisted {
                        // No progress: count it like a failure, so this cannot go on forever.
                        failures += 1;
                    }
                    persisted = upto;
                }
            }
        }
    }

    /// One PUT to the session: 200/201 is the finished object, 308 the progress.
    fn put(
        &self,
        auth: &mut TokenSource,
        session: &str,
        content_range: &str,
        body: Bytes,
    ) -> Result<Progress> {
        let authorization = auth.authorization()?;
        let what = format!("{}: sending {content_range}", self.what);
        let response = http::send(
            "PUT",
            session,
            &[
                ("authorization", &authorization),
                ("content-type", "application/octet-stream"),
                ("content-range", content_range),
            ],
            body,
        )?;
        if response.status == 308 {
            // `Range: bytes=0-N`: the first N + 1 bytes are persisted; none without it.
            let upto = match response.header("range") {
                None => 0,
                Some(range) => range
                    .rsplit('-')
                    .next()
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .map(|last| last + 1)
                    .ok_or_else(|| {
                        PluginError::permanent(format!("{what}: unexpected Range {range:?}"))
                    })?,
            };
            return Ok(Progress::Persisted(upto));
        }
        Ok(Progress::Complete(response.success(&what)?))
    }
}

enum Progress {
    Complete(Response),
    Persisted(u64),
}

/// Reads exactly `len` bytes, or fewer only where the stream ends.
fn read_chunk(data: &mut impl Read, len: u64) -> Result<Bytes> {
    let mut chunk = Vec::with_capacity(len as usize);
    data.take(len)
        .read_to_end(&mut chunk)
        .map_err(|e| PluginError::from_io(&e, "reading the artifact"))?;
    Ok(Bytes::from(chunk))
}
