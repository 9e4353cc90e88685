//! # local — store backups in a directory on this machine
//!
//! ```json
//! { "id": "local-backup", "type": "local", "path": "/mnt/backup-drive", "retention_copies": 7 }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `path` | the directory objects are stored under (granted read-write, nothing else is); it must exist |
//!
//! An object `host/2026-11-22/020000Z/etc.tar.gz.gpg` becomes the file
//! `{path}/host/2026-11-22/020000Z/etc.tar.gz.gpg`. A put writes a hidden `.partial` file
//! and renames it into place only once every byte is on disk, so a failed or interrupted
//! upload never leaves a truncated object under the real name. A put that fails removes its
//! `.partial`; one whose run was killed cannot, and the next run's sweep finds it
//! (`list-leftovers`) and, once it is older than the entry's `leftover_age`, removes it.
//! Deleting the last object of
//! a directory removes the emptied directories too. Retention (`retention_copies`,
//! `retention_days`) is decided by the host, not here.

use backups_sdk::config::absolute_path;
use backups_sdk::{
    About, Context, Destination, Grants, Leftover, ObjectInfo, ObjectReader, ObjectWriter, Plugin,
    PluginError, Result,
};
use serde::Deserialize;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

const PARTIAL_SUFFIX: &str = ".partial";
const CHUNK: usize = 1 << 20;

#[derive(Deserialize)]
pub struct Config {
    path: String,
}

pub struct Local {
    root: PathBuf,
}

impl Plugin for Local {
    type Config = Config;

    fn about() -> About {
        About::new(
            "local",
            "a directory on this machine (disk, NFS or USB mount)",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(&["path"])
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        Ok(Grants {
            write: vec![config.path.clone()],
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        let root = absolute_path("path", &config.path)?;
        match fs::metadata(&root) {
            Ok(m) if m.is_dir() => Ok(Local { root }),
            Ok(_) => Err(PluginError::invalid_config(format!(
                "path: {} is not a directory",
                config.path
            ))),
            Err(e) => Err(PluginError::from_io(&e, format!("path: {}", config.path))),
        }
    }
}

impl Local {
    /// The file for `key`, refusing keys that would leave `root` (`..`, absolute paths).
    fn file_for(&self, key: &str) -> Result<PathBuf> {
        let rel = Path::new(key);
        let clean = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !clean {
            return Err(PluginError::permanent(format!(
                "refusing object key {key:?}"
            )));
        }
        Ok(self.root.join(rel))
    }

    /// Every regular file under `dir` whose key (path under `root`) starts with `prefix`,
    /// handed to `visit` with its size and modification time.
    fn walk(
        &self,
        dir: &Path,
        prefix: &str,
        visit: &mut dyn FnMut(String, u64, Option<u64>),
    ) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(PluginError::from_io(
                    &e,
                    format!("listing {}", dir.display()),
                ));
            }
        };
        for entry in entries {
            let entry = entry.map_err(|e| PluginError::from_io(&e, dir.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| PluginError::from_io(&e, path.display()))?;
            let key = path
                .strip_prefix(&self.root)
                .expect("walk stays under root")
                .to_string_lossy()
                .into_owned();
            if kind.is_dir() {
                // Only descend where keys with `prefix` can be.
                let as_dir = format!("{key}/");
                if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                    self.walk(&path, prefix, visit)?;
                }
            } else if kind.is_file() && key.starts_with(prefix) {
                let meta = entry
                    .metadata()
                    .map_err(|e| PluginError::from_io(&e, path.display()))?;
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs());
                visit(key, meta.len(), modified);
            }
        }
        Ok(())
    }

    /// Removes the file at `path` (a missing one is fine), then the run and date
    /// directories that emptied, from its parent up to the first that still holds something.
    fn remove(&self, path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(PluginError::from_io(
                    &e,
                    format!("deleting {}", path.display()),
                ));
            }
        }
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

/// The object a put's temporary file `{dir}/.{name}.partial` was for: `{dir}/{name}`.
fn partial_target(partial_key: &str) -> Option<String> {
    let (dir, file) = match partial_key.rsplit_once('/') {
        Some((dir, file)) => (Some(dir), file),
        None => (None, partial_key),
    };
    let name = file.strip_prefix('.')?.strip_suffix(PARTIAL_SUFFIX)?;
    if name.is_empty() {
        return None;
    }
    Some(match dir {
        Some(dir) => format!("{dir}/{name}"),
        None => name.to_string(),
    })
}

impl Destination for Local {
    fn put(&mut self, key: &str, data: &mut ObjectReader, size: u64) -> Result<()> {
        let target = self.file_for(key)?;
        let parent = target.parent().expect("a key has a parent under root");
        fs::create_dir_all(parent)
            .map_err(|e| PluginError::from_io(&e, format!("creating {}", parent.display())))?;
        let name = target
            .file_name()
            .expect("a key names a file")
            .to_string_lossy();
        let partial = parent.join(format!(".{name}{PARTIAL_SUFFIX}"));

        let result = (|| -> Result<()> {
            let file = fs::File::create(&partial)
                .map_err(|e| PluginError::from_io(&e, format!("creating {}", partial.display())))?;
            let mut out = BufWriter::with_capacity(CHUNK, file);
            let copied = io::copy(data, &mut out)
                .map_err(|e| PluginError::from_io(&e, format!("writing {}", partial.display())))?;
            if copied != size {
                return Err(PluginError::transient(format!(
                    "{key}: received {copied} bytes, expected {size}"
                )));
            }
            let file = out.into_inner().map_err(|e| {
                PluginError::from_io(e.error(), format!("writing {}", partial.display()))
            })?;
            file.sync_all()
                .map_err(|e| PluginError::from_io(&e, format!("syncing {}", partial.display())))?;
            fs::rename(&partial, &target).map_err(|e| {
                PluginError::from_io(&e, format!("renaming into {}", target.display()))
            })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&partial);
        }
        result
    }

    fn get(&mut self, key: &str, sink: &mut ObjectWriter) -> Result<()> {
        let path = self.file_for(key)?;
        let mut file =
            fs::File::open(&path).map_err(|e| PluginError::from_io(&e, path.display()))?;
        let mut out = BufWriter::with_capacity(CHUNK, sink);
        io::copy(&mut file, &mut out).map_err(|e| PluginError::from_io(&e, path.display()))?;
        out.flush()
            .map_err(|e| PluginError::from_io(&e, path.display()))
    }

    fn list(&mut self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut found = Vec::new();
        self.walk(&self.root, prefix, &mut |key, size, modified| {
            if partial_target(&key).is_none() {
                found.push(ObjectInfo {
                    key,
                    size,
                    modified,
                });
            }
        })?;
        Ok(found)
    }

    fn delete(&mut self, key: &str) -> Result<()> {
        let path = self.file_for(key)?;
        self.remove(&path)
    }

    /// The `.partial` files of puts a killed run never finished (a put that fails removes
    /// its own): named for the object they were becoming.
    fn list_leftovers(&mut self, prefix: &str) -> Result<Vec<Leftover>> {
        let mut found = Vec::new();
        self.walk(&self.root, prefix, &mut |id, size, modified| {
            if let Some(key) = partial_target(&id) {
                found.push(Leftover {
                    key,
                    id,
                    size,
                    modified: modified.unwrap_or(0),
                });
            }
        })?;
        Ok(found)
    }

    fn remove_leftover(&mut self, leftover: &Leftover) -> Result<()> {
        // Only ever a file of our own temporary-name pattern.
        if partial_target(&leftover.id).is_none() {
            return Err(PluginError::permanent(format!(
                "{:?} is not a .partial file of this plugin",
                leftover.id
            )));
        }
        let path = self.file_for(&leftover.id)?;
        self.remove(&path)
    }
}

backups_sdk::export_destination!(Local);

#[cfg(test)]
mod tests {
    use super::partial_target;

    #[test]
    fn a_partial_file_names_the_object_it_was_becoming() {
        assert_eq!(
            partial_target("h/2026-12-03/020000Z/.etc.tar.gz.gpg.partial").as_deref(),
            Some("h/2026-12-03/020000Z/etc.tar.gz.gpg")
        );
        assert_eq!(partial_target(".x.partial").as_deref(), Some("x"));
    }

    #[test]
    fn other_files_are_not_leftovers() {
        for key in [
            "h/2026-12-03/020000Z/etc.tar.gz.gpg",
            "h/2026-12-03/020000Z/etc.partial",
            "h/.partial",
            "h/..partial",
            "h/notes.txt",
        ] {
            assert_eq!(partial_target(key), None, "{key}");
        }
    }
}
