//! What one plugin instance's store holds: its WASI context built from its grants, its
//! resource table, its limits, and the host services it may call.

use super::sink::ArtifactSink;
use crate::grants::Grants;
use crate::redact::Redactor;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use wasmtime_wasi_tls::{WasiTlsCtx, WasiTlsCtxView, WasiTlsView};

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

pub struct PluginState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) http: WasiHttpCtx,
    pub(super) http_hooks: super::http::GrantedHttp,
    pub(super) tls: WasiTlsCtx,
    pub(super) limits: StoreLimits,
    pub(super) policy: Arc<Policy>,
    pub(super) log_left: u64,
    pub(super) log_truncated: bool,
    /// Sources, during `dump`: where `process.stream-stdout` splices a command's output.
    pub(super) sink: Option<ArtifactSink>,
    /// Private files made for this instance; removed when the instance is dropped.
    pub(super) private_files: Vec<PathBuf>,
    /// Bytes written to them so far.
    pub(super) private_file_bytes: u64,
    /// Private directories made for file grants; removed when the instance is dropped.
    pub(super) grant_dirs: Vec<PathBuf>,
    /// Cached grant roots for `fs-metadata.lstat`.
    pub(super) roots: Vec<(PathBuf, cap_std::fs::Dir)>,
}

impl PluginState {
    pub(super) fn label(&self) -> &str {
        &self.policy.label
    }
}

impl Drop for PluginState {
    fn drop(&mut self) {
        for file in &self.private_files {
            let _ = std::fs::remove_file(file);
        }
        for dir in &self.grant_dirs {
            super::file_grant::remove(dir);
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl WasiTlsView for PluginState {
    fn tls(&mut self) -> WasiTlsCtxView<'_> {
        WasiTlsCtxView {
            ctx: &mut self.tls,
            table: &mut self.table,
        }
    }
}
