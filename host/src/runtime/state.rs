//! What one plugin instance's store holds: its WASI context built from its grants, its
//! resource table, its limits, and the host services it may call.

use super::policy::Policy;
use super::sink::ArtifactSink;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use wasmtime_wasi_tls::{WasiTlsCtx, WasiTlsCtxView, WasiTlsView};

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
    /// Notifiers, during `notify`: what `report-details.current` answers.
    pub(super) report_details: Option<super::bindings::ReportDetails>,
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
