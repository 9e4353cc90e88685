//! Shared helpers for the end-to-end tests: the real `backups` binary, a generated tree,
//! real GnuPG in a private home, and tree comparison.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `backups` binary, with a compile cache shared by all tests (so plugins are compiled
/// once per test run, not once per test) and logs that a test can read.
pub fn backups() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_backups"));
    cmd.env(
        "BACKUPS_CACHE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("compile-cache"),
    )
    .env_remove("BACKUPS_LOG")
    // The tests run as root in CI; refusing root is itself tested (tests/trust.rs) with
    // this variable removed.
    .env("BACKUPS_ALLOW_ROOT", "1")
    .env_remove("RUN_AS_USER");
    cmd
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("running backups");
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    eprintln!("--- backups exited {} ---\n{}", run.code, run.all());
    run
}

/// A fixture component built by host/build.rs (not embedded).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("BACKUPS_TEST_FIXTURES_DIR")).join(name)
}

pub fn write_job(dir: &Path, job: &serde_json::Value) -> PathBuf {
    let path = dir.join("job.json");
    fs::write(&path, serde_json::to_string_pretty(job).unwrap()).unwrap();
    path
}

/// A small tree with what breaks naive archivers: nesting, empty and binary files, odd
/// names, several modes, symlinks inside and outside the tree, an empty directory.
pub fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("nested/deeper/deepest")).unwrap();
    fs::create_dir_all(root.join("empty dir")).unwrap();
    fs::write(root.join("plain.txt"), "hello, backups\n".repeat(1000)).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("nested/deeper/deepest/leaf"), b"leaf").unwrap();
    // Binary, incompressible: a xorshift stream, deterministic.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bin = Vec::with_capacity(3 << 20);
    while bin.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bin.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(root.join("nested/random.bin"), &bin).unwrap();
    fs::write(root.join("spaces and ünïcödé — name.txt"), b"odd name").unwrap();
    fs::write(root.join("nested/-leading-dash"), b"dash").unwrap();
    let long = "x".repeat(120);
    fs::create_dir_all(root.join(&long)).unwrap();
    fs::write(root.join(&long).join(format!("{long}.txt")), b"long path").unwrap();
    fs::write(root.join("script.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("script.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("private"), b"secret-ish").unwrap();
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o600)).unwrap();
    symlink("plain.txt", root.join("link-inside")).unwrap();
    symlink("/etc/hostname", root.join("link-outside")).unwrap();
    symlink("does/not/exist", root.join("link-dangling")).unwrap();
}

/// What a test compares: for every path under `root`, its kind, mode, content or target.
pub fn snapshot(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let meta = fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let desc = if meta.file_type().is_symlink() {
            format!("link -> {}", fs::read_link(&path).unwrap().display())
        } else if meta.is_dir() {
            walk(root, &path, out);
            format!("dir {mode:o}")
        } else {
            let bytes = fs::read(&path).unwrap();
            let digest = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                h.finish()
            };
            use std::os::unix::fs::MetadataExt;
            format!(
                "file {mode:o} {} bytes {digest:x} mtime {}",
                bytes.len(),
                meta.mtime()
            )
        };
        out.push((rel, desc));
    }
}

/// All files under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if dir.exists() {
        for entry in walkdir(dir) {
            out.push(entry.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Stored artifacts (not manifests) under a local destination.
pub fn artifacts(dest: &Path) -> Vec<PathBuf> {
    files_under(dest)
        .into_iter()
        .filter(|f| !f.ends_with(".manifest.json"))
        .map(|f| dest.join(f))
        .collect()
}

/// Real GnuPG with a private home directory.
pub struct Gpg {
    pub home: tempfile::TempDir,
}

impl Gpg {
    pub fn new() -> Gpg {
        let home = tempfile::tempdir().unwrap();
        fs::set_permissions(home.path(), fs::Permissions::from_mode(0o700)).unwrap();
        Gpg { home }
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home.path()).args([
            "--batch",
            "--quiet",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
        ]);
        cmd
    }

    /// Decrypts `file` into bytes, with a passphrase or the home's secret key.
    pub fn decrypt(&self, file: &Path, passphrase: Option<&str>) -> Vec<u8> {
        let mut cmd = self.cmd();
        if let Some(p) = passphrase {
            cmd.args(["--passphrase", p]);
        } else {
            cmd.args(["--passphrase", ""]);
        }
        let out = cmd
            .arg("--decrypt")
            .arg(file)
            .output()
            .expect("gpg is installed");
        assert!(
            out.status.success(),
            "gpg --decrypt {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Generates a key pair without a passphrase and exports the public key to `dir`.
    pub fn generate_key(&self, email: &str, dir: &Path) -> PathBuf {
        let status = self
            .cmd()
            .args([
                "--passphrase",
                "",
                "--quick-gen-key",
                email,
                "default",
                "default",
                "never",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "gpg --quick-gen-key failed");
        let out = self
            .cmd()
            .args(["--armor", "--export", email])
            .output()
            .unwrap();
        assert!(
            out.status.success() && !out.stdout.is_empty(),
            "gpg --export failed"
        );
        let path = dir.join("recipient.asc");
        fs::write(&path, &out.stdout).unwrap();
        path
    }
}

/// `tar -xz` of `tgz` into `into`, with the archive's modes.
pub fn untar_gz(tgz: &[u8], into: &Path) {
    use std::io::Write;
    fs::create_dir_all(into).unwrap();
    let mut child = Command::new("tar")
        .args(["-xzpf", "-", "-C"])
        .arg(into)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(tgz).unwrap();
    assert!(child.wait().unwrap().success(), "tar -xz failed");
}

/// Builds (once per test run; cargo keeps it up to date) the example third-party notifier
/// in examples/jsonl-notifier and returns its component.
pub fn example_notifier() -> PathBuf {
    use std::sync::Mutex;
    static BUILD: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/jsonl-notifier");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("example-plugin");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .unwrap();
    assert!(status.success(), "the example plugin must keep compiling");
    target.join("wasm32-wasip2/release/jsonl_notifier.wasm")
}

/// What a run left in its tmpdir besides its lock file (which stays, by design: removing
/// a flock'd file races with the next run). Must be nothing: no artifact, no credential.
pub fn leftovers(tmpdir: &Path) -> Vec<String> {
    files_under(tmpdir)
        .into_iter()
        .filter(|f| !f.starts_with(".lock-"))
        .collect()
}

/// A test server process: started by a test, waited for on its TCP port, and killed (by
/// the pid we hold) when dropped. A server that cannot start fails the test, never skips it.
pub struct Server {
    pub child: std::process::Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Spawns `cmd` (quietly) and waits until it listens on 127.0.0.1:`port`.
pub fn start_server(cmd: &mut Command, port: u16, what: &str) -> Server {
    use std::time::{Duration, Instant};
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} could not be started ({e}); .ci/run installs it"));
    let mut server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("{what} exited at start: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// The artifact `{id}.{kind}.gz.gpg` stored under `dest`, decrypted with stock gpg: the
/// gzip stream inside.
pub fn decrypt_artifact(dest: &Path, id: &str, kind: &str, passphrase: &str) -> Vec<u8> {
    let artifact = artifacts(dest)
        .into_iter()
        .find(|a| {
            a.display()
                .to_string()
                .ends_with(&format!("/{id}.{kind}.gz.gpg"))
        })
        .unwrap_or_else(|| panic!("no {kind} artifact for {id} under {}", dest.display()));
    Gpg::new().decrypt(&artifact, Some(passphrase))
}

pub fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut out).unwrap();
    out
}

/// `len` incompressible bytes, the same for the same `seed` (a xorshift stream): for
/// artifacts large enough to need multipart uploads, upload sessions or large files.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The entry for destination `id` in a `backups run --json` report.
pub fn destination_outcome(report: &serde_json::Value, id: &str) -> serde_json::Value {
    report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination_id"] == id)
        .unwrap_or_else(|| panic!("no outcome for {id}: {report}"))
        .clone()
}

/// `backups verify JOB`: exit 0 and `copies` copies fetched, checked and decrypted ("ok"
/// lines), one per source and destination.
pub fn assert_verifies(job: &Path, copies: usize) {
    let r = run(backups().arg("verify").arg(job));
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("ok")).count(),
        copies,
        "{}",
        r.stdout
    );
}

/// s3s-fs (an S3 server that checks SigV4 signatures) on 127.0.0.1, serving the buckets
/// (directories) under `root` to the key pair `access`/`secret`.
pub fn start_s3s_fs(root: &Path, access: &str, secret: &str) -> Server {
    let port = free_port();
    start_server(
        Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", access, "--secret-key", secret])
            .arg(root),
        port,
        "s3s-fs",
    )
}
