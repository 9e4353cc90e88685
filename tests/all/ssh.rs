//! folder-ssh and mysql-ssh through a real OpenSSH server that the test starts on
//! 127.0.0.1 with a generated host key and an authorized client key, and stops by its PID.
//! The "remote machine" is this one, so a round trip can be compared with the original.

use crate::support;

use serde_json::json;
use std::fs;
use std::path::Path;
use std::process::Command;
use support::*;

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(status.success());
}

fn source(sshd: &Sshd, id: &str, kind: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut s = sshd.keys();
    s["id"] = json!(id);
    s["type"] = json!(kind);
    s["passphrase"] = json!("pw-pw-pw");
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

fn decrypted(work: &Path, id: &str, kind: &str) -> Vec<u8> {
    decrypt_artifact(&work.join("dest"), id, kind, "pw-pw-pw")
}

#[test]
fn folder_over_ssh_round_trips_and_excludes() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("remote tree");
    make_tree(&src);
    fs::create_dir_all(src.join("cache")).unwrap();
    fs::write(src.join("cache/junk"), b"junk").unwrap();
    let job = job_to_local_disk(
        work.path(),
        vec![source(
            &sshd,
            "remote",
            "folder-ssh",
            json!({"path": src, "excludes": ["cache"]}),
        )],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 0);
    let restore = work.path().join("restore");
    untar_gz(&decrypted(work.path(), "remote", "tar"), &restore);
    fs::remove_dir_all(src.join("cache")).unwrap();
    assert_eq!(
        snapshot(&src),
        snapshot(&restore.join(src.strip_prefix("/").unwrap()))
    );
}

#[test]
fn a_host_key_that_does_not_match_fails_the_source() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    // Someone else's host key for the same address.
    let other = work.path().join("other_host_key");
    keygen(&other);
    let known = work.path().join("known_hosts");
    let other_pub = fs::read_to_string(other.with_extension("pub")).unwrap();
    fs::write(&known, format!("[127.0.0.1]:{} {other_pub}", sshd.port)).unwrap();
    let job = job_to_local_disk(
        work.path(),
        vec![source(
            &sshd,
            "spoofed",
            "folder-ssh",
            json!({"path": src, "known_hosts": known}),
        )],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("Host key verification failed"),
        "{}",
        r.stderr
    );
    assert!(
        artifacts(&work.path().join("dest")).is_empty(),
        "nothing uploaded"
    );
}

#[test]
fn mysql_over_ssh_dumps_with_credentials_on_stdin_only() {
    let sshd = Sshd::start();
    let db = format!("bk_{}_ssh", std::process::id());
    let user = format!("bk_{}_sshu", std::process::id());
    let password = "ssh-Secret-pw-9";
    let admin = |sql: &str| {
        let status = Command::new("mysql")
            .args(["-uroot", "-h127.0.0.1", "-e", sql])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mysql (is MariaDB running on 127.0.0.1?) failed: {sql}"
        );
    };
    admin(&format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO {db}.t VALUES (1, 'one'), (2, 'two');
         CREATE USER '{user}'@'%' IDENTIFIED BY '{password}';
         GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT ON {db}.* TO '{user}'@'%';"
    ));
    let _cleanup = Cleanup::mariadb(&[&db], &[&user]);

    let work = tempfile::tempdir().unwrap();
    let job = job_to_local_disk(
        work.path(),
        vec![source(
            &sshd,
            "remotedb",
            "mysql-ssh",
            json!({"dbhost": "127.0.0.1", "dbname": db, "dbuser": user, "dbpass": password}),
        )],
    );
    let r = run(backups().args(["-v", "run", "--json"]).arg(&job));
    assert_eq!(r.code, 0);
    assert!(
        !r.all().contains(password),
        "the password leaked into the output"
    );
    let gz = decrypted(work.path(), "remotedb", "sql");
    let mut dump = String::new();
    std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut dump)
        .unwrap();
    assert!(dump.contains("INSERT INTO `t` VALUES"), "{dump}");
    assert!(
        dump.contains("(1,'one')") && dump.contains("(2,'two')"),
        "{dump}"
    );
}

fn calls(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn volumes(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join("lvs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn lvm_snapshot_is_archived_unmounted_and_old_snapshots_pruned() {
    let work = tempfile::tempdir().unwrap();
    let served = work.path().join("volume contents");
    make_tree(&served);
    let bin = lvm_stand_ins(work.path(), &served);
    let sshd = Sshd::start_with(&format!("SetEnv PATH={}:/usr/bin:/bin", bin.display()));
    let mounts = work.path().join("mnt");
    fs::create_dir_all(&mounts).unwrap();
    let lvm = json!({"vg_name": "vg0", "lv_name": "data", "size": "1G", "retain_snapshots": 2, "mount_dir": mounts});

    let job = job_to_local_disk(
        work.path(),
        vec![source(&sshd, "disk", "lvm-ssh", lvm.clone())],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 0);

    // The archive is the served tree, as seen through the mounted snapshot.
    let restore = work.path().join("restore");
    untar_gz(&decrypted(work.path(), "disk", "tar"), &restore);
    assert_eq!(snapshot(&served), snapshot(&restore));

    // The exact sequence, with the snapshot named for this run.
    let log = calls(work.path());
    let snap = log[0].split_whitespace().nth(5).unwrap().to_string();
    assert!(snap.starts_with("data-backups-"), "{log:?}");
    let mountpoint = mounts.join(format!("backups-{snap}"));
    assert_eq!(
        log,
        [
            format!("lvcreate --snapshot --size 1G --name {snap} /dev/vg0/data"),
            format!("mount -o ro /dev/vg0/{snap} {}", mountpoint.display()),
            format!("umount {}", mountpoint.display()),
            "lvs --noheadings -o lv_name vg0".to_string(),
            "lvremove -f vg0/data-backups-1000".to_string(),
        ]
    );
    assert!(!mountpoint.exists(), "mount point removed");
    let mut expected = vec![
        "data".to_string(),
        "data-backups-2000".into(),
        snap.clone(),
        "other-backups-1".into(),
    ];
    expected.sort();
    assert_eq!(volumes(work.path()), expected);
}

#[test]
fn lvm_cleanup_and_pruning_run_when_mounting_fails() {
    let work = tempfile::tempdir().unwrap();
    let served = work.path().join("served");
    fs::create_dir_all(&served).unwrap();
    let bin = lvm_stand_ins(work.path(), &served);
    fs::write(work.path().join("mount-fails"), b"").unwrap();
    let sshd = Sshd::start_with(&format!("SetEnv PATH={}:/usr/bin:/bin", bin.display()));
    let mounts = work.path().join("mnt");
    fs::create_dir_all(&mounts).unwrap();
    let lvm = json!({"vg_name": "vg0", "lv_name": "data", "size": "1G", "retain_snapshots": 1, "mount_dir": mounts});
    let job = job_to_local_disk(work.path(), vec![source(&sshd, "disk", "lvm-ssh", lvm)]);
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("mounting the snapshot") && r.stderr.contains("wrong fs type"),
        "{}",
        r.stderr
    );
    assert!(
        artifacts(&work.path().join("dest")).is_empty(),
        "nothing uploaded"
    );
    let log = calls(work.path());
    assert!(
        log.iter().all(|c| !c.starts_with("umount")),
        "nothing was mounted, nothing unmounted: {log:?}"
    );
    assert_eq!(
        fs::read_dir(&mounts).unwrap().count(),
        0,
        "mount point removed"
    );
    // retain_snapshots 1: only the newest (this run's) snapshot of data is left.
    let left: Vec<String> = volumes(work.path())
        .into_iter()
        .filter(|v| v.starts_with("data-backups-"))
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(!left[0].ends_with("-1000") && !left[0].ends_with("-2000"));
}

/// `"incremental"` over ssh: GNU tar makes the increments on the remote machine, against
/// the snapshot of the full that the host kept; the newest point restores with
/// `gpg | tar -xzG` (full, then increment) and with `backups restore --extract`.
#[test]
fn incremental_folder_over_ssh_restores_with_gpg_and_tar_g() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("remote tree");
    make_tree(&src);
    let dest = work.path().join("dest");
    fs::create_dir_all(&dest).unwrap();
    let job = write_job(
        work.path(),
        &json!({"hostname": "h", "tmpdir": work.path().join("tmp"),
                "state_dir": work.path().join("state"),
                "sources": [source(&sshd, "remote", "folder-ssh",
                                   json!({"path": src, "incremental": {"full_every": 5}}))],
                "destinations": [{"id": "disk", "type": "local", "path": dest}]}),
    );
    let run_once = || {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let r = run(backups().arg("run").arg(&job));
        assert_eq!(r.code, 0, "{}", r.all());
    };
    run_once();
    fs::write(src.join("plain.txt"), "changed\n".repeat(100)).unwrap();
    fs::remove_file(src.join("empty")).unwrap();
    fs::rename(src.join("nested/deeper"), src.join("nested/moved")).unwrap();
    fs::write(src.join("added"), b"added").unwrap();
    run_once();

    let stored = crate::incremental::archives(&dest);
    let name = |p: &std::path::PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
    let (full, increment) = (&stored[0], &stored[1]);
    assert_eq!(name(full), "remote.tar.gz.gpg");
    assert!(name(increment).starts_with("remote.inc-"), "{stored:?}");
    assert!(
        fs::metadata(increment).unwrap().len() < fs::metadata(full).unwrap().len() / 4,
        "the 3 MiB of random bytes did not change: the increment does not carry them"
    );

    let gpg = Gpg::new();
    let by_tar = work.path().join("by-tar");
    fs::create_dir_all(&by_tar).unwrap();
    for archive in [full, increment] {
        let tgz = gpg.decrypt(archive, Some("pw-pw-pw"));
        let mut tar = Command::new("tar")
            .args(["-xzG", "-C"])
            .arg(&by_tar)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        tar.stdin.take().unwrap().write_all(&tgz).unwrap();
        assert!(tar.wait().unwrap().success());
    }
    let expected = snapshot(&src);
    assert_eq!(
        snapshot(&by_tar.join(src.strip_prefix("/").unwrap())),
        expected
    );

    let by_backups = work.path().join("by-backups");
    let r = run(backups()
        .args(["restore", "--source", "remote", "--extract"])
        .arg(&by_backups)
        .arg(&job));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        snapshot(&by_backups.join(src.strip_prefix("/").unwrap())),
        expected
    );
}
