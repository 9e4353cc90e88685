//! The filesystem services a plugin may import beyond WASI: `fs-metadata` (Unix metadata
//! for a path given as text) and `files` (a tree walked with names as bytes, for the
//! names WASI cannot carry). Every call resolves its path inside one of the instance's
//! grants through cap-std, which refuses a symlink or `..` leading out of the grant, and
//! answers "skipped" for what `fs_guard` says no grant reaches, so a plugin sees here
//! exactly what it could see through WASI, and no more.

use super::bindings::source::backups::plugin::files;
use super::bindings::{PluginError, fs_metadata};
use super::file_input::FileInput;
use super::host_api::{denied, io_error};
use super::state::PluginState;
use cap_std::fs::MetadataExt;
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use wasmtime::component::Resource;
use wasmtime_wasi::p2::DynInputStream;

/// A path a plugin asked for, found inside one of its grants.
struct InGrant {
    /// The grant's directory.
    root: PathBuf,
    /// The path below it; empty for the root itself.
    relative: PathBuf,
}

impl fs_metadata::Host for PluginState {
    async fn lstat(&mut self, path: String) -> Result<fs_metadata::UnixMetadata, PluginError> {
        // The 0.1.0 call: the same answer as `files.lstat`, with a link target as text.
        let e = self.entry_metadata(Path::new(&path))?;
        Ok(fs_metadata::UnixMetadata {
            kind: e.kind,
            size: e.size,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            user: e.user,
            group: e.group,
            link_target: e
                .link_target
                .map(|t| String::from_utf8_lossy(&t).into_owned()),
        })
    }
}

impl files::Host for PluginState {
    async fn lstat(&mut self, path: Vec<u8>) -> Result<files::EntryMetadata, PluginError> {
        self.entry_metadata(Path::new(OsStr::from_bytes(&path)))
    }

    async fn read_dir(&mut self, path: Vec<u8>) -> Result<Vec<Vec<u8>>, PluginError> {
        let wanted = Path::new(OsStr::from_bytes(&path));
        let shown = shown(wanted);
        // Through lstat first: the guard's "skipped" applies to listing as to describing.
        let (_, place) = self.lstat_in_grant(wanted)?;
        let dir = self.root_dir(&place.root)?;
        let entries = if place.relative.as_os_str().is_empty() {
            dir.entries()
        } else {
            dir.read_dir(&place.relative)
        }
        .map_err(|e| io_error(&e, &shown))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&e, &shown))?;
            names.push(entry.file_name().into_vec());
        }
        Ok(names)
    }

    async fn open_file(&mut self, path: Vec<u8>) -> Result<Resource<DynInputStream>, PluginError> {
        use cap_std::fs::OpenOptionsExt;
        let wanted = Path::new(OsStr::from_bytes(&path));
        let shown = shown(wanted);
        // Described before it is opened: a device node or FIFO is refused unopened (opening
        // a device can have effects of its own: a tape rewinds, a module loads).
        let (meta, place) = self.lstat_in_grant(wanted)?;
        if meta.mode() & libc::S_IFMT != libc::S_IFREG || place.relative.as_os_str().is_empty() {
            return Err(denied(format!("{shown}: not a regular file")));
        }
        let dir = self.root_dir(&place.root)?;
        // O_NOFOLLOW and O_NONBLOCK: should the entry be swapped for a symlink or a FIFO
        // between the look and the open, the open fails or returns at once instead of
        // following it or waiting for a writer with the host's thread.
        let mut options = cap_std::fs::OpenOptions::new();
        options
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
        let file = dir
            .open_with(&place.relative, &options)
            .map_err(|e| io_error(&e, &shown))?
            .into_std();
        let opened = file.metadata().map_err(|e| io_error(&e, &shown))?;
        use std::os::unix::fs::MetadataExt as _;
        if !opened.is_file() || (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
            return Err(denied(format!("{shown}: changed while being opened")));
        }
        if let Some(why) = super::fs_guard::refuses_opened(&file) {
            tracing::warn!(plugin = %self.label(), "denied: opening {shown}: {why}");
            return Err(denied(format!("{shown}: {why}")));
        }
        let stream: DynInputStream = Box::new(FileInput::new(file));
        self.table
            .push(stream)
            .map_err(|e| super::host_api::table_error(&e))
    }
}

impl PluginState {
    /// `lstat` of `wanted`, inside its grant, as `files` describes an entry.
    fn entry_metadata(&mut self, wanted: &Path) -> Result<files::EntryMetadata, PluginError> {
        let (meta, place) = self.lstat_in_grant(wanted)?;
        let link_target = self
            .link_target(&meta, &place, wanted)?
            .map(|t| t.into_os_string().into_vec());
        let rdev = meta.rdev();
        Ok(files::EntryMetadata {
            kind: kind_of(meta.mode()),
            size: meta.size(),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            user: super::users::user_name(meta.uid()),
            group: super::users::group_name(meta.gid()),
            link_target,
            device: meta.dev(),
            inode: meta.ino(),
            links: meta.nlink(),
            device_major: libc::major(rdev),
            device_minor: libc::minor(rdev),
        })
    }

    /// Finds `wanted` inside a read or write grant, or refuses (and logs) it.
    fn in_grant(&mut self, wanted: &Path) -> Result<InGrant, PluginError> {
        let plain = wanted.is_absolute()
            && wanted
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        let root = plain
            .then(|| {
                self.policy
                    .grants
                    .root_for(wanted)
                    .map(|(r, _)| r.to_path_buf())
            })
            .flatten();
        let Some(root) = root else {
            let shown = shown(wanted);
            tracing::warn!(
                plugin = %self.label(),
                capability = "read",
                wanted = %shown,
                "denied: {shown} is not inside any read or write grant"
            );
            return Err(denied(format!("{shown}: not inside any granted path")));
        };
        let relative = wanted
            .strip_prefix(&root)
            .expect("root_for returned a prefix")
            .to_path_buf();
        Ok(InGrant { root, relative })
    }

    /// `lstat` of `wanted` inside its grant; "skipped" for what no grant reaches.
    fn lstat_in_grant(
        &mut self,
        wanted: &Path,
    ) -> Result<(cap_std::fs::Metadata, InGrant), PluginError> {
        let shown = shown(wanted);
        let place = self.in_grant(wanted)?;
        let dir = self.root_dir(&place.root)?;
        let meta = if place.relative.as_os_str().is_empty() {
            dir.dir_metadata()
        } else {
            dir.symlink_metadata(&place.relative)
        }
        .map_err(|e| io_error(&e, &shown))?;
        let is_dir = meta.mode() & libc::S_IFMT == libc::S_IFDIR;
        if let Some(why) =
            super::fs_guard::refuses_looking_into(meta.dev(), meta.ino(), is_dir, wanted)
        {
            tracing::debug!(plugin = %self.label(), "skipped for the plugin: {shown}: {why}");
            return Err(denied(format!("{shown}: skipped: {why}")));
        }
        Ok((meta, place))
    }

    /// A symlink's target as written, read by the host: WASI refuses to read links that
    /// point out of a preopen, and tar must store them as they are.
    fn link_target(
        &mut self,
        meta: &cap_std::fs::Metadata,
        place: &InGrant,
        wanted: &Path,
    ) -> Result<Option<PathBuf>, PluginError> {
        if meta.mode() & libc::S_IFMT != libc::S_IFLNK {
            return Ok(None);
        }
        let dir = self.root_dir(&place.root)?;
        dir.read_link_contents(&place.relative)
            .map(Some)
            .map_err(|e| io_error(&e, &shown(wanted)))
    }

    /// The grant root, opened once per instance.
    fn root_dir(&mut self, root: &Path) -> Result<&cap_std::fs::Dir, PluginError> {
        if let Some(i) = self.roots.iter().position(|(p, _)| p == root) {
            return Ok(&self.roots[i].1);
        }
        let dir = cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority())
            .map_err(|e| io_error(&e, &root.display().to_string()))?;
        self.roots.push((root.to_path_buf(), dir));
        Ok(&self.roots.last().expect("just pushed").1)
    }
}

/// A path for a message: as text, with bytes that are not UTF-8 written `\xe9` (where
/// `display` would write U+FFFD and lose which byte it was).
fn shown(path: &Path) -> String {
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

fn kind_of(mode: u32) -> fs_metadata::EntryKind {
    use fs_metadata::EntryKind as K;
    match mode & libc::S_IFMT {
        libc::S_IFREG => K::File,
        libc::S_IFDIR => K::Directory,
        libc::S_IFLNK => K::Symlink,
        libc::S_IFIFO => K::Fifo,
        libc::S_IFCHR => K::CharDevice,
        libc::S_IFBLK => K::BlockDevice,
        libc::S_IFSOCK => K::Socket,
        _ => K::Unknown,
    }
}
