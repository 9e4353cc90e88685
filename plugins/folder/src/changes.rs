//! What changed since a full: the index a run writes, and the one it compares against.
//!
//! The index holds, for every entry that is not a directory, a 64-bit digest of its path
//! and one of everything GNU tar would look at to decide that it changed — type, size,
//! mtime, mode, owner, device and inode (a file replaced by a rename has a new inode),
//! link count and link target — plus the time the walk began. An entry is unchanged when
//! its pair of digests is in the base index *and* its mtime is before the base walk
//! began: a file written in the same second the base walk read it may have been written
//! again after, so it is archived again (git's "racily clean" rule; mtimes are seconds).
//!
//! Directories are in it too, by their metadata and what they list (`dir_digest`): an
//! increment writes a dumpdir only for a directory that changed, so a night with no
//! changes stores an archive of a few hundred bytes, not a listing of the whole tree.
//!
//! 16 bytes an entry: a tree of ten million files compares against a 160 MB index in
//! memory, well under the instance's memory limit. Two different paths with the same
//! digest *and* the same metadata digest would have to collide in SHA-256's first 64 bits
//! twice over: not a risk worth more memory.
//!
//! What it cannot see (documented for operators): the `files` contract gives no ctime, so
//! a file rewritten in place to the same size and then given back its old mtime (`touch
//! -d`) is not archived again; GNU tar would see its ctime move.

use backups_sdk::files::{EntryKind, EntryMetadata};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

const MAGIC: &[u8] = b"backups-folder-index\n";
const VERSION: u32 = 1;

/// A full's index, as the next runs compare against it.
pub struct Base {
    /// When its walk began, seconds since the epoch.
    started: i64,
    /// (path digest, metadata digest), sorted.
    entries: Vec<(u64, u64)>,
}

impl Base {
    /// The base in `input`, or why it cannot be used (then the run is a full).
    pub fn read(mut input: impl Read, root: &[u8]) -> Result<Base, String> {
        let mut bytes = Vec::new();
        input
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading the base index: {e}"))?;
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or("the base index is not one this plugin wrote")?;
        let mut fields = Fields(rest);
        let version = fields.u32()?;
        if version != VERSION {
            return Err(format!(
                "the base index is version {version}; this plugin reads {VERSION}"
            ));
        }
        let started = fields.u64()? as i64;
        let root_len = fields.u32()? as usize;
        if fields.take(root_len)? != root {
            return Err("the base index is of another path".into());
        }
        let body = fields.0;
        if body.len() % 16 != 0 {
            return Err("the base index is cut short".into());
        }
        let mut entries: Vec<(u64, u64)> = body
            .chunks_exact(16)
            .map(|c| {
                let (path, meta) = c.split_at(8);
                (
                    u64::from_le_bytes(path.try_into().expect("8 bytes")),
                    u64::from_le_bytes(meta.try_into().expect("8 bytes")),
                )
            })
            .collect();
        entries.sort_unstable();
        Ok(Base { started, entries })
    }

    /// Whether the entry whose `digests` these are, last modified at `mtime`, is as the
    /// base saw it.
    pub fn unchanged_at(&self, digests: Digests, mtime: i64) -> bool {
        mtime < self.started
            && self
                .entries
                .binary_search(&(digests.path, digests.meta))
                .is_ok()
    }

    /// Whether the base holds `digest` for `path` (a directory's: see [`dir_digest`]),
    /// last modified at `mtime`.
    pub fn unchanged_digest(&self, path: &[u8], digest: u64, mtime: i64) -> bool {
        let digests = Digests {
            path: path_digest(path),
            meta: digest,
        };
        self.unchanged_at(digests, mtime)
    }
}

/// Writes this run's index as the walk goes.
pub struct IndexWriter<'w> {
    out: io::BufWriter<&'w mut dyn Write>,
}

impl<'w> IndexWriter<'w> {
    pub fn start(out: &'w mut dyn Write, root: &[u8], started: i64) -> io::Result<Self> {
        let mut out = io::BufWriter::with_capacity(64 << 10, out);
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        out.write_all(&(started as u64).to_le_bytes())?;
        out.write_all(&(root.len() as u32).to_le_bytes())?;
        out.write_all(root)?;
        Ok(IndexWriter { out })
    }

    pub fn add_digests(&mut self, digests: Digests) -> io::Result<()> {
        self.out.write_all(&digests.path.to_le_bytes())?;
        self.out.write_all(&digests.meta.to_le_bytes())
    }

    pub fn add_digest(&mut self, path: &[u8], digest: u64) -> io::Result<()> {
        self.add_digests(Digests {
            path: path_digest(path),
            meta: digest,
        })
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// An entry's pair of digests, computed once: its path, and what says it changed.
#[derive(Clone, Copy)]
pub struct Digests {
    path: u64,
    meta: u64,
}

impl Digests {
    pub fn of(path: &[u8], meta: &EntryMetadata) -> Digests {
        Digests {
            path: path_digest(path),
            meta: meta_digest(meta),
        }
    }
}

/// The body of a GNU tar dumpdir (`D`) member: one line per entry of the directory, its
/// code (`D` a directory, `Y` archived here, `N` unchanged, archived earlier) then its
/// name, each NUL-terminated, and an empty one to end. Extracting with `-G`, GNU tar
/// deletes whatever the directory holds that the list does not name.
pub fn dumpdir<N: AsRef<[u8]>>(entries: impl IntoIterator<Item = (u8, N)>) -> Vec<u8> {
    let mut body = Vec::new();
    for (code, name) in entries {
        body.push(code);
        body.extend_from_slice(name.as_ref());
        body.push(0);
    }
    body.push(0);
    body
}

/// A directory's digest: its own metadata and what it lists (each entry's name, and
/// whether it is a directory). A directory whose digest is in the base needs no dumpdir in
/// an increment: its full's dumpdir already says what it holds, and its own changed
/// entries are archived (and extracted into it) without one.
pub fn dir_digest<'n>(
    meta: &EntryMetadata,
    entries: impl IntoIterator<Item = (bool, &'n [u8])>,
) -> u64 {
    let mut hash = Sha256::new();
    hash.update(meta_digest(meta).to_le_bytes());
    for (is_dir, name) in entries {
        hash.update([u8::from(is_dir)]);
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name);
    }
    first_eight(hash.finalize().as_slice())
}

fn path_digest(path: &[u8]) -> u64 {
    first_eight(Sha256::digest(path).as_slice())
}

fn meta_digest(meta: &EntryMetadata) -> u64 {
    let kind: u8 = match meta.kind {
        EntryKind::File => 1,
        EntryKind::Directory => 2,
        EntryKind::Symlink => 3,
        EntryKind::Fifo => 4,
        EntryKind::CharDevice => 5,
        EntryKind::BlockDevice => 6,
        EntryKind::Socket => 7,
        EntryKind::Unknown => 8,
    };
    let mut hash = Sha256::new();
    hash.update([kind]);
    for n in [
        meta.size,
        meta.mtime as u64,
        u64::from(meta.mode),
        u64::from(meta.uid),
        u64::from(meta.gid),
        meta.device,
        meta.inode,
        meta.links,
        u64::from(meta.device_major),
        u64::from(meta.device_minor),
    ] {
        hash.update(n.to_le_bytes());
    }
    if let Some(target) = &meta.link_target {
        hash.update(target);
    }
    first_eight(hash.finalize().as_slice())
}

fn first_eight(digest: &[u8]) -> u64 {
    u64::from_le_bytes(digest[..8].try_into().expect("a digest is longer"))
}

/// Reads the header's fields in order.
struct Fields<'b>(&'b [u8]);

impl<'b> Fields<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], String> {
        if self.0.len() < n {
            return Err("the base index is cut short".into());
        }
        let (field, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(field)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(mtime: i64, inode: u64) -> EntryMetadata {
        EntryMetadata {
            kind: EntryKind::File,
            size: 3,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            mtime,
            user: None,
            group: None,
            link_target: None,
            device: 1,
            inode,
            links: 1,
            device_major: 0,
            device_minor: 0,
        }
    }

    fn unchanged(base: &Base, path: &[u8], meta: &EntryMetadata) -> bool {
        base.unchanged_at(Digests::of(path, meta), meta.mtime)
    }

    fn index(root: &[u8], started: i64, entries: &[(&[u8], EntryMetadata)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut writer = IndexWriter::start(&mut bytes, root, started).unwrap();
        for (path, m) in entries {
            writer.add_digests(Digests::of(path, m)).unwrap();
        }
        writer.finish().unwrap();
        bytes
    }

    #[test]
    fn an_entry_is_unchanged_only_as_the_base_saw_it_and_written_before_its_walk() {
        let bytes = index(b"/srv", 1000, &[(b"/srv/a", meta(900, 7))]);
        let base = Base::read(&bytes[..], b"/srv").unwrap();
        assert!(unchanged(&base, b"/srv/a", &meta(900, 7)));
        assert!(!unchanged(&base, b"/srv/b", &meta(900, 7)), "a new name");
        assert!(!unchanged(&base, b"/srv/a", &meta(901, 7)), "a new mtime");
        assert!(
            !unchanged(&base, b"/srv/a", &meta(900, 8)),
            "replaced by a rename"
        );
        // Written in the second the base walk began: maybe after it was read.
        let racy = index(b"/srv", 1000, &[(b"/srv/a", meta(1000, 7))]);
        let base = Base::read(&racy[..], b"/srv").unwrap();
        assert!(!unchanged(&base, b"/srv/a", &meta(1000, 7)));
    }

    #[test]
    fn a_base_of_another_path_or_format_or_cut_short_is_refused() {
        let bytes = index(b"/srv", 1000, &[(b"/srv/a", meta(900, 7))]);
        assert!(Base::read(&bytes[..], b"/other").is_err());
        assert!(Base::read(&bytes[..bytes.len() - 1], b"/srv").is_err());
        assert!(Base::read(&b"tar"[..], b"/srv").is_err());
    }

    #[test]
    fn a_dumpdir_is_coded_names_each_ended_by_nul_then_an_empty_one() {
        let body = dumpdir([(b'D', &b"sub"[..]), (b'Y', b"new"), (b'N', b"old")]);
        assert_eq!(body, b"Dsub\0Ynew\0Nold\0\0");
    }
}
