//! Hostile plugins (real components, tests/fixtures) against the sandbox. Each attack must
//! be contained, reported as that source's failure with a clear reason, leave nothing
//! written outside the grants, and not stop the well-behaved source beside it.

mod support;

use serde_json::json;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

fn hostile(mode: &str, granted: &Path) -> serde_json::Value {
    json!({
        "id": mode,
        "type": "hostile",
        "plugin": fixture("backups_test_fixtures.wasm"),
        "mode": mode,
        "path": granted,
        "passphrase": "pw-pw-pw",
        "grants": {"read": [granted]}
    })
}

struct Outcome {
    run: Run,
    report: serde_json::Value,
    dest: std::path::PathBuf,
}

impl Outcome {
    fn source(&self, id: &str) -> &serde_json::Value {
        self.report["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no source {id} in report"))
    }
    fn error(&self, id: &str) -> String {
        let s = self.source(id);
        assert_eq!(s["ok"], false, "{id} must fail: {s}");
        s["error"].as_str().unwrap().to_string()
    }
}

/// Runs `hostiles` beside one good folder source; returns the report.
fn run_with(work: &Path, hostiles: Vec<serde_json::Value>, limits: serde_json::Value) -> Outcome {
    let (src, dest, granted) = (work.join("src"), work.join("dest"), work.join("granted"));
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("good"), b"good data").unwrap();
    fs::create_dir_all(&dest).unwrap();
    fs::create_dir_all(&granted).unwrap();
    let mut sources =
        vec![json!({"id": "good", "type": "folder", "path": src, "passphrase": "pw-pw-pw"})];
    sources.extend(hostiles);
    let job = write_job(
        work,
        &json!({
            "hostname": "h",
            "tmpdir": work.join("tmp"),
            "limits": limits,
            "sources": sources,
            "destinations": [{"id": "disk", "type": "local", "path": dest}]
        }),
    );
    let run = run(backups()
        .env("BACKUPS_TEST_HOST_SECRET", "host-secret-value")
        .arg("run")
        .arg("--json")
        .arg(&job));
    let report: serde_json::Value =
        serde_json::from_str(&run.stdout).expect("--json prints the report");
    Outcome { run, report, dest }
}

fn assert_good_source_stored_alone(o: &Outcome) {
    assert_eq!(o.run.code, 1, "failed sources make the run fail");
    assert_eq!(o.source("good")["ok"], true);
    let stored = artifacts(&o.dest);
    assert_eq!(
        stored.len(),
        1,
        "only the good source is stored: {stored:?}"
    );
    assert!(
        stored[0]
            .display()
            .to_string()
            .ends_with("/good.tar.gz.gpg")
    );
    // Nothing a hostile plugin produced reached a destination, and no breach happened.
    assert!(!o.run.all().contains("BREACH"), "{}", o.run.all());
}

#[test]
fn filesystem_escapes_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let granted = work.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", granted.join("escape")).unwrap();
    let o = run_with(
        work.path(),
        vec![
            hostile("read-outside", &granted),
            hostile("escape-dotdot", &granted),
            hostile("symlink-escape", &granted),
            hostile("lstat-outside", &granted),
            hostile("write-readonly", &granted),
        ],
        json!({}),
    );
    assert_good_source_stored_alone(&o);
    for id in [
        "read-outside",
        "escape-dotdot",
        "symlink-escape",
        "lstat-outside",
        "write-readonly",
    ] {
        let e = o.error(id);
        assert!(e.contains("refused"), "{id}: {e}");
    }
    // The host logged the lstat denial with plugin, capability and what was asked.
    assert!(
        o.run
            .stderr
            .contains("denied: /etc/passwd is not inside any read or write grant"),
        "{}",
        o.run.stderr
    );
    assert!(
        !granted.join("planted-by-plugin").exists(),
        "wrote into a read-only grant"
    );
}

#[test]
fn environment_commands_and_network_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let granted = work.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let mut connect = hostile("connect", &granted);
    connect["target"] = json!(target);
    let o = run_with(
        work.path(),
        vec![hostile("env", &granted), hostile("run", &granted), connect],
        json!({}),
    );
    assert_good_source_stored_alone(&o);
    assert!(o.error("env").contains("refused"));
    assert!(!o.run.all().contains("host-secret-value"));
    let run_err = o.error("run");
    assert!(run_err.contains("running sh is not granted"), "{run_err}");
    assert!(
        o.run.stderr.contains("capability=\"run\"") || o.run.stderr.contains("capability=run"),
        "{}",
        o.run.stderr
    );
    assert!(o.error("connect").contains("refused"));
    assert!(
        listener.accept().is_err(),
        "the plugin reached a socket it was not granted"
    );
}

/// Runs the hostile `mode` under a 2 s call limit: it must be stopped there, the run must
/// end soon after, and the good source beside it must be stored alone.
fn assert_stopped_at_a_two_second_limit(work: &Path, mode: &str) {
    let granted = work.join("granted");
    let started = Instant::now();
    let o = run_with(
        work,
        vec![hostile(mode, &granted)],
        json!({"call_seconds": 2}),
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_good_source_stored_alone(&o);
    let e = o.error(mode);
    assert!(e.contains("did not finish within 2s"), "{e}");
}

#[test]
fn a_plugin_that_spins_is_stopped_at_its_time_limit() {
    let work = tempfile::tempdir().unwrap();
    assert_stopped_at_a_two_second_limit(work.path(), "spin");
}

#[test]
fn a_plugin_waiting_on_a_fifo_in_its_grant_is_stopped_and_the_run_ends() {
    // The plugin's open blocks in the kernel, where no epoch deadline reaches it; the
    // call limit must still end the call, and the stuck thread must not keep the
    // process from exiting.
    let work = tempfile::tempdir().unwrap();
    let granted = work.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(granted.join("fifo"))
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo failed");
    assert_stopped_at_a_two_second_limit(work.path(), "fifo");
}

#[test]
fn memory_growth_past_the_cap_and_panics_are_contained() {
    let work = tempfile::tempdir().unwrap();
    let granted = work.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    let o = run_with(
        work.path(),
        vec![hostile("grow", &granted), hostile("trap", &granted)],
        json!({"memory_mib": 64}),
    );
    assert_good_source_stored_alone(&o);
    let grow = o.error("grow");
    assert!(
        grow.contains("exceeded its memory limit of 64 MiB"),
        "{grow}"
    );
    let trap = o.error("trap");
    assert!(trap.contains("plugin crashed"), "{trap}");
    assert!(
        trap.contains("hostile plugin panicked on purpose"),
        "the panic message is kept: {trap}"
    );
}

#[test]
fn a_dump_that_fails_half_way_is_never_uploaded() {
    let work = tempfile::tempdir().unwrap();
    let granted = work.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    let o = run_with(work.path(), vec![hostile("truncate", &granted)], json!({}));
    assert_good_source_stored_alone(&o);
    assert!(
        o.error("truncate")
            .contains("dump failed half way on purpose")
    );
    assert_eq!(
        leftovers(&work.path().join("tmp")),
        Vec::<String>::new(),
        "temp artifact removed"
    );
}

#[test]
fn handle_hoarding_and_endless_recursion_are_contained() {
    let work = tempfile::tempdir().unwrap();
    let granted = work.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    fs::write(granted.join("f"), b"a file to open again and again").unwrap();
    let o = run_with(
        work.path(),
        vec![hostile("open-files", &granted), hostile("stack", &granted)],
        json!({"resources": 256}),
    );
    assert_good_source_stored_alone(&o);
    let hoard = o.error("open-files");
    // Either the guest's open fails or the instance traps; both name the limit's effect
    // well before the process's own descriptor limit.
    let opened: usize = hoard
        .split("opening handle ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        hoard.contains("limits.resources") || (1..=256).contains(&opened),
        "{hoard}"
    );
    let stack = o.error("stack");
    assert!(
        stack.contains("call stack exhausted") || stack.contains("stack overflow"),
        "{stack}"
    );
}

#[test]
fn a_log_flood_is_capped_and_said_so() {
    let work = tempfile::tempdir().unwrap();
    let granted = work.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    let o = run_with(
        work.path(),
        vec![hostile("log-flood", &granted)],
        json!({"log_kib": 64}),
    );
    // The flood itself is no failure: the plugin's 100 MiB of stderr were cut at 64 KiB.
    assert_eq!(o.source("log-flood")["ok"], true, "{}", o.run.stderr);
    assert!(
        o.run.stderr.len() < 1 << 20,
        "{} bytes of stderr reached the log",
        o.run.stderr.len()
    );
    assert!(
        o.run.stderr.contains("further output dropped"),
        "the cut is said: {}",
        &o.run.stderr[o.run.stderr.len().saturating_sub(2000)..]
    );
}

#[test]
fn a_granted_command_never_runs_through_a_shell() {
    let work = tempfile::tempdir().unwrap();
    let granted = work.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    let mut injection = hostile("run-injection", &granted);
    injection["grants"]["run"] = json!(["echo"]);
    let o = run_with(work.path(), vec![injection], json!({}));
    assert_eq!(o.source("run-injection")["ok"], true, "{}", o.run.stderr);
    let stored = gunzip(&decrypt_artifact(
        &o.dest,
        "run-injection",
        "txt",
        "pw-pw-pw",
    ));
    assert_eq!(
        String::from_utf8_lossy(&stored),
        "; id; $(id) `id` | cat /etc/passwd && touch /tmp/backups-injected\n",
        "echo got one literal argument"
    );
    assert!(!Path::new("/tmp/backups-injected").exists());
}

/// A one-shot HTTP server answering every request with `response`; counts connections.
fn http_server(response: &'static str) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (port, hits)
}

#[test]
fn http_to_peers_not_granted_is_refused_through_redirects_and_aliases() {
    let work = tempfile::tempdir().unwrap();
    let granted = work.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    // The forbidden server holds "secrets"; the granted one redirects to it.
    let (forbidden, forbidden_hits) =
        http_server("HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecret");
    let redirect: &'static str = Box::leak(
        format!(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{forbidden}/secret\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .into_boxed_str(),
    );
    let (allowed, allowed_hits) = http_server(redirect);

    let attack = |id: &str, target: String| {
        let mut h = hostile("http", &granted);
        h["id"] = json!(id);
        h["target"] = json!(target);
        h["grants"]["net"] = json!([format!("127.0.0.1:{allowed}")]);
        h
    };
    // A name other than `localhost` that resolves to loopback (here: this machine's own
    // name, which /etc/hosts maps to 127.0.0.1), granted by name: a grant of a name must
    // not lead into this host.
    let own_name = loopback_name();
    let mut rebind = attack("rebind", format!("http://{own_name}:{forbidden}/"));
    rebind["grants"]["net"] = json!([format!("{own_name}:{forbidden}")]);
    let o = run_with(
        work.path(),
        vec![
            attack("redirect", format!("http://127.0.0.1:{allowed}/")),
            attack("alias", format!("http://localhost:{forbidden}/")),
            attack("direct", format!("http://127.0.0.1:{forbidden}/")),
            rebind,
        ],
        json!({}),
    );
    assert_good_source_stored_alone(&o);
    assert!(
        o.run.stderr.contains(&format!(
            "denied: {own_name} resolves to the internal address"
        )),
        "{}",
        o.run.stderr
    );
    for id in ["redirect", "alias", "direct", "rebind"] {
        let e = o.error(id);
        assert!(e.contains("refused") || e.contains("denied"), "{id}: {e}");
    }
    assert!(
        allowed_hits.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the granted server was reached"
    );
    assert_eq!(
        forbidden_hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no request reached the server that was not granted"
    );
    assert!(
        o.run
            .stderr
            .contains("denied: no net grant matches 127.0.0.1"),
        "{}",
        o.run.stderr
    );
}

/// This machine's host name, which must resolve to a loopback address (as /etc/hosts
/// makes it on Debian and in CI).
fn loopback_name() -> String {
    use std::net::ToSocketAddrs;
    let name = String::from_utf8(
        std::process::Command::new("hostname")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let loopback = (name.as_str(), 80)
        .to_socket_addrs()
        .map(|mut a| a.any(|a| a.ip().is_loopback()))
        .unwrap_or(false);
    assert!(
        loopback && name != "localhost",
        "this test needs the host name ({name:?}) to resolve to a loopback address, \
         as /etc/hosts does on Debian"
    );
    name
}

#[test]
fn time_for_all_calls_and_instance_counts_are_limited_too() {
    let work = tempfile::tempdir().unwrap();
    let granted = work.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    let mut spin = hostile("spin", &granted);
    spin["limits"] = json!({"call_seconds": 600, "total_seconds": 2});
    let mut crowded = hostile("good", &granted);
    crowded["id"] = json!("crowded");
    crowded["limits"] = json!({"instances": 1});
    let started = Instant::now();
    let o = run_with(work.path(), vec![spin, crowded], json!({}));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert_good_source_stored_alone(&o);
    let e = o.error("spin");
    assert!(e.contains("limits.total_seconds"), "{e}");
    let e = o.error("crowded");
    assert!(e.contains("limits.instances"), "{e}");
}

#[test]
fn malformed_dump_info_is_refused_or_cut_down() {
    let work = tempfile::tempdir().unwrap();
    let granted = work.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    let o = run_with(
        work.path(),
        vec![
            hostile("bad-kind", &granted),
            hostile("warning-flood", &granted),
            hostile("huge-error", &granted),
        ],
        json!({}),
    );
    // A 10 MiB error message is cut to a readable size wherever it goes.
    let e = o.error("huge-error");
    assert!(
        e.len() < 4000 && e.contains("more bytes]"),
        "{} bytes",
        e.len()
    );
    assert!(
        o.run.stderr.len() < 1 << 20,
        "{} bytes of stderr",
        o.run.stderr.len()
    );
    let e = o.error("bad-kind");
    assert!(e.contains("the plugin named its artifact kind"), "{e}");
    assert!(
        files_under(&o.dest).iter().all(|f| !f.contains("etc")),
        "{:?}",
        files_under(&o.dest)
    );
    // Stored, with its warnings cut to a readable few.
    let flood = o.source("warning-flood");
    assert_eq!(flood["ok"], true, "{flood}");
    let warnings = flood["warnings"].as_array().expect("warnings listed");
    assert!(warnings.len() <= 21, "{} warnings", warnings.len());
    assert!(
        warnings
            .last()
            .unwrap()
            .as_str()
            .unwrap()
            .contains("9980 more warnings"),
        "{warnings:?}"
    );
    assert!(
        o.run.stdout.len() < 200_000,
        "report of {} bytes",
        o.run.stdout.len()
    );
}
