//! The example third-party plugin (examples/jsonl-notifier) builds as its own crate, loads
//! by path, gets only its explicit grants, and does its job.

use crate::support;

use serde_json::json;
use std::fs;
use support::*;

#[test]
fn the_example_notifier_builds_loads_by_path_and_writes_its_line() {
    let wasm = example_notifier();

    let work = tempfile::tempdir().unwrap();
    let (src, dest, logs) = (
        work.path().join("src"),
        work.path().join("dest"),
        work.path().join("logs"),
    );
    for d in [&src, &dest, &logs] {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(src.join("f"), b"data").unwrap();
    let history = logs.join("history.jsonl");
    let job = write_job(
        work.path(),
        &json!({
            "hostname": "h",
            "tmpdir": work.path().join("tmp"),
            "sources": [{"id": "f", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
            "destinations": [{"id": "disk", "type": "local", "path": dest}],
            "notifications": [{"id": "history", "type": "jsonl", "plugin": wasm,
                               "file": history, "grants": {"write": [logs]}}]
        }),
    );
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0);
    let line: serde_json::Value =
        serde_json::from_str(fs::read_to_string(&history).unwrap().trim()).unwrap();
    assert_eq!(line["success"], true);
    assert_eq!(line["sources"][0]["id"], "f");

    // Without its grant it cannot write, and the run says so without failing the backup.
    let job = write_job(
        work.path(),
        &json!({
            "hostname": "h",
            "tmpdir": work.path().join("tmp"),
            "sources": [{"id": "f", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
            "destinations": [{"id": "disk", "type": "local", "path": dest}],
            "notifications": [{"id": "history", "type": "jsonl", "plugin": wasm,
                               "file": logs.join("other.jsonl")}]
        }),
    );
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0, "a failing notifier never fails a good backup");
    assert!(r.stderr.contains("notification failed"), "{}", r.stderr);
    assert!(!logs.join("other.jsonl").exists());
}
