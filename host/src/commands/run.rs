//! `backups run`, and `check` / `run --dry-run`: what a job would do, then doing it.

use super::{planned, redacted};
use anyhow::Result;
use backups::job::{self, Progress};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

/// `check` and `run --dry-run`: the plan, every grant and its origin, the risks.
pub(super) async fn check(path: &Path) -> Result<ExitCode> {
    dry_run(path, false).await
}

/// `run --dry-run`, and with `leftovers` what the run's sweep would remove at each
/// destination (read from their listings: the only time a dry run contacts them).
pub(super) async fn dry_run(path: &Path, leftovers: bool) -> Result<ExitCode> {
    let (runtime, plan) = planned(path).await?;
    let described = plan.describe();
    print!("{described}");
    let risks = plan.risk_count();
    if leftovers {
        println!("\nleftovers of interrupted uploads (listed, nothing removed):");
        for sweep in job::leftovers_dry_run(&plan, &runtime).await? {
            let line = match sweep.describe(true) {
                Some(line) => line,
                None if sweep.unsupported => {
                    "its plugin predates contract 0.1.2 and cannot list them".to_string()
                }
                None => "none".to_string(),
            };
            println!("  {}: {line}", sweep.destination_id);
            for object in &sweep.removed {
                println!(
                    "    would remove what was becoming {}",
                    backups::text::for_terminal(object, 300)
                );
            }
        }
        println!(
            "\n{risks} risk(s) flagged; dry run: destinations were listed, nothing was written or deleted"
        );
    } else {
        println!("\n{risks} risk(s) flagged; dry run: nothing was read, written or deleted");
    }
    Ok(if plan.unstarted.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) async fn run(path: &Path, json: bool, quiet: bool) -> Result<ExitCode> {
    let (runtime, plan) = planned(path).await?;
    for w in &plan.warnings {
        tracing::warn!("{w}");
    }
    let _lock = backups::lock::RunLock::acquire(&plan.job.tmpdir, &plan.job.name)?;

    let progress = Progress::default();
    let ticker = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let bytes = progress.bytes.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut last = 0;
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                let now = bytes.load(Ordering::Relaxed);
                if now != last {
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    eprintln!(
                        "  … {} read ({}/s)",
                        backups::text::human_bytes(now),
                        backups::text::human_bytes((now as f64 / secs) as u64)
                    );
                    last = now;
                }
            }
        })
    });

    // From here a signal stops the commands plugins started and lets plugins clean up.
    backups::interrupt::install();
    let report = job::run(&plan, &runtime, &progress)
        .await
        .map_err(|e| redacted(&plan, e))?;
    if let Some(t) = ticker {
        t.abort();
    }
    let summary = report.summary();
    if !quiet || !report.success() {
        eprint!("\n{summary}");
    }
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{}", plan.redactor.redact(&text)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
