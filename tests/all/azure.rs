//! The `azure-managed-disk` source against a stub of Microsoft Entra ID's token endpoint
//! and of Azure Resource Manager's disks and snapshots (tests/servers/azure_arm.py): no
//! emulator covers ARM compute, so the stub follows the published REST API for the calls
//! the source makes (client-credentials token, disk GET, snapshot PUT answered 202 with
//! `Azure-AsyncOperation`, polled `InProgress` then `Succeeded` or `Failed`, paged
//! listings with `nextLink`, DELETE answered 202), checks tokens and api-versions, and
//! records every request. The tests assert on those requests, on the stub's snapshots,
//! and on the status record the run stored, decrypted with gpg.

use crate::support;

use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "0f3a5c2e-1b4d-4e6f-8a9b-0c1d2e3f4a5b";
const CLIENT_KEY: &str = "Zq8~stub.client-secret-for-backups-tests";
const SUBSCRIPTION: &str = "285adaab-abcd-41cc-1234-9f256543d534";
const SOURCE_GROUP: &str = "MC_KUBERNETES_AZURECLUSTER1_NORTHEUROPE";
const DEST_GROUP: &str = "MyBackupsResourceGroup";
const DISK: &str = "mydisk1";
const API_VERSION: &str = "2023-04-02";
const PASSPHRASE: &str = "pw-pw-pw";

fn disk_id(disk: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{SOURCE_GROUP}/providers/Microsoft.Compute/disks/{disk}"
    )
}

/// The stub on two ports (ARM, login), its request log and its state, and a work
/// directory for the job, its tmpdir and a local destination.
struct Azure {
    server: Server,
    login_port: u16,
    dir: tempfile::TempDir,
}

impl Azure {
    fn start(args: &[&str]) -> Azure {
        let dir = tempfile::tempdir().unwrap();
        let (port, login_port) = (free_port(), free_port());
        let script = server_script("azure_arm.py");
        let server = start_server(
            Command::new("python3")
                .arg(script)
                .args(["--port", &port.to_string()])
                .args(["--login-port", &login_port.to_string()])
                .arg("--log")
                .arg(dir.path().join("requests.jsonl"))
                .arg("--store")
                .arg(dir.path().join("store"))
                .args(["--tenant", TENANT, "--client-id", CLIENT_ID])
                .args([
                    "--client-secret",
                    CLIENT_KEY,
                    "--subscription",
                    SUBSCRIPTION,
                ])
                .args(["--disk", &format!("{SOURCE_GROUP}/{DISK}")])
                .args(["--disk", &format!("{SOURCE_GROUP}/otherdisk")])
                .args(["--group", DEST_GROUP])
                .args(args),
            port,
            "the Azure ARM stub",
        );
        // Both ports are bound before either serves: the login port is up too.
        Azure {
            server,
            login_port,
            dir,
        }
    }

    fn arm_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    fn login_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.login_port)
    }

    fn work(&self) -> &Path {
        self.dir.path()
    }

    fn dest(&self) -> PathBuf {
        self.work().join("dest")
    }

    fn source(&self, disk: &str) -> Value {
        json!({"id": "mydisk1", "type": "azure-managed-disk", "name": "My Disk 1",
               "subscription_id": SUBSCRIPTION, "source_resource_group": SOURCE_GROUP,
               "destination_resource_group": DEST_GROUP, "disk_name": disk,
               "retain_snapshots": 2, "wait_minutes": 2,
               "management_endpoint": self.arm_url(), "login_endpoint": self.login_url(),
               "passphrase": PASSPHRASE})
    }

    fn job(&self, source: Value) -> PathBuf {
        fs::create_dir_all(self.dest()).unwrap();
        write_job(
            self.work(),
            &json!({"hostname": "h", "tmpdir": self.work().join("tmp"), "sources": [source],
                    "destinations": [{"id": "disk", "type": "local", "path": self.dest()}]}),
        )
    }

    /// `backups run --json JOB` with the service principal in the environment (with
    /// `secret` as its client secret), at `now`.
    fn run(&self, job: &Path, secret: &str, now: &str) -> Run {
        run(backups()
            .env("TENANT_ID", TENANT)
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_KEY", secret)
            .env("BACKUPS_NOW", now)
            .args(["run", "--json"])
            .arg(job))
    }

    fn requests(&self) -> Vec<Value> {
        recorded(&self.work().join("requests.jsonl"))
    }

    fn calls(&self, operation: &str) -> Vec<Value> {
        stub_calls(self.work(), operation)
    }

    fn state(&self) -> Value {
        stub_state(self.work())
    }

    /// The stub's snapshots in the destination group, by name, with their state.
    fn snapshots(&self) -> Vec<(String, String)> {
        self.state()["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    s["properties"]["provisioningState"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect()
    }

    /// The status record stored for the run of `day` (`yyyy-mm-dd`), decrypted with gpg.
    fn status(&self, day: &str) -> Value {
        let artifact = artifacts(&self.dest())
            .into_iter()
            .find(|a| {
                let shown = a.display().to_string();
                shown.contains(&format!("/{day}/")) && shown.ends_with("/mydisk1.json.gz.gpg")
            })
            .unwrap_or_else(|| panic!("no status record of {day}: {:?}", artifacts(&self.dest())));
        let plain = gunzip(&Gpg::new().decrypt(&artifact, Some(PASSPHRASE)));
        serde_json::from_slice(&plain).unwrap()
    }
}

fn report(r: &Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

/// The source's error in a failed run's report, after checking the run failed, nothing
/// was stored, and neither client secret appears anywhere in the output.
fn source_error(r: &Run, azure: &Azure) -> String {
    assert_eq!(r.code, 1, "a failed source fails the run");
    let source = report(r)["sources"][0].clone();
    assert_eq!(source["ok"], false, "{source}");
    assert!(
        artifacts(&azure.dest()).is_empty(),
        "nothing is uploaded for a failed source"
    );
    for secret in [CLIENT_KEY, "not-the-client-secret"] {
        assert!(!r.all().contains(secret), "a client secret leaked");
    }
    source["error"].as_str().unwrap().to_string()
}

#[test]
fn a_run_snapshots_the_disk_waits_for_it_and_stores_its_status() {
    let azure = Azure::start(&[]);
    let job = azure.job(azure.source(DISK));

    // The derived grants: exactly the two endpoints, and the three variables.
    let check = run(backups().arg("check").arg(&job));
    assert_eq!(check.code, 0, "{}", check.stderr);
    let grants: Vec<&str> = check
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("net ") || l.starts_with("env "))
        .collect();
    let net: Vec<String> = grants
        .iter()
        .filter(|l| l.starts_with("net "))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    assert_eq!(
        net,
        [azure.login_url(), azure.arm_url()],
        "{}",
        check.stdout
    );
    for name in ["TENANT_ID", "CLIENT_ID", "CLIENT_KEY"] {
        assert!(
            grants
                .iter()
                .any(|l| l.split_whitespace().nth(1) == Some(name)),
            "{}",
            check.stdout
        );
    }

    let r = azure.run(&job, CLIENT_KEY, "2026-03-01T02:00:00Z");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let name = "mydisk1-backups-20260301T020000Z";

    // The token: the client-credentials grant for ARM, at the tenant's endpoint.
    let tokens = azure.calls("token");
    assert_eq!(tokens.len(), 1, "one token for the whole run");
    assert_eq!(tokens[0]["path"], format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(tokens[0]["status"], 200);
    let form = &tokens[0]["form"];
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], CLIENT_KEY);
    assert_eq!(form["scope"], "https://management.azure.com/.default");
    let issued = azure.state()["tokens"][0].as_str().unwrap().to_string();

    // Every ARM call carries that token and the api-version.
    let arm: Vec<Value> = azure
        .requests()
        .into_iter()
        .filter(|r| r["role"] == "arm")
        .collect();
    assert!(!arm.is_empty());
    for call in &arm {
        assert_eq!(call["headers"]["authorization"], format!("Bearer {issued}"));
        assert_eq!(call["query"]["api-version"], API_VERSION, "{call}");
        assert!(
            call["status"].as_u64().unwrap() < 300,
            "no call was refused: {call}"
        );
    }

    // The disk was read, then the snapshot was put: a copy of that disk, in its region,
    // tagged as this plugin's for this disk.
    let disk = azure.calls("get-disk");
    assert_eq!(
        disk[0]["path"],
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{SOURCE_GROUP}/providers/Microsoft.Compute/disks/{DISK}"
        )
    );
    let put = azure.calls("put-snapshot");
    assert_eq!(put.len(), 1);
    assert_eq!(
        put[0]["path"],
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{DEST_GROUP}/providers/Microsoft.Compute/snapshots/{name}"
        )
    );
    assert_eq!(put[0]["status"], 202);
    let body = &put[0]["json"];
    assert_eq!(body["location"], "northeurope");
    assert_eq!(body["properties"]["creationData"]["createOption"], "Copy");
    assert_eq!(
        body["properties"]["creationData"]["sourceResourceId"],
        disk_id(DISK)
    );
    assert_eq!(body["tags"]["created-by"], "backups");
    assert_eq!(body["tags"]["backups-source-disk"], disk_id(DISK));
    assert_eq!(body["tags"]["backups-entry"], "mydisk1");

    // The operation was polled until it ended: InProgress once, then Succeeded; and the
    // waiting was logged.
    let polls = azure.calls("poll-operation");
    assert_eq!(polls.len(), 2, "{polls:?}");
    assert!(polls.iter().all(|p| p["query"].get("monitor").is_none()));
    assert!(
        r.stderr
            .contains("snapshot mydisk1-backups-20260301T020000Z: in progress"),
        "{}",
        r.stderr
    );
    assert_eq!(
        azure.snapshots(),
        [(name.to_string(), "Succeeded".to_string())]
    );

    // The stored status record, decrypted with stock gpg, names the snapshot.
    let status = azure.status("2026-03-01");
    assert_eq!(status["snapshot"]["name"], name);
    assert_eq!(
        status["snapshot"]["id"],
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{DEST_GROUP}/providers/Microsoft.Compute/snapshots/{name}"
        )
    );
    assert_eq!(status["snapshot"]["provisioning_state"], "Succeeded");
    assert_eq!(status["source_disk"]["id"], disk_id(DISK));
    assert_eq!(status["retained"], json!([name]));
    assert_eq!(status["pruned"], json!([]));
}

#[test]
fn an_operation_with_only_a_location_is_polled_there_through_a_server_error() {
    // No `Azure-AsyncOperation`: the `Location` URL answers 202 while the operation runs.
    // The first poll gets a 500, which is logged and polled again, not a failed backup.
    let azure = Azure::start(&["--location-only", "--fault", "poll-operation:500:1"]);
    let job = azure.job(azure.source(DISK));
    let r = azure.run(&job, CLIENT_KEY, "2026-03-01T02:00:00Z");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let polls = azure.calls("poll-operation");
    let statuses: Vec<u64> = polls
        .iter()
        .map(|p| p["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 202, 200]);
    assert!(polls.iter().all(|p| p["query"]["monitor"] == "true"));
    assert!(r.stderr.contains("polling again"), "{}", r.stderr);
    let name = "mydisk1-backups-20260301T020000Z";
    assert_eq!(
        azure.snapshots(),
        [(name.to_string(), "Succeeded".to_string())]
    );
    assert_eq!(azure.status("2026-03-01")["snapshot"]["name"], name);
}

#[test]
fn retention_keeps_the_newest_own_snapshots_and_never_touches_others() {
    // In the destination group before any run: a snapshot made by hand (no tags), one
    // made by backups of another disk, and one that claims to be by someone else.
    let other_disk =
        json!({"created-by": "backups", "backups-source-disk": disk_id("otherdisk")}).to_string();
    let hand_made = format!("{DEST_GROUP}/mydisk1-by-hand=");
    let of_other_disk = format!("{DEST_GROUP}/otherdisk-backups-20200101T000000Z={other_disk}");
    let someone_elses = format!(
        "{DEST_GROUP}/mydisk1-other-tool={}",
        json!({"created-by": "another-tool", "backups-source-disk": disk_id(DISK)})
    );
    let azure = Azure::start(&[
        "--snapshot",
        &hand_made,
        "--snapshot",
        &of_other_disk,
        "--snapshot",
        &someone_elses,
    ]);
    let job = azure.job(azure.source(DISK));
    for day in 1..=4 {
        let r = azure.run(&job, CLIENT_KEY, &format!("2026-03-0{day}T02:00:00Z"));
        assert_eq!(r.code, 0, "{}", r.stderr);
    }

    let mut names: Vec<String> = azure.snapshots().into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "mydisk1-backups-20260303T020000Z",
            "mydisk1-backups-20260304T020000Z",
            "mydisk1-by-hand",
            "mydisk1-other-tool",
            "otherdisk-backups-20200101T000000Z",
        ],
        "the two newest own snapshots, and everything that is not ours"
    );

    // Only our old snapshots were ever deleted, each through its polled operation.
    let deleted: Vec<String> = azure
        .calls("delete-snapshot")
        .iter()
        .map(|d| {
            assert_eq!(d["status"], 202);
            d["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        deleted,
        [
            "mydisk1-backups-20260301T020000Z",
            "mydisk1-backups-20260302T020000Z"
        ]
    );
    // 4 creations and 2 deletions, each polled twice (InProgress, then Succeeded).
    assert_eq!(azure.calls("poll-operation").len(), 12);

    // The listings were followed page by page (two snapshots a page).
    let lists = azure.calls("list-snapshots");
    assert!(
        lists.iter().any(|l| l["query"]["$skiptoken"] == "4"),
        "nextLink was followed to the last page: {lists:?}"
    );

    let status = azure.status("2026-03-04");
    assert_eq!(
        status["retained"],
        json!([
            "mydisk1-backups-20260304T020000Z",
            "mydisk1-backups-20260303T020000Z"
        ])
    );
    assert_eq!(
        status["pruned"],
        json!(["mydisk1-backups-20260302T020000Z"])
    );
}

#[test]
fn a_wrong_client_secret_is_an_auth_error_naming_the_variable() {
    // A token endpoint that (unlike Entra ID) echoes the secret it got: the plugin declares
    // CLIENT_KEY secret (`env:CLIENT_KEY`), so the host redacts it from the error.
    let azure = Azure::start(&["--echo-client-secret"]);
    let job = azure.job(azure.source(DISK));
    let r = azure.run(&job, "not-the-client-secret", "2026-03-01T02:00:00Z");
    let error = source_error(&r, &azure);
    assert!(error.contains("(auth)"), "{error}");
    assert!(error.contains("CLIENT_KEY"), "{error}");
    assert!(error.contains("AADSTS7000215"), "{error}");
    assert!(error.contains("received '[REDACTED]'"), "{error}");
    assert_eq!(azure.calls("token").len(), 1);
    assert_eq!(azure.calls("token")[0]["status"], 401);
    assert!(
        azure.requests().iter().all(|r| r["role"] == "login"),
        "no ARM call without a token"
    );
}

#[test]
fn an_operation_that_fails_fails_the_run_with_arms_message() {
    let azure = Azure::start(&["--fail-snapshots", "1"]);
    let job = azure.job(azure.source(DISK));
    let r = azure.run(&job, CLIENT_KEY, "2026-03-01T02:00:00Z");
    let error = source_error(&r, &azure);
    assert!(error.contains("(permanent)"), "{error}");
    assert!(error.contains("ended Failed"), "{error}");
    assert!(
        error.contains("InternalDiskManagementError")
            && error.contains("error occurred while copying disk data"),
        "{error}"
    );
    assert_eq!(azure.calls("poll-operation").len(), 2);
    // Nothing was pruned on the way out.
    assert!(azure.calls("delete-snapshot").is_empty());
    assert!(azure.calls("list-snapshots").is_empty());
    let failed = "mydisk1-backups-20260301T020000Z";
    assert_eq!(
        azure.snapshots(),
        [(failed.to_string(), "Failed".to_string())]
    );

    // The next run succeeds; the failed snapshot holds no place among the two kept, and
    // goes.
    let r = azure.run(&job, CLIENT_KEY, "2026-03-02T02:00:00Z");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let made = "mydisk1-backups-20260302T020000Z";
    assert_eq!(
        azure.snapshots(),
        [(made.to_string(), "Succeeded".to_string())]
    );
    let status = azure.status("2026-03-02");
    assert_eq!(status["retained"], json!([made]));
    assert_eq!(status["pruned"], json!([failed]));
}

#[test]
fn a_missing_disk_is_not_found_naming_it() {
    let azure = Azure::start(&[]);
    let job = azure.job(azure.source("nosuchdisk"));
    let r = azure.run(&job, CLIENT_KEY, "2026-03-01T02:00:00Z");
    let error = source_error(&r, &azure);
    assert!(error.contains("(not found)"), "{error}");
    assert!(
        error.contains("\"nosuchdisk\"") && error.contains(SOURCE_GROUP),
        "{error}"
    );
    assert_eq!(azure.calls("get-disk")[0]["status"], 404);
    assert!(azure.calls("put-snapshot").is_empty());
    assert!(azure.snapshots().is_empty());
}

#[test]
fn ungranted_variables_are_denied_before_any_request() {
    let azure = Azure::start(&[]);
    let mut source = azure.source(DISK);
    // The entry's own grants replace the derived ones: the network, but no variables.
    source["grants"] = json!({"net": [azure.login_url(), azure.arm_url()]});
    let job = azure.job(source);
    let r = azure.run(&job, CLIENT_KEY, "2026-03-01T02:00:00Z");
    let error = source_error(&r, &azure);
    assert!(error.contains("(denied)"), "{error}");
    for name in ["TENANT_ID", "CLIENT_ID", "CLIENT_KEY", "grants.env"] {
        assert!(error.contains(name), "{name} in {error}");
    }
    assert!(azure.requests().is_empty(), "{:?}", azure.requests());
}

#[test]
fn bad_keys_are_invalid_config_naming_the_key() {
    let azure = Azure::start(&[]);
    for (key, value) in [
        ("disk_name", json!("../disks/x")),
        ("retain_snapshots", json!(0)),
        ("wait_minutes", json!(0)),
        ("management_endpoint", json!("ftp://example.invalid")),
    ] {
        let mut source = azure.source(DISK);
        source[key] = value;
        let job = azure.job(source);
        let r = azure.run(&job, CLIENT_KEY, "2026-03-01T02:00:00Z");
        assert_ne!(r.code, 0);
        let all = r.all();
        assert!(
            all.contains("invalid config") || all.contains("invalid-config"),
            "{key}: {all}"
        );
        assert!(all.contains(key), "{key}: {all}");
    }
    assert!(azure.requests().is_empty());
}
