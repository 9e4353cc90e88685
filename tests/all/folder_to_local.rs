//! folder → gzip → OpenPGP → local directory, end to end with the real binary, checked
//! with stock GnuPG and tar.

use crate::support;

use serde_json::json;
use std::fs;
use std::path::Path;
use support::*;

fn restored_copy(restore_dir: &Path, src: &Path) -> std::path::PathBuf {
    // Members are the absolute path without its leading `/`, as `tar -cf - /path` makes.
    restore_dir.join(src.strip_prefix("/").unwrap())
}

fn folder_job(
    dir: &Path,
    src: &Path,
    dest: &Path,
    encryption: serde_json::Value,
) -> std::path::PathBuf {
    let mut source = json!({"id": "files", "name": "Test files", "type": "folder", "path": src});
    for (k, v) in encryption.as_object().unwrap() {
        source[k] = v.clone();
    }
    write_job(
        dir,
        &json!({
            "hostname": "test.example.com",
            "tmpdir": dir.join("tmp"),
            "modules": ["backups.sources.folder", "backups.destinations.local"],
            "sources": [source],
            "destinations": [{"id": "disk", "type": "local", "path": dest}]
        }),
    )
}

#[test]
fn passphrase_artifact_decrypts_with_gpg_and_restores_the_tree_exactly() {
    let work = tempfile::tempdir().unwrap();
    let (src, dest) = (work.path().join("src"), work.path().join("dest"));
    make_tree(&src);
    fs::create_dir_all(&dest).unwrap();
    let job = folder_job(
        work.path(),
        &src,
        &dest,
        json!({"passphrase": "pass phrase 123"}),
    );

    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0, "the run should succeed");

    let stored = artifacts(&dest);
    assert_eq!(stored.len(), 1, "one artifact: {stored:?}");
    let artifact = &stored[0];
    let name = artifact.strip_prefix(&dest).unwrap().display().to_string();
    assert!(
        name.starts_with("test.example.com/") && name.ends_with("/files.tar.gz.gpg"),
        "object name {name}"
    );

    // The manifest describes the stored bytes.
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{}.manifest.json", artifact.display())).unwrap())
            .unwrap();
    let bytes = fs::read(artifact).unwrap();
    assert_eq!(manifest["size"], bytes.len() as u64);
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    assert_eq!(manifest["sha256"], digest);
    assert_eq!(manifest["source_id"], "files");
    assert_eq!(manifest["encryption"], "openpgp-passphrase");

    let gpg = Gpg::new();
    let tgz = gpg.decrypt(artifact, Some("pass phrase 123"));
    let restore = work.path().join("restore");
    untar_gz(&tgz, &restore);
    assert_eq!(snapshot(&src), snapshot(&restored_copy(&restore, &src)));

    // Temporary artifacts are gone.
    assert_eq!(leftovers(&work.path().join("tmp")), Vec::<String>::new());
}

#[test]
fn recipient_artifact_decrypts_with_the_recipients_secret_key() {
    let work = tempfile::tempdir().unwrap();
    let (src, dest) = (work.path().join("src"), work.path().join("dest"));
    make_tree(&src);
    fs::create_dir_all(&dest).unwrap();
    let gpg = Gpg::new();
    let public_key = gpg.generate_key("restore@example.com", work.path());
    let job = folder_job(
        work.path(),
        &src,
        &dest,
        json!({"recipients": [public_key]}),
    );

    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0);
    let stored = artifacts(&dest);
    assert_eq!(stored.len(), 1);
    let tgz = gpg.decrypt(&stored[0], None);
    let restore = work.path().join("restore");
    untar_gz(&tgz, &restore);
    assert_eq!(snapshot(&src), snapshot(&restored_copy(&restore, &src)));

    // The same key found by fingerprint in an exported keyring.
    let fingerprint = String::from_utf8(
        gpg.cmd()
            .args(["--with-colons", "--fingerprint", "restore@example.com"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .lines()
    .find(|l| l.starts_with("fpr:"))
    .map(|l| l.split(':').nth(9).unwrap().to_string())
    .unwrap();
    let keyring = work.path().join("keyring.gpg");
    let exported = gpg
        .cmd()
        .args(["--export", "restore@example.com"])
        .output()
        .unwrap()
        .stdout;
    fs::write(&keyring, exported).unwrap();
    let dest2 = work.path().join("dest2");
    fs::create_dir_all(&dest2).unwrap();
    let job = folder_job(
        work.path(),
        &src,
        &dest2,
        json!({"recipients": [fingerprint], "keyring": keyring}),
    );
    assert_eq!(run(backups().arg("run").arg(&job)).code, 0);
    let stored2 = artifacts(&dest2);
    assert_eq!(gpg.decrypt(&stored2[0], None), tgz);
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(format!("{}.manifest.json", stored2[0].display())).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["recipients"][0], fingerprint);

    // Without the secret key it does not decrypt.
    let stranger = Gpg::new();
    let out = stranger
        .cmd()
        .arg("--decrypt")
        .arg(&stored[0])
        .output()
        .unwrap();
    assert!(!out.status.success(), "decrypted without the secret key");
}

#[test]
fn compress_only_writes_plain_gzip() {
    let work = tempfile::tempdir().unwrap();
    let (src, dest) = (work.path().join("src"), work.path().join("dest"));
    make_tree(&src);
    fs::create_dir_all(&dest).unwrap();
    let job = folder_job(work.path(), &src, &dest, json!({"compress_only": 1}));

    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0);
    let stored = artifacts(&dest);
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].display().to_string().ends_with("/files.tar.gz"),
        "{stored:?}"
    );
    let out = std::process::Command::new("gunzip")
        .arg("-c")
        .arg(&stored[0])
        .output()
        .unwrap();
    assert!(out.status.success(), "gunzip failed");
    let restore = work.path().join("restore");
    fs::create_dir_all(&restore).unwrap();
    let mut tar = std::process::Command::new("tar")
        .args(["-xpf", "-", "-C"])
        .arg(&restore)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut tar.stdin.take().unwrap(), &out.stdout).unwrap();
    assert!(tar.wait().unwrap().success());
    assert_eq!(snapshot(&src), snapshot(&restored_copy(&restore, &src)));
}

#[test]
fn excludes_follow_tar_patterns() {
    let work = tempfile::tempdir().unwrap();
    let (src, dest) = (work.path().join("src"), work.path().join("dest"));
    fs::create_dir_all(src.join("keep/tmp")).unwrap();
    fs::create_dir_all(src.join("tmp")).unwrap();
    fs::write(src.join("keep/file"), b"kept").unwrap();
    fs::write(src.join("keep/file~"), b"editor backup").unwrap();
    fs::write(src.join("keep/tmp/scratch"), b"scratch").unwrap();
    fs::write(src.join("tmp/scratch"), b"scratch").unwrap();
    fs::create_dir_all(&dest).unwrap();
    let job = folder_job(
        work.path(),
        &src,
        &dest,
        json!({"compress_only": true, "excludes": ["tmp", "*~"]}),
    );
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0);
    let stored = artifacts(&dest);
    let out = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(&stored[0])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("keep/file\n"), "{listing}");
    assert!(!listing.contains("file~"), "{listing}");
    assert!(!listing.contains("src/tmp/"), "{listing}");
    assert!(!listing.contains("keep/tmp/"), "{listing}");
}

#[test]
fn retention_keeps_the_newest_copies_and_flagfile_marks_success() {
    let work = tempfile::tempdir().unwrap();
    let (src, dest, flags) = (
        work.path().join("src"),
        work.path().join("dest"),
        work.path().join("flags"),
    );
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    fs::create_dir_all(&dest).unwrap();
    fs::create_dir_all(&flags).unwrap();
    let job = write_job(
        work.path(),
        &json!({
            "hostname": "h",
            "tmpdir": work.path().join("tmp"),
            "sources": [{"id": "f", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
            "destinations": [{"id": "disk", "type": "local", "path": dest, "retention_copies": 2}],
            "notifications": [{"type": "flagfile", "flagfile": flags.join("ok")}]
        }),
    );
    let mut runs = Vec::new();
    for _ in 0..3 {
        let r = run(backups().arg("run").arg(&job));
        assert_eq!(r.code, 0);
        runs.push(artifacts(&dest));
        // Object names have one-second resolution.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let left = artifacts(&dest);
    assert_eq!(left.len(), 2, "retention_copies 2 keeps two: {left:?}");
    // The oldest went, manifest and all; the two newest stayed.
    let first = &runs[0][0];
    assert!(!first.exists());
    assert!(!Path::new(&format!("{}.manifest.json", first.display())).exists());
    assert!(
        left.iter()
            .all(|a| Path::new(&format!("{}.manifest.json", a.display())).exists())
    );
    // As the legacy tool wrote it: `OK`, nothing else.
    assert_eq!(fs::read_to_string(flags.join("ok")).unwrap(), "OK");
}

#[test]
fn a_failed_run_leaves_the_flag_file_alone() {
    let work = tempfile::tempdir().unwrap();
    let (dest, flags) = (work.path().join("dest"), work.path().join("flags"));
    fs::create_dir_all(&dest).unwrap();
    fs::create_dir_all(&flags).unwrap();
    let job = write_job(
        work.path(),
        &json!({
            "hostname": "h",
            "tmpdir": work.path().join("tmp"),
            // The path does not exist: the source fails at run time.
            "sources": [{"id": "gone", "type": "folder", "path": work.path().join("missing"), "passphrase": "pw-pw-pw",
                         "grants": {"read": [work.path().join("missing")]}}],
            "destinations": [{"id": "disk", "type": "local", "path": dest}],
            "notifications": [{"type": "flagfile", "flagfile": flags.join("ok")}]
        }),
    );
    let r = run(backups().arg("run").arg(&job));
    assert_ne!(r.code, 0, "a failed source is a failed run");
    assert!(r.stderr.contains("FAILED"), "{}", r.stderr);
    assert!(artifacts(&dest).is_empty());
    assert!(
        !flags.join("ok").exists(),
        "flag file must not claim success"
    );
}
