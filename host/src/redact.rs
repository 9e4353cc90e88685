//! Keeps secrets out of everything we print: logs, reports, errors, notifications.
//!
//! Every secret the job holds (literal passphrases, values behind `{"env"}`/`{"file"}`
//! references, and values of keys a plugin declares secret) is registered once; every
//! string that leaves the process passes through [`Redactor::redact`].

use std::sync::{Arc, RwLock};

/// Secrets shorter than this are not redacted: replacing every `1` in a log because a
/// password is `1` would hide everything and protect nothing. Such secrets are refused
/// nowhere, but they are weak.
const MIN_LEN: usize = 4;
const MASK: &str = "[REDACTED]";

#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&self, secret: &str) {
        if secret.len() < MIN_LEN {
            return;
        }
        let mut secrets = self.secrets.write().expect("redactor lock");
        if !secrets.iter().any(|s| s == secret) {
            secrets.push(secret.to_string());
            // Longest first, so a secret containing another is masked whole.
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn add_all<'a>(&self, secrets: impl IntoIterator<Item = &'a String>) {
        for s in secrets {
            self.add(s);
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.read().expect("redactor lock");
        let mut out = text.to_string();
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first_and_ignores_tiny_values() {
        let r = Redactor::new();
        r.add("hunter2");
        r.add("hunter2-extended");
        r.add("1");
        assert_eq!(
            r.redact("a=hunter2-extended b=hunter2 c=1"),
            "a=[REDACTED] b=[REDACTED] c=1"
        );
    }
}
