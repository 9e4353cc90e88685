//! A run's private directory in the tmpdir: `run-{job}-{run id}`, holding the temporary
//! artifact while it is made and uploaded.
//!
//! Removed when the run ends, however it ends in-process. A run that never got to do so
//! (killed with SIGKILL, out of memory, the machine lost power, the call backstop) left
//! its directory behind, with an artifact as large as a backup in it; the job's next run
//! removes those, so the tmpdir never holds more than one artifact per job for long.

use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};

pub struct RunDir {
    pub path: PathBuf,
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
        Ok(RunDir { path })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
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
    fn run_ids_are_recognised_by_shape() {
        assert!(is_run_id("20261122T231933Z-79d2"));
        assert!(!is_run_id("b-20261122T231933Z-79d2"));
        assert!(!is_run_id("20261122T231933Z-"));
        assert!(!is_run_id("20261122T2319Z-79d2"));
        assert!(!is_run_id("notes"));
    }
}
