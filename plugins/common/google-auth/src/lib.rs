//! What the Google destinations (`gs`, `gdrive`) share:
//!
//! - [`ServiceAccount`]: a service-account JSON key, and the RS256-signed JWT assertion it
//!   makes (pure-Rust `rsa`, so it builds for `wasm32-wasip2`);
//! - [`TokenSource`]: the OAuth2 JWT-bearer exchange at the key's `token_uri`, the token
//!   cached until shortly before it expires;
//! - [`http`]: requests over `wasi:http` with Google's answers mapped to typed errors;
//! - [`Upload`]: the resumable upload protocol both APIs use, cancelled on failure;
//! - [`unix_seconds`]: the APIs' RFC 3339 timestamps.
//!
//! It depends on the SDK's `destination` world only, so a destination plugin using it
//! still enables exactly one world.

pub mod http;
mod resumable;
mod service_account;
mod time;
mod token;

pub use resumable::{CHUNK_GRANULARITY, Upload};
pub use service_account::{GOOGLE_TOKEN_URI, ServiceAccount};
pub use time::unix_seconds;
pub use token::TokenSource;

use backups_sdk::{PluginError, Result};

/// `https://host[:port]/path…` → `https://host[:port]`: the peer a `net` grant names.
/// `config_key` is named in the error for anything that is not an http(s) URL.
pub fn origin(url: &str, config_key: &str) -> Result<String> {
    let bad = || {
        PluginError::invalid_config(format!(
            "{config_key}: {url:?} must be an http:// or https:// URL"
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if !matches!(scheme, "http" | "https") || authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    Ok(format!("{scheme}://{authority}"))
}

/// The chunk size in bytes for `mib` from the entry's `config_key`: at least 1 MiB (so a
/// multiple of the protocol's 256 KiB), at most 1 GiB (it is held in memory).
pub fn chunk_size(mib: u64, config_key: &str) -> Result<u64> {
    if !(1..=1024).contains(&mib) {
        return Err(PluginError::invalid_config(format!(
            "{config_key}: {mib} is out of range (1 to 1024 MiB)"
        )));
    }
    Ok(mib << 20)
}

/// What a Google destination derives from its keys: read access to the key file, and the
/// network peers it talks to: its API (`api_url`, from the config key `api_key`) and the
/// token endpoint (`token_uri` when the entry sets it, else Google's). The key file is
/// not read here (nothing is granted yet), so a key file whose own `token_uri` points
/// elsewhere needs the entry's `token_uri` too.
pub fn derived_grants(
    key_file: &str,
    api_url: &str,
    api_key: &str,
    token_uri: Option<&str>,
) -> Result<backups_sdk::Grants> {
    Ok(backups_sdk::Grants {
        read: vec![key_file.to_string()],
        net: vec![
            origin(api_url, api_key)?,
            origin(token_uri.unwrap_or(GOOGLE_TOKEN_URI), "token_uri")?,
        ],
        ..backups_sdk::Grants::default()
    })
}

/// The value of a required key, or `invalid-config` naming it and saying what it is for.
pub fn required<'a>(value: &'a Option<String>, config_key: &str, what: &str) -> Result<&'a str> {
    value
        .as_deref()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| PluginError::invalid_config(format!("{config_key}: missing ({what})")))
}

/// A token source for `scope` with the key file at `path` (named in the entry by
/// `config_key`; it must be absolute), and the entry's `token_uri` if it sets one.
pub fn token_source(
    path: &str,
    config_key: &str,
    scope: &str,
    token_uri: Option<String>,
    subject: Option<String>,
) -> Result<TokenSource> {
    backups_sdk::config::absolute_path(config_key, path)?;
    if let Some(uri) = &token_uri {
        origin(uri, "token_uri")?;
    }
    let account = ServiceAccount::load(path, config_key)?;
    Ok(TokenSource::new(account, scope, token_uri, subject))
}
