//! What no filesystem grant reaches, wherever it is granted from.
//!
//! The host opens files for its plugins, so a file a plugin opens is opened by the host
//! process: `/proc/self/environ` and `/proc/self/mem` are the *host's* environment and
//! memory, where the job's passphrases live. So, whatever a grant covers (`read: ["/"]`
//! for a whole-system backup included):
//!
//! - nothing on a pseudo-filesystem (procfs, sysfs, devtmpfs, devpts, debugfs, tracefs,
//!   securityfs, cgroup, bpf, …) is opened: the way `tar --one-file-system` users expect a
//!   whole-system backup to skip them;
//! - no device node is opened (a disk read raw is every file on it); GNU tar archives
//!   device nodes, it does not read them, and so does the folder source;
//! - nothing inside the host's own directories (a run's tmpdir with other plugins'
//!   artifacts and private credential files, the state dir, the compile cache) is opened.
//!
//! Judged on what was actually opened — the descriptor's device and the path the kernel
//! reports for it — so symlinks and `..` tricks count by where they lead. `lstat` (the
//! host's `fs-metadata`) answers "skipped" for the same places, so that the folder source
//! can leave them out and say so, instead of failing.

use super::state::PluginState;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

/// Filesystem types whose files are views of the kernel or of this process, not data.
const PSEUDO: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "debugfs",
    "tracefs",
    "securityfs",
    "cgroup",
    "cgroup2",
    "bpf",
    "pstore",
    "configfs",
    "fusectl",
    "efivarfs",
    "binfmt_misc",
    "mqueue",
    "hugetlbfs",
    "nsfs",
    "selinuxfs",
    "rpc_pipefs",
    "autofs",
];

/// The host's own directories, canonical. Registered as they are made.
static HOST_DIRS: RwLock<Vec<PathBuf>> = RwLock::new(Vec::new());

/// Directories inside those that the host made *for* a plugin (a file grant's private
/// directory, see `file_grant.rs`): the one way in.
static GRANT_DIRS: RwLock<Vec<PathBuf>> = RwLock::new(Vec::new());

/// Filesystem type of each mounted device, from `/proc/self/mountinfo`; re-read when a
/// device is not in it (a mount made since).
static MOUNTS: Mutex<Option<HashMap<u64, String>>> = Mutex::new(None);

/// Marks `dir` (which must exist) as the host's own: no plugin opens anything inside it.
pub fn protect_host_dir(dir: &Path) {
    let Ok(canonical) = dir.canonicalize() else {
        return;
    };
    let mut dirs = HOST_DIRS.write().expect("host dirs");
    if !dirs.contains(&canonical) {
        dirs.push(canonical);
    }
}

/// Marks `dir` (which must exist), inside a host directory, as made for a plugin's grant.
pub fn open_for_grant(dir: &Path) {
    if let Ok(canonical) = dir.canonicalize() {
        GRANT_DIRS.write().expect("grant dirs").push(canonical);
    }
}

/// Undoes [`open_for_grant`] once the directory is gone.
pub fn close_for_grant(dir: &Path) {
    GRANT_DIRS.write().expect("grant dirs").retain(|d| d != dir);
}

/// Why a plugin may not open what `file` (just opened for it) is, if it may not.
pub fn refuses_opened(file: &std::fs::File) -> Option<String> {
    use std::os::fd::AsRawFd;
    let meta = file.metadata().ok()?;
    if let Some(why) = refuses_metadata(&meta) {
        return Some(why);
    }
    let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    inside_host_dir(&path)
}

/// Why a plugin may not look into the entry at `path` (device `dev`, inode `ino`, from
/// `lstat`), if it may not. Device nodes may be described (tar archives them as nodes);
/// only opening them is refused.
pub fn refuses_looking_into(dev: u64, ino: u64, is_dir: bool, path: &Path) -> Option<String> {
    if let Some(fs) = pseudo_filesystem(dev) {
        return Some(format!(
            "on a pseudo-filesystem ({fs}), which no grant reaches"
        ));
    }
    if is_dir {
        let dirs = HOST_DIRS.read().expect("host dirs");
        for dir in dirs.iter() {
            if let Ok(m) = std::fs::metadata(dir)
                && (m.dev(), m.ino()) == (dev, ino)
            {
                return Some(format!(
                    "the host's own directory ({}), which no grant reaches",
                    path.display()
                ));
            }
        }
    }
    None
}

fn refuses_metadata(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(fs) = pseudo_filesystem(meta.dev()) {
        return Some(format!(
            "on a pseudo-filesystem ({fs}), which no grant reaches"
        ));
    }
    let kind = meta.file_type();
    if kind.is_block_device() || kind.is_char_device() {
        return Some("a device node: the host does not open devices for plugins".into());
    }
    None
}

fn inside_host_dir(path: &Path) -> Option<String> {
    if GRANT_DIRS
        .read()
        .expect("grant dirs")
        .iter()
        .any(|d| path.starts_with(d))
    {
        return None;
    }
    let dirs = HOST_DIRS.read().expect("host dirs");
    dirs.iter().find(|dir| path.starts_with(dir)).map(|dir| {
        format!(
            "inside the host's own directory {}, which no grant reaches",
            dir.display()
        )
    })
}

/// The pseudo-filesystem type of device `dev`, if it is one.
fn pseudo_filesystem(dev: u64) -> Option<String> {
    let mut mounts = MOUNTS.lock().expect("mount table");
    let known = mounts.as_ref().is_some_and(|m| m.contains_key(&dev));
    if !known {
        let mut fresh = read_mountinfo();
        // A device the table does not name (a btrfs subvolume, say) is remembered as
        // unknown, so that it costs one read of the table, not one per file.
        fresh.entry(dev).or_default();
        *mounts = Some(fresh);
    }
    let fs = mounts.as_ref()?.get(&dev)?;
    PSEUDO.contains(&fs.as_str()).then(|| fs.clone())
}

/// device number → filesystem type, for every mount this process sees.
fn read_mountinfo() -> HashMap<u64, String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = HashMap::new();
    for line in text.lines() {
        // `36 35 98:0 /root /mnt opts [optional fields] - fstype source super-opts`
        let mut fields = line.split(' ');
        let Some(dev) = fields.nth(2) else { continue };
        let Some((major, minor)) = dev.split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else {
            continue;
        };
        let Some((_, after)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = after.split(' ').next().unwrap_or_default();
        out.insert(libc::makedev(major, minor), fstype.to_string());
    }
    out
}

/// Shadows `wasi:filesystem/types` `descriptor.open-at` in `linker`: wasmtime-wasi opens,
/// then the host looks at what was opened and closes it again if no grant may reach it.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<PluginState>) -> anyhow::Result<()> {
    use wasmtime_wasi::filesystem::{Descriptor as Opened, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::filesystem::types::{
        Descriptor, DescriptorFlags, ErrorCode, Host, HostDescriptor, OpenFlags, PathFlags,
    };
    type Params = (
        Resource<Descriptor>,
        PathFlags,
        String,
        OpenFlags,
        DescriptorFlags,
    );
    use wasmtime::component::Resource;

    linker.allow_shadowing(true);
    let mut types = linker.instance("wasi:filesystem/types@0.2.12")?;
    let added = types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store: wasmtime::StoreContextMut<'_, PluginState>,
         (fd, path_flags, path, oflags, flags): Params| {
            Box::new(async move {
                let label = store.data().policy.label.clone();
                let mut view = store.data_mut().filesystem();
                let shown = crate::text::for_terminal(&path, 300);
                let opened = match view.open_at(fd, path_flags, path, oflags, flags).await {
                    Ok(opened) => opened,
                    Err(e) => return Ok((Err(view.convert_error_code(e)?),)),
                };
                let refused = match view.table.get(&opened)? {
                    Opened::File(f) => refuses_opened(&f.file),
                    Opened::Dir(d) => refuses_opened(&d.dir),
                };
                if let Some(why) = refused {
                    view.table.delete(opened)?;
                    tracing::warn!(
                        plugin = %label,
                        capability = "read",
                        wanted = %shown,
                        "denied: {shown}: {why}"
                    );
                    return Ok((Err(ErrorCode::NotPermitted),));
                }
                Ok((Ok(opened),))
            })
        },
    );
    linker.allow_shadowing(false);
    added.map_err(|e| anyhow::anyhow!("linking the guarded open-at: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_and_sys_are_pseudo_and_a_temp_dir_is_not() {
        let proc = std::fs::File::open("/proc/self/environ").unwrap();
        assert!(refuses_opened(&proc).unwrap().contains("proc"));
        let sys = std::fs::metadata("/sys/kernel").unwrap();
        assert!(
            refuses_looking_into(sys.dev(), sys.ino(), true, Path::new("/sys/kernel")).is_some()
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(refuses_opened(&std::fs::File::open(&file).unwrap()), None);
    }

    #[test]
    fn devices_and_host_dirs_are_refused() {
        let null = std::fs::File::open("/dev/null").unwrap();
        assert!(refuses_opened(&null).is_some());
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("run-x");
        std::fs::create_dir(&inner).unwrap();
        std::fs::write(inner.join("secret"), "x").unwrap();
        protect_host_dir(&inner);
        let opened = std::fs::File::open(inner.join("secret")).unwrap();
        assert!(refuses_opened(&opened).unwrap().contains("host's own"));
        let meta = std::fs::metadata(&inner).unwrap();
        assert!(refuses_looking_into(meta.dev(), meta.ino(), true, &inner).is_some());
    }
}
