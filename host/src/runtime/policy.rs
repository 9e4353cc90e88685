//! What one plugin instance may do and who it is: the facts every host service checks a
//! call against. Its own module, below `state` and every service, so that a service
//! (`http`, `name_lookup`) and the store that holds it do not import each other.

use crate::grants::Grants;
use crate::redact::Redactor;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Facts about the instance every host service needs: who it is and what it may do.
pub struct Policy {
    /// `sources[0] "etc"`: how logs and denials name the instance.
    pub label: String,
    pub grants: Grants,
    pub redactor: Redactor,
    /// Where `process.private-file` writes.
    pub tmpdir: PathBuf,
    /// Log bytes the instance may still emit.
    pub log_budget: u64,
    /// `limits.private_files` and `limits.private_file_kib`, in bytes.
    pub private_files_most: u64,
    pub private_file_bytes_most: u64,
    /// Network requests the host refused, so far: a failed call that caused one is a
    /// denial, whatever the plugin's HTTP library made of the refusal.
    pub net_denials: Arc<AtomicU64>,
}
