//! Typed errors: the kind tells the host whether to retry.

use crate::world::backups::plugin::types as wit;
use std::fmt;

/// Alias used throughout plugin code.
pub type Result<T, E = PluginError> = std::result::Result<T, E>;

/// What went wrong, in terms the host acts on: only `Transient` is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Worth retrying: a timeout, a dropped connection, throttling, a 5xx answer.
    Transient,
    /// Credentials are missing, wrong or lack a permission. Retrying will not help.
    Auth,
    /// The object, bucket, database or path named does not exist.
    NotFound,
    /// The plugin's own config section is wrong; the message names the key.
    InvalidConfig,
    /// A capability the plugin needed was not granted (a path, host, command or
    /// variable). The host has already logged which grant was missing.
    Denied,
    /// Any other failure that retrying will not fix.
    Permanent,
}

/// An error returned to the host. The message is for an operator: say what failed and what
/// to check.
#[derive(Debug, Clone)]
pub struct PluginError {
    /// What the host should do about it.
    pub kind: ErrorKind,
    /// For an operator: what failed and, where it helps, what to check.
    pub message: String,
}

impl PluginError {
    /// An error of `kind`; `message` is for an operator: what failed, what to check.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    /// Worth retrying: a timeout, a dropped connection, throttling, a 5xx answer.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }
    /// Credentials missing, wrong or lacking a permission.
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, message)
    }
    /// The object, bucket, database or path named does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// The entry's config is wrong: name the key in `message`.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }
    /// A capability was not granted (the host has logged which).
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Denied, message)
    }
    /// Any other failure that retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, message)
    }

    /// Prefixes the message with what was being done, e.g. `reading /etc/hosts: ...`.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// Maps an I/O error the way a host operator would read it: a missing file is
    /// `NotFound`, a permission problem (including a path outside the grants, which WASI
    /// reports as not found or not permitted) is `Denied`, interruptions are `Transient`.
    pub fn from_io(err: &std::io::Error, what: impl fmt::Display) -> Self {
        use std::io::ErrorKind as K;
        let kind = match err.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::PermissionDenied => ErrorKind::Denied,
            K::TimedOut
            | K::Interrupted
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe
            | K::WouldBlock => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        };
        Self::new(kind, format!("{what}: {err}"))
    }
}

/// An error and every `source()` beneath it, joined with `: `. Client libraries (the AWS
/// SDK, HTTP clients) keep the useful part — "connection refused", the DNS failure — several
/// levels down, where `to_string()` alone does not show it.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<std::io::Error> for PluginError {
    fn from(err: std::io::Error) -> Self {
        Self::from_io(&err, "I/O error")
    }
}

impl From<serde_json::Error> for PluginError {
    fn from(err: serde_json::Error) -> Self {
        Self::invalid_config(err.to_string())
    }
}

impl From<PluginError> for wit::PluginError {
    fn from(err: PluginError) -> Self {
        let kind = match err.kind {
            ErrorKind::Transient => wit::ErrorKind::Transient,
            ErrorKind::Auth => wit::ErrorKind::Auth,
            ErrorKind::NotFound => wit::ErrorKind::NotFound,
            ErrorKind::InvalidConfig => wit::ErrorKind::InvalidConfig,
            ErrorKind::Denied => wit::ErrorKind::Denied,
            ErrorKind::Permanent => wit::ErrorKind::Permanent,
        };
        wit::PluginError {
            kind,
            message: err.message,
        }
    }
}

impl From<wit::PluginError> for PluginError {
    fn from(err: wit::PluginError) -> Self {
        let kind = match err.kind {
            wit::ErrorKind::Transient => ErrorKind::Transient,
            wit::ErrorKind::Auth => ErrorKind::Auth,
            wit::ErrorKind::NotFound => ErrorKind::NotFound,
            wit::ErrorKind::InvalidConfig => ErrorKind::InvalidConfig,
            wit::ErrorKind::Denied => ErrorKind::Denied,
            wit::ErrorKind::Permanent => ErrorKind::Permanent,
        };
        Self::new(kind, err.message)
    }
}
