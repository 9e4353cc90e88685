//! The first-party plugins, compiled for wasm32-wasip2 by `build.rs` and embedded in the
//! binary, so a user needs nothing but `backups`.

// Defines `PLUGINS: &[(&str, &[u8])]`: (type name, component bytes).
include!(concat!(env!("OUT_DIR"), "/embedded_plugins.rs"));

/// Legacy types served by a plugin of another name: (type, plugin).
pub static ALIASES: &[(&str, &str)] = &[
    ("minio", "s3"),
    ("rds-pgsql", "rds"),
    ("slack", "webhook"),
    ("discord", "webhook"),
    ("hipchat", "webhook"),
];

/// The embedded plugin serving a job-file `type`.
pub fn plugin_for(kind: &str) -> &str {
    ALIASES
        .iter()
        .find(|(t, _)| *t == kind)
        .map_or(kind, |(_, p)| p)
}
