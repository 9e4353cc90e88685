//! HTTP notifiers against a recording HTTP server (webhook, Slack, Discord, HipChat and
//! ping have no emulator: the requests are checked against the services' documented
//! payloads) and prometheus against a real pushgateway (Debian's prometheus-pushgateway);
//! smtp against aiosmtpd in plain text, STARTTLS and implicit TLS, with certificates from a
//! throwaway CA the tests make with `openssl`. Notifier failures never turn a good backup
//! into a failed one.

use crate::support;

use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

fn request<'a>(log: &'a [serde_json::Value], path: &str) -> &'a serde_json::Value {
    log.iter()
        .find(|r| r["path"] == path)
        .unwrap_or_else(|| panic!("no request to {path}: {log:#?}"))
}

fn body(r: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(r["body"].as_str().unwrap()).unwrap()
}

fn metrics(port: u16) -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn job(work: &Path, source_path: &Path, notifications: Vec<serde_json::Value>) -> PathBuf {
    let dest = work.join("dest");
    fs::create_dir_all(&dest).unwrap();
    write_job(
        work,
        &json!({"job": "nightly", "hostname": "db1", "tmpdir": work.join("tmp"),
                "sources": [{"id": "etc", "type": "folder", "path": source_path, "passphrase": "pw-pw-pw"}],
                "destinations": [{"id": "disk", "type": "local", "path": dest, "retention_copies": 2}],
                "notifications": notifications}),
    )
}

fn line_with<'a>(metrics: &'a str, name: &str, labels: &[&str]) -> &'a str {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{metrics}"))
}

#[test]
fn each_service_gets_its_documented_payload_and_the_pushgateway_its_metrics() {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("requests.jsonl");
    let http = recorder(&log);
    let pgw = pushgateway();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    let base = format!("http://127.0.0.1:{}", http.port);
    let on = |v: serde_json::Value| {
        let mut v = v;
        v["notify_on_success"] = json!(1);
        v["notify_on_failure"] = json!(1);
        v
    };
    let job = job(
        work.path(),
        &src,
        vec![
            on(
                json!({"id": "hook", "type": "webhook", "url": format!("{base}/hook"), "headers": {"authorization": "Bearer t0ken-abc"}}),
            ),
            on(
                json!({"id": "slack", "type": "slack", "url": format!("{base}/services/T0/B0/secretpart")}),
            ),
            on(
                json!({"id": "discord", "type": "discord", "url": format!("{base}/api/webhooks/1/tok")}),
            ),
            on(
                json!({"id": "hipchat", "type": "hipchat", "url": format!("{base}/v2/room/7/notification")}),
            ),
            json!({"id": "ping", "type": "ping", "url": format!("{base}/ping/uuid-1"), "notify_on_start": 1}),
            // A failed run pushes too only when asked (the legacy default is success only).
            json!({"id": "prom", "type": "prometheus", "url": format!("http://127.0.0.1:{}/", pgw.port),
                   "notify_on_failure": 1}),
        ],
    );
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0);
    assert!(
        !r.all().contains("secretpart") && !r.all().contains("t0ken-abc"),
        "webhook secrets never printed"
    );
    let log = recorded(&log);

    let hook = request(&log, "/hook");
    assert_eq!(hook["method"], "POST");
    assert_eq!(hook["headers"]["content-type"], "application/json");
    assert_eq!(hook["headers"]["authorization"], "Bearer t0ken-abc");
    let report = body(hook);
    assert_eq!(report["kind"], "run");
    assert_eq!(report["success"], true);
    assert_eq!(report["job"], "nightly");
    assert_eq!(report["sources"][0]["id"], "etc");
    assert_eq!(report["destinations"][0]["retained"], 1);

    let slack = body(request(&log, "/services/T0/B0/secretpart"));
    assert_eq!(slack["username"], "Backup Agent");
    assert_eq!(slack["icon_emoji"], ":+1:");
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .starts_with("Backup of job nightly on db1 succeeded"),
        "{slack}"
    );

    let discord = body(request(&log, "/api/webhooks/1/tok"));
    assert!(discord["content"].as_str().unwrap().contains("succeeded"));

    let hipchat = body(request(&log, "/v2/room/7/notification"));
    assert_eq!(hipchat["color"], "green");
    assert_eq!(hipchat["message_format"], "text");
    assert_eq!(hipchat["notify"], true);

    let ping = request(&log, "/ping/uuid-1");
    assert_eq!(ping["method"], "POST");
    // notify_on_start (a legacy key): the start ping comes first, so the service can time
    // the run and alert on one that never finishes.
    let position = |path: &str| log.iter().position(|r| r["path"] == path).unwrap();
    assert!(
        position("/ping/uuid-1/start") < position("/ping/uuid-1"),
        "{log:#?}"
    );
    assert!(
        request(&log, "/ping/uuid-1/start")["body"]
            .as_str()
            .unwrap()
            .contains("started")
    );
    assert!(
        ping["body"]
            .as_str()
            .unwrap()
            .contains("every source reached every destination")
    );

    let m = metrics(pgw.port);
    // The labels `backups status --prometheus` writes: job, hostname, source, destination.
    let group = ["job=\"nightly\"", "hostname=\"db1\""];
    assert!(line_with(&m, "backups_last_run_success", &group).ends_with(" 1"));
    let first_success = line_with(&m, "backups_last_success_timestamp_seconds", &group).to_string();
    let retained = line_with(
        &m,
        "backups_retained_copies",
        &["destination=\"disk\"", "source=\"etc\""],
    );
    assert!(retained.ends_with(" 1"), "{retained}");
    assert!(group.iter().all(|l| retained.contains(l)), "{retained}");
    assert!(line_with(&m, "backups_source_success", &["source=\"etc\""]).ends_with(" 1"));
    // Milliseconds, not whole seconds.
    let duration = value(line_with(&m, "backups_run_duration_seconds", &group));
    assert!(
        duration > 0.0 && duration < 600.0 && duration.fract() != 0.0,
        "{duration}"
    );
    let status_file = work.path().join("status.prom");
    let status = run(backups()
        .args(["status", "--prometheus"])
        .arg(&status_file)
        .arg(&job));
    assert_eq!(status.code, 0, "{}", status.all());
    let written = fs::read_to_string(&status_file).unwrap();
    let copies = line_with(&written, "backups_copies", &group);
    assert!(
        copies.contains("source=\"etc\"") && copies.contains("destination=\"disk\""),
        "{copies}"
    );

    // The legacy tool's metrics, unchanged: per source, in the group `job=<source id>`.
    let stored = body(request(&log, "/hook"))["sources"][0]["bytes_out"]
        .as_u64()
        .unwrap();
    let legacy = ["job=\"etc\""];
    assert_eq!(
        value(line_with(&m, "backup_size_sum", &legacy)),
        stored as f64
    );
    assert_eq!(value(line_with(&m, "backup_size_count", &legacy)), 1.0);
    let dumptime = value(line_with(&m, "backup_dumptime_sum", &legacy));
    let uploadtime = value(line_with(&m, "backup_uploadtime_sum", &legacy));
    assert!(
        (0.0..duration).contains(&dumptime),
        "{dumptime} of {duration}"
    );
    assert!(
        (0.0..duration).contains(&uploadtime),
        "{uploadtime} of {duration}"
    );
    assert_eq!(value(line_with(&m, "backup_retained_copies", &legacy)), 1.0);
    let pushed_at = value(line_with(&m, "backup_timestamp", &legacy));
    let now = jiff::Timestamp::now().as_second() as f64;
    assert!(
        (now - 120.0..=now + 1.0).contains(&pushed_at),
        "{pushed_at}"
    );

    // A failed run (the source folder is gone): failure payloads, the ping's /fail, and
    // the last success kept.
    fs::remove_dir_all(&src).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 1);
    let log = recorded(&work.path().join("requests.jsonl"));
    assert!(
        log.iter().any(|r| r["path"] == "/ping/uuid-1/fail"),
        "failed runs ping /fail: {log:#?}"
    );
    let slack_fail = log
        .iter()
        .rev()
        .find(|r| r["path"] == "/services/T0/B0/secretpart")
        .map(body)
        .unwrap();
    assert_eq!(slack_fail["icon_emoji"], ":imp:");
    assert!(
        slack_fail["text"].as_str().unwrap().contains("FAILED (etc"),
        "{slack_fail}"
    );
    let m = metrics(pgw.port);
    assert!(line_with(&m, "backups_last_run_success", &group).ends_with(" 0"));
    assert_eq!(
        line_with(&m, "backups_last_success_timestamp_seconds", &group),
        first_success,
        "kept"
    );
    assert!(line_with(&m, "backups_source_success", &["source=\"etc\""]).ends_with(" 0"));
    // The legacy tool pushed nothing for a failed source: its last success stays.
    assert_eq!(value(line_with(&m, "backup_timestamp", &legacy)), pushed_at);
}

/// The value of one line of the text format.
fn value(line: &str) -> f64 {
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn legacy_chat_notifiers_stay_silent_unless_asked() {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("requests.jsonl");
    let http = recorder(&log);
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    let job = job(
        work.path(),
        &src,
        vec![
            json!({"id": "slack", "type": "slack", "url": format!("http://127.0.0.1:{}/s", http.port)}),
        ],
    );
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0);
    assert!(
        recorded(&log).is_empty(),
        "as in the legacy tool: no notify_on_* keys, no message"
    );
    let r = run(backups().args(["run", "--dry-run"]).arg(&job));
    assert!(
        r.stdout
            .contains("notify on success: no (the plugin's default)"),
        "{}",
        r.stdout
    );
}

#[test]
fn failing_hanging_and_ungranted_notifiers_never_fail_the_backup() {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("requests.jsonl");
    let http = recorder(&log);
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    let base = format!("http://127.0.0.1:{}", http.port);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let hook = |id: &str, url: String, extra: serde_json::Value| {
        let mut v = json!({"id": id, "type": "webhook", "url": url, "notify_on_success": 1});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let job = job(
        work.path(),
        &src,
        vec![
            hook("down", format!("{dead}/x"), json!({})),
            hook("error500", format!("{base}/status/500"), json!({})),
            hook(
                "slow",
                format!("{base}/slow"),
                json!({"limits": {"call_seconds": 2}}),
            ),
            hook(
                "ungranted",
                format!("{base}/never"),
                json!({"grants": {"net": ["https://example.invalid"]}}),
            ),
            hook("fine", format!("{base}/fine"), json!({})),
        ],
    );
    let started = Instant::now();
    let r = run(backups().arg("run").arg(&job));
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "a hanging notifier is cut at its limit"
    );
    assert_eq!(r.code, 0, "notifier failures never fail a good backup");
    for id in ["down", "error500", "slow", "ungranted"] {
        assert!(
            r.stderr.contains("notifications[")
                && r.stderr.contains(&format!("\"{id}\": notification failed")),
            "{id}: {}",
            r.stderr
        );
    }
    assert!(r.stderr.contains("answered 500"), "{}", r.stderr);
    assert!(
        r.stderr.contains("did not finish within 2s"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("denied: no net grant matches 127.0.0.1"),
        "{}",
        r.stderr
    );
    let log = recorded(&log);
    assert!(log.iter().any(|r| r["path"] == "/fine"));
    assert!(
        log.iter().all(|r| r["path"] != "/never"),
        "the ungranted request never left"
    );
}

#[test]
fn elasticsearch_gets_one_searchable_document_per_run() {
    let es = osmem();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    let url = format!("http://127.0.0.1:{}", es.port);
    let job = job(
        work.path(),
        &src,
        vec![json!({"id": "logging", "type": "elasticsearch", "url": url,
                   "indexpattern": "Backups-%Y.%m.%d-%H"})],
    );
    // The run's time decides the index name (strftime fields, UTC, lower-cased).
    let now = "2026-11-22T02:03:04Z";
    assert_eq!(
        run(backups().env("BACKUPS_NOW", now).arg("run").arg(&job)).code,
        0
    );
    let index = "backups-2026.11.22-02";
    http_json("POST", &format!("{url}/{index}/_refresh"));
    let found = http_json("GET", &format!("{url}/{index}/_search?q=job:nightly"));
    let hits = found["hits"]["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{found}");
    let doc = &hits[0]["_source"];
    assert_eq!(doc["hostname"], "db1");
    assert_eq!(doc["success"], true);
    assert_eq!(doc["sources"][0]["id"], "etc");
    assert_eq!(doc["@timestamp"], now, "{doc}");
}

#[test]
fn telegram_messages_reach_the_bot_api() {
    let work = tempfile::tempdir().unwrap();
    let messages = work.path().join("telegram.json");
    let api = telegram(&messages);
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    let token = "295432120:AAtest-token";
    let job = job(
        work.path(),
        &src,
        vec![
            json!({"type": "telegram", "api_token": token, "chat_id": "38123456",
                    "api_url": format!("http://127.0.0.1:{}", api.port),
                    "notify_on_success": 1, "notify_on_failure": 1}),
        ],
    );
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0);
    assert!(
        !r.all().contains("AAtest-token"),
        "the bot token is never printed"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let sent = loop {
        let sent: Vec<serde_json::Value> = fs::read_to_string(&messages)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        if !sent.is_empty() || Instant::now() > deadline {
            break sent;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["botToken"], token);
    assert_eq!(sent[0]["message"]["chat_id"], "38123456");
    assert!(
        sent[0]["message"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Backup of job nightly on db1 succeeded")
    );
}

/// The messages an `smtpd` saved.
fn delivered(outdir: &Path) -> Vec<serde_json::Value> {
    fs::read_dir(outdir)
        .unwrap()
        .map(|e| serde_json::from_str(&fs::read_to_string(e.unwrap().path()).unwrap()).unwrap())
        .collect()
}

/// An smtp notifier entry for `port`, logging in as the test server's user.
fn smtp_entry(id: &str, port: u16, password: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({"id": id, "type": "smtp", "host": "127.0.0.1", "port": port,
                       "credentials": {"username": "backups", "password": password},
                       "success_to": "archive@example.com", "failure_to": "sysadmin@example.com",
                       // smtp sends nothing unless asked, as in the legacy tool.
                       "notify_on_success": 1, "notify_on_failure": 1});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// A throwaway CA, and server certificates it signed: one for 127.0.0.1 and localhost, one
/// for another name; and an unrelated CA, for a trust store that lacks the first one. Made
/// with `openssl`.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    server: (PathBuf, PathBuf),
    misnamed: (PathBuf, PathBuf),
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        fs::create_dir_all(dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl (Debian's openssl package) makes the test certificates");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let new_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let subject = format!("/CN=backups test {ca}");
            let (key, cert) = (format!("{ca}.key"), format!("{ca}.pem"));
            let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subject];
            args.extend(new_key);
            args.extend(["-keyout", &key, "-out", &cert]);
            openssl(&args);
        }
        let issue = |name: &str, names: &str| {
            let (key, csr, cert, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            let mut args = vec!["req", "-subj", "/CN=backups test server"];
            args.extend(new_key);
            args.extend(["-keyout", &key, "-out", &csr]);
            openssl(&args);
            fs::write(
                dir.join(&ext),
                format!(
                    "subjectAltName={names}\nbasicConstraints=CA:FALSE\n\
                     keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
                ),
            )
            .unwrap();
            openssl(&[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                &ext,
                "-out",
                &cert,
            ]);
            (dir.join(cert), dir.join(key))
        };
        Pki {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            server: issue("server", "IP:127.0.0.1,DNS:localhost"),
            misnamed: issue("misnamed", "DNS:mail.example.invalid"),
        }
    }
}

/// `backups run job` with `ca_file` as the whole TLS trust store (`SSL_CERT_FILE`), as an
/// operator adds an internal CA.
fn run_trusting(ca_file: &Path, job: &Path) -> Run {
    run(backups()
        .env("SSL_CERT_FILE", ca_file)
        .env_remove("SSL_CERT_DIR")
        .arg("run")
        .arg(job))
}

/// Asserts that notifier `id` failed, and that its log line says `why`.
fn assert_notifier_failed(r: &Run, id: &str, why: &str) {
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains(&format!("\"{id}\": notification failed")))
        .unwrap_or_else(|| panic!("{id} did not fail: {}", r.stderr));
    assert!(line.contains(why), "{id}: expected {why:?} in {line}");
}

#[test]
fn smtp_delivers_the_summary_with_auth_and_refuses_what_it_cannot_do_safely() {
    let work = tempfile::tempdir().unwrap();
    let mail = work.path().join("mail");
    let server = smtpd(&mail, "plain", None);
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    let port = server.port;
    let job = job(
        work.path(),
        &src,
        vec![
            smtp_entry(
                "mail",
                port,
                "relay-pass-123",
                json!({"from": "backups@db1.example.com", "allow_plain_auth": true}),
            ),
            smtp_entry(
                "wrongpass",
                port,
                "not-the-relay-pass",
                json!({"allow_plain_auth": 1}),
            ),
            smtp_entry("inclear", port, "relay-pass-123", json!({})),
            smtp_entry("tls", port, "relay-pass-123", json!({"use_tls": 1})),
        ],
    );
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0, "notifier failures never fail the backup");
    assert!(!r.all().contains("relay-pass-123") && !r.all().contains("not-the-relay-pass"));
    assert_notifier_failed(&r, "wrongpass", "(auth)");
    // Credentials without TLS: legacy job files run unchanged, with a warning each run.
    assert!(
        r.stderr.contains("the password goes to 127.0.0.1 in clear"),
        "{}",
        r.stderr
    );
    // use_tls never falls back to plain text.
    assert_notifier_failed(&r, "tls", "does not offer STARTTLS");

    let delivered = delivered(&mail);
    assert_eq!(
        delivered.len(),
        2,
        "the two that authenticated (one warned about): {delivered:#?}"
    );
    let m = delivered
        .iter()
        .find(|m| m["from"] == "backups@db1.example.com")
        .expect("the one with a from");
    assert_eq!(m["from"], "backups@db1.example.com");
    assert_eq!(m["to"][0], "archive@example.com");
    assert_eq!(m["tls"], serde_json::Value::Null);
    assert_eq!(m["authenticated"], true);
    let content = m["content"].as_str().unwrap();
    assert!(
        content.contains("Subject: Backup of job nightly on db1 succeeded"),
        "{content}"
    );
    assert!(content.contains("X-Backup-Hostname: db1"), "{content}");
    assert!(
        content.contains("every source reached every destination"),
        "{content}"
    );
}

#[test]
fn smtp_speaks_starttls_and_implicit_tls_and_refuses_a_server_it_cannot_verify() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let (starttls_mail, implicit_mail) = (work.path().join("starttls"), work.path().join("smtps"));
    let starttls = smtpd(&starttls_mail, "starttls", Some(&pki.server));
    let implicit = smtpd(&implicit_mail, "implicit", Some(&pki.server));
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    let tls_job = job(
        work.path(),
        &src,
        vec![
            smtp_entry(
                "starttls",
                starttls.port,
                "relay-pass-123",
                json!({"use_tls": 1}),
            ),
            smtp_entry(
                "smtps",
                implicit.port,
                "relay-pass-123",
                json!({"use_ssl": "1"}),
            ),
        ],
    );

    // The test CA is the whole trust store, as an operator's internal CA would be added.
    let r = run_trusting(&pki.ca, &tls_job);
    assert_eq!(r.code, 0);
    assert!(!r.stderr.contains("notification failed"), "{}", r.stderr);
    assert!(!r.all().contains("relay-pass-123"));
    for mail in [&starttls_mail, &implicit_mail] {
        let delivered = delivered(mail);
        assert_eq!(delivered.len(), 1, "{}: {delivered:#?}", mail.display());
        let m = &delivered[0];
        assert!(
            m["tls"].as_str().is_some_and(|v| v.starts_with("TLSv1.")),
            "the mail came over TLS: {m:#?}"
        );
        assert_eq!(m["authenticated"], true);
        assert_eq!(m["to"], json!(["archive@example.com"]));
        let content = m["content"].as_str().unwrap();
        assert!(content.contains("To: archive@example.com"), "{content}");
        assert!(
            content.contains("Subject: Backup of job nightly on db1 succeeded"),
            "{content}"
        );
        assert!(
            content.contains("every source reached every destination"),
            "{content}"
        );
    }

    // A trust store without the test CA: the handshake fails on the certificate, the
    // notifier fails for good (not retried), nothing is sent in clear, the backup stands.
    let r = run_trusting(&pki.other_ca, &tls_job);
    assert_eq!(r.code, 0, "notifier failures never fail the backup");
    for id in ["starttls", "smtps"] {
        assert_notifier_failed(&r, id, "invalid peer certificate: UnknownIssuer");
        assert_notifier_failed(&r, id, "(permanent)");
    }
    assert!(!r.all().contains("relay-pass-123"));
    assert_eq!(delivered(&starttls_mail).len(), 1, "nothing new arrived");
    assert_eq!(delivered(&implicit_mail).len(), 1, "nothing new arrived");

    // A certificate from the trusted CA, but for another name, fails the same way; and TLS
    // runs only over connections the grants allow (the entry narrows its grant away).
    let misnamed_mail = work.path().join("misnamed");
    let misnamed = smtpd(&misnamed_mail, "implicit", Some(&pki.misnamed));
    let other = work.path().join("other-job");
    fs::create_dir_all(&other).unwrap();
    let tls = json!({"use_ssl": 1});
    let entries = vec![
        smtp_entry("misnamed", misnamed.port, "relay-pass-123", tls.clone()),
        smtp_entry(
            "ungranted",
            implicit.port,
            "relay-pass-123",
            json!({"use_ssl": 1, "grants": {"net": ["mail.example.invalid:465"]}}),
        ),
    ];
    let r = run_trusting(&pki.ca, &job(&other, &src, entries));
    assert_eq!(r.code, 0);
    assert_notifier_failed(&r, "misnamed", "certificate not valid for name");
    assert_notifier_failed(&r, "ungranted", "(denied)");
    assert!(
        r.stderr
            .contains("denied: no net grant matches socket address 127.0.0.1"),
        "{}",
        r.stderr
    );
    assert!(delivered(&misnamed_mail).is_empty());
    assert_eq!(delivered(&implicit_mail).len(), 1, "nothing new arrived");
}

#[test]
fn matrix_messages_land_in_the_room_of_a_real_synapse() {
    let Some((synapse, token, room)) = synapse_with_bot() else {
        return;
    };
    let (token, room) = (token.as_str(), room.as_str());
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    let job = job(
        work.path(),
        &src,
        vec![
            json!({"type": "matrix", "url": synapse.url, "access_token": token, "room_id": room,
                    "notify_on_success": 1, "notify_on_failure": 1}),
        ],
    );
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0);
    assert!(
        !r.all().contains(token),
        "the access token is never printed"
    );
    let messages = synapse.api(&["read", token, room]);
    let bodies: Vec<&str> = messages
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.starts_with("Backup of job nightly on db1 succeeded")),
        "{bodies:?}"
    );
}

/// An HTTPS server on 127.0.0.1 with `cert`, answering 200 and appending each request's
/// body to `log`.
fn https_recorder(cert: &(PathBuf, PathBuf), log: &Path) -> Server {
    let port = free_port();
    let script = r#"
import http.server, ssl, sys
port, cert, key, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with open(log, "ab") as f:
            f.write(body + b"\n")
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;
    start_server(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(port.to_string())
            .arg(&cert.0)
            .arg(&cert.1)
            .arg(log),
        port,
        "https recorder",
    )
}

#[test]
fn https_from_plugins_trusts_the_systems_roots_and_ssl_cert_file() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let log = work.path().join("bodies");
    let server = https_recorder(&pki.server, &log);
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    let job = job(
        work.path(),
        &src,
        vec![
            json!({"id": "hook", "type": "webhook", "notify_on_success": 1,
                    "url": format!("https://127.0.0.1:{}/hook", server.port)}),
        ],
    );
    // The internal CA, trusted the standard way: delivered over HTTPS.
    let r = run_trusting(&pki.ca, &job);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("notification failed"), "{}", r.stderr);
    let bodies = fs::read_to_string(&log).expect("the HTTPS server got the webhook");
    assert!(bodies.contains("nightly"), "{bodies}");
    // Another CA: the certificate does not verify, nothing is sent, the backup stands.
    let r = run_trusting(&pki.other_ca, &job);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_notifier_failed(&r, "hook", "");
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        bodies,
        "nothing new delivered"
    );
}
