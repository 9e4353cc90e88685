//! A granted tree with names as bytes (sources only; contract 0.1.1).
//!
//! Linux names are bytes: `caf\xe9.txt` is a valid file name that `std::fs` on WASI 0.2
//! (whose paths are strings) cannot open or even list. A source that must archive a tree
//! exactly — every name as it is on disk — walks it here. Paths are absolute, as bytes,
//! and confined to the plugin's grants like everything else it reads.

use crate::error::{PluginError, Result};
use crate::world::backups::plugin::files;
use crate::world::wasi::io::streams::InputStream;
use std::io;

pub use crate::world::backups::plugin::files::EntryMetadata;
pub use crate::world::backups::plugin::fs_metadata::EntryKind;

/// `lstat(2)` through the host: a symlink is described, not followed.
pub fn lstat(path: &[u8]) -> Result<EntryMetadata> {
    files::lstat(path).map_err(Into::into)
}

/// The names in directory `path`, sorted bytewise (so the same tree is always walked in
/// the same order), without `.` and `..`.
pub fn read_dir(path: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut names = files::read_dir(path).map_err(PluginError::from)?;
    names.sort();
    Ok(names)
}

/// Opens the regular file at `path` for reading. Anything else is refused.
pub fn open(path: &[u8]) -> Result<FileReader> {
    let stream = files::open_file(path).map_err(PluginError::from)?;
    Ok(FileReader { stream })
}

/// A granted file being read: each `read` is one call into the host, so read in large
/// pieces (a `BufReader` of 1 MiB, say) rather than tar's 8 KiB.
pub struct FileReader {
    stream: InputStream,
}

impl io::Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        crate::streams::read_into(&self.stream, buf)
    }
}

/// Joins a directory path and a child's name, as bytes.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(dir.len() + 1 + name.len());
    path.extend_from_slice(dir);
    if !dir.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}
