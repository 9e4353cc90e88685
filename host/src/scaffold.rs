//! `backups plugins new`: a plugin crate on the SDK that builds for `wasm32-wasip2` and
//! passes `backups plugins test` as generated — a working start to edit, not a blank page.
//!
//! Where the SDK comes from is the caller's choice, because an installed binary cannot
//! know: the source tree it was built from is gone, and the SDK is not on crates.io. A
//! `path` to a checkout's `sdk/` (what this repository's tests use) or a `git` URL and
//! revision (what an author outside it uses) are both exact; guessing either is not.

use crate::config::Role;
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};

/// Where the generated crate gets `backups-sdk`.
pub enum SdkSource {
    /// A checkout's `sdk/` directory.
    Path(PathBuf),
    /// A git repository holding the workspace, at a revision (tag, branch or commit).
    Git { url: String, rev: Option<String> },
}

const DESTINATION: &str = include_str!("scaffold/destination.rs.txt");
const SOURCE: &str = include_str!("scaffold/source.rs.txt");
const NOTIFIER: &str = include_str!("scaffold/notifier.rs.txt");

/// Writes the crate `name` into `dir/name`, which must not exist yet; gives its directory.
pub fn create(name: &str, role: Role, dir: &Path, sdk: &SdkSource) -> Result<PathBuf> {
    check_name(name)?;
    let root = dir.join(name);
    if root.exists() {
        bail!("{}: already exists; not overwriting it", root.display());
    }
    let sdk_dependency = match sdk {
        SdkSource::Path(path) => {
            let path = path
                .canonicalize()
                .with_context(|| format!("--sdk {}", path.display()))?;
            let manifest = std::fs::read_to_string(path.join("Cargo.toml")).unwrap_or_default();
            if !manifest.contains("name = \"backups-sdk\"") {
                bail!(
                    "--sdk {}: not the backups-sdk crate (its sdk/ directory)",
                    path.display()
                );
            }
            format!("path = {}", toml_string(&path.display().to_string()))
        }
        SdkSource::Git { url, rev } => {
            let mut dep = format!("git = {}", toml_string(url));
            if let Some(rev) = rev {
                dep += &format!(", rev = {}", toml_string(rev));
            }
            dep
        }
    };
    let wasm = format!(
        "{name}/target/wasm32-wasip2/release/{}.wasm",
        name.replace('-', "_")
    );
    let template = match role {
        Role::Destination => DESTINATION,
        Role::Source => SOURCE,
        Role::Notifier => NOTIFIER,
    };
    let lib = template
        .replace("{{NAME}}", name)
        .replace("{{TYPE}}", &type_name(name))
        .replace("{{WASM}}", &wasm);
    let manifest = format!(
        r#"# A backups {role} plugin: `cargo build --release --target wasm32-wasip2`, then
# `backups plugins test target/wasm32-wasip2/release/{file}.wasm --kind {role} --config ...`.
[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
backups-sdk = {{ {sdk_dependency}, features = ["{role}"] }}
serde = {{ version = "1", features = ["derive"] }}

[profile.release]
strip = "debuginfo"

# A plugin is its own project, not part of any workspace around it.
[workspace]
"#,
        file = name.replace('-', "_"),
    );
    std::fs::create_dir_all(root.join("src"))
        .with_context(|| format!("creating {}", root.display()))?;
    for (file, text) in [
        ("Cargo.toml", manifest.as_str()),
        ("src/lib.rs", lib.as_str()),
        (".gitignore", "/target\n"),
    ] {
        let path = root.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(root)
}

/// A crate name that is also a good job-file `type`: `my-store`.
fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!("{name:?}: a plugin name is lowercase letters, digits and -, starting with a letter");
    }
    Ok(())
}

/// `my-store` → `MyStore`, the plugin's type in lib.rs.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_types_and_bad_names_are_refused() {
        assert_eq!(type_name("my-store"), "MyStore");
        assert_eq!(type_name("s3x"), "S3x");
        for bad in ["", "My", "1x", "a_b", "a-", "a/b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("my-store2").is_ok());
    }
}
