//! Turning bytes into a compiled component: checks that they are a component at all, that
//! they match a pinned digest, and which world they implement. Compiled code is cached on
//! disk by content hash and engine, so the next run does not compile again.

use super::world::{self, WorldInfo};
use crate::trust::{Signature, TrustPolicy};
use anyhow::{Context as _, Result, bail};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a plugin's bytes came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into this binary: first-party, trusted by construction.
    Embedded(String),
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Embedded(name) => write!(f, "embedded `{name}`"),
            Origin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A compiled plugin, ready to instantiate.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub origin: Origin,
    pub component: Component,
    pub world: WorldInfo,
    /// sha256 of the `.wasm` bytes, hex.
    pub digest: String,
    pub size: usize,
    /// What its signature says (embedded plugins need none).
    pub signature: Signature,
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Layer/version bytes after the magic: components are `0d 00 01 00`, core modules `01 00 00 00`.
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
const CORE_MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compiles (or loads from cache) `bytes`, refusing anything that is not a backups
/// plugin, that does not match its pinned digest, or that the trust policy refuses.
/// Every check is on these bytes, the ones compiled.
pub fn load(
    engine: &Engine,
    cache: Option<&ComponentCache>,
    origin: Origin,
    bytes: &[u8],
    pinned_sha256: Option<&str>,
    trust: &TrustPolicy,
) -> Result<LoadedPlugin> {
    let digest = sha256_hex(bytes);
    if let Some(expected) = pinned_sha256
        && expected != digest
    {
        bail!(
            "{origin}: sha256 mismatch: the job pins {expected} but the file is {digest}; \
             refusing to load it"
        );
    }
    let signature = match &origin {
        Origin::Embedded(_) => Signature::Embedded,
        Origin::File(path) => trust.admit(path, bytes)?,
    };
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        bail!("{origin}: not a WebAssembly file (expected a wasm32-wasip2 component)");
    }
    let version: [u8; 4] = bytes[4..8].try_into().expect("8 bytes checked");
    if version == CORE_MODULE_VERSION {
        bail!(
            "{origin}: a core WebAssembly module, not a component: build it for \
             wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
        );
    }
    if version != COMPONENT_VERSION {
        bail!("{origin}: unsupported WebAssembly encoding {version:02x?} (expected a component)");
    }

    let component = match cache {
        Some(cache) => cache.get_or_compile(engine, &digest, bytes),
        None => Component::new(engine, bytes),
    }
    .map_err(|e| anyhow::anyhow!("{origin}: not a valid component: {e:#}"))?;
    let world =
        world::detect(engine, &component).map_err(|why| anyhow::anyhow!("{origin}: {why}"))?;
    Ok(LoadedPlugin {
        origin,
        component,
        world,
        digest,
        size: bytes.len(),
        signature,
    })
}

/// Reads a plugin file; errors name the file.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: cannot read plugin", path.display()))
}

/// Compiled components on disk, named by the wasm's sha256 and the engine's compatibility
/// hash (wasmtime version, target, settings): a changed engine never loads stale code.
///
/// Loading compiled code is trusting it (`Component::deserialize_file` is unsafe), so the
/// directory must be ours alone: owned by this user and not writable by anyone else.
pub struct ComponentCache {
    dir: PathBuf,
    engine_key: String,
}

impl ComponentCache {
    /// Opens (creating, mode 0700) the cache directory; `None` with a warning if it is not
    /// safe to use, in which case every run compiles.
    pub fn open(engine: &Engine, dir: &Path) -> Option<ComponentCache> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
        {
            tracing::warn!("compile cache {} unavailable: {e}", dir.display());
            return None;
        }
        let meta = std::fs::metadata(dir).ok()?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me || meta.permissions().mode() & 0o022 != 0 {
            tracing::warn!(
                "compile cache {} is not private to this user (owner or mode): not used",
                dir.display()
            );
            return None;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Some(ComponentCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn get_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<Component> {
        let path = self.dir.join(format!("{digest}-{}.cwasm", self.engine_key));
        if path.exists() {
            // SAFETY: the file was written by `serialize` below into a directory only this
            // user can write (checked in `open`), named by the hash of its source.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::debug!("compile cache entry {} unusable: {e}", path.display()),
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Ok(compiled) = component.serialize() {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, compiled).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(component)
    }
}

/// `$BACKUPS_CACHE_DIR`, else `$XDG_CACHE_HOME/backups`, else `~/.cache/backups`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BACKUPS_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("backups"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/backups"))
}
