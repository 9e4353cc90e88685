//! A service-account JSON key, and the signed JWT assertion it makes for the OAuth2
//! JWT-bearer grant (RFC 7523, as Google documents it for server-to-server applications).

use backups_sdk::{PluginError, Result};
use base64::Engine;
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use serde::Deserialize;
use sha2::Sha256;

/// Where Google's key files send the assertion.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// An assertion is valid for an hour, the longest Google accepts.
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// The fields of a key file (`gcloud iam service-accounts keys create`) that signing needs.
#[derive(Deserialize)]
struct KeyFile {
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

/// A loaded key: the account's e-mail, its RSA private key, and the token endpoint.
pub struct ServiceAccount {
    pub client_email: String,
    pub token_uri: String,
    key_id: Option<String>,
    key: SigningKey<Sha256>,
}

impl ServiceAccount {
    /// Reads and checks the key file at `path`, named in the job by `config_key`. Every
    /// problem with it is `invalid-config` naming both, so the operator knows which file
    /// to fix; the message never quotes the file's contents.
    pub fn load(path: &str, config_key: &str) -> Result<ServiceAccount> {
        let bad = |why: String| PluginError::invalid_config(format!("{config_key}: {path}: {why}"));
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| {
            // Line and column only: serde's message could quote part of the private key.
            bad(format!(
                "not a service-account JSON key (invalid JSON at line {} column {})",
                e.line(),
                e.column()
            ))
        })?;
        let field = |value: Option<String>, name: &str| {
            value
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| bad(format!("no \"{name}\" in the key file")))
        };
        let client_email = field(file.client_email, "client_email")?;
        let pem = field(file.private_key, "private_key")?;
        let key = RsaPrivateKey::from_pkcs8_pem(&pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&pem))
            .map_err(|_| bad("\"private_key\" is not an RSA private key in PEM".into()))?;
        Ok(ServiceAccount {
            client_email,
            token_uri: file.token_uri.unwrap_or_else(|| GOOGLE_TOKEN_URI.into()),
            key_id: file.private_key_id,
            key: SigningKey::new(key),
        })
    }

    /// The signed JWT (RS256) asking `audience` for a token with `scope`, issued at `now`
    /// (seconds since the epoch). `subject`: the user to act for (domain-wide delegation).
    pub fn assertion(
        &self,
        scope: &str,
        audience: &str,
        subject: Option<&str>,
        now: u64,
    ) -> String {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = kid.as_str().into();
        }
        let mut claims = serde_json::json!({
            "iss": self.client_email,
            "scope": scope,
            "aud": audience,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        if let Some(sub) = subject {
            claims["sub"] = sub.into();
        }
        let signed = format!(
            "{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        );
        // Blinded with fresh randomness, so the signing time says nothing about the key.
        let signature = self
            .key
            .sign_with_rng(&mut rand_core::OsRng, signed.as_bytes())
            .to_bytes();
        format!("{signed}.{}", base64url(&signature))
    }
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
