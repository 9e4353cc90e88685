//! `backups daemon`: jobs run on their own schedules.

use super::runtime_for;
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

pub(super) async fn daemon(paths: &[PathBuf]) -> Result<ExitCode> {
    let jobs = backups::daemon::load(paths)?;
    let runtime = std::sync::Arc::new(runtime_for(jobs.first().map(|(j, _)| j))?);
    backups::daemon::serve(jobs, runtime).await?;
    Ok(ExitCode::SUCCESS)
}
