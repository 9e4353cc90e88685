//! One run of a job at a time, whoever starts it (cron, the daemon, a person).
//!
//! An exclusive `flock` on `{tmpdir}/.lock-{job}`: the kernel releases it when the process
//! ends, however it ends, so a crash never leaves a stale lock. The holder's pid is
//! written into the file for the message the next run prints.

use anyhow::{Context as _, Result, bail};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub struct RunLock {
    _file: std::fs::File,
    pub path: PathBuf,
}

impl RunLock {
    pub fn acquire(tmpdir: &Path, job: &str) -> Result<RunLock> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(tmpdir)
            .with_context(|| format!("tmpdir {}: cannot create", tmpdir.display()))?;
        let path = tmpdir.join(format!(".lock-{}", file_safe(job)));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("{}: cannot open the run lock", path.display()))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            bail!(
                "another run of job {job:?} is in progress (pid {}; lock {}): not starting a second one",
                holder.trim(),
                path.display()
            );
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(RunLock { _file: file, path })
    }
}

/// A job name as it appears in file names in the tmpdir.
pub(crate) fn file_safe(job: &str) -> String {
    job.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
