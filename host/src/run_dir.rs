//! A run's private directory in the tmpdir: `run-{job}-{run id}`, holding the temporary
//! artifact while it is made and uploaded, and the run's journal of copies.
//!
//! Removed when the run ends, however it ends in-process. A run that never got to do so
//! (killed with SIGKILL, out of memory, the machine lost power, the call backstop) left
//! its directory behind, with an artifact as large as a backup in it; the job's next run
//! removes those, so the tmpdir never holds more than one artifact per job for long.
//!
//! Beside them, the job's journal of copies, `.copies-{job}/journal`, says which copies runs began
//! and did not finish: a line `begin\t{destination id}\t{object}` before an artifact's
//! put, `end\t…` once its manifest is stored (or the copy given up and cleaned). A run
//! killed in between left an artifact with no manifest, which is not a copy and never will
//! be; the next run that stores at that destination removes it (see `store::leftovers`)
//! and ends it in the journal. Each run starts by compacting the journal to what is still
//! open, so it stays small. It acts on what this machine recorded, never on a listing.

use anyhow::{Context as _, Result, bail};
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub struct RunDir {
    pub path: PathBuf,
    /// The job's journal of copies.
    journal: PathBuf,
    /// Copies that earlier runs of this job began and never ended.
    pub unfinished: Vec<UnfinishedCopy>,
}

/// An artifact a killed run may have stored without its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedCopy {
    pub destination_id: String,
    pub object: String,
}

impl RunDir {
    /// Creates the directory for run `run_id` of `job`, after removing the ones earlier
    /// runs of the same job left behind. The caller must hold the job's run lock
    /// (`lock::RunLock`): that is what makes every other directory of this job stale.
    pub fn create(tmpdir: &Path, job: &str, run_id: &str) -> Result<RunDir> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(tmpdir)
            .with_context(|| format!("tmpdir {}: cannot create", tmpdir.display()))?;
        let prefix = format!("run-{}-", crate::lock::file_safe(job));
        remove_left_behind(tmpdir, &prefix);
        // In a directory of its own, the host's like the run's: a plugin granted the
        // tmpdir cannot forge it, and a folder source that contains the tmpdir skips it.
        let journal_dir = tmpdir.join(format!(".copies-{}", crate::lock::file_safe(job)));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&journal_dir)
            .with_context(|| {
                format!(
                    "tmpdir {}: cannot create {}",
                    tmpdir.display(),
                    journal_dir.display()
                )
            })?;
        crate::runtime::protect_host_dir(&journal_dir);
        let journal = journal_dir.join("journal");
        let unfinished = compact(&journal);
        let path = tmpdir.join(format!("{prefix}{run_id}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| {
                format!(
                    "tmpdir {}: cannot create {}",
                    tmpdir.display(),
                    path.display()
                )
            })?;
        if !path.is_dir() {
            bail!(
                "tmpdir {}: {} is not a directory",
                tmpdir.display(),
                path.display()
            );
        }
        // Other plugins' artifacts and private credential files live here: no grant
        // reaches into it, even one that contains the tmpdir.
        crate::runtime::protect_host_dir(&path);
        Ok(RunDir {
            path,
            journal,
            unfinished,
        })
    }

    /// Records that a copy of `object` to `destination_id` begins (before its put) or
    /// ends (its manifest stored, or the copy given up). One appended line each, so a
    /// run killed at any moment leaves a journal that reads to that moment.
    pub fn journal(&self, begins: bool, destination_id: &str, object: &str) {
        let line = format!(
            "{}\t{destination_id}\t{object}\n",
            if begins { "begin" } else { "end" }
        );
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.journal)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!("{}: {e}", self.journal.display());
        }
    }
}

/// The copies the journal at `path` shows open, which it is rewritten to hold alone.
fn compact(path: &Path) -> Vec<UnfinishedCopy> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let open = unfinished_in(&text);
    let kept: String = open
        .iter()
        .map(|c| format!("begin\t{}\t{}\n", c.destination_id, c.object))
        .collect();
    let tmp = path.with_extension("tmp");
    let rewritten = std::fs::write(&tmp, kept).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = rewritten {
        tracing::warn!("{}: {e}", path.display());
    }
    open
}

/// The copies a journal shows begun and never ended.
fn unfinished_in(journal: &str) -> Vec<UnfinishedCopy> {
    let mut open: Vec<UnfinishedCopy> = Vec::new();
    for line in journal.lines() {
        let mut fields = line.splitn(3, '\t');
        let (Some(what), Some(dest), Some(object)) = (fields.next(), fields.next(), fields.next())
        else {
            continue; // the line a kill cut short
        };
        let copy = UnfinishedCopy {
            destination_id: dest.to_string(),
            object: object.to_string(),
        };
        match what {
            "begin" if !open.contains(&copy) => open.push(copy),
            "end" => open.retain(|c| *c != copy),
            _ => {}
        }
    }
    open
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        // Compacted now too: after a run that ended every copy it began, nothing is left.
        if compact(&self.journal).is_empty() {
            let _ = std::fs::remove_file(&self.journal);
            if let Some(dir) = self.journal.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// Removes `{prefix}{run id}` directories. Only names whose rest has the shape of a run id
/// count: job `a` must not take job `a-b`'s `run-a-b-…`.
fn remove_left_behind(tmpdir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(tmpdir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if !is_run_id(rest) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => tracing::warn!(
                "removed {}: left behind by an earlier run of this job that did not finish \
                 (killed, or the machine stopped)",
                entry.path().display()
            ),
            Err(e) => tracing::warn!(
                "cannot remove {}, left behind by an earlier run: {e}",
                entry.path().display()
            ),
        }
    }
}

/// `20261122T231933Z-79d2`: the run's start (UTC) and the process id in hex.
fn is_run_id(s: &str) -> bool {
    let Some((stamp, pid)) = s.split_once('-') else {
        return false;
    };
    let b = stamp.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
        && !pid.is_empty()
        && pid.bytes().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_removes_only_what_earlier_runs_of_its_own_job_left_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = |name: &str| {
            let d = tmp.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("db.artifact"), b"a killed run's artifact").unwrap();
            d
        };
        let stale = dir("run-nightly-20261120T010000Z-1a2b");
        let other_job = dir("run-nightly-b-20261120T010000Z-1a2b");
        let older_layout = dir("run-20261120T010000Z-1a2b");
        let not_a_run = dir("run-nightly-notes");

        let run = RunDir::create(tmp.path(), "nightly", "20261122T010000Z-3c4d").unwrap();
        assert!(!stale.exists(), "the killed run's directory is removed");
        assert!(other_job.exists(), "another job's run is left alone");
        assert!(
            older_layout.exists(),
            "a name without a job is not this run's to judge"
        );
        assert!(not_a_run.exists());
        assert!(run.path.ends_with("run-nightly-20261122T010000Z-3c4d"));
        assert!(run.path.is_dir());

        let path = run.path.clone();
        drop(run);
        assert!(
            !path.exists(),
            "a run removes its own directory when it ends"
        );
    }

    #[test]
    fn a_killed_runs_journal_gives_the_copies_it_began_and_never_ended() {
        let tmp = tempfile::tempdir().unwrap();
        let killed = RunDir::create(tmp.path(), "nightly", "20261120T010000Z-1a2b").unwrap();
        killed.journal(true, "usb", "h/2026-11-20/010000Z/etc.tar.gz.gpg");
        killed.journal(true, "s3", "h/2026-11-20/010000Z/etc.tar.gz.gpg");
        killed.journal(false, "usb", "h/2026-11-20/010000Z/etc.tar.gz.gpg");
        killed.journal(true, "usb", "h/2026-11-20/010000Z/db.sql.gz.gpg");
        // SIGKILL: the directory stays, and the last line may be cut short.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&killed.journal)
            .unwrap()
            .write_all(b"begin\ts3")
            .unwrap();
        std::mem::forget(killed);

        let next = RunDir::create(tmp.path(), "nightly", "20261121T010000Z-3c4d").unwrap();
        let copy = |d: &str, o: &str| UnfinishedCopy {
            destination_id: d.into(),
            object: o.into(),
        };
        let open = [
            copy("s3", "h/2026-11-20/010000Z/etc.tar.gz.gpg"),
            copy("usb", "h/2026-11-20/010000Z/db.sql.gz.gpg"),
        ];
        assert_eq!(next.unfinished, open);
        // Still open until a run ends them, whatever happens to this one.
        next.journal(false, "usb", "h/2026-11-20/010000Z/db.sql.gz.gpg");
        drop(next);
        let third = RunDir::create(tmp.path(), "nightly", "20261122T010000Z-5e6f").unwrap();
        assert_eq!(third.unfinished, open[..1]);
    }

    #[test]
    fn run_ids_are_recognised_by_shape() {
        assert!(is_run_id("20261122T231933Z-79d2"));
        assert!(!is_run_id("b-20261122T231933Z-79d2"));
        assert!(!is_run_id("20261122T231933Z-"));
        assert!(!is_run_id("20261122T2319Z-79d2"));
        assert!(!is_run_id("notes"));
    }
}
