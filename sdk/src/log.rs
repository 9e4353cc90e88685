//! Log lines for the operator. The host prefixes each with the plugin's entry id,
//! redacts secrets and caps the volume one plugin may log.

use crate::world::backups::plugin::log::{Level, log};

/// Logs at trace level (shown with `-vv`).
pub fn trace(message: &str) {
    log(Level::Trace, message)
}
/// Logs at debug level (shown with `-v`).
pub fn debug(message: &str) {
    log(Level::Debug, message)
}
/// Logs at info level: progress an operator wants to see.
pub fn info(message: &str) {
    log(Level::Info, message)
}
/// Logs a warning: something to read that did not fail the call.
pub fn warn(message: &str) {
    log(Level::Warn, message)
}
/// Logs an error (return a [`crate::PluginError`] to fail the call).
pub fn error(message: &str) {
    log(Level::Error, message)
}

/// `backups_sdk::info!("uploaded {} bytes", n)`
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::info(&format!($($arg)*)) };
}

/// `backups_sdk::warn!("skipping {}", path)`
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::warn(&format!($($arg)*)) };
}

/// `backups_sdk::debug!("listing {}", prefix)`
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::debug(&format!($($arg)*)) };
}
