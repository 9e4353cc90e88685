//! The samba destination against a real `smbd`, started by each test in the foreground
//! with its own smb.conf (a high port on 127.0.0.1, private state, log and password
//! database in a temporary directory, one share on a temporary directory) and stopped by
//! its pid. Artifacts are read back from the share's directory on disk and decrypted with
//! gpg; `backups verify` reads them back through the plugin.

use crate::support;

use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use support::*;

/// The test account's password. The space checks the credentials file keeps it whole.
const PASSWORD: &str = "smb pw 7f3a-backups";
const SHARE: &str = "backups";
/// A folder inside the share, with spaces, as the objects' parent.
const FOLDER: &str = "Backups Archive/nightly run";
const PASSPHRASE: &str = "pw-pw-pw";

/// Where the objects are, on disk.
fn objects_dir(smbd: &Smbd) -> PathBuf {
    smbd.share_dir().join(FOLDER)
}

fn dest(smbd: &Smbd, id: &str, password: &str) -> serde_json::Value {
    dest_at(smbd.server.port, &smbd.user, id, password)
}

fn dest_at(port: u16, user: &str, id: &str, password: &str) -> serde_json::Value {
    json!({"id": id, "type": "samba", "host": "127.0.0.1", "port": port, "share": SHARE,
           "workgroup": "TESTGROUP", "suffix": "gpg", "folder": FOLDER,
           "credentials": {"username": user, "password": password}})
}

fn job(work: &Path, src: &Path, destinations: Vec<serde_json::Value>) -> PathBuf {
    write_job(
        work,
        &json!({"hostname": "h", "tmpdir": work.join("tmp"),
                "sources": [{"id": "files", "type": "folder", "path": src, "passphrase": PASSPHRASE}],
                "destinations": destinations}),
    )
}

fn small_tree(src: &Path) {
    fs::create_dir_all(src).unwrap();
    fs::write(src.join("f"), b"small").unwrap();
}

/// Every command line of a running `smbclient` seen while it runs, read from /proc (the
/// argv any user on the machine can read).
struct ArgvWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl ArgvWatch {
    fn start() -> ArgvWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                for entry in fs::read_dir("/proc").unwrap().flatten() {
                    let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
                        continue;
                    };
                    let argv = String::from_utf8_lossy(&raw).replace('\0', " ");
                    if argv.contains("smbclient") && !seen.contains(&argv) {
                        seen.push(argv);
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            seen
        });
        ArgvWatch { stop, thread }
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn files_named(dir: &Path, suffix: &str) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|f| f.ends_with(suffix))
        .collect()
}

#[test]
fn samba_stores_artifacts_that_decrypt_with_gpg_and_never_shows_the_password() {
    let smbd = Smbd::start(PASSWORD);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    // Incompressible and large enough for the upload to be watched while it runs.
    fs::write(src.join("big.bin"), incompressible(24 << 20, 7)).unwrap();
    let local = work.path().join("local");
    fs::create_dir_all(&local).unwrap();
    let job = job(
        work.path(),
        &src,
        vec![
            dest(&smbd, "smb", PASSWORD),
            json!({"id": "disk", "type": "local", "path": local}),
        ],
    );

    let watch = ArgvWatch::start();
    let r = run(backups()
        .env("BACKUPS_LOG", "warn,backups=debug")
        .args(["run", "--json"])
        .arg(&job));
    let argvs = watch.finish();
    assert_eq!(r.code, 0);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(destination_outcome(&report, "smb")["ok"], true, "{report}");

    // The password is in no argv, no log line and no report; smbclient got it from a file.
    assert!(
        argvs.iter().any(|a| a.contains(" -A ")),
        "smbclient was seen running: {argvs:?}"
    );
    for argv in &argvs {
        assert!(!argv.contains(PASSWORD), "password in an argv: {argv}");
    }
    assert!(
        !r.all().contains(PASSWORD),
        "the password leaked into the output"
    );
    // The debug log shows every smbclient command: the credentials file, never a password.
    let command = format!("smbclient //127.0.0.1/{SHARE} -p {} -A /", smbd.server.port);
    assert!(r.stderr.contains(&command), "{}", r.stderr);

    // Read back from the share's directory on disk and decrypted with stock gpg.
    let objects = objects_dir(&smbd);
    let stored = files_under(&objects);
    assert_eq!(stored.len(), 2, "artifact and manifest: {stored:?}");
    assert!(
        stored
            .iter()
            .any(|f| f.starts_with("h/") && f.ends_with("/files.tar.gz.gpg")),
        "{stored:?}"
    );
    let tgz = decrypt_artifact(&objects, "files", "tar", PASSPHRASE);
    let restore = work.path().join("restore");
    untar_gz(&tgz, &restore);
    assert_eq!(
        snapshot(&src),
        snapshot(&restore.join(src.strip_prefix("/").unwrap()))
    );
    assert_eq!(
        fs::read(&artifacts(&objects)[0]).unwrap(),
        fs::read(&artifacts(&local)[0]).unwrap(),
        "the same artifact at both destinations"
    );
    assert!(files_named(&smbd.share_dir(), ".partial").is_empty());

    // verify reads every copy back through the plugin (list + get) and checks its digest.
    assert_verifies(&job, 2);
}

#[test]
fn retention_deletes_the_oldest_copies_on_the_share_and_keeps_the_newest() {
    let smbd = Smbd::start(PASSWORD);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    small_tree(&src);
    let mut dest = dest(&smbd, "smb", PASSWORD);
    dest["retention_copies"] = json!(2);
    let job = job(work.path(), &src, vec![dest]);
    for day in 1..=4 {
        let now = format!("2026-03-0{day}T02:00:00Z");
        let r = run(backups()
            .env("BACKUPS_NOW", now)
            .args(["run", "--json"])
            .arg(&job));
        assert_eq!(r.code, 0);
        let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let smb = destination_outcome(&report, "smb");
        assert_eq!(smb["retained"], json!(day.min(2)), "{smb}");
    }
    let stored = files_under(&objects_dir(&smbd));
    assert_eq!(
        stored,
        [
            "h/2026-03-03/020000Z/files.tar.gz.gpg",
            "h/2026-03-03/020000Z/files.tar.gz.gpg.manifest.json",
            "h/2026-03-04/020000Z/files.tar.gz.gpg",
            "h/2026-03-04/020000Z/files.tar.gz.gpg.manifest.json",
        ],
        "the two newest copies stay"
    );
    // Deleting the last files of a day removed that day's directories too.
    assert!(!objects_dir(&smbd).join("h/2026-03-01").exists());
    let r = run(backups().arg("list").arg(&job));
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("2026-03-04") && !r.stdout.contains("2026-03-01"),
        "{}",
        r.stdout
    );
}

/// Backs up a small tree to the samba destination `smb` and to a local directory,
/// expecting samba to fail: the run reports the failure and the local copy is made all
/// the same. Returns the run and samba's outcome.
fn run_with_failing_samba(smb: serde_json::Value) -> (Run, serde_json::Value) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    small_tree(&src);
    let local = work.path().join("local");
    fs::create_dir_all(&local).unwrap();
    let job = job(
        work.path(),
        &src,
        vec![smb, json!({"id": "disk", "type": "local", "path": local})],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 1, "the run reports the failure");
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let disk = destination_outcome(&report, "disk");
    assert_eq!(disk["ok"], true, "local is unaffected: {disk}");
    let smb = destination_outcome(&report, "smb");
    assert_eq!(smb["ok"], false, "{smb}");
    (r, smb)
}

#[test]
fn a_wrong_password_fails_samba_as_auth_while_local_succeeds() {
    let smbd = Smbd::start(PASSWORD);
    let wrong = "not the password";
    let (r, smb) = run_with_failing_samba(dest(&smbd, "smb", wrong));
    assert!(!r.all().contains(wrong) && !r.all().contains(PASSWORD));
    let error = smb["error"].as_str().unwrap();
    assert!(
        error.contains("NT_STATUS_LOGON_FAILURE") && error.contains("(auth)"),
        "{smb}"
    );
    assert!(
        !r.stderr.contains("retrying"),
        "auth failures are not retried"
    );
    assert!(
        files_under(&smbd.share_dir()).is_empty(),
        "nothing was written"
    );
}

#[test]
fn a_server_that_is_not_running_is_a_clear_transient_failure() {
    let (r, smb) = run_with_failing_samba(dest_at(free_port(), "nobody", "smb", PASSWORD));
    let error = smb["error"].as_str().unwrap();
    assert!(
        error.contains("NT_STATUS_CONNECTION_REFUSED") && error.contains("(transient)"),
        "{smb}"
    );
    assert!(
        r.stderr.contains("retrying in 2s"),
        "transient errors are retried: {}",
        r.stderr
    );
    assert!(!r.all().contains(PASSWORD));
}

#[test]
fn a_failed_upload_leaves_no_partial_file_and_nothing_under_the_real_name() {
    let smbd = Smbd::start(PASSWORD);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    small_tree(&src);
    // The upload itself succeeds, then renaming it into place fails: a directory holds
    // the artifact's name (a file cannot replace it).
    let run_dir = objects_dir(&smbd).join("h/2026-03-01/020000Z");
    fs::create_dir_all(run_dir.join("files.tar.gz.gpg")).unwrap();
    let job = job(work.path(), &src, vec![dest(&smbd, "smb", PASSWORD)]);
    let r = run(backups()
        .env("BACKUPS_NOW", "2026-03-01T02:00:00Z")
        .args(["run", "--json"])
        .arg(&job));
    assert_eq!(r.code, 1);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let smb = destination_outcome(&report, "smb");
    assert_eq!(smb["ok"], false);
    assert!(
        smb["error"]
            .as_str()
            .unwrap()
            .contains("uploading h/2026-03-01/020000Z/files.tar.gz.gpg"),
        "{smb}"
    );
    assert!(
        files_named(&smbd.share_dir(), ".partial").is_empty(),
        "the partial upload was removed: {:?}",
        files_under(&smbd.share_dir())
    );
    assert!(
        run_dir.join("files.tar.gz.gpg").is_dir(),
        "nothing replaced it"
    );
    assert!(
        !run_dir.join("files.tar.gz.gpg.manifest.json").exists(),
        "no manifest for an artifact that was not stored"
    );
}

#[test]
fn a_killed_upload_leaves_no_partial_file_on_the_share_after_a_later_run() {
    let smbd = Smbd::start(PASSWORD);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big.bin"), incompressible(96 << 20, 5)).unwrap();
    let objects = objects_dir(&smbd);
    // Another tool's half-written files in the same folder, and one beside ours that is
    // not in our layout: never touched.
    for f in ["other/data.partial", "h/notes.txt.partial"] {
        fs::create_dir_all(objects.join(f).parent().unwrap()).unwrap();
        fs::write(objects.join(f), f).unwrap();
    }
    let job = job(work.path(), &src, vec![dest(&smbd, "smb", PASSWORD)]);
    let ours = || -> Vec<String> {
        files_under(&objects)
            .into_iter()
            .filter(|f| f.starts_with("h/20") && f.ends_with(".partial"))
            .collect()
    };

    assert!(
        kill_run_when(&job, &[], || !ours().is_empty()),
        "the run ended before its upload could be killed"
    );
    // smbclient outlives the host for a moment (its stdin closes): wait for it to let go.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(ours().len(), 1, "{:?}", files_under(&objects));

    let r = run(backups()
        .env("BACKUPS_NOW", days_from_now(2))
        .args(["run", "--json"])
        .arg(&job));
    assert_eq!(r.code, 0);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        report["leftovers"][0]["removed"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    assert_eq!(ours(), Vec::<String>::new());
    for f in ["other/data.partial", "h/notes.txt.partial"] {
        assert_eq!(
            fs::read_to_string(objects.join(f)).unwrap(),
            f,
            "{f} untouched"
        );
    }
    assert_verifies(&job, 1);
}
