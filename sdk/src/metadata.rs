//! Unix metadata WASI does not carry: permission bits and owners, for paths in a read grant.

use crate::error::Result;
pub use crate::world::backups::plugin::fs_metadata::{EntryKind, UnixMetadata};

/// `lstat(2)` through the host: a symlink is described, not followed.
pub fn lstat(path: &str) -> Result<UnixMetadata> {
    crate::world::backups::plugin::fs_metadata::lstat(path).map_err(Into::into)
}
