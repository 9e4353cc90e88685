//! `backups daemon`: runs jobs on their `schedule`, so backups no longer depend on a
//! crontab that can disappear.
//!
//! - Each job runs in its own task; a job never overlaps itself (the run lock also keeps
//!   out a `backups run` started by cron or a person).
//! - After every run, the scheduled time it served is recorded in
//!   `{state_dir}/{job}.last-run`. At start-up, a scheduled time later than that record
//!   means the machine was down or the daemon stopped: the job runs once, at once, and
//!   says so. Several missed times are one catch-up run, not a burst.
//! - The daemon never sleeps more than a minute at a time and re-reads the clock on
//!   waking, so a clock that jumps (suspend, NTP) is noticed within a minute.

use crate::config::Job;
use crate::job;
use crate::runtime::Runtime;
use crate::schedule::{self, Schedule};
use anyhow::{Context as _, Result, bail};
use jiff::Timestamp;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const MAX_NAP: Duration = Duration::from_secs(60);

fn state_file(job: &Job) -> PathBuf {
    let safe: String = job
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    job.state_dir.join(format!("{safe}.last-run"))
}

fn read_last(path: &Path) -> Option<Timestamp> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn write_last(path: &Path, t: Timestamp) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{t}\n"))
        .and_then(|_| std::fs::rename(&tmp, path))
        .with_context(|| format!("{}: cannot record the last run", path.display()))
}

/// Checks every job before starting any: a daemon that half-starts is worse than one
/// that refuses with a clear message.
pub fn load(paths: &[PathBuf]) -> Result<Vec<(Job, Schedule)>> {
    let mut out = Vec::new();
    for path in paths {
        let job = Job::load(path)?;
        let Some(schedule) = job.schedule.clone() else {
            bail!(
                "{}: no \"schedule\": the daemon needs a cron expression, e.g. \"0 2 * * *\"",
                path.display()
            );
        };
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&job.state_dir)
            .with_context(|| {
                format!(
                    "{}: state_dir {}: cannot create",
                    path.display(),
                    job.state_dir.display()
                )
            })?;
        out.push((job, schedule));
    }
    Ok(out)
}

/// Runs the jobs until a termination signal.
pub async fn serve(jobs: Vec<(Job, Schedule)>, runtime: Arc<Runtime>) -> Result<()> {
    let mut tasks = Vec::new();
    for (job, schedule) in jobs {
        let runtime = runtime.clone();
        tasks.push(tokio::spawn(async move {
            run_on_schedule(job, schedule, runtime).await
        }));
    }
    // A signal stops the commands of a running job and lets its plugins clean up; the
    // job then finishes with its report, and idle jobs stop waiting. A second signal
    // exits at once.
    crate::interrupt::install();
    crate::interrupt::wait().await;
    tracing::info!("stopping: waiting for running jobs to finish");
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

async fn run_on_schedule(job: Job, schedule: Schedule, runtime: Arc<Runtime>) {
    let state = state_file(&job);
    let name = job.name.clone();
    let now = schedule::now();
    let mut last = match read_last(&state) {
        Some(last) => last,
        None => {
            tracing::info!("job {name}: first start; next run as scheduled");
            let _ = write_last(&state, now);
            now
        }
    };
    tracing::info!("job {name}: schedule {:?}", schedule.text());
    loop {
        let now = schedule::now();
        // The latest scheduled time that has come and not been served.
        let due = schedule.previous_at_or_before(now).filter(|t| *t > last);
        if let Some(due) = due {
            if now.duration_since(due) > jiff::SignedDuration::from_secs(90) {
                tracing::warn!(
                    "job {name}: missed the run scheduled at {due} (last served {last}); running it now"
                );
            }
            run_once(&job, &runtime).await;
            if crate::interrupt::requested() {
                // Not served: the next start runs it again.
                return;
            }
            last = due;
            if let Err(e) = write_last(&state, last) {
                tracing::error!("job {name}: {e:#}");
            }
            continue;
        }
        let Some(next) = schedule.next_after(now) else {
            tracing::error!(
                "job {name}: schedule {:?} never fires again",
                schedule.text()
            );
            return;
        };
        let wait = Duration::try_from(next.duration_since(now)).unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait.min(MAX_NAP)) => {}
            _ = crate::interrupt::wait() => return,
        }
    }
}

/// One run, as `backups run` would do it, with its report in the log.
async fn run_once(job: &Job, runtime: &Runtime) {
    let name = &job.name;
    let lock = match crate::lock::RunLock::acquire(&job.tmpdir, name) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("job {name}: {e:#}");
            return;
        }
    };
    let reloaded = match Job::load(&job.path) {
        // The job file may have changed since start-up: run what it says now.
        Ok(j) => j,
        Err(e) => {
            tracing::error!("job {name}: {e:#}; not run");
            return;
        }
    };
    let plan = match crate::plan::plan(reloaded, runtime).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("job {name}: {e:#}; not run");
            return;
        }
    };
    match job::run(&plan, runtime, &job::Progress::default()).await {
        Ok(report) => {
            let level_ok = report.success();
            for line in report.summary().lines() {
                if level_ok {
                    tracing::info!("job {name}: {line}");
                } else {
                    tracing::error!("job {name}: {line}");
                }
            }
        }
        Err(e) => tracing::error!("job {name}: {}", plan.redactor.redact(&format!("{e:#}"))),
    }
    drop(lock);
}
