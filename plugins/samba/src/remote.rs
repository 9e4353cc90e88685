//! Where objects live on the share: object keys as paths inside the `folder`.
//!
//! Paths are `/`-separated from the root of the share (smbclient accepts `/`). They go
//! into smbclient's `-c` scripts between double quotes, where `;` still ends a command
//! and `"` cannot be escaped, so any path component holding those (or what SMB forbids
//! in a name) is refused rather than mangled.

use backups_sdk::{PluginError, Result};

/// Characters no path component may hold.
const FORBIDDEN: &[char] = &['"', ';', '\\', '*', '?', '<', '>', '|', ':'];

/// The directory inside the share that holds the objects ("" for the share's root).
pub struct Folder {
    path: String,
}

impl Folder {
    pub fn new(folder: &str) -> Result<Folder> {
        let path = folder.trim_matches('/');
        if !path.is_empty() && !path.split('/').all(plain) {
            return Err(PluginError::invalid_config(format!(
                "folder: {folder:?} must be a relative path of plain names (no \"..\", and none of {})",
                forbidden()
            )));
        }
        Ok(Folder { path: path.into() })
    }

    /// The file on the share for `key`.
    pub fn path_of(&self, key: &str) -> Result<String> {
        if key.is_empty() || !key.split('/').all(plain) {
            return Err(PluginError::permanent(format!(
                "refusing object key {key:?}: its path components must be plain names without {}",
                forbidden()
            )));
        }
        Ok(self.join(key))
    }

    /// The object key of a file on the share, if it lies inside the folder.
    pub fn key_of(&self, path: &str) -> Option<String> {
        if self.path.is_empty() {
            return Some(path.to_string());
        }
        path.strip_prefix(&self.path)?
            .strip_prefix('/')
            .map(str::to_string)
    }

    /// The deepest directory on the share under which every key starting with `prefix`
    /// lies: the folder joined with the prefix up to its last `/`.
    pub fn dir_of_prefix(&self, prefix: &str) -> Result<String> {
        match prefix.rsplit_once('/') {
            Some((dir, _)) => self.path_of(dir),
            None => Ok(self.path.clone()),
        }
    }

    /// Whether `dir` lies strictly inside the folder (the folder itself is kept).
    pub fn holds(&self, dir: &str) -> bool {
        self.key_of(dir).is_some_and(|rest| !rest.is_empty())
    }

    fn join(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.path)
        }
    }
}

/// The directories above `path`, from the top: `a`, `a/b` for `a/b/file`.
pub fn parents(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.match_indices('/').map(move |(at, _)| &path[..at])
}

fn plain(component: &str) -> bool {
    !component.is_empty()
        && component != "."
        && component != ".."
        && !component.contains(FORBIDDEN)
        && !component.chars().any(char::is_control)
}

fn forbidden() -> String {
    FORBIDDEN
        .iter()
        .map(|c| format!("{c}"))
        .collect::<Vec<_>>()
        .join(" ")
}
