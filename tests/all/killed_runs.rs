//! A run killed at any moment (the OOM killer, a reboot, a systemd stop timeout) leaves
//! nothing behind at a destination once the next good run has run: no `.partial` file, no
//! artifact without its manifest, while another tool's files in the same folder are never
//! touched. Leftovers younger than `leftover_age` (a day) stay, since another machine may
//! still be writing them; `status` reports them. S3 and Samba have the same test in their
//! modules, against moto's S3 server and smbd.

use crate::support;

use serde_json::json;
use std::fs;
use std::path::Path;
use std::time::Duration;
use support::*;

/// Our `.partial` files: hidden, in the `{hostname}/{date}/{time}Z/` layout.
fn our_partials(dest: &Path) -> Vec<String> {
    files_under(dest)
        .into_iter()
        .filter(|f| f.starts_with("h/20") && f.ends_with(".partial"))
        .collect()
}

/// Artifacts of the job whose manifest is missing.
fn orphans(dest: &Path) -> Vec<String> {
    let files = files_under(dest);
    files
        .iter()
        .filter(|f| f.starts_with("h/20") && f.ends_with(".gpg"))
        .filter(|f| !files.contains(&format!("{f}.manifest.json")))
        .cloned()
        .collect()
}

#[test]
fn a_killed_run_leaves_nothing_at_a_local_destination_after_the_next_run() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // Large and incompressible, so that its put takes long enough to be killed in.
    fs::write(src.join("big.bin"), incompressible(96 << 20, 3)).unwrap();
    let dest = work.path().join("dest");
    // Another tool's files, and names that look like ours but are not our layout.
    let foreign = [
        "other-tool/.data.bin.partial",
        "h/.notes.partial",
        "h/2026-01-01/manual.bin",
    ];
    for f in foreign {
        fs::create_dir_all(dest.join(f).parent().unwrap()).unwrap();
        fs::write(dest.join(f), f).unwrap();
    }
    let job = write_job(
        work.path(),
        &json!({"hostname": "h", "tmpdir": work.path().join("tmp"),
                "sources": [{"id": "files", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
                "destinations": [{"id": "disk", "type": "local", "path": dest}]}),
    );

    // Killed while the artifact is being put: its `.partial` stays behind.
    assert!(
        kill_run_when(&job, &[], || !our_partials(&dest).is_empty()),
        "the run ended before its put could be killed"
    );
    assert_eq!(our_partials(&dest).len(), 1, "{:?}", files_under(&dest));
    // More kills, at other moments of a run (dumping, putting, after the put).
    for ms in [400, 1500, 3000] {
        let started = std::time::Instant::now();
        kill_run_when(&job, &[], || started.elapsed() > Duration::from_millis(ms));
    }

    // A good run at once: the leftovers are younger than a day, so they stay, said.
    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 0);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let sweep = &report["leftovers"][0];
    assert_eq!(sweep["destination_id"], "disk", "{report}");
    assert!(sweep["young"].as_u64().unwrap() >= 1, "{sweep}");
    assert_eq!(sweep["removed"], json!([]), "{sweep}");
    assert!(!our_partials(&dest).is_empty());
    let status = run(backups().arg("status").arg(&job));
    assert_eq!(status.code, 0);
    assert!(
        status.stderr.contains("leftovers of interrupted uploads")
            && status.stderr.contains("would remove 0"),
        "{}",
        status.stderr
    );

    // Two days later, `--dry-run --leftovers` names what the run would remove, and removes
    // nothing.
    let later = days_from_now(2);
    let partials = our_partials(&dest);
    let dry = run(backups()
        .env("BACKUPS_NOW", &later)
        .args(["run", "--dry-run", "--leftovers"])
        .arg(&job));
    assert_eq!(dry.code, 0, "{}", dry.all());
    let would = format!("would remove {}", partials.len());
    assert!(dry.stdout.contains(&would), "{would}: {}", dry.stdout);
    assert!(
        dry.stdout.contains("would remove what was becoming h/20"),
        "{}",
        dry.stdout
    );
    assert_eq!(our_partials(&dest), partials, "a dry run removes nothing");

    // Then the next run removes every one of them.
    let r = run(backups()
        .env("BACKUPS_NOW", &later)
        .args(["run", "--json"])
        .arg(&job));
    assert_eq!(r.code, 0);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let sweep = &report["leftovers"][0];
    assert!(!sweep["removed"].as_array().unwrap().is_empty(), "{sweep}");
    assert_eq!(sweep["error"], json!(null), "{sweep}");
    assert!(
        r.stderr.contains("leftovers of interrupted uploads"),
        "the report says what was removed: {}",
        r.stderr
    );
    assert_eq!(our_partials(&dest), Vec::<String>::new());
    assert_eq!(orphans(&dest), Vec::<String>::new());
    for f in foreign {
        assert_eq!(
            fs::read_to_string(dest.join(f)).unwrap(),
            f,
            "{f} untouched"
        );
    }
    // And every copy listed is whole.
    let copies = files_under(&dest)
        .into_iter()
        .filter(|f| f.ends_with(".manifest.json"))
        .count();
    assert!(copies >= 2, "{:?}", files_under(&dest));
    let listed = run(backups().args(["list"]).arg(&job));
    assert_eq!(listed.code, 0);
    assert_verifies(&job, 1);
}

#[test]
fn an_artifact_a_killed_run_stored_without_its_manifest_is_removed_by_the_next_run() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"small").unwrap();
    let dest = work.path().join("dest");
    let tmp = work.path().join("tmp");
    let job = write_job(
        work.path(),
        &json!({"job": "nightly", "hostname": "h", "tmpdir": tmp,
                "sources": [{"id": "files", "type": "folder", "path": src, "passphrase": "pw-pw-pw"}],
                "destinations": [{"id": "disk", "type": "local", "path": dest}]}),
    );
    assert_eq!(run(backups().arg("run").arg(&job)).code, 0);
    let complete = artifacts(&dest);
    assert_eq!(complete.len(), 1);
    let complete = complete[0]
        .strip_prefix(&dest)
        .unwrap()
        .display()
        .to_string();

    // What runs killed at two moments left, as their journal of copies recorded it: one
    // between its artifact and its manifest (an artifact no manifest vouches for), one
    // after its manifest but before the journal's end (a complete copy).
    let orphan = "h/2026-12-01/020000Z/files.tar.gz.gpg";
    fs::create_dir_all(dest.join(orphan).parent().unwrap()).unwrap();
    fs::write(dest.join(orphan), b"a whole artifact, but no manifest").unwrap();
    fs::create_dir_all(tmp.join(".copies-nightly")).unwrap();
    fs::write(
        tmp.join(".copies-nightly/journal"),
        format!("begin\tdisk\t{orphan}\nbegin\tdisk\t{complete}\nbegin\tother\t{orphan}\n"),
    )
    .unwrap();

    let r = run(backups().args(["run", "--json"]).arg(&job));
    assert_eq!(r.code, 0);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        report["leftovers"][0]["removed"],
        json!([orphan]),
        "{report}"
    );
    assert!(!dest.join(orphan).exists());
    assert!(
        dest.join(&complete).exists(),
        "a copy with its manifest stays"
    );
    // Both are ended in the journal, which the run leaves compacted: the destination this
    // run did not use keeps its line, for a run that stores there.
    let journal = || fs::read_to_string(tmp.join(".copies-nightly/journal")).unwrap();
    assert_eq!(journal(), format!("begin\tother\t{orphan}\n"));
    let next = run(backups().args(["run", "--json"]).arg(&job));
    let report: serde_json::Value = serde_json::from_str(&next.stdout).unwrap();
    assert_eq!(report["leftovers"][0]["removed"], json!([]), "{report}");
    assert_eq!(journal(), format!("begin\tother\t{orphan}\n"));
}
