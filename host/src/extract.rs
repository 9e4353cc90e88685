//! `backups restore --extract`: a folder archive unpacked as GNU tar unpacks it
//! (`tar -xf -`, and as root `--same-owner`, its default there).
//!
//! The tar crate does the files, symlinks and hard links (refusing any member that would
//! land outside the target: `..`, absolute names, a symlinked parent). What it does not do
//! is done here, because a restore that quietly changes a tree is not a restore:
//! - FIFOs and device nodes are made as nodes (the crate writes them as empty files);
//! - directories get their mode, owner and mtime after everything inside them is written
//!   (writing a child changes a directory's mtime; a read-only one would refuse it);
//! - owners are restored by number when running as root, as `tar --same-owner` does.
//!
//! Names are bytes on Linux, and the crate keeps them so: `caf\xe9.txt` comes back as it
//! was archived.
//!
//! Incremental archives (GNU tar's `--listed-incremental` format) are unpacked as `tar -xG`
//! unpacks them: a directory's dumpdir (`D`) member names everything the directory held
//! when the archive was made, and whatever else is in it on disk is deleted (files deleted
//! or renamed since the full); an increment's members replace what its full left.

use anyhow::{Context, Result, bail};
use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// A directory's metadata, applied once its contents are in place.
struct Deferred {
    path: PathBuf,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

/// Unpacks the archive read from `stream` into `dir` (which exists and is empty).
pub fn extract(stream: impl Read, dir: &Path) -> Result<()> {
    unpack(stream, dir, false)
}

/// Unpacks an increment into `dir`, over what its full (unpacked there first) left.
pub fn extract_increment(stream: impl Read, dir: &Path) -> Result<()> {
    unpack(stream, dir, true)
}

/// The type of GNU tar's dumpdir member.
const DUMPDIR: u8 = b'D';

fn unpack(stream: impl Read, dir: &Path, over_earlier: bool) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let same_owner = unsafe { libc::geteuid() } == 0;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(same_owner);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(false);
    let mut directories = Vec::new();
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive")?;
        let header = entry.header();
        let kind = header.entry_type();
        let name = entry.path().context("a member's name")?.into_owned();
        let shown = name.display().to_string();
        let at = |what: &str| format!("{what} {shown}");
        if over_earlier && !kind.is_dir() && kind.as_byte() != DUMPDIR {
            // What the full left at this name is replaced (a directory there was already
            // deleted by its parent's dumpdir, which lists this name as a file).
            let path = inside(&dir, &name)?;
            if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
                std::fs::remove_file(&path).with_context(|| at("replacing"))?;
            }
        }
        match kind {
            _ if kind.is_dir() || kind.as_byte() == DUMPDIR => {
                let path = inside(&dir, &name)?;
                if path != dir {
                    std::fs::create_dir_all(&path).with_context(|| at("creating directory"))?;
                }
                // A symlink an earlier member made at this name is not a directory to
                // fill, purge or chmod: it would lead out of the target.
                if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    bail!("member {shown} would be a directory through a symlink: refused");
                }
                if kind.as_byte() == DUMPDIR {
                    let mut listed = Vec::new();
                    (&mut entry)
                        .take(DUMPDIR_MOST)
                        .read_to_end(&mut listed)
                        .with_context(|| at("reading the dumpdir of"))?;
                    purge(&dir, &path, &listed)
                        .with_context(|| at("deleting what is gone from"))?;
                }
                let header = entry.header();
                directories.push(Deferred {
                    path,
                    mode: header.mode()?,
                    uid: header.uid()? as u32,
                    gid: header.gid()? as u32,
                    mtime: header.mtime()? as i64,
                });
            }
            tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block => {
                let path = inside(&dir, &name)?;
                let file_type = match kind {
                    tar::EntryType::Fifo => libc::S_IFIFO,
                    tar::EntryType::Char => libc::S_IFCHR,
                    _ => libc::S_IFBLK,
                };
                // A FIFO's device fields are often left empty; a device's must be numbers.
                let device = if kind == tar::EntryType::Fifo {
                    0
                } else {
                    libc::makedev(
                        header.device_major()?.unwrap_or(0),
                        header.device_minor()?.unwrap_or(0),
                    )
                };
                make_node(&path, file_type, device).with_context(|| at("making node"))?;
                let meta = Deferred {
                    path,
                    mode: header.mode()?,
                    uid: header.uid()? as u32,
                    gid: header.gid()? as u32,
                    mtime: header.mtime()? as i64,
                };
                apply(&meta, same_owner).with_context(|| at("setting metadata of"))?;
            }
            _ => {
                if !entry.unpack_in(&dir).with_context(|| at("extracting"))? {
                    bail!("member {shown} would be written outside the target: refused");
                }
            }
        }
    }
    // Deepest last in the archive is restored first, so a parent's mtime is set after
    // its children's.
    for meta in directories.iter().rev() {
        apply(meta, same_owner)
            .with_context(|| format!("setting metadata of {}", meta.path.display()))?;
    }
    Ok(())
}

/// The most a dumpdir may hold: a directory of a million entries with long names.
const DUMPDIR_MOST: u64 = 256 << 20;

/// Applies the dumpdir `listed` of the directory `path` (under the target `root`), as GNU
/// tar's `try_purge_directory` does: first the renames it records (`R` old name, `T` new
/// name, both from the archive's root; `X` names a temporary for a cycle of renames: GNU
/// tar writes them for directories renamed since the full), then deletes whatever the
/// directory holds that the list does not name, or names as the other kind (a directory
/// now a file, a file now a directory).
fn purge(root: &Path, path: &Path, listed: &[u8]) -> Result<()> {
    use std::ffi::OsStr;
    let lines: Vec<&[u8]> = listed
        .split(|&b| b == 0)
        .filter(|l| !l.is_empty())
        .collect();
    let named = |name: &[u8]| Path::new(OsStr::from_bytes(name)).to_path_buf();
    let mut temporary: Option<PathBuf> = None;
    let mut renames = lines.iter().peekable();
    while let Some(line) = renames.next() {
        match line[0] {
            b'X' => temporary = Some(inside(root, &named(&line[1..]))?),
            b'R' => {
                let Some(to) = renames.next().filter(|l| l[0] == b'T') else {
                    bail!("a dumpdir's R entry is not followed by its T entry");
                };
                let from = match &line[1..] {
                    [] => temporary.clone(),
                    name => Some(inside(root, &named(name))?),
                };
                let to = match &to[1..] {
                    [] => temporary.clone(),
                    name => Some(inside(root, &named(name))?),
                };
                let (Some(from), Some(to)) = (from, to) else {
                    bail!("a dumpdir renames through a temporary it did not name (X)");
                };
                if std::fs::symlink_metadata(&from).is_ok_and(|m| m.is_dir()) {
                    std::fs::rename(&from, &to).with_context(|| {
                        format!("renaming {} to {}", from.display(), to.display())
                    })?;
                }
            }
            _ => {}
        }
    }
    let mut names: std::collections::HashMap<&[u8], u8> = std::collections::HashMap::new();
    for line in lines.iter().filter(|l| !b"RTX".contains(&l[0])) {
        let (code, name) = (line[0], &line[1..]);
        if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
            bail!(
                "a dumpdir names {:?}, which is not a directory entry",
                String::from_utf8_lossy(name)
            );
        }
        names.insert(name, code);
    }
    for found in std::fs::read_dir(path)? {
        let found = found?;
        let name = found.file_name();
        let is_dir = found.file_type()?.is_dir();
        let keep = match names.get(name.as_bytes()) {
            Some(&b'D') => is_dir,
            Some(_) => !is_dir,
            None => false,
        };
        if !keep {
            let gone = path.join(OsStr::from_bytes(name.as_bytes()));
            tracing::debug!("deleting {} (gone since the full)", gone.display());
            if is_dir {
                // Never follows a symlink (file_type is the link's own).
                std::fs::remove_dir_all(&gone)
            } else {
                std::fs::remove_file(&gone)
            }
            .with_context(|| format!("deleting {}", gone.display()))?;
        }
    }
    Ok(())
}

/// Where member `name` goes under `dir`, refusing a name that would leave it (`..`, an
/// absolute name) or pass through a symlink. The parents are created.
fn inside(dir: &Path, name: &Path) -> Result<PathBuf> {
    let mut path = dir.to_path_buf();
    for component in name.components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            _ => bail!(
                "member {} would be written outside {}: refused",
                name.display(),
                dir.display()
            ),
        }
    }
    if let Some(parent) = path.parent().filter(|p| *p != dir) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let real = parent.canonicalize()?;
        if !real.starts_with(dir) {
            bail!(
                "member {} would be written through a symlink to {}: refused",
                name.display(),
                real.display()
            );
        }
    }
    Ok(path)
}

fn make_node(path: &Path, file_type: libc::mode_t, device: libc::dev_t) -> Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: c_path is a valid NUL-terminated path; mknod has no other preconditions.
    let rc = unsafe { libc::mknod(c_path.as_ptr(), file_type | 0o600, device) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// Owner first (chown clears setuid/setgid), then mode, then mtime.
fn apply(meta: &Deferred, same_owner: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if same_owner {
        std::os::unix::fs::lchown(&meta.path, Some(meta.uid), Some(meta.gid))?;
    }
    std::fs::set_permissions(
        &meta.path,
        std::fs::Permissions::from_mode(meta.mode & 0o7777),
    )?;
    // utimensat on the path, which never opens it (`set_file_times` would: a FIFO
    // would block, a device node would be opened).
    let time = filetime::FileTime::from_unix_time(meta.mtime, 0);
    filetime::set_symlink_file_times(&meta.path, time, time)?;
    Ok(())
}
