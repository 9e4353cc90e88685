//! Promise 1, "never without a backup", replayed with simulated time (`BACKUPS_NOW`):
//! daily runs under a 14-day policy delete exactly what the policy says; then the backups
//! stop for 30 days — every copy stays, `status` fails and alerts through the notifiers;
//! when runs resume, retention never goes below the floor; and a destination whose listing
//! fails loses nothing.

use crate::support;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use support::*;

fn day(n: i64) -> Timestamp {
    let t0: Timestamp = "2026-01-01T02:00:00Z".parse().unwrap();
    t0 + SignedDuration::from_hours(24 * n)
}

/// Days (counted from day 0) of the copies stored under `dest`.
fn stored_days(dest: &Path) -> Vec<i64> {
    let mut days: Vec<i64> = artifacts(dest)
        .iter()
        .filter(|a| a.display().to_string().ends_with(".gpg"))
        .map(|a| {
            let rel = a.strip_prefix(dest).unwrap().display().to_string();
            let date = rel.split('/').nth(1).unwrap();
            let t: Timestamp = format!("{date}T02:00:00Z").parse().unwrap();
            t.duration_since(day(0)).as_hours() / 24
        })
        .collect();
    days.sort();
    days
}

struct Setup {
    work: tempfile::TempDir,
    job: PathBuf,
    dest: PathBuf,
    history: PathBuf,
}

fn setup(destination: serde_json::Value) -> Setup {
    let work = tempfile::tempdir().unwrap();
    let (src, dest, logs) = (
        work.path().join("src"),
        work.path().join("dest"),
        work.path().join("logs"),
    );
    for d in [&src, &dest, &logs] {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(src.join("data"), b"important").unwrap();
    let mut destination = destination;
    destination["path"] = json!(dest);
    let history = logs.join("history.jsonl");
    let job = write_job(
        work.path(),
        &json!({
            "hostname": "h",
            "tmpdir": work.path().join("tmp"),
            "schedule": "0 2 * * *",
            "sources": [{"id": "src", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
            "destinations": [destination],
            "notifications": [{"id": "history", "type": "jsonl", "plugin": example_notifier(),
                               "file": history, "grants": {"write": [logs]},
                               "notify_on_success": false}]
        }),
    );
    Setup {
        work,
        job,
        dest,
        history,
    }
}

fn run_on(s: &Setup, n: i64) -> Run {
    run(backups()
        .env("BACKUPS_NOW", day(n).to_string())
        .args(["run", "--json"])
        .arg(&s.job))
}

fn status_on(s: &Setup, n: i64, extra: &[&str]) -> Run {
    run(backups()
        .env("BACKUPS_NOW", day(n).to_string())
        .arg("status")
        .args(extra)
        .arg(&s.job))
}

#[test]
fn a_month_without_backups_loses_nothing_and_raises_the_alarm() {
    let s = setup(json!({"id": "disk", "type": "local", "retention_days": 14}));

    // Twenty-one daily runs: copies younger than 14 days are kept, older ones deleted.
    for n in 0..=20 {
        assert_eq!(run_on(&s, n).code, 0, "run on day {n}");
        let expected: Vec<i64> = ((n - 13).max(0)..=n).collect();
        assert_eq!(stored_days(&s.dest), expected, "after the run on day {n}");
        assert_eq!(status_on(&s, n, &[]).code, 0, "fresh on day {n}");
    }

    // The crontab vanishes: no runs for 30 days. Nothing deletes anything...
    let prom = s.work.path().join("backups.prom");
    let r = status_on(
        &s,
        50,
        &["--notify", "--prometheus", prom.to_str().unwrap()],
    );
    assert_eq!(
        stored_days(&s.dest),
        (7..=20).collect::<Vec<_>>(),
        "every copy kept"
    );
    // ...and the dead-man's switch fires: non-zero, STALE, an alert, metrics.
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("STALE"), "{}", r.stdout);
    assert!(
        r.stderr.contains("more than the 1d 12h allowed"),
        "{}",
        r.stderr
    );
    let lines: Vec<serde_json::Value> = fs::read_to_string(&s.history)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let alert = lines.last().expect("an alert was sent");
    assert_eq!(alert["kind"], "stale");
    assert_eq!(alert["overdue"][0]["source"], "src");
    assert_eq!(alert["overdue"][0]["destination"], "disk");
    let metrics = fs::read_to_string(&prom).unwrap();
    let last = day(20).as_second();
    assert!(
        metrics.contains(&format!(
            "backups_last_success_timestamp_seconds{{job=\"job\",hostname=\"h\",source=\"src\",destination=\"disk\"}} {last}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(
        "backups_stale{job=\"job\",hostname=\"h\",source=\"src\",destination=\"disk\"} 1"
    ));

    // Runs resume: every old copy is past 14 days, yet the floor keeps three.
    assert_eq!(run_on(&s, 50).code, 0);
    assert_eq!(stored_days(&s.dest), [19, 20, 50]);
    assert_eq!(status_on(&s, 50, &[]).code, 0);
}

#[test]
fn a_destination_that_cannot_be_listed_loses_nothing() {
    let s = setup(
        json!({"id": "flaky", "type": "flaky", "retention_copies": 1,
                             "plugin": fixture("backups_test_flaky_destination.wasm"),
                             "grants": {"write": ["PLACEHOLDER"]}}),
    );
    // The fixture is third-party: grant it its directory.
    let text = fs::read_to_string(&s.job)
        .unwrap()
        .replace("PLACEHOLDER", s.dest.to_str().unwrap());
    fs::write(&s.job, text).unwrap();

    for n in 0..3 {
        assert_eq!(run_on(&s, n).code, 0);
    }
    assert_eq!(stored_days(&s.dest), [2], "retention_copies 1");

    fs::write(s.dest.join(".fail-list"), b"").unwrap();
    let r = run_on(&s, 3);
    // "Stored" means seen stored: a copy the destination cannot list is not confirmed,
    // so it does not count, and it gets no manifest.
    assert_eq!(
        r.code, 1,
        "a copy that cannot be confirmed is a failed copy"
    );
    assert!(
        r.stderr.contains("could not be confirmed: listing"),
        "{}",
        r.stderr
    );
    assert_eq!(
        stored_days(&s.dest),
        [2],
        "nothing deleted without a listing; the unconfirmed copy itself is removed"
    );
    let day3 = day(3).strftime("%Y-%m-%d").to_string();
    assert!(
        !files_under(&s.dest)
            .iter()
            .any(|f| f.contains(&day3) && f.ends_with(".manifest.json")),
        "no manifest vouches for the unconfirmed copy"
    );
    let r = status_on(&s, 3, &[]);
    assert_eq!(r.code, 1, "an unreachable destination is not fresh");
    assert!(r.stdout.contains("UNREACHABLE"), "{}", r.stdout);

    fs::remove_file(s.dest.join(".fail-list")).unwrap();
    assert_eq!(run_on(&s, 4).code, 0);
    assert_eq!(stored_days(&s.dest), [4]);

    // The destination's own 14-day expiry rule, as in the incident: status says so.
    fs::write(s.dest.join(".rule-days"), "14").unwrap();
    let r = status_on(&s, 4, &[]);
    assert_eq!(r.code, 0, "fresh, and the rule outlives the schedule");
    assert!(
        r.stderr.contains("its rule \"expire-old-backups\" deletes objects under \"\" after 14 days: if backups stop for 14 days, every copy there is gone"),
        "{}",
        r.stderr
    );
    // A rule shorter than the time between backups loses copies for sure: status fails.
    fs::write(s.dest.join(".rule-days"), "1").unwrap();
    let r = status_on(&s, 4, &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("before the next backup is even due"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_listing_full_of_garbage_is_never_acted_on() {
    let s = setup(
        json!({"id": "flaky", "type": "flaky", "retention_copies": 1, "min_copies": 1,
               "plugin": fixture("backups_test_flaky_destination.wasm"),
               "grants": {"write": ["PLACEHOLDER"]}}),
    );
    let text = fs::read_to_string(&s.job)
        .unwrap()
        .replace("PLACEHOLDER", s.dest.to_str().unwrap());
    fs::write(&s.job, text).unwrap();
    // What an escaping delete would hit.
    let outside = s.work.path().join("outside");
    fs::write(&outside, b"not a backup").unwrap();
    fs::write(s.dest.join(".garbage-list"), b"").unwrap();

    for n in 0..3 {
        let r = run_on(&s, n);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    // Retention still works on the real copies, and only on them.
    assert_eq!(stored_days(&s.dest), [2]);
    assert!(outside.exists());
    let deleted = fs::read_to_string(s.dest.join(".deleted")).unwrap_or_default();
    for key in deleted.lines() {
        assert!(
            key.starts_with("h/2026-01-0") && !key.contains("..") && !key.contains('\n'),
            "the host deleted a key it made up from garbage: {key:?}\n{deleted}"
        );
    }
    assert!(
        !deleted.contains("1999-01-01"),
        "look-alikes without a manifest are not copies"
    );
}

/// A destination that calls its stored copies leftovers (as a confused or hostile plugin
/// would) is never asked to remove them: the host removes only what is named like this
/// job's objects, old enough, and not listed as stored.
#[test]
fn a_plugin_that_calls_its_copies_leftovers_is_never_asked_to_remove_them() {
    let s = setup(json!({"id": "flaky", "type": "flaky",
               "plugin": fixture("backups_test_flaky_destination.wasm"),
               "grants": {"write": ["PLACEHOLDER"]}}));
    let text = fs::read_to_string(&s.job)
        .unwrap()
        .replace("PLACEHOLDER", s.dest.to_str().unwrap());
    fs::write(&s.job, text).unwrap();
    assert_eq!(run_on(&s, 0).code, 0);
    fs::write(s.dest.join(".lie-leftovers"), b"").unwrap();
    let r = run_on(&s, 1);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let sweep = &report["leftovers"][0];
    assert_eq!(
        sweep["removed"],
        json!(["h/2026-01-01/000000Z/made-up.tar.gz.gpg"]),
        "{sweep}"
    );
    assert_eq!(
        sweep["found_bytes"], 7,
        "stored objects are not counted: {sweep}"
    );
    let deleted = fs::read_to_string(s.dest.join(".deleted")).unwrap_or_default();
    assert_eq!(
        deleted.lines().collect::<Vec<_>>(),
        ["h/2026-01-01/000000Z/made-up.tar.gz.gpg"]
    );
    assert_eq!(stored_days(&s.dest), [0, 1], "both copies are still there");
}
