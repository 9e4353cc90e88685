//! Secret references: a value may be written `{"env": "NAME"}` or `{"file": "/path"}`
//! instead of literally, so job files can live in configuration management without the
//! secrets in them. Resolved once, by the host, before any plugin sees its config.

use anyhow::{Result, bail};
use serde_json::Value;

/// Where a secret's value lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(String),
}

impl SecretRef {
    /// A JSON object is a reference only if it is exactly `{"env": "..."}` or `{"file": "..."}`.
    pub fn from_value(value: &Value) -> Option<SecretRef> {
        let Value::Object(map) = value else {
            return None;
        };
        if map.len() != 1 {
            return None;
        }
        match map.iter().next() {
            Some((k, Value::String(v))) if k == "env" => Some(SecretRef::Env(v.clone())),
            Some((k, Value::String(v))) if k == "file" => Some(SecretRef::File(v.clone())),
            _ => None,
        }
    }

    fn read(&self, at: &str) -> Result<String> {
        match self {
            SecretRef::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(v),
                Ok(_) => bail!("{at}: environment variable {name} is empty"),
                Err(_) => bail!("{at}: environment variable {name} is not set"),
            },
            SecretRef::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("{at}: cannot read secret file {path}: {e}"))?;
                // Files written by `echo` end in a newline that is not part of the secret.
                let value = text.trim_end_matches(['\n', '\r']).to_string();
                if value.is_empty() {
                    bail!("{at}: secret file {path} is empty");
                }
                Ok(value)
            }
        }
    }
}

/// The paths of every `{"file": …}` reference inside `value`.
pub fn file_references(value: &Value, out: &mut Vec<std::path::PathBuf>) {
    match SecretRef::from_value(value) {
        Some(SecretRef::File(path)) => out.push(path.into()),
        Some(SecretRef::Env(_)) => {}
        None => match value {
            Value::Object(map) => map.values().for_each(|v| file_references(v, out)),
            Value::Array(items) => items.iter().for_each(|v| file_references(v, out)),
            _ => {}
        },
    }
}

/// Replaces every reference inside `value` by the secret it names, collecting the secret
/// values (for redaction) into `found`. `at` names the key for error messages.
pub fn resolve_secrets(value: &mut Value, at: &str, found: &mut Vec<String>) -> Result<()> {
    if let Some(reference) = SecretRef::from_value(value) {
        let secret = reference.read(at)?;
        found.push(secret.clone());
        *value = Value::String(secret);
        return Ok(());
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                resolve_secrets(v, &format!("{at}.{k}"), found)?;
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                resolve_secrets(v, &format!("{at}[{i}]"), found)?;
            }
        }
        _ => {}
    }
    Ok(())
}
