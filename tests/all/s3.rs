//! s3 and minio destinations against a real S3 server that checks SigV4 signatures
//! (s3s-fs, started by the test on 127.0.0.1 and stopped by its pid); objects read back
//! with an independent client (boto3) and decrypted with gpg.

use crate::support;

use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const ACCESS: &str = "backups-test-access";
const SECRET: &str = "backups-test-secret-0123456789";

struct S3Server {
    server: Server,
    /// Where s3s-fs keeps the buckets; removed when the server is dropped.
    _root: tempfile::TempDir,
}

impl S3Server {
    /// Starts s3s-fs with `buckets` and SigV4 keys.
    fn start(buckets: &[&str]) -> S3Server {
        let root = tempfile::tempdir().unwrap();
        for b in buckets {
            fs::create_dir_all(root.path().join(b)).unwrap();
        }
        let port = free_port();
        let server = start_server(
            Command::new("s3s-fs")
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS, "--secret-key", SECRET])
                .arg(root.path()),
            port,
            "s3s-fs",
        );
        S3Server {
            server,
            _root: root,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// Keys and bodies in `bucket`, fetched with boto3 (an independent S3 client).
    fn fetch_all(&self, bucket: &str, into: &Path) -> Vec<String> {
        fs::create_dir_all(into).unwrap();
        let script = format!(
            r#"
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url="{url}", aws_access_key_id="{ACCESS}",
                  aws_secret_access_key="{SECRET}", region_name="us-east-1")
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="{bucket}").get("Contents", [])]
for k in keys:
    path = os.path.join(sys.argv[1], k.replace("/", "__"))
    s3.download_file("{bucket}", k, path)
    print(k)
"#,
            url = self.url()
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(into)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "boto3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut keys: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }
}

fn big_tree(src: &Path) {
    make_tree(src);
    // Incompressible and larger than two 5 MiB parts: a multipart upload.
    let mut x: u64 = 42;
    let data: Vec<u8> = (0..12 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(src.join("big.bin"), data).unwrap();
}

fn job(work: &Path, src: &Path, destinations: Vec<serde_json::Value>) -> PathBuf {
    write_job(
        work,
        &json!({"hostname": "h", "tmpdir": work.join("tmp"),
                "sources": [{"id": "files", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
                "destinations": destinations}),
    )
}

fn s3_dest(server: &S3Server, id: &str, bucket: &str, secret: &str) -> serde_json::Value {
    json!({"id": id, "type": "s3", "bucket": bucket, "region": "us-east-1", "endpoint_url": server.url(),
           "part_size_mib": 5,
           "credentials": {"aws_access_key_id": ACCESS, "aws_secret_access_key": secret}})
}

fn minio_dest(server: &S3Server, id: &str, bucket: &str) -> serde_json::Value {
    json!({"id": id, "type": "minio", "bucket": bucket, "endpoint": format!("127.0.0.1:{}", server.server.port),
           "secure": false, "part_size_mib": 5, "credentials": {"access_key": ACCESS, "secret_key": SECRET}})
}

#[test]
fn s3_and_minio_store_multipart_artifacts_that_decrypt_with_gpg() {
    let server = S3Server::start(&["s3-bucket", "minio-bucket"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    big_tree(&src);
    let job = job(
        work.path(),
        &src,
        vec![
            s3_dest(&server, "aws", "s3-bucket", SECRET),
            minio_dest(&server, "minio", "minio-bucket"),
        ],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 0);
    assert!(
        !r.all().contains(SECRET),
        "the secret key leaked into the output"
    );
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(
        report["sources"][0]["bytes_out"].as_u64().unwrap() > 10 << 20,
        "needs a multipart upload"
    );

    for bucket in ["s3-bucket", "minio-bucket"] {
        let fetched = work.path().join(format!("fetched-{bucket}"));
        let keys = server.fetch_all(bucket, &fetched);
        assert_eq!(keys.len(), 2, "artifact and manifest: {keys:?}");
        assert!(
            keys[0].starts_with("h/") && keys[0].ends_with("/files.tar.gz.gpg"),
            "{keys:?}"
        );
        let artifact = fetched.join(keys[0].replace('/', "__"));
        let tgz = Gpg::new().decrypt(&artifact, Some("pw-pw-pw"));
        let restore = work.path().join(format!("restore-{bucket}"));
        untar_gz(&tgz, &restore);
        assert_eq!(
            snapshot(&src),
            snapshot(&restore.join(src.strip_prefix("/").unwrap()))
        );
    }
    // verify fetches through the plugin (get + list) and checks everything.
    let r = run(backups().arg("verify").arg(&job));
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("ok")).count(),
        2,
        "{}",
        r.stdout
    );
}

#[test]
fn retention_deletes_through_s3_and_keeps_the_newest() {
    let server = S3Server::start(&["backups-b"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"small").unwrap();
    let mut dest = s3_dest(&server, "aws", "backups-b", SECRET);
    dest["retention_copies"] = json!(1);
    let job = job(work.path(), &src, vec![dest]);
    for day in 1..=3 {
        let now = format!("2026-03-0{day}T02:00:00Z");
        assert_eq!(
            run(backups().env("BACKUPS_NOW", now).arg("run").arg(&job)).code,
            0
        );
    }
    let keys = server.fetch_all("backups-b", &work.path().join("fetched"));
    assert_eq!(
        keys.len(),
        2,
        "one copy (artifact + manifest) left: {keys:?}"
    );
    assert!(
        keys[0].starts_with("h/2026-03-03/"),
        "the newest stays: {keys:?}"
    );
    let r = run(backups().arg("list").arg(&job));
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("2026-03-03"), "{}", r.stdout);
}

#[test]
fn a_wrong_secret_an_ungranted_host_and_a_dead_server_fail_only_their_destination() {
    let server = S3Server::start(&["backups-b"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"small").unwrap();
    let local = work.path().join("local");
    fs::create_dir_all(&local).unwrap();
    let mut ungranted = s3_dest(&server, "ungranted", "backups-b", SECRET);
    ungranted["grants"] = json!({"net": ["s3.eu-west-1.amazonaws.com:443"]});
    let dead_port = free_port();
    let mut dead = s3_dest(&server, "dead", "backups-b", SECRET);
    dead["endpoint_url"] = json!(format!("http://127.0.0.1:{dead_port}"));
    let job = job(
        work.path(),
        &src,
        vec![
            s3_dest(&server, "wrongsecret", "backups-b", "not-the-secret-at-all"),
            ungranted,
            dead,
            json!({"id": "local", "type": "local", "path": local}),
        ],
    );
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 1);
    assert!(!r.all().contains(SECRET) && !r.all().contains("not-the-secret-at-all"));
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let outcome = |id: &str| {
        report["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["destination_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        outcome("local")["ok"],
        true,
        "other destinations are unaffected"
    );
    let wrong = outcome("wrongsecret");
    assert_eq!(wrong["ok"], false);
    assert!(
        wrong["error"].as_str().unwrap().contains("(auth)"),
        "{wrong}"
    );
    let denied = outcome("ungranted");
    assert!(
        denied["error"].as_str().unwrap().contains("(denied)"),
        "{denied}"
    );
    assert!(
        r.stderr.contains("denied: no net grant matches 127.0.0.1"),
        "{}",
        r.stderr
    );
    let down = outcome("dead");
    assert!(
        down["error"].as_str().unwrap().contains("(transient)"),
        "{down}"
    );
    assert!(
        r.stderr.contains("retrying in 2s"),
        "transient errors are retried: {}",
        r.stderr
    );
    // Nothing that looks complete was left by the failures: only the local copy exists.
    assert!(
        server
            .fetch_all("backups-b", &work.path().join("fetched"))
            .is_empty()
    );
}

/// A lifecycle rule on moto's bucket (moto implements bucket lifecycle configuration;
/// s3s-fs does not).
fn expire_after(moto: &Moto, days: u32) {
    moto.boto3(&format!(
        "s3.put_bucket_lifecycle_configuration(Bucket='backups-b', LifecycleConfiguration={{'Rules': [\
         {{'ID': 'expire-all', 'Status': 'Enabled', 'Filter': {{'Prefix': ''}}, 'Expiration': {{'Days': {days}}}}}]}})"
    ));
}

#[test]
fn status_reads_and_audits_the_buckets_own_lifecycle_rules() {
    let moto = Moto::start();
    moto.boto3("s3.create_bucket(Bucket='backups-b')");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"small").unwrap();
    let dest = json!({"id": "aws", "type": "s3", "bucket": "backups-b", "region": "us-east-1",
                      "endpoint_url": format!("http://127.0.0.1:{}", moto.server.port),
                      "credentials": {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}});
    let job = write_job(
        work.path(),
        &json!({"hostname": "h", "tmpdir": work.path().join("tmp"), "schedule": "0 2 * * *",
                "sources": [{"id": "files", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
                "destinations": [dest]}),
    );
    assert_eq!(run(backups().arg("run").arg(&job)).code, 0);
    assert_eq!(
        run(backups().arg("status").arg(&job)).code,
        0,
        "no rule, fresh copy"
    );

    // The incident's bucket rule: everything older than 14 days goes.
    expire_after(&moto, 14);
    let r = run(backups().arg("status").arg(&job));
    assert_eq!(r.code, 0);
    assert!(
        r.stderr.contains("its rule \"expire-all\" deletes objects under \"\" after 14 days: if backups stop for 14 days"),
        "{}",
        r.stderr
    );
    // A rule shorter than the interval between backups: copies are lost for sure.
    expire_after(&moto, 1);
    let r = run(backups().arg("status").arg(&job));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("before the next backup is even due"),
        "{}",
        r.stderr
    );
}

/// The unfinished multipart uploads in `bucket`, as `key upload-id` lines.
fn unfinished_uploads(moto: &Moto, bucket: &str) -> Vec<String> {
    moto.boto3(&format!(
        "for u in s3.list_multipart_uploads(Bucket='{bucket}').get('Uploads', []):\n    \
         print(u['Key'])"
    ))
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn a_killed_multipart_upload_is_aborted_by_a_later_run_and_only_ours() {
    let moto = Moto::start();
    moto.boto3(
        "s3.create_bucket(Bucket='killed-runs')\n\
         s3.create_multipart_upload(Bucket='killed-runs', Key='elsewhere/big.bin')\n\
         s3.create_multipart_upload(Bucket='killed-runs', Key='backups/h/manual-upload.bin')",
    );
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big.bin"), incompressible(48 << 20, 11)).unwrap();
    let dest = json!({"id": "aws", "type": "s3", "bucket": "killed-runs", "region": "us-east-1",
                      "prefix": "backups", "part_size_mib": 5,
                      "endpoint_url": moto.url(),
                      "credentials": {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}});
    let job = job(work.path(), &src, vec![dest]);

    // Killed while its parts go up: the upload stays open at the bucket, invisible to
    // every object listing. (moto answers S3 requests without checking signatures, so a
    // plain GET `?uploads` watches it.)
    let uploads_url = format!("{}/killed-runs?uploads", moto.url());
    assert!(
        kill_run_when(&job, &[], || http_text(&uploads_url)
            .contains("<Key>backups/h/20")),
        "the run ended before its upload could be killed"
    );
    let before = unfinished_uploads(&moto, "killed-runs");
    assert_eq!(before.len(), 3, "{before:?}");
    // The good runs below put one part: aws-sdk-s3 cannot read moto's answers to
    // CompleteMultipartUpload and ListParts (moto names ListParts' root element
    // `ListPartsResponse`, S3 `ListPartsResult`), so multipart itself is tested against
    // s3s-fs above, and the leftover's size reads 0 here.
    fs::write(src.join("big.bin"), b"small now").unwrap();

    // status sees it, and recommends the bucket rule that would remove it on its own.
    let status = run(backups().arg("status").arg(&job));
    assert!(
        status
            .stderr
            .contains("leftovers of interrupted uploads: 1")
            && status
                .stderr
                .contains("no AbortIncompleteMultipartUpload lifecycle rule"),
        "{}",
        status.stderr
    );

    // Two days later a good run aborts ours, and only ours.
    let r = run(backups()
        .env("BACKUPS_NOW", days_from_now(2))
        .args(["run", "--json"])
        .arg(&job));
    assert_eq!(r.code, 0);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let sweep = &report["leftovers"][0];
    assert_eq!(sweep["removed"].as_array().unwrap().len(), 1, "{sweep}");
    let mut after = unfinished_uploads(&moto, "killed-runs");
    after.sort();
    assert_eq!(after, ["backups/h/manual-upload.bin", "elsewhere/big.bin"]);
    assert_verifies(&job, 1);
}
