//! `backups plugins test`, the conformance kit: first-party plugins and the third-party
//! fixture pass it with the host's real runtime; plugins that break the contract (a
//! listing that fails, a bad artifact kind, a trap) fail it with exit 1 and a FAIL line.
//!
//! Every first-party plugin is run through the kit against the same local servers its own
//! tests use (helpers in tests/support): s3s-fs (s3, minio), the B2/Dropbox/Drive stubs,
//! fake-gcs-server, smbd, sshd, the local MariaDB and PostgreSQL, the recording server,
//! a pushgateway, osmem-server, telegram-test-api, aiosmtpd and Synapse.

use crate::support;

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
    kit_with_env(plugin, kind, config, grants, &[])
}

/// [`kit`], with variables set in the environment of `backups` (for plugins that read
/// credentials from granted variables).
fn kit_with_env(
    plugin: &str,
    kind: &str,
    config: serde_json::Value,
    grants: Option<serde_json::Value>,
    env: &[(&str, &str)],
) -> Run {
    let mut cmd = backups();
    cmd.envs(env.iter().copied());
    cmd.args([
        "plugins",
        "test",
        plugin,
        "--kind",
        kind,
        "--large-mib",
        "8",
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
    "put+get large (8.0 MiB)",
    "list",
    "list empty prefix",
    "delete",
    "delete missing",
    "get missing",
    "leftovers",
    "remove-leftover spares stored objects",
    "self-cleaning",
    "put cut short leaves nothing",
    "put cut short leaves no leftover",
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
fn the_s3_destination_conforms_against_s3s_fs_as_s3_and_as_minio() {
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
    // 8 MiB in 5 MiB parts: the multipart path, completed and then deleted.
    assert_eq!(
        files_under(&root.path().join("kit-bucket")),
        Vec::<String>::new()
    );

    // The same plugin as `minio`: legacy keys, endpoint without a scheme.
    let r = kit(
        "s3",
        "destination",
        json!({"type": "minio", "bucket": "kit-bucket", "secure": false, "part_size_mib": 5,
               "endpoint": format!("127.0.0.1:{}", server.port),
               "credentials": {"access_key": ACCESS, "secret_key": SECRET}}),
        None,
    );
    assert_conforms(&r, DESTINATION_CHECKS);
    assert!(!r.all().contains(SECRET), "the secret key is never printed");
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

/// `config` with the legacy chat notifiers' switches on: they are silent unless asked.
fn asked(mut config: serde_json::Value) -> serde_json::Value {
    config["notify_on_success"] = json!(1);
    config["notify_on_failure"] = json!(1);
    config
}

#[test]
fn the_http_notifiers_conform_against_the_recorder_and_a_real_pushgateway() {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("requests.jsonl");
    let http = recorder(&log);
    let base = format!("http://127.0.0.1:{}", http.port);
    let notifiers = [
        ("webhook", json!({"url": format!("{base}/hook")}), "/hook"),
        (
            "slack",
            asked(json!({"url": format!("{base}/services/T0/B0/kit")})),
            "/services/T0/B0/kit",
        ),
        (
            "discord",
            asked(json!({"url": format!("{base}/api/webhooks/1/kit")})),
            "/api/webhooks/1/kit",
        ),
        (
            "hipchat",
            asked(json!({"url": format!("{base}/v2/room/7/notification")})),
            "/v2/room/7/notification",
        ),
        (
            "ping",
            json!({"url": format!("{base}/ping/kit")}),
            "/ping/kit",
        ),
    ];
    for (plugin, config, path) in notifiers {
        let r = kit(plugin, "notifier", config, None);
        assert_conforms(&r, NOTIFIER_CHECKS);
        // Both reports reached the service, as POSTs to the configured URL.
        let posts = recorded(&log)
            .into_iter()
            .filter(|q| q["method"] == "POST" && q["path"].as_str().unwrap().starts_with(path))
            .count();
        assert!(posts >= 2, "{plugin}: {posts} POSTs to {path}");
    }
    // ping reports a failed run on /fail, as healthchecks.io documents.
    assert!(
        recorded(&log).iter().any(|q| q["path"] == "/ping/kit/fail"),
        "{:#?}",
        recorded(&log)
    );

    let pgw = pushgateway();
    let r = kit(
        "prometheus",
        "notifier",
        json!({"url": format!("http://127.0.0.1:{}/", pgw.port)}),
        None,
    );
    assert_conforms(&r, NOTIFIER_CHECKS);
    // The gateway holds the last report's metrics: the failed run.
    let metrics = http_text(&format!("http://127.0.0.1:{}/metrics", pgw.port));
    let last_run = metrics
        .lines()
        .find(|l| l.starts_with("backups_last_run_success{"))
        .unwrap_or_else(|| panic!("no backups_last_run_success in:\n{metrics}"));
    assert!(last_run.ends_with(" 0"), "{last_run}");
}

#[test]
fn the_b2_and_dropbox_destinations_conform_against_their_api_stubs() {
    const KEY_ID: &str = "000a1b2c3d4e5f0000000001";
    const KEY: &str = "K000-b2-application-key-for-kit";
    const TOKEN: &str = "sl.dropbox-access-token-for-kit";
    let b2_dir = tempfile::tempdir().unwrap();
    let b2 = provider_stub(
        "b2_stub.py",
        free_port(),
        b2_dir.path(),
        &["--key-id", KEY_ID, "--key", KEY, "--bucket", "kit-b"],
    );
    let r = kit(
        "b2",
        "destination",
        json!({"bucket": "kit-b", "api_url": format!("http://127.0.0.1:{}", b2.port),
               "part_size_mib": 5,
               "credentials": {"application_key_id": KEY_ID, "application_key": KEY}}),
        None,
    );
    assert_conforms(&r, DESTINATION_CHECKS);
    assert!(
        !r.all().contains(KEY),
        "the application key is never printed"
    );
    let requests = recorded(&b2_dir.path().join("requests.jsonl"));
    assert!(
        requests.iter().any(|q| q["operation"] == "b2_upload_part"),
        "8 MiB in 5 MiB parts goes through the large-file API: {requests:#?}"
    );

    let dropbox_dir = tempfile::tempdir().unwrap();
    let content_port = free_port();
    let dropbox = provider_stub(
        "dropbox_stub.py",
        free_port(),
        dropbox_dir.path(),
        &[
            "--token",
            TOKEN,
            "--refresh-token",
            "kit-refresh",
            "--app-key",
            "kit-app",
            "--app-secret",
            "kit-app-secret",
            "--content-port",
            &content_port.to_string(),
        ],
    );
    let r = kit(
        "dropbox",
        "destination",
        json!({"access_token": TOKEN, "folder": "/kit", "chunk_size_mib": 4,
               "api_url": format!("http://127.0.0.1:{}", dropbox.port),
               "content_url": format!("http://127.0.0.1:{content_port}")}),
        None,
    );
    assert_conforms(&r, DESTINATION_CHECKS);
    assert!(!r.all().contains(TOKEN), "the token is never printed");
    // 8 MiB in 4 MiB chunks: an upload session, opened with one chunk and finished with
    // the other; small objects in one call. The put cut short opens a second session and
    // never finishes it, so no file appears.
    let operations: Vec<String> = recorded(&dropbox_dir.path().join("requests.jsonl"))
        .iter()
        .map(|q| q["operation"].as_str().unwrap().to_string())
        .collect();
    let count = |operation: &str| operations.iter().filter(|o| *o == operation).count();
    assert_eq!(count("files/upload_session/start"), 2, "{operations:?}");
    assert_eq!(count("files/upload_session/finish"), 1, "{operations:?}");
}

/// A small MariaDB database and a user who may dump it (with a password): (database,
/// user, password), dropped with the guard.
fn mariadb_database(tag: &str) -> (String, String, &'static str, Cleanup) {
    let db = format!("kit_{tag}_{}", std::process::id());
    let (user, password) = (db.clone(), "kit-pass-word");
    mariadb(&format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, note TEXT);
         INSERT INTO {db}.t VALUES (1, 'kit'), (2, 'ü');
         CREATE USER '{user}'@'%' IDENTIFIED BY '{password}';
         GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT ON {db}.* TO '{user}'@'%';"
    ));
    let cleanup = Cleanup::mariadb(&[&db], &[&user]);
    (db, user, password, cleanup)
}

#[test]
fn the_mysql_and_pgsql_sources_conform_against_the_local_servers() {
    let (db, user, password, _drop_mariadb) = mariadb_database("db");
    let r = kit(
        "mysql",
        "source",
        json!({"dbhost": "127.0.0.1", "dbport": 3306, "dbname": db, "dbuser": user,
               "dbpass": password}),
        None,
    );
    assert_conforms(&r, SOURCE_CHECKS);
    assert!(r.stdout.contains("PASS dump kind: \"sql\""), "{}", r.stdout);
    assert!(!r.all().contains(password), "the password is never printed");

    postgres("postgres", &format!("CREATE DATABASE {db}"));
    let _drop_postgres = Cleanup::postgres(&[&db]);
    postgres(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t VALUES (1, 'kit'), (2, 'ü');",
    );
    let r = kit(
        "pgsql",
        "source",
        json!({"dbhost": "127.0.0.1", "dbport": 5432, "dbname": db, "dbuser": "postgres",
               "dbpass": "pg-password-xyz"}),
        None,
    );
    assert_conforms(&r, SOURCE_CHECKS);
    assert!(r.stdout.contains("PASS dump kind: \"sql\""), "{}", r.stdout);
}

#[test]
fn the_azure_managed_disk_source_conforms_against_the_arm_stub() {
    const SECRET: &str = "kit-client-secret-for-azure";
    let dir = tempfile::tempdir().unwrap();
    let login_port = free_port();
    let stub = provider_stub(
        "azure_arm.py",
        free_port(),
        dir.path(),
        &[
            "--login-port",
            &login_port.to_string(),
            "--tenant",
            "kit-tenant",
            "--client-id",
            "kit-client",
            "--client-secret",
            SECRET,
            "--subscription",
            "kit-subscription",
            "--disk",
            "src/kitdisk",
            "--group",
            "dst",
        ],
    );
    let r = kit_with_env(
        "azure-managed-disk",
        "source",
        json!({"subscription_id": "kit-subscription", "source_resource_group": "src",
               "destination_resource_group": "dst", "disk_name": "kitdisk",
               "retain_snapshots": 1, "wait_minutes": 1,
               "management_endpoint": format!("http://127.0.0.1:{}", stub.port),
               "login_endpoint": format!("http://127.0.0.1:{login_port}")}),
        None,
        &[
            ("TENANT_ID", "kit-tenant"),
            ("CLIENT_ID", "kit-client"),
            ("CLIENT_KEY", SECRET),
        ],
    );
    assert_conforms(&r, SOURCE_CHECKS);
    assert!(
        r.stdout.contains("PASS dump kind: \"json\""),
        "{}",
        r.stdout
    );
    assert!(
        !r.all().contains(SECRET),
        "the client secret is never printed"
    );
    let requests = recorded(&dir.path().join("requests.jsonl"));
    assert!(
        requests
            .iter()
            .any(|q| q["operation"] == "put-snapshot" && q["status"] == 202),
        "the kit's dump made a snapshot: {requests:?}"
    );
}

#[test]
fn the_elasticsearch_telegram_and_smtp_notifiers_conform_against_their_servers() {
    let es = osmem();
    let r = kit(
        "elasticsearch",
        "notifier",
        json!({"url": format!("http://127.0.0.1:{}", es.port), "indexpattern": "kit-runs"}),
        None,
    );
    assert_conforms(&r, NOTIFIER_CHECKS);
    let index = format!("http://127.0.0.1:{}/kit-runs", es.port);
    http_json("POST", &format!("{index}/_refresh"));
    let found = http_json("GET", &format!("{index}/_search"));
    assert_eq!(
        found["hits"]["hits"].as_array().map(Vec::len),
        Some(2),
        "one document per report: {found}"
    );

    let work = tempfile::tempdir().unwrap();
    let messages = work.path().join("telegram.json");
    let api = telegram(&messages);
    let token = "295432120:AAkit-token";
    let r = kit(
        "telegram",
        "notifier",
        asked(json!({"api_token": token, "chat_id": "38123456",
                     "api_url": format!("http://127.0.0.1:{}", api.port)})),
        None,
    );
    assert_conforms(&r, NOTIFIER_CHECKS);
    assert!(
        !r.all().contains("AAkit-token"),
        "the bot token is never printed"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let sent = loop {
        let sent: Vec<serde_json::Value> = fs::read_to_string(&messages)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        if sent.len() >= 2 || std::time::Instant::now() > deadline {
            break sent;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(sent.len(), 2, "one message per report: {sent:?}");
    assert!(sent.iter().all(|m| m["message"]["chat_id"] == "38123456"));

    let mail = work.path().join("mail");
    let smtp = smtpd(&mail, "plain", None);
    let r = kit(
        "smtp",
        "notifier",
        json!({"host": "127.0.0.1", "port": smtp.port, "from": "backups@kit.example.com",
               "credentials": {"username": "backups", "password": "relay-pass-123"},
               "allow_plain_auth": true,
               "success_to": "archive@example.com", "failure_to": "sysadmin@example.com"}),
        None,
    );
    assert_conforms(&r, NOTIFIER_CHECKS);
    assert!(
        !r.all().contains("relay-pass-123"),
        "the password is never printed"
    );
    // One message per report, each to its own recipient.
    let mut to: Vec<String> = fs::read_dir(&mail)
        .unwrap()
        .map(|e| {
            let m: serde_json::Value =
                serde_json::from_str(&fs::read_to_string(e.unwrap().path()).unwrap()).unwrap();
            m["to"][0].as_str().unwrap().to_string()
        })
        .collect();
    to.sort();
    assert_eq!(to, ["archive@example.com", "sysadmin@example.com"]);
}

#[test]
fn the_samba_destination_conforms_against_a_real_smbd() {
    const PASSWORD: &str = "kit smb pw 7f3a";
    let smbd = Smbd::start(PASSWORD);
    let r = kit(
        "samba",
        "destination",
        json!({"host": "127.0.0.1", "port": smbd.server.port, "share": "backups",
               "workgroup": "TESTGROUP", "folder": "kit folder",
               "credentials": {"username": smbd.user, "password": PASSWORD}}),
        None,
    );
    assert_conforms(&r, DESTINATION_CHECKS);
    assert!(!r.all().contains(PASSWORD), "the password is never printed");
    assert_eq!(files_under(&smbd.share_dir()), Vec::<String>::new());
}

#[test]
fn the_gs_and_gdrive_destinations_conform_against_fake_gcs_and_the_drive_stub() {
    let work = tempfile::tempdir().unwrap();
    let account = GoogleAccount::new(&work.path().join("keys"), "kit-writer");
    let token = google_token_endpoint(
        &account,
        "https://www.googleapis.com/auth/devstorage.read_write",
        work.path(),
    );
    let token_uri = format!("http://127.0.0.1:{}/token", token.port);
    account.token_uri(&token_uri);
    let gcs = fake_gcs("kit-gs");
    let r = kit(
        "gs",
        "destination",
        json!({"bucket": "kit-gs", "gcs_creds_path": account.key_file,
               "endpoint_url": format!("http://127.0.0.1:{}", gcs.port),
               "token_uri": token_uri, "chunk_size_mib": 1}),
        None,
    );
    assert_conforms(&r, DESTINATION_CHECKS);

    const FOLDER: &str = "1AbC-kit-folder";
    let drive = drive_stub(
        &account,
        "https://www.googleapis.com/auth/drive",
        FOLDER,
        work.path(),
    );
    let api = format!("http://127.0.0.1:{}", drive.port);
    account.token_uri(&format!("{api}/token"));
    let r = kit(
        "gdrive",
        "destination",
        json!({"creds_file": account.key_file, "folder_id": FOLDER, "api_url": api,
               "token_uri": format!("{api}/token"), "chunk_size_mib": 1}),
        None,
    );
    assert_conforms(&r, DESTINATION_CHECKS);
    let requests = recorded(&work.path().join("drive.jsonl"));
    assert!(
        requests
            .iter()
            .any(|q| q["method"] == "POST" && q["query"]["uploadType"] == "resumable"),
        "the streamed object goes through a resumable session: {requests:#?}"
    );
}

#[test]
fn the_matrix_notifier_conforms_against_a_real_synapse() {
    let Some((synapse, token, room)) = synapse_with_bot() else {
        return;
    };
    let (token, room) = (token.as_str(), room.as_str());
    let r = kit(
        "matrix",
        "notifier",
        asked(json!({"url": synapse.url, "access_token": token, "room_id": room})),
        None,
    );
    assert_conforms(&r, NOTIFIER_CHECKS);
    assert!(
        !r.all().contains(token),
        "the access token is never printed"
    );
    let messages = synapse.api(&["read", token, room]);
    assert_eq!(
        messages.as_array().unwrap().len(),
        2,
        "one message per report: {messages}"
    );
}

#[test]
fn the_ssh_and_lvm_sources_conform_through_a_real_sshd() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("remote tree");
    make_tree(&src);
    // The LVM tools and mount are stand-ins (this kernel has no device-mapper); tar,
    // mysqldump and the rest are the real ones.
    let bin = lvm_stand_ins(work.path(), &src);
    let sshd = Sshd::start_with(&format!("SetEnv PATH={}:/usr/bin:/bin", bin.display()));
    let mut config = sshd.keys();
    config["path"] = json!(src);
    let r = kit("folder-ssh", "source", config, None);
    assert_conforms(&r, SOURCE_CHECKS);
    assert!(r.stdout.contains("PASS dump kind: \"tar\""), "{}", r.stdout);

    let (db, user, password, _drop) = mariadb_database("ssh");
    let mut config = sshd.keys();
    for (key, value) in [
        ("dbhost", json!("127.0.0.1")),
        ("dbname", json!(db)),
        ("dbuser", json!(user)),
        ("dbpass", json!(password)),
    ] {
        config[key] = value;
    }
    let r = kit("mysql-ssh", "source", config, None);
    assert_conforms(&r, SOURCE_CHECKS);
    assert!(r.stdout.contains("PASS dump kind: \"sql\""), "{}", r.stdout);
    assert!(!r.all().contains(password), "the password is never printed");

    let mounts = work.path().join("mnt");
    fs::create_dir_all(&mounts).unwrap();
    let mut config = sshd.keys();
    for (key, value) in [
        ("vg_name", json!("vg0")),
        ("lv_name", json!("data")),
        ("size", json!("1G")),
        ("mount_dir", json!(mounts)),
    ] {
        config[key] = value;
    }
    let r = kit("lvm-ssh", "source", config, None);
    assert_conforms(&r, SOURCE_CHECKS);
    assert!(r.stdout.contains("PASS dump kind: \"tar\""), "{}", r.stdout);
    assert_eq!(
        files_under(&mounts),
        Vec::<String>::new(),
        "the snapshot was unmounted"
    );
}
