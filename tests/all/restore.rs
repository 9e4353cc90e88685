//! list, verify and restore against real stored copies.

use crate::support;

use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use support::*;

fn job(work: &Path, src: &Path, encryption: serde_json::Value) -> PathBuf {
    let dest = work.join("dest");
    fs::create_dir_all(&dest).unwrap();
    let mut source = json!({"id": "files", "type": "folder", "path": src});
    for (k, v) in encryption.as_object().unwrap() {
        source[k] = v.clone();
    }
    write_job(
        work,
        &json!({"hostname": "h", "tmpdir": work.join("tmp"), "sources": [source],
                "destinations": [{"id": "disk", "type": "local", "path": dest}]}),
    )
}

fn flip_byte(file: &Path, at: usize) {
    let mut bytes = fs::read(file).unwrap();
    bytes[at] ^= 0x01;
    fs::write(file, bytes).unwrap();
}

#[test]
fn verify_passes_a_good_copy_and_catches_a_flipped_byte() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let job = job(work.path(), &src, json!({"passphrase": "pw-pw-pw"}));
    assert_eq!(run(backups().arg("run").arg(&job)).code, 0);

    let r = run(backups().arg("verify").arg(&job));
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.starts_with("ok") && r.stdout.contains("tar entries"),
        "{}",
        r.stdout
    );

    let r = run(backups().arg("list").arg(&job));
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("files.tar.gz.gpg"), "{}", r.stdout);

    // A byte flipped in storage: the manifest's sha256 catches it.
    let artifact = artifacts(&work.path().join("dest")).pop().unwrap();
    let size = fs::metadata(&artifact).unwrap().len() as usize;
    flip_byte(&artifact, size / 2);
    let r = run(backups().arg("verify").arg(&job));
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("FAILED") && r.stdout.contains("does not match the manifest"),
        "{}",
        r.stdout
    );

    // Even with a manifest rewritten to match, decryption's integrity check catches it.
    let manifest_path = PathBuf::from(format!("{}.manifest.json", artifact.display()));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
    manifest["sha256"] = json!(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        fs::read(&artifact).unwrap()
    )));
    fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let r = run(backups().arg("verify").arg(&job));
    assert_eq!(r.code, 1, "a corrupted ciphertext never verifies");
    assert!(r.stdout.contains("FAILED"), "{}", r.stdout);
}

#[test]
fn restore_extracts_a_folder_exactly_and_refuses_a_non_empty_target() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let job = job(work.path(), &src, json!({"passphrase": "pw-pw-pw"}));
    assert_eq!(run(backups().arg("run").arg(&job)).code, 0);

    let into = work.path().join("restored");
    let r = run(backups()
        .args(["restore", "--source", "files", "--extract"])
        .arg(&into)
        .arg(&job));
    assert_eq!(r.code, 0);
    assert_eq!(
        snapshot(&src),
        snapshot(&into.join(src.strip_prefix("/").unwrap()))
    );

    let r = run(backups()
        .args(["restore", "--source", "files", "--extract"])
        .arg(&into)
        .arg(&job));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is not empty"), "{}", r.stderr);
}

#[test]
fn recipient_copies_need_the_secret_key() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"for your eyes only").unwrap();
    let gpg = Gpg::new();
    let public = gpg.generate_key("ops@example.com", work.path());
    let job = job(work.path(), &src, json!({"recipients": [public]}));
    assert_eq!(run(backups().arg("run").arg(&job)).code, 0);

    let r = run(backups().arg("verify").arg(&job));
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .contains("no passphrase or secret key given decrypts"),
        "{}",
        r.stdout
    );

    let secret = work.path().join("secret.gpg");
    let out = gpg
        .cmd()
        .args([
            "--passphrase",
            "",
            "--export-secret-keys",
            "ops@example.com",
        ])
        .output()
        .unwrap();
    assert!(out.status.success() && !out.stdout.is_empty());
    fs::write(&secret, out.stdout).unwrap();
    let r = run(backups()
        .arg("verify")
        .arg("--secret-key")
        .arg(&secret)
        .arg(&job));
    assert_eq!(r.code, 0, "{}", r.stdout);

    let tar = work.path().join("files.tar");
    let r = run(backups()
        .args(["restore", "--source", "files", "--secret-key"])
        .arg(&secret)
        .arg("--to")
        .arg(&tar)
        .arg(&job));
    assert_eq!(r.code, 0);
    let listing = std::process::Command::new("tar")
        .arg("-tvf")
        .arg(&tar)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).contains("/src/f"));
}
