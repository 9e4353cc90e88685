//! Bad input: a clear error naming the file, key or plugin at fault, exit code 2, and
//! nothing uploaded, nothing deleted.

use crate::support;

use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use support::*;

struct Setup {
    work: tempfile::TempDir,
    src: PathBuf,
    dest: PathBuf,
}

fn setup() -> Setup {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let dest = work.path().join("dest");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    fs::create_dir_all(&dest).unwrap();
    // An existing backup that must survive every failed run.
    fs::create_dir_all(dest.join("h/2026-01-01/000000Z")).unwrap();
    fs::write(dest.join("h/2026-01-01/000000Z/f.tar.gz.gpg"), b"old").unwrap();
    fs::write(
        dest.join("h/2026-01-01/000000Z/f.tar.gz.gpg.manifest.json"),
        b"{}",
    )
    .unwrap();
    Setup { work, src, dest }
}

fn job_with_source(s: &Setup, source: serde_json::Value) -> PathBuf {
    write_job(
        s.work.path(),
        &json!({
            "hostname": "h",
            "tmpdir": s.work.path().join("tmp"),
            "sources": [source],
            "destinations": [{"id": "disk", "type": "local", "path": s.dest, "retention_copies": 1}]
        }),
    )
}

fn assert_refused(s: &Setup, job: &Path, expected: &[&str]) {
    let r = run(backups().arg("run").arg(job));
    assert_eq!(r.code, 2, "bad input exits 2");
    for e in expected {
        assert!(
            r.stderr.contains(e),
            "error should mention {e:?}: {}",
            r.stderr
        );
    }
    assert_eq!(
        files_under(&s.dest),
        [
            "h/2026-01-01/000000Z/f.tar.gz.gpg",
            "h/2026-01-01/000000Z/f.tar.gz.gpg.manifest.json"
        ],
        "nothing uploaded, nothing deleted"
    );
    assert!(!s.work.path().join("tmp").exists(), "nothing started");
}

#[test]
fn malformed_json_names_line_and_column() {
    let s = setup();
    let job = s.work.path().join("job.json");
    fs::write(
        &job,
        "{\n  \"sources\": [\n    {\"id\": \"x\",, }\n  ]\n}\n",
    )
    .unwrap();
    assert_refused(&s, &job, &["job.json:3:16", "not valid JSON"]);
}

#[test]
fn unknown_type_names_the_entry_and_type() {
    let s = setup();
    let job = job_with_source(
        &s,
        json!({"id": "f", "type": "floppy", "path": s.src, "passphrase": "pw-pw-pw"}),
    );
    assert_refused(&s, &job, &["sources[0] \"f\"", "unknown type \"floppy\""]);
}

#[test]
fn missing_passphrase_and_recipients_is_refused() {
    let s = setup();
    let job = job_with_source(&s, json!({"id": "f", "type": "folder", "path": s.src}));
    assert_refused(
        &s,
        &job,
        &["sources[0] \"f\"", "no passphrase and no recipients"],
    );
}

#[test]
fn missing_path_names_the_key() {
    let s = setup();
    let job = job_with_source(
        &s,
        json!({"id": "f", "type": "folder", "passphrase": "pw-pw-pw"}),
    );
    assert_refused(&s, &job, &["sources[0] \"f\"", "missing field `path`"]);
}

#[test]
fn corrupt_wasm_is_refused_with_its_file_name() {
    let s = setup();
    let wasm = s.work.path().join("broken.wasm");
    fs::write(&wasm, b"this is not webassembly").unwrap();
    let job = job_with_source(
        &s,
        json!({"id": "f", "type": "x", "plugin": wasm, "passphrase": "pw-pw-pw"}),
    );
    assert_refused(&s, &job, &["broken.wasm", "not a WebAssembly file"]);
}

#[test]
fn a_core_module_is_not_a_component() {
    let s = setup();
    let wasm = s.work.path().join("core.wasm");
    // The smallest valid core module: magic and version 1.
    fs::write(&wasm, b"\0asm\x01\0\0\0").unwrap();
    let job = job_with_source(
        &s,
        json!({"id": "f", "type": "x", "plugin": wasm, "passphrase": "pw-pw-pw"}),
    );
    assert_refused(
        &s,
        &job,
        &["core.wasm", "core WebAssembly module, not a component"],
    );
}

#[test]
fn a_component_of_the_wrong_world_is_refused() {
    let s = setup();
    // The flagfile notifier, offered as a source.
    let wasm = fixture("backups_plugin_flagfile.wasm");
    let job = job_with_source(
        &s,
        json!({"id": "f", "type": "x", "plugin": wasm, "passphrase": "pw-pw-pw"}),
    );
    assert_refused(
        &s,
        &job,
        &[
            "backups_plugin_flagfile.wasm",
            "implements the notifier world",
            "needs a source plugin",
        ],
    );
}

#[test]
fn a_sha256_pin_that_does_not_match_is_refused() {
    let s = setup();
    let wasm = fixture("backups_test_fixtures.wasm");
    let job = job_with_source(
        &s,
        json!({"id": "f", "type": "x", "mode": "good", "passphrase": "pw-pw-pw",
               "plugin": {"path": wasm, "sha256": "0".repeat(64)}}),
    );
    assert_refused(
        &s,
        &job,
        &[
            "backups_test_fixtures.wasm",
            "sha256 mismatch",
            &"0".repeat(64),
        ],
    );
}

#[test]
fn a_relative_path_in_a_grant_is_refused() {
    let s = setup();
    let job = job_with_source(
        &s,
        json!({"id": "f", "type": "folder", "path": s.src, "passphrase": "pw-pw-pw",
               "grants": {"read": ["relative/path"]}}),
    );
    assert_refused(
        &s,
        &job,
        &["sources[0] \"f\".grants.read", "must be an absolute path"],
    );
}
