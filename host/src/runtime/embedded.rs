//! The first-party plugins, compiled for wasm32-wasip2 by `build.rs` and embedded in the
//! binary, so a user needs nothing but `backups`.

// Defines `PLUGINS: &[(&str, &[u8])]`: (type name, component bytes).
include!(concat!(env!("OUT_DIR"), "/embedded_plugins.rs"));
