//! Legacy job files and command lines behave as the legacy tool's did (issue 19): each
//! test names the legacy behaviour it keeps.

use crate::support;

use serde_json::json;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use support::*;

#[test]
fn the_legacy_command_line_runs_the_job_and_an_empty_allow_root_means_unset() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), "legacy").unwrap();
    let job = job_to_local_disk(
        work.path(),
        vec![json!({"id": "files", "type": "folder", "path": src, "passphrase": "pw-pw-pw"})],
    );

    // `backups -v JOB.json`, as the legacy tool's systemd units and Docker image call it.
    let r = run(backups().arg("-v").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("legacy tool's form"), "{}", r.stderr);
    assert_eq!(artifacts(&work.path().join("dest")).len(), 1);
    // Its `-d` (debug) is accepted too.
    let r = run(backups().arg("-d").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());

    // `BACKUPS_ALLOW_ROOT=` (set, empty) is "not set": commands work, and root is refused
    // as it is without the variable (these tests run as root).
    let r = run(backups()
        .env("BACKUPS_ALLOW_ROOT", "")
        .arg("check")
        .arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    let r = run(backups().env("BACKUPS_ALLOW_ROOT", "").arg("run").arg(&job));
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("refusing to run as root"), "{}", r.stderr);
}

#[test]
fn a_local_destination_whose_path_does_not_exist_is_created_private() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), "data").unwrap();
    // The legacy tool's local destination ran os.makedirs on its path.
    let dest = work.path().join("not/yet/there");
    let job = write_job(
        work.path(),
        &json!({"hostname": "h", "tmpdir": work.path().join("tmp"),
                "sources": [{"id": "files", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
                "destinations": [{"id": "disk", "type": "local", "path": dest}]}),
    );
    // `check` touches nothing.
    assert_eq!(run(backups().arg("check").arg(&job)).code, 0);
    assert!(!dest.exists());
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("the granted path did not exist"),
        "{}",
        r.stderr
    );
    assert_eq!(
        fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(artifacts(&dest).len(), 1);
}

#[test]
fn legacy_retention_zeros_null_modules_and_module_names_are_accepted_quietly() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let dest = w.join("dest");
    fs::create_dir_all(&dest).unwrap();
    let job = write_job(
        w,
        &json!({"hostname": "h", "tmpdir": w.join("tmp"),
                "modules": ["backups.sources.postgresql", "backups.sources.folder",
                            "backups.destinations.local"],
                "sources": [
                    {"id": "db", "type": "pgsql", "dbhost": "127.0.0.1", "dbname": "postgres",
                     "passphrase": "pw-pw-pw"},
                    {"id": "files", "type": "folder", "path": w, "passphrase": "pw-pw-pw"}],
                "destinations": [{"id": "disk", "type": "local", "path": dest,
                                  "retention_days": 0, "retention_copies": "-1"}]}),
    );
    let r = run(backups().arg("check").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        !r.all().contains("listed but no entry uses it"),
        "{}",
        r.all()
    );
    // Zero and less mean "no such rule", as the legacy tool read them.
    assert!(r.stdout.contains("keep every copy"), "{}", r.stdout);

    // `"modules": null` is the legacy "default list".
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&job).unwrap()).unwrap();
    v["modules"] = serde_json::Value::Null;
    let job = write_job(w, &v);
    let r = run(backups().arg("check").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains("modules"), "{}", r.all());
}

#[test]
fn plugins_list_names_every_type_a_job_may_use_aliases_included() {
    let r = run(backups().args(["plugins", "list"]));
    assert_eq!(r.code, 0, "{}", r.all());
    for (kind, plugin) in [
        ("slack", "webhook"),
        ("discord", "webhook"),
        ("hipchat", "webhook"),
        ("minio", "s3"),
        ("rds-pgsql", "rds"),
    ] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(kind) && l.ends_with(&format!("by {plugin}"))),
            "{kind}: {}",
            r.stdout
        );
    }
}

#[test]
fn check_shows_the_elasticsearch_host_and_hides_only_the_urls_password() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    fs::create_dir_all(&src).unwrap();
    let mut v = json!({"hostname": "h", "tmpdir": w.join("tmp"),
        "sources": [{"id": "files", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
        "destinations": [{"id": "disk", "type": "local", "path": w.join("dest")}],
        "notifications": [{"id": "logs", "type": "elasticsearch",
                           "url": "https://elastic:es-pass-123@es.example.com:9200",
                           "indexpattern": "backups-%Y"}]});
    let job = write_job(w, &v);
    let r = run(backups().arg("check").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("es.example.com:9200"), "{}", r.stdout);
    assert!(!r.all().contains("es-pass-123"), "{}", r.all());
    v["notifications"][0]["url"] = json!("https://es.example.com:9200");
    let job = write_job(w, &v);
    let r = run(backups().arg("check").arg(&job));
    assert!(!r.stdout.contains("[REDACTED]"), "{}", r.stdout);
}

#[test]
fn smtp_sends_nothing_and_prometheus_pushes_no_failure_unless_asked() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mail = w.join("mail");
    let smtp = smtpd(&mail, "plain", None);
    let pgw = pushgateway();
    let src = w.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), "data").unwrap();
    let job = write_job(
        w,
        &json!({"hostname": "h", "tmpdir": w.join("tmp"),
            "sources": [{"id": "etc", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
            "destinations": [{"id": "disk", "type": "local", "path": w.join("dest")}],
            "notifications": [
                {"id": "mail", "type": "smtp", "host": "127.0.0.1", "port": smtp.port,
                 "credentials": {"username": "backups", "password": "relay-pass-123"},
                 "success_to": "archive@example.com", "failure_to": "sysadmin@example.com"},
                {"id": "prom", "type": "prometheus",
                 "url": format!("http://127.0.0.1:{}/", pgw.port)}]}),
    );
    let metrics = || http_text(&format!("http://127.0.0.1:{}/metrics", pgw.port));
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        fs::read_dir(&mail).unwrap().count(),
        0,
        "no notify_on_*: no mail"
    );
    let pushed = metrics();
    assert!(pushed.contains("backups_last_run_success"), "{pushed}");

    // A failed run: no mail, and no push (the success's metrics stay as they were).
    fs::remove_dir_all(&src).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(fs::read_dir(&mail).unwrap().count(), 0);
    let after = metrics();
    let success_line = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("backups_last_run_success{"))
            .map(str::to_string)
    };
    assert_eq!(success_line(&after), success_line(&pushed));
    assert!(success_line(&after).unwrap().ends_with(" 1"));
}

#[test]
fn an_ambiguous_compress_only_is_refused_naming_the_key() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    fs::create_dir_all(&src).unwrap();
    // The legacy tool read `"1"` (a string) as "encrypt", a reader as "do not": refused.
    let job = job_to_local_disk(
        w,
        vec![json!({"id": "files", "type": "folder", "path": src,
                    "passphrase": "pw-pw-pw", "compress_only": "1"})],
    );
    let r = run(backups().arg("check").arg(&job));
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("sources[0].compress_only"),
        "{}",
        r.stderr
    );
    assert!(artifacts(&w.join("dest")).is_empty());
}

#[test]
fn retention_copies_and_days_together_keep_what_both_keep_as_the_legacy_tool_did() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), "data").unwrap();
    let dest = w.join("dest");
    let job = write_job(
        w,
        &json!({"hostname": "h", "tmpdir": w.join("tmp"),
            "sources": [{"id": "files", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
            "destinations": [{"id": "disk", "type": "local", "path": dest,
                              "retention_copies": 2, "retention_days": 30}]}),
    );
    let r = run(backups().arg("check").arg(&job));
    assert!(
        r.stdout
            .contains("keeps the newest 2 copies that are at most 30 days old, never fewer than 2"),
        "{}",
        r.stdout
    );
    // Three runs, all younger than 30 days: keeping either rule's copies would keep all
    // three; the legacy tool kept the newest two.
    for _ in 0..3 {
        let r = run(backups().arg("run").arg(&job));
        assert_eq!(r.code, 0, "{}", r.all());
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert_eq!(artifacts(&dest).len(), 2);
}

#[test]
fn a_mysql_defaults_file_is_used_and_counts_as_a_secret_file() {
    let (db, user) = (unique("legacy_defaults"), unique("u_defaults"));
    let _cleanup = Cleanup::mariadb(&[&db], &[&user]);
    mariadb(&format!(
        "CREATE DATABASE {db}; USE {db}; CREATE TABLE t (id INT, v TEXT);
         INSERT INTO t VALUES (1, 'from-defaults');
         CREATE USER '{user}'@'%' IDENTIFIED BY 'defaults-pass-9';
         GRANT SELECT, LOCK TABLES, SHOW VIEW, EVENT, TRIGGER ON {db}.* TO '{user}'@'%';"
    ));
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // The legacy `defaults`: a client option file with the credentials.
    let creds = w.join("creds");
    fs::create_dir_all(&creds).unwrap();
    let my_cnf = creds.join("my.cnf");
    fs::write(
        &my_cnf,
        format!("[client]\nuser={user}\npassword=defaults-pass-9\nhost=127.0.0.1\nport=3306\n"),
    )
    .unwrap();
    fs::set_permissions(&my_cnf, fs::Permissions::from_mode(0o600)).unwrap();
    let source = json!({"id": "db", "type": "mysql", "dbname": db, "defaults": my_cnf,
                        "passphrase": "pw-pw-pw"});
    let job = job_to_local_disk(w, vec![source.clone()]);
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains("defaults-pass-9"));
    let dump = String::from_utf8(gunzip(&decrypt_artifact(
        &w.join("dest"),
        "db",
        "sql",
        "pw-pw-pw",
    )))
    .unwrap();
    assert!(dump.contains("from-defaults"), "{dump}");

    // A secret file: a third-party plugin's grant over it needs allow_risky_grants.
    let snoop = json!({"id": "snoop", "type": "hostile", "mode": "good",
                       "plugin": fixture("backups_test_fixtures.wasm"),
                       "passphrase": "pw-pw-pw", "grants": {"read": [creds]}});
    let job = job_to_local_disk(w, vec![source, snoop]);
    let r = run(backups().arg("check").arg(&job));
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("holds this job's secrets"),
        "{}",
        r.stderr
    );
}

/// A PostgreSQL cluster of the test's own that asks for passwords (SCRAM), on a free
/// port of 127.0.0.1: the machine's server trusts every local connection, so it cannot
/// tell whether pg_dump found a password at all. Runs as the `postgres` user (initdb
/// refuses root) and is killed by the pid we hold when dropped.
struct PasswordPostgres {
    _dir: tempfile::TempDir,
    server: Server,
}

impl PasswordPostgres {
    const SUPERUSER: &str = "owner";
    const PASSWORD: &str = "pgpass-secret-7";

    fn start() -> PasswordPostgres {
        use std::os::unix::process::CommandExt;
        let bin = fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries (/usr/lib/postgresql); .ci/run installs them")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists())
            .expect("initdb under /usr/lib/postgresql/*/bin");
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("a postgres user")
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let pwfile = dir.path().join("pw");
        fs::write(&pwfile, Self::PASSWORD).unwrap();
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        let data = dir.path().join("data");
        let out = Command::new(bin.join("initdb"))
            .args([
                "--auth=scram-sha-256",
                "--username",
                Self::SUPERUSER,
                "--pwfile",
            ])
            .arg(&pwfile)
            .arg("-D")
            .arg(&data)
            .uid(uid)
            .gid(gid)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let server = start_server(
            Command::new(bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.path().display()))
                .uid(uid)
                .gid(gid),
            port,
            "a private PostgreSQL cluster",
        );
        PasswordPostgres { _dir: dir, server }
    }

    fn psql(&self, db: &str, input: &str) -> String {
        let port = self.server.port.to_string();
        let mut cmd = Command::new("psql");
        cmd.env("PGPASSWORD", Self::PASSWORD);
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            Self::SUPERUSER,
            "-d",
            db,
        ];
        let out = cmd
            .args(args)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", input])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The legacy `defaults` of pgsql: a pgpass file pg_dump reads when the job gives no
/// `dbpass`, against a server that really asks for the password; like mysql's, a secret
/// file that no other plugin's grant may reach.
#[test]
fn a_pgsql_defaults_file_is_used_and_counts_as_a_secret_file() {
    let pg = PasswordPostgres::start();
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql(
        "shop",
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('from-pgpass');",
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let creds = w.join("creds");
    fs::create_dir_all(&creds).unwrap();
    let pgpass = creds.join("pgpass");
    fs::write(
        &pgpass,
        format!(
            "127.0.0.1:{}:*:{}:{}\n",
            pg.server.port,
            PasswordPostgres::SUPERUSER,
            PasswordPostgres::PASSWORD
        ),
    )
    .unwrap();
    fs::set_permissions(&pgpass, fs::Permissions::from_mode(0o600)).unwrap();
    let source = |defaults: &std::path::Path| {
        json!({"id": "db", "type": "pgsql", "dbhost": "127.0.0.1", "dbport": pg.server.port,
               "dbname": "shop", "dbuser": PasswordPostgres::SUPERUSER,
               "defaults": defaults, "passphrase": "pw-pw-pw"})
    };

    // With a wrong password in the file the server refuses and the source fails: the
    // file is what lets the good run in.
    let wrong = creds.join("wrong");
    fs::write(
        &wrong,
        format!("127.0.0.1:{}:*:owner:not-it\n", pg.server.port),
    )
    .unwrap();
    fs::set_permissions(&wrong, fs::Permissions::from_mode(0o600)).unwrap();
    let job = job_to_local_disk(w, vec![source(&wrong)]);
    let r = run(backups().arg("run").arg(&job));
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(
        r.all().contains("password authentication failed"),
        "{}",
        r.all()
    );
    assert!(artifacts(&w.join("dest")).is_empty());

    let job = job_to_local_disk(w, vec![source(&pgpass)]);
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains(PasswordPostgres::PASSWORD), "{}", r.all());
    let dump = String::from_utf8(gunzip(&decrypt_artifact(
        &w.join("dest"),
        "db",
        "sql",
        "pw-pw-pw",
    )))
    .unwrap();
    assert!(dump.contains("from-pgpass"), "{dump}");

    // A secret file: a third-party plugin's grant over it needs allow_risky_grants.
    let snoop = json!({"id": "snoop", "type": "hostile", "mode": "good",
                       "plugin": fixture("backups_test_fixtures.wasm"),
                       "passphrase": "pw-pw-pw", "grants": {"read": [creds]}});
    let job = job_to_local_disk(w, vec![source(&pgpass), snoop]);
    let r = run(backups().arg("check").arg(&job));
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("holds this job's secrets"),
        "{}",
        r.stderr
    );
}

/// Copies the legacy tool stored (its code's layout `{id}/{YYYYmmddHHMMSS}/{file}` in local
/// time, its README's `{hostname}/{yyyy-mm-dd}/{id}.tar.gpg`) count for `status` on the
/// first night after migrating, show in `list`, and are never deleted by retention.
#[test]
fn copies_the_legacy_tool_stored_count_for_status_and_list_and_are_never_deleted() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), "data").unwrap();
    let dest = w.join("dest");
    let two_hours_ago = jiff::Zoned::now()
        .checked_sub(jiff::SignedDuration::from_hours(2))
        .unwrap();
    let by_code = format!(
        "files/{}/files.tar.gpg",
        two_hours_ago.strftime("%Y%m%d%H%M%S")
    );
    let by_readme = format!("h/{}/files.tar.gpg", two_hours_ago.strftime("%Y-%m-%d"));
    for key in [&by_code, &by_readme] {
        fs::create_dir_all(dest.join(key).parent().unwrap()).unwrap();
        fs::write(dest.join(key), b"a legacy copy").unwrap();
    }
    let job = write_job(
        w,
        &json!({"hostname": "h", "tmpdir": w.join("tmp"),
                "sources": [{"id": "files", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
                "destinations": [{"id": "disk", "type": "local", "path": dest,
                                  "retention_copies": 1, "min_copies": 1}]}),
    );

    // The first night after migrating: fresh, from the legacy tool's copies.
    let r = run(backups().args(["status", "--json"]).arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    let status: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let f = &status["freshness"][0];
    assert_eq!(f["state"], "fresh", "{f}");
    assert_eq!(f["legacy_copies"], 2, "{f}");
    assert_eq!(f["newest_object"], by_code.as_str(), "{f}");

    let listed = run(backups().arg("list").arg(&job));
    assert_eq!(listed.code, 0);
    for key in [&by_code, &by_readme] {
        assert!(
            listed
                .stdout
                .lines()
                .any(|l| l.contains(key.as_str()) && l.contains("the legacy tool's copy")),
            "{key}: {}",
            listed.stdout
        );
    }

    // Retention keeps one copy of ours and never touches theirs.
    for day in 1..=2 {
        let r = run(backups()
            .env("BACKUPS_NOW", format!("2030-01-0{day}T02:00:00Z"))
            .arg("run")
            .arg(&job));
        assert_eq!(r.code, 0, "{}", r.all());
    }
    assert_eq!(
        artifacts(&dest).len(),
        3,
        "one of ours, two legacy: {:?}",
        files_under(&dest)
    );
    assert!(dest.join(&by_code).exists() && dest.join(&by_readme).exists());
}

/// A copy the legacy tool stored (`tar cf - | gpg -c`, with gpg's own compression) is what
/// `verify` checks and `restore` reads back when there is none of ours yet.
#[test]
fn the_legacy_tools_newest_copy_verifies_and_restores_until_there_is_one_of_ours() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_tree(&src);
    let dest = w.join("dest");
    let key = "files/20261101020000/files.tar.gpg";
    fs::create_dir_all(dest.join(key).parent().unwrap()).unwrap();
    let tar = Command::new("tar")
        .args(["cf", "-", "-C", "/"])
        .arg(src.strip_prefix("/").unwrap())
        .output()
        .unwrap();
    assert!(tar.status.success());
    let home = Gpg::new(); // kept until gpg is done: its home goes with it
    let mut gpg = home
        .cmd()
        .args(["--symmetric", "--passphrase", "pw-pw-pw", "-o"])
        .arg(dest.join(key))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut gpg.stdin.take().unwrap(), &tar.stdout).unwrap();
    assert!(gpg.wait().unwrap().success());
    let job = write_job(
        w,
        &json!({"hostname": "h", "tmpdir": w.join("tmp"),
                "sources": [{"id": "files", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
                "destinations": [{"id": "disk", "type": "local", "path": dest}]}),
    );

    let r = run(backups().arg("verify").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains(key) && r.stdout.contains("legacy copy (no manifest"),
        "{}",
        r.stdout
    );
    let into = w.join("restored");
    let r = run(backups()
        .args(["restore", "--source", "files", "--extract"])
        .arg(&into)
        .arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        snapshot(&src),
        snapshot(&into.join(src.strip_prefix("/").unwrap()))
    );

    // Once there is a copy of ours, that is the one read back.
    assert_eq!(run(backups().arg("run").arg(&job)).code, 0);
    let r = run(backups().arg("verify").arg(&job));
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("sha256 ok") && !r.stdout.contains(key),
        "{}",
        r.stdout
    );
}

/// `"legacy_copies": "manage"`: the legacy tool's copies count as copies under the
/// destination's own retention and age out with it, the objects of one of its runs
/// together; they help fill the `min_copies` floor, so a strict age rule on the first night
/// after migrating never leaves fewer copies than the floor. Objects that are not its
/// copies of this source stay.
#[test]
fn managed_legacy_copies_age_out_under_the_same_policy_and_fill_the_floor() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), "data").unwrap();
    let days_ago = |d: i64| {
        jiff::Zoned::now()
            .checked_sub(jiff::SignedDuration::from_hours(24 * d))
            .unwrap()
    };
    let by_code =
        |d: i64, file: &str| format!("files/{}/{file}", days_ago(d).strftime("%Y%m%d%H%M%S"));
    let legacy = [
        by_code(1, "files.tar.gpg"),
        by_code(2, "files.tar.gpg"),
        by_code(2, "files-2.tar.gpg"), // the same run's second file
        by_code(3, "files.tar.gpg"),
        format!("h/{}/files.tar.gpg", days_ago(4).strftime("%Y-%m-%d")),
    ];
    let foreign = [
        "files/notes.txt".to_string(),
        format!("h/{}/db.sql.gpg", days_ago(4).strftime("%Y-%m-%d")),
        "elsewhere/20200101000000/files.tar.gpg".to_string(),
    ];
    let (by_count, by_age) = (w.join("by-count"), w.join("by-age"));
    for dest in [&by_count, &by_age] {
        for key in legacy.iter().chain(&foreign) {
            fs::create_dir_all(dest.join(key).parent().unwrap()).unwrap();
            fs::write(dest.join(key), b"a legacy copy").unwrap();
        }
    }
    let job = write_job(
        w,
        &json!({"hostname": "h", "tmpdir": w.join("tmp"),
                "sources": [{"id": "files", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
                "destinations": [
                    {"id": "by-count", "type": "local", "path": by_count,
                     "retention_copies": 3, "min_copies": 1, "legacy_copies": "manage"},
                    {"id": "by-age", "type": "local", "path": by_age,
                     "retention_days": 1, "min_copies": 3, "legacy_copies": "manage"}]}),
    );
    let r = run(backups().arg("check").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("legacy_copies: manage"), "{}", r.stdout);
    let present = |dest: &std::path::Path| -> Vec<bool> {
        legacy.iter().map(|k| dest.join(k).exists()).collect()
    };

    // The first night: ours and the two newest legacy runs make the newest three.
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(present(&by_count), [true, true, true, false, false]);
    // At most a day old is only ours; the floor of three keeps the two newest legacy runs.
    assert_eq!(present(&by_age), [true, true, true, false, false]);

    // Nights of ours push the legacy copies out, one run (both its files) at a time.
    let r = run(backups()
        .env("BACKUPS_NOW", days_from_now(1))
        .arg("run")
        .arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(present(&by_count), [true, false, false, false, false]);
    assert_eq!(present(&by_age), [true, false, false, false, false]);
    let r = run(backups()
        .env("BACKUPS_NOW", days_from_now(2))
        .arg("run")
        .arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(present(&by_count), [false; 5]);
    assert_eq!(present(&by_age), [false; 5]);

    for dest in [&by_count, &by_age] {
        for key in &foreign {
            assert!(
                dest.join(key).exists(),
                "{key} was not the legacy tool's copy of files"
            );
        }
        // Three copies of ours, each with its manifest.
        let ours: Vec<String> = files_under(dest)
            .into_iter()
            .filter(|f| f.ends_with(".tar.gz.gpg"))
            .collect();
        assert_eq!(ours.len(), 3, "{ours:?}");
    }
}
