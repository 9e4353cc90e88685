//! The CLI surface: plugins list/inspect, --dry-run, warnings about unknown keys.

use crate::support;

use serde_json::json;
use std::fs;
use std::path::Path;
use support::*;

#[test]
fn plugins_list_shows_the_embedded_plugins_and_their_worlds() {
    let r = run(backups().args(["plugins", "list"]));
    assert_eq!(r.code, 0);
    for (name, world) in [
        ("folder", "source"),
        ("local", "destination"),
        ("flagfile", "notifier"),
    ] {
        let line = r
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(line.contains(world), "{line}");
    }
}

#[test]
fn plugins_inspect_prints_world_version_digest_and_imports() {
    let wasm = fixture("backups_test_fixtures.wasm");
    let r = run(backups().args(["plugins", "inspect"]).arg(&wasm));
    assert_eq!(r.code, 0);
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        fs::read(&wasm).unwrap(),
    ));
    assert!(
        r.stdout.contains(&format!("sha256:      {digest}")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("backups:plugin/source@0.1.4"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("third-party"), "{}", r.stdout);
    assert!(
        r.stdout.contains("backups:plugin/process@0.1.4"),
        "imports listed: {}",
        r.stdout
    );

    let r = run(backups().args(["plugins", "inspect", "folder"]));
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("first-party, embedded"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("config keys: path, excludes, on_unreadable"),
        "{}",
        r.stdout
    );
}

#[test]
fn compiled_plugins_are_cached_on_disk_by_digest() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("cache");
    let r = run(backups()
        .env("BACKUPS_CACHE_DIR", &dir)
        .args(["plugins", "list"]));
    assert_eq!(r.code, 0);
    let entries: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let embedded = r
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("embedded:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .count();
    assert!(embedded >= 3, "{}", r.stdout);
    assert_eq!(
        entries.len(),
        embedded,
        "one compiled file per embedded plugin: {entries:?}"
    );
    assert!(
        entries
            .iter()
            .all(|e| e.to_string_lossy().ends_with(".cwasm"))
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // A second run loads them instead of compiling: same files, untouched.
    let before: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().modified().unwrap())
        .collect();
    let r = run(backups()
        .env("BACKUPS_CACHE_DIR", &dir)
        .args(["plugins", "list"]));
    assert_eq!(r.code, 0);
    let after: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().modified().unwrap())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn dry_run_prints_every_grant_and_touches_nothing() {
    let work = tempfile::tempdir().unwrap();
    let (src, dest) = (work.path().join("src"), work.path().join("dest"));
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    fs::create_dir_all(&dest).unwrap();
    let job = write_job(
        work.path(),
        &json!({
            "hostname": "h",
            "tmpdir": work.path().join("tmp"),
            "sources": [
                {"id": "f", "type": "folder", "path": src, "passphrase": "super-secret-pass", "colour": "blue"},
                {"id": "t", "type": "hostile", "plugin": fixture("backups_test_fixtures.wasm"), "mode": "good", "passphrase": "pw-pw-pw"}
            ],
            "destinations": [{"id": "disk", "type": "local", "path": dest, "retention_days": 7}]
        }),
    );
    let r = run(backups().arg("run").arg("--dry-run").arg(&job));
    assert_eq!(r.code, 0);
    let out = &r.stdout;
    assert!(out.contains(&format!("read  {}", src.display())), "{out}");
    assert!(out.contains(&format!("write {}", dest.display())), "{out}");
    assert!(
        out.contains("derived by the embedded `folder` plugin"),
        "{out}"
    );
    assert!(
        out.contains("none (third-party plugin without a grants block)"),
        "{out}"
    );
    assert!(out.contains("unknown key \"colour\""), "{out}");
    assert!(
        !r.all().contains("super-secret-pass"),
        "secrets never printed"
    );
    assert!(files_under(&dest).is_empty());
    assert!(!work.path().join("tmp").exists());
}

#[test]
fn secrets_from_env_and_files_are_resolved_and_never_printed() {
    let work = tempfile::tempdir().unwrap();
    let (src, dest) = (work.path().join("src"), work.path().join("dest"));
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    fs::create_dir_all(&dest).unwrap();
    let secret_file = work.path().join("pass");
    fs::write(&secret_file, "passphrase-from-file\n").unwrap();
    let job = write_job(
        work.path(),
        &json!({
            "hostname": "h",
            "tmpdir": work.path().join("tmp"),
            "sources": [
                {"id": "a", "type": "folder", "path": src, "passphrase": {"env": "BACKUPS_TEST_PASS"}},
                {"id": "b", "type": "folder", "path": src, "passphrase": {"file": secret_file}}
            ],
            "destinations": [{"id": "disk", "type": "local", "path": dest}]
        }),
    );
    let r = run(backups()
        .env("BACKUPS_TEST_PASS", "passphrase-from-env")
        .args(["-v", "run", "--json"])
        .arg(&job));
    assert_eq!(r.code, 0);
    assert!(!r.all().contains("passphrase-from-env") && !r.all().contains("passphrase-from-file"));
    let gpg = Gpg::new();
    for (id, pass) in [("a", "passphrase-from-env"), ("b", "passphrase-from-file")] {
        let artifact = artifacts(&dest)
            .into_iter()
            .find(|a| {
                a.display()
                    .to_string()
                    .ends_with(&format!("/{id}.tar.gz.gpg"))
            })
            .unwrap();
        assert!(!gpg.decrypt(&artifact, Some(pass)).is_empty());
    }

    // An unset variable is an error naming the key and the variable.
    let r = run(backups()
        .env_remove("BACKUPS_TEST_PASS")
        .arg("run")
        .arg(&job));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("sources[0].passphrase")
            && r.stderr.contains("BACKUPS_TEST_PASS is not set"),
        "{}",
        r.stderr
    );
}

/// The README's first command runs this job: it must check clean, with no warning about
/// itself (no secret in clear, no unknown key), before anything exists under /tmp.
#[test]
fn the_quickstart_example_job_checks_clean() {
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/folder-to-local.json");
    let r = run(backups()
        .env(
            "BACKUPS_EXAMPLE_PASSPHRASE",
            "example passphrase: change me",
        )
        .arg("check")
        .arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.stdout.contains("warnings:"), "{}", r.stdout);
    assert!(!r.stdout.contains("RISK"), "{}", r.stdout);
}
