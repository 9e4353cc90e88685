//! A folder comes back as it was: names as bytes, owners, modes, mtimes before 1970, hard
//! links (stored once), FIFOs and device nodes. Checked on the same artifact two ways:
//! stock `gpg -d | tar -x` (GNU tar) and `backups restore --extract`. Needs root (owners,
//! device nodes), as a restore of a whole system does.

use crate::support;

use serde_json::json;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::*;

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn name(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// Everything a restore must keep, for every entry under `root`, keyed by its name's bytes.
/// Hard links show as "same as <first name>".
fn fidelity(root: &Path) -> Vec<(Vec<u8>, String)> {
    let mut out = Vec::new();
    let mut inodes: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let m = fs::symlink_metadata(&path).unwrap();
            let t = m.file_type();
            let owner = format!("{}:{} {:o}", m.uid(), m.gid(), m.mode() & 0o7777);
            let desc = if t.is_symlink() {
                format!(
                    "link {:?} {}:{}",
                    fs::read_link(&path).unwrap(),
                    m.uid(),
                    m.gid()
                )
            } else if t.is_dir() {
                stack.push(path.clone());
                format!("dir {owner} mtime {}", m.mtime())
            } else if m.nlink() > 1 && inodes.contains_key(&m.ino()) {
                format!("same as {:?}", String::from_utf8_lossy(&inodes[&m.ino()]))
            } else {
                if m.nlink() > 1 {
                    inodes.insert(m.ino(), rel.clone());
                }
                use std::os::unix::fs::FileTypeExt;
                let kind = if t.is_fifo() {
                    "fifo".to_string()
                } else if t.is_char_device() || t.is_block_device() {
                    format!(
                        "{} {:x}",
                        if t.is_char_device() { "char" } else { "block" },
                        m.rdev()
                    )
                } else {
                    let bytes = fs::read(&path).unwrap();
                    format!("file {} bytes {:x}", bytes.len(), fxhash(&bytes))
                };
                format!("{kind} {owner} mtime {}", m.mtime())
            };
            out.push((rel, desc));
        }
    }
    out.sort();
    out
}

fn fxhash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A tree with what the folder source once lost or flattened.
fn make_hard_tree(src: &Path) {
    fs::create_dir_all(src.join("sub")).unwrap();
    // Names that are not UTF-8 (latin-1), short and long, a directory among them.
    fs::write(src.join(name(b"caf\xe9.txt")), b"latin-1 name").unwrap();
    let odd_dir = src.join(name(b"r\xe9pertoire"));
    fs::create_dir(&odd_dir).unwrap();
    let mut long = b"tr\xe8s-long-".repeat(12);
    long.extend_from_slice(b".txt");
    fs::write(odd_dir.join(name(&long)), b"long latin-1 name").unwrap();
    // Ordinary files beside them: none may go missing with them.
    for i in 0..30 {
        fs::write(
            src.join("sub").join(format!("file-{i:02}")),
            format!("content {i}"),
        )
        .unwrap();
    }
    // Owners by number (no such users here), and a setuid bit.
    let owned = src.join("owned");
    fs::write(&owned, b"owned by 1234").unwrap();
    std::os::unix::fs::chown(&owned, Some(1234), Some(5678)).unwrap();
    fs::set_permissions(&owned, fs::Permissions::from_mode(0o4750)).unwrap();
    std::os::unix::fs::chown(src.join("sub"), Some(4321), Some(8765)).unwrap();
    // A FIFO and device nodes: archived as nodes, never opened.
    sh(Command::new("mkfifo").arg(src.join("pipe")));
    sh(Command::new("mknod")
        .arg(src.join("null-dev"))
        .args(["c", "1", "3"]));
    sh(Command::new("mknod")
        .arg(src.join("loop-dev"))
        .args(["b", "7", "200"]));
    // Hard links: one 1 MiB file under three names, stored once.
    let big = incompressible(1 << 20, 7);
    fs::write(src.join("linked-a"), &big).unwrap();
    fs::hard_link(src.join("linked-a"), src.join("sub/linked-b")).unwrap();
    fs::hard_link(src.join("linked-a"), src.join(name(b"linked-\xe9"))).unwrap();
    std::os::unix::fs::symlink(name(b"caf\xe9.txt"), src.join("to-cafe")).unwrap();
    // Times before 1970, on a file and on a directory (set last: writing into a
    // directory changes its mtime).
    sh(Command::new("touch")
        .args(["-h", "-d", "1960-05-01 12:00:00 UTC"])
        .arg(src.join("owned")));
    sh(Command::new("touch")
        .args(["-d", "1969-12-31 23:00:00 UTC"])
        .arg(&odd_dir));
}

#[test]
fn a_tree_comes_back_exactly_from_gnu_tar_and_from_restore() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (owners, device nodes)"
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_hard_tree(&src);
    let before = fidelity(&src);
    let job = job_to_local_disk(
        w,
        vec![json!({"id": "tree", "type": "folder", "path": src, "passphrase": "pw-pw-pw"})],
    );
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());

    // Stock tools: gpg, then GNU tar keeping owners by number.
    let tar_bytes = gunzip(&decrypt_artifact(
        &w.join("dest"),
        "tree",
        "tar",
        "pw-pw-pw",
    ));
    // The 1 MiB linked file is in the archive once, not three times.
    assert!(
        tar_bytes.len() < (1 << 20) + (200 << 10),
        "{} bytes",
        tar_bytes.len()
    );
    let gnu = w.join("gnu");
    fs::create_dir(&gnu).unwrap();
    let mut tar = Command::new("tar")
        .args(["-xpf", "-", "--same-owner", "--numeric-owner", "-C"])
        .arg(&gnu)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(tar.stdin.as_mut().unwrap(), &tar_bytes).unwrap();
    drop(tar.stdin.take());
    let out = tar.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "GNU tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inside = src.strip_prefix("/").unwrap();
    assert_eq!(
        fidelity(&gnu.join(inside)),
        before,
        "GNU tar's extraction differs"
    );

    let restored = w.join("restored");
    let r = run(backups()
        .args(["restore", "--source", "tree", "--extract"])
        .arg(&restored)
        .arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        fidelity(&restored.join(inside)),
        before,
        "restore --extract differs"
    );

    // And GNU tar lists the links as links, under their latin-1 names.
    let listing = Command::new("tar")
        .args(["-tvf", "-", "--numeric-owner"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            std::io::Write::write_all(c.stdin.as_mut().unwrap(), &tar_bytes)?;
            drop(c.stdin.take());
            c.wait_with_output()
        })
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("linked-b link to"), "{listing}");
    assert!(listing.contains("1234/5678"), "{listing}");
}

/// Runs `backups run job` as user `nobody`, for whom a root-only file is unreadable.
fn run_as_nobody(work: &Path, job: &Path) -> Run {
    let home = work.join("home");
    fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_backups"))
        .arg("run")
        .arg(job)
        .env("HOME", &home)
        .env("BACKUPS_CACHE_DIR", home.join("cache"))
        .env_remove("BACKUPS_ALLOW_ROOT")
        .env_remove("RUN_AS_USER")
        .env_remove("BACKUPS_LOG"))
}

#[test]
fn an_unreadable_file_is_named_alone_and_fails_the_source_unless_warn_is_asked() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (to switch user)"
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    fs::set_permissions(w, fs::Permissions::from_mode(0o755)).unwrap();
    let src = w.join("src");
    fs::create_dir_all(src.join("inner")).unwrap();
    for i in 0..30 {
        fs::write(src.join(format!("f{i:02}")), format!("{i}")).unwrap();
    }
    fs::write(src.join(name(b"caf\xe9.txt")), b"latin-1").unwrap();
    fs::write(src.join("inner/z-after"), b"after the unreadable one").unwrap();
    let secret = src.join("inner/root-only");
    fs::write(&secret, b"root only").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    for dir in ["dest", "tmp", "state"] {
        fs::create_dir_all(w.join(dir)).unwrap();
        std::os::unix::fs::chown(w.join(dir), Some(65534), Some(65534)).unwrap();
    }
    let job_with = |on_unreadable: &str| {
        let job = write_job(
            w,
            &json!({"hostname": "h", "tmpdir": w.join("tmp"), "state_dir": w.join("state"),
                    "sources": [{"id": "tree", "type": "folder", "path": src,
                                 "passphrase": "pw-pw-pw", "on_unreadable": on_unreadable}],
                    "destinations": [{"id": "disk", "type": "local", "path": w.join("dest")}]}),
        );
        fs::set_permissions(&job, fs::Permissions::from_mode(0o644)).unwrap();
        job
    };

    // The default: the source fails, naming the file; nothing is stored.
    let r = run_as_nobody(w, &job_with("fail"));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.all().contains("inner/root-only"), "{}", r.all());
    assert!(artifacts(&w.join("dest")).is_empty());

    // "warn": stored, exit 0, the one file named; every other entry is in the archive.
    let r = run_as_nobody(w, &job_with("warn"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.all().contains("1 path(s) not archived"), "{}", r.all());
    assert!(r.all().contains("inner/root-only"), "{}", r.all());
    let tar_bytes = gunzip(&decrypt_artifact(
        &w.join("dest"),
        "tree",
        "tar",
        "pw-pw-pw",
    ));
    let mut names: Vec<Vec<u8>> = tar::Archive::new(&tar_bytes[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path_bytes().into_owned())
        .collect();
    names.sort();
    let inside = src.strip_prefix("/").unwrap().as_os_str().as_bytes();
    let mut expected: Vec<Vec<u8>> = vec![[inside, b"/"].concat(), [inside, b"/inner/"].concat()];
    expected.push([inside, b"/caf\xe9.txt"].concat());
    expected.push([inside, b"/inner/z-after"].concat());
    for i in 0..30 {
        expected.push([inside, format!("/f{i:02}").as_bytes()].concat());
    }
    expected.sort();
    assert_eq!(names, expected);
}
