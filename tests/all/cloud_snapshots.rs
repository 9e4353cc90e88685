//! The AWS snapshot sources against moto's server (RDS and EC2 APIs, on 127.0.0.1), with
//! the dumps made for real: `connect_host` maps the temporary RDS instance that moto
//! "restores" to the machine's MariaDB / PostgreSQL, whose test database the dump must
//! contain. Server state is checked with boto3 (an AWS client independent of ours), and
//! every artifact is decrypted with stock gpg.
//!
//! moto (5.2) behaviours these tests rely on, checked against the installed version:
//! `create_db_instance` makes an automated snapshot at once (whatever the backup
//! retention); restored instances are `available` at once, with an endpoint address
//! `<id>.aaaaaaaaaa.<region>.rds.amazonaws.com` and the source's port; `SnapshotType`
//! filters work and tags given on restore are kept; `delete_db_snapshot` removes an
//! automated snapshot (AWS itself refuses that; it is how "no automated snapshot" is made
//! here); and a restore copies the source's deletion protection even when the request says
//! `DeletionProtection=false` (moto applies only truthy overrides; AWS does not copy it) —
//! which is how a deletion that fails is provoked. EBS snapshots are `completed` at once.

use crate::support;

use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};
use support::*;

const REGION: &str = "eu-west-1";
const PASSPHRASE: &str = "pw-pw-pw";

fn aws_keys() -> Value {
    json!({"aws_access_key_id": "testing", "aws_secret_access_key": "testing"})
}

fn report(r: &Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

fn source_report(report: &Value, id: &str) -> Value {
    report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no source {id} in {report}"))
        .clone()
}

/// The destination's outcome for source `id` (the job has one destination).
fn destination_outcome_of(report: &Value, id: &str) -> Value {
    report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["source_id"] == id)
        .unwrap_or_else(|| panic!("no upload outcome for {id}: {report}"))
        .clone()
}

fn stored_for(work: &Path, id: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = artifacts(&work.join("dest"))
        .into_iter()
        .filter(|a| a.display().to_string().contains(&format!("/{id}.")))
        .collect();
    found.sort();
    found
}

/// The newest stored artifact of `id`, decrypted with gpg and gunzipped.
fn newest_artifact(work: &Path, id: &str) -> Vec<u8> {
    let newest = stored_for(work, id)
        .pop()
        .unwrap_or_else(|| panic!("no artifact for {id}"));
    gunzip(&Gpg::new().decrypt(&newest, Some(PASSPHRASE)))
}

// ---------------------------------------------------------------- RDS

/// The DB instance identifiers moto knows in the region.
fn db_instances(moto: &Moto) -> Vec<String> {
    let out = moto.boto3(&format!(
        "rds = client('rds', '{REGION}')\n\
         print(json.dumps([d['DBInstanceIdentifier'] for d in rds.describe_db_instances()['DBInstances']]))"
    ));
    serde_json::from_str(out.trim()).unwrap()
}

/// A source instance in moto with its automated snapshot (which moto makes on create).
fn create_source_instance(moto: &Moto, name: &str, engine: &str, extra: &str) {
    let out = moto.boto3(&format!(
        "rds = client('rds', '{REGION}')\n\
         rds.create_db_instance(DBInstanceIdentifier='{name}', DBInstanceClass='db.t3.small', \
           Engine='{engine}', MasterUsername='admin', MasterUserPassword='secret123', \
           AllocatedStorage=20, BackupRetentionPeriod=7{extra})\n\
         snaps = rds.describe_db_snapshots(DBInstanceIdentifier='{name}', SnapshotType='automated')['DBSnapshots']\n\
         print(len(snaps))"
    ));
    assert_eq!(
        out.trim(),
        "1",
        "moto made no automated snapshot of {name}; these tests need one"
    );
}

/// A MariaDB database with known rows and a read-only user who may dump it: (database,
/// user, password), dropped with the guard.
fn mariadb_rows(tag: &str) -> (String, String, String, Cleanup) {
    let (db, user) = (unique(tag), unique(&format!("u_{tag}")));
    let password = format!("pw-{}", std::process::id());
    mariadb(&format!(
        "CREATE DATABASE {db};
         USE {db};
         CREATE TABLE planets (id INT PRIMARY KEY, name VARCHAR(40));
         INSERT INTO planets VALUES (1, 'mercury-{db}'), (2, 'venus-{db}'), (3, 'earth-{db}');
         CREATE USER '{user}'@'%' IDENTIFIED BY '{password}';
         GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT ON {db}.* TO '{user}'@'%';"
    ));
    let cleanup = Cleanup::mariadb(&[&db], &[&user]);
    (db, user, password, cleanup)
}

fn rds_source(moto: &Moto, id: &str, instance: &str, db: &str, user: &str, pw: &str) -> Value {
    json!({"id": id, "type": "rds", "instancename": instance, "region": REGION,
           "security_group": "sg-0123456789abcdef0", "instance_class": "db.t3.micro",
           "dbname": db, "dbuser": user, "dbpass": pw, "credentials": aws_keys(),
           "endpoint_url": moto.url(), "connect_host": "127.0.0.1",
           "passphrase": PASSPHRASE})
}

fn temporaries(moto: &Moto) -> Vec<String> {
    db_instances(moto)
        .into_iter()
        .filter(|n| n.starts_with("bk-"))
        .collect()
}

#[test]
fn rds_dumps_a_restored_copy_and_deletes_it() {
    let moto = Moto::start();
    let (db, user, pw, _rows) = mariadb_rows("rds_ok");
    create_source_instance(&moto, "livedb1", "mysql", "");

    let work = tempfile::tempdir().unwrap();
    let job = job_to_local_disk(
        work.path(),
        vec![rds_source(&moto, "livedb", "livedb1", &db, &user, &pw)],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 0);
    assert!(!r.all().contains(&pw), "the password leaked");
    assert!(
        r.stderr.contains("restoring snapshot rds:livedb1-")
            && r.stderr.contains("to the temporary instance bk-livedb-"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("is available"), "{}", r.stderr);

    let dump = String::from_utf8(newest_artifact(work.path(), "livedb")).unwrap();
    assert!(dump.contains("CREATE TABLE `planets`"), "{dump}");
    for planet in ["mercury", "venus", "earth"] {
        assert!(dump.contains(&format!("'{planet}-{db}'")), "{dump}");
    }
    assert_eq!(
        db_instances(&moto),
        vec!["livedb1".to_string()],
        "the temporary instance is gone, the source instance is still there"
    );
}

#[test]
fn a_failed_dump_fails_the_source_and_still_deletes_the_temporary_instance() {
    let moto = Moto::start();
    let (db, user, pw, _rows) = mariadb_rows("rds_fail");
    create_source_instance(&moto, "livedb1", "mysql", "");
    let work = tempfile::tempdir().unwrap();
    let wrong = "wrong-password-123";
    let job = job_to_local_disk(
        work.path(),
        vec![
            rds_source(&moto, "wrongpw", "livedb1", &db, &user, wrong),
            rds_source(&moto, "nodb", "livedb1", &unique("no_such_db"), &user, &pw),
        ],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 1, "a failed source fails the run");
    let report = report(&r);
    for (id, reason) in [("wrongpw", "Access denied"), ("nodb", "no_such_db")] {
        let upload = destination_outcome_of(&report, id);
        assert_eq!(upload["ok"], false);
        assert_eq!(upload["error"], "not uploaded: the source failed");
        let source = source_report(&report, id);
        assert_eq!(source["ok"], false);
        let error = source["error"].as_str().unwrap();
        assert!(
            error.contains("mysqldump") && error.contains(reason),
            "{error}"
        );
        assert!(stored_for(work.path(), id).is_empty(), "{id} was uploaded");
    }
    assert!(!r.all().contains(wrong) && !r.all().contains(&pw));
    assert_eq!(
        r.stderr
            .matches("deleted the temporary instance bk-")
            .count(),
        2,
        "{}",
        r.stderr
    );
    assert_eq!(db_instances(&moto), vec!["livedb1".to_string()]);
}

/// A job with one `rds` source `id` on moto's `livedb1`, whose mysqldump is a stand-in
/// shell `script` found first on the returned PATH.
fn stand_in_dump_job(moto: &Moto, work: &Path, id: &str, script: &str) -> (PathBuf, String) {
    create_source_instance(moto, "livedb1", "mysql", "");
    let bin = work.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let stub = bin.join("mysqldump");
    fs::write(&stub, format!("#!/bin/sh\n{script}\n")).unwrap();
    fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let job = job_to_local_disk(
        work,
        vec![rds_source(
            moto,
            id,
            "livedb1",
            "anydb",
            "anyuser",
            &format!("pw-{id}-1"),
        )],
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    (job, path)
}

#[test]
fn a_dump_killed_half_way_still_deletes_the_temporary_instance() {
    // What an interrupted run looks like to the plugin: the host kills the dump command
    // (here a stand-in mysqldump on PATH that prints half a dump and is then killed).
    let moto = Moto::start();
    let work = tempfile::tempdir().unwrap();
    let (job, path) = stand_in_dump_job(
        &moto,
        work.path(),
        "killed",
        "echo 'CREATE TABLE half (id int);'\nkill -TERM $$",
    );
    let r = run(backups()
        .env("PATH", path)
        .args(["run", "--json"])
        .arg(&job));
    assert_eq!(r.code, 1);
    let error = source_report(&report(&r), "killed")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("killed by signal 15"), "{error}");
    assert!(stored_for(work.path(), "killed").is_empty());
    assert!(
        r.stderr
            .contains("deleted the temporary instance bk-killed-"),
        "{}",
        r.stderr
    );
    assert_eq!(db_instances(&moto), vec!["livedb1".to_string()]);
}

#[test]
fn sigterm_during_the_dump_still_deletes_the_temporary_instance() {
    // An operator (or systemd) stops the run while mysqldump is busy: the host kills the
    // dump, the plugin deletes its temporary instance, and the run fails.
    let moto = Moto::start();
    let work = tempfile::tempdir().unwrap();
    let (job, path) = stand_in_dump_job(
        &moto,
        work.path(),
        "stopped",
        "echo 'CREATE TABLE half (id int);'\nexec sleep 985",
    );
    let child = backups()
        .env("PATH", path)
        .args(["run", "--json"])
        .arg(&job)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let dumping = || {
        fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ") == "sleep 985 ")
            })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !dumping() {
        assert!(
            std::time::Instant::now() < deadline,
            "the dump never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A temporary instance exists while the dump runs.
    assert_eq!(db_instances(&moto).len(), 2);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stopped: the run was interrupted"),
        "{stderr}"
    );
    assert!(
        stderr.contains("deleted the temporary instance bk-stopped-"),
        "{stderr}"
    );
    assert!(!dumping(), "the dump outlived the run");
    assert!(stored_for(work.path(), "stopped").is_empty());
    assert_eq!(db_instances(&moto), vec!["livedb1".to_string()]);
}

#[test]
fn orphans_of_killed_runs_are_swept_and_reported_others_are_left_alone() {
    let moto = Moto::start();
    let (db, user, pw, _rows) = mariadb_rows("rds_orph");
    create_source_instance(&moto, "livedb1", "mysql", "");
    // What a run killed after its restore leaves behind, and three look-alikes that are
    // not this entry's: no tags, another entry's tags, another job's tags.
    let tags = |job: &str, entry: &str| {
        format!(
            "[{{'Key': 'backups:temporary', 'Value': 'true'}}, {{'Key': 'backups:job', 'Value': '{job}'}}, \
             {{'Key': 'backups:entry', 'Value': '{entry}'}}, {{'Key': 'backups:run', 'Value': '20000101T000000Z-1'}}]"
        )
    };
    moto.boto3(&format!(
        "rds = client('rds', '{REGION}')\n\
         def make(name, tags):\n    \
           rds.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass='db.t3.micro', Engine='mysql', \
             MasterUsername='admin', MasterUserPassword='secret123', AllocatedStorage=20, Tags=tags)\n\
         make('bk-livedb-20000101t000000z-1', {})\n\
         make('bk-livedb-untagged', [])\n\
         make('bk-livedb-other-entry', {})\n\
         make('bk-livedb-other-job', {})\n",
        tags("job", "livedb"),
        tags("job", "livedb-2"),
        tags("another-job", "livedb"),
    ));

    let work = tempfile::tempdir().unwrap();
    let job = job_to_local_disk(
        work.path(),
        vec![rds_source(&moto, "livedb", "livedb1", &db, &user, &pw)],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 0);
    let source = source_report(&report(&r), "livedb");
    let warnings = source["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.contains("deleted the temporary instance bk-livedb-20000101t000000z-1")
            && warning.contains("left behind by run 20000101T000000Z-1"),
        "{warning}"
    );
    let mut left = db_instances(&moto);
    left.sort();
    assert_eq!(
        left,
        [
            "bk-livedb-other-entry",
            "bk-livedb-other-job",
            "bk-livedb-untagged",
            "livedb1"
        ],
        "only the orphan (and this run's own temporary instance) were deleted"
    );
    let dump = String::from_utf8(newest_artifact(work.path(), "livedb")).unwrap();
    assert!(dump.contains(&format!("'earth-{db}'")));
}

#[test]
fn a_temporary_instance_that_cannot_be_deleted_fails_the_source_and_is_named() {
    let moto = Moto::start();
    let (db, user, pw, _rows) = mariadb_rows("rds_undel");
    // moto copies the source's deletion protection to the restored instance (see the top
    // of this file), so RDS refuses to delete it.
    create_source_instance(&moto, "protected1", "mysql", ", DeletionProtection=True");
    let work = tempfile::tempdir().unwrap();
    let job = job_to_local_disk(
        work.path(),
        vec![rds_source(&moto, "livedb", "protected1", &db, &user, &pw)],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 1);
    let orphans = temporaries(&moto);
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    let orphan = &orphans[0];
    let source = source_report(&report(&r), "livedb");
    assert_eq!(source["ok"], false);
    let error = source["error"].as_str().unwrap();
    for part in [
        format!("the temporary instance {orphan} was NOT deleted"),
        "Cannot delete protected DB Instance".to_string(),
        format!(
            "aws rds delete-db-instance --region {REGION} --db-instance-identifier {orphan} --skip-final-snapshot"
        ),
        "--no-deletion-protection".to_string(),
    ] {
        assert!(error.contains(&part), "{part:?} not in {error}");
    }
    assert!(
        stored_for(work.path(), "livedb").is_empty(),
        "a source that failed uploads nothing, complete dump or not"
    );
    assert_eq!(
        destination_outcome_of(&report(&r), "livedb")["error"],
        "not uploaded: the source failed"
    );
    // The orphan is what the plugin asked for: class, security group and tags.
    let described = moto.boto3(&format!(
        "rds = client('rds', '{REGION}')\n\
         d = rds.describe_db_instances(DBInstanceIdentifier='{orphan}')['DBInstances'][0]\n\
         print(json.dumps({{'class': d['DBInstanceClass'], \
           'groups': [g['VpcSecurityGroupId'] for g in d['VpcSecurityGroups']], \
           'tags': {{t['Key']: t['Value'] for t in d['TagList']}}}}))"
    ));
    let described: Value = serde_json::from_str(described.trim()).unwrap();
    assert_eq!(described["class"], "db.t3.micro");
    assert_eq!(described["groups"], json!(["sg-0123456789abcdef0"]));
    assert_eq!(described["tags"]["backups:temporary"], "true");
    assert_eq!(described["tags"]["backups:job"], "job");
    assert_eq!(described["tags"]["backups:entry"], "livedb");
    let run_id = described["tags"]["backups:run"].as_str().unwrap();
    assert_eq!(
        *orphan,
        format!("bk-livedb-{}", run_id.to_lowercase()),
        "named after its entry and run"
    );
}

#[test]
fn no_automated_snapshot_is_a_clear_not_found_and_restores_nothing() {
    let moto = Moto::start();
    create_source_instance(&moto, "nobackups1", "mysql", "");
    // AWS would refuse this; moto lets us take the instance's automated snapshot away.
    moto.boto3(&format!(
        "rds = client('rds', '{REGION}')\n\
         for s in rds.describe_db_snapshots(DBInstanceIdentifier='nobackups1')['DBSnapshots']:\n    \
           rds.delete_db_snapshot(DBSnapshotIdentifier=s['DBSnapshotIdentifier'])"
    ));
    let work = tempfile::tempdir().unwrap();
    let job = job_to_local_disk(
        work.path(),
        vec![
            rds_source(&moto, "nosnap", "nobackups1", "x", "u", "p"),
            rds_source(&moto, "noinstance", "no-such-instance", "x", "u", "p"),
        ],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 1);
    let report = report(&r);
    for (id, name) in [("nosnap", "nobackups1"), ("noinstance", "no-such-instance")] {
        let error = source_report(&report, id)["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            error.contains(&format!(
                "instancename {name:?}: no available automated snapshot"
            )),
            "{error}"
        );
        assert!(stored_for(work.path(), id).is_empty());
    }
    assert!(temporaries(&moto).is_empty());
    assert!(
        !r.stderr.contains("restoring snapshot"),
        "nothing was restored"
    );
}

#[test]
fn rds_pgsql_dumps_a_restored_copy_with_pg_dump_and_deletes_it() {
    let moto = Moto::start();
    let db = unique("rds_pg");
    postgres("postgres", &format!("CREATE DATABASE {db};"));
    let _drop = Cleanup::postgres(&[&db]);
    postgres(
        &db,
        "CREATE TABLE moons (id int primary key, name text);
         INSERT INTO moons VALUES (1, 'phobos'), (2, 'deimos'), (3, 'titan');",
    );
    create_source_instance(&moto, "pglive1", "postgres", "");
    let work = tempfile::tempdir().unwrap();
    let job = job_to_local_disk(
        work.path(),
        vec![
            json!({"id": "pglive", "type": "rds-pgsql", "instancename": "pglive1",
                    "region": REGION, "dbname": db, "dbuser": "postgres",
                    "dbpass": "unused-with-trust-auth", "credentials": aws_keys(),
                    "endpoint_url": moto.url(), "connect_host": "127.0.0.1",
                    "connect_port": 5432, "passphrase": PASSPHRASE}),
        ],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 0);
    let dump = String::from_utf8(newest_artifact(work.path(), "pglive")).unwrap();
    assert!(dump.contains("CREATE TABLE public.moons"), "{dump}");
    for moon in ["phobos", "deimos", "titan"] {
        assert!(dump.contains(moon), "{dump}");
    }
    assert_eq!(db_instances(&moto), vec!["pglive1".to_string()]);
}

// ---------------------------------------------------------------- EBS snapshots

/// Snapshots in moto of `volume`: (id, tags).
fn ebs_snapshots(moto: &Moto, volume: &str) -> Vec<(String, Value)> {
    let out = moto.boto3(&format!(
        "ec2 = client('ec2', '{REGION}')\n\
         s = ec2.describe_snapshots(OwnerIds=['self'], Filters=[{{'Name': 'volume-id', 'Values': ['{volume}']}}])['Snapshots']\n\
         print(json.dumps([[x['SnapshotId'], {{t['Key']: t['Value'] for t in x.get('Tags', [])}}] for x in s]))"
    ));
    let list: Vec<(String, Value)> = serde_json::from_str(out.trim()).unwrap();
    list
}

fn made_by_entry(snaps: &[(String, Value)], entry: &str) -> Vec<String> {
    let mut ids: Vec<String> = snaps
        .iter()
        .filter(|(_, t)| t["backups:entry"] == entry && t["backups:made-by"] == "backups")
        .map(|(id, _)| id.clone())
        .collect();
    ids.sort();
    ids
}

#[test]
fn ebs_snapshots_are_made_tagged_reported_and_kept_to_retain_snapshots() {
    let moto = Moto::start();
    // A volume on its own, and an instance named maindb1 with a data volume attached
    // (moto gives it a root volume too). By hand: a snapshot of the lone volume, and one
    // that carries another entry's tags — neither may ever be deleted.
    let setup = moto.boto3(&format!(
        "ec2 = client('ec2', '{REGION}')\n\
         lone = ec2.create_volume(AvailabilityZone='{REGION}a', Size=8)['VolumeId']\n\
         data = ec2.create_volume(AvailabilityZone='{REGION}a', Size=8)['VolumeId']\n\
         image = ec2.describe_images()['Images'][0]['ImageId']\n\
         i = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType='t3.micro', \
           Placement={{'AvailabilityZone': '{REGION}a'}}, \
           TagSpecifications=[{{'ResourceType': 'instance', 'Tags': [{{'Key': 'Name', 'Value': 'maindb1'}}]}}])['Instances'][0]['InstanceId']\n\
         ec2.attach_volume(VolumeId=data, InstanceId=i, Device='/dev/sdf')\n\
         root = [m['Ebs']['VolumeId'] for m in ec2.describe_instances(InstanceIds=[i])['Reservations'][0]['Instances'][0]['BlockDeviceMappings'] if m['Ebs']['VolumeId'] != data][0]\n\
         hand = ec2.create_snapshot(VolumeId=lone, Description='made by hand')['SnapshotId']\n\
         other = ec2.create_snapshot(VolumeId=lone, TagSpecifications=[{{'ResourceType': 'snapshot', 'Tags': [\
           {{'Key': 'backups:made-by', 'Value': 'backups'}}, {{'Key': 'backups:job', 'Value': 'job'}}, \
           {{'Key': 'backups:entry', 'Value': 'another-entry'}}]}}])['SnapshotId']\n\
         print(json.dumps({{'lone': lone, 'data': data, 'root': root, 'instance': i, 'hand': hand, 'other': other}}))"
    ));
    let ids: Value = serde_json::from_str(setup.trim()).unwrap();
    let id = |k: &str| ids[k].as_str().unwrap().to_string();

    let work = tempfile::tempdir().unwrap();
    let job = job_to_local_disk(
        work.path(),
        vec![
            // The legacy shape: keys at the top level, the zone instead of a region.
            json!({"id": "lone", "type": "snapshot", "volume_id": id("lone"),
                   "availability_zone": format!("{REGION}a"),
                   "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                   "retain_snapshots": 2, "endpoint_url": moto.url(),
                   "passphrase": PASSPHRASE}),
            json!({"id": "maindb", "type": "snapshot", "instancename": "maindb1",
                   "region": REGION, "credentials": aws_keys(), "retain_snapshots": 2,
                   "wait_minutes": 5, "endpoint_url": moto.url(), "passphrase": PASSPHRASE}),
        ],
    );

    let mut made_lone: Vec<String> = Vec::new();
    for round in 1..=3 {
        if round > 1 {
            // EC2 start times have one-second resolution; keep runs apart.
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        let r = run(backups().args(["run", "--json"]).arg(&job));
        assert_eq!(r.code, 0, "round {round}");

        let status: Value = serde_json::from_slice(&newest_artifact(work.path(), "lone")).unwrap();
        assert_eq!(status["entry"], "lone");
        assert_eq!(status["volumes"], json!([id("lone")]));
        let snaps = status["snapshots"].as_array().unwrap();
        assert_eq!(snaps.len(), 1, "{status}");
        assert_eq!(snaps[0]["volume_id"], id("lone"));
        assert_eq!(snaps[0]["state"], "completed");
        let new_id = snaps[0]["snapshot_id"].as_str().unwrap().to_string();
        assert!(new_id.starts_with("snap-"));
        made_lone.push(new_id.clone());

        let in_moto = ebs_snapshots(&moto, &id("lone"));
        let (_, tags) = in_moto.iter().find(|(s, _)| *s == new_id).unwrap();
        assert_eq!(tags["backups:job"], "job");
        assert_eq!(tags["backups:run"], status["run_id"]);
        let pruned: Vec<&str> = status["pruned"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["snapshot_id"].as_str().unwrap())
            .collect();
        if round < 3 {
            assert!(pruned.is_empty(), "round {round}: {status}");
        } else {
            assert_eq!(pruned, [made_lone[0].as_str()], "{status}");
        }

        let inst: Value = serde_json::from_slice(&newest_artifact(work.path(), "maindb")).unwrap();
        assert_eq!(inst["instance"]["name"], "maindb1");
        assert_eq!(inst["instance"]["instance_ids"], json!([id("instance")]));
        let mut volumes: Vec<String> = serde_json::from_value(inst["volumes"].clone()).unwrap();
        volumes.sort();
        let mut expected = vec![id("data"), id("root")];
        expected.sort();
        assert_eq!(volumes, expected);
        assert_eq!(inst["snapshots"].as_array().unwrap().len(), 2);
    }

    // Two of the entry's own snapshots are kept (the newest two), the first was pruned,
    // and the hand-made and other-entry snapshots are untouched.
    let lone_now = ebs_snapshots(&moto, &id("lone"));
    let mut newest_two = made_lone[1..].to_vec();
    newest_two.sort();
    assert_eq!(made_by_entry(&lone_now, "lone"), newest_two);
    for kept in [id("hand"), id("other")] {
        assert!(
            lone_now.iter().any(|(s, _)| *s == kept),
            "{kept} was deleted: {lone_now:?}"
        );
    }
    assert_eq!(lone_now.len(), 4, "{lone_now:?}");
    for volume in [id("data"), id("root")] {
        assert_eq!(
            made_by_entry(&ebs_snapshots(&moto, &volume), "maindb").len(),
            2,
            "{volume}"
        );
    }
}

#[test]
fn an_unknown_volume_or_instance_is_not_found() {
    let moto = Moto::start();
    let work = tempfile::tempdir().unwrap();
    let job = job_to_local_disk(
        work.path(),
        vec![
            json!({"id": "novol", "type": "snapshot", "volume_id": "vol-0000000000000dead",
                   "region": REGION, "credentials": aws_keys(), "endpoint_url": moto.url(),
                   "passphrase": PASSPHRASE}),
            json!({"id": "noinst", "type": "snapshot", "instancename": "nosuchhost",
                   "region": REGION, "credentials": aws_keys(), "endpoint_url": moto.url(),
                   "passphrase": PASSPHRASE}),
        ],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 1);
    let report = report(&r);
    let novol = source_report(&report, "novol")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        novol.contains("InvalidVolume.NotFound") && novol.contains("vol-0000000000000dead"),
        "{novol}"
    );
    let noinst = source_report(&report, "noinst")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        noinst.contains("instancename \"nosuchhost\": no such EC2 instance"),
        "{noinst}"
    );
    assert!(stored_for(work.path(), "novol").is_empty());
    assert!(stored_for(work.path(), "noinst").is_empty());
}

// ---------------------------------------------------------------- conformance kit

fn kit(plugin: &str, config: Value) -> Run {
    run(backups()
        .args(["plugins", "test", plugin, "--kind", "source", "--config"])
        .arg(config.to_string()))
}

fn assert_kit_passes(r: &Run, kind: &str) {
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.stdout.contains("FAIL"), "{}", r.stdout);
    for check in ["describe", "dump", "no grants"] {
        assert!(
            r.stdout.contains(&format!("PASS {check}:")),
            "no PASS {check}: {}",
            r.stdout
        );
    }
    assert!(
        r.stdout.contains(&format!("PASS dump kind: \"{kind}\"")),
        "{}",
        r.stdout
    );
}

#[test]
fn the_rds_and_snapshot_sources_pass_the_conformance_kit_against_moto() {
    let moto = Moto::start();
    let (db, user, pw, _rows) = mariadb_rows("rds_kit");
    create_source_instance(&moto, "kitdb1", "mysql", "");
    let mut config = rds_source(&moto, "kitdb", "kitdb1", &db, &user, &pw);
    config.as_object_mut().unwrap().remove("passphrase");
    let r = kit("rds", config);
    assert_kit_passes(&r, "sql");
    assert!(!r.all().contains(&pw));
    assert!(temporaries(&moto).is_empty(), "{:?}", temporaries(&moto));

    let volume = moto.boto3(&format!(
        "print(client('ec2', '{REGION}').create_volume(AvailabilityZone='{REGION}b', Size=1)['VolumeId'])"
    ));
    let r = kit(
        "snapshot",
        json!({"volume_id": volume.trim(), "availability_zone": format!("{REGION}b"),
               "credentials": aws_keys(), "endpoint_url": moto.url()}),
    );
    assert_kit_passes(&r, "json");
}

#[test]
fn grants_are_derived_from_the_region_endpoint_and_credentials() {
    let work = tempfile::tempdir().unwrap();
    let job = job_to_local_disk(
        work.path(),
        vec![
            json!({"id": "a", "type": "rds", "instancename": "livedb1", "region": REGION,
                   "dbname": "x", "dbuser": "u", "dbpass": "p", "passphrase": PASSPHRASE}),
            json!({"id": "b", "type": "rds-pgsql", "instancename": "pg1", "region": REGION,
                   "dbname": "x", "credentials": {"aws_access_key_id": "AK",
                   "aws_secret_access_key": "secret-key-123"},
                   "endpoint_url": "https://vpce-1.rds.eu-west-1.vpce.amazonaws.com",
                   "passphrase": PASSPHRASE}),
            json!({"id": "c", "type": "snapshot", "volume_id": ["vol-1", "vol-2"],
                   "availability_zone": "us-west-2c", "aws_access_key_id": "AK",
                   "aws_secret_access_key": "secret-key-123", "passphrase": PASSPHRASE}),
        ],
    );
    let r = run(backups().args(["run", "--dry-run"]).arg(&job));
    assert_eq!(r.code, 0);
    let section = |id: &str, next: &str| {
        let start = r.stdout.find(&format!("\"{id}\" type")).unwrap();
        let end = r.stdout[start..]
            .find(next)
            .map_or(r.stdout.len(), |e| start + e);
        r.stdout[start..end].to_string()
    };
    let a = section("a", "\"b\" type");
    assert!(
        a.contains("net   https://rds.eu-west-1.amazonaws.com"),
        "{a}"
    );
    assert!(a.contains("run   mysqldump"), "{a}");
    assert!(a.contains("env   AWS_ACCESS_KEY_ID") && a.contains("env   AWS_SESSION_TOKEN"));
    let b = section("b", "\"c\" type");
    assert!(b.contains("embedded `rds`"), "{b}");
    assert!(
        b.contains("net   https://vpce-1.rds.eu-west-1.vpce.amazonaws.com"),
        "{b}"
    );
    assert!(b.contains("run   pg_dump") && !b.contains("env "), "{b}");
    let c = section("c", "destinations:");
    assert!(
        c.contains("net   https://ec2.us-west-2.amazonaws.com"),
        "{c}"
    );
    assert!(!c.contains("env ") && !c.contains("run "), "{c}");
    assert!(!r.all().contains("unknown key"), "{}", r.all());
    assert!(!r.all().contains("secret-key-123"));
}
