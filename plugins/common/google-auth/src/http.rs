//! HTTP over `wasi:http` (which the host checks against the entry's `net` grant) for the
//! Google APIs, with every answer turned into an error the host can act on.

use backups_sdk::{PluginError, Result};
use serde::de::DeserializeOwned;
use std::io::Write;
use std::time::Duration;
use wstd::http::body::Bytes;
use wstd::http::body::util::Empty;
use wstd::http::{Body, BodyExt, Client, ErrorCode, Request};

/// Connecting is quick or it is not going to happen; a chunk of an upload may take a while
/// to be acknowledged on a slow link, so the response waits are generous.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);

/// An answer of any status, its body read whole: JSON documents and error messages only.
/// Object contents never come through here (see [`download`]).
pub struct Response {
    pub status: u16,
    pub headers: wstd::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as `T`; a body that is not what the API documents is `permanent`.
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            PluginError::permanent(format!(
                "{what}: unexpected answer ({e}): {}",
                excerpt(&self.body)
            ))
        })
    }

    /// `self` if its status is 2xx, else the error its status means (see [`status_error`]).
    pub fn success(self, what: &str) -> Result<Response> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            Err(status_error(what, self.status, &self.body))
        }
    }
}

/// One request; the answer whatever its status. Only a request that got no answer is an
/// error: `denied` when the host refused it (no `net` grant), else `transient`.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Response> {
    let request = build(method, url, headers, body.into())?;
    wstd::runtime::block_on(async {
        let response = client()
            .send(request)
            .await
            .map_err(|e| unanswered(method, url, &e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .contents()
            .await
            .map_err(|e| unanswered(method, url, &e))?
            .to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    })
}

/// `GET url` streamed into `sink` piece by piece as it arrives, so an object of any size
/// passes through in bounded memory. Returns the number of bytes written.
pub fn download(
    url: &str,
    headers: &[(&str, &str)],
    sink: &mut impl Write,
    what: &str,
) -> Result<u64> {
    let request = build("GET", url, headers, Bytes::new())?;
    wstd::runtime::block_on(async {
        let response = client()
            .send(request)
            .await
            .map_err(|e| unanswered("GET", url, &e))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        if !(200..300).contains(&status) {
            let text = body
                .contents()
                .await
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            return Err(status_error(what, status, &text));
        }
        let mut body = body.into_boxed_body();
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                PluginError::transient(format!("{what}: the download broke off: {e:#}"))
            })?;
            if let Ok(data) = frame.into_data() {
                sink.write_all(&data)
                    .map_err(|e| PluginError::from_io(&e, "writing to the host"))?;
                written += data.len() as u64;
            }
        }
        Ok(written)
    })
}

fn build(method: &str, url: &str, headers: &[(&str, &str)], body: Bytes) -> Result<Request<Body>> {
    // With its length, not chunked: Google's upload endpoints want Content-Length.
    let mut request = Request::builder()
        .method(method)
        .uri(url)
        .header("content-length", body.len().to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    // An empty body must not touch the body stream at all: with `Content-Length: 0` the
    // host may be done with the request (and close the stream) before the plugin writes
    // its zero bytes, and wstd reports that write as a reset connection.
    let body = if body.is_empty() {
        Body::from_http_body(Empty::<Bytes>::new())
    } else {
        Body::from(body)
    };
    request
        .body(body)
        .map_err(|e| PluginError::invalid_config(format!("{method} {url}: {e}")))
}

fn client() -> Client {
    let mut client = Client::new();
    client.set_connect_timeout(CONNECT_TIMEOUT);
    client.set_first_byte_timeout(RESPONSE_TIMEOUT);
    client.set_between_bytes_timeout(RESPONSE_TIMEOUT);
    client
}

/// A request that got no answer: refused by the host's grant check, or the network.
fn unanswered(method: &str, url: &str, err: &wstd::http::Error) -> PluginError {
    let message = format!("{method} {}: {err:#}", without_query(url));
    match err.downcast_ref::<ErrorCode>() {
        // The host logs what was refused, and why.
        Some(ErrorCode::HttpRequestDenied) => PluginError::denied(message),
        _ => PluginError::transient(message),
    }
}

/// Session URIs carry the upload id in their query: keep it out of messages.
fn without_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// The error a non-2xx answer means: 401/403 `auth`, 404 `not-found`, 408/429/5xx
/// `transient`, other 4xx `permanent`. Google also answers 403 for its rate limits
/// (`rateLimitExceeded`, `userRateLimitExceeded`: `transient`, they pass) and for a full
/// quota (`storageQuotaExceeded`, `quotaExceeded`: `permanent`, retrying will not help).
pub fn status_error(what: &str, status: u16, body: &[u8]) -> PluginError {
    let detail = format!("{what}: HTTP {status}: {}", google_message(body));
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    match status {
        403 if text.contains("ratelimitexceeded") => PluginError::transient(detail),
        403 if text.contains("quotaexceeded") => PluginError::permanent(detail),
        401 | 403 => PluginError::auth(detail),
        404 => PluginError::not_found(detail),
        408 | 429 | 500..=599 => PluginError::transient(detail),
        _ => PluginError::permanent(detail),
    }
}

/// The human part of a Google error body: `{"error": {"message": …}}` from the APIs,
/// `{"error": …, "error_description": …}` from the token endpoint, else the text itself.
fn google_message(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return excerpt(body);
    };
    let api = value["error"]["message"].as_str();
    let oauth = value["error"]
        .as_str()
        .map(|code| match value["error_description"].as_str() {
            Some(text) => format!("{code}: {text}"),
            None => code.to_string(),
        });
    api.map(str::to_string)
        .or(oauth)
        .unwrap_or_else(|| excerpt(body))
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(no body)".into()
    } else {
        text.chars().take(300).collect()
    }
}

/// Percent-encodes `text` for a path segment or a query value (RFC 3986 unreserved
/// characters stay as they are; `/` is encoded, as object names in GCS paths need).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
