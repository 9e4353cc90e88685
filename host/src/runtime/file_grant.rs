//! A read grant of one file grants that file, not its directory. WASI preopens directories
//! only, so the host makes a private directory in the run's tmpdir holding just the file —
//! a hard link (no copy, same inode), or a copy when the tmpdir is on another filesystem —
//! and preopens that, under the file's own directory name. A folder source of
//! `/etc/hostname` sees `/etc/hostname` and nothing else of `/etc`; a credentials file
//! named by a plugin's config does not open the directory beside it (where job files with
//! secrets often live).

use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes `{under}/grant-{n}/{file name}` and returns the directory.
pub fn private_dir(file: &Path, under: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = file.file_name().context("a file grant names no file")?;
    let dir = under.join(format!(
        "grant-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let inside = dir.join(name);
    if std::fs::hard_link(file, &inside).is_err() {
        std::fs::copy(file, &inside)
            .with_context(|| format!("copying {} into {}", file.display(), dir.display()))?;
    }
    super::fs_guard::open_for_grant(&dir);
    Ok(dir)
}

/// Removes a directory made by [`private_dir`].
pub fn remove(dir: &Path) {
    if let Ok(canonical) = dir.canonicalize() {
        super::fs_guard::close_for_grant(&canonical);
    }
    let _ = std::fs::remove_dir_all(dir);
}
