//! Incremental folder backups (`"incremental": {"full_every": …}`): GNU tar's
//! `--listed-incremental` format, restored both by `backups restore --extract` and by
//! stock `gpg -d | tar -xzG`, over runs that create, change, delete and rename.

use crate::support;

use serde_json::json;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const PASSPHRASE: &str = "incremental-pw";

fn job(
    work: &Path,
    src: &Path,
    incremental: serde_json::Value,
    dest: serde_json::Value,
) -> PathBuf {
    fs::create_dir_all(work.join("dest")).unwrap();
    let mut destination = json!({"id": "disk", "type": "local", "path": work.join("dest")});
    for (k, v) in dest.as_object().unwrap() {
        destination[k] = v.clone();
    }
    write_job(
        work,
        &json!({"hostname": "h", "tmpdir": work.join("tmp"), "state_dir": work.join("state"),
                "sources": [{"id": "files", "type": "folder", "path": src,
                             "passphrase": PASSPHRASE, "incremental": incremental}],
                "destinations": [destination]}),
    )
}

/// The archives stored under a local destination: its artifacts but the indexes of fulls
/// stored beside them (`{id}.index.gz.gpg`).
pub fn archives(dest: &Path) -> Vec<PathBuf> {
    artifacts(dest)
        .into_iter()
        .filter(|a| !file_name(a).contains(".index."))
        .collect()
}

/// One run, a second after the last (object names are per second); the run's artifact.
fn run_once(job: &Path, dest: &Path) -> PathBuf {
    let before: Vec<PathBuf> = archives(dest);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = run(backups().arg("run").arg(job));
    assert_eq!(r.code, 0, "{}", r.all());
    let mut new: Vec<PathBuf> = archives(dest)
        .into_iter()
        .filter(|a| !before.contains(a))
        .collect();
    assert_eq!(new.len(), 1, "one artifact a run: {new:?}");
    new.pop().unwrap()
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// `gpg -d ARTIFACT | tar -xzG -C INTO`, with the stock tools.
fn gnu_extract(gpg: &Gpg, artifact: &Path, into: &Path) {
    let tgz = gpg.decrypt(artifact, Some(PASSPHRASE));
    let mut tar = Command::new("tar")
        .args(["-xz", "--listed-incremental=/dev/null", "-C"])
        .arg(into)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("GNU tar is installed");
    use std::io::Write;
    tar.stdin.take().unwrap().write_all(&tgz).unwrap();
    let out = tar.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "tar -xzG of {}: {}",
        artifact.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `backups restore --source files WHICH… --extract INTO`, which must succeed.
fn extract(job: &Path, which: &[&str], into: &Path) {
    let r = run(backups()
        .args(["restore", "--source", "files"])
        .args(which)
        .arg("--extract")
        .arg(into)
        .arg(job));
    assert_eq!(r.code, 0, "{}", r.all());
}

fn restored(into: &Path, src: &Path) -> Vec<(String, String)> {
    snapshot(&into.join(src.strip_prefix("/").unwrap()))
}

#[test]
fn five_runs_of_changes_restore_exactly_with_backups_and_with_gpg_and_tar() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let dest = work.path().join("dest");
    make_tree(&src);
    let job = job(work.path(), &src, json!({"full_every": "7d"}), json!({}));
    let mut points: Vec<(PathBuf, Vec<(String, String)>)> = Vec::new();

    // 1: the full.
    let full = run_once(&job, &dest);
    assert_eq!(file_name(&full), "files.tar.gz.gpg");
    points.push((full.clone(), snapshot(&src)));

    // 2: a file changed (same size), one added with an odd name, one deleted, one renamed,
    // a mode changed.
    fs::write(src.join("plain.txt"), "HELLO, BACKUPS\n".repeat(1000)).unwrap();
    fs::write(src.join("new \u{e9}t\u{e9}\nline.txt"), b"new").unwrap();
    fs::remove_file(src.join("empty")).unwrap();
    fs::rename(src.join("nested/-leading-dash"), src.join("nested/renamed")).unwrap();
    fs::set_permissions(src.join("private"), fs::Permissions::from_mode(0o640)).unwrap();
    points.push((run_once(&job, &dest), snapshot(&src)));

    // 3: a directory renamed, an empty one added, a file replaced by a directory and a
    // directory by a file, a symlink retargeted.
    fs::rename(src.join("nested/deeper"), src.join("nested/moved")).unwrap();
    fs::create_dir_all(src.join("fresh/empty")).unwrap();
    fs::remove_file(src.join("script.sh")).unwrap();
    fs::create_dir_all(src.join("script.sh")).unwrap();
    fs::write(src.join("script.sh/inside"), b"now a directory").unwrap();
    fs::remove_dir_all(src.join("empty dir")).unwrap();
    fs::write(src.join("empty dir"), b"now a file").unwrap();
    fs::remove_file(src.join("link-inside")).unwrap();
    symlink("private", src.join("link-inside")).unwrap();
    points.push((run_once(&job, &dest), snapshot(&src)));

    // 4: nothing changed.
    points.push((run_once(&job, &dest), snapshot(&src)));

    // 5: a whole subtree deleted, a hard link added, a file grown.
    fs::remove_dir_all(src.join("nested/moved")).unwrap();
    fs::hard_link(src.join("private"), src.join("private-link")).unwrap();
    fs::write(src.join("plain.txt"), "grown\n".repeat(5000)).unwrap();
    points.push((run_once(&job, &dest), snapshot(&src)));

    let full_stamp = full
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy();
    let full_day = full
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace('-', "");
    let tag = format!("files.inc-{full_day}T{full_stamp}.tar.gz.gpg");
    let full_size = fs::metadata(&full).unwrap().len();
    for (increment, _) in &points[1..] {
        assert_eq!(file_name(increment), tag, "an increment names its full");
        // The 3 MiB of random bytes never changed: no increment carries them.
        let size = fs::metadata(increment).unwrap().len();
        assert!(size < full_size / 4, "{size} of a {full_size}-byte full");
    }

    // The newest point, with backups.
    let into = work.path().join("newest");
    extract(&job, &[], &into);
    assert_eq!(restored(&into, &src), points[4].1);

    // An older point (run 3), with backups.
    let older = &points[2].0;
    let object = older.strip_prefix(&dest).unwrap().display().to_string();
    let into = work.path().join("older");
    extract(&job, &["--artifact", &object], &into);
    assert_eq!(restored(&into, &src), points[2].1);

    // Run 2's point, by time (`--at`: the newest copy made at or before it).
    let folder = |p: &Path| {
        p.parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let (day, time) = (folder(points[1].0.parent().unwrap()), folder(&points[1].0));
    let at = format!("{day}T{}:{}:{}Z", &time[0..2], &time[2..4], &time[4..6]);
    let into = work.path().join("at");
    extract(&job, &["--at", &at], &into);
    assert_eq!(restored(&into, &src), points[1].1);

    // Every point, with nothing but gpg and GNU tar: the full, then the increment.
    let gpg = Gpg::new();
    for (i, (point, expected)) in points.iter().enumerate() {
        let into = work.path().join(format!("gnu-{i}"));
        fs::create_dir_all(&into).unwrap();
        gnu_extract(&gpg, &full, &into);
        if point != &full {
            gnu_extract(&gpg, point, &into);
        }
        assert_eq!(
            &restored(&into, &src),
            expected,
            "point {i} with gpg and tar -G"
        );
    }

    // list shows which full each increment needs; verify checks the newest point's pair.
    let r = run(backups().arg("list").arg(&job));
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout.matches("(an increment of h/").count(),
        4,
        "{}",
        r.stdout
    );
    let r = run(backups().arg("verify").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains("full h/") && r.stdout.contains("increment:"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_missing_full_or_lost_state_makes_a_full_never_an_orphan_increment() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let dest = work.path().join("dest");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();
    let job = job(work.path(), &src, json!({"full_every": 10}), json!({}));
    let first = run_once(&job, &dest);
    let second = run_once(&job, &dest);
    assert!(file_name(&second).starts_with("files.inc-"));
    // Nothing changed: no member, not even a dumpdir (the full's stand).
    let size = fs::metadata(&second).unwrap().len();
    assert!(size < 400, "an increment of nothing is {size} bytes");

    // The full vanished from the destination (a lifecycle rule, an operator): its
    // increment is no copy any more, and the next run is a full.
    fs::remove_file(&first).unwrap();
    let r = run(backups().arg("list").arg(&job));
    assert!(!r.stdout.contains("files.inc-"), "{}", r.stdout);
    let third = run_once(&job, &dest);
    assert_eq!(file_name(&third), "files.tar.gz.gpg");
    let fourth = run_once(&job, &dest);
    assert!(file_name(&fourth).starts_with("files.inc-"));

    // The host's state lost (a new machine): it continues from the index stored beside
    // the newest full.
    fs::remove_dir_all(work.path().join("state")).unwrap();
    let fifth = run_once(&job, &dest);
    assert_eq!(
        file_name(&fifth),
        file_name(&fourth),
        "an increment of the third run"
    );

    // Lost again, and the index beside the newest full replaced by another full's (a
    // destination serving the wrong one; it decrypts with the same passphrase): caught by
    // the full it names, so a full, never a wrong delta.
    let index_of = |full: &Path| full.with_file_name("files.index.gz.gpg");
    fs::copy(index_of(&first), index_of(&third)).unwrap();
    fs::remove_dir_all(work.path().join("state")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("is not the one of"), "{}", r.stderr);
    let sixth = archives(&dest).pop().unwrap();
    assert_eq!(file_name(&sixth), "files.tar.gz.gpg");

    // A type without incremental archives is refused by name before anything runs.
    let bad = work.path().join("bad");
    fs::create_dir_all(&bad).unwrap();
    let bad_job = write_job(
        &bad,
        &json!({"hostname": "h", "tmpdir": bad.join("tmp"),
                "sources": [{"id": "db", "type": "pgsql", "host": "127.0.0.1",
                             "database": "test", "username": "postgres",
                             "passphrase": PASSPHRASE, "incremental": {}}],
                "destinations": [{"id": "disk", "type": "local", "path": bad.join("dest")}]}),
    );
    let r = run(backups().arg("run").arg(&bad_job));
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("\"db\"") && r.stderr.contains("cannot archive incrementally"),
        "{}",
        r.stderr
    );
}

#[test]
fn retention_across_a_full_boundary_keeps_the_full_of_every_kept_increment() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let dest = work.path().join("dest");
    fs::create_dir_all(&src).unwrap();
    let job = job(
        work.path(),
        &src,
        json!({"full_every": 4}),
        json!({"retention_copies": 2, "min_copies": 1}),
    );
    // Runs 1..=5: full, 3 increments, full.
    let mut runs = Vec::new();
    for i in 1..=5 {
        fs::write(src.join(format!("f{i}")), format!("run {i}")).unwrap();
        runs.push(run_once(&job, &dest));
    }
    assert_eq!(
        file_name(&runs[4]),
        "files.tar.gz.gpg",
        "the 5th run is a full"
    );
    // The two newest points are the new full and increment 4, which needs the first full.
    assert_eq!(archives(&dest), {
        let mut kept = vec![runs[0].clone(), runs[3].clone(), runs[4].clone()];
        kept.sort();
        kept
    });
    let object = runs[3].strip_prefix(&dest).unwrap().display().to_string();
    let into = work.path().join("point4");
    extract(&job, &["--artifact", &object], &into);
    let files: Vec<String> = files_under(&into.join(src.strip_prefix("/").unwrap()));
    assert_eq!(files, ["f1", "f2", "f3", "f4"]);

    // Run 6, an increment of the new full: the first full's last increment goes, and
    // the first full with it.
    fs::write(src.join("f6"), "run 6").unwrap();
    let sixth = run_once(&job, &dest);
    assert_eq!(archives(&dest), {
        let mut kept = vec![runs[4].clone(), sixth];
        kept.sort();
        kept
    });
    // The first full's index went with it; the new full's is there.
    let indexes: Vec<String> = artifacts(&dest)
        .iter()
        .filter(|a| file_name(a).contains(".index."))
        .map(|a| a.strip_prefix(&dest).unwrap().display().to_string())
        .collect();
    let beside = |full: &Path| {
        let index = full.with_file_name("files.index.gz.gpg");
        index.strip_prefix(&dest).unwrap().display().to_string()
    };
    assert_eq!(indexes, [beside(&runs[4])]);
}

/// The hostile fixture (tests/fixtures) as an incremental source.
fn hostile_job(work: &Path, mode: &str, target: &Path) -> PathBuf {
    fs::create_dir_all(work.join("dest")).unwrap();
    write_job(
        work,
        &json!({"hostname": "h", "tmpdir": work.join("tmp"), "state_dir": work.join("state"),
                "sources": [{"id": "evil", "type": "hostile", "mode": mode,
                             "plugin": fixture("backups_test_fixtures.wasm"),
                             "target": target, "passphrase": PASSPHRASE,
                             "incremental": {}}],
                "destinations": [{"id": "disk", "type": "local", "path": work.join("dest")}]}),
    )
}

#[test]
fn a_source_that_calls_a_full_an_increment_fails() {
    let work = tempfile::tempdir().unwrap();
    let job = hostile_job(work.path(), "incremental-lie", Path::new("/nonexistent"));
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.all().contains("asked for a full"), "{}", r.all());
    assert!(artifacts(&work.path().join("dest")).is_empty());
}

/// Backs up the hostile fixture's archive in `mode`, aimed at a victim directory outside
/// the restore; `restore --extract` must refuse it, saying `refusal`, and leave the victim
/// as it was.
fn restore_refuses_hostile_archive(mode: &str, refusal: &str) {
    let work = tempfile::tempdir().unwrap();
    let victim = work.path().join("victim");
    fs::create_dir_all(&victim).unwrap();
    fs::write(victim.join("precious"), b"keep me").unwrap();
    let job = hostile_job(work.path(), mode, &victim);
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());

    let into = work.path().join("restored");
    let r = run(backups()
        .args(["restore", "--source", "evil", "--extract"])
        .arg(&into)
        .arg(&job));
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains(refusal), "{}", r.stderr);
    assert_eq!(fs::read(victim.join("precious")).unwrap(), b"keep me");
    assert!(!into.join("stolen").exists());
}

#[test]
fn a_dumpdir_behind_a_symlink_never_deletes_outside_the_restore() {
    restore_refuses_hostile_archive("evil-dumpdir", "through a symlink: refused");
}

#[test]
fn a_full_that_failed_is_retried_as_a_full() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let dest = work.path().join("dest");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();
    let job = job(work.path(), &src, json!({"full_every": 2}), json!({}));
    run_once(&job, &dest);
    assert!(file_name(&run_once(&job, &dest)).starts_with("files.inc-"));

    // Run 3 is a full, and the destination fails it (a file where its folder should be).
    let away = work.path().join("dest-away");
    fs::rename(&dest, &away).unwrap();
    fs::write(&dest, b"in the way").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = run(backups().arg("run").arg(&job));
    assert_ne!(r.code, 0, "{}", r.all());
    fs::remove_file(&dest).unwrap();
    fs::rename(&away, &dest).unwrap();

    // Run 4 is that full again, not an increment of the first full.
    assert_eq!(file_name(&run_once(&job, &dest)), "files.tar.gz.gpg");
}

#[test]
fn a_dumpdir_rename_out_of_the_restore_is_refused() {
    restore_refuses_hostile_archive("evil-rename", "outside");
}
