//! Host bindings for the three worlds of `backups:plugin@0.1.4` (which serve 0.1.0 to 0.1.3
//! plugins too: wasmtime matches semver-compatible import and export names).
//!
//! Destinations are bound as `destination-base` (what every version exports) plus the
//! optional `destination-leftovers` (since 0.1.2), looked up on the live instance: a
//! destination built against an older contract lacks it and still runs. Sources likewise:
//! `source`, plus the optional `source-incremental` (since 0.1.3).
//!
//! The worlds share their imports (`types`, `log`, `fs-metadata`, `process`) and the
//! `plugin` export; the imports are generated once, with the source world, and the other
//! worlds reuse them through `with`, so the host implements each import once.
//! `wasi:io` maps to wasmtime-wasi's streams, so a plugin's `output-stream` is the same
//! resource the rest of WASI uses.

pub mod source {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "backups:plugin/source",
        imports: { default: async },
        exports: { default: async },
        with: {
            "wasi": wasmtime_wasi::p2::bindings,
        },
        require_store_data_send: true,
    });
}

pub mod destination {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "backups:plugin/destination-base",
        imports: { default: async },
        exports: { default: async },
        with: {
            "wasi": wasmtime_wasi::p2::bindings,
            "backups:plugin/types": super::source::backups::plugin::types,
            "backups:plugin/log": super::source::backups::plugin::log,
            "backups:plugin/fs-metadata": super::source::backups::plugin::fs_metadata,
            "backups:plugin/process": super::source::backups::plugin::process,
        },
        require_store_data_send: true,
    });
}

pub mod incremental {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "backups:plugin/source-incremental",
        imports: { default: async },
        exports: { default: async },
        with: {
            "wasi": wasmtime_wasi::p2::bindings,
            "backups:plugin/types": super::source::backups::plugin::types,
        },
        require_store_data_send: true,
    });
}

pub mod leftovers {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "backups:plugin/destination-leftovers",
        imports: { default: async },
        exports: { default: async },
        with: {
            "backups:plugin/types": super::source::backups::plugin::types,
        },
        require_store_data_send: true,
    });
}

pub mod notifier {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "backups:plugin/notifier",
        imports: { default: async },
        exports: { default: async },
        with: {
            "wasi": wasmtime_wasi::p2::bindings,
            "backups:plugin/types": super::source::backups::plugin::types,
            "backups:plugin/log": super::source::backups::plugin::log,
            "backups:plugin/fs-metadata": super::source::backups::plugin::fs_metadata,
            "backups:plugin/process": super::source::backups::plugin::process,
        },
        require_store_data_send: true,
    });
}

pub use incremental::exports::backups::plugin::incremental::IncrementalInfo;
pub use leftovers::exports::backups::plugin::leftovers::{CleanupRule, Leftover};
pub use notifier::backups::plugin::report_details::{Details as ReportDetails, SourceTiming};
pub use notifier::exports::backups::plugin::notification as report_types;
pub use source::backups::plugin::types::{
    About, Context, ErrorKind, Grants as WitGrants, ObjectInfo, PluginError,
};
pub use source::backups::plugin::{fs_metadata, log, process};
pub use source::exports::backups::plugin::dump::DumpInfo;

/// An operator's reading of a plugin error: the message, then the kind.
pub fn describe_error(e: &PluginError) -> String {
    let kind = match e.kind {
        ErrorKind::Transient => "transient",
        ErrorKind::Auth => "auth",
        ErrorKind::NotFound => "not found",
        ErrorKind::InvalidConfig => "invalid config",
        ErrorKind::Denied => "denied",
        ErrorKind::Permanent => "permanent",
    };
    format!("{} ({kind})", e.message)
}
