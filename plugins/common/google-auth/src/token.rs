//! Access tokens from a service account: the JWT-bearer exchange at the token endpoint,
//! and a cache so that one token serves every request until shortly before it expires.

use crate::http;
use crate::service_account::ServiceAccount;
use backups_sdk::{PluginError, Result};
use serde::Deserialize;
use std::time::{SystemTime, UNIX_EPOCH};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Renew this long before the token expires, so a token never runs out mid-request (or
/// halfway through its lifetime, for a token that lives less than twice this).
const RENEW_MARGIN_SECS: u64 = 300;

/// What the endpoint answers (RFC 6749 section 5.1).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

struct CachedToken {
    value: String,
    renew_at: u64,
}

/// Bearer tokens for one account and scope.
pub struct TokenSource {
    account: ServiceAccount,
    scope: String,
    token_uri: String,
    subject: Option<String>,
    cached: Option<CachedToken>,
}

impl TokenSource {
    /// `token_uri`: where to exchange the assertion; `None` is the key file's own.
    /// `subject`: a user to act for, when the account has domain-wide delegation.
    pub fn new(
        account: ServiceAccount,
        scope: &str,
        token_uri: Option<String>,
        subject: Option<String>,
    ) -> TokenSource {
        TokenSource {
            token_uri: token_uri.unwrap_or_else(|| account.token_uri.clone()),
            account,
            scope: scope.into(),
            subject,
            cached: None,
        }
    }

    /// The `Authorization` header value for the next request: the cached token while it
    /// is fresh, else a new one.
    pub fn authorization(&mut self) -> Result<String> {
        let now = now();
        match &self.cached {
            Some(token) if now < token.renew_at => {}
            _ => self.cached = Some(self.exchange(now)?),
        }
        let token = self.cached.as_ref().expect("just filled");
        Ok(format!("Bearer {}", token.value))
    }

    /// POSTs a fresh assertion. A refusal (400 `invalid_grant` for a bad signature or an
    /// unknown account, 401 `invalid_client`, 403) is `auth`.
    fn exchange(&self, now: u64) -> Result<CachedToken> {
        let assertion =
            self.account
                .assertion(&self.scope, &self.token_uri, self.subject.as_deref(), now);
        let form = format!(
            "grant_type={}&assertion={}",
            http::encode(JWT_BEARER),
            http::encode(&assertion)
        );
        let what = format!(
            "getting an access token for {} from {}",
            self.account.client_email, self.token_uri
        );
        let response = http::send(
            "POST",
            &self.token_uri,
            &[("content-type", "application/x-www-form-urlencoded")],
            form.into_bytes(),
        )?;
        if matches!(response.status, 400 | 401 | 403) {
            let error = http::status_error(&what, response.status, &response.body);
            return Err(PluginError::auth(error.message));
        }
        let token: TokenResponse = response.success(&what)?.json(&what)?;
        let lifetime = token.expires_in.unwrap_or(3600);
        Ok(CachedToken {
            value: token.access_token,
            renew_at: now + lifetime - RENEW_MARGIN_SECS.min(lifetime / 2),
        })
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
