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
        match kind {
            tar::EntryType::Directory => {
                let path = inside(&dir, &name)?;
                if path != dir {
                    std::fs::create_dir_all(&path).with_context(|| at("creating directory"))?;
                }
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
