//! The Azure Resource Manager REST API, as much of it as a snapshot needs: a
//! client-credentials token from Microsoft Entra ID, JSON requests with ARM's errors turned
//! into typed ones, and the long-running-operation protocol (`Azure-AsyncOperation`,
//! `Location`, `Retry-After`) waited out within a deadline.
//!
//! References: "Microsoft identity platform and the OAuth 2.0 client credentials flow"
//! (`/oauth2/v2.0/token`), "Azure REST API reference: Compute — Disks / Snapshots"
//! (api-version [`COMPUTE_API_VERSION`]) and "Track asynchronous Azure operations".

use backups_sdk::{PluginError, Result};
use backups_storage_http::{self as http, Reply};
use serde::Deserialize;
use std::time::{Duration, Instant};

/// The Microsoft.Compute (disk resource provider) API version of every disk and snapshot
/// call: `GET disks/{name}`, `PUT`/`DELETE snapshots/{name}` and `GET snapshots`.
pub const COMPUTE_API_VERSION: &str = "2023-04-02";

/// The environment variables holding the service principal, as the legacy tool read them.
pub const TENANT_ENV: &str = "TENANT_ID";
pub const CLIENT_ENV: &str = "CLIENT_ID";
pub const SECRET_ENV: &str = "CLIENT_KEY";

/// A token is renewed this long before Entra ID says it expires, so that no request
/// carries one that runs out on the way.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// Between two polls of a long-running operation when the answer gives no `Retry-After`,
/// and the bounds we hold a server's `Retry-After` to (a snapshot usually takes seconds to
/// minutes; never sleep past the deadline in one go, never hammer the API).
const DEFAULT_POLL: Duration = Duration::from_secs(10);
const MIN_POLL: Duration = Duration::from_secs(1);
const MAX_POLL: Duration = Duration::from_secs(60);

/// The service principal from `TENANT_ID`, `CLIENT_ID` and `CLIENT_KEY`.
pub struct Credentials {
    pub tenant: String,
    pub client_id: String,
    secret: String,
}

impl Credentials {
    /// Reads the three variables. The host passes a variable to the plugin only when the
    /// entry's grants name it (the derived grants do) and it is set for `backups`; either
    /// gap looks the same from inside, so the message names both.
    pub fn from_env() -> Result<Credentials> {
        let read = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let (tenant, client_id, secret) = (read(TENANT_ENV), read(CLIENT_ENV), read(SECRET_ENV));
        let missing: Vec<&str> = [
            (TENANT_ENV, tenant.is_none()),
            (CLIENT_ENV, client_id.is_none()),
            (SECRET_ENV, secret.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, absent)| absent.then_some(name))
        .collect();
        match (tenant, client_id, secret) {
            (Some(tenant), Some(client_id), Some(secret)) => Ok(Credentials {
                tenant,
                client_id,
                secret,
            }),
            _ => {
                let (verb, them) = match missing.len() {
                    1 => ("is", "it"),
                    _ => ("are", "them"),
                };
                Err(PluginError::denied(format!(
                    "the service principal's {} {verb} not visible to the plugin: set {them} \
                     in the environment of backups, and let the entry's grants name {them} \
                     (`grants.env`; the derived grants do)",
                    missing.join(", "),
                )))
            }
        }
    }
}

/// Where the API lives: Azure's public cloud by default, a sovereign cloud's (or a test
/// server's) endpoints when the entry says so.
pub struct Endpoints {
    /// `https://login.microsoftonline.com`, without a trailing `/`.
    pub login: String,
    /// `https://management.azure.com`, without a trailing `/`.
    pub management: String,
    /// The token's scope: `https://management.azure.com/.default`.
    pub scope: String,
}

struct Token {
    bearer: String,
    renew_at: Instant,
}

/// One ARM session: the service principal, the endpoints, and the current token.
pub struct Arm {
    credentials: Credentials,
    endpoints: Endpoints,
    token: Option<Token>,
}

/// An ARM error body: `{"error": {"code": …, "message": …}}`.
#[derive(Deserialize)]
struct ArmErrorBody {
    error: Option<ArmError>,
}

#[derive(Deserialize, Default)]
pub struct ArmError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl ArmError {
    pub fn describe(&self) -> String {
        match (self.code.is_empty(), self.message.is_empty()) {
            (true, true) => "(no details)".into(),
            (false, true) => self.code.clone(),
            (true, false) => self.message.clone(),
            (false, false) => format!("{}: {}", self.code, self.message),
        }
    }
}

/// The status document an `Azure-AsyncOperation` URL answers with.
#[derive(Deserialize)]
struct OperationStatus {
    status: String,
    #[serde(default)]
    error: Option<ArmError>,
}

/// How a long-running operation ended.
pub enum Outcome {
    Succeeded,
    /// `Failed` or `Canceled`, with ARM's error.
    Failed {
        status: String,
        error: ArmError,
    },
}

impl Arm {
    pub fn new(credentials: Credentials, endpoints: Endpoints) -> Arm {
        Arm {
            credentials,
            endpoints,
            token: None,
        }
    }

    pub fn management(&self) -> &str {
        &self.endpoints.management
    }

    /// A bearer token for ARM, fetched with the client-credentials grant and kept until
    /// shortly before it expires (a long wait can outlast one).
    fn bearer(&mut self) -> Result<String> {
        if let Some(token) = &self.token
            && Instant::now() < token.renew_at
        {
            return Ok(token.bearer.clone());
        }
        let c = &self.credentials;
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.endpoints.login,
            http::encode_path(&c.tenant)
        );
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.secret.as_str()),
            ("scope", self.endpoints.scope.as_str()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
        // The form holds the secret: it is never part of a message, only the peer is.
        let reply = http::send(
            "POST",
            &url,
            &[
                (
                    "content-type",
                    "application/x-www-form-urlencoded".to_string(),
                ),
                ("accept", "application/json".to_string()),
            ],
            form.into_bytes(),
        )
        .map_err(|e| e.context("getting a token from Microsoft Entra ID"))?;
        if !reply.is_success() {
            return Err(token_error(&reply, &self.endpoints.login));
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            access_token: String,
            #[serde(default)]
            expires_in: Option<serde_json::Value>,
        }
        let answer: TokenAnswer = reply.json("the token endpoint's answer")?;
        // `expires_in` is a number of seconds (older endpoints wrote it as a string).
        let lifetime = answer
            .expires_in
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .unwrap_or(3600);
        let renew_in = Duration::from_secs(lifetime).saturating_sub(TOKEN_MARGIN);
        self.token = Some(Token {
            bearer: answer.access_token.clone(),
            renew_at: Instant::now() + renew_in,
        });
        Ok(answer.access_token)
    }

    /// One ARM request at `url` (absolute), with a JSON body if any. The answer whatever
    /// its status: the caller knows what a 404 means for it.
    pub fn request(
        &mut self,
        method: &str,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply> {
        let mut headers = vec![
            ("authorization", format!("Bearer {}", self.bearer()?)),
            ("accept", "application/json".to_string()),
        ];
        let bytes = match body {
            Some(value) => {
                headers.push(("content-type", "application/json".to_string()));
                serde_json::to_vec(value).map_err(|e| PluginError::permanent(e.to_string()))?
            }
            None => Vec::new(),
        };
        http::send(method, url, &headers, bytes)
    }

    /// Waits until the long-running operation that answered `started` with `reply` ends,
    /// or `deadline` passes. As Azure's guidelines describe: poll the
    /// `Azure-AsyncOperation` URL's status document when there is one, else the
    /// `Location` URL (202 while running), else the resource itself
    /// (`properties.provisioningState`, at `resource_url`). Each poll is logged; transient
    /// failures of a poll are logged and polled again, within the deadline.
    pub fn wait(
        &mut self,
        what: &str,
        reply: &Reply,
        resource_url: Option<&str>,
        deadline: Instant,
        wait_minutes: u64,
    ) -> Result<Outcome> {
        let started = Instant::now();
        let mut pause = retry_after(reply).unwrap_or(DEFAULT_POLL);
        let (mode, url) = if let Some(url) = reply.header("azure-asyncoperation") {
            (Mode::AsyncOperation, url.to_string())
        } else if let (202, Some(url)) = (reply.status, reply.header("location")) {
            (Mode::Location, url.to_string())
        } else {
            match provisioning_state(reply) {
                Some(state) if is_terminal(&state) => {
                    return Ok(outcome_of(&state, reply));
                }
                _ => match resource_url {
                    Some(url) => (Mode::Resource, url.to_string()),
                    // A 202 with nothing to poll: ARM says it accepted, and that is all
                    // anyone can know.
                    None => return Ok(Outcome::Succeeded),
                },
            }
        };
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(PluginError::transient(format!(
                    "{what}: still running after {wait_minutes} min (wait_minutes); it may \
                     yet finish in Azure, and a later run prunes it like any other snapshot"
                )));
            }
            let sleep = pause.min(deadline - now);
            backups_sdk::info!(
                "{what}: in progress after {}s, next check in {}s (giving up after {wait_minutes} min)",
                started.elapsed().as_secs(),
                sleep.as_secs()
            );
            std::thread::sleep(sleep);
            let polled = match self.request("GET", &url, None) {
                Ok(polled) if polled.is_success() || polled.status == 202 => polled,
                Ok(polled) => {
                    let err = arm_error(what, &polled);
                    if err.kind != backups_sdk::ErrorKind::Transient {
                        return Err(err);
                    }
                    backups_sdk::warn!("{}; polling again", err.message);
                    pause = retry_after(&polled).unwrap_or(pause);
                    continue;
                }
                Err(err) if err.kind == backups_sdk::ErrorKind::Transient => {
                    backups_sdk::warn!("{what}: {}; polling again", err.message);
                    continue;
                }
                Err(err) => return Err(err),
            };
            pause = retry_after(&polled).unwrap_or(pause);
            let state = match mode {
                Mode::AsyncOperation => {
                    let doc: OperationStatus = polled.json(what)?;
                    if is_terminal(&doc.status) {
                        return Ok(match doc.status.eq_ignore_ascii_case("succeeded") {
                            true => Outcome::Succeeded,
                            false => Outcome::Failed {
                                status: doc.status,
                                error: doc.error.unwrap_or_default(),
                            },
                        });
                    }
                    doc.status
                }
                Mode::Location if polled.status == 202 => "InProgress".to_string(),
                Mode::Location => return Ok(Outcome::Succeeded),
                Mode::Resource => match provisioning_state(&polled) {
                    Some(state) if is_terminal(&state) => {
                        return Ok(outcome_of(&state, &polled));
                    }
                    Some(state) => state,
                    None => return Ok(Outcome::Succeeded),
                },
            };
            backups_sdk::debug!("{what}: status {state}");
        }
    }
}

enum Mode {
    AsyncOperation,
    Location,
    Resource,
}

fn is_terminal(state: &str) -> bool {
    ["succeeded", "failed", "canceled", "cancelled"]
        .iter()
        .any(|s| state.eq_ignore_ascii_case(s))
}

fn outcome_of(state: &str, reply: &Reply) -> Outcome {
    if state.eq_ignore_ascii_case("succeeded") {
        Outcome::Succeeded
    } else {
        let error = serde_json::from_slice::<ArmErrorBody>(&reply.body)
            .ok()
            .and_then(|b| b.error)
            .unwrap_or_default();
        Outcome::Failed {
            status: state.to_string(),
            error,
        }
    }
}

/// `properties.provisioningState` of a resource in the answer's body.
fn provisioning_state(reply: &Reply) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(&reply.body).ok()?;
    value["properties"]["provisioningState"]
        .as_str()
        .map(str::to_string)
}

/// The pause an answer asks for before the next poll: its `Retry-After` (seconds), held
/// to [`MIN_POLL`]..[`MAX_POLL`]. Without one, the caller keeps the pause it had (at
/// first [`DEFAULT_POLL`]).
fn retry_after(reply: &Reply) -> Option<Duration> {
    reply
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).clamp(MIN_POLL, MAX_POLL))
}

/// The error a non-2xx ARM answer means, with ARM's code and message: 401/403 `auth`
/// (a 403 is a missing role assignment), 404 `not-found`, 408/429/5xx `transient`,
/// others `permanent`.
pub fn arm_error(what: &str, reply: &Reply) -> PluginError {
    let detail = serde_json::from_slice::<ArmErrorBody>(&reply.body)
        .ok()
        .and_then(|b| b.error)
        .map(|e| e.describe())
        .unwrap_or_else(|| reply.text());
    let message = format!("{what}: HTTP {}: {detail}", reply.status);
    match reply.status {
        401 => PluginError::auth(format!(
            "{message} (the token was refused: check that TENANT_ID is the subscription's tenant)"
        )),
        403 => PluginError::auth(format!(
            "{message} (the service principal CLIENT_ID needs a role that allows reading the \
             disk, and writing, listing and deleting snapshots in the destination group)"
        )),
        _ => reply.error(message),
    }
}

/// Entra ID's answer to a refused token request, with the variable to check. Its body is
/// `{"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client
/// secret provided. …"}`; the `AADSTS` code says which part of the principal is wrong.
fn token_error(reply: &Reply, login: &str) -> PluginError {
    #[derive(Deserialize, Default)]
    struct OAuthError {
        #[serde(default)]
        error: String,
        #[serde(default)]
        error_description: String,
    }
    let body: OAuthError = serde_json::from_slice(&reply.body).unwrap_or_default();
    let description = body
        .error_description
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let has = |code: &str| description.contains(code);
    let check = if has("AADSTS7000215") || has("AADSTS7000222") {
        // An invalid or expired client secret.
        SECRET_ENV.to_string()
    } else if has("AADSTS700016") || body.error == "unauthorized_client" {
        // No such application in the tenant.
        CLIENT_ENV.to_string()
    } else if has("AADSTS90002") || has("AADSTS900023") || has("AADSTS90013") {
        // No such tenant, or not a tenant id.
        TENANT_ENV.to_string()
    } else if body.error == "invalid_client" {
        format!("{SECRET_ENV} and {CLIENT_ENV}")
    } else {
        format!("{TENANT_ENV}, {CLIENT_ENV} and {SECRET_ENV}")
    };
    let said = match (body.error.is_empty(), description.is_empty()) {
        (true, _) => reply.text(),
        (false, true) => body.error.clone(),
        (false, false) => format!("{}: {description}", body.error),
    };
    let message = format!(
        "getting a token from {}: HTTP {}: {said} (check {check})",
        http::peer(login),
        reply.status
    );
    match reply.status {
        408 | 429 | 500..=599 => PluginError::transient(message),
        _ if body.error == "invalid_scope" => {
            PluginError::invalid_config(format!("token_scope: {message}"))
        }
        _ => PluginError::auth(message),
    }
}

/// `application/x-www-form-urlencoded` for one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
