//! Helpers for reading job-file keys the way the legacy tool wrote them.

use crate::error::{PluginError, Result};
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;

/// A legacy flag: `1`/`0`, `true`/`false`, `"1"`/`"0"`/`"yes"`/`"no"`.
/// Use with `#[serde(default, deserialize_with = "backups_sdk::config::flag")]`.
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => b,
        serde_json::Value::Number(n) => n.as_u64() != Some(0),
        serde_json::Value::String(s) => !matches!(s.as_str(), "" | "0" | "false" | "no"),
        _ => false,
    })
}

/// A key that takes one value or a list (`"excludes": "tmp"` or `["tmp", "*~"]`).
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// A list of values.
    Many(Vec<T>),
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl<T: Clone> OneOrMany<T> {
    /// The value(s) as a list.
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `key` must hold an absolute path (plugins see the host's paths, with no working
/// directory to be relative to).
pub fn absolute_path(key: &str, value: &str) -> Result<PathBuf> {
    if value.starts_with('/') {
        Ok(PathBuf::from(value))
    } else {
        Err(PluginError::invalid_config(format!(
            "{key}: {value:?} must be an absolute path"
        )))
    }
}
