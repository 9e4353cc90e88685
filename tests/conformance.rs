//! `backups plugins test`, the conformance kit: first-party plugins and the third-party
//! fixture pass it with the host's real runtime; plugins that break the contract (a
//! listing that fails, a bad artifact kind, a trap) fail it with exit 1 and a FAIL line.

mod support;

use serde_json::json;
use std::fs;
use std::path::Path;
use support::*;

/// Runs the kit on `plugin` as a `kind` with `config` (and explicit `grants`).
fn kit(
    plugin: &str,
    kind: &str,
    config: serde_json::Value,
    grants: Option<serde_json::Value>,
) -> Run {
    let mut cmd = backups();
    cmd.args([
        "plugins",
        "test",
        plugin,
        "--kind",
        kind,
        "--large-mib",
        "16",
    ])
    .arg("--config")
    .arg(config.to_string());
    if let Some(grants) = grants {
        cmd.arg("--grants").arg(grants.to_string());
    }
    run(&mut cmd)
}

/// The lines of a kit run that start with `verdict`.
fn lines<'a>(run: &'a Run, verdict: &str) -> Vec<&'a str> {
    run.stdout
        .lines()
        .filter(|l| l.starts_with(verdict))
        .collect()
}

/// Exit 0, no FAIL line, and a PASS line for each of `checks`.
fn assert_conforms(run: &Run, checks: &[&str]) {
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(lines(run, "FAIL").is_empty(), "{}", run.stdout);
    for check in checks {
        assert!(
            lines(run, &format!("PASS {check}:")).len() == 1,
            "no PASS line for {check:?}: {}",
            run.stdout
        );
    }
}

const DESTINATION_CHECKS: &[&str] = &[
    "describe",
    "put+get small (1017 B)",
    "put+get empty (0 B)",
    "put+get large (16.0 MiB)",
    "list",
    "list empty prefix",
    "delete",
    "delete missing",
    "get missing",
    "no grants",
];

const SOURCE_CHECKS: &[&str] = &["describe", "dump", "dump kind", "no grants"];

const NOTIFIER_CHECKS: &[&str] = &[
    "describe",
    "notify successful run",
    "notify failed run",
    "no grants",
];

#[test]
fn the_embedded_local_destination_conforms_and_leaves_nothing_behind() {
    let dest = tempfile::tempdir().unwrap();
    let r = kit("local", "destination", json!({"path": dest.path()}), None);
    assert_conforms(&r, DESTINATION_CHECKS);
    assert_eq!(files_under(dest.path()), Vec::<String>::new());
}

#[test]
fn the_embedded_folder_source_and_flagfile_notifier_conform() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let r = kit("folder", "source", json!({"path": src}), None);
    assert_conforms(&r, SOURCE_CHECKS);
    assert!(r.stdout.contains("PASS dump kind: \"tar\""), "{}", r.stdout);
    // Without grants the folder cannot be read, and says so in a typed error.
    assert!(
        lines(&r, "PASS no grants: typed failure").len() == 1,
        "{}",
        r.stdout
    );

    let flags = work.path().join("flags");
    fs::create_dir_all(&flags).unwrap();
    let flag = flags.join("last-good");
    let r = kit("flagfile", "notifier", json!({"flagfile": flag}), None);
    assert_conforms(&r, NOTIFIER_CHECKS);
    assert!(
        flag.exists(),
        "the successful run's report touched the flag"
    );
}

fn flaky(dir: &Path) -> Run {
    kit(
        fixture("backups_test_flaky_destination.wasm")
            .to_str()
            .unwrap(),
        "destination",
        json!({"path": dir}),
        Some(json!({"write": [dir]})),
    )
}

#[test]
fn a_third_party_destination_conforms_until_its_listing_breaks() {
    let dest = tempfile::tempdir().unwrap();
    assert_conforms(&flaky(dest.path()), DESTINATION_CHECKS);

    fs::write(dest.path().join(".fail-list"), b"").unwrap();
    let r = flaky(dest.path());
    assert_eq!(r.code, 1, "{}", r.all());
    let failed = lines(&r, "FAIL");
    assert!(
        failed
            .iter()
            .any(|l| l.starts_with("FAIL list:") && l.contains("(transient)")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("the plugin does NOT conform"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_third_party_file_gets_no_grants_unless_given() {
    let dest = tempfile::tempdir().unwrap();
    let r = kit(
        fixture("backups_test_flaky_destination.wasm")
            .to_str()
            .unwrap(),
        "destination",
        json!({"path": dest.path()}),
        None,
    );
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(lines(&r, "FAIL put+get small").len() == 1, "{}", r.stdout);
    assert_eq!(files_under(dest.path()), Vec::<String>::new());
}

fn hostile_source(mode: &str, dir: &Path) -> Run {
    kit(
        fixture("backups_test_fixtures.wasm").to_str().unwrap(),
        "source",
        json!({"mode": mode, "path": dir}),
        Some(json!({"read": [dir]})),
    )
}

#[test]
fn sources_that_break_the_contract_fail_the_kit() {
    let dir = tempfile::tempdir().unwrap();
    assert_conforms(&hostile_source("good", dir.path()), &["dump", "dump kind"]);

    let r = hostile_source("bad-kind", dir.path());
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(lines(&r, "FAIL dump kind:").len() == 1, "{}", r.stdout);

    let r = hostile_source("trap", dir.path());
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        lines(&r, "FAIL dump:")
            .iter()
            .any(|l| l.contains("plugin crashed")),
        "{}",
        r.stdout
    );
    assert!(
        lines(&r, "FAIL no grants: not a typed plugin-error").len() == 1,
        "{}",
        r.stdout
    );
}

#[test]
fn a_plugin_of_another_kind_fails_the_kit() {
    let r = kit("folder", "destination", json!({}), None);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains("FAIL world:") && r.stdout.contains("source world"),
        "{}",
        r.stdout
    );
}

#[test]
fn the_s3_destination_conforms_against_s3s_fs() {
    const ACCESS: &str = "conformance-access";
    const SECRET: &str = "conformance-secret-0123456789";
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("kit-bucket")).unwrap();
    let server = start_s3s_fs(root.path(), ACCESS, SECRET);
    let r = kit(
        "s3",
        "destination",
        json!({"bucket": "kit-bucket", "region": "us-east-1", "part_size_mib": 5,
               "endpoint_url": format!("http://127.0.0.1:{}", server.port),
               "credentials": {"aws_access_key_id": ACCESS, "aws_secret_access_key": SECRET}}),
        None,
    );
    assert_conforms(&r, DESTINATION_CHECKS);
    assert!(!r.all().contains(SECRET), "the secret key is never printed");
    // 16 MiB in 5 MiB parts: the multipart path, completed and then deleted.
    assert_eq!(
        files_under(&root.path().join("kit-bucket")),
        Vec::<String>::new()
    );
}

/// `plugins new` for `kind`, built for wasm32-wasip2 the way its author would: the
/// component. Built under the target dir, so later runs reuse the SDK's build.
fn scaffold(work: &Path, name: &str, kind: &str) -> std::path::PathBuf {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    let r = run(backups()
        .args(["plugins", "new", name, "--kind", kind, "--dir"])
        .arg(work)
        .arg("--sdk")
        .arg(&sdk));
    assert_eq!(r.code, 0, "{}", r.all());
    let crate_dir = work.join(name);
    let lib = fs::read_to_string(crate_dir.join("src/lib.rs")).unwrap();
    assert!(
        lib.starts_with(&format!("//! # {name} — ")),
        "a manual-page header"
    );
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-test");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(&crate_dir)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the scaffolded {kind} must build as generated"
    );
    target.join(format!(
        "wasm32-wasip2/release/{}.wasm",
        name.replace('-', "_")
    ))
}

#[test]
fn scaffolded_plugins_build_and_pass_the_kit_as_generated() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    fs::create_dir_all(&data).unwrap();

    let wasm = scaffold(work.path(), "kit-destination", "destination");
    let r = kit(
        wasm.to_str().unwrap(),
        "destination",
        json!({"path": data}),
        Some(json!({"write": [data]})),
    );
    assert_conforms(&r, DESTINATION_CHECKS);
    assert!(
        r.stdout.contains("PASS no grants: typed failure"),
        "{}",
        r.stdout
    );

    fs::write(data.join("file"), b"some bytes").unwrap();
    let wasm = scaffold(work.path(), "kit-source", "source");
    let r = kit(
        wasm.to_str().unwrap(),
        "source",
        json!({"path": data.join("file")}),
        Some(json!({"read": [data]})),
    );
    assert_conforms(&r, SOURCE_CHECKS);

    let wasm = scaffold(work.path(), "kit-notifier", "notifier");
    let log = data.join("summary.log");
    let r = kit(
        wasm.to_str().unwrap(),
        "notifier",
        json!({"file": log}),
        Some(json!({"write": [data]})),
    );
    assert_conforms(&r, NOTIFIER_CHECKS);
    assert!(
        fs::read_to_string(&log)
            .unwrap()
            .contains("every source reached every destination"),
        "the report's summary was appended"
    );

    // An existing crate is never overwritten.
    let r = run(backups()
        .args(["plugins", "new", "kit-source", "--kind", "source", "--sdk"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk"))
        .arg("--dir")
        .arg(work.path()));
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
}

/// examples/python-notifier, built with componentize-py (from PyPI; .ci/run installs it)
/// from a copy, so that the source tree gets no `__pycache__`.
fn python_notifier() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-notifier");
    fs::create_dir_all(&out).unwrap();
    fs::copy(
        root.join("examples/python-notifier/app.py"),
        out.join("app.py"),
    )
    .unwrap();
    let wasm = out.join("python_notifier.wasm");
    let status = std::process::Command::new("componentize-py")
        .arg("-d")
        .arg(root.join("wit"))
        .args(["-w", "backups:plugin/notifier", "componentize", "app", "-o"])
        .arg(&wasm)
        .current_dir(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!("componentize-py could not be started ({e}); .ci/run installs it")
        });
    assert!(status.success(), "the Python plugin must build");
    wasm
}

#[test]
fn a_notifier_written_in_python_passes_the_kit() {
    let wasm = python_notifier();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("runs.log");
    let r = kit(
        wasm.to_str().unwrap(),
        "notifier",
        json!({"file": log}),
        Some(json!({"write": [logs.path()]})),
    );
    assert_conforms(&r, NOTIFIER_CHECKS);
    assert!(r.stdout.contains("summary-log"), "{}", r.stdout);
    let written = fs::read_to_string(&log).unwrap();
    assert_eq!(written.lines().count(), 2, "{written}");
    assert!(
        written.contains(": ok (run ") && written.contains(": FAILED (run "),
        "{written}"
    );

    // A config the plugin cannot use is a typed invalid-config naming the key.
    let r = kit(
        wasm.to_str().unwrap(),
        "notifier",
        json!({"file": "relative"}),
        None,
    );
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout
            .contains("FAIL configure: file: must be an absolute path (invalid config)"),
        "{}",
        r.stdout
    );
}
