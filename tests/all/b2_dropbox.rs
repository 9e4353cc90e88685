//! b2 and dropbox destinations against stub servers that follow Backblaze's and Dropbox's
//! published APIs (neither provider has an emulator): tests/servers/*.py, started by each
//! test on 127.0.0.1 and stopped by their pid. The stubs check what the providers check
//! (credentials, tokens, SHA-1s, part sizes, session offsets, headers) and record every
//! request; the tests assert on those requests, read the stored bytes back and decrypt
//! them with gpg, and inject faults (500 answers, cut connections) to see the host's
//! retries and that nothing partial is left under a final name.

use crate::support;

use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const KEY_ID: &str = "000a1b2c3d4e5f0000000001";
const KEY: &str = "K000-b2-application-key-for-tests";
const TOKEN: &str = "sl.dropbox-access-token-for-tests";
const REFRESH: &str = "dropbox-refresh-token-for-tests";
const APP_KEY: &str = "dropbox-app-key";
const APP_SECRET: &str = "dropbox-app-secret-for-tests";
const PASSPHRASE: &str = "pw-pw-pw";
const MIB: u64 = 1 << 20;

/// A provider stub: its server(s), its request log and its store (with state.json).
struct Stub {
    server: Server,
    /// Dropbox's content host runs on a second port.
    content_port: Option<u16>,
    dir: tempfile::TempDir,
}

impl Stub {
    fn start(script: &str, args: &[String], faults: &[&str], content_port: Option<u16>) -> Stub {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new("python3");
        cmd.arg(server_script(script))
            .args(["--port", &port.to_string()])
            .arg("--log")
            .arg(dir.path().join("requests.jsonl"))
            .arg("--store")
            .arg(dir.path().join("store"))
            .args(args);
        for fault in faults {
            cmd.args(["--fault", fault]);
        }
        if let Some(p) = content_port {
            cmd.args(["--content-port", &p.to_string()]);
        }
        let server = start_server(&mut cmd, port, script);
        Stub {
            server,
            content_port,
            dir,
        }
    }

    fn b2(faults: &[&str]) -> Stub {
        let args = ["--key-id", KEY_ID, "--key", KEY, "--bucket", "backups-b"].map(String::from);
        Stub::start("b2_stub.py", &args, faults, None)
    }

    fn dropbox(faults: &[&str]) -> Stub {
        Stub::start(
            "dropbox_stub.py",
            &[
                "--token",
                TOKEN,
                "--refresh-token",
                REFRESH,
                "--app-key",
                APP_KEY,
                "--app-secret",
                APP_SECRET,
            ]
            .map(String::from),
            faults,
            Some(free_port()),
        )
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    fn content_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.content_port.unwrap())
    }

    /// Every request the stub received, in order.
    fn requests(&self) -> Vec<Value> {
        recorded(&self.dir.path().join("requests.jsonl"))
    }

    fn calls(&self, operation: &str) -> Vec<Value> {
        stub_calls(self.dir.path(), operation)
    }

    fn state(&self) -> Value {
        stub_state(self.dir.path())
    }

    /// Names (B2 `fileName`, Dropbox `path`) of the files the stub holds, sorted.
    fn file_names(&self) -> Vec<String> {
        let field = if self.content_port.is_some() {
            "path"
        } else {
            "fileName"
        };
        let mut names: Vec<String> = self.state()["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f[field].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    /// The stored bytes of the one file whose name ends with `suffix`.
    fn stored(&self, suffix: &str) -> PathBuf {
        let field = if self.content_port.is_some() {
            "path"
        } else {
            "fileName"
        };
        let state = self.state();
        let matching: Vec<&Value> = state["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f[field].as_str().unwrap().ends_with(suffix))
            .collect();
        assert_eq!(matching.len(), 1, "one file ending {suffix}: {state}");
        PathBuf::from(matching[0]["blob"].as_str().unwrap())
    }
}

fn b2_dest(stub: &Stub, id: &str, key: &str) -> Value {
    json!({"id": id, "type": "b2", "bucket": "backups-b", "api_url": stub.url(), "part_size_mib": 5,
           "credentials": {"application_key_id": KEY_ID, "application_key": key}})
}

fn dropbox_dest(stub: &Stub, id: &str, token: &str) -> Value {
    json!({"id": id, "type": "dropbox", "access_token": token, "folder": "/backups",
           "api_url": stub.url(), "content_url": stub.content_url(), "chunk_size_mib": 4})
}

/// b2 and dropbox on these stubs with the right credentials, and a local directory if
/// `with_local` (the destination that must be unaffected by their failures).
fn both(b2: &Stub, dropbox: &Stub, with_local: bool) -> Vec<Value> {
    let mut destinations = vec![
        b2_dest(b2, "b2", KEY),
        dropbox_dest(dropbox, "dropbox", TOKEN),
    ];
    if with_local {
        let local = b2.dir.path().join("local");
        fs::create_dir_all(&local).unwrap();
        destinations.push(json!({"id": "local", "type": "local", "path": local}));
    }
    destinations
}

fn job(work: &Path, src: &Path, destinations: Vec<Value>) -> PathBuf {
    write_job(
        work,
        &json!({"hostname": "h", "tmpdir": work.join("tmp"),
                "sources": [{"id": "files", "type": "folder", "path": src, "passphrase": PASSPHRASE}],
                "destinations": destinations}),
    )
}

/// The test tree plus 12 MiB of incompressible bytes: an artifact of over two 5 MiB B2
/// parts and three 4 MiB Dropbox chunks.
fn big_source(work: &Path) -> PathBuf {
    let src = work.join("src");
    make_tree(&src);
    fs::write(src.join("big.bin"), incompressible(12 << 20, 7)).unwrap();
    src
}

fn small_source(work: &Path) -> PathBuf {
    let src = work.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"small").unwrap();
    src
}

fn run_json(job: &Path) -> (Run, Value) {
    let r = run(backups().args(["run", "--json"]).arg(job));
    let report = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
    (r, report)
}

/// The stored artifact decrypts with stock gpg into the source tree.
fn assert_restores(artifact: &Path, src: &Path, into: &Path) {
    let tgz = Gpg::new().decrypt(artifact, Some(PASSPHRASE));
    untar_gz(&tgz, into);
    assert_eq!(
        snapshot(src),
        snapshot(&into.join(src.strip_prefix("/").unwrap()))
    );
}

fn header<'a>(request: &'a Value, name: &str) -> &'a str {
    request["headers"][name].as_str().unwrap_or_default()
}

fn arg(request: &Value) -> Value {
    serde_json::from_str(header(request, "dropbox-api-arg")).unwrap()
}

fn body_length(request: &Value) -> u64 {
    request["body_length"].as_u64().unwrap()
}

#[test]
fn b2_and_dropbox_store_large_artifacts_in_parts_that_decrypt_with_gpg() {
    let (b2, dropbox) = (Stub::b2(&[]), Stub::dropbox(&[]));
    let work = tempfile::tempdir().unwrap();
    let src = big_source(work.path());
    let job = job(work.path(), &src, both(&b2, &dropbox, true));
    let (r, report) = run_json(&job);
    assert_eq!(r.code, 0);
    assert!(
        !r.all().contains(KEY) && !r.all().contains(TOKEN),
        "a secret leaked"
    );
    for id in ["b2", "dropbox", "local"] {
        assert_eq!(destination_outcome(&report, id)["ok"], true, "{id}");
    }
    let size = report["sources"][0]["bytes_out"].as_u64().unwrap();
    assert!(
        size > 10 * MIB,
        "needs large-file parts and an upload session"
    );

    // B2: authorized with the key pair, then the artifact as a large file in 5 MiB parts
    // with their SHA-1s, finished with those SHA-1s in order; the manifest as one upload.
    let auth = b2.calls("b2_authorize_account");
    assert_eq!(auth.len(), 1, "one authorization per run");
    assert_eq!(auth[0]["status"], 200, "the stub checked the key pair");
    assert!(header(&auth[0], "authorization").starts_with("Basic "));
    let started = b2.calls("b2_start_large_file");
    assert_eq!(started.len(), 1);
    let name = started[0]["json"]["fileName"].as_str().unwrap().to_string();
    assert!(
        name.starts_with("h/") && name.ends_with("/files.tar.gz.gpg"),
        "{name}"
    );
    let parts = b2.calls("b2_upload_part");
    assert_eq!(parts.len() as u64, size.div_ceil(5 * MIB));
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part["status"], 200);
        assert_eq!(header(part, "x-bz-part-number"), (i + 1).to_string());
        assert_eq!(header(part, "x-bz-content-sha1"), part["body_sha1"]);
        assert_eq!(
            header(part, "content-length"),
            body_length(part).to_string()
        );
        if i + 1 < parts.len() {
            assert_eq!(
                body_length(part),
                5 * MIB,
                "every part but the last is whole"
            );
        }
    }
    let sha1s: Vec<&Value> = parts.iter().map(|p| &p["body_sha1"]).collect();
    let finish = b2.calls("b2_finish_large_file");
    assert_eq!(finish.len(), 1);
    assert_eq!(
        finish[0]["json"]["partSha1Array"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        sha1s
    );
    assert!(b2.calls("b2_cancel_large_file").is_empty());
    let uploads = b2.calls("b2_upload_file");
    assert_eq!(uploads.len(), 1, "the manifest");
    let manifest = &uploads[0];
    assert_eq!(
        header(manifest, "x-bz-file-name"),
        format!("{name}.manifest.json")
    );
    assert_eq!(header(manifest, "content-type"), "b2/x-auto");
    assert_eq!(header(manifest, "x-bz-content-sha1"), manifest["body_sha1"]);
    assert_eq!(
        b2.file_names(),
        [name.clone(), format!("{name}.manifest.json")]
    );

    // Dropbox: bearer token; an upload session in 4 MiB chunks at consecutive offsets,
    // committed under the final path at finish; the manifest as one upload.
    let sent: Vec<Value> = dropbox
        .requests()
        .into_iter()
        .filter(|r| r["role"] == "content")
        .collect();
    for request in &sent {
        assert_eq!(header(request, "authorization"), format!("Bearer {TOKEN}"));
        assert_eq!(header(request, "content-type"), "application/octet-stream");
        assert_eq!(request["status"], 200, "{request}");
    }
    let session: Vec<&Value> = sent
        .iter()
        .filter(|r| {
            r["operation"]
                .as_str()
                .unwrap()
                .starts_with("files/upload_session/")
        })
        .collect();
    assert_eq!(session.len() as u64, size.div_ceil(4 * MIB));
    assert_eq!(session[0]["operation"], "files/upload_session/start");
    assert_eq!(arg(session[0]), json!({"close": false}));
    let mut offset = body_length(session[0]);
    for request in &session[1..session.len() - 1] {
        assert_eq!(request["operation"], "files/upload_session/append_v2");
        assert_eq!(arg(request)["cursor"]["offset"], offset);
        assert_eq!(body_length(request), 4 * MIB);
        offset += body_length(request);
    }
    let last = session.last().unwrap();
    assert_eq!(last["operation"], "files/upload_session/finish");
    assert_eq!(arg(last)["cursor"]["offset"], offset);
    assert_eq!(offset + body_length(last), size);
    let path = format!("/backups/{name}");
    assert_eq!(
        arg(last)["commit"],
        json!({"path": path, "mode": "overwrite", "autorename": false, "mute": true})
    );
    let single = dropbox.calls("files/upload");
    assert_eq!(single.len(), 1, "the manifest");
    assert_eq!(arg(&single[0])["path"], format!("{path}.manifest.json"));
    assert_eq!(
        dropbox.file_names(),
        [path.clone(), format!("{path}.manifest.json")]
    );

    // What the stubs stored decrypts with gpg into the source tree.
    assert_restores(
        &b2.stored("/files.tar.gz.gpg"),
        &src,
        &work.path().join("from-b2"),
    );
    assert_restores(
        &dropbox.stored("/files.tar.gz.gpg"),
        &src,
        &work.path().join("from-dropbox"),
    );

    // verify fetches through the plugins (list + get, Dropbox's listing in pages).
    assert_verifies(&job, 3);
    // The manifest, then the artifact, from each.
    assert_eq!(b2.calls("b2_download_file_by_name").len(), 2);
    assert_eq!(dropbox.calls("files/download").len(), 2);
    assert!(
        !dropbox.calls("files/list_folder/continue").is_empty(),
        "pages followed"
    );
}

#[test]
fn retention_deletes_through_b2_and_dropbox_and_keeps_the_newest() {
    let (b2, dropbox) = (Stub::b2(&[]), Stub::dropbox(&[]));
    let work = tempfile::tempdir().unwrap();
    let src = small_source(work.path());
    let mut b2_entry = b2_dest(&b2, "b2", KEY);
    b2_entry["retention_copies"] = json!(1);
    let mut dropbox_entry = dropbox_dest(&dropbox, "dropbox", TOKEN);
    dropbox_entry["retention_copies"] = json!(1);
    let job = job(work.path(), &src, vec![b2_entry, dropbox_entry]);
    for day in 1..=3 {
        let now = format!("2026-03-0{day}T02:00:00Z");
        assert_eq!(
            run(backups().env("BACKUPS_NOW", now).arg("run").arg(&job)).code,
            0
        );
    }
    // One copy left (artifact + manifest), the newest.
    for names in [b2.file_names(), dropbox.file_names()] {
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names.iter().all(|n| n.contains("h/2026-03-03/")),
            "{names:?}"
        );
    }
    // Two older copies deleted, manifest and artifact each, by the providers' own calls.
    let deleted = b2.calls("b2_delete_file_version");
    assert_eq!(deleted.len(), 4);
    for d in &deleted {
        assert_eq!(d["status"], 200);
        assert!(d["json"]["fileId"].is_string(), "{d}");
    }
    let deleted: Vec<Value> = dropbox
        .calls("files/delete_v2")
        .into_iter()
        .filter(|d| {
            d["json"]["path"].as_str().unwrap().ends_with(".gpg")
                || d["json"]["path"].as_str().unwrap().ends_with(".json")
        })
        .collect();
    assert_eq!(deleted.len(), 4);
    assert!(deleted.iter().all(|d| {
        d["status"] == 200
            && d["json"]["path"]
                .as_str()
                .unwrap()
                .starts_with("/backups/h/2026-03-0")
    }));
    // Dropbox keeps empty folders; the emptied dated ones were removed like directories.
    assert_eq!(
        dropbox.state()["folders"],
        json!([
            "/backups",
            "/backups/h",
            "/backups/h/2026-03-03",
            "/backups/h/2026-03-03/020000Z"
        ])
    );
    let r = run(backups().arg("list").arg(&job));
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("2026-03-03") && !r.stdout.contains("2026-03-01"),
        "{}",
        r.stdout
    );
}

#[test]
fn wrong_credentials_fail_only_their_destination_with_an_auth_outcome() {
    let (b2, dropbox) = (Stub::b2(&[]), Stub::dropbox(&[]));
    let work = tempfile::tempdir().unwrap();
    let src = small_source(work.path());
    let mut destinations = both(&b2, &dropbox, true);
    destinations[0]["credentials"]["application_key"] = json!("not-the-key");
    destinations[1]["access_token"] = json!("not-the-token");
    let job = job(work.path(), &src, destinations);
    let (r, report) = run_json(&job);
    assert_eq!(r.code, 1, "the backup is incomplete");
    assert!(!r.all().contains("not-the-key") && !r.all().contains("not-the-token"));
    assert_eq!(destination_outcome(&report, "local")["ok"], true);
    for id in ["b2", "dropbox"] {
        let failed = destination_outcome(&report, id);
        assert_eq!(failed["ok"], false);
        assert!(
            failed["error"].as_str().unwrap().contains("(auth)"),
            "{failed}"
        );
    }
    // Refused once each, not retried (a wrong key stays wrong), nothing stored.
    let auth = b2.calls("b2_authorize_account");
    assert_eq!(auth.len(), 1);
    assert_eq!(auth[0]["status"], 401);
    assert_eq!(b2.requests().len(), 1);
    let uploads = dropbox.calls("files/upload");
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0]["status"], 401);
    assert!(b2.file_names().is_empty() && dropbox.file_names().is_empty());
}

#[test]
fn a_refresh_token_is_exchanged_for_access_tokens_and_a_revoked_one_fails_as_auth() {
    let dropbox = Stub::dropbox(&[]);
    let work = tempfile::tempdir().unwrap();
    let src = small_source(work.path());
    let refreshing = |id: &str, refresh: &str| {
        json!({"id": id, "type": "dropbox", "refresh_token": refresh, "app_key": APP_KEY,
               "app_secret": APP_SECRET, "folder": format!("/{id}"),
               "api_url": dropbox.url(), "content_url": dropbox.content_url()})
    };
    let job = job(
        work.path(),
        &src,
        vec![
            refreshing("good", REFRESH),
            refreshing("revoked", "revoked-refresh-token"),
        ],
    );
    let (r, report) = run_json(&job);
    assert_eq!(r.code, 1);
    assert!(!r.all().contains(REFRESH) && !r.all().contains(APP_SECRET));
    assert_eq!(destination_outcome(&report, "good")["ok"], true);
    let revoked = destination_outcome(&report, "revoked");
    assert!(
        revoked["error"].as_str().unwrap().contains("(auth)"),
        "{revoked}"
    );
    // One exchange each, as Dropbox's OAuth endpoint wants it.
    let exchanges = dropbox.calls("oauth2/token");
    assert_eq!(exchanges.len(), 2);
    for exchange in &exchanges {
        assert_eq!(exchange["form"]["grant_type"], "refresh_token");
        assert_eq!(exchange["form"]["client_id"], APP_KEY);
        let status = exchange["status"].as_u64().unwrap();
        let expected = if exchange["form"]["refresh_token"] == REFRESH {
            200
        } else {
            400
        };
        assert_eq!(status, expected, "{exchange}");
    }
    // The good entry used the short-lived token it was given, not a configured one.
    let uploads = dropbox.calls("files/upload");
    assert_eq!(
        uploads.len(),
        2,
        "artifact and manifest of the good entry only"
    );
    for upload in &uploads {
        let bearer = header(upload, "authorization");
        assert!(bearer.starts_with("Bearer sl.u.") && bearer != format!("Bearer {TOKEN}"));
        assert_eq!(upload["status"], 200);
    }
    assert!(dropbox.file_names().iter().all(|n| n.starts_with("/good/")));
}

#[test]
fn a_server_error_on_the_first_upload_is_retried_by_the_host() {
    let b2 = Stub::b2(&["b2_upload_file:500:1"]);
    let dropbox = Stub::dropbox(&["files/upload:500:1"]);
    let work = tempfile::tempdir().unwrap();
    let src = small_source(work.path());
    let job = job(work.path(), &src, both(&b2, &dropbox, false));
    let (r, report) = run_json(&job);
    assert_eq!(r.code, 0, "the retry succeeded");
    assert!(r.stderr.contains("retrying in 2s"), "{}", r.stderr);
    assert_eq!(destination_outcome(&report, "b2")["ok"], true);
    assert_eq!(destination_outcome(&report, "dropbox")["ok"], true);
    // The stubs saw the failed attempt and the retry of the same object.
    let uploads = b2.calls("b2_upload_file");
    assert_eq!(uploads[0]["status"], 500);
    assert_eq!(uploads[1]["status"], 200);
    assert_eq!(
        header(&uploads[0], "x-bz-file-name"),
        header(&uploads[1], "x-bz-file-name")
    );
    assert_eq!(
        b2.calls("b2_authorize_account").len(),
        2,
        "after a failure the retry authorizes again (a fresh upload URL, as B2 asks)"
    );
    let uploads = dropbox.calls("files/upload");
    assert_eq!(uploads[0]["status"], 500);
    assert_eq!(uploads[1]["status"], 200);
    assert_eq!(arg(&uploads[0])["path"], arg(&uploads[1])["path"]);
    assert_eq!(b2.file_names().len(), 2);
    assert_eq!(dropbox.file_names().len(), 2);
}

#[test]
fn a_connection_cut_mid_upload_is_retried_and_the_broken_upload_never_becomes_a_file() {
    let b2 = Stub::b2(&["b2_upload_part:cut:1"]);
    let dropbox = Stub::dropbox(&["files/upload_session/append_v2:cut:1"]);
    let work = tempfile::tempdir().unwrap();
    let src = big_source(work.path());
    let job = job(work.path(), &src, both(&b2, &dropbox, false));
    let (r, _) = run_json(&job);
    assert_eq!(r.code, 0, "the retry succeeded");
    // B2: the large file of the cut attempt was cancelled; the retry's was finished.
    let cancelled = b2.state()["cancelled"].as_array().unwrap().clone();
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    let starts = b2.calls("b2_start_large_file");
    assert_eq!(starts.len(), 2);
    assert!(b2.state()["unfinished"].as_array().unwrap().is_empty());
    assert_restores(
        &b2.stored("/files.tar.gz.gpg"),
        &src,
        &work.path().join("from-b2"),
    );
    // Dropbox: the cut session was never finished; the retry's session was.
    assert_eq!(dropbox.calls("files/upload_session/start").len(), 2);
    assert_eq!(dropbox.calls("files/upload_session/finish").len(), 1);
    let sessions = dropbox.state()["sessions"].as_array().unwrap().clone();
    assert_eq!(
        sessions.iter().filter(|s| s["finished"] == true).count(),
        1,
        "{sessions:?}"
    );
    assert_restores(
        &dropbox.stored("/files.tar.gz.gpg"),
        &src,
        &work.path().join("from-dropbox"),
    );
}

#[test]
fn uploads_cut_every_time_fail_and_leave_nothing_that_looks_complete() {
    let b2 = Stub::b2(&["b2_upload_part:cut:99"]);
    let dropbox = Stub::dropbox(&["files/upload_session/append_v2:cut:99"]);
    let work = tempfile::tempdir().unwrap();
    let src = big_source(work.path());
    let job = job(work.path(), &src, both(&b2, &dropbox, true));
    let (r, report) = run_json(&job);
    assert_eq!(r.code, 1);
    assert_eq!(
        destination_outcome(&report, "local")["ok"],
        true,
        "other destinations are unaffected"
    );
    for id in ["b2", "dropbox"] {
        let failed = destination_outcome(&report, id);
        assert!(
            failed["error"].as_str().unwrap().contains("(transient)"),
            "{failed}"
        );
    }
    // Three attempts each (the host's retries); every B2 large file cancelled, no
    // Dropbox session finished; no file at all under the final names.
    assert_eq!(b2.calls("b2_start_large_file").len(), 3);
    assert_eq!(b2.state()["cancelled"].as_array().unwrap().len(), 3);
    assert!(b2.state()["unfinished"].as_array().unwrap().is_empty());
    assert!(b2.calls("b2_finish_large_file").is_empty());
    assert_eq!(dropbox.calls("files/upload_session/start").len(), 3);
    assert!(dropbox.calls("files/upload_session/finish").is_empty());
    assert!(b2.file_names().is_empty(), "{:?}", b2.file_names());
    assert!(
        dropbox.file_names().is_empty(),
        "{:?}",
        dropbox.file_names()
    );
}

#[test]
fn a_dead_server_and_an_ungranted_host_fail_only_their_destination() {
    let (b2, dropbox) = (Stub::b2(&[]), Stub::dropbox(&[]));
    let work = tempfile::tempdir().unwrap();
    let src = small_source(work.path());
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut b2_dead = b2_dest(&b2, "b2-dead", KEY);
    b2_dead["api_url"] = json!(dead);
    let mut dropbox_dead = dropbox_dest(&dropbox, "dropbox-dead", TOKEN);
    dropbox_dead["api_url"] = json!(dead);
    dropbox_dead["content_url"] = json!(dead);
    let mut b2_ungranted = b2_dest(&b2, "b2-ungranted", KEY);
    b2_ungranted["grants"] = json!({"net": ["https://api.backblazeb2.com"]});
    let mut dropbox_ungranted = dropbox_dest(&dropbox, "dropbox-ungranted", TOKEN);
    dropbox_ungranted["grants"] = json!({"net": ["https://content.dropboxapi.com"]});
    let mut destinations = vec![b2_dead, dropbox_dead, b2_ungranted, dropbox_ungranted];
    destinations.extend(both(&b2, &dropbox, true));
    let job = job(work.path(), &src, destinations);
    let (r, report) = run_json(&job);
    assert_eq!(r.code, 1);
    for id in ["b2", "dropbox", "local"] {
        assert_eq!(
            destination_outcome(&report, id)["ok"],
            true,
            "{id} is unaffected"
        );
    }
    for (id, kind) in [
        ("b2-dead", "(transient)"),
        ("dropbox-dead", "(transient)"),
        ("b2-ungranted", "(denied)"),
        ("dropbox-ungranted", "(denied)"),
    ] {
        let failed = destination_outcome(&report, id);
        assert_eq!(failed["ok"], false);
        assert!(
            failed["error"].as_str().unwrap().contains(kind),
            "{id}: {failed}"
        );
    }
    assert!(
        r.stderr.contains("denied: no net grant matches 127.0.0.1"),
        "{}",
        r.stderr
    );
    // The ungranted entries never reached the stubs: only the good ones' requests did.
    assert_eq!(b2.calls("b2_authorize_account").len(), 1);
    assert_eq!(b2.file_names().len(), 2);
    assert_eq!(dropbox.file_names().len(), 2);
}

#[test]
fn derived_grants_name_the_providers_documented_hosts() {
    let work = tempfile::tempdir().unwrap();
    let src = small_source(work.path());
    let job = job(
        work.path(),
        &src,
        vec![
            json!({"id": "b2", "type": "b2", "bucket": "b",
                   "credentials": {"application_key_id": KEY_ID, "application_key": KEY}}),
            json!({"id": "dropbox", "type": "dropbox", "access_token": TOKEN}),
        ],
    );
    let r = run(backups().args(["run", "--dry-run"]).arg(&job));
    assert_eq!(r.code, 0);
    for host in [
        "https://api.backblazeb2.com",
        "https://*.backblazeb2.com",
        "https://*.backblaze.com",
        "https://api.dropboxapi.com",
        "https://content.dropboxapi.com",
    ] {
        assert!(r.stdout.contains(host), "{host} in {}", r.stdout);
    }
    assert!(!r.all().contains(KEY) && !r.all().contains(TOKEN));
}

#[test]
fn a_large_file_a_killed_run_left_unfinished_is_cancelled_by_a_later_run() {
    let b2 = Stub::b2(&[]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big.bin"), incompressible(40 << 20, 9)).unwrap();
    let job = job(work.path(), &src, vec![b2_dest(&b2, "b2", KEY)]);
    let state = b2.dir.path().join("store/state.json");
    // Killed once a part is up: the large file stays unfinished, its parts billed.
    let part_up = || {
        fs::read_to_string(&state)
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .is_some_and(|s| {
                s["unfinished"]
                    .as_array()
                    .is_some_and(|u| u.iter().any(|f| f["parts"] != json!([])))
            })
    };
    assert!(
        kill_run_when(&job, &[], part_up),
        "the run ended before its upload could be killed"
    );
    let unfinished = b2.state()["unfinished"].clone();
    assert_eq!(unfinished.as_array().unwrap().len(), 1, "{unfinished}");

    let r = run(backups()
        .env("BACKUPS_NOW", days_from_now(2))
        .args(["run", "--json"])
        .arg(&job));
    assert_eq!(r.code, 0);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let sweep = &report["leftovers"][0];
    assert_eq!(sweep["removed"].as_array().unwrap().len(), 1, "{sweep}");
    assert!(
        sweep["removed_bytes"].as_u64().unwrap() >= 5 * MIB,
        "{sweep}"
    );
    let state = b2.state();
    assert_eq!(state["unfinished"], json!([]), "{state}");
    assert_eq!(
        state["cancelled"][0]["fileName"], unfinished[0]["fileName"],
        "{state}"
    );
    assert_verifies(&job, 1);
}
