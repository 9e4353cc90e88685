//! The few EC2 actions this source needs, over the EC2 Query API as AWS documents it
//! (<https://docs.aws.amazon.com/AWSEC2/latest/APIReference/Query-Requests.html>): a
//! form-encoded POST signed with SigV4 (by the AWS SDK's own signer, `aws-sigv4`), and an
//! XML answer (read with `roxmltree`). Sent over `wasi:http`, which the host checks against
//! the entry's `net` grant.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_smithy_runtime_api::client::identity::Identity;
use backups_aws::Keys;
use backups_sdk::{ErrorKind, PluginError, Result};
use std::time::{Duration, SystemTime};
use wstd::http::{Body, Client, Request};

/// The API version every action here is written against.
const API_VERSION: &str = "2016-11-15";
/// Attempts for an action whose failure is transient (throttling, 5xx, no answer).
const ATTEMPTS: u32 = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// Enough of an unexpected answer to explain it in an error.
const SHOWN: usize = 2000;

pub struct Ec2 {
    /// `scheme://host[:port]`, no trailing slash.
    endpoint: String,
    region: String,
    identity: Identity,
}

impl Ec2 {
    pub fn new(endpoint: String, region: String, keys: Keys) -> Ec2 {
        let identity = Credentials::new(
            keys.access_key_id,
            keys.secret_access_key,
            keys.session_token,
            None,
            "backups job",
        )
        .into();
        Ec2 {
            endpoint,
            region,
            identity,
        }
    }

    /// Runs `action` with `params` and returns the answer's XML text. Transient failures
    /// are retried with backoff (1, 2, 4 s) before they are returned.
    pub fn call(&self, action: &str, params: &[(String, String)]) -> Result<String> {
        let mut pause = Duration::from_secs(1);
        for attempt in 1..=ATTEMPTS {
            match self.call_once(action, params) {
                Err(e) if e.kind == ErrorKind::Transient && attempt < ATTEMPTS => {
                    backups_sdk::info!("{} — retrying in {}s", e.message, pause.as_secs());
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                other => return other,
            }
        }
        unreachable!("the last attempt returns")
    }

    fn call_once(&self, action: &str, params: &[(String, String)]) -> Result<String> {
        let mut form = format!("Action={action}&Version={API_VERSION}");
        for (name, value) in params {
            form.push('&');
            form.push_str(&encode(name));
            form.push('=');
            form.push_str(&encode(value));
        }
        let url = format!("{}/", self.endpoint);
        let host = self
            .endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, rest)| rest)
            .to_string();
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let signing_params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| PluginError::permanent(format!("{action}: signing: {e}")))?
            .into();
        let headers = [("host", host.as_str()), ("content-type", content_type)];
        let signable = SignableRequest::new(
            "POST",
            url.as_str(),
            headers.into_iter(),
            SignableBody::Bytes(form.as_bytes()),
        )
        .map_err(|e| PluginError::permanent(format!("{action}: signing: {e}")))?;
        let (signature, _) = sign(signable, &signing_params)
            .map_err(|e| PluginError::permanent(format!("{action}: signing: {e}")))?
            .into_parts();

        let mut request = Request::builder()
            .method("POST")
            .uri(&url)
            .header("content-type", content_type)
            .header("content-length", form.len().to_string());
        for (name, value) in signature.headers() {
            request = request.header(name, value);
        }
        let request = request
            .body(Body::from(form.into_bytes()))
            .map_err(|e| PluginError::permanent(format!("{action}: {e}")))?;
        let mut client = Client::new();
        client.set_connect_timeout(CONNECT_TIMEOUT);
        client.set_first_byte_timeout(ANSWER_TIMEOUT);
        client.set_between_bytes_timeout(ANSWER_TIMEOUT);
        let what = format!("EC2 {action} at {}", self.endpoint);
        let (status, body) = wstd::runtime::block_on(async {
            let response = client
                .send(request)
                .await
                .map_err(|e| backups_aws::no_answer(&what, &format!("{e:#}")))?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let bytes = body
                .contents()
                .await
                .map_err(|e| backups_aws::no_answer(&what, &format!("{e:#}")))?
                .to_vec();
            Ok::<_, PluginError>((status, bytes))
        })?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if (200..300).contains(&status) {
            return Ok(text);
        }
        // <Response><Errors><Error><Code>…</Code><Message>…</Message></Error></Errors>…
        let (code, message) = roxmltree::Document::parse(&text)
            .ok()
            .and_then(|doc| {
                let error = doc.descendants().find(|n| n.tag_name().name() == "Error")?;
                Some((
                    child_text(error, "Code").unwrap_or("(no code)").to_string(),
                    child_text(error, "Message").unwrap_or("").to_string(),
                ))
            })
            .unwrap_or_else(|| {
                (
                    "(no code)".to_string(),
                    text.chars().take(SHOWN).collect::<String>(),
                )
            });
        Err(backups_aws::error_for(&what, &code, &message, status))
    }
}

/// Percent-encoding as SigV4 and the Query API want it: everything but the unreserved
/// characters of RFC 3986.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Parses an answer; an unreadable one is a permanent error (the endpoint is not EC2).
pub fn parse<'a>(action: &str, text: &'a str) -> Result<roxmltree::Document<'a>> {
    roxmltree::Document::parse(text).map_err(|e| {
        PluginError::permanent(format!(
            "EC2 {action}: the answer is not XML ({e}): {}",
            text.chars().take(SHOWN).collect::<String>()
        ))
    })
}

/// The first child element named `name` (namespaces ignored: EC2 answers carry one).
pub fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children()
        .find(|n| n.is_element() && n.tag_name().name() == name)
}

/// The text of the first child element named `name`.
pub fn child_text<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    child(node, name).and_then(|n| n.text()).map(str::trim)
}

/// The `<item>` elements of the child list `set` (`<snapshotSet><item>…`).
pub fn items<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    set: &str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    child(node, set)
        .into_iter()
        .flat_map(|s| s.children())
        .filter(|n| n.is_element() && n.tag_name().name() == "item")
}

/// The tags of a resource (`<tagSet><item><key>…<value>…`).
pub fn tags(node: roxmltree::Node<'_, '_>) -> crate::Tags {
    items(node, "tagSet")
        .map(|t| {
            (
                child_text(t, "key").unwrap_or_default().to_string(),
                child_text(t, "value").unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Query parameters for a list: `Name.1=a&Name.2=b`.
pub fn list_params(name: &str, values: &[String]) -> Vec<(String, String)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("{name}.{}", i + 1), v.clone()))
        .collect()
}

/// Query parameters for filters: `Filter.N.Name=…&Filter.N.Value.M=…`.
pub fn filter_params(filters: &[(&str, Vec<String>)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, (name, values)) in filters.iter().enumerate() {
        let n = i + 1;
        out.push((format!("Filter.{n}.Name"), name.to_string()));
        for (j, v) in values.iter().enumerate() {
            out.push((format!("Filter.{n}.Value.{}", j + 1), v.clone()));
        }
    }
    out
}
