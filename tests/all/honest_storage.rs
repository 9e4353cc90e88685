//! "Stored" means seen stored, and retention believes only what it can confirm. A
//! destination written to lie (tests/fixture-destination, switched by marker files) says
//! ok to puts it did not keep, and lists copies that do not exist or are dated next year;
//! the run must say so, fail, and lose nothing.

use crate::support;

use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use support::*;

fn liar(id: &str, dir: &Path, lie: Option<&str>) -> serde_json::Value {
    fs::create_dir_all(dir).unwrap();
    if let Some(lie) = lie {
        fs::write(dir.join(lie), "").unwrap();
    }
    json!({
        "id": id,
        "type": "flaky",
        "plugin": fixture("backups_test_flaky_destination.wasm"),
        "path": dir,
        "grants": {"write": [dir]}
    })
}

fn job(work: &Path, destinations: Vec<serde_json::Value>, extra: serde_json::Value) -> PathBuf {
    let src = work.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("data.txt"), "the data that must be stored").unwrap();
    let mut job = json!({
        "hostname": "h",
        "tmpdir": work.join("tmp"),
        "sources": [{"id": "good", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
        "destinations": destinations,
    });
    for (k, v) in extra.as_object().unwrap() {
        job["destinations"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .for_each(|d| d[k] = v.clone());
    }
    write_job(work, &job)
}

fn run_json(job: &Path) -> (Run, serde_json::Value) {
    let r = run(backups().arg("run").arg("--json").arg(job));
    let report = serde_json::from_str(&r.stdout).expect("--json prints the report");
    (r, report)
}

#[test]
fn a_destination_whose_put_lies_is_a_failed_copy_and_gets_no_manifest() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let honest = w.join("honest");
    fs::create_dir_all(&honest).unwrap();
    let job = job(
        w,
        vec![
            json!({"id": "honest", "type": "local", "path": honest}),
            liar("nothing", &w.join("nothing"), Some(".lie-store-nothing")),
            liar("unread", &w.join("unread"), Some(".lie-unread")),
            liar("half", &w.join("half"), Some(".lie-half")),
            liar("nolist", &w.join("nolist"), Some(".fail-list")),
        ],
        json!({}),
    );
    let (r, report) = run_json(&job);
    assert_eq!(r.code, 1, "a copy not seen stored fails the run");
    assert_eq!(destination_outcome(&report, "honest")["ok"], true);
    let expect = [
        ("nothing", "does not list"),
        ("unread", "does not list"),
        ("half", "bytes, not the"),
        ("nolist", "could not be confirmed"),
    ];
    for (id, why) in expect {
        let outcome = destination_outcome(&report, id);
        assert_eq!(outcome["ok"], false, "{id}: {outcome}");
        let error = outcome["error"].as_str().unwrap();
        assert!(error.contains(why), "{id}: {error}");
        // Never a manifest vouching for bytes that are not there.
        let manifests: Vec<String> = files_under(&w.join(id))
            .into_iter()
            .filter(|f| f.ends_with(".manifest.json"))
            .collect();
        assert!(manifests.is_empty(), "{id}: {manifests:?}");
    }
    // Three attempts each, as for a transient error.
    assert!(
        r.stderr.matches("half\": put").count() >= 2 || r.stderr.contains("retrying in"),
        "{}",
        r.stderr
    );
    // The honest copy is whole: stock gpg decrypts it, GNU tar lists the file.
    let tgz = decrypt_artifact(&honest, "good", "tar", "pw-pw-pw");
    let into = w.join("restored");
    untar_gz(&tgz, &into);
    let data = files_under(&into)
        .into_iter()
        .find(|f| f.ends_with("src/data.txt"))
        .expect("data.txt restored");
    assert_eq!(
        fs::read_to_string(into.join(data)).unwrap(),
        "the data that must be stored"
    );
    // `status` agrees: the liars hold no copy.
    let s = run(backups().arg("status").arg(&job));
    assert_eq!(s.code, 1, "{}", s.stdout);
}

#[test]
fn copies_dated_in_the_future_never_make_retention_delete_this_runs_copy() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let dir = w.join("future");
    let job = job(
        w,
        vec![liar("future", &dir, Some(".lie-future"))],
        json!({"retention_copies": 1, "min_copies": 1}),
    );
    let (r, report) = run_json(&job);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let outcome = destination_outcome(&report, "future");
    assert_eq!(outcome["ok"], true, "{outcome}");
    assert_eq!(outcome["deleted"], json!([]), "{outcome}");
    assert!(r.stderr.contains("dated after now"), "{}", r.stderr);
    let object = outcome["object"].as_str().unwrap();
    assert!(dir.join(object).exists(), "this run's copy is still there");
    assert!(!dir.join(".deleted").exists(), "nothing was deleted");
    // And status is not fooled into FRESH by next year's copy, nor into MISSING.
    let s = run(backups().arg("status").arg(&job));
    assert_eq!(s.code, 0, "{}", s.stdout);
}

#[test]
fn made_up_copies_do_not_count_towards_min_copies() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let dir = w.join("phantoms");
    let job = job(
        w,
        vec![liar("phantoms", &dir, None)],
        json!({"retention_copies": 1, "min_copies": 3}),
    );
    // One real run, then its copy cloned to 1, 2 and 3 days ago with matching manifests.
    let (r, report) = run_json(&job);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = destination_outcome(&report, "phantoms")["object"]
        .as_str()
        .unwrap()
        .to_string();
    let now = std::time::SystemTime::now();
    let mut older = Vec::new();
    for days in 1..=3u64 {
        let then =
            jiff::Timestamp::try_from(now - std::time::Duration::from_secs(days * 86_400)).unwrap();
        let utc = then.to_zoned(jiff::tz::TimeZone::UTC);
        let key = format!(
            "h/{}/{}Z/good.tar.gz.gpg",
            utc.strftime("%Y-%m-%d"),
            utc.strftime("%H%M%S")
        );
        fs::create_dir_all(dir.join(&key).parent().unwrap()).unwrap();
        fs::copy(dir.join(&first), dir.join(&key)).unwrap();
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join(format!("{first}.manifest.json"))).unwrap())
                .unwrap();
        manifest["object"] = json!(key);
        manifest["created"] = json!(then.to_string());
        fs::write(
            dir.join(format!("{key}.manifest.json")),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        older.push(key);
    }
    fs::remove_file(dir.join(&first)).unwrap();
    fs::remove_file(dir.join(format!("{first}.manifest.json"))).unwrap();
    // Now the destination lists a copy from an hour ago that was never stored.
    let hour_ago = jiff::Timestamp::try_from(now - std::time::Duration::from_secs(3600))
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC);
    fs::write(
        dir.join(".lie-phantoms"),
        format!(
            "{}/{}Z",
            hour_ago.strftime("%Y-%m-%d"),
            hour_ago.strftime("%H%M%S")
        ),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (r, report) = run_json(&job);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let outcome = destination_outcome(&report, "phantoms");
    // The floor of three is this run's copy and the two newest real ones, not the phantom.
    for key in &older[..2] {
        assert!(dir.join(key).exists(), "{key} kept: {outcome}");
    }
    assert!(!dir.join(&older[2]).exists(), "the oldest goes: {outcome}");
    assert!(
        r.stderr.contains("does not count towards min_copies")
            || r.stderr.contains("not counted towards min_copies"),
        "{}",
        r.stderr
    );
}

/// Member names of an archive (`tar -t`), without `./` and trailing `/`, sorted.
fn members(tar: &[u8]) -> Vec<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("tar")
        .args(["-tf", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(tar).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "tar -t failed");
    let mut names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .collect();
    names.sort();
    names
}

/// What GNU tar archives as the legacy tool ran it: `cd parent; tar -cf - ./base --exclude …`.
fn gnu_tar(parent: &Path, base: &str, excludes: &[&str]) -> Vec<String> {
    let mut cmd = std::process::Command::new("tar");
    // Options first: GNU tar ≥ 1.30 ignores an --exclude that follows the operands.
    cmd.current_dir(parent).args(["-cf", "-"]);
    for e in excludes {
        cmd.args(["--exclude", e]);
    }
    cmd.arg(format!("./{base}"));
    let out = cmd.output().unwrap();
    members(&out.stdout)
}

/// What the folder source archives of `parent/base` with `excludes`, named as GNU tar's.
fn ours(work: &Path, parent: &Path, base: &str, excludes: &[&str]) -> Result<Vec<String>, String> {
    let job = job_to_local_disk(
        work,
        vec![
            json!({"id": "tree", "type": "folder", "path": parent.join(base),
                    "excludes": excludes, "passphrase": "pw-pw-pw"}),
        ],
    );
    let (r, report) = run_json(&job);
    if r.code != 0 {
        return Err(report["sources"][0]["error"].to_string());
    }
    let tar = gunzip(&decrypt_artifact(
        &work.join("dest"),
        "tree",
        "tar",
        "pw-pw-pw",
    ));
    let prefix = format!("{}/", parent.display().to_string().trim_start_matches('/'));
    Ok(members(&tar)
        .into_iter()
        .map(|m| m.strip_prefix(&prefix).unwrap_or(&m).to_string())
        .collect())
}

#[test]
fn excludes_match_what_gnu_tar_excludes_and_one_matching_the_root_fails() {
    let work = tempfile::tempdir().unwrap();
    let parent = work.path().join("x/data");
    let base = parent.join("base");
    for dir in ["sub", "tmp", "logs/old"] {
        fs::create_dir_all(base.join(dir)).unwrap();
    }
    for file in [
        "f",
        "sub/g",
        "tmp/h",
        "a.log",
        "logs/old/b.log",
        "logs/keep.txt",
    ] {
        fs::write(base.join(file), file).unwrap();
    }
    for (i, excludes) in [
        vec!["data/*"],
        vec!["x/data/base/sub"],
        vec!["tmp", "*.log"],
        vec!["sub/g", "logs/old"],
        vec!["./tmp/", "base/logs/*"],
        vec!["tmp/", "./base/sub"],
    ]
    .iter()
    .enumerate()
    {
        let expected = gnu_tar(&parent, "base", excludes);
        let got = ours(
            &work.path().join(format!("run{i}")),
            &parent,
            "base",
            excludes,
        )
        .unwrap_or_else(|e| panic!("{excludes:?}: {e}"));
        assert_eq!(got, expected, "excludes {excludes:?}");
    }
    // A pattern that matches the source itself would leave an empty archive: a failure
    // that names the pattern, never an "ok" with nothing in it.
    let e = ours(&work.path().join("root"), &parent, "base", &["base"]).unwrap_err();
    assert!(e.contains("\\\"base\\\"") && e.contains("itself"), "{e}");
    assert!(
        gnu_tar(&parent, "base", &["base"]).is_empty(),
        "GNU tar archives nothing here"
    );
}

#[test]
fn a_destination_cannot_make_verify_hold_a_huge_manifest() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let dir = w.join("huge");
    let job = job(w, vec![liar("huge", &dir, None)], json!({}));
    let (r, _) = run_json(&job);
    assert_eq!(r.code, 0, "{}", r.stderr);
    fs::write(dir.join(".lie-huge-manifest"), "").unwrap();
    let started = std::time::Instant::now();
    let v = run(backups().arg("verify").arg(&job));
    assert_ne!(v.code, 0, "{}", v.all());
    assert!(v.all().contains("more than the 65536 bytes"), "{}", v.all());
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}
