use super::*;
use serde_json::json;

fn parse(v: serde_json::Value) -> Result<Job> {
    Job::parse(Path::new("/etc/backups/job.json"), &v.to_string())
}

fn minimal() -> serde_json::Value {
    json!({
        "hostname": "h",
        "sources": [{"id": "etc", "type": "folder", "path": "/etc", "passphrase": "pw-pw-pw"}],
        "destinations": [{"id": "d", "type": "local", "path": "/mnt"}]
    })
}

#[test]
fn the_legacy_readme_example_parses() {
    // The "Complete Example" of the legacy README, minus its trailing commas (JSON that
    // Python's json module would also have refused).
    let job = parse(json!({
        "tmpdir": "/var/tmp/folderdumps",
        "modules": ["backups.sources.folder", "backups.sources.mysql",
                    "backups.destinations.s3", "backups.notifications.smtp"],
        "sources": [
            {"id": "config", "type": "folder", "name": "Live server config", "path": "/etc",
             "passphrase": "youllneverguesswhat"},
            {"id": "db", "type": "mysql", "name": "Live server database", "path": "/data",
             "passphrase": "youllneverguesswhat"}
        ],
        "destinations": [{"id": "myamazon", "type": "s3", "bucket": "b", "region": "eu-west-1",
                          "credentials": {"aws_access_key_id": "K", "aws_secret_access_key": "S"}}],
        "notifications": []
    }))
    .unwrap();
    assert_eq!(job.sources.len(), 2);
    assert_eq!(job.tmpdir, PathBuf::from("/var/tmp/folderdumps"));
    assert_eq!(job.sources[1].kind, "mysql");
    assert!(matches!(
        job.sources[0].encryption,
        Some(Encryption::Passphrase(_))
    ));
    // Host keys are not passed to plugins; the plugin's own keys are.
    assert!(!job.sources[0].plugin_config.contains_key("passphrase"));
    assert_eq!(job.sources[0].plugin_config["path"], "/etc");
    assert_eq!(job.name, "job");
}

#[test]
fn legacy_flags_accept_numbers_booleans_and_strings() {
    let mut v = minimal();
    v["sources"][0]["compress_only"] = json!(1);
    v["destinations"][0]["retention_copies"] = json!("7");
    let job = parse(v).unwrap();
    assert!(matches!(job.sources[0].encryption, Some(Encryption::None)));
    assert_eq!(job.destinations[0].retention_copies, Some(7));
}

#[test]
fn notifications_without_id_get_one_from_their_type() {
    let mut v = minimal();
    v["notifications"] = json!([{"type": "flagfile", "flagfile": "/x/ok"}]);
    let job = parse(v).unwrap();
    assert_eq!(job.notifications[0].id, "flagfile-0");
}

#[test]
fn errors_name_the_file_and_key() {
    let mut v = minimal();
    v["destinations"][0]["retention_days"] = json!(-3);
    let err = parse(v).unwrap_err().to_string();
    assert!(
        err.contains("/etc/backups/job.json: destinations[0].retention_days"),
        "{err}"
    );

    let mut v = minimal();
    v["sources"][0]["id"] = json!("../etc");
    let err = parse(v).unwrap_err().to_string();
    assert!(err.contains("sources[0].id"), "{err}");

    let mut v = minimal();
    let first = v["sources"][0].clone();
    v["sources"].as_array_mut().unwrap().push(first);
    let err = parse(v).unwrap_err().to_string();
    assert!(err.contains("used twice"), "{err}");
}

#[test]
fn unknown_top_level_keys_warn() {
    let mut v = minimal();
    v["colour"] = json!("blue");
    let job = parse(v).unwrap();
    assert!(
        job.warnings.iter().any(|w| w.contains("\"colour\"")),
        "{:?}",
        job.warnings
    );
}

#[test]
fn secret_references_resolve_and_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s");
    std::fs::write(&file, "from-a-file\n").unwrap();
    let mut v = minimal();
    v["sources"][0]["passphrase"] = json!({"file": file});
    v["destinations"][0]["credentials"] = json!({"password": {"file": file}});
    let job = parse(v).unwrap();
    assert!(
        matches!(&job.sources[0].encryption, Some(Encryption::Passphrase(p)) if p == "from-a-file")
    );
    assert_eq!(
        job.destinations[0].plugin_config["credentials"]["password"],
        "from-a-file"
    );
    assert!(
        job.destinations[0]
            .secrets
            .contains(&"from-a-file".to_string())
    );
}

#[test]
fn secret_values_follow_dotted_keys() {
    let config = json!({"credentials": {"password": "p4ss", "username": "u"}, "token": "t0k3n"});
    let map = config.as_object().unwrap();
    let found = secret_values(
        map,
        &[
            "credentials.password".into(),
            "token".into(),
            "missing".into(),
        ],
    );
    assert_eq!(found, ["p4ss", "t0k3n"]);
}

#[test]
fn secret_env_values_are_those_of_granted_variables_only() {
    // PATH and HOME are set wherever the tests run; only the granted one counts.
    let path = std::env::var("PATH").unwrap();
    let keys = ["env:PATH".into(), "env:HOME".into(), "PATH".into()];
    assert_eq!(secret_env_values(&keys, &["PATH".into()]), [path]);
    assert!(secret_env_values(&keys, &[]).is_empty());
}

#[test]
fn notifiers_get_a_short_call_limit_unless_they_set_one() {
    let mut v = minimal();
    v["notifications"] = json!([
        {"type": "flagfile", "flagfile": "/x/ok"},
        {"type": "flagfile", "flagfile": "/y/ok", "limits": {"call_seconds": 900}}
    ]);
    let job = parse(v).unwrap();
    assert_eq!(
        job.notifications[0].limits.call_seconds,
        NOTIFIER_CALL_SECONDS
    );
    assert_eq!(job.notifications[1].limits.call_seconds, 900);
    assert_eq!(
        job.sources[0].limits.call_seconds,
        Limits::default().call_seconds
    );
}
