//! mysql and pgsql sources against the machine's real MariaDB and PostgreSQL on 127.0.0.1:
//! a database with several tables and types, a view, a trigger and 50k rows is backed up,
//! decrypted with stock gpg, loaded into a fresh database and compared table by table.
//! Failures (wrong password, unknown database, unreachable server, a dump killed half-way,
//! a command not granted) fail the source with a clear reason, upload nothing, print no
//! password, and leave the other sources running.
//!
//! These tests need the servers; `.ci/run` starts them when they are not running. They
//! fail, not skip, when a server cannot be reached.

use crate::support;

use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const ROWS: usize = 50_000;

fn job(work: &Path, sources: Vec<serde_json::Value>) -> PathBuf {
    let dest = work.join("dest");
    fs::create_dir_all(&dest).unwrap();
    let src = work.join("files");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"still backed up").unwrap();
    let mut all =
        vec![json!({"id": "files", "type": "folder", "path": src, "passphrase": "pw-pw-pw"})];
    all.extend(sources);
    write_job(
        work,
        &json!({"hostname": "h", "tmpdir": work.join("tmp"), "sources": all,
                "destinations": [{"id": "disk", "type": "local", "path": dest}]}),
    )
}

fn decrypted(work: &Path, id: &str, kind: &str) -> Vec<u8> {
    gunzip(&decrypt_artifact(&work.join("dest"), id, kind, "pw-pw-pw"))
}

/// Asserts a failed source: named reason, nothing uploaded for it, no password printed,
/// and the folder source beside it stored.
fn assert_source_failed(r: &Run, work: &Path, id: &str, reason: &str, password: &str) {
    assert_eq!(r.code, 1, "a failed source fails the run");
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let source = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap();
    assert_eq!(source["ok"], false);
    let error = source["error"].as_str().unwrap();
    assert!(
        error.contains(reason),
        "{id}: expected {reason:?} in {error:?}"
    );
    assert!(
        !r.all().contains(password),
        "the password leaked into the output"
    );
    let stored = artifacts(&work.join("dest"));
    assert!(
        stored
            .iter()
            .all(|a| !a.display().to_string().contains(&format!("/{id}."))),
        "{stored:?}"
    );
    assert!(
        stored
            .iter()
            .any(|a| a.display().to_string().ends_with("/files.tar.gz.gpg")),
        "other sources still run"
    );
}

// ---------------------------------------------------------------- MariaDB

fn mariadb_fixture(db: &str, user: &str, password: &str) -> Cleanup {
    let mut rows = String::new();
    for i in 0..ROWS {
        if i % 5000 == 0 {
            if i > 0 {
                rows.push_str(";\n");
            }
            rows.push_str(
                "INSERT INTO orders (customer_id, amount, placed, note, payload, status) VALUES ",
            );
        } else {
            rows.push(',');
        }
        rows.push_str(&format!(
            "({}, {}.{:02}, '2026-01-01 00:00:00' + INTERVAL {} MINUTE, 'note \\'{}\\' ü', UNHEX('{:08x}'), '{}')",
            i % 997,
            i % 10_000,
            i % 100,
            i,
            i,
            i,
            ["new", "paid", "shipped"][i % 3]
        ));
    }
    rows.push_str(";\n");
    let sql_password = password.replace('\\', "\\\\").replace('\'', "\\'");
    mariadb(&format!(
        "CREATE DATABASE {db};
         USE {db};
         CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(100), attrs JSON);
         CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, customer_id INT, amount DECIMAL(12,2),
                              placed DATETIME, note TEXT, payload BLOB, status ENUM('new','paid','shipped'));
         CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT, at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
         CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW INSERT INTO audit (order_id) VALUES (NEW.id);
         INSERT INTO customers VALUES (1, 'Ada', '{{\"vip\": true}}'), (2, 'Grace', NULL);
         {rows}
         CREATE VIEW big_orders AS SELECT id, amount FROM orders WHERE amount > 9000;
         CREATE USER '{user}'@'%' IDENTIFIED BY '{sql_password}';
         GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT ON {db}.* TO '{user}'@'%';"
    ));
    Cleanup::mariadb(&[db], &[user])
}

fn mariadb_fingerprint(db: &str) -> String {
    mariadb(&format!(
        "USE {db};
         SELECT COUNT(*) FROM orders; SELECT COUNT(*) FROM audit; SELECT COUNT(*) FROM customers;
         CHECKSUM TABLE customers, orders EXTENDED;
         SELECT SUM(amount) FROM big_orders;
         SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{db}';"
    ))
    .replace(db, "DB")
}

fn mysql_source(id: &str, db: &str, user: &str, password: &str) -> serde_json::Value {
    json!({"id": id, "type": "mysql", "dbhost": "127.0.0.1", "dbport": 3306, "dbname": db,
           "dbuser": user, "dbpass": password, "passphrase": "pw-pw-pw"})
}

#[test]
fn mysql_round_trip_restores_every_table() {
    let (db, user, password) = (
        unique("my_rt"),
        unique("u_rt"),
        format!("S3cret:\"pw\\{}", std::process::id()),
    );
    let _cleanup = mariadb_fixture(&db, &user, &password);
    let work = tempfile::tempdir().unwrap();
    let job = job(work.path(), vec![mysql_source("db", &db, &user, &password)]);
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 0);
    assert!(!r.all().contains(&password));

    let dump = String::from_utf8(decrypted(work.path(), "db", "sql")).unwrap();
    assert!(dump.contains("CREATE TABLE `orders`") && dump.contains("orders_audit"));
    // One `dbname`, dumped with `--databases` as the legacy tool did: the dump names its
    // database, so a plain `mysql < dump` restores it (here after dropping the original).
    assert!(dump.contains(&format!("USE `{db}`")), "no USE in the dump");
    let before = mariadb_fingerprint(&db);
    assert!(before.contains(&ROWS.to_string()));
    mariadb(&format!("DROP DATABASE {db};"));
    mariadb(&dump);
    assert_eq!(mariadb_fingerprint(&db), before);
}

#[test]
fn mysql_failures_are_clear_and_upload_nothing() {
    let (db, user, password) = (
        unique("my_fail"),
        unique("u_fail"),
        format!("right-pw-{}", std::process::id()),
    );
    let _cleanup = mariadb_fixture(&db, &user, &password);
    let work = tempfile::tempdir().unwrap();
    let wrong = "wrong-password-123";
    let mut unreachable = mysql_source("unreachable", &db, &user, &password);
    unreachable["dbport"] = json!(1);
    let mut not_granted = mysql_source("notgranted", &db, &user, &password);
    not_granted["grants"] = json!({"run": []});
    let job = job(
        work.path(),
        vec![
            mysql_source("wrongpw", &db, &user, wrong),
            mysql_source("nodb", &unique("no_such_db"), &user, &password),
            unreachable,
            not_granted,
        ],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_source_failed(&r, work.path(), "wrongpw", "Access denied", wrong);
    assert_source_failed(&r, work.path(), "nodb", "no_such_db", &password);
    assert_source_failed(&r, work.path(), "unreachable", "Can't connect", &password);
    assert_source_failed(
        &r,
        work.path(),
        "notgranted",
        "running mysqldump is not granted",
        &password,
    );
}

#[test]
fn a_dump_killed_half_way_is_a_failure_and_is_not_uploaded() {
    // A stand-in mysqldump on PATH prints part of a dump, then is killed by a signal.
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let stub = bin.join("mysqldump");
    fs::write(&stub, "#!/bin/sh\necho 'CREATE TABLE half (id int);'\necho 'INSERT INTO half VALUES (1);'\nkill -9 $$\n").unwrap();
    fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let job = job(
        work.path(),
        vec![mysql_source("killed", "anydb", "anyuser", "pw-killed-1")],
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let r = run(backups()
        .env("PATH", path)
        .args(["run", "--json"])
        .arg(&job));
    assert_source_failed(
        &r,
        work.path(),
        "killed",
        "killed by signal 9",
        "pw-killed-1",
    );
}

// ---------------------------------------------------------------- PostgreSQL

fn postgres_fixture(db: &str) -> Cleanup {
    postgres("postgres", &format!("CREATE DATABASE {db};"));
    postgres(
        db,
        &format!(
            "CREATE TYPE status AS ENUM ('new', 'paid', 'shipped');
             CREATE TABLE customers (id int PRIMARY KEY, name text, attrs jsonb);
             CREATE TABLE orders (id serial PRIMARY KEY, customer_id int, amount numeric(12,2),
                                  placed timestamptz, note text, payload bytea, state status);
             CREATE TABLE audit (id serial PRIMARY KEY, order_id int, at timestamptz DEFAULT now());
             CREATE FUNCTION audit_order() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO audit (order_id) VALUES (NEW.id); RETURN NEW; END $$;
             CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION audit_order();
             INSERT INTO customers VALUES (1, 'Ada', '{{\"vip\": true}}'), (2, 'Grace', NULL);
             INSERT INTO orders (customer_id, amount, placed, note, payload, state)
               SELECT i % 997, (i % 10000) + (i % 100) / 100.0, '2026-01-01'::timestamptz + i * interval '1 minute',
                      'note ''' || i || ''' ü', int4send(i), (ARRAY['new','paid','shipped']::status[])[i % 3 + 1]
               FROM generate_series(0, {}) AS i;
             CREATE VIEW big_orders AS SELECT id, amount FROM orders WHERE amount > 9000;",
            ROWS - 1
        ),
    );
    Cleanup::postgres(&[db])
}

fn postgres_fingerprint(db: &str) -> String {
    let mut out = String::new();
    for table in ["customers", "orders"] {
        out += &postgres(
            db,
            &format!("SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM {table} t;"),
        );
    }
    out += &postgres(
        db,
        "SELECT count(*) FROM audit; SELECT sum(amount) FROM big_orders;",
    );
    out += &postgres(db, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal;");
    out
}

fn pgsql_source(id: &str, db: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut s = json!({"id": id, "type": "pgsql", "dbhost": "127.0.0.1", "dbport": 5432, "dbname": db,
                       "dbuser": "postgres", "dbpass": "pg-password-xyz", "passphrase": "pw-pw-pw"});
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

#[test]
fn pgsql_round_trip_restores_every_table_in_plain_and_custom_format() {
    let db = unique("pg_rt");
    let _cleanup = postgres_fixture(&db);
    let (plain_db, custom_db) = (unique("pg_rt_plain"), unique("pg_rt_custom"));
    let _drop = Cleanup::postgres(&[&plain_db, &custom_db]);
    let work = tempfile::tempdir().unwrap();
    let job = job(
        work.path(),
        vec![
            pgsql_source("plain", &db, json!({})),
            pgsql_source("custom", &db, json!({"format": "custom"})),
        ],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 0);
    assert!(!r.all().contains("pg-password-xyz"));

    let plain = String::from_utf8(decrypted(work.path(), "plain", "sql")).unwrap();
    postgres("postgres", &format!("CREATE DATABASE {plain_db};"));
    postgres(&plain_db, &plain);
    assert_eq!(postgres_fingerprint(&db), postgres_fingerprint(&plain_db));

    let custom = decrypted(work.path(), "custom", "pgdump");
    let file = work.path().join("custom.pgdump");
    fs::write(&file, custom).unwrap();
    postgres("postgres", &format!("CREATE DATABASE {custom_db};"));
    let status = Command::new("pg_restore")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "--exit-on-error",
            "-d",
            &custom_db,
        ])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success(), "pg_restore failed");
    assert_eq!(postgres_fingerprint(&db), postgres_fingerprint(&custom_db));
    assert!(postgres_fingerprint(&db).contains(&format!("{ROWS}|")));
}

#[test]
fn a_restored_pgsql_dump_loads_into_a_fresh_database() {
    let db = unique("pg_restore");
    let _cleanup = postgres_fixture(&db);
    let fresh = unique("pg_restore_fresh");
    let _drop = Cleanup::postgres(&[&fresh]);
    let work = tempfile::tempdir().unwrap();
    let job = job(work.path(), vec![pgsql_source("db", &db, json!({}))]);
    assert_eq!(run(backups().arg("run").arg(&job)).code, 0);
    let dump = work.path().join("restored.sql");
    let r = run(backups()
        .args(["restore", "--source", "db", "--to"])
        .arg(&dump)
        .arg(&job));
    assert_eq!(r.code, 0);
    postgres("postgres", &format!("CREATE DATABASE {fresh};"));
    postgres(&fresh, &fs::read_to_string(&dump).unwrap());
    assert_eq!(postgres_fingerprint(&db), postgres_fingerprint(&fresh));
}

#[test]
fn pgsql_failures_are_clear_and_upload_nothing() {
    let db = unique("pg_fail");
    let _cleanup = postgres_fixture(&db);
    let work = tempfile::tempdir().unwrap();
    let job = job(
        work.path(),
        vec![
            // This server trusts local connections, so a wrong password cannot fail here;
            // an unknown role is refused the same way a wrong password is.
            pgsql_source("wronguser", &db, json!({"dbuser": unique("nobody")})),
            pgsql_source("nodb", &unique("no_such_db"), json!({})),
            pgsql_source("unreachable", &db, json!({"dbport": 1})),
            pgsql_source("notgranted", &db, json!({"grants": {"run": ["mysqldump"]}})),
        ],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_source_failed(
        &r,
        work.path(),
        "wronguser",
        "does not exist",
        "pg-password-xyz",
    );
    assert_source_failed(&r, work.path(), "nodb", "no_such_db", "pg-password-xyz");
    assert_source_failed(
        &r,
        work.path(),
        "unreachable",
        "Connection refused",
        "pg-password-xyz",
    );
    assert_source_failed(
        &r,
        work.path(),
        "notgranted",
        "running pg_dump is not granted",
        "pg-password-xyz",
    );
}
