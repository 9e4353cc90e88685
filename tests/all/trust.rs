//! Controls for security-sensitive deployments: plugin signatures (real GnuPG signs,
//! sequoia verifies), `backups check` with grant origins and risk flags, refusing root,
//! warning about readable job files with secrets in clear, and a full run whose every
//! output — logs, report, notifications, state, the argv of the dump command — is
//! searched for the job's secrets.

use crate::support;

use serde_json::json;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

/// A copy of the hostile fixture (mode `good`) as a third-party plugin in `dir`.
fn third_party_plugin(dir: &Path) -> PathBuf {
    let wasm = dir.join("vendor-plugin.wasm");
    fs::copy(fixture("backups_test_fixtures.wasm"), &wasm).unwrap();
    wasm
}

fn sign(gpg: &Gpg, email: &str, file: &Path) {
    let sig = PathBuf::from(format!("{}.sig", file.display()));
    let _ = fs::remove_file(&sig);
    let status = gpg
        .cmd()
        .args([
            "--passphrase",
            "",
            "--local-user",
            email,
            "--detach-sign",
            "-o",
        ])
        .arg(&sig)
        .arg(file)
        .status()
        .unwrap();
    assert!(status.success(), "gpg --detach-sign failed");
}

/// A job with one third-party source (the plugin at `wasm`) and a local destination.
fn job_with_plugin(work: &Path, wasm: &Path, trust: serde_json::Value) -> PathBuf {
    let dest = work.join("dest");
    fs::create_dir_all(&dest).unwrap();
    let mut job = json!({
        "hostname": "h",
        "tmpdir": work.join("tmp"),
        "sources": [{"id": "vendor", "type": "vendor", "plugin": wasm, "mode": "good",
                     "passphrase": "pw-pw-pw"}],
        "destinations": [{"id": "disk", "type": "local", "path": dest}]
    });
    for (k, v) in trust.as_object().unwrap() {
        job[k] = v.clone();
    }
    let path = write_job(work, &job);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn signed_plugins_load_and_tampered_unsigned_or_foreign_ones_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let (vendor, stranger) = (Gpg::new(), Gpg::new());
    let keyring = vendor.generate_key("vendor@example.com", work.path());
    fs::create_dir_all(work.path().join("stranger")).unwrap();
    stranger.generate_key("stranger@example.com", &work.path().join("stranger"));
    let wasm = third_party_plugin(work.path());
    let policy = json!({"trusted_plugin_keys": keyring, "require_signed_plugins": true});
    let job = job_with_plugin(work.path(), &wasm, policy.clone());

    // Unsigned, with signatures required: refused before anything runs.
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("vendor-plugin.wasm"), "{}", r.stderr);
    assert!(r.stderr.contains("require_signed_plugins"), "{}", r.stderr);
    assert!(artifacts(&work.path().join("dest")).is_empty());

    // Signed by the vendor: it runs, and `check` names the signer.
    sign(&vendor, "vendor@example.com", &wasm);
    let r = run(backups().arg("check").arg(&job));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("good signature by"), "{}", r.stdout);
    assert!(r.stdout.contains("vendor@example.com"), "{}", r.stdout);
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(artifacts(&work.path().join("dest")).len(), 1);

    // The same signature over different bytes: refused, with or without the policy.
    let mut bytes = fs::read(&wasm).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&wasm, &bytes).unwrap();
    for trust in [policy.clone(), json!({"trusted_plugin_keys": keyring})] {
        let job = job_with_plugin(work.path(), &wasm, trust);
        let r = run(backups().arg("run").arg(&job));
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("bad signature"), "{}", r.stderr);
    }

    // A good signature by a key the job does not trust.
    fs::copy(fixture("backups_test_fixtures.wasm"), &wasm).unwrap();
    sign(&stranger, "stranger@example.com", &wasm);
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("bad signature"), "{}", r.stderr);
    assert_eq!(
        artifacts(&work.path().join("dest")).len(),
        1,
        "nothing new stored"
    );

    // `plugins inspect` says the same with the keys given on the command line.
    sign(&vendor, "vendor@example.com", &wasm);
    let r = run(backups()
        .args(["plugins", "inspect"])
        .arg(&wasm)
        .arg("--trusted-keys")
        .arg(&keyring));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("signature:   good signature by"),
        "{}",
        r.stdout
    );
}

#[test]
fn requiring_signatures_without_keys_is_a_configuration_error() {
    let work = tempfile::tempdir().unwrap();
    let wasm = third_party_plugin(work.path());
    let job = job_with_plugin(work.path(), &wasm, json!({"require_signed_plugins": true}));
    let r = run(backups().arg("check").arg(&job));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("trusted_plugin_keys"), "{}", r.stderr);
}

#[test]
fn check_shows_where_each_grant_came_from_and_flags_risky_ones() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let wasm = third_party_plugin(work.path());
    let job = write_job(
        work.path(),
        &json!({
            "hostname": "h",
            "tmpdir": work.path().join("tmp"),
            "sources": [
                {"id": "files", "type": "folder", "path": src, "passphrase": "pw-pw-pw"},
                {"id": "vendor", "type": "vendor", "plugin": wasm, "mode": "good",
                 "passphrase": "pw-pw-pw",
                 "grants": {"run": ["sh"], "net": ["*"], "write": ["/etc"]}}
            ],
            "destinations": [{"id": "disk", "type": "local", "path": work.path().join("dest")}]
        }),
    );
    fs::set_permissions(&job, fs::Permissions::from_mode(0o600)).unwrap();
    let r = run(backups().arg("check").arg(&job));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = &r.stdout;
    assert!(
        out.contains(&format!("read  {}  [derived from `path`]", src.display())),
        "{out}"
    );
    assert!(
        out.contains("embedded first-party plugin (trusted by construction)"),
        "{out}"
    );
    assert!(out.contains("signature: UNSIGNED"), "{out}");
    for risk in [
        "RISK: run sh: a shell or interpreter runs any command it is given",
        "RISK: net *: any host on the network",
        "RISK: write /etc: outside the temp dir",
        "RISK: a third-party plugin whose signature is not checked",
    ] {
        assert!(out.contains(risk), "missing {risk:?} in\n{out}");
    }
    assert!(out.contains("4 risk(s) flagged"), "{out}");
    // `run --dry-run` is the same report.
    let dry = run(backups().arg("run").arg("--dry-run").arg(&job));
    assert_eq!(dry.stdout, r.stdout);
}

#[test]
fn root_is_refused_unless_allowed_and_run_as_user_must_match() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    fs::create_dir_all(work.path().join("dest")).unwrap();
    let job = write_job(
        work.path(),
        &json!({"hostname": "h", "tmpdir": work.path().join("tmp"),
                "sources": [{"id": "files", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
                "destinations": [{"id": "disk", "type": "local", "path": work.path().join("dest")}]}),
    );
    let me = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let is_root = me == "root";

    let mut without_permission = backups();
    without_permission
        .env_remove("BACKUPS_ALLOW_ROOT")
        .arg("run")
        .arg(&job);
    let r = run(&mut without_permission);
    if is_root {
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("refusing to run as root"), "{}", r.stderr);
        assert!(
            artifacts(&work.path().join("dest")).is_empty(),
            "nothing written"
        );
        let r = run(backups()
            .env_remove("BACKUPS_ALLOW_ROOT")
            .arg("run")
            .arg("--allow-root")
            .arg(&job));
        assert_eq!(r.code, 0, "{}", r.stderr);
    } else {
        assert_eq!(r.code, 0, "{}", r.stderr);
    }

    let r = run(backups()
        .env("RUN_AS_USER", "someone-else")
        .arg("run")
        .arg(&job));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("RUN_AS_USER is \"someone-else\"")
            && r.stderr.contains(&format!("running as \"{me}\"")),
        "{}",
        r.stderr
    );
    // Naming the user who runs it is the explicit choice, root included.
    let r = run(backups()
        .env_remove("BACKUPS_ALLOW_ROOT")
        .env("RUN_AS_USER", &me)
        .arg("run")
        .arg(&job));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Reading commands are not refused.
    let r = run(backups()
        .env_remove("BACKUPS_ALLOW_ROOT")
        .arg("check")
        .arg(&job));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_readable_job_file_with_secrets_in_clear_is_warned_about() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let passphrase_file = work.path().join("passphrase");
    fs::write(&passphrase_file, "from-a-file\n").unwrap();
    let job_for = |passphrase: serde_json::Value| {
        write_job(
            work.path(),
            &json!({"hostname": "h", "tmpdir": work.path().join("tmp"),
                    "sources": [{"id": "files", "type": "folder", "path": src, "passphrase": passphrase}],
                    "destinations": [{"id": "disk", "type": "local", "path": work.path().join("dest")}]}),
        )
    };
    let warning = "readable by group or others";

    let job = job_for(json!("in-clear"));
    fs::set_permissions(&job, fs::Permissions::from_mode(0o644)).unwrap();
    let r = run(backups().arg("check").arg(&job));
    assert!(r.stdout.contains(warning), "{}", r.stdout);
    assert!(
        r.stdout.contains("sources[0] \"files\".passphrase"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("in-clear"),
        "the secret itself is never shown"
    );

    fs::set_permissions(&job, fs::Permissions::from_mode(0o600)).unwrap();
    let r = run(backups().arg("check").arg(&job));
    assert!(!r.stdout.contains(warning), "{}", r.stdout);

    let job = job_for(json!({"file": passphrase_file}));
    fs::set_permissions(&job, fs::Permissions::from_mode(0o644)).unwrap();
    let r = run(backups().arg("check").arg(&job));
    assert!(
        !r.stdout.contains(warning),
        "a reference is no secret in clear: {}",
        r.stdout
    );
}

fn mariadb(sql: &str) {
    let out = Command::new("mysql")
        .args(["-uroot", "-h127.0.0.1", "-P3306", "-e", sql])
        .output()
        .expect("the mysql client is installed");
    assert!(
        out.status.success(),
        "MariaDB on 127.0.0.1:3306 must be running: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn secrets_appear_in_no_output_argv_report_or_state() {
    let work = tempfile::tempdir().unwrap();
    let id = std::process::id();
    let (db, user) = (format!("bk_{id}_leak"), format!("bk_{id}_leaker"));
    let db_password = format!("Db-Pw-{id}-never-shown");
    let passphrase = format!("Passphrase-{id}-never-shown");
    mariadb(&format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (x INT); INSERT INTO {db}.t VALUES (42);
         CREATE USER '{user}'@'%' IDENTIFIED BY '{db_password}';
         GRANT SELECT, LOCK TABLES, SHOW VIEW, TRIGGER, EVENT ON {db}.* TO '{user}'@'%';"
    ));
    let _cleanup = Cleanup::mariadb(&[&db], &[&user]);

    // A mysqldump first on PATH that records its argv, then runs the real one.
    let bin = work.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let argv_log = work.path().join("argv.log");
    let real = support_which("mysqldump");
    let wrapper = bin.join("mysqldump");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" >> {}\nexec {} \"$@\"\n",
            argv_log.display(),
            real.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());

    let (dest, flags, state) = (
        work.path().join("dest"),
        work.path().join("flags"),
        work.path().join("state"),
    );
    fs::create_dir_all(&flags).unwrap();
    fs::create_dir_all(&dest).unwrap();
    let job = write_job(
        work.path(),
        &json!({
            "hostname": "h",
            "tmpdir": work.path().join("tmp"),
            "state_dir": state,
            "sources": [{"id": "db", "type": "mysql", "dbhost": "127.0.0.1", "dbport": 3306,
                         "dbname": db, "dbuser": user, "dbpass": db_password,
                         "passphrase": {"env": "LEAK_TEST_PASSPHRASE"}}],
            "destinations": [{"id": "disk", "type": "local", "path": dest}],
            "notifications": [{"type": "flagfile", "flagfile": flags.join("last"),
                               "notify_on_success": 1}]
        }),
    );
    fs::set_permissions(&job, fs::Permissions::from_mode(0o600)).unwrap();
    let r = run(backups()
        .env("PATH", &path)
        .env("LEAK_TEST_PASSPHRASE", &passphrase)
        .args(["-vv", "run", "--json"])
        .arg(&job));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let argv = fs::read_to_string(&argv_log).expect("the wrapper ran: the dump went through it");
    assert!(
        argv.contains(&db),
        "the wrapper saw the real arguments: {argv}"
    );
    let dump = gunzip(&decrypt_artifact(&dest, "db", "sql", &passphrase));
    assert!(
        String::from_utf8_lossy(&dump).contains("42"),
        "the dump is real"
    );

    let mut everything = vec![("stdout", r.stdout.clone()), ("stderr", r.stderr.clone())];
    everything.push(("mysqldump argv", argv));
    for dir in [&flags, &state, &dest, &work.path().join("tmp")] {
        for rel in files_under(dir) {
            let file = dir.join(rel);
            let bytes = fs::read(&file).unwrap_or_default();
            everything.push((
                "file",
                format!("{}: {}", file.display(), String::from_utf8_lossy(&bytes)),
            ));
        }
    }
    for (what, text) in &everything {
        for secret in [&db_password, &passphrase] {
            assert!(
                !text.contains(secret.as_str()),
                "{secret} leaked into {what}: {text}"
            );
        }
    }
}

fn support_which(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var("PATH").unwrap())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed"))
}
