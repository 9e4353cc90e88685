//! # folder — back up a directory as a tar archive
//!
//! ```json
//! { "id": "accountsdata", "type": "folder", "name": "Live Accounts Data",
//!   "path": "/var/lib/myaccountspkg/data", "excludes": ["tmp", "*~"] }
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `path` | the file or directory to back up (granted read-only, nothing else is) |
//! | `excludes` | GNU tar `--exclude` patterns, matched as GNU tar matches them when run the legacy tool's way (`cd $(dirname path); tar -cf - --exclude … ./$(basename path)`): against the member name `./{basename of path}/…` and each of its tails after a `/`, with `*` matching `/` too. So a pattern without `/` matches a name anywhere in the tree (`tmp`, `*~`), one with `/` the end of a path (`cache/*.db`, `base/logs/*`); a pattern naming folders above `path` (`data/*` for `/srv/data/base`) or ending in `/` matches nothing. One that matches `path` itself fails the source, naming the pattern (GNU tar would write an empty archive) |
//! | `on_unreadable` | `"fail"` (default): a file that cannot be read fails the source, because an archive missing files is not a whole backup; `"warn"`: archive the rest and report each file |
//!
//! The archive is what `tar -cf - /path` makes: member names are the absolute path with
//! the leading `/` removed, so `tar -xf - -C /` restores in place. Permission bits, owners
//! and mtimes are kept; symlinks are stored as links and never followed; hard links are
//! stored as separate files; sockets are skipped with a warning (as GNU tar does).
//!
//! What the host lets no plugin read is left out and named in one warning, never a
//! failure: pseudo-filesystems (`/proc`, `/sys`, `/dev`, … — a backup of `/` skips them as
//! `tar --one-file-system` users expect) and the host's own directories (its tmpdir, state
//! dir and cache, when `path` contains them).

use backups_sdk::config::{OneOrMany, absolute_path};
use backups_sdk::metadata::{self, EntryKind};
use backups_sdk::{
    About, ArtifactWriter, Context, DumpInfo, Grants, Plugin, PluginError, Result, Source,
};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Writes go to the host in pieces this large; tar itself writes 512-byte headers.
const CHUNK: usize = 1 << 20;
/// How many unreadable paths an error message lists before summarising.
const LIST_AT_MOST: usize = 20;

#[derive(Deserialize)]
pub struct Config {
    path: String,
    /// The legacy tool took a list; a single string is accepted too.
    #[serde(default)]
    excludes: OneOrMany<String>,
    #[serde(default)]
    on_unreadable: OnUnreadable,
}

#[derive(Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum OnUnreadable {
    #[default]
    Fail,
    Warn,
}

pub struct Folder {
    root: PathBuf,
    excludes: GlobSet,
    /// As written, to name the one that matched.
    patterns: Vec<String>,
    on_unreadable: OnUnreadable,
}

impl Plugin for Folder {
    type Config = Config;

    fn about() -> About {
        About::new(
            "folder",
            "a file or directory, archived with tar inside the sandbox",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .keys(&["path", "excludes", "on_unreadable"])
    }

    fn requested_grants(config: &Config) -> Result<Grants> {
        Ok(Grants {
            read: vec![config.path.clone()],
            ..Grants::default()
        })
    }

    fn configure(_ctx: Context, config: Config) -> Result<Self> {
        Ok(Folder {
            root: absolute_path("path", &config.path)?,
            excludes: compile_excludes(&config.excludes.to_vec())?,
            patterns: config.excludes.to_vec(),
            on_unreadable: config.on_unreadable,
        })
    }
}

fn compile_excludes(patterns: &[String]) -> Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        // As GNU tar's --exclude: wildcards match `/`, and the pattern is taken as written
        // (`tmp/` and `./tmp` match nothing there, and so nothing here).
        let glob = GlobBuilder::new(pattern)
            .literal_separator(false)
            .build()
            .map_err(|e| PluginError::invalid_config(format!("excludes: {pattern:?}: {e}")))?;
        set.add(glob);
    }
    set.build()
        .map_err(|e| PluginError::invalid_config(format!("excludes: {e}")))
}

impl Source for Folder {
    fn dump(&mut self, out: &mut ArtifactWriter) -> Result<DumpInfo> {
        let mut info = DumpInfo::new("tar");
        let base = self.root.parent().map(Path::to_path_buf);
        let mut walk = Walk {
            tar: tar::Builder::new(BufWriter::with_capacity(CHUNK, out)),
            excludes: &self.excludes,
            base: base.as_deref(),
            members: 0,
            unreadable: Vec::new(),
            skipped: Vec::new(),
            info: &mut info,
            read_ahead: vec![0; CHUNK],
        };
        walk.tar.mode(tar::HeaderMode::Complete);
        walk.tar.follow_symlinks(false);
        if let Some(pattern) = walk.matching_pattern(&self.root, &self.patterns) {
            return Err(PluginError::invalid_config(format!(
                "excludes: {pattern:?} matches {} itself (GNU tar matches patterns against \
                 the member names ./{}/…), so the archive would hold nothing",
                self.root.display(),
                self.root
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )));
        }
        walk.entry(&self.root)?;
        let members = walk.members;
        let unreadable = std::mem::take(&mut walk.unreadable);
        let skipped = std::mem::take(&mut walk.skipped);
        let mut buffered = walk
            .tar
            .into_inner()
            .map_err(|e| PluginError::from_io(&e, "finishing the archive"))?;
        buffered
            .flush()
            .map_err(|e| PluginError::from_io(&e, "writing the archive"))?;

        if members == 0 {
            return Err(PluginError::permanent(format!(
                "{}: the archive holds no member at all{}",
                self.root.display(),
                unreadable
                    .first()
                    .map(|u| format!(" ({u})"))
                    .unwrap_or_default()
            )));
        }
        if !skipped.is_empty() {
            let mut list: Vec<String> = skipped.iter().take(LIST_AT_MOST).cloned().collect();
            if skipped.len() > LIST_AT_MOST {
                list.push(format!("… and {} more", skipped.len() - LIST_AT_MOST));
            }
            info.warn(format!(
                "not archived, as the host lets no plugin read them: {}",
                list.join("; ")
            ));
        }
        if !unreadable.is_empty() {
            let mut list: Vec<String> = unreadable.iter().take(LIST_AT_MOST).cloned().collect();
            if unreadable.len() > LIST_AT_MOST {
                list.push(format!("… and {} more", unreadable.len() - LIST_AT_MOST));
            }
            if self.on_unreadable == OnUnreadable::Fail {
                return Err(PluginError::permanent(format!(
                    "{} path(s) could not be read, so the archive would not be whole \
                     (set \"on_unreadable\": \"warn\" to archive the rest): {}",
                    unreadable.len(),
                    list.join("; ")
                )));
            }
            for line in list {
                info.warn(format!("not archived: {line}"));
            }
        }
        Ok(info)
    }
}

struct Walk<'a, W: Write> {
    tar: tar::Builder<W>,
    excludes: &'a GlobSet,
    /// The folder above the source's path: exclude patterns see names below it.
    base: Option<&'a Path>,
    /// Entries archived so far.
    members: u64,
    unreadable: Vec<String>,
    /// What the host answered "skipped" for (pseudo-filesystems, its own directories).
    skipped: Vec<String>,
    info: &'a mut DumpInfo,
    /// Where file contents are read ahead (see `ReadAhead`).
    read_ahead: Vec<u8>,
}

impl<W: Write> Walk<'_, W> {
    /// The names GNU tar matches an unanchored exclude pattern against: the member name
    /// and each of its tails after a `/`. For `/a/b/c/d` with source `/a/b` the member is
    /// `./b/c/d` (the legacy tool ran `cd /a; tar -cf - ./b`): "./b/c/d", "b/c/d", "c/d", "d".
    fn tails(&self, path: &Path) -> Vec<String> {
        let below = self
            .base
            .and_then(|base| path.strip_prefix(base).ok())
            .unwrap_or(path);
        let components: Vec<_> = below
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(s) => Some(s.to_string_lossy()),
                _ => None,
            })
            .collect();
        let mut tails: Vec<String> = (0..components.len())
            .map(|i| components[i..].join("/"))
            .collect();
        if self.base.is_some() && !components.is_empty() {
            tails.push(format!("./{}", components.join("/")));
        }
        tails
    }

    fn excluded(&self, path: &Path) -> bool {
        !self.excludes.is_empty() && self.tails(path).iter().any(|t| self.excludes.is_match(t))
    }

    /// The first of `patterns` that excludes `path`.
    fn matching_pattern<'p>(&self, path: &Path, patterns: &'p [String]) -> Option<&'p str> {
        let tails = self.tails(path);
        let hit = tails.iter().flat_map(|t| self.excludes.matches(t)).min()?;
        patterns.get(hit).map(String::as_str)
    }

    /// Archives `path` and, for a directory, everything below it.
    fn entry(&mut self, path: &Path) -> Result<()> {
        if self.excluded(path) {
            return Ok(());
        }
        let shown = path.display().to_string();
        let meta = match metadata::lstat(&shown) {
            Ok(m) => m,
            Err(e)
                if e.kind == backups_sdk::ErrorKind::Denied
                    && e.message.contains(": skipped: ") =>
            {
                self.skipped.push(e.message);
                return Ok(());
            }
            Err(e) => {
                self.unreadable.push(format!("{shown}: {}", e.message));
                return Ok(());
            }
        };
        let name = member_name(path);
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode);
        header.set_uid(meta.uid as u64);
        header.set_gid(meta.gid as u64);
        header.set_mtime(meta.mtime.max(0) as u64);
        if let Some(user) = &meta.user {
            let _ = header.set_username(user);
        }
        if let Some(group) = &meta.group {
            let _ = header.set_groupname(group);
        }
        let write_err = |e: io::Error| PluginError::from_io(&e, "writing the archive");

        self.members += 1;
        match meta.kind {
            EntryKind::Directory => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                self.tar
                    .append_data(&mut header, format!("{name}/"), io::empty())
                    .map_err(write_err)?;
                let mut children = match std::fs::read_dir(path) {
                    Ok(rd) => rd
                        .filter_map(|e| match e {
                            Ok(e) => Some(e.path()),
                            Err(err) => {
                                self.unreadable.push(format!("{shown}: {err}"));
                                None
                            }
                        })
                        .collect::<Vec<_>>(),
                    Err(err) => {
                        self.unreadable.push(format!("{shown}: {err}"));
                        return Ok(());
                    }
                };
                // Sorted, so the same tree always makes the same archive.
                children.sort();
                for child in children {
                    self.entry(&child)?;
                }
            }
            EntryKind::File => {
                let file = match std::fs::File::open(path) {
                    Ok(f) => f,
                    Err(err) => {
                        self.unreadable.push(format!("{shown}: {err}"));
                        return Ok(());
                    }
                };
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(meta.size);
                // tar copies through an 8 KiB buffer; each read of the file is a call
                // into the host, so read ahead in large pieces (one buffer for the whole
                // walk) and let the small copies happen inside the sandbox's memory.
                let ahead = (meta.size as usize).clamp(4096, CHUNK);
                let file = ReadAhead::new(file, &mut self.read_ahead[..ahead]);
                let mut body = Exactly::new(file, meta.size);
                self.tar
                    .append_data(&mut header, &name, &mut body)
                    .map_err(write_err)?;
                if let Some(problem) = body.problem {
                    self.info.warn(format!("{shown}: {problem}"));
                }
            }
            EntryKind::Symlink => {
                // From the host: WASI will not read a link that points out of the grant.
                let Some(target) = meta.link_target.clone() else {
                    self.unreadable
                        .push(format!("{shown}: symlink target unavailable"));
                    return Ok(());
                };
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                self.tar
                    .append_link(&mut header, &name, &target)
                    .map_err(write_err)?;
            }
            EntryKind::Fifo => {
                header.set_entry_type(tar::EntryType::Fifo);
                header.set_size(0);
                self.tar
                    .append_data(&mut header, &name, io::empty())
                    .map_err(write_err)?;
            }
            EntryKind::Socket => self.info.warn(format!("{shown}: socket ignored")),
            EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Unknown => {
                self.info
                    .warn(format!("{shown}: device or special file not archived"));
            }
        }
        Ok(())
    }
}

/// The member name tar uses for an absolute path: without the leading `/`.
fn member_name(path: &Path) -> String {
    let s = path.to_string_lossy();
    let trimmed = s.trim_start_matches('/');
    if trimmed.is_empty() {
        ".".into()
    } else {
        trimmed.to_string()
    }
}

/// Reads exactly `size` bytes, as the tar header promised: a file that grew is cut at
/// `size` (the archive holds it as it was when the walk reached it); one that shrank is
/// padded with zeros, as GNU tar does, and reported.
/// Reads through a borrowed buffer: large reads from the host, small copies out of it.
struct ReadAhead<'b, R> {
    inner: R,
    buf: &'b mut [u8],
    pos: usize,
    end: usize,
}

impl<'b, R: Read> ReadAhead<'b, R> {
    fn new(inner: R, buf: &'b mut [u8]) -> Self {
        ReadAhead {
            inner,
            buf,
            pos: 0,
            end: 0,
        }
    }
}

impl<R: Read> Read for ReadAhead<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.end {
            if out.len() >= self.buf.len() {
                return self.inner.read(out);
            }
            self.end = self.inner.read(self.buf)?;
            self.pos = 0;
        }
        let n = out.len().min(self.end - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

struct Exactly<R> {
    inner: io::Take<R>,
    remaining: u64,
    padding: bool,
    problem: Option<String>,
}

impl<R: Read> Exactly<R> {
    fn new(inner: R, size: u64) -> Self {
        Self {
            inner: inner.take(size),
            remaining: size,
            padding: false,
            problem: None,
        }
    }
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = if self.padding {
            buf[..want].fill(0);
            want
        } else {
            match self.inner.read(&mut buf[..want])? {
                0 => {
                    self.padding = true;
                    self.problem = Some(format!(
                        "file shrank by {} bytes while being read; padded with zeros",
                        self.remaining
                    ));
                    buf[..want].fill(0);
                    want
                }
                n => n,
            }
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}

backups_sdk::export_source!(Folder);
