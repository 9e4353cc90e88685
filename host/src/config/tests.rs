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
    v["destinations"][0]["retention_days"] = json!("a week");
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

#[test]
fn legacy_retention_zero_or_less_is_no_rule_and_null_modules_are_the_default() {
    let mut v = minimal();
    v["destinations"][0]["retention_days"] = json!(-1);
    v["destinations"][0]["retention_copies"] = json!("0");
    v["modules"] = json!(null);
    let job = parse(v).unwrap();
    assert_eq!(job.destinations[0].retention_days, None);
    assert_eq!(job.destinations[0].retention_copies, None);
    assert!(job.modules.is_empty());
}

#[test]
fn legacy_module_names_serve_their_types() {
    for (module, kind) in [
        ("backups.sources.postgresql", "pgsql"),
        ("backups.sources.folderssh", "folder-ssh"),
        ("backups.sources.mysqlssh", "mysql-ssh"),
        ("backups.sources.lvmssh", "lvm-ssh"),
        ("backups.sources.rdspostgresql", "rds-pgsql"),
        ("backups.sources.azure_managed_disk", "azure-managed-disk"),
        ("backups.notifications.email", "smtp"),
        ("backups.destinations.s3", "s3"),
    ] {
        assert!(module_serves(module, kind), "{module} → {kind}");
    }
    assert!(!module_serves("backups.sources.mysql", "pgsql"));
}

#[test]
fn a_url_secret_by_userinfo_hides_the_password_not_the_host() {
    let config =
        json!({"url": "https://elastic:s3cr3t@es.example.com:9200/x", "plain": "http://es:9200"});
    let map = config.as_object().unwrap();
    assert_eq!(
        secret_values(map, &["url@userinfo".into(), "plain@userinfo".into()]),
        vec!["s3cr3t".to_string()]
    );
}

#[test]
fn compress_only_means_what_the_legacy_tool_read_and_refuses_the_ambiguous() {
    for (value, unencrypted) in [(json!(1), true), (json!(true), true), (json!(0), false)] {
        let mut v = minimal();
        v["sources"][0]["compress_only"] = value.clone();
        let job = parse(v).unwrap();
        assert_eq!(
            matches!(job.sources[0].encryption, Some(Encryption::None)),
            unencrypted,
            "{value}"
        );
    }
    for value in [json!("1"), json!("yes"), json!(2)] {
        let mut v = minimal();
        v["sources"][0]["compress_only"] = value.clone();
        let err = parse(v).unwrap_err().to_string();
        assert!(err.contains("sources[0].compress_only"), "{value}: {err}");
    }
}

#[test]
fn legacy_copies_is_read_unless_a_destination_says_manage() {
    let job = parse(minimal()).unwrap();
    assert_eq!(job.destinations[0].legacy_copies, LegacyCopies::Read);
    let mut v = minimal();
    v["destinations"][0]["legacy_copies"] = json!("manage");
    let job = parse(v).unwrap();
    assert_eq!(job.destinations[0].legacy_copies, LegacyCopies::Manage);
    assert!(
        !job.destinations[0]
            .plugin_config
            .contains_key("legacy_copies")
    );

    for (list, value) in [
        ("destinations", json!("delete")),
        ("destinations", json!(true)),
        ("sources", json!("manage")),
    ] {
        let mut v = minimal();
        v[list][0]["legacy_copies"] = value;
        let err = parse(v).unwrap_err().to_string();
        assert!(err.contains(&format!("{list}[0].legacy_copies")), "{err}");
    }
}
