//! What the plugins that speak a provider's REST API share (the B2 and Dropbox
//! destinations, the Azure managed-disk source): one HTTP request at a time over
//! `wasi:http` (which the host checks against the entry's `net` grant), the status,
//! headers and body handed back for the provider's own error mapping, downloads streamed
//! to the host, and (feature `destination`) artifacts read one bounded part at a time.
//!
//! Enable the feature of the plugin's world (`destination`, the default, or `source`):
//! the SDK builds exactly one world per plugin.

#[cfg(feature = "destination")]
use backups_sdk::ObjectReader;
use backups_sdk::{PluginError, Result};
#[cfg(feature = "destination")]
use std::io::Read;
use std::io::Write;
use std::time::Duration;
use wstd::http::body::util::{BodyExt, Empty};
use wstd::http::{Body, Client, Request};

/// Connecting must be quick; an answer may take a while (the server reads a whole part
/// before it answers), but a stalled connection must not hold the run until the host's
/// call limit.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);
/// Enough of an error body to explain it, not enough to flood a log.
const ERROR_BODY_LIMIT: usize = 4000;

/// The answer to a request: its status, headers, and its body unless it was streamed
/// elsewhere.
pub struct Reply {
    pub status: u16,
    /// Header names in lower case, values that are not text left out.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (any case), e.g. a long-running operation's
    /// `Location` or `Retry-After`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, shortened, for error messages.
    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(ERROR_BODY_LIMIT).collect::<String>()
    }

    /// The body as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            PluginError::permanent(format!("{what}: unexpected answer ({e}): {}", self.text()))
        })
    }

    /// The error kind a status means when the provider's body says nothing more precise:
    /// 401/403 `auth`, 404 `not-found`, 408/429/5xx `transient` (the host retries those),
    /// anything else `permanent`.
    pub fn error(&self, message: String) -> PluginError {
        match self.status {
            401 | 403 => PluginError::auth(message),
            404 => PluginError::not_found(message),
            408 | 429 | 500..=599 => PluginError::transient(message),
            _ => PluginError::permanent(message),
        }
    }
}

/// One request with a body in memory. `Ok` whatever the status (the caller maps it);
/// `Err` only when no answer came: `denied` when the host refused the peer, otherwise
/// `transient` (refused or cut connections, timeouts).
pub fn send(method: &str, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Result<Reply> {
    exchange(method, url, headers, body, None)
}

/// Like [`send`], but a 2xx answer's body goes to `sink` as it arrives (its `Reply` then
/// has an empty body); other answers come back whole, for the error message.
pub fn send_to(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    sink: &mut dyn Write,
) -> Result<Reply> {
    exchange(method, url, headers, body, Some(sink))
}

/// A request with `headers` and all of `body`, always with its length: providers refuse
/// chunked uploads (B2 requires Content-Length) and not every webhook endpoint decodes
/// chunked bodies. The notifiers' requests are built here too (`backups-notify-http`).
pub fn request_with_length(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> std::result::Result<Request<Body>, String> {
    let mut request = Request::builder()
        .method(method)
        .uri(url)
        .header("content-length", body.len().to_string());
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    // An empty body is sent without a write: with `content-length: 0` the connection may
    // already have closed the body's stream, and a write (even of nothing) would then fail.
    let body = if body.is_empty() {
        Body::from_http_body(Empty::<&'static [u8]>::new())
    } else {
        Body::from(body)
    };
    request.body(body).map_err(|e| e.to_string())
}

fn exchange(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    sink: Option<&mut dyn Write>,
) -> Result<Reply> {
    let request = request_with_length(method, url, headers, body)
        .map_err(|e| PluginError::permanent(format!("{method} {}: {e}", peer(url))))?;
    let mut client = Client::new();
    client.set_connect_timeout(CONNECT_TIMEOUT);
    client.set_first_byte_timeout(ANSWER_TIMEOUT);
    client.set_between_bytes_timeout(ANSWER_TIMEOUT);
    let failed = |e: wstd::http::Error| no_answer(method, url, &e);
    wstd::runtime::block_on(async move {
        let response = client.send(request).await.map_err(failed)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
            })
            .collect();
        let mut body = response.into_body().into_boxed_body();
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        let mut sink = sink.filter(|_| reply.is_success());
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(failed)?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            match sink.as_mut() {
                Some(out) => out
                    .write_all(data)
                    .map_err(|e| PluginError::from_io(&e, "writing to the host"))?,
                None if reply.body.len() < ERROR_BODY_LIMIT || reply.is_success() => {
                    reply.body.extend_from_slice(data)
                }
                None => {}
            }
        }
        Ok(reply)
    })
}

/// A request that got no answer. The host's refusal of an ungranted peer is `denied` (a
/// retry cannot help); everything else is worth another try.
fn no_answer(method: &str, url: &str, err: &wstd::http::Error) -> PluginError {
    let message = format!("{method} {}: {err:#}", peer(url));
    if message.to_ascii_lowercase().contains("denied") {
        PluginError::denied(message)
    } else {
        PluginError::transient(message)
    }
}

/// `scheme://host:port` of a URL: what messages show (paths may carry names and
/// tokens).
pub fn peer(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            format!("{scheme}://{authority}")
        }
        None => "(url)".into(),
    }
}

/// The `net` grant for a base URL key: its scheme, host and port.
pub fn grant_for(key: &str, url: &str) -> Result<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(PluginError::invalid_config(format!(
            "{key}: {url:?} must start with https:// or http://"
        )));
    };
    if !matches!(scheme, "https" | "http") {
        return Err(PluginError::invalid_config(format!(
            "{key}: {url:?} must start with https:// or http://"
        )));
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(PluginError::invalid_config(format!(
            "{key}: {url:?} needs a host (and no user info)"
        )));
    }
    Ok(format!("{scheme}://{authority}"))
}

/// Percent-encodes a name for a URL path or a header, leaving `/` and the unreserved
/// characters of RFC 3986 as they are.
pub fn encode_path(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Reads up to `limit` bytes (fewer only at the end of the stream): the one part of an
/// artifact that is in memory at a time.
#[cfg(feature = "destination")]
pub fn read_part(data: &mut ObjectReader, limit: u64) -> Result<Vec<u8>> {
    let mut part = Vec::with_capacity(limit.min(1 << 30) as usize);
    data.take(limit)
        .read_to_end(&mut part)
        .map_err(|e| PluginError::from_io(&e, "reading the artifact"))?;
    Ok(part)
}

/// Reads a whole artifact of `size` bytes that fits in one request.
#[cfg(feature = "destination")]
pub fn read_whole(data: &mut ObjectReader, size: u64) -> Result<Vec<u8>> {
    let body = read_part(data, size + 1)?;
    check_length(body.len() as u64, size)?;
    Ok(body)
}

/// The host said how long the artifact is: anything else means the stream broke, and the
/// upload must not complete.
pub fn check_length(read: u64, size: u64) -> Result<()> {
    if read == size {
        Ok(())
    } else {
        Err(PluginError::transient(format!(
            "read {read} bytes of the artifact, expected {size}"
        )))
    }
}
