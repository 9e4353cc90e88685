//! The host's `process` interface: a granted command's stdout is spliced into the
//! artifact; a command that fails fails the source and nothing is uploaded; private
//! credential files are 0600 and removed afterwards.

use crate::support;

use serde_json::json;
use std::fs;
use std::path::Path;
use support::*;

fn source(mode: &str, run: &[&str]) -> serde_json::Value {
    json!({
        "id": mode,
        "type": "hostile",
        "plugin": fixture("backups_test_fixtures.wasm"),
        "mode": mode,
        "passphrase": "pw-pw-pw",
        "grants": {"run": run}
    })
}

fn decrypted(work: &Path, id: &str) -> String {
    String::from_utf8(gunzip(&decrypt_artifact(
        &work.join("dest"),
        id,
        "txt",
        "pw-pw-pw",
    )))
    .unwrap()
}

#[test]
fn a_granted_commands_stdout_is_spliced_after_what_the_plugin_wrote() {
    let work = tempfile::tempdir().unwrap();
    let job = job_to_local_disk(
        work.path(),
        vec![
            source("stream", &["echo"]),
            source("private-file", &["cat"]),
        ],
    );
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0);
    assert_eq!(
        decrypted(work.path(), "stream"),
        "written by the plugin\nspliced from echo\n"
    );
    assert_eq!(
        decrypted(work.path(), "private-file"),
        "user=backup\npassword=hunter22\n"
    );
    assert_eq!(
        leftovers(&work.path().join("tmp")),
        Vec::<String>::new(),
        "private file removed"
    );
}

#[test]
fn a_command_that_exits_non_zero_fails_the_source_and_nothing_is_uploaded() {
    let work = tempfile::tempdir().unwrap();
    let job = job_to_local_disk(work.path(), vec![source("stream-fails", &["sh"])]);
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("exited with status 3"), "{}", r.stderr);
    assert!(
        r.stderr.contains("oops"),
        "stderr is reported: {}",
        r.stderr
    );
    assert!(
        artifacts(&work.path().join("dest")).is_empty(),
        "a failed dump is never uploaded"
    );
}

#[test]
fn an_ungranted_command_is_denied_and_logged() {
    let work = tempfile::tempdir().unwrap();
    let job = job_to_local_disk(work.path(), vec![source("stream", &["cat"])]);
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("denied: echo is not in the run grant"),
        "{}",
        r.stderr
    );
    assert!(artifacts(&work.path().join("dest")).is_empty());
}

/// True while a process whose command line contains `needle` exists.
#[test]
fn sigterm_stops_the_command_lets_the_plugin_clean_up_and_fails_the_run() {
    let work = tempfile::tempdir().unwrap();
    let job = job_to_local_disk(
        work.path(),
        vec![
            source("stream-interrupted", &["sh"]),
            source("stream", &["echo"]),
        ],
    );
    let child = backups()
        .arg("run")
        .arg(&job)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !running("sleep 986") {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!running("sleep 986"), "the command outlived the run");
    // The plugin saw its command stopped and cleaned up before it returned.
    assert!(
        stderr.contains("cleaning up after: sh was stopped: the run was interrupted"),
        "{stderr}"
    );
    // The source after it never started, and nothing was uploaded.
    assert!(
        stderr.contains("not started: the run was interrupted"),
        "{stderr}"
    );
    assert!(artifacts(&work.path().join("dest")).is_empty());
}

fn running(needle: &str) -> bool {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            fs::read(e.path().join("cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
}

#[test]
fn a_command_that_hangs_is_killed_with_everything_it_started() {
    let work = tempfile::tempdir().unwrap();
    let mut hangs = source("stream-hangs", &["sh"]);
    hangs["limits"] = json!({"call_seconds": 2});
    let job = job_to_local_disk(work.path(), vec![hangs]);
    let started = std::time::Instant::now();
    let r = run(backups().arg("run").arg(&job));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("did not finish within 2s"),
        "{}",
        r.stderr
    );
    assert!(artifacts(&work.path().join("dest")).is_empty());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !running("sleep 987"),
        "the command's child outlived the run"
    );
}
