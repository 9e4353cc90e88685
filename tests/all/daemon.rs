//! `backups daemon`: runs on schedule, catches up a missed run at start-up, never
//! overlaps a job with itself; and `backups run` refuses to start while a run holds the
//! lock.

use crate::support;

use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(job: &Path, log: PathBuf) -> Daemon {
        let out = fs::File::create(&log).unwrap();
        let child = backups()
            .arg("daemon")
            .arg(job)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        Daemon { child, log }
    }
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// Stops it the way systemd would (SIGTERM), by the pid we recorded.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn job(work: &Path, schedule: Option<&str>) -> PathBuf {
    let (src, dest) = (work.join("src"), work.join("dest"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&dest).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    let mut j = json!({
        "job": "nightly",
        "hostname": "h",
        "tmpdir": work.join("tmp"),
        "state_dir": work.join("state"),
        "sources": [{"id": "f", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
        "destinations": [{"id": "disk", "type": "local", "path": dest}]
    });
    if let Some(s) = schedule {
        j["schedule"] = json!(s);
    }
    write_job(work, &j)
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn runs_on_schedule_and_records_each_run() {
    let work = tempfile::tempdir().unwrap();
    // Every two seconds (six fields: seconds first).
    let job = job(work.path(), Some("*/2 * * * * *"));
    let daemon = Daemon::start(&job, work.path().join("daemon.log"));
    let dest = work.path().join("dest");
    wait_for("two scheduled runs", Duration::from_secs(30), || {
        artifacts(&dest).len() >= 2
    });
    let log = daemon.stop();
    assert!(
        log.contains("every source reached every destination"),
        "{log}"
    );
    let last: jiff::Timestamp = fs::read_to_string(work.path().join("state/nightly.last-run"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(jiff::Timestamp::now().duration_since(last) < jiff::SignedDuration::from_secs(30));
}

#[test]
fn a_run_missed_while_down_runs_once_at_start_up() {
    let work = tempfile::tempdir().unwrap();
    // Yearly, at New Year; the last run served was two years ago.
    let job = job(work.path(), Some("0 0 1 1 *"));
    fs::create_dir_all(work.path().join("state")).unwrap();
    let two_years_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 730);
    fs::write(
        work.path().join("state/nightly.last-run"),
        two_years_ago.to_string(),
    )
    .unwrap();
    let daemon = Daemon::start(&job, work.path().join("daemon.log"));
    let dest = work.path().join("dest");
    wait_for("the catch-up run", Duration::from_secs(30), || {
        !artifacts(&dest).is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    let log = daemon.stop();
    assert!(log.contains("missed the run scheduled at"), "{log}");
    assert_eq!(
        artifacts(&dest).len(),
        1,
        "two missed New Years are one catch-up run"
    );
}

#[test]
fn a_job_without_a_schedule_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let job = job(work.path(), None);
    let r = run(backups().arg("daemon").arg(&job));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no \"schedule\""), "{}", r.stderr);
}

#[test]
fn a_second_run_of_the_same_job_does_not_start_while_one_is_running() {
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    fs::create_dir_all(&dest).unwrap();
    let job = write_job(
        work.path(),
        &json!({
            "job": "slow",
            "hostname": "h",
            "tmpdir": work.path().join("tmp"),
            "sources": [{"id": "spin", "type": "hostile", "plugin": fixture("backups_test_fixtures.wasm"),
                         "mode": "spin", "passphrase": "pw-pw-pw", "limits": {"call_seconds": 4}}],
            "destinations": [{"id": "disk", "type": "local", "path": dest}]
        }),
    );
    let mut first = backups()
        .arg("run")
        .arg(&job)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "the first run to take the lock",
        Duration::from_secs(10),
        || fs::read_to_string(work.path().join("tmp/.lock-slow")).is_ok_and(|s| !s.is_empty()),
    );
    let second = run(backups().arg("run").arg(&job));
    assert_eq!(second.code, 2);
    assert!(
        second
            .stderr
            .contains("another run of job \"slow\" is in progress"),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains(&format!("pid {}", first.id())),
        "{}",
        second.stderr
    );
    first.wait().unwrap();
    // Released when the first run ended: the next one starts (and fails on the spinning
    // plugin, which is beside the point).
    let third = run(backups().arg("run").arg(&job));
    assert_eq!(third.code, 1);
}
