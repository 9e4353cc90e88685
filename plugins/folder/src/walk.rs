//! The walk: every entry under the source's path, in sorted order, into the archive.
//!
//! Through the host's `files` interface, where names are bytes: a name that is not UTF-8
//! is archived like any other. An entry that cannot be read is written down (the caller
//! fails or warns, per `on_unreadable`) and nothing else is left out with it: a directory
//! that cannot be listed loses its children, named as that directory, and a file that
//! cannot be opened is not given a header.

use crate::changes::{Base, Digests, IndexWriter, dir_digest, dumpdir};
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
    /// In an incremental dump: what it compares against, and this run's index.
    pub changes: Option<Changes<'a>>,
    /// Entries an incremental dump left out as unchanged.
    pub unchanged: u64,
}

/// An incremental dump's comparison: with no base, every entry is new (a full).
pub struct Changes<'a> {
    pub base: Option<Base>,
    pub index: IndexWriter<'a>,
}

impl Changes<'_> {
    /// The dumpdir code of an entry (`D`, `N` unchanged, `Y` to archive), once per entry:
    /// an entry that is not a directory also goes into this run's index here.
    fn judge(&mut self, path: &[u8], meta: &EntryMetadata) -> io::Result<u8> {
        if meta.kind == EntryKind::Directory {
            return Ok(b'D');
        }
        let digests = Digests::of(path, meta);
        self.index.add_digests(digests)?;
        Ok(match &self.base {
            Some(base) if base.unchanged_at(digests, meta.mtime) => b'N',
            _ => b'Y',
        })
    }
}

/// A child of a directory waiting to be walked: its metadata once read, and in an
/// incremental walk its code, once judged.
type Pending = (Vec<u8>, Option<EntryMetadata>, Option<u8>);

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
            changes: None,
            unchanged: 0,
        }
    }

    /// Makes this an incremental walk (GNU tar's `--listed-incremental` format).
    pub fn incremental(mut self, changes: Changes<'a>) -> Self {
        self.changes = Some(changes);
        self
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
        let mut pending: Vec<Pending> = vec![(root.to_vec(), None, None)];
        while let Some((path, known, judged)) = pending.pop() {
            if let Some(children) = self.entry(&path, known, judged)? {
                pending.extend(children.into_iter().rev());
            }
        }
        if let Some(changes) = self.changes.take() {
            changes.index.finish().map_err(write_error)?;
        }
        Ok(())
    }

    /// `lstat`, with what cannot be read noted (as skipped or unreadable) and `None`.
    fn lstat(&mut self, path: &[u8]) -> Option<EntryMetadata> {
        match files::lstat(path) {
            Ok(m) => Some(m),
            Err(e) if e.kind == ErrorKind::Denied && e.message.contains(": skipped: ") => {
                self.skipped.push(e.message);
                None
            }
            Err(e) => {
                self.unreadable.push(e.message);
                None
            }
        }
    }

    /// Archives one entry (its metadata already read when `known`, its code judged when
    /// `judged`); for a directory, returns its children not excluded.
    fn entry(
        &mut self,
        path: &[u8],
        known: Option<EntryMetadata>,
        judged: Option<u8>,
    ) -> Result<Option<Vec<Pending>>> {
        let Some(meta) = known.or_else(|| self.lstat(path)) else {
            return Ok(None);
        };
        let name = member_name(path);
        let mut header = header_for(&meta);
        header.set_size(0);
        if let Some(changes) = &mut self.changes {
            let code = match judged {
                Some(code) => code,
                // The root: no parent's dumpdir judged it.
                None => changes.judge(path, &meta).map_err(write_error)?,
            };
            if code == b'N' {
                self.unchanged += 1;
                return Ok(None);
            }
        }
        let written = match meta.kind {
            EntryKind::Directory => {
                let names = match files::read_dir(path) {
                    Ok(names) => names,
                    Err(e) => {
                        self.unreadable.push(e.message);
                        return Ok(None);
                    }
                };
                let mut dir_name = name;
                if dir_name != b"." {
                    dir_name.push(b'/');
                }
                // (The caller refuses a pattern that matches the root itself.)
                let children: Vec<Vec<u8>> = names
                    .iter()
                    .map(|c| files::join(path, c))
                    .filter(|c| !self.excluded(c))
                    .collect();
                let children: Vec<Pending> = if self.changes.is_some() {
                    // A dumpdir lists every entry with its code, so each is looked at and
                    // judged before the directory's member is written; what cannot be
                    // looked at is left out of the list (and noted).
                    let mut listed = Vec::new();
                    for child in children {
                        if let Some(m) = self.lstat(&child) {
                            listed.push((child, m));
                        }
                    }
                    let changes = self.changes.as_mut().expect("checked");
                    let skip = path.len() + usize::from(path != b"/");
                    let mut judged = Vec::with_capacity(listed.len());
                    for (child, m) in listed {
                        let code = changes.judge(&child, &m).map_err(write_error)?;
                        judged.push((child, Some(m), Some(code)));
                    }
                    let digest = dir_digest(
                        &meta,
                        judged
                            .iter()
                            .map(|(child, _, code)| (*code == Some(b'D'), &child[skip..])),
                    );
                    changes
                        .index
                        .add_digest(path, digest)
                        .map_err(write_error)?;
                    let unchanged = changes
                        .base
                        .as_ref()
                        .is_some_and(|b| b.unchanged_digest(path, digest, meta.mtime));
                    if unchanged {
                        // Its full's dumpdir stands: what it lists is as it was.
                        self.unchanged += 1;
                        return Ok(Some(judged));
                    }
                    let body = dumpdir(
                        judged
                            .iter()
                            .map(|(child, _, code)| (code.expect("judged"), &child[skip..])),
                    );
                    header.set_entry_type(tar::EntryType::new(b'D'));
                    header.set_size(body.len() as u64);
                    self.archive
                        .append(&mut header, &dir_name, None, &body[..])
                        .map_err(write_error)?;
                    judged
                } else {
                    header.set_entry_type(tar::EntryType::Directory);
                    self.archive
                        .append(&mut header, &dir_name, None, io::empty())
                        .map_err(write_error)?;
                    children.into_iter().map(|c| (c, None, None)).collect()
                };
                self.members += 1;
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
