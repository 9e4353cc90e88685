//! Which world and WIT version a component implements, read from its exports.

use crate::config::Role;
use wasmtime::Engine;
use wasmtime::component::Component;

pub const PACKAGE: &str = "backups:plugin";
/// The contract versions this host serves. A later host may serve several side by side.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0", "0.1.1", "0.1.2", "0.1.3", "0.1.4"];

/// What a component says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldInfo {
    pub role: Role,
    pub version: String,
}

/// Reads the world from a component's exports, or says in words why it is not a plugin
/// this host can run.
pub fn detect(engine: &Engine, component: &Component) -> Result<WorldInfo, String> {
    let ty = component.component_type();
    let mut found: Vec<(Role, String)> = Vec::new();
    let mut other_versions = Vec::new();
    for (name, _) in ty.exports(engine) {
        let Some(rest) = name.strip_prefix(&format!("{PACKAGE}/")) else {
            continue;
        };
        let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
        let role = match interface {
            "dump" => Role::Source,
            "storage" => Role::Destination,
            "notification" => Role::Notifier,
            _ => continue,
        };
        if SUPPORTED_VERSIONS.contains(&version) {
            found.push((role, version.to_string()));
        } else {
            other_versions.push(format!("{interface}@{version}"));
        }
    }
    match found.as_slice() {
        [(role, version)] => Ok(WorldInfo {
            role: *role,
            version: version.clone(),
        }),
        [] if !other_versions.is_empty() => Err(format!(
            "it implements {PACKAGE} {} but this host serves version {}",
            other_versions.join(", "),
            SUPPORTED_VERSIONS.join(", ")
        )),
        [] => {
            let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
            Err(format!(
                "it is not a backups plugin: it exports none of {PACKAGE}/dump, storage or \
                 notification (it exports: {})",
                if exports.is_empty() {
                    "nothing".into()
                } else {
                    exports.join(", ")
                }
            ))
        }
        _ => Err("it exports more than one backups world; a plugin implements one".into()),
    }
}

/// The interfaces a component imports, for `plugins inspect`.
pub fn imports(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(n, _)| n.to_string())
        .collect()
}
