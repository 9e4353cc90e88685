//! The walk: every entry under the source's path, in sorted order, into the archive.
//!
//! Through the host's `files` interface, where names are bytes: a name that is not UTF-8
//! is archived like any other. An entry that cannot be read is written down (the caller
//! fails or warns, per `on_unreadable`) and nothing else is left out with it: a directory
//! that cannot be listed loses its children, named as that directory, and a file that
//! cannot be opened is not given a header.

use crate::excludes::Excludes;
use crate::members::{Archive, header_for};
use crate::reading::{Exactly, ReadAhead};
use backups_sdk::files::{self, EntryKind, EntryMetadata};
use backups_sdk::{ErrorKind, PluginError, Result};
use std::collections::HashMap;
use std::io::{self, Write};

/// File contents are read from the host in pieces this large.
pub const CHUNK: usize = 1 << 20;

pub struct Walk<'a, W: Write> {
    pub archive: Archive<W>,
    excludes: &'a Excludes,
    /// How many leading bytes of a path to drop to get the name tar's excludes see
    /// (`/srv/data/x` → `/data/x`, then `./data/x`); `None` when the source is `/`.
    exclude_cut: Option<usize>,
    /// (device, inode) of each file with more than one link already archived, and its
    /// member name: the next names of that file become link members.
    linked: HashMap<(u64, u64), Vec<u8>>,
    /// Where file contents are read ahead (see `ReadAhead`), one buffer for the walk.
    read_ahead: Vec<u8>,
    /// Members written.
    pub members: u64,
    /// Entries that could not be read (or listed), with why.
    pub unreadable: Vec<String>,
    /// What the host answered "skipped" for (pseudo-filesystems, its own directories).
    pub skipped: Vec<String>,
    /// Everything else worth a line in the report (sockets, files that shrank).
    pub warnings: Vec<String>,
}

impl<'a, W: Write> Walk<'a, W> {
    pub fn new(out: W, root: &[u8], excludes: &'a Excludes) -> Self {
        let exclude_cut =
            (root != b"/").then(|| root.iter().rposition(|&b| b == b'/').unwrap_or(0));
        Walk {
            archive: Archive::new(out),
            excludes,
            exclude_cut,
            linked: HashMap::new(),
            read_ahead: vec![0; CHUNK],
            members: 0,
            unreadable: Vec::new(),
            skipped: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The name GNU tar matches excludes against: `./data/x` for `/srv/data/x` when the
    /// source is `/srv/data` (the legacy tool ran `cd /srv; tar … ./data`).
    pub fn exclude_name(&self, path: &[u8]) -> Option<Vec<u8>> {
        let cut = self.exclude_cut?;
        let mut name = b".".to_vec();
        name.extend_from_slice(&path[cut..]);
        Some(name)
    }

    fn excluded(&self, path: &[u8]) -> bool {
        self.exclude_name(path)
            .is_some_and(|name| self.excludes.matching(&name).is_some())
    }

    /// Archives `root` and everything below it, parents before children, siblings sorted.
    pub fn run(&mut self, root: &[u8]) -> Result<()> {
        let mut pending = vec![root.to_vec()];
        while let Some(path) = pending.pop() {
            if path != root && self.excluded(&path) {
                continue;
            }
            if let Some(children) = self.entry(&path)? {
                pending.extend(children.into_iter().rev());
            }
        }
        Ok(())
    }

    /// Archives one entry; for a directory, returns the paths of its children.
    fn entry(&mut self, path: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        let meta = match files::lstat(path) {
            Ok(m) => m,
            Err(e) if e.kind == ErrorKind::Denied && e.message.contains(": skipped: ") => {
                self.skipped.push(e.message);
                return Ok(None);
            }
            Err(e) => {
                self.unreadable.push(e.message);
                return Ok(None);
            }
        };
        let name = member_name(path);
        let mut header = header_for(&meta);
        header.set_size(0);
        let written = match meta.kind {
            EntryKind::Directory => {
                let children = match files::read_dir(path) {
                    Ok(names) => names,
                    Err(e) => {
                        self.unreadable.push(e.message);
                        return Ok(None);
                    }
                };
                header.set_entry_type(tar::EntryType::Directory);
                let mut dir_name = name;
                if dir_name != b"." {
                    dir_name.push(b'/');
                }
                self.archive
                    .append(&mut header, &dir_name, None, io::empty())
                    .map_err(write_error)?;
                self.members += 1;
                let children = children.iter().map(|c| files::join(path, c)).collect();
                return Ok(Some(children));
            }
            _ if meta.links > 1 && self.linked.contains_key(&(meta.device, meta.inode)) => {
                let first = &self.linked[&(meta.device, meta.inode)];
                header.set_entry_type(tar::EntryType::Link);
                self.archive
                    .append(&mut header, &name, Some(first), io::empty())
                    .map_err(write_error)?;
                true
            }
            EntryKind::File => self.file(path, &name, &meta, header)?,
            EntryKind::Symlink => {
                // Read by the host: WASI will not read a link that points out of a grant.
                let Some(target) = &meta.link_target else {
                    self.unreadable
                        .push(format!("{}: symlink target unavailable", shown(path)));
                    return Ok(None);
                };
                header.set_entry_type(tar::EntryType::Symlink);
                self.archive
                    .append(&mut header, &name, Some(target), io::empty())
                    .map_err(write_error)?;
                true
            }
            EntryKind::Fifo => self.node(&mut header, &name, tar::EntryType::Fifo, &meta)?,
            EntryKind::CharDevice => self.node(&mut header, &name, tar::EntryType::Char, &meta)?,
            EntryKind::BlockDevice => {
                self.node(&mut header, &name, tar::EntryType::Block, &meta)?
            }
            EntryKind::Socket => {
                // As GNU tar: a socket is recreated by its server, not restored.
                self.warnings
                    .push(format!("{}: socket ignored", shown(path)));
                false
            }
            EntryKind::Unknown => {
                self.unreadable
                    .push(format!("{}: a file of unknown type", shown(path)));
                false
            }
        };
        if written {
            self.members += 1;
            if meta.links > 1 && meta.kind != EntryKind::Directory {
                self.linked.entry((meta.device, meta.inode)).or_insert(name);
            }
        }
        Ok(None)
    }

    /// A regular file: opened before its header is written, so one that cannot be opened
    /// leaves no trace in the archive.
    fn file(
        &mut self,
        path: &[u8],
        name: &[u8],
        meta: &EntryMetadata,
        mut header: tar::Header,
    ) -> Result<bool> {
        let file = match files::open(path) {
            Ok(f) => f,
            Err(e) => {
                self.unreadable.push(e.message);
                return Ok(false);
            }
        };
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.size);
        // tar copies through an 8 KiB buffer; each read of the file is a call into the
        // host, so read ahead in large pieces and let the small copies happen in here.
        let ahead = (meta.size as usize).clamp(4096, CHUNK);
        let file = ReadAhead::new(file, &mut self.read_ahead[..ahead]);
        let mut body = Exactly::new(file, meta.size);
        self.archive
            .append(&mut header, name, None, &mut body)
            .map_err(write_error)?;
        if let Some(problem) = body.problem {
            self.warnings.push(format!("{}: {problem}", shown(path)));
        }
        Ok(true)
    }

    /// A FIFO or device node: archived as a node (its type and numbers), never opened.
    fn node(
        &mut self,
        header: &mut tar::Header,
        name: &[u8],
        kind: tar::EntryType,
        meta: &EntryMetadata,
    ) -> Result<bool> {
        header.set_entry_type(kind);
        // Zeros for a FIFO, as GNU tar writes them.
        header
            .set_device_major(meta.device_major)
            .and_then(|()| header.set_device_minor(meta.device_minor))
            .map_err(write_error)?;
        self.archive
            .append(header, name, None, io::empty())
            .map_err(write_error)?;
        Ok(true)
    }
}

fn write_error(e: io::Error) -> PluginError {
    PluginError::from_io(&e, "writing the archive")
}

/// The member name tar uses for an absolute path: without the leading `/`.
fn member_name(path: &[u8]) -> Vec<u8> {
    let trimmed = path.strip_prefix(b"/").unwrap_or(path);
    if trimmed.is_empty() {
        b".".to_vec()
    } else {
        trimmed.to_vec()
    }
}

/// A path for a message: as text, with bytes that are not UTF-8 written `\xe9`.
pub fn shown(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    for chunk in path.utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}
