//! Compression choices: `"compression": "zstd"` (per source or for the job, with an
//! optional level) gives `….tar.zst.gpg` artifacts that stock `gpg -d | zstd -d | tar -x`
//! restores, that the manifest names, and that `verify` and `restore` decode by that name.
//! gzip stays the default.

use crate::support;

use serde_json::json;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use support::*;

/// `zstd -d` of `compressed` (the stock tool, from Debian's `zstd` package).
fn stock_zstd_decompress(compressed: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("zstd (package zstd) is installed; .ci/run installs it");
    let mut stdin = child.stdin.take().unwrap();
    let input = compressed.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "zstd -d failed");
    out.stdout
}

fn untar(tar: &[u8], into: &Path) {
    use std::io::Write;
    fs::create_dir_all(into).unwrap();
    let mut child = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(into)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(tar).unwrap();
    assert!(child.wait().unwrap().success(), "tar -x failed");
}

#[test]
fn zstd_artifacts_restore_with_gpg_zstd_and_tar_and_with_backups() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let dest = work.path().join("dest");
    let job = write_job(
        work.path(),
        &json!({"hostname": "h", "tmpdir": work.path().join("tmp"), "compression": "zstd",
                "sources": [
                    {"id": "files", "type": "folder", "path": src, "passphrase": "pw-pw-pw"},
                    {"id": "small", "type": "folder", "path": src, "passphrase": "pw-pw-pw",
                     "compression": {"codec": "zstd", "level": 19}},
                    {"id": "plain", "type": "folder", "path": src, "compress_only": 1},
                    {"id": "classic", "type": "folder", "path": src, "passphrase": "pw-pw-pw",
                     "compression": "gzip"}],
                "destinations": [{"id": "disk", "type": "local", "path": dest}]}),
    );
    let check = run(backups().arg("check").arg(&job));
    assert!(
        check.stdout.contains("compression: zstd -3")
            && check.stdout.contains("compression: zstd -19"),
        "{}",
        check.stdout
    );
    assert_eq!(run(backups().arg("run").arg(&job)).code, 0);

    let names: Vec<String> = artifacts(&dest)
        .iter()
        .map(|a| a.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "classic.tar.gz.gpg",
            "files.tar.zst.gpg",
            "plain.tar.zst",
            "small.tar.zst.gpg"
        ]
    );
    let manifest = |id: &str, suffix: &str| -> serde_json::Value {
        let artifact = artifacts(&dest)
            .into_iter()
            .find(|a| a.to_string_lossy().ends_with(&format!("/{id}.tar{suffix}")))
            .unwrap();
        let text = fs::read_to_string(format!("{}.manifest.json", artifact.display())).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    assert_eq!(manifest("files", ".zst.gpg")["compression"], "zstd");
    assert_eq!(manifest("plain", ".zst")["compression"], "zstd");
    assert_eq!(manifest("classic", ".gz.gpg")["compression"], "gzip");

    // With nothing but the stock tools: gpg -d | zstd -d | tar -x.
    for (id, suffix) in [
        ("files", ".zst.gpg"),
        ("small", ".zst.gpg"),
        ("plain", ".zst"),
    ] {
        let artifact = artifacts(&dest)
            .into_iter()
            .find(|a| a.to_string_lossy().ends_with(&format!("/{id}.tar{suffix}")))
            .unwrap();
        let compressed = if suffix.ends_with(".gpg") {
            Gpg::new().decrypt(&artifact, Some("pw-pw-pw"))
        } else {
            fs::read(&artifact).unwrap()
        };
        let into = work.path().join(format!("stock-{id}"));
        untar(&stock_zstd_decompress(&compressed), &into);
        assert_eq!(
            snapshot(&src),
            snapshot(&into.join(src.strip_prefix("/").unwrap())),
            "{id}"
        );
    }
    // A higher level is smaller.
    let size = |id: &str| {
        artifacts(&dest)
            .into_iter()
            .find(|a| a.to_string_lossy().contains(&format!("/{id}.tar")))
            .map(|a| fs::metadata(a).unwrap().len())
            .unwrap()
    };
    assert!(
        size("small") <= size("files"),
        "{} > {}",
        size("small"),
        size("files")
    );

    // And with backups itself, decoding by the manifest's name.
    assert_verifies(&job, 4);
    let into = work.path().join("restored");
    let r = run(backups()
        .args(["restore", "--source", "files", "--extract"])
        .arg(&into)
        .arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        snapshot(&src),
        snapshot(&into.join(src.strip_prefix("/").unwrap()))
    );
}

#[test]
fn an_unknown_codec_or_level_is_refused_by_key_before_anything_runs() {
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    for (compression, says) in [
        (
            json!("brotli"),
            "sources[0].compression: unknown codec \"brotli\"",
        ),
        (
            json!({"codec": "zstd", "level": 40}),
            "sources[0].compression.level: zstd levels",
        ),
        (
            json!({"codec": "gzip", "level": 9}),
            "gzip is always level 1",
        ),
        (json!({"codec": "zstd", "lvl": 3}), "unknown key \"lvl\""),
    ] {
        let job = write_job(
            work.path(),
            &json!({"hostname": "h", "tmpdir": work.path().join("tmp"),
                    "sources": [{"id": "f", "type": "folder", "path": work.path(),
                                 "passphrase": "pw-pw-pw", "compression": compression}],
                    "destinations": [{"id": "disk", "type": "local", "path": dest}]}),
        );
        let r = run(backups().arg("run").arg(&job));
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(r.stderr.contains(says), "{says}: {}", r.stderr);
        assert!(!dest.exists(), "nothing written");
    }
}
